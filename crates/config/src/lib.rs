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
///
/// A large file is parsed in parts at once, one a core ([`parse_in_parts`]); a file
/// that does not parse or validate that way is read again whole, which gives the
/// diagnostics: a refusal reads the same whichever way the file was first parsed.
fn parse_text(
    text: &str,
    file_name: &str,
    blocks: bool,
) -> Result<(ClusterConfig, reread::Blocks), ConfigError> {
    let index = std::cell::OnceCell::new();
    let to_diag = |d: tree::RawDiag| {
        let (line, column) = index
            .get_or_init(|| diagnostic::LineIndex::new(text))
            .position(d.offset);
        Diagnostic {
            file: file_name.to_string(),
            line,
            column,
            key: d.key,
            message: d.message,
            fix: d.fix,
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    match parse_in_parts(text, cores.min(4), PIECE, file_name, blocks, &to_diag) {
        Some(parsed) => Ok(parsed),
        None => parse_whole(text, file_name, blocks, &to_diag),
    }
}

/// [`parse_text`] of the whole file at once.
fn parse_whole(
    text: &str,
    file_name: &str,
    blocks: bool,
    to_diag: &dyn Fn(tree::RawDiag) -> Diagnostic,
) -> Result<(ClusterConfig, reread::Blocks), ConfigError> {
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
    let root = tree::from_document(doc)
        .map_err(|at| syntax_error(at, "integer out of range for a 64-bit number"))?;
    read_tree(&root, text, file_name, blocks)
        .map_err(|diags| {
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
            ConfigError::invalid(out)
        })
        .map(|(mut config, warnings, blocks)| {
            config.warnings = warnings.into_iter().map(to_diag).collect();
            (config, blocks)
        })
}

/// The configuration of the spanned tree `root` of `text`, its warnings (file order)
/// and where its `[[service]]` blocks start with their digests (if `blocks`); or its
/// problems, in file order.
///
/// For a large file the fingerprint and the blocks (which only the text and the
/// tree's spans give) are found on another thread while the file is read.
#[allow(clippy::type_complexity)]
fn read_tree(
    root: &tree::Sv,
    text: &str,
    file_name: &str,
    blocks: bool,
) -> Result<(ClusterConfig, Vec<tree::RawDiag>, reread::Blocks), Vec<tree::RawDiag>> {
    let side = || {
        let found = if blocks {
            reread::Blocks::of(root, text)
        } else {
            reread::Blocks::default()
        };
        (fingerprint(text), found)
    };
    let mut reader = tree::Reader::new(root);
    let read = |reader: &mut tree::Reader| {
        let draft = read::read_document(reader, root);
        validate::cross_check(reader, &draft);
        draft
    };
    let (draft, (print, found)) = if text.len() < PARTS_FROM {
        (read(&mut reader), side())
    } else {
        std::thread::scope(|scope| {
            let aside = scope.spawn(side);
            let draft = read(&mut reader);
            let aside = aside
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (draft, aside)
        })
    };
    if reader.diags.is_empty() {
        if let Some(mut config) = validate::assemble(draft, file_name) {
            config.fingerprint = print;
            let mut warnings = std::mem::take(&mut reader.warnings);
            warnings.sort_by_key(|d| d.offset);
            return Ok((config, warnings, found));
        }
    }
    let mut diags = std::mem::take(&mut reader.diags);
    // File order; stable, so problems at one place keep the order they were found in.
    diags.sort_by_key(|d| d.offset);
    Err(diags)
}

/// Files smaller than this are parsed whole: a part's thread costs more than it saves.
const PARTS_FROM: usize = 1 << 20;

/// A file read in parts is cut into pieces of about this size, each thread parsing
/// a run of them one after another: what the parser allocates for a piece (its
/// tokens, its events, its tables) is freed before the next one and used again,
/// while still in the cache, rather than asked of the kernel page by page for the
/// whole part at once (at 10,000 services, 64 KiB pieces load in ~30 % less time
/// than 1 MiB ones, with 40 % less memory at the peak; `config_bench`).
const PIECE: usize = 1 << 16;

/// Parses a large `text` on `parts` threads at once (as many as there are cores, at
/// most 4), in pieces of about `piece` bytes, when it can be cut into pieces that
/// mean alone what they mean in the file: the first holds everything up to a
/// `[[service]]` header, each other one only `[[service]]` blocks (each starting
/// with its header, at a line start). Each thread parses a run of consecutive
/// pieces and turns each into its part of the tree (the parser's tree of a piece is
/// freed there), with spans moved to where the piece starts. The services of the
/// later pieces are appended to the first piece's in order, and the file is read
/// from that tree as from the whole file's: the parser's tree of the whole file is
/// the same, but for the spans. `None` (the whole file is then read by the caller)
/// when the file is small, cannot be cut so, a piece does not parse alone, or the
/// file is refused.
///
/// Why a piece means alone what it means in the file: the first piece parses alone,
/// so it ends where a line of the file starts outside any value, and the header
/// after it starts a new `[[service]]` element there; a later piece holds nothing
/// but `[[service]]` elements and what their headers open, every header naming its
/// path from the top (so nothing in it reaches back into an earlier piece); the
/// first piece's `service` is an array of `[[service]]` tables (else the file would
/// refuse the later headers).
fn parse_in_parts(
    text: &str,
    parts: usize,
    piece: usize,
    file_name: &str,
    blocks: bool,
    to_diag: &dyn Fn(tree::RawDiag) -> Diagnostic,
) -> Option<(ClusterConfig, reread::Blocks)> {
    if text.len() < PARTS_FROM || parts < 2 {
        return None;
    }
    let pieces = parts.max(text.len() / piece.max(1));
    let mut cuts = vec![0];
    for k in 1..pieces {
        let Some(cut) = service_header_after(text, text.len() * k / pieces) else {
            break;
        };
        if cut > *cuts.last()? {
            cuts.push(cut);
        }
    }
    if cuts.len() < 2 {
        return None;
    }
    cuts.push(text.len());
    let pieces: Vec<(usize, &str)> = cuts.windows(2).map(|w| (w[0], &text[w[0]..w[1]])).collect();
    // Consecutive runs of pieces, one a thread.
    let threads = parts.min(pieces.len());
    let runs: Vec<&[(usize, &str)]> = (0..threads)
        .map(|t| &pieces[pieces.len() * t / threads..pieces.len() * (t + 1) / threads])
        .collect();
    let (first, later) = std::thread::scope(|scope| {
        let later: Vec<_> = runs[1..]
            .iter()
            .map(|run| scope.spawn(|| services_of_pieces(run, text)))
            .collect();
        let (&(_, head), rest) = runs[0].split_first()?;
        let first = tree::from_document(toml::de::DeTable::parse(head).ok()?)
            .ok()
            .zip(services_of_pieces(rest, text));
        // A thread that panicked read a piece that does not parse alone.
        let later: Vec<_> = later.into_iter().map(|h| h.join().ok().flatten()).collect();
        Some((first, later))
    })?;
    let (mut root, more) = first?;
    {
        let tree::Kind::Table(entries) = &mut root.kind else {
            return None;
        };
        let services = entries.iter_mut().find(|e| e.key == "service")?;
        let tree::Kind::Array(items) = &mut services.value.kind else {
            return None;
        };
        if items.is_empty() || !items.iter().all(|i| written_with_header(i, text)) {
            return None;
        }
        items.extend(more);
        for more in later {
            items.extend(more?);
        }
    }
    let read = read_tree(&root, text, file_name, blocks);
    drop(root);
    let (mut config, warnings, blocks) = read.ok()?;
    config.warnings = warnings.into_iter().map(to_diag).collect();
    Some((config, blocks))
}

/// The `[[service]]` elements of `pieces` (each a start in `text` and the text from
/// there) parsed one after another, in order; `None` if a piece does not parse
/// alone or holds anything else.
fn services_of_pieces<'t>(pieces: &[(usize, &'t str)], text: &str) -> Option<Vec<tree::Sv<'t>>> {
    let mut items = Vec::new();
    for &(at, piece) in pieces {
        let doc = toml::de::DeTable::parse(piece).ok()?;
        let part = tree::from_document_at(doc, at).ok()?;
        let tree::Kind::Table(mut entries) = part.kind else {
            return None;
        };
        let only = entries.pop()?;
        if !entries.is_empty() || only.key != "service" {
            return None;
        }
        let tree::Kind::Array(more) = only.value.kind else {
            return None;
        };
        if more.is_empty() || !more.iter().all(|i| written_with_header(i, text)) {
            return None;
        }
        items.extend(more);
    }
    Some(items)
}

/// Where the first line at or after byte `from` that is a `[[service]]` header
/// starts (the header alone on its line, or followed by a comment).
fn service_header_after(text: &str, from: usize) -> Option<usize> {
    const HEADER: &[u8] = b"\n[[service]]";
    let bytes = text.as_bytes();
    let mut at = from.checked_sub(1)?;
    loop {
        let found = at
            + bytes
                .get(at..)?
                .windows(HEADER.len())
                .position(|w| w == HEADER)?;
        let after = &bytes[found + HEADER.len()..];
        if after.is_empty() || matches!(after[0], b'\n' | b'\r' | b' ' | b'\t' | b'#') {
            return Some(found + 1);
        }
        at = found + 1;
    }
}

/// Whether `item` (an element of an array) is a table opened by a `[[...]]` header.
fn written_with_header(item: &tree::Sv, text: &str) -> bool {
    matches!(item.kind, tree::Kind::Table(_))
        && text
            .get(item.span.start..)
            .is_some_and(|t| t.starts_with("[["))
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
                (cluster, blocks, None)
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"[cluster]
name = "parts"

[[node]]
name = "lb1"
priority = { edge = 150 }
addresses = { lo = ["198.18.0.11/24"] }

[[node]]
name = "lb2"
priority = { edge = 100 }
addresses = { lo = ["198.18.0.12/24"] }

[[sync_group]]
name = "edge"
instances = ["public"]

[[instance]]
name = "public"
interface = "lo"
vrid = 51
vips = ["198.18.0.100/24"]

[[check]]
name = "tcp"
type = "tcp"
"#;

    /// A file of `n` services x 8 servers (over 1 MB from 1,500 on); `edit` changes
    /// the text of service `i` (its block) if it says so.
    fn file(n: usize, edit: impl Fn(usize, String) -> String) -> String {
        let mut t = HEAD.to_owned();
        for i in 0..n {
            let mut block = format!(
                "\n[[service]]\nname = \"svc{i}\"\nvip = \"198.18.0.100\"\nport = {}\n",
                10_000 + i
            );
            for j in 0..8 {
                block.push_str(&format!(
                    "[[service.server]]\nname = \"srv{j}\"\naddress = \"198.18.0.21\"\nport = {}\ncheck = \"tcp\"\n",
                    8080 + j
                ));
            }
            t.push_str(&edit(i, block));
        }
        t
    }

    fn to_diag(d: tree::RawDiag, text: &str) -> Diagnostic {
        let (line, column) = diagnostic::LineIndex::new(text).position(d.offset);
        Diagnostic {
            file: "t.toml".to_owned(),
            line,
            column,
            key: d.key,
            message: d.message,
            fix: d.fix,
        }
    }

    /// The file read on `parts` threads, if it can be, and read whole.
    #[allow(clippy::type_complexity)]
    fn both(
        text: &str,
        parts: usize,
    ) -> (
        Option<(ClusterConfig, reread::Blocks)>,
        Result<(ClusterConfig, reread::Blocks), ConfigError>,
    ) {
        both_in(text, parts, PIECE)
    }

    /// [`both`] in pieces of `piece` bytes.
    #[allow(clippy::type_complexity)]
    fn both_in(
        text: &str,
        parts: usize,
        piece: usize,
    ) -> (
        Option<(ClusterConfig, reread::Blocks)>,
        Result<(ClusterConfig, reread::Blocks), ConfigError>,
    ) {
        let d = |r: tree::RawDiag| to_diag(r, text);
        (
            parse_in_parts(text, parts, piece, "t.toml", true, &d),
            parse_whole(text, "t.toml", true, &d),
        )
    }

    #[test]
    fn a_large_file_read_in_parts_is_the_file_read_whole() {
        // A scheduler only IPVS has: a warning, with its line, from the last part.
        let text = file(2_100, |i, b| {
            if i == 1_900 {
                b.replace("port = 11900\n", "port = 11900\nscheduler = \"sed\"\n")
            } else {
                b
            }
        });
        assert!(text.len() > PARTS_FROM);
        for parts in [2, 3, 4] {
            let (split, whole) = both(&text, parts);
            let (split, whole) = (split.expect("read in parts"), whole.expect("valid"));
            assert_eq!(split, whole, "{parts} parts");
            assert_eq!(split.0.services.len(), 2_100);
            assert_eq!(
                split.1.starts.len(),
                2_101,
                "every block's start, and the end"
            );
            assert_eq!(split.0.warnings.len(), 1);
            assert_eq!(
                split.0.warnings[0].line,
                line_of(&text, "scheduler = \"sed\"")
            );
        }
        // What `parse` gives (in parts on a machine of several cores).
        assert_eq!(
            parse(&text, "t.toml").expect("valid"),
            both(&text, 1).1.expect("valid").0
        );
    }

    /// The line (from 1) where `needle` first stands in `text`.
    fn line_of(text: &str, needle: &str) -> usize {
        text[..text.find(needle).expect("there")].lines().count() + 1
    }

    #[test]
    fn a_file_in_many_pieces_a_thread_is_the_file_read_whole() {
        // Pieces of 64 KiB: each thread parses several, one after another. A warning
        // in a late piece; in another, a key and a name the parser unescapes (not
        // borrowed from the text).
        let text = file(2_100, |i, b| match i {
            1_900 => b.replace("port = 11900\n", "port = 11900\nscheduler = \"sed\"\n"),
            1_234 => b
                .replace("name = \"svc1234\"", "\"na\\u006de\" = \"svc\\u0031234x\"")
                .replace("name = \"srv5\"", "name = \"srv\\u00415\""),
            _ => b,
        });
        for parts in [2, 3] {
            let (split, whole) = both_in(&text, parts, 1 << 16);
            let (split, whole) = (split.expect("read in parts"), whole.expect("valid"));
            assert_eq!(split, whole, "{parts} threads");
            assert_eq!(
                split.1.starts.len(),
                2_101,
                "every block's start, and the end"
            );
            let s = &split.0.services[1_234];
            assert_eq!(s.name, "svc1234x");
            assert_eq!(s.servers[5].name, "srvA5");
            assert_eq!(split.0.warnings.len(), 1);
            assert_eq!(
                split.0.warnings[0].line,
                line_of(&text, "scheduler = \"sed\"")
            );
            assert_eq!(split.0.warnings[0].key, "service[1900].scheduler");
        }
    }

    #[test]
    fn a_refused_file_in_many_pieces_is_read_whole() {
        // A refusal in a late piece: its diagnostic has its line and key.
        let text = file(2_100, |i, b| match i {
            1_700 => b.replace("port = 8083\n", "port = 80831\n"),
            _ => b,
        });
        let (split, whole) = both_in(&text, 2, 1 << 16);
        assert!(split.is_none(), "a refusal is read whole");
        let whole = whole.expect_err("refused");
        let d = &whole.diagnostics[0];
        assert_eq!(d.key, "service[1700].server[3].port");
        assert_eq!(
            d.line,
            text[..text.find("80831").expect("there")].lines().count()
        );
    }

    #[test]
    fn a_repeated_server_name_names_the_first_user_few_servers_or_many() {
        // 5 servers are compared pair by pair, 20 through a table: the same reports.
        for (servers, first, again) in [(5, 1, 4), (20, 2, 18)] {
            let mut text = HEAD.to_owned();
            text.push_str("\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\n");
            for j in 0..servers {
                let name = if j == again { first } else { j };
                text.push_str(&format!(
                    "[[service.server]]\nname = \"srv{name}\"\naddress = \"198.18.0.{}\"\n",
                    20 + j
                ));
            }
            let err = parse(&text, "t.toml").expect_err("refused");
            assert_eq!(err.diagnostics.len(), 1, "{err}");
            let d = &err.diagnostics[0];
            assert_eq!(d.key, format!("service[0].server[{again}].name"));
            assert_eq!(
                d.message,
                format!("server name `srv{first}` is already used by service[0].server[{first}]")
            );
            let line = text
                .match_indices("[[service.server]]")
                .nth(again)
                .expect("there")
                .0;
            assert_eq!(d.line, text[..line].lines().count() + 2);
        }
    }

    #[test]
    fn a_bad_value_read_by_a_shortcut_is_reported_at_its_key() {
        // Valid values are taken without their key's path; a bad one still names it.
        let text = format!(
            "{HEAD}\n[[service]]\nname = \"web\"\nvip = \"198.18.0.100/24\"\nport = 80\n\
             [[service.server]]\nname = \"srv0\"\naddress = \"198.18.0.21\"\n\
             [[service.server]]\nname = 7\naddress = 5\nweight = 70000\ncheck = \"\"\n"
        );
        let err = parse(&text, "t.toml").expect_err("refused");
        let line = |what: &str| text[..text.find(what).expect("there")].lines().count() + 1;
        let got: Vec<(&str, usize)> = err
            .diagnostics
            .iter()
            .map(|d| (d.key.as_str(), d.line))
            .collect();
        assert_eq!(
            got,
            [
                ("service[0].vip", line("vip = \"198.18.0.100/24\"")),
                ("service[0].server[1].name", line("name = 7")),
                ("service[0].server[1].address", line("address = 5")),
                ("service[0].server[1].weight", line("weight = 70000")),
                ("service[0].server[1].check", line("check = \"\"")),
            ],
            "{err}"
        );
    }

    #[test]
    fn a_refused_large_file_has_the_diagnostics_of_the_whole_file() {
        let text = file(2_100, |i, b| match i {
            // One in each half of the services (read at once) and one found later.
            500 => b.replace("port = 8083\n", "port = 80831\n"),
            1_999 => b.replace("port = 8083\n", "port = 80830\n"),
            1_200 => b.replace("name = \"svc1200\"", "name = \"svc7\""),
            _ => b,
        });
        let (split, whole) = both(&text, 2);
        assert!(split.is_none(), "a refusal is read whole");
        let whole = whole.expect_err("refused").to_string();
        assert_eq!(
            parse(&text, "t.toml").expect_err("refused").to_string(),
            whole
        );
        let line = |what: &str| text[..text.find(what).expect("there")].lines().count();
        let (first, second) = (
            format!("t.toml:{}:", line("80831")),
            format!("t.toml:{}:", line("80830")),
        );
        let at = |what: &str| {
            whole
                .find(what)
                .unwrap_or_else(|| panic!("{what} in {whole}"))
        };
        assert!(at(&first) < at(&second), "file order: {whole}");
        assert!(whole.contains("svc7"), "{whole}");
    }

    #[test]
    fn a_file_that_cannot_be_cut_is_read_whole() {
        // A section after the services: the last part holds more than services.
        let mut text = file(2_100, |_, b| b);
        text.push_str("\n[metrics]\nenabled = false\n");
        let (split, whole) = both(&text, 2);
        assert!(split.is_none());
        assert_eq!(
            parse(&text, "t.toml").expect("valid"),
            whole.expect("valid").0
        );
        // A `[[service]]` line inside a string that spans lines (at the end of each
        // block, where the cut falls): the parts do not parse alone.
        let text = file(2_100, |_, b| {
            b + "description = \"\"\"\n[[service]]\n\"\"\"\n"
        });
        let cut = service_header_after(&text, text.len() / 2).expect("a header line");
        assert!(
            text[..cut].ends_with("\"\"\"\n"),
            "the cut is in the string"
        );
        let (split, whole) = both(&text, 2);
        assert!(split.is_none());
        assert!(whole.is_err());
    }
}
