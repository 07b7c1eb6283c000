//! `/images/…`: list with raw filters, tag, delete, save and prune.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{filters, Vch};

/// `busybox:latest` (oldest), `alpine:3` and `alpine:edge` (one image), and a dangling one
/// (newest).
async fn four() -> (Vch, [String; 3]) {
    let vch = Vch::new().await;
    let busybox = vch.add_image(1, &["busybox:latest"], "2024-01-01T00:00:00Z");
    let alpine = vch.add_image(2, &["alpine:3", "alpine:edge"], "2024-02-01T00:00:00Z");
    let dangling = vch.add_image(3, &[], "2024-03-01T00:00:00Z");
    (vch, [busybox, alpine, dangling])
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|i| i["Id"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn list(vch: &Vch, f: Value) -> Vec<String> {
    let a = vch
        .get(&format!("/images/json?filters={}", filters(f)))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    ids(&a.body)
}

#[tokio::test]
async fn images_are_listed_newest_first_and_dangling_picks_the_untagged() {
    let (vch, [busybox, alpine, dangling]) = four().await;
    let a = vch.get("/images/json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        ids(&a.body),
        [dangling.as_str(), alpine.as_str(), busybox.as_str()]
    );
    assert_eq!(
        list(&vch, json!({ "dangling": ["true"] })).await,
        [dangling.as_str()]
    );
    assert_eq!(
        list(&vch, json!({ "dangling": { "false": true } })).await,
        [alpine.as_str(), busybox.as_str()]
    );
    let a = vch
        .get(&format!(
            "/images/json?filters={}",
            filters(json!({ "dangling": ["maybe"] }))
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "Invalid filter 'dangling=maybe'");
}

#[tokio::test]
async fn a_reference_filter_picks_images_and_narrows_their_tags() {
    let (vch, [busybox, alpine, _]) = four().await;
    assert_eq!(
        list(&vch, json!({ "reference": ["busy*"] })).await,
        [busybox.as_str()]
    );
    let a = vch
        .get(&format!(
            "/images/json?filters={}",
            filters(json!({ "reference": ["alpine:3"] }))
        ))
        .await;
    assert_eq!(ids(&a.body), [alpine.as_str()]);
    assert_eq!(a.body[0]["RepoTags"], json!(["alpine:3"]));
    assert_eq!(
        list(&vch, json!({ "label": ["n=1"] })).await,
        [busybox.as_str()],
        "the image config's labels"
    );
    assert_eq!(
        list(&vch, json!({ "before": ["alpine:edge"] })).await,
        [busybox.as_str()]
    );
    let a = vch
        .get(&format!(
            "/images/json?filters={}",
            filters(json!({ "reference": ["busybox["] }))
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "invalid reference filter: syntax error in pattern"
    );
}

#[tokio::test]
async fn an_unknown_image_filter_key_is_a_400() {
    let (vch, _) = four().await;
    for (f, message) in [
        (json!({ "bogus": ["x"] }), "invalid filter 'bogus'"),
        (
            json!({ "until": ["1h"] }),
            "--filter until is not supported by vic: image filters by time are not applied yet",
        ),
    ] {
        for uri in ["/images/json", "/images/prune"] {
            let method = if uri.ends_with("prune") {
                "POST"
            } else {
                "GET"
            };
            let a = vch
                .send(method, &format!("{uri}?filters={}", filters(f.clone())), "")
                .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri} {f}");
            assert_eq!(a.message(), message, "{uri}");
        }
    }
    let a = vch.get("/images/json?filters=dangling").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().starts_with("invalid filter: "), "{a:?}");
}

#[tokio::test]
async fn tag_names_an_image_and_needs_a_repository() {
    let (vch, [busybox, ..]) = four().await;
    let a = vch.post("/images/busybox/tag?repo=web&tag=v1", "").await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    assert_eq!(
        list(&vch, json!({ "reference": ["web:v1"] })).await,
        [busybox.as_str()]
    );
    let a = vch.post("/images/busybox/tag?tag=v2", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "repository name must be given");
    let a = vch.post("/images/nosuch/tag?repo=web", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "No such image: nosuch");
    let a = vch.post("/images/busybox/tag?repo=Web", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
}

#[tokio::test]
async fn delete_untags_and_a_second_tag_needs_force() {
    let (vch, [_, alpine, _]) = four().await;
    let short = &alpine["sha256:".len()..][..12];
    let a = vch.send("DELETE", &format!("/images/{short}"), "").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(
        a.message(),
        format!("conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
    );
    let a = vch
        .send("DELETE", &format!("/images/{short}?force=1"), "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.body,
        json!([{ "Untagged": "alpine:3" }, { "Untagged": "alpine:edge" }, { "Deleted": alpine }])
    );
    let a = vch.send("DELETE", "/images/nosuch", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "No such image: nosuch");
}

#[tokio::test]
async fn save_reads_every_name_given() {
    let (vch, _) = four().await;
    let a = vch.get("/images/get").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "no images to save: give at least one name");
    let a = vch.get("/images/get?names=busybox&names=nosuch").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    assert_eq!(a.message(), "No such image: nosuch");
}

#[tokio::test]
async fn prune_removes_dangling_images_only() {
    let (vch, [busybox, alpine, dangling]) = four().await;
    let a = vch.post("/images/prune", "").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.body["ImagesDeleted"], json!([{ "Deleted": dangling }]));
    assert_eq!(a.body["SpaceReclaimed"], 1003);
    let a = vch.get("/images/json").await;
    assert_eq!(ids(&a.body), [alpine.as_str(), busybox.as_str()]);
}

#[tokio::test]
async fn an_import_is_refused_for_a_bad_query_or_a_body_that_is_not_a_tarball() {
    let vch = Vch::new().await;
    let a = vch
        .post("/images/create?fromSrc=-&repo=app", "not a tarball")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    assert_eq!(a.message(), "unexpected EOF");
    let a = vch
        .post(
            "/images/create?fromSrc=-&repo=app&changes=ENV+A%3Db&changes=RUN+x",
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    assert_eq!(
        a.message(),
        "run is not a valid change command",
        "the second change is read too"
    );
    let a = vch
        .post("/images/create?fromSrc=-&repo=app&platform=linux", "")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
    assert_eq!(
        a.message(),
        "invalid platform \"linux\": use os/arch[/variant]"
    );
    let a = vch
        .post("/images/create?fromSrc=https://example.com/x.tar", "")
        .await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED, "{a:?}");
    assert!(
        a.message()
            .starts_with("importing from a URL (https://example.com/x.tar) is not supported"),
        "{a:?}"
    );
    let a = vch.post("/images/create?tag=v1", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "a pull: {a:?}");
    assert_eq!(a.message(), "fromImage must be set");
}
