//! Pulls from a hostile registry (see `fixture.rs`): digests that are paths or of another
//! algorithm, sizes that lie, endless and trickling bodies, silence, huge manifests and
//! tokens, redirects that leave HTTPS or the whitelist. Each pull must fail with its own
//! error and leave the store as it was: no image, no partial download of the hostile blob,
//! nothing created or read outside the store (a canary directory beside it is compared).

mod fixture;
mod scene;

use std::sync::Arc;
use std::time::Duration;

use fixture::{Hostile, Reply};
use imagec::auth::Credentials;
use imagec::digest::Digest;
use imagec::pull::{Puller, RegistryOptions};
use scene::*;

#[tokio::test]
async fn digests_that_are_paths_are_refused_before_any_blob_is_asked_for() {
    let img = image();
    let escape = "sha256:../../../canary/secret";
    let cases = [
        manifest(
            (&img.config_digest, img.config.len()),
            &[(escape, img.layer.len())],
        ),
        manifest((escape, img.config.len()), &[(&img.layer_digest, 6)]),
        serde_json::json!({"schemaVersion": 2, "mediaType": LIST, "manifests": [
            {"mediaType": V2S2, "digest": escape, "size": 100,
             "platform": {"os": "linux", "architecture": "amd64"}}]})
        .to_string(),
    ];
    for body in cases {
        let scene = Scene::new();
        let media = if body.contains(LIST) { LIST } else { V2S2 };
        let reg = registry(&img, move |req| {
            (req.path == "/v2/x/manifests/latest").then(|| Reply::json(media, body.clone()))
        })
        .await;
        let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
        assert!(
            err.starts_with(&format!("malformed manifest from http://{}/v2/x/manifests/latest: digest \"sha256:../../../canary/secret\": invalid checksum digest length", reg.addr)),
            "{err}"
        );
        assert_eq!(blob_requests(&reg), 0);
    }
}

#[tokio::test]
async fn digests_of_another_algorithm_are_refused() {
    let img = image();
    let scene = Scene::new();
    let sha512 = format!("sha512:{}", "ab".repeat(64));
    let body = manifest(
        (&img.config_digest, img.config.len()),
        &[(&sha512, img.layer.len())],
    );
    let reg = registry(&img, move |req| {
        (req.path == "/v2/x/manifests/latest").then(|| Reply::json(V2S2, body.clone()))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert!(err.contains("unsupported digest algorithm"), "{err}");
    assert_eq!(blob_requests(&reg), 0);
}

#[tokio::test]
async fn a_docker_content_digest_header_must_be_the_manifests_digest() {
    let img = image();
    let other = Digest::of(b"another manifest").to_string();
    for (said, why) in [
        (
            "sha256:../../../canary/secret",
            "invalid checksum digest length".to_string(),
        ),
        (
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "unsupported digest algorithm".into(),
        ),
        (other.as_str(), format!("expected {other}")),
    ] {
        let scene = Scene::new();
        let (said, body) = (said.to_string(), img.manifest());
        let reg = registry(&img, move |req| {
            (req.path == "/v2/x/manifests/latest")
                .then(|| Reply::json(V2S2, body.clone()).header("Docker-Content-Digest", &said))
        })
        .await;
        let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
        assert!(err.ends_with(&why), "{err}");
        assert_eq!(blob_requests(&reg), 0);
    }
}

#[tokio::test]
async fn an_image_config_declared_over_8_mib_is_not_downloaded() {
    let img = image();
    let scene = Scene::new();
    let body = manifest(
        (&img.config_digest, 9 << 20),
        &[(&img.layer_digest, img.layer.len())],
    );
    let reg = registry(&img, move |req| {
        (req.path == "/v2/x/manifests/latest").then(|| Reply::json(V2S2, body.clone()))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "the image config {} is 9437184 bytes, more than the 8388608 an image config may have",
            img.config_digest
        )
    );
    assert_eq!(blob_requests(&reg), 0);
}

#[tokio::test]
async fn a_tag_list_naming_paths_is_refused() {
    let img = image();
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/tags/list").then(|| {
            Reply::json(
                "application/json",
                r#"{"name":"x","tags":["latest","../../x"]}"#,
            )
        })
    })
    .await;
    let r = imagec::reference::Reference::parse(&format!("{}/x", reg.addr)).unwrap();
    let err = Puller::new(options(&reg.addr))
        .tags(&r, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "malformed tag list from http://{}/v2/x/tags/list: invalid tag format: \"../../x\"",
            reg.addr
        )
    );
}

#[tokio::test]
async fn an_endless_tag_list_is_cut_off_at_8_mib() {
    let img = image();
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/tags/list")
            .then(|| Reply::trickle(&[b' '; 65536], Duration::ZERO, None))
    })
    .await;
    let r = imagec::reference::Reference::parse(&format!("{}/x", reg.addr)).unwrap();
    let err = Puller::new(options(&reg.addr))
        .tags(&r, None)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "registry {} sent more than 8388608 bytes while listing the tags of {}/x",
            reg.addr, reg.addr
        )
    );
}

#[tokio::test]
async fn a_blob_longer_than_declared_is_cut_off() {
    let img = image();
    let mut longer = img.layer.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    // Said by its length (refused at once), or only by its bytes (cut off at the size).
    for say_length in [true, false] {
        let scene = Scene::new();
        let (path, body) = (img.layer_path(), longer.clone());
        let reg = registry(&img, move |req| {
            (req.path == path).then(|| match say_length {
                true => Reply::ok(body.clone()),
                false => Reply::trickle(&body, Duration::ZERO, Some(1)),
            })
        })
        .await;
        let err = scene
            .pull_fails(&reg, options(&reg.addr), &[&img.config_digest])
            .await;
        let n = img.layer.len();
        assert_eq!(
            err,
            format!(
                "registry {} sent more than {n} bytes while downloading {} (its manifest declares {n} bytes)",
                reg.addr, img.layer_digest
            )
        );
    }
}

#[tokio::test]
async fn a_blob_shorter_than_declared_fails_its_digest() {
    let img = image();
    let scene = Scene::new();
    let (path, body) = (img.layer_path(), img.layer[..img.layer.len() - 10].to_vec());
    let reg = registry(&img, move |req| {
        (req.path == path).then(|| Reply::ok(body.clone()))
    })
    .await;
    let err = scene
        .pull_fails(&reg, options(&reg.addr), &[&img.config_digest])
        .await;
    assert!(
        err.ends_with(&format!(", expected {}", img.layer_digest)) && err.contains("has digest"),
        "{err}"
    );
}

#[tokio::test]
async fn an_endless_blob_is_cut_off_at_its_declared_size() {
    let img = image();
    let scene = Scene::new();
    let path = img.layer_path();
    let reg = registry(&img, move |req| {
        (req.path == path).then(|| Reply::trickle(&[7u8; 65536], Duration::ZERO, None))
    })
    .await;
    let err = scene
        .pull_fails(&reg, options(&reg.addr), &[&img.config_digest])
        .await;
    assert!(err.contains("sent more than"), "{err}");
}

#[tokio::test]
async fn an_endless_manifest_is_cut_off_at_4_mib() {
    let img = image();
    let scene = Scene::new();
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/manifests/latest")
            .then(|| Reply::trickle(&[b' '; 65536], Duration::ZERO, None))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {} sent more than 4194304 bytes while sending the manifest latest",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_manifest_claiming_100_mib_is_refused_by_its_length() {
    let img = image();
    let scene = Scene::new();
    // Its bytes come too slowly to pass 4 MiB before the deadline: only its length can.
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/manifests/latest")
            .then(|| Reply::trickle(b" ", Duration::from_millis(100), None).claiming(100 << 20))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {} sent more than 4194304 bytes while sending the manifest latest",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_manifest_longer_than_its_index_declares_is_cut_off() {
    let img = image();
    let scene = Scene::new();
    let real = img.manifest();
    let digest = Digest::of(real.as_bytes()).to_string();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": LIST, "manifests": [
        {"mediaType": V2S2, "digest": digest, "size": 100,
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    .to_string();
    let by_digest = format!("/v2/x/manifests/{digest}");
    let reg = registry(&img, move |req| {
        if req.path == "/v2/x/manifests/latest" {
            return Some(Reply::json(LIST, index.clone()));
        }
        (req.path == by_digest).then(|| Reply::trickle(real.as_bytes(), Duration::ZERO, Some(1)))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {} sent more than 100 bytes while sending the manifest {digest}",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_manifest_sent_a_byte_at_a_time_misses_its_deadline() {
    let img = image();
    let scene = Scene::new();
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/manifests/latest")
            .then(|| Reply::trickle(b" ", Duration::from_millis(200), None))
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {} did not finish sending the manifest latest within 3 s",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_blob_sent_a_byte_at_a_time_stalls() {
    let img = image();
    let scene = Scene::new();
    let path = img.layer_path();
    let reg = registry(&img, move |req| {
        (req.path == path).then(|| Reply::trickle(b"x", Duration::from_millis(300), None))
    })
    .await;
    let err = scene
        .pull_fails_keeping(
            &reg,
            options(&reg.addr),
            &[&img.config_digest],
            Some((&img.layer_digest, img.layer.len())),
        )
        .await;
    let prefix = format!("registry {} sent only ", reg.addr);
    let suffix = format!(" bytes in 1 s while downloading {}", img.layer_digest);
    assert!(err.starts_with(&prefix) && err.ends_with(&suffix), "{err}");
}

#[tokio::test]
async fn a_registry_that_never_answers_stalls() {
    let img = image();
    let scene = Scene::new();
    let reg = registry(&img, |req| {
        (req.path == "/v2/x/manifests/latest").then(Reply::silent)
    })
    .await;
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {0} sent no response for 1 s while requesting http://{0}/v2/x/manifests/latest",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_huge_token_response_is_cut_off() {
    let img = image();
    let scene = Scene::new();
    let realm = Arc::new(std::sync::OnceLock::<String>::new());
    let r = realm.clone();
    let reg = registry(&img, move |req| {
        if req.path.starts_with("/token") {
            return Some(Reply::trickle(&[b' '; 65536], Duration::ZERO, None));
        }
        if req.path.starts_with("/v2/x/") && !req.headers.contains_key("authorization") {
            let challenge = format!("Bearer realm=\"{}\",service=\"x\"", r.get().unwrap());
            return Some(Reply::status(401).header("WWW-Authenticate", &challenge));
        }
        None
    })
    .await;
    realm.set(format!("http://{}/token", reg.addr)).unwrap();
    let err = scene.pull_fails(&reg, options(&reg.addr), &[]).await;
    assert_eq!(
        err,
        format!(
            "registry {} sent more than 1048576 bytes while answering a token request for \"repository:x:pull\"",
            reg.addr
        )
    );
}

#[tokio::test]
async fn a_redirect_outside_the_whitelist_is_not_followed() {
    let img = image();
    let scene = Scene::new();
    let storage = Hostile::start(|_| Reply::ok(b"not reached".to_vec())).await;
    let (path, to) = (img.layer_path(), format!("http://{}/blob", storage.addr));
    let reg = registry(&img, move |req| {
        (req.path == path).then(|| Reply::redirect(&to))
    })
    .await;
    let opts = RegistryOptions {
        whitelist: vec![reg.addr.clone()],
        ..options(&reg.addr)
    };
    let err = scene.pull_fails(&reg, opts, &[&img.config_digest]).await;
    assert_eq!(
        err,
        format!(
            "Get \"http://{0}{1}\": redirect to http://{2}/blob refused: {2} is not a whitelisted registry",
            reg.addr,
            img.layer_path(),
            storage.addr
        )
    );
    assert!(storage.requests().is_empty(), "the other host is not asked");
}

#[tokio::test]
async fn https_is_never_redirected_to_http() {
    let img = image();
    let scene = Scene::new();
    let plain = Hostile::start(|_| Reply::ok(b"not reached".to_vec())).await;
    let (path, to) = (img.layer_path(), format!("http://{}/blob", plain.addr));
    let img2 = img.clone();
    let reg = Hostile::start_tls(move |req| {
        if req.path == path {
            return Reply::redirect(&to);
        }
        img2.serve(req).unwrap_or_else(|| Reply::status(404))
    })
    .await;
    let err = scene
        .pull_fails(&reg, options(&reg.addr), &[&img.config_digest])
        .await;
    let from = format!("https://{}{}", reg.addr, img.layer_path());
    assert_eq!(
        err,
        format!(
            "Get \"{from}\": redirect from {from} to http://{}/blob refused: it leaves HTTPS for plain HTTP",
            plain.addr
        )
    );
    assert!(plain.requests().is_empty());
}

#[tokio::test]
async fn a_blob_on_a_storage_host_is_fetched_without_the_registry_credentials() {
    let img = image();
    let scene = Scene::new();
    let layer = img.layer.clone();
    let storage = Hostile::start(move |_| Reply::ok(layer.clone())).await;
    let (path, to) = (
        img.layer_path(),
        format!("http://{}/bucket/layer?sig=1", storage.addr),
    );
    let reg = registry(&img, move |req| {
        if req.path.starts_with("/v2/x/") && !req.headers.contains_key("authorization") {
            return Some(Reply::status(401).header("WWW-Authenticate", "Basic realm=\"x\""));
        }
        (req.path == path).then(|| Reply::redirect(&to))
    })
    .await;
    let creds = Credentials {
        username: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    let puller = Puller::new(options(&reg.addr));
    let out = scene.pull(&puller, &reg.addr, Some(&creds)).await.unwrap();
    assert_eq!(out.image.id, img.config_digest);
    let at_storage = storage.requests();
    assert_eq!(at_storage.len(), 1);
    assert!(
        !at_storage[0].headers.contains_key("authorization"),
        "credentials stay with the registry: {:?}",
        at_storage[0].headers
    );
    assert!(reg
        .requests()
        .iter()
        .any(|r| r.path == img.layer_path() && r.headers.contains_key("authorization")));
}
