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
        // `*`: an operator's override replaces the file's priority (see below).
        let mark = if i["priority_override"].is_null() {
            ""
        } else {
            "*"
        };
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
                "{}{mark}/{}",
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
    out.push_str(&operator_lines(status));
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

/// What the operator set and vrrpd keeps across restarts (maintenance, priority
/// overrides), and what went wrong with the state file.
fn operator_lines(status: &Value) -> String {
    let mut out = String::new();
    for g in status["groups"].as_array().into_iter().flatten() {
        let m = &g["maintenance"];
        if !m.is_null() {
            out.push_str(&format!(
                "group {}: {}\n",
                text(&g["name"]),
                maintenance_text(m)
            ));
        }
    }
    for i in status["instances"].as_array().into_iter().flatten() {
        let o = &i["priority_override"];
        if !o.is_null() {
            out.push_str(&format!(
                "* {}: {}\n",
                text(&i["name"]),
                override_text(o, &i["configured_priority"])
            ));
        }
    }
    out.push_str(&state_file_lines(&status["state_file"]));
    out
}

fn maintenance_text(m: &Value) -> String {
    format!(
        "maintenance since {} UTC ({} ago): {}; kept across restarts until `vrrpctl maintenance off`",
        m["since_unix_ms"].as_u64().map_or("?".to_owned(), clock_day),
        m["ago_s"].as_u64().map_or("?".to_owned(), span),
        text(&m["reason"])
    )
}

fn override_text(o: &Value, configured: &Value) -> String {
    format!(
        "priority overridden to {} (file: {}) since {} UTC; kept across reloads and restarts until `vrrpctl priority clear`",
        text(&o["priority"]),
        text(configured),
        o["since_unix_ms"].as_u64().map_or("?".to_owned(), clock_day),
    )
}

/// The state file's problems, said loudly; nothing when all is well.
fn state_file_lines(f: &Value) -> String {
    let mut out = String::new();
    if let Some(e) = f["load_error"].as_str() {
        out.push_str(&format!(
            "STATE FILE UNUSABLE at start-up: {e}; every group was started in maintenance (it may have been on). Check the file (a copy is beside it, .bad), then `vrrpctl maintenance off`\n"
        ));
    }
    if let Some(e) = f["last_write_error"].as_str() {
        out.push_str(&format!("STATE FILE NOT WRITTEN: {e}\n"));
    }
    for i in f["ignored"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "state file entry ignored (the configuration has no place for it): {}\n",
            text(i)
        ));
    }
    out
}

/// `vrrpctl priority list`: overrides, maintenance, the state file.
pub fn render_overrides(list: &Value) -> String {
    let mut out = String::new();
    let overrides = list["overrides"].as_array().map_or(&[][..], Vec::as_slice);
    if overrides.is_empty() {
        out.push_str("no priority override\n");
    }
    for o in overrides {
        out.push_str(&format!(
            "{} {}: {}; now {} (effective {}), {}\n",
            text(&o["group"]),
            text(&o["instance"]),
            override_text(&o["override"], &o["configured_priority"]),
            text(&o["priority"]),
            text(&o["effective_priority"]),
            text(&o["state"]),
        ));
    }
    for m in list["maintenance"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "group {}: {}\n",
            text(&m["group"]),
            maintenance_text(&m["maintenance"])
        ));
    }
    out.push_str(&format!(
        "state file: {}\n",
        text(&list["state_file"]["path"])
    ));
    out.push_str(&state_file_lines(&list["state_file"]));
    out
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time in ms.
fn clock_day(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(0);
    let (y, m, d) = crate::decode::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {}", &clock(ms)[..8])
}

/// `1d2h`, `3h4m`, `5m6s`, `7s`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
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
    fn maintenance_and_overrides_are_said_with_how_to_end_them() {
        let status = json!({
            "groups": [{"name": "edge", "state": "MAINTENANCE",
                        "maintenance": {"since_unix_ms": 1_700_000_000_000u64, "ago_s": 3725,
                                        "reason": "vrrpctl maintenance on"}}],
            "instances": [{
                "group": "edge", "name": "public", "state": "MAINTENANCE",
                "priority": 200, "effective_priority": 200, "configured_priority": 150,
                "priority_override": {"priority": 200, "since_unix_ms": 1_700_000_000_000u64},
            }],
            "state_file": {"path": "/var/lib/lbsuite/vrrpd.state", "ignored": ["maintenance of group \"old\": no such group"]},
        });
        let out = render(&status);
        assert!(out.lines().nth(1).unwrap().contains("200*/200"), "{out}");
        assert!(out.contains("group edge: maintenance since 2023-11-14 22:13:20 UTC (1h2m ago): vrrpctl maintenance on; kept across restarts until `vrrpctl maintenance off`"), "{out}");
        assert!(out.contains("* public: priority overridden to 200 (file: 150) since 2023-11-14 22:13:20 UTC; kept across reloads and restarts until `vrrpctl priority clear`"), "{out}");
        assert!(out.contains("state file entry ignored (the configuration has no place for it): maintenance of group \"old\""), "{out}");
        assert!(!out.contains("UNUSABLE"), "{out}");
        let mut bad = status.clone();
        bad["state_file"]["load_error"] = json!("x: not a valid state file");
        assert!(render(&bad).contains("STATE FILE UNUSABLE at start-up: x: not a valid state file; every group was started in maintenance"));
        assert_eq!(span(59), "59s");
        assert_eq!(span(90_061), "1d1h");
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
