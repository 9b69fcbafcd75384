//! `geoul dir`: the instance directory from the command line.
//!
//! Owns: the `geoul dir` grammar ([`DirArgs`]), turning flags into an
//! instance or an update (typed `--tag name=value`), and rendering answers
//! as a table for people or as JSON with the API's field names. Does not
//! own: what the requests do (geoul-dir) or reaching the cluster
//! (`cluster_client`).
//!
//! Exit codes: 0 ok, 1 runtime failure — including a denial such as `no live
//! instance "x"` — with a one-line reason, 2 usage (bad flags, a query that
//! does not parse, with a caret under the spot).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Subcommand};
use geoul_dir::instance::{Instance, InstanceSpec, InstanceState, InstanceUpdate, TagValue};
use geoul_dir::search::{parse_search, SearchError};
use geoul_dir::watch::WatchEvent;
use geoul_dir::{DirClient, DirError, SearchPage, WatchUpdate, DIR};
use serde_json::json;

use crate::cli::ClusterArgs;
use crate::cluster_client::{
    connect_client, format_duration, load_secret, one_line, parse_timeout, parse_ttl, targets,
};
use crate::Failure;

/// What `geoul dir --help` adds.
pub const DIR_HELP: &str = "Searches: geoul dir search 'mode = \"ranked\" and region = \"eu\" \
and state = \"playing\" and spectators < 50 order by rating desc limit 20'. Fields: addr, mode, \
region, map, state, players, max_players, open_slots, spectators, rating, started_at, \
updated_at, ttl_ms, tag.<name>. Tags: --tag level=12 (int), --tag skill=0.5 (float), --tag \
voice=true (bool), --tag lang=ko or --tag 'code=\"12\"' (string). Exit codes: 0 ok, 1 runtime \
failure or denial (one-line reason), 2 usage error.";

/// `geoul dir`.
#[derive(Args, Debug)]
pub struct DirArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Print JSON (the API's field names) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Deadline of the request (e.g. 500ms, 5s; at most 60s).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: DirCommand,
}

/// The fields `register` and `update` share.
#[derive(Args, Debug, Default)]
pub struct FieldArgs {
    /// Where players and spectators connect (HOST:PORT).
    #[arg(long)]
    pub addr: Option<String>,
    /// Game mode (a-z 0-9 _ . -).
    #[arg(long)]
    pub mode: Option<String>,
    /// Region (a-z 0-9 _ . -).
    #[arg(long)]
    pub region: Option<String>,
    /// Map name.
    #[arg(long)]
    pub map: Option<String>,
    /// Players in the instance.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count)]
    pub players: Option<u32>,
    /// Player capacity.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count)]
    pub max_players: Option<u32>,
    /// Spectators watching.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_count)]
    pub spectators: Option<u32>,
    /// lobby, playing or ending.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<InstanceState>,
    /// Average rating.
    #[arg(long, allow_negative_numbers = true)]
    pub rating: Option<f64>,
    /// A custom tag, NAME=VALUE (repeatable; see the help for kinds).
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, TagValue)>,
}

/// `geoul dir` subcommands.
#[derive(Subcommand, Debug)]
pub enum DirCommand {
    /// Publish an instance (replaces what was published under ID).
    Register {
        /// Instance id (A-Z a-z 0-9 _ . : -).
        id: String,
        #[command(flatten)]
        fields: FieldArgs,
        /// When it started, Unix ms (now if absent).
        #[arg(long)]
        started_at: Option<u64>,
        /// Lifetime between renewals (e.g. 10s; the directory's default if absent).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// Change fields of a live instance (renews it too).
    Update {
        /// Instance id.
        id: String,
        #[command(flatten)]
        fields: FieldArgs,
        /// Remove a tag (repeatable).
        #[arg(long = "remove-tag")]
        remove_tags: Vec<String>,
    },
    /// Renew a live instance for another TTL.
    Renew {
        /// Instance id.
        id: String,
    },
    /// Remove an instance.
    Remove {
        /// Instance id.
        id: String,
    },
    /// Take seats of a live instance (never beyond max-players, exactly).
    Reserve {
        /// Instance id.
        id: String,
        /// Seats to take.
        #[arg(long, default_value_t = 1, value_parser = parse_count)]
        slots: u32,
    },
    /// Show one live instance.
    Get {
        /// Instance id.
        id: String,
    },
    /// Watch a filter: the matching instances, then every instance entering,
    /// changing and leaving, as it happens (Ctrl-C stops).
    Watch {
        /// A filter (no order by, no limit); empty: every instance.
        query: String,
        /// Stop after this many updates (the snapshot counts as one).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Search live instances: '[FILTER] [order by F [asc|desc], …] [limit N]'.
    Search {
        /// The query (empty: every instance, a page at a time).
        query: String,
        /// Resume after this cursor (the `next` of a previous page).
        #[arg(long)]
        after: Option<String>,
    },
}

fn parse_count(text: &str) -> Result<u32, String> {
    match text.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("{n} is negative; counts are 0 or more")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("{n} is too large")),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

fn parse_state(text: &str) -> Result<InstanceState, String> {
    InstanceState::parse(text).map_err(|e| e.reason)
}

/// `NAME=VALUE`: an int, a float, `true`/`false`, a "quoted string", or
/// else the text as a string.
fn parse_tag(text: &str) -> Result<(String, TagValue), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected NAME=VALUE"))?;
    let value = if let Some(s) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        TagValue::Str(s.to_string())
    } else if let Ok(i) = value.parse::<i64>() {
        TagValue::Int(i)
    } else if let Ok(f) = value.parse::<f64>() {
        TagValue::Float(f)
    } else if value == "true" || value == "false" {
        TagValue::Bool(value == "true")
    } else {
        TagValue::Str(value.to_string())
    };
    Ok((name.to_string(), value))
}

fn runtime_err(e: DirError) -> Failure {
    Failure::Runtime(one_line(&e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::Runtime(format!("encoding JSON: {e}")))
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
    let left = at_ms.saturating_sub(now_ms());
    format!("in {}", format_duration(Duration::from_millis(left)))
}

fn spec_from(fields: &FieldArgs, started_at: Option<u64>) -> Result<InstanceSpec, Failure> {
    let need = |v: &Option<String>, flag: &str| {
        v.clone()
            .ok_or_else(|| Failure::Usage(format!("register needs --{flag}")))
    };
    Ok(InstanceSpec {
        addr: need(&fields.addr, "addr")?,
        mode: need(&fields.mode, "mode")?,
        region: need(&fields.region, "region")?,
        map: fields.map.clone(),
        players: fields.players.unwrap_or(0),
        max_players: fields
            .max_players
            .ok_or_else(|| Failure::Usage("register needs --max-players".into()))?,
        spectators: fields.spectators.unwrap_or(0),
        state: fields.state.unwrap_or_default(),
        rating: fields.rating,
        started_at,
        tags: fields.tags.iter().cloned().collect::<BTreeMap<_, _>>(),
    })
}

fn update_from(fields: &FieldArgs, remove_tags: &[String]) -> Result<InstanceUpdate, Failure> {
    let update = InstanceUpdate {
        addr: fields.addr.clone(),
        mode: fields.mode.clone(),
        region: fields.region.clone(),
        map: fields.map.clone(),
        players: fields.players,
        max_players: fields.max_players,
        spectators: fields.spectators,
        state: fields.state,
        rating: fields.rating,
        set_tags: fields.tags.iter().cloned().collect(),
        remove_tags: remove_tags.to_vec(),
    };
    if update.is_empty() {
        return Err(Failure::Usage(
            "update: name at least one field to change (use `geoul dir renew` to renew)".into(),
        ));
    }
    Ok(update)
}

pub fn run(args: DirArgs) -> Result<(), Failure> {
    // A search that does not parse is a usage error, shown before connecting.
    if let DirCommand::Search { query, after } = &args.command {
        parse_search(query, after.as_deref(), geoul_client::query_lang::LIMIT_MAX).map_err(
            |e| match e {
                SearchError::Syntax(msg) => Failure::Usage(format!("query: {msg}")),
                other => Failure::Usage(format!("query: {other}")),
            },
        )?;
    }
    let targets = targets(&args.cluster)?;
    let secret = load_secret(&args.cluster)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let text = runtime.block_on(async {
        let client = connect_client(&targets, &secret).await?;
        let dir = DirClient::new(client.service(DIR)).with_timeout(args.timeout);
        execute(&dir, &args.command, args.json).await
    })?;
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

fn live_text(id: &str, expires_at: u64, json: bool) -> Result<String, Failure> {
    if json {
        to_json(&json!({ "id": id, "expires_at": expires_at }))
    } else {
        Ok(format!("{id} live, expires {}", in_time(expires_at)))
    }
}

async fn execute(dir: &DirClient, command: &DirCommand, json: bool) -> Result<String, Failure> {
    match command {
        DirCommand::Register {
            id,
            fields,
            started_at,
            ttl,
        } => {
            let spec = spec_from(fields, *started_at)?;
            let at = dir.register(id, spec, *ttl).await.map_err(runtime_err)?;
            live_text(id, at, json)
        }
        DirCommand::Update {
            id,
            fields,
            remove_tags,
        } => {
            let update = update_from(fields, remove_tags)?;
            let at = dir.update(id, update).await.map_err(runtime_err)?;
            live_text(id, at, json)
        }
        DirCommand::Renew { id } => {
            let at = dir.renew(id).await.map_err(runtime_err)?;
            live_text(id, at, json)
        }
        DirCommand::Remove { id } => {
            let existed = dir.remove(id).await.map_err(runtime_err)?;
            if json {
                to_json(&json!({ "existed": existed }))
            } else if existed {
                Ok(format!("removed {id}"))
            } else {
                Ok(format!("{id} was not live; nothing to remove"))
            }
        }
        DirCommand::Reserve { id, slots } => {
            let (players, max) = dir.reserve(id, *slots).await.map_err(runtime_err)?;
            if json {
                to_json(&json!({ "id": id, "players": players, "max_players": max }))
            } else {
                Ok(format!("reserved {slots} seat(s) of {id}: {players}/{max}"))
            }
        }
        DirCommand::Get { id } => {
            let instance = dir.get(id).await.map_err(runtime_err)?;
            if json {
                to_json(&instance)
            } else {
                Ok(instance_text(&instance))
            }
        }
        DirCommand::Watch { query, count } => watch(dir, query, *count, json).await,
        DirCommand::Search { query, after } => {
            let page = dir
                .search(query, after.as_deref())
                .await
                .map_err(runtime_err)?;
            if json {
                to_json(&json!({
                    "entries": page.entries,
                    "partial": page.partial,
                    "next": page.next,
                }))
            } else {
                Ok(table(&page))
            }
        }
    }
}

/// Prints each update as it comes, one line each (JSON lines with --json).
async fn watch(
    dir: &DirClient,
    query: &str,
    count: Option<u64>,
    json: bool,
) -> Result<String, Failure> {
    let mut watch = dir.watch(query).await.map_err(runtime_err)?;
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let update = watch.next().await.map_err(runtime_err)?;
        seen += 1;
        let line = if json {
            let v = match &update {
                WatchUpdate::Snapshot(s) => json!({ "snapshot": s, "node": watch.node() }),
                WatchUpdate::Event(e) => json!({ "event": e }),
                WatchUpdate::Resync { reason, snapshot } => {
                    json!({ "resync": reason, "snapshot": snapshot, "node": watch.node() })
                }
            };
            to_json(&v)?
        } else {
            match &update {
                WatchUpdate::Snapshot(s) => format!(
                    "snapshot from {}: {} instance(s) {}",
                    watch.node(),
                    s.len(),
                    ids(s)
                ),
                WatchUpdate::Event(WatchEvent::Enter(i)) => format!("enter  {}", line(i)),
                WatchUpdate::Event(WatchEvent::Change(i)) => format!("change {}", line(i)),
                WatchUpdate::Event(WatchEvent::Leave { id, reason }) => {
                    format!("leave  {id} ({reason:?})")
                }
                WatchUpdate::Resync { reason, snapshot } => format!(
                    "RESYNC ({reason}); snapshot from {}: {} instance(s) {}",
                    watch.node(),
                    snapshot.len(),
                    ids(snapshot)
                ),
            }
        };
        println!("{line}");
    }
    Ok(String::new())
}

fn ids(instances: &[Instance]) -> String {
    let shown: Vec<&str> = instances.iter().take(20).map(|i| i.id.as_str()).collect();
    let more = instances.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} …and {more} more", shown.join(" "))
    } else {
        shown.join(" ")
    }
}

fn line(i: &Instance) -> String {
    format!(
        "{} {} {} {} {} {}/{} spect {}",
        i.id,
        i.addr,
        i.mode,
        i.region,
        i.state.as_str(),
        i.players,
        i.max_players,
        i.spectators
    )
}

fn tag_text(v: &TagValue) -> String {
    match v {
        TagValue::Str(s) => format!("{s:?}"),
        TagValue::Int(i) => i.to_string(),
        TagValue::Float(f) => f.to_string(),
        TagValue::Bool(b) => b.to_string(),
    }
}

fn tags_text(i: &Instance) -> String {
    i.tags
        .iter()
        .map(|(k, v)| format!("{k}={}", tag_text(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn instance_text(i: &Instance) -> String {
    let s = i;
    let mut out = format!(
        "id           {}\naddr         {}\nmode         {}\nregion       {}\n",
        i.id, s.addr, s.mode, s.region
    );
    if let Some(map) = &s.map {
        out.push_str(&format!("map          {map}\n"));
    }
    out.push_str(&format!(
        "state        {}\nplayers      {}/{}\nspectators   {}\n",
        s.state.as_str(),
        s.players,
        s.max_players,
        s.spectators
    ));
    if let Some(r) = s.rating {
        out.push_str(&format!("rating       {r}\n"));
    }
    if !i.tags.is_empty() {
        out.push_str(&format!("tags         {}\n", tags_text(i)));
    }
    out.push_str(&format!(
        "expires      {} (ttl {})",
        in_time(i.expires_at),
        format_duration(Duration::from_millis(i.ttl_ms))
    ));
    out
}

fn table(page: &SearchPage) -> String {
    let header = [
        "ID", "ADDR", "MODE", "REGION", "MAP", "STATE", "PLAYERS", "SPECT", "RATING", "EXPIRES",
    ];
    let rows: Vec<[String; 10]> = page
        .entries
        .iter()
        .map(|i| {
            let s = i;
            [
                i.id.clone(),
                s.addr.clone(),
                s.mode.clone(),
                s.region.clone(),
                s.map.clone().unwrap_or_default(),
                s.state.as_str().to_string(),
                format!("{}/{}", s.players, s.max_players),
                s.spectators.to_string(),
                s.rating.map(|r| format!("{r}")).unwrap_or_default(),
                in_time(i.expires_at),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count()).min(40);
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push_str(&format!("\n{} instance(s)", page.entries.len()));
    if page.partial {
        out.push_str(" (PARTIAL: some slots did not answer; entries may be missing)");
    }
    if let Some(next) = &page.next {
        out.push_str(&format!("\nmore: --after {next}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_to_their_kinds() {
        assert_eq!(parse_tag("lvl=12").expect("int").1, TagValue::Int(12));
        assert_eq!(parse_tag("f=0.5").expect("float").1, TagValue::Float(0.5));
        assert_eq!(parse_tag("v=true").expect("bool").1, TagValue::Bool(true));
        assert_eq!(
            parse_tag("code=\"12\"").expect("quoted").1,
            TagValue::Str("12".into())
        );
        assert_eq!(
            parse_tag("lang=ko").expect("text").1,
            TagValue::Str("ko".into())
        );
        assert!(parse_tag("novalue").is_err());
    }
}
