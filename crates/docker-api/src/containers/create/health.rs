//! A container's health check, as dockerd resolves it: the image's `Healthcheck`, each field
//! the container sets replacing it (`--no-healthcheck`, a test of `NONE`, turning it off),
//! zero durations and retries Docker's defaults; values dockerd refuses, refused in its
//! words.

use portlayer::health::{
    HealthCheck, DEFAULT_INTERVAL_NS, DEFAULT_RETRIES, DEFAULT_START_INTERVAL_NS,
    DEFAULT_TIMEOUT_NS,
};
use serde_json::{json, Value};

use super::config::HealthConfig;
use super::refusal::Refused;

/// Docker's smallest duration in a health check.
const MINIMUM_NS: i64 = 1_000_000;

/// Refuses what dockerd refuses of a container's check.
pub fn validate(c: Option<&HealthConfig>) -> Result<(), Refused> {
    let Some(c) = c else { return Ok(()) };
    for (value, name) in [
        (c.interval, "Interval"),
        (c.timeout, "Timeout"),
        (c.start_period, "StartPeriod"),
        (c.start_interval, "StartInterval"),
    ] {
        if value.is_some_and(|v| v != 0 && v < MINIMUM_NS) {
            return Err(Refused::Invalid(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if c.retries.is_some_and(|r| r < 0) {
        return Err(Refused::Invalid(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    Ok(())
}

fn num(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// The check the container runs (none when neither sets one, or when it is turned off),
/// and inspect's `Config.Healthcheck` (the merged values, as dockerd keeps them).
pub fn resolve(c: Option<&HealthConfig>, image_config: &Value) -> (Option<HealthCheck>, Value) {
    let image = image_config
        .get("Healthcheck")
        .cloned()
        .unwrap_or(Value::Null);
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pick = |own: Option<i64>, key: &str| own.filter(|v| *v != 0).unwrap_or(num(&image, key));
    let test = match c.and_then(|c| c.test.clone()).filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => strs(image.get("Test")),
    };
    let merged = match (c, &image) {
        (None, Value::Null) => return (None, Value::Null),
        (None, image) => image.clone(),
        (Some(c), _) => json!({
            "Test": test,
            "Interval": pick(c.interval, "Interval"),
            "Timeout": pick(c.timeout, "Timeout"),
            "StartPeriod": pick(c.start_period, "StartPeriod"),
            "StartInterval": pick(c.start_interval, "StartInterval"),
            "Retries": pick(c.retries, "Retries"),
        }),
    };
    if test.is_empty() || test[0] == "NONE" {
        return (None, merged);
    }
    let or = |v: i64, default: i64| if v > 0 { v } else { default };
    let check = HealthCheck {
        test,
        interval_ns: or(num(&merged, "Interval"), DEFAULT_INTERVAL_NS),
        timeout_ns: or(num(&merged, "Timeout"), DEFAULT_TIMEOUT_NS),
        start_period_ns: num(&merged, "StartPeriod").max(0),
        start_interval_ns: or(num(&merged, "StartInterval"), DEFAULT_START_INTERVAL_NS),
        retries: or(num(&merged, "Retries"), DEFAULT_RETRIES),
    };
    (Some(check), merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(test: &[&str], interval: i64) -> HealthConfig {
        HealthConfig {
            test: Some(test.iter().map(|s| s.to_string()).collect()),
            interval: Some(interval),
            ..Default::default()
        }
    }

    #[test]
    fn the_containers_fields_replace_the_images_and_defaults_fill_the_rest() {
        let image = json!({ "Healthcheck": { "Test": ["CMD", "true"], "Retries": 5, "Interval": 2_000_000_000i64 } });
        let (check, shown) = resolve(None, &image);
        let check = check.unwrap();
        assert_eq!(check.test, ["CMD", "true"]);
        assert_eq!((check.retries, check.interval_ns), (5, 2_000_000_000));
        assert_eq!(check.timeout_ns, DEFAULT_TIMEOUT_NS);
        assert_eq!(shown["Retries"], 5);
        let (check, _) = resolve(Some(&own(&["CMD-SHELL", "x"], 0)), &image);
        let check = check.unwrap();
        assert_eq!(check.test, ["CMD-SHELL", "x"]);
        assert_eq!((check.retries, check.interval_ns), (5, 2_000_000_000));
        let (check, _) = resolve(Some(&own(&["NONE"], 0)), &image);
        assert!(check.is_none(), "--no-healthcheck");
        assert!(resolve(None, &json!({})).0.is_none());
    }

    #[test]
    fn what_dockerd_refuses_is_refused() {
        assert!(validate(Some(&own(&["CMD", "x"], 1_000_000))).is_ok());
        assert_eq!(
            validate(Some(&own(&["CMD", "x"], 5)))
                .unwrap_err()
                .to_string(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        let negative = HealthConfig {
            retries: Some(-1),
            ..Default::default()
        };
        assert_eq!(
            validate(Some(&negative)).unwrap_err().to_string(),
            "Retries in Healthcheck cannot be negative"
        );
    }
}
