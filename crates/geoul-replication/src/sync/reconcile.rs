//! Bringing one slot of one table in line with one peer: compare bucket
//! digests, pull what the peer has newer — whole buckets where ours are empty,
//! otherwise by version list and fetch — and, when repairing, push what we
//! have newer. The cost follows the difference (DESIGN.md §13): equal buckets
//! cost one digest each, nothing more.
//!
//! Owns: [`reconcile`] and its transfer accounting. Does not own: choosing the
//! peer or the slot, or slot states (the manager).
//!
//! Resuming after a source dies needs no bookkeeping: the next source is
//! compared bucket by bucket, so whatever was already copied matches and is
//! not sent again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use geoul_placement::Slot;
use geoul_store::{BucketMask, Cursor, Entry, Key, Version, ALL_BUCKETS, BUCKETS};

use crate::local::{LocalStore, TableHandle};
use crate::messages::{LinkError, ReplicaLink, ReplicateBatch, BATCH_BYTES_MAX, BATCH_ENTRIES_MAX};
use crate::sync::protocol::{SyncRequest, SyncResponse, FETCH_KEYS_MAX};
use crate::sync::state::SlotState;

/// Digest rounds per slot before giving up for now: each round only moves what
/// still differs, so more rounds mean writes keep landing on one side only.
pub const ROUNDS_MAX: u32 = 6;

/// Entries and bytes moved by one reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Entries received and applied.
    pub entries_in: u64,
    /// Bytes received (keys, values, version lists, digests).
    pub bytes_in: u64,
    /// Entries pushed to the peer.
    pub entries_out: u64,
    /// Bytes sent (keys, values, requests).
    pub bytes_out: u64,
    /// Source slot size when the reconcile started.
    pub source_entries: u64,
}

impl Transfer {
    /// Adds `other`.
    pub fn add(&mut self, other: Transfer) {
        self.entries_in += other.entries_in;
        self.bytes_in += other.bytes_in;
        self.entries_out += other.entries_out;
        self.bytes_out += other.bytes_out;
        self.source_entries += other.source_entries;
    }
}

/// How a reconcile treats the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Copy from a peer that serves the slot (synced or leaving); refuse others.
    FromServing,
    /// Merge from a peer whatever its state (bootstrap merge, repair).
    FromAny,
    /// Merge both ways (anti-entropy): pull newer, push newer.
    Repair,
}

/// Why a reconcile stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The peer does not serve the slot (and the mode requires it).
    #[error("peer's slot is {}", .0.word())]
    NotServing(SlotState),
    /// The peer serves its maximum of transfers.
    #[error("peer is busy")]
    Busy,
    /// The peer could not be reached or refused.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The peer answered something else than asked.
    #[error("unexpected answer from peer")]
    Unexpected,
    /// Digests still differed after [`ROUNDS_MAX`] rounds.
    #[error("still different after {ROUNDS_MAX} rounds")]
    NotConverging,
    /// Applying locally failed (durable store).
    #[error("applying: {0}")]
    Apply(String),
}

/// One reconcile of `slot` of `handle` with `peer`.
pub struct Reconcile<'a, L: ReplicaLink> {
    /// How to reach the peer.
    pub link: &'a L,
    /// This node's store.
    pub store: &'a LocalStore,
    /// The table.
    pub handle: &'a TableHandle,
    /// The peer.
    pub peer: SocketAddr,
    /// The slot.
    pub slot: Slot,
    /// Mode.
    pub mode: Mode,
    /// Per-request timeout.
    pub timeout: Duration,
}

fn entry_bytes(e: &Entry) -> u64 {
    (e.key.as_bytes().len() + e.value.as_ref().map_or(0, |v| v.len()) + 32) as u64
}

impl<L: ReplicaLink> Reconcile<'_, L> {
    fn table(&self) -> String {
        self.handle.spec().name.clone()
    }

    async fn ask(&self, request: SyncRequest) -> Result<SyncResponse, ReconcileError> {
        match self.link.sync(self.peer, request, self.timeout).await? {
            SyncResponse::Busy => Err(ReconcileError::Busy),
            other => Ok(other),
        }
    }

    /// Runs rounds until the slot matches the peer (or only we are newer).
    /// `on_page` sees every page applied (entries, bytes), for progress.
    pub async fn run(
        &self,
        on_page: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<Transfer, ReconcileError> {
        let mut transfer = Transfer::default();
        // First the slot's digest alone: equal copies (the common case for a
        // second source, or a restart with nothing missed) cost a few bytes.
        let first = match self
            .ask(SyncRequest::Digests {
                table: self.table(),
                slots: vec![self.slot],
            })
            .await?
        {
            SyncResponse::Digests(d) if d.len() == 1 => d[0],
            _ => return Err(ReconcileError::Unexpected),
        };
        transfer.bytes_in += 14;
        if self.mode == Mode::FromServing && !first.state.serves() {
            return Err(ReconcileError::NotServing(first.state));
        }
        let (mine, empty_here) = {
            let t = self.handle.lock();
            (t.slot_digest(self.slot), t.slot_len(self.slot) == 0)
        };
        if first.digest == mine {
            return Ok(transfer);
        }
        if empty_here {
            // Nothing here to compare: copy the whole slot, then verify.
            self.pull_entries(ALL_BUCKETS, &mut transfer, on_page)
                .await?;
            if self.slot_digest_matches(&mut transfer).await? {
                return Ok(transfer);
            }
        }
        for round in 0..ROUNDS_MAX {
            let exclude = self.store.gc_exclude_before_ms();
            let (state, entries, theirs) = match self
                .ask(SyncRequest::Buckets {
                    table: self.table(),
                    slot: self.slot,
                    exclude_before_ms: exclude,
                })
                .await?
            {
                SyncResponse::Buckets {
                    state,
                    entries,
                    digests,
                } if digests.len() == BUCKETS => (state, entries, digests),
                _ => return Err(ReconcileError::Unexpected),
            };
            transfer.bytes_in += (BUCKETS * 9) as u64;
            if round == 0 {
                transfer.source_entries = entries;
            }
            if self.mode == Mode::FromServing && !state.serves() {
                return Err(ReconcileError::NotServing(state));
            }
            let ours = self.handle.lock().bucket_digests(self.slot, exclude);
            let mut differ: BucketMask = 0;
            let mut empty: BucketMask = 0;
            for b in 0..BUCKETS {
                if ours[b] != theirs[b] {
                    differ |= 1 << b;
                    if ours[b] == 0 {
                        empty |= 1 << b;
                    }
                }
            }
            if differ == 0 {
                return Ok(transfer);
            }
            let mut pulled = 0u64;
            if empty != 0 {
                pulled += self.pull_entries(empty, &mut transfer, on_page).await?;
            }
            let listed = differ & !empty;
            if listed != 0 {
                pulled += self
                    .pull_by_versions(listed, &mut transfer, on_page)
                    .await?;
            }
            if pulled == 0 {
                // Whatever still differs is newer here; the peer gets it from
                // our push (repair) or from its own anti-entropy.
                return Ok(transfer);
            }
            // Verify with the slot digest alone before paying for buckets again.
            if self.slot_digest_matches(&mut transfer).await? {
                return Ok(transfer);
            }
        }
        Err(ReconcileError::NotConverging)
    }

    async fn slot_digest_matches(&self, transfer: &mut Transfer) -> Result<bool, ReconcileError> {
        let theirs = match self
            .ask(SyncRequest::Digests {
                table: self.table(),
                slots: vec![self.slot],
            })
            .await?
        {
            SyncResponse::Digests(d) if d.len() == 1 => d[0].digest,
            _ => return Err(ReconcileError::Unexpected),
        };
        transfer.bytes_in += 14;
        Ok(theirs == self.handle.lock().slot_digest(self.slot))
    }

    fn apply(&self, entries: Vec<Entry>) -> Result<u64, ReconcileError> {
        let table = self.table();
        let n = entries.len() as u64;
        let results = self
            .store
            .apply_batch(entries.into_iter().map(|e| (table.clone(), e)).collect());
        if let Some(Err(e)) = results
            .iter()
            .find(|r| r.as_ref().is_err_and(|e| e.starts_with("durable")))
        {
            return Err(ReconcileError::Apply(e.clone()));
        }
        Ok(n)
    }

    fn pull(&self, mask: BucketMask, after: Option<Cursor>, versions: bool) -> SyncRequest {
        SyncRequest::Pull {
            table: self.table(),
            slot: self.slot,
            mask,
            after,
            versions,
        }
    }

    async fn pull_entries(
        &self,
        mask: BucketMask,
        transfer: &mut Transfer,
        on_page: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, ReconcileError> {
        let mut after: Option<Cursor> = None;
        let mut pulled = 0;
        loop {
            let page = match self.ask(self.pull(mask, after.take(), false)).await? {
                SyncResponse::Entries(page) => page,
                _ => return Err(ReconcileError::Unexpected),
            };
            let bytes: u64 = page.items.iter().map(entry_bytes).sum();
            transfer.bytes_in += bytes;
            transfer.entries_in += page.items.len() as u64;
            let n = self.apply(page.items)?;
            pulled += n;
            on_page(n, bytes);
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(pulled),
            }
        }
    }

    async fn pull_by_versions(
        &self,
        mask: BucketMask,
        transfer: &mut Transfer,
        on_page: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<u64, ReconcileError> {
        // Freshness, not just the version: a touch extends an expiry without a
        // new version, and a replica that missed it must still converge.
        let mut theirs: HashMap<Key, (Version, u64)> = HashMap::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = match self.ask(self.pull(mask, after.take(), true)).await? {
                SyncResponse::Versions(page) => page,
                _ => return Err(ReconcileError::Unexpected),
            };
            for kv in page.items {
                transfer.bytes_in += kv.key.as_bytes().len() as u64 + 24;
                let fresh = kv.freshness();
                theirs.insert(kv.key, fresh);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        let (need, newer_here) = {
            let table = self.handle.lock();
            let mut need: Vec<Key> = theirs
                .iter()
                .filter(|(k, v)| table.freshness_of(k).is_none_or(|ours| ours < **v))
                .map(|(k, _)| k.clone())
                .collect();
            // A stable order keeps simulations reproducible.
            need.sort_unstable();
            let newer_here: Vec<Entry> = if self.mode == Mode::Repair {
                let mut out = Vec::new();
                let mut after: Option<Cursor> = None;
                loop {
                    let page = table.slot_page(self.slot, mask, after.as_ref(), 4096, usize::MAX);
                    out.extend(
                        page.items
                            .into_iter()
                            .filter(|e| theirs.get(&e.key).is_none_or(|v| *v < e.freshness())),
                    );
                    match page.next {
                        Some(c) => after = Some(c),
                        None => break,
                    }
                }
                out
            } else {
                Vec::new()
            };
            (need, newer_here)
        };
        let mut pulled = 0;
        for chunk in need.chunks(FETCH_KEYS_MAX) {
            transfer.bytes_out += chunk.iter().map(|k| k.as_bytes().len() as u64).sum::<u64>();
            let entries = match self
                .ask(SyncRequest::Fetch {
                    table: self.table(),
                    keys: chunk.to_vec(),
                })
                .await?
            {
                SyncResponse::Fetched(entries) => entries,
                _ => return Err(ReconcileError::Unexpected),
            };
            let bytes: u64 = entries.iter().map(entry_bytes).sum();
            transfer.bytes_in += bytes;
            transfer.entries_in += entries.len() as u64;
            let n = self.apply(entries)?;
            pulled += n;
            on_page(n, bytes);
        }
        self.push(newer_here, transfer).await?;
        Ok(pulled)
    }

    async fn push(
        &self,
        entries: Vec<Entry>,
        transfer: &mut Transfer,
    ) -> Result<(), ReconcileError> {
        let table = self.table();
        let mut batch: Vec<(String, Entry)> = Vec::new();
        let mut bytes = 0usize;
        let mut batches = Vec::new();
        for e in entries {
            bytes += entry_bytes(&e) as usize;
            batch.push((table.clone(), e));
            if batch.len() >= BATCH_ENTRIES_MAX || bytes >= BATCH_BYTES_MAX {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for items in batches {
            transfer.entries_out += items.len() as u64;
            transfer.bytes_out += items.iter().map(|(_, e)| entry_bytes(e)).sum::<u64>();
            self.link
                .replicate(self.peer, ReplicateBatch::entries(items), self.timeout)
                .await?;
        }
        Ok(())
    }
}
