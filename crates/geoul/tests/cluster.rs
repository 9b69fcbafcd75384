//! Real processes on loopback: the behaviours operators rely on, with `kill -9`,
//! SIGSTOP/SIGCONT, SIGTERM, wrong secrets and hostile bytes.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, read_lines, write_secret, Cluster, GEOUL, WAIT};

/// Default suspicion timeout of a node (MembershipConfig::default()).
const SUSPICION: Duration = Duration::from_millis(500);

/// Kills `geoul up` and the nodes it printed if the test fails midway.
struct UpGuard {
    up: std::process::Child,
    pids: Vec<i32>,
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        let _ = self.up.kill();
        let _ = self.up.wait();
        for &pid in &self.pids {
            // SAFETY: kill(2) on node processes this test saw started; a pid that
            // already exited and was reaped by `up` is at worst an ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn up_prints_one_line_per_node_and_every_node_sees_all_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A base port with 3 free cluster ports and 3 free admin ports above it.
    let base = loop {
        let p = free_port();
        if p < 60000
            && (0..3).all(|i| {
                std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", p + i)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", p + 1000 + i)).is_ok()
            })
        {
            break p;
        }
    };
    let up = Command::new(GEOUL)
        .args(["up", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn geoul up");
    let mut guard = UpGuard {
        up,
        pids: Vec::new(),
    };
    let lines = read_lines(&mut guard.up, "node ", 3, WAIT);
    assert_eq!(lines.len(), 3, "expected three node lines, got {lines:?}");
    let pids = &mut guard.pids;
    for line in &lines {
        // node <name> admin=http://127.0.0.1:<port> pid=<pid>
        let admin = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .expect("admin= field");
        let pid: i32 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("pid="))
            .and_then(|p| p.parse().ok())
            .expect("pid= field");
        pids.push(pid);
        let status: geoul_node::StatusReport = ureq::get(&format!("{admin}/status"))
            .call()
            .expect("status answers")
            .into_json()
            .expect("status JSON");
        assert_eq!(status.count("alive"), 3, "{status:?}");
        assert_eq!(status.pid as i32, pid);
    }
    // kill -9 of one node: `up` reports it and keeps the others running.
    let victim = guard.pids[2];
    // SAFETY: kill(2) on a node process `up` started for this test.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let first_admin = lines[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("admin="))
        .expect("admin= field")
        .to_string();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status: Option<geoul_node::StatusReport> = ureq::get(&format!("{first_admin}/status"))
            .call()
            .ok()
            .and_then(|r| r.into_json().ok());
        if status.is_some_and(|s| s.count("dead") == 1 && s.count("alive") == 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "killed node never reported dead"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        matches!(guard.up.try_wait(), Ok(None)),
        "`up` stopped because one node died"
    );
    // A second `up` on the same ports is refused with a clear message.
    let second = Command::new(GEOUL)
        .args(["up", "--nodes", "3", "--base-port", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .output()
        .expect("run second up");
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is taken"), "{err}");
    // Ctrl-C stops every node cleanly.
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(guard.up.id() as i32, libc::SIGINT) };
    let status = guard.up.wait().expect("up exits");
    assert_eq!(status.code(), Some(0));
    for &pid in &guard.pids {
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "node pid {pid} still running after Ctrl-C");
    }
    // All exited: nothing left for the guard to kill (and pids may be reused).
    guard.pids.clear();
}

#[test]
fn killed_node_is_declared_dead_and_rejoins_after_restart() {
    let mut c = Cluster::start(3);
    let (_, before) = c.node("node-1").sees("node-3").expect("node-1 sees node-3");
    c.node_mut("node-3").kill9();
    c.wait_others_see("node-3", "dead");
    // Ensure the restart is a new generation even within the same second.
    c.node_mut("node-3").start();
    c.wait_all_alive();
    for observer in ["node-1", "node-2"] {
        let (state, after) = c.node(observer).sees("node-3").expect("known");
        assert_eq!(state, "alive");
        assert!(
            after > before,
            "{observer}: incarnation {after} not above {before}"
        );
    }
}

#[test]
fn sigterm_leaves_gracefully_and_peers_record_left() {
    let mut c = Cluster::start(3);
    c.node("node-2").signal(libc::SIGTERM);
    let code = c.node_mut("node-2").wait_exit(WAIT);
    assert_eq!(code, Some(0), "node exits 0 on SIGTERM");
    c.wait_others_see("node-2", "left");
}

#[test]
fn short_stall_is_not_death_long_stall_is_and_the_node_comes_back() {
    let c = Cluster::start(3);
    // Half the suspicion timeout: nobody may be declared dead.
    c.node("node-3").signal(libc::SIGSTOP);
    std::thread::sleep(SUSPICION / 2);
    c.node("node-3").signal(libc::SIGCONT);
    let watch_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watch_until {
        for n in &c.nodes {
            if let Some(s) = n.status() {
                for m in &s.members {
                    assert!(
                        m.state != "dead" && m.state != "left",
                        "{} declared {} {} after a short stall\n{}",
                        n.name,
                        m.name,
                        m.state,
                        c.describe()
                    );
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Three times the timeout: declared dead, then refutes/rejoins after SIGCONT.
    c.node("node-3").signal(libc::SIGSTOP);
    std::thread::sleep(SUSPICION * 3);
    c.wait_others_see("node-3", "dead");
    c.node("node-3").signal(libc::SIGCONT);
    c.wait_all_alive();
}

#[test]
fn node_with_wrong_secret_is_refused_and_cluster_is_unaffected() {
    let mut c = Cluster::start(3);
    let wrong = write_secret(
        c.dir.path(),
        "wrong",
        "a-completely-different-secret-987654",
    );
    let mut intruder = support::NodeProc {
        name: "intruder".into(),
        cluster: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        admin: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
        dir: c.dir.path().to_path_buf(),
        child: None,
        secret_file: wrong,
        seeds: c.nodes.iter().map(|n| n.cluster).collect(),
        netns: None,
        extra_args: Vec::new(),
    };
    intruder.start();
    support::wait_for(
        "cluster counts the intruder's datagrams as auth failures",
        || {
            c.nodes.iter().any(|n| {
                n.metrics().is_some_and(|m| {
                    m.lines().any(|l| {
                        l.starts_with("geoul_membership_auth_failures_total ") && !l.ends_with(" 0")
                    })
                })
            })
        },
        &c,
    );
    std::thread::sleep(Duration::from_secs(1));
    for n in &c.nodes {
        let s = n.status().expect("status");
        assert_eq!(
            s.members.len(),
            3,
            "{} admitted the intruder: {s:?}",
            n.name
        );
        assert_eq!(s.count("alive"), 3);
    }
    let s = intruder.status().expect("intruder status");
    assert_eq!(s.members.len(), 1, "intruder learned members: {s:?}");
    // The cluster keeps working: a member can still leave and rejoin.
    c.node_mut("node-1").kill9();
    c.wait_others_see("node-1", "dead");
}

#[test]
fn hostile_bytes_close_only_that_connection() {
    let c = Cluster::start(1);
    let node = c.node("node-1");
    // Random bytes: closed.
    let mut garbage = TcpStream::connect(node.cluster).expect("connect");
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise);
    assert_closed(&mut garbage, "random bytes");
    // A valid preamble followed by an oversized length prefix: closed.
    let mut oversized = TcpStream::connect(node.cluster).expect("connect");
    oversized
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut hello = b"GEOL".to_vec();
    hello.extend_from_slice(&1u16.to_be_bytes());
    hello.extend_from_slice(&4u16.to_be_bytes());
    hello.extend_from_slice(b"test");
    let _ = oversized.write_all(&hello);
    let _ = oversized.write_all(&u32::MAX.to_be_bytes());
    let _ = oversized.write_all(&[0u8; 1024]);
    assert_closed(&mut oversized, "oversized length prefix");
    // The node still serves.
    let s = node.status().expect("status still answers");
    assert_eq!(s.count("alive"), 1);
    let metrics = node.metrics().expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("geoul_transport_protocol_errors_total ") && !l.ends_with(" 0")),
        "protocol errors not counted:\n{metrics}"
    );
}

/// Reads until the peer closes (a reject message may come first).
fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 256];
    for _ in 0..64 {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(_) => return, // reset by the peer: closed
        }
    }
    panic!("connection sending {what} was left open");
}

#[test]
fn invalid_config_is_one_line_naming_the_field_with_exit_code_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = write_secret(dir.path(), "s", "0123456789abcdef0123");
    let cases: [(&[&str], &str); 4] = [
        (&["--name", "n1", "--bind", "not-an-address"], "bind"),
        (&["--name", "bad name"], "name"),
        (&["--name", "n1", "--seeds", "nohost"], "seeds"),
        (
            &[
                "--name",
                "n1",
                "--admin",
                "127.0.0.1:7001",
                "--bind",
                "127.0.0.1:7001",
            ],
            "admin",
        ),
    ];
    for (args, field) in cases {
        let out = Command::new(GEOUL)
            .arg("node")
            .arg("--cluster-secret-file")
            .arg(&secret)
            .args(args)
            .output()
            .expect("run geoul node");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("invalid config: {field}:")),
            "{args:?}: {err}"
        );
    }
    let short = write_secret(dir.path(), "short", "tiny");
    let out = Command::new(GEOUL)
        .args(["node", "--name", "n1", "--cluster-secret-file"])
        .arg(&short)
        .env_remove("GEOUL_CLUSTER_SECRET")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cluster_secret_file"));
}

#[test]
fn status_command_prints_a_table_or_json_and_fails_cleanly() {
    let c = Cluster::start(2);
    let admin = c.node("node-1").admin_url();
    let out = Command::new(GEOUL)
        .args(["status", "--admin", &admin])
        .output()
        .expect("run geoul status");
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("NAME") && table.contains("STATE"), "{table}");
    for name in ["node-1", "node-2"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(name) && l.contains(" alive ")),
            "{name} alive row missing:\n{table}"
        );
    }
    let out = Command::new(GEOUL)
        .args(["status", "--json", "--admin", &admin])
        .output()
        .expect("run geoul status --json");
    assert_eq!(out.status.code(), Some(0));
    let report: geoul_node::StatusReport =
        serde_json::from_slice(&out.stdout).expect("status --json is the /status document");
    assert_eq!(report.node, "node-1");
    assert_eq!(report.count("alive"), 2);
    let dead_admin = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(GEOUL)
        .args(["status", "--admin", &dead_admin])
        .output()
        .expect("run geoul status");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
}
