//! Tombstone GC (issue 5): deletes are collected after the grace period, and
//! a node that was away longer — cut off by a partition, or down with its disk
//! — is wiped and re-synced instead of bringing deleted keys back.

use std::time::Duration;

use geoul_node::kv::{KvRequest, KvResponse};
use geoul_placement::{replicas, slot_of, Replication};
use geoul_replication::sync::SyncConfig;
use geoul_replication::ReadLevel;
use geoul_sim::checks::{read_entry, replica_difference};
use geoul_sim::{check_seeds, SimCluster, SimOptions};
use geoul_store::{Ack, Durability};

const SEEDS: u64 = 10;
const GRACE: Duration = Duration::from_secs(6);

fn write(c: &mut SimCluster<'_>, via: &str, key: &str, value: Option<&str>) -> Result<(), String> {
    let key_bytes = key.as_bytes().to_vec();
    let request = match value {
        Some(v) => KvRequest::Set {
            key: key_bytes,
            value: v.to_string(),
            ttl_ms: None,
            ack: Some(Ack::Quorum),
            timeout_ms: 2_000,
        },
        None => KvRequest::Del {
            key: key_bytes,
            ack: Some(Ack::Quorum),
            timeout_ms: 2_000,
        },
    };
    match c.call_kv(via, via, request)? {
        KvResponse::Written { .. } => Ok(()),
        other => Err(format!("writing {key} via {via}: {other:?}")),
    }
}

/// Keys `node` is a replica of.
fn keys_held_by(node: &str, names: &[String], prefix: &str) -> Vec<String> {
    (0..400)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| {
            replicas(slot_of(k.as_bytes()), names, Replication::Factor(3))
                .is_ok_and(|r| r.iter().any(|n| n == node))
        })
        .take(20)
        .collect()
}

/// After everything settled: no node stores a value for any of `keys`, and
/// quorum reads find none.
fn stay_deleted(c: &mut SimCluster<'_>, names: &[String], keys: &[String]) -> Result<(), String> {
    for _ in 0..40 {
        if c.synced()
            && matches!(
                replica_difference(c, names, Replication::Factor(3)),
                Ok(None)
            )
        {
            break;
        }
        c.run_for(Duration::from_millis(500))?;
    }
    if let Some(diff) = replica_difference(c, names, Replication::Factor(3))? {
        return Err(format!("replicas did not settle: {diff}"));
    }
    for key in keys {
        let holders = replicas(slot_of(key.as_bytes()), names, Replication::Factor(3))
            .map_err(|e| e.to_string())?;
        for node in &holders {
            if let Some(e) = read_entry(c, node, key)? {
                if e.value.is_some() {
                    return Err(format!("{node} brought deleted {key} back: {e:?}"));
                }
            }
        }
        let get = KvRequest::Get {
            key: key.as_bytes().to_vec(),
            level: ReadLevel::Quorum,
            timeout_ms: 2_000,
        };
        match c.call_kv("node-1", "node-1", get)? {
            KvResponse::Value(None) => {}
            other => return Err(format!("quorum read of deleted {key}: {other:?}")),
        }
    }
    Ok(())
}

fn cluster(seed: u64) -> Result<SimCluster<'static>, String> {
    let options = SimOptions {
        kv_durability: Durability::Disk,
        sync: SyncConfig {
            anti_entropy_period: Duration::from_millis(500),
            bootstrap_wait: Duration::from_secs(1),
            tombstone_grace: GRACE,
            ..SyncConfig::default()
        },
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
    Ok(c)
}

#[test]
fn a_node_cut_off_past_the_grace_does_not_resurrect_deletes() {
    check_seeds(
        "a_node_cut_off_past_the_grace_does_not_resurrect_deletes",
        SEEDS,
        |seed| {
            let mut c = cluster(seed)?;
            let names = c.names().to_vec();
            let keys = keys_held_by("node-5", &names, "z");
            for k in &keys {
                write(&mut c, "node-1", k, Some("old"))?;
            }
            c.run_for(Duration::from_secs(1))?;
            let others: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| *n != "node-5")
                .collect();
            c.partition(&["node-5"], &others);
            c.run_for(Duration::from_secs(2))?;
            for k in &keys {
                write(&mut c, "node-1", k, None)?;
            }
            // Past the grace: the others collect the deletes.
            c.run_for(GRACE + Duration::from_secs(3))?;
            for k in &keys {
                let holders = replicas(slot_of(k.as_bytes()), &names, Replication::Factor(3))
                    .map_err(|e| e.to_string())?;
                for node in holders.iter().filter(|n| *n != "node-5") {
                    // Placement without node-5 may differ; a refusal is fine here.
                    if read_entry(&mut c, node, k).is_ok_and(|e| e.is_some()) {
                        return Err(format!(
                            "{k}'s delete on {node} was not collected after the grace"
                        ));
                    }
                }
            }
            c.heal(&["node-5"], &others);
            c.run_until(Duration::from_secs(30), "reconverge", SimCluster::converged)?;
            stay_deleted(&mut c, &names, &keys)
        },
    );
}

#[test]
fn a_node_down_past_the_grace_is_wiped_on_restart() {
    check_seeds(
        "a_node_down_past_the_grace_is_wiped_on_restart",
        SEEDS,
        |seed| {
            let mut c = cluster(seed)?;
            let names = c.names().to_vec();
            let keys = keys_held_by("node-4", &names, "y");
            for k in &keys {
                write(&mut c, "node-1", k, Some("old"))?;
            }
            // Let node-4 save a recent last-contact time, then stop it.
            c.run_for(Duration::from_secs(6))?;
            c.crash("node-4");
            c.run_for(Duration::from_secs(2))?;
            for k in &keys {
                write(&mut c, "node-1", k, None)?;
            }
            c.run_for(GRACE + Duration::from_secs(3))?;
            c.restart("node-4");
            c.run_until(Duration::from_secs(30), "reconverge", SimCluster::converged)?;
            stay_deleted(&mut c, &names, &keys)
        },
    );
}
