//! The layer applier's tests: overlay semantics, metadata, and layers that try to reach
//! outside the root.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

pub(super) enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Owned(&'a str, u32, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

pub(super) fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mode(0o755);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                (p, &[])
            }
            E::File(p, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_mode(0o644);
                (p, d)
            }
            E::Owned(p, mode, id) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*id);
                h.set_gid(*id);
                (p, &[])
            }
            E::Symlink(p, t) | E::Hardlink(p, t) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                h.set_entry_type(kind);
                h.set_link_name(t).unwrap();
                (p, &[])
            }
            E::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o600);
                (p, &[])
            }
        };
        // Raw path bytes: the builder itself refuses `..`, a hostile layer does not.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Writes a gzip layer; returns its path and diff ID.
pub(super) fn layer(dir: &Path, name: &str, entries: &[E<'_>]) -> (PathBuf, String) {
    let raw = tar_of(entries);
    let diff = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &raw).unwrap();
    let p = dir.join(name);
    fs::write(&p, gz.finish().unwrap()).unwrap();
    (p, diff)
}

pub(super) fn rootdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    (t, root)
}

#[test]
fn whiteouts_and_opaque_directories() {
    let (t, root) = rootdir();
    let (l1, d1) = layer(
        t.path(),
        "l1",
        &[
            E::Dir("etc/"),
            E::File("etc/gone", b"x"),
            E::Dir("etc/gonedir/"),
            E::File("etc/gonedir/f", b"x"),
            E::File("etc/kept", b"k"),
            E::Dir("opq/"),
            E::File("opq/old", b"o"),
            E::Dir("opq/sub/"),
            E::File("opq/sub/deep", b"o"),
        ],
    );
    let (l2, d2) = layer(
        t.path(),
        "l2",
        &[
            E::File("etc/.wh.gone", b""),
            E::File("etc/.wh.gonedir", b""),
            E::File("opq/new", b"n"),
            E::File("opq/.wh..wh..opq", b""),
            E::File("opq/sub/fresh", b"f"),
            E::File("etc/kept", b"replaced"),
        ],
    );
    apply_layer(&l1, &root, &d1).unwrap();
    apply_layer(&l2, &root, &d2).unwrap();
    assert!(!root.join("etc/gone").exists());
    assert!(
        !root.join("etc/gonedir").exists(),
        "a whiteout removes a whole directory"
    );
    assert_eq!(fs::read(root.join("etc/kept")).unwrap(), b"replaced");
    assert!(
        !root.join("opq/old").exists(),
        "opaque dir hides lower content"
    );
    assert!(
        !root.join("opq/sub/deep").exists(),
        "also in lower subdirectories"
    );
    assert!(root.join("opq/new").exists(), "but keeps its own layer's");
    assert!(root.join("opq/sub/fresh").exists());
    assert!(!root.join("etc/.wh.gone").exists());
    assert!(!root.join("opq/.wh..wh..opq").exists());
}

#[test]
fn links_ownership_modes_and_fifos_are_kept() {
    let (t, root) = rootdir();
    let (l1, d1) = layer(
        t.path(),
        "l1",
        &[
            E::Owned("tmp/", 0o1777, 0),
            E::Owned("home/", 0o755, 0),
            E::Owned("home/vic/", 0o750, 1000),
            E::File("bin/busybox", b"#!"),
            E::Symlink("bin/sh", "/bin/busybox"),
            E::Hardlink("bin/ash", "bin/busybox"),
            E::Fifo("run/fifo"),
        ],
    );
    apply_layer(&l1, &root, &d1).unwrap();
    let tmp = fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    let home = fs::metadata(root.join("home/vic")).unwrap();
    assert_eq!(
        (home.uid(), home.gid(), home.mode() & 0o777),
        (1000, 1000, 0o750)
    );
    assert_eq!(home.mtime(), 1_700_000_000);
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    let (a, b) = (
        fs::metadata(root.join("bin/ash")).unwrap(),
        fs::metadata(root.join("bin/busybox")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "a hard link shares the inode");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::symlink_metadata(root.join("run/fifo"))
            .unwrap()
            .file_type()
    ));
}

#[test]
fn symlinks_are_followed_inside_the_root() {
    let (t, root) = rootdir();
    let (l1, d1) = layer(
        t.path(),
        "l1",
        &[
            E::Dir("usr/lib/"),
            E::Dir("etc/"),
            E::Symlink("lib", "/usr/lib"),
            E::Symlink("hostetc", "/etc"),
        ],
    );
    let (l2, d2) = layer(
        t.path(),
        "l2",
        &[
            E::File("lib/libc.so", b"c"),
            E::File("hostetc/passwd-vic-test", b"p"),
        ],
    );
    apply_layer(&l1, &root, &d1).unwrap();
    apply_layer(&l2, &root, &d2).unwrap();
    assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"c");
    assert_eq!(fs::read(root.join("etc/passwd-vic-test")).unwrap(), b"p");
    assert!(
        !Path::new("/etc/passwd-vic-test").exists(),
        "an absolute link restarts at the root"
    );
}

#[test]
fn path_escapes_are_refused() {
    for (name, entries) in [
        ("dotdot", vec![E::File("../escaped", b"x")]),
        (
            "deep-dotdot",
            vec![E::Dir("a/"), E::File("a/../../escaped", b"x")],
        ),
        ("hardlink", vec![E::Hardlink("h", "../outside")]),
        ("whiteout", vec![E::File("../.wh.outside", b"")]),
    ] {
        let (t, root) = rootdir();
        fs::write(t.path().join("outside"), b"keep").unwrap();
        let (l, d) = layer(t.path(), "l", &entries);
        let err = apply_layer(&l, &root, &d).unwrap_err();
        assert!(matches!(err, UnpackError::Escape(_)), "{name}: {err}");
        assert!(!t.path().join("escaped").exists(), "{name}");
        assert_eq!(
            fs::read(t.path().join("outside")).unwrap(),
            b"keep",
            "{name}"
        );
    }
}

#[test]
fn wrong_diff_id_is_refused() {
    let (t, root) = rootdir();
    let (l1, _) = layer(t.path(), "l1", &[E::File("a", b"x")]);
    let err = apply_layer(&l1, &root, &format!("sha256:{}", "0".repeat(64))).unwrap_err();
    assert!(matches!(err, UnpackError::DiffId { .. }), "{err}");
}

#[test]
fn compression_is_sniffed() {
    let (t, root) = rootdir();
    let raw = tar_of(&[E::File("plain", b"p")]);
    let diff = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    fs::write(t.path().join("raw"), &raw).unwrap();
    apply_layer(&t.path().join("raw"), &root, &diff).unwrap();
    let raw2 = tar_of(&[E::File("zst", b"z")]);
    let diff2 = format!("sha256:{}", hex::encode(Sha256::digest(&raw2)));
    fs::write(
        t.path().join("zst"),
        zstd::encode_all(&raw2[..], 3).unwrap(),
    )
    .unwrap();
    apply_layer(&t.path().join("zst"), &root, &diff2).unwrap();
    assert!(root.join("plain").exists() && root.join("zst").exists());
}

#[test]
fn a_link_climbing_above_the_root_stops_at_it() {
    let (t, root) = rootdir();
    let (l, d) = layer(
        t.path(),
        "l",
        &[E::Symlink("up", "../../.."), E::File("up/escaped", b"x")],
    );
    apply_layer(&l, &root, &d).unwrap();
    assert_eq!(fs::read(root.join("escaped")).unwrap(), b"x");
    assert!(!t.path().join("escaped").exists());
}

/// A directory beside the root that no layer may touch, and what it looked like.
pub(super) fn canary(t: &Path) -> (PathBuf, Vec<(PathBuf, Vec<u8>, i64)>) {
    let c = t.join("canary");
    fs::create_dir_all(c.join("sub")).unwrap();
    fs::write(c.join("precious"), b"keep").unwrap();
    fs::write(c.join("sub/deep"), b"keep").unwrap();
    (c.clone(), snapshot(&c))
}

pub(super) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = fs::symlink_metadata(&d).unwrap();
        out.push((d.clone(), Vec::new(), m.mtime()));
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap(), m.mtime()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn an_opaque_directory_replaced_by_a_link_to_the_host_empties_nothing_there() {
    let (t, root) = rootdir();
    let (host, before) = canary(t.path());
    let host = host.to_str().unwrap();
    let (l1, d1) = layer(t.path(), "l1", &[E::Dir("d/"), E::File("d/lower", b"l")]);
    let (l2, d2) = layer(
        t.path(),
        "l2",
        &[
            E::File("d/.wh..wh..opq", b""),
            E::Symlink("d", host),
            E::Symlink("rel", "../canary"),
            E::File("rel/.wh..wh..opq", b""),
        ],
    );
    apply_layer(&l1, &root, &d1).unwrap();
    apply_layer(&l2, &root, &d2).unwrap();
    assert_eq!(snapshot(&t.path().join("canary")), before);
    assert_eq!(fs::read_link(root.join("d")).unwrap(), Path::new(host));
}

#[test]
fn a_directory_replaced_by_a_link_to_the_host_does_not_pass_its_time_on() {
    let (t, root) = rootdir();
    let (host, before) = canary(t.path());
    let (l, d) = layer(
        t.path(),
        "l",
        &[
            E::Dir("d/"),
            E::Dir("e/"),
            E::Symlink("d", host.to_str().unwrap()),
            E::Symlink("e", "../../canary"),
        ],
    );
    apply_layer(&l, &root, &d).unwrap();
    assert_eq!(snapshot(&host), before);
}

#[test]
fn whiteouts_through_links_stay_inside_the_root() {
    let (t, root) = rootdir();
    let (host, before) = canary(t.path());
    let (l, d) = layer(
        t.path(),
        "l",
        &[
            E::Symlink("abs", host.to_str().unwrap()),
            E::Symlink("rel", "../canary"),
            E::File("abs/.wh.precious", b""),
            E::File("rel/.wh.sub", b""),
            E::File(".wh..", b""),
        ],
    );
    let err = apply_layer(&l, &root, &d).unwrap_err();
    assert!(
        matches!(err, UnpackError::Escape(_)),
        "`.wh..` is refused: {err}"
    );
    assert_eq!(snapshot(&host), before);
}

#[test]
fn entries_written_through_links_land_inside_the_root() {
    let (t, root) = rootdir();
    let (host, before) = canary(t.path());
    let (l, d) = layer(
        t.path(),
        "l",
        &[
            E::Symlink("abs", host.to_str().unwrap()),
            E::File("abs/precious", b"overwritten"),
            E::Dir("abs/sub/"),
            E::Hardlink("abs/hl", "abs/precious"),
            E::Fifo("abs/sub/deep"),
        ],
    );
    apply_layer(&l, &root, &d).unwrap();
    assert_eq!(snapshot(&host), before);
    let inside = root.join(host.strip_prefix("/").unwrap());
    assert_eq!(fs::read(inside.join("precious")).unwrap(), b"overwritten");
}
