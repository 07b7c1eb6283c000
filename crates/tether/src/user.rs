//! Resolving a Docker `--user` string against the container's /etc/passwd and /etc/group,
//! parsed by hand (a static binary has no NSS, and the files belong to the container anyway).

use std::fmt;

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership), without duplicates.
    pub groups: Vec<u32>,
    /// Home directory from /etc/passwd, `/` when the user has no entry.
    pub home: String,
}

/// Why a user string could not be resolved; the wording follows Docker's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    NoSuchUser(String),
    NoSuchGroup(String),
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchUser(u) => {
                write!(
                    f,
                    "unable to find user {u}: no matching entries in passwd file"
                )
            }
            Self::NoSuchGroup(g) => {
                write!(
                    f,
                    "unable to find group {g}: no matching entries in group file"
                )
            }
        }
    }
}

/// Parses /etc/passwd content, skipping malformed lines and comments.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parses /etc/group content, skipping malformed lines and comments.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members,
            })
        })
        .collect()
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, …) like Docker does: a name
/// must exist in passwd, a number need not; the primary group comes from passwd unless given;
/// supplementary groups are the groups that list the user as a member.
pub fn resolve(
    user: &str,
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
) -> Result<Identity, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = match user_part.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid).cloned(),
        Err(_) => Some(
            passwd
                .iter()
                .find(|e| e.name == user_part)
                .cloned()
                .ok_or_else(|| UserError::NoSuchUser(user_part.to_string()))?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        // A number without an entry: parse cannot fail here, names without entries errored above.
        None => user_part.parse().unwrap_or(0),
    };
    let mut gid = entry.as_ref().map(|e| e.gid).unwrap_or(0);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))?,
        };
    }
    let mut supplementary = vec![gid];
    if let Some(e) = &entry {
        for g in groups.iter().filter(|g| g.members.contains(&e.name)) {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    let home = entry
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Identity {
        uid,
        gid,
        groups: supplementary,
        home,
    })
}

/// Adds `--group-add` groups (names in the container's /etc/group, or numbers) to the
/// supplementary groups, as runc does.
pub fn add_groups(
    mut ident: Identity,
    extra: &[String],
    groups: &[GroupEntry],
) -> Result<Identity, UserError> {
    for g in extra {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.name == *g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.clone()))?,
        };
        if !ident.groups.contains(&gid) {
            ident.groups.push(gid);
        }
    }
    Ok(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1::/usr/sbin:/bin/false\n\
        broken line\n\
        vic:x:1000:1000:VIC user:/home/vic:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,vic\nvic:x:1000:\naudio:x:29: vic \nbad\n";

    fn res(u: &str) -> Result<Identity, UserError> {
        resolve(u, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_passwd_and_skips_garbage() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 3);
        assert_eq!(p[2].name, "vic");
        assert_eq!(p[2].uid, 1000);
        assert_eq!(p[2].home, "/home/vic");
    }

    #[test]
    fn parses_group_members() {
        let g = parse_group(GROUP);
        assert_eq!(g.len(), 4);
        assert_eq!(g[1].members, vec!["root", "vic"]);
        assert_eq!(g[3].members, vec!["vic"]);
        assert!(g[2].members.is_empty());
    }

    #[test]
    fn empty_user_is_root() {
        let id = res("").unwrap();
        assert_eq!((id.uid, id.gid), (0, 0));
        assert_eq!(id.home, "/root");
        assert_eq!(id.groups, vec![0, 10]);
    }

    #[test]
    fn name_gets_passwd_gid_home_and_supplementary_groups() {
        let id = res("vic").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
        assert_eq!(id.home, "/home/vic");
        assert_eq!(id.groups, vec![1000, 10, 29]);
    }

    #[test]
    fn numeric_uid_without_entry_is_allowed() {
        let id = res("4242").unwrap();
        assert_eq!((id.uid, id.gid), (4242, 0));
        assert_eq!(id.home, "/");
        assert_eq!(id.groups, vec![0]);
    }

    #[test]
    fn numeric_uid_with_entry_uses_it() {
        let id = res("1000").unwrap();
        assert_eq!((id.uid, id.gid), (1000, 1000));
    }

    #[test]
    fn explicit_groups_by_name_and_number() {
        assert_eq!(res("vic:wheel").unwrap().gid, 10);
        assert_eq!(res("1000:55").unwrap().gid, 55);
        assert_eq!(res("vic:").unwrap().gid, 1000);
    }

    #[test]
    fn group_add_takes_names_and_numbers_once_each() {
        let g = parse_group(GROUP);
        let extra = ["wheel".to_string(), "4242".to_string(), "audio".to_string()];
        let id = add_groups(res("").unwrap(), &extra, &g).unwrap();
        assert_eq!(id.groups, vec![0, 10, 4242, 29]);
        assert_eq!(
            add_groups(res("").unwrap(), &["nogroup".to_string()], &g).unwrap_err(),
            UserError::NoSuchGroup("nogroup".into())
        );
    }

    #[test]
    fn unknown_names_are_docker_errors() {
        assert_eq!(
            res("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            res("vic:nogroup").unwrap_err(),
            UserError::NoSuchGroup("nogroup".into())
        );
    }
}
