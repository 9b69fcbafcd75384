//! A leaderboard as a geoul service: the example of how users write their own
//! services, using nothing but the public API.
//!
//! * Scores live in one table, `scores` (three copies, majority acks, on
//!   disk), with indexes on `board` and `score`, so the top of a board is a
//!   distributed query (`scores where board = "b" order by score desc`).
//! * `Submit` adds points exactly once even across crashes: the caller gives
//!   each submission an id, and the id is stored in the same document as the
//!   score it changed, so "applied" and "remembered as applied" are one write.
//!   (The framework's idempotency key also dedups retries after a lost reply;
//!   keeping the id with the effect closes the window in which a node dies
//!   between applying a call and recording its answer.)
//! * Reads go through the caller's session, so a player sees their own
//!   submissions even when the next call lands on another node.
//!
//! ```no_run
//! # async fn demo(client: geoul_client::Client) -> Result<(), geoul_client::CallError> {
//! use leaderboard::{Request, Response, SERVICE};
//! let board = client.service(SERVICE);
//! let submit = Request::Submit { board: "season-1".into(), player: "ana".into(), points: 30, id: 1 };
//! let Response::Score(total) = board.call_idempotent("season-1/ana", &submit).await? else { unreachable!() };
//! # Ok(()) }
//! ```

use geoul_service::{Context, HandlerError, Service};
use geoul_store::{Ack, Document, Durability, Replication, TableOptions, TableSpec, Value};
use serde::{Deserialize, Serialize};

/// The service's name.
pub const SERVICE: &str = "leaderboard";
/// Its table.
pub const SCORES: &str = "scores";
/// Submission ids remembered per player: retries come within seconds, so a
/// short history is enough, and it keeps the document small.
pub const RECENT_IDS: usize = 32;
/// Longest board or player name.
pub const NAME_BYTES_MAX: usize = 64;
/// Most rows `Top` returns.
pub const TOP_MAX: u32 = 1000;

/// What callers ask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Adds `points` to `player` on `board`, once per `id`.
    Submit {
        /// Board.
        board: String,
        /// Player.
        player: String,
        /// Points to add (may be negative).
        points: i64,
        /// Caller-chosen id of this submission (retries reuse it).
        id: u64,
    },
    /// The player's score.
    Score {
        /// Board.
        board: String,
        /// Player.
        player: String,
    },
    /// The best `limit` players of a board.
    Top {
        /// Board.
        board: String,
        /// How many.
        limit: u32,
    },
}

/// What the service answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A score.
    Score(i64),
    /// Players and scores, best first; `partial` when some part of the
    /// cluster could not answer in time.
    Top {
        /// (player, score).
        rows: Vec<(String, i64)>,
        /// Rows may be missing.
        partial: bool,
    },
}

/// The routing key of a player's calls (and the key of their score).
pub fn key(board: &str, player: &str) -> String {
    format!("{board}/{player}")
}

/// The leaderboard service.
pub struct Leaderboard;

fn check_name(what: &str, name: &str) -> Result<(), HandlerError> {
    if name.is_empty() || name.len() > NAME_BYTES_MAX || name.contains('/') {
        return Err(HandlerError::Rejected(format!(
            "{what} must be 1-{NAME_BYTES_MAX} bytes without '/'"
        )));
    }
    Ok(())
}

struct Entry {
    score: i64,
    recent: Vec<u64>,
}

fn decode(doc: &Document) -> Entry {
    let score = match doc.get("score") {
        Some(Value::Int(s)) => *s,
        _ => 0,
    };
    let recent = match doc.get("recent") {
        Some(Value::Bytes(b)) => b
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect(),
        _ => Vec::new(),
    };
    Entry { score, recent }
}

impl Service for Leaderboard {
    type Request = Request;
    type Response = Response;

    fn name(&self) -> &str {
        SERVICE
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![TableSpec {
            name: SCORES.into(),
            options: TableOptions {
                replication: Replication::Factor(3),
                write_ack: Ack::Quorum,
                durability: Durability::Disk,
                default_ttl: None,
                max_entries: None,
                indexes: vec!["board".into(), "score".into()],
            },
        }]
    }

    async fn handle(&self, ctx: Context, request: Request) -> Result<Response, HandlerError> {
        match request {
            Request::Submit {
                board,
                player,
                points,
                id,
            } => {
                check_name("board", &board)?;
                check_name("player", &player)?;
                let k = key(&board, &player);
                let current = ctx
                    .get_with(SCORES, k.as_bytes(), geoul_service::ReadLevel::Quorum)
                    .await?;
                let mut entry = current.as_ref().map_or(
                    Entry {
                        score: 0,
                        recent: Vec::new(),
                    },
                    |r| decode(&r.doc),
                );
                if entry.recent.contains(&id) {
                    return Ok(Response::Score(entry.score));
                }
                entry.score = entry
                    .score
                    .checked_add(points)
                    .ok_or_else(|| HandlerError::reject("score out of range"))?;
                entry.recent.push(id);
                if entry.recent.len() > RECENT_IDS {
                    entry.recent.remove(0);
                }
                let recent: Vec<u8> = entry.recent.iter().flat_map(|i| i.to_le_bytes()).collect();
                let doc = Document::from_fields([
                    ("board".to_string(), Value::Str(board)),
                    ("player".to_string(), Value::Str(player)),
                    ("score".to_string(), Value::Int(entry.score)),
                    ("recent".to_string(), Value::Bytes(recent.into())),
                ])
                .map_err(HandlerError::reject)?;
                ctx.put(SCORES, k.as_bytes(), doc).await?;
                Ok(Response::Score(entry.score))
            }
            Request::Score { board, player } => {
                let record = ctx.get(SCORES, key(&board, &player).as_bytes()).await?;
                Ok(Response::Score(record.map_or(0, |r| decode(&r.doc).score)))
            }
            Request::Top { board, limit } => {
                check_name("board", &board)?;
                let mut query = geoul_client::Query::new(SCORES);
                query.filter = Some(geoul_client::query_lang::Expr::Cmp {
                    field: "board".into(),
                    op: geoul_client::query_lang::CmpOp::Eq,
                    value: Value::Str(board),
                });
                query.order = vec![geoul_client::query_lang::OrderKey::desc("score")];
                query.limit = limit.clamp(1, TOP_MAX);
                let answer = ctx.query(&query).await?;
                let rows = answer
                    .rows
                    .iter()
                    .map(|r| {
                        let player = match r.doc.get("player") {
                            Some(Value::Str(p)) => p.clone(),
                            _ => String::new(),
                        };
                        (player, decode(&r.doc).score)
                    })
                    .collect();
                Ok(Response::Top {
                    rows,
                    partial: answer.partial,
                })
            }
        }
    }
}
