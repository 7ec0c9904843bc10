//! `vrrpctl check-config`: validate cluster.toml the way the daemons will.

use std::path::{Path, PathBuf};

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

/// A file that validated: what `check-config` prints about it.
#[derive(Debug)]
pub struct Valid {
    /// The file's fingerprint (the daemons report the one they run).
    pub fingerprint: String,
    /// Warnings, one line each.
    pub warnings: Vec<String>,
    /// `node NAME: summary` per node checked.
    pub nodes: Vec<String>,
}

/// Validates `path` as the daemons will: the whole file, then each node's view
/// (`node`: only that one, and its interfaces must exist on this host). Refused:
/// one line per problem, `file:line:col: message`.
pub fn validate(path: &Path, node: Option<&str>) -> Result<Valid, Vec<String>> {
    let cluster = config::load(path).map_err(|err| vec![err.to_string()])?;
    let names: Vec<String> = match node {
        Some(node) => vec![node.to_owned()],
        None => cluster.node_names().iter().map(|n| n.to_string()).collect(),
    };
    let mut nodes = Vec::new();
    for name in &names {
        let view = cluster
            .node_view(Some(name))
            .map_err(|err| vec![err.to_string()])?;
        // With a node: this host is that node; its daemons will refuse a file
        // that names interfaces it lacks, so refuse it here too.
        if node.is_some() {
            let missing = config::host::missing_interfaces(&view, &cluster.source_file);
            if !missing.is_empty() {
                return Err(missing.iter().map(ToString::to_string).collect());
            }
        }
        nodes.push(format!("node {name}: {}", view.summary()));
    }
    Ok(Valid {
        fingerprint: cluster.fingerprint.clone(),
        warnings: cluster.warnings.iter().map(ToString::to_string).collect(),
        nodes,
    })
}

/// Prints a summary on stdout and exits 0 when valid; prints every error as
/// `file:line:col: message` on stderr and exits 1 when refused.
pub fn run(args: &CheckConfigArgs) -> anyhow::Result<i32> {
    let valid = match validate(&args.path, args.node.as_deref()) {
        Ok(valid) => valid,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(1);
        }
    };
    for w in &valid.warnings {
        eprintln!("warning: {w}");
    }
    for node in &valid.nodes {
        println!("{}: {node}", args.path.display());
    }
    println!(
        "{}: valid (fingerprint {}{})",
        args.path.display(),
        valid.fingerprint,
        match valid.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning{}", if n == 1 { "" } else { "s" }),
        }
    );
    Ok(0)
}
