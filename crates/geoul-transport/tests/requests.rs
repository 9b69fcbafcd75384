//! Request/response behaviour over real loopback sockets: round trips, multiplexing,
//! timeouts, errors, limits, reconnection and backoff.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::future::join_all;
use geoul_transport::{Client, RequestError, TokioNet, TransportConfig};

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn request_response_round_trip() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-4 127.0.0.1:7004")).await;
    let to = server.local_addr();
    let answer = node.request(to, Bytes::from_static(b"ping"), SHORT).await;
    assert_eq!(answer, Ok(Bytes::from_static(b"ping")));
    let hello = node.request(to, Bytes::from_static(b"hello"), SHORT).await;
    assert_eq!(hello, Ok(Bytes::from_static(b"node-4 127.0.0.1:7004")));
    assert_eq!(server.metrics().snapshot().connections_open, 1);
    assert!(node.metrics().snapshot().frames_out >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_requests_share_one_connection() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let to = server.local_addr();
    let requests = (0..1000u32).map(|i| {
        let node = node.clone();
        async move {
            let payload = Bytes::from(i.to_be_bytes().to_vec());
            (node.request(to, payload.clone(), SHORT).await, payload)
        }
    });
    for (answer, sent) in join_all(requests).await {
        assert_eq!(answer, Ok(sent));
    }
    let server_metrics = server.metrics().snapshot();
    assert_eq!(server_metrics.connections_accepted, 1);
    assert_eq!(server_metrics.frames_in, 1000);
}

#[tokio::test]
async fn handler_error_propagates_as_remote() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let answer = node
        .request(
            server.local_addr(),
            Bytes::from_static(b"fail:no such match"),
            SHORT,
        )
        .await;
    assert_eq!(answer, Err(RequestError::Remote("no such match".into())));
}

#[tokio::test]
async fn request_timeout_and_connection_survives() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let to = server.local_addr();
    let slow = node
        .request(
            to,
            Bytes::from_static(b"sleep:5000"),
            Duration::from_millis(100),
        )
        .await;
    assert_eq!(slow, Err(RequestError::Timeout));
    assert_eq!(node.metrics().snapshot().requests_timed_out, 1);
    let fast = node.request(to, Bytes::from_static(b"after"), SHORT).await;
    assert_eq!(fast, Ok(Bytes::from_static(b"after")));
    assert_eq!(server.metrics().snapshot().connections_accepted, 1);
}

#[tokio::test]
async fn one_mebibyte_frame_round_trips() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let big: Bytes = (0..1024 * 1024)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let answer = node.request(server.local_addr(), big.clone(), SHORT).await;
    assert_eq!(answer, Ok(big));
}

#[tokio::test]
async fn oversized_payload_fails_before_sending() {
    let (server, _) = server().await;
    let small = TransportConfig {
        max_frame_bytes: 1024,
        ..config("node-1")
    };
    let node = client_node(SECRET, small).await;
    let answer = node
        .request(server.local_addr(), Bytes::from(vec![0u8; 2000]), SHORT)
        .await;
    assert_eq!(answer, Err(RequestError::FrameTooLarge));
}

#[tokio::test]
async fn inflight_limit_reports_overloaded() {
    let (server, _) = server().await;
    let tight = TransportConfig {
        max_inflight_requests_per_conn: 2,
        ..config("node-1")
    };
    let node = client_node(SECRET, tight).await;
    let to = server.local_addr();
    let slow = |n: &'static [u8]| node.request(to, Bytes::from_static(n), SHORT);
    let (a, b, c) = tokio::join!(slow(b"sleep:300"), slow(b"sleep:300"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        node.request(to, Bytes::from_static(b"third"), SHORT).await
    });
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_eq!(c, Err(RequestError::Overloaded));
}

#[tokio::test]
async fn server_bounds_concurrent_handlers_per_connection() {
    let limited = TransportConfig {
        max_concurrent_handlers_per_conn: 3,
        ..config("node-server")
    };
    let (server, stats) = server_with(limited).await;
    let node = client_node(SECRET, config("node-1")).await;
    let to = server.local_addr();
    let requests = (0..30).map(|_| node.request(to, Bytes::from_static(b"sleep:20"), SHORT));
    for answer in join_all(requests).await {
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert_eq!(stats.running_max.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn oneway_messages_are_delivered() {
    let (server, stats) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    for i in 0..10u8 {
        node.send_oneway(server.local_addr(), Bytes::from(vec![i]))
            .await
            .expect("queued");
    }
    eventually("10 one-way messages", || {
        stats.oneways.lock().expect("not poisoned").len() == 10
    })
    .await;
    let got = stats.oneways.lock().expect("not poisoned").clone();
    assert_eq!(
        got,
        (0..10u8).map(|i| Bytes::from(vec![i])).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn reconnects_after_server_restarts_on_same_port() {
    let (server, _) = server().await;
    let addr = server.local_addr();
    let node = client_node(SECRET, config("node-1")).await;
    assert!(node
        .request(addr, Bytes::from_static(b"one"), SHORT)
        .await
        .is_ok());
    server.shutdown().await;
    let (_restarted, _) = server_at(addr, config("node-server")).await;
    // The old connection's death is noticed asynchronously; a request racing it may
    // see ConnectionClosed. Anything else, or no success, is a bug.
    let mut answer = node.request(addr, Bytes::from_static(b"two"), SHORT).await;
    for _ in 0..10 {
        match &answer {
            Err(RequestError::ConnectionClosed) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                answer = node.request(addr, Bytes::from_static(b"two"), SHORT).await;
            }
            _ => break,
        }
    }
    assert_eq!(answer, Ok(Bytes::from_static(b"two")));
}

#[tokio::test]
async fn failed_dial_backs_off_and_fails_fast() {
    // A port nobody listens on: bind, learn it, close.
    let dead = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = dead.local_addr().expect("addr");
    drop(dead);
    let slow_retry = TransportConfig {
        backoff_min: Duration::from_secs(30),
        backoff_max: Duration::from_secs(60),
        ..config("node-1")
    };
    let node = client_node(SECRET, slow_retry).await;
    let first = node.request(addr, Bytes::from_static(b"x"), SHORT).await;
    assert!(
        matches!(first, Err(RequestError::Unreachable { .. })),
        "{first:?}"
    );
    let started = tokio::time::Instant::now();
    let second = node.request(addr, Bytes::from_static(b"x"), SHORT).await;
    match second {
        Err(RequestError::Unreachable { reason, .. }) => {
            assert!(reason.contains("backoff"), "{reason}")
        }
        other => panic!("expected fail-fast Unreachable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fail fast, no dial"
    );
    assert_eq!(node.metrics().snapshot().connect_failures, 1);
}

#[tokio::test]
async fn backoff_ends_and_success_resets_it() {
    let dead = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = dead.local_addr().expect("addr");
    drop(dead);
    let node = client_node(SECRET, config("node-1")).await;
    assert!(node
        .request(addr, Bytes::from_static(b"x"), SHORT)
        .await
        .is_err());
    let (_server, _) = server_at(addr, config("node-server")).await;
    // backoff_max is 200 ms in the test config.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        node.request(addr, Bytes::from_static(b"x"), SHORT).await,
        Ok(Bytes::from_static(b"x"))
    );
}

#[tokio::test]
async fn news_of_a_live_peer_ends_its_backoff() {
    let dead = tokio::net::TcpListener::bind(LOOPBACK).await.expect("bind");
    let addr = dead.local_addr().expect("addr");
    drop(dead);
    let slow_retry = TransportConfig {
        backoff_min: Duration::from_secs(30),
        backoff_max: Duration::from_secs(60),
        ..config("node-1")
    };
    let node = client_node(SECRET, slow_retry).await;
    assert!(node
        .request(addr, Bytes::from_static(b"x"), SHORT)
        .await
        .is_err());
    let (_server, _) = server_at(addr, config("node-server")).await;
    // Still in its 30 s backoff: fails fast although the peer is back.
    assert!(matches!(
        node.request(addr, Bytes::from_static(b"x"), SHORT).await,
        Err(RequestError::Unreachable { .. })
    ));
    assert!(node.peer_alive(addr), "it was backing off");
    assert_eq!(
        node.request(addr, Bytes::from_static(b"x"), SHORT).await,
        Ok(Bytes::from_static(b"x"))
    );
    assert!(!node.peer_alive(addr), "connected, nothing to end");
}

#[tokio::test]
async fn pending_requests_fail_when_the_connection_dies() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let to = server.local_addr();
    let pending = tokio::spawn({
        let node = node.clone();
        async move {
            node.request(
                to,
                Bytes::from_static(b"sleep:60000"),
                Duration::from_secs(30),
            )
            .await
        }
    });
    eventually("request in flight", || {
        server.metrics().snapshot().frames_in == 1
    })
    .await;
    server.shutdown().await;
    let answer = pending.await.expect("join");
    assert_eq!(answer, Err(RequestError::ConnectionClosed));
}

#[tokio::test]
async fn shutdown_fails_own_pending_requests_and_refuses_new_ones() {
    let (server, _) = server().await;
    let node = client_node(SECRET, config("node-1")).await;
    let to = server.local_addr();
    let pending = tokio::spawn({
        let node = node.clone();
        async move {
            node.request(
                to,
                Bytes::from_static(b"sleep:60000"),
                Duration::from_secs(30),
            )
            .await
        }
    });
    eventually("request in flight", || {
        server.metrics().snapshot().frames_in == 1
    })
    .await;
    node.shutdown().await;
    assert_eq!(
        pending.await.expect("join"),
        Err(RequestError::ShuttingDown)
    );
    let after = node.request(to, Bytes::from_static(b"x"), SHORT).await;
    assert_eq!(after, Err(RequestError::ShuttingDown));
}

#[tokio::test]
async fn cli_client_round_trip() {
    let (server, _) = server().await;
    let client = Client::connect(
        TokioNet,
        server.local_addr(),
        &secret(SECRET),
        config("cli"),
    )
    .await
    .expect("connect");
    assert_eq!(
        client.request(Bytes::from_static(b"hello"), SHORT).await,
        Ok(Bytes::from_static(b"cli"))
    );
    client
        .send_oneway(Bytes::from_static(b"note"))
        .await
        .expect("queued");
    client.close();
    assert!(client.is_closed());
    assert_eq!(
        client.request(Bytes::from_static(b"x"), SHORT).await,
        Err(RequestError::ConnectionClosed)
    );
}
