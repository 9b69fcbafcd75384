//! Directory searches against an oracle (issue 8).
//!
//! Per seed: random instances are registered through random nodes of a
//! three-node cluster (odd seeds: every node holds every entry; even seeds:
//! two copies, searches scatter and gather); some are updated, some
//! removed, some left to expire. Then random spectator searches — typed
//! filters over indexed and unindexed fields and tags, multi-key `order by`
//! with both directions, random limits — written as text and sent to random
//! nodes return exactly what a plain in-memory evaluation over the live,
//! unexpired instances returns: the first page, and every page through the
//! cursor, each match once, in order.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use geoul_client::wire::{ApiRequest, ApiResponse, Call};
use geoul_dir::{
    DirRequest, DirResponse, InstanceSpec, InstanceState, InstanceUpdate, SearchPage, TagValue, DIR,
};
use geoul_sim::{check_seed_share, SimCluster, SimOptions, SimServices};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: u64 = 20;
const INSTANCES: usize = 60;
const QUERIES: usize = 25;
const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
const MODES: [&str; 3] = ["ranked", "casual", "coop"];
const REGIONS: [&str; 3] = ["eu", "na", "asia"];
const STATES: [InstanceState; 3] = [
    InstanceState::Lobby,
    InstanceState::Playing,
    InstanceState::Ending,
];

fn call(request: &DirRequest) -> Result<ApiRequest, String> {
    Ok(ApiRequest::Call(Call {
        service: DIR.into(),
        key: None,
        payload: postcard::to_stdvec(request).map_err(|e| e.to_string())?,
        timeout_ms: 3_000,
        idempotency_key: None,
        session: Default::default(),
        json: false,
    }))
}

fn ask(c: &mut SimCluster, node: &str, request: &DirRequest) -> Result<DirResponse, String> {
    let until = c.elapsed() + Duration::from_secs(10);
    loop {
        let answer = match c.call_api(node, node, call(request)?)? {
            ApiResponse::Reply(r) => postcard::from_bytes(&r.payload).map_err(|e| e.to_string()),
            other => Err(format!("{other:?}")),
        };
        match answer {
            Ok(a) => return Ok(a),
            Err(e) if c.elapsed() > until => return Err(format!("{request:?} on {node}: {e}")),
            Err(_) => c.run_for(Duration::from_millis(200))?,
        }
    }
}

fn random_spec(rng: &mut StdRng, i: usize) -> InstanceSpec {
    let max_players = rng.random_range(2..12);
    let mut tags = BTreeMap::new();
    if rng.random_bool(0.6) {
        tags.insert("level".to_string(), TagValue::Int(rng.random_range(0..20)));
    }
    if rng.random_bool(0.3) {
        tags.insert("voice".to_string(), TagValue::Bool(rng.random_bool(0.5)));
    }
    InstanceSpec {
        addr: format!("10.0.{}.{}:7777", i / 200, i % 200),
        mode: MODES[rng.random_range(0..3)].into(),
        region: REGIONS[rng.random_range(0..3)].into(),
        map: rng
            .random_bool(0.5)
            .then(|| format!("map-{}", rng.random_range(0..4))),
        players: rng.random_range(0..=max_players),
        max_players,
        spectators: rng.random_range(0..100),
        state: STATES[rng.random_range(0..3)],
        // Ties on purpose (few distinct ratings), sometimes none.
        rating: rng.random_bool(0.85).then(|| {
            f64::from(rng.random_range(0..8u32)) * 100.0
                + 0.5 * f64::from(rng.random_range(0..2u32))
        }),
        started_at: Some(1_000 + rng.random_range(0..50u64)),
        tags,
    }
}

/// One filter predicate, as text and as a plain function of an instance.
struct Pred {
    text: String,
    test: Box<dyn Fn(&InstanceSpec) -> bool>,
}

fn cmp_num(op: &str, a: f64, b: f64) -> bool {
    match op {
        "<" => a < b,
        "<=" => a <= b,
        ">" => a > b,
        ">=" => a >= b,
        "=" => a == b,
        _ => a != b,
    }
}

fn random_pred(rng: &mut StdRng) -> Pred {
    let ops = ["<", "<=", ">", ">=", "=", "!="];
    match rng.random_range(0..9) {
        0 => {
            let m = MODES[rng.random_range(0..3)];
            Pred {
                text: format!("mode = \"{m}\""),
                test: Box::new(move |s| s.mode == m),
            }
        }
        1 => {
            let a = REGIONS[rng.random_range(0..3)];
            let b = REGIONS[rng.random_range(0..3)];
            Pred {
                text: format!("region in (\"{a}\", \"{b}\")"),
                test: Box::new(move |s| s.region == a || s.region == b),
            }
        }
        2 => {
            let st = STATES[rng.random_range(0..3)];
            Pred {
                text: format!("state != \"{}\"", st.as_str()),
                test: Box::new(move |s| s.state != st),
            }
        }
        3 => {
            let op = ops[rng.random_range(0..6)];
            let n = rng.random_range(0..100u32);
            Pred {
                text: format!("spectators {op} {n}"),
                test: Box::new(move |s| cmp_num(op, f64::from(s.spectators), f64::from(n))),
            }
        }
        4 => {
            let op = ops[rng.random_range(0..4)];
            let r = f64::from(rng.random_range(0..8u32)) * 100.0;
            Pred {
                text: format!("rating {op} {r:.1}"),
                test: Box::new(move |s| s.rating.is_some_and(|x| cmp_num(op, x, r))),
            }
        }
        5 => Pred {
            text: "open_slots > 0".into(),
            test: Box::new(|s| s.players < s.max_players),
        },
        6 => {
            let n = rng.random_range(0..20i64);
            Pred {
                text: format!("tag.level >= {n}"),
                test: Box::new(
                    move |s| matches!(s.tags.get("level"), Some(TagValue::Int(l)) if *l >= n),
                ),
            }
        }
        7 => {
            let m = rng.random_range(0..4);
            Pred {
                text: format!("not map = \"map-{m}\""),
                // A missing field never matches, so `not` of it does.
                test: Box::new(move |s| s.map.as_deref() != Some(format!("map-{m}").as_str())),
            }
        }
        _ => {
            let n = rng.random_range(0..12u32);
            Pred {
                text: format!("(players < {n} or tag.voice = true)"),
                test: Box::new(move |s| {
                    s.players < n || matches!(s.tags.get("voice"), Some(TagValue::Bool(true)))
                }),
            }
        }
    }
}

/// An order key: its text and the value it sorts by (`None` sorts last in
/// both directions).
type KeyFn = fn(&InstanceSpec) -> Option<f64>;

const ORDER_KEYS: [(&str, KeyFn); 4] = [
    ("rating", |s| s.rating),
    ("spectators", |s| Some(f64::from(s.spectators))),
    ("players", |s| Some(f64::from(s.players))),
    ("started_at", |s| s.started_at.map(|t| t as f64)),
];

fn oracle_order(
    keys: &[(KeyFn, bool)],
    a: &(String, InstanceSpec),
    b: &(String, InstanceSpec),
) -> Ordering {
    for (key, desc) in keys {
        let ord = match (key(&a.1), key(&b.1)) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => {
                let o = x.total_cmp(&y);
                if *desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.0.cmp(&b.0)
}

fn page(
    c: &mut SimCluster,
    node: &str,
    text: &str,
    after: Option<String>,
) -> Result<SearchPage, String> {
    let r = DirRequest::Search {
        query: text.into(),
        after,
    };
    match ask(c, node, &r)? {
        DirResponse::Found(p) => Ok(p),
        other => Err(format!("{text}: {other:?}")),
    }
}

fn scenario(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let copies = seed.is_multiple_of(2).then_some(2);
    let options = SimOptions {
        nodes: 3,
        services: SimServices {
            dir: true,
            dir_copies: copies,
            ..SimServices::default()
        },
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
    c.run_for(Duration::from_secs(2))?;
    // The oracle: id → what is live.
    let mut live: BTreeMap<String, InstanceSpec> = BTreeMap::new();
    for i in 0..INSTANCES {
        let id = format!("g-{i:03}");
        let spec = random_spec(&mut rng, i);
        let short = rng.random_bool(0.1);
        let r = DirRequest::Register {
            id: id.clone(),
            instance: spec.clone(),
            ttl_ms: Some(if short { 2_000 } else { 120_000 }),
        };
        let node = NODES[rng.random_range(0..3)];
        match ask(&mut c, node, &r)? {
            DirResponse::Live { .. } => {}
            other => return Err(format!("register {id}: {other:?}")),
        }
        if !short {
            live.insert(id, spec);
        }
    }
    // Some updated, some removed.
    let ids: Vec<String> = live.keys().cloned().collect();
    for id in &ids {
        let node = NODES[rng.random_range(0..3)];
        match rng.random_range(0..10) {
            0 => {
                ask(&mut c, node, &DirRequest::Remove { id: id.clone() })?;
                live.remove(id);
            }
            1 | 2 => {
                let Some(spec) = live.get(id).cloned() else {
                    continue;
                };
                let update = InstanceUpdate {
                    spectators: Some(rng.random_range(0..100)),
                    players: Some(rng.random_range(0..=spec.max_players)),
                    state: Some(STATES[rng.random_range(0..3)]),
                    ..InstanceUpdate::default()
                };
                let r = DirRequest::Update {
                    id: id.clone(),
                    changes: update.clone(),
                };
                match ask(&mut c, node, &r)? {
                    DirResponse::Live { .. } => {
                        live.insert(id.clone(), update.apply_to(spec));
                    }
                    other => return Err(format!("update {id}: {other:?}")),
                }
            }
            _ => {}
        }
    }
    // The short-lived ones lapse; replication settles.
    c.run_for(Duration::from_secs(3))?;
    for q in 0..QUERIES {
        let preds: Vec<Pred> = (0..rng.random_range(0..4))
            .map(|_| random_pred(&mut rng))
            .collect();
        let mut order: Vec<(KeyFn, bool)> = Vec::new();
        let mut order_text = Vec::new();
        for (name, key) in ORDER_KEYS {
            if rng.random_bool(0.4) {
                let desc = rng.random_bool(0.5);
                order.push((key, desc));
                order_text.push(format!("{name} {}", if desc { "desc" } else { "asc" }));
            }
        }
        let limit = rng.random_range(1..25);
        let mut text = preds
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        if !order_text.is_empty() {
            text.push_str(&format!(" order by {}", order_text.join(", ")));
        }
        text.push_str(&format!(" limit {limit}"));
        let mut want: Vec<(String, InstanceSpec)> = live
            .iter()
            .filter(|(_, s)| preds.iter().all(|p| (p.test)(s)))
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        want.sort_by(|a, b| oracle_order(&order, a, b));
        let want: Vec<String> = want.into_iter().map(|(k, _)| k).collect();
        let node = NODES[rng.random_range(0..3)];
        // Every page, through the cursor.
        let mut got: Vec<String> = Vec::new();
        let mut after = None;
        loop {
            let p = page(&mut c, node, &text, after)?;
            if p.partial {
                return Err(format!(
                    "query {q} on {node} partial in a healthy cluster: {text}"
                ));
            }
            if p.entries.len() > limit {
                return Err(format!(
                    "query {q}: {} entries over limit {limit}",
                    p.entries.len()
                ));
            }
            if got.is_empty() {
                let first: Vec<String> = p.entries.iter().map(|e| e.id.clone()).collect();
                let expect: Vec<String> = want.iter().take(limit).cloned().collect();
                if first != expect {
                    return Err(format!(
                        "query {q} on {node}: `{text}`\n first page {first:?}\n oracle     {expect:?}"
                    ));
                }
            }
            got.extend(p.entries.iter().map(|e| e.id.clone()));
            match p.next {
                Some(n) if got.len() <= live.len() => after = Some(n),
                _ => break,
            }
        }
        if got != want {
            return Err(format!(
                "query {q} on {node}: `{text}` paged\n got    {got:?}\n oracle {want:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn searches_equal_an_oracle_of_live_instances_odd_seeds() {
    check_seed_share("dir_oracle", SEEDS, (1, 2), scenario);
}

#[test]
fn searches_equal_an_oracle_of_live_instances_even_seeds() {
    check_seed_share("dir_oracle", SEEDS, (0, 2), scenario);
}
