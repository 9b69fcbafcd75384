//! What a directory entry is: the fields a game server publishes about one
//! live instance, their bounds, and their stored document.
//!
//! Owns: [`InstanceSpec`] (what `register` sends), [`InstanceUpdate`] (what
//! `update` changes), [`Instance`] (what `get` and `search` return),
//! [`InstanceState`], every field's bound and the document
//! layout (one typed field per attribute, tags as `tag.<name>`). Does not
//! own: what requests do (`service`) or which fields are indexed (`config`).
//!
//! Fields are typed (numbers compare as numbers, unlike string-only lobby
//! metadata) and validated where they enter: a bad field is refused with its
//! name and the rule it broke, before anything is written.

use std::collections::BTreeMap;

use geoul_store::{Document, Value};
use serde::{Deserialize, Serialize};

pub use crate::tag::TagValue;

/// Longest instance id, in bytes.
pub const ID_MAX: usize = 128;
/// Longest `addr` (`HOST:PORT`), in bytes.
pub const ADDR_MAX: usize = 255;
/// Longest `mode` or `region`, in bytes.
pub const NAME_MAX: usize = 32;
/// Longest `map`, in bytes.
pub const MAP_MAX: usize = 64;
/// Largest `max_players`.
pub const MAX_PLAYERS_MAX: u32 = 100_000;
/// Largest `spectators`.
pub const SPECTATORS_MAX: u32 = 10_000_000;
/// Largest `|rating|`.
pub const RATING_ABS_MAX: f64 = 1e9;
/// Most custom tags on one instance.
pub const TAGS_MAX: usize = 32;
/// Longest tag name, in bytes (`tag.` + name is a document field).
pub const TAG_NAME_MAX: usize = 32;
/// Longest string tag value, in bytes.
pub const TAG_STR_MAX: usize = 256;

/// Prefix of tag fields in the document (and in queries: `tag.skill = 3`).
pub const TAG_PREFIX: &str = "tag.";

/// Where a game instance is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Waiting for players.
    #[default]
    Lobby,
    /// The match is on.
    Playing,
    /// The match is over; the instance is about to go.
    Ending,
}

impl InstanceState {
    /// Its name in documents, queries and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lobby => "lobby",
            Self::Playing => "playing",
            Self::Ending => "ending",
        }
    }

    /// Parses `lobby | playing | ending`.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "lobby" => Ok(Self::Lobby),
            "playing" => Ok(Self::Playing),
            "ending" => Ok(Self::Ending),
            other => Err(FieldError::new(
                "state",
                format!("must be lobby, playing or ending, got {other:?}"),
            )),
        }
    }
}

/// A field that broke its rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field.
    pub field: String,
    /// The rule it broke.
    pub reason: String,
}

impl FieldError {
    /// `field` broke a rule, `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a game server publishes about its instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Where players and spectators connect: `HOST:PORT`.
    pub addr: String,
    /// Game mode (`ranked`, `casual`, …): 1-32 of `a-z 0-9 _ . -`.
    pub mode: String,
    /// Region (`eu`, `us-east`, …): 1-32 of `a-z 0-9 _ . -`.
    pub region: String,
    /// Map name (1-64 bytes of printable text).
    #[serde(default)]
    pub map: Option<String>,
    /// Players in the instance (at most `max_players`).
    #[serde(default)]
    pub players: u32,
    /// Player capacity (1-100 000).
    pub max_players: u32,
    /// Spectators watching.
    #[serde(default)]
    pub spectators: u32,
    /// Where the instance is in its life.
    #[serde(default)]
    pub state: InstanceState,
    /// Average rating of its players (finite, |r| ≤ 1e9).
    #[serde(default)]
    pub rating: Option<f64>,
    /// When the instance started, Unix ms (the registering node's clock if
    /// absent).
    #[serde(default)]
    pub started_at: Option<u64>,
    /// Custom typed tags (at most 32; names 1-32 of `a-z 0-9 _ -`).
    #[serde(default)]
    pub tags: BTreeMap<String, TagValue>,
}

/// Changes to a registered instance; absent fields keep their value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceUpdate {
    /// New address.
    #[serde(default)]
    pub addr: Option<String>,
    /// New mode.
    #[serde(default)]
    pub mode: Option<String>,
    /// New region.
    #[serde(default)]
    pub region: Option<String>,
    /// New map.
    #[serde(default)]
    pub map: Option<String>,
    /// New player count.
    #[serde(default)]
    pub players: Option<u32>,
    /// New capacity.
    #[serde(default)]
    pub max_players: Option<u32>,
    /// New spectator count.
    #[serde(default)]
    pub spectators: Option<u32>,
    /// New state.
    #[serde(default)]
    pub state: Option<InstanceState>,
    /// New rating.
    #[serde(default)]
    pub rating: Option<f64>,
    /// Tags to set (added or replaced).
    #[serde(default)]
    pub set_tags: BTreeMap<String, TagValue>,
    /// Tags to remove.
    #[serde(default)]
    pub remove_tags: Vec<String>,
}

impl InstanceUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `spec` with the changes applied (not validated: validate the result).
    pub fn apply_to(&self, mut spec: InstanceSpec) -> InstanceSpec {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { spec.$f = v.clone(); } )* };
        }
        set!(addr, mode, region, players, max_players, spectators, state);
        if let Some(m) = &self.map {
            spec.map = Some(m.clone());
        }
        if let Some(r) = self.rating {
            spec.rating = Some(r);
        }
        for name in &self.remove_tags {
            spec.tags.remove(name);
        }
        for (name, value) in &self.set_tags {
            spec.tags.insert(name.clone(), value.clone());
        }
        spec
    }
}

/// A live instance as the directory returns it (the fields of
/// [`InstanceSpec`], flat, and what the directory knows of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Its id.
    pub id: String,
    /// Where players and spectators connect.
    pub addr: String,
    /// Game mode.
    pub mode: String,
    /// Region.
    pub region: String,
    /// Map name.
    pub map: Option<String>,
    /// Players in the instance.
    pub players: u32,
    /// Player capacity.
    pub max_players: u32,
    /// Spectators watching.
    pub spectators: u32,
    /// Where the instance is in its life.
    pub state: InstanceState,
    /// Average rating of its players.
    pub rating: Option<f64>,
    /// When it started, Unix ms.
    pub started_at: u64,
    /// Custom tags.
    pub tags: BTreeMap<String, TagValue>,
    /// When it was last registered or updated, Unix ms.
    pub updated_at: u64,
    /// When it disappears unless renewed, Unix ms.
    pub expires_at: u64,
    /// The lifetime each renewal gives it, ms.
    pub ttl_ms: u64,
    /// When this registration was made, Unix ms (a new registration of the
    /// id starts a new seat count).
    pub registered_at: u64,
    /// Whether seats were reserved (`reserve`): from then on its player
    /// count is decided by its seat counter.
    pub seats: bool,
}

/// What the directory records beside the published fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// When the instance started, Unix ms.
    pub started_at: u64,
    /// When this write was made, Unix ms.
    pub updated_at: u64,
    /// The lifetime each renewal gives it, ms.
    pub ttl_ms: u64,
    /// When the registration was made, Unix ms.
    pub registered_at: u64,
    /// Whether its seat counter decides its player count.
    pub seats: bool,
}

impl Instance {
    /// Its [`Meta`] for a write at `now`.
    pub fn meta(&self, now: u64) -> Meta {
        Meta {
            started_at: self.started_at,
            updated_at: now,
            ttl_ms: self.ttl_ms,
            registered_at: self.registered_at,
            seats: self.seats,
        }
    }

    /// What its game server published.
    pub fn spec(&self) -> InstanceSpec {
        InstanceSpec {
            addr: self.addr.clone(),
            mode: self.mode.clone(),
            region: self.region.clone(),
            map: self.map.clone(),
            players: self.players,
            max_players: self.max_players,
            spectators: self.spectators,
            state: self.state,
            rating: self.rating,
            started_at: Some(self.started_at),
            tags: self.tags.clone(),
        }
    }
}

/// Checks an instance id: 1-128 of `A-Z a-z 0-9 _ . : -`.
pub fn check_id(id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > ID_MAX {
        return Err(FieldError::new(
            "id",
            format!("must be 1-{ID_MAX} bytes, got {}", id.len()),
        ));
    }
    if let Some((i, c)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "_.:-".contains(*c)))
    {
        return Err(FieldError::new(
            "id",
            format!("may contain only A-Z a-z 0-9 _ . : - (found {c:?} at character {i})"),
        ));
    }
    Ok(())
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > max {
        return Err(FieldError::new(
            field,
            format!("must be 1-{max} bytes, got {}", value.len()),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(*c)))
    {
        return Err(FieldError::new(
            field,
            format!("may contain only a-z 0-9 _ . - (found {c:?}; names are lowercase)"),
        ));
    }
    Ok(())
}

/// Checks `HOST:PORT` (a name, an IPv4 address or a bracketed IPv6 address,
/// and a port 1-65535).
pub fn check_addr(addr: &str) -> Result<(), FieldError> {
    let bad =
        |why: &str| FieldError::new("addr", format!("{why} (expected HOST:PORT, got {addr:?})"));
    if addr.is_empty() || addr.len() > ADDR_MAX {
        return Err(FieldError::new(
            "addr",
            format!("must be 1-{ADDR_MAX} bytes, got {}", addr.len()),
        ));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(bad("port must be 1-65535")),
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    };
    if !host_ok {
        return Err(bad("bad host"));
    }
    Ok(())
}

fn check_tag_name(name: &str) -> Result<(), FieldError> {
    let field = format!("tags.{name}");
    if name.is_empty() || name.len() > TAG_NAME_MAX {
        return Err(FieldError::new(
            field,
            format!("tag names must be 1-{TAG_NAME_MAX} bytes"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
    {
        return Err(FieldError::new(
            field,
            "tag names may contain only a-z 0-9 _ -",
        ));
    }
    Ok(())
}

impl InstanceSpec {
    /// Checks every field against its rule.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_addr(&self.addr)?;
        check_name("mode", &self.mode, NAME_MAX)?;
        check_name("region", &self.region, NAME_MAX)?;
        if let Some(map) = &self.map {
            if map.is_empty() || map.len() > MAP_MAX {
                return Err(FieldError::new(
                    "map",
                    format!("must be 1-{MAP_MAX} bytes, got {}", map.len()),
                ));
            }
            if map.chars().any(char::is_control) {
                return Err(FieldError::new("map", "control characters are not allowed"));
            }
        }
        if self.max_players == 0 || self.max_players > MAX_PLAYERS_MAX {
            return Err(FieldError::new(
                "max_players",
                format!("must be 1-{MAX_PLAYERS_MAX}, got {}", self.max_players),
            ));
        }
        if self.players > self.max_players {
            return Err(FieldError::new(
                "players",
                format!(
                    "{} exceeds max_players ({})",
                    self.players, self.max_players
                ),
            ));
        }
        if self.spectators > SPECTATORS_MAX {
            return Err(FieldError::new(
                "spectators",
                format!("must be at most {SPECTATORS_MAX}, got {}", self.spectators),
            ));
        }
        if let Some(r) = self.rating {
            if !r.is_finite() || r.abs() > RATING_ABS_MAX {
                return Err(FieldError::new(
                    "rating",
                    format!("must be a finite number within ±{RATING_ABS_MAX:e}"),
                ));
            }
        }
        if self.tags.len() > TAGS_MAX {
            return Err(FieldError::new(
                "tags",
                format!("at most {TAGS_MAX} tags, got {}", self.tags.len()),
            ));
        }
        for (name, value) in &self.tags {
            check_tag_name(name)?;
            match value {
                TagValue::Str(s) if s.len() > TAG_STR_MAX => {
                    return Err(FieldError::new(
                        format!("tags.{name}"),
                        format!(
                            "string tags are at most {TAG_STR_MAX} bytes, got {}",
                            s.len()
                        ),
                    ))
                }
                TagValue::Float(f) if !f.is_finite() => {
                    return Err(FieldError::new(
                        format!("tags.{name}"),
                        "must be a finite number",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The stored document (validate first). `open_slots` is derived so
    /// searches can ask for instances with room (`open_slots > 0`).
    pub fn to_doc(&self, meta: &Meta) -> Result<Document, FieldError> {
        let Meta {
            started_at,
            updated_at,
            ttl_ms,
            registered_at,
            seats,
        } = *meta;
        let mut fields: Vec<(String, Value)> = vec![
            ("addr".into(), Value::Str(self.addr.clone())),
            ("mode".into(), Value::Str(self.mode.clone())),
            ("region".into(), Value::Str(self.region.clone())),
            ("players".into(), Value::Int(i64::from(self.players))),
            (
                "max_players".into(),
                Value::Int(i64::from(self.max_players)),
            ),
            (
                "open_slots".into(),
                Value::Int(i64::from(self.max_players.saturating_sub(self.players))),
            ),
            ("spectators".into(), Value::Int(i64::from(self.spectators))),
            ("state".into(), Value::Str(self.state.as_str().into())),
            ("started_at".into(), Value::Int(to_i64(started_at))),
            ("updated_at".into(), Value::Int(to_i64(updated_at))),
            ("ttl_ms".into(), Value::Int(to_i64(ttl_ms))),
            ("registered_at".into(), Value::Int(to_i64(registered_at))),
            ("seats".into(), Value::Bool(seats)),
        ];
        if let Some(map) = &self.map {
            fields.push(("map".into(), Value::Str(map.clone())));
        }
        if let Some(r) = self.rating {
            fields.push(("rating".into(), Value::Float(r)));
        }
        for (name, value) in &self.tags {
            fields.push((format!("{TAG_PREFIX}{name}"), value.to_value()));
        }
        Document::from_fields(fields).map_err(|e| FieldError::new("document", e.to_string()))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Why a stored document is not an instance (a bug or foreign data).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored instance is malformed: {0}")]
pub struct MalformedDoc(pub String);

fn get_str(doc: &Document, f: &str) -> Result<String, MalformedDoc> {
    match doc.get(f) {
        Some(Value::Str(s)) => Ok(s.clone()),
        _ => Err(MalformedDoc(format!("{f} missing or not a string"))),
    }
}

fn get_u64(doc: &Document, f: &str) -> Result<u64, MalformedDoc> {
    match doc.get(f) {
        Some(Value::Int(i)) => u64::try_from(*i).map_err(|_| MalformedDoc(format!("{f} < 0"))),
        _ => Err(MalformedDoc(format!("{f} missing or not an int"))),
    }
}

fn get_u32(doc: &Document, f: &str) -> Result<u32, MalformedDoc> {
    u32::try_from(get_u64(doc, f)?).map_err(|_| MalformedDoc(format!("{f} out of range")))
}

/// Reads a stored document back.
pub fn from_doc(id: &str, doc: &Document, expires_at: u64) -> Result<Instance, MalformedDoc> {
    let mut tags = BTreeMap::new();
    for (name, value) in doc.fields() {
        if let Some(tag) = name.strip_prefix(TAG_PREFIX) {
            if let Some(v) = TagValue::from_value(value) {
                tags.insert(tag.to_string(), v);
            }
        }
    }
    let state =
        InstanceState::parse(&get_str(doc, "state")?).map_err(|e| MalformedDoc(e.to_string()))?;
    let rating = match doc.get("rating") {
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    };
    let map = match doc.get("map") {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(Instance {
        id: id.to_string(),
        addr: get_str(doc, "addr")?,
        mode: get_str(doc, "mode")?,
        region: get_str(doc, "region")?,
        map,
        players: get_u32(doc, "players")?,
        max_players: get_u32(doc, "max_players")?,
        spectators: get_u32(doc, "spectators")?,
        state,
        rating,
        started_at: get_u64(doc, "started_at")?,
        tags,
        updated_at: get_u64(doc, "updated_at")?,
        expires_at,
        ttl_ms: get_u64(doc, "ttl_ms")?,
        registered_at: get_u64(doc, "registered_at")?,
        seats: matches!(doc.get("seats"), Some(Value::Bool(true))),
    })
}

/// The kind a known field holds, for checking queries: `None` for a field
/// that is not part of an entry.
pub fn field_kind(field: &str) -> Option<FieldKind> {
    Some(match field {
        "addr" | "mode" | "region" | "map" | "state" => FieldKind::Str,
        "players" | "max_players" | "open_slots" | "spectators" | "started_at" | "updated_at"
        | "ttl_ms" | "rating" => FieldKind::Number,
        f if f.starts_with(TAG_PREFIX) => FieldKind::Any,
        _ => return None,
    })
}

/// The fields of an entry, for error messages.
pub const FIELDS: &str = "addr, mode, region, map, state, players, max_players, open_slots, \
spectators, rating, started_at, updated_at, ttl_ms, tag.<name>";

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Text.
    Str,
    /// A number (integer or float; they compare numerically).
    Number,
    /// Any kind (tags).
    Any,
}

#[cfg(test)]
mod tests;
