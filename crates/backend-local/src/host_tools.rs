//! The host programs and files the backend starts from: found, checked, and named in the
//! error with the Debian package or the build step that provides them.

use std::path::{Path, PathBuf};

use hypervisor::BackendError;

fn failed(msg: impl Into<String>) -> BackendError {
    BackendError::Failed(msg.into())
}

/// The first line of `prog --version`, or a one-line error with the fix.
pub(crate) fn tool_version(prog: &Path, package: &str) -> Result<String, BackendError> {
    let out = std::process::Command::new(prog)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            failed(format!(
                "{} cannot be run ({e}); install Debian's {package}",
                prog.display()
            ))
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

pub(crate) fn ensure_file(path: &Path, what: &str) -> Result<(), BackendError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(failed(format!(
            "the {what} {} is missing; run `make` to build it",
            path.display()
        )))
    }
}

/// `prog` as an absolute path: looked up in `PATH` when it is a bare name (QEMU is started
/// inside its jail, where the lookup would see another file system).
pub(crate) fn in_path(prog: &Path) -> PathBuf {
    if prog.components().count() == 1 {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(found) = std::env::split_paths(&path)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
        {
            return found;
        }
        return prog.to_path_buf();
    }
    absolute(prog)
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
