//! Query answers as JSON, the same for the CLI (`geoul query --json`) and the
//! admin HTTP (`POST /query`).
//!
//! Owns: the JSON shape (`{"entries": [{"key", "fields", "version",
//! "expires_at_ms"}], "partial", "missing_slots", "next", …}`) and how field
//! values map to JSON. Does not own: running queries.

use geoul_client::wire::{QueryAnswer, Row};
use geoul_store::Value;
use serde_json::{json, Map, Value as Json};

/// A key for people and JSON: the text if it is UTF-8 without control
/// characters, else `0x` and hex.
pub fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => format!("0x{}", hex(key)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A field value: strings, numbers and booleans as themselves, bytes as
/// `{"bytes": "<hex>"}`.
pub fn value_json(value: &Value) -> Json {
    match value {
        Value::Str(s) => Json::String(s.clone()),
        Value::Int(i) => json!(i),
        Value::Float(x) => json!(x),
        Value::Bool(b) => Json::Bool(*b),
        Value::Bytes(b) => json!({ "bytes": hex(b) }),
    }
}

/// One row.
pub fn row_json(row: &Row) -> Json {
    let fields: Map<String, Json> = row
        .doc
        .fields()
        .map(|(name, value)| (name.to_string(), value_json(value)))
        .collect();
    json!({
        "key": key_text(&row.key),
        "fields": fields,
        "version": row.version.ts,
        "expires_at_ms": row.expires_at_ms,
    })
}

/// A whole answer.
pub fn answer_json(answer: &QueryAnswer) -> Json {
    json!({
        "entries": answer.rows.iter().map(row_json).collect::<Vec<_>>(),
        "partial": answer.partial,
        "missing_slots": answer.missing_slots,
        "next": answer.next,
        "nodes": answer.nodes,
        "examined": answer.examined,
        "coordinator": answer.node,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_client::wire::Stamp;
    use geoul_store::Document;

    #[test]
    fn rows_render_with_typed_fields() {
        let doc = Document::from_fields([
            ("mode".to_string(), Value::Str("ranked".into())),
            ("rating".to_string(), Value::Float(1500.5)),
            ("players".to_string(), Value::Int(8)),
            ("open".to_string(), Value::Bool(true)),
            ("blob".to_string(), Value::Bytes(vec![0xab, 0x01].into())),
        ])
        .expect("doc");
        let row = Row {
            key: b"game-1".to_vec(),
            doc,
            version: Stamp { ts: 7, origin: 1 },
            expires_at_ms: Some(99),
        };
        let j = row_json(&row);
        assert_eq!(j["key"], "game-1");
        assert_eq!(j["fields"]["mode"], "ranked");
        assert_eq!(j["fields"]["rating"], 1500.5);
        assert_eq!(j["fields"]["players"], 8);
        assert_eq!(j["fields"]["open"], true);
        assert_eq!(j["fields"]["blob"]["bytes"], "ab01");
        assert_eq!(j["expires_at_ms"], 99);
        assert_eq!(key_text(&[0, 1]), "0x0001");
    }
}
