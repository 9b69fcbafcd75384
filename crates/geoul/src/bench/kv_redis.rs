//! The Redis peer of `bench kv`: `redis-server` processes on loopback without
//! persistence (`--save '' --appendonly no`), a primary with one replica
//! (`--replicaof`), and the client connection that drives them.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rand::Rng;

use super::kv::{wait_until, KvCtx};
use super::kv_load::{Driver, Op};
use super::kv_resp::{AsyncConn, Reply};
use super::resp::info_field;
use super::{die_with_parent, ChildGuard};
use crate::cli::{KvBenchArgs, RedisMode};
use crate::Failure;

/// Random Redis ports: below Linux's ephemeral range (32768) and clear of the
/// random geoul ports of `bench kv` (10000..21000).
const RANDOM_PORTS: std::ops::Range<u16> = 21_100..22_600;
const PORT_ATTEMPTS: usize = 64;
/// Bound on a server answering PING after its start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on the replica's initial sync.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of the admin commands (PING, INFO, DBSIZE).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `redis-server` binary and its version, or why Redis is not measured.
pub enum RedisPeer {
    Available { server: PathBuf, version: String },
    Skipped(String),
}

/// Applies `--redis`: `on` without a working `redis-server` is an error.
pub fn resolve(args: &KvBenchArgs) -> Result<RedisPeer, Failure> {
    if args.redis == RedisMode::Off {
        return Ok(RedisPeer::Skipped("--redis off".to_string()));
    }
    let found = Command::new("redis-server")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    let why = match found {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            return Ok(RedisPeer::Available {
                server: PathBuf::from("redis-server"),
                version: parse_version(&text).unwrap_or("unknown").to_string(),
            });
        }
        Ok(out) => format!("`redis-server --version` failed ({})", out.status),
        Err(e) => format!("redis-server not found on PATH ({e})"),
    };
    if args.redis == RedisMode::On {
        return Err(Failure::Runtime(format!(
            "--redis on: {why} (scripts/bench-kv.sh installs it)"
        )));
    }
    Ok(RedisPeer::Skipped(why))
}

/// `7.0.15` from `Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 ...`.
pub fn parse_version(text: &str) -> Option<&str> {
    text.split_whitespace().find_map(|w| w.strip_prefix("v="))
}

/// A started `redis-server`, killed on drop.
pub struct RedisServer {
    pub addr: SocketAddr,
    log: PathBuf,
    process: ChildGuard,
}

fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

fn pick_port(taken: &[SocketAddr]) -> anyhow::Result<u16> {
    let mut rng = rand::rng();
    (0..PORT_ATTEMPTS)
        .map(|_| rng.random_range(RANDOM_PORTS))
        .find(|p| port_free(*p) && taken.iter().all(|a| a.port() != *p))
        .ok_or_else(|| anyhow!("no free loopback port for Redis found in {RANDOM_PORTS:?}"))
}

impl RedisServer {
    /// Starts a server in `dir` (a replica of `primary` if given) and waits
    /// until it answers PING.
    pub fn start(
        ctx: &KvCtx,
        server: &Path,
        dir: &Path,
        name: &str,
        primary: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = pick_port(&primary.into_iter().collect::<Vec<_>>())?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = dir.join(format!("{name}.log"));
        let out_path = dir.join(format!("{name}.out"));
        let out =
            File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
        let err = out.try_clone().context("redis output file")?;
        let mut cmd = Command::new(server);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--dbfilename")
            .arg(format!("{name}.rdb"))
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some(p) = primary {
            cmd.arg("--replicaof")
                .arg(p.ip().to_string())
                .arg(p.port().to_string());
        }
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting redis-server on {addr}"))?;
        let mut server = RedisServer {
            addr,
            log,
            process: ChildGuard(child),
        };
        let what = format!("redis-server on {addr} to answer PING");
        wait_until(ctx, &what, START_TIMEOUT, || {
            server.check()?;
            Ok(super::redis::ask(addr, &["PING"]).is_ok_and(|r| r == "PONG"))
        })?;
        Ok(server)
    }

    /// A server that exited is a failure.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.0.try_wait().context("checking redis-server")? {
            bail!(
                "redis-server {} exited unexpectedly ({status}); see {}",
                self.addr,
                self.log.display()
            );
        }
        Ok(())
    }
}

/// Waits until `replica` reports its link to `primary` up and the primary
/// counts one connected replica.
pub fn wait_replicating(
    ctx: &KvCtx,
    primary: &mut RedisServer,
    replica: &mut RedisServer,
) -> anyhow::Result<Duration> {
    let what = "the Redis replica's link to its primary (master_link_status:up)";
    wait_until(ctx, what, LINK_TIMEOUT, || {
        primary.check()?;
        replica.check()?;
        let ask = super::redis::ask;
        let up = ask(replica.addr, &["INFO", "replication"])
            .is_ok_and(|i| info_field(&i, "master_link_status") == Some("up"));
        let counted = ask(primary.addr, &["INFO", "replication"])
            .is_ok_and(|i| info_field(&i, "connected_slaves") == Some("1"));
        Ok(up && counted)
    })
}

/// `used_memory` and `used_memory_rss` of `INFO memory`, in bytes.
pub async fn memory(conn: &mut AsyncConn) -> anyhow::Result<(u64, u64)> {
    let info = conn.text(&["INFO", "memory"], ADMIN_TIMEOUT).await?;
    let field = |name: &str| -> anyhow::Result<u64> {
        info_field(&info, name)
            .ok_or_else(|| anyhow!("INFO memory has no {name}"))?
            .trim()
            .parse()
            .with_context(|| format!("INFO memory {name}"))
    };
    Ok((field("used_memory")?, field("used_memory_rss")?))
}

/// One benchmark client: `SET` + `WAIT 1` (sent together, one round trip),
/// `SET` or `GET`, one at a time.
pub struct RedisDriver {
    conn: AsyncConn,
    value: Arc<str>,
    wait_ms: String,
    timeout: Duration,
}

impl RedisDriver {
    /// `wait` is the `WAIT 1 <ms>` timeout; every request must be answered within
    /// `wait` plus a second.
    pub async fn connect(
        addr: SocketAddr,
        value: Arc<str>,
        wait: Duration,
    ) -> anyhow::Result<Self> {
        Ok(RedisDriver {
            conn: AsyncConn::connect(addr, ADMIN_TIMEOUT).await?,
            value,
            wait_ms: wait.as_millis().to_string(),
            timeout: wait + Duration::from_secs(1),
        })
    }
}

fn expect_ok(reply: Option<Reply>) -> anyhow::Result<()> {
    match reply {
        Some(Reply::Status(s)) if s == "OK" => Ok(()),
        Some(Reply::Error(e)) => bail!("SET: {e}"),
        other => bail!("SET: unexpected reply {other:?}"),
    }
}

impl Driver for RedisDriver {
    async fn call(&mut self, op: Op, key: &str) -> anyhow::Result<bool> {
        let key = key.as_bytes();
        let set: &[&[u8]] = &[b"SET", key, self.value.as_bytes()];
        match op {
            Op::SetReplicated => {
                let wait: &[&[u8]] = &[b"WAIT", b"1", self.wait_ms.as_bytes()];
                let mut replies = self.conn.pipeline(&[set, wait], self.timeout).await?;
                let acked = replies.pop();
                expect_ok(replies.pop())?;
                match acked {
                    Some(Reply::Integer(n)) if n >= 1 => Ok(true),
                    Some(Reply::Integer(_)) => bail!(
                        "WAIT 1 {}: the replica did not acknowledge in time",
                        self.wait_ms
                    ),
                    other => bail!("WAIT: unexpected reply {other:?}"),
                }
            }
            Op::SetOne => {
                let mut replies = self.conn.pipeline(&[set], self.timeout).await?;
                expect_ok(replies.pop())?;
                Ok(true)
            }
            Op::Get => {
                let get: &[&[u8]] = &[b"GET", key];
                match self.conn.pipeline(&[get], self.timeout).await?.pop() {
                    Some(Reply::Bulk(v)) => Ok(v.is_some()),
                    Some(Reply::Error(e)) => bail!("GET: {e}"),
                    other => bail!("GET: unexpected reply {other:?}"),
                }
            }
        }
    }
}

/// `n` connected clients of the server at `addr`.
pub async fn connect_clients(
    addr: SocketAddr,
    n: usize,
    value: &Arc<str>,
    wait: Duration,
) -> anyhow::Result<Vec<RedisDriver>> {
    let mut drivers = Vec::with_capacity(n);
    for _ in 0..n {
        drivers.push(RedisDriver::connect(addr, value.clone(), wait).await?);
    }
    Ok(drivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let text = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1\n";
        assert_eq!(parse_version(text), Some("7.0.15"));
        assert_eq!(parse_version("nothing here"), None);
    }
}
