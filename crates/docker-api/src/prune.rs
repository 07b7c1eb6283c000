//! `POST /containers/prune`: removes every container that is not running, as dockerd does,
//! through the port layer's own removal (so each one gets its `destroy` event).
//!
//! Filters, as dockerd takes them: `until` (created before a timestamp, or before a Go
//! duration ago: `10m`, `1h30m`), `label` (`k` or `k=v`, every one must match) and `label!`
//! (a container matching every one is kept). Any other filter is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use portlayer::{ContainerRecord, Status};
use serde_json::{json, Value};

use crate::events::parse_time;
use crate::filters::{Filters, FiltersQuery};
use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

/// The filters `POST /containers/prune` accepts.
const ACCEPTED: [&str; 3] = ["until", "label", "label!"];

/// What a prune removes: which containers, by their filters.
#[derive(Debug, Default)]
struct Selection {
    until: Option<DateTime<Utc>>,
    labels: Vec<String>,
    not_labels: Vec<String>,
}

impl Selection {
    fn parse(q: &FiltersQuery, now: DateTime<Utc>) -> ApiResult<Selection> {
        let mut filters = Filters::parse(q.filters.as_deref(), &ACCEPTED, &[])?;
        let until = match filters.take("until").as_slice() {
            [] => None,
            [one] => Some(until_time(one, now)?),
            _ => {
                return Err(ApiError::bad_request(
                    "more than one until filter specified",
                ))
            }
        };
        Ok(Selection {
            until,
            labels: filters.take("label"),
            not_labels: filters.take("label!"),
        })
    }

    fn admits(&self, c: &ContainerRecord) -> bool {
        let has = |l: &String| label_matches(&c.spec.labels, l);
        c.state.status != Status::Running
            && self.until.is_none_or(|u| c.created <= u)
            && self.labels.iter().all(has)
            && (self.not_labels.is_empty() || !self.not_labels.iter().all(has))
    }
}

/// `k` (the label is there) or `k=v` (it has that value).
pub(crate) fn label_matches(labels: &BTreeMap<String, String>, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// Docker's `until`: a Go duration before `now` (`90s`, `1h30m`), a Unix time (`1690000000.5`),
/// RFC 3339, or a date or date and time in UTC (`2026-12-01`, `2026-12-01T10:00:00`).
pub(crate) fn until_time(value: &str, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    if value != "0" {
        if let Some(d) = go_duration(value) {
            let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            return Ok(now
                .checked_sub_signed(d)
                .unwrap_or(DateTime::<Utc>::MIN_UTC));
        }
    }
    if let Some(t) = parse_time(value) {
        return Ok(t);
    }
    for layout in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(value, layout) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    Err(ApiError::bad_request(format!(
        "failed to parse value of filter until: \"{value}\" is not a timestamp or a duration"
    )))
}

/// Go's `time.ParseDuration` for non-negative durations: numbers with units, `1h30m`,
/// `1.5s`, `250ms` (units ns, us, µs, ms, s, m, h).
fn go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * nanos_per;
        rest = tail;
    }
    (total.is_finite() && total < u64::MAX as f64).then(|| Duration::from_nanos(total as u64))
}

/// POST /containers/prune?filters=
pub async fn containers(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<FiltersQuery>,
) -> ApiResult<Json<Value>> {
    let selection = Selection::parse(&q, Utc::now())?;
    let used_before = st.images.usage().containers;
    let mut deleted = Vec::new();
    for c in st.containers.list() {
        if !selection.admits(&c) {
            continue;
        }
        // As dockerd: a container that cannot be removed (started meanwhile, …) is kept
        // and the prune goes on.
        match st.containers.remove(&c.id, false, false).await {
            Ok(()) => deleted.push(c.id),
            Err(portlayer::Error::NoSuchContainer(_)) => {}
            Err(e) => tracing::warn!(id = %c.id, "prune: the container is kept: {e}"),
        }
    }
    let used_after = st.images.usage().containers;
    let reclaimed = used_before.saturating_sub(used_after);
    st.containers.events().publish(
        "container",
        "prune",
        "",
        [("reclaimed".to_string(), reclaimed.to_string())].into(),
    );
    Ok(Json(json!({
        "ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": reclaimed,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query(filters: &str) -> FiltersQuery {
        FiltersQuery {
            filters: Some(filters.to_string()),
        }
    }

    #[test]
    fn unknown_filters_are_refused_in_dockers_words() {
        let err = Selection::parse(&query(r#"{"status":["exited"]}"#), Utc::now()).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "invalid filter 'status'");
        let err = Selection::parse(&query(r#"{"until":["1h","2h"]}"#), Utc::now()).unwrap_err();
        assert_eq!(err.message, "more than one until filter specified");
        assert!(Selection::parse(&query(r#"{"until":["yesterday"]}"#), Utc::now()).is_err());
        assert!(Selection::parse(&FiltersQuery::default(), Utc::now()).is_ok());
    }

    #[test]
    fn until_reads_durations_and_timestamps() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let at = |v: &str| until_time(v, now).unwrap();
        assert_eq!(
            at("90s"),
            Utc.with_ymd_and_hms(2026, 12, 3, 11, 58, 30).unwrap()
        );
        assert_eq!(
            at("1h30m"),
            Utc.with_ymd_and_hms(2026, 12, 3, 10, 30, 0).unwrap()
        );
        assert_eq!(
            at("1.5h"),
            Utc.with_ymd_and_hms(2026, 12, 3, 10, 30, 0).unwrap()
        );
        assert_eq!(at("1690000000").timestamp(), 1_690_000_000);
        assert_eq!(at("0").timestamp(), 0);
        assert_eq!(
            at("2026-12-01"),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            at("2026-12-01T10:00:00Z"),
            Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
        );
        assert!(go_duration("10x").is_none());
        assert!(go_duration("h").is_none());
        assert!(go_duration("").is_none());
    }

    #[test]
    fn labels_select_and_label_bang_keeps() {
        let labels: BTreeMap<String, String> = [
            ("keep".to_string(), "yes".to_string()),
            ("a".to_string(), "1".to_string()),
        ]
        .into();
        assert!(label_matches(&labels, "keep"));
        assert!(label_matches(&labels, "a=1"));
        assert!(!label_matches(&labels, "a=2"));
        assert!(!label_matches(&labels, "b"));
        let sel = Selection::parse(&query(r#"{"label!":["keep"]}"#), Utc::now()).unwrap();
        assert_eq!(sel.not_labels, vec!["keep"]);
    }
}
