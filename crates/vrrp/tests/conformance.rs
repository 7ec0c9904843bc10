//! Data-driven conformance suite for the VRRP state machine.
//!
//! Each folder under `tests/conformance/` is one case: `case.json` holds the
//! configuration and the inputs, `expected.json` the actions each input
//! produced and the final status. `VRRP_CONFORMANCE_BLESS=1` rewrites the
//! expected files from the current code, so an intended change shows up as a
//! reviewed diff. A case without an expected file fails.

mod replay;

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
    replay::replay("conformance", 30, run, first_difference);
}
