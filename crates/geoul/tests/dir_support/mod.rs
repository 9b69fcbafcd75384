//! What the instance-directory tests on real processes share: a 3-node
//! cluster hosting the directory, one request to one node, the instances
//! they register.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use geoul_client::wire::{self, ApiRequest, ApiResponse, Call};
use geoul_dir::{DirRequest, DirResponse, InstanceSpec, InstanceState, DIR};
use geoul_transport::ClusterSecret;

use crate::support::{kv_client, Cluster, KvClient, WAIT};

pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Long enough to outlive the test: only the short-lived instance expires.
pub const TTL_MS: u64 = 600_000;

fn config(copies: Option<usize>) -> String {
    let copies = copies.map_or(String::new(), |n| format!("copies = {n}\n"));
    format!("services = [\"kv\", \"instance-directory\"]\n[dir]\n{copies}")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One cluster at a time: two on 2 cores starve each other's detectors.
pub static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn start(dir: &Path, copies: Option<usize>) -> Cluster {
    let path = dir.join("dir-node.toml");
    std::fs::write(&path, config(copies)).expect("config");
    let path = path.to_string_lossy().to_string();
    let cluster = Cluster::start_with(3, &["--config", &path]);
    cluster.wait_service(DIR);
    cluster
}

/// One directory request served by the node at the other end of `c` (no
/// routing key: the node serves it itself).
pub async fn call(c: &KvClient, request: &DirRequest) -> Result<DirResponse, String> {
    let payload = postcard::to_stdvec(request).map_err(|e| e.to_string())?;
    let frame = wire::encode_request(&ApiRequest::Call(Call {
        service: DIR.into(),
        key: None,
        payload,
        timeout_ms: u32::try_from(TIMEOUT.as_millis()).unwrap_or(u32::MAX),
        idempotency_key: None,
        session: Default::default(),
        json: false,
    }))
    .map_err(|e| e.to_string())?;
    let bytes = c
        .request(frame, TIMEOUT + Duration::from_secs(1))
        .await
        .map_err(|e| e.to_string())?;
    match wire::decode_response(&bytes).map_err(|e| e.to_string())? {
        ApiResponse::Reply(r) => postcard::from_bytes(&r.payload).map_err(|e| e.to_string()),
        ApiResponse::Failed(f) => Err(f.to_string()),
        _ => Err("unexpected answer".into()),
    }
}

/// `call`, retried while the node cannot serve it yet.
pub async fn call_retrying(c: &KvClient, request: &DirRequest) -> DirResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        match call(c, request).await {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "{request:?}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub async fn connect(addr: SocketAddr, secret: &ClusterSecret) -> Arc<KvClient> {
    Arc::new(kv_client(addr, secret).await.expect("connect"))
}

/// Instance `i`: modes, regions, states, spectators and ratings spread so
/// every search test's query has many matches and many ties.
pub fn spec(i: usize) -> InstanceSpec {
    InstanceSpec {
        addr: format!("10.0.{}.{}:7777", i / 250, i % 250),
        mode: ["ranked", "casual"][i % 2].into(),
        region: ["eu", "us", "kr"][i % 3].into(),
        map: Some(format!("map-{}", i % 7)),
        players: (i % 10) as u32,
        max_players: 10,
        spectators: (i % 97) as u32,
        state: [
            InstanceState::Lobby,
            InstanceState::Playing,
            InstanceState::Ending,
        ][i % 5 % 3],
        rating: Some(((i * 37) % 400) as f64 * 5.0),
        started_at: Some(1_700_000_000_000 + i as u64),
        tags: BTreeMap::new(),
    }
}
