//! `--tmpfs PATH[:OPTIONS]` (`HostConfig.Tmpfs`), parsed as dockerd parses it: Docker's
//! defaults `noexec,nosuid,nodev` first, then the user's options, a later flag overriding its
//! opposite and a later `key=value` its key; only mount flags and tmpfs's own options
//! (`size`, `mode`, `uid`, `gid`, `nr_inodes`, `nr_blocks`, `mpol`) are accepted.

use portlayer::guest::{Tmpfs, TMPFS_DATA, TMPFS_FLAGS};

const DEFAULTS: [&str; 3] = ["noexec", "nosuid", "nodev"];

/// The flag that undoes `flag` (`exec` for `noexec`, `rw` for `ro`), if any.
fn opposite(flag: &str) -> Option<String> {
    match flag {
        "ro" => Some("rw".into()),
        "rw" => Some("ro".into()),
        "mand" => None,
        f => match f.strip_prefix("no") {
            Some(base) => Some(base.to_string()),
            None => Some(format!("no{f}")),
        },
    }
}

/// Go's `%q` of the option split at its first `=`, as moby words the refusal.
fn go_quoted(opt: &str) -> String {
    let parts: Vec<String> = opt.splitn(2, '=').map(|p| format!("{p:?}")).collect();
    format!("[{}]", parts.join(" "))
}

/// Checks a tmpfs option's value, so that a typo fails the create rather than the start.
fn check_value(key: &str, value: &str) -> Result<(), String> {
    let digits = |v: &str| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit());
    let sized = |v: &str, suffixes: &str| {
        let v = v.strip_suffix(|c: char| suffixes.contains(c)).unwrap_or(v);
        digits(v)
    };
    let ok = match key {
        "size" => sized(value, "kKmMgGtTpPeE%"),
        "nr_inodes" | "nr_blocks" => sized(value, "kKmMgG"),
        "mode" => {
            !value.is_empty() && value.len() <= 4 && value.chars().all(|c| ('0'..='7').contains(&c))
        }
        "uid" | "gid" => digits(value) && value.parse::<u32>().is_ok(),
        _ => !value.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tmpfs option \"{key}={value}\": invalid value"
        ))
    }
}

/// One `HostConfig.Tmpfs` entry: the path and its comma-separated options.
pub fn parse(path: &str, options: &str) -> Result<Tmpfs, String> {
    let clean =
        path.starts_with('/') && path != "/" && !path.split('/').any(|p| p == ".." || p == ".");
    if !clean {
        return Err(format!(
            "invalid mount config for type \"tmpfs\": invalid mount path: '{path}' mount path must be absolute"
        ));
    }
    let mut merged: Vec<String> = DEFAULTS.iter().map(|s| s.to_string()).collect();
    for opt in options.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some((key, value)) => {
                if !TMPFS_DATA.contains(&key) {
                    return Err(format!("invalid tmpfs option {}", go_quoted(opt)));
                }
                check_value(key, value)?;
                merged.retain(|m| m.split_once('=').map(|(k, _)| k) != Some(key));
            }
            None => {
                if !TMPFS_FLAGS.contains(&opt) {
                    return Err(format!("invalid tmpfs option {}", go_quoted(opt)));
                }
                let undo = opposite(opt);
                merged.retain(|m| m != opt && Some(m) != undo.as_ref());
            }
        }
        merged.push(opt.to_string());
    }
    Ok(Tmpfs {
        path: path.to_string(),
        options: merged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_defaults_come_first_and_later_options_win() {
        let t = parse("/run", "").unwrap();
        assert_eq!(t.options, vec!["noexec", "nosuid", "nodev"]);
        let t = parse("/run", "exec,size=1m,mode=1777,size=2m").unwrap();
        assert_eq!(
            t.options,
            vec!["nosuid", "nodev", "exec", "mode=1777", "size=2m"]
        );
    }

    #[test]
    fn unknown_options_and_relative_paths_are_refused_in_dockers_words() {
        assert_eq!(
            parse("/x", "foo").unwrap_err(),
            "invalid tmpfs option [\"foo\"]"
        );
        assert_eq!(
            parse("/x", "colour=red").unwrap_err(),
            "invalid tmpfs option [\"colour\" \"red\"]"
        );
        assert!(parse("/x", "size=lots").unwrap_err().contains("size=lots"));
        assert!(parse("x", "")
            .unwrap_err()
            .contains("mount path must be absolute"));
        assert!(parse("/a/../b", "").is_err());
    }
}
