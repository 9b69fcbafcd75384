//! `geoul status`: the member table of one node's view, and its tables' slot
//! states and sync progress (`--watch` follows a sync to its end).

use std::time::Duration;

use geoul_node::StatusReport;

use crate::cli::StatusArgs;
use crate::Failure;

/// How long the CLI waits for an admin endpoint.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches `/status` from an admin URL.
pub fn fetch(admin: &str) -> Result<StatusReport, String> {
    let url = format!("{}/status", admin.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new().timeout(ADMIN_TIMEOUT).build();
    let response = agent
        .get(&url)
        .call()
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    response
        .into_json::<StatusReport>()
        .map_err(|e| format!("bad status document from {url}: {e}"))
}

pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let report = fetch(&args.admin).map_err(Failure::Runtime)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", render_table(&report));
    print!("{}", crate::status_tables::render(&report));
    if args.watch {
        watch(&args.admin, report)?;
    }
    Ok(())
}

/// Redraws the tables section every second until every slot is synced: in
/// place on a terminal, one block per second otherwise.
fn watch(admin: &str, mut report: StatusReport) -> Result<(), Failure> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    let mut lines = crate::status_tables::render(&report).lines().count();
    while !report.synced() {
        std::thread::sleep(Duration::from_secs(1));
        report = fetch(admin).map_err(Failure::Runtime)?;
        let text = crate::status_tables::render(&report);
        let mut out = std::io::stdout().lock();
        if tty && lines > 0 {
            // Up to the first line of the previous block, clear to the end.
            let _ = write!(out, "\x1b[{lines}F\x1b[J");
        }
        let _ = write!(out, "{text}");
        let _ = out.flush();
        lines = text.lines().count();
    }
    Ok(())
}

/// `generation.rejoins.refutations`: the parts the single JSON number packs
/// (see `NodeId::incarnation`), which people compare more easily.
fn readable_incarnation(incarnation: u64) -> String {
    format!(
        "{}.{}.{}",
        incarnation >> 32,
        (incarnation >> 16) & 0xffff,
        incarnation & 0xffff
    )
}

/// The human table.
pub fn render_table(report: &StatusReport) -> String {
    let mut out = format!(
        "node {} ({}) pid {} up {}s, local health {}\n",
        report.node, report.addr, report.pid, report.uptime_s, report.local_health_score
    );
    let rows: Vec<[String; 5]> = report
        .members
        .iter()
        .map(|m| {
            let services = if m.services.is_empty() {
                "-".to_string()
            } else {
                m.services
                    .iter()
                    .map(|(name, s)| format!("{name}:{}", s.health))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            [
                m.name.clone(),
                m.addr.clone(),
                m.state.clone(),
                readable_incarnation(m.incarnation),
                services,
            ]
        })
        .collect();
    let header = ["NAME", "ADDR", "STATE", "INCARNATION", "SERVICES"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    out.push_str(&line(header));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    let counts: Vec<String> = ["alive", "suspect", "dead", "left"]
        .iter()
        .map(|s| format!("{} {s}", report.count(s)))
        .collect();
    out.push_str(&format!("{}\n", counts.join(", ")));
    out
}
