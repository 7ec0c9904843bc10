//! cluster.toml: schema, validation, node view, diff.
//!
//! One file describes both members of the cluster. [`load`] or [`parse`] accept it only
//! as a whole: every problem is collected into a [`ConfigError`] whose diagnostics name
//! the file, line, column, key path and a fix. A valid [`ClusterConfig`] yields a
//! [`NodeView`] per member and a [`ConfigDiff`] against a previous configuration.

mod diagnostic;
mod diff;
pub mod host;
mod model;
mod node_view;
mod owner;
mod read;
mod reread;
mod tree;
mod validate;

use std::path::Path;

pub use diagnostic::{ConfigError, Diagnostic};
pub use diff::{diff, ConfigDiff, FieldChanges, NamedChanges, ServiceChange, ServiceChanges};
pub use model::*;
pub use node_view::{GroupView, InstanceView, NodeView, SyncView};
pub use owner::{owner_priority_problem, OwnerPriorityProblem};
pub use reread::FileMemo;

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, e))?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates configuration text; `file_name` is used in diagnostics.
pub fn parse(text: &str, file_name: &str) -> Result<ClusterConfig, ConfigError> {
    parse_text(text, file_name, false).map(|(config, _)| config)
}

/// [`parse`], with where each `[[service]]` block starts if `blocks` (see
/// [`FileMemo`]; empty otherwise).
fn parse_text(
    text: &str,
    file_name: &str,
    blocks: bool,
) -> Result<(ClusterConfig, Vec<usize>), ConfigError> {
    let index = diagnostic::LineIndex::new(text);
    let to_diag = |d: tree::RawDiag| {
        let (line, column) = index.position(d.offset);
        Diagnostic {
            file: file_name.to_string(),
            line,
            column,
            key: d.key,
            message: d.message,
            fix: d.fix,
        }
    };
    let syntax_error = |offset: usize, message: &str| {
        // The parser's message may span lines ("invalid string\nexpected ..."); the
        // diagnostic is one line.
        let message: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let message = if message.is_empty() {
            "invalid TOML".to_string()
        } else {
            message.join("; ")
        };
        ConfigError::invalid(vec![to_diag(tree::RawDiag {
            offset,
            key: String::new(),
            message: format!("TOML syntax error: {message}"),
            fix: "correct the TOML syntax at this position".to_string(),
        })])
    };
    let doc = toml::de::DeTable::parse(text).map_err(|e| {
        let at = e.span().unwrap_or(0..0);
        match text
            .get(at.clone())
            .filter(|_| e.message() == "duplicate key")
        {
            // The parser names no key: the span is the second one.
            Some(key) => syntax_error(at.start, &format!("duplicate key `{key}`")),
            None => syntax_error(at.start, e.message()),
        }
    })?;
    let root = tree::from_document(&doc)
        .map_err(|at| syntax_error(at, "integer out of range for a 64-bit number"))?;
    let mut reader = tree::Reader::new(&root);
    let draft = read::read_document(&mut reader, &root);
    validate::cross_check(&mut reader, &draft);
    if reader.diags.is_empty() {
        if let Some(mut config) = validate::assemble(draft, file_name) {
            config.fingerprint = fingerprint(text);
            let mut warnings = std::mem::take(&mut reader.warnings);
            warnings.sort_by_key(|d| d.offset);
            config.warnings = warnings.into_iter().map(to_diag).collect();
            let blocks = if blocks {
                reread::service_blocks(&root, text)
            } else {
                Vec::new()
            };
            return Ok((config, blocks));
        }
    }
    let mut diags = std::mem::take(&mut reader.diags);
    // File order; stable, so problems at one place keep the order they were found in.
    diags.sort_by_key(|d| d.offset);
    let mut out: Vec<Diagnostic> = diags.into_iter().map(to_diag).collect();
    if out.is_empty() {
        // Unreachable by construction; refuse rather than accept half a configuration.
        out.push(Diagnostic {
            file: file_name.to_string(),
            line: 1,
            column: 1,
            key: String::new(),
            message: "the configuration is incomplete".to_string(),
            fix: "check every section against cluster.toml.example".to_string(),
        });
    }
    Err(ConfigError::invalid(out))
}

/// The control sockets a file names (`[control] vrrpd_socket`, `lbd_socket`, else
/// the defaults), read even when the rest of the file does not validate: a tool
/// that only needs to reach the running daemons must not depend on a file being
/// edited. Only a file that is not TOML at all (or unreadable) is an error.
pub fn control_sockets(path: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: cannot read the configuration file: {e}",
            path.display()
        )
    })?;
    let doc = toml::de::DeTable::parse(text.as_str()).map_err(|e| {
        format!(
            "{}: not TOML ({}), so the control socket is unknown: give --socket",
            path.display(),
            e.message().lines().next().unwrap_or("syntax error")
        )
    })?;
    let get = |key: &str, default: &str| {
        doc.get_ref()
            .get("control")
            .and_then(|c| c.get_ref().get(key))
            .and_then(|v| v.get_ref().as_str())
            .map_or_else(
                || std::path::PathBuf::from(default),
                std::path::PathBuf::from,
            )
    };
    Ok((
        get("vrrpd_socket", model::DEFAULT_VRRPD_SOCKET),
        get("lbd_socket", model::DEFAULT_LBD_SOCKET),
    ))
}

/// The first 16 hex digits of the SHA-256 of a configuration's text.
pub fn fingerprint(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a daemon reads its configuration: the file and its node (`--node`, else the
/// hostname picks it).
#[derive(Debug, Clone)]
pub struct NodeSource {
    /// The cluster.toml.
    pub config_path: std::path::PathBuf,
    /// `--node`, else the hostname picks the node.
    pub node: Option<String>,
}

/// A configuration read, validated and resolved for one node.
#[derive(Debug, Clone)]
pub struct LoadedNode {
    /// The whole file.
    pub cluster: ClusterConfig,
    /// This node's view of it.
    pub view: NodeView,
    /// What [`NodeSource::reload`] needs to read the file again.
    pub memo: FileMemo,
}

impl NodeSource {
    /// Reads and validates the file and resolves this node's view; the error is the
    /// diagnostics (file, line, key, fix).
    ///
    /// Every interface the node's view names must exist in this namespace: vrrpd and
    /// lbd load through here, so they accept and refuse the same files (as
    /// `vrrpctl check-config --node` does).
    pub fn load(&self) -> Result<LoadedNode, ConfigError> {
        let path = &self.config_path;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, e))?;
        let (cluster, blocks) = parse_text(&text, &path.display().to_string(), true)?;
        let view = self.view(&cluster)?;
        let memo = FileMemo::new(text, &cluster, blocks, cluster.services.len());
        Ok(LoadedNode {
            cluster,
            view,
            memo,
        })
    }

    /// Reads the file again for a daemon that runs `running`, loaded with `memo`:
    /// when only `[[service]]` blocks changed, only those are parsed and checked
    /// (the rest of the file is what was accepted); otherwise the whole file is read
    /// as [`NodeSource::load`] reads it. The same file gets the same verdict and view
    /// either way. Returns the view and the memo to keep once the view runs.
    pub fn reload(
        &self,
        memo: &FileMemo,
        running: &NodeView,
    ) -> Result<(NodeView, FileMemo), ConfigError> {
        let path = &self.config_path;
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, e))?;
        let (mut cluster, blocks, parsed) = match memo.reread(&text, &running.services) {
            Some(read) => (read.config, read.blocks, Some(read.replaced)),
            None => {
                let (cluster, blocks) = parse_text(&text, &path.display().to_string(), true)?;
                (cluster, blocks.into(), None)
            }
        };
        // The view takes the services; the memo keeps the rest.
        let services = std::mem::take(&mut cluster.services);
        let mut memo = FileMemo::new(text, &cluster, blocks, services.len());
        if let Some((old, new)) = parsed {
            memo = memo.parsed_in_parts(old, new);
        }
        let mut view = self.view(&cluster)?;
        view.services = services;
        Ok((view, memo))
    }

    /// This node's view of `cluster`, if every interface it names exists here.
    fn view(&self, cluster: &ClusterConfig) -> Result<NodeView, ConfigError> {
        let view = cluster.node_view(self.node.as_deref())?;
        let missing = host::missing_interfaces(&view, &cluster.source_file);
        if !missing.is_empty() {
            return Err(ConfigError::invalid(missing));
        }
        Ok(view)
    }
}
