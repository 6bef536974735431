//! Typed views of the few fields a policy reads, filled either from a parsed `serde_json::Value` or
//! straight from JSON text in one pass. The webhook reads the object inside an AdmissionReview the
//! second way, so it never builds a JSON tree of an object only to look at three fields of it.
//!
//! Reading from text checks everything `serde_json::Value` would (every string's UTF-8, numbers,
//! the nesting limit, since every skipped value is read through the same deserializer) and keeps
//! nothing but the fields asked for.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One field of an object as a policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The key is not there.
    #[default]
    Missing,
    /// The key is there with `null`.
    Null,
    /// The expected JSON type, read into `T`.
    Is(T),
    /// Another JSON type, named as in messages: `boolean`, `number`, `string`, `list`, `object`.
    Other(&'static str),
}

impl<T> Field<T> {
    /// The same field with its value dropped: which of the four it is.
    pub fn shape(&self) -> Field<()> {
        match self {
            Self::Missing => Field::Missing,
            Self::Null => Field::Null,
            Self::Is(_) => Field::Is(()),
            Self::Other(kind) => Field::Other(kind),
        }
    }

    /// From a parsed value: `read` returns `None` when the value is not of the expected type.
    pub fn from_value<'a>(
        value: Option<&'a Value>,
        read: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Self {
        match value {
            None => Self::Missing,
            Some(Value::Null) => Self::Null,
            Some(value) => read(value).map_or_else(|| Self::Other(type_name(value)), Self::Is),
        }
    }
}

/// The JSON type of a value, named for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Which JSON types a field accepts, and how it reads them. Each default refuses its type; a
/// refused map is still read to its end.
pub trait Read<'de>: Sized {
    fn from_bool(_value: bool) -> Option<Self> {
        None
    }

    fn from_str(_value: Cow<'de, str>) -> Option<Self> {
        None
    }

    fn from_map<A: MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(None)
    }
}

impl<'de> Read<'de> for bool {
    fn from_bool(value: bool) -> Option<Self> {
        Some(value)
    }
}

impl<'de> Read<'de> for Cow<'de, str> {
    fn from_str(value: Cow<'de, str>) -> Option<Self> {
        Some(value)
    }
}

impl<'de, T: Read<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<T>(PhantomData<T>);

impl<T> FieldVisitor<T> {
    fn or_other(read: Option<T>, kind: &'static str) -> Field<T> {
        read.map_or(Field::Other(kind), Field::Is)
    }
}

impl<'de, T: Read<'de>> Visitor<'de> for FieldVisitor<T> {
    type Value = Field<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Self::or_other(T::from_bool(v), "boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Other("number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Other("number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other("number"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Self::or_other(T::from_str(Cow::Borrowed(v)), "string"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Self::or_other(
            T::from_str(Cow::Owned(v.to_owned())),
            "string",
        ))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Self::or_other(T::from_str(Cow::Owned(v)), "string"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Field::Other("list"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(Self::or_other(T::from_map(map)?, "object"))
    }
}

/// Any JSON value, read and dropped. Unlike `serde::de::IgnoredAny` it goes through
/// `deserialize_any`, so serde_json checks it exactly as it would for a `Value` (strings, numbers,
/// nesting limit) without building one.
pub struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_none<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Skip, D::Error> {
        Skip::deserialize(deserializer)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// Reads a map key as its position in `names` (`None` for any other key), without copying it.
pub fn key_index(names: &'static [&'static str]) -> KeyIndex {
    KeyIndex(names)
}

pub struct KeyIndex(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| *name == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_from_text_match_fields_read_from_values() {
        for text in [
            "null",
            "true",
            "false",
            "1",
            "-1",
            "1.5",
            "\"a\"",
            "\"\\u0061\"",
            "[]",
            "[1,[2]]",
            "{}",
            "{\"a\":{\"b\":[null]}}",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let from_value = Field::from_value(Some(&value), |v| v.as_str().map(Cow::Borrowed));
            let from_text: Field<Cow<str>> = serde_json::from_str(text).unwrap();
            assert_eq!(from_text, from_value, "{text}");
            let from_value = Field::from_value(Some(&value), Value::as_bool);
            let from_text: Field<bool> = serde_json::from_str(text).unwrap();
            assert_eq!(from_text, from_value, "{text}");
        }
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let field: Field<Cow<str>> = serde_json::from_str("\"5m\"").unwrap();
        assert!(matches!(field, Field::Is(Cow::Borrowed("5m"))));
    }

    #[test]
    fn skipped_values_are_still_checked() {
        assert!(serde_json::from_str::<Skip>("[1,").is_err());
        assert!(serde_json::from_slice::<Skip>(b"\"\xff\"").is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let err = serde_json::from_str::<Skip>(&deep).err().unwrap();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}
