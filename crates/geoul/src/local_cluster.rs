//! Local clusters of this binary on loopback, shared by `geoul up` and `geoul bench`.
//!
//! Owns: the port plan (node i: cluster port `base+i-1`, admin port
//! `base+1000+i-1`), the port check, the generated cluster secret, spawning one
//! `geoul node` child (killed on drop), the convergence check and the Ctrl-C flag.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cli::ADMIN_PORT_OFFSET;
use crate::Failure;

/// One node of a local cluster: its name and loopback addresses.
#[derive(Clone, Debug)]
pub struct Planned {
    pub name: String,
    pub cluster: SocketAddr,
    pub admin: SocketAddr,
}

impl Planned {
    /// The node's log file inside the cluster directory.
    pub fn log_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.log", self.name))
    }
}

/// A started node process, killed on drop if still running.
pub struct Running {
    pub planned: Planned,
    pub child: Child,
}

/// Fails if any of `nodes` has exited (a benchmark never expects that unless it
/// killed the node itself), naming the node and its log under `dir`.
pub fn ensure_running(nodes: &mut [Running], dir: &Path) -> anyhow::Result<()> {
    for n in nodes {
        let exited = n
            .child
            .try_wait()
            .map_err(|e| anyhow::anyhow!("checking a node process: {e}"))?;
        if let Some(status) = exited {
            anyhow::bail!(
                "{} exited unexpectedly ({status}); see {}",
                n.planned.name,
                n.planned.log_path(dir).display()
            );
        }
    }
    Ok(())
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a node's log file is started afresh or appended to (restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogMode {
    Truncate,
    Append,
}

/// Names and addresses of `nodes` nodes starting at `base_port`.
pub fn plan(nodes: u16, base_port: u16) -> Result<Vec<Planned>, Failure> {
    let last = u32::from(base_port) + u32::from(nodes) - 1 + u32::from(ADMIN_PORT_OFFSET);
    if last > u32::from(u16::MAX) {
        return Err(Failure::Usage(format!(
            "invalid config: base_port: {base_port} + nodes + {ADMIN_PORT_OFFSET} exceeds 65535"
        )));
    }
    Ok((0..nodes)
        .map(|i| {
            let port = base_port + i;
            Planned {
                name: format!("node-{}", i + 1),
                cluster: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                admin: SocketAddr::from((Ipv4Addr::LOCALHOST, port + ADMIN_PORT_OFFSET)),
            }
        })
        .collect())
}

/// Refuses early, with the port named, instead of letting one node fail later.
pub fn check_ports_free(planned: &[Planned]) -> Result<(), Failure> {
    for p in planned {
        let taken = |what: &str, addr: SocketAddr, e: std::io::Error| {
            Failure::Runtime(format!(
                "port {} ({what} of {}) is taken: {e}; stop what uses it or pass --base-port",
                addr.port(),
                p.name
            ))
        };
        TcpListener::bind(p.cluster).map_err(|e| taken("cluster TCP", p.cluster, e))?;
        UdpSocket::bind(p.cluster).map_err(|e| taken("gossip UDP", p.cluster, e))?;
        TcpListener::bind(p.admin).map_err(|e| taken("admin HTTP", p.admin, e))?;
    }
    Ok(())
}

/// `<dir>/cluster.secret`, written with 32 random bytes (hex, mode 0600) if absent.
pub fn ensure_secret(dir: &Path) -> Result<PathBuf, Failure> {
    let path = dir.join("cluster.secret");
    if path.exists() {
        return Ok(path);
    }
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", path.display())))?;
    writeln!(file, "{hex}")
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::Runtime(format!("writing {}: {e}", path.display())))?;
    Ok(path)
}

fn open_log(path: &Path, mode: LogMode) -> Result<File, Failure> {
    let file = match mode {
        LogMode::Truncate => File::create(path),
        LogMode::Append => OpenOptions::new().create(true).append(true).open(path),
    };
    file.map_err(|e| Failure::Runtime(format!("creating {}: {e}", path.display())))
}

/// The `geoul node` command line of `p`, seeded with every other address in `all`,
/// its data in `dir/<name>` and its output in `dir/<name>.log`.
pub fn node_command(
    p: &Planned,
    all: &[SocketAddr],
    dir: &Path,
    secret: &Path,
    log_mode: LogMode,
) -> Result<Command, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Runtime(format!("cannot find the geoul binary: {e}")))?;
    let log = open_log(&p.log_path(dir), log_mode)?;
    let log_err = log
        .try_clone()
        .map_err(|e| Failure::Runtime(format!("log file: {e}")))?;
    let seeds: Vec<String> = all
        .iter()
        .filter(|a| **a != p.cluster)
        .map(ToString::to_string)
        .collect();
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--name")
        .arg(&p.name)
        .arg("--bind")
        .arg(p.cluster.to_string())
        .arg("--admin")
        .arg(p.admin.to_string())
        .arg("--data-dir")
        .arg(dir.join(&p.name))
        .arg("--cluster-secret-file")
        .arg(secret)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if !seeds.is_empty() {
        cmd.arg("--seeds").arg(seeds.join(","));
    }
    Ok(cmd)
}

/// Makes the child receive `signal` when the thread that spawned it exits.
/// Children are spawned from the main thread only, so this is when the
/// supervisor exits, however it exits (even by SIGKILL): no orphaned nodes.
pub fn signal_on_parent_death(cmd: &mut Command, signal: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts `p` as a child process (see [`node_command`]). If `geoul up` dies
/// without stopping it, the node gets SIGTERM and leaves gracefully.
pub fn spawn(
    p: Planned,
    all: &[SocketAddr],
    dir: &Path,
    secret: &Path,
    services: &[String],
) -> Result<Running, Failure> {
    let mut cmd = node_command(&p, all, dir, secret, LogMode::Truncate)?;
    cmd.arg("--services").arg(services.join(","));
    signal_on_parent_death(&mut cmd, libc::SIGTERM);
    let child = cmd
        .spawn()
        .map_err(|e| Failure::Runtime(format!("starting {}: {e}", p.name)))?;
    Ok(Running { planned: p, child })
}

/// Whether every node answers `/status`, sees every node alive, has synced
/// every table and sees every service healthy (consensus groups formed).
pub fn converged(nodes: &[Running]) -> bool {
    nodes.iter().all(|n| {
        let url = format!("http://{}", n.planned.admin);
        crate::status_cmd::fetch(&url)
            .is_ok_and(|s| s.count("alive") == nodes.len() && s.synced() && s.services_healthy())
    })
}

/// A flag raised by the first SIGINT or SIGTERM, for supervising loops to poll.
pub fn install_stop_flag() -> Result<Arc<AtomicBool>, Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    // A small runtime on its own thread turns SIGINT/SIGTERM into a flag the
    // supervising loop polls.
    let flag = stop.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("signal runtime: {e}")))?;
    std::thread::spawn(move || {
        runtime.block_on(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            flag.store(true, Ordering::SeqCst);
        });
    });
    Ok(stop)
}
