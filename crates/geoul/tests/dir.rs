//! The instance directory on real processes (issue 8): 5 000 instances
//! registered through node A are found, completely and in order, on B and C
//! after A is `kill -9`ed; an instance whose renewals stop is never returned
//! past its expiry on any node; a wiped A never answers from a partial copy
//! and once synced answers what B answers; `Factor(2)` scatter-gather stays
//! complete through a kill; the CLI's answers and its errors on bad input.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use geoul_client::wire::{self, ApiRequest, ApiResponse, Call};
use geoul_dir::{DirRequest, DirResponse, InstanceSpec, InstanceState, SearchPage, DIR};
use geoul_transport::ClusterSecret;
use support::{cluster_secret, kv_client, run_geoul, wait_for, Cluster, KvClient, WAIT};

const INSTANCES: usize = 5000;
/// Requests in flight at once from the test.
const CONCURRENCY: usize = 16;
const TIMEOUT: Duration = Duration::from_secs(10);
/// Long enough to outlive the test: only the short-lived instance expires.
const TTL_MS: u64 = 600_000;

fn config(copies: Option<usize>) -> String {
    let copies = copies.map_or(String::new(), |n| format!("copies = {n}\n"));
    format!("services = [\"kv\", \"instance-directory\"]\n[dir]\n{copies}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One cluster at a time: two on 2 cores starve each other's detectors.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start(dir: &Path, copies: Option<usize>) -> Cluster {
    let path = dir.join("dir-node.toml");
    std::fs::write(&path, config(copies)).expect("config");
    let path = path.to_string_lossy().to_string();
    let cluster = Cluster::start_with(3, &["--config", &path]);
    cluster.wait_service(DIR);
    cluster
}

/// One directory request served by the node at the other end of `c` (no
/// routing key: the node serves it itself).
async fn call(c: &KvClient, request: &DirRequest) -> Result<DirResponse, String> {
    let payload = postcard::to_stdvec(request).map_err(|e| e.to_string())?;
    let frame = wire::encode_request(&ApiRequest::Call(Call {
        service: DIR.into(),
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

/// `call`, retried while the node cannot serve it yet.
async fn call_retrying(c: &KvClient, request: &DirRequest) -> DirResponse {
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

async fn connect(addr: SocketAddr, secret: &ClusterSecret) -> Arc<KvClient> {
    Arc::new(kv_client(addr, secret).await.expect("connect"))
}

fn id(i: usize) -> String {
    format!("inst-{i:05}")
}

/// Instance `i`: modes, regions, states, spectators and ratings spread so
/// every query below has many matches and many ties.
fn spec(i: usize) -> InstanceSpec {
    InstanceSpec {
        addr: format!("10.0.{}.{}:7777", i / 250, i % 250),
        mode: ["ranked", "casual"][i % 2].into(),
        region: ["eu", "us", "kr"][i % 3].into(),
        map: Some(format!("map-{}", i % 7)),
        players: (i % 10) as u32,
        max_players: 10,
        spectators: (i % 97) as u32,
        state: [
            InstanceState::Lobby,
            InstanceState::Playing,
            InstanceState::Ending,
        ][i % 5 % 3],
        rating: Some(((i * 37) % 400) as f64 * 5.0),
        started_at: Some(1_700_000_000_000 + i as u64),
        tags: BTreeMap::new(),
    }
}

/// The queries compared across nodes, with what they must return computed
/// from the registered instances (an oracle of live entries): filter, then
/// the query's order, the entry key (the id) breaking ties.
struct Expect {
    query: &'static str,
    ids: Vec<String>,
}

fn rating(i: usize) -> f64 {
    spec(i).rating.unwrap_or(0.0)
}

fn expectations() -> Vec<Expect> {
    let all: Vec<usize> = (0..INSTANCES).collect();
    let by_rating_desc = |mut v: Vec<usize>| {
        v.sort_by(|a, b| rating(*b).total_cmp(&rating(*a)).then(id(*a).cmp(&id(*b))));
        v
    };
    let spectator = by_rating_desc(
        all.iter()
            .copied()
            .filter(|&i| {
                let s = spec(i);
                s.mode == "ranked"
                    && s.region == "eu"
                    && s.state == InstanceState::Playing
                    && s.spectators < 50
            })
            .collect(),
    );
    let mut range: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| (10..20).contains(&spec(i).spectators))
        .collect();
    range.sort_by(|a, b| {
        spec(*a)
            .spectators
            .cmp(&spec(*b).spectators)
            .then(rating(*b).total_cmp(&rating(*a)))
            .then(id(*a).cmp(&id(*b)))
    });
    let take = |v: Vec<usize>, n: usize| v.into_iter().take(n).map(id).collect();
    vec![
        Expect {
            query: "mode = \"ranked\" and region = \"eu\" and state = \"playing\" \
                    and spectators < 50 order by rating desc limit 20",
            ids: take(spectator, 20),
        },
        Expect {
            query: "spectators >= 10 and spectators < 20 \
                    order by spectators asc, rating desc limit 100",
            ids: take(range, 100),
        },
    ]
}

/// Every page of `query` from the node behind `c`, following cursors.
async fn all_pages(c: &KvClient, query: &str) -> (Vec<String>, bool) {
    let mut ids = Vec::new();
    let mut after = None;
    let mut partial = false;
    loop {
        let r = DirRequest::Search {
            query: query.into(),
            after: after.take(),
        };
        let DirResponse::Found(SearchPage {
            entries,
            partial: p,
            next,
            ..
        }) = call_retrying(c, &r).await
        else {
            panic!("search {query}")
        };
        partial |= p;
        ids.extend(entries.into_iter().map(|e| e.id));
        match next {
            Some(n) => after = Some(n),
            None => return (ids, partial),
        }
    }
}

async fn search_ids(c: &KvClient, query: &str) -> (Vec<String>, bool) {
    let r = DirRequest::Search {
        query: query.into(),
        after: None,
    };
    match call_retrying(c, &r).await {
        DirResponse::Found(page) => (
            page.entries.into_iter().map(|e| e.id).collect(),
            page.partial,
        ),
        other => panic!("search {query}: {other:?}"),
    }
}

/// Checks every expectation (and a full paged listing of one region) on
/// the node behind `c`.
async fn check_complete(c: &KvClient, node: &str) {
    for e in expectations() {
        let (ids, partial) = search_ids(c, e.query).await;
        assert!(!partial, "{node}: {} partial", e.query);
        assert_eq!(ids, e.ids, "{node}: {}", e.query);
    }
    let (ids, partial) = all_pages(c, "region = \"kr\" order by rating desc limit 250").await;
    assert!(!partial, "{node}: paging partial");
    let mut want: Vec<usize> = (0..INSTANCES).filter(|i| i % 3 == 2).collect();
    want.sort_by(|a, b| rating(*b).total_cmp(&rating(*a)).then(id(*a).cmp(&id(*b))));
    let want: Vec<String> = want.into_iter().map(id).collect();
    assert_eq!(ids, want, "{node}: every kr instance, paged, in order");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn register_all(a: Arc<KvClient>) {
    stream::iter(0..INSTANCES)
        .map(|i| {
            let a = a.clone();
            async move {
                let r = DirRequest::Register {
                    id: id(i),
                    instance: spec(i),
                    ttl_ms: Some(TTL_MS),
                };
                match call_retrying(&a, &r).await {
                    DirResponse::Live { .. } => {}
                    other => panic!("register {i}: {other:?}"),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

#[test]
fn searches_stay_complete_through_kill9_expiry_and_a_wiped_restart() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start(dir.path(), None);
    let secret = cluster_secret(&cluster);
    let rt = runtime();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.cluster).collect();

    // 1. 5 000 instances through A; every node answers the same.
    rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        register_all(a).await;
    });

    // An instance whose game server stops renewing: gone from every node's
    // search once its expiry (minus the margin) passed — checked at once,
    // on the same clock the nodes use.
    let (short_expiry, renewed_expiry) = rt.block_on(async {
        let b = connect(addrs[1], &secret).await;
        let mut short = spec(0);
        short.mode = "short".into();
        let r = DirRequest::Register {
            id: "short-lived".into(),
            instance: short.clone(),
            ttl_ms: Some(4000),
        };
        let DirResponse::Live { expires_at, .. } = call_retrying(&b, &r).await else {
            panic!("register short")
        };
        let r = DirRequest::Register {
            id: "renewed".into(),
            instance: short,
            ttl_ms: Some(4000),
        };
        let DirResponse::Live {
            expires_at: renewed,
            ..
        } = call_retrying(&b, &r).await
        else {
            panic!("register renewed")
        };
        (expires_at, renewed)
    });
    for (node, addr) in [("A", addrs[0]), ("B", addrs[1]), ("C", addrs[2])] {
        rt.block_on(async {
            let c = connect(addr, &secret).await;
            check_complete(&c, node).await;
        });
    }
    // Renew one of the two every second through C; the other is left alone.
    let deadline = short_expiry + 500;
    let mut last_renewal = renewed_expiry;
    rt.block_on(async {
        let c = connect(addrs[2], &secret).await;
        while now_ms() < deadline {
            let r = DirRequest::Renew {
                id: "renewed".into(),
            };
            match call_retrying(&c, &r).await {
                DirResponse::Live { expires_at, .. } => last_renewal = expires_at,
                other => panic!("renew: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    });
    assert!(last_renewal > short_expiry + 1000, "renewals extended it");
    for addr in &addrs {
        let (ids, partial) = rt.block_on(async {
            let c = connect(*addr, &secret).await;
            search_ids(&c, "mode = \"short\"").await
        });
        assert!(!partial);
        assert_eq!(ids, vec!["renewed".to_string()], "only the renewed one");
    }

    // 2. kill -9 A: B and C answer the same, complete, in order.
    cluster.nodes[0].kill9();
    for (node, addr) in [("B", addrs[1]), ("C", addrs[2])] {
        rt.block_on(async {
            let c = connect(addr, &secret).await;
            check_complete(&c, node).await;
        });
    }

    // 3. A restarts with an empty data dir: while it syncs, every answer it
    //    gives is complete (it asks B and C for slots it has not synced) or
    //    says partial — never a silently short list. Once synced, it answers
    //    what B answers.
    let a_dir = cluster.nodes[0].dir.join(&cluster.nodes[0].name);
    std::fs::remove_dir_all(&a_dir).expect("wipe A");
    cluster.nodes[0].start();
    let expect = expectations();
    let mut answered = 0;
    let mut answered_synced = false;
    let started = Instant::now();
    while !answered_synced {
        // A refuses until it has heard from a majority (the client then asks
        // another node); what it answers must never be short.
        let synced = cluster.nodes[0].status().is_some_and(|s| s.synced());
        let outcome = rt.block_on(async {
            let Ok(a) = kv_client(addrs[0], &secret).await else {
                return None;
            };
            let r = DirRequest::Search {
                query: expect[0].query.into(),
                after: None,
            };
            call(&a, &r).await.ok()
        });
        if let Some(DirResponse::Found(page)) = outcome {
            answered += 1;
            answered_synced = synced;
            let ids: Vec<String> = page.entries.into_iter().map(|e| e.id).collect();
            assert!(
                page.partial || ids == expect[0].ids,
                "A answered from a partial copy: {} of {} entries",
                ids.len(),
                expect[0].ids.len()
            );
        }
        assert!(started.elapsed() < WAIT * 2, "A never answered once synced");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered > 0, "A answered searches while syncing");
    rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        check_complete(&a, "A (resynced)").await;
    });
    wait_for(
        "A synced",
        || cluster.nodes[0].status().is_some_and(|s| s.synced()),
        &cluster,
    );
}

#[test]
fn factor_two_scatter_gather_stays_complete_when_a_node_dies() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start(dir.path(), Some(2));
    let secret = cluster_secret(&cluster);
    let rt = runtime();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.cluster).collect();
    let n = 600;
    rt.block_on(async {
        let a = connect(addrs[0], &secret).await;
        stream::iter(0..n)
            .map(|i| {
                let a = a.clone();
                async move {
                    let r = DirRequest::Register {
                        id: id(i),
                        instance: spec(i),
                        ttl_ms: Some(TTL_MS),
                    };
                    assert!(matches!(
                        call_retrying(&a, &r).await,
                        DirResponse::Live { .. }
                    ));
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    });
    let query = "region = \"eu\" order by rating desc limit 1000";
    let mut want: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
    want.sort_by(|a, b| rating(*b).total_cmp(&rating(*a)).then(id(*a).cmp(&id(*b))));
    let want: Vec<String> = want.into_iter().map(id).collect();
    for addr in &addrs {
        let (ids, partial) = rt.block_on(async {
            let c = connect(*addr, &secret).await;
            search_ids(&c, query).await
        });
        assert!(!partial);
        assert_eq!(ids, want, "every node gathers every copy");
    }
    cluster.nodes[2].kill9();
    // Every slot keeps one copy: complete from both survivors, once the
    // failure detector has told them (before that a search may say partial,
    // never miss silently).
    for addr in &addrs[..2] {
        let deadline = Instant::now() + WAIT;
        loop {
            let (ids, partial) = rt.block_on(async {
                let c = connect(*addr, &secret).await;
                search_ids(&c, query).await
            });
            if !partial {
                assert_eq!(ids, want, "complete after a node died");
                break;
            }
            assert!(Instant::now() < deadline, "still partial after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn the_cli_publishes_searches_and_refuses_bad_input_clearly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start(dir.path(), None);
    let target = cluster.nodes[1].cluster.to_string();
    let secret = cluster.nodes[0].secret_file.to_string_lossy().to_string();
    let geoul = |args: &[&str]| {
        let mut all = vec![
            "dir",
            "--cluster",
            &target,
            "--cluster-secret-file",
            &secret,
        ];
        all.extend_from_slice(args);
        run_geoul(&all, &[], dir.path(), Duration::from_secs(30))
    };
    let out = geoul(&[
        "register",
        "g-1",
        "--addr",
        "10.1.1.1:7000",
        "--mode",
        "ranked",
        "--region",
        "eu",
        "--max-players",
        "10",
        "--players",
        "3",
        "--spectators",
        "7",
        "--state",
        "playing",
        "--rating",
        "1500",
        "--tag",
        "lang=ko",
        "--tag",
        "level=12",
        "--ttl",
        "60s",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = geoul(&[
        "register",
        "g-2",
        "--addr",
        "10.1.1.2:7000",
        "--mode",
        "ranked",
        "--region",
        "eu",
        "--max-players",
        "10",
        "--state",
        "playing",
        "--rating",
        "1700",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // A table for people, ordered; JSON with the API's names for programs.
    let out = geoul(&["search", "mode = \"ranked\" order by rating desc"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{}", out.stdout);
    assert!(
        lines[1].starts_with("g-2") && lines[2].starts_with("g-1"),
        "{}",
        out.stdout
    );
    let out = geoul(&["--json", "search", "tag.level >= 10"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["partial"], false);
    assert_eq!(v["entries"][0]["id"], "g-1");
    assert_eq!(v["entries"][0]["tags"]["level"], 12);
    // The same search over the admin HTTP API; a bad query is a 400.
    let url = format!("{}/dir/search", cluster.nodes[2].admin_url());
    let v: serde_json::Value = ureq::get(&url)
        .query("q", "mode = \"ranked\" order by rating desc")
        .call()
        .expect("GET /dir/search")
        .into_json()
        .expect("json");
    assert_eq!(v["partial"], false);
    assert_eq!(v["entries"][0]["id"], "g-2");
    assert_eq!(v["entries"][1]["id"], "g-1");
    match ureq::get(&url).query("q", "players < \"x\"").call() {
        Err(ureq::Error::Status(400, r)) => {
            let body = r.into_string().expect("body");
            assert!(body.contains("holds numbers"), "{body}");
        }
        other => panic!("expected a 400: {other:?}"),
    }
    let out = geoul(&["update", "g-1", "--players", "4", "--remove-tag", "lang"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = geoul(&["--json", "get", "g-1"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["players"], 4);
    assert!(v["tags"].get("lang").is_none());
    assert_eq!(geoul(&["renew", "g-1"]).code, Some(0));
    assert_eq!(geoul(&["remove", "g-2"]).code, Some(0));

    // Bad input: clear one-line errors, exit 2 for usage, 1 for refusals.
    let cases: &[(&[&str], i32, &str)] = &[
        (&["search", "mode = "], 2, "column 8"),
        (
            &["search", "player < 5"],
            2,
            "unknown field `player`, at column 1",
        ),
        (&["search", "spectators < \"5\""], 2, "holds numbers"),
        (
            &[
                "register",
                "x",
                "--addr",
                "h:1",
                "--mode",
                "m",
                "--region",
                "r",
                "--max-players",
                "3",
                "--players",
                "-1",
            ],
            2,
            "negative",
        ),
        (
            &[
                "register",
                "x",
                "--addr",
                "nope",
                "--mode",
                "m",
                "--region",
                "r",
                "--max-players",
                "3",
            ],
            1,
            "addr: no port",
        ),
        (
            &[
                "register",
                "x",
                "--addr",
                "h:1",
                "--mode",
                "m",
                "--region",
                "r",
                "--max-players",
                "3",
                "--players",
                "4",
            ],
            1,
            "exceeds max_players",
        ),
        (
            &[
                "register",
                "x",
                "--addr",
                "h:1",
                "--mode",
                "m",
                "--region",
                "r",
                "--max-players",
                "3",
                "--tag",
                &format!("long={}", "x".repeat(300)),
            ],
            1,
            "at most 256 bytes",
        ),
        (
            &[
                "register",
                "x y",
                "--addr",
                "h:1",
                "--mode",
                "m",
                "--region",
                "r",
                "--max-players",
                "3",
            ],
            1,
            "id: may contain only",
        ),
        (&["get", "g-2"], 1, "no live instance \"g-2\""),
    ];
    for (args, code, needle) in cases {
        let out = geoul(args);
        assert_eq!(out.code, Some(*code), "{args:?}: {out:?}");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
        // One line, or a query with its caret line under it.
        assert!(out.stderr.trim().lines().count() <= 3, "{}", out.stderr);
    }
    // Unknown fields and wrong types in JSON requests (`geoul call`).
    let call = |json: &str| {
        run_geoul(
            &[
                "call",
                "--cluster",
                &target,
                "--cluster-secret-file",
                &secret,
                DIR,
                json,
            ],
            &[],
            dir.path(),
            Duration::from_secs(30),
        )
    };
    let out = call(
        r#"{"register":{"id":"j","instance":{"addr":"h:1","mode":"m","region":"r","max_players":3,"colour":"red"},"ttl_ms":null}}"#,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("unknown field `colour`"),
        "{}",
        out.stderr
    );
    let out = call(
        r#"{"register":{"id":"j","instance":{"addr":"h:1","mode":"m","region":"r","max_players":"three"},"ttl_ms":null}}"#,
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("invalid type"), "{}", out.stderr);
    // The nodes are unaffected.
    let out = geoul(&["--json", "get", "g-1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(cluster.nodes.iter().all(|n| n.status().is_some()));
}

#[test]
fn two_hundred_racing_reserves_fill_fifty_free_seats_exactly() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = start(dir.path(), None);
    let secret = cluster_secret(&cluster);
    let rt = runtime();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.cluster).collect();
    // The seat group forms a few seconds after start; until then every node
    // reports the directory degraded (and a reservation as not ready).
    wait_for(
        "the directory healthy on every node",
        || {
            cluster
                .nodes
                .iter()
                .all(|n| n.status().is_some_and(|s| s.services_healthy()))
        },
        &cluster,
    );
    let (reserved, no_room, players) = rt.block_on(async {
        let nodes = [
            connect(addrs[0], &secret).await,
            connect(addrs[1], &secret).await,
            connect(addrs[2], &secret).await,
        ];
        let mut instance = spec(1);
        instance.players = 10;
        instance.max_players = 60;
        let r = DirRequest::Register {
            id: "arena".into(),
            instance,
            ttl_ms: Some(TTL_MS),
        };
        assert!(matches!(
            call_retrying(&nodes[0], &r).await,
            DirResponse::Live { .. }
        ));
        // 200 players race for the 50 free seats through all three nodes.
        let outcomes: Vec<Result<DirResponse, String>> = stream::iter(0..200usize)
            .map(|i| {
                let c = nodes[i % 3].clone();
                async move {
                    let r = DirRequest::Reserve {
                        id: "arena".into(),
                        slots: 1,
                    };
                    call(&c, &r).await
                }
            })
            .buffer_unordered(48)
            .collect()
            .await;
        let mut reserved = 0;
        let mut no_room = 0;
        for o in outcomes {
            match o {
                Ok(DirResponse::Reserved {
                    players,
                    max_players,
                    ..
                }) => {
                    assert!(
                        players <= max_players,
                        "overfilled: {players}/{max_players}"
                    );
                    reserved += 1;
                }
                Ok(DirResponse::Denied(geoul_dir::DirDenied::NoRoom { .. })) => no_room += 1,
                other => panic!("reserve: {other:?}"),
            }
        }
        // The entry follows the counter on every node.
        let deadline = Instant::now() + WAIT;
        let players = loop {
            let mut seen = Vec::new();
            for c in &nodes {
                if let DirResponse::Instance(i) =
                    call_retrying(c, &DirRequest::Get { id: "arena".into() }).await
                {
                    seen.push(i.players);
                }
            }
            if seen.iter().all(|p| *p == 60) || Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        (reserved, no_room, players)
    });
    assert_eq!(reserved, 50, "exactly the free seats were taken");
    assert_eq!(no_room, 150);
    assert_eq!(
        players,
        vec![60, 60, 60],
        "every node shows the instance full"
    );
}

/// What a watcher holds: id → (players, state) of each matching instance.
type Seen = BTreeMap<String, (u32, InstanceState)>;

#[test]
fn a_watcher_sees_every_change_in_order_and_a_resync_when_its_node_dies() {
    use geoul_client::{Client, ClientOptions};
    use geoul_dir::watch::{LeaveReason, WatchEvent};
    use geoul_dir::{DirClient, WatchUpdate};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cluster = start(dir.path(), None);
    let secret = cluster_secret(&cluster);
    let rt = runtime();
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.cluster).collect();
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let (watch_node, resynced) = rt.block_on(async {
        let client = Client::connect(&addrs, &secret, ClientOptions::default())
            .await
            .expect("client");
        let dir = DirClient::new(client.service(DIR)).with_timeout(TIMEOUT);
        // Some instances before the watch: the snapshot holds the matching ones.
        let mut before = spec(0);
        before.mode = "watched".into();
        let write_node = |watcher: &str| {
            let i = names
                .iter()
                .position(|n| n != watcher)
                .expect("another node");
            (names[i].clone(), addrs[i])
        };
        let mut watch = dir
            .watch("mode = \"watched\" and players < 8")
            .await
            .expect("watch");
        let watcher = watch.node().to_string();
        let (writer, writer_addr) = write_node(&watcher);
        let c = connect(writer_addr, &secret).await;
        let Ok(WatchUpdate::Snapshot(snapshot)) = watch.next().await else {
            panic!("the first update is the snapshot")
        };
        assert!(snapshot.is_empty());
        // Through another node: 20 creates, 3 updates each (players 1..=3,
        // then 9 — leaving the filter — for a quarter), removals, a
        // non-matching instance.
        let mut expected: Vec<(String, Vec<String>)> = Vec::new();
        for i in 0..20usize {
            let id = format!("w-{i:02}");
            let mut s = spec(i);
            s.mode = "watched".into();
            s.players = 0;
            s.max_players = 10;
            let r = DirRequest::Register {
                id: id.clone(),
                instance: s,
                ttl_ms: Some(TTL_MS),
            };
            assert!(matches!(
                call_retrying(&c, &r).await,
                DirResponse::Live { .. }
            ));
            let mut trail = vec!["enter 0".to_string()];
            for p in 1..=3u32 {
                let r = DirRequest::Update {
                    id: id.clone(),
                    changes: geoul_dir::InstanceUpdate {
                        players: Some(p),
                        ..Default::default()
                    },
                };
                assert!(matches!(
                    call_retrying(&c, &r).await,
                    DirResponse::Live { .. }
                ));
                trail.push(format!("change {p}"));
            }
            if i % 4 == 0 {
                let r = DirRequest::Update {
                    id: id.clone(),
                    changes: geoul_dir::InstanceUpdate {
                        players: Some(9),
                        ..Default::default()
                    },
                };
                assert!(matches!(
                    call_retrying(&c, &r).await,
                    DirResponse::Live { .. }
                ));
                trail.push("leave NoLongerMatches".into());
            } else if i % 4 == 1 {
                let r = DirRequest::Remove { id: id.clone() };
                assert!(matches!(
                    call_retrying(&c, &r).await,
                    DirResponse::Removed { .. }
                ));
                trail.push("leave Removed".into());
            }
            expected.push((id, trail));
        }
        let other = DirRequest::Register {
            id: "not-watched".into(),
            instance: spec(1),
            ttl_ms: Some(TTL_MS),
        };
        call_retrying(&c, &other).await;
        // The watcher's node got all of it through replication: every event,
        // in version order per instance, nothing else.
        let total: usize = expected.iter().map(|(_, t)| t.len()).sum();
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut seen: Seen = BTreeMap::new();
        for _ in 0..total {
            let update = tokio::time::timeout(WAIT, watch.next())
                .await
                .unwrap_or_else(|_| panic!("an event within the wait; so far {got:?}"))
                .expect("event");
            let WatchUpdate::Event(e) = update else {
                panic!("unexpected {update:?}")
            };
            let (id, what) = match e {
                WatchEvent::Enter(i) => {
                    seen.insert(i.id.clone(), (i.players, i.state));
                    (i.id.clone(), format!("enter {}", i.players))
                }
                WatchEvent::Change(i) => {
                    seen.insert(i.id.clone(), (i.players, i.state));
                    (i.id.clone(), format!("change {}", i.players))
                }
                WatchEvent::Leave { id, reason } => {
                    seen.remove(&id);
                    let r = match reason {
                        LeaveReason::Removed => "Removed",
                        LeaveReason::Expired => "Expired",
                        LeaveReason::NoLongerMatches => "NoLongerMatches",
                    };
                    (id, format!("leave {r}"))
                }
            };
            got.entry(id).or_default().push(what);
        }
        for (id, trail) in &expected {
            assert_eq!(
                got.get(id),
                Some(trail),
                "events of {id} on {watcher} (written via {writer})"
            );
        }
        assert!(!got.contains_key("not-watched"));
        assert_eq!(seen.len(), 10, "half the instances still match");
        // The watcher's node dies: the next update is a resync from another
        // node with the same 10 instances, not silence.
        (watcher, {
            let i = names.iter().position(|n| *n == watch.node()).expect("node");
            (i, watch)
        })
    });
    let (index, mut watch) = resynced;
    cluster.nodes[index].kill9();
    rt.block_on(async {
        let update = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("a resync within the wait, not silence")
            .expect("resync");
        let WatchUpdate::Resync { reason, snapshot } = update else {
            panic!("expected a resync (every event was read), got {update:?}")
        };
        assert!(!reason.is_empty());
        assert_ne!(watch.node(), watch_node, "resumed on another node");
        let mut ids: Vec<String> = snapshot.into_iter().map(|i| i.id).collect();
        ids.sort();
        let want: Vec<String> = (0..20)
            .filter(|i| i % 4 >= 2)
            .map(|i| format!("w-{i:02}"))
            .collect();
        assert_eq!(ids, want, "the resync snapshot is the live result");
    });
}
