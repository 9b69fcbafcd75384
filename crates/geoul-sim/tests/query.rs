//! Distributed query against an oracle (issue 6).
//!
//! Per seed: random documents (some deleted, some expired by query time) are
//! written at `All` to a five-node cluster; then
//! * random queries (filters over indexed and unindexed fields, `and`, `or`,
//!   `not`, `in`; multi-key `order by`; random limits) coordinated by random
//!   nodes return exactly what the same query returns on a single in-memory
//!   oracle of the live entries, and paging with cursors visits every match
//!   once, in order;
//! * then one node crashes and another is cut off: every answer is either
//!   complete and equal to the oracle, or says `partial` and names the missing
//!   slots, and equals the oracle restricted to the slots it answered — never
//!   a wrong or silently short result.

use std::collections::BTreeMap;
use std::time::Duration;

use geoul_client::wire::{ApiRequest, ApiResponse, Call, QueryAnswer, QueryCall};
use geoul_placement::slot_of;
use geoul_query::{compare, CmpOp, Cursor, Expr, OrderKey, Query, SortKey};
use geoul_sim::docs::{DocsRequest, DOCS};
use geoul_sim::{check_seed_share, SimCluster, SimOptions, SimServices};
use geoul_store::{Document, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeds in CI; `GEOUL_SIM_SEEDS` for soaks.
const SEEDS: u64 = 50;
const DOCS_PER_SEED: usize = 100;
const QUERIES_HEALTHY: usize = 20;
const QUERIES_FAULTY: usize = 4;

const MODES: [&str; 4] = ["ranked", "casual", "coop", "none"];
const REGIONS: [&str; 3] = ["eu", "na", "asia"];
const TAGS: [&str; 3] = ["a", "b", "c"];

type Oracle = BTreeMap<String, Document>;

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn random_doc(rng: &mut StdRng) -> Vec<(String, Value)> {
    let mut fields = vec![
        (
            "mode".to_string(),
            Value::Str(pick(rng, &MODES[..3]).into()),
        ),
        ("region".to_string(), Value::Str(pick(rng, &REGIONS).into())),
        ("players".to_string(), Value::Int(rng.random_range(0..10))),
    ];
    // Ratings are ints or floats (one numeric order), sometimes missing.
    match rng.random_range(0..10) {
        0 => {}
        1..=2 => fields.push((
            "rating".into(),
            Value::Float(f64::from(rng.random_range(0..300u32)) * 10.0 + 0.5),
        )),
        _ => fields.push(("rating".into(), Value::Int(rng.random_range(0..3000)))),
    }
    if rng.random_bool(0.6) {
        fields.push(("tag".into(), Value::Str(pick(rng, &TAGS).into())));
    }
    fields
}

fn random_value(rng: &mut StdRng, field: &str) -> Value {
    match field {
        "mode" => Value::Str(pick(rng, &MODES).into()),
        "region" => Value::Str(pick(rng, &REGIONS).into()),
        "tag" => Value::Str(pick(rng, &TAGS).into()),
        "players" => Value::Int(rng.random_range(-1..11)),
        _ if rng.random_bool(0.2) => Value::Float(f64::from(rng.random_range(0..3000u32)) + 0.5),
        _ => Value::Int(rng.random_range(0..3000)),
    }
}

fn random_predicate(rng: &mut StdRng) -> Expr {
    let field = pick(rng, &["mode", "region", "rating", "players", "tag"]);
    if rng.random_bool(0.2) {
        let n = rng.random_range(1..4);
        let values = (0..n).map(|_| random_value(rng, field)).collect();
        return Expr::In {
            field: field.into(),
            values,
        };
    }
    let op = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ][rng.random_range(0..6)];
    Expr::Cmp {
        field: field.into(),
        op,
        value: random_value(rng, field),
    }
}

fn random_query(rng: &mut StdRng) -> Query {
    let filter = match rng.random_range(0..10) {
        0 => None,
        1..=3 => Some(random_predicate(rng)),
        4..=6 => Some(Expr::And(
            (0..rng.random_range(2..4))
                .map(|_| random_predicate(rng))
                .collect(),
        )),
        7..=8 => Some(Expr::Or(vec![random_predicate(rng), random_predicate(rng)])),
        _ => Some(Expr::Not(Box::new(random_predicate(rng)))),
    };
    let order = match rng.random_range(0..5) {
        0 => vec![],
        1 => vec![OrderKey::desc("rating")],
        2 => vec![OrderKey::asc("players"), OrderKey::desc("rating")],
        3 => vec![OrderKey::asc("tag")],
        _ => vec![OrderKey::asc("mode"), OrderKey::asc("rating")],
    };
    let mut query = Query::new(DOCS);
    query.filter = filter;
    query.order = order;
    query.limit = rng.random_range(1..40);
    query
}

/// The oracle's answer: matching live documents in query order after the
/// cursor, at most `limit`, among keys `admit` lets through.
fn expected(
    oracle: &Oracle,
    query: &Query,
    limit: usize,
    admit: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut rows: Vec<SortKey> = oracle
        .iter()
        .filter(|(k, _)| admit(k))
        .filter(|(_, d)| query.filter.as_ref().is_none_or(|f| f.matches(d)))
        .map(|(k, d)| SortKey::new(&query.order, d, k.as_bytes()))
        .filter(|s| {
            query
                .after
                .as_ref()
                .is_none_or(|c| c.admits(&query.order, s))
        })
        .collect();
    rows.sort_by(|a, b| compare(&query.order, a, b));
    rows.truncate(limit);
    rows.into_iter()
        .map(|s| String::from_utf8_lossy(&s.key).into_owned())
        .collect()
}

fn run_query(c: &mut SimCluster, via: &str, query: &Query) -> Result<QueryAnswer, String> {
    let request = ApiRequest::Query(QueryCall {
        query: query.clone(),
        timeout_ms: 600,
    });
    match c.call_api(via, via, request)? {
        ApiResponse::Rows(answer) => Ok(answer),
        other => Err(format!("query {query} answered {other:?}")),
    }
}

fn keys(answer: &QueryAnswer) -> Vec<String> {
    answer
        .rows
        .iter()
        .map(|r| String::from_utf8_lossy(&r.key).into_owned())
        .collect()
}

fn write(c: &mut SimCluster, rng: &mut StdRng, oracle: &mut Oracle) -> Result<(), String> {
    let names = c.names().to_vec();
    let mut pending = Vec::new();
    for i in 0..DOCS_PER_SEED {
        let key = format!("doc-{i:03}");
        let fields = random_doc(rng);
        // A few expire long before the queries; a few are deleted after.
        let ttl_ms = rng.random_bool(0.1).then_some(50);
        let via = names[rng.random_range(0..names.len())].clone();
        let request = DocsRequest::Put {
            key: key.clone(),
            fields: fields.clone(),
            ttl_ms,
        };
        pending.push((
            key,
            fields,
            ttl_ms,
            c.submit_api(&via, &via, docs_call(&request))?,
        ));
        if pending.len() == 30 {
            settle(c, &mut pending, oracle)?;
        }
    }
    settle(c, &mut pending, oracle)?;
    let doomed: Vec<String> = oracle
        .keys()
        .filter(|_| rng.random_bool(0.1))
        .cloned()
        .collect();
    for key in doomed {
        let via = names[rng.random_range(0..names.len())].clone();
        let answer = c.call_api(&via, &via, docs_call(&DocsRequest::Delete(key.clone())))?;
        if !matches!(answer, ApiResponse::Reply(_)) {
            return Err(format!("delete of {key} answered {answer:?}"));
        }
        oracle.remove(&key);
    }
    Ok(())
}

type PendingPut = (
    String,
    Vec<(String, Value)>,
    Option<u64>,
    tokio::sync::oneshot::Receiver<Result<ApiResponse, String>>,
);

fn settle(
    c: &mut SimCluster,
    pending: &mut Vec<PendingPut>,
    oracle: &mut Oracle,
) -> Result<(), String> {
    for (key, fields, ttl, rx) in pending.drain(..) {
        match c.wait_reply(rx)? {
            ApiResponse::Reply(_) => {
                if ttl.is_none() {
                    let doc = Document::from_fields(fields).map_err(|e| e.to_string())?;
                    oracle.insert(key, doc);
                }
            }
            other => return Err(format!("put {key} answered {other:?}")),
        }
    }
    Ok(())
}

fn docs_call(request: &DocsRequest) -> ApiRequest {
    let key = match request {
        DocsRequest::Put { key, .. } | DocsRequest::Delete(key) => key.clone(),
    };
    ApiRequest::Call(Call {
        service: DOCS.into(),
        key: Some(key.into_bytes()),
        payload: postcard::to_stdvec(request).unwrap_or_default(),
        timeout_ms: 2_000,
        idempotency_key: None,
        session: Default::default(),
        json: false,
    })
}

fn check_healthy(c: &mut SimCluster, rng: &mut StdRng, oracle: &Oracle) -> Result<(), String> {
    let names = c.names().to_vec();
    for _ in 0..QUERIES_HEALTHY {
        let query = random_query(rng);
        let via = names[rng.random_range(0..names.len())].clone();
        let answer = run_query(c, &via, &query)?;
        if answer.partial {
            return Err(format!("{query} via {via}: partial on a healthy cluster"));
        }
        let want = expected(oracle, &query, query.limit as usize, |_| true);
        if keys(&answer) != want {
            return Err(format!(
                "{query} via {via}:\n got  {:?}\n want {want:?}",
                keys(&answer)
            ));
        }
        for row in &answer.rows {
            let key = String::from_utf8_lossy(&row.key).into_owned();
            if oracle.get(&key) != Some(&row.doc) {
                return Err(format!("{query}: row {key} is not the stored document"));
            }
        }
    }
    // Paging: every match once, in order.
    let mut query = random_query(rng);
    query.limit = rng.random_range(1..8);
    let all = expected(oracle, &query, usize::MAX, |_| true);
    let mut seen = Vec::new();
    for _ in 0..200 {
        let answer = run_query(c, "node-1", &query)?;
        seen.extend(keys(&answer));
        match answer.next {
            Some(next) => {
                query.after = Some(Cursor::decode(&next).map_err(|e| e.to_string())?);
            }
            None => break,
        }
    }
    if seen != all {
        return Err(format!("paging {query}:\n got  {seen:?}\n want {all:?}"));
    }
    Ok(())
}

fn check_faulty(c: &mut SimCluster, rng: &mut StdRng, oracle: &Oracle) -> Result<(), String> {
    c.crash("node-5");
    c.partition(&["node-4"], &["node-1", "node-2", "node-3"]);
    for i in 0..QUERIES_FAULTY {
        if i == QUERIES_FAULTY / 2 {
            // Long enough for the detector to suspect the crashed node.
            c.run_for(Duration::from_millis(1500))?;
        }
        let query = random_query(rng);
        let via = ["node-1", "node-4"][rng.random_range(0..2)];
        let answer = run_query(c, via, &query)?;
        let missing: std::collections::HashSet<u16> =
            answer.missing_slots.iter().copied().collect();
        if answer.partial == missing.is_empty() {
            return Err(format!("{query}: partial without naming the slots"));
        }
        let want = expected(oracle, &query, query.limit as usize, |k| {
            !missing.contains(&slot_of(k.as_bytes()).get())
        });
        if keys(&answer) != want {
            return Err(format!(
                "{query} via {via} (partial {}, {} slots missing):\n got  {:?}\n want {want:?}",
                answer.partial,
                missing.len(),
                keys(&answer)
            ));
        }
    }
    Ok(())
}

fn scenario(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let options = SimOptions {
        services: SimServices {
            docs: true,
            ..SimServices::default()
        },
        ..SimOptions::default()
    };
    let mut c = SimCluster::new(seed, options);
    c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
    c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
    let mut oracle = Oracle::new();
    write(&mut c, &mut rng, &mut oracle)?;
    // The short TTLs have passed (plus the skew margin) by now.
    c.run_for(Duration::from_secs(1))?;
    check_healthy(&mut c, &mut rng, &oracle)?;
    check_faulty(&mut c, &mut rng, &oracle)
}

// One scenario over SEEDS seeds, split in two so both cores run it.
#[test]
fn queries_equal_the_oracle_and_say_partial_under_faults_odd_seeds() {
    check_seed_share("query_oracle", SEEDS, (1, 2), scenario);
}

#[test]
fn queries_equal_the_oracle_and_say_partial_under_faults_even_seeds() {
    check_seed_share("query_oracle", SEEDS, (0, 2), scenario);
}

#[test]
fn a_service_on_a_subset_of_nodes_is_advertised_and_routed_only_there() {
    geoul_sim::check_seeds("query_subset", 2, |seed| {
        let options = SimOptions {
            services: SimServices {
                docs: true,
                docs_nodes: Some(3),
                ..SimServices::default()
            },
            ..SimOptions::default()
        };
        let mut c = SimCluster::new(seed, options);
        c.run_until(Duration::from_secs(20), "converge", SimCluster::converged)?;
        c.run_until(Duration::from_secs(20), "sync", SimCluster::synced)?;
        // Every node advertises who hosts `docs`: the first three.
        let topology = match c.call_api("node-5", "node-5", ApiRequest::Topology)? {
            ApiResponse::Topology(t) => t,
            other => return Err(format!("topology answered {other:?}")),
        };
        let mut hosts: Vec<String> = topology
            .members
            .iter()
            .filter(|m| m.services.iter().any(|(s, ok)| s == DOCS && *ok))
            .map(|m| m.name.clone())
            .collect();
        hosts.sort();
        if hosts != ["node-1", "node-2", "node-3"] {
            return Err(format!("docs advertised on {hosts:?}"));
        }
        // A node without the service refuses calls and queries for it (the
        // client moves on), and hosts serve them.
        let put = DocsRequest::Put {
            key: "k".into(),
            fields: vec![("mode".into(), Value::Str("ranked".into()))],
            ttl_ms: None,
        };
        match c.call_api("node-4", "node-4", docs_call(&put))? {
            ApiResponse::Failed(geoul_client::wire::Failure::NotHosted { node, .. })
                if node == "node-4" => {}
            other => return Err(format!("node-4 answered a docs call with {other:?}")),
        }
        if !matches!(
            c.call_api("node-4", "node-2", docs_call(&put))?,
            ApiResponse::Reply(_)
        ) {
            return Err("a host refused a docs call".into());
        }
        let query = Query::new(DOCS);
        let request = ApiRequest::Query(QueryCall {
            query: query.clone(),
            timeout_ms: 600,
        });
        match c.call_api("node-5", "node-5", request)? {
            ApiResponse::Failed(geoul_client::wire::Failure::NotHosted { .. }) => {}
            other => return Err(format!("node-5 answered a docs query with {other:?}")),
        }
        let answer = run_query(&mut c, "node-1", &query)?;
        if keys(&answer) != ["k"] || answer.partial {
            return Err(format!("the hosts answered {answer:?}"));
        }
        Ok(())
    });
}
