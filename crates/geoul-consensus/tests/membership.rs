//! Bootstrap under a partition, and forwarding.

mod common;

use std::time::Duration;

use common::{bounded, Cluster};
use geoul_consensus::{CondOp, CondOutcome, GroupConfig, Reconciled, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_bootstrap_forms_one_group() {
    bounded("bootstrap", async {
        let cluster = Cluster::new(5).await;
        // The two smallest addresses are cut off from the three others.
        cluster
            .hub
            .partition(&cluster.addrs(&[0, 1]), &cluster.addrs(&[2, 3, 4]));
        let mut initialized = Vec::new();
        for _ in 0..5 {
            for (i, r) in cluster.reconcile_all().await.into_iter().enumerate() {
                if let Ok(Reconciled::Initialized { .. }) = r {
                    initialized.push(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Only the majority side could initialize, and only its smallest address did.
        assert_eq!(initialized, vec![2], "{:#?}", cluster.statuses().await);
        for i in [0, 1] {
            assert!(!cluster.group(i).status().await.initialized);
        }
        cluster.hub.heal();
        // The minority nodes find an initialized group and are added to it.
        cluster.converge().await;
        let statuses = cluster.statuses().await;
        assert!(statuses.iter().all(|s| s.voters.len() == 5));
    })
    .await;
}

/// Each side of a partition at startup reconciles with the view SWIM gives it
/// (only its own side); returns the replicas that initialized a group.
async fn bootstrap_with_divergent_views(cluster: &Cluster) -> Vec<usize> {
    let sides = [vec![0, 1], vec![2, 3, 4]];
    cluster
        .hub
        .partition(&cluster.addrs(&sides[0]), &cluster.addrs(&sides[1]));
    let mut initialized = Vec::new();
    for _ in 0..5 {
        for side in &sides {
            let desired = cluster.addrs(side);
            for i in side {
                let r = cluster
                    .group(*i)
                    .reconcile(&desired, cluster.now_ms())
                    .await;
                if let Ok(Reconciled::Initialized { .. }) = r {
                    initialized.push(*i);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    initialized
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_expect_keeps_divergent_startup_views_to_one_group() {
    bounded("bootstrap_expect", async {
        // The hazard: a two-node view is its own majority, so without
        // bootstrap_expect each side forms a group.
        let unguarded = Cluster::new(5).await;
        assert_eq!(bootstrap_with_divergent_views(&unguarded).await, vec![0, 2]);
        let config = GroupConfig {
            bootstrap_expect: 3,
            ..common::test_config()
        };
        let cluster = Cluster::with_config(5, config).await;
        assert_eq!(bootstrap_with_divergent_views(&cluster).await, vec![2]);
        let why = cluster
            .group(0)
            .reconcile(&cluster.addrs(&[0, 1]), cluster.now_ms())
            .await;
        match why {
            Ok(Reconciled::Waiting(reason)) => {
                assert!(reason.contains("bootstrap_expect"), "{reason}")
            }
            other => panic!("expected Waiting, got {other:?}"),
        }
        cluster.hub.heal();
        cluster.converge().await;
        let statuses = cluster.statuses().await;
        assert!(
            statuses.iter().all(|s| s.voters.len() == 5),
            "{statuses:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_or_forward_reaches_the_leader() {
    bounded("forward", async {
        let cluster = Cluster::new(3).await;
        let leader = cluster.converge().await;
        let follower = (leader + 1) % 3;
        assert_eq!(cluster.group(follower).status().await.role, Role::Follower);
        let op = CondOp::CreateIfAbsent {
            key: b"fwd".to_vec(),
            value: b"v".to_vec(),
            ttl_ms: None,
        };
        let direct = cluster
            .group(follower)
            .submit(op.clone(), 1, Duration::from_secs(5))
            .await;
        assert!(matches!(
            direct,
            Err(geoul_consensus::CondError::NotLeader { leader: Some(_) })
        ));
        let out = cluster
            .group(follower)
            .submit_or_forward(op, 1, Duration::from_secs(10))
            .await
            .expect("forwarded");
        assert!(matches!(out, CondOutcome::Done { .. }));
    })
    .await;
}
