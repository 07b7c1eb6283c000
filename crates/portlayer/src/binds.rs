//! Bind mounts: host paths shared into container VMs, only from under the directories the
//! operator lets containers bind (`vic-machine create|configure --bind-path DIR[:ro]`). An
//! API client is not trusted with the host: without a bind path no host path is shared,
//! and a path that leads out of every bind path (`..`, a symlink) is refused.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::volumes::VolumeError;

/// A host directory whose contents containers may bind-mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindPath {
    pub dir: PathBuf,
    /// Every bind from under it is read-only.
    #[serde(default)]
    pub readonly: bool,
}

fn invalid(msg: String) -> VolumeError {
    VolumeError::Invalid(msg)
}

/// `path` with `.` and `..` taken out, when it is absolute and `..` does not climb above
/// the root.
fn normal(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => return None,
        }
    }
    path.starts_with('/').then_some(out)
}

/// Makes `dir` and its missing parents 0755, as dockerd makes a missing `-v` source.
fn make_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    for p in missing.into_iter().rev() {
        std::fs::create_dir(p)?;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The bind path `p` is under, symlinks of both resolved.
fn under<'a>(paths: &'a [BindPath], p: &Path) -> Option<&'a BindPath> {
    paths.iter().find(|b| {
        let root = std::fs::canonicalize(&b.dir).unwrap_or_else(|_| b.dir.clone());
        p.starts_with(&root)
    })
}

/// Resolves a bind mount's `source`: made when `create` (a directory, as `-v` makes one) and
/// missing, symlinks followed, and under one of `paths`. Returns the host path to share and
/// whether it must be read-only.
pub fn resolve(
    paths: &[BindPath],
    source: &str,
    create: bool,
) -> Result<(PathBuf, bool), VolumeError> {
    let shown = || {
        paths
            .iter()
            .map(|b| b.dir.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if paths.is_empty() {
        return Err(invalid(format!(
            "bind mounts of host paths are not enabled on this VCH (mounting {source}): vic-machine configure --bind-path DIR lets containers bind what is under DIR"
        )));
    }
    let lexical = normal(source)
        .ok_or_else(|| invalid(format!("bind source path {source} is not absolute")))?;
    if create && !lexical.exists() && under(paths, &lexical).is_some() {
        make_dirs(&lexical).map_err(|e| {
            invalid(format!(
                "error while creating mount source path '{source}': {e}"
            ))
        })?;
    }
    let real = std::fs::canonicalize(&lexical).map_err(|_| {
        invalid(format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {source}"
        ))
    })?;
    match under(paths, &real) {
        Some(b) => Ok((real, b.readonly)),
        None => Err(invalid(format!(
            "bind source path {source} is not under a host path this VCH shares ({})",
            shown()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_a_bind_path_are_shared_whatever_leads_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("site")).unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let paths = [BindPath {
            dir: root.clone(),
            readonly: false,
        }];
        let s = |p: &Path| p.display().to_string();
        let (p, ro) = resolve(&paths, &s(&root.join("site")), false).unwrap();
        assert_eq!(p, std::fs::canonicalize(root.join("site")).unwrap());
        assert!(!ro);
        for escape in [
            root.join("link"),
            root.join("../secret"),
            PathBuf::from("/etc"),
        ] {
            let e = resolve(&paths, &s(&escape), true).unwrap_err().to_string();
            assert!(
                e.contains("is not under a host path this VCH shares"),
                "{e}"
            );
        }
        assert!(!dir.path().join("etc").exists());
        let e = resolve(&paths, &s(&root.join("missing")), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bind source path does not exist"), "{e}");
        let (made, _) = resolve(&paths, &s(&root.join("new/dir")), true).unwrap();
        assert!(made.is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let ro = [BindPath {
            dir: root.clone(),
            readonly: true,
        }];
        assert!(resolve(&ro, &s(&root.join("site")), false).unwrap().1);
        let e = resolve(&[], "/srv", false).unwrap_err().to_string();
        assert!(e.contains("not enabled on this VCH"), "{e}");
    }
}
