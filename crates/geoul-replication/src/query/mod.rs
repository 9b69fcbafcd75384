//! Distributed query (DESIGN.md §8): each node's top-k over the slots it is
//! asked for, and the coordinator that covers every slot with the fewest
//! synced replicas and merges their pages.
//!
//! Owns: [`QueryPage`] (one node's answer), [`QueryResult`], [`QueryError`],
//! the local executor with its index planner (`local`), and the coordinator
//! (`coordinator`). Does not own: the query language (geoul-query) or the
//! indexes (geoul-store).
//!
//! Confidence: a node answers only for slots it serves (synced or leaving),
//! and only entries visible at its clock minus the skew margin; slots nobody
//! answered before the deadline are named in the result (`partial`), never
//! silently left out.

mod coordinator;
mod local;
mod slots;

use geoul_placement::SLOT_COUNT;
use geoul_store::Entry;
use serde::{Deserialize, Serialize};

pub use local::{local_query, Plan};
pub use slots::SlotSet;

/// One node's answer: its top rows for the slots it served, in query order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPage {
    /// Matching visible entries, best first, at most the query's limit.
    pub rows: Vec<Entry>,
    /// Slots answered (of those asked), as a bitmap.
    pub served: SlotSet,
    /// How the node ran it (for explain and metrics).
    pub plan: String,
    /// Entries it examined.
    pub examined: u64,
}

/// A query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// Matching entries in query order, at most the limit.
    pub rows: Vec<Entry>,
    /// Some slots were answered by nobody: rows may be missing.
    pub partial: bool,
    /// Those slots.
    pub missing_slots: Vec<u16>,
    /// Cursor for the next page when the page is full.
    pub next: Option<geoul_query::Cursor>,
    /// Nodes asked.
    pub nodes: usize,
    /// Entries examined on all nodes.
    pub examined: u64,
}

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No such table on this node.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// The query is out of bounds.
    #[error(transparent)]
    Invalid(#[from] geoul_query::QueryError),
    /// The cursor does not fit the query.
    #[error(transparent)]
    Cursor(#[from] geoul_query::CursorError),
}

/// Every slot.
pub fn all_slots() -> SlotSet {
    SlotSet::full(SLOT_COUNT)
}
