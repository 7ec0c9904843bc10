//! Reading a file again when only some `[[service]]` blocks changed: a one-server
//! change in a file of 10,000 services parses one block, not the whole file.
//!
//! Of the file as last accepted, a digest is kept of each `[[service]]` block, with
//! where it starts (the parser's spans of the `[[service]]` headers), and of the text
//! before the first block and after the last (not the text itself: 10,000 services
//! are 8 MB). The new text's blocks are compared with those digests from both ends;
//! when what differs lies inside the services' blocks, the blocks it touches are
//! parsed alone and replace those services. The text before and after them is (to a
//! 64-bit digest) byte for byte what was accepted, so it means what it meant: each block
//! starts with its `[[service]]` header at a line start and ends where the next header
//! starts, and nothing outside a block is part of its service (checked when the
//! blocks are found). Anything else (a change outside the services, a block that does
//! not parse alone, a check that fails) reads the whole file, which also gives the
//! diagnostics their lines.

use std::hash::Hasher;
use std::ops::Range;

use toml::de::DeTable;

use crate::model::{ClusterConfig, Service};
use crate::tree::{self, Kind, Reader, Sv};

/// What a daemon keeps of the file it runs, so that reading it again parses only the
/// `[[service]]` blocks that changed ([`crate::NodeSource::reload`]).
#[derive(Debug, Clone, Default)]
pub struct FileMemo {
    /// The accepted text's length.
    len: usize,
    /// The digests of the accepted text before the first block and after the last.
    ends: (u64, u64),
    /// The configuration of that text without its services (the running view has
    /// them); `None`: nothing was kept.
    rest: Option<Box<ClusterConfig>>,
    /// Where `[[service]]` number i's block starts, and one more entry where the last
    /// block ends; the digest of each block. Empty: the file cannot be read again in
    /// parts.
    blocks: Blocks,
    /// What the read that made this memo parsed, when it read the file in parts
    /// (`None`: the whole file): the running services it replaced, and the
    /// services that replaced them (positions in the running and the new list).
    parsed: Option<(Range<usize>, Range<usize>)>,
}

impl FileMemo {
    /// A memo of `text`, whose configuration is `config` and whose `[[service]]`
    /// blocks start at `blocks` ([`service_blocks`], or a reread's, digests
    /// included); it has `services` services (its `services` may have been taken
    /// out). The text is not kept, only digests of it.
    pub(crate) fn new(
        text: String,
        config: &ClusterConfig,
        blocks: impl Into<Blocks>,
        services: usize,
    ) -> FileMemo {
        let rest = without_services(config);
        let mut blocks: Blocks = blocks.into();
        let mut ends = (0, 0);
        if blocks.starts.len() == services + 1 && blocks.starts[services] <= text.len() {
            let starts = &blocks.starts;
            if blocks.digests.len() != services {
                blocks.digests = starts
                    .windows(2)
                    .map(|w| digest(&text[w[0]..w[1]]))
                    .collect();
            }
            ends = (
                digest(&text[..starts[0]]),
                digest(&text[starts[services]..]),
            );
        } else {
            blocks = Blocks::default();
        }
        FileMemo {
            len: text.len(),
            ends,
            rest: Some(Box::new(rest)),
            blocks,
            parsed: None,
        }
    }

    /// The same memo, saying that the read parsed only the blocks of the services
    /// `new`, which replaced the running services `old`.
    pub(crate) fn parsed_in_parts(mut self, old: Range<usize>, new: Range<usize>) -> FileMemo {
        self.parsed = Some((old, new));
        self
    }

    /// How many `[[service]]` blocks the read that made this memo parsed when it
    /// parsed only those that changed; `None` when it read the whole file.
    pub fn blocks_parsed(&self) -> Option<usize> {
        self.parsed.as_ref().map(|(_, new)| new.len())
    }

    /// When the read that made this memo parsed only what changed: the positions of
    /// the running services it replaced, and of those that replaced them in the new
    /// list. Every other service is the same, in the same order.
    pub fn services_replaced(&self) -> Option<(Range<usize>, Range<usize>)> {
        self.parsed.clone()
    }

    /// Whether the next read of the file may parse only what changed.
    pub fn in_parts(&self) -> bool {
        !self.blocks.starts.is_empty()
    }

    /// Reads `text` against this memo, `running` being the services of the
    /// configuration the memo was made from: the configuration (its fingerprint
    /// included) and the memo of `text`, or `None` when the whole file must be read.
    pub(crate) fn reread(&self, text: &str, running: &[Service]) -> Option<Reread> {
        let rest = self.rest.as_deref()?;
        // Active-active checks every service against the nodes and the announce
        // settings (`validate::check_active_active`), which a part alone cannot.
        if rest.cluster.mode != crate::model::ClusterMode::ActiveBackup {
            return None;
        }
        let (blocks, digests) = (&self.blocks.starts, &self.blocks.digests);
        let n = running.len();
        if blocks.len() != n + 1 || digests.len() != n || n == 0 {
            return None;
        }
        let (old_len, new_len) = (self.len, text.len());
        // The text before the blocks and after them must be as accepted.
        let tail = old_len.checked_sub(blocks[n])?;
        let services_end = new_len.checked_sub(tail)?;
        if services_end < blocks[0]
            || digest(text.get(..blocks[0])?) != self.ends.0
            || digest(text.get(services_end..)?) != self.ends.1
        {
            return None;
        }
        let block = |from: usize, to: usize| text.get(from..to).map(digest);
        // The blocks that are the same from the start: 0..a.
        let mut a = 0;
        while a < n
            && blocks[a + 1] <= services_end
            && block(blocks[a], blocks[a + 1]) == Some(digests[a])
        {
            a += 1;
        }
        // And from the end: b + 1..n, none of them before the end of the first ones.
        let shift = |at: usize| (at + new_len).checked_sub(old_len);
        let mut b = n;
        while b > a
            && shift(blocks[b - 1]).is_some_and(|s| s >= blocks[a])
            && shift(blocks[b - 1]).and_then(|s| block(s, shift(blocks[b])?))
                == Some(digests[b - 1])
        {
            b -= 1;
        }
        if a == n && old_len == new_len {
            let mut config = rest.clone();
            config.services = running.to_vec();
            config.fingerprint = crate::fingerprint(text);
            return Some(Reread {
                config,
                blocks: self.blocks.clone(),
                replaced: (0..0, 0..0),
            });
        }
        // What differs lies in blocks a..b (b exclusive), or was inserted between
        // blocks a - 1 and a: that insertion is read with the block before it (the
        // first block: after it).
        if a == b {
            if a > 0 {
                a -= 1;
            } else {
                b += 1;
            }
        }
        let b = b - 1;
        let start = blocks[a];
        let end = shift(blocks[b + 1])?;
        let region = text.get(start..end)?;
        // The next header must start a line, as it did.
        if end < new_len && !region.is_empty() && !region.ends_with('\n') {
            return None;
        }
        let (services, starts) = read_blocks(region, a)?;
        let read = services.len();
        let parsed = (a..b + 1, a..a + read);
        let mut config = rest.clone();
        config.services = Vec::with_capacity(n - (b + 1 - a) + services.len());
        config.services.extend_from_slice(&running[..a]);
        let changed = a..a + services.len();
        config.services.extend(services);
        config.services.extend_from_slice(&running[b + 1..]);
        if !crate::validate::services_pass(&config, changed) {
            return None;
        }
        config.fingerprint = crate::fingerprint(text);
        let mut next = Vec::with_capacity(config.services.len() + 1);
        next.extend_from_slice(&blocks[..a]);
        next.extend(starts.iter().map(|s| start + s));
        next.extend(blocks[b + 1..].iter().map(|&s| s + new_len - old_len));
        if next.len() != config.services.len() + 1 || next.len() < 2 {
            next.clear();
        }
        // The digests of the blocks read; the others' are as they were.
        let mut next_digests = Vec::with_capacity(next.len().saturating_sub(1));
        if !next.is_empty() {
            next_digests.extend_from_slice(&digests[..a]);
            next_digests.extend(
                next[a..a + read + 1]
                    .windows(2)
                    .map(|w| digest(&text[w[0]..w[1]])),
            );
            next_digests.extend_from_slice(&digests[b + 1..]);
        }
        Some(Reread {
            config,
            blocks: Blocks {
                starts: next,
                digests: next_digests,
            },
            replaced: parsed,
        })
    }
}

/// Where a file's `[[service]]` blocks start (and the last ends), and each block's
/// digest (empty: not computed yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Blocks {
    pub(crate) starts: Vec<usize>,
    digests: Vec<u64>,
}

impl Blocks {
    /// The blocks of a parsed file ([`service_blocks`]) with their digests.
    pub(crate) fn of(root: &Sv, text: &str) -> Blocks {
        let starts = service_blocks(root, text);
        let digests = starts
            .windows(2)
            .map(|w| digest(&text[w[0]..w[1]]))
            .collect();
        Blocks { starts, digests }
    }
}

impl From<Vec<usize>> for Blocks {
    fn from(starts: Vec<usize>) -> Blocks {
        Blocks {
            starts,
            digests: Vec::new(),
        }
    }
}

/// The digest of `text` the memo keeps (SipHash-1-3 with fixed keys: the same on
/// every run; the file is the operator's, not an adversary's).
fn digest(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(text.as_bytes());
    h.finish()
}

/// What [`FileMemo::reread`] read.
pub(crate) struct Reread {
    /// The configuration, fingerprint included.
    pub(crate) config: ClusterConfig,
    /// Where its `[[service]]` blocks start ([`service_blocks`]), with their digests.
    pub(crate) blocks: Blocks,
    /// The running services replaced, and the services that replaced them.
    pub(crate) replaced: (Range<usize>, Range<usize>),
}

/// `config` without its services.
fn without_services(c: &ClusterConfig) -> ClusterConfig {
    ClusterConfig {
        source_file: c.source_file.clone(),
        fingerprint: c.fingerprint.clone(),
        warnings: c.warnings.clone(),
        cluster: c.cluster.clone(),
        nodes: c.nodes.clone(),
        sync_groups: c.sync_groups.clone(),
        instances: c.instances.clone(),
        services: Vec::new(),
        checks: c.checks.clone(),
        nat: c.nat.clone(),
        sync: c.sync.clone(),
        control: c.control.clone(),
        metrics: c.metrics.clone(),
        dataplane: c.dataplane.clone(),
        vrrpd: c.vrrpd,
        announce: c.announce.clone(),
    }
}

/// Parses `region` alone as `[[service]]` blocks (numbered from `first` in the
/// file): the services and where each block starts in `region`; `None` if it holds
/// anything else or any problem.
fn read_blocks(region: &str, first: usize) -> Option<(Vec<Service>, Vec<usize>)> {
    let doc = DeTable::parse(region).ok()?;
    let root = tree::from_document(doc).ok()?;
    let Kind::Table(entries) = &root.kind else {
        return None;
    };
    let items: &[Sv] = match entries.as_slice() {
        [] => &[],
        [e] if e.key == "service" => match &e.value.kind {
            Kind::Array(items) => items,
            _ => return None,
        },
        _ => return None,
    };
    let starts = element_starts(items, region)?;
    let mut r = Reader::new(&root);
    let mut services = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let s = crate::read::read_service(&mut r, item, &format!("service[{}]", first + k))?;
        services.push(s);
    }
    if !r.diags.is_empty() {
        return None;
    }
    let mut blocks = starts;
    blocks.push(region.len());
    if !items
        .iter()
        .enumerate()
        .all(|(k, item)| within(item, blocks[k]..blocks[k + 1]))
    {
        return None;
    }
    blocks.pop();
    Some((services, blocks))
}

/// The `[[service]]` headers' starts of `items`, in order, if each item is a table
/// written with a header of its own.
fn element_starts(items: &[Sv], text: &str) -> Option<Vec<usize>> {
    let mut starts: Vec<usize> = Vec::with_capacity(items.len() + 1);
    for item in items {
        let header =
            matches!(item.kind, Kind::Table(_)) && text.get(item.span.start..)?.starts_with("[[");
        if !header || starts.last().is_some_and(|&s| s >= item.span.start) {
            return None;
        }
        starts.push(item.span.start);
    }
    Some(starts)
}

/// Where each `[[service]]` block of a parsed file starts, and where the last ends;
/// empty when the file cannot be read again in parts (services written otherwise,
/// other sections between them, a service with parts outside its block).
pub(crate) fn service_blocks(root: &Sv, text: &str) -> Vec<usize> {
    service_blocks_of(root, text).unwrap_or_default()
}

fn service_blocks_of(root: &Sv, text: &str) -> Option<Vec<usize>> {
    let Kind::Table(entries) = &root.kind else {
        return None;
    };
    let services = entries.iter().find(|e| e.key == "service")?;
    let Kind::Array(items) = &services.value.kind else {
        return None;
    };
    let mut blocks = element_starts(items, text)?;
    let (&first, &last) = (blocks.first()?, blocks.last()?);
    // Everything else lies before the first block or after the last; the last block
    // ends at the line of the first thing after it.
    let mut end = text.len();
    let mut between = false;
    for e in entries.iter().filter(|e| e.key != "service") {
        for_each_start(e, &mut |at| {
            if (first..=last).contains(&at) {
                between = true;
            } else if at > last {
                end = end.min(at);
            }
        });
    }
    if between {
        return None;
    }
    if end < text.len() {
        end = text.get(..end)?.rfind('\n').map_or(0, |i| i + 1);
    }
    if end <= last {
        return None;
    }
    blocks.push(end);
    items
        .iter()
        .enumerate()
        .all(|(k, item)| within(item, blocks[k]..blocks[k + 1]))
        .then_some(blocks)
}

/// Calls `f` with the start of every key and value under entry `e`.
fn for_each_start(e: &tree::Entry, f: &mut impl FnMut(usize)) {
    f(e.key_span.start);
    for_each_value_start(&e.value, f);
}

fn for_each_value_start(v: &Sv, f: &mut impl FnMut(usize)) {
    f(v.span.start);
    match &v.kind {
        Kind::Table(entries) => entries.iter().for_each(|e| for_each_start(e, f)),
        Kind::Array(items) => items.iter().for_each(|i| for_each_value_start(i, f)),
        _ => {}
    }
}

/// Whether every key and value under `v` lies inside `block`.
fn within(v: &Sv, block: Range<usize>) -> bool {
    let inside = |s: &Range<usize>| s.start >= block.start && s.end <= block.end;
    inside(&v.span)
        && match &v.kind {
            Kind::Table(entries) => entries
                .iter()
                .all(|e| inside(&e.key_span) && within(&e.value, block.clone())),
            Kind::Array(items) => items.iter().all(|i| within(i, block.clone())),
            _ => true,
        }
}
