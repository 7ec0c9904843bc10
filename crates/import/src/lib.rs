//! Importers: a keepalived.conf, or an HAProxy ALOHA layer-4 configuration (its
//! `director` blocks and its NAT rules), to one cluster.toml for both nodes, with a
//! [`Report`] of everything the input says that the output does not carry, and of
//! every value the importer had to choose, each with its file and line.
//!
//! Given both nodes' files, the importer merges them: what cluster.toml holds per
//! node (priorities, addresses, unicast peers, the node's name) comes from each
//! file; everything else must agree, and where it does not the first file wins and
//! the report says so. Given one file, the peer is derived (its priority, its
//! address from `unicast_peer`) and what cannot be derived is a placeholder the
//! report names, with the `--address` that replaces it.
//!
//! The output is checked with the configuration crate's own reader before it is
//! returned: an import that does not validate is an error, never a file.

pub mod aloha;
mod assemble;
pub mod keepalived;
mod net;
pub mod out;
pub mod report;
pub mod syntax;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use assemble::{Draft, NodeFacts};
pub use report::{Item, ItemKind, Loc, Report};

/// Why an import failed. A variant that wraps another error says its text itself and
/// does not return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read (an include names where it was included).
    #[error("{}{path}: cannot read: {error}", .from.as_ref().map(|f| format!("{f}: included ")).unwrap_or_default())]
    Read {
        /// The file.
        path: String,
        /// The include that named it.
        from: Option<String>,
        /// The error.
        error: std::io::Error,
    },
    /// The input is malformed at a place.
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Loc,
        /// What is wrong, and what would be right.
        message: String,
    },
    /// The command line asks for something impossible.
    #[error("{0}")]
    Options(String),
    /// More or fewer files than one or two.
    #[error("give one file, or the two nodes' files (got {0})")]
    FileCount(usize),
    /// The generated file does not validate: the input combines things
    /// cluster.toml cannot express together. The diagnostics name the keys.
    #[error("the imported configuration does not validate:\n{diagnostics}")]
    Invalid {
        /// The configuration crate's diagnostics, one a line.
        diagnostics: String,
        /// The generated text, for inspection.
        text: String,
    },
}

/// An address the operator gives for a node: `NODE:IFACE=ADDR/LEN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOverride {
    /// Node name (as in the output), or `1` / `2` for the first / second node.
    pub node: String,
    /// Interface.
    pub interface: String,
    /// Address with its prefix.
    pub address: config::InterfaceAddress,
}

impl std::str::FromStr for AddressOverride {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: write NODE:IFACE=ADDRESS/PREFIX, such as lb1:eth0=198.18.0.11/24");
        let (node, rest) = s.split_once(':').ok_or_else(bad)?;
        let (interface, addr) = rest.split_once('=').ok_or_else(bad)?;
        if node.is_empty() || interface.is_empty() {
            return Err(bad());
        }
        let address =
            config::InterfaceAddress::parse(addr, false).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Self {
            node: node.to_string(),
            interface: interface.to_string(),
            address,
        })
    }
}

/// What the operator adds to the input.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The cluster's name (default: the input's, else "imported").
    pub cluster_name: Option<String>,
    /// The nodes' names, in file order (default: keepalived's `router_id`, else lb1, lb2).
    pub node_names: Vec<String>,
    /// Node addresses the input does not say.
    pub addresses: Vec<AddressOverride>,
    /// The name validation diagnostics give the generated text (default
    /// "imported cluster.toml").
    pub output_name: Option<String>,
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The cluster.toml text (validated).
    pub text: String,
    /// The file's structure, as written.
    pub file: out::ClusterFile,
    /// What could not be mapped, what differs, what was assumed.
    pub report: Report,
}

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// keepalived.conf.
    Keepalived,
    /// HAProxy ALOHA: `director` blocks and NAT rules.
    Aloha,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Keepalived => "keepalived",
            Format::Aloha => "aloha",
        })
    }
}

/// Imports one or two files of `format`.
pub fn import(
    format: Format,
    files: &[PathBuf],
    options: &Options,
) -> Result<Imported, ImportError> {
    let mut inputs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|error| ImportError::Read {
            path: shown(f),
            from: None,
            error,
        })?;
        inputs.push((f.clone(), text));
    }
    import_texts(format, &inputs, options)
}

/// Imports one or two files already read: (the file's path, its text). The path
/// names the file in the report and anchors keepalived's relative includes.
pub fn import_texts(
    format: Format,
    inputs: &[(PathBuf, String)],
    options: &Options,
) -> Result<Imported, ImportError> {
    if inputs.is_empty() || inputs.len() > 2 {
        return Err(ImportError::FileCount(inputs.len()));
    }
    let mut report = Report::default();
    let (draft, facts) = match format {
        Format::Keepalived => keepalived::import(inputs, &mut report)?,
        Format::Aloha => aloha::import(inputs, &mut report)?,
    };
    let sources: Vec<String> = inputs.iter().map(|(p, _)| shown(p)).collect();
    assemble::finish(format, &sources, draft, facts, options, report)
}

/// The file name a path shows in locations.
pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Parses an address word, or says where it is wrong.
pub(crate) fn ip_at(word: &str, at: &Loc, what: &str) -> Result<IpAddr, ImportError> {
    word.parse().map_err(|_| ImportError::Syntax {
        at: at.clone(),
        message: format!("{what} {word:?} is not an IP address"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let e: anyhow::Error = ImportError::Read {
            path: "keepalived.conf".into(),
            from: Some("main.conf:3".into()),
            error: std::io::Error::other("the kernel said no"),
        }
        .into();
        let chain = format!("{e:#}");
        assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
    }
}
