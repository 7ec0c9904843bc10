//! A spanned TOML tree and the typed accessors that read it while collecting errors.
//!
//! toml_edit's parser keeps byte spans for every key and value. The tree is copied into
//! a small uniform form (arrays of tables and inline tables look the same), and every
//! accessor records the span of what it read under its key path, so that checks made
//! long after parsing (duplicates, cross references) still point at the right place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use toml_edit::{ImDocument, Item, Value};

use crate::diagnostic::did_you_mean;

/// A byte range in the source text.
pub(crate) type Span = Range<usize>;

/// A value with its span.
#[derive(Debug)]
pub(crate) struct Sv {
    pub(crate) span: Span,
    pub(crate) kind: Kind,
}

/// The kinds of TOML value.
#[derive(Debug)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Sv>),
    Table(Vec<Entry>),
}

impl Kind {
    fn type_name(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

/// A key of a table with its span and value.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) value: Sv,
}

/// Copies a parsed document into the spanned tree.
pub(crate) fn from_document(doc: &ImDocument<&str>) -> Sv {
    convert_item(doc.as_item(), 0..0).unwrap_or(Sv {
        span: 0..0,
        kind: Kind::Table(Vec::new()),
    })
}

fn convert_item(item: &Item, fallback: Span) -> Option<Sv> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(convert_value(v, fallback)),
        Item::Table(t) => Some(convert_table(t, fallback)),
        Item::ArrayOfTables(a) => {
            let span = a.span().unwrap_or(fallback);
            let elems = a.iter().map(|t| convert_table(t, span.clone())).collect();
            Some(Sv {
                span,
                kind: Kind::Array(elems),
            })
        }
    }
}

fn convert_table(t: &toml_edit::Table, fallback: Span) -> Sv {
    let span = t.span().unwrap_or(fallback);
    let mut entries = Vec::new();
    for (k, v) in t.iter() {
        let key_span = t.key(k).and_then(|k| k.span()).unwrap_or(span.clone());
        if let Some(value) = convert_item(v, key_span.clone()) {
            entries.push(Entry {
                key: k.to_string(),
                key_span,
                value,
            });
        }
    }
    Sv {
        span,
        kind: Kind::Table(entries),
    }
}

fn convert_value(v: &Value, fallback: Span) -> Sv {
    let span = v.span().unwrap_or(fallback);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Float(_) => Kind::Float,
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Datetime(_) => Kind::Datetime,
        Value::Array(a) => Kind::Array(a.iter().map(|e| convert_value(e, span.clone())).collect()),
        Value::InlineTable(t) => {
            let mut entries = Vec::new();
            for (k, e) in t.iter() {
                let key_span = t.key(k).and_then(|k| k.span()).unwrap_or(span.clone());
                entries.push(Entry {
                    key: k.to_string(),
                    key_span: key_span.clone(),
                    value: convert_value(e, key_span),
                });
            }
            Kind::Table(entries)
        }
    };
    Sv { span, kind }
}

/// A problem before file/line resolution.
#[derive(Debug)]
pub(crate) struct RawDiag {
    pub(crate) offset: usize,
    pub(crate) key: String,
    pub(crate) message: String,
    pub(crate) fix: String,
}

/// Collects problems and the span of every key path read.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    pub(crate) diags: Vec<RawDiag>,
    /// What is accepted but probably not meant.
    pub(crate) warnings: Vec<RawDiag>,
    /// key path -> (key start, value start)
    spans: HashMap<String, (usize, usize)>,
}

impl Reader {
    /// Records a problem at a byte offset.
    pub(crate) fn error_at(
        &mut self,
        offset: usize,
        key: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.diags.push(RawDiag {
            offset,
            key: key.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Records a problem at the value of a key path that was read.
    pub(crate) fn error_value(
        &mut self,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let offset = self.value_offset(path);
        self.error_at(offset, path, message, fix);
    }

    /// Records a warning (the file is still accepted) at the value of a key path.
    pub(crate) fn warn_value(
        &mut self,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let offset = self.value_offset(path);
        self.warnings.push(RawDiag {
            offset,
            key: path.to_string(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Records a problem at the key of a key path that was read.
    pub(crate) fn error_key(
        &mut self,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let offset = self.key_offset(path);
        self.error_at(offset, path, message, fix);
    }

    /// Start of the value at `path`, or of its closest recorded parent.
    pub(crate) fn value_offset(&self, path: &str) -> usize {
        self.lookup(path).map_or(0, |(_, v)| v)
    }

    /// Start of the key at `path`, or of its closest recorded parent.
    pub(crate) fn key_offset(&self, path: &str) -> usize {
        self.lookup(path).map_or(0, |(k, _)| k)
    }

    fn lookup(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.get(p) {
                return Some(*s);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Whether a key path was present in the file.
    pub(crate) fn was_present(&self, path: &str) -> bool {
        self.spans.contains_key(path)
    }

    pub(crate) fn record(&mut self, path: &str, key_start: usize, value_start: usize) {
        self.spans
            .entry(path.to_string())
            .or_insert((key_start, value_start));
    }

    /// Number of problems so far (to tell whether an element read cleanly).
    pub(crate) fn error_count(&self) -> usize {
        self.diags.len()
    }

    fn type_error(&mut self, v: &Sv, path: &str, expected: &str, fix: &str) {
        let fix = if fix.is_empty() {
            format!("write {expected} here")
        } else {
            fix.to_string()
        };
        self.error_at(
            v.span.start,
            path,
            format!("expected {expected}, found {}", v.kind.type_name()),
            fix,
        );
    }

    /// A string value.
    pub(crate) fn string(&mut self, v: &Sv, path: &str) -> Option<String> {
        match &v.kind {
            Kind::Str(s) => Some(s.clone()),
            _ => {
                self.type_error(v, path, "a string", "");
                None
            }
        }
    }

    /// A non-empty string without control characters.
    pub(crate) fn name(&mut self, v: &Sv, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if s.is_empty() || s.chars().any(char::is_control) {
            self.error_at(
                v.span.start,
                path,
                "the name is empty or contains control characters",
                "use a short printable name such as \"web\"",
            );
            return None;
        }
        Some(s)
    }

    /// An interface name as Linux accepts it.
    pub(crate) fn interface(&mut self, v: &Sv, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if !valid_interface_name(&s) {
            self.error_at(
                v.span.start,
                path,
                format!("`{s}` is not a valid interface name"),
                "use 1 to 15 bytes without '/', ':' or whitespace, such as \"eth0\"",
            );
            return None;
        }
        Some(s)
    }

    /// An integer in `lo..=hi`.
    pub(crate) fn int_in(
        &mut self,
        v: &Sv,
        path: &str,
        lo: i64,
        hi: i64,
        fix: &str,
    ) -> Option<i64> {
        match &v.kind {
            Kind::Int(i) if (lo..=hi).contains(i) => Some(*i),
            Kind::Int(i) => {
                let fix = if fix.is_empty() {
                    format!("use a value in {lo}..={hi}")
                } else {
                    fix.to_string()
                };
                let leaf = path.rsplit('.').next().unwrap_or(path);
                self.error_at(
                    v.span.start,
                    path,
                    format!("{leaf} {i} is out of range {lo}..={hi}"),
                    fix,
                );
                None
            }
            _ => {
                self.type_error(v, path, "an integer", "");
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, v: &Sv, path: &str) -> Option<bool> {
        match &v.kind {
            Kind::Bool(b) => Some(*b),
            _ => {
                self.type_error(v, path, "a boolean", "write true or false");
                None
            }
        }
    }

    /// An array; records each element's span under `path[i]`.
    pub(crate) fn array<'a>(&mut self, v: &'a Sv, path: &str) -> Option<&'a [Sv]> {
        match &v.kind {
            Kind::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    self.record(&format!("{path}[{i}]"), e.span.start, e.span.start);
                }
                Some(a)
            }
            _ => {
                self.type_error(v, path, "an array", "write a list in brackets: [ ... ]");
                None
            }
        }
    }

    /// A plain IP address (no prefix).
    pub(crate) fn ip(&mut self, v: &Sv, path: &str) -> Option<IpAddr> {
        let s = self.string(v, path)?;
        match s.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let fix = match s.split_once('/') {
                    Some((a, _)) if a.parse::<IpAddr>().is_ok() => {
                        format!("drop the prefix length: \"{a}\"")
                    }
                    _ => "write an IPv4 or IPv6 address such as \"198.18.0.100\"".to_string(),
                };
                self.error_at(
                    v.span.start,
                    path,
                    format!("`{s}` is not an IP address"),
                    fix,
                );
                None
            }
        }
    }

    /// One of the given words.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        v: &Sv,
        path: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(v, path)?;
        if let Some((_, t)) = options.iter().find(|(w, _)| *w == s) {
            return Some(*t);
        }
        let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
        let hint = match did_you_mean(&s, words.iter().copied()) {
            Some(w) => format!("did you mean \"{w}\"? "),
            None => String::new(),
        };
        self.error_at(
            v.span.start,
            path,
            format!("`{s}` is not a valid value"),
            format!("{hint}use one of: {}", words.join(", ")),
        );
        None
    }
}

/// Whether Linux would accept this as an interface name.
pub(crate) fn valid_interface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// Joins a parent path and a key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A table being read: tracks which keys were used, so the rest can be reported.
pub(crate) struct Table<'a> {
    pub(crate) path: String,
    pub(crate) start: usize,
    entries: &'a [Entry],
    used: Vec<bool>,
    /// Shown in "missing key" messages, such as `[[service]]`.
    what: String,
}

impl<'a> Table<'a> {
    /// Views a value as a table, or reports a type error.
    pub(crate) fn new(r: &mut Reader, v: &'a Sv, path: &str, what: &str) -> Option<Self> {
        match &v.kind {
            Kind::Table(entries) => {
                r.record(path, v.span.start, v.span.start);
                Some(Self {
                    path: path.to_string(),
                    start: v.span.start,
                    entries,
                    used: vec![false; entries.len()],
                    what: what.to_string(),
                })
            }
            _ => {
                r.type_error(v, path, "a table", "");
                None
            }
        }
    }

    /// The path of a key of this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Takes a key, marking it used and recording its spans.
    pub(crate) fn get(&mut self, r: &mut Reader, key: &str) -> Option<(&'a Sv, String)> {
        let entries = self.entries;
        let i = entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        let e = &entries[i];
        let path = self.key_path(key);
        r.record(&path, e.key_span.start, e.value.span.start);
        Some((&e.value, path))
    }

    /// Takes a required key, or reports it missing with an example of what to add.
    pub(crate) fn require(
        &mut self,
        r: &mut Reader,
        key: &str,
        example: &str,
    ) -> Option<(&'a Sv, String)> {
        let got = self.get(r, key);
        if got.is_none() {
            r.error_at(
                self.start,
                &self.key_path(key),
                format!("{} is missing the required key `{key}`", self.what),
                format!("add `{example}`"),
            );
        }
        got
    }

    /// All entries, each marked used and recorded (for map-like tables).
    pub(crate) fn entries(&mut self, r: &mut Reader) -> Vec<(&'a Entry, String)> {
        let entries = self.entries;
        self.used.iter_mut().for_each(|u| *u = true);
        entries
            .iter()
            .map(|e| {
                let path = self.key_path(&e.key);
                r.record(&path, e.key_span.start, e.value.span.start);
                (e, path)
            })
            .collect()
    }

    /// Whether the key is present (without using it).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Reports every key that was not used, against the keys that were asked for.
    pub(crate) fn finish(&mut self, r: &mut Reader, allowed: &[&str]) {
        for (e, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let path = self.key_path(&e.key);
            let fix = match did_you_mean(&e.key, allowed.iter().copied()) {
                Some(s) => format!("did you mean `{s}`? allowed keys: {}", allowed.join(", ")),
                None => format!("remove it; allowed keys: {}", allowed.join(", ")),
            };
            r.error_at(
                e.key_span.start,
                &path,
                format!("unknown key `{}` in {}", e.key, self.what),
                fix,
            );
        }
    }

    // Typed shortcuts. `None` means absent or invalid; invalid ones were reported.

    /// Optional string.
    pub(crate) fn opt_string(&mut self, r: &mut Reader, key: &str) -> Option<String> {
        let (v, p) = self.get(r, key)?;
        r.string(v, &p)
    }

    /// Required name.
    pub(crate) fn req_name(&mut self, r: &mut Reader, key: &str, example: &str) -> Option<String> {
        let (v, p) = self.require(r, key, example)?;
        r.name(v, &p)
    }

    /// Optional integer in range.
    pub(crate) fn opt_int(
        &mut self,
        r: &mut Reader,
        key: &str,
        lo: i64,
        hi: i64,
        fix: &str,
    ) -> Option<i64> {
        let (v, p) = self.get(r, key)?;
        r.int_in(v, &p, lo, hi, fix)
    }

    /// Optional boolean.
    pub(crate) fn opt_bool(&mut self, r: &mut Reader, key: &str) -> Option<bool> {
        let (v, p) = self.get(r, key)?;
        r.boolean(v, &p)
    }

    /// Optional choice among words.
    pub(crate) fn opt_choice<T: Copy>(
        &mut self,
        r: &mut Reader,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let (v, p) = self.get(r, key)?;
        r.choice(v, &p, options)
    }
}

/// Peeks at a table's `name` string, for reference checks that must not depend on
/// whether the rest of the element was valid.
pub(crate) fn peek_name(v: &Sv) -> Option<&str> {
    match &v.kind {
        Kind::Table(entries) => {
            entries
                .iter()
                .find(|e| e.key == "name")
                .and_then(|e| match &e.value.kind {
                    Kind::Str(s) => Some(s.as_str()),
                    _ => None,
                })
        }
        _ => None,
    }
}
