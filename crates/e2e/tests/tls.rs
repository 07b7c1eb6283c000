//! TLS for the Docker API, as a user meets it through vic-machine create and the real
//! docker CLI: mutual TLS by default, `--tls-ca`, `--tls-server-cert`, `--no-tlsverify` and
//! `--no-tls`. Changing them with configure is in `tls_configure.rs`.

mod common;
mod machine;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use machine::certs::TestCa;
use machine::*;

fn mode(path: &str) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn tlsverify_is_the_default_and_admits_only_clients_with_its_certificates() {
    let vch = TestVch::create("tls-verify", &["--insecure-registry", &registry()]);
    let (ca, cert, key) = (
        vch.file("ca.pem"),
        vch.file("cert.pem"),
        vch.file("key.pem"),
    );
    assert!(
        vch.stdout.contains(&format!(
            "docker -H {} --tlsverify --tlscacert=\"{ca}\" --tlscert=\"{cert}\" --tlskey=\"{key}\" info",
            vch.addr()
        )),
        "{}",
        vch.stdout
    );
    for f in ["ca-key.pem", "key.pem", "server-key.pem"] {
        assert_eq!(mode(&vch.file(f)), 0o600, "{f} is private");
    }
    assert!(std::path::Path::new(&vch.file("server-cert.pem")).is_file());
    let env = vch.env_file(&vch.dir());
    let dir = vch.dir().canonicalize().unwrap().display().to_string();
    assert_eq!(
        env,
        vec![
            ("DOCKER_HOST".into(), format!("tcp://{}", vch.addr())),
            ("DOCKER_TLS_VERIFY".into(), "1".into()),
            ("DOCKER_CERT_PATH".into(), dir),
        ]
    );
    assert_eq!(record(&vch.name)["tls"], "tlsverify");
    assert!(ls_line(&vch.name).contains(" tlsverify "));

    // The printed command works.
    let info = assert_ok(
        &vch.docker_tls(&ca, &cert, &key, &["info"]),
        "docker --tlsverify info",
    );
    assert!(info.contains(&format!("Name: {}", vch.name)), "{info}");

    // So do the env file's variables, for pulls and for attach (a hijacked connection).
    let image = format!("{}/busybox", registry());
    assert_ok(&vch.docker_env(&vch.dir(), &[], &["pull", &image]), "pull");
    let out = vch.docker_env(&vch.dir(), &[], &["run", "--rm", &image, "echo", "hi"]);
    assert_eq!(assert_ok(&out, "docker run over TLS").trim(), "hi");

    // Without a client certificate, with one of another CA, or without TLS: refused.
    let o = vch.docker(&["--tlsverify", "--tlscacert", &ca], &["info"]);
    assert_refused(&o, "a client without a certificate", "certificate required");
    let other = TestCa::new("another CA");
    let (_, ocert, okey) = other.write(&vch.work, "other", true);
    let o = vch.docker_tls(&ca, &ocert, &okey, &["info"]);
    assert_refused(&o, "a certificate of another CA", "remote error: tls:");
    let o = vch.docker(&[], &["info"]);
    assert_refused(
        &o,
        "plain HTTP",
        "Client sent an HTTP request to an HTTPS server.",
    );

    // The appliance's copies are private too.
    let root = PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    let certs = root.join("vch").join(&vch.name).join("certs");
    for f in ["server-key.pem", "ca-key.pem"] {
        assert_eq!(mode(&certs.join(f).display().to_string()), 0o600, "{f}");
    }
}

#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn a_second_create_reuses_the_ca_and_client_certificate_it_finds() {
    let mut first = TestVch::create("tls-reuse", &[]);
    let dir = first.dir();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let (ca, cert, server) = (read("ca.pem"), read("cert.pem"), read("server-cert.pem"));
    let (name, work) = (first.name.clone(), first.work.0.clone());
    first.delete();
    std::mem::forget(first); // its working directory, with the certificates, stays

    let again = TestVch::create_in(&name, Workdir(work), &[]);
    assert!(again.stdout.contains("Loaded CA from"), "{}", again.stdout);
    assert!(
        again.stdout.contains("Loaded client certificate from"),
        "{}",
        again.stdout
    );
    assert_eq!(read("ca.pem"), ca);
    assert_eq!(read("cert.pem"), cert);
    assert_ne!(read("server-cert.pem"), server, "a new server certificate");
    let o = again.docker_env(&again.dir(), &[], &["info"]);
    assert_ok(
        &o,
        "docker info with the client certificate of the first create",
    );
}

#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn tls_ca_admits_client_certificates_of_that_authority_only() {
    let work = std::env::temp_dir().join(format!("tls-ca-files-{}", std::process::id()));
    let mine = TestCa::new("operator CA");
    let (my_ca, my_cert, my_key) = mine.write(&work, "mine", true);
    let vch = TestVch::create("tls-ca", &["--tls-ca", &my_ca]);
    assert!(
        !vch.dir().join("cert.pem").exists(),
        "no client certificate is made with --tls-ca"
    );
    assert!(
        vch.stdout.contains("YOUR-CLIENT-CERT.pem"),
        "{}",
        vch.stdout
    );
    let ca = vch.file("ca.pem");
    let o = vch.docker_tls(&ca, &my_cert, &my_key, &["info"]);
    assert_ok(&o, "docker with a client certificate of --tls-ca");

    let other = TestCa::new("another CA");
    let (_, ocert, okey) = other.write(&work, "other", true);
    let o = vch.docker_tls(&ca, &ocert, &okey, &["info"]);
    assert_refused(&o, "a certificate of another CA", "remote error: tls:");
    let o = vch.docker(&["--tlsverify", "--tlscacert", &ca], &["info"]);
    assert_refused(&o, "no certificate", "certificate required");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn a_server_certificate_of_your_own_is_served() {
    let work = std::env::temp_dir().join(format!("tls-server-files-{}", std::process::id()));
    let mine = TestCa::new("operator CA");
    let (my_ca, server_cert, server_key) = mine.write(&work, "server", false);
    let vch = TestVch::create(
        "tls-srv",
        &[
            "--tls-server-cert",
            &server_cert,
            "--tls-server-key",
            &server_key,
        ],
    );
    assert!(!vch.dir().join("server-cert.pem").exists());
    let (cert, key) = (vch.file("cert.pem"), vch.file("key.pem"));
    let o = vch.docker_tls(&my_ca, &cert, &key, &["info"]);
    assert_ok(&o, "docker verifying the operator's server certificate");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn no_tlsverify_serves_tls_to_clients_without_certificates() {
    let work = std::env::temp_dir().join(format!("tls-kv-{}", std::process::id()));
    let certs = work.join("elsewhere");
    let vch = TestVch::create(
        "tls-kv",
        &["--no-tlsverify", "--tls-cert-path", certs.to_str().unwrap()],
    );
    assert!(certs.join("ca.pem").is_file(), "--tls-cert-path is used");
    assert!(!certs.join("cert.pem").exists(), "no client certificate");
    assert!(
        !vch.dir().exists(),
        "nothing in ./NAME with --tls-cert-path"
    );
    let env = vch.env_file(&certs);
    assert!(
        !env.iter().any(|(k, _)| k == "DOCKER_TLS_VERIFY"),
        "{env:?}"
    );
    assert_eq!(record(&vch.name)["tls"], "no-tlsverify");
    assert!(ls_line(&vch.name).contains(" tls "));

    assert_ok(
        &vch.docker_env(&certs, &["--tls"], &["info"]),
        "docker --tls info",
    );
    let ca = certs.join("ca.pem").display().to_string();
    let o = vch.docker(&["--tlsverify", "--tlscacert", &ca], &["info"]);
    assert_ok(
        &o,
        "docker verifying the server, without a client certificate",
    );
    let o = vch.docker(&[], &["info"]);
    assert_refused(
        &o,
        "plain HTTP",
        "Client sent an HTTP request to an HTTPS server.",
    );

    // A client that never completes its handshake holds neither the server nor, past the
    // handshake timeout, its connection; garbage costs only its own connection.
    let mut silent = TcpStream::connect(("127.0.0.1", vch.port)).unwrap();
    let mut garbage = TcpStream::connect(("127.0.0.1", vch.port)).unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .unwrap();
    assert_ok(
        &vch.docker_env(&certs, &["--tls"], &["info"]),
        "info beside a stalled client",
    );
    // The server's 10 s handshake limit closes it; a read that times out at 30 s instead
    // means the connection was kept.
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 16];
    match silent.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a silent client"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("a silent client was kept past the handshake limit: {e}"),
    }
    assert_ok(&vch.docker_env(&certs, &["--tls"], &["info"]), "info after");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn no_tls_serves_plain_http() {
    let vch = TestVch::create("tls-plain", &["--no-tls"]);
    let env = vch.env_file(&vch.dir());
    assert_eq!(
        env,
        vec![("DOCKER_HOST".into(), format!("tcp://{}", vch.addr()))]
    );
    assert!(!vch.dir().join("ca.pem").exists(), "no certificates");
    assert_eq!(record(&vch.name)["tls"], "no-tls");
    assert!(ls_line(&vch.name).contains(" none "));
    assert_ok(&vch.docker(&[], &["info"]), "plain docker info");
}

/// Runs create with `args`, expecting it to fail before making anything.
fn refused_create(tag: &str, args: &[&str]) -> String {
    let name = format!("tls-bad-{tag}-{}", std::process::id());
    let work = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&work).unwrap();
    let o = vic_machine()
        .current_dir(&work)
        .args(["create", "--target", "local", "--name", &name])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "create {args:?} succeeded: {text}");
    let root = PathBuf::from(std::env::var("VIC_STATE_ROOT").unwrap());
    assert!(
        !root.join("vch").join(&name).exists(),
        "half a VCH left: {text}"
    );
    assert!(!work.join(&name).exists(), "certificates left: {text}");
    let _ = std::fs::remove_dir_all(&work);
    text
}

#[test]
#[ignore = "needs the built binaries: make test runs it"]
fn bad_tls_inputs_fail_create_with_a_clear_message_and_leave_nothing() {
    let text = refused_create(
        "unreadable",
        &[
            "--tls-server-cert",
            "/nonexistent/server-cert.pem",
            "--tls-server-key",
            "/nonexistent/server-key.pem",
        ],
    );
    assert!(
        text.contains("Failed to load --tls-server-cert /nonexistent/server-cert.pem: No such file or directory"),
        "{text}"
    );

    let work = std::env::temp_dir().join(format!("tls-bad-files-{}", std::process::id()));
    let ca = TestCa::new("operator CA");
    let (_, cert_a, _) = ca.write(&work, "a", false);
    let (_, _, key_b) = ca.write(&work, "b", false);
    let text = refused_create(
        "mismatch",
        &["--tls-server-cert", &cert_a, "--tls-server-key", &key_b],
    );
    assert!(
        text.contains("does not go with --tls-server-cert"),
        "{text}"
    );
    let text = refused_create("notca", &["--tls-ca", &key_b]);
    assert!(
        text.contains("Failed to load authority from file"),
        "{text}"
    );

    let text = refused_create("conflict", &["--no-tls", "--tls-ca", &cert_a]);
    assert!(
        text.contains("--tls-ca conflicts with --no-tls: client certificates need TLS"),
        "{text}"
    );
    let text = refused_create("kvca", &["--no-tlsverify", "--tls-ca", &cert_a]);
    assert!(
        text.contains("--tls-ca conflicts with --no-tlsverify"),
        "{text}"
    );
    let text = refused_create("half", &["--tls-server-cert", &cert_a]);
    assert!(
        text.contains("--tls-server-cert and --tls-server-key must be given together"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
