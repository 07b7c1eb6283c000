//! Docker's query parameters, read into one typed struct per endpoint.
//!
//! A handler takes [`DockerQuery<T>`], where `T` derives `Deserialize` and names the
//! parameters the endpoint reads (others are ignored, as dockerd ignores them). Values are
//! read as Docker clients send them:
//!
//! | field | reads |
//! |---|---|
//! | `bool` | [`docker_bool`]: `1`, `true`, `yes` or `0`, `false`, `no`, `none`, empty, in any case; anything else is refused naming the parameter, in dockerd's words (`invalid value for force: maybe`) |
//! | `String`, numbers | the value; given twice, the last one (a number that does not parse is refused like a boolean) |
//! | `Vec<String>` | every value given, in order (`names`, `changes`) |
//! | [`or_none`] fields | the value when it parses, else as if it were not given (`limit`, `t`, `tail`) |
//!
//! A refusal is Docker's 400 with its JSON body, as every error of the API is; axum's
//! plain-text rejection never reaches the client.
//!
//! ```text
//!   ?all=1&filters={…}&filters={…}  ──pairs──► all: ["1"], filters: ["{…}", "{…}"]
//!                                   ──T──────► ListQuery { all: true, filters: Some("{…}") }
//! ```

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::Uri;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};

use crate::{ApiError, ApiResult};

/// An endpoint's query parameters, as `T` names them.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for DockerQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        from_uri(&parts.uri).map(DockerQuery)
    }
}

/// Reads the query of `uri` into `T`.
pub(crate) fn from_uri<T: DeserializeOwned>(uri: &Uri) -> ApiResult<T> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        params.entry(k).or_default().push(v);
    }
    let params = params
        .into_iter()
        .map(|(name, values)| (name.clone(), Param { name, values }));
    T::deserialize(MapDeserializer::new(params)).map_err(|e: QueryError| e.into())
}

/// Docker's booleans as its clients send them (`1`, `True`, `false`, …); `None` for any
/// other word.
pub(crate) fn docker_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "" | "0" | "false" | "no" | "none" => Some(false),
        _ => None,
    }
}

/// For `#[serde(default, deserialize_with = "or_none")]`: the value when it parses as `T`,
/// else none, as if the parameter were not given.
pub(crate) fn or_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    Ok(Option::<String>::deserialize(d)?.and_then(|v| v.parse().ok()))
}

/// For `#[serde(deserialize_with = "null_default")]` in a request body: a JSON `null` is
/// the field's default, as Go's decoder (dockerd's) leaves a field alone on `null`
/// (docker-py sends `null` for what it was not given).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A query that cannot be read: the message a client gets with the 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct QueryError(String);

impl de::Error for QueryError {
    fn custom<M: Display>(msg: M) -> Self {
        QueryError(msg.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::bad_request(e.0)
    }
}

/// Every value given for one parameter, in order.
struct Param {
    name: String,
    values: Vec<String>,
}

impl Param {
    /// The value that counts when one is wanted: the last given.
    fn last(&self) -> &str {
        self.values.last().map(String::as_str).unwrap_or_default()
    }

    /// dockerd's words for a value it cannot read.
    fn invalid(&self) -> QueryError {
        QueryError(format!("invalid value for {}: {}", self.name, self.last()))
    }

    fn parse<T: FromStr>(&self) -> Result<T, QueryError> {
        self.last().parse().map_err(|_| self.invalid())
    }
}

impl<'de> IntoDeserializer<'de, QueryError> for Param {
    type Deserializer = Param;

    fn into_deserializer(self) -> Param {
        self
    }
}

macro_rules! parsed {
    ($($method:ident => $visit:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, QueryError> {
            v.$visit(self.parse()?)
        })*
    };
}

impl<'de> Deserializer<'de> for Param {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(mut self, v: V) -> Result<V::Value, QueryError> {
        v.visit_string(self.values.pop().unwrap_or_default())
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, QueryError> {
        match docker_bool(self.last()) {
            Some(b) => v.visit_bool(b),
            None => Err(self.invalid()),
        }
    }

    parsed!(deserialize_i32 => visit_i32, deserialize_i64 => visit_i64,
        deserialize_u16 => visit_u16, deserialize_u32 => visit_u32, deserialize_u64 => visit_u64);

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, QueryError> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, QueryError> {
        v.visit_seq(SeqDeserializer::new(self.values.into_iter()))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, QueryError> {
        v.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        i8 i16 i128 u8 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        tuple tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Example {
        all: bool,
        filters: Option<String>,
        names: Vec<String>,
        #[serde(deserialize_with = "or_none")]
        limit: Option<i64>,
        h: Option<u16>,
    }

    fn read(query: &str) -> ApiResult<Example> {
        from_uri(&format!("/x?{query}").parse::<Uri>().expect("a URI"))
    }

    #[test]
    fn docker_booleans_read_as_its_clients_send_them() {
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("True", true),
            ("yes", true),
            ("0", false),
            ("false", false),
            ("False", false),
            ("no", false),
            ("none", false),
            ("", false),
        ] {
            assert_eq!(read(&format!("all={v}")).unwrap().all, want, "{v}");
        }
        assert!(!read("").unwrap().all, "absent is false");
        let e = read("all=maybe").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.message, "invalid value for all: maybe");
    }

    #[test]
    fn a_repeated_parameter_is_its_last_value_or_every_value_in_a_list() {
        let q = read("filters=a&names=x&filters=b&names=y%20z&names=").unwrap();
        assert_eq!(q.filters.as_deref(), Some("b"));
        assert_eq!(q.names, ["x", "y z", ""]);
        assert!(read("").unwrap().names.is_empty());
        assert!(read("all=0&all=1").unwrap().all, "the last one counts");
    }

    #[test]
    fn numbers_are_read_strictly_unless_a_field_takes_none_for_a_bad_one() {
        let q = read("limit=3&h=24&unknown=whatever").unwrap();
        assert_eq!((q.limit, q.h), (Some(3), Some(24)));
        assert_eq!(read("limit=lots").unwrap().limit, None);
        assert_eq!(read("limit=").unwrap().limit, None);
        assert_eq!(
            read("h=70000").unwrap_err().message,
            "invalid value for h: 70000"
        );
    }
}
