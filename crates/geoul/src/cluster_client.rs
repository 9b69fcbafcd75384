//! How client commands reach a cluster: which addresses, which secret, one
//! authenticated connection, requests with deadlines, one-line errors.
//!
//! Owns: resolving `--cluster` / `GEOUL_CLUSTER` and the cluster secret
//! (`--cluster-secret-file`, `GEOUL_CLUSTER_SECRET`, `geoul-data/cluster.secret`),
//! connecting to the first reachable address, mapping transport errors to
//! [`Failure`]s, and the duration syntax of client flags (`500ms`, `30s`, `1h30m`).
//! Does not own: what requests mean (`kv_cmd`) or the wire (geoul-node's `rpc`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use geoul_client::{CallError, Client, ClientOptions, ConnectError, ServiceRef};
use geoul_node::config::SECRET_ENV;
use geoul_node::kv::{KvRequest, KvResponse, KV, KV_TIMEOUT_MAX};
use geoul_transport::{ClusterSecret, TransportConfig};

use crate::cli::ClusterArgs;
use crate::Failure;

/// Address used when neither `--cluster` nor `GEOUL_CLUSTER` is given: node-1 of
/// `geoul up`.
pub const DEFAULT_CLUSTER: &str = "127.0.0.1:7001";

/// Secret file used when neither a flag nor the environment names one: where
/// `geoul up` (default `--data-dir`) writes it.
pub const DEFAULT_SECRET_FILE: &str = "geoul-data/cluster.secret";

/// TCP connect timeout per address: a reachable node answers a SYN in well under
/// a second even across a region; longer only delays trying the next address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Noise handshake timeout per address: one round trip plus key derivation.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The hello string clients send in the preamble (shown in node logs).
const CLIENT_HELLO: &str = "cli";

/// A connection to the cluster: learns the membership from the first
/// reachable address and routes each request to the node that holds its key.
pub struct ClusterClient {
    kv: ServiceRef,
}

impl ClusterClient {
    /// Resolves the targets and the secret of `args`, then connects to the first
    /// reachable address. Usage errors (bad address, no secret) come first.
    pub async fn connect(args: &ClusterArgs) -> Result<Self, Failure> {
        let targets = targets(args)?;
        let secret = load_secret(args)?;
        Self::connect_to(&targets, &secret).await
    }

    /// Connects through `targets` (any one that answers with `secret` will do);
    /// the error lists why each one failed.
    pub async fn connect_to(targets: &[String], secret: &ClusterSecret) -> Result<Self, Failure> {
        let client = connect_client(targets, secret).await?;
        Ok(Self {
            kv: client.service(KV),
        })
    }

    /// Sends a kv request and waits for its answer (deadline: the request's).
    pub async fn kv(&self, request: KvRequest) -> Result<KvResponse, Failure> {
        geoul_node::kv::call(&self.kv, &request)
            .await
            .map_err(|e| Failure::Runtime(one_line(&call_error(e))))
    }
}

/// Connects a [`Client`] through `targets`.
pub async fn connect_client(targets: &[String], secret: &ClusterSecret) -> Result<Client, Failure> {
    let options = ClientOptions {
        transport: TransportConfig {
            hello: CLIENT_HELLO.into(),
            connect_timeout: CONNECT_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            ..TransportConfig::default()
        },
    };
    let mut seeds = Vec::new();
    let mut failures = Vec::new();
    for target in targets {
        match tokio::net::lookup_host(target.as_str()).await {
            Ok(addrs) => seeds.extend(addrs),
            Err(e) => failures.push(format!("{target}: cannot resolve: {e}")),
        }
    }
    if seeds.is_empty() {
        if failures.is_empty() {
            failures.push("no address given".into());
        }
        return Err(Failure::Runtime(one_line(&format!(
            "cannot reach the cluster: {}",
            failures.join("; ")
        ))));
    }
    Client::connect(&seeds, secret, options)
        .await
        .map_err(|e| match e {
            ConnectError::Unreachable(why) => {
                failures.push(why);
                Failure::Runtime(one_line(&format!(
                    "cannot reach the cluster: {}",
                    failures.join("; ")
                )))
            }
            other => Failure::Runtime(one_line(&other.to_string())),
        })
}

/// A failed call as one sentence.
fn call_error(e: CallError) -> String {
    match e {
        CallError::Rejected { reason, .. } => reason,
        CallError::Unavailable(reason) => reason,
        CallError::Indeterminate(why) => {
            format!("no answer ({why}); the request may or may not have been applied")
        }
        CallError::DeadlineExceeded(t) => format!(
            "no answer within {}; the request may or may not have been applied",
            format_duration(t)
        ),
        other => other.to_string(),
    }
}

/// Collapses line breaks so every error stays on one line.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The addresses to try, in order.
pub fn targets(args: &ClusterArgs) -> Result<Vec<String>, Failure> {
    let given: Vec<String> = match &args.cluster {
        Some(list) => list
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => vec![DEFAULT_CLUSTER.to_string()],
    };
    if given.is_empty() {
        return Err(Failure::Usage(
            "--cluster: no address given (expected HOST:PORT[,HOST:PORT...])".into(),
        ));
    }
    for target in &given {
        check_host_port(target)
            .map_err(|why| Failure::Usage(format!("--cluster: {target:?} {why}")))?;
    }
    Ok(given)
}

/// Checks the `HOST:PORT` shape (`[v6]:PORT` for IPv6) without resolving.
fn check_host_port(target: &str) -> Result<(), &'static str> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or("is not HOST:PORT (the port is missing)")?;
    if host.is_empty() {
        return Err("is not HOST:PORT (the host is missing)");
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err("is not HOST:PORT (write IPv6 addresses as [addr]:port)");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("is not HOST:PORT (the port must be 1-65535)"),
    }
}

/// The cluster secret: `--cluster-secret-file`, else `GEOUL_CLUSTER_SECRET`, else
/// [`DEFAULT_SECRET_FILE`] if it exists. Anything wrong is a usage error.
pub fn load_secret(args: &ClusterArgs) -> Result<ClusterSecret, Failure> {
    if let Some(path) = &args.cluster_secret_file {
        return load_secret_file(path, "--cluster-secret-file");
    }
    if let Some(value) = std::env::var_os(SECRET_ENV) {
        let bytes = value.into_encoded_bytes();
        return ClusterSecret::from_bytes(&bytes)
            .map_err(|e| Failure::Usage(format!("{SECRET_ENV}: {e}")));
    }
    let default = PathBuf::from(DEFAULT_SECRET_FILE);
    if default.exists() {
        return load_secret_file(&default, "cluster secret");
    }
    Err(Failure::Usage(format!(
        "no cluster secret: pass --cluster-secret-file FILE, set {SECRET_ENV}, \
         or run from the directory where `geoul up` wrote {DEFAULT_SECRET_FILE}"
    )))
}

fn load_secret_file(path: &Path, what: &str) -> Result<ClusterSecret, Failure> {
    ClusterSecret::load_file(path).map_err(|e| Failure::Usage(format!("{what}: {e}")))
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `1d` and sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{text:?} is not a duration ({why}; e.g. 500ms, 30s, 5m, 1h30m)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit; use ms, s, m, h or d")),
        };
        rest = &rest[unit_len..];
        let ms = number.checked_mul(unit_ms).ok_or_else(|| bad("too long"))?;
        total = total
            .checked_add(Duration::from_millis(ms))
            .ok_or_else(|| bad("too long"))?;
    }
    Ok(total)
}

/// A `--ttl`: a positive duration.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err("a TTL must be positive (omit --ttl for no expiry)".into());
    }
    Ok(d)
}

/// A `--timeout`: positive and at most what the server honours.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d > KV_TIMEOUT_MAX {
        return Err(format!(
            "must be between 1ms and {}",
            format_duration(KV_TIMEOUT_MAX)
        ));
    }
    Ok(d)
}

/// `450ms`, `12.3s`, `5m 3s`, `2h 5m 3s`, `3d 2h 5m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (days, hours, mins, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m {s}s"),
        (0, _) => format!("{hours}h {mins}m {s}s"),
        _ => format!("{days}d {hours}h {mins}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("30s"), Ok(ms(30_000)));
        assert_eq!(parse_duration("5m"), Ok(ms(300_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("1d"), Ok(ms(86_400_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1s500ms"), Ok(ms(1_500)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("30", "missing unit"),
            ("s", "expected a number"),
            ("5parsecs", "unknown unit"),
            ("1.5s", "unknown unit"),
            ("-1s", "expected a number"),
            ("99999999999999999999s", "number too large"),
            ("999999999999999999d", "too long"),
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains("e.g. 500ms"), "{err}");
        }
    }

    #[test]
    fn ttl_and_timeout_bounds() {
        assert!(parse_ttl("0s").is_err());
        assert_eq!(parse_ttl("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_timeout("0ms").is_err());
        assert!(parse_timeout("61s").is_err());
        assert_eq!(parse_timeout("60s"), Ok(KV_TIMEOUT_MAX));
    }

    #[test]
    fn durations_format() {
        let ms = Duration::from_millis;
        assert_eq!(format_duration(ms(450)), "450ms");
        assert_eq!(format_duration(ms(12_345)), "12.3s");
        assert_eq!(format_duration(ms(303_000)), "5m 3s");
        assert_eq!(format_duration(ms(7_503_000)), "2h 5m 3s");
        assert_eq!(format_duration(ms(266_700_000)), "3d 2h 5m");
    }

    #[test]
    fn host_port_shapes() {
        assert!(check_host_port("127.0.0.1:7001").is_ok());
        assert!(check_host_port("node-1.example:7001").is_ok());
        assert!(check_host_port("[::1]:7001").is_ok());
        assert!(check_host_port("127.0.0.1").is_err());
        assert!(check_host_port(":7001").is_err());
        assert!(check_host_port("::1:7001").is_err());
        assert!(check_host_port("host:0").is_err());
        assert!(check_host_port("host:http").is_err());
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(one_line("a\nb\r\n c \n"), "a b c");
    }
}
