//! The write path against a clock far ahead: a node whose clock leads by a
//! minute cannot make its writes win. (Writes under crashes, partitions, loss
//! and skew, with automatic repair, are checked in `tests/sync.rs`.)

use std::time::Duration;

use geoul_node::kv::{KvRequest, KvResponse};
use geoul_placement::{replicas, slot_of, Replication};
use geoul_sim::{check_seeds, SimCluster, SimOptions};
use geoul_store::Ack;

fn set(key: &str, value: &str) -> KvRequest {
    KvRequest::Set {
        key: key.as_bytes().to_vec(),
        value: value.to_string(),
        ttl_ms: None,
        ack: Some(Ack::Quorum),
        timeout_ms: 1_000,
    }
}

/// A node whose clock runs far ahead cannot make its writes win: replicas refuse
/// its versions, its writes fail visibly, and everyone else keeps writing.
#[test]
fn a_clock_far_ahead_cannot_win_writes() {
    check_seeds("a_clock_far_ahead_cannot_win_writes", 10, |seed| {
        let options = SimOptions {
            clock_skews: vec![(4, 60_000)],
            ..SimOptions::default()
        };
        let mut c = SimCluster::new(seed, options);
        c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
        c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
        // Keys for which node-5 is not the only possible acker.
        let names = c.names().to_vec();
        for i in 0..5 {
            let key = format!("skew{i}");
            let holders = replicas(slot_of(key.as_bytes()), &names, Replication::Factor(3))
                .map_err(|e| e.to_string())?;
            if let Ok(KvResponse::Written { .. }) =
                c.call_kv("node-5", "node-5", set(&key, "from the future"))
            {
                return Err(format!(
                    "a write from a clock 60 s ahead was acknowledged ({key}, replicas {holders:?})"
                ));
            }
            match c.call_kv("node-1", "node-1", set(&key, "now"))? {
                KvResponse::Written { .. } => {}
                other => return Err(format!("a normal write failed: {other:?}")),
            }
            let read = KvRequest::Get {
                key: key.as_bytes().to_vec(),
                level: geoul_replication::ReadLevel::Quorum,
                timeout_ms: 1_000,
            };
            match c.call_kv("node-2", "node-2", read)? {
                KvResponse::Value(Some(v)) if v.value == "now" => {}
                other => return Err(format!("{key}: expected the normal write, got {other:?}")),
            }
        }
        Ok(())
    });
}
