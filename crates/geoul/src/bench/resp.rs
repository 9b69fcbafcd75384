//! A minimal Redis client (RESP2 over TCP) and the `CLUSTER NODES` / `INFO` parsers
//! the Redis side of the benchmark needs.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// Largest bulk reply accepted (a `CLUSTER NODES` of a few nodes is < 1 KiB).
const MAX_BULK_BYTES: usize = 16 << 20;

/// One reply of the kinds the benchmark's commands return.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
}

/// `args` as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = r.read_line(&mut line).context("reading a reply")?;
    if n == 0 {
        bail!("connection closed");
    }
    let Some(line) = line.strip_suffix("\r\n") else {
        bail!("reply line without CRLF: {line:?}");
    };
    Ok(line.to_string())
}

/// Reads one reply; arrays are refused (no command used here returns one).
pub fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    let line = read_line(r)?;
    let mut chars = line.chars();
    let kind = chars.next().ok_or_else(|| anyhow!("empty reply line"))?;
    let rest = chars.as_str();
    match kind {
        '+' => Ok(Reply::Simple(rest.to_string())),
        '-' => Ok(Reply::Error(rest.to_string())),
        ':' => Ok(Reply::Integer(rest.parse().context("integer reply")?)),
        '$' => read_bulk(r, rest),
        other => bail!("unsupported reply type {other:?}"),
    }
}

fn read_bulk(r: &mut impl BufRead, len: &str) -> anyhow::Result<Reply> {
    let len: i64 = len.parse().context("bulk length")?;
    if len < 0 {
        return Ok(Reply::Bulk(None));
    }
    let len = usize::try_from(len).context("bulk length")?;
    if len > MAX_BULK_BYTES {
        bail!("bulk reply of {len} bytes exceeds {MAX_BULK_BYTES}");
    }
    let mut buf = vec![0; len + 2];
    r.read_exact(&mut buf).context("reading a bulk reply")?;
    if !buf.ends_with(b"\r\n") {
        bail!("bulk reply without CRLF");
    }
    buf.truncate(len);
    let text = String::from_utf8(buf).context("bulk reply is not UTF-8")?;
    Ok(Reply::Bulk(Some(text)))
}

/// One connection to a Redis server.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    /// Connects with `timeout` for the connect and every later read and write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .with_context(|| format!("connecting to redis at {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        Ok(Conn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Runs a command whose reply is text (status or bulk string).
    pub fn text(&mut self, args: &[&str]) -> anyhow::Result<String> {
        self.writer.write_all(&encode(args)).context("sending")?;
        match read_reply(&mut self.reader)? {
            Reply::Simple(s) | Reply::Bulk(Some(s)) => Ok(s),
            Reply::Error(e) => bail!("{}: {e}", args.join(" ")),
            other => bail!("{}: unexpected reply {other:?}", args.join(" ")),
        }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLine {
    pub id: String,
    /// `ip:port@busport[,hostname]` as printed.
    pub addr: String,
    pub flags: Vec<String>,
    /// `link-state` is `connected`.
    pub connected: bool,
}

impl NodeLine {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Marked failed by the cluster (`fail`, not merely `fail?`).
    pub fn failed(&self) -> bool {
        self.has_flag("fail")
    }

    /// Suspected by this node (`fail?`, Redis's PFAIL).
    pub fn suspected(&self) -> bool {
        self.has_flag("fail?")
    }

    /// Connected and carrying no failure or handshake flag.
    pub fn healthy(&self) -> bool {
        self.connected
            && !["fail", "fail?", "handshake", "noaddr"]
                .iter()
                .any(|f| self.has_flag(f))
    }
}

/// Parses `CLUSTER NODES` output:
/// `<id> <addr> <flags> <master> <ping-sent> <pong-recv> <epoch> <link-state> <slots>...`.
pub fn parse_cluster_nodes(text: &str) -> anyhow::Result<Vec<NodeLine>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                bail!("CLUSTER NODES line with {} fields: {line:?}", fields.len());
            }
            Ok(NodeLine {
                id: fields[0].to_string(),
                addr: fields[1].to_string(),
                flags: fields[2].split(',').map(str::to_string).collect(),
                connected: fields[7] == "connected",
            })
        })
        .collect()
}

/// The value of `key` in `INFO` / `CLUSTER INFO` output (`key:value` lines).
pub fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master,fail? - 0 1426238316232 2 disconnected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 1426238318243 1426238316232 3 disconnected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn parses_cluster_nodes_flags_and_link_state() {
        let lines = parse_cluster_nodes(NODES).expect("valid");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].addr, "127.0.0.1:30004@31004,hostname4");
        assert!(lines[0].has_flag("slave") && lines[0].healthy());
        assert!(lines[1].suspected() && !lines[1].failed() && !lines[1].connected);
        assert!(lines[2].failed() && !lines[2].suspected());
        assert_eq!(lines[2].id, "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f");
        assert!(lines[3].has_flag("myself") && lines[3].healthy());
    }

    #[test]
    fn fail_question_mark_is_not_fail() {
        let line = "abc 127.0.0.1:1@2 master,fail? - 0 0 1 connected";
        let parsed = parse_cluster_nodes(line).expect("valid");
        assert!(!parsed[0].failed());
        assert!(!parsed[0].healthy());
    }

    #[test]
    fn short_cluster_nodes_line_is_an_error() {
        assert!(parse_cluster_nodes("abc 127.0.0.1:1@2 master").is_err());
        assert_eq!(parse_cluster_nodes("\n").expect("empty").len(), 0);
    }

    #[test]
    fn info_fields() {
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\n";
        assert_eq!(info_field(info, "cluster_state"), Some("ok"));
        assert_eq!(info_field(info, "cluster_slots_assigned"), Some("16384"));
        assert_eq!(info_field(info, "cluster_slots"), None);
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let bytes = encode(&["CLUSTER", "NODES"]);
        assert_eq!(bytes, b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n");
    }

    #[test]
    fn reads_each_reply_kind() {
        let mut r = Cursor::new(&b"+PONG\r\n-ERR nope\r\n:42\r\n$5\r\nab\r\nc\r\n$-1\r\n"[..]);
        assert_eq!(
            read_reply(&mut r).expect("simple"),
            Reply::Simple("PONG".into())
        );
        assert_eq!(
            read_reply(&mut r).expect("error"),
            Reply::Error("ERR nope".into())
        );
        assert_eq!(read_reply(&mut r).expect("int"), Reply::Integer(42));
        assert_eq!(
            read_reply(&mut r).expect("bulk"),
            Reply::Bulk(Some("ab\r\nc".into()))
        );
        assert_eq!(read_reply(&mut r).expect("nil"), Reply::Bulk(None));
        assert!(read_reply(&mut r).is_err(), "end of stream");
    }

    #[test]
    fn refuses_malformed_replies() {
        for bad in [
            &b"*1\r\n"[..],
            b"+no crlf",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"?\r\n",
        ] {
            assert!(read_reply(&mut Cursor::new(bad)).is_err(), "{bad:?}");
        }
    }
}
