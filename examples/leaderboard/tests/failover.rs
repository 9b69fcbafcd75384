//! The example service on real processes: three `leaderboard-node`s on
//! loopback, a bounded load loop of submissions through `ServiceRef`s while
//! one node is `kill -9`ed and restarted. Every submission is acknowledged
//! (the ref fails over and the caller retries with the same id), none is
//! applied twice, every reply equals the count of the caller's acknowledged
//! submissions, and a read right after a write sees it — across failover.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geoul_client::{CallOptions, Client, ClientOptions, ServiceRef};
use geoul_transport::ClusterSecret;
use leaderboard::{key, Request, Response, SERVICE};

/// Length of the load loop.
const LOAD: Duration = Duration::from_secs(16);
/// When node-2 is killed and restarted, from the start of the load.
const KILL_AT: Duration = Duration::from_secs(4);
const RESTART_AT: Duration = Duration::from_secs(9);
/// Concurrent callers, each with its own players.
const WORKERS: usize = 6;
const PLAYERS_PER_WORKER: usize = 3;
/// How long one submission may keep failing before the test fails.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(60);
const BOARD: &str = "season-1";

fn free_port() -> u16 {
    // Bind to port 0 and release it: the node binds it right after.
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("addr").port()
}

struct Node {
    name: String,
    port: u16,
    admin: u16,
    dir: PathBuf,
    seeds: Vec<String>,
    secret: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn start(&mut self) {
        let log = std::fs::File::create(self.dir.with_extension("log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_leaderboard-node"));
        if !self.seeds.is_empty() {
            command.args(["--seeds", &self.seeds.join(",")]);
        }
        let child = command
            .args(["--name", &self.name])
            .args(["--bind", &format!("127.0.0.1:{}", self.port)])
            .args(["--admin", &format!("127.0.0.1:{}", self.admin)])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--cluster-secret-file")
            .arg(&self.secret)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn leaderboard-node");
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn cluster(dir: &Path, secret: &Path) -> Vec<Node> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let first = format!("127.0.0.1:{}", ports[0].0);
    ports
        .iter()
        .enumerate()
        .map(|(i, (port, admin))| Node {
            name: format!("node-{}", i + 1),
            port: *port,
            admin: *admin,
            dir: dir.join(format!("node-{}", i + 1)),
            seeds: if i == 0 {
                Vec::new()
            } else {
                vec![first.clone()]
            },
            secret: secret.to_path_buf(),
            child: None,
        })
        .collect()
}

/// The last lines of every node's log, for failure messages.
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for i in 1..=3 {
        let path = dir.join(format!("node-{i}.log"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- node-{i}\n"));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Until every node hosts the service and none is still syncing its table.
async fn wait_ready(client: &Client, nodes: usize, dir: &Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = client.topology();
        let hosts = t
            .members
            .iter()
            .filter(|m| m.services.iter().any(|(s, ok)| s == SERVICE && *ok))
            .filter(|m| m.syncing.is_empty())
            .count();
        if hosts == nodes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster never became ready: {t:?}\n{}",
            logs(dir)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Default)]
struct Tally {
    acknowledged: HashMap<String, i64>,
    retries: u64,
    submits: u64,
}

/// Submits one point until acknowledged, retrying with the same id.
async fn submit(board: &ServiceRef, player: &str, id: u64, tally: &Mutex<Tally>) -> i64 {
    let started = Instant::now();
    let request = Request::Submit {
        board: BOARD.into(),
        player: player.into(),
        points: 1,
        id,
    };
    loop {
        let options = CallOptions {
            timeout: Some(Duration::from_secs(3)),
            idempotent: false,
            idempotency_key: Some(id.to_le_bytes().to_vec()),
        };
        let k = key(BOARD, player);
        match board
            .call_with::<_, Response>(Some(k.as_bytes()), &request, options)
            .await
        {
            Ok(Response::Score(score)) => return score,
            Ok(other) => panic!("submit answered {other:?}"),
            Err(e) => {
                assert!(
                    started.elapsed() < SUBMIT_PATIENCE,
                    "submission {id} for {player} kept failing: {e}"
                );
                tally.lock().expect("tally").retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn worker(client: Client, w: usize, until: Instant, tally: Arc<Mutex<Tally>>) {
    // One ref per worker: its session covers this worker's players.
    let board = client.service(SERVICE);
    let players: Vec<String> = (0..PLAYERS_PER_WORKER)
        .map(|p| format!("w{w}-p{p}"))
        .collect();
    let mut next_id = (w as u64) << 40;
    let mut round = 0usize;
    while Instant::now() < until {
        let player = &players[round % players.len()];
        round += 1;
        next_id += 1;
        let score = submit(&board, player, next_id, &tally).await;
        let expected = {
            let mut t = tally.lock().expect("tally");
            t.submits += 1;
            let count = t.acknowledged.entry(player.clone()).or_insert(0);
            *count += 1;
            *count
        };
        assert_eq!(
            score, expected,
            "{player}: submission {next_id} answered {score}, but {expected} were acknowledged (applied twice or lost)"
        );
        // Read-your-writes through the same ref, wherever it lands.
        let read = Request::Score {
            board: BOARD.into(),
            player: player.clone(),
        };
        let k = key(BOARD, player);
        match board
            .call_idempotent::<_, Response>(k.as_bytes(), &read)
            .await
        {
            Ok(Response::Score(seen)) => assert_eq!(
                seen, expected,
                "{player}: read {seen} right after writing {expected}"
            ),
            Ok(other) => panic!("score answered {other:?}"),
            // A read that could not be served at all is not a wrong answer;
            // it is counted and the loop goes on.
            Err(_) => tally.lock().expect("tally").retries += 1,
        }
    }
}

#[test]
fn submissions_survive_kill9_exactly_once_and_reads_see_own_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_path = dir.path().join("cluster.secret");
    std::fs::write(&secret_path, "leaderboard-example-secret-0123456789abcdef").expect("secret");
    let secret = ClusterSecret::load_file(&secret_path).expect("secret loads");
    let mut nodes = cluster(dir.path(), &secret_path);
    for n in &mut nodes {
        n.start();
    }
    let seeds: Vec<SocketAddr> = nodes.iter().map(Node::addr).collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            match Client::connect(&seeds, &secret, ClientOptions::default()).await {
                Ok(c) => break c,
                Err(e) => assert!(Instant::now() < deadline, "no node answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    rt.block_on(wait_ready(&client, 3, dir.path()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let until = start + LOAD;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| rt.spawn(worker(client.clone(), w, until, tally.clone())))
        .collect();
    std::thread::sleep(KILL_AT);
    nodes[1].kill9();
    std::thread::sleep(RESTART_AT - KILL_AT);
    nodes[1].start();
    rt.block_on(async {
        for w in workers {
            if let Err(e) = w.await {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    });
    let tally = tally.lock().expect("tally");
    assert!(tally.submits > 0, "no submission was made");
    eprintln!(
        "{} submissions acknowledged, {} retries by callers",
        tally.submits, tally.retries
    );
    // Every score equals its acknowledged submissions, read from a fresh
    // session, and the board's top lists them in order.
    rt.block_on(async {
        let board = client.service(SERVICE);
        for (player, count) in &tally.acknowledged {
            let read = Request::Score {
                board: BOARD.into(),
                player: player.clone(),
            };
            let k = key(BOARD, player);
            let seen: Response = board
                .call_idempotent(k.as_bytes(), &read)
                .await
                .expect("final read");
            assert_eq!(seen, Response::Score(*count), "{player}");
        }
        let top: Response = board
            .call_any(&Request::Top {
                board: BOARD.into(),
                limit: 100,
            })
            .await
            .expect("top");
        let Response::Top { rows, partial } = top else {
            panic!("top answered {top:?}");
        };
        assert!(!partial, "a healthy cluster answered a partial top");
        let mut want: Vec<(String, i64)> = tally
            .acknowledged
            .iter()
            .map(|(p, c)| (p.clone(), *c))
            .collect();
        want.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| key(BOARD, &a.0).cmp(&key(BOARD, &b.0)))
        });
        assert_eq!(rows, want);
        // The same through the ref's own distributed query.
        let query = geoul_client::parse_query(&format!(
            "scores where board = \"{BOARD}\" order by score desc limit 100"
        ))
        .expect("query parses");
        let answer = board.query(&query).await.expect("query");
        assert!(!answer.partial);
        let scores: Vec<i64> = answer
            .rows
            .iter()
            .filter_map(|r| match r.doc.get("score") {
                Some(geoul_store::Value::Int(s)) => Some(*s),
                _ => None,
            })
            .collect();
        assert_eq!(scores, want.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    });
}
