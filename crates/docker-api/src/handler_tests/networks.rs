//! `/networks` through the router: the predefined networks, their filters, inspect by name
//! and ID, and the refusals of what vic does not do yet.

use axum::http::StatusCode;
use serde_json::json;

use super::{filters, Vch};

#[tokio::test]
async fn bridge_and_none_are_listed_and_filtered() {
    let vch = Vch::new().await;
    let a = vch.get("/networks").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let names: Vec<&str> = a
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bridge", "none"]);
    assert_eq!(a.body[0]["Driver"], "bridge");
    assert_eq!(a.body[1]["Driver"], "null");
    let a = vch
        .get(&format!(
            "/networks?filters={}",
            filters(json!({ "name": ["bri"] }))
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert_eq!(a.body[0]["Name"], "bridge");
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
    vch.filter_refused(
        "/networks",
        json!({ "label": ["a=b"] }),
        "--filter label is not supported by vic: user networks are not implemented yet",
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
async fn predefined_networks_stay_and_user_networks_are_refused() {
    let vch = Vch::new().await;
    let a = vch.send("DELETE", "/networks/bridge", "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.message(),
        "bridge is a pre-defined network and cannot be removed"
    );
    let a = vch.post("/networks/create", r#"{"Name":"web"}"#).await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED);
    assert!(a.message().contains("not supported by vic"), "{a:?}");
    let a = vch
        .post("/networks/bridge/connect", r#"{"Container":"x"}"#)
        .await;
    assert_eq!(a.status, StatusCode::NOT_IMPLEMENTED);
    let a = vch.post("/networks/prune", "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, json!({ "NetworksDeleted": null }));
}
