//! The documents of `bench query`: game-instance-like entries of the kv table,
//! a pure function of their key (so that a run is reproducible and the
//! benchmark can count how many documents each query matches), and the
//! client that writes them.
//!
//! Fields and how they are drawn (weights in percent):
//! * `mode`: ranked 40, casual 35, coop 15, custom 10;
//! * `region`: eu 30, na 30, asia 25, sa 8, oce 7;
//! * `state`: lobby 25, playing 65, ending 10;
//! * `spectators`: ⌊201·u⁴⌋ for u uniform in [0, 1), capped at 200 — most
//!   small: 35 % below 3, 71 % below 50;
//! * `rating`: uniform integer 0..=3000; `players`: uniform 1..=10;
//! * `map`: one of [`MAPS`], uniform.
//!
//! Owns: the generator and [`DocDriver`]. Does not own: the load loop
//! (`kv_load`) or the queries (`query`).

use std::net::SocketAddr;

use anyhow::{anyhow, bail};
use geoul_client::ServiceRef;
use geoul_node::kv::{KvRequest, KvResponse, KV};
use geoul_store::Value;
use geoul_transport::ClusterSecret;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::call_drivers::connect_client;
use super::kv::REQUEST_DEADLINE;
use super::kv_load::{Driver, Op};

/// `mode` values and weights.
pub const MODES: [(&str, u32); 4] = [("ranked", 40), ("casual", 35), ("coop", 15), ("custom", 10)];
/// `region` values and weights.
pub const REGIONS: [(&str, u32); 5] = [("eu", 30), ("na", 30), ("asia", 25), ("sa", 8), ("oce", 7)];
/// `state` values and weights.
pub const STATES: [(&str, u32); 3] = [("lobby", 25), ("playing", 65), ("ending", 10)];
/// `map` values.
pub const MAPS: [&str; 8] = [
    "harbor", "citadel", "dunes", "glacier", "canyon", "foundry", "marsh", "summit",
];
/// Highest `spectators` and `rating` values.
pub const SPECTATORS_MAX: i64 = 200;
pub const RATING_MAX: i64 = 3000;
/// Mixed into every document's seed (changing it changes every document).
const SEED: u64 = 0x6765_6f75_6c5f_7131;

/// FNV-1a of the key: a stable seed per key, on every platform and run.
fn key_seed(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ SEED;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One of `choices`, with probability weight / sum of weights.
fn pick<'a>(rng: &mut StdRng, choices: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for (value, weight) in choices {
        if roll < *weight {
            return value;
        }
        roll -= weight;
    }
    choices.last().map_or("", |(v, _)| v)
}

/// The document stored under `key`.
pub fn doc_fields(key: &[u8]) -> Vec<(String, Value)> {
    let mut rng = StdRng::seed_from_u64(key_seed(key));
    let mode = pick(&mut rng, &MODES);
    let region = pick(&mut rng, &REGIONS);
    let state = pick(&mut rng, &STATES);
    let u: f64 = rng.random();
    let spectators = ((201.0 * u.powi(4)).floor() as i64).min(SPECTATORS_MAX);
    let rating = rng.random_range(0..=RATING_MAX);
    let players = rng.random_range(1..=10i64);
    let map = MAPS[rng.random_range(0..MAPS.len())];
    let s = |v: &str| Value::Str(v.to_string());
    vec![
        ("mode".to_string(), s(mode)),
        ("region".to_string(), s(region)),
        ("state".to_string(), s(state)),
        ("spectators".to_string(), Value::Int(spectators)),
        ("rating".to_string(), Value::Int(rating)),
        ("players".to_string(), Value::Int(players)),
        ("map".to_string(), s(map)),
    ]
}

/// A loading client: a `ServiceRef` on `kv` without a session (a loader
/// never reads back, and a session would only remember every key it wrote).
pub struct DocDriver {
    kv: ServiceRef,
    /// Keeps the client's topology refresher running.
    _client: geoul_client::Client,
}

impl Driver for DocDriver {
    /// Writes the document of `key` at the table's ack level (the operation
    /// only labels the phase).
    async fn call(&mut self, _op: Op, key: &str) -> anyhow::Result<bool> {
        let request = KvRequest::Put {
            key: key.as_bytes().to_vec(),
            fields: doc_fields(key.as_bytes()),
            ttl_ms: None,
            ack: None,
            timeout_ms: u64::try_from(REQUEST_DEADLINE.as_millis()).unwrap_or(u64::MAX),
        };
        match geoul_node::kv::call(&self.kv, &request)
            .await
            .map_err(|e| anyhow!("PUT: {e}"))?
        {
            KvResponse::Written { .. } => Ok(true),
            other => bail!("PUT: unexpected answer {other:?}"),
        }
    }
}

/// `n` loading clients, seeded round-robin over `nodes`.
pub async fn connect_loaders(
    nodes: &[SocketAddr],
    secret: &ClusterSecret,
    n: usize,
) -> anyhow::Result<Vec<DocDriver>> {
    let mut drivers = Vec::with_capacity(n);
    for i in 0..n {
        let client = connect_client(nodes, i, secret).await?;
        drivers.push(DocDriver {
            kv: client.service(KV).without_session(),
            _client: client,
        });
    }
    Ok(drivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(doc: &'a [(String, Value)], name: &str) -> &'a Value {
        &doc.iter().find(|(n, _)| n == name).expect("field").1
    }

    #[test]
    fn documents_are_a_function_of_the_key() {
        assert_eq!(
            doc_fields(b"key:000000000001"),
            doc_fields(b"key:000000000001")
        );
        assert_ne!(
            doc_fields(b"key:000000000001"),
            doc_fields(b"key:000000000002")
        );
        let doc = doc_fields(b"key:000000000001");
        assert_eq!(doc.len(), 7);
        geoul_store::Document::from_fields(doc).expect("a valid document");
    }

    #[test]
    fn fields_follow_their_distributions() {
        let n = 20_000;
        let (mut ranked, mut eu, mut below3, mut below50) = (0, 0, 0, 0);
        for i in 0..n {
            let doc = doc_fields(format!("key:{i:012}").as_bytes());
            ranked += u32::from(field(&doc, "mode") == &Value::Str("ranked".into()));
            eu += u32::from(field(&doc, "region") == &Value::Str("eu".into()));
            let Value::Int(spectators) = field(&doc, "spectators") else {
                panic!("spectators is an int");
            };
            assert!((0..=SPECTATORS_MAX).contains(spectators));
            below3 += u32::from(*spectators < 3);
            below50 += u32::from(*spectators < 50);
            let Value::Int(rating) = field(&doc, "rating") else {
                panic!("rating is an int");
            };
            assert!((0..=RATING_MAX).contains(rating));
        }
        let share = |c: u32| f64::from(c) / f64::from(n);
        assert!((share(ranked) - 0.40).abs() < 0.02, "{}", share(ranked));
        assert!((share(eu) - 0.30).abs() < 0.02, "{}", share(eu));
        assert!((share(below3) - 0.35).abs() < 0.02, "{}", share(below3));
        assert!((share(below50) - 0.71).abs() < 0.02, "{}", share(below50));
    }
}
