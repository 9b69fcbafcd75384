//! A custom tag's value and its two encodings.
//!
//! Owns: [`TagValue`]: plain values in JSON (`"ko"`, `3`, `0.5`, `true`),
//! kinds tagged in the binary protocol (postcard is not self-describing).
//! Does not own: tag names and bounds (`instance`).

use geoul_store::Value;
use serde::{Deserialize, Serialize};

/// A custom tag's value: typed, so `tag.level >= 10` compares numbers.
///
/// In JSON a tag is a plain value (`"eu-west"`, `3`, `2.5`, `true`); in the
/// binary protocol it is tagged by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum TagValue {
    /// Text (at most [`TAG_STR_MAX`](crate::instance::TAG_STR_MAX) bytes).
    Str(String),
    /// Integer.
    Int(i64),
    /// Finite float.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

impl TagValue {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Str(s) => Value::Str(s.clone()),
            Self::Int(i) => Value::Int(*i),
            Self::Float(f) => Value::Float(*f),
            Self::Bool(b) => Value::Bool(*b),
        }
    }

    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        Some(match v {
            Value::Str(s) => Self::Str(s.clone()),
            Value::Int(i) => Self::Int(*i),
            Value::Float(f) => Self::Float(*f),
            Value::Bool(b) => Self::Bool(*b),
            Value::Bytes(_) => return None,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TaggedTag {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PlainTag {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Serialize for TagValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let human = s.is_human_readable();
        match (self, human) {
            (Self::Str(v), true) => PlainTag::Str(v.clone()).serialize(s),
            (Self::Int(v), true) => PlainTag::Int(*v).serialize(s),
            (Self::Float(v), true) => PlainTag::Float(*v).serialize(s),
            (Self::Bool(v), true) => PlainTag::Bool(*v).serialize(s),
            (Self::Str(v), false) => TaggedTag::Str(v.clone()).serialize(s),
            (Self::Int(v), false) => TaggedTag::Int(*v).serialize(s),
            (Self::Float(v), false) => TaggedTag::Float(*v).serialize(s),
            (Self::Bool(v), false) => TaggedTag::Bool(*v).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // JSON is self-describing, postcard is not: plain values there, kinds
        // tagged here.
        if d.is_human_readable() {
            Ok(match PlainTag::deserialize(d)? {
                PlainTag::Bool(v) => Self::Bool(v),
                PlainTag::Int(v) => Self::Int(v),
                PlainTag::Float(v) => Self::Float(v),
                PlainTag::Str(v) => Self::Str(v),
            })
        } else {
            Ok(match TaggedTag::deserialize(d)? {
                TaggedTag::Bool(v) => Self::Bool(v),
                TaggedTag::Int(v) => Self::Int(v),
                TaggedTag::Float(v) => Self::Float(v),
                TaggedTag::Str(v) => Self::Str(v),
            })
        }
    }
}
