//! Errors that point at a place in the file and say how to fix it.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// File name as given to `load`/`parse`.
    pub file: String,
    /// 1-based line (0 when the problem has no position, such as an unreadable file).
    pub line: usize,
    /// 1-based column in characters (0 when there is no position).
    pub column: usize,
    /// Key path such as `service[0].server[1].weight` (empty for syntax errors).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if !self.key.is_empty() {
            write!(f, " (key `{}`)", self.key)?;
        }
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// The configuration was refused; nothing of it may be applied.
#[derive(Debug)]
pub struct ConfigError {
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The I/O error when the file could not be read (or the hostname not found).
    pub source: Option<std::io::Error>,
}

impl ConfigError {
    /// An error made of these diagnostics.
    pub fn invalid(diagnostics: Vec<Diagnostic>) -> Self {
        Self {
            diagnostics,
            source: None,
        }
    }

    /// The file at `path` could not be read.
    pub fn unreadable(path: &Path, err: std::io::Error) -> Self {
        Self {
            diagnostics: vec![Diagnostic {
                file: path.display().to_string(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the configuration file: {err}"),
                fix: "check the path and that this user may read it".to_string(),
            }],
            source: Some(err),
        }
    }

    /// Whether this error is about reading the file rather than its content.
    pub fn is_io(&self) -> bool {
        self.source.is_some()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

// No `source()`: an unreadable file's diagnostic says the I/O error itself, and an
// `anyhow` chain (`{:#}`) prints it once.
impl std::error::Error for ConfigError {}

/// Maps byte offsets to 1-based line and character column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, line_starts }
    }

    /// 1-based (line, column) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }
}

/// Levenshtein distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_says_its_io_error_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file here");
        let text = io.to_string();
        let e = ConfigError::unreadable(Path::new("/x/cluster.toml"), io);
        assert!(e.is_io());
        assert_eq!(e.to_string().matches(&text).count(), 1, "{e}");
        // Nothing in the chain repeats it.
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn positions_are_one_based_in_characters() {
        let idx = LineIndex::new("ab\né=1\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(3), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(idx.position(5), (2, 2));
        assert_eq!(idx.position(8), (3, 1));
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(did_you_mean("wieght", ["weight", "name"]), Some("weight"));
        assert_eq!(did_you_mean("colour", ["weight", "name"]), None);
    }
}
