//! `/containers/…`: create from raw bodies, list with raw filters, and what a missing
//! container gets.

use axum::http::StatusCode;
use serde_json::json;

use super::{filters, names, Vch};

const BUSYBOX: u8 = 1;

async fn with_busybox() -> Vch {
    let vch = Vch::new().await;
    vch.add_image(BUSYBOX, &["busybox:latest"], "2024-01-01T00:00:00Z");
    vch
}

#[tokio::test]
async fn a_valid_create_body_is_a_201_with_the_new_id() {
    let vch = with_busybox().await;
    let a = vch
        .post(
            "/containers/create?name=web",
            r#"{"Image":"busybox","Cmd":["sh","-c","echo hi"],"Labels":{"tier":"front"}}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let id = a.body["Id"].as_str().expect("an Id");
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(a.body["Warnings"], json!([]));
    let inspect = vch.get("/containers/web/json").await;
    assert_eq!(inspect.status, StatusCode::OK, "{inspect:?}");
    assert_eq!(inspect.body["Id"], id);
    assert_eq!(inspect.body["Name"], "/web");
    assert_eq!(inspect.body["Path"], "sh");
    assert_eq!(inspect.body["Config"]["Labels"]["tier"], "front");
    assert_eq!(inspect.body["State"]["Status"], "created");
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let vch = with_busybox().await;
    let a = vch
        .post("/containers/create", r#"{"Image":"busybox","Cmd":["sh"]"#)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().starts_with("invalid JSON: "), "{a:?}");
    let a = vch.post("/containers/create", r#"["busybox"]"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "json: cannot unmarshal array into Go value of type container.CreateRequest"
    );
}

#[tokio::test]
async fn a_value_of_the_wrong_json_type_is_a_400_naming_the_field() {
    let vch = with_busybox().await;
    let a = vch
        .post(
            "/containers/create",
            r#"{"Image":"busybox","HostConfig":{"Memory":"128m"}}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
    );
    let a = vch
        .post("/containers/create", r#"{"Image":"busybox","Tty":"yes"}"#)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().contains("Tty of type bool"), "{a:?}");
}

#[tokio::test]
async fn options_vic_does_not_apply_are_refused_naming_every_flag() {
    let vch = with_busybox().await;
    let body = json!({
        "Image": "busybox",
        "HostConfig": {
            "NetworkMode": "host",
            "LogConfig": { "Type": "syslog", "Config": {} },
        },
    });
    let a = vch.post("/containers/create", &body.to_string()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "--network host is not supported by vic: a container is its own VM with its own network stack, which it cannot share with the host or another container; \
         --log-driver syslog is not supported by vic: only the json-file and none log drivers are available"
    );
    let a = vch
        .post("/containers/create", r#"{"Image":"busybox"}"#)
        .await;
    let list = vch.get("/containers/json?all=1").await;
    assert_eq!(
        names(&list.body).len(),
        1,
        "only the plain create made one: {a:?}"
    );
}

#[tokio::test]
async fn a_bad_value_dockerd_refuses_too_is_refused_in_its_words() {
    let vch = with_busybox().await;
    let body = r#"{"Image":"busybox","HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-file":"x"}}}}"#;
    let a = vch.post("/containers/create", body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "strconv.Atoi: parsing \"x\": invalid syntax");
}

#[tokio::test]
async fn an_unknown_image_is_a_404_in_dockers_words() {
    let vch = with_busybox().await;
    let a = vch
        .post("/containers/create", r#"{"Image":"nosuch","Cmd":["sh"]}"#)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "No such image: nosuch:latest");
    let a = vch.post("/containers/create", r#"{"Cmd":["sh"]}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "config cannot be empty in order to create a container"
    );
}

#[tokio::test]
async fn a_name_in_use_is_a_409() {
    let vch = with_busybox().await;
    let id = vch.create("web", "busybox", json!({})).await;
    let a = vch
        .post("/containers/create?name=web", r#"{"Image":"busybox"}"#)
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(
        a.message(),
        format!("Conflict. The container name \"/web\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")
    );
}

#[tokio::test]
async fn a_create_over_the_storage_quota_is_refused_in_vics_words() {
    let vch = Vch::with_quota(Some(1000)).await;
    vch.add_image(BUSYBOX, &["busybox:latest"], "2024-01-01T00:00:00Z");
    let a = vch
        .post("/containers/create", r#"{"Image":"busybox","Cmd":["sh"]}"#)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    assert!(
        a.message()
            .starts_with("Storage quota exceeds. Storage quota: 0GB, image storage usage: "),
        "{a:?}"
    );
}

/// Three created containers: `web` (tier=front), `api` (tier=back), `log` (no label). (No
/// name is all hex digits, so none reads as the prefix of an ID.)
async fn three() -> (Vch, [String; 3]) {
    let vch = with_busybox().await;
    let a = vch
        .create("web", "busybox", json!({ "tier": "front" }))
        .await;
    let b = vch
        .create("api", "busybox", json!({ "tier": "back" }))
        .await;
    let c = vch.create("log", "busybox", json!({})).await;
    (vch, [a, b, c])
}

#[tokio::test]
async fn an_unknown_filter_key_is_a_400_as_dockerd_words_it() {
    let (vch, _) = three().await;
    vch.filter_refused(
        "/containers/json",
        json!({ "bogus": ["x"] }),
        "invalid filter 'bogus'",
    )
    .await;
    vch.filter_refused(
        "/containers/json",
        json!({ "publish": ["80"] }),
        "--filter publish is not supported by vic: port filters are not implemented yet",
    )
    .await;
}

#[tokio::test]
async fn filters_that_are_not_a_json_object_are_a_400() {
    let (vch, _) = three().await;
    for raw in ["status=created", "%7B", "%5B%22status%22%5D"] {
        let a = vch.get(&format!("/containers/json?filters={raw}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{raw}");
        assert!(a.message().starts_with("invalid filter: "), "{raw}: {a:?}");
    }
}

#[tokio::test]
async fn status_filters_list_created_containers_and_all_lists_every_one() {
    let (vch, _) = three().await;
    let a = vch.get("/containers/json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(names(&a.body), Vec::<String>::new(), "none is running");
    let a = vch.get("/containers/json?all=1").await;
    assert_eq!(names(&a.body), ["/log", "/api", "/web"], "newest first");
    let q = filters(json!({ "status": ["created"] }));
    let a = vch.get(&format!("/containers/json?filters={q}")).await;
    assert_eq!(names(&a.body), ["/log", "/api", "/web"]);
    let q = filters(json!({ "status": { "exited": true } }));
    let a = vch
        .get(&format!("/containers/json?all=1&filters={q}"))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(names(&a.body), Vec::<String>::new());
}

#[tokio::test]
async fn name_label_and_id_filters_pick_their_subset() {
    let (vch, [a_id, _, c_id]) = three().await;
    let list = |f: serde_json::Value| {
        let vch = &vch;
        async move {
            let a = vch
                .get(&format!("/containers/json?all=1&filters={}", filters(f)))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
            names(&a.body)
        }
    };
    assert_eq!(list(json!({ "name": ["pi"] })).await, ["/api"]);
    assert_eq!(
        list(json!({ "name": ["/web", "lo"] })).await,
        ["/log", "/web"]
    );
    assert_eq!(list(json!({ "label": ["tier"] })).await, ["/api", "/web"]);
    assert_eq!(list(json!({ "label": ["tier=front"] })).await, ["/web"]);
    assert_eq!(
        list(json!({ "label!": ["tier=front"] })).await,
        ["/log", "/api"]
    );
    assert_eq!(list(json!({ "id": [&a_id[..10]] })).await, ["/web"]);
    assert_eq!(
        list(json!({ "id": [&c_id[..12]], "label": ["tier"] })).await,
        Vec::<String>::new(),
        "every key must match"
    );
}

#[tokio::test]
async fn limit_takes_the_newest_and_a_limit_that_is_not_a_number_is_ignored() {
    let (vch, _) = three().await;
    let a = vch.get("/containers/json?limit=2").await;
    assert_eq!(names(&a.body), ["/log", "/api"]);
    let a = vch.get("/containers/json?limit=lots").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        names(&a.body),
        Vec::<String>::new(),
        "as if no limit were given"
    );
}

#[tokio::test]
async fn a_missing_container_is_a_404_for_every_verb() {
    let vch = with_busybox().await;
    for (method, uri) in [
        ("GET", "/containers/x/json"),
        ("DELETE", "/containers/x"),
        ("DELETE", "/containers/x?force=1"),
        ("POST", "/containers/x/kill"),
        ("POST", "/containers/x/wait"),
        ("POST", "/containers/x/start"),
        ("POST", "/containers/x/stop?t=1"),
        ("GET", "/containers/x/logs?stdout=1"),
    ] {
        let a = vch.send(method, uri, "").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {uri}: {a:?}");
        assert_eq!(a.message(), "No such container: x", "{method} {uri}");
    }
}

#[tokio::test]
async fn remove_removes_and_kill_needs_a_known_signal_and_a_running_container() {
    let (vch, [a_id, ..]) = three().await;
    let a = vch.post("/containers/api/kill?signal=NOPE", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "Invalid signal: NOPE");
    let a = vch.post("/containers/x/kill?signal=NOPE", "").await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "the signal is read first"
    );
    let a = vch.post("/containers/api/kill?signal=TERM", "").await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.message()
            .starts_with("Cannot kill container: api: Container "),
        "{a:?}"
    );
    let a = vch.send("DELETE", &format!("/containers/{a_id}"), "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    let a = vch.get("/containers/web/json").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_wait_resize_and_logs_parameters_are_400s() {
    let (vch, _) = three().await;
    let a = vch.post("/containers/web/wait?condition=bogus", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid condition: \"bogus\"");
    let a = vch.post("/containers/web/resize?h=abc&w=80", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid height");
    let a = vch.post("/containers/web/resize?h=24", "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid width");
    let a = vch.get("/containers/web/logs?stdout=0&stderr=false").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "Bad parameters: you must choose at least one stream"
    );
}

#[tokio::test]
async fn a_volume_driver_is_looked_up_when_a_volume_is_made_as_dockerd_does() {
    let vch = with_busybox().await;
    let body = |volumes: serde_json::Value| {
        json!({
            "Image": "busybox",
            "Cmd": ["true"],
            "Volumes": volumes,
            "HostConfig": { "VolumeDriver": "foo" },
        })
        .to_string()
    };
    // No volume to make: the driver is only recorded.
    let a = vch
        .post("/containers/create?name=plain", &body(json!(null)))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let a = vch.get("/containers/plain/json").await;
    assert_eq!(a.body["HostConfig"]["VolumeDriver"], "foo");
    // A volume to make with it: not found, and no container is left.
    let a = vch
        .post("/containers/create?name=vol", &body(json!({ "/data": {} })))
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{a:?}");
    assert!(a.message().contains("plugin \"foo\" not found"), "{a:?}");
    assert_eq!(
        vch.get("/containers/vol/json").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_container_without_a_log_refuses_logs_as_dockerd_does() {
    let vch = with_busybox().await;
    let body = json!({
        "Image": "busybox",
        "Cmd": ["echo", "hi"],
        "HostConfig": { "LogConfig": { "Type": "none", "Config": {} } },
    });
    let a = vch
        .post("/containers/create?name=quiet", &body.to_string())
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let a = vch.get("/containers/quiet/json").await;
    assert_eq!(a.body["HostConfig"]["LogConfig"]["Type"], "none");
    let a = vch.get("/containers/quiet/logs?stdout=1").await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        a.message(),
        "configured logging driver does not support reading"
    );
}

#[tokio::test]
async fn a_version_prefix_routes_the_same_and_one_out_of_range_is_refused() {
    let (vch, _) = three().await;
    let plain = vch.get("/containers/json?all=1").await;
    let versioned = vch.get("/v1.43/containers/json?all=1").await;
    assert_eq!(versioned.status, StatusCode::OK);
    assert_eq!(names(&versioned.body), names(&plain.body));
    let q = filters(json!({ "bogus": ["x"] }));
    let a = vch
        .get(&format!("/v1.50/containers/json?filters={q}"))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid filter 'bogus'");
    let a = vch.get("/v1.24/containers/x/json").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "No such container: x");
    let a = vch.get("/v1.51/containers/json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "client version 1.51 is too new. Maximum supported API version is 1.50"
    );
    let a = vch.get("/v1.23/containers/json").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.message().starts_with("client version 1.23 is too old"),
        "{a:?}"
    );
}

#[tokio::test]
async fn prune_refuses_filters_it_does_not_apply() {
    let (vch, _) = three().await;
    let q = filters(json!({ "status": ["exited"] }));
    let a = vch
        .post(&format!("/containers/prune?filters={q}"), "")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid filter 'status'");
    let q = filters(json!({ "until": ["yesterday"] }));
    let a = vch
        .post(&format!("/containers/prune?filters={q}"), "")
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "failed to parse value of filter until: \"yesterday\" is not a timestamp or a duration"
    );
    let q = filters(json!({ "label": ["tier=back"] }));
    let a = vch
        .post(&format!("/containers/prune?filters={q}"), "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.body["ContainersDeleted"].as_array().map(Vec::len),
        Some(1)
    );
    let left = vch.get("/containers/json?all=1").await;
    assert_eq!(names(&left.body), ["/log", "/web"]);
}
