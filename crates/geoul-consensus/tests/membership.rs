//! Bootstrap under a partition, and forwarding.

mod common;

use std::time::Duration;

use common::{bounded, Cluster};
use geoul_consensus::{CondOp, CondOutcome, Reconciled, Role};

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
