//! Hostile bytes: decoders and a live replica's request handler never panic.

mod common;

use std::sync::Arc;

use geoul_consensus::{CondGroup, RaftReply, RaftRequest};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = RaftRequest::decode(&bytes);
        let _ = RaftReply::decode(&bytes);
    }

    /// Bytes that start like a request for a real group (variant tags are small
    /// varints), so the decoder goes deep into the message shapes.
    #[test]
    fn decoding_request_shaped_bytes_never_panics(
        tag in 0u8..8,
        tail in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![9];
        bytes.extend_from_slice(b"test.cond");
        bytes.push(tag);
        bytes.extend_from_slice(&tail);
        let _ = RaftRequest::decode(&bytes);
    }
}

#[test]
fn a_replica_answers_garbage_with_a_refusal() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cluster = common::Cluster::new(1).await;
        let group: CondGroup = cluster.group(0).clone();
        let group = Arc::new(group);
        let mut runner = proptest::test_runner::TestRunner::default();
        let strategy = proptest::collection::vec(any::<u8>(), 0..1024);
        for _ in 0..500 {
            let bytes = strategy.new_tree(&mut runner).expect("value").current();
            let reply = group.handle_bytes(&bytes).await;
            RaftReply::decode(&reply).expect("every reply decodes");
        }
    });
}
