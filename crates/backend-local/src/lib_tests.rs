use super::*;

#[test]
fn ids_cannot_escape_the_state_dir() {
    assert!(check_id("VM", "abc123").is_ok());
    assert!(check_id("image", "sha256:abc").is_ok());
    assert!(check_id("VM", "..").is_err());
    assert!(check_id("VM", ".jail").is_err());
    assert!(check_id("VM", "a/b").is_err());
    assert!(check_id("VM", "").is_err());
}

#[test]
fn missing_kernel_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalBackend::new(LocalConfig {
        root: dir.path().to_path_buf(),
        kernel: dir.path().join("vmlinux"),
        ..LocalConfig::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("guest kernel") && err.contains("run `make`"),
        "{err}"
    );
}
