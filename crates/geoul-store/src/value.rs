//! Documents: the values stored in tables, as typed fields that later layers index.
//!
//! Owns: [`Value`], [`Document`], their bounds and their compact encoded form
//! ([`EncodedDoc`]), which is what tables keep in memory, persist and replicate.
//! Does not own: indexing or queries (later layers decode fields on demand).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Largest encoded document. Big enough for any game record (an instance entry
/// is ~300 bytes, a session ~200), small enough that one write never monopolises
/// a replication frame (16 MiB) or a replica's apply loop.
pub const DOC_BYTES_MAX: usize = 1024 * 1024;
/// Most fields in one document: documents are records, not collections.
pub const FIELDS_MAX: usize = 256;
/// Longest field name, in bytes.
pub const FIELD_NAME_BYTES_MAX: usize = 64;

/// One typed field value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// UTF-8 text.
    Str(String),
    /// Signed 64-bit integer.
    Int(i64),
    /// 64-bit float (NaN is refused: it has no order and cannot be indexed).
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(Bytes),
}

impl Value {
    /// The type name used in errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) => "int",
            Self::Float(_) => "float",
            Self::Bool(_) => "bool",
            Self::Bytes(_) => "bytes",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    /// Too many fields.
    #[error("document has {count} fields (at most {FIELDS_MAX})")]
    TooManyFields {
        /// Given.
        count: usize,
    },
    /// A field name that is empty, too long or has characters outside `[A-Za-z0-9_.-]`.
    #[error("invalid field name {0:?}: use 1-64 of A-Z a-z 0-9 _ . -")]
    BadFieldName(String),
    /// The same field twice.
    #[error("field {0:?} appears twice")]
    DuplicateField(String),
    /// NaN cannot be stored.
    #[error("field {0:?} is NaN")]
    NaN(String),
    /// Encoded size over [`DOC_BYTES_MAX`].
    #[error("document is {len} bytes encoded (at most {DOC_BYTES_MAX})")]
    TooLarge {
        /// Encoded length.
        len: usize,
    },
    /// Bytes that are not a valid encoded document.
    #[error("malformed document: {0}")]
    Malformed(String),
}

/// A document: fields sorted by name, each at most once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    fields: Vec<(String, Value)>,
}

fn valid_field_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    !name.is_empty() && name.len() <= FIELD_NAME_BYTES_MAX && name.chars().all(ok)
}

impl Document {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a document from fields in any order, checking every bound.
    pub fn from_fields(
        fields: impl IntoIterator<Item = (String, Value)>,
    ) -> Result<Self, DocError> {
        let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let doc = Self { fields };
        doc.validate()?;
        Ok(doc)
    }

    /// A one-field document (what `geoul kv` stores).
    pub fn single(name: &str, value: Value) -> Result<Self, DocError> {
        Self::from_fields([(name.to_string(), value)])
    }

    /// The field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.fields[i].1)
    }

    /// Fields in name order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn validate(&self) -> Result<(), DocError> {
        if self.fields.len() > FIELDS_MAX {
            return Err(DocError::TooManyFields {
                count: self.fields.len(),
            });
        }
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if !valid_field_name(name) {
                return Err(DocError::BadFieldName(name.clone()));
            }
            if i > 0 && self.fields[i - 1].0 >= *name {
                return Err(DocError::DuplicateField(name.clone()));
            }
            if matches!(value, Value::Float(x) if x.is_nan()) {
                return Err(DocError::NaN(name.clone()));
            }
        }
        Ok(())
    }

    /// The compact form tables store and replicate.
    pub fn encode(&self) -> Result<EncodedDoc, DocError> {
        self.validate()?;
        let bytes =
            postcard::to_stdvec(&self.fields).map_err(|e| DocError::Malformed(e.to_string()))?;
        if bytes.len() > DOC_BYTES_MAX {
            return Err(DocError::TooLarge { len: bytes.len() });
        }
        Ok(EncodedDoc(bytes.into_boxed_slice()))
    }
}

/// An encoded, validated document. Cheap to store (one allocation) and to ship;
/// deserializing from the network validates it again.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<u8>")]
pub struct EncodedDoc(Box<[u8]>);

impl TryFrom<Vec<u8>> for EncodedDoc {
    type Error = DocError;
    fn try_from(bytes: Vec<u8>) -> Result<Self, DocError> {
        EncodedDoc::from_bytes(&bytes)
    }
}

impl EncodedDoc {
    /// Validates bytes from the network or disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DocError> {
        if bytes.len() > DOC_BYTES_MAX {
            return Err(DocError::TooLarge { len: bytes.len() });
        }
        let doc = Self(bytes.into());
        doc.decode()?;
        Ok(doc)
    }

    /// The fields.
    pub fn decode(&self) -> Result<Document, DocError> {
        let (fields, rest): (Vec<(String, Value)>, &[u8]) =
            postcard::take_from_bytes(&self.0).map_err(|e| DocError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DocError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        let doc = Document { fields };
        doc.validate()?;
        Ok(doc)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Encoded length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the encoding is empty (never, for a valid document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for EncodedDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.decode() {
            Ok(doc) => f.debug_map().entries(doc.fields()).finish(),
            Err(_) => write!(f, "<{} undecodable bytes>", self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted_and_finds_fields() {
        let doc = Document::from_fields([
            ("region".to_string(), Value::Str("eu".into())),
            ("players".to_string(), Value::Int(7)),
            ("open".to_string(), Value::Bool(true)),
        ])
        .expect("valid");
        let encoded = doc.encode().expect("encodes");
        let back = EncodedDoc::from_bytes(encoded.as_bytes())
            .expect("valid bytes")
            .decode()
            .expect("decodes");
        assert_eq!(back, doc);
        assert_eq!(back.get("players"), Some(&Value::Int(7)));
        assert_eq!(back.fields().next().map(|(n, _)| n), Some("open"));
    }

    #[test]
    fn refuses_each_invalid_document() {
        let dup = Document::from_fields([
            ("a".to_string(), Value::Int(1)),
            ("a".to_string(), Value::Int(2)),
        ]);
        assert_eq!(dup, Err(DocError::DuplicateField("a".into())));
        assert!(matches!(
            Document::single("bad name", Value::Int(1)),
            Err(DocError::BadFieldName(_))
        ));
        assert!(matches!(
            Document::single("x", Value::Float(f64::NAN)),
            Err(DocError::NaN(_))
        ));
        let big = Document::single("b", Value::Bytes(vec![0u8; DOC_BYTES_MAX].into()))
            .expect("fields fine");
        assert!(matches!(big.encode(), Err(DocError::TooLarge { .. })));
        assert!(EncodedDoc::from_bytes(&[0xff, 0xff, 0xff]).is_err());
    }
}
