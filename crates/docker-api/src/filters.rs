//! Docker's `filters` query parameter, parsed once for every list, prune and event endpoint:
//! `{"key": ["v", …]}` or the older `{"key": {"v": true}}`. Each endpoint names the keys it
//! applies and the keys Docker knows that vic does not apply yet; a key of the second kind is
//! refused naming it, any other as dockerd refuses it (`invalid filter 'k'`). No filter is
//! ignored.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::{ApiError, ApiResult};

/// What an endpoint reads when `filters` is its only parameter (`GET /images/json`,
/// `POST /images/prune`, `POST /containers/prune`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct FiltersQuery {
    pub(crate) filters: Option<String>,
}

/// What a `filters` parameter asks for: every key must match one of its values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `raw` for an endpoint that applies `applied` and refuses `not_yet` (key, why).
    pub(crate) fn parse(
        raw: Option<&str>,
        applied: &[&str],
        not_yet: &[(&str, &str)],
    ) -> ApiResult<Filters> {
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let Value::Object(m) = v else {
            return Err(ApiError::bad_request(
                "invalid filter: the filters must be a JSON object",
            ));
        };
        let mut out = BTreeMap::new();
        for (k, vals) in m {
            if let Some((_, why)) = not_yet.iter().find(|(n, _)| *n == k) {
                return Err(ApiError::bad_request(format!(
                    "--filter {k} is not supported by vic: {why}"
                )));
            }
            if !applied.contains(&k.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
            let list = match vals {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Value::Object(o) => o.keys().cloned().collect(),
                _ => Vec::new(),
            };
            out.insert(k, list);
        }
        Ok(Filters(out))
    }

    /// The values given for `key` (none when it is absent).
    pub(crate) fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether `key` is absent, or one of its values satisfies `f`.
    pub(crate) fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        let vals = self.values(key);
        vals.is_empty() || vals.iter().any(|v| f(v))
    }

    /// Takes `key`'s values out (none when it is absent).
    pub(crate) fn take(&mut self, key: &str) -> Vec<String> {
        self.0.remove(key).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> ApiResult<Filters> {
        Filters::parse(
            Some(raw),
            &["label", "status"],
            &[("publish", "port filters are not implemented yet")],
        )
    }

    #[test]
    fn both_forms_parse_and_nothing_unknown_passes() {
        let a = parse(r#"{"label":["a=b","c"],"status":{"running":true}}"#).unwrap();
        assert_eq!(a.values("label"), ["a=b", "c"]);
        assert_eq!(a.values("status"), ["running"]);
        assert!(a.values("nope").is_empty());
        assert!(a.any("nope", |_| false), "an absent key admits everything");
        assert!(a.any("status", |s| s == "running"));
        assert!(!a.any("status", |s| s == "exited"));
        let e = parse(r#"{"colour":["red"]}"#).unwrap_err();
        assert_eq!(e.message, "invalid filter 'colour'");
        let e = parse(r#"{"publish":["80"]}"#).unwrap_err();
        assert_eq!(
            e.message,
            "--filter publish is not supported by vic: port filters are not implemented yet"
        );
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
        assert_eq!(Filters::parse(None, &[], &[]).unwrap(), Filters::default());
    }
}
