//! Certificates on a vSphere VCH (vcsim, the vCenter model, with real guests), as the real
//! docker CLI and openssl see them. The registry CA bundle (`--registry-ca`) given to create
//! and to configure, and rolled back; the Docker API's certificates changed with configure:
//! `--tls-cname` (a new server certificate from the same CA; clients keep working),
//! `--no-tlsverify` into a new certificate directory, and `--rollback`. The appliance's side
//! is in its VM's guestinfo (read with govc): the certificate served, its key sealed, the
//! registry CAs. The VCH's admin pages, with the same certificates, let in its client
//! certificate. A container runs throughout.

mod common;
mod machine;

use std::path::Path;
use std::process::Output;

use base64::Engine;
use common::vsphere::{create_args, docker, machine_at};
use common::{curl, registry, stderr, stdout, vic_log_line};
use machine::certs::{fingerprint, served_certificate, subject_alt_names};
use vcsim::Vcsim;

fn machine(sim: &Vcsim, command: &str, args: &[&str]) -> Output {
    machine_at(sim, "tls1", "/DC0", command, args)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The appliance VM's guestinfo value `key` (its last setting), decoded; empty if it has none.
fn guestinfo(sim: &Vcsim, key: &str) -> String {
    let vm = sim.govc(&["find", "-i", "/DC0", "-type", "m", "-name", "tls1"]);
    let extra = sim.govc_json(&["object.collect", "-json", vm.trim(), "config.extraConfig"]);
    let list = extra[0]["Val"]["OptionValue"].as_array().cloned();
    let value = (list.unwrap_or_default().iter().rev())
        .find(|o| o["Key"] == key)
        .and_then(|o| o["Value"].as_str().map(str::to_string))
        .unwrap_or_default();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&value);
    String::from_utf8_lossy(&raw.unwrap_or_default()).into_owned()
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (make test sets it)"))
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}{}", stdout(o), stderr(o));
    stdout(o)
}

/// The admin pages `create` printed: served with the VCH's certificate, the VCH's client
/// certificate let in, a browser without one sent to log in; `inspect` says where they are.
fn check_admin_pages(sim: &Vcsim, created: &str, dir: &Path) {
    let base = admin_base(created);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let file = |f: &str| dir.join(f).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("cert.pem"), file("key.pem"));
    let (code, page) = curl(
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
        &format!("{base}/"),
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("tls1") && page.contains("Summary"), "{page}");
    let (code, _) = curl(&["--cacert", &ca], &format!("{base}/"));
    assert_eq!(code, 303, "no certificate: to the login page");
    let out = ok(&machine(sim, "inspect", &[]), "inspect");
    assert!(out.contains(&base), "{out}");
    // `debug --bundle` fetches the same bundle the pages give, with the client certificate.
    let file = dir.with_extension("logs.tar.gz");
    let file_arg = file.display().to_string();
    let out = ok(
        &machine(sim, "debug", &["--bundle", &file_arg]),
        "debug --bundle",
    );
    assert!(out.contains("Log bundle of VCH tls1 written to"), "{out}");
    let listed = std::process::Command::new("tar")
        .args(["-tzf", &file_arg])
        .output()
        .unwrap();
    let names = stdout(&listed);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(names.lines().any(|n| n == "manifest.txt"), "{names}");

    // An operator set by configure logs in with the password; its hash is sealed in
    // guestinfo, never there in clear.
    let password = "a long operator passphrase";
    let out = ok(
        &machine(
            sim,
            "configure",
            &["--ops-user", "ops", "--ops-password", password],
        ),
        "configure --ops-user",
    );
    assert!(out.contains("Completed successfully"), "{out}");
    let config = guestinfo(sim, "guestinfo.vic.config");
    assert!(config.contains("\"ops_user\":\"ops\""), "{config}");
    assert!(!config.contains("pbkdf2"), "the hash is sealed: {config}");
    let base = admin_base(&ok(&machine(sim, "inspect", &[]), "inspect"));
    let jar = dir.with_extension("cookies").display().to_string();
    let login = |pw: &str| {
        let pw = format!("password={pw}");
        let args = [
            "--cacert",
            &ca,
            "-c",
            &jar,
            "--data-urlencode",
            "username=ops",
            "--data-urlencode",
            &pw,
        ];
        curl(&args, &format!("{base}/authentication")).0
    };
    assert_eq!(login("wrong"), 401);
    assert_eq!(login(password), 303);
    let (code, page) = curl(&["--cacert", &ca, "-b", &jar], &format!("{base}/"));
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Summary"), "{page}");
}

/// The admin pages' address in vic-machine's output (the line after "VCH Admin Portal:").
fn admin_base(out: &str) -> String {
    let messages: Vec<&str> = (out.lines())
        .filter_map(|l| Some(vic_log_line(l)?.1))
        .collect();
    let at = messages.iter().position(|m| *m == "VCH Admin Portal:");
    at.and_then(|i| messages.get(i + 1))
        .unwrap_or_else(|| panic!("no admin portal in the output: {out}"))
        .to_string()
}

#[test]
#[ignore = "needs vcsim, govc, QEMU, openssl, the test registry and the docker CLI: make test runs it"]
fn tls_changes_reach_the_appliance_vm_and_roll_back() {
    let sim = Vcsim::start_with_guests(false);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("tls1");
    let reg = registry();
    let args = create_args(&reg, &dir, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let created = ok(&machine(&sim, "create", &args), "create");
    check_admin_pages(&sim, &created, &dir);
    let env = dir.join("tls1.env");
    let addr = (read(&env).lines())
        .find_map(|l| l.strip_prefix("DOCKER_HOST=tcp://"))
        .unwrap()
        .to_string();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let client = Some((cert.to_str().unwrap(), key.to_str().unwrap()));
    let served = || served_certificate(&addr, client);
    assert_eq!(
        fingerprint(&served()),
        fingerprint(&read(&dir.join("server-cert.pem")))
    );
    let image = format!("{reg}/busybox");
    ok(
        &docker(&env, &["run", "-d", "--name", "c1", &image, "sleep", "600"]),
        "run",
    );
    let c1_runs = |when: &str| {
        let o = docker(&env, &["exec", "c1", "echo", "still here"]);
        assert_eq!(ok(&o, when), "still here\n", "{when}");
    };

    // A registry whose certificate a private CA signed: refused, trusted once configure
    // gives the CA, refused again after the rollback.
    let (private, ca) = (
        var("VIC_TEST_REGISTRY_TLS"),
        var("VIC_TEST_REGISTRY_TLS_CA"),
    );
    let private_image = format!("{private}/busybox");
    let pull = || docker(&env, &["pull", &private_image]);
    let unknown = "x509: certificate signed by unknown authority";
    assert!(stderr(&pull()).contains(unknown), "{}", stderr(&pull()));
    let out = ok(
        &machine(&sim, "configure", &["--registry-ca", &ca]),
        "configure --registry-ca",
    );
    assert!(
        out.contains("Registry CA: replaced by --registry-ca"),
        "{out}"
    );
    assert!(guestinfo(&sim, "guestinfo.vic.registry_ca").contains("BEGIN CERTIFICATE"));
    ok(&pull(), "a pull trusting the private CA");
    ok(&machine(&sim, "configure", &["--rollback"]), "rollback");
    assert_eq!(guestinfo(&sim, "guestinfo.vic.registry_ca"), "");
    assert!(stderr(&pull()).contains(unknown), "{}", stderr(&pull()));
    c1_runs("after the registry CA's rollback");
    // Given to create, it is trusted from the start.
    let dir2 = work.path().join("tls2");
    let args = create_args(&reg, &dir2, &["--registry-ca", &ca]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(
        &machine_at(&sim, "tls2", "/DC0", "create", &args),
        "create tls2",
    );
    let o = docker(&dir2.join("tls2.env"), &["pull", &private_image]);
    ok(&o, "a pull from a VCH created with --registry-ca");
    let o = machine_at(&sim, "tls2", "/DC0", "delete", &["--force"]);
    ok(&o, "delete tls2");

    // --tls-cname: a new server certificate from the same CA, in guestinfo and in the
    // certificate directory; the env file's client keeps working.
    let o = machine(&sim, "configure", &["--tls-cname", "vch.example.test"]);
    let out = ok(&o, "configure --tls-cname");
    assert!(
        out.contains("Server certificate: generated for 127.0.0.1, localhost and vch.example.test"),
        "{out}"
    );
    let now = served();
    assert!(
        subject_alt_names(&now).contains("DNS:vch.example.test"),
        "{}",
        subject_alt_names(&now)
    );
    assert_eq!(
        fingerprint(&now),
        fingerprint(&read(&dir.join("server-cert.pem")))
    );
    assert_eq!(
        fingerprint(&guestinfo(&sim, "guestinfo.vic.tls.cert")),
        fingerprint(&now)
    );
    let sealed = guestinfo(&sim, "guestinfo.vic.secret.tls_key");
    assert!(!sealed.is_empty() && !sealed.contains("PRIVATE KEY"));
    c1_runs("after --tls-cname");

    // --no-tlsverify into a new directory: any client over TLS; the files and env there.
    let moved = work.path().join("moved");
    let o = machine(
        &sim,
        "configure",
        &["--no-tlsverify", "--tls-cert-path", moved.to_str().unwrap()],
    );
    let out = ok(&o, "configure --no-tlsverify");
    assert!(out.contains("Docker API TLS: tlsverify -> tls"), "{out}");
    let moved_env = moved.join("tls1.env");
    assert!(!read(&moved_env).contains("DOCKER_TLS_VERIFY"));
    assert_eq!(guestinfo(&sim, "guestinfo.vic.tls.client_cas"), "");
    // `docker --tls` wants a ca.pem where it looks, and takes a certificate it finds there.
    let no_cert = work.path().join("no-client-cert");
    std::fs::create_dir(&no_cert).unwrap();
    std::fs::copy(moved.join("ca.pem"), no_cert.join("ca.pem")).unwrap();
    let plain_tls = |args: &[&str]| {
        let mut cmd = common::docker_at(&format!("tcp://{addr}"));
        cmd.arg("--tls").args(args);
        cmd.env("DOCKER_CERT_PATH", &no_cert);
        cmd.output().unwrap()
    };
    ok(&plain_tls(&["version"]), "a client without a certificate");
    ok(
        &docker(&moved_env, &["--tls", "exec", "c1", "true"]),
        "the new env file",
    );
    let out = ok(&machine(&sim, "inspect", &[]), "inspect");
    assert!(out.contains("TLS without client verification"), "{out}");

    // --rollback: client verification again, the new directory's files gone.
    let out = ok(&machine(&sim, "configure", &["--rollback"]), "rollback");
    assert!(out.contains("Completed successfully"), "{out}");
    let o = plain_tls(&["version"]);
    assert!(!o.status.success(), "a client without a certificate got in");
    assert!(!moved_env.exists(), "the new directory's env file is gone");
    assert_ne!(guestinfo(&sim, "guestinfo.vic.tls.client_cas"), "");
    c1_runs("after the rollback");
    let o = machine(&sim, "configure", &["--rollback"]);
    assert!(!o.status.success(), "a second rollback");
    ok(&machine(&sim, "delete", &["--force"]), "delete");
}
