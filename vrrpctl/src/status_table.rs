//! Text rendering of vrrpd's `status` reply and `group.state` events: what an
//! operator asks first (this node, each group's state and VIPs, who is master with
//! what priority, the last takeover's phases in pipeline order), then what is wrong.

use ctl::contract::vrrpd::{GroupStateEvent, InstanceStatus, VrrpdStatus};

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
        if i.maintenance && state != "MAINTENANCE" {
            state.push_str(" (maint)");
        }
        rows.push(vec![
            i.group.clone(),
            i.name.clone(),
            or_dash(i.interface.as_ref()),
            or_dash(i.vrid),
            state,
            format!("{}/{}", i.priority, i.effective_priority),
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
