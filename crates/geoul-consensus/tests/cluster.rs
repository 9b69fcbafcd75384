//! A three-replica group in one process: exactly-once creates and takes, versions,
//! leader failure, partitions, expiry.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, Cluster};
use geoul_consensus::{CondError, CondOp, CondOutcome, Role};

fn create(key: &str, value: &str, ttl_ms: Option<u64>) -> CondOp {
    CondOp::CreateIfAbsent {
        key: key.into(),
        value: value.into(),
        ttl_ms,
    }
}

fn get(key: &str) -> CondOp {
    CondOp::Get { key: key.into() }
}

fn version_of(outcome: &CondOutcome) -> u64 {
    match outcome {
        CondOutcome::Done { version, .. } => *version,
        other => panic!("expected Done, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_take_happen_exactly_once() {
    bounded("exactly once", async {
        let cluster = Arc::new(Cluster::new(3).await);
        cluster.converge().await;

        // The same key created concurrently through every replica: one wins.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..9 {
            let cluster = cluster.clone();
            tasks.spawn(async move {
                let op = create("ticket", &format!("from-{i}"), None);
                (i, cluster.submit(i % 3, op, 1).await)
            });
        }
        let mut winners = Vec::new();
        let mut conflicts = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("task") {
                (i, Ok(CondOutcome::Done { previous: None, .. })) => {
                    winners.push(format!("from-{i}"))
                }
                (_, Ok(CondOutcome::Conflict { current: Some(e) })) => conflicts.push(e.value),
                (i, other) => panic!("create {i}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one create wins");
        assert_eq!(conflicts.len(), 8);
        assert!(
            conflicts.iter().all(|v| *v == winners[0].as_bytes()),
            "losers see the winner"
        );

        // A single-use entry taken by 20 concurrent callers: one gets it.
        cluster
            .submit(0, create("redeem", "once", None), 1)
            .await
            .expect("create");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let cluster = cluster.clone();
            tasks.spawn(async move {
                cluster
                    .submit(
                        i % 3,
                        CondOp::Take {
                            key: b"redeem".to_vec(),
                        },
                        1,
                    )
                    .await
            });
        }
        let mut taken = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("task") {
                Ok(CondOutcome::Taken(Some(e))) => {
                    assert_eq!(e.value, b"once");
                    taken += 1;
                }
                Ok(CondOutcome::Taken(None)) => {}
                other => panic!("take: {other:?}"),
            }
        }
        assert_eq!(taken, 1, "exactly one take gets the value");
        assert_eq!(
            cluster.submit(1, get("redeem"), 1).await,
            Ok(CondOutcome::Value(None))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_fences_stale_versions() {
    bounded("cas", async {
        let cluster = Cluster::new(3).await;
        cluster.converge().await;
        let v1 = version_of(
            &cluster
                .submit(0, create("lease", "a", None), 1)
                .await
                .expect("create"),
        );
        let cas = |expected, value: Option<&str>| CondOp::CompareAndSet {
            key: b"lease".to_vec(),
            expected,
            value: value.map(|v| v.as_bytes().to_vec()),
            ttl_ms: None,
        };
        let out = cluster
            .submit(1, cas(Some(v1), Some("b")), 1)
            .await
            .expect("cas");
        let v2 = version_of(&out);
        assert!(v2 > v1, "versions increase: {v1} then {v2}");
        match out {
            CondOutcome::Done {
                previous: Some(p), ..
            } => assert_eq!((p.version, p.value), (v1, b"a".to_vec())),
            other => panic!("{other:?}"),
        }
        // The holder of v1 is fenced out.
        match cluster
            .submit(2, cas(Some(v1), Some("c")), 1)
            .await
            .expect("stale cas")
        {
            CondOutcome::Conflict { current: Some(e) } => {
                assert_eq!((e.version, e.value), (v2, b"b".to_vec()))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cluster.submit(0, cas(None, Some("c")), 1).await,
            Ok(CondOutcome::Conflict { .. })
        ));
        let v3 = version_of(
            &cluster
                .submit(0, cas(Some(v2), None), 1)
                .await
                .expect("delete"),
        );
        assert!(v3 > v2);
        assert_eq!(
            cluster.submit(2, get("lease"), 1).await,
            Ok(CondOutcome::Value(None))
        );
        // Deleted: "must be absent" holds again.
        let v4 = version_of(
            &cluster
                .submit(1, cas(None, Some("d")), 1)
                .await
                .expect("recreate"),
        );
        assert!(v4 > v3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_keeps_acknowledged_writes() {
    bounded("leader failure", async {
        let mut cluster = Cluster::new(3).await;
        let old = cluster.converge().await;
        // More than `snapshot_every_n_logs`: the state spans a snapshot and the log.
        for i in 0..30 {
            let op = create(&format!("k{i}"), &format!("v{i}"), None);
            cluster.submit(i % 3, op, 1).await.expect("write");
        }
        cluster.stop(old).await;
        let rest: Vec<usize> = cluster.up();
        let new = cluster.wait_leader_among(&rest).await;
        assert_ne!(new, old);
        for i in 0..30 {
            let key = format!("k{i}");
            match cluster
                .submit(rest[i % 2], get(&key), 2)
                .await
                .expect("read")
            {
                CondOutcome::Value(Some(e)) => assert_eq!(e.value, format!("v{i}").into_bytes()),
                other => panic!("{key}: {other:?}"),
            }
        }
        let out = cluster
            .submit(rest[0], create("after", "x", None), 3)
            .await
            .expect("new write");
        assert!(matches!(out, CondOutcome::Done { .. }));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_histories_merge() {
    bounded("partition", async {
        let cluster = Cluster::new(3).await;
        let old = cluster.converge().await;
        let others: Vec<usize> = cluster.up().into_iter().filter(|i| *i != old).collect();
        cluster
            .hub
            .partition(&cluster.addrs(&[old]), &cluster.addrs(&others));

        // The minority side cannot commit.
        let minority = cluster
            .group(old)
            .submit(create("minority", "lost", None), 1, Duration::from_secs(2))
            .await;
        assert!(
            matches!(
                minority,
                Err(CondError::Timeout { .. }) | Err(CondError::NotLeader { .. })
            ),
            "{minority:?}"
        );
        // The majority elects and commits.
        let new = cluster.wait_leader_among(&others).await;
        let out = cluster
            .submit(new, create("majority", "kept", None), 2)
            .await
            .expect("write");
        assert!(matches!(out, CondOutcome::Done { .. }));

        cluster.hub.heal();
        let new_id = cluster.group(new).node_id();
        cluster
            .wait_for("the old leader to follow", |st| {
                st.iter()
                    .all(|s| s.leader.as_ref().map(|l| l.0) == Some(new_id))
            })
            .await;
        let last = version_of(
            &cluster
                .submit(new, create("healed", "y", None), 3)
                .await
                .expect("write"),
        );
        cluster
            .wait_for("every replica to apply", |st| {
                st.iter().all(|s| s.last_applied.is_some_and(|a| a >= last))
            })
            .await;
        // One history everywhere: the minority's write never happened.
        for i in cluster.up() {
            let g = cluster.group(i);
            assert_eq!(g.local_get(b"minority", 0), None, "replica {i}");
            assert_eq!(
                g.local_get(b"majority", 0).map(|e| e.value),
                Some(b"kept".to_vec())
            );
            assert!(g.local_get(b"healed", 0).is_some());
        }
        assert_eq!(cluster.group(old).status().await.role, Role::Follower);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_follows_the_proposers_clock() {
    bounded("expiry", async {
        let cluster = Cluster::new(3).await;
        cluster.converge().await;
        let t0 = 1_000_000;
        let out = cluster
            .submit(0, create("k", "v", Some(1000)), t0)
            .await
            .expect("create");
        assert!(matches!(out, CondOutcome::Done { .. }));
        match cluster.submit(1, get("k"), t0 + 999).await.expect("get") {
            CondOutcome::Value(Some(e)) => assert_eq!(e.expires_at_ms, Some(t0 + 1000)),
            other => panic!("{other:?}"),
        }
        // At the expiry instant the entry is gone, for reads and for creates.
        assert_eq!(
            cluster.submit(2, get("k"), t0 + 1000).await,
            Ok(CondOutcome::Value(None))
        );
        let again = cluster
            .submit(0, create("k", "w", None), t0 + 1000)
            .await
            .expect("create");
        assert!(matches!(again, CondOutcome::Done { previous: None, .. }));
        // A proposer with a slow clock cannot bring an expired entry back.
        cluster
            .submit(0, create("short", "s", Some(10)), t0 + 2000)
            .await
            .expect("create");
        cluster
            .submit(0, get("k"), t0 + 2010)
            .await
            .expect("advance the clock");
        assert_eq!(
            cluster.submit(1, get("short"), t0).await,
            Ok(CondOutcome::Value(None))
        );
        let keys: HashSet<_> = cluster
            .statuses()
            .await
            .iter()
            .map(|s| s.clock_ms)
            .collect();
        assert!(keys.iter().all(|c| *c <= t0 + 2010));
    })
    .await;
}
