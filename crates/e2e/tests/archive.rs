//! `docker save`, `docker load` and `docker import`: archives going both ways between a VCH
//! and a private dockerd (the Debian docker.io daemon), round trips on the VCH, and refusals
//! that leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use common::*;

fn docker_bin() -> String {
    std::env::var("VIC_DOCKER").expect("VIC_DOCKER is not set: run these tests with `make test`")
}

/// A fresh work directory for one test.
fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vic-archive-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("work dir");
    d
}

fn dockerd() -> Dockerd {
    Dockerd::start(Path::new(DEFAULT_DOCKERD), &[&registry()], &docker_bin())
        .expect("starting a private dockerd")
}

fn on(d: &Dockerd, args: &[&str]) -> Output {
    let mut c = d.docker(&docker_bin());
    c.args(args);
    run_limited(
        c,
        None,
        Duration::from_secs(180),
        &format!("dockerd: docker {args:?}"),
    )
}

fn on_ok(d: &Dockerd, args: &[&str]) -> String {
    let o = on(d, args);
    assert!(
        o.status.success(),
        "dockerd: docker {args:?} failed ({}): {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `cmd` with `file` on its stdin, within `limit`.
fn with_stdin(mut cmd: Command, file: &Path, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(std::fs::File::open(file).expect("stdin file"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning docker");
    let start = Instant::now();
    while child.try_wait().expect("waiting").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs a host tool, asserting success; returns stdout.
fn host(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn sha256_hex(file: &Path) -> String {
    host("sha256sum", &[file.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// One member of a tar archive, read with the host's tar.
fn tar_member(archive: &Path, member: &str) -> String {
    host("tar", &["-xOf", archive.to_str().unwrap(), member])
}

/// A root filesystem tarball made on the host: Debian's static busybox as /bin/busybox,
/// /bin/sh, /bin/echo and /bin/cat.
fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    for applet in ["sh", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/marker"), "from the host\n").unwrap();
    let out = dir.join("rootfs.tar");
    host(
        "tar",
        &[
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            out.to_str().unwrap(),
            ".",
        ],
    );
    out
}

fn image_id(name: &str) -> String {
    ok(&["image", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn save_on_vic_loads_into_dockerd_and_runs_there() {
    let reg = registry();
    let image = busybox();
    let tag = format!("{reg}/archive-out:{}", std::process::id());
    ok(&["tag", &image, &tag]);
    let id = image_id(&tag);
    let dir = work_dir("to-dockerd");
    let file = dir.join("saved.tar");

    let t = Instant::now();
    ok(&["save", "-o", file.to_str().unwrap(), &tag]);
    eprintln!(
        "docker save of busybox on vic: {:?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(&file).unwrap().len()
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_member(&file, "manifest.json")).expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([tag]));
    assert_eq!(
        manifest[0]["Config"].as_str().unwrap(),
        format!("{}.json", id.trim_start_matches("sha256:"))
    );
    // Each layer.tar is uncompressed: its digest is the layer's diff ID.
    let diff_ids = ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", &tag]);
    let diff_ids: Vec<String> = serde_json::from_str(diff_ids.trim()).unwrap();
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    host(
        "tar",
        &[
            "-xf",
            file.to_str().unwrap(),
            "-C",
            unpacked.to_str().unwrap(),
        ],
    );
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    for (l, d) in layers.iter().zip(&diff_ids) {
        let hex = sha256_hex(&unpacked.join(l.as_str().unwrap()));
        assert_eq!(format!("sha256:{hex}"), *d);
    }

    let d = dockerd();
    let t = Instant::now();
    let out = on_ok(&d, &["load", "-i", file.to_str().unwrap()]);
    eprintln!(
        "docker load of that archive on dockerd 20.10: {:?}",
        t.elapsed()
    );
    assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
    let there = on_ok(&d, &["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_eq!(there.trim(), id, "dockerd computes the same image ID");
    let marker = format!("saved-by-vic-{}", std::process::id());
    let run = on_ok(
        &d,
        &["run", "--rm", "--network", "none", &tag, "echo", &marker],
    );
    assert_eq!(run.trim(), marker);

    // By ID: the archive names no tag.
    let by_id = dir.join("by-id.tar");
    ok(&["save", "-o", by_id.to_str().unwrap(), &id]);
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_member(&by_id, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::Value::Null);

    let o = docker(&[
        "save",
        "-o",
        dir.join("none.tar").to_str().unwrap(),
        "nosuch:v0",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such image: nosuch:v0"),
        "{}",
        stderr(&o)
    );
    ok(&["rmi", &tag]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn save_on_dockerd_loads_into_vic_and_runs() {
    let reg = registry();
    let pid = std::process::id();
    let d = dockerd();
    let base = format!("{reg}/busybox:latest");
    on_ok(&d, &["pull", "-q", &base]);
    // An image made by dockerd itself: busybox plus a layer vic has never seen.
    let marker = format!("committed-on-dockerd-{pid}");
    let c = format!("archive-src-{pid}");
    on_ok(
        &d,
        &[
            "run",
            "--name",
            &c,
            "--network",
            "none",
            &base,
            "sh",
            "-c",
            &format!("echo {marker} > /marker"),
        ],
    );
    let committed = format!("vic-e2e/committed:{pid}");
    on_ok(&d, &["commit", &c, &committed]);
    on_ok(&d, &["rm", &c]);
    let committed_id = on_ok(&d, &["image", "inspect", "-f", "{{.Id}}", &committed])
        .trim()
        .to_string();
    let base_id = on_ok(&d, &["image", "inspect", "-f", "{{.Id}}", &base])
        .trim()
        .to_string();

    let dir = work_dir("from-dockerd");
    let file = dir.join("dockerd.tar");
    on_ok(
        &d,
        &["save", "-o", file.to_str().unwrap(), &base, &committed],
    );
    let t = Instant::now();
    let out = ok(&["load", "-i", file.to_str().unwrap()]);
    eprintln!(
        "docker load on vic of dockerd's archive ({} bytes, 2 images): {:?}",
        std::fs::metadata(&file).unwrap().len(),
        t.elapsed()
    );
    assert!(out.contains(&format!("Loaded image: {committed}")), "{out}");
    assert!(out.contains(&format!("Loaded image: {base}")), "{out}");
    assert_eq!(
        image_id(&committed),
        committed_id,
        "the same ID on both sides"
    );
    assert_eq!(image_id(&base), base_id, "the same ID on both sides");
    let run = ok(&["run", "--rm", &committed, "cat", "/marker"]);
    assert_eq!(run.trim(), marker);
    ok(&["rmi", &committed]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn save_rmi_load_gives_the_image_back() {
    let pid = std::process::id();
    let dir = work_dir("round-trip");
    let rootfs = rootfs_tar(&dir);
    let tag = format!("vic-e2e/round-trip:{pid}");
    let tag2 = format!("vic-e2e/round-trip:also-{pid}");
    ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/echo","round-trip"]"#,
        rootfs.to_str().unwrap(),
        &tag,
    ]);
    ok(&["tag", &tag, &tag2]);
    let id = image_id(&tag);
    let file = dir.join("rt.tar");
    let t = Instant::now();
    ok(&["save", "-o", file.to_str().unwrap(), &tag, &tag2]);
    let saved = t.elapsed();
    let manifest: serde_json::Value =
        serde_json::from_str(&tar_member(&file, "manifest.json")).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 1, "one image, two tags");

    let out = ok(&["rmi", &tag, &tag2]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(!docker(&["image", "inspect", &id]).status.success());

    let t = Instant::now();
    let out = ok(&["load", "-i", file.to_str().unwrap()]);
    eprintln!(
        "busybox-static round trip on vic: save {saved:?}, load {:?} ({} bytes)",
        t.elapsed(),
        std::fs::metadata(&file).unwrap().len()
    );
    assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
    assert!(out.contains(&format!("Loaded image: {tag2}")), "{out}");
    assert_eq!(image_id(&tag), id);
    let tags = ok(&["image", "inspect", "-f", "{{json .RepoTags}}", &id]);
    let mut tags: Vec<String> = serde_json::from_str(tags.trim()).unwrap();
    tags.sort();
    let mut want = vec![tag.clone(), tag2.clone()];
    want.sort();
    assert_eq!(tags, want);
    let run = ok(&["run", "--rm", &tag]);
    assert_eq!(run.trim(), "round-trip");

    // Loading again changes nothing.
    let out = ok(&["load", "-i", file.to_str().unwrap()]);
    assert!(out.contains(&format!("Loaded image: {tag}")), "{out}");
    assert_eq!(image_id(&tag), id);
    ok(&["rmi", &tag, &tag2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn import_a_rootfs_with_changes_and_run_it() {
    let pid = std::process::id();
    let dir = work_dir("import");
    let rootfs = rootfs_tar(&dir);
    let tag = format!("vic-e2e/imported:{pid}");
    let t = Instant::now();
    let out = ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/echo","imported"]"#,
        "--change",
        "ENV A=b",
        "--message",
        "made by the e2e tests",
        rootfs.to_str().unwrap(),
        &tag,
    ]);
    eprintln!(
        "docker import of a busybox-static rootfs: {:?}",
        t.elapsed()
    );
    let id = image_id(&tag);
    assert_eq!(out.trim(), id, "import prints the new image's ID");
    let run = ok(&["run", "--rm", &tag]);
    assert_eq!(run.trim(), "imported");
    let img = inspect(&tag);
    assert_eq!(img["Config"]["Env"], serde_json::json!(["A=b"]));
    assert_eq!(
        img["Config"]["Cmd"],
        serde_json::json!(["/bin/echo", "imported"])
    );
    assert_eq!(img["Comment"], "made by the e2e tests");
    assert_eq!(img["Architecture"], "amd64");
    assert_eq!(img["Os"], "linux");
    assert_eq!(img["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let history = ok(&["history", "--format", "{{.Comment}}", &tag]);
    assert_eq!(history.trim(), "made by the e2e tests");

    // From stdin, gzip-compressed, with a shell-form CMD and a WORKDIR.
    host("gzip", &["-k", rootfs.to_str().unwrap()]);
    let gz = dir.join("rootfs.tar.gz");
    let tag2 = format!("vic-e2e/imported-gz:{pid}");
    let mut cmd = docker_cmd();
    cmd.args([
        "import",
        "--change",
        "CMD echo shell-form in $(pwd)",
        "--change",
        "WORKDIR /etc",
        "-",
        &tag2,
    ]);
    let o = with_stdin(cmd, &gz, Duration::from_secs(180));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let img = inspect(&tag2);
    assert_eq!(
        img["Config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo shell-form in $(pwd)"])
    );
    let run = ok(&["run", "--rm", &tag2]);
    assert_eq!(run.trim(), "shell-form in /etc");
    let run = ok(&["run", "--rm", &tag2, "cat", "marker"]);
    assert_eq!(run.trim(), "from the host");

    // Refusals, in Docker's words.
    let o = docker(&[
        "import",
        "--change",
        "RUN true",
        rootfs.to_str().unwrap(),
        "vic-e2e/never:1",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run is not a valid change command"),
        "{}",
        stderr(&o)
    );
    let o = docker(&["import", "http://127.0.0.1:9/rootfs.tar", "vic-e2e/never:2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not supported"), "{}", stderr(&o));
    let junk = dir.join("junk");
    std::fs::write(&junk, vec![b'j'; 4096]).unwrap();
    let o = docker(&["import", junk.to_str().unwrap(), "vic-e2e/never:3"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("archive/tar: invalid tar header"),
        "{}",
        stderr(&o)
    );
    for t in ["vic-e2e/never:1", "vic-e2e/never:2", "vic-e2e/never:3"] {
        assert!(!docker(&["image", "inspect", t]).status.success());
    }
    ok(&["rmi", &tag, &tag2]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Files under `dir` (recursively), for "nothing was left" checks.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.push(p.clone());
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A one-image docker-archive made on the host: `layer` as its only layer, the
/// configuration claiming `diff_id`. Returns the archive and the image ID.
fn handmade_archive(
    dir: &Path,
    name: &str,
    layer: &Path,
    diff_id: &str,
    tag: &str,
) -> (PathBuf, String) {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("layer1")).unwrap();
    std::fs::copy(layer, root.join("layer1/layer.tar")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": { "Cmd": ["/bin/echo", "handmade"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let config_path = root.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let id = format!("sha256:{}", sha256_hex(&config_path));
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [tag],
        "Layers": ["layer1/layer.tar"],
    }]);
    std::fs::write(
        root.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join(format!("{name}.tar"));
    host(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "-cf",
            out.to_str().unwrap(),
            ".",
        ],
    );
    (out, id)
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn bad_archives_are_refused_and_leave_nothing() {
    // A VCH of its own, so that its store can be compared whole before and after.
    let name = format!("archive-bad-{}", std::process::id());
    let host_addr = create_vch(&name, &std::env::temp_dir().join(&name));
    let c = Client::new(
        &host_addr,
        std::env::temp_dir().join(&name).join("docker-config"),
    );
    let root = c.ok(&["info", "-f", "{{.DockerRootDir}}"]);
    let store = PathBuf::from(root.trim()).join("images");
    assert!(store.join("blobs/sha256").is_dir(), "{}", store.display());

    let dir = work_dir("bad");
    let rootfs = rootfs_tar(&dir);
    let good_diff = format!("sha256:{}", sha256_hex(&rootfs));
    let images_before = c.ok(&["images", "-a", "-q", "--no-trunc"]);
    let files_before = files_under(&store);
    let refused = |file: &Path, want: &str| {
        let o = c.run(&["load", "-i", file.to_str().unwrap()]);
        assert!(!o.status.success(), "{file:?} was loaded: {}", stdout(&o));
        assert!(
            stderr(&o).contains(want),
            "{file:?}: wanted {want:?} in {}",
            stderr(&o)
        );
        assert_eq!(c.ok(&["images", "-a", "-q", "--no-trunc"]), images_before);
        assert_eq!(files_under(&store), files_before, "{file:?} left something");
    };

    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "this is not a tar archive\n".repeat(100)).unwrap();
    refused(&junk, "archive/tar: invalid tar header");
    refused(&rootfs, "open manifest.json: no such file or directory");

    let wrong = format!("sha256:{}", "0".repeat(64));
    let (bad, bad_id) = handmade_archive(&dir, "mismatch", &rootfs, &wrong, "vic-e2e/bad:1");
    refused(
        &bad,
        &format!("invalid diffID for layer 0: expected \"{wrong}\", got \"{good_diff}\""),
    );
    assert!(!c.run(&["image", "inspect", &bad_id]).status.success());

    let (good, good_id) = handmade_archive(&dir, "good", &rootfs, &good_diff, "vic-e2e/good:1");
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("truncated.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&cut, "unexpected EOF");

    // The same archive whole loads: the refusals were about the defects.
    let out = c.ok(&["load", "-i", good.to_str().unwrap()]);
    assert!(out.contains("Loaded image: vic-e2e/good:1"), "{out}");
    assert_eq!(
        c.ok(&["image", "inspect", "-f", "{{.Id}}", "vic-e2e/good:1"])
            .trim(),
        good_id
    );
    let run = c.ok(&["run", "--rm", "vic-e2e/good:1"]);
    assert_eq!(run.trim(), "handmade");

    delete_vch(&name);
    let _ = std::fs::remove_dir_all(&dir);
}
