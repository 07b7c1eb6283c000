//! What every request passes before and after the router: on the plain-HTTP endpoint, the
//! check that a web browser is not the one asking; on both endpoints, a JSON body on every
//! refusal, and the cap on buffered request bodies.
//!
//! A VCH without TLS (`--no-tls`) would obey any web page its user opens: a page can POST
//! to `http://127.0.0.1:PORT/containers/create` with a "simple" content type (no preflight),
//! or rebind its own name to 127.0.0.1 and then read the answers too. Neither can hide
//! where it comes from:
//!
//! | attack | what gives it away | the docker CLI, docker-py |
//! |---|---|---|
//! | cross-origin request | browsers send `Origin` on every cross-origin POST (and on `fetch`) | never send `Origin` |
//! | DNS rebinding | `Host` is the attacker's name (`evil.example:PORT`) | `Host` is what `-H tcp://…` names: an IP address or `localhost` |
//!
//! So the plain endpoint refuses any request with an `Origin` header, and any whose `Host`
//! is a name other than `localhost`. An IP address in `Host`, whatever the port (NAT and
//! port forwarding change it), cannot come from a rebound name.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// The largest request body a handler reads whole (container create, login, …). Uploads
/// (`load`, `import`) are streamed to disk and have no such limit.
pub const MAX_JSON_BODY: usize = 10 << 20;

/// The most of a non-JSON error body kept as the message.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// Refuses a request on the plain-HTTP endpoint that a web page may have sent.
pub(crate) fn check_plain_request(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "request refused: it carries an Origin header ({origin}), so a web page sent it; this Docker API has no TLS and serves no web pages"
            ),
        ));
    }
    match headers.get(header::HOST) {
        None => Ok(()),
        Some(host) => match host.to_str() {
            Ok(h) if host_allowed(h) => Ok(()),
            _ => {
                let host = String::from_utf8_lossy(host.as_bytes());
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "request refused: Host {host:?} is not an IP address or localhost; this Docker API has no TLS and answers only requests addressed to it by address"
                    ),
                ))
            }
        },
    }
}

/// Whether `host` (a Host header: `name[:port]` or `[v6][:port]`) is an IP address or
/// `localhost`.
fn host_allowed(host: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fine = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fine && addr.parse::<Ipv6Addr>().is_ok();
    }
    let name = match host.split_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<Ipv4Addr>().is_ok()
}

/// Gives every error response Docker's JSON body: axum's own refusals (a path that is not
/// UTF-8, a body over [`MAX_JSON_BODY`], …) come as plain text or empty, and clients parse
/// `message`. (Query strings are read by `query.rs`, whose refusals are Docker's already.)
pub(crate) async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than the limit of {MAX_JSON_BODY} bytes")
    } else {
        let body = axum::body::to_bytes(resp.into_body(), MAX_ERROR_TEXT)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_lowercase()
        } else {
            text
        }
    };
    ApiError::new(status, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn what_the_docker_cli_sends_passes() {
        for host in [
            "127.0.0.1:2375",
            "localhost:2375",
            "LOCALHOST",
            "[::1]:2375",
            "[::1]",
            "10.1.2.3:12345",
            "127.0.0.1",
        ] {
            assert!(
                check_plain_request(&headers(&[("host", host)])).is_ok(),
                "{host}"
            );
        }
        assert!(check_plain_request(&HeaderMap::new()).is_ok(), "no Host");
    }

    #[test]
    fn a_rebound_name_is_refused() {
        for host in [
            "evil.example",
            "evil.example:2375",
            "localhost.evil.example:2375",
            "127.0.0.1.nip.io:2375",
            "api.moby.localhost",
            "127.0.0.1:2375:1",
            "127.0.0.1:",
            "127.0.0.1:port",
            "[::1",
            "[::1]x",
            "[evil]:1",
            "",
        ] {
            let err = check_plain_request(&headers(&[("host", host)])).unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN, "{host}");
            assert!(
                err.message.contains("is not an IP address"),
                "{host}: {}",
                err.message
            );
        }
    }

    #[test]
    fn any_origin_is_refused_even_with_a_good_host() {
        for origin in ["http://evil.example", "null", "http://127.0.0.1:2375"] {
            let err =
                check_plain_request(&headers(&[("host", "127.0.0.1:2375"), ("origin", origin)]))
                    .unwrap_err();
            assert_eq!(err.status, StatusCode::FORBIDDEN);
            assert!(err.message.contains(origin), "{}", err.message);
        }
    }

    async fn message_of(resp: Response) -> (StatusCode, serde_json::Value) {
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn plain_and_empty_errors_become_docker_json() {
        let resp = (
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string",
        )
            .into_response();
        let (status, v) = message_of(json_errors(resp).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["message"], "Failed to deserialize query string");
        let (status, v) =
            message_of(json_errors(StatusCode::METHOD_NOT_ALLOWED.into_response()).await).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(v["message"], "method not allowed");
        let already = ApiError::not_found("No such container: x").into_response();
        let (_, v) = message_of(json_errors(already).await).await;
        assert_eq!(v["message"], "No such container: x");
    }
}
