//! Data-driven conformance suite for the VRRP state machine.
//!
//! Each folder under `tests/conformance/` is one case: `case.json` holds the
//! configuration and the inputs, `expected.json` the actions each input
//! produced and the final status. `VRRP_CONFORMANCE_BLESS=1` rewrites the
//! expected files from the current code, so an intended change shows up as a
//! reviewed diff. A case without an expected file fails.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use vrrp::config::RouterConfig;
use vrrp::event::Event;
use vrrp::router::Router;

/// The input side of a case.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows and which RFC text says so.
    #[allow(dead_code)]
    description: String,
    config: RouterConfig,
    events: Vec<Event>,
}

fn run(case: Case) -> Value {
    let mut router = Router::new(case.config).expect("case config is valid");
    let mut steps = Vec::new();
    for event in case.events {
        let input = serde_json::to_value(&event.input).unwrap();
        let now = event.now;
        let actions = router.handle(event);
        steps.push(json!({ "now": now, "input": input, "actions": actions }));
    }
    json!({
        "steps": steps,
        "final": {
            "instances": router.instances(),
            "groups": router.groups(),
            "counters": router.counters(),
        }
    })
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Where two results first differ, for a readable failure.
fn first_difference(expected: &Value, actual: &Value) -> String {
    let (Some(e), Some(a)) = (expected["steps"].as_array(), actual["steps"].as_array()) else {
        return "expected.json has no steps array".into();
    };
    for (i, (es, as_)) in e.iter().zip(a).enumerate() {
        if es != as_ {
            return format!(
                "step {i} differs\n--- expected\n{}\n--- actual\n{}",
                serde_json::to_string_pretty(es).unwrap(),
                serde_json::to_string_pretty(as_).unwrap()
            );
        }
    }
    if e.len() != a.len() {
        return format!("{} steps expected, {} produced", e.len(), a.len());
    }
    format!(
        "final status differs\n--- expected\n{}\n--- actual\n{}",
        serde_json::to_string_pretty(&expected["final"]).unwrap(),
        serde_json::to_string_pretty(&actual["final"]).unwrap()
    )
}

#[test]
fn conformance_cases() {
    let bless = std::env::var("VRRP_CONFORMANCE_BLESS").is_ok_and(|v| v == "1");
    let dirs = case_dirs();
    assert!(
        dirs.len() >= 30,
        "expected at least 30 cases, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(dir.join("case.json"))
            .unwrap_or_else(|e| panic!("{name}: case.json: {e}"));
        let case: Case =
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
                    failures.push(format!("{name}: {}", first_difference(&expected, &actual)));
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
