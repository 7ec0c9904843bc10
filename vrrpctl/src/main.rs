//! vrrpctl: the operator's command line for vrrpd and lbd.

mod check_config;
mod decode;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Operate a vrrpd/lbd cluster node: status, drills, maintenance, config checks.
#[derive(Debug, Parser)]
#[command(name = "vrrpctl", version, about)]
struct Cli {
    /// Control socket of vrrpd (default: from the config, else /run/lbsuite/vrrpd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a cluster.toml for every node (or one): exit 0 valid, 1 refused.
    CheckConfig(check_config::CheckConfigArgs),
    /// Decode VRRP packets from a pcap file, or hex lines on stdin.
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Decode(args) => decode::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("vrrpctl: {err:#}");
            ExitCode::from(1)
        }
    }
}
