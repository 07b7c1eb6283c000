//! Pulls from the real test registries that want credentials or a private CA (started by
//! `make test` with tests/fixtures/registry.sh --auth basic|token, --tls): the Basic and
//! Bearer-token flows and a verified TLS registry, under the registry client's bounds.

use imagec::auth::Credentials;
use imagec::pull::{Platform, Puller, RegistryOptions};
use imagec::reference::Reference;
use imagec::store::ImageStore;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run with `make test`"))
}

fn creds() -> Credentials {
    Credentials {
        username: "vic".into(),
        password: "vic-secret".into(),
        ..Default::default()
    }
}

/// Login is refused with a wrong password and accepted with the right one; a pull without
/// credentials is refused and one with them lands the image.
async fn login_and_pull(reg: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let puller = Puller::new(RegistryOptions {
        insecure: vec!["127.0.0.0/8".into()],
        ..Default::default()
    });
    let wrong = Credentials {
        password: "not-the-password".into(),
        ..creds()
    };
    let err = puller.login(reg, &wrong).await.unwrap_err().to_string();
    assert!(err.contains("401") || err.contains("unauthorized"), "{err}");
    puller.login(reg, &creds()).await.unwrap();

    let r = Reference::parse(&format!("{reg}/busybox")).unwrap();
    let err = puller
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pull access denied") || err.contains("no basic auth credentials"),
        "{err}"
    );
    let out = puller
        .pull(&store, &r, &Platform::default(), Some(&creds()), &|_| {})
        .await
        .unwrap();
    assert!(store.rootfs(&out.image.id).join("bin").exists());
}

#[tokio::test]
#[ignore = "needs the Basic-auth test registry: make test runs it"]
async fn basic_auth_login_and_pull() {
    login_and_pull(&var("VIC_TEST_REGISTRY_BASIC")).await;
}

#[tokio::test]
#[ignore = "needs the token-auth test registry: make test runs it"]
async fn token_auth_login_and_pull() {
    login_and_pull(&var("VIC_TEST_REGISTRY_TOKEN")).await;
}

#[tokio::test]
#[ignore = "needs the TLS test registry: make test runs it"]
async fn a_private_ca_registry_is_pulled_from_with_its_ca() {
    let reg = var("VIC_TEST_REGISTRY_TLS");
    let ca = std::fs::read(var("VIC_TEST_REGISTRY_TLS_CA")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let r = Reference::parse(&format!("{reg}/busybox")).unwrap();
    let err = Puller::new(RegistryOptions::default())
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate signed by unknown authority"),
        "{err}"
    );
    let puller = Puller::new(RegistryOptions {
        ca_pems: vec![ca],
        ..Default::default()
    });
    let out = puller
        .pull(&store, &r, &Platform::default(), None, &|_| {})
        .await
        .unwrap();
    assert!(store.rootfs(&out.image.id).join("bin").exists());
}
