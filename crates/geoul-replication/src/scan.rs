//! Scans: one node's page of a table (stored entries with a prefix, from the
//! slots it serves) and the merge of every node's pages into one answer.
//!
//! Owns: [`ScanPage`], [`local_scan`], the merge and its `partial` rule. Does not
//! own: asking the nodes (`replicator`).

use std::collections::HashMap;

use geoul_placement::Slot;
use geoul_store::{Entry, Key};

use crate::local::TableHandle;
use crate::replicator::SCAN_LIMIT_MAX;

/// A merged scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Visible entries in key order.
    pub entries: Vec<Entry>,
    /// Some node did not answer: entries only it holds may be missing.
    pub partial: bool,
}

/// Merges per-node pages: highest version per key wins; a page that stopped
/// early only speaks for keys up to its last one, so the result stops there too.
pub(crate) fn merge_pages(
    pages: Vec<ScanPage>,
    limit: u32,
    now: u64,
    margin: u64,
    partial: bool,
) -> ScanResult {
    let cutoff: Option<Key> = pages
        .iter()
        .filter(|p| p.truncated)
        .filter_map(|p| p.entries.last().map(|e| e.key.clone()))
        .min();
    let mut merged: HashMap<Key, Entry> = HashMap::new();
    for page in pages {
        for e in page.entries {
            merge(&mut merged, e);
        }
    }
    let mut visible: Vec<Entry> = merged
        .into_values()
        .filter(|e| e.visible_at(now, margin))
        .filter(|e| cutoff.as_ref().is_none_or(|c| e.key <= *c))
        .collect();
    visible.sort_by(|a, b| a.key.cmp(&b.key));
    visible.truncate(limit as usize);
    ScanResult {
        entries: visible,
        partial,
    }
}

fn merge(merged: &mut HashMap<Key, Entry>, e: Entry) {
    match merged.get(&e.key) {
        Some(known) if known.version >= e.version => {}
        _ => {
            merged.insert(e.key.clone(), e);
        }
    }
}

/// Most stored entries one node returns for a scan page, visible or not: keeps a
/// prefix full of deletes from turning one scan into a full-table transfer.
pub const SCAN_PAGE_ENTRIES_MAX: usize = 10 * SCAN_LIMIT_MAX as usize;

/// One node's answer to a scan: stored entries (any state, so a delete here can
/// win over an older value elsewhere) in key order, up to `limit` visible ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanPage {
    /// Entries in key order.
    pub entries: Vec<Entry>,
    /// Stopped before the end of the prefix (limit or page bound reached).
    pub truncated: bool,
    /// Slots this node answered for (bit `i` of word `i / 64`); entries of
    /// slots it does not serve (syncing, not held) are left out.
    pub served: Vec<u64>,
}

/// This node's page for a scan of `prefix` at `now_ms`.
pub fn local_scan(
    handle: &TableHandle,
    prefix: &[u8],
    limit: u32,
    now_ms: u64,
    margin_ms: u64,
) -> ScanPage {
    let served = handle.sync().serving_bitmap();
    let mut found: Vec<Entry> = {
        let table = handle.lock();
        Slot::all()
            .filter(|s| served[s.index() / 64] & (1u64 << (s.index() % 64)) != 0)
            .flat_map(|s| {
                table
                    .slot_entries(s)
                    .filter(|e| e.key.as_bytes().starts_with(prefix))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let limit = limit.min(SCAN_LIMIT_MAX) as usize;
    let mut visible = 0usize;
    let mut page = ScanPage {
        served,
        ..ScanPage::default()
    };
    let total = found.len();
    for (i, e) in found.into_iter().enumerate() {
        if visible >= limit || page.entries.len() >= SCAN_PAGE_ENTRIES_MAX {
            page.truncated = i < total;
            break;
        }
        if e.visible_at(now_ms, margin_ms) {
            visible += 1;
        }
        page.entries.push(e);
    }
    page
}

#[cfg(test)]
mod scan_tests {
    use super::*;
    use geoul_store::{Document, Origin, Timestamp, Value, Version};

    fn e(key: &str, ts: u64, value: bool) -> Entry {
        Entry {
            key: Key::new(key.as_bytes()).expect("key"),
            version: Version {
                ts: Timestamp::from_parts(ts, 0),
                origin: Origin::from_raw(1),
            },
            expires_at_ms: None,
            value: value.then(|| {
                Document::single("v", Value::Int(1))
                    .and_then(|d| d.encode())
                    .expect("doc")
            }),
        }
    }

    #[test]
    fn deletes_win_and_do_not_use_up_the_limit() {
        // Node A: p/1..p/3 deleted, p/4 and p/5 live. Node B: an older p/1 value.
        let a = ScanPage {
            entries: vec![
                e("p/1", 5, false),
                e("p/2", 5, false),
                e("p/3", 5, false),
                e("p/4", 5, true),
            ],
            truncated: true,
            served: vec![],
        };
        let b = ScanPage {
            entries: vec![e("p/1", 1, true), e("p/4", 1, true), e("p/5", 1, true)],
            truncated: false,
            served: vec![],
        };
        let r = merge_pages(vec![a, b], 2, 0, 0, false);
        let keys: Vec<&[u8]> = r.entries.iter().map(|e| e.key.as_bytes()).collect();
        // p/5 is past A's cutoff (A stopped at p/4): it is not claimed yet.
        assert_eq!(keys, vec![b"p/4".as_slice()]);
        assert!(!r.partial);
    }

    #[test]
    fn partial_is_reported() {
        let r = merge_pages(vec![], 10, 0, 0, true);
        assert!(r.partial);
    }
}
