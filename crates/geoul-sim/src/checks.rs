//! Cluster-wide checks the simulation tests share: reading a node's stored
//! entry and comparing every slot's replicas.
//!
//! Owns: helpers over [`SimCluster`] that ask nodes through the same requests
//! peers use. Does not own: what a test expects (tests decide).

use std::collections::BTreeMap;

use geoul_node::rpc::{PeerRequest, PeerResponse};
use geoul_placement::{replicas, Replication, Slot};
use geoul_replication::sync::{SlotDigest, SlotState, SyncRequest, SyncResponse};
use geoul_store::{Entry, Key};

use crate::SimCluster;

/// The entry `node` stores for `key` of `kv`; an error if the node refuses
/// (e.g. it is still syncing the key's slot).
pub fn read_entry(c: &mut SimCluster<'_>, node: &str, key: &str) -> Result<Option<Entry>, String> {
    let request = PeerRequest::ReadEntry {
        table: "kv".into(),
        key: Key::new(key.as_bytes()).map_err(|e| e.to_string())?,
    };
    match c.call(node, node, request)? {
        PeerResponse::Entry(e) => Ok(e),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// Every slot's state and digest of `kv` on `node`.
pub fn digests(c: &mut SimCluster<'_>, node: &str) -> Result<Vec<SlotDigest>, String> {
    let request = PeerRequest::Sync(SyncRequest::Digests {
        table: "kv".into(),
        slots: Slot::all().collect(),
    });
    match c.call(node, node, request)? {
        PeerResponse::Sync(SyncResponse::Digests(d)) => Ok(d),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// `None` when, on `nodes` (placement over exactly them, `replication`),
/// every replica of every slot of `kv` is synced and identical and every other
/// node has dropped the slot; else the first difference found.
pub fn replica_difference(
    c: &mut SimCluster<'_>,
    nodes: &[String],
    replication: Replication,
) -> Result<Option<String>, String> {
    let mut all = BTreeMap::new();
    for n in nodes {
        all.insert(n.clone(), digests(c, n)?);
    }
    for slot in Slot::all() {
        let holders = replicas(slot, nodes, replication).map_err(|e| e.to_string())?;
        let mut seen: Option<u64> = None;
        for n in nodes {
            let d = all[n][slot.index()];
            if holders.contains(n) {
                if d.state != SlotState::Synced {
                    return Ok(Some(format!("{n} slot {slot} is {}", d.state.word())));
                }
                if seen.is_some_and(|s| s != d.digest) {
                    return Ok(Some(format!("replicas of slot {slot} differ")));
                }
                seen = Some(d.digest);
            } else if d.state != SlotState::Absent {
                return Ok(Some(format!(
                    "{n} still keeps slot {slot} ({})",
                    d.state.word()
                )));
            }
        }
    }
    Ok(None)
}
