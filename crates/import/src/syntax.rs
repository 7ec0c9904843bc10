//! keepalived.conf's syntax: words on lines, blocks in `{` `}`, comments from `#` or
//! `!` to the end of the line, double-quoted strings, and `include` with wildcards
//! relative to the including file's directory (keepalived.conf(5)).

use std::path::{Path, PathBuf};

use crate::report::Loc;
use crate::ImportError;

/// One statement: its words, where it is, and its block if it opens one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stmt {
    /// The words (the keyword first); quotes removed.
    pub words: Vec<String>,
    /// Where the statement starts.
    pub at: Loc,
    /// The statements of its `{ ... }` block, if it has one.
    pub block: Option<Vec<Stmt>>,
}

impl Stmt {
    /// The keyword.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The words after the keyword.
    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The block's statements (none when there is no block).
    pub fn children(&self) -> &[Stmt] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Nested includes deeper than this are taken for a cycle.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads `path` and every file it includes into one list of top-level statements.
pub fn read_file(path: &Path) -> Result<Vec<Stmt>, ImportError> {
    read_nested(path, 0, None)
}

fn read_nested(path: &Path, depth: usize, from: Option<&Loc>) -> Result<Vec<Stmt>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|error| ImportError::Read {
        path: path.display().to_string(),
        from: from.map(ToString::to_string),
        error,
    })?;
    parse(&text, path, depth)
}

/// A block being read: the statement that opened it and its statements so far.
struct Frame {
    owner: Option<Stmt>,
    children: Vec<Stmt>,
}

/// Parses one file's text (`path` names it in locations and anchors its includes).
pub fn parse(text: &str, path: &Path, depth: usize) -> Result<Vec<Stmt>, ImportError> {
    let file = path.display().to_string();
    let mut frames = vec![Frame {
        owner: None,
        children: Vec::new(),
    }];
    for (index, raw) in text.lines().enumerate() {
        let at = Loc {
            file: file.clone(),
            line: index + 1,
        };
        let tokens = tokenize(raw).map_err(|message| ImportError::Syntax {
            at: at.clone(),
            message,
        })?;
        let mut words: Vec<String> = Vec::new();
        for token in tokens {
            match token {
                Token::Open => {
                    let head = std::mem::take(&mut words);
                    let current = top(&mut frames);
                    let owner = if head.is_empty() {
                        // `{` on a line of its own opens the previous statement's block.
                        match current.children.pop() {
                            Some(prev) if prev.block.is_none() => prev,
                            _ => {
                                return Err(ImportError::Syntax {
                                    at,
                                    message: "`{` without a keyword before it".into(),
                                })
                            }
                        }
                    } else {
                        Stmt {
                            words: head,
                            at: at.clone(),
                            block: None,
                        }
                    };
                    frames.push(Frame {
                        owner: Some(owner),
                        children: Vec::new(),
                    });
                }
                Token::Close => {
                    flush(&mut frames, &mut words, &at, path, depth)?;
                    let closed = match frames.pop() {
                        Some(Frame {
                            owner: Some(mut owner),
                            children,
                        }) => {
                            owner.block = Some(children);
                            owner
                        }
                        _ => {
                            return Err(ImportError::Syntax {
                                at,
                                message: "`}` closes no block".into(),
                            })
                        }
                    };
                    top(&mut frames).children.push(closed);
                }
                Token::Word(w) => words.push(w),
            }
        }
        flush(&mut frames, &mut words, &at, path, depth)?;
    }
    match frames.pop() {
        Some(Frame {
            owner: Some(owner), ..
        }) => Err(ImportError::Syntax {
            message: format!(
                "the `{}` block opened here is not closed by the end of {file}",
                owner.keyword()
            ),
            at: owner.at,
        }),
        Some(Frame { children, .. }) => Ok(children),
        None => Ok(Vec::new()),
    }
}

/// The innermost open block; the file's own frame is never popped while reading
/// (a `}` that would pop it is refused).
fn top(frames: &mut Vec<Frame>) -> &mut Frame {
    if frames.is_empty() {
        frames.push(Frame {
            owner: None,
            children: Vec::new(),
        });
    }
    let last = frames.len() - 1;
    &mut frames[last]
}

fn flush(
    frames: &mut Vec<Frame>,
    words: &mut Vec<String>,
    at: &Loc,
    path: &Path,
    depth: usize,
) -> Result<(), ImportError> {
    if words.is_empty() {
        return Ok(());
    }
    let stmt = Stmt {
        words: std::mem::take(words),
        at: at.clone(),
        block: None,
    };
    let included = if is_include(stmt.keyword()) {
        include(&stmt, path, depth)?
    } else {
        vec![stmt]
    };
    top(frames).children.extend(included);
    Ok(())
}

fn is_include(keyword: &str) -> bool {
    matches!(keyword, "include" | "includer" | "includem" | "includef")
}

/// The statements of the files an `include` names, in the order the wildcard sorts them.
fn include(stmt: &Stmt, path: &Path, depth: usize) -> Result<Vec<Stmt>, ImportError> {
    let [pattern] = stmt.args() else {
        return Err(ImportError::Syntax {
            at: stmt.at.clone(),
            message: format!("`{}` takes one file name or pattern", stmt.keyword()),
        });
    };
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(ImportError::Syntax {
            at: stmt.at.clone(),
            message: format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH}: a file includes itself?"
            ),
        });
    }
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let full: PathBuf = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let full_text = full.display().to_string();
    let wildcard = pattern.contains(['*', '?', '[']);
    let mut files: Vec<PathBuf> = Vec::new();
    if wildcard {
        let paths = glob::glob(&full_text).map_err(|e| ImportError::Syntax {
            at: stmt.at.clone(),
            message: format!("include pattern {pattern:?}: {e}"),
        })?;
        for entry in paths {
            match entry {
                Ok(p) if p.is_file() => files.push(p),
                Ok(_) => {}
                Err(e) => {
                    return Err(ImportError::Syntax {
                        at: stmt.at.clone(),
                        message: format!("include {pattern:?}: {e}"),
                    })
                }
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(ImportError::Syntax {
                at: stmt.at.clone(),
                message: format!("include {pattern:?} matches no file (looked for {full_text})"),
            });
        }
    } else {
        files.push(full);
    }
    let mut out = Vec::new();
    for f in files {
        out.extend(read_nested(&f, depth + 1, Some(&stmt.at))?);
    }
    Ok(out)
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

/// Splits a line into words and braces; a comment runs from `#` or `!` outside a
/// quoted string to the end of the line.
fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let end_word = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' if word.is_empty() => break,
            '{' => {
                end_word(&mut word, &mut out);
                out.push(Token::Open);
            }
            '}' => {
                end_word(&mut word, &mut out);
                out.push(Token::Close);
            }
            '"' => {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    word.push(q);
                }
                if !closed {
                    return Err("a quoted string is not closed on its line".into());
                }
                // An empty quoted string is still a word.
                if word.is_empty() {
                    out.push(Token::Word(String::new()));
                }
            }
            c if c.is_whitespace() => end_word(&mut word, &mut out),
            c => word.push(c),
        }
    }
    end_word(&mut word, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<Stmt>, ImportError> {
        parse(text, Path::new("k.conf"), 0)
    }

    #[test]
    fn blocks_nest_with_braces_anywhere() {
        let s = parse_str(
            "global_defs {\n  router_id lb1 # comment\n}\nvrrp_sync_group G\n{\n group { VI_1 VI_2 }\n}\n! all comment\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].keyword(), "global_defs");
        assert_eq!(s[0].children()[0].words, ["router_id", "lb1"]);
        assert_eq!(s[0].children()[0].at.line, 2);
        assert_eq!(s[1].args(), ["G"]);
        let group = &s[1].children()[0];
        assert_eq!(group.keyword(), "group");
        assert_eq!(group.children()[0].words, ["VI_1", "VI_2"]);
    }

    #[test]
    fn quoted_strings_keep_spaces_and_comment_marks() {
        let s = parse_str("misc_path \"/bin/check --x # y\"\n").unwrap();
        assert_eq!(s[0].words, ["misc_path", "/bin/check --x # y"]);
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let e = parse_str("a {\n b 1\n").unwrap_err().to_string();
        assert!(e.starts_with("k.conf:1:"), "{e}");
        assert!(e.contains("not closed"), "{e}");
        let e = parse_str("a 1\n}\n").unwrap_err().to_string();
        assert!(e.starts_with("k.conf:2:"), "{e}");
        let e = parse_str("x \"open\n").unwrap_err().to_string();
        assert!(e.starts_with("k.conf:1:"), "{e}");
    }

    #[test]
    fn includes_resolve_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(dir.path().join("conf.d/b.conf"), "b 2\n").unwrap();
        std::fs::write(
            dir.path().join("conf.d/a.conf"),
            "a 1\ninclude ../last.inc\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("last.inc"), "z 9\n").unwrap();
        let main = dir.path().join("keepalived.conf");
        std::fs::write(&main, "top {\n include conf.d/*.conf\n}\n").unwrap();
        let s = read_file(&main).unwrap();
        let words: Vec<&str> = s[0].children().iter().map(Stmt::keyword).collect();
        assert_eq!(words, ["a", "z", "b"]);
        assert!(s[0].children()[1].at.file.ends_with("last.inc"));
    }

    #[test]
    fn a_missing_include_names_the_include_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("k.conf");
        std::fs::write(&main, "x 1\ninclude nothere.conf\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert!(e.contains("nothere.conf"), "{e}");
        assert!(e.contains("k.conf:2"), "{e}");
        std::fs::write(&main, "include none/*.conf\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert!(
            e.contains("k.conf:1") && e.contains("matches no file"),
            "{e}"
        );
    }

    #[test]
    fn an_include_cycle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("k.conf");
        std::fs::write(&main, "include k.conf\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert!(e.contains("deeper"), "{e}");
    }
}
