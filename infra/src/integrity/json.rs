//! A JSON document parsed once, borrowing its strings from the text it was
//! parsed from (a string with escapes is the only one copied): what the
//! seal check walks, without a `serde_json::Value` per stored column.
//! Equality is `Value`'s: numbers as `serde_json::Number`, an object's
//! fields in any order, a repeated key keeping its last value.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

#[derive(Clone, Debug)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Fields in the order read, each key once.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// What a missing field or item reads as.
pub const NULL: &Json<'static> = &Json::Null;

impl<'a> Json<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `{"payload": payload, "metadata": metadata}`, the shape sealed.
    pub fn payload_and_metadata(payload: Self, metadata: Self) -> Self {
        Self::Object(vec![
            (Cow::Borrowed("payload"), payload),
            (Cow::Borrowed("metadata"), metadata),
        ])
    }

    /// An object's field.
    pub fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Object(fields) => fields
                .iter()
                .find_map(|(name, value)| (name == key).then_some(value)),
            _ => None,
        }
    }

    /// An array's item.
    pub fn item(&self, index: usize) -> Option<&Self> {
        match self {
            Self::Array(items) => items.get(index),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    /// Borrows `value`'s strings.
    pub fn from_value(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => Self::Number(n.clone()),
            Value::String(s) => Self::String(Cow::Borrowed(s)),
            Value::Array(items) => Self::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(fields) => Self::from_map(fields),
        }
    }

    pub fn from_map(fields: &'a Map<String, Value>) -> Self {
        Self::Object(
            fields
                .iter()
                .map(|(key, value)| (Cow::Borrowed(key.as_str()), Self::from_value(value)))
                .collect(),
        )
    }
}

impl PartialEq for Json<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Number(a), Self::Number(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Object(a), Self::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(key, value)| other.get(key) == Some(value))
            }
            _ => false,
        }
    }
}

/// A string borrowed from the text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(value.into()))
    }

    // As `Value` reads them: a float JSON cannot hold is null.
    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(value).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: Vec<(Cow<'de, str>, Json<'de>)> =
            Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Text(key)) = map.next_key()? {
            let value = map.next_value()?;
            match fields.iter_mut().find(|(name, _)| *name == key) {
                Some(field) => field.1 = value,
                None => fields.push((key, value)),
            }
        }
        Ok(Json::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let parsed = Json::parse(r#"{"a": "plain", "b\n": "esc\"aped"}"#).unwrap();
        let Json::Object(fields) = &parsed else {
            panic!("{parsed:?}")
        };
        assert!(matches!(
            &fields[0],
            (Cow::Borrowed("a"), Json::String(Cow::Borrowed("plain")))
        ));
        assert_eq!(fields[1].0, "b\n");
        assert_eq!(parsed.get("b\n").and_then(Json::as_str), Some("esc\"aped"));
    }

    #[test]
    fn equality_is_values() {
        let texts = [
            r#"{"a": 1, "b": [1.5, null, true, "x"], "c": {"d": -2}}"#,
            r#"{"c": {"d": -2}, "b": [1.5, null, true, "x"], "a": 1}"#,
            r#"{"a": 1.0, "b": [], "c": {}}"#,
            r#"{"a": 0, "a": 1, "b": [1.5, null, true, "x"], "c": {"d": -2}}"#,
            r#"{"a": "1"}"#,
            r#"[1, 2]"#,
            r#"[2, 1]"#,
            r#"1e400"#,
        ];
        for a in texts {
            for b in texts {
                let (value_a, value_b): (Value, Value) = (
                    serde_json::from_str(a).unwrap_or(Value::Null),
                    serde_json::from_str(b).unwrap_or(Value::Null),
                );
                let (json_a, json_b) = (Json::parse(a), Json::parse(b));
                if let (Ok(json_a), Ok(json_b)) = (&json_a, &json_b) {
                    assert_eq!(json_a == json_b, value_a == value_b, "{a} == {b}");
                    assert_eq!(*json_a, Json::from_value(&value_a), "{a}");
                }
            }
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let parsed = Json::parse(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(parsed, Json::from_value(&json!({"a": 3, "b": 2})));
        assert!(matches!(&parsed, Json::Object(fields) if fields.len() == 2));
    }
}
