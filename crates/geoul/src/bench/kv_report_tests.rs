use std::time::Duration;

use super::*;
use crate::bench::kv_hist::Histogram;
use crate::bench::kv_render::{render, table};

fn outcome(ok: u64, found: u64, secs: u64, latencies_us: &[u64]) -> Outcome {
    let mut hist = Histogram::new();
    for &us in latencies_us {
        hist.record(Duration::from_micros(us));
    }
    Outcome {
        ok,
        found,
        errors: 0,
        first_error: None,
        elapsed: Duration::from_secs(secs),
        hist,
    }
}

fn phase(op: Op, request: &str, ops: u64, p99_us: u64) -> PhaseStats {
    let mut lat = vec![500; 98];
    lat.extend([p99_us, p99_us * 2]);
    PhaseStats::new(op, request, &outcome(ops * 10, ops * 5, 10, &lat))
}

fn run(system: &str, phases: Vec<PhaseStats>) -> SystemRun {
    SystemRun {
        system: system.into(),
        version: "1.0".into(),
        settings: format!("{system} settings"),
        phases,
    }
}

fn report(redis: Side<SystemRun>) -> KvReport {
    let geoul = run(
        "geoul",
        vec![
            phase(Op::SetReplicated, "SET ack=quorum", 15_000, 2_000),
            phase(Op::Get, "GET consistency=one", 30_000, 1_000),
            phase(Op::SetOne, "SET ack=one", 18_000, 3_000),
        ],
    );
    let comparisons = compare(&geoul, &redis);
    let memory_geoul = Some(Side::Measured(Box::new(MemoryRun {
        system: "geoul".into(),
        settings: "1 node".into(),
        keys: 1000,
        load: phase(Op::SetOne, "SET ack=one", 1000, 1000),
        figures: vec![MemoryFigure::new(
            "RSS",
            10 << 20,
            (10 << 20) + 250_000,
            1000,
        )],
    })));
    let memory_redis = Some(Side::Measured(Box::new(MemoryRun {
        system: "redis".into(),
        settings: "1 server".into(),
        keys: 1000,
        load: phase(Op::SetOne, "SET", 1000, 1000),
        figures: vec![
            MemoryFigure::new("used_memory", 1_000_000, 1_125_000, 1000),
            MemoryFigure::new("RSS (used_memory_rss)", 2_000_000, 2_300_000, 1000),
        ],
    })));
    KvReport {
        command: "geoul bench kv --clients 50".into(),
        clients: 50,
        work: "15s per phase".into(),
        keys: 100_000,
        value_bytes: 100,
        memory_ratio: memory_ratio(memory_geoul.as_ref(), memory_redis.as_ref()),
        geoul,
        redis,
        comparisons,
        memory_geoul,
        memory_redis,
    }
}

fn redis_run() -> Side<SystemRun> {
    Side::Measured(Box::new(run(
        "redis",
        vec![
            phase(Op::SetReplicated, "SET + WAIT 1", 10_000, 2_500),
            phase(Op::Get, "GET", 40_000, 800),
            phase(Op::SetOne, "SET", 20_000, 2_000),
        ],
    )))
}

#[test]
fn phase_stats_from_an_outcome() {
    let p = phase(Op::Get, "GET", 1000, 2000);
    assert_eq!(p.op, "get");
    assert_eq!(p.requests, 10_000);
    assert_eq!(p.ops_per_s, 1000.0);
    assert_eq!(p.hit_ratio, Some(0.5));
    assert!((p.p50_ms - 0.5).abs() < 0.005, "{}", p.p50_ms);
    assert!((p.p99_ms - 2.0).abs() < 0.02, "{}", p.p99_ms);
    assert!((p.max_ms - 4.0).abs() < 1e-9, "{}", p.max_ms);
    let w = phase(Op::SetOne, "SET", 1000, 2000);
    assert_eq!(w.hit_ratio, None);
}

#[test]
fn comparisons_and_targets() {
    let r = report(redis_run());
    assert_eq!(r.comparisons.len(), 3);
    let by_op = |op: &str| r.comparisons.iter().find(|c| c.op == op).expect(op);
    let quorum = by_op("set_replicated");
    assert_eq!(quorum.ops_ratio, 1.5);
    assert_eq!(quorum.target_ops_ratio, Some(1.5));
    assert_eq!(quorum.target_met, Some(true), "1.5x and p99 2.0 <= 2.5");
    let one = by_op("set_one");
    assert_eq!(one.ops_ratio, 0.9);
    assert_eq!(one.target_met, Some(false));
    let get = by_op("get");
    assert_eq!(get.ops_ratio, 0.75);
    assert_eq!(get.target_met, None);
    assert_eq!(r.memory_ratio, Some(2.0), "250 / 125 bytes per key");
}

#[test]
fn memory_figures() {
    let f = MemoryFigure::new("RSS", 1000, 201_000, 1000);
    assert_eq!(f.bytes_per_key, 200.0);
    let shrunk = MemoryFigure::new("RSS", 5000, 1000, 10);
    assert_eq!(
        shrunk.bytes_per_key, 0.0,
        "a shrinking gauge counts as no growth"
    );
    assert_eq!(MemoryFigure::new("x", 0, 10, 0).bytes_per_key, 10.0);
}

#[test]
fn renders_both_systems_side_by_side() {
    let text = render(&report(redis_run()));
    for want in [
        "50 clients per system",
        "geoul 1.0: geoul settings",
        "redis 1.0: redis settings",
        "write, 2 copies  geoul SET ack=quorum",
        "redis SET + WAIT 1",
        "geoul/redis",
        "1.50x",
        "(50% hits)",
        "memory per key: 1000 keys x 100-byte values",
        "used_memory",
        "geoul/redis bytes per key (first rows): 2.00x",
        "write, 2 copies  ops/s 1.50x (target >= 1.5x), p99 0.80x (target <= 1.00x): met",
        "write, 1 copy    ops/s 0.90x (target >= 1.0x), p99 1.49x (target <= 1.00x): MISSED",
        "memory           250.0 bytes/key (target <= 200): MISSED",
        "reproduce: geoul bench kv --clients 50",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn renders_a_skipped_or_failed_peer() {
    let skipped = report(Side::Skipped {
        reason: "--redis off".into(),
    });
    let text = render(&skipped);
    assert!(text.contains("redis: not measured: --redis off"), "{text}");
    assert!(
        text.contains("throughput: n/a (Redis not measured)"),
        "{text}"
    );
    assert!(!text.contains("geoul/redis  "), "{text}");
    let failed = report(Side::Failed {
        error: "boom".into(),
    });
    assert!(render(&failed).contains("redis: FAILED: boom"));
}

#[test]
fn json_has_status_tags_and_numbers() {
    let value = serde_json::to_value(report(redis_run())).expect("serializes");
    assert_eq!(value["redis"]["status"], "measured");
    assert_eq!(value["redis"]["phases"][0]["request"], "SET + WAIT 1");
    assert_eq!(value["geoul"]["phases"][0]["ops_per_s"], 15000.0);
    assert_eq!(value["comparisons"][0]["op"], "set_replicated");
    assert_eq!(value["memory_geoul"]["figures"][0]["bytes_per_key"], 250.0);
    let skipped =
        serde_json::to_value(report(Side::Skipped { reason: "x".into() })).expect("serializes");
    assert_eq!(skipped["redis"]["status"], "skipped");
    assert_eq!(skipped["comparisons"], serde_json::json!([]));
}

#[test]
fn tables_align_columns() {
    let rows = vec![
        vec!["a".to_string(), "bb".to_string(), "1".to_string()],
        vec![String::new(), "c".to_string(), "12345".to_string()],
    ];
    let text = table(&["op", "system", "n"], &rows);
    assert_eq!(
        text,
        "op  system      n\na   bb          1\n    c       12345\n"
    );
}
