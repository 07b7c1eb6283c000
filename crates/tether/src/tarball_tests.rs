use super::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn names(tar_bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn tar_of(root: &Path, path: &str) -> (PathStat, Vec<u8>) {
    let named = name(root, path).unwrap();
    let (st, meta) = stat(root, &named).unwrap();
    let out = write_tar(&named, &meta, &st.name, Vec::new()).unwrap();
    (st, out)
}

#[test]
fn paths_are_named_as_dockerd_names_them() {
    let r = Path::new("/r");
    let n = name(r, "a/../b/").unwrap();
    assert_eq!(
        (n.abs.as_str(), n.at.as_path()),
        ("/b/", Path::new("/r/b/"))
    );
    assert_eq!(name(r, "/x/.").unwrap().abs, "/x/.");
    assert_eq!(name(r, "/").unwrap().at, Path::new("/r"));
    assert_eq!(name(r, "/../../etc").unwrap().at, Path::new("/r/etc"));
    assert_eq!(name(r, "").unwrap_err().kind, PathErrorKind::Invalid);
    assert_eq!(base("/x/."), ".");
    assert_eq!(base("/x/"), "x");
    assert_eq!(base("/"), "/");
}

#[test]
fn stat_says_what_docker_cp_needs() {
    let r = root();
    fs::create_dir_all(r.path().join("d/sub")).unwrap();
    fs::write(r.path().join("d/f"), b"12345").unwrap();
    symlink("sub", r.path().join("d/link")).unwrap();
    symlink("/nowhere", r.path().join("d/dangling")).unwrap();
    let (st, _) = stat(r.path(), &name(r.path(), "/d/f").unwrap()).unwrap();
    assert_eq!((st.name.as_str(), st.size), ("f", 5));
    assert_eq!(st.mode & libc::S_IFMT, libc::S_IFREG);
    let (st, _) = stat(r.path(), &name(r.path(), "/d/link").unwrap()).unwrap();
    assert_eq!(st.mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(st.link_target, "/d/sub");
    let (st, _) = stat(r.path(), &name(r.path(), "/d/dangling").unwrap()).unwrap();
    assert_eq!(st.link_target, "/nowhere");
    let (st, _) = stat(r.path(), &name(r.path(), "/d/link/").unwrap()).unwrap();
    assert_eq!(
        st.mode & libc::S_IFMT,
        libc::S_IFDIR,
        "a trailing / follows"
    );
    let err = stat(r.path(), &name(r.path(), "/d/nope").unwrap()).unwrap_err();
    assert_eq!(err.kind, PathErrorKind::NotFound);
    assert_eq!(err.message, "Could not find the file /d/nope");
}

#[test]
fn a_tree_goes_out_and_comes_back_whole() {
    let src = root();
    let t = src.path().join("tree");
    fs::create_dir_all(t.join("sub")).unwrap();
    fs::write(t.join("sub/file"), b"hello").unwrap();
    fs::set_permissions(t.join("sub/file"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::hard_link(t.join("sub/file"), t.join("again")).unwrap();
    symlink("sub/file", t.join("link")).unwrap();
    crate::sys::mknod(&t.join("fifo"), libc::S_IFIFO | 0o640, 0).unwrap();
    let (st, bytes) = tar_of(src.path(), "/tree");
    assert_eq!(st.name, "tree");
    let listed = names(&bytes);
    assert_eq!(listed[0], "tree/");
    assert!(listed.contains(&"tree/sub/file".to_string()), "{listed:?}");

    let dst = root();
    extract(dst.path(), "/", &bytes[..], &Extract::default()).unwrap();
    let back = dst.path().join("tree");
    assert_eq!(fs::read(back.join("sub/file")).unwrap(), b"hello");
    let meta = fs::metadata(back.join("sub/file")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o4751);
    assert_eq!(meta.ino(), fs::metadata(back.join("again")).unwrap().ino());
    assert_eq!(
        fs::read_link(back.join("link")).unwrap(),
        Path::new("sub/file")
    );
    let fifo = fs::symlink_metadata(back.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o777, 0o640);
    let src_mtime = fs::metadata(t.join("sub")).unwrap().mtime();
    assert_eq!(fs::metadata(back.join("sub")).unwrap().mtime(), src_mtime);
}

#[test]
fn a_directorys_contents_are_named_from_dot() {
    let src = root();
    fs::create_dir_all(src.path().join("d")).unwrap();
    fs::write(src.path().join("d/x"), b"x").unwrap();
    let (st, bytes) = tar_of(src.path(), "/d/.");
    assert_eq!(st.name, ".");
    assert_eq!(names(&bytes), ["./", "./x"]);
}

fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(unsafe { libc::geteuid() } as u64);
        h.set_gid(unsafe { libc::getegid() } as u64);
        // `append_data` refuses `..`; the name is written into the header as is.
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn nothing_is_extracted_outside_the_destination() {
    let r = root();
    fs::create_dir_all(r.path().join("in")).unwrap();
    let bytes = archive(&[("a/../../evil", b"x")]);
    let err = extract(&r.path().join("in"), "/in", &bytes[..], &Extract::default()).unwrap_err();
    assert_eq!(err.to_string(), "\"a/../../evil\" is outside of \"/in\"");
    assert!(!r.path().join("evil").exists());
}

#[test]
fn a_directory_is_replaced_by_a_file_only_when_allowed() {
    let r = root();
    fs::create_dir_all(r.path().join("x/inside")).unwrap();
    let bytes = archive(&[("x", b"file")]);
    let strict = Extract {
        no_overwrite_dir_non_dir: true,
        owner: None,
    };
    let err = extract(r.path(), "/", &bytes[..], &strict).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot overwrite directory \"/x\" with non-directory"
    );
    extract(r.path(), "/", &bytes[..], &Extract::default()).unwrap();
    assert_eq!(fs::read(r.path().join("x")).unwrap(), b"file");
}

#[test]
fn an_owner_given_owns_everything_extracted() {
    let r = root();
    let uid = if unsafe { libc::geteuid() } == 0 {
        4321
    } else {
        unsafe { libc::geteuid() }
    };
    let gid = if uid == 4321 {
        4322
    } else {
        unsafe { libc::getegid() }
    };
    let bytes = archive(&[("f", b"data")]);
    let opts = Extract {
        no_overwrite_dir_non_dir: true,
        owner: Some((uid, gid)),
    };
    extract(r.path(), "/", &bytes[..], &opts).unwrap();
    let meta = fs::metadata(r.path().join("f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));
}

#[test]
fn long_names_and_link_targets_survive() {
    let src = root();
    let long = "n".repeat(150);
    let dir = src.path().join("t").join(&long);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f"), b"data").unwrap();
    symlink("l".repeat(120), dir.join("s")).unwrap();
    let (_, bytes) = tar_of(src.path(), "/t");
    let dst = root();
    extract(dst.path(), "/", &bytes[..], &Extract::default()).unwrap();
    let back = dst.path().join("t").join(&long);
    assert_eq!(fs::read(back.join("f")).unwrap(), b"data");
    assert_eq!(
        fs::read_link(back.join("s")).unwrap(),
        Path::new(&"l".repeat(120))
    );
}

#[test]
fn an_export_names_entries_from_the_root() {
    let r = root();
    fs::create_dir_all(r.path().join("etc")).unwrap();
    fs::write(r.path().join("etc/passwd"), b"root").unwrap();
    fs::write(r.path().join(".dockerenv"), b"").unwrap();
    let meta = fs::metadata(r.path()).unwrap();
    let bytes = write_export(r.path(), &meta, Vec::new()).unwrap();
    assert_eq!(names(&bytes), [".dockerenv", "etc/", "etc/passwd"]);
}

#[test]
fn a_manifest_lists_each_entry_once_with_its_attributes() {
    let r = root();
    fs::create_dir_all(r.path().join("etc")).unwrap();
    fs::write(r.path().join("etc/passwd"), b"root").unwrap();
    symlink("passwd", r.path().join("etc/pw")).unwrap();
    let meta = fs::metadata(r.path()).unwrap();
    let bytes = write_manifest(r.path(), &meta, Vec::new()).unwrap();
    let entries: Vec<ManifestEntry> = String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = entries.iter().map(|e| e.p.as_str()).collect();
    assert_eq!(names, ["etc", "etc/passwd", "etc/pw"]);
    assert_eq!(entries[1].s, 4);
    assert_eq!(entries[2].l, "passwd");
    assert_eq!(entries[0].m & libc::S_IFMT, libc::S_IFDIR);
}

#[test]
fn a_layer_holds_the_paths_asked_for_alone() {
    let r = root();
    fs::create_dir_all(r.path().join("etc/sub")).unwrap();
    fs::write(r.path().join("etc/sub/f"), b"data").unwrap();
    fs::write(r.path().join("etc/other"), b"no").unwrap();
    let paths = ["etc".to_string(), "etc/sub/f".into(), "gone".into()];
    let bytes = write_layer(r.path(), &paths, Vec::new()).unwrap();
    assert_eq!(names(&bytes), ["etc/", "etc/sub/f"]);
    assert!(write_layer(r.path(), &["../x".to_string()], Vec::new()).is_err());
}
