//! `GET /events`: the past events a window asks for, narrowed by raw filters, and the 400s
//! of bad parameters.

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{filters, Vch};

/// The events of a body, one JSON object a line.
fn events(body: &Value) -> Vec<Value> {
    match body {
        Value::String(lines) => lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON event"))
            .collect(),
        one => vec![one.clone()],
    }
}

#[tokio::test]
async fn a_closed_window_returns_its_events_narrowed_by_the_filters() {
    let vch = Vch::new().await;
    vch.add_image(1, &["busybox:latest"], "2024-01-01T00:00:00Z");
    let web = vch
        .create("web", "busybox", json!({ "tier": "front" }))
        .await;
    let api = vch.create("api", "busybox", json!({})).await;
    let a = vch.send("DELETE", "/containers/api", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let until = chrono::Utc::now().timestamp() + 1;
    let window = format!("since=0&until={until}");
    let actions = |q: String| {
        let vch = &vch;
        async move {
            let a = vch.get(&format!("/events?{q}")).await;
            assert_eq!(a.status, StatusCode::OK, "{q}: {a:?}");
            events(&a.body)
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["Action"].as_str().unwrap_or(""),
                        e["id"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let all = actions(window.clone()).await;
    assert_eq!(
        all,
        [
            format!("create {web}"),
            format!("create {api}"),
            format!("destroy {api}")
        ]
    );
    let f = filters(json!({ "event": ["create"], "container": ["api"] }));
    assert_eq!(
        actions(format!("{window}&filters={f}")).await,
        [format!("create {api}")]
    );
    let f = filters(json!({ "label": ["tier=front"] }));
    assert_eq!(
        actions(format!("{window}&filters={f}")).await,
        [format!("create {web}")]
    );
}

#[tokio::test]
async fn an_unknown_filter_key_is_a_400() {
    let vch = Vch::new().await;
    vch.filter_refused(
        "/events",
        json!({ "bogus": ["x"] }),
        "invalid filter 'bogus'",
    )
    .await;
    vch.filter_refused(
        "/events",
        json!({ "plugin": ["x"] }),
        "--filter plugin is not supported by vic: vic has no plugins",
    )
    .await;
    let a = vch.get("/events?filters=%7Bnope").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.message().starts_with("invalid filter: "), "{a:?}");
}

#[tokio::test]
async fn a_since_or_until_that_is_not_a_time_is_a_400() {
    let vch = Vch::new().await;
    let a = vch.get("/events?since=yesterday").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid since value \"yesterday\"");
    let a = vch.get("/events?since=0&until=1.x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid until value \"1.x\"");
}

/// Image changes reach `/events` from the port layer's image service, with Docker's actions
/// and the name each tag concerns.
#[tokio::test]
async fn tag_untag_and_delete_of_an_image_are_events() {
    let vch = Vch::new().await;
    let id = vch.add_image(1, &["busybox:latest"], "2024-01-01T00:00:00Z");
    let a = vch.post("/images/busybox/tag?repo=mine&tag=v1", "").await;
    assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
    let a = vch.send("DELETE", "/images/mine:v1", "").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let a = vch.send("DELETE", "/images/busybox", "").await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let until = chrono::Utc::now().timestamp() + 1;
    let a = vch
        .get(&format!(
            "/events?since=0&until={until}&filters={}",
            super::filters(json!({ "type": ["image"] }))
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let seen: Vec<String> = events(&a.body)
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["Action"].as_str().unwrap_or(""),
                e["Actor"]["ID"].as_str().unwrap_or(""),
                e["Actor"]["Attributes"]["name"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            format!("tag {id} mine:v1"),
            format!("untag {id} mine:v1"),
            format!("untag {id} busybox:latest"),
            format!("delete {id} -"),
        ]
    );
}
