//! Queries from inside a service, and the client form of a query's result.
//!
//! Owns: turning a coordinator's [`QueryResult`] into the wire's
//! [`QueryAnswer`] (rows decoded, cursor encoded). Does not own: running the
//! query (the replicator) or its language (geoul-query).

use geoul_client::wire::{QueryAnswer, Row, Stamp};
use geoul_replication::query::QueryResult;
use geoul_store::Entry;

/// An entry as a row (`None` for a delete or an undecodable document, which
/// a coordinator never returns).
pub fn row(entry: Entry) -> Option<Row> {
    let doc = entry.value.as_ref()?.decode().ok()?;
    Some(Row {
        key: entry.key.as_bytes().to_vec(),
        doc,
        version: Stamp {
            ts: entry.version.ts.raw(),
            origin: entry.version.origin.raw(),
        },
        expires_at_ms: entry.expires_at_ms,
    })
}

/// The answer clients receive for `result`, coordinated by `node`.
pub fn answer(result: QueryResult, node: String) -> QueryAnswer {
    QueryAnswer {
        rows: result.rows.into_iter().filter_map(row).collect(),
        partial: result.partial,
        missing_slots: result.missing_slots,
        next: result.next.and_then(|c| c.encode().ok()),
        nodes: u32::try_from(result.nodes).unwrap_or(u32::MAX),
        examined: result.examined,
        node,
    }
}
