//! An async RESP2 connection for the Redis side of `bench kv`: commands with
//! binary-safe arguments, pipelined in one write, replies read one at a time.
//! (The blocking client in `resp.rs` serves the cluster checks of `bench detect`.)

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Largest bulk reply accepted (values are at most 64 KiB; `INFO` a few KiB).
const MAX_BULK_BYTES: usize = 1 << 20;

/// A reply of the kinds `SET`, `WAIT`, `GET`, `INFO` and `DBSIZE` return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

/// The first line of a reply, without its CRLF.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Head {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(usize),
    Nil,
}

fn parse_head(line: &[u8]) -> anyhow::Result<Head> {
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| anyhow!("empty reply line"))?;
    let text = std::str::from_utf8(rest).context("reply line is not UTF-8")?;
    match kind {
        b'+' => Ok(Head::Status(text.to_string())),
        b'-' => Ok(Head::Error(text.to_string())),
        b':' => Ok(Head::Integer(text.parse().context("integer reply")?)),
        b'$' => {
            let len: i64 = text.parse().context("bulk length")?;
            if len < 0 {
                return Ok(Head::Nil);
            }
            let len = usize::try_from(len).context("bulk length")?;
            if len > MAX_BULK_BYTES {
                bail!("bulk reply of {len} bytes exceeds {MAX_BULK_BYTES}");
            }
            Ok(Head::Bulk(len))
        }
        other => bail!("unsupported reply type {:?}", char::from(other)),
    }
}

/// Appends `args` as a RESP array of bulk strings.
pub fn encode_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads one reply; `line` is a scratch buffer.
pub async fn read_reply<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> anyhow::Result<Reply> {
    line.clear();
    let n = r.read_until(b'\n', line).await.context("reading a reply")?;
    if n == 0 {
        bail!("connection closed");
    }
    let Some(body) = line.strip_suffix(b"\r\n") else {
        bail!("reply line without CRLF");
    };
    match parse_head(body)? {
        Head::Status(s) => Ok(Reply::Status(s)),
        Head::Error(e) => Ok(Reply::Error(e)),
        Head::Integer(i) => Ok(Reply::Integer(i)),
        Head::Nil => Ok(Reply::Bulk(None)),
        Head::Bulk(len) => {
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)
                .await
                .context("reading a bulk reply")?;
            if !buf.ends_with(b"\r\n") {
                bail!("bulk reply without CRLF");
            }
            buf.truncate(len);
            Ok(Reply::Bulk(Some(buf)))
        }
    }
}

/// One connection; a timeout in the middle of a reply leaves it unusable.
pub struct AsyncConn {
    addr: SocketAddr,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    out: Vec<u8>,
    line: Vec<u8>,
    broken: bool,
}

impl AsyncConn {
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to redis at {addr}: timed out"))?
            .with_context(|| format!("connecting to redis at {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        let (read, writer) = stream.into_split();
        Ok(AsyncConn {
            addr,
            reader: BufReader::new(read),
            writer,
            out: Vec::with_capacity(256),
            line: Vec::with_capacity(64),
            broken: false,
        })
    }

    /// Sends `commands` in one write and reads their replies, all within
    /// `timeout`. A Redis error reply is returned as a reply, not an error.
    pub async fn pipeline(
        &mut self,
        commands: &[&[&[u8]]],
        timeout: Duration,
    ) -> anyhow::Result<Vec<Reply>> {
        if self.broken {
            bail!(
                "connection to {} unusable after an earlier failure",
                self.addr
            );
        }
        self.out.clear();
        for args in commands {
            encode_into(&mut self.out, args);
        }
        self.broken = true;
        let exchange = async {
            self.writer.write_all(&self.out).await.context("sending")?;
            let mut replies = Vec::with_capacity(commands.len());
            for _ in 0..commands.len() {
                replies.push(read_reply(&mut self.reader, &mut self.line).await?);
            }
            anyhow::Ok(replies)
        };
        let replies = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| anyhow!("no answer from redis at {} within {timeout:?}", self.addr))??;
        self.broken = false;
        Ok(replies)
    }

    /// One command whose reply is text (status or bulk), e.g. `INFO memory`.
    pub async fn text(&mut self, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let reply = self.pipeline(&[&args], timeout).await?.pop();
        match reply {
            Some(Reply::Status(s)) => Ok(s),
            Some(Reply::Bulk(Some(b))) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Some(Reply::Error(e)) => bail!("redis: {e}"),
            other => bail!("redis: unexpected reply {other:?}"),
        }
    }

    /// One command whose reply is an integer, e.g. `DBSIZE`.
    pub async fn integer(&mut self, args: &[&str], timeout: Duration) -> anyhow::Result<i64> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match self.pipeline(&[&args], timeout).await?.pop() {
            Some(Reply::Integer(i)) => Ok(i),
            Some(Reply::Error(e)) => bail!("redis: {e}"),
            other => bail!("redis: unexpected reply {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn replies(bytes: &[u8]) -> Vec<anyhow::Result<Reply>> {
        let mut r = BufReader::new(bytes);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let reply = read_reply(&mut r, &mut line).await;
            let end = reply.is_err();
            out.push(reply);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn reads_each_reply_kind() {
        let got = replies(b"+OK\r\n-ERR no\r\n:1\r\n$5\r\nab\r\nc\r\n$-1\r\n$0\r\n\r\n").await;
        let got: Vec<String> = got.iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(got[0], "Ok(Status(\"OK\"))");
        assert_eq!(got[1], "Ok(Error(\"ERR no\"))");
        assert_eq!(got[2], "Ok(Integer(1))");
        assert_eq!(got[3], format!("Ok(Bulk(Some({:?})))", b"ab\r\nc".to_vec()));
        assert_eq!(got[4], "Ok(Bulk(None))");
        assert_eq!(got[5], "Ok(Bulk(Some([])))");
        assert!(got[6].contains("connection closed"), "{}", got[6]);
    }

    #[tokio::test]
    async fn refuses_malformed_replies() {
        for bad in [
            &b"*1\r\n"[..],
            b"+no crlf",
            b"$3\r\nabcd\r\n",
            b"$2000000\r\n",
            b":x\r\n",
            b"\r\n",
            b"$2\r\nab",
        ] {
            let first = replies(bad).await.remove(0);
            assert!(first.is_err(), "{bad:?} gave {first:?}");
        }
    }

    #[test]
    fn encodes_binary_safe_bulk_arrays() {
        let mut out = Vec::new();
        encode_into(&mut out, &[b"SET", b"k", b"a\r\nb"]);
        encode_into(&mut out, &[b"WAIT", b"1", b"2000"]);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n2000\r\n"
        );
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"$-1").expect("nil"), Head::Nil);
        assert_eq!(parse_head(b"$3").expect("bulk"), Head::Bulk(3));
        assert_eq!(parse_head(b":-2").expect("int"), Head::Integer(-2));
        assert!(parse_head(b"").is_err());
        assert!(parse_head(b"$").is_err());
    }
}
