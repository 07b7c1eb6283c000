//! Go's `encoding/json` matches an object's keys to struct fields case-insensitively
//! (`{"hostconfig": {"memory": 1}}` sets `HostConfig.Memory` in dockerd). Serde matches them
//! exactly, so such a key would be an unknown field, ignored: an option silently dropped.
//! [`GoKeys`] is a deserializer over a `serde_json::Value` that gives each struct the keys
//! it expects, as Go finds them: the exact name first, else one equal but for ASCII case.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Error, Map, Value};

/// A JSON value read the way Go's decoder reads it into a struct.
pub struct GoKeys<'de>(pub &'de Value);

impl<'de> de::Deserializer<'de> for GoKeys<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => v.visit_map(Entries::new(m, &[])),
            Value::Array(a) => v.visit_seq(Items(a.iter())),
            other => de::Deserializer::deserialize_any(other, v),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => v.visit_map(Entries::new(m, fields)),
            other => other.deserialize_struct(name, fields, v),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => v.visit_seq(Items(a.iter())),
            other => other.deserialize_seq(v),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(m) => v.visit_map(Entries::new(m, &[])),
            other => other.deserialize_map(v),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(a) => v.visit_seq(Items(a.iter())),
            other => other.deserialize_tuple(len, v),
        }
    }

    // Scalars: serde_json's own reading, and its own type errors.
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_bool(v)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i8(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i16(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i32(v)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u8(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u16(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u32(v)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_u64(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_f32(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_f64(v)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_str(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.0.deserialize_string(v)
    }

    forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple_struct enum identifier ignored_any
    }
}

/// An object's entries, each key renamed to the struct field Go would match it to.
struct Entries<'de> {
    entries: Vec<(&'de str, &'de Value)>,
    next: usize,
}

impl<'de> Entries<'de> {
    fn new(m: &'de Map<String, Value>, fields: &'static [&'static str]) -> Self {
        let entries = m.iter().map(|(k, v)| (go_field(m, k, fields), v)).collect();
        Entries { entries, next: 0 }
    }
}

/// Go's rule: the exact field name, else one equal but for case. When the object also holds
/// the exact name, that one is taken and the other left unknown (Go would take the later).
fn go_field<'de>(
    m: &Map<String, Value>,
    key: &'de str,
    fields: &'static [&'static str],
) -> &'de str {
    if fields.contains(&key) {
        return key;
    }
    match fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        Some(f) if !m.contains_key(*f) => f,
        _ => key,
    }
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.get(self.next) {
            Some((k, _)) => seed
                .deserialize(BorrowedStrDeserializer::<Error>::new(k))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self.entries.get(self.next).map(|(_, v)| *v);
        self.next += 1;
        match value {
            Some(v) => seed.deserialize(GoKeys(v)),
            None => seed.deserialize(().into_deserializer()),
        }
    }
}

/// An array's items.
struct Items<'de>(std::slice::Iter<'de, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(GoKeys(v)))
            .transpose()
    }
}
