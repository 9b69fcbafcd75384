//! `docs`: a service over one indexed table of game-like documents, for
//! tests of secondary indexes and distributed queries in simulation.
//!
//! Owns: [`DocsService`], its request type, and the fields and indexes of its
//! table. Does not own: what the tests assert.

use std::time::Duration;

use geoul_service::{Context, HandlerError, PutOptions, Service};
use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};
use serde::{Deserialize, Serialize};

/// The service's (and its table's) name.
pub const DOCS: &str = "docs";

/// Indexed fields (`tag` is left unindexed on purpose).
pub const INDEXED: [&str; 4] = ["mode", "region", "rating", "players"];

/// What the docs service does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocsRequest {
    /// Writes a document under `key` (expiring after `ttl_ms` if given).
    Put {
        /// Key.
        key: String,
        /// Fields.
        fields: Vec<(String, Value)>,
        /// Time to live.
        ttl_ms: Option<u64>,
    },
    /// Deletes `key`.
    Delete(String),
}

/// The answer: the write's version timestamp.
pub type DocsResponse = u64;

/// The docs service.
pub struct DocsService;

impl Service for DocsService {
    type Request = DocsRequest;
    type Response = DocsResponse;

    fn name(&self) -> &str {
        DOCS
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![TableSpec {
            name: DOCS.into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::All,
                durability: Durability::Memory,
                default_ttl: None,
                max_entries: None,
                indexes: INDEXED.iter().map(|f| f.to_string()).collect(),
            },
        }]
    }

    async fn handle(&self, ctx: Context, request: DocsRequest) -> Result<u64, HandlerError> {
        let written = match request {
            DocsRequest::Put {
                key,
                fields,
                ttl_ms,
            } => {
                let doc = Document::from_fields(fields).map_err(HandlerError::reject)?;
                let options = PutOptions {
                    ttl: ttl_ms.map(Duration::from_millis),
                    ack: None,
                };
                ctx.put_with(DOCS, key.as_bytes(), Some(doc), options)
                    .await?
            }
            DocsRequest::Delete(key) => ctx.delete(DOCS, key.as_bytes()).await?,
        };
        Ok(written.version.ts)
    }
}
