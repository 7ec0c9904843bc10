//! What an import could not carry over, and what it had to assume.

use std::fmt;

/// A place in an input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    /// The file as it was named (an included file: as the include resolved it).
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Why an item is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    /// Said in the input, absent from the output: no equivalent in cluster.toml.
    Unmapped,
    /// Absent from the input, present in the output: a value the importer chose
    /// (placeholders among them). Check each before use.
    Assumed,
    /// The two nodes' files disagree on something cluster.toml holds once.
    Differs,
}

impl ItemKind {
    fn word(self) -> &'static str {
        match self {
            ItemKind::Unmapped => "unmapped",
            ItemKind::Assumed => "assumed",
            ItemKind::Differs => "differs",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Unmapped, assumed or differing.
    pub kind: ItemKind,
    /// Where the input says it (none for what the input lacks).
    pub at: Option<Loc>,
    /// What it is: the keyword or the output key.
    pub what: String,
    /// Why, and what to use instead.
    pub detail: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}: {}: {}", self.kind.word(), self.what, self.detail)
    }
}

/// Everything an import could not map or had to assume, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The items.
    pub items: Vec<Item>,
}

impl Report {
    /// Notes something the input says that the output does not carry.
    pub fn unmapped(&mut self, at: &Loc, what: impl Into<String>, detail: impl Into<String>) {
        self.push(ItemKind::Unmapped, Some(at.clone()), what, detail);
    }

    /// Notes a value the importer chose.
    pub fn assumed(
        &mut self,
        at: Option<&Loc>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(ItemKind::Assumed, at.cloned(), what, detail);
    }

    /// Notes a disagreement between the two nodes' files.
    pub fn differs(&mut self, at: &Loc, what: impl Into<String>, detail: impl Into<String>) {
        self.push(ItemKind::Differs, Some(at.clone()), what, detail);
    }

    fn push(
        &mut self,
        kind: ItemKind,
        at: Option<Loc>,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.items.push(Item {
            kind,
            at,
            what: what.into(),
            detail: detail.into(),
        });
    }

    /// The items of one kind.
    pub fn of(&self, kind: ItemKind) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.kind == kind)
    }

    /// How many items of one kind.
    pub fn count(&self, kind: ItemKind) -> usize {
        self.of(kind).count()
    }
}

impl fmt::Display for Report {
    /// Unmapped items first (what the operator must replace), then differences,
    /// then assumptions; each group in input order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Files in the order they were first named, lines in order within each.
        let mut files: Vec<&str> = Vec::new();
        for at in self.items.iter().filter_map(|i| i.at.as_ref()) {
            if !files.contains(&at.file.as_str()) {
                files.push(&at.file);
            }
        }
        let place = |i: &Item| {
            i.at.as_ref().map(|at| {
                (
                    files
                        .iter()
                        .position(|f| *f == at.file)
                        .unwrap_or(usize::MAX),
                    at.line,
                )
            })
        };
        for kind in [ItemKind::Unmapped, ItemKind::Differs, ItemKind::Assumed] {
            let mut items: Vec<&Item> = self.of(kind).collect();
            items.sort_by_key(|i| place(i));
            for item in items {
                writeln!(f, "{item}")?;
            }
        }
        write!(
            f,
            "{} unmapped, {} differing between the nodes, {} assumed",
            self.count(ItemKind::Unmapped),
            self.count(ItemKind::Differs),
            self.count(ItemKind::Assumed)
        )
    }
}
