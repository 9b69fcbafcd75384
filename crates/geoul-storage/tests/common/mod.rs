//! Helpers shared by the integration tests: a scratch store, whole-table reads, and
//! a child process (this test binary re-executed) that writes until it is killed.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use geoul_storage::{DiskStore, StorageError};

/// A table's contents, read with `load`.
pub type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

/// Reads a whole table into a map.
pub fn read_table(store: &DiskStore, table: &str) -> Result<Contents, StorageError> {
    let mut out = Contents::new();
    let count = store.load(table, |k, v| {
        out.insert(k.to_vec(), v.to_vec());
        Ok(())
    })?;
    assert_eq!(
        count,
        out.len() as u64,
        "load's count matches what it visited"
    );
    Ok(out)
}

/// Re-runs this test binary as a child that runs only `test_name`, with `env_var`
/// set to `dir`, and its stdout piped.
pub fn spawn_child(test_name: &str, env_var: &str, dir: &Path) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_var, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    (child, BufReader::new(stdout))
}

/// Reads the child's stdout until a line `"{prefix} {n}"` with `n >= at_least`
/// arrives; returns the highest number seen per prefix in `watched`.
pub fn read_until(
    out: &mut BufReader<ChildStdout>,
    prefix: &str,
    at_least: u64,
    watched: &mut BTreeMap<String, u64>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read child stdout");
        assert!(n > 0, "child exited before {prefix} {at_least}");
        if record_line(&line, watched).is_some_and(|(word, num)| word == prefix && num >= at_least)
        {
            return;
        }
    }
}

/// `kill -9`s the child, reaps it, and reads what it printed before dying: a line
/// still in the pipe was printed after its batch was acknowledged, so it counts.
pub fn kill9(
    mut child: Child,
    mut out: BufReader<ChildStdout>,
    watched: &mut BTreeMap<String, u64>,
) {
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).expect("drain child stdout") == 0 {
            return;
        }
        record_line(&line, watched);
    }
}

/// Parses `"WORD n"` (other lines, such as the test harness's, are ignored) and keeps
/// the highest `n` per word.
fn record_line<'l>(line: &'l str, watched: &mut BTreeMap<String, u64>) -> Option<(&'l str, u64)> {
    let mut words = line.split_whitespace();
    let word = words.next()?;
    let num = words.next()?.parse::<u64>().ok()?;
    let best = watched.entry(word.to_string()).or_insert(0);
    *best = (*best).max(num);
    Some((word, num))
}
