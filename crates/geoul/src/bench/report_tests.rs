use std::time::Duration;

use super::*;
use crate::bench::stats::summarize;
use crate::cli::RedisMode;

fn args() -> DetectArgs {
    DetectArgs {
        nodes: 5,
        kills: 3,
        hog_seconds: 60,
        base_port: None,
        redis: RedisMode::On,
        json: false,
        keep_logs: false,
    }
}

fn system(name: &str, millis: [u64; 3], hog: Option<Hog>) -> SystemResult {
    SystemResult {
        system: name.to_string(),
        version: "1.2.3".to_string(),
        settings: format!("{name} settings"),
        detection: summarize(&millis.map(Duration::from_millis)).expect("samples"),
        hog,
    }
}

fn geoul_hog() -> Hog {
    Hog {
        seconds: 60,
        threads: 2,
        polls: 1200,
        poll_errors: 1,
        false_suspicions: 2,
        false_deaths: 0,
        suspected: vec!["node-2".to_string()],
        declared_dead: vec![],
        refutations: Some(2),
        local_health_end: Some(BTreeMap::from([("node-1".to_string(), 0)])),
        max_local_health_seen: Some(3),
    }
}

fn report(redis: PeerOutcome) -> Report {
    let geoul = system("geoul", [800, 900, 1000], Some(geoul_hog()));
    let mut r = Report::new(&args(), geoul, redis);
    r.command = command("target/release/geoul", &args());
    r
}

#[test]
fn renders_both_systems_side_by_side_with_the_ratio() {
    let redis = system("redis-cluster", [1000, 1500, 2000], None);
    let text = render(&report(PeerOutcome::Measured(Box::new(redis))));
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("system"))
        .expect("header");
    assert!(lines[header].ends_with("hog deaths"));
    let geoul: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(
        geoul,
        ["geoul", "1.2.3", "3", "800.0", "900.0", "1000.0", "1000.0", "2", "0"]
    );
    let redis: Vec<&str> = lines[header + 2].split_whitespace().collect();
    assert_eq!(
        redis[..7],
        [
            "redis-cluster",
            "1.2.3",
            "3",
            "1000.0",
            "1500.0",
            "2000.0",
            "2000.0"
        ]
    );
    assert_eq!(redis[7..], ["-", "-"]);
    assert!(text.contains("p95 ratio geoul / redis: 0.50"));
    assert!(text.contains("suspected: node-2; declared dead: -; refutations: 2"));
    assert!(text.contains("local health at end: node-1 0 (max seen 3)"));
    assert!(text.ends_with(
        "reproduce: target/release/geoul bench detect --nodes 5 --kills 3 --hog-seconds 60 --redis on\n"
    ));
}

#[test]
fn columns_line_up() {
    let redis = system("redis-cluster", [1000, 1500, 2000], None);
    let text = render(&report(PeerOutcome::Measured(Box::new(redis))));
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("system"))
        .take(3)
        .collect();
    let end_of_p95 = rows[0].find("p95 ms").expect("column") + "p95 ms".len();
    assert_eq!(&rows[1][end_of_p95 - 6..end_of_p95], "1000.0");
    assert_eq!(&rows[2][end_of_p95 - 6..end_of_p95], "2000.0");
}

#[test]
fn a_skipped_peer_is_said_not_hidden() {
    let skipped = PeerOutcome::Skipped {
        reason: "redis-server and redis-cli not found on PATH".to_string(),
    };
    let r = report(skipped);
    assert_eq!(r.p95_ratio, None);
    let text = render(&r);
    assert!(text.contains("redis-cluster: not measured: redis-server and redis-cli not found"));
    assert!(text.contains("p95 ratio geoul / redis: n/a"));
}

#[test]
fn a_failed_peer_is_reported() {
    let text = render(&report(PeerOutcome::Failed {
        error: "boom".to_string(),
    }));
    assert!(text.contains("redis-cluster: FAILED: boom"));
}

#[test]
fn json_carries_the_same_numbers() {
    let redis = system("redis-cluster", [1000, 1500, 2000], None);
    let json = serde_json::to_value(report(PeerOutcome::Measured(Box::new(redis)))).expect("json");
    assert_eq!(json["geoul"]["detection"]["p95_ms"], 1000.0);
    assert_eq!(json["redis"]["status"], "measured");
    assert_eq!(json["redis"]["detection"]["median_ms"], 1500.0);
    assert_eq!(json["p95_ratio"], 0.5);
    assert_eq!(json["geoul"]["hog"]["false_deaths"], 0);
    let skipped = report(PeerOutcome::Skipped { reason: "x".into() });
    let json = serde_json::to_value(skipped).expect("json");
    assert_eq!(json["redis"]["status"], "skipped");
    assert_eq!(json["redis"]["reason"], "x");
}

#[test]
fn command_names_the_base_port_only_when_given() {
    let mut a = args();
    assert!(!command("geoul", &a).contains("--base-port"));
    a.base_port = Some(7001);
    assert!(command("geoul", &a).ends_with("--redis on --base-port 7001"));
}
