//! `vrrpctl import keepalived|aloha FILE [FILE2]`: write a cluster.toml from another
//! load balancer's configuration, and a report of what could not be mapped.

use std::io::Write;
use std::path::{Path, PathBuf};

use ::import::{AddressOverride, Format, ImportError, Options};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};

/// The formats `vrrpctl import` reads.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// keepalived.conf (with its includes): global_defs, vrrp_sync_group,
    /// vrrp_instance, virtual_server and real_server with their checkers.
    Keepalived(ImportArgs),
    /// HAProxy ALOHA: the `director` sections of its LB Layer4 configuration and
    /// `nat` sections for the rules of its NAT tab (see docs/import.md).
    Aloha(ImportArgs),
}

/// Arguments of both formats.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The first node's file, and optionally the second node's: the two are merged
    /// into one cluster.toml with both nodes. With one file the peer is derived,
    /// and what cannot be is a placeholder the report names.
    #[arg(required = true, num_args = 1..=2, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Where to write the cluster.toml ("-": standard output, the report then goes
    /// to standard error).
    #[arg(short, long, value_name = "FILE", default_value = "cluster.toml")]
    output: PathBuf,
    /// Also write the report to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// The cluster's name (default: "imported").
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// The nodes' names, in file order; give it twice for both (default: keepalived's
    /// router_id, else lb1 and lb2).
    #[arg(long = "node-name", value_name = "NAME")]
    node_names: Vec<String>,
    /// A node's address the input does not say, replacing the placeholder the
    /// report names: NODE:IFACE=ADDRESS/PREFIX (NODE: a node's name, or 1 or 2).
    /// Repeat for each node and interface.
    #[arg(long = "address", value_name = "NODE:IFACE=ADDR/LEN")]
    addresses: Vec<AddressOverride>,
}

/// Runs an import: exit 0 when the file was written (the report says what it
/// lacks), 1 when the input is malformed or the result would not validate.
pub fn run(command: &ImportCommand) -> anyhow::Result<i32> {
    let (format, args) = match command {
        ImportCommand::Keepalived(a) => (Format::Keepalived, a),
        ImportCommand::Aloha(a) => (Format::Aloha, a),
    };
    let to_stdout = args.output == Path::new("-");
    if !to_stdout && !args.force && args.output.exists() {
        bail!(
            "{} exists: give --force to replace it, or another --output",
            args.output.display()
        );
    }
    // Diagnostics of a result that does not validate refer to the text kept here.
    let mut rejected = args.output.clone().into_os_string();
    rejected.push(".rejected");
    let rejected = PathBuf::from(rejected);
    let options = Options {
        cluster_name: args.cluster_name.clone(),
        node_names: args.node_names.clone(),
        addresses: args.addresses.clone(),
        output_name: (!to_stdout).then(|| rejected.display().to_string()),
    };
    let imported = match ::import::import(format, &args.files, &options) {
        Ok(i) => i,
        Err(ImportError::Invalid { diagnostics, text }) => {
            // The diagnostics' line numbers are the generated text's: keep it beside
            // the output, under a name no daemon reads.
            let kept = !to_stdout && !text.is_empty() && std::fs::write(&rejected, &text).is_ok();
            eprintln!(
                "vrrpctl: the imported configuration does not validate, so {} was not written{}:",
                args.output.display(),
                if kept {
                    format!(
                        " (the text is in {}, which the lines below refer to)",
                        rejected.display()
                    )
                } else {
                    String::new()
                }
            );
            eprintln!("{diagnostics}");
            return Ok(1);
        }
        Err(e) => {
            eprintln!("vrrpctl: {e}");
            return Ok(1);
        }
    };
    let report = imported.report.to_string();
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{report}\n"))
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if to_stdout {
        std::io::stdout()
            .write_all(imported.text.as_bytes())
            .context("writing the configuration to standard output")?;
        eprintln!("{report}");
    } else {
        std::fs::write(&args.output, &imported.text)
            .with_context(|| format!("writing {}", args.output.display()))?;
        println!("{report}");
        println!(
            "wrote {} (valid: vrrpctl check-config {} to see it per node)",
            args.output.display(),
            args.output.display()
        );
    }
    Ok(0)
}
