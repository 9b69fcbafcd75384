//! The coordinator of a distributed query.
//!
//! Owns: choosing a covering set of replicas (each slot to one serving replica,
//! preferring this node and nodes already chosen, so few nodes are asked),
//! asking them in parallel, re-asking other replicas for slots a node did not
//! serve, and merging the pages. Does not own: what one node does (`local`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use geoul_placement::{Slot, SLOT_COUNT};
use geoul_query::{merge_pages, Query, SortKey};
use geoul_store::Entry;
use tokio::time::Instant;

use super::{local_query, QueryError, QueryPage, QueryResult, SlotSet};
use crate::messages::ReplicaLink;
use crate::placement::{Placement, Route};
use crate::replicator::Replicator;

/// Rounds of re-asking other replicas for slots nobody served yet.
const ROUNDS_MAX: usize = 3;

impl<L: ReplicaLink> Replicator<L> {
    /// Runs `query` over every slot of its table within `timeout`. Slots no
    /// replica answered are named in the result (`partial`), never dropped
    /// silently.
    pub async fn query(&self, query: &Query, timeout: Duration) -> Result<QueryResult, QueryError> {
        query.validate()?;
        let handle = self
            .store()
            .table(&query.table)
            .ok_or_else(|| QueryError::UnknownTable(query.table.clone()))?;
        let deadline = Instant::now() + timeout;
        let placement = self.placement_now();
        let me = placement.me().to_string();
        let hosts = placement.hosts(&query.table);
        let mut missing = SlotSet::full(SLOT_COUNT);
        // Per host (index into `hosts`): slots it was already asked for.
        let mut tried: Vec<SlotSet> = vec![SlotSet::empty(); hosts.len()];
        let mut pages: Vec<QueryPage> = Vec::new();
        let mut asked: HashSet<usize> = HashSet::new();
        for _ in 0..ROUNDS_MAX {
            if missing.is_empty() || Instant::now() >= deadline {
                break;
            }
            let assignment = assign(&placement, &handle, &hosts, &missing, &tried, &me);
            if assignment.is_empty() {
                break;
            }
            let mut pending = FuturesUnordered::new();
            for (host, slots) in assignment {
                tried[host].union_with(&slots);
                asked.insert(host);
                let route = &hosts[host];
                if route.name == me {
                    let now = self.store().hlc().wall_ms();
                    pages.push(local_query(&handle, query, &slots, now)?);
                } else {
                    let left = deadline.saturating_duration_since(Instant::now());
                    pending.push(self.link().query(route.addr, query.clone(), slots, left));
                }
            }
            while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, pending.next()).await {
                if let Ok(page) = answer {
                    pages.push(page);
                }
            }
            let mut served = SlotSet::empty();
            for p in &pages {
                served.union_with(&p.served);
            }
            missing = SlotSet::full(SLOT_COUNT).minus(&served);
        }
        Ok(self.merge(query, pages, missing, asked.len()))
    }

    fn merge(
        &self,
        query: &Query,
        pages: Vec<QueryPage>,
        missing: SlotSet,
        nodes: usize,
    ) -> QueryResult {
        let now = self.store().hlc().wall_ms();
        let margin = self.store().skew_margin_ms();
        let hlc = self.store().hlc();
        let examined = pages.iter().map(|p| p.examined).sum();
        let sorted: Vec<Vec<(SortKey, Entry)>> = pages
            .into_iter()
            .map(|p| {
                p.rows
                    .into_iter()
                    // A faulty or far-ahead peer cannot slip in rows that are
                    // not visible here, or outside the filter.
                    .filter(|e| e.visible_at(now, margin) && hlc.check(e.version.ts).is_ok())
                    .filter_map(|e| {
                        let doc = e.value.as_ref()?.decode().ok()?;
                        if query.filter.as_ref().is_some_and(|f| !f.matches(&doc)) {
                            return None;
                        }
                        Some((SortKey::new(&query.order, &doc, e.key.as_bytes()), e))
                    })
                    .filter(|(k, _)| {
                        query
                            .after
                            .as_ref()
                            .is_none_or(|c| c.admits(&query.order, k))
                    })
                    .collect()
            })
            .collect();
        let limit = query.limit as usize;
        let merged = merge_pages(&query.order, limit, sorted);
        let next = (merged.len() == limit)
            .then(|| merged.last().map(|(k, _)| k.to_cursor()))
            .flatten();
        let missing_slots: Vec<u16> = missing.iter().collect();
        QueryResult {
            rows: merged.into_iter().map(|(_, e)| e).collect(),
            partial: !missing_slots.is_empty(),
            missing_slots,
            next,
            nodes,
            examined,
        }
    }
}

/// Each slot of `missing` to one replica (index into `hosts`) that was not
/// asked for it yet: this node first when it serves the slot, then a node
/// already chosen in this round, then the first live, healthy, not syncing
/// replica, then any. Goes over 4096 slots per query, so it copies nothing.
fn assign(
    placement: &Placement,
    handle: &crate::TableHandle,
    hosts: &[Route],
    missing: &SlotSet,
    tried: &[SlotSet],
    me: &str,
) -> Vec<(usize, SlotSet)> {
    let index: HashMap<&str, usize> = hosts
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let table = handle.spec().name.as_str();
    let ready = |i: usize| {
        let r = &hosts[i];
        r.alive && r.healthy && !r.syncing
    };
    let mut chosen: Vec<Option<SlotSet>> = vec![None; hosts.len()];
    let mut candidates: Vec<usize> = Vec::with_capacity(8);
    for s in missing.iter() {
        let Some(slot) = Slot::new(s) else { continue };
        candidates.clear();
        candidates.extend(
            placement
                .replica_names(table, slot)
                .filter_map(|name| index.get(name).copied())
                .filter(|i| !tried[*i].contains(slot)),
        );
        let pick = candidates
            .iter()
            .copied()
            .find(|i| hosts[*i].name == me && handle.sync().serves(slot))
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|i| chosen[*i].is_some() && ready(*i))
            })
            .or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .find(|i| hosts[*i].name != me && ready(*i))
            })
            .or_else(|| candidates.iter().copied().find(|i| hosts[*i].name != me));
        if let Some(i) = pick {
            chosen[i].get_or_insert_with(SlotSet::empty).insert(s);
        }
    }
    chosen
        .into_iter()
        .enumerate()
        .filter_map(|(i, slots)| slots.map(|s| (i, s)))
        .collect()
}
