//! Registries that want credentials or a private CA, and the registry whitelist: `docker
//! login`/`logout`, Basic and Bearer-token challenges, `--registry-ca`, `--whitelist-registry`.
//! The registries are started by `make test` (tests/fixtures/registry.sh with --auth/--tls).

mod common;

use common::*;

const USER: &str = "vic";
const PASSWORD: &str = "vic-secret";

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run these tests with `make test`"))
}

/// A VCH of its own, and a client with an empty credential store.
fn setup(tag: &str, extra: &[&str]) -> (String, Client) {
    let name = format!("{tag}-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    let host = create_vch_with(&name, &dir, extra);
    let client = Client::new(&host, dir.join("docker-config"));
    (name, client)
}

fn appliance_log(name: &str) -> String {
    let root = std::path::PathBuf::from(var("VIC_STATE_ROOT"));
    std::fs::read_to_string(root.join("vch").join(name).join("appliance.log")).unwrap_or_default()
}

/// Login, pull, logout against a registry that challenges with `scheme`.
fn login_pull_logout(reg: &str, client: &Client, anonymous_error: &str, bad_login_error: &str) {
    let image = format!("{reg}/busybox:latest");

    let o = client.run(&["pull", &image]);
    assert!(!o.status.success(), "pulled without credentials");
    assert!(
        stderr(&o).contains(anonymous_error),
        "anonymous pull: {}",
        stderr(&o)
    );

    let o = client.run_input(
        &["login", reg, "-u", USER, "--password-stdin"],
        "not-the-password\n",
    );
    assert!(!o.status.success(), "wrong password accepted");
    assert!(
        stderr(&o).contains(bad_login_error),
        "bad login: {}",
        stderr(&o)
    );

    let o = client.run_input(&["login", reg, "-u", USER, "--password-stdin"], PASSWORD);
    assert!(o.status.success(), "login: {}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Login Succeeded"), "{}", stdout(&o));
    let config = std::fs::read_to_string(client.config.join("config.json")).unwrap();
    assert!(config.contains(reg), "the CLI keeps the login: {config}");

    let out = client.ok(&["pull", &image]);
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    let id = client.ok(&["image", "inspect", "-f", "{{.Id}}", &image]);
    assert!(id.trim().starts_with("sha256:"), "{id}");

    // The VCH keeps nothing: after logout, the next pull is anonymous again.
    client.ok(&["logout", reg]);
    client.ok(&["rmi", &image]);
    let o = client.run(&["pull", &image]);
    assert!(!o.status.success(), "pulled after logout");
    assert!(stderr(&o).contains(anonymous_error), "{}", stderr(&o));
}

/// Writes credentials into the client's store by hand (as a stale login would leave them).
fn store_credentials(client: &Client, reg: &str, user: &str, password: &str) {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({ "auths": { reg: { "auth": auth } } });
    std::fs::write(client.config.join("config.json"), config.to_string()).unwrap();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn basic_auth_registry() {
    let reg = var("VIC_TEST_REGISTRY_BASIC");
    let plain = registry();
    let (name, client) = setup(
        "basic",
        &["--insecure-registry", &reg, "--insecure-registry", &plain],
    );
    login_pull_logout(
        &reg,
        &client,
        &format!("Get \"http://{reg}/v2/busybox/manifests/latest\": no basic auth credentials"),
        &format!("login attempt to http://{reg}/v2/ failed with status: 401 Unauthorized"),
    );

    // Credentials the registry refuses, sent with the pull (X-Registry-Auth).
    store_credentials(&client, &reg, USER, "stale-password");
    let o = client.run(&["pull", &format!("{reg}/busybox")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unauthorized: authentication required"),
        "{}",
        stderr(&o)
    );

    // Pushing needs credentials too; with them, the image lands in the registry.
    let pushed = format!("{reg}/pushed:basic");
    client.ok(&["pull", &format!("{}/busybox", registry())]);
    client.ok(&["tag", &format!("{}/busybox", registry()), &pushed]);
    let o = client.run(&["push", &pushed]);
    assert!(!o.status.success(), "pushed with a stale password");
    store_credentials(&client, &reg, USER, PASSWORD);
    let out = client.ok(&["push", &pushed]);
    assert!(out.contains("basic: digest: sha256:"), "{out}");
    client.ok(&["rmi", &pushed]);
    client.ok(&["pull", &pushed]);

    let log = appliance_log(&name);
    assert!(log.contains("login succeeded"), "the login is logged");
    assert!(
        !log.contains(PASSWORD) && !log.contains("stale-password"),
        "a password reached the appliance log"
    );
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn token_auth_registry() {
    let reg = var("VIC_TEST_REGISTRY_TOKEN");
    let (name, client) = setup("token", &["--insecure-registry", &reg]);
    login_pull_logout(
        &reg,
        &client,
        "pull access denied for",
        "unauthorized: incorrect username or password",
    );
    assert!(
        !appliance_log(&name).contains(PASSWORD),
        "a password reached the appliance log"
    );

    // One token serves a whole pull: the issuer is asked at most once, not once per blob.
    let token_log = std::path::PathBuf::from(var("VIC_TEST_REGISTRY_TOKEN_DIR")).join("token.log");
    store_credentials(&client, &reg, USER, PASSWORD);
    let before = std::fs::read_to_string(&token_log).unwrap().lines().count();
    client.ok(&["pull", &format!("{reg}/busybox:1.0")]);
    let after = std::fs::read_to_string(&token_log).unwrap().lines().count();
    // (Zero when the token of the earlier pull of this repository is still fresh.)
    assert!(
        after - before <= 1,
        "token requests for one pull of 2 layers and a config: {}",
        after - before
    );
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn private_ca_registry() {
    let reg = var("VIC_TEST_REGISTRY_TLS");
    let ca = var("VIC_TEST_REGISTRY_TLS_CA");
    let image = format!("{reg}/busybox");

    // Without the CA, the certificate is refused in Docker's words.
    let (plain, client) = setup("noca", &[]);
    let o = client.run(&["pull", &image]);
    assert!(!o.status.success(), "pulled from an unknown CA");
    assert!(
        stderr(&o).contains("x509: certificate signed by unknown authority"),
        "{}",
        stderr(&o)
    );
    delete_vch(&plain);

    // A file that is not a certificate is refused by create, which leaves nothing behind.
    let bogus = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&bogus, "hello").unwrap();
    let bad = format!("badca-{}", std::process::id());
    let o = vic_machine()
        .current_dir(std::env::temp_dir())
        .args(["create", "--target", "local", "--name", &bad, "--no-tls"])
        .args(["--registry-ca", bogus.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("Failed to load registry CA"), "{text}");
    let root = std::path::PathBuf::from(var("VIC_STATE_ROOT"));
    assert!(!root.join("vch").join(&bad).exists(), "half a VCH left");

    let (name, client) = setup("ca", &["--registry-ca", &ca]);
    let out = client.ok(&["pull", &image]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let run = client.ok(&["run", "--rm", &image, "echo", "trusted"]);
    assert_eq!(run.trim(), "trusted");
    delete_vch(&name);
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn registry_whitelist() {
    let allowed = registry();
    let other = var("VIC_TEST_REGISTRY_TLS");
    let ca = var("VIC_TEST_REGISTRY_TLS_CA");
    let (name, client) = setup(
        "wl",
        &[
            "--whitelist-registry",
            &allowed,
            "--insecure-registry",
            &allowed,
            "--registry-ca",
            &ca,
        ],
    );
    client.ok(&["pull", &format!("{allowed}/busybox")]);
    let o = client.run(&["pull", &format!("{other}/busybox")]);
    assert!(!o.status.success(), "pulled from a registry off the list");
    assert!(
        stderr(&o).contains(&format!(
            "Access denied to unauthorized registry ({other}) while VCH is in whitelist mode"
        )),
        "{}",
        stderr(&o)
    );
    let o = client.run_input(&["login", &other, "-u", USER, "--password-stdin"], PASSWORD);
    assert!(!o.status.success(), "logged in to a registry off the list");
    assert!(stderr(&o).contains("whitelist mode"), "{}", stderr(&o));
    delete_vch(&name);
}
