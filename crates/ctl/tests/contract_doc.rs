//! docs/control.md against `ctl::contract`: every example on the page decodes with
//! its type and encodes back to the same JSON. A documented field that a type lost
//! (or renamed) fails, and so does a field of a type that the page does not show.

use ctl::contract::{lbd, vrrpd};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const DOC: &str = include_str!("../../../docs/control.md");

/// Decodes `example` as `T` and encodes it again.
fn round_trip<T: Serialize + DeserializeOwned>(example: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(example.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// The types with an example on the page, by the name after ```json.
fn encode_as(name: &str, example: &Value) -> Option<Result<Value, String>> {
    Some(match name {
        "VrrpdStatus" => round_trip::<vrrpd::VrrpdStatus>(example),
        "GroupStateEvent" => round_trip::<vrrpd::GroupStateEvent>(example),
        "ReloadParams" => round_trip::<vrrpd::ReloadParams>(example),
        "VrrpdReloadReply" => round_trip::<vrrpd::VrrpdReloadReply>(example),
        "MaintenanceParams" => round_trip::<vrrpd::MaintenanceParams>(example),
        "MaintenanceReply" => round_trip::<vrrpd::MaintenanceReply>(example),
        "PriorityParams" => round_trip::<vrrpd::PriorityParams>(example),
        "PriorityReply" => round_trip::<vrrpd::PriorityReply>(example),
        "PriorityClearParams" => round_trip::<vrrpd::PriorityClearParams>(example),
        "PriorityClearReply" => round_trip::<vrrpd::PriorityClearReply>(example),
        "PriorityListReply" => round_trip::<vrrpd::PriorityListReply>(example),
        "FaultParams" => round_trip::<vrrpd::FaultParams>(example),
        "FaultDrillReply" => round_trip::<vrrpd::FaultDrillReply>(example),
        "FailoverParams" => round_trip::<vrrpd::FailoverParams>(example),
        "FailoverDrillReply" => round_trip::<vrrpd::FailoverDrillReply>(example),
        "TrackParams" => round_trip::<vrrpd::TrackParams>(example),
        "TrackSetReply" => round_trip::<vrrpd::TrackSetReply>(example),
        "PrepareParams" => round_trip::<lbd::PrepareParams>(example),
        "PrepareReply" => round_trip::<lbd::PrepareReply>(example),
        "LbdReloadReply" => round_trip::<lbd::LbdReloadReply>(example),
        "LbdStatus" => round_trip::<lbd::LbdStatus>(example),
        "ServerParams" => round_trip::<lbd::ServerParams>(example),
        "ServerWeightParams" => round_trip::<lbd::ServerWeightParams>(example),
        "ServerReply" => round_trip::<lbd::ServerReply>(example),
        "ServerListReply" => round_trip::<lbd::ServerListReply>(example),
        "ServerClearParams" => round_trip::<lbd::ServerClearParams>(example),
        "ServerClearReply" => round_trip::<lbd::ServerClearReply>(example),
        _ => return None,
    })
}

const DOCUMENTED: [&str; 27] = [
    "VrrpdStatus",
    "GroupStateEvent",
    "ReloadParams",
    "VrrpdReloadReply",
    "MaintenanceParams",
    "MaintenanceReply",
    "PriorityParams",
    "PriorityReply",
    "PriorityClearParams",
    "PriorityClearReply",
    "PriorityListReply",
    "FaultParams",
    "FaultDrillReply",
    "FailoverParams",
    "FailoverDrillReply",
    "TrackParams",
    "TrackSetReply",
    "PrepareParams",
    "PrepareReply",
    "LbdReloadReply",
    "LbdStatus",
    "ServerParams",
    "ServerWeightParams",
    "ServerReply",
    "ServerListReply",
    "ServerClearParams",
    "ServerClearReply",
];

/// Each ```json NAME block of the page: (NAME, text).
fn examples() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in DOC.lines() {
        match &mut current {
            None => {
                if let Some(name) = line.strip_prefix("```json ") {
                    current = Some((name.trim().to_owned(), String::new()));
                }
            }
            Some((_, text)) if line.trim_end() != "```" => {
                text.push_str(line);
                text.push('\n');
            }
            Some(_) => out.extend(current.take()),
        }
    }
    out
}

/// Where `doc` and `encoded` differ, each as `path: what`.
fn differences(path: &str, doc: &Value, encoded: &Value, out: &mut Vec<String>) {
    match (doc, encoded) {
        (Value::Object(d), Value::Object(e)) => {
            for (k, v) in d {
                match e.get(k) {
                    Some(ev) => differences(&format!("{path}.{k}"), v, ev, out),
                    None => out.push(format!("{path}.{k}: documented, but the type lost it")),
                }
            }
            for k in e.keys().filter(|k| !d.contains_key(*k)) {
                out.push(format!("{path}.{k}: in the type, not documented"));
            }
        }
        (Value::Array(d), Value::Array(e)) if d.len() == e.len() => {
            for (i, (dv, ev)) in d.iter().zip(e).enumerate() {
                differences(&format!("{path}[{i}]"), dv, ev, out);
            }
        }
        (d, e) if d == e => {}
        (d, e) => out.push(format!("{path}: documented {d}, encoded {e}")),
    }
}

#[test]
fn every_documented_field_is_in_the_contract_and_back() {
    let examples = examples();
    let mut problems = Vec::new();
    for (name, text) in &examples {
        let example: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: the example is not JSON: {e}"));
                continue;
            }
        };
        match encode_as(name, &example) {
            None => problems.push(format!("{name}: no such type in ctl::contract")),
            Some(Err(e)) => problems.push(format!("{name}: does not decode: {e}")),
            Some(Ok(encoded)) => differences(name, &example, &encoded, &mut problems),
        }
    }
    for name in DOCUMENTED {
        if !examples.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: no example in docs/control.md"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_newer_peer_with_more_fields_is_read() {
    let mut status: Value = examples()
        .into_iter()
        .find(|(n, _)| n == "VrrpdStatus")
        .and_then(|(_, text)| serde_json::from_str(&text).ok())
        .expect("the VrrpdStatus example");
    status["a_field_from_the_future"] = Value::from(1);
    status["groups"][0]["state"] = Value::from("STANDBY");
    status["instances"][0]["another"] = Value::from("x");
    let read: vrrpd::VrrpdStatus = serde_json::from_value(status).unwrap();
    assert_eq!(
        read.groups[0].state,
        Some(ctl::contract::VrrpState::Unknown)
    );
    assert_eq!(read.instances[0].name, "public");
}

#[test]
fn operator_params_refuse_what_they_do_not_know() {
    let odd = serde_json::json!({"on": true, "group": "edge", "for_hours": 2});
    assert!(serde_json::from_value::<vrrpd::MaintenanceParams>(odd).is_err());
    let odd = serde_json::json!({"service": "web", "server": "srv2", "now": true});
    assert!(serde_json::from_value::<lbd::ServerParams>(odd.clone()).is_err());
    let odd = serde_json::json!({"service": "web", "server": "srv2", "weight": 2, "now": true});
    assert!(serde_json::from_value::<lbd::ServerWeightParams>(odd).is_err());
    let odd = serde_json::json!({"all": true, "node": "lb2"});
    assert!(serde_json::from_value::<lbd::ServerClearParams>(odd).is_err());
    let odd = serde_json::json!({"kind": "weight", "weight": 2, "for": 60});
    assert!(serde_json::from_value::<lbd::ServerOverride>(odd).is_err());
    let odd = serde_json::json!({"kind": "maint"});
    assert!(serde_json::from_value::<lbd::ServerOverride>(odd).is_err());
}

#[test]
fn an_older_vrrpd_without_a_state_file_is_read() {
    let old = serde_json::json!({"instances": [{"instance": "public", "priority": 90}]});
    let read: vrrpd::PriorityReply = serde_json::from_value(old).unwrap();
    assert_eq!(read.persisted, vrrpd::Persisted::default());
    assert_eq!(read.instances[0].priority_override, None);
    let status: vrrpd::VrrpdStatus =
        serde_json::from_value(serde_json::json!({"node": "lb1"})).unwrap();
    assert_eq!(status.state_file, vrrpd::StateFileStatus::default());
}

#[test]
fn priority_clear_sends_only_what_was_given_and_refuses_more() {
    let all = vrrpd::PriorityClearParams {
        all: true,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&all).unwrap(),
        serde_json::json!({"all": true})
    );
    let odd = serde_json::json!({"all": true, "force": true});
    assert!(serde_json::from_value::<vrrpd::PriorityClearParams>(odd).is_err());
}
