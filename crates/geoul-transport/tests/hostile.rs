//! Hostile and misconfigured peers: each is turned away (and counted) while the
//! server keeps serving everyone else.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use geoul_proto::{decode_reply, encode_hello, encode_hello_with_version, RejectCode, ServerReply};
use geoul_transport::{Client, RequestError, TokioNet, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_secs(5);

/// Writes `bytes` on a raw socket and returns everything the server sends before
/// closing.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await;
    match read {
        Ok(Ok(_)) => {}
        // A reset after the server's reply is fine: the reply was read before it.
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(err)) => panic!("read failed: {err}"),
        Err(_) => panic!("server did not close the connection"),
    }
    got
}

async fn still_serves(server: &Transport<TokioNet>) {
    let node = client_node(SECRET, config("good-node")).await;
    let answer = node
        .request(server.local_addr(), Bytes::from_static(b"ok?"), SHORT)
        .await;
    assert_eq!(answer, Ok(Bytes::from_static(b"ok?")));
}

#[tokio::test]
async fn wrong_secret_is_refused_and_counted() {
    let (server, _) = server().await;
    let no_retry = TransportConfig {
        backoff_min: Duration::from_secs(30),
        backoff_max: Duration::from_secs(60),
        ..config("node-stale")
    };
    let intruder = client_node(OTHER_SECRET, no_retry).await;
    for _ in 0..3 {
        let answer = intruder
            .request(server.local_addr(), Bytes::from_static(b"let me in"), SHORT)
            .await;
        assert!(
            matches!(
                answer,
                Err(RequestError::Auth) | Err(RequestError::Unreachable { .. })
            ),
            "{answer:?}"
        );
    }
    assert_eq!(
        server.metrics().snapshot().auth_failures,
        1,
        "later attempts fail fast in backoff"
    );
    assert_eq!(intruder.metrics().snapshot().auth_failures, 1);
    still_serves(&server).await;
}

#[tokio::test]
async fn cli_with_wrong_secret_gets_auth_error() {
    let (server, _) = server().await;
    for _ in 0..3 {
        let err = Client::connect(
            TokioNet,
            server.local_addr(),
            &secret(OTHER_SECRET),
            config("cli"),
        )
        .await
        .expect_err("wrong secret");
        assert_eq!(err, RequestError::Auth);
    }
    assert_eq!(server.metrics().snapshot().auth_failures, 3);
    still_serves(&server).await;
}

#[tokio::test]
async fn raw_garbage_is_rejected() {
    let (server, _) = server().await;
    let reply = raw_exchange(
        server.local_addr(),
        b"\x16\x03\x01\x02\x00garbage from a TLS client",
    )
    .await;
    let Ok(Some((ServerReply::Reject { code, .. }, _))) = decode_reply(&reply) else {
        panic!("expected a reject, got {reply:?}");
    };
    assert_eq!(code, RejectCode::MalformedPreamble);
    assert_eq!(server.metrics().snapshot().protocol_errors, 1);
    still_serves(&server).await;
}

#[tokio::test]
async fn bad_magic_is_rejected() {
    let (server, _) = server().await;
    let reply = raw_exchange(server.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let Ok(Some((ServerReply::Reject { code, reason, .. }, _))) = decode_reply(&reply) else {
        panic!("expected a reject, got {reply:?}");
    };
    assert_eq!(code, RejectCode::MalformedPreamble);
    assert!(reason.contains("magic"), "{reason}");
    assert_eq!(server.metrics().snapshot().protocol_errors, 1);
    still_serves(&server).await;
}

#[tokio::test]
async fn wrong_version_gets_a_readable_error() {
    let (server, _) = server().await;
    let mut hello = BytesMut::new();
    encode_hello_with_version(2, "cli-from-the-future", &mut hello).expect("short hello");
    let reply = raw_exchange(server.local_addr(), &hello).await;
    let Ok(Some((
        ServerReply::Reject {
            code,
            reason,
            version,
        },
        _,
    ))) = decode_reply(&reply)
    else {
        panic!("expected a reject, got {reply:?}");
    };
    assert_eq!(code, RejectCode::UnsupportedVersion);
    assert_eq!(version, geoul_proto::PROTOCOL_VERSION);
    assert!(
        reason.contains("version 1") && reason.contains("version 2"),
        "{reason}"
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn garbage_after_a_valid_preamble_is_an_auth_failure() {
    let (server, _) = server().await;
    let mut bytes = BytesMut::new();
    encode_hello("node-x", &mut bytes).expect("short hello");
    bytes.extend_from_slice(&[0, 48]);
    bytes.extend_from_slice(&[0xAB; 48]);
    let reply = raw_exchange(server.local_addr(), &bytes).await;
    // Accept, then the zero-length "refused" marker.
    assert!(
        matches!(
            decode_reply(&reply),
            Ok(Some((ServerReply::Accept { .. }, 7)))
        ),
        "{reply:?}"
    );
    assert_eq!(&reply[7..], &[0, 0]);
    assert_eq!(server.metrics().snapshot().auth_failures, 1);
    still_serves(&server).await;
}

#[tokio::test]
async fn silent_connection_times_out_without_blocking_others() {
    let quick = TransportConfig {
        handshake_timeout: Duration::from_millis(200),
        ..config("node-server")
    };
    let (server, _) = server_with(quick).await;
    let mut idle = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    still_serves(&server).await;
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, idle.read_to_end(&mut sink)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
}

#[tokio::test]
async fn connection_limit_rejects_excess_readably() {
    let one = TransportConfig {
        max_connections: 1,
        ..config("node-server")
    };
    let (server, _) = server_with(one).await;
    let first = Client::connect(
        TokioNet,
        server.local_addr(),
        &secret(SECRET),
        config("cli-1"),
    )
    .await
    .expect("first fits");
    let second = Client::connect(
        TokioNet,
        server.local_addr(),
        &secret(SECRET),
        config("cli-2"),
    )
    .await;
    match second {
        Err(RequestError::Rejected { reason, .. }) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(server.metrics().snapshot().connections_refused, 1);
    assert_eq!(
        first.request(Bytes::from_static(b"x"), SHORT).await,
        Ok(Bytes::from_static(b"x"))
    );
    drop(first);
    // The slot is released once the server notices the close; retry until then.
    let mut third = Err(RequestError::ConnectionClosed);
    for _ in 0..100 {
        third = Client::connect(
            TokioNet,
            server.local_addr(),
            &secret(SECRET),
            config("cli-3"),
        )
        .await;
        if third.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_ok(), "{third:?}");
}
