//! The instance directory on real processes (issue 8): 5 000 instances
//! registered through node A are found, completely and in order, on B and C
//! after A is `kill -9`ed; an instance whose renewals stop is never returned
//! past its expiry on any node; a wiped A never answers from a partial copy
//! and once synced answers what B answers; `Factor(2)` scatter-gather stays
//! complete through a kill; the CLI's answers and its errors on bad input.

mod dir_support;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dir_support::{call, call_retrying, connect, runtime, spec, start, ONE_AT_A_TIME, TTL_MS};
use futures::stream::{self, StreamExt};
use geoul_dir::{DirRequest, DirResponse, InstanceState, SearchPage, DIR};
use support::{cluster_secret, kv_client, run_geoul, wait_for, KvClient, WAIT};

const INSTANCES: usize = 5000;
/// Requests in flight at once from the test.
const CONCURRENCY: usize = 16;

fn id(i: usize) -> String {
    format!("inst-{i:05}")
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
