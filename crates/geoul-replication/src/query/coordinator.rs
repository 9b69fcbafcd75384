//! The coordinator of a distributed query.
//!
//! Owns: choosing a covering set of replicas (each slot to one serving replica,
//! preferring this node and nodes already chosen, so few nodes are asked),
//! asking them in parallel, re-asking other replicas for slots a node did not
//! serve, and merging the pages. Does not own: what one node does (`local`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use geoul_placement::{Slot, SLOT_COUNT};
use geoul_query::{merge_pages, Query, SortKey};
use geoul_store::Entry;
use tokio::time::Instant;

use super::{local_query, QueryError, QueryPage, QueryResult, SlotSet};
use crate::messages::ReplicaLink;
use crate::placement::Route;
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
        let me = self.me();
        let mut missing = SlotSet::full(SLOT_COUNT);
        let mut tried: HashSet<(String, u16)> = HashSet::new();
        let mut pages: Vec<QueryPage> = Vec::new();
        let mut nodes: HashSet<String> = HashSet::new();
        for _ in 0..ROUNDS_MAX {
            if missing.is_empty() || Instant::now() >= deadline {
                break;
            }
            let assignment = self.assign(&handle, &missing, &tried, &me);
            if assignment.is_empty() {
                break;
            }
            let mut pending = FuturesUnordered::new();
            for (route, slots) in assignment {
                for s in slots.iter() {
                    tried.insert((route.name.clone(), s));
                }
                nodes.insert(route.name.clone());
                if route.name == me {
                    let now = self.store().hlc().wall_ms();
                    pages.push(local_query(&handle, query, &slots, now)?);
                } else {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let fut = self.link().query(route.addr, query.clone(), slots, left);
                    pending.push(fut);
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
        Ok(self.merge(query, pages, missing, nodes.len()))
    }

    /// Each slot of `missing` to one replica that serves it and was not tried
    /// for it yet: this node first, then nodes already chosen, then others in
    /// routing order (alive, healthy, not syncing first).
    fn assign(
        &self,
        handle: &crate::TableHandle,
        missing: &SlotSet,
        tried: &HashSet<(String, u16)>,
        me: &str,
    ) -> Vec<(Route, SlotSet)> {
        let mut chosen: BTreeMap<String, (Route, SlotSet)> = BTreeMap::new();
        for s in missing.iter() {
            let Some(slot) = Slot::new(s) else { continue };
            let candidates: Vec<Route> = self
                .replicas(handle, slot)
                .into_iter()
                .filter(|r| !tried.contains(&(r.name.clone(), s)))
                .collect();
            let pick = candidates
                .iter()
                .find(|r| r.name == me && handle.sync().serves(slot))
                .or_else(|| {
                    candidates
                        .iter()
                        .find(|r| chosen.contains_key(&r.name) && r.alive && !r.syncing)
                })
                .or_else(|| candidates.iter().find(|r| r.name != me));
            if let Some(route) = pick {
                chosen
                    .entry(route.name.clone())
                    .or_insert_with(|| (route.clone(), SlotSet::empty()))
                    .1
                    .insert(s);
            }
        }
        chosen.into_values().collect()
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
