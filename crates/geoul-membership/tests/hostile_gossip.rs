//! Gossip that passed authentication can still be garbage (a buggy or older peer):
//! the core must refuse it with an error and keep working, never panic.

use std::sync::Arc;
use std::time::Duration;

use geoul_membership::core::{Action, MembershipCore};
use geoul_membership::{MembershipConfig, MembershipMetrics, NodeId, NodeMeta};
use proptest::prelude::*;

fn core() -> MembershipCore {
    let id = NodeId::new("n1", "127.0.0.1:7001".parse().expect("literal"), 1);
    let mut core = MembershipCore::new(
        NodeMeta::new(id, None),
        MembershipConfig::default(),
        vec!["127.0.0.1:7002".parse().expect("literal")],
        1300,
        7,
        Arc::new(MembershipMetrics::default()),
    )
    .expect("valid core");
    core.start(Duration::ZERO).expect("starts");
    core
}

proptest! {
    #[test]
    fn random_datagrams_never_panic(packets in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1500), 1..20)) {
        let mut core = core();
        for (i, p) in packets.iter().enumerate() {
            let _ = core.handle_datagram(Duration::from_millis(i as u64), p);
        }
        // Still alive and still announcing to its seed.
        let _ = core.drain_actions();
        prop_assert_eq!(core.view().members.len(), 1);
    }

    /// Valid packets with a few bytes changed get much deeper into the decoder
    /// than random bytes do.
    #[test]
    fn mutated_valid_packets_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let peer_id = NodeId::new("n2", "127.0.0.1:7002".parse().expect("literal"), 1);
        let mut peer = MembershipCore::new(
            NodeMeta::new(peer_id, None),
            MembershipConfig::default(),
            vec!["127.0.0.1:7001".parse().expect("literal")],
            1300,
            9,
            Arc::new(MembershipMetrics::default()),
        )
        .expect("valid core");
        peer.start(Duration::ZERO).expect("starts");
        let packet = peer
            .drain_actions()
            .into_iter()
            .find_map(|a| match a {
                Action::Send { data, .. } => Some(data),
                Action::Schedule { .. } => None,
            })
            .expect("announce packet");
        let mut mutated = packet.clone();
        for (index, byte) in flips {
            let i = index.index(mutated.len());
            mutated[i] = byte;
        }
        let mut core = core();
        let _ = core.handle_datagram(Duration::ZERO, &mutated);
        // The unmodified packet still works afterwards.
        prop_assert!(core.handle_datagram(Duration::from_millis(1), &packet).is_ok());
    }

    #[test]
    fn random_metadata_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let _ = NodeMeta::decode(&bytes);
    }
}

#[test]
fn start_announces_to_seeds_and_arms_timers() {
    let mut core = core();
    let actions = core.drain_actions();
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Send { to, .. } if to.port() == 7002)));
    assert!(actions.iter().any(|a| matches!(a, Action::Schedule { .. })));
}
