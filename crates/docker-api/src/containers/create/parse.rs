//! The create body, parsed strictly: a field of the wrong type is a 400 naming it, worded as
//! dockerd's Go decoder words it (`json: cannot unmarshal string into Go struct field
//! HostConfig.HostConfig.Memory of type int64`). Unknown fields are ignored, as Go ignores them.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::casefold::GoKeys;
use super::config::{ContainerConfig, NetworkingConfig};
use super::host_config::HostConfig;
use crate::ApiError;

/// The three parts of Docker's create body.
#[derive(Debug, Clone, Default)]
pub struct CreateBody {
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub networking_config: NetworkingConfig,
}

/// Parses a create body; `null` or an empty body is an empty config, as with dockerd.
pub fn body(bytes: &[u8]) -> Result<CreateBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(CreateBody::default());
    }
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    match &v {
        Value::Null => return Ok(CreateBody::default()),
        Value::Object(_) => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type container.CreateRequest",
                json_kind(other)
            )))
        }
    }
    Ok(CreateBody {
        config: part(&v, None)?,
        host_config: part(&v, Some("HostConfig"))?,
        networking_config: part(&v, Some("NetworkingConfig"))?,
    })
}

/// Go's name of a JSON value's kind.
fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One part of the body (`None`: the config at the top level), `null` or absent as default.
fn part<T: DeserializeOwned + Default>(v: &Value, key: Option<&str>) -> Result<T, ApiError> {
    let (value, prefix) = match key {
        Some(k) => match go_get(v, k) {
            None | Some(Value::Null) => return Ok(T::default()),
            Some(value) => (value, format!("{k}.{k}")),
        },
        None => (v, "Config".to_string()),
    };
    serde_path_to_error::deserialize(GoKeys(value)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix
        } else {
            format!("{prefix}.{path}")
        };
        ApiError::bad_request(go_message(&field, &e.into_inner().to_string()))
    })
}

/// A member of an object as Go finds it: by exact name, else equal but for ASCII case.
fn go_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let m = v.as_object()?;
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Rewrites serde's "invalid type: string \"x\", expected i64" in Go's words.
fn go_message(field: &str, serde: &str) -> String {
    let body = serde
        .strip_prefix("invalid type: ")
        .or_else(|| serde.strip_prefix("invalid value: "));
    let Some((got, expected)) = body.and_then(|b| b.split_once(", expected ")) else {
        return format!("json: cannot unmarshal into Go struct field {field}: {serde}");
    };
    let got = match got.split_once(' ') {
        _ if got.starts_with("string") => "string".to_string(),
        _ if got.starts_with("boolean") => "bool".to_string(),
        _ if got.starts_with("sequence") => "array".to_string(),
        _ if got.starts_with("map") => "object".to_string(),
        Some((_, rest)) if got.starts_with("integer") || got.starts_with("floating") => {
            let n = rest.rsplit(' ').next().unwrap_or(rest).trim_matches('`');
            format!("number {n}")
        }
        _ => got.to_string(),
    };
    let go_type = match expected {
        "i64" => "int64",
        "i32" => "int32",
        "u64" => "uint64",
        "u32" => "uint32",
        "u16" => "uint16",
        "a string" => "string",
        "a boolean" => "bool",
        "a sequence" => "array",
        "a map" => "map",
        "a string or an array of strings" => "strslice.StrSlice",
        other => other.strip_prefix("struct ").unwrap_or(other),
    };
    format!("json: cannot unmarshal {got} into Go struct field {field} of type {go_type}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match super::body(body.as_bytes()) {
            Ok(b) => panic!("parsed: {b:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn a_mistyped_field_is_named_in_gos_words() {
        assert_eq!(
            err(r#"{"Image":"busybox","HostConfig":{"Memory":"128m"}}"#),
            "json: cannot unmarshal string into Go struct field HostConfig.HostConfig.Memory of type int64"
        );
        assert_eq!(
            err(r#"{"Image":"busybox","Tty":"yes"}"#),
            "json: cannot unmarshal string into Go struct field Config.Tty of type bool"
        );
        assert_eq!(
            err(r#"{"HostConfig":{"BlkioWeight":70000}}"#),
            "json: cannot unmarshal number 70000 into Go struct field HostConfig.HostConfig.BlkioWeight of type uint16"
        );
        assert_eq!(
            err(r#"{"HostConfig":{"NanoCpus":1.5}}"#),
            "json: cannot unmarshal number 1.5 into Go struct field HostConfig.HostConfig.NanoCpus of type int64"
        );
        let m = err(r#"{"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":8080}]}}}"#);
        assert!(
            m.contains("HostConfig.HostConfig.PortBindings.80/tcp[0].HostPort"),
            "{m}"
        );
        let m = err(r#"{"HostConfig":{"Dns":"1.2.3.4"}}"#);
        assert!(m.contains("HostConfig.HostConfig.Dns"), "{m}");
        let m = err(r#"{"Cmd":5}"#);
        assert!(m.contains("Config.Cmd of type strslice.StrSlice"), "{m}");
        let m = err(r#"{"NetworkingConfig":{"EndpointsConfig":[]}}"#);
        assert!(
            m.contains("NetworkingConfig.NetworkingConfig.EndpointsConfig"),
            "{m}"
        );
        assert!(err("[1]").contains("cannot unmarshal array"));
        assert!(err("{").starts_with("invalid JSON"));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        for depth in [200, 100_000] {
            let raw = format!(
                r#"{{"Image":"busybox","HostConfig":{{"x":{}}}}}"#,
                "[".repeat(depth)
            );
            assert!(err(&raw).contains("recursion limit"));
        }
        assert!(err(&"[".repeat(100_000)).contains("recursion limit"));
    }

    #[test]
    fn nulls_and_unknown_fields_are_go_zero_values() {
        let b = body(
            br#"{"Image":"busybox","Env":null,"Cmd":"true","Future":{"x":1},
                "HostConfig":{"Memory":null,"NewField":[1],"CapAdd":"NET_ADMIN"},
                "NetworkingConfig":null}"#,
        )
        .unwrap();
        assert_eq!(b.config.cmd.unwrap().0, vec!["true"]);
        assert_eq!(b.host_config.memory, None);
        assert_eq!(b.host_config.cap_add.unwrap().0, vec!["NET_ADMIN"]);
        assert!(body(b"").is_ok() && body(b"null").is_ok());
    }

    #[test]
    fn keys_match_fields_whatever_their_case_as_in_go() {
        let b = body(
            br#"{"image":"busybox","CMD":["true"],"hostconfig":{"memory":134217728,
                "portbindings":{"80/tcp":[{"hostport":"8080"}]},"logconfig":{"type":"syslog"},
                "Dns":["1.1.1.1"],"dns":["2.2.2.2"]}}"#,
        )
        .unwrap();
        assert_eq!(b.config.image.as_deref(), Some("busybox"));
        assert_eq!(b.config.cmd.unwrap().0, vec!["true"]);
        let hc = b.host_config;
        assert_eq!(hc.memory, Some(134217728));
        let ports = hc.port_bindings.unwrap();
        assert_eq!(
            ports["80/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("8080")
        );
        assert_eq!(hc.log_config.unwrap().kind.as_deref(), Some("syslog"));
        // Given twice, the exact name wins (Go would take the later of the two).
        assert_eq!(hc.dns.unwrap(), vec!["1.1.1.1"]);
        // Map keys are data, not fields: kept as sent.
        let b = body(br#"{"Labels":{"Color":"x"}}"#).unwrap();
        assert!(b.config.labels.unwrap().contains_key("Color"));
    }
}
