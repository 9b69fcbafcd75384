//! `geoul up`: a local cluster of N node processes of this same binary on loopback.
//!
//! Generates a cluster secret on first use (`<data-dir>/cluster.secret`, mode 0600),
//! refuses to start if any port is taken, prints one line per node once every node
//! sees every node alive, and stops all nodes cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cli::UpArgs;
use crate::local_cluster::{
    check_ports_free, converged, ensure_secret, install_stop_flag, plan, spawn, Running,
};
use crate::Failure;

/// Prints a line to stdout; a closed stdout (the reader went away) is not a
/// reason to abandon the nodes, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Like `say!`, to stderr.
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// How long stopped nodes get to leave gracefully before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub fn run(args: UpArgs) -> Result<(), Failure> {
    let planned = plan(args.nodes, args.base_port)?;
    check_ports_free(&planned)?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| Failure::Runtime(format!("creating {}: {e}", args.data_dir.display())))?;
    let secret = ensure_secret(&args.data_dir)?;
    let stop = install_stop_flag()?;
    let all: Vec<SocketAddr> = planned.iter().map(|p| p.cluster).collect();
    let mut nodes = Vec::new();
    for p in planned {
        nodes.push(spawn(p, &all, &args.data_dir, &secret, &args.services)?);
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
        say!(
            "node {} admin=http://{} pid={}",
            n.planned.name,
            n.planned.admin,
            n.child.id()
        );
    }
    say!(
        "cluster of {} up; logs in {}; Ctrl-C to stop",
        nodes.len(),
        args.data_dir.display()
    );
    let mut exited: Vec<String> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if report_exits(&mut nodes, &mut exited, &args.data_dir) {
            return Err(Failure::Runtime("every node has exited".into()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_all(nodes)
}

/// Once the cluster is up, a node that exits (a crash, or an operator's
/// `kill -9` while testing failover) is reported once and the others keep
/// running: a local cluster exists to watch exactly that. Returns whether every
/// node has exited.
fn report_exits(nodes: &mut [Running], exited: &mut Vec<String>, dir: &Path) -> bool {
    for n in nodes.iter_mut() {
        if exited.contains(&n.planned.name) {
            continue;
        }
        if let Ok(Some(status)) = n.child.try_wait() {
            warn!(
                "geoul: {} exited ({status}); the other nodes keep running; see {}",
                n.planned.name,
                n.planned.log_path(dir).display()
            );
            exited.push(n.planned.name.clone());
        }
    }
    exited.len() == nodes.len()
}

/// A node that exits while the cluster is forming is a start-up failure.
fn check_children(nodes: &mut [Running], dir: &Path) -> Result<(), Failure> {
    for n in nodes.iter_mut() {
        if let Ok(Some(status)) = n.child.try_wait() {
            return Err(Failure::Runtime(format!(
                "{} exited unexpectedly ({status}); see {}",
                n.planned.name,
                n.planned.log_path(dir).display()
            )));
        }
    }
    Ok(())
}

fn stop_all(mut nodes: Vec<Running>) -> Result<(), Failure> {
    for n in &mut nodes {
        // An exited (and reaped) child's pid may belong to someone else now.
        if !matches!(n.child.try_wait(), Ok(None)) {
            continue;
        }
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
                warn!("geoul: {} did not stop in time; killing it", n.planned.name);
                let _ = n.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    say!("cluster stopped");
    Ok(())
}
