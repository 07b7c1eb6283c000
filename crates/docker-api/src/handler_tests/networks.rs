//! `/networks` through the router: the predefined networks, user networks made, listed,
//! filtered, inspected, used by containers, connected, disconnected, removed and pruned, and
//! the refusals in Docker's words.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{filters, Vch};

fn names(a: &Value) -> Vec<&str> {
    a.as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn bridge_and_none_are_listed_and_filtered() {
    let vch = Vch::new().await;
    let a = vch.get("/networks").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(names(&a.body), ["bridge", "none"]);
    assert_eq!(a.body[0]["Driver"], "bridge");
    assert_eq!(a.body[1]["Driver"], "null");
    let a = vch
        .get(&format!(
            "/networks?filters={}",
            filters(json!({ "name": ["bri"] }))
        ))
        .await;
    assert_eq!(names(&a.body), ["bridge"]);
    let a = vch
        .get(&format!(
            "/networks?filters={}",
            filters(json!({ "type": ["custom"] }))
        ))
        .await;
    assert_eq!(a.body, json!([]), "no user networks");
    vch.filter_refused(
        "/networks",
        json!({ "bogus": ["x"] }),
        "invalid filter 'bogus'",
    )
    .await;
}

#[tokio::test]
async fn inspect_finds_a_network_by_name_or_id_prefix() {
    let vch = Vch::new().await;
    let a = vch.get("/networks/bridge").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.body["IPAM"]["Config"],
        json!([{ "Subnet": "172.16.0.0/16", "Gateway": "172.16.0.1" }])
    );
    let id = a.body["Id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    let b = vch.get(&format!("/networks/{}", &id[..12])).await;
    assert_eq!(b.body["Name"], "bridge");
    let a = vch.get("/networks/nosuch").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "network nosuch not found");
}

#[tokio::test]
async fn user_networks_are_made_listed_by_their_filters_and_inspected() {
    let vch = Vch::new().await;
    let body = json!({
        "Name": "app", "Driver": "bridge", "Labels": { "tier": "web" },
        "IPAM": { "Config": [{ "Subnet": "10.7.0.0/24", "Gateway": "10.7.0.254" }] },
        "Internal": true,
    });
    let a = vch.post("/networks/create", &body.to_string()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let id = a.body["Id"].as_str().unwrap().to_string();
    let auto = vch.post("/networks/create", r#"{"Name":"auto"}"#).await;
    assert_eq!(auto.status, StatusCode::CREATED, "{auto:?}");

    let a = vch.get("/networks/app").await;
    assert_eq!(a.body["Id"], id.as_str());
    assert_eq!(
        a.body["IPAM"]["Config"],
        json!([{ "Subnet": "10.7.0.0/24", "Gateway": "10.7.0.254" }])
    );
    assert_eq!(a.body["Labels"], json!({ "tier": "web" }));
    assert_eq!(a.body["Internal"], true);
    let a = vch.get("/networks/auto").await;
    assert_eq!(
        a.body["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16",
        "the next /16"
    );

    let listed = |f: Value| {
        let vch = &vch;
        async move {
            let a = vch.get(&format!("/networks?filters={}", filters(f))).await;
            assert_eq!(a.status, StatusCode::OK, "{a:?}");
            names(&a.body)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(json!({ "type": ["custom"] })).await, ["app", "auto"]);
    assert_eq!(listed(json!({ "label": ["tier=web"] })).await, ["app"]);
    assert_eq!(
        listed(json!({ "dangling": ["true"] })).await,
        ["app", "auto"]
    );

    let again = vch.post("/networks/create", &body.to_string()).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.message(), "network with name app already exists");
    let over = json!({ "Name": "over", "IPAM": { "Config": [{ "Subnet": "10.7.0.128/25" }] } });
    let a = vch.post("/networks/create", &over.to_string()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a:?}");
    assert!(a.message().contains("Pool overlaps"), "{a:?}");
    let a = vch
        .post("/networks/create", r#"{"Name":"x","Driver":"overlay"}"#)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn containers_get_addresses_on_user_networks_which_then_cannot_be_removed() {
    let vch = Vch::new().await;
    vch.add_image(1, &["busybox:latest"], "2024-01-01T00:00:00Z");
    let body = json!({ "Name": "app", "IPAM": { "Config": [{ "Subnet": "10.7.0.0/24" }] } });
    assert_eq!(
        vch.post("/networks/create", &body.to_string()).await.status,
        StatusCode::CREATED
    );
    let create = json!({
        "Image": "busybox", "Cmd": ["sh"],
        "HostConfig": { "NetworkMode": "app" },
        "NetworkingConfig": { "EndpointsConfig": { "app": {
            "IPAMConfig": { "IPv4Address": "10.7.0.9" }, "Aliases": ["api"] } } },
    });
    let a = vch
        .post("/containers/create?name=web", &create.to_string())
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let taken = vch
        .post("/containers/create?name=web2", &create.to_string())
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{taken:?}");
    assert_eq!(taken.message(), "Address already in use");
    let on = |net: &str| {
        let f = filters(json!({ "network": [net] }));
        let vch = &vch;
        async move {
            super::names(
                &vch.get(&format!("/containers/json?all=1&filters={f}"))
                    .await
                    .body,
            )
        }
    };
    assert_eq!(on("app").await, ["/web"]);
    assert!(on("bridge").await.is_empty());
    let a = vch.get("/containers/web/json").await;
    let ep = &a.body["NetworkSettings"]["Networks"]["app"];
    assert_eq!(ep["Aliases"], json!(["api"]), "{ep}");
    assert_eq!(ep["IPAMConfig"]["IPv4Address"], "10.7.0.9", "{ep}");

    let a = vch.send("DELETE", "/networks/app", "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.message()
            .starts_with("error while removing network: network app id "),
        "{a:?}"
    );
    assert!(a.message().ends_with(" has active endpoints"), "{a:?}");

    // Disconnected while stopped, the container no longer holds the network.
    let a = vch
        .post("/networks/app/disconnect", r#"{"Container":"web"}"#)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let a = vch.get("/containers/web/json").await;
    assert_eq!(a.body["NetworkSettings"]["Networks"], json!({}));
    let a = vch
        .post(
            "/networks/app/connect",
            r#"{"Container":"web","EndpointConfig":{"Aliases":["again"]}}"#,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let a = vch.get("/containers/web/json").await;
    assert_eq!(
        a.body["NetworkSettings"]["Networks"]["app"]["Aliases"],
        json!(["again"])
    );
    let a = vch
        .post("/networks/app/connect", r#"{"Container":"web"}"#)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.message(),
        "endpoint with name web already exists in network app"
    );

    let bridge_alias = json!({
        "Image": "busybox", "Cmd": ["sh"],
        "NetworkingConfig": { "EndpointsConfig": { "bridge": { "Aliases": ["x"] } } },
    });
    let a = vch
        .post("/containers/create", &bridge_alias.to_string())
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.message(),
        "network-scoped alias is supported only for containers in user defined networks"
    );
    let a = vch
        .post(
            "/containers/create",
            &json!({ "Image": "busybox", "HostConfig": { "NetworkMode": "nosuch" } }).to_string(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.message(), "network nosuch not found");
}

#[tokio::test]
async fn predefined_networks_stay_unused_user_networks_are_removed_and_pruned() {
    let vch = Vch::new().await;
    for net in ["bridge", "none"] {
        let a = vch.send("DELETE", &format!("/networks/{net}"), "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(
            a.message(),
            format!("{net} is a pre-defined network and cannot be removed")
        );
    }
    // Names that are no hexadecimal ID prefix.
    for n in ["net-a", "net-b", "net-c"] {
        let body = json!({ "Name": n, "Labels": { "keep": (n == "net-c").to_string() } });
        assert_eq!(
            vch.post("/networks/create", &body.to_string()).await.status,
            StatusCode::CREATED
        );
    }
    let a = vch.send("DELETE", "/networks/net-a", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
    assert_eq!(
        vch.get("/networks/net-a").await.status,
        StatusCode::NOT_FOUND
    );
    let a = vch
        .post(
            &format!(
                "/networks/prune?filters={}",
                filters(json!({ "label": ["keep=false"] }))
            ),
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({ "NetworksDeleted": ["net-b"] }));
    let a = vch.get("/networks").await;
    assert_eq!(names(&a.body), ["bridge", "net-c", "none"]);
    let until = chrono::Utc::now().timestamp() + 1;
    let events = vch.get(&format!("/events?since=0&until={until}")).await;
    let seen: Vec<(String, String)> = events
        .body
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["Type"] == "network")
        .map(|e| {
            let name = e["Actor"]["Attributes"]["name"]
                .as_str()
                .unwrap()
                .to_string();
            (e["Action"].as_str().unwrap().to_string(), name)
        })
        .collect();
    let want = [
        ("create", "net-a"),
        ("create", "net-b"),
        ("create", "net-c"),
        ("destroy", "net-a"),
        ("destroy", "net-b"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, n)| (a.to_string(), n.to_string()))
        .collect();
    assert_eq!(seen, want);
}
