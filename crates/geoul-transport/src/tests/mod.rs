//! Attacks from authenticated peers, which only code inside the crate can mount:
//! they complete a real handshake and then send malformed frames or ciphertext.
//! Each must close only that connection, be counted, and leave the server serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::channel::{put_raw_message, NoiseWriter};
use crate::handshake;
use crate::{ClusterSecret, Handler, PeerInfo, RemoteError, TokioNet, Transport, TransportConfig};

const SECRET: &[u8] = b"adversarial-test-cluster-secret";
const PATIENCE: Duration = Duration::from_secs(10);

struct Echo;

impl Handler for Echo {
    fn handle(
        &self,
        _peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        async move { Ok(request) }.boxed()
    }
}

fn secret() -> ClusterSecret {
    ClusterSecret::from_bytes(SECRET).expect("long enough")
}

fn small_frames() -> TransportConfig {
    TransportConfig {
        max_frame_bytes: 64 * 1024,
        ..TransportConfig::default()
    }
}

async fn server() -> Transport<TokioNet> {
    let addr = "127.0.0.1:0".parse().expect("addr");
    Transport::bind(TokioNet, addr, secret(), small_frames(), Arc::new(Echo))
        .await
        .expect("bind")
}

/// An authenticated raw connection: handshake done, then whatever the test writes.
async fn authenticated(addr: SocketAddr) -> (OwnedReadHalf, NoiseWriter<OwnedWriteHalf>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let established = handshake::initiate(&mut stream, secret().noise_psk(), "attacker")
        .await
        .expect("handshake with the right secret");
    let (read, write) = stream.into_split();
    (read, NoiseWriter::new(write, Arc::new(established.noise)))
}

/// Waits until the server closes the connection (EOF or reset).
async fn closed_by_server(mut stream: impl AsyncRead + Unpin) {
    let mut sink = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "server kept the connection open");
}

async fn protocol_errors_reach(server: &Transport<TokioNet>, n: u64) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while server.metrics().snapshot().protocol_errors < n {
        assert!(
            tokio::time::Instant::now() < give_up,
            "protocol error not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn still_serves(server: &Transport<TokioNet>) {
    let client = crate::Client::connect(
        TokioNet,
        server.local_addr(),
        &secret(),
        TransportConfig::default(),
    )
    .await
    .expect("good client connects");
    let answer = client
        .request(Bytes::from_static(b"still here"), PATIENCE)
        .await;
    assert_eq!(answer, Ok(Bytes::from_static(b"still here")));
}

#[tokio::test]
async fn oversized_frame_length_closes_connection() {
    let server = server().await;
    let (read, mut writer) = authenticated(server.local_addr()).await;
    let mut frame = BytesMut::new();
    frame.put_u32(100 * 1024 * 1024);
    frame.put_u8(1);
    writer.send(&frame).await.expect("send");
    closed_by_server(read).await;
    protocol_errors_reach(&server, 1).await;
    still_serves(&server).await;
}

#[tokio::test]
async fn truncated_frame_closes_connection() {
    let server = server().await;
    let (read, mut writer) = authenticated(server.local_addr()).await;
    let mut frame = BytesMut::new();
    frame.put_u32(100);
    frame.put_u8(1);
    frame.put_slice(&[0u8; 20]);
    writer.send(&frame).await.expect("send");
    writer.shutdown().await;
    closed_by_server(read).await;
    protocol_errors_reach(&server, 1).await;
    still_serves(&server).await;
}

#[tokio::test]
async fn short_header_and_unknown_kind_close_connection() {
    let server = server().await;
    for (i, bytes) in [&[0u8, 0, 0, 3, 1, 0, 0][..], &[0, 0, 0, 20, 99][..]]
        .iter()
        .enumerate()
    {
        let (read, mut writer) = authenticated(server.local_addr()).await;
        writer.send(bytes).await.expect("send");
        closed_by_server(read).await;
        protocol_errors_reach(&server, i as u64 + 1).await;
    }
    still_serves(&server).await;
}

#[tokio::test]
async fn undecryptable_message_closes_connection() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    handshake::initiate(&mut stream, secret().noise_psk(), "attacker")
        .await
        .expect("handshake");
    let mut forged = BytesMut::new();
    put_raw_message(&mut forged, &[0x5A; 64]);
    tokio::io::AsyncWriteExt::write_all(&mut stream, &forged)
        .await
        .expect("write");
    closed_by_server(stream).await;
    protocol_errors_reach(&server, 1).await;
    still_serves(&server).await;
}

#[tokio::test]
async fn response_frame_from_client_closes_connection() {
    let server = server().await;
    let (read, mut writer) = authenticated(server.local_addr()).await;
    let mut frame = BytesMut::new();
    let response = geoul_proto::Frame {
        kind: geoul_proto::FrameKind::Response,
        request_id: 1,
        timeout_ms: 0,
        payload: Bytes::from_static(b"unsolicited"),
    };
    geoul_proto::encode(&response, &mut frame).expect("small frame");
    writer.send(&frame).await.expect("send");
    closed_by_server(read).await;
    protocol_errors_reach(&server, 1).await;
    still_serves(&server).await;
}
