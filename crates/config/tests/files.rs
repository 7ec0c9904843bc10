//! Data-driven configuration tests.
//!
//! `tests/invalid/*.toml` start with one `# expect: LINE:COL message fragment` line per
//! diagnostic the file must produce, in order; nothing else may be reported.
//! `tests/valid/*.toml` must load, and give a view for both nodes.
//! With `LBSUITE_BLESS=1` the expect lines of invalid files are rewritten from what the
//! validator reports now; review the diff before keeping it. `LBSUITE_SHOW=1` prints
//! every diagnostic (run with `--nocapture`).

use std::fs;
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn toml_files(name: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir(name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

struct Expect {
    line: usize,
    column: usize,
    fragment: String,
}

fn expectations(text: &str) -> Vec<Expect> {
    text.lines()
        .map_while(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let (pos, fragment) = rest.split_once(' ').unwrap();
            let (line, column) = pos.split_once(':').unwrap();
            Expect {
                line: line.parse().unwrap(),
                column: column.parse().unwrap(),
                fragment: fragment.to_string(),
            }
        })
        .collect()
}

fn bless(path: &Path, text: &str) {
    // Header line count can change, shifting positions: iterate until stable.
    let body: String = text
        .lines()
        .skip_while(|l| l.starts_with("# expect: "))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut header_lines = expectations(text).len();
    for _ in 0..4 {
        let padded = format!("{}{body}", "#\n".repeat(header_lines));
        let diags = match config::parse(&padded, "x") {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics,
        };
        if diags.len() == header_lines || diags.is_empty() {
            let header: String = diags
                .iter()
                .map(|d| format!("# expect: {}:{} {}\n", d.line, d.column, d.message))
                .collect();
            fs::write(path, format!("{header}{body}")).unwrap();
            return;
        }
        header_lines = diags.len();
    }
    panic!("{}: could not bless", path.display());
}

#[test]
fn invalid_files_are_refused_at_the_expected_places() {
    let files = toml_files("invalid");
    assert!(files.len() >= 30, "only {} invalid cases", files.len());
    let blessing = std::env::var_os("LBSUITE_BLESS").is_some();
    let mut failures = Vec::new();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        if blessing {
            bless(path, &text);
            continue;
        }
        let file_name = path.display().to_string();
        let expects = expectations(&text);
        assert!(!expects.is_empty(), "{file_name}: no `# expect:` line");
        let err = match config::parse(&text, &file_name) {
            Ok(_) => {
                failures.push(format!("{file_name}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let got: Vec<String> = err.diagnostics.iter().map(|d| d.to_string()).collect();
        if std::env::var_os("LBSUITE_SHOW").is_some() {
            println!("{err}");
        }
        if err.diagnostics.len() != expects.len() {
            failures.push(format!(
                "{file_name}: expected {} diagnostics, got:\n  {}",
                expects.len(),
                got.join("\n  ")
            ));
            continue;
        }
        for (d, e) in err.diagnostics.iter().zip(&expects) {
            if (d.line, d.column) != (e.line, e.column) || !d.message.contains(&e.fragment) {
                failures.push(format!(
                    "{file_name}: expected {}:{} `{}`, got {d}",
                    e.line, e.column, e.fragment
                ));
            }
            assert_eq!(d.file, file_name);
            assert!(!d.fix.is_empty(), "{file_name}: no fix in {d}");
            let shown = d.to_string();
            assert!(
                shown.starts_with(&format!("{file_name}:{}:{}: ", d.line, d.column)),
                "{shown}"
            );
            if !d.message.starts_with("TOML syntax error") {
                assert!(!d.key.is_empty(), "{file_name}: no key in {d}");
                assert!(
                    shown.contains(&format!("(key `{}`); fix: ", d.key)),
                    "{shown}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn valid_files_load_for_both_nodes() {
    let files = toml_files("valid");
    assert!(!files.is_empty());
    for path in &files {
        let cfg = match config::load(path) {
            Ok(c) => c,
            Err(e) => panic!("{} refused:\n{e}", path.display()),
        };
        for name in cfg.node_names() {
            let view = cfg.node_view(Some(name)).unwrap();
            assert_eq!(view.name, name);
            assert_eq!(
                view.instances().count(),
                cfg.instances.len(),
                "{}: every instance is in the view",
                path.display()
            );
        }
    }
}
