//! The `kv` service on real processes: the CLI end to end, 10 000 keys through
//! `kill -9` and restart (Disk durability), and acknowledged writes surviving a
//! `kill -9` in the middle of a write burst.

mod support;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use geoul_node::kv::{KvRequest, KvResponse, KvValue};
use geoul_replication::ReadLevel;
use geoul_store::Ack;
use geoul_transport::ClusterSecret;
use support::{
    cluster_secret, free_port, kv_call, kv_client, run_geoul, CliOutput, Cluster, KvClient, WAIT,
};

/// Requests in flight at once from the test clients.
const WORKERS: usize = 64;
/// Deadline of each request; generous because the machine is shared.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one CLI invocation.
const CLI_LIMIT: Duration = Duration::from_secs(20);

/// Three-node clusters on two shared cores: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `geoul kv ARGS` against node-1 of `cluster`.
fn kv_args(cluster: &Cluster, args: &[&str]) -> CliOutput {
    let node = &cluster.nodes[0];
    let (addr, secret) = (node.cluster.to_string(), node.secret_file.to_string_lossy());
    let mut full = vec!["kv", "--cluster", &addr, "--cluster-secret-file", &secret];
    full.extend_from_slice(args);
    run_geoul(&full, &[], cluster.dir.path(), CLI_LIMIT)
}

/// `geoul kv LINE` (split on whitespace) against node-1 of `cluster`.
fn kv(cluster: &Cluster, line: &str) -> CliOutput {
    kv_args(cluster, &line.split_whitespace().collect::<Vec<_>>())
}

/// Stdout of a command that must succeed, without the final newline.
fn ok(out: CliOutput) -> String {
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.trim_end_matches('\n').to_string()
}

fn json(out: CliOutput) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Exit `code` with `needle` on the first line of stderr; runtime failures
/// (exit 1) are exactly one line (clap's usage messages add a hint line).
fn fails_with(out: CliOutput, code: i32, needle: &str) {
    assert_eq!(out.code, Some(code), "{out:?}");
    assert!(code == 2 || out.stderr.lines().count() == 1, "{out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(first.contains(needle), "{out:?}");
}

#[test]
fn cli_round_trip_on_three_nodes() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    cluster.wait_service("kv");
    let written = ok(kv(&cluster, "set greeting hello"));
    let quorum = ["OK (2/3 acks)", "OK (3/3 acks)"].contains(&written.as_str());
    assert!(quorum, "{written}");
    ok(kv(&cluster, "set brief short-lived --ttl 30s"));
    for (k, v) in [("user/2", "bob"), ("user/1", "alice"), ("user/3", "carol")] {
        ok(kv_args(&cluster, &["set", k, v]));
    }
    // Exact human and JSON output; a missing key is not an error.
    for (line, want) in [
        ("set g2 x --ack all", "OK (3/3 acks)"),
        ("get greeting", "hello"),
        ("get greeting --consistency one", "hello"),
        ("get nope", "(nil)"),
        ("get nope --json", "null"),
        ("ttl nope", "(nil)"),
        ("ttl greeting", "(no expiry)"),
        ("ttl greeting --json", r#"{"remaining_ms":null}"#),
        (
            "scan --prefix user/ --limit 2 --json",
            r#"{"entries":[{"key":"user/1","value":"alice"},{"key":"user/2","value":"bob"}],"partial":false}"#,
        ),
        (
            "scan --prefix user/",
            "KEY     VALUE\nuser/1  alice\nuser/2  bob\nuser/3  carol\n(3 keys)",
        ),
        ("del greeting --ack all", "OK (3/3 acks)"),
        ("get greeting", "(nil)"),
    ] {
        assert_eq!(ok(kv(&cluster, line)), want, "geoul kv {line}");
    }
    // Deleted keys neither appear in a scan nor use up its limit.
    for i in 1..=5 {
        ok(kv(&cluster, &format!("set p/{i} v{i}")));
    }
    for i in 1..=3 {
        ok(kv(&cluster, &format!("del p/{i}")));
    }
    assert_eq!(
        ok(kv(&cluster, "scan --prefix p/ --limit 2")),
        "KEY  VALUE\np/4  v4\np/5  v5\n(2 keys; limit reached, there may be more)"
    );
    let doc = json(kv(&cluster, "get user/1 --json"));
    assert_eq!(doc["value"], "alice", "{doc}");
    assert!(doc["expires_at_ms"].is_null(), "{doc}");
    assert!(doc["version"].as_u64().is_some_and(|v| v > 0), "{doc}");
    let doc = json(kv(&cluster, "set j 1 --json --ack one"));
    assert!(doc["version"].as_u64().is_some_and(|v| v > 0), "{doc}");
    assert!(doc["acked"].as_u64().is_some_and(|a| a >= 1), "{doc}");
    assert_eq!(doc["replicas"], 3, "{doc}");
    let left = ok(kv(&cluster, "ttl brief"));
    let secs: Option<f64> = left.strip_suffix('s').and_then(|s| s.parse().ok());
    assert!(secs.is_some_and(|s| s > 10.0 && s <= 30.0), "{left}");
    let ms = json(kv(&cluster, "ttl brief --json"))["remaining_ms"].as_u64();
    assert!(ms.is_some_and(|ms| ms > 10_000 && ms <= 30_000), "{ms:?}");
    let expiry = json(kv(&cluster, "get brief --json"))["expires_at_ms"].as_u64();
    assert!(expiry.is_some(), "{expiry:?}");

    // Errors: one line, exit 1 (runtime) or 2 (usage).
    let long_key = "k".repeat(2000);
    let out = kv_args(&cluster, &["set", &long_key, "v"]);
    fails_with(out, 1, "key is 2000 bytes (at most 1024)");
    let dead = format!("127.0.0.1:{}", free_port());
    let out = kv(&cluster, &format!("get k --cluster {dead}"));
    fails_with(out, 1, "cannot reach the cluster");
    let empty = tempfile::tempdir().expect("tempdir");
    let out = run_geoul(&["kv", "get", "k"], &[], empty.path(), CLI_LIMIT);
    fails_with(out, 2, "--cluster-secret-file");
    fails_with(
        kv(&cluster, "set k v --ttl 5parsecs"),
        2,
        "is not a duration",
    );
    fails_with(kv(&cluster, "get"), 2, "required");

    // The environment: GEOUL_CLUSTER (first address dead) and the secret itself.
    let secret_text = std::fs::read_to_string(&cluster.nodes[0].secret_file).expect("secret");
    let targets = format!("{dead},{}", cluster.nodes[1].cluster);
    let env = [
        ("GEOUL_CLUSTER", targets.as_str()),
        ("GEOUL_CLUSTER_SECRET", secret_text.trim()),
    ];
    let out = run_geoul(&["kv", "get", "user/2"], &env, empty.path(), CLI_LIMIT);
    assert_eq!(ok(out), "bob");

    // Through the library: an oversized value, a malformed request; the node is unaffected.
    runtime().block_on(async {
        let client = connect(cluster.nodes[0].cluster, &cluster_secret(&cluster)).await;
        let big = set_request(b"big".to_vec(), "x".repeat(1_100_000), None);
        let err = kv_call(&client, big, REQUEST_TIMEOUT).await;
        let err = err.expect_err("too big");
        assert!(err.contains("at most"), "{err}");
        let garbage = vec![0xff, 0xfe, 0x00, 0x13];
        let err = client.request(garbage.into(), REQUEST_TIMEOUT).await;
        let err = err.expect_err("garbage");
        assert!(err.to_string().contains("malformed"), "{err}");
    });
    assert_eq!(ok(kv(&cluster, "get user/1")), "alice");
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

fn value(i: usize) -> String {
    format!("value-{i}-{}", i.wrapping_mul(2_654_435_761) % 1_000_003)
}

type Conn = Arc<KvClient>;

async fn connect(addr: std::net::SocketAddr, secret: &ClusterSecret) -> Conn {
    Arc::new(kv_client(addr, secret).await.expect("connect"))
}

const TIMEOUT_MS: u64 = REQUEST_TIMEOUT.as_millis() as u64;

/// A write of `value` under `key`, no TTL.
fn set_request(key: Vec<u8>, value: String, ack: Option<Ack>) -> KvRequest {
    let timeout_ms = TIMEOUT_MS;
    KvRequest::Set {
        key,
        value,
        ttl_ms: None,
        ack,
        timeout_ms,
    }
}

/// Sets key `i` to `value(i)` at `ack`.
async fn set(client: &KvClient, i: usize, ack: Ack) -> Result<(), String> {
    let request = set_request(key(i), value(i), Some(ack));
    match kv_call(client, request, REQUEST_TIMEOUT).await? {
        KvResponse::Written { .. } => Ok(()),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// Reads key `i` at `level` and checks it holds `value(i)`.
async fn check(client: &KvClient, i: usize, level: ReadLevel) -> Result<(), String> {
    let (key, timeout_ms) = (key(i), TIMEOUT_MS);
    let request = KvRequest::Get {
        key,
        level,
        timeout_ms,
    };
    match kv_call(client, request, REQUEST_TIMEOUT).await? {
        KvResponse::Value(Some(KvValue { value: v, .. })) if v == value(i) => Ok(()),
        other => Err(format!("expected {:?}, got {other:?}", value(i))),
    }
}

/// Runs `op(client, key)` for every key, [`WORKERS`] at a time; the failures.
async fn for_each<F, Fut>(client: &Conn, keys: Vec<usize>, op: F) -> Vec<(usize, String)>
where
    F: Fn(Conn, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let (keys, next, op) = (Arc::new(keys), Arc::new(AtomicUsize::new(0)), Arc::new(op));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (keys, next, op, client) = (keys.clone(), next.clone(), op.clone(), client.clone());
        tasks.spawn(async move {
            let mut failures = Vec::new();
            while let Some(&i) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                if let Err(e) = op(client.clone(), i).await {
                    failures.push((i, e));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        failures.extend(done.expect("worker"));
    }
    failures.sort();
    failures
}

/// Keys that `client` does not read back correctly at `level`.
async fn wrong(client: &Conn, keys: &[usize], level: ReadLevel) -> Vec<(usize, String)> {
    let check_one = move |c: Conn, i| async move { check(&c, i, level).await };
    for_each(client, keys.to_vec(), check_one).await
}

/// Panics with the first few `failures` of `what`, if any.
fn assert_none(failures: &[(usize, String)], what: &str) {
    let (n, first) = (failures.len(), &failures[..failures.len().min(5)]);
    assert!(n == 0, "{what}: {n} keys failed, first: {first:?}");
}

/// Checks every key at `level` through `client`.
async fn check_all(client: &Conn, keys: &[usize], level: ReadLevel, who: &str) {
    let what = format!("{who} at {level:?}");
    assert_none(&wrong(client, keys, level).await, &what);
}

#[test]
fn ten_thousand_keys_survive_kill9_and_restart() {
    const KEYS: usize = 10_000;
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    cluster.wait_service("kv");
    let rt = runtime();
    let secret = cluster_secret(&cluster);
    let addrs: Vec<_> = cluster.nodes.iter().map(|n| n.cluster).collect();
    let all: Vec<usize> = (0..KEYS).collect();
    rt.block_on(async {
        let client = connect(addrs[0], &secret).await;
        let write = |c: Conn, i| async move { set(&c, i, Ack::Quorum).await };
        let failures = for_each(&client, all.clone(), write).await;
        assert_none(&failures, "quorum writes");

        // A quorum ack means two copies; wait until node-3 applied every write
        // too, so that what it holds on disk at the crash is complete.
        let on3 = connect(addrs[2], &secret).await;
        let deadline = Instant::now() + WAIT;
        let mut missing = all.clone();
        while !missing.is_empty() && Instant::now() < deadline {
            let failed = wrong(&on3, &missing, ReadLevel::One).await;
            missing = failed.into_iter().map(|(i, _)| i).collect();
        }
        assert!(
            missing.is_empty(),
            "node-3 never got {} keys",
            missing.len()
        );
    });

    cluster.node_mut("node-3").kill9();
    rt.block_on(async {
        for (who, addr) in [("node-1", addrs[0]), ("node-2", addrs[1])] {
            let client = connect(addr, &secret).await;
            check_all(&client, &all, ReadLevel::One, who).await;
            check_all(&client, &all, ReadLevel::Quorum, who).await;
        }
    });

    cluster.node_mut("node-3").start();
    cluster.wait_service("kv");
    rt.block_on(async {
        let client = connect(addrs[2], &secret).await;
        check_all(&client, &all, ReadLevel::One, "restarted node-3").await;
    });
}

/// What the burst writers share.
#[derive(Default)]
struct Burst {
    next: AtomicUsize,
    acked: Mutex<Vec<usize>>,
    failed: AtomicUsize,
    stop: AtomicBool,
}

impl Burst {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.acked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acked(&self) -> usize {
        self.list().len()
    }

    /// Writes fresh keys at Quorum until told to stop, recording acked ones.
    async fn write(self: Arc<Self>, client: Conn) {
        let deadline = tokio::time::Instant::now() + 4 * WAIT;
        while !self.stop.load(Ordering::Relaxed) && tokio::time::Instant::now() < deadline {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            match set(&client, i, Ack::Quorum).await {
                Ok(()) => self.list().push(i),
                Err(_) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn wait(&self, cluster: &Cluster, at_least: usize, what: &str) {
        let what = format!("{at_least} acked writes {what}");
        support::wait_for(&what, || self.acked() >= at_least, cluster);
    }
}

#[test]
fn acknowledged_writes_survive_kill9_mid_burst() {
    const WRITERS: usize = 16;
    let _serial = serial();
    let mut cluster = Cluster::start(3);
    cluster.wait_service("kv");
    let rt = runtime();
    let secret = cluster_secret(&cluster);
    let (a1, a2) = (cluster.nodes[0].cluster, cluster.nodes[1].cluster);
    let burst = Arc::new(Burst::default());
    let client = rt.block_on(connect(a1, &secret));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| rt.spawn(burst.clone().write(client.clone())))
        .collect();

    burst.wait(&cluster, 500, "before the crash");
    cluster.node_mut("node-2").kill9();
    let at_kill = burst.acked();
    burst.wait(&cluster, at_kill + 500, "while node-2 is down");
    cluster.wait_others_see("node-2", "dead"); // writes go to two replicas now
    burst.wait(&cluster, burst.acked() + 300, "with node-2 dead");
    cluster.node_mut("node-2").start();
    cluster.wait_service("kv");
    let at_restart = burst.acked();
    burst.wait(&cluster, at_restart + 300, "after node-2 is back");
    burst.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for w in writers {
            w.await.expect("writer");
        }
    });

    let acked = std::mem::take(&mut *burst.list());
    let failed = burst.failed.load(Ordering::Relaxed);
    let while_down = at_restart - at_kill;
    eprintln!(
        "burst: {} acked ({at_kill} before the crash, {while_down} while down), {failed} failed",
        acked.len()
    );
    rt.block_on(async {
        let c1 = connect(a1, &secret).await;
        check_all(&c1, &acked, ReadLevel::Quorum, "node-1").await;
        let c2 = connect(a2, &secret).await;
        check_all(&c2, &acked, ReadLevel::Quorum, "restarted node-2").await;
    });
}

/// `geoul query LINE…` against node-1 of `cluster` (the query is one argument).
fn query_cli(cluster: &Cluster, args: &[&str]) -> CliOutput {
    let node = &cluster.nodes[0];
    let (addr, secret) = (node.cluster.to_string(), node.secret_file.to_string_lossy());
    let mut full = vec![
        "query",
        "--cluster",
        &addr,
        "--cluster-secret-file",
        &secret,
    ];
    full.extend_from_slice(args);
    run_geoul(&full, &[], cluster.dir.path(), CLI_LIMIT)
}

fn keys_of(answer: &serde_json::Value) -> Vec<String> {
    answer["entries"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r["key"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn queries_from_the_cli_and_the_admin_http() {
    let _serial = serial();
    let cluster = Cluster::start(3);
    cluster.wait_service("kv");
    let regions = ["eu", "na", "eu", "asia", "eu", "na"];
    for (i, region) in regions.iter().enumerate() {
        ok(kv_args(&cluster, &["set", &format!("inst/{i}"), region]));
    }
    // JSON: exactly the matching keys, in key order (no order keys), complete.
    let answer = json(query_cli(&cluster, &["--json", r#"kv where value = "eu""#]));
    assert_eq!(keys_of(&answer), ["inst/0", "inst/2", "inst/4"], "{answer}");
    assert_eq!(answer["partial"], false, "{answer}");
    assert_eq!(answer["entries"][0]["fields"]["value"], "eu", "{answer}");
    // Paging: two rows per page, every match once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let mut args = vec![
            "--json",
            r#"kv where value in ("eu", "na") order by value desc limit 2"#,
        ];
        let cursor;
        if let Some(a) = &after {
            cursor = a.clone();
            args.extend(["--after", &cursor]);
        }
        let page = json(query_cli(&cluster, &args));
        seen.extend(keys_of(&page));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["inst/1", "inst/5", "inst/0", "inst/2", "inst/4"]);
    // People get a table with the fields as columns.
    let table = ok(query_cli(&cluster, &[r#"kv where value = "asia""#]));
    assert_eq!(table, "KEY     VALUE\ninst/3  asia\n(1 row)");
    // A query that does not parse: exit 2, the position and a caret.
    let out = query_cli(&cluster, &[r#"kv where value = "eu" and"#]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("line 1, column 26"), "{out:?}");
    assert!(out.stderr.contains('^'), "{out:?}");
    // A table nobody declares: a runtime failure on one line.
    fails_with(query_cli(&cluster, &["nope where x = 1"]), 1, "table nope");
    // Any service is callable by name with JSON.
    let node = &cluster.nodes[0];
    let (addr, secret) = (node.cluster.to_string(), node.secret_file.to_string_lossy());
    let call = |args: &[&str]| {
        let mut full = vec!["call", "--cluster", &addr, "--cluster-secret-file", &secret];
        full.extend_from_slice(args);
        run_geoul(&full, &[], cluster.dir.path(), CLI_LIMIT)
    };
    let get =
        r#"{"Get": {"key": [105, 110, 115, 116, 47, 51], "level": "one", "timeout_ms": 1000}}"#;
    let reply = json(call(&["kv", "--key", "inst/3", get]));
    assert_eq!(reply["Value"]["value"], "asia", "{reply}");
    fails_with(call(&["nope", "{}"]), 1, "unknown service");
    fails_with(
        call(&["kv", r#"{"Nope": 1}"#]),
        1,
        "not a request of service kv",
    );
    let out = call(&["kv", "{not json"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    // The admin HTTP answers the same query.
    let url = format!("{}/query", cluster.nodes[1].admin_url());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let body: serde_json::Value = agent
        .post(&url)
        .send_string(r#"kv where value = "eu""#)
        .expect("POST /query")
        .into_json()
        .expect("JSON");
    assert_eq!(keys_of(&body), ["inst/0", "inst/2", "inst/4"], "{body}");
    match agent.post(&url).send_string("kv where value =") {
        Err(ureq::Error::Status(400, response)) => {
            let err: serde_json::Value = response.into_json().expect("JSON error");
            assert_eq!(err["line"], 1, "{err}");
            assert_eq!(err["column"], 17, "{err}");
        }
        other => panic!("a bad query answered {other:?}"),
    }
}
