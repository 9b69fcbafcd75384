//! The auth service on real processes (issue 7): sessions issued on one node
//! validate on every other node, also after the issuing node is `kill -9`ed;
//! a node restarted with an empty data dir validates them all once synced;
//! a revocation on one node reaches the others; the CLI's answers and
//! errors (malformed tokens, oversized or lookalike usernames).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use geoul_auth::{AuthRequest, AuthResponse, Denied, Tokens, AUTH};
use geoul_client::wire::{self, ApiRequest, ApiResponse, Call};
use geoul_transport::ClusterSecret;
use support::{cluster_secret, kv_client, wait_for, Cluster, KvClient, GEOUL, WAIT};

const PLAYERS: usize = 1000;
/// Requests in flight at once from the test.
const CONCURRENCY: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Node config: `auth` hosted, argon2id at its floor (the test checks
/// behaviour, not hashing cost) and no per-source limit (every login comes
/// from 127.0.0.1).
const CONFIG: &str = r#"
services = ["kv", "auth"]
[auth]
hash_parallelism = 2
[auth.argon2]
memory_kib = 8192
iterations = 1
parallelism = 1
[auth.source_limit]
burst = 1000000
per_second = 1000000.0
"#;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The tests here run one at a time: each loads its own 3-node cluster
/// hard, and two at once on 2 cores starve each other's failure detectors.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(dir: &Path) -> Cluster {
    let config = dir.join("auth-node.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let path = config.to_string_lossy().to_string();
    Cluster::start_with(3, &["--config", &path])
}

/// One auth request served by the node at the other end of `c` (no routing
/// key: the node serves it itself).
async fn call(c: &KvClient, request: &AuthRequest) -> Result<AuthResponse, String> {
    let payload = postcard::to_stdvec(request).map_err(|e| e.to_string())?;
    let frame = wire::encode_request(&ApiRequest::Call(Call {
        service: AUTH.into(),
        key: None,
        payload,
        timeout_ms: u32::try_from(TIMEOUT.as_millis()).unwrap_or(u32::MAX),
        idempotency_key: None,
        session: Default::default(),
        json: false,
    }))
    .map_err(|e| e.to_string())?;
    let bytes = c
        .request(frame, TIMEOUT + Duration::from_secs(1))
        .await
        .map_err(|e| e.to_string())?;
    match wire::decode_response(&bytes).map_err(|e| e.to_string())? {
        ApiResponse::Reply(r) => postcard::from_bytes(&r.payload).map_err(|e| e.to_string()),
        ApiResponse::Failed(f) => Err(f.to_string()),
        _ => Err("unexpected answer".into()),
    }
}

/// `call`, retried while the cluster is not ready (e.g. right after start).
async fn call_retrying(c: &KvClient, request: &AuthRequest) -> AuthResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        match call(c, request).await {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "{request:?}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn player(i: usize) -> String {
    format!("player-{i:04}")
}

fn password(i: usize) -> String {
    format!("pass-{i}-correct-horse")
}

async fn connect(addr: SocketAddr, secret: &ClusterSecret) -> Arc<KvClient> {
    Arc::new(kv_client(addr, secret).await.expect("connect"))
}

/// Registers and logs in every player through `c`; returns their tokens.
async fn log_in_all(c: Arc<KvClient>) -> Vec<Tokens> {
    stream::iter(0..PLAYERS)
        .map(|i| {
            let c = c.clone();
            async move {
                let r = AuthRequest::Register {
                    username: player(i),
                    password: password(i),
                };
                match call_retrying(&c, &r).await {
                    AuthResponse::Registered { username } => assert_eq!(username, player(i)),
                    other => panic!("register {i}: {other:?}"),
                }
                let r = AuthRequest::Login {
                    username: player(i).to_uppercase(),
                    password: password(i),
                    source: None,
                };
                match call_retrying(&c, &r).await {
                    AuthResponse::Tokens(t) => t,
                    other => panic!("login {i}: {other:?}"),
                }
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// How many of `tokens` validate on the node behind `c` (as their player).
async fn valid_on(c: Arc<KvClient>, tokens: &[Tokens]) -> usize {
    stream::iter(tokens.iter().cloned())
        .map(|t| {
            let c = c.clone();
            async move {
                let r = AuthRequest::Validate { token: t.token };
                match call_retrying(&c, &r).await {
                    AuthResponse::Valid(s) => {
                        assert_eq!(s.username, t.username);
                        1
                    }
                    AuthResponse::Denied(Denied::InvalidToken) => 0,
                    other => panic!("validate: {other:?}"),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .fold(0, |a, b| async move { a + b })
        .await
}

#[test]
fn sessions_validate_everywhere_through_kill9_and_a_wiped_restart_and_revocation_reaches_all() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start(dir.path());
    let secret = cluster_secret(&cluster);
    let rt = runtime();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.cluster).collect();

    // 1. 1000 players log in through node A.
    let tokens = rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        log_in_all(a).await
    });
    assert_eq!(tokens.len(), PLAYERS);

    // A session validates on the other nodes right after its login
    // returned (a majority holds it; a node it has not reached yet asks).
    let fresh = rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        let b = connect(addrs[1], &secret).await;
        let c = connect(addrs[2], &secret).await;
        let mut valid = 0;
        for i in 0..50 {
            let r = AuthRequest::Login {
                username: player(i),
                password: password(i),
                source: None,
            };
            let AuthResponse::Tokens(t) = call_retrying(&a, &r).await else {
                panic!("login {i}")
            };
            valid += valid_on(b.clone(), std::slice::from_ref(&t)).await;
            valid += valid_on(c.clone(), std::slice::from_ref(&t)).await;
        }
        valid
    });
    assert_eq!(fresh, 100, "fresh sessions validate at once on B and C");

    // Tickets: each redeemed concurrently on B and C succeeds exactly once.
    let redeemed = rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        let b = connect(addrs[1], &secret).await;
        let c = connect(addrs[2], &secret).await;
        let mut wins = Vec::new();
        for t in tokens.iter().take(20) {
            let issue = AuthRequest::IssueTicket {
                token: t.token.clone(),
                target_server: "game-7".into(),
            };
            let AuthResponse::Ticket { ticket, .. } = call_retrying(&a, &issue).await else {
                panic!("issue ticket")
            };
            let redeem = AuthRequest::RedeemTicket {
                ticket,
                server: "game-7".into(),
            };
            let (rb, rc) = tokio::join!(call(&b, &redeem), call(&c, &redeem));
            let won = [rb, rc]
                .into_iter()
                .filter(|r| matches!(r, Ok(AuthResponse::Redeemed { .. })))
                .count();
            let again = call_retrying(&a, &redeem).await;
            assert_eq!(again, AuthResponse::Denied(Denied::InvalidToken));
            wins.push(won);
        }
        wins
    });
    assert_eq!(redeemed, vec![1; 20], "each ticket redeemed exactly once");
    // Two registrations of one new name racing on two nodes: one wins.
    let outcomes = rt.block_on(async {
        let b = connect(addrs[1], &secret).await;
        let c = connect(addrs[2], &secret).await;
        let mut won = Vec::new();
        for i in 0..10 {
            let r = AuthRequest::Register {
                username: format!("racer-{i}"),
                password: password(i),
            };
            let (rb, rc) = tokio::join!(call(&b, &r), call(&c, &r));
            won.push(
                [rb, rc]
                    .into_iter()
                    .filter(|r| matches!(r, Ok(AuthResponse::Registered { .. })))
                    .count(),
            );
        }
        won
    });
    assert_eq!(outcomes, vec![1; 10], "one registration per name");

    // 2. kill -9 A: every session validates on B and on C.
    cluster.nodes[0].kill9();
    for (name, addr) in [("B", addrs[1]), ("C", addrs[2])] {
        let valid = rt.block_on(async {
            let c = connect(addr, &secret).await;
            valid_on(c, &tokens).await
        });
        assert_eq!(valid, PLAYERS, "sessions valid on {name} after A died");
    }

    // 3. A restarts with an empty data dir: once synced, it validates all.
    let a_dir = cluster.nodes[0].dir.join(&cluster.nodes[0].name);
    std::fs::remove_dir_all(&a_dir).expect("wipe A");
    cluster.nodes[0].start();
    let node_a = &cluster.nodes[0];
    wait_for(
        "A synced after a wiped restart",
        || node_a.status().is_some_and(|s| s.synced()),
        &cluster,
    );
    let valid = rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        valid_on(a, &tokens).await
    });
    assert_eq!(valid, PLAYERS, "sessions valid on the wiped, resynced A");

    // 4. Revoke a tenth of them on B: they fail on A and C (within the
    //    propagation bound), the rest stay valid.
    let (revoked, kept) = tokens.split_at(PLAYERS / 10);
    rt.block_on(async {
        let b = connect(addrs[1], &secret).await;
        for t in revoked {
            let r = AuthRequest::Revoke {
                token: t.token.clone(),
            };
            assert_eq!(
                call_retrying(&b, &r).await,
                AuthResponse::Revoked { sessions: 1 }
            );
        }
    });
    for (name, addr) in [("A", addrs[0]), ("C", addrs[2])] {
        let deadline = Instant::now() + WAIT;
        loop {
            let still = rt.block_on(async {
                let c = connect(addr, &secret).await;
                valid_on(c, revoked).await
            });
            if still == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{still} revoked sessions still validate on {name}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let valid = rt.block_on(async {
            let c = connect(addr, &secret).await;
            valid_on(c, kept).await
        });
        assert_eq!(valid, kept.len(), "unrevoked sessions on {name}");
    }
}

fn geoul_auth(cluster: &Cluster, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = Command::new(GEOUL);
    cmd.arg("auth")
        .args(["--cluster", &cluster.nodes[1].cluster.to_string()])
        .arg("--cluster-secret-file")
        .arg(&cluster.nodes[0].secret_file)
        .args(args)
        .env_remove("GEOUL_CLUSTER")
        .env_remove("GEOUL_PASSWORD")
        .stdin(Stdio::null());
    if let Some(p) = password {
        cmd.env("GEOUL_PASSWORD", p);
    }
    cmd.output().expect("run geoul auth")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[track_caller]
fn json(o: &Output) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).expect("JSON output")
}

/// Runs `args` until it succeeds (the cluster may still be settling).
fn until_ok(cluster: &Cluster, args: &[&str], password: Option<&str>) -> Output {
    let deadline = Instant::now() + WAIT;
    loop {
        let o = geoul_auth(cluster, args, password);
        if o.status.success() || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[track_caller]
fn fails_with(o: &Output, code: i32, message: &str) {
    assert_eq!(o.status.code(), Some(code), "{}{}", stderr(o), stdout(o));
    assert!(
        stderr(o).contains(message),
        "{:?} lacks {message:?}",
        stderr(o)
    );
    assert_eq!(stderr(o).lines().count(), 1, "one line: {}", stderr(o));
}

#[test]
fn the_cli_logs_in_refreshes_revokes_and_refuses_bad_input_clearly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start(dir.path());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cli_scenario(&cluster)));
    if let Err(panic) = outcome {
        // What the nodes said about it, before their directory is removed.
        for n in &cluster.nodes {
            let log =
                std::fs::read_to_string(n.dir.join(format!("{}.log", n.name))).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("panick") || l.contains("ERROR") || l.contains("consensus"))
            {
                eprintln!("{}: {line}", n.name);
            }
        }
        std::panic::resume_unwind(panic);
    }
}

fn cli_scenario(cluster: &Cluster) {
    let pw = Some("correct horse battery");

    let reg = until_ok(cluster, &["--json", "register", "Ana"], pw);
    assert_eq!(json(&reg)["username"], "ana");
    fails_with(
        &geoul_auth(cluster, &["register", "ana"], pw),
        1,
        "username \"ana\" is taken",
    );

    // login --json carries the API's names.
    let login = json(&geoul_auth(cluster, &["--json", "login", "ana"], pw));
    let token = login["token"].as_str().expect("token").to_string();
    let refresh = login["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert!(
        token.starts_with("gs_") && refresh.starts_with("gr_"),
        "{login}"
    );
    assert!(login["expires_at"].as_u64().is_some(), "{login}");

    let v = json(&geoul_auth(cluster, &["--json", "validate", &token], None));
    assert_eq!(v["username"], "ana");

    // Wrong password and unknown user: the same answer.
    let wrong = geoul_auth(cluster, &["login", "ana"], Some("not the password"));
    let unknown = geoul_auth(cluster, &["login", "nobody-here"], Some("not the password"));
    fails_with(&wrong, 1, "invalid username or password");
    assert_eq!(stderr(&wrong), stderr(&unknown));

    // Refresh rotates: the old session and refresh token stop working; using
    // the old refresh token again revokes the whole family.
    let next = json(&geoul_auth(cluster, &["--json", "refresh", &refresh], None));
    let token2 = next["token"].as_str().expect("token").to_string();
    assert_eq!(
        json(&geoul_auth(cluster, &["--json", "validate", &token2], None))["username"],
        "ana"
    );
    fails_with(
        &geoul_auth(cluster, &["validate", &token], None),
        1,
        "invalid or expired token",
    );
    fails_with(
        &geoul_auth(cluster, &["refresh", &refresh], None),
        1,
        "refresh token reused",
    );
    fails_with(
        &geoul_auth(cluster, &["validate", &token2], None),
        1,
        "invalid or expired token",
    );

    // Sessions listing and revoke-all.
    let s1 = json(&geoul_auth(cluster, &["--json", "login", "ana"], pw));
    let _s2 = json(&geoul_auth(cluster, &["--json", "login", "ana"], pw));
    let list = json(&geoul_auth(cluster, &["--json", "sessions", "ana"], None));
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list["partial"], false);
    let all = json(&geoul_auth(cluster, &["--json", "revoke-all", "ana"], None));
    assert_eq!(all["sessions"], 2, "{all}");
    let t1 = s1["token"].as_str().expect("token");
    fails_with(
        &geoul_auth(cluster, &["validate", t1], None),
        1,
        "invalid or expired token",
    );
    // A login right after revoke-all validates.
    let s3 = json(&geoul_auth(cluster, &["--json", "login", "ana"], pw));
    let t3 = s3["token"].as_str().expect("token");
    assert_eq!(
        json(&geoul_auth(cluster, &["--json", "validate", t3], None))["username"],
        "ana"
    );

    // Tickets through the CLI: redeemed once, by the right server only.
    let tk = json(&geoul_auth(
        cluster,
        &["--json", "ticket", t3, "--server", "eu-7"],
        None,
    ));
    let ticket = tk["ticket"].as_str().expect("ticket").to_string();
    assert!(ticket.starts_with("gt_"), "{tk}");
    let r = json(&geoul_auth(
        cluster,
        &["--json", "redeem", &ticket, "--server", "eu-7"],
        None,
    ));
    assert_eq!(r["username"], "ana", "{r}");
    fails_with(
        &geoul_auth(cluster, &["redeem", &ticket, "--server", "eu-7"], None),
        1,
        "invalid or expired token",
    );
    let tk = json(&geoul_auth(
        cluster,
        &["--json", "ticket", t3, "--server", "eu-7"],
        None,
    ));
    let ticket = tk["ticket"].as_str().expect("ticket").to_string();
    fails_with(
        &geoul_auth(cluster, &["redeem", &ticket, "--server", "us-1"], None),
        1,
        "invalid or expired token",
    );

    // Disable: sessions end, logins with the right password say disabled.
    let _ = json(&geoul_auth(cluster, &["--json", "disable", "ana"], None));
    fails_with(
        &geoul_auth(cluster, &["validate", t3], None),
        1,
        "invalid or expired token",
    );
    fails_with(
        &geoul_auth(cluster, &["login", "ana"], pw),
        1,
        "account disabled",
    );

    // Bad input: clear one-line errors, exit 1, and the node keeps serving.
    fails_with(
        &geoul_auth(cluster, &["validate", "gs_short"], None),
        1,
        "malformed session token: expected 46 characters, got 8",
    );
    fails_with(
        &geoul_auth(cluster, &["validate", &refresh], None),
        1,
        "must start with \"gs_\"",
    );
    let long = "a".repeat(100);
    fails_with(
        &geoul_auth(cluster, &["register", &long], pw),
        1,
        "username must be 3-32 characters, got 100",
    );
    fails_with(
        &geoul_auth(cluster, &["register", "\u{430}na"], pw),
        1,
        "username may contain only",
    );
    fails_with(
        &geoul_auth(cluster, &["register", "bob"], Some("short")),
        1,
        "password must be at least 8 characters",
    );
    fails_with(
        &geoul_auth(cluster, &["register", "bob"], Some(&"p".repeat(300))),
        1,
        "password must be at most 256 characters",
    );
    fails_with(
        &geoul_auth(cluster, &["register", "bob"], None),
        2,
        "GEOUL_PASSWORD",
    );
    let reg = geoul_auth(cluster, &["register", "bob"], pw);
    assert_eq!(stdout(&reg), "registered bob", "{}", stderr(&reg));
}
