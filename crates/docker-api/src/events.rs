//! `GET /events`: the lifecycle event stream, as Docker serves it: recent events from
//! `since`, then live ones, until `until` (or until the client goes away), narrowed by
//! `filters` (type, event, container, image, label).

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use portlayer::Event;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::filters::Filters;
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

/// A Docker time parameter: Unix seconds with an optional fraction (`1690000000.5`), or
/// RFC 3339.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: u32 = digits.parse().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    Utc.timestamp_opt(secs, nanos).single()
}

/// The keys `GET /events` applies.
const EVENT_FILTERS: [&str; 7] = [
    "type",
    "event",
    "container",
    "image",
    "label",
    "network",
    "volume",
];
/// Keys Docker knows that vic has nothing to match yet.
const EVENT_FILTERS_NOT_YET: [(&str, &str); 3] = [
    ("plugin", "vic has no plugins"),
    ("daemon", "events are not labelled by daemon"),
    ("scope", "events are not labelled by scope"),
];

/// Which events the filters admit.
trait Admits {
    fn admits(&self, e: &Event) -> bool;
}

impl Admits for Filters {
    fn admits(&self, e: &Event) -> bool {
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        let image = e.attributes.get("image").map(String::as_str).unwrap_or("");
        self.any("type", |t| t == e.kind)
            && self.any("event", |a| a == e.action)
            && self.any("container", |c| match e.kind {
                "container" => c == name || e.id.starts_with(c),
                "network" => e
                    .attributes
                    .get("container")
                    .is_some_and(|id| id.starts_with(c)),
                _ => false,
            })
            && self.any("network", |n| {
                e.kind == "network" && (n == name || e.id.starts_with(n))
            })
            && self.any("volume", |v| e.kind == "volume" && e.id == v)
            && self.any("image", |i| {
                image == i
                    || (e.kind == "image" && (e.id == i || e.id.starts_with(&format!("{i}:"))))
            })
            && self.any("label", |l| match l.split_once('=') {
                Some((k, v)) => e.attributes.get(k).is_some_and(|x| x == v),
                None => e.attributes.contains_key(l),
            })
    }
}

/// One event in Docker's JSON shape (with the pre-1.22 `status`/`id`/`from` fields the CLI
/// still reads).
fn event_json(e: &Event) -> Value {
    let nanos = e.time.timestamp_nanos_opt().unwrap_or(0);
    let mut v = json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": { "ID": e.id, "Attributes": e.attributes },
        "scope": "local",
        "time": e.time.timestamp(),
        "timeNano": nanos,
    });
    if e.kind == "container" {
        v["status"] = json!(e.action);
        v["id"] = json!(e.id);
        if let Some(img) = e.attributes.get("image") {
            v["from"] = json!(img);
        }
    }
    v
}

fn line(v: &Value) -> bytes::Bytes {
    let mut s = serde_json::to_vec(v).unwrap_or_default();
    s.push(b'\n');
    bytes::Bytes::from(s)
}

/// What `GET /events` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventsQuery {
    /// Past events from this time on ([`parse_time`]); none without it.
    since: Option<String>,
    /// The stream ends at this time; it goes on without it.
    until: Option<String>,
    filters: Option<String>,
}

/// `since` or `until`: none when not given or empty, a 400 naming it when not a time.
fn window_end(name: &str, value: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    match value.filter(|s| !s.is_empty()) {
        Some(s) => match parse_time(s) {
            Some(t) => Ok(Some(t)),
            None => Err(ApiError::bad_request(format!("invalid {name} value {s:?}"))),
        },
        None => Ok(None),
    }
}

/// GET /events?since=&until=&filters=
pub async fn events(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<EventsQuery>,
) -> ApiResult<Response> {
    let since = window_end("since", q.since.as_deref())?;
    let until = window_end("until", q.until.as_deref())?;
    let filters = Filters::parse(q.filters.as_deref(), &EVENT_FILTERS, &EVENT_FILTERS_NOT_YET)?;
    let (past, mut live) = st.containers.events().history_and_subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(256);
    tokio::spawn(async move {
        let in_window =
            |e: &Event| since.is_none_or(|s| e.time >= s) && until.is_none_or(|u| e.time <= u);
        if since.is_some() {
            for e in past.iter().filter(|e| in_window(e) && filters.admits(e)) {
                if tx.send(line(&event_json(e))).await.is_err() {
                    return;
                }
            }
        }
        let deadline = until.map(|u| {
            let left = (u - Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            let e = tokio::select! {
                e = next => e,
                // The client went away.
                _ = tx.closed() => return,
            };
            match e {
                None => return, // until reached
                Some(Ok(e)) => {
                    if in_window(&e)
                        && filters.admits(&e)
                        && tx.send(line(&event_json(&e))).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!(missed = n, "an events client fell behind");
                }
                Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return,
            }
        }
    });
    let stream = futures_util::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Ok::<_, std::io::Error>,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ev(kind: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            time: Utc::now(),
            kind,
            action: action.into(),
            id: id.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn docker_times_parse() {
        let t = parse_time("1690000000.25").unwrap();
        assert_eq!(t.timestamp(), 1_690_000_000);
        assert_eq!(t.timestamp_subsec_nanos(), 250_000_000);
        assert_eq!(parse_time("1690000000").unwrap().timestamp(), 1_690_000_000);
        assert!(parse_time("2026-11-28T15:00:00Z").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn filters_narrow_as_docker_does() {
        let die = ev(
            "container",
            "die",
            "abcdef123456",
            &[("name", "web"), ("image", "busybox"), ("tier", "front")],
        );
        let pull = ev("image", "pull", "busybox:latest", &[]);
        let f =
            |raw: &str| Filters::parse(Some(raw), &EVENT_FILTERS, &EVENT_FILTERS_NOT_YET).unwrap();
        assert!(f(r#"{"type":["container"]}"#).admits(&die));
        assert!(!f(r#"{"type":["container"]}"#).admits(&pull));
        assert!(f(r#"{"event":{"die":true}}"#).admits(&die));
        assert!(f(r#"{"container":["web"]}"#).admits(&die));
        assert!(f(r#"{"container":["abcdef"]}"#).admits(&die));
        assert!(!f(r#"{"container":["db"]}"#).admits(&die));
        assert!(f(r#"{"image":["busybox"]}"#).admits(&pull));
        assert!(f(r#"{"label":["tier=front"]}"#).admits(&die));
        assert!(!f(r#"{"label":["tier=back"]}"#).admits(&die));
        assert!(Filters::parse(
            Some(r#"{"bogus":["x"]}"#),
            &EVENT_FILTERS,
            &EVENT_FILTERS_NOT_YET
        )
        .is_err());
        let v = event_json(&die);
        assert_eq!(v["Action"], "die");
        assert_eq!(v["status"], "die");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["Attributes"]["tier"], "front");
    }
}
