//! Restarts from the data directory, wiped directories, and a whole-group restart.

mod common;

use common::{bounded, Cluster};
use geoul_consensus::{CondOp, CondOutcome, Reconciled};

fn create(key: &str, value: &str) -> CondOp {
    CondOp::CreateIfAbsent {
        key: key.into(),
        value: value.into(),
        ttl_ms: None,
    }
}

/// Writes `n` keys `prefix{i}` and returns the last version.
async fn write_keys(cluster: &Cluster, prefix: &str, n: usize) -> u64 {
    let mut last = 0;
    for i in 0..n {
        let op = create(&format!("{prefix}{i}"), &format!("v{i}"));
        match cluster.submit(i % cluster.up().len(), op, 1).await {
            Ok(CondOutcome::Done { version, .. }) => last = version,
            other => panic!("write {prefix}{i}: {other:?}"),
        }
    }
    last
}

/// Waits until replica `i` applied `version` and holds every key.
async fn wait_holds(cluster: &Cluster, i: usize, prefix: &str, n: usize, version: u64) {
    cluster
        .wait_for("the replica to catch up", |st| {
            st.iter()
                .all(|s| s.last_applied.is_some_and(|a| a >= version))
        })
        .await;
    for k in 0..n {
        let e = cluster
            .group(i)
            .local_get(format!("{prefix}{k}").as_bytes(), 0);
        assert_eq!(
            e.map(|e| e.value),
            Some(format!("v{k}").into_bytes()),
            "replica {i} key {k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_keeps_its_id_and_state() {
    bounded("restart", async {
        let mut cluster = Cluster::new(3).await;
        let leader = cluster.converge().await;
        let last = write_keys(&cluster, "a", 25).await;
        let follower = (leader + 1) % 3;
        let id = cluster.group(follower).node_id();
        cluster.stop(follower).await;
        cluster.open(follower).await;
        assert_eq!(
            cluster.group(follower).node_id(),
            id,
            "same directory, same id"
        );
        cluster.converge().await;
        wait_holds(&cluster, follower, "a", 25, last).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_rejoins_as_a_new_node() {
    bounded("wipe", async {
        let mut cluster = Cluster::new(3).await;
        let leader = cluster.converge().await;
        // Past `snapshot_every_n_logs` + `logs_to_keep`: the joiner needs a snapshot.
        let last = write_keys(&cluster, "w", 40).await;
        let wiped = (leader + 1) % 3;
        let old_id = cluster.group(wiped).node_id();
        cluster.wipe(wiped).await;
        cluster.open(wiped).await;
        let new_id = cluster.group(wiped).node_id();
        assert_ne!(new_id, old_id, "a wiped directory is a new node");

        // It finds an initialized group and waits; it never starts a second one.
        let desired = cluster.addrs(&cluster.up());
        match cluster
            .group(wiped)
            .reconcile(&desired, cluster.now_ms())
            .await
        {
            Ok(Reconciled::Waiting(_)) => {}
            other => panic!("a wiped node must wait to be added: {other:?}"),
        }
        // The leader removes the old id, adds the new one, promotes it.
        cluster.converge().await;
        for st in cluster.statuses().await {
            let voters: Vec<u64> = st.voters.iter().map(|v| v.0).collect();
            assert!(
                voters.contains(&new_id) && !voters.contains(&old_id),
                "{st:?}"
            );
        }
        wait_holds(&cluster, wiped, "w", 40, last).await;
        // The group still works with the new member.
        let out = cluster
            .submit(wiped, create("after", "x"), 1)
            .await
            .expect("write");
        assert!(matches!(out, CondOutcome::Done { .. }));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_group_restarts_from_disk() {
    bounded("full restart", async {
        let mut cluster = Cluster::new(3).await;
        cluster.converge().await;
        let last = write_keys(&cluster, "r", 30).await;
        let ids: Vec<u64> = (0..3).map(|i| cluster.group(i).node_id()).collect();
        for i in 0..3 {
            cluster.stop(i).await;
        }
        for i in 0..3 {
            cluster.open(i).await;
        }
        assert_eq!(
            (0..3)
                .map(|i| cluster.group(i).node_id())
                .collect::<Vec<_>>(),
            ids
        );
        cluster.converge().await;
        let out = cluster
            .submit(0, create("r0", "again"), 1)
            .await
            .expect("create");
        match out {
            CondOutcome::Conflict { current: Some(e) } => assert!(e.version <= last),
            other => panic!("state lost across a restart: {other:?}"),
        }
        for i in 0..3 {
            wait_holds(&cluster, i, "r", 30, last).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_voter_is_removed_and_rejoins_when_back() {
    bounded("absent voter", async {
        let mut config = common::test_config();
        config.remove_after_ms = 1500;
        let mut cluster = Cluster::with_config(3, config).await;
        let leader = cluster.converge().await;
        let last = write_keys(&cluster, "b", 10).await;
        let away = (leader + 2) % 3;
        let id = cluster.group(away).node_id();
        cluster.stop(away).await;
        // `desired` no longer lists it: after `remove_after_ms` the leader removes it.
        cluster.converge().await;
        for st in cluster.statuses().await {
            assert_eq!(st.voters.len(), 2, "{st:?}");
            assert!(st.voters.iter().all(|v| v.0 != id));
        }
        let last = last.max(write_keys(&cluster, "c", 10).await);
        // Back with its data: it is added as a learner, catches up, becomes a voter.
        cluster.open(away).await;
        assert_eq!(cluster.group(away).node_id(), id);
        cluster.converge().await;
        wait_holds(&cluster, away, "c", 10, last).await;
    })
    .await;
}
