//! The instance directory's reserve and watch on real processes (issue 8):
//! 200 racing reserves over 3 nodes take exactly the 50 free seats; a
//! watcher on one node sees every change made through another, in version
//! order, and a resync — not silence — when its node dies.

mod dir_support;
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dir_support::{
    call, call_retrying, connect, runtime, spec, start, ONE_AT_A_TIME, TIMEOUT, TTL_MS,
};
use futures::stream::{self, StreamExt};
use geoul_dir::{DirRequest, DirResponse, InstanceState, DIR};
use support::{cluster_secret, wait_for, WAIT};

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
