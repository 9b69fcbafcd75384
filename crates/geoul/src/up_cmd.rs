//! `geoul up`: a local cluster of N node processes of this same binary on loopback.
//!
//! Generates a cluster secret on first use (`<data-dir>/cluster.secret`, mode 0600),
//! refuses to start if any port is taken, prints one line per node once every node
//! sees every node alive, and stops all nodes cleanly on Ctrl-C or SIGTERM.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{UpArgs, ADMIN_PORT_OFFSET};
use crate::Failure;

/// How long stopped nodes get to leave gracefully before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

struct Planned {
    name: String,
    cluster: SocketAddr,
    admin: SocketAddr,
}

/// A started node process, killed on drop if still running.
struct Running {
    planned: Planned,
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn plan(args: &UpArgs) -> Result<Vec<Planned>, Failure> {
    let last = u32::from(args.base_port) + u32::from(args.nodes) - 1 + u32::from(ADMIN_PORT_OFFSET);
    if last > u32::from(u16::MAX) {
        return Err(Failure::Usage(format!(
            "invalid config: base_port: {} + nodes + {ADMIN_PORT_OFFSET} exceeds 65535",
            args.base_port
        )));
    }
    Ok((0..args.nodes)
        .map(|i| {
            let port = args.base_port + i;
            Planned {
                name: format!("node-{}", i + 1),
                cluster: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                admin: SocketAddr::from((Ipv4Addr::LOCALHOST, port + ADMIN_PORT_OFFSET)),
            }
        })
        .collect())
}

/// Refuses early, with the port named, instead of letting one node fail later.
fn check_ports_free(planned: &[Planned]) -> Result<(), Failure> {
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

fn ensure_secret(dir: &Path) -> Result<PathBuf, Failure> {
    let path = dir.join("cluster.secret");
    if path.exists() {
        return Ok(path);
    }
    let secret: [u8; 32] = rand::random();
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
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

fn spawn(p: Planned, all: &[SocketAddr], dir: &Path, secret: &Path) -> Result<Running, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::Runtime(format!("cannot find the geoul binary: {e}")))?;
    let log_path = dir.join(format!("{}.log", p.name));
    let log = File::create(&log_path)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", log_path.display())))?;
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
    let child = cmd
        .spawn()
        .map_err(|e| Failure::Runtime(format!("starting {}: {e}", p.name)))?;
    Ok(Running { planned: p, child })
}

fn converged(nodes: &[Running]) -> bool {
    nodes.iter().all(|n| {
        let url = format!("http://{}", n.planned.admin);
        crate::status_cmd::fetch(&url).is_ok_and(|s| s.count("alive") == nodes.len())
    })
}

fn install_stop_flag() -> Result<Arc<AtomicBool>, Failure> {
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

pub fn run(args: UpArgs) -> Result<(), Failure> {
    let planned = plan(&args)?;
    check_ports_free(&planned)?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", args.data_dir.display())))?;
    let secret = ensure_secret(&args.data_dir)?;
    let stop = install_stop_flag()?;
    let all: Vec<SocketAddr> = planned.iter().map(|p| p.cluster).collect();
    let mut nodes = Vec::new();
    for p in planned {
        nodes.push(spawn(p, &all, &args.data_dir, &secret)?);
    }
    let deadline = Instant::now() + Duration::from_secs(args.converge_timeout_s);
    while !converged(&nodes) {
        if stop.load(Ordering::SeqCst) {
            return stop_all(nodes);
        }
        check_children(&mut nodes, &args.data_dir)?;
        if Instant::now() > deadline {
            return Err(Failure::Runtime(format!(
                "cluster did not converge within {}s; see logs in {}",
                args.converge_timeout_s,
                args.data_dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in &nodes {
        println!(
            "node {} admin=http://{} pid={}",
            n.planned.name,
            n.planned.admin,
            n.child.id()
        );
    }
    println!(
        "cluster of {} up; logs in {}; Ctrl-C to stop",
        nodes.len(),
        args.data_dir.display()
    );
    while !stop.load(Ordering::SeqCst) {
        check_children(&mut nodes, &args.data_dir)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all(nodes)
}

/// A node that exits on its own is reported, and the cluster is stopped.
fn check_children(nodes: &mut [Running], dir: &Path) -> Result<(), Failure> {
    for n in nodes.iter_mut() {
        if let Ok(Some(status)) = n.child.try_wait() {
            return Err(Failure::Runtime(format!(
                "{} exited unexpectedly ({status}); see {}",
                n.planned.name,
                dir.join(format!("{}.log", n.planned.name)).display()
            )));
        }
    }
    Ok(())
}

fn stop_all(mut nodes: Vec<Running>) -> Result<(), Failure> {
    for n in &nodes {
        if let Ok(pid) = i32::try_from(n.child.id()) {
            // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for n in &mut nodes {
        while let Ok(None) = n.child.try_wait() {
            if Instant::now() > deadline {
                eprintln!("geoul: {} did not stop in time; killing it", n.planned.name);
                let _ = n.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("cluster stopped");
    Ok(())
}
