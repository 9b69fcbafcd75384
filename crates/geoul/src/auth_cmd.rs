//! `geoul auth`: accounts and sessions of the `auth` service from the
//! command line.
//!
//! Owns: the `geoul auth` grammar ([`AuthArgs`]), reading passwords (stdin
//! or `GEOUL_PASSWORD`, never a flag: flags show in `ps`), and rendering
//! answers for people or as JSON with the API's field names. Does not own:
//! what the requests do (geoul-auth) or reaching the cluster
//! (`cluster_client`).
//!
//! Exit codes: 0 ok, 1 runtime failure — including a denial such as
//! `invalid username or password` or `invalid or expired token` — with a
//! one-line reason, 2 usage.

use std::io::BufRead;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use geoul_auth::{AuthClient, AuthError, SessionInfo, Tokens, AUTH};
use serde_json::json;

use crate::cli::ClusterArgs;
use crate::cluster_client::{
    connect_client, format_duration, load_secret, one_line, parse_timeout, targets,
};
use crate::Failure;

/// Environment variable a password may come from.
pub const PASSWORD_ENV: &str = "GEOUL_PASSWORD";
/// Environment variable a second (new) password may come from.
pub const NEW_PASSWORD_ENV: &str = "GEOUL_NEW_PASSWORD";

/// What `geoul auth --help` adds.
pub const AUTH_HELP: &str = "Passwords are read from stdin with --password-stdin (one line), \
else from GEOUL_PASSWORD (and GEOUL_NEW_PASSWORD for passwd). Exit codes: 0 ok, 1 runtime \
failure or denial (one-line reason, e.g. `invalid username or password`), 2 usage error.";

/// `geoul auth`.
#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON (the API's field names) instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of the request (e.g. 500ms, 5s; at most 60s).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Read the password (for passwd: the old, then the new one, one per
    /// line) from stdin.
    #[arg(long, global = true)]
    pub password_stdin: bool,
    #[command(subcommand)]
    pub command: AuthCommand,
}

/// `geoul auth` subcommands.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Create an account.
    Register {
        /// 3-32 of a-z 0-9 _ . - (case-insensitive).
        username: String,
    },
    /// Log in: prints a session token and a refresh token.
    Login {
        /// The account.
        username: String,
        /// The player's address, for per-source rate limits (gateways).
        #[arg(long)]
        source: Option<String>,
    },
    /// Check a session token (exit 1 if it is not valid).
    Validate {
        /// The session token (gs_…).
        token: String,
    },
    /// Trade a refresh token for a new session and refresh token.
    Refresh {
        /// The refresh token (gr_…).
        refresh_token: String,
    },
    /// Revoke one session.
    Revoke {
        /// The session token.
        token: String,
    },
    /// Revoke every session of an account.
    RevokeAll {
        /// The account.
        username: String,
    },
    /// List an account's live sessions.
    Sessions {
        /// The account.
        username: String,
    },
    /// Change a password (revokes every session of the account).
    Passwd {
        /// The account.
        username: String,
    },
    /// Issue a single-use ticket for moving a session's player to a server.
    Ticket {
        /// The session token.
        token: String,
        /// The game server the ticket is for.
        #[arg(long)]
        server: String,
    },
    /// Redeem a ticket as a server (succeeds once per ticket, cluster-wide).
    Redeem {
        /// The ticket (gt_…).
        ticket: String,
        /// The redeeming server (must be the ticket's target).
        #[arg(long)]
        server: String,
    },
    /// Disable an account (revokes its sessions) or, with --enable, enable it.
    Disable {
        /// The account.
        username: String,
        /// Enable instead.
        #[arg(long)]
        enable: bool,
    },
}

fn runtime_err(e: AuthError) -> Failure {
    Failure::Runtime(one_line(&e.to_string()))
}

/// Passwords this command needs, in order.
fn passwords(args: &AuthArgs, count: usize) -> Result<Vec<String>, Failure> {
    if args.password_stdin {
        let stdin = std::io::stdin();
        let mut out = Vec::new();
        for line in stdin.lock().lines().take(count) {
            let line = line.map_err(|e| Failure::Usage(format!("reading stdin: {e}")))?;
            out.push(line.trim_end_matches(['\r', '\n']).to_string());
        }
        if out.len() < count {
            return Err(Failure::Usage(format!(
                "--password-stdin: expected {count} line(s) on stdin"
            )));
        }
        return Ok(out);
    }
    let envs = [PASSWORD_ENV, NEW_PASSWORD_ENV];
    envs.iter()
        .take(count)
        .map(|name| {
            std::env::var(name).map_err(|_| {
                Failure::Usage(format!("no password: pass --password-stdin or set {name}"))
            })
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn in_time(at_ms: u64) -> String {
    if at_ms == u64::MAX {
        return "never".into();
    }
    format!(
        "in {}",
        format_duration(Duration::from_millis(at_ms.saturating_sub(now_ms())))
    )
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))
}

fn tokens_text(t: &Tokens) -> String {
    format!(
        "token          {}\nexpires_at     {} ({})\nrefresh_token  {}\nrefresh_expires_at {} ({})",
        t.token,
        t.expires_at,
        in_time(t.expires_at),
        t.refresh_token,
        t.refresh_expires_at,
        in_time(t.refresh_expires_at)
    )
}

fn sessions_table(sessions: &[SessionInfo], partial: bool) -> String {
    let mut out = format!(
        "{:<16}  {:<13}  {:<12}  {:<12}  {}\n",
        "SESSION", "ISSUED", "EXPIRES", "NODE", "FAMILY"
    );
    for s in sessions {
        let ago = format_duration(Duration::from_millis(now_ms().saturating_sub(s.issued_at)));
        out.push_str(&format!(
            "{:<16}  {:<13}  {:<12}  {:<12}  {}\n",
            s.session_id,
            format!("{ago} ago"),
            in_time(s.expires_at),
            s.issued_by,
            s.family
        ));
    }
    out.push_str(&format!("{} session(s)", sessions.len()));
    if partial {
        out.push_str(" (PARTIAL: some slots did not answer; the list may be short)");
    }
    out
}

pub fn run(args: AuthArgs) -> Result<(), Failure> {
    let needed = match args.command {
        AuthCommand::Register { .. } | AuthCommand::Login { .. } => 1,
        AuthCommand::Passwd { .. } => 2,
        _ => 0,
    };
    let pw = passwords(&args, needed)?;
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = args.json;
    let text = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        let auth = AuthClient::new(client.service(AUTH)).with_timeout(args.timeout);
        execute(&auth, &args.command, &pw, json).await
    })?;
    println!("{text}");
    Ok(())
}

async fn execute(
    auth: &AuthClient,
    command: &AuthCommand,
    pw: &[String],
    json: bool,
) -> Result<String, Failure> {
    let first = pw.first().map(String::as_str).unwrap_or_default();
    match command {
        AuthCommand::Register { username } => {
            let name = auth.register(username, first).await.map_err(runtime_err)?;
            if json {
                to_json(&json!({ "username": name }))
            } else {
                Ok(format!("registered {name}"))
            }
        }
        AuthCommand::Login { username, source } => {
            let t = auth
                .login(username, first, source.as_deref())
                .await
                .map_err(runtime_err)?;
            if json {
                to_json(&t)
            } else {
                Ok(tokens_text(&t))
            }
        }
        AuthCommand::Validate { token } => {
            let s = auth.validate(token).await.map_err(runtime_err)?;
            if json {
                to_json(&s)
            } else {
                Ok(format!(
                    "valid: {} (session {}, expires {}, issued by {})",
                    s.username,
                    s.session_id,
                    in_time(s.expires_at),
                    s.issued_by
                ))
            }
        }
        AuthCommand::Refresh { refresh_token } => {
            let t = auth.refresh(refresh_token).await.map_err(runtime_err)?;
            if json {
                to_json(&t)
            } else {
                Ok(tokens_text(&t))
            }
        }
        AuthCommand::Revoke { token } => revoked(auth.revoke(token).await, json),
        AuthCommand::RevokeAll { username } => revoked(auth.revoke_all(username).await, json),
        AuthCommand::Sessions { username } => {
            let (sessions, partial) = auth.sessions(username).await.map_err(runtime_err)?;
            if json {
                to_json(&json!({ "sessions": sessions, "partial": partial }))
            } else {
                Ok(sessions_table(&sessions, partial))
            }
        }
        AuthCommand::Passwd { username } => {
            let new = pw.get(1).map(String::as_str).unwrap_or_default();
            let n = auth
                .change_password(username, first, new)
                .await
                .map_err(runtime_err)?;
            updated(n, "password changed", json)
        }
        AuthCommand::Ticket { token, server } => {
            let (ticket, expires_at) = auth
                .issue_ticket(token, server)
                .await
                .map_err(runtime_err)?;
            if json {
                to_json(&json!({ "ticket": ticket, "expires_at": expires_at }))
            } else {
                Ok(format!("{ticket} (expires {})", in_time(expires_at)))
            }
        }
        AuthCommand::Redeem { ticket, server } => {
            let (username, session_id) = auth
                .redeem_ticket(ticket, server)
                .await
                .map_err(runtime_err)?;
            if json {
                to_json(&json!({ "username": username, "session_id": session_id }))
            } else {
                Ok(format!("redeemed: {username} (session {session_id})"))
            }
        }
        AuthCommand::Disable { username, enable } => {
            let n = auth
                .set_disabled(username, !enable)
                .await
                .map_err(runtime_err)?;
            updated(n, if *enable { "enabled" } else { "disabled" }, json)
        }
    }
}

fn revoked(result: Result<u32, AuthError>, json: bool) -> Result<String, Failure> {
    let n = result.map_err(runtime_err)?;
    if json {
        to_json(&json!({ "sessions": n }))
    } else {
        Ok(format!("revoked {n} session(s)"))
    }
}

fn updated(revoked: u32, what: &str, json: bool) -> Result<String, Failure> {
    if json {
        to_json(&json!({ "revoked": revoked }))
    } else {
        Ok(format!("{what}; revoked {revoked} session(s)"))
    }
}
