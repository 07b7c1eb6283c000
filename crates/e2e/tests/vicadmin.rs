//! The VCH Admin pages as an operator meets them: in real headless Chromium (log in, the
//! summary, a container's output followed live, the log bundle downloaded and opened, log
//! out), and with curl for client certificates (the VCH's own let in, none sent to log in,
//! another authority's refused in the handshake). Screenshots of each page go to
//! `build/artifacts/vicadmin/`.

mod browser;
mod common;
mod machine;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use browser::Browser;
use common::*;
use machine::certs::TestCa;
use machine::*;

const PASSWORD: &str = "s3cret pass";

fn artifacts() -> PathBuf {
    build_dir().join("artifacts").join("vicadmin")
}

fn admin_url(name: &str) -> String {
    let port = record(name)["admin_port"]
        .as_u64()
        .expect("the VCH record names its admin port");
    format!("https://127.0.0.1:{port}")
}

/// The names in the `.tar.gz` `file`, or what its member `member` holds.
fn tar(file: &Path, member: Option<&str>) -> String {
    let mut c = Command::new("tar");
    match member {
        None => c.arg("-tzf").arg(file),
        Some(m) => c.arg("-xzOf").arg(file).arg(m),
    };
    let o = c.output().unwrap();
    assert!(o.status.success(), "tar {member:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Checks a log bundle: the appliance's log whole, the container's console, the
/// configuration with the password's hash redacted.
fn check_bundle(file: &Path, container: &str) {
    let names = tar(file, None);
    for n in [
        "appliance.log",
        "init.log",
        "appliance.json",
        "vch.json",
        "manifest.txt",
    ] {
        assert!(names.lines().any(|l| l == n), "{n} in {names}");
    }
    let console = format!("containers/{container}/console.log");
    assert!(names.lines().any(|l| l == console), "{console} in {names}");
    let manifest = tar(file, Some("manifest.txt"));
    assert!(
        manifest.starts_with("vic log bundle") && manifest.contains("appliance.log: whole"),
        "{manifest}"
    );
    let log = tar(file, Some("appliance.log"));
    assert!(log.contains("VCH Admin listening"), "{log}");
    let doc = tar(file, Some("vch.json"));
    assert!(doc.contains("\"ops_user\": \"ops\""), "{doc}");
    assert!(
        doc.contains("\"ops_password_hash\": \"[redacted]\"") && !doc.contains("pbkdf2"),
        "{doc}"
    );
}

#[test]
#[ignore = "needs QEMU, Chromium, the test registry and the docker CLI: make test runs it"]
fn an_operator_logs_in_follows_a_containers_output_and_takes_the_log_bundle() {
    let vch = OwnVch::create("admin", &["--ops-user", "ops", "--ops-password", PASSWORD]);
    let base = admin_url(&vch.name);
    let shots = artifacts();
    let b = Browser::start();

    // Not logged in: every page sends the browser to the login form.
    // (Waited for: chromedriver may answer a navigation before its redirect is followed.)
    b.goto(&format!("{base}/logs"));
    b.wait_url("/authentication");
    b.screenshot(&shots.join("login.png"));
    b.type_in("#username", "ops");
    b.type_in("#password", "wrong");
    b.click("#login");
    b.wait_for("#error");
    assert_eq!(b.text("#error"), "Wrong user name or password.");
    b.screenshot(&shots.join("login-refused.png"));
    b.goto(&format!("{base}/"));
    b.wait_url("/authentication");

    b.type_in("#username", "ops");
    b.type_in("#password", PASSWORD);
    b.click("#login");
    b.wait_for("#bundle");
    assert_eq!(b.url(), format!("{base}/"));
    let summary = b.source();
    for want in [
        vch.name.as_str(),
        "✔ answering on",
        "Container VMs",
        "API answers",
    ] {
        assert!(summary.contains(want), "{want} in the summary:\n{summary}");
    }
    b.screenshot(&shots.join("summary.png"));

    // A container's output, followed: a line written after the page opened appears.
    let script = "echo started; while true; do if [ -f /go ]; then echo written-after-open; rm /go; fi; sleep 0.2; done";
    vch.client.ok(&[
        "run", "-d", "--name", "talker", &vch.image, "sh", "-c", script,
    ]);
    let id = vch.client.ok(&["inspect", "-f", "{{.Id}}", "talker"]);
    let id = id.trim();
    b.goto(&format!("{base}/logs"));
    b.screenshot(&shots.join("logs.png"));
    b.click(&format!("#log-output-{id}"));
    b.wait_for("#follow");
    eventually("the output's first line", Duration::from_secs(30), || {
        b.text("#log").contains("started").then_some(())
    });
    assert_eq!(b.text("#state"), "following");
    assert!(!b.text("#log").contains("written-after-open"));
    vch.client.ok(&["exec", "talker", "touch", "/go"]);
    eventually(
        "the line written after the page opened",
        Duration::from_secs(30),
        || b.text("#log").contains("written-after-open").then_some(()),
    );
    b.screenshot(&shots.join("log-followed.png"));
    b.goto(&format!("{base}/logs/appliance"));
    eventually("the appliance's log", Duration::from_secs(30), || {
        b.text("#log").contains("VCH Admin listening").then_some(())
    });
    b.screenshot(&shots.join("log-appliance.png"));

    // The bundle, downloaded by the browser and opened.
    b.goto(&format!("{base}/"));
    b.click("#bundle");
    let file = eventually("the bundle's download", Duration::from_secs(60), || {
        let entries = std::fs::read_dir(&b.downloads).ok()?;
        entries
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
    });
    check_bundle(&file, id);

    b.click("#logout");
    b.wait_url("/authentication");
    // From elsewhere, so that arriving at the login form is this navigation's doing.
    b.goto("about:blank");
    b.wait_url("about:blank");
    b.goto(&format!("{base}/"));
    b.wait_url("/authentication");
    vch.client.ok(&["rm", "-f", "talker"]);
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn client_certificates_of_the_vchs_authority_get_in_and_the_operator_set_by_configure_too() {
    let vch = TestVch::create("admin-tls", &["--insecure-registry", &registry()]);
    let base = admin_url(&vch.name);
    let messages: Vec<&str> = (vch.stdout.lines())
        .filter_map(|l| Some(vic_log_line(l)?.1))
        .collect();
    assert!(
        messages
            .windows(2)
            .any(|w| w == ["VCH Admin Portal:", base.as_str()]),
        "{}",
        vch.stdout
    );
    let inspect = vch.machine_ok("inspect", &[]);
    assert!(inspect.contains(&base), "{inspect}");
    let (ca, cert, key) = (
        vch.file("ca.pem"),
        vch.file("cert.pem"),
        vch.file("key.pem"),
    );

    // The VCH's client certificate: in, and the server is the VCH's (checked with its CA).
    let (code, page) = curl(
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
        &format!("{base}/"),
    );
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&vch.name) && page.contains("Summary"),
        "{page}"
    );
    // No certificate: to the login form, which says password login is off.
    let (code, _) = curl(&["--cacert", &ca], &format!("{base}/"));
    assert_eq!(code, 303);
    let (code, page) = curl(&["--cacert", &ca], &format!("{base}/authentication"));
    assert_eq!(code, 200);
    assert!(page.contains("id=\"no-password\""), "{page}");
    let (code, _) = curl(
        &["--cacert", &ca, "-d", "username=ops&password=x"],
        &format!("{base}/authentication"),
    );
    assert_eq!(code, 401);
    // Another authority's certificate: refused in the handshake.
    let other = TestCa::new("another CA");
    let (_, ocert, okey) = other.write(&vch.work, "other", true);
    let (code, _) = curl(
        &["--cacert", &ca, "--cert", &ocert, "--key", &okey],
        &format!("{base}/"),
    );
    assert_eq!(code, 0, "no answer over a refused handshake");

    // configure gives it an operator: the password logs in (a session cookie).
    let out = vch.machine_ok(
        "configure",
        &["--ops-user", "ops", "--ops-password", PASSWORD],
    );
    assert!(out.contains("Operations user: none -> ops"), "{out}");
    let base = admin_url(&vch.name);
    let jar = vch.work.join("cookies");
    let jar = jar.to_str().unwrap();
    let (code, _) = curl(
        &[
            "--cacert",
            &ca,
            "-c",
            jar,
            "--data-urlencode",
            "username=ops",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
        ],
        &format!("{base}/authentication"),
    );
    assert_eq!(code, 303);
    let cookies = std::fs::read_to_string(jar).unwrap();
    assert!(
        cookies.contains("#HttpOnly_") && cookies.contains("vicadmin-session"),
        "{cookies}"
    );
    let (code, page) = curl(&["--cacert", &ca, "-b", jar], &format!("{base}/logs"));
    assert_eq!(code, 200);
    assert!(
        page.contains("log-appliance") && page.contains("log-vic-init"),
        "{page}"
    );

    // ls and inspect as JSON: where the pages are, who may log in, never the password.
    let j: serde_json::Value =
        serde_json::from_str(&vch.machine_ok("inspect", &["--output", "json"])).unwrap();
    assert_eq!(j["name"], vch.name.as_str());
    assert_eq!(j["admin_portal"], base.as_str());
    assert_eq!(
        (j["tls"].as_str(), j["ops_user"].as_str()),
        (Some("tlsverify"), Some("ops"))
    );
    assert!(!j.to_string().contains("pbkdf2"), "{j}");
    let ls: serde_json::Value = serde_json::from_str(&machine_ok(&[
        "ls", "--target", "local", "--output", "json",
    ]))
    .unwrap();
    let mine = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == vch.name.as_str());
    assert_eq!(mine.expect("the VCH in ls")["state"], "running", "{ls}");

    // vic-machine debug --bundle: the same bundle from the command line.
    let image = format!("{}/busybox", registry());
    let tls = [
        "--tlsverify",
        "--tlscacert",
        &ca,
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
    ];
    assert_ok(&vch.docker(&tls, &["pull", &image]), "pull");
    let id = assert_ok(
        &vch.docker(&tls, &["run", "-d", &image, "sleep", "600"]),
        "run",
    );
    let file = vch.work.join("bundle.tar.gz");
    let out = vch.machine_ok("debug", &["--bundle", file.to_str().unwrap()]);
    assert!(out.contains("Log bundle of VCH"), "{out}");
    check_bundle(&file, id.trim());
    assert_eq!(
        vch.record()["debug"],
        0,
        "--bundle alone changes no debug level"
    );
}
