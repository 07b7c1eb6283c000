//! `--target` for vSphere: `[https://][USER[:PASSWORD]@]HOST[:PORT][/DATACENTER]`, as VIC takes
//! it, with `--user`/`--password` (or VIC_MACHINE_USER/PASSWORD) filling what the URL lacks.

use anyhow::bail;

/// A vSphere target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `HOST[:PORT]`.
    pub host: String,
    /// The datacenter's inventory path (`DC0`, `folder/DC1`), if the URL names one.
    pub datacenter: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// Reads a target URL; `user` and `password` are the flags', used where the URL names none.
    pub fn parse(s: &str, user: Option<&str>, password: Option<&str>) -> anyhow::Result<Target> {
        let rest = match s.split_once("://") {
            Some(("https", rest)) => rest,
            Some((scheme, _)) => {
                bail!("--target {s:?}: only https is supported, not {scheme}")
            }
            None => s,
        };
        // The userinfo ends at the last '@' before the path: a password may hold '@'.
        let path_at = rest.find('/').unwrap_or(rest.len());
        let (userinfo, hostpath) = match rest[..path_at].rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (host, path) = match hostpath.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (hostpath, ""),
        };
        if host.is_empty() {
            bail!("--target {s:?} names no host");
        }
        let path = path
            .strip_suffix("sdk")
            .unwrap_or(path)
            .trim_end_matches('/');
        let (url_user, url_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
                None => (Some(decode(u)?), None),
            },
            None => (None, None),
        };
        Ok(Target {
            host: host.to_string(),
            datacenter: (!path.is_empty()).then(|| path.to_string()),
            user: url_user.or(user.map(str::to_string)),
            password: url_password.or(password.map(str::to_string)),
        })
    }

    /// The target as the user wrote it, without credentials.
    pub fn display(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!("{}/{dc}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Percent-decodes a URL's user or password.
fn decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).unwrap_or("");
            match u8::from_str_radix(hex, 16) {
                Ok(b) if hex.len() == 2 => out.push(b),
                _ => bail!("--target: invalid percent-encoding in {s:?}"),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("--target: {s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_vic_reads_them() {
        let t = Target::parse("https://admin:p%40ss@vc.example:8443/DC0", None, None).unwrap();
        assert_eq!(t.host, "vc.example:8443");
        assert_eq!(t.datacenter.as_deref(), Some("DC0"));
        assert_eq!(t.user.as_deref(), Some("admin"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.display(), "vc.example:8443/DC0");
        let t = Target::parse("10.0.0.1", Some("u"), Some("pw")).unwrap();
        assert_eq!((t.host.as_str(), t.datacenter), ("10.0.0.1", None));
        assert_eq!(
            (t.user.as_deref(), t.password.as_deref()),
            (Some("u"), Some("pw"))
        );
        // The URL's user wins over the flag's; /sdk and slashes are not a datacenter.
        let t = Target::parse("root@esx/sdk/", Some("other"), Some("pw")).unwrap();
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.password.as_deref(), Some("pw"));
        assert_eq!(t.datacenter, None);
        let t = Target::parse("vc/folder/DC1", None, None).unwrap();
        assert_eq!(t.datacenter.as_deref(), Some("folder/DC1"));
        assert!(Target::parse("http://vc", None, None).is_err());
        assert!(Target::parse("https://", None, None).is_err());
        assert!(Target::parse("u:%zz@vc", None, None).is_err());
    }
}
