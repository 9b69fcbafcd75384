//! The `geoul` binary: node daemon, local cluster, CLI.
//!
//! Only this edge knows about processes, signals, exit codes and terminals.
//! Exit codes: 0 ok, 1 runtime failure (one-line reason), 2 usage/config error.

mod auth_cmd;
mod bench;
mod call_cmd;
mod cli;
mod cluster_client;
mod dir_cmd;
mod kv_cmd;
mod load;
mod load_auth;
mod load_dir;
mod local_cluster;
mod logging;
mod node_cmd;
mod query_cmd;
mod status_cmd;
mod status_tables;
mod up_cmd;

use std::process::ExitCode;

use clap::Parser;

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub enum Failure {
    /// Usage or configuration error: exit 2.
    Usage(String),
    /// Runtime failure: exit 1.
    Runtime(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Node(args) => node_cmd::run(args),
        cli::Command::Up(args) => up_cmd::run(args),
        cli::Command::Status(args) => status_cmd::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Kv(args) => kv_cmd::run(args),
        cli::Command::Query(args) => query_cmd::run(args),
        cli::Command::Call(args) => call_cmd::run(args),
        cli::Command::Auth(args) => auth_cmd::run(args),
        cli::Command::Dir(args) => dir_cmd::run(args),
        cli::Command::Load(args) => match args.command {
            cli::LoadCommand::Auth(a) => load_auth::run(a),
            cli::LoadCommand::Dir(a) => load_dir::run(a),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("geoul: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(msg)) => {
            eprintln!("geoul: {msg}");
            ExitCode::from(1)
        }
    }
}
