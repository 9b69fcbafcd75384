//! Documents: the values stored in tables, as typed fields that later layers index.
//!
//! Owns: [`Value`], [`Document`], their bounds and their compact encoded form
//! ([`EncodedDoc`]), which is what tables keep in memory, persist and replicate,
//! including reading one field straight from that form ([`EncodedDoc::field`]).
//! Does not own: indexing or queries (`index` and later layers read fields on
//! demand).

use std::cmp::Ordering;
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

/// Whether `name` is a valid field name: 1-64 of `[A-Za-z0-9_.-]`.
pub(crate) fn valid_field_name(name: &str) -> bool {
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

    /// The field `name`, if present, read from the encoding without decoding
    /// the other fields: the fields before it are skipped, the walk stops at the
    /// first name after it (fields are sorted), and only this value is decoded.
    /// Indexes read one field per write, where decoding a whole document would
    /// allocate every string and byte field it holds.
    pub fn field(&self, name: &str) -> Result<Option<Value>, DocError> {
        let mut reader = Reader(&self.0);
        let count = reader.varint()?;
        for _ in 0..count {
            let field = reader.take_prefixed()?;
            match field.cmp(name.as_bytes()) {
                Ordering::Less => reader.skip_value()?,
                Ordering::Equal => return reader.value().map(Some),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
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

/// Postcard's variant indexes of [`Value`] (declaration order); a test pins
/// them against what postcard writes.
mod tag {
    pub(super) const STR: u64 = 0;
    pub(super) const INT: u64 = 1;
    pub(super) const FLOAT: u64 = 2;
    pub(super) const BOOL: u64 = 3;
    pub(super) const BYTES: u64 = 4;
}

/// Longest LEB128 varint postcard writes (a u64 or zigzagged i64).
const VARINT_BYTES_MAX: usize = 10;

/// A cursor over a postcard-encoded document (`Vec<(String, Value)>`). Every
/// read is bounds-checked: the bytes were validated when the document was
/// built, but a malformed input must still give an error, never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn malformed(what: &str) -> DocError {
        DocError::Malformed(format!("{what} while reading a field"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DocError> {
        if n > self.0.len() {
            return Err(Self::malformed("unexpected end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, DocError> {
        let (&byte, rest) = self
            .0
            .split_first()
            .ok_or_else(|| Self::malformed("unexpected end"))?;
        self.0 = rest;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, DocError> {
        let mut value = 0u64;
        for i in 0..VARINT_BYTES_MAX {
            let byte = self.byte()?;
            // At most 7 × 9 = 63: the shift cannot overflow. Bits past 64 of a
            // non-canonical varint are dropped; the length checks catch it.
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Self::malformed("overlong varint"))
    }

    fn take_prefixed(&mut self) -> Result<&'a [u8], DocError> {
        let len = usize::try_from(self.varint()?).map_err(|_| Self::malformed("huge length"))?;
        self.take(len)
    }

    fn skip_value(&mut self) -> Result<(), DocError> {
        match self.varint()? {
            tag::STR | tag::BYTES => self.take_prefixed().map(drop),
            tag::INT => self.varint().map(drop),
            tag::FLOAT => self.take(8).map(drop),
            tag::BOOL => self.byte().map(drop),
            _ => Err(Self::malformed("unknown value type")),
        }
    }

    fn value(&mut self) -> Result<Value, DocError> {
        let (value, rest) =
            postcard::take_from_bytes(self.0).map_err(|e| DocError::Malformed(e.to_string()))?;
        self.0 = rest;
        Ok(value)
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
    use proptest::prelude::*;

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

    #[test]
    fn value_tags_are_what_postcard_writes() {
        let cases = [
            (Value::Str("s".into()), tag::STR),
            (Value::Int(-1), tag::INT),
            (Value::Float(1.5), tag::FLOAT),
            (Value::Bool(true), tag::BOOL),
            (Value::Bytes(vec![1, 2].into()), tag::BYTES),
        ];
        for (value, tag) in cases {
            let bytes = postcard::to_stdvec(&value).expect("encodes");
            assert_eq!(bytes.first().map(|b| u64::from(*b)), Some(tag), "{value:?}");
        }
    }

    #[test]
    fn reading_a_field_of_malformed_bytes_is_an_error_not_a_panic() {
        // Raw bytes: these never passed `from_bytes`.
        let truncated = [
            vec![],
            vec![1],             // one field, then nothing
            vec![1, 1, b'a'],    // name "a", no value
            vec![1, 1, b'a', 2], // a float without its 8 bytes
            vec![1, 1, b'a', 9], // unknown value type
            vec![
                2, 1, b'a', 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            vec![1, 0xff, 0xff], // a name length running off the end
        ];
        for bytes in truncated {
            let doc = EncodedDoc(bytes.clone().into_boxed_slice());
            assert!(doc.field("b").is_err(), "{bytes:?}");
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,20}".prop_map(Value::Str),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is refused", |x| !x.is_nan())
                .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::Bytes(b.into())),
        ]
    }

    proptest! {
        #[test]
        fn reading_one_field_agrees_with_decoding(
            fields in prop::collection::btree_map("[a-e]{1,3}", arb_value(), 0..12),
            probe in "[a-f]{1,3}",
        ) {
            let doc = Document::from_fields(fields.clone()).expect("valid");
            let encoded = doc.encode().expect("encodes");
            for name in fields.keys().map(String::as_str).chain([probe.as_str()]) {
                let read = encoded.field(name).expect("readable");
                prop_assert_eq!(read.as_ref(), doc.get(name), "{}", name);
            }
        }
    }
}
