//! Query strings as clients write them: Docker's booleans, repeated parameters, parameters
//! vic does not read, and the 400 of a value it cannot.

use axum::http::StatusCode;
use serde_json::json;

use super::{filters, names, Vch};

async fn two() -> Vch {
    let vch = Vch::new().await;
    vch.add_image(1, &["busybox:latest"], "2024-01-01T00:00:00Z");
    vch.create("web", "busybox", json!({})).await;
    vch.create("api", "busybox", json!({})).await;
    vch
}

#[tokio::test]
async fn booleans_read_as_docker_clients_send_them() {
    let vch = two().await;
    for v in ["1", "true", "True", "TRUE", "yes"] {
        let a = vch.get(&format!("/containers/json?all={v}")).await;
        assert_eq!(a.status, StatusCode::OK, "{v}");
        assert_eq!(names(&a.body), ["/api", "/web"], "all={v}");
    }
    for v in ["0", "false", "False", "no", "none", ""] {
        let a = vch.get(&format!("/containers/json?all={v}")).await;
        assert_eq!(a.status, StatusCode::OK, "{v}");
        assert_eq!(names(&a.body), Vec::<String>::new(), "all={v}");
    }
}

#[tokio::test]
async fn a_bad_boolean_is_a_400_naming_the_parameter_in_dockers_json() {
    let vch = two().await;
    for (method, uri, param) in [
        ("DELETE", "/containers/web?force=maybe", "force"),
        ("DELETE", "/v1.43/containers/web?force=maybe", "force"),
        ("GET", "/containers/json?all=maybe", "all"),
        ("GET", "/containers/web/logs?stdout=maybe", "stdout"),
        ("DELETE", "/images/busybox?force=maybe", "force"),
        ("POST", "/images/load?quiet=maybe", "quiet"),
    ] {
        let a = vch.send(method, uri, "").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{method} {uri}: {a:?}");
        assert_eq!(
            a.body,
            json!({ "message": format!("invalid value for {param}: maybe") }),
            "{method} {uri}"
        );
    }
    let a = vch.get("/containers/json?all=1").await;
    assert_eq!(names(&a.body), ["/api", "/web"], "nothing was removed");
    let a = vch.send("DELETE", "/containers/web?force=True", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
}

#[tokio::test]
async fn a_repeated_parameter_takes_its_last_value() {
    let vch = two().await;
    let bogus = filters(json!({ "bogus": ["x"] }));
    let web = filters(json!({ "name": ["web"] }));
    let a = vch
        .get(&format!(
            "/containers/json?all=1&filters={bogus}&filters={web}"
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(names(&a.body), ["/web"]);
    let a = vch
        .get(&format!(
            "/containers/json?all=1&filters={web}&filters={bogus}"
        ))
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.message(), "invalid filter 'bogus'");
    let a = vch.get("/containers/json?all=1&all=0").await;
    assert_eq!(names(&a.body), Vec::<String>::new());
}

#[tokio::test]
async fn parameters_vic_does_not_read_are_ignored_as_dockerd_ignores_them() {
    let vch = two().await;
    let a = vch
        .get("/containers/json?all=1&size=maybe&since=whatever&x")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(names(&a.body), ["/api", "/web"]);
    let a = vch.send("DELETE", "/containers/api?v=1&link=0", "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{a:?}");
}
