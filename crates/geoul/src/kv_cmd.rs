//! `geoul kv`: set, get, del, ttl and scan against the cluster's `kv` service.
//!
//! Owns: turning `geoul kv ...` into one [`KvRequest`], and rendering the answer
//! for people (`OK (2/3 acks)`, the value, `(nil)`, `12.3s`, a two-column table)
//! or as JSON with the API's field names. Does not own: reaching the cluster
//! (`cluster_client`) or what the requests do (geoul-node's `kv`).
//!
//! Exit codes: 0 ok (a missing key is not an error: `get` and `ttl` print
//! `(nil)`, or `null` with `--json`), 1 runtime failure with a one-line reason,
//! 2 usage.

use std::time::Duration;

use anyhow::Context;
use geoul_node::kv::{KvRequest, KvResponse, KvTtl};
use geoul_replication::ReadLevel;
use geoul_store::Ack;
use serde_json::{json, Value as Json};

use crate::cli::{AckArg, ConsistencyArg, KvArgs, KvCommand};
use crate::cluster_client::{format_duration, ClusterClient};
use crate::Failure;

pub fn run(args: KvArgs) -> Result<(), Failure> {
    let request = request(&args.command, args.timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let response = runtime.block_on(async {
        let client = ClusterClient::connect(&args.cluster).await?;
        client.kv(request).await
    })?;
    let text = if args.json {
        let doc = to_json(&args.command, &response)?;
        serde_json::to_string(&doc).map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?
    } else {
        render(&args.command, &response)?
    };
    println!("{text}");
    Ok(())
}

fn ack(arg: Option<AckArg>) -> Option<Ack> {
    arg.map(|a| match a {
        AckArg::One => Ack::One,
        AckArg::Quorum => Ack::Quorum,
        AckArg::All => Ack::All,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The request a command sends.
fn request(command: &KvCommand, timeout: Duration) -> KvRequest {
    let timeout_ms = millis(timeout);
    match command {
        KvCommand::Set {
            key,
            value,
            ttl,
            ack: a,
        } => KvRequest::Set {
            key: key.as_bytes().to_vec(),
            value: value.clone(),
            ttl_ms: ttl.map(millis),
            ack: ack(*a),
            timeout_ms,
        },
        KvCommand::Get { key, consistency } => KvRequest::Get {
            key: key.as_bytes().to_vec(),
            level: match consistency {
                ConsistencyArg::One => ReadLevel::One,
                ConsistencyArg::Quorum => ReadLevel::Quorum,
            },
            timeout_ms,
        },
        KvCommand::Del { key, ack: a } => KvRequest::Del {
            key: key.as_bytes().to_vec(),
            ack: ack(*a),
            timeout_ms,
        },
        KvCommand::Ttl { key } => KvRequest::Ttl {
            key: key.as_bytes().to_vec(),
            timeout_ms,
        },
        KvCommand::Scan { prefix, limit } => KvRequest::Scan {
            prefix: prefix.as_bytes().to_vec(),
            limit: *limit,
            timeout_ms,
        },
    }
}

fn mismatch(command: &KvCommand, response: &KvResponse) -> Failure {
    let got = match response {
        KvResponse::Written { .. } => "a write result",
        KvResponse::Value(_) => "a value",
        KvResponse::Ttl(_) => "a TTL",
        KvResponse::Entries { .. } => "scan entries",
    };
    let cmd = match command {
        KvCommand::Set { .. } => "set",
        KvCommand::Get { .. } => "get",
        KvCommand::Del { .. } => "del",
        KvCommand::Ttl { .. } => "ttl",
        KvCommand::Scan { .. } => "scan",
    };
    Failure::Runtime(format!("the node answered {cmd} with {got}"))
}

/// A key for display: as is when it is UTF-8, else with `\xNN` escapes.
pub fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => s.to_string(),
        Err(_) => key.escape_ascii().to_string(),
    }
}

/// The JSON document of an answer.
fn to_json(command: &KvCommand, response: &KvResponse) -> Result<Json, Failure> {
    Ok(match (command, response) {
        (
            KvCommand::Set { .. } | KvCommand::Del { .. },
            KvResponse::Written {
                version,
                origin,
                acked,
                replicas,
            },
        ) => json!({"version": version, "origin": origin, "acked": acked, "replicas": replicas}),
        // `KvValue`'s own serde form: exactly the API's field names.
        (KvCommand::Get { .. }, KvResponse::Value(value)) => serde_json::to_value(value)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?,
        (KvCommand::Ttl { .. }, KvResponse::Ttl(ttl)) => match ttl {
            KvTtl::Missing => Json::Null,
            KvTtl::Forever => json!({"remaining_ms": null}),
            KvTtl::RemainingMs(ms) => json!({"remaining_ms": ms}),
        },
        (KvCommand::Scan { .. }, KvResponse::Entries { entries, partial }) => json!({
            "entries": entries
                .iter()
                .map(|(k, v)| json!({"key": show_key(k), "value": v}))
                .collect::<Vec<_>>(),
            "partial": partial,
        }),
        _ => return Err(mismatch(command, response)),
    })
}

/// The human rendering of an answer (without the final newline).
fn render(command: &KvCommand, response: &KvResponse) -> Result<String, Failure> {
    Ok(match (command, response) {
        (
            KvCommand::Set { .. } | KvCommand::Del { .. },
            KvResponse::Written {
                acked, replicas, ..
            },
        ) => format!("OK ({acked}/{replicas} acks)"),
        (KvCommand::Get { .. }, KvResponse::Value(value)) => match value {
            None => "(nil)".into(),
            Some(v) => v.value.clone(),
        },
        (KvCommand::Ttl { .. }, KvResponse::Ttl(ttl)) => match ttl {
            KvTtl::Missing => "(nil)".into(),
            KvTtl::Forever => "(no expiry)".into(),
            KvTtl::RemainingMs(ms) => format_duration(Duration::from_millis(*ms)),
        },
        (KvCommand::Scan { limit, .. }, KvResponse::Entries { entries, partial }) => {
            let mut table = render_table(entries, *limit);
            if *partial {
                table.push_str(
                    "\n(partial: some nodes did not answer; keys only they hold may be missing)",
                );
            }
            table
        }
        _ => return Err(mismatch(command, response)),
    })
}

/// A cell of the scan table: control characters escaped so rows stay rows.
fn cell(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_string()
    }
}

/// `KEY  VALUE` rows in key order, then a count line.
fn render_table(entries: &[(Vec<u8>, String)], limit: u32) -> String {
    let rows: Vec<(String, String)> = entries
        .iter()
        .map(|(k, v)| (cell(&show_key(k)), cell(v)))
        .collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain(std::iter::once("KEY".len()))
        .max()
        .unwrap_or(3);
    let mut out = format!("{:<width$}  VALUE\n", "KEY");
    for (k, v) in &rows {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    let n = rows.len();
    let noun = if n == 1 { "key" } else { "keys" };
    if u32::try_from(n).is_ok_and(|n| n >= limit) {
        out.push_str(&format!("({n} {noun}; limit reached, there may be more)"));
    } else {
        out.push_str(&format!("({n} {noun})"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> KvCommand {
        KvCommand::Set {
            key: "k".into(),
            value: "v".into(),
            ttl: None,
            ack: None,
        }
    }

    #[test]
    fn write_renders_acks() {
        let r = KvResponse::Written {
            version: 7,
            origin: 9,
            acked: 2,
            replicas: 3,
        };
        assert_eq!(render(&set(), &r).ok(), Some("OK (2/3 acks)".into()));
        let doc = to_json(&set(), &r).ok();
        assert_eq!(
            doc,
            Some(json!({"version": 7, "origin": 9, "acked": 2, "replicas": 3}))
        );
    }

    #[test]
    fn missing_values_are_nil_or_null() {
        let get = KvCommand::Get {
            key: "k".into(),
            consistency: ConsistencyArg::Quorum,
        };
        let none = KvResponse::Value(None);
        assert_eq!(render(&get, &none).ok(), Some("(nil)".into()));
        assert_eq!(to_json(&get, &none).ok(), Some(Json::Null));
        let some = KvResponse::Value(Some(geoul_node::kv::KvValue {
            value: "v".into(),
            expires_at_ms: None,
            version: 5,
        }));
        let doc = to_json(&get, &some).ok().unwrap_or_default();
        assert_eq!(doc["value"], json!("v"));
        assert_eq!(doc["expires_at_ms"], Json::Null);
        assert_eq!(doc["version"], json!(5));
        let ttl = KvCommand::Ttl { key: "k".into() };
        let missing = KvResponse::Ttl(KvTtl::Missing);
        assert_eq!(render(&ttl, &missing).ok(), Some("(nil)".into()));
        let left = KvResponse::Ttl(KvTtl::RemainingMs(12_345));
        assert_eq!(render(&ttl, &left).ok(), Some("12.3s".into()));
        assert_eq!(
            to_json(&ttl, &left).ok(),
            Some(json!({"remaining_ms": 12_345}))
        );
    }

    #[test]
    fn scan_table_aligns_and_escapes() {
        let entries = vec![
            (b"a".to_vec(), "one\ntwo".to_string()),
            (b"longer\xff".to_vec(), "x".to_string()),
        ];
        let text = render_table(&entries, 100);
        assert_eq!(
            text,
            "KEY         VALUE\na           one\\ntwo\nlonger\\xff  x\n(2 keys)"
        );
        assert!(render_table(&entries, 2).ends_with("(2 keys; limit reached, there may be more)"));
    }

    #[test]
    fn a_mismatched_answer_is_a_runtime_failure() {
        let r = KvResponse::Value(None);
        assert!(matches!(render(&set(), &r), Err(Failure::Runtime(_))));
    }
}
