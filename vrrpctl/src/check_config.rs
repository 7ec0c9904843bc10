//! `vrrpctl check-config`: validate cluster.toml the way the daemons will.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `vrrpctl check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Check the view of this node only (default: every node in the file).
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
    let nodes: Vec<String> = match &args.node {
        Some(node) => vec![node.clone()],
        None => cluster.node_names().iter().map(|n| n.to_string()).collect(),
    };
    for node in &nodes {
        match cluster.node_view(Some(node)) {
            Ok(view) => println!("{}: node {node}: {}", args.path.display(), view.summary()),
            Err(err) => {
                eprintln!("{err}");
                return Ok(1);
            }
        }
    }
    println!("{}: valid", args.path.display());
    Ok(0)
}
