//! Text rendering of vrrpd's `status` reply and `group.state` events: what an
//! operator asks first (this node, each group's state and VIPs, who is master with
//! what priority, the last takeover's phases in pipeline order), then what is wrong.

use ctl::contract::vrrpd::{
    GroupStateEvent, InstancePriority, InstanceStatus, MaintenanceStatus, PriorityListReply,
    PriorityOverrideStatus, StateFileStatus, VrrpdStatus,
};

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The master column: its address, `(this node)` when it is us.
fn master(i: &InstanceStatus) -> String {
    match (i.master_address, i.primary_address) {
        (Some(m), Some(own)) if m == own => format!("{m} (this node)"),
        (m, _) => or_dash(m),
    }
}

/// Cells padded to the widest of each column, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The node line, one row per instance, then a line per group and the warnings.
pub fn render(status: &VrrpdStatus) -> String {
    let mut out = format!("node {}", status.node);
    if !status.cluster.is_empty() {
        out.push_str(&format!(" (cluster {})", status.cluster));
    }
    out.push('\n');
    let header = [
        "GROUP",
        "INSTANCE",
        "IFACE",
        "VRID",
        "STATE",
        "PRIO/EFF",
        "MASTER",
        "MASTER PRIO",
        "INTERVAL",
        "VIPS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for i in &status.instances {
        let mut state = i.state.to_string();
        // `*`: an operator's override replaces the file's priority (see below).
        let mark = if i.priority_override.is_some() {
            "*"
        } else {
            ""
        };
        if i.maintenance && state != "MAINTENANCE" {
            state.push_str(" (maint)");
        }
        rows.push(vec![
            i.group.clone(),
            i.name.clone(),
            or_dash(i.interface.as_ref()),
            or_dash(i.vrid),
            state,
            format!("{}{mark}/{}", i.priority, i.effective_priority),
            master(i),
            or_dash(i.master_priority),
            or_dash(i.advert_interval_ms.map(|ms| format!("{ms}ms"))),
            if i.vips.is_empty() {
                "-".to_owned()
            } else {
                i.vips.join(",")
            },
        ]);
    }
    out.push_str(&table(&rows));
    for g in &status.groups {
        out.push_str(&format!("group {}: {}", g.name, or_dash(g.state)));
        if let Some(p) = g.priority {
            out.push_str(&format!(", priority {p}"));
        }
        if let Some(t) = &g.last_takeover {
            let phases: Vec<String> = t
                .phases_ms
                .in_order()
                .iter()
                .map(|(name, ms)| format!("{name} {ms:.1} ms"))
                .collect();
            if !phases.is_empty() {
                out.push_str(&format!("; last takeover: {}", phases.join(", ")));
            }
            if t.prepare.starts_with("missed") {
                out.push_str(&format!(" (lbd's prepare {})", t.prepare));
            }
        }
        if g.prepare_misses > 0 {
            out.push_str(&format!(
                "; {} takeover(s) went on without lbd's prepare (control.prepare_budget_ms)",
                g.prepare_misses
            ));
        }
        if let Some(ms) = g.fault_drill_ends_in_ms {
            out.push_str(&format!(
                "; fault drill ends in {:.1} s",
                ms as f64 / 1000.0
            ));
        }
        out.push('\n');
    }
    out.push_str(&operator_lines(status));
    // Two masters: said loudly, with the fix vrrpd suggests.
    for i in &status.instances {
        let Some(d) = &i.dual_master else {
            continue;
        };
        let (vrid, iface) = (or_dash(i.vrid), or_dash(i.interface.as_ref()));
        if d.reason == "peer_master" {
            out.push_str(&format!(
                "SPLIT BRAIN: {} (VRID {vrid} on {iface}) heard {} as MASTER too ({} advert(s)); it stays MASTER and re-announced the VIPs. {}\n",
                i.name, d.peer, d.adverts, d.fix,
            ));
            continue;
        }
        out.push_str(&format!(
            "TWO MASTERS: {} (VRID {vrid} on {iface}) is MASTER and drops the adverts of {}, which claims the same VRID ({}; {} dropped). Fix: {}\n",
            i.name, d.peer, d.reason, d.adverts, d.fix,
        ));
    }
    let hold = &status.preempt_hold;
    if hold.held {
        let reasons: Vec<String> = hold
            .reasons
            .iter()
            .map(|(who, why)| format!("{who}: {why}"))
            .collect();
        out.push_str(&format!(
            "preemption held back (at most {} ms): {}\n",
            hold.wait_ms,
            reasons.join("; ")
        ));
    } else if hold.expired {
        out.push_str("preemption hold ran out: this node preempts without the peer's complete connection state\n");
    }
    // Said only when [vrrpd] did not get what it asked for: adverts may be late.
    for w in &status.realtime.warnings {
        out.push_str(&format!("[vrrpd] not applied: {w}\n"));
    }
    out
}

/// What the operator set and vrrpd keeps across restarts (maintenance, priority
/// overrides), and what went wrong with the state file.
fn operator_lines(status: &VrrpdStatus) -> String {
    let mut out = String::new();
    for g in &status.groups {
        if let Some(m) = &g.maintenance {
            out.push_str(&format!("group {}: {}\n", g.name, maintenance_text(m)));
        }
    }
    for i in &status.instances {
        if let Some(o) = &i.priority_override {
            out.push_str(&format!(
                "* {}: {}\n",
                i.name,
                override_text(o, i.configured_priority)
            ));
        }
    }
    out.push_str(&state_file_lines(&status.state_file));
    out
}

fn maintenance_text(m: &MaintenanceStatus) -> String {
    format!(
        "maintenance since {} UTC ({} ago): {}; kept across restarts until `vrrpctl maintenance off`",
        clock_day(m.since_unix_ms),
        span(m.ago_s),
        m.reason
    )
}

fn override_text(o: &PriorityOverrideStatus, configured: Option<u8>) -> String {
    format!(
        "priority overridden to {} (file: {}) since {} UTC; kept across reloads and restarts until `vrrpctl priority clear`",
        o.priority,
        or_dash(configured),
        clock_day(o.since_unix_ms),
    )
}

/// The state file's problems, said loudly; nothing when all is well.
fn state_file_lines(f: &StateFileStatus) -> String {
    let mut out = String::new();
    if let Some(e) = &f.load_error {
        out.push_str(&format!(
            "STATE FILE UNUSABLE at start-up: {e}; every group was started in maintenance (it may have been on). Check the file (a copy is beside it, .bad), then `vrrpctl maintenance off`\n"
        ));
    }
    if let Some(e) = &f.last_write_error {
        out.push_str(&format!("STATE FILE NOT WRITTEN: {e}\n"));
    }
    for i in &f.ignored {
        out.push_str(&format!(
            "state file entry ignored (the configuration has no place for it): {i}\n"
        ));
    }
    out
}

/// One instance after `priority set` or `priority clear`.
pub fn priority_line(i: &InstancePriority) -> String {
    let over = match &i.priority_override {
        Some(o) => format!("override {}", o.priority),
        None => "no override".to_owned(),
    };
    format!(
        "{}: priority {} (effective {}), {over}, {}",
        i.instance,
        or_dash(i.priority),
        or_dash(i.effective_priority),
        or_dash(i.state)
    )
}

/// `vrrpctl priority list`: overrides, maintenance, the state file.
pub fn render_overrides(list: &PriorityListReply) -> String {
    let mut out = String::new();
    if list.overrides.is_empty() {
        out.push_str("no priority override\n");
    }
    for o in &list.overrides {
        let text = o.priority_override.as_ref().map_or_else(
            || "no override".to_owned(),
            |p| override_text(p, o.configured_priority),
        );
        out.push_str(&format!(
            "{} {}: {text}; now {} (effective {}), {}\n",
            o.group,
            o.instance,
            or_dash(o.priority),
            or_dash(o.effective_priority),
            or_dash(o.state),
        ));
    }
    for m in &list.maintenance {
        out.push_str(&format!(
            "group {}: {}\n",
            m.group,
            maintenance_text(&m.maintenance)
        ));
    }
    out.push_str(&format!("state file: {}\n", list.state_file.path));
    out.push_str(&state_file_lines(&list.state_file));
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

/// One line for a `group.state` event (an event this version cannot read is
/// shown as it came).
pub fn transition_line(e: &ctl::Event) -> String {
    let Ok(d) = serde_json::from_value::<GroupStateEvent>(e.data.clone()) else {
        return format!("{} {}: {}", clock(e.time), e.topic, e.data);
    };
    let who = match &d.instance {
        Some(i) => format!("{} {i}", d.group),
        None => format!("{} (group)", d.group),
    };
    format!(
        "{} {who}: {} -> {} ({})",
        clock(e.time),
        d.from,
        d.to,
        d.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> VrrpdStatus {
        serde_json::from_value(v).unwrap()
    }

    fn edge() -> Value {
        json!({
            "node": "lb1", "cluster": "demo",
            "groups": [{"name": "edge", "state": "MASTER", "priority": 150,
                        "last_takeover": {"started_unix_ms": 1, "prepare": "acknowledged",
                            "phases_ms": {"garp_sent": 9.0, "first_advert": 2.5,
                                          "prepare": 1.25, "vips_added": 1.5}}}],
            "instances": [{
                "group": "edge", "name": "public", "interface": "eth0", "vrid": 51,
                "state": "MASTER", "priority": 150, "effective_priority": 150,
                "master_address": "198.18.0.11", "primary_address": "198.18.0.11",
                "master_priority": 150, "advert_interval_ms": 1000,
                "maintenance": false, "vips": ["198.18.0.100/24"],
            }, {
                "group": "edge", "name": "server", "interface": "eth1", "vrid": 52,
                "state": "BACKUP", "priority": 100, "effective_priority": 100,
                "master_address": "198.18.1.12", "primary_address": "198.18.1.11",
                "master_priority": 120, "advert_interval_ms": 1000,
                "maintenance": false, "vips": ["198.18.1.100/24", "198.18.1.101/24"],
            }],
        })
    }

    #[test]
    fn node_instances_vips_and_the_masters_priority() {
        let out = render(&parse(edge()));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "node lb1 (cluster demo)");
        assert!(lines[1].starts_with("GROUP") && lines[1].contains("MASTER PRIO"));
        let public: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            public,
            [
                "edge",
                "public",
                "eth0",
                "51",
                "MASTER",
                "150/150",
                "198.18.0.11",
                "(this",
                "node)",
                "150",
                "1000ms",
                "198.18.0.100/24"
            ]
        );
        let server: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            server[6..],
            [
                "198.18.1.12",
                "120",
                "1000ms",
                "198.18.1.100/24,198.18.1.101/24"
            ]
        );
    }

    #[test]
    fn takeover_phases_are_in_pipeline_order() {
        let out = render(&parse(edge()));
        assert_eq!(
            out.lines().nth(4).unwrap(),
            "group edge: MASTER, priority 150; last takeover: prepare 1.2 ms, vips_added 1.5 ms, \
             first_advert 2.5 ms, garp_sent 9.0 ms"
        );
        let mut missed = edge();
        missed["groups"][0]["last_takeover"]["prepare"] = json!("missed: timeout");
        missed["groups"][0]["prepare_misses"] = json!(2);
        assert!(render(&parse(missed)).lines().nth(4).unwrap().ends_with(
            "garp_sent 9.0 ms (lbd's prepare missed: timeout); \
             2 takeover(s) went on without lbd's prepare (control.prepare_budget_ms)"
        ));
    }

    #[test]
    fn two_masters_are_said_with_the_fix() {
        let status = parse(json!({
            "node": "lb1", "groups": [], "preempt_hold": {},
            "instances": [{
                "group": "v6", "name": "public6", "interface": "eth0", "vrid": 61,
                "state": "MASTER", "priority": 100, "effective_priority": 100, "dual_master": {
                    "reason": "bad_ttl", "peer": "2001:db8:0:a::12", "adverts": 3,
                    "fix": "set `unicast_ttl 255` in the peer's vrrp_instance",
                },
            }],
        }));
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
        let status = parse(json!({
            "node": "lb1", "groups": [], "preempt_hold": {},
            "instances": [{
                "group": "edge", "name": "public", "interface": "eth0", "vrid": 51,
                "state": "MASTER", "priority": 100, "effective_priority": 100, "dual_master": {
                    "reason": "peer_master", "peer": "198.18.0.12", "adverts": 2,
                    "fix": "find what cut the path",
                },
            }],
        }));
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
            "node": "lb1", "groups": [], "instances": [],
            "preempt_hold": {"held": true, "wait_ms": 30000, "expired": false,
                             "reasons": {"lbd": "the peer's connection-state dump is under way"}},
        });
        assert_eq!(
            render(&parse(status.clone())).lines().last(),
            Some("preemption held back (at most 30000 ms): lbd: the peer's connection-state dump is under way")
        );
        status["preempt_hold"]["held"] = json!(false);
        status["preempt_hold"]["expired"] = json!(true);
        assert!(render(&parse(status.clone())).contains("hold ran out"));
        status["preempt_hold"]["expired"] = json!(false);
        assert!(!render(&parse(status)).contains("preemption"));
    }

    #[test]
    fn a_refused_realtime_setting_is_said() {
        let mut status = json!({
            "node": "lb1", "groups": [], "instances": [],
            "realtime": {"requested_priority": 20, "policy": "SCHED_OTHER", "priority": 0,
                         "warnings": ["real-time priority 20 refused"]},
        });
        assert_eq!(
            render(&parse(status.clone())).lines().last(),
            Some("[vrrpd] not applied: real-time priority 20 refused")
        );
        status["realtime"]["warnings"] = json!([]);
        assert!(!render(&parse(status)).contains("[vrrpd]"));
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
        let out = render(&parse(status.clone()));
        assert!(out.lines().nth(2).unwrap().contains("200*/200"), "{out}");
        assert!(out.contains("group edge: maintenance since 2023-11-14 22:13:20 UTC (1h2m ago): vrrpctl maintenance on; kept across restarts until `vrrpctl maintenance off`"), "{out}");
        assert!(out.contains("* public: priority overridden to 200 (file: 150) since 2023-11-14 22:13:20 UTC; kept across reloads and restarts until `vrrpctl priority clear`"), "{out}");
        assert!(out.contains("state file entry ignored (the configuration has no place for it): maintenance of group \"old\""), "{out}");
        assert!(!out.contains("UNUSABLE"), "{out}");
        let mut bad = status.clone();
        bad["state_file"]["load_error"] = json!("x: not a valid state file");
        assert!(render(&parse(bad)).contains("STATE FILE UNUSABLE at start-up: x: not a valid state file; every group was started in maintenance"));
        assert_eq!(span(59), "59s");
        assert_eq!(span(90_061), "1d1h");
    }

    #[test]
    fn transition_lines_name_group_and_instance() {
        let e = ctl::Event {
            seq: 1,
            topic: "group.state".into(),
            time: 3_723_004,
            data: json!({"group": "edge", "instance": "public", "from": "BACKUP", "to": "MASTER", "reason": "master_down"}),
        };
        assert_eq!(
            transition_line(&e),
            "01:02:03.004 edge public: BACKUP -> MASTER (master_down)"
        );
    }
}
