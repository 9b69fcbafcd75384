//! Reading a geoul node's admin HTTP endpoints (`/status`, `/metrics`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use geoul_node::StatusReport;

/// An HTTP agent whose requests give up after `timeout`; it keeps connections
/// alive between polls.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

/// `GET /status` of the node whose admin address is `admin`.
pub fn status(agent: &ureq::Agent, admin: SocketAddr) -> anyhow::Result<StatusReport> {
    let url = format!("http://{admin}/status");
    agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .into_json()
        .with_context(|| format!("bad status document from {url}"))
}

/// `GET /metrics` of the node whose admin address is `admin`.
pub fn metrics(agent: &ureq::Agent, admin: SocketAddr) -> anyhow::Result<String> {
    let url = format!("http://{admin}/metrics");
    agent
        .get(&url)
        .call()
        .with_context(|| format!("GET {url}"))?
        .into_string()
        .with_context(|| format!("reading {url}"))
}

/// The value of the unlabelled sample `name` in OpenMetrics text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(name))
            .then(|| parts.next())
            .flatten()
            .and_then(|v| v.parse().ok())
    })
}

/// The state `observer` reports for member `name` (`absent` if unknown).
pub fn member_state<'a>(observer: &'a StatusReport, name: &str) -> &'a str {
    observer
        .members
        .iter()
        .find(|m| m.name == name)
        .map_or("absent", |m| m.state.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP geoul_membership_refutations Suspicions about this node that it refuted.
# TYPE geoul_membership_refutations counter
geoul_membership_refutations_total 3
geoul_membership_local_health_score 2
geoul_membership_members{state=\"alive\"} 5
# EOF
";

    #[test]
    fn reads_unlabelled_samples() {
        assert_eq!(
            metric_value(TEXT, "geoul_membership_refutations_total"),
            Some(3.0)
        );
        assert_eq!(
            metric_value(TEXT, "geoul_membership_local_health_score"),
            Some(2.0)
        );
        assert_eq!(metric_value(TEXT, "geoul_membership_refutations"), None);
        assert_eq!(metric_value(TEXT, "geoul_membership_members"), None);
    }
}
