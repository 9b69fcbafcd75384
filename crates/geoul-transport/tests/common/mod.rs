//! Helpers shared by the integration tests: a scriptable handler and small configs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use geoul_transport::{
    ClusterSecret, Handler, PeerInfo, RemoteError, TokioNet, Transport, TransportConfig,
};

pub const SECRET: &[u8] = b"integration-test-cluster-secret";
pub const OTHER_SECRET: &[u8] = b"some-other-clusters-secret!!";
pub const LOOPBACK: &str = "127.0.0.1:0";
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn secret(bytes: &[u8]) -> ClusterSecret {
    ClusterSecret::from_bytes(bytes).expect("test secret is long enough")
}

pub fn config(hello: &str) -> TransportConfig {
    TransportConfig {
        hello: hello.to_owned(),
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        rng_seed: Some(42),
        ..TransportConfig::default()
    }
}

/// What a [`Scripted`] handler observed.
#[derive(Default)]
pub struct Stats {
    pub running: AtomicUsize,
    pub running_max: AtomicUsize,
    pub oneways: Mutex<Vec<Bytes>>,
}

/// Echoes requests, except: `fail:<reason>` returns a remote error, `sleep:<ms>`
/// sleeps first, `hello` answers with the caller's hello. Records one-way messages
/// and the highest number of handlers seen running at once.
#[derive(Default)]
pub struct Scripted {
    pub stats: Arc<Stats>,
}

impl Handler for Scripted {
    fn handle(
        &self,
        peer: PeerInfo,
        request: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, RemoteError>> {
        let stats = Arc::clone(&self.stats);
        let now = stats.running.fetch_add(1, Ordering::SeqCst) + 1;
        stats.running_max.fetch_max(now, Ordering::SeqCst);
        let text = String::from_utf8_lossy(&request).into_owned();
        async move {
            let result = if let Some(reason) = text.strip_prefix("fail:") {
                Err(RemoteError::new(reason))
            } else if let Some(ms) = text.strip_prefix("sleep:") {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(request)
            } else if text == "hello" {
                Ok(Bytes::from(peer.hello))
            } else {
                Ok(request)
            };
            stats.running.fetch_sub(1, Ordering::SeqCst);
            result
        }
        .boxed()
    }

    fn handle_oneway(&self, _peer: PeerInfo, message: Bytes) {
        self.stats
            .oneways
            .lock()
            .expect("not poisoned")
            .push(message);
    }
}

pub async fn server_with(config: TransportConfig) -> (Transport<TokioNet>, Arc<Stats>) {
    server_at(LOOPBACK.parse().expect("addr"), config).await
}

pub async fn server_at(
    addr: SocketAddr,
    config: TransportConfig,
) -> (Transport<TokioNet>, Arc<Stats>) {
    let handler = Scripted::default();
    let stats = Arc::clone(&handler.stats);
    let transport = Transport::bind(TokioNet, addr, secret(SECRET), config, Arc::new(handler))
        .await
        .expect("bind loopback");
    (transport, stats)
}

pub async fn server() -> (Transport<TokioNet>, Arc<Stats>) {
    server_with(config("node-server")).await
}

pub async fn client_node(secret_bytes: &[u8], config: TransportConfig) -> Transport<TokioNet> {
    Transport::bind(
        TokioNet,
        LOOPBACK.parse().expect("addr"),
        secret(secret_bytes),
        config,
        Arc::new(Scripted::default()),
    )
    .await
    .expect("bind loopback")
}

/// Waits until `check` holds, polling; panics after [`PATIENCE`].
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let give_up = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
