//! `vrrpctl check-config`: validate cluster.toml the way the daemons will.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `vrrpctl check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Check the view of this node only (default: every node in the file), as its
    /// daemons will on this host: every interface it names must exist here.
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The cluster.toml to check.
    path: PathBuf,
}

/// Prints a summary on stdout and exits 0 when valid; prints every error as
/// `file:line:col: message` on stderr and exits 1 when refused.
pub fn run(args: &CheckConfigArgs) -> anyhow::Result<i32> {
    let cluster = match config::load(&args.path) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("{err}");
            return Ok(1);
        }
    };
    for w in &cluster.warnings {
        eprintln!("warning: {w}");
    }
    let nodes: Vec<String> = match &args.node {
        Some(node) => vec![node.clone()],
        None => cluster.node_names().iter().map(|n| n.to_string()).collect(),
    };
    for node in &nodes {
        match cluster.node_view(Some(node)) {
            Ok(view) => {
                // With --node: this host is that node; its daemons will refuse a
                // file that names interfaces it lacks, so refuse it here too.
                if args.node.is_some() {
                    let missing = config::host::missing_interfaces(&view, &cluster.source_file);
                    if !missing.is_empty() {
                        for d in &missing {
                            eprintln!("{d}");
                        }
                        return Ok(1);
                    }
                }
                println!("{}: node {node}: {}", args.path.display(), view.summary())
            }
            Err(err) => {
                eprintln!("{err}");
                return Ok(1);
            }
        }
    }
    println!(
        "{}: valid (fingerprint {}{})",
        args.path.display(),
        cluster.fingerprint,
        match cluster.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
        }
    );
    Ok(0)
}
