//! How accounts, sessions, refresh tokens and revocation markers are stored:
//! table declarations, keys, and documents to and from typed records.
//!
//! Owns: the two tables ([`ACCOUNTS`], [`SESSIONS`]) and their options, the
//! key layout, [`Account`], [`Grant`] (a session or refresh entry) and
//! [`Marker`] (a revocation of a family or of everything before a time).
//! Does not own: the rules (`service`).
//!
//! `auth.accounts` (`Factor(3)/Quorum/Disk`, key = username) holds the
//! password hash. `auth.sessions` (`All`, so any node validates locally)
//! holds, by key tag: `s` + SHA-256(session token), `r` + SHA-256(refresh
//! token), `f` + family id (that login's sessions are revoked), `a` +
//! username (sessions issued before `before` are revoked). A revocation is
//! one marker write, checked on every validation, so it holds even for a
//! session a node had not seen when the revocation was made; deleting the
//! revoked entries afterwards only frees memory and keeps listings exact.

use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};

/// Accounts table.
pub const ACCOUNTS: &str = "auth.accounts";
/// Sessions, refresh tokens and revocation markers.
pub const SESSIONS: &str = "auth.sessions";

/// The two table declarations (accounts first: calls with a username are
/// routed to its replicas).
pub fn tables(session_ack: Ack) -> Vec<TableSpec> {
    vec![
        TableSpec {
            name: ACCOUNTS.into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Disk,
                default_ttl: None,
                max_entries: None,
                indexes: Vec::new(),
            },
        },
        TableSpec {
            name: SESSIONS.into(),
            options: TableOptions {
                replication: Replication::All,
                write_ack: session_ack,
                durability: Durability::Disk,
                default_ttl: None,
                max_entries: None,
                indexes: vec!["account".into(), "family".into()],
            },
        },
    ]
}

/// The key of an account (and the routing key of account requests).
pub fn account_key(username: &str) -> Vec<u8> {
    username.as_bytes().to_vec()
}

/// The key of a family's revocation marker.
pub fn family_marker_key(family: &str) -> Vec<u8> {
    let mut k = b"f".to_vec();
    k.extend_from_slice(family.as_bytes());
    k
}

/// The key of an account's revoke-everything-before marker.
pub fn account_marker_key(username: &str) -> Vec<u8> {
    let mut k = b"a".to_vec();
    k.extend_from_slice(username.as_bytes());
    k
}

/// What a stored record was not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("damaged auth record: {0}")]
pub struct RecordError(String);

fn str_field(doc: &Document, name: &str) -> Result<String, RecordError> {
    match doc.get(name) {
        Some(Value::Str(s)) => Ok(s.clone()),
        _ => Err(RecordError(format!("field {name} missing or not text"))),
    }
}

fn int_field(doc: &Document, name: &str) -> Result<u64, RecordError> {
    match doc.get(name) {
        Some(Value::Int(i)) => u64::try_from(*i).map_err(|_| RecordError(format!("{name} < 0"))),
        _ => Err(RecordError(format!(
            "field {name} missing or not an integer"
        ))),
    }
}

fn bool_field(doc: &Document, name: &str) -> Result<bool, RecordError> {
    match doc.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(RecordError(format!(
            "field {name} missing or not a boolean"
        ))),
    }
}

fn bytes_field(doc: &Document, name: &str) -> Result<Vec<u8>, RecordError> {
    match doc.get(name) {
        Some(Value::Bytes(b)) => Ok(b.to_vec()),
        _ => Err(RecordError(format!("field {name} missing or not bytes"))),
    }
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn doc(fields: Vec<(&str, Value)>) -> Result<Document, RecordError> {
    Document::from_fields(fields.into_iter().map(|(n, v)| (n.to_string(), v)))
        .map_err(|e| RecordError(e.to_string()))
}

/// An account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// PHC string of the argon2id hash.
    pub hash: String,
    /// Logins refused.
    pub disabled: bool,
    /// Unix ms.
    pub created_at: u64,
    /// Sessions issued before this Unix ms are revoked; new ones are stamped
    /// after it (see `service`).
    pub revoked_before: u64,
}

impl Account {
    /// As a document.
    pub fn to_doc(&self) -> Result<Document, RecordError> {
        doc(vec![
            ("hash", Value::Str(self.hash.clone())),
            ("disabled", Value::Bool(self.disabled)),
            ("created_at", int(self.created_at)),
            ("revoked_before", int(self.revoked_before)),
        ])
    }

    /// From a document.
    pub fn from_doc(d: &Document) -> Result<Self, RecordError> {
        Ok(Self {
            hash: str_field(d, "hash")?,
            disabled: bool_field(d, "disabled")?,
            created_at: int_field(d, "created_at")?,
            revoked_before: int_field(d, "revoked_before")?,
        })
    }
}

/// A session or a refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `true`: a refresh token; `false`: a session.
    pub refresh: bool,
    /// The account.
    pub account: String,
    /// The login it descends from.
    pub family: String,
    /// Unix ms, never before the account's `revoked_before`.
    pub issued_at: u64,
    /// The node that issued it.
    pub issued_by: String,
    /// The key of its partner (the session's refresh token, or the refresh
    /// token's session), so revoking one ends both.
    pub partner: Vec<u8>,
    /// Refresh tokens only: already traded in.
    pub used: bool,
}

impl Grant {
    /// As a document.
    pub fn to_doc(&self) -> Result<Document, RecordError> {
        let kind = if self.refresh { "refresh" } else { "session" };
        doc(vec![
            ("kind", Value::Str(kind.into())),
            ("account", Value::Str(self.account.clone())),
            ("family", Value::Str(self.family.clone())),
            ("issued_at", int(self.issued_at)),
            ("issued_by", Value::Str(self.issued_by.clone())),
            ("partner", Value::Bytes(self.partner.clone().into())),
            ("used", Value::Bool(self.used)),
        ])
    }

    /// From a document; `None` when it is a marker, not a grant.
    pub fn from_doc(d: &Document) -> Result<Option<Self>, RecordError> {
        let refresh = match str_field(d, "kind")?.as_str() {
            "session" => false,
            "refresh" => true,
            _ => return Ok(None),
        };
        Ok(Some(Self {
            refresh,
            account: str_field(d, "account")?,
            family: str_field(d, "family")?,
            issued_at: int_field(d, "issued_at")?,
            issued_by: str_field(d, "issued_by")?,
            partner: bytes_field(d, "partner")?,
            used: bool_field(d, "used")?,
        }))
    }
}

/// A revocation marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    /// Every grant of this family is revoked.
    Family {
        /// The account (indexed, so listings of it find the marker's family).
        account: String,
    },
    /// Every grant of the account issued before `before` is revoked.
    Account {
        /// Unix ms.
        before: u64,
    },
}

impl Marker {
    /// As a document.
    pub fn to_doc(&self) -> Result<Document, RecordError> {
        match self {
            Self::Family { account } => doc(vec![
                ("kind", Value::Str("family_revoked".into())),
                ("account", Value::Str(account.clone())),
            ]),
            Self::Account { before } => doc(vec![
                ("kind", Value::Str("account_revoked".into())),
                ("before", int(*before)),
            ]),
        }
    }

    /// `before` of an account marker.
    pub fn account_before(d: &Document) -> Result<u64, RecordError> {
        int_field(d, "before")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_documents() {
        let a = Account {
            hash: "$argon2id$...".into(),
            disabled: true,
            created_at: 5,
            revoked_before: 7,
        };
        assert_eq!(Account::from_doc(&a.to_doc().expect("doc")), Ok(a));
        let g = Grant {
            refresh: true,
            account: "ana".into(),
            family: "ff".into(),
            issued_at: 9,
            issued_by: "node-1".into(),
            partner: vec![b's', 1, 2],
            used: false,
        };
        assert_eq!(Grant::from_doc(&g.to_doc().expect("doc")), Ok(Some(g)));
        let m = Marker::Account { before: 11 }.to_doc().expect("doc");
        assert_eq!(Grant::from_doc(&m), Ok(None));
        assert_eq!(Marker::account_before(&m), Ok(11));
        for spec in tables(Ack::Quorum) {
            spec.validate().expect("valid declaration");
        }
    }

    #[test]
    fn damaged_records_are_errors() {
        let d = Document::single("kind", Value::Str("session".into())).expect("doc");
        assert!(Grant::from_doc(&d).is_err());
        assert!(Account::from_doc(&d).is_err());
    }
}
