//! Text rendering of vrrpd's `status` reply and `group.state` events.

use serde_json::Value;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// One row per instance: group, instance, iface, vrid, state, prio/eff,
/// master, interval.
pub fn render(status: &Value) -> String {
    let header = [
        "GROUP", "INSTANCE", "IFACE", "VRID", "STATE", "PRIO/EFF", "MASTER", "INTERVAL",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for i in status["instances"].as_array().into_iter().flatten() {
        let interval = match i["advert_interval_ms"].as_u64() {
            Some(ms) => format!("{ms}ms"),
            None => "-".to_owned(),
        };
        let mut state = text(&i["state"]);
        if i["maintenance"] == Value::Bool(true) && state != "MAINTENANCE" {
            state.push_str(" (maint)");
        }
        rows.push(vec![
            text(&i["group"]),
            text(&i["name"]),
            text(&i["interface"]),
            text(&i["vrid"]),
            state,
            format!(
                "{}/{}",
                text(&i["priority"]),
                text(&i["effective_priority"])
            ),
            text(&i["master_address"]),
            interval,
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for g in status["groups"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "group {}: {}",
            text(&g["name"]),
            text(&g["state"])
        ));
        if let Some(phases) = g["last_takeover"]["phases_ms"].as_object() {
            let list: Vec<String> = phases
                .iter()
                .map(|(k, v)| format!("{k} {:.1} ms", v.as_f64().unwrap_or(f64::NAN)))
                .collect();
            out.push_str(&format!("; last takeover: {}", list.join(", ")));
        }
        if let Some(miss) = g["last_takeover"]["prepare"]
            .as_str()
            .filter(|p| p.starts_with("missed"))
        {
            out.push_str(&format!(" (lbd's prepare {miss})"));
        }
        if let Some(n) = g["prepare_misses"].as_u64().filter(|n| *n > 0) {
            out.push_str(&format!(
                "; {n} takeover(s) went on without lbd's prepare (control.prepare_budget_ms)"
            ));
        }
        out.push('\n');
    }
    // Two masters: said loudly, with the fix vrrpd suggests.
    for i in status["instances"].as_array().into_iter().flatten() {
        let d = &i["dual_master"];
        if d.is_null() {
            continue;
        }
        if d["reason"] == "peer_master" {
            out.push_str(&format!(
                "SPLIT BRAIN: {} (VRID {} on {}) heard {} as MASTER too ({} advert(s)); it stays MASTER and re-announced the VIPs. {}\n",
                text(&i["name"]),
                text(&i["vrid"]),
                text(&i["interface"]),
                text(&d["peer"]),
                text(&d["adverts"]),
                text(&d["fix"]),
            ));
            continue;
        }
        out.push_str(&format!(
            "TWO MASTERS: {} (VRID {} on {}) is MASTER and drops the adverts of {}, which claims the same VRID ({}; {} dropped). Fix: {}\n",
            text(&i["name"]),
            text(&i["vrid"]),
            text(&i["interface"]),
            text(&d["peer"]),
            text(&d["reason"]),
            text(&d["adverts"]),
            text(&d["fix"]),
        ));
    }
    let hold = &status["preempt_hold"];
    if hold["held"] == Value::Bool(true) {
        let reasons: Vec<String> = hold["reasons"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(who, why)| format!("{who}: {}", text(why)))
            .collect();
        out.push_str(&format!(
            "preemption held back (at most {} ms): {}\n",
            text(&hold["wait_ms"]),
            reasons.join("; ")
        ));
    } else if hold["expired"] == Value::Bool(true) {
        out.push_str("preemption hold ran out: this node preempts without the peer's complete connection state\n");
    }
    // Said only when [vrrpd] did not get what it asked for: adverts may be late.
    for w in status["realtime"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("[vrrpd] not applied: {}\n", text(w)));
    }
    out
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in ms.
fn clock(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

/// One line for a `group.state` event.
pub fn transition_line(e: &ctl::Event) -> String {
    let d = &e.data;
    let who = match d["instance"].as_str() {
        Some(i) => format!("{} {}", text(&d["group"]), i),
        None => format!("{} (group)", text(&d["group"])),
    };
    format!(
        "{} {who}: {} -> {} ({})",
        clock(e.time),
        text(&d["from"]),
        text(&d["to"]),
        text(&d["reason"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_has_a_row_per_instance() {
        let status = json!({
            "groups": [{"name": "edge", "state": "MASTER",
                        "last_takeover": {"phases_ms": {"prepare": 1.25}}}],
            "instances": [{
                "group": "edge", "name": "public", "interface": "eth0", "vrid": 51,
                "state": "MASTER", "priority": 150, "effective_priority": 150,
                "master_address": "198.18.0.11", "advert_interval_ms": 1000,
                "maintenance": false,
            }],
        });
        let out = render(&status);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("GROUP"));
        assert!(lines[1].contains("public"));
        assert!(lines[1].contains("150/150"));
        assert!(lines[1].contains("198.18.0.11"));
        assert!(lines[1].contains("1000ms"));
        assert_eq!(
            lines[2],
            "group edge: MASTER; last takeover: prepare 1.2 ms"
        );
        let mut missed = status.clone();
        missed["groups"][0]["last_takeover"]["prepare"] = json!("missed: timeout");
        missed["groups"][0]["prepare_misses"] = json!(2);
        assert_eq!(
            render(&missed).lines().nth(2).unwrap(),
            "group edge: MASTER; last takeover: prepare 1.2 ms (lbd's prepare missed: timeout); \
             2 takeover(s) went on without lbd's prepare (control.prepare_budget_ms)"
        );
    }

    #[test]
    fn two_masters_are_said_with_the_fix() {
        let status = json!({
            "groups": [], "preempt_hold": {},
            "instances": [{
                "group": "v6", "name": "public6", "interface": "eth0", "vrid": 61,
                "state": "MASTER", "dual_master": {
                    "reason": "bad_ttl", "peer": "2001:db8:0:a::12", "adverts": 3,
                    "fix": "set `unicast_ttl 255` in the peer's vrrp_instance",
                },
            }],
        });
        let out = render(&status);
        assert!(
            out.contains(
                "TWO MASTERS: public6 (VRID 61 on eth0) is MASTER and drops the adverts of \
                 2001:db8:0:a::12, which claims the same VRID (bad_ttl; 3 dropped). \
                 Fix: set `unicast_ttl 255` in the peer's vrrp_instance"
            ),
            "{out}"
        );
    }

    #[test]
    fn a_healed_split_brain_is_said() {
        let status = json!({
            "groups": [], "preempt_hold": {},
            "instances": [{
                "group": "edge", "name": "public", "interface": "eth0", "vrid": 51,
                "state": "MASTER", "dual_master": {
                    "reason": "peer_master", "peer": "198.18.0.12", "adverts": 2,
                    "fix": "find what cut the path",
                },
            }],
        });
        let out = render(&status);
        assert!(
            out.contains(
                "SPLIT BRAIN: public (VRID 51 on eth0) heard 198.18.0.12 as MASTER too \
                 (2 advert(s)); it stays MASTER and re-announced the VIPs. find what cut the path"
            ),
            "{out}"
        );
        assert!(!out.contains("TWO MASTERS"), "{out}");
    }

    #[test]
    fn a_held_preemption_is_said_with_its_reasons() {
        let mut status = json!({
            "groups": [], "instances": [],
            "preempt_hold": {"held": true, "wait_ms": 30000, "expired": false,
                             "reasons": {"lbd": "the peer's connection-state dump is under way"}},
        });
        assert_eq!(
            render(&status).lines().last(),
            Some("preemption held back (at most 30000 ms): lbd: the peer's connection-state dump is under way")
        );
        status["preempt_hold"]["held"] = json!(false);
        status["preempt_hold"]["expired"] = json!(true);
        assert!(render(&status).contains("hold ran out"));
        status["preempt_hold"]["expired"] = json!(false);
        assert!(!render(&status).contains("preemption"));
    }

    #[test]
    fn a_refused_realtime_setting_is_said() {
        let mut status = json!({
            "groups": [], "instances": [],
            "realtime": {"requested_priority": 20, "policy": "SCHED_OTHER", "priority": 0,
                         "warnings": ["real-time priority 20 refused"]},
        });
        assert_eq!(
            render(&status).lines().last(),
            Some("[vrrpd] not applied: real-time priority 20 refused")
        );
        status["realtime"]["warnings"] = json!([]);
        assert!(!render(&status).contains("[vrrpd]"));
    }

    #[test]
    fn transition_lines_name_group_and_instance() {
        let e = ctl::Event {
            seq: 1,
            topic: "group.state".into(),
            time: 3_723_004,
            data: json!({"group": "edge", "instance": "public", "from": "BACKUP", "to": "MASTER", "reason": "MasterDown"}),
        };
        assert_eq!(
            transition_line(&e),
            "01:02:03.004 edge public: BACKUP -> MASTER (MasterDown)"
        );
    }
}
