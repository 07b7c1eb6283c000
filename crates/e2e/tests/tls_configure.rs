//! Certificates changed with `vic-machine configure` on a running VCH, as the real docker CLI
//! and openssl see them: `--tls-ca`, `--tls-server-cert/--tls-server-key`, `--tls-cname`,
//! `--no-tlsverify`, `--tls-cert-path`, bad input, and `--rollback`. A container started
//! before keeps running through each (the same QEMU process).

mod common;
mod machine;

use std::process::Output;

use common::*;
use machine::certs::{fingerprint, issuer, served_certificate, subject_alt_names, TestCa};
use machine::*;

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn appliance_pid(vch: &TestVch) -> String {
    read(
        &vch_dir(&vch.name)
            .join("appliance.pid")
            .display()
            .to_string(),
    )
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn configure_tls_ca_admits_the_new_authority_only_and_rollback_brings_the_old_back() {
    let vch = TestVch::create("tcca", &["--insecure-registry", &registry()]);
    let dir = vch.dir();
    let (ca, old_cert, old_key) = (
        vch.file("ca.pem"),
        vch.file("cert.pem"),
        vch.file("key.pem"),
    );
    let old = |args: &[&str]| vch.docker_tls(&ca, &old_cert, &old_key, args);
    let (id, qemu) = ticker_with(&old);
    let theirs = TestCa::new("operator CA");
    let (new_ca, new_cert, new_key) = theirs.write(&vch.work.join("operator"), "client", true);
    let new = |args: &[&str]| vch.docker_tls(&ca, &new_cert, &new_key, args);
    assert_refused(
        &new(&["info"]),
        "a client of the operator's CA, before",
        "remote error: tls:",
    );

    let lines = log_lines_with(&old, &id);
    let out = vch.machine_ok("configure", &["--tls-ca", &new_ca]);
    assert!(
        out.contains("Client certificate authorities: replaced by --tls-ca"),
        "{out}"
    );
    assert!(
        out.contains("does not chain to the --tls-ca authorities"),
        "the client certificate in the directory is no longer accepted, and it says so: {out}"
    );
    assert!(out.contains("YOUR-CLIENT-CERT.pem"), "{out}");
    assert_ok(&new(&["info"]), "a client of the new CA");
    assert_refused(
        &old(&["info"]),
        "a client of the old CA",
        "remote error: tls:",
    );
    assert_refused(
        &vch.docker_env(&dir, &[], &["info"]),
        "the env file's client certificate (old CA)",
        "remote error: tls:",
    );
    assert_survived_with(&new, &id, &qemu, lines, "after configure --tls-ca");
    assert_eq!(vch.record()["tls_user_client_cas"], true);

    let lines = log_lines_with(&new, &id);
    let out = vch.machine_ok("configure", &["--rollback"]);
    assert!(out.contains("Completed successfully"), "{out}");
    assert_ok(
        &old(&["info"]),
        "a client of the old CA, after the rollback",
    );
    assert_ok(
        &vch.docker_env(&dir, &[], &["info"]),
        "the env file, after the rollback",
    );
    assert_refused(
        &new(&["info"]),
        "a client of the new CA, after the rollback",
        "remote error: tls:",
    );
    assert_survived_with(&old, &id, &qemu, lines, "after configure --rollback");
    assert_eq!(vch.record()["tls_user_client_cas"], false);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn configure_server_certificate_is_served_bad_input_changes_nothing_and_rollback_restores() {
    let vch = TestVch::create("tcsrv", &["--insecure-registry", &registry()]);
    let (ca, cert, key) = (
        vch.file("ca.pem"),
        vch.file("cert.pem"),
        vch.file("key.pem"),
    );
    let client = Some((cert.as_str(), key.as_str()));
    let generated = read(&vch.file("server-cert.pem"));
    let served = || served_certificate(&vch.addr(), client);
    assert_eq!(fingerprint(&served()), fingerprint(&generated));
    let docker = |args: &[&str]| vch.docker_tls(&ca, &cert, &key, args);
    let (id, qemu) = ticker_with(&docker);

    let files = vch.work.join("operator");
    let own = TestCa::new("operator CA");
    let (own_ca, server_cert, server_key) = own.write(&files, "server", false);
    let (_, _, other_key) = own.write(&files, "other", false);

    // Bad input: a clear error, and nothing changed (not even a restart).
    let (record, pid) = (vch.record(), appliance_pid(&vch));
    for (args, want) in [
        (
            vec![
                "--tls-server-cert",
                server_cert.as_str(),
                "--tls-server-key",
                other_key.as_str(),
            ],
            format!(
                "--tls-server-key {other_key} does not go with --tls-server-cert {server_cert}"
            ),
        ),
        (
            vec![
                "--tls-server-cert",
                "/nonexistent/cert.pem",
                "--tls-server-key",
                server_key.as_str(),
            ],
            "Failed to load --tls-server-cert /nonexistent/cert.pem".to_string(),
        ),
        (
            vec!["--tls-server-cert", server_cert.as_str()],
            "--tls-server-cert and --tls-server-key must be given together".to_string(),
        ),
        (
            vec!["--tls-ca", server_key.as_str()],
            format!("Failed to load authority from file {server_key}"),
        ),
        (
            vec!["--tls-ca", own_ca.as_str(), "--no-tlsverify"],
            "--tls-ca conflicts with --no-tlsverify".to_string(),
        ),
        (
            vec!["--tls-cname", "not a name"],
            "is neither an IP address nor a DNS name".to_string(),
        ),
    ] {
        let err = vch.machine_err("configure", &args);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    assert_eq!(vch.record(), record, "vch.json is unchanged");
    assert_eq!(appliance_pid(&vch), pid, "the appliance was not restarted");
    assert_eq!(fingerprint(&served()), fingerprint(&generated));
    assert!(!vch_dir(&vch.name).join("configure.prev.json").exists());

    // The operator's certificate.
    let lines = log_lines_with(&docker, &id);
    let out = vch.machine_ok(
        "configure",
        &[
            "--tls-server-cert",
            &server_cert,
            "--tls-server-key",
            &server_key,
        ],
    );
    assert!(out.contains("Server certificate: replaced by"), "{out}");
    assert!(out.contains("CA-OF-YOUR-SERVER-CERT.pem"), "{out}");
    let now = served();
    assert_eq!(fingerprint(&now), fingerprint(&read(&server_cert)));
    assert!(issuer(&now).contains("operator CA"), "{}", issuer(&now));
    let theirs = |args: &[&str]| vch.docker_tls(&own_ca, &cert, &key, args);
    assert_ok(
        &theirs(&["info"]),
        "a client verifying the server with the operator's CA",
    );
    assert_refused(
        &docker(&["info"]),
        "a client verifying the server with the generated CA",
        "certificate signed by unknown authority",
    );
    assert_survived_with(
        &theirs,
        &id,
        &qemu,
        lines,
        "after configure --tls-server-cert",
    );
    assert_eq!(vch.record()["tls_own_server_cert"], true);

    // Rollback: the generated certificate again.
    let lines = log_lines_with(&theirs, &id);
    vch.machine_ok("configure", &["--rollback"]);
    assert_eq!(fingerprint(&served()), fingerprint(&generated));
    assert_ok(&docker(&["info"]), "the generated CA, after the rollback");
    assert_survived_with(&docker, &id, &qemu, lines, "after configure --rollback");
    assert_eq!(vch.record()["tls_own_server_cert"], false);
}

#[test]
#[ignore = "needs the built binaries, openssl and the docker CLI: make test runs it"]
fn configure_tls_cname_regenerates_and_no_tlsverify_moves_to_a_new_cert_path() {
    let vch = TestVch::create("tccn", &[]);
    let dir = vch.dir();
    let (ca, cert, key) = (
        vch.file("ca.pem"),
        vch.file("cert.pem"),
        vch.file("key.pem"),
    );
    let client = Some((cert.as_str(), key.as_str()));
    let served = || served_certificate(&vch.addr(), client);
    assert!(!subject_alt_names(&served()).contains("vch.example.com"));

    let out = vch.machine_ok("configure", &["--tls-cname", "vch.example.com"]);
    assert!(out.contains("Loaded CA from"), "the CA is reused: {out}");
    assert!(out.contains("Loaded client certificate from"), "{out}");
    let now = served();
    assert!(
        subject_alt_names(&now).contains("DNS:vch.example.com"),
        "{}",
        subject_alt_names(&now)
    );
    assert_eq!(
        fingerprint(&now),
        fingerprint(&read(&vch.file("server-cert.pem"))),
        "the certificate directory has the certificate served"
    );
    // Clients keep working: same CA, same client certificate.
    assert_ok(
        &vch.docker_env(&dir, &[], &["info"]),
        "the env file after --tls-cname",
    );
    assert_eq!(vch.record()["tls_cname"], "vch.example.com");
    let raw = machine_ok(&[
        "inspect", "config", "--target", "local", "--name", &vch.name, "--format", "raw",
    ]);
    assert!(raw.contains("--tls-cname=vch.example.com"), "{raw}");

    // A directory that is in use is refused.
    let used = vch.work.join("used");
    std::fs::create_dir_all(&used).unwrap();
    std::fs::write(used.join("notes.txt"), "mine").unwrap();
    let err = vch.machine_err(
        "configure",
        &["--no-tlsverify", "--tls-cert-path", used.to_str().unwrap()],
    );
    assert!(err.contains("already exists and is not empty"), "{err}");
    assert_eq!(vch.record()["tls"], "tlsverify");

    // --no-tlsverify, with the files and NAME.env in a new directory.
    let moved = vch.work.join("moved");
    let out = vch.machine_ok(
        "configure",
        &["--no-tlsverify", "--tls-cert-path", moved.to_str().unwrap()],
    );
    assert!(out.contains("Docker API TLS: tlsverify -> tls"), "{out}");
    let env_file = moved.join(format!("{}.env", vch.name));
    assert!(
        out.contains(&format!("Environment saved in {}", env_file.display())),
        "{out}"
    );
    let env = vch.env_file(&moved);
    assert!(
        !env.iter().any(|(k, _)| k == "DOCKER_TLS_VERIFY"),
        "{env:?}"
    );
    assert!(
        env.contains(&("DOCKER_CERT_PATH".into(), moved.display().to_string())),
        "{env:?}"
    );
    let moved_ca = moved.join("ca.pem").display().to_string();
    assert_eq!(read(&moved_ca), read(&ca), "the CA is copied along");
    assert_ok(
        &vch.docker_env(&moved, &["--tls"], &["info"]),
        "docker --tls without a client certificate",
    );
    assert_ok(
        &vch.docker(&["--tlsverify", "--tlscacert", &moved_ca], &["info"]),
        "verifying the server, without a client certificate",
    );
    assert_eq!(vch.record()["tls"], "no-tlsverify");
    assert!(ls_line(&vch.name).contains(" tls "));
    let out = vch.machine_ok("inspect", &[]);
    assert!(
        out.contains(&format!("Environment saved in {}", env_file.display())),
        "{out}"
    );

    // Rollback: mutual TLS again, in the first directory, with the cname.
    let out = vch.machine_ok("configure", &["--rollback"]);
    assert!(out.contains("Docker API TLS: tls -> tlsverify"), "{out}");
    assert_eq!(vch.record()["tls"], "tlsverify");
    assert_refused(
        &vch.docker(&["--tlsverify", "--tlscacert", &ca], &["info"]),
        "a client without a certificate",
        "certificate required",
    );
    assert_ok(
        &vch.docker_env(&dir, &[], &["info"]),
        "the first directory's env file",
    );
    assert!(subject_alt_names(&served()).contains("DNS:vch.example.com"));
    assert!(
        !moved.join("ca.pem").exists() && !env_file.exists(),
        "what the rolled back configure wrote in the new directory is gone"
    );
}

/// A plain-HTTP VCH gets mutual TLS from configure; its clients then need the files.
#[test]
#[ignore = "needs the built binaries and the docker CLI: make test runs it"]
fn configure_turns_tls_on_for_a_plain_vch() {
    let vch = TestVch::plain("tcon", &[]);
    assert_ok(&vch.on(&["info"]), "plain HTTP before");
    let out = vch.machine_ok("configure", &["--tls-cname", "127.0.0.1"]);
    assert!(out.contains("Docker API TLS: none -> tlsverify"), "{out}");
    let plain: Output = vch.on(&["info"]);
    assert_refused(
        &plain,
        "plain HTTP after",
        "Client sent an HTTP request to an HTTPS server.",
    );
    assert_ok(
        &vch.docker_env(&vch.dir(), &[], &["info"]),
        "the env file configure wrote",
    );
}
