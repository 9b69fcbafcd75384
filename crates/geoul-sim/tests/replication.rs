//! The write path under faults: random writes at Quorum from random nodes while
//! nodes crash (kill -9 semantics: the disk survives — or, half the time, is
//! replaced by an empty one) and restart and links drop.
//! After healing and a repair pass, no acknowledged write is lost and the
//! replicas of every key hold identical entries.

use std::collections::BTreeMap;
use std::time::Duration;

use geoul_node::kv::{KvRequest, KvResponse, VALUE_FIELD};
use geoul_node::rpc::{PeerRequest, PeerResponse};
use geoul_placement::{replicas, slot_of, Replication};
use geoul_replication::ReplicateBatch;
use geoul_sim::{check_seeds, SimCluster, SimOptions};
use geoul_store::{Ack, Durability, Entry, Key, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;

/// Seeds in CI (issue 4 asks for at least 100).
const SEEDS: u64 = 100;
const KEYS: u32 = 16;
const ROUNDS: u32 = 40;

type Pending = oneshot::Receiver<Result<PeerResponse, String>>;

struct Acked {
    key: String,
    value: String,
    version: (u64, u64),
}

fn set(key: &str, value: &str) -> PeerRequest {
    PeerRequest::Kv(KvRequest::Set {
        key: key.as_bytes().to_vec(),
        value: value.to_string(),
        ttl_ms: None,
        ack: Some(Ack::Quorum),
        timeout_ms: 1_000,
    })
}

fn pick(rng: &mut StdRng, from: &[String]) -> String {
    from[rng.random_range(0..from.len())].clone()
}

fn collect(pending: &mut Vec<(String, String, Pending)>, acked: &mut Vec<Acked>) {
    pending.retain_mut(|(key, value, rx)| match rx.try_recv() {
        Ok(Ok(PeerResponse::Kv(KvResponse::Written {
            version, origin, ..
        }))) => {
            acked.push(Acked {
                key: key.clone(),
                value: value.clone(),
                version: (version, origin),
            });
            false
        }
        Ok(_) | Err(oneshot::error::TryRecvError::Closed) => false,
        Err(oneshot::error::TryRecvError::Empty) => true,
    });
}

fn entry_value(e: &Entry) -> Option<String> {
    let doc = e.value.as_ref()?.decode().ok()?;
    match doc.get(VALUE_FIELD) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

fn read_entry(c: &mut SimCluster<'_>, node: &str, key: &str) -> Result<Option<Entry>, String> {
    let request = PeerRequest::ReadEntry {
        table: "kv".into(),
        key: Key::new(key.as_bytes()).map_err(|e| e.to_string())?,
    };
    match c.call(node, node, request)? {
        PeerResponse::Entry(e) => Ok(e),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// The repair the next issue automates: bring every replica of each key to the
/// highest version any replica holds.
fn repair(c: &mut SimCluster<'_>, key: &str, holders: &[String]) -> Result<(), String> {
    let mut best: Option<Entry> = None;
    for node in holders {
        if let Some(e) = read_entry(c, node, key)? {
            if best.as_ref().is_none_or(|b| e.version > b.version) {
                best = Some(e);
            }
        }
    }
    if let Some(best) = best {
        for node in holders {
            let batch = ReplicateBatch {
                items: vec![("kv".to_string(), best.clone())],
            };
            match c.call(node, node, PeerRequest::Replicate(batch))? {
                PeerResponse::Applied(ack) if ack.refused.is_empty() => {}
                other => return Err(format!("repair on {node} failed: {other:?}")),
            }
        }
    }
    Ok(())
}

fn scenario(seed: u64) -> Result<(), String> {
    let options = SimOptions {
        kv_durability: Durability::Disk,
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    let names = c.names().to_vec();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pending = Vec::new();
    let mut acked = Vec::new();
    let mut down: Option<String> = None;
    let mut cut: Option<(String, String)> = None;
    for round in 0..ROUNDS {
        let running = c.running();
        for i in 0..3 {
            let from = pick(&mut rng, &running);
            let key = format!("k{}", rng.random_range(0..KEYS));
            let value = format!("v{round}.{i}");
            if let Ok(rx) = c.submit(&from, &from, set(&key, &value)) {
                pending.push((key, value, rx));
            }
        }
        if round % 8 == 3 {
            match down.take() {
                None => {
                    let victim = pick(&mut rng, &running);
                    c.crash(&victim);
                    down = Some(victim);
                }
                Some(victim) => {
                    // Half the time the node comes back with an empty disk: a
                    // write acked at Quorum must survive losing any minority.
                    if rng.random_bool(0.5) {
                        c.wipe_data(&victim)?;
                    }
                    c.restart(&victim);
                }
            }
        }
        if round % 10 == 5 {
            let a = pick(&mut rng, &names);
            let b = pick(&mut rng, &names);
            if a != b {
                c.partition(&[&a], &[&b]);
                cut = Some((a, b));
            }
        }
        if round % 10 == 8 {
            if let Some((a, b)) = cut.take() {
                c.heal(&[&a], &[&b]);
            }
        }
        c.run_for(Duration::from_millis(50))?;
        collect(&mut pending, &mut acked);
    }
    if let Some(victim) = down.take() {
        c.restart(&victim);
    }
    if let Some((a, b)) = cut.take() {
        c.heal(&[&a], &[&b]);
    }
    c.run_until(Duration::from_secs(20), "all writes answered", |_| false)
        .ok();
    collect(&mut pending, &mut acked);
    c.run_until(Duration::from_secs(30), "reconverge", SimCluster::converged)?;
    if std::env::var("GEOUL_SIM_VERBOSE").is_ok() {
        eprintln!(
            "seed {seed}: {} writes acknowledged, {} unanswered",
            acked.len(),
            pending.len()
        );
    }
    if acked.is_empty() {
        return Err("no write was acknowledged at all".into());
    }
    let mut latest: BTreeMap<String, ((u64, u64), String)> = BTreeMap::new();
    for a in &acked {
        let slot = latest
            .entry(a.key.clone())
            .or_insert(((0, 0), String::new()));
        if a.version > slot.0 {
            *slot = (a.version, a.value.clone());
        }
    }
    for (key, (version, value)) in &latest {
        let holders = replicas(slot_of(key.as_bytes()), &names, Replication::Factor(3))
            .map_err(|e| e.to_string())?;
        repair(&mut c, key, &holders)?;
        let mut seen = Vec::new();
        for node in &holders {
            let e = read_entry(&mut c, node, key)?
                .ok_or_else(|| format!("{node} lost acknowledged key {key}"))?;
            let held = (e.version.ts.raw(), e.version.origin.raw());
            if held < *version {
                return Err(format!(
                    "{node} holds {key} at {held:?} below the acknowledged {version:?}"
                ));
            }
            if held == *version && entry_value(&e).as_deref() != Some(value.as_str()) {
                return Err(format!(
                    "{node} holds another value for {key}'s acknowledged version"
                ));
            }
            seen.push(e);
        }
        if seen.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("replicas of {key} differ after repair: {seen:?}"));
        }
    }
    Ok(())
}

#[test]
fn no_acknowledged_write_is_lost_under_crashes_and_partitions() {
    check_seeds(
        "no_acknowledged_write_is_lost_under_crashes_and_partitions",
        SEEDS,
        scenario,
    );
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
        // Keys for which node-5 is not the only possible acker.
        let names = c.names().to_vec();
        for i in 0..5 {
            let key = format!("skew{i}");
            let holders = replicas(slot_of(key.as_bytes()), &names, Replication::Factor(3))
                .map_err(|e| e.to_string())?;
            if let Ok(PeerResponse::Kv(KvResponse::Written { .. })) =
                c.call("node-5", "node-5", set(&key, "from the future"))
            {
                return Err(format!(
                    "a write from a clock 60 s ahead was acknowledged ({key}, replicas {holders:?})"
                ));
            }
            match c.call("node-1", "node-1", set(&key, "now"))? {
                PeerResponse::Kv(KvResponse::Written { .. }) => {}
                other => return Err(format!("a normal write failed: {other:?}")),
            }
            let read = PeerRequest::Kv(KvRequest::Get {
                key: key.as_bytes().to_vec(),
                level: geoul_replication::ReadLevel::Quorum,
                timeout_ms: 1_000,
            });
            match c.call("node-2", "node-2", read)? {
                PeerResponse::Kv(KvResponse::Value(Some(v))) if v.value == "now" => {}
                other => return Err(format!("{key}: expected the normal write, got {other:?}")),
            }
        }
        Ok(())
    });
}
