//! The tables part of `geoul status`: slot states and sync progress per table,
//! with a progress bar, rate and ETA while a sync runs.
//!
//! Owns: turning `/status` table entries into lines for people. Does not own:
//! fetching (`status_cmd`) or the numbers (the node).

use geoul_node::status::TableStatus;
use geoul_node::StatusReport;

/// Width of the progress bar in characters.
const BAR_WIDTH: usize = 24;

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn bar(done: u32, total: u32) -> String {
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        (done as usize * BAR_WIDTH / total as usize).min(BAR_WIDTH)
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

/// One line for one table.
pub fn table_line(name: &str, t: &TableStatus) -> String {
    let s = &t.slots;
    let mut line = format!(
        "{name}: {} entries, slots synced {} syncing {} leaving {}",
        human_count(t.entries),
        s.synced,
        s.syncing,
        s.leaving + s.stale
    );
    let p = &t.sync;
    if p.slots_total == 0 {
        return line;
    }
    let end = if p.finished_ms >= p.started_ms && p.slots_done >= p.slots_total {
        p.finished_ms
    } else {
        t.now_ms
    };
    let elapsed_ms = end.saturating_sub(p.started_ms).max(1);
    let rate = p.bytes as f64 * 1000.0 / elapsed_ms as f64;
    let pct = u64::from(p.slots_done) * 100 / u64::from(p.slots_total.max(1));
    line.push_str(&format!(
        "\n  sync {} {pct:>3}%  {}/{} slots  {} entries  {}  {}/s",
        bar(p.slots_done, p.slots_total),
        p.slots_done,
        p.slots_total,
        human_count(p.entries),
        human_bytes(p.bytes),
        human_bytes(rate as u64),
    ));
    if p.slots_done < p.slots_total && p.slots_done > 0 {
        let left = u64::from(p.slots_total - p.slots_done);
        let eta_s = elapsed_ms * left / u64::from(p.slots_done) / 1000;
        line.push_str(&format!("  ETA {eta_s}s"));
    } else if p.slots_done >= p.slots_total {
        line.push_str(&format!("  done in {:.1}s", elapsed_ms as f64 / 1000.0));
    }
    line
}

/// The tables section (empty when the node declares no table).
pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    for (name, t) in &report.tables {
        out.push_str(&table_line(name, t));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use geoul_replication::sync::{StateCounts, SyncProgress};

    fn status(done: u32, total: u32, now_ms: u64) -> TableStatus {
        TableStatus {
            slots: StateCounts {
                synced: done,
                syncing: total - done,
                ..StateCounts::default()
            },
            sync: SyncProgress {
                slots_total: total,
                slots_done: done,
                entries: 250_000,
                bytes: 30_000_000,
                entries_expected: 0,
                started_ms: 1_000,
                finished_ms: 0,
            },
            entries: 250_000,
            digest: "0".into(),
            now_ms,
        }
    }

    #[test]
    fn a_running_sync_shows_bar_rate_and_eta() {
        let line = table_line("kv", &status(1024, 4096, 11_000));
        assert!(line.contains("[######------------------]  25%"), "{line}");
        assert!(line.contains("30.0 MB  3.0 MB/s"), "{line}");
        assert!(line.contains("ETA 30s"), "{line}");
    }

    #[test]
    fn a_finished_sync_says_how_long_it_took() {
        let mut t = status(4096, 4096, 50_000);
        t.sync.finished_ms = 5_000;
        let line = table_line("kv", &t);
        assert!(
            line.contains("100%") && line.contains("done in 4.0s"),
            "{line}"
        );
    }
}
