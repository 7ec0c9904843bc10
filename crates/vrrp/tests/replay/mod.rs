//! Replays a folder of data-driven cases, one per sub-folder: `case.json` in,
//! `expected.json` the result to match. `VRRP_CONFORMANCE_BLESS=1` rewrites the
//! expected files from the current code, so an intended change shows up as a
//! reviewed diff. A case without an expected file fails. Shared by the
//! conformance (one router) and topology (several nodes) suites.

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

fn case_dirs(folder: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(folder);
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Runs every case of `tests/<folder>` (at least `min_cases`) through `run` and
/// compares; `difference` explains a mismatch (expected, actual).
pub fn replay<C: DeserializeOwned>(
    folder: &str,
    min_cases: usize,
    run: impl Fn(C) -> Value,
    difference: impl Fn(&Value, &Value) -> String,
) {
    let bless = std::env::var("VRRP_CONFORMANCE_BLESS").is_ok_and(|v| v == "1");
    let dirs = case_dirs(folder);
    assert!(
        dirs.len() >= min_cases,
        "expected at least {min_cases} cases in {folder}, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(dir.join("case.json"))
            .unwrap_or_else(|e| panic!("{name}: case.json: {e}"));
        let case: C =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: case.json: {e}"));
        let actual = run(case);
        let expected_path = dir.join("expected.json");
        if bless {
            let mut text = serde_json::to_string_pretty(&actual).unwrap();
            text.push('\n');
            fs::write(&expected_path, text).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Err(_) => failures.push(format!(
                "{name}: no expected.json (run with VRRP_CONFORMANCE_BLESS=1 and review it)"
            )),
            Ok(text) => {
                let expected: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{name}: expected.json: {e}"));
                if expected != actual {
                    failures.push(format!("{name}: {}", difference(&expected, &actual)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}
