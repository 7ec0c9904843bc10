//! A spanned TOML tree and the typed accessors that read it while collecting errors.
//!
//! The parser (`toml`'s `DeTable`) keeps byte spans for every key and value. The tree
//! is a small uniform view of the document (arrays of tables and inline tables look
//! the same; keys and strings are borrowed from the parsed document, not copied). A
//! problem is reported under its key path (`service[3].server[1].port`), and the
//! path is looked up in the tree only then, so that checks made long after parsing
//! (duplicates, cross references) still point at the right place, and a file that
//! is fine costs no bookkeeping per key (10,000s of services have ~1M keys).

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::did_you_mean;

/// A byte range in the source text.
pub(crate) type Span = Range<usize>;

/// A value with its span.
#[derive(Debug)]
pub(crate) struct Sv<'d> {
    pub(crate) span: Span,
    pub(crate) kind: Kind<'d>,
}

/// The kinds of TOML value. Strings are borrowed from the text unless the parser
/// had to unescape them.
#[derive(Debug)]
pub(crate) enum Kind<'d> {
    Str(Cow<'d, str>),
    Int(i64),
    Float,
    Bool(bool),
    Datetime,
    Array(Vec<Sv<'d>>),
    Table(Vec<Entry<'d>>),
}

impl Kind<'_> {
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
pub(crate) struct Entry<'d> {
    pub(crate) key: Cow<'d, str>,
    pub(crate) key_span: Span,
    pub(crate) value: Sv<'d>,
}

/// The spanned tree of a parsed document, or the start of an integer that does not
/// fit in 64 bits (the parser keeps integers as written). The document is taken
/// apart as it is read: its keys and strings move into the tree (borrowed from the
/// text, as the parser has them) and what is left of it is freed on the way.
pub(crate) fn from_document(doc: Spanned<DeTable<'_>>) -> Result<Sv<'_>, usize> {
    from_document_at(doc, 0)
}

/// [`from_document`] of a document that starts at byte `at` of a larger text (a
/// part of a file parsed alone): every span is moved by `at`, so that it is the
/// span in the whole text.
pub(crate) fn from_document_at(doc: Spanned<DeTable<'_>>, at: usize) -> Result<Sv<'_>, usize> {
    let span = shift(doc.span(), at);
    convert_table(doc.into_inner(), span, at)
}

fn shift(span: Span, at: usize) -> Span {
    span.start + at..span.end + at
}

fn convert_table(t: DeTable<'_>, span: Span, at: usize) -> Result<Sv<'_>, usize> {
    let mut entries = Vec::with_capacity(t.len());
    for (k, v) in t {
        entries.push(Entry {
            key_span: shift(k.span(), at),
            key: k.into_inner(),
            value: convert_value(v, at)?,
        });
    }
    Ok(Sv {
        span,
        kind: Kind::Table(entries),
    })
}

fn convert_value(v: Spanned<DeValue<'_>>, at: usize) -> Result<Sv<'_>, usize> {
    let span = shift(v.span(), at);
    let kind = match v.into_inner() {
        DeValue::String(s) => Kind::Str(s),
        DeValue::Integer(i) => {
            Kind::Int(i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| span.start)?)
        }
        DeValue::Float(_) => Kind::Float,
        DeValue::Boolean(b) => Kind::Bool(b),
        DeValue::Datetime(_) => Kind::Datetime,
        DeValue::Array(a) => Kind::Array(
            a.into_iter()
                .map(|v| convert_value(v, at))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => return convert_table(t, span, at),
    };
    Ok(Sv { span, kind })
}

/// A problem before file/line resolution.
#[derive(Debug)]
pub(crate) struct RawDiag {
    pub(crate) offset: usize,
    pub(crate) key: String,
    pub(crate) message: String,
    pub(crate) fix: String,
}

/// Collects problems, placing each by its key path in the tree being read.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    pub(crate) diags: Vec<RawDiag>,
    /// What is accepted but probably not meant.
    pub(crate) warnings: Vec<RawDiag>,
    /// The document, where key paths are looked up.
    root: &'a Sv<'a>,
}

impl<'a> Reader<'a> {
    /// A reader of the document `root`.
    pub(crate) fn new(root: &'a Sv<'a>) -> Self {
        Reader {
            diags: Vec::new(),
            warnings: Vec::new(),
            root,
        }
    }

    /// A reader of the same document with nothing recorded yet, to read part of it
    /// on another thread ([`Reader::absorb`] takes what it recorded back).
    pub(crate) fn fork(&self) -> Reader<'a> {
        Reader::new(self.root)
    }

    /// Appends what `other` ([`Reader::fork`]) recorded to what this one has.
    pub(crate) fn absorb(&mut self, other: Reader<'a>) {
        self.diags.extend(other.diags);
        self.warnings.extend(other.warnings);
    }

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

    /// Start of the value at `path`, or of its closest parent in the file.
    pub(crate) fn value_offset(&self, path: &str) -> usize {
        self.lookup(path).0 .1
    }

    /// Start of the key at `path`, or of its closest parent in the file.
    pub(crate) fn key_offset(&self, path: &str) -> usize {
        self.lookup(path).0 .0
    }

    /// The (key start, value start) of `path`, or of its closest parent in the
    /// file, and whether that is `path` itself. An array element's key is the
    /// element. At each table the longest key that the rest of the path starts
    /// with is taken, so that a key holding a dot still resolves.
    fn lookup(&self, path: &str) -> ((usize, usize), bool) {
        let mut node = self.root;
        let mut found = (node.span.start, node.span.start);
        let mut rest = path;
        while !rest.is_empty() {
            let next = match &node.kind {
                Kind::Table(entries) => entries
                    .iter()
                    .filter(|e| {
                        rest.strip_prefix(&*e.key)
                            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
                    })
                    .max_by_key(|e| e.key.len())
                    .map(|e| {
                        let after = &rest[e.key.len()..];
                        (
                            (e.key_span.start, e.value.span.start),
                            &e.value,
                            after.strip_prefix('.').unwrap_or(after),
                        )
                    }),
                Kind::Array(items) => rest
                    .strip_prefix('[')
                    .and_then(|inner| inner.split_once(']'))
                    .and_then(|(index, after)| {
                        let item = items.get(index.parse::<usize>().ok()?)?;
                        Some((
                            (item.span.start, item.span.start),
                            item,
                            after.strip_prefix('.').unwrap_or(after),
                        ))
                    }),
                _ => None,
            };
            let Some((spans, value, after)) = next else {
                return (found, false);
            };
            found = spans;
            node = value;
            rest = after;
        }
        (found, true)
    }

    /// Whether a key path is present in the file.
    pub(crate) fn was_present(&self, path: &str) -> bool {
        self.lookup(path).1
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
            Kind::Str(s) => Some(s.to_string()),
            _ => {
                self.type_error(v, path, "a string", "");
                None
            }
        }
    }

    /// A non-empty string without control characters.
    pub(crate) fn name(&mut self, v: &Sv, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if !is_name(&s) {
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

    /// An array.
    pub(crate) fn array<'v>(&mut self, v: &'v Sv<'v>, path: &str) -> Option<&'v [Sv<'v>]> {
        match &v.kind {
            Kind::Array(a) => Some(a),
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
        let mut path = String::with_capacity(parent.len() + 1 + key.len());
        path.push_str(parent);
        path.push('.');
        path.push_str(key);
        path
    }
}

/// The path of element `i` of the array at `parent` (`service[3]`).
pub(crate) fn index(parent: &str, i: usize) -> String {
    use std::fmt::Write as _;
    let mut path = String::with_capacity(parent.len() + 8);
    path.push_str(parent);
    path.push('[');
    // Writing a number into a String cannot fail.
    let _ = write!(path, "{i}");
    path.push(']');
    path
}

/// Which keys of a table were used: a word for tables of up to 64 keys (every
/// table of a usual file), a list for larger ones.
enum Used {
    Few(u64),
    Many(Vec<bool>),
}

impl Used {
    fn new(len: usize) -> Used {
        if len <= 64 {
            Used::Few(0)
        } else {
            Used::Many(vec![false; len])
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Used::Few(bits) => *bits |= 1 << i,
            Used::Many(v) => v[i] = true,
        }
    }

    fn set_all(&mut self) {
        match self {
            Used::Few(bits) => *bits = u64::MAX,
            Used::Many(v) => v.iter_mut().for_each(|u| *u = true),
        }
    }

    fn get(&self, i: usize) -> bool {
        match self {
            Used::Few(bits) => bits & (1 << i) != 0,
            Used::Many(v) => v[i],
        }
    }
}

/// A table being read: tracks which keys were used, so the rest can be reported.
pub(crate) struct Table<'a, 'p> {
    pub(crate) path: &'p str,
    pub(crate) start: usize,
    entries: &'a [Entry<'a>],
    used: Used,
    /// Shown in "missing key" messages, such as `[[service]]`.
    what: &'static str,
}

impl<'a, 'p> Table<'a, 'p> {
    /// Views a value as a table, or reports a type error.
    pub(crate) fn new(
        r: &mut Reader,
        v: &'a Sv<'a>,
        path: &'p str,
        what: &'static str,
    ) -> Option<Self> {
        match &v.kind {
            Kind::Table(entries) => Some(Self {
                path,
                start: v.span.start,
                entries,
                used: Used::new(entries.len()),
                what,
            }),
            _ => {
                r.type_error(v, path, "a table", "");
                None
            }
        }
    }

    /// The path of a key of this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// Takes a key, marking it used.
    pub(crate) fn get(&mut self, key: &str) -> Option<(&'a Sv<'a>, String)> {
        let entries = self.entries;
        let i = entries.iter().position(|e| e.key == key)?;
        self.used.set(i);
        Some((&entries[i].value, self.key_path(key)))
    }

    /// Takes a required key, or reports it missing with an example of what to add.
    pub(crate) fn require(
        &mut self,
        r: &mut Reader,
        key: &str,
        example: &str,
    ) -> Option<(&'a Sv<'a>, String)> {
        let got = self.get(key);
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

    /// All entries, each marked used (for map-like tables).
    pub(crate) fn entries(&mut self) -> Vec<(&'a Entry<'a>, String)> {
        let entries = self.entries;
        self.used.set_all();
        entries.iter().map(|e| (e, self.key_path(&e.key))).collect()
    }

    /// Whether the key is present (without using it).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Reports every key that was not used, against the keys that were asked for.
    pub(crate) fn finish(&mut self, r: &mut Reader, allowed: &[&str]) {
        for (i, e) in self.entries.iter().enumerate() {
            if self.used.get(i) {
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
    // A valid value is taken as it is; the key's path is made only for a report.

    /// Takes a key, marking it used, without its path.
    fn take(&mut self, key: &str) -> Option<&'a Sv<'a>> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used.set(i);
        Some(&self.entries[i].value)
    }

    /// Optional string.
    pub(crate) fn opt_string(&mut self, r: &mut Reader, key: &str) -> Option<String> {
        let v = self.take(key)?;
        match &v.kind {
            Kind::Str(s) => Some(s.to_string()),
            _ => r.string(v, &self.key_path(key)),
        }
    }

    /// Optional name ([`Reader::name`]).
    pub(crate) fn opt_name(&mut self, r: &mut Reader, key: &str) -> Option<String> {
        let v = self.take(key)?;
        match &v.kind {
            Kind::Str(s) if is_name(s) => Some(s.to_string()),
            _ => r.name(v, &self.key_path(key)),
        }
    }

    /// Required name.
    pub(crate) fn req_name(&mut self, r: &mut Reader, key: &str, example: &str) -> Option<String> {
        match self.take(key) {
            Some(v) => match &v.kind {
                Kind::Str(s) if is_name(s) => Some(s.to_string()),
                _ => r.name(v, &self.key_path(key)),
            },
            None => {
                let (v, p) = self.require(r, key, example)?;
                r.name(v, &p)
            }
        }
    }

    /// Required plain IP address ([`Reader::ip`]).
    pub(crate) fn req_ip(&mut self, r: &mut Reader, key: &str, example: &str) -> Option<IpAddr> {
        match self.take(key) {
            Some(v) => match &v.kind {
                Kind::Str(s) if s.parse::<IpAddr>().is_ok() => s.parse().ok(),
                _ => r.ip(v, &self.key_path(key)),
            },
            None => {
                let (v, p) = self.require(r, key, example)?;
                r.ip(v, &p)
            }
        }
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
        let v = self.take(key)?;
        match &v.kind {
            Kind::Int(i) if (lo..=hi).contains(i) => Some(*i),
            _ => r.int_in(v, &self.key_path(key), lo, hi, fix),
        }
    }

    /// Optional boolean.
    pub(crate) fn opt_bool(&mut self, r: &mut Reader, key: &str) -> Option<bool> {
        let v = self.take(key)?;
        match &v.kind {
            Kind::Bool(b) => Some(*b),
            _ => r.boolean(v, &self.key_path(key)),
        }
    }

    /// Optional choice among words.
    pub(crate) fn opt_choice<T: Copy>(
        &mut self,
        r: &mut Reader,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let v = self.take(key)?;
        if let Kind::Str(s) = &v.kind {
            if let Some((_, t)) = options.iter().find(|(w, _)| *w == &**s) {
                return Some(*t);
            }
        }
        r.choice(v, &self.key_path(key), options)
    }
}

/// Whether [`Reader::name`] takes `s`: not empty, no control characters.
fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// Peeks at a table's `name` string, for reference checks that must not depend on
/// whether the rest of the element was valid.
pub(crate) fn peek_name<'v>(v: &'v Sv<'_>) -> Option<&'v str> {
    match &v.kind {
        Kind::Table(entries) => {
            entries
                .iter()
                .find(|e| e.key == "name")
                .and_then(|e| match &e.value.kind {
                    Kind::Str(s) => Some(&**s),
                    _ => None,
                })
        }
        _ => None,
    }
}
