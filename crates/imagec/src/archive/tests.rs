use super::*;

/// A tar of `(path, content)` files (directories when content is `None`).
fn tar_of(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                h.set_mode(0o755);
                b.append_data(&mut h, path, *d).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                b.append_data(&mut h, path, io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn rootfs_tar() -> Vec<u8> {
    tar_of(&[
        ("bin/", None),
        ("bin/hello", Some(b"#!/bin/sh\necho hello\n")),
        ("etc/", None),
        ("etc/motd", Some(b"welcome\n")),
    ])
}

fn opts(tag: &str, changes: &[&str]) -> ImportOptions {
    ImportOptions {
        reference: Some(Reference::parse(tag).unwrap()),
        message: "imported by a test".into(),
        changes: changes.iter().map(|s| s.to_string()).collect(),
        platform: None,
    }
}

fn tmp_is_empty(store_dir: &Path) -> bool {
    fs::read_dir(store_dir.join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

fn blob_count(store_dir: &Path) -> usize {
    fs::read_dir(store_dir.join("blobs/sha256"))
        .unwrap()
        .count()
}

/// Entries of a tar: path → (type, bytes, link target).
fn entries_of(tar: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, Option<String>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().to_string();
            let kind = e.header().entry_type();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().to_string());
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (path, kind, data, link)
        })
        .collect()
}

#[test]
fn changes_apply_as_dockerd_applies_them() {
    let c = container_config(&[
        r#"CMD ["/bin/echo","imported"]"#.into(),
        "ENV A=b".into(),
        "ENV B=\"two words\" C=$A-x".into(),
        "ENV LEGACY some value".into(),
        "ENV A=c".into(),
        "WORKDIR /srv".into(),
        "WORKDIR app/../data".into(),
        "USER nobody:nogroup".into(),
        "LABEL version=1.0 \"com.example.name\"=\"the app\"".into(),
        "EXPOSE 80 53/udp 8000-8001".into(),
        r#"VOLUME ["/data", "/logs"]"#.into(),
        "VOLUME /cache".into(),
        "STOPSIGNAL SIGTERM".into(),
        "onbuild run echo hi".into(),
    ])
    .unwrap();
    assert_eq!(c["Cmd"], json!(["/bin/echo", "imported"]));
    assert_eq!(
        c["Env"],
        json!(["A=c", "B=two words", "C=b-x", "LEGACY=some value"])
    );
    assert_eq!(c["WorkingDir"], "/srv/data");
    assert_eq!(c["User"], "nobody:nogroup");
    assert_eq!(c["Labels"]["version"], "1.0");
    assert_eq!(c["Labels"]["com.example.name"], "the app");
    assert_eq!(
        c["ExposedPorts"],
        json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
    );
    assert_eq!(
        c["Volumes"],
        json!({"/data": {}, "/logs": {}, "/cache": {}})
    );
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["OnBuild"], json!(["RUN echo hi"]));

    let shell = container_config(&["CMD echo \"$HOME\" && ls".into()]).unwrap();
    assert_eq!(
        shell["Cmd"],
        json!(["/bin/sh", "-c", "echo \"$HOME\" && ls"]),
        "shell form is left to the shell"
    );
    let ep = container_config(&["CMD [\"x\"]".into(), "ENTRYPOINT top -b".into()]).unwrap();
    assert_eq!(ep["Entrypoint"], json!(["/bin/sh", "-c", "top -b"]));
    assert_eq!(ep["Cmd"], json!(["x"]), "a CMD given with it stays");
    let empty = container_config(&[]).unwrap();
    assert_eq!(empty["Cmd"], Value::Null);
    assert_eq!(empty["Env"], Value::Null);

    let err = |c: &str| container_config(&[c.to_string()]).unwrap_err().to_string();
    assert_eq!(err("RUN echo hi"), "run is not a valid change command");
    assert_eq!(err("FROM busybox"), "from is not a valid change command");
    assert_eq!(err("BOGUS x"), "unknown instruction: BOGUS");
    assert_eq!(err("ENV"), "ENV requires at least one argument");
    assert!(err("ENV A=b C").contains("can't find = in \"C\""));
    assert_eq!(err("EXPOSE http"), "invalid containerPort: http");
    assert_eq!(err("USER"), "USER requires exactly one argument");
    assert!(err("ENV A=\"open").contains("double-quote"));
}

#[tokio::test]
async fn import_makes_a_one_layer_image_with_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let o = opts(
        "imported:v1",
        &[r#"CMD ["/bin/hello"]"#, "ENV A=b", "WORKDIR /etc"],
    );
    let img = import(&store, io::Cursor::new(rootfs_tar()), &o)
        .await
        .unwrap();
    assert_eq!(img.repo_tags, vec!["imported:v1"]);
    assert_eq!(img.layers.len(), 1);
    assert_eq!(img.diff_ids, vec![sha256_digest(&rootfs_tar())]);
    assert_eq!(
        img.layers[0], img.diff_ids[0],
        "a plain tarball is stored as it came"
    );
    assert_eq!(img.config["config"]["Cmd"], json!(["/bin/hello"]));
    assert_eq!(img.config["config"]["Env"], json!(["A=b"]));
    assert_eq!(img.config["config"]["WorkingDir"], "/etc");
    assert_eq!(img.config["architecture"], "amd64");
    assert_eq!(img.config["os"], "linux");
    assert_eq!(img.config["comment"], "imported by a test");
    assert_eq!(img.config["history"][0]["comment"], "imported by a test");
    assert_eq!(img.config["history"][0]["created_by"], "");
    assert_eq!(img.config["created"], img.config["history"][0]["created"]);
    let config_raw = fs::read(store.blob_file(&img.id).unwrap()).unwrap();
    assert_eq!(
        sha256_digest(&config_raw),
        img.id,
        "the config blob is the ID"
    );
    assert!(store.blob_file(&img.layers[0]).unwrap().exists());
    assert_eq!(
        fs::read(store.rootfs(&img.id).join("etc/motd")).unwrap(),
        b"welcome\n"
    );
    assert!(tmp_is_empty(dir.path()));

    // A gzip tarball is kept as it came.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&rootfs_tar()).unwrap();
    let gz = gz.finish().unwrap();
    let img2 = import(&store, io::Cursor::new(gz.clone()), &opts("gz:1", &[]))
        .await
        .unwrap();
    assert_eq!(img2.layers, vec![sha256_digest(&gz)]);
    assert_eq!(img2.diff_ids, img.diff_ids);

    // Refusals leave nothing.
    let before = blob_count(dir.path());
    let e = import(
        &store,
        io::Cursor::new(vec![7u8; 4096]),
        &opts("bad:1", &[]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "archive/tar: invalid tar header");
    let e = import(
        &store,
        io::Cursor::new(b"short".to_vec()),
        &opts("bad:1", &[]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "unexpected EOF");
    let e = import(
        &store,
        io::Cursor::new(rootfs_tar()),
        &opts("bad:1", &["RUN true"]),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ArchiveError::Change(_)), "{e}");
    let mut truncated = rootfs_tar();
    truncated.truncate(700);
    let e = import(&store, io::Cursor::new(truncated), &opts("bad:1", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "unexpected EOF");
    assert_eq!(blob_count(dir.path()), before);
    assert_eq!(store.list().len(), 2);
    assert!(store.resolve("bad:1").is_none());
    assert!(tmp_is_empty(dir.path()));
}

#[tokio::test]
async fn save_then_load_round_trips_and_shares_layers() {
    let a = tempfile::tempdir().unwrap();
    let src = ImageStore::open(a.path()).unwrap();
    let one = import(
        &src,
        io::Cursor::new(rootfs_tar()),
        &opts("app:one", &["CMD [\"one\"]"]),
    )
    .await
    .unwrap();
    let two = import(
        &src,
        io::Cursor::new(rootfs_tar()),
        &opts("app:two", &["CMD [\"two\"]"]),
    )
    .await
    .unwrap();
    assert_ne!(one.id, two.id);
    assert_eq!(one.diff_ids, two.diff_ids);

    let plan = plan_save(&src, &["app".to_string()]).unwrap();
    assert_eq!(plan.ids().len(), 2, "a bare name saves every tag");
    let mut out = Vec::new();
    write_save(&plan, &mut out).unwrap();
    let entries = entries_of(&out);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let manifest: Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "manifest.json").unwrap().2)
            .unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2);
    let tags: Vec<&Value> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["RepoTags"])
        .collect();
    assert!(tags.contains(&&json!(["app:one"])) && tags.contains(&&json!(["app:two"])));
    for m in manifest.as_array().unwrap() {
        let config = m["Config"].as_str().unwrap();
        assert!(names.contains(&config));
        let config_raw = &entries.iter().find(|e| e.0 == config).unwrap().2;
        assert_eq!(
            format!("{}.json", hex::encode(Sha256::digest(config_raw))),
            config
        );
    }
    // One layer.tar with the content, its twin a symlink to it.
    let layers: Vec<_> = entries
        .iter()
        .filter(|e| e.0.ends_with("/layer.tar"))
        .collect();
    assert_eq!(layers.len(), 2);
    let regular: Vec<_> = layers
        .iter()
        .filter(|e| e.1 == tar::EntryType::Regular)
        .collect();
    assert_eq!(regular.len(), 1);
    assert_eq!(sha256_digest(&regular[0].2), one.diff_ids[0]);
    let link = layers
        .iter()
        .find(|e| e.1 == tar::EntryType::Symlink)
        .unwrap();
    assert_eq!(
        link.3.as_deref(),
        Some(format!("../{}", regular[0].0).as_str())
    );
    assert!(names.contains(&"repositories"));
    assert!(names.iter().any(|n| n.ends_with("/VERSION")));
    assert!(names.iter().any(|n| n.ends_with("/json")));

    // By ID: no tags.
    let by_id = plan_save(&src, std::slice::from_ref(&one.id)).unwrap();
    let mut out_id = Vec::new();
    write_save(&by_id, &mut out_id).unwrap();
    let m: Value = serde_json::from_slice(
        &entries_of(&out_id)
            .into_iter()
            .find(|e| e.0 == "manifest.json")
            .unwrap()
            .2,
    )
    .unwrap();
    assert_eq!(m[0]["RepoTags"], Value::Null);
    assert!(matches!(
        plan_save(&src, &["nosuch:latest".to_string()]),
        Err(ArchiveError::NoSuchImage(_))
    ));

    // Loaded elsewhere (gzip-compressed on the way): the same images, tags and files.
    let b = tempfile::tempdir().unwrap();
    let dst = ImageStore::open(b.path()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&out).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let loaded = load(&dst, io::Cursor::new(gz.finish().unwrap()), &|e| {
        seen.lock().unwrap().push(e)
    })
    .await
    .unwrap();
    assert_eq!(loaded.len(), 2);
    for img in [&one, &two] {
        let got = dst.get(&img.id).unwrap();
        assert_eq!(got.repo_tags, img.repo_tags);
        assert_eq!(got.diff_ids, img.diff_ids);
        assert_eq!(got.config, img.config);
        assert_eq!(
            fs::read(dst.rootfs(&img.id).join("bin/hello")).unwrap(),
            b"#!/bin/sh\necho hello\n"
        );
    }
    let seen = seen.into_inner().unwrap();
    assert!(seen.contains(&LoadEvent::Tagged("app:one".into())));
    assert!(seen.contains(&LoadEvent::Tagged("app:two".into())));
    assert!(seen
        .iter()
        .any(|e| matches!(e, LoadEvent::Layer { current, total, .. } if current == total)));
    assert!(!seen.iter().any(|e| matches!(e, LoadEvent::Untagged(_))));
    assert!(tmp_is_empty(b.path()));

    // Loading it again changes nothing; a tag taken from another image is reported.
    dst.tag(&one.id, &Reference::parse("app:two").unwrap())
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    load(&dst, io::Cursor::new(out.clone()), &|e| {
        seen.lock().unwrap().push(e)
    })
    .await
    .unwrap();
    assert!(seen.into_inner().unwrap().contains(&LoadEvent::Renamed {
        tag: "app:two".into(),
        old_id: one.id.clone()
    }));
    assert_eq!(dst.resolve("app:two").unwrap().id, two.id);
    assert_eq!(dst.list().len(), 2);

    // An untagged archive reports the ID.
    let c = tempfile::tempdir().unwrap();
    let third = ImageStore::open(c.path()).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    load(&third, io::Cursor::new(out_id), &|e| {
        seen.lock().unwrap().push(e)
    })
    .await
    .unwrap();
    assert!(seen
        .into_inner()
        .unwrap()
        .contains(&LoadEvent::Untagged(one.id.clone())));
    assert!(third.get(&one.id).unwrap().repo_tags.is_empty());
}

/// A docker 25+ archive: OCI layout plus a manifest.json naming blobs.
fn oci_variant(layer: &[u8], diff_id: &str, tag: &str) -> (Vec<u8>, String) {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": { "Cmd": ["/bin/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .unwrap();
    let config_hex = hex::encode(Sha256::digest(&config));
    let layer_hex = hex::encode(Sha256::digest(layer));
    let manifest = serde_json::to_vec(&json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": [tag],
        "Layers": [format!("blobs/sha256/{layer_hex}")],
    }]))
    .unwrap();
    let tar = tar_of(&[
        ("blobs/", None),
        ("blobs/sha256/", None),
        (&format!("blobs/sha256/{config_hex}"), Some(&config)),
        (&format!("blobs/sha256/{layer_hex}"), Some(layer)),
        ("index.json", Some(b"{}")),
        ("oci-layout", Some(b"{\"imageLayoutVersion\":\"1.0.0\"}")),
        ("manifest.json", Some(&manifest)),
    ]);
    (tar, format!("sha256:{config_hex}"))
}

#[tokio::test]
async fn load_reads_docker_25_archives_and_refuses_bad_ones_leaving_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let layer = rootfs_tar();
    let diff = sha256_digest(&layer);
    let (tar, id) = oci_variant(&layer, &diff, "oci:latest");
    let loaded = load(&store, io::Cursor::new(tar), &|_| {}).await.unwrap();
    assert_eq!(
        loaded,
        vec![LoadedImage {
            id: id.clone(),
            tags: vec!["oci:latest".into()]
        }]
    );
    let img = store.get(&id).unwrap();
    assert_eq!(img.layers, vec![diff.clone()], "stored as it came");
    assert!(store.rootfs(&id).join("etc/motd").exists());
    store.remove(&id).unwrap();
    assert_eq!(blob_count(dir.path()), 0);

    let refused = |tar: Vec<u8>| {
        let store = &store;
        async move {
            load(store, io::Cursor::new(tar), &|_| {})
                .await
                .unwrap_err()
                .to_string()
        }
    };
    // The layer is not what the config says.
    let other = sha256_digest(b"something else");
    let (tar, _) = oci_variant(&layer, &other, "bad:latest");
    assert_eq!(
        refused(tar).await,
        format!("invalid diffID for layer 0: expected {other:?}, got {diff:?}")
    );
    // Not a tar, too short to be one, truncated, no manifest.json.
    assert_eq!(
        refused(vec![b'x'; 2048]).await,
        "archive/tar: invalid tar header"
    );
    assert_eq!(refused(b"not a tar\n".to_vec()).await, "unexpected EOF");
    let (mut tar, _) = oci_variant(&layer, &diff, "cut:latest");
    tar.truncate(1800);
    let msg = refused(tar).await;
    assert!(msg == "unexpected EOF" || msg.starts_with("open "), "{msg}");
    assert_eq!(
        refused(rootfs_tar()).await,
        "open manifest.json: no such file or directory"
    );
    // A manifest naming a file outside the archive.
    let evil = tar_of(&[(
        "manifest.json",
        Some(br#"[{"Config":"../../etc/passwd","RepoTags":null,"Layers":[]}]"#),
    )]);
    assert_eq!(
        refused(evil).await,
        "open ../../etc/passwd: no such file or directory"
    );
    // A manifest.json past the size a manifest may have is not read into memory.
    let mut huge = b"[".to_vec();
    huge.resize(5 << 20, b' ');
    huge.push(b']');
    let huge = tar_of(&[("manifest.json", Some(&huge))]);
    assert_eq!(
        refused(huge).await,
        format!(
            "manifest.json is {} bytes, more than the 4194304 bytes allowed",
            (5 << 20) + 1
        )
    );
    assert!(store.list().is_empty());
    assert_eq!(blob_count(dir.path()), 0, "no blob left behind");
    assert!(tmp_is_empty(dir.path()));
    assert!(fs::read_dir(dir.path().join("images"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn names_resolve_as_dockerd_reads_them() {
    assert!(is_name_only("busybox"));
    assert!(is_name_only("127.0.0.1:5000/busybox"));
    assert!(!is_name_only("busybox:1"));
    assert!(!is_name_only("127.0.0.1:5000/busybox:1"));
    assert!(!is_name_only("busybox@sha256:abc"));
    let chains = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
    assert_eq!(chains[0], "sha256:a");
    assert_eq!(chains[1], sha256_digest(b"sha256:a sha256:b"));
    let ex = Extracted {
        dir: PathBuf::from("/x"),
        files: HashMap::new(),
        links: [
            ("b/layer.tar".to_string(), "a/layer.tar".to_string()),
            ("loop".to_string(), "loop".to_string()),
        ]
        .into(),
    };
    assert_eq!(ex.resolve("b/layer.tar").unwrap(), "a/layer.tar");
    assert_eq!(ex.resolve("./b/../b/layer.tar").unwrap(), "a/layer.tar");
    assert_eq!(ex.resolve("../../c").unwrap(), "c");
    assert!(ex.resolve("loop").is_err());
}
