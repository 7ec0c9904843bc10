//! `vrrpctl services`: lbd's services and servers (weights, health, counters) as a
//! table, or lbd's `status` reply as JSON.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ctl::contract::lbd::{ForwardingStatus, LastCheck, LbdStatus, SyncStatus};
use serde_json::Value;

/// `vrrpctl services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// Print lbd's status reply as JSON.
    #[arg(long)]
    json: bool,
}

/// Where to reach lbd: `--socket`, else `--config`'s `control.lbd_socket`, else
/// the default.
pub fn socket_path(socket: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    if let Some(c) = config {
        return config::control_sockets(c)
            .map(|(_, lbd)| lbd)
            .map_err(|e| anyhow::anyhow!(e));
    }
    Ok(PathBuf::from(config::DEFAULT_LBD_SOCKET))
}

/// Runs `vrrpctl services` against lbd at `socket`.
pub fn run(socket: &Path, args: &ServicesArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reply = rt.block_on(async {
        let client = ctl::Client::connect(socket).await?;
        client
            .request_with_timeout(ctl::methods::STATUS, Value::Null, ctl::DEFAULT_TIMEOUT)
            .await
    })?;
    // vrrpd's status has no dataplane: an empty table would say "no services".
    if reply.get("backend").is_none() {
        anyhow::bail!(
            "{} is not lbd's socket (it answers without a dataplane; vrrpd's?): give lbd's with --socket, e.g. {}",
            socket.display(),
            config::DEFAULT_LBD_SOCKET
        );
    }
    if args.json {
        crate::daemon::print_json(&reply);
    } else {
        let status: LbdStatus = serde_json::from_value(reply).with_context(|| {
            format!("{}: the status reply does not fit lbd's", socket.display())
        })?;
        print!("{}", render(&status));
    }
    Ok(0)
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn addr_port(addr: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) if addr.is_ipv6() => format!("[{addr}]:{p}"),
        Some(p) => format!("{addr}:{p}"),
        None => addr.to_string(),
    }
}

/// A server's last check: `ok 0.4ms`, or the failure reason.
fn last_check(c: Option<&LastCheck>) -> String {
    match c {
        None => "-".to_owned(),
        Some(c) if c.ok => format!("ok {:.1}ms", c.duration_ms),
        Some(c) => format!("{} {:.1}ms", or_dash(c.reason.as_ref()), c.duration_ms),
    }
}

/// The sync line: the state one checks before a planned failover.
fn sync_line(sync: &SyncStatus) -> String {
    let Some(link) = &sync.link else {
        return format!(
            "sync {}: connections do not survive a failover\n",
            if sync.enabled { "not running" } else { "off" }
        );
    };
    let mut out = format!(
        "sync {} with {}: sending {}, receiving {}; {} entries from the peer, {} pending; ",
        sync.mode,
        link.peer,
        if link.connected { "yes" } else { "no" },
        if link.receiving { "yes" } else { "no" },
        link.entries_stored,
        link.entries_pending,
    );
    if sync.ready() == Some(true) {
        out.push_str("peer's state complete: ready for a planned failover");
    } else {
        out.push_str(&format!(
            "NOT ready for a planned failover ({})",
            link.incomplete_because
                .as_deref()
                .unwrap_or("entries not yet in the kernel")
        ));
    }
    if link.events_lost > 0 {
        out.push_str(&format!("; {} events lost", link.events_lost));
    }
    out.push('\n');
    out
}

/// The forwarding line of a family something needs: on, or OFF with the fix.
fn forwarding_line(f: &ForwardingStatus) -> Option<String> {
    if f.needed_by.is_empty() {
        return None;
    }
    let needed = f.needed_by.join(", ");
    Some(if !f.missing() {
        format!(
            "forwarding {} on ({} = 1) for {needed}\n",
            f.family, f.sysctl
        )
    } else {
        let why = match &f.error {
            Some(e) => format!("{} unreadable: {e}", f.sysctl),
            None => format!("{} = 0", f.sysctl),
        };
        format!(
            "forwarding {} OFF ({why}): {needed} get no answers from their servers; fix: sysctl -w {}=1, kept in /etc/sysctl.d\n",
            f.family, f.sysctl
        )
    })
}

/// The table: one row per server (and sorry server), then the node and backend,
/// vrrpd, sync and the last apply.
pub fn render(status: &LbdStatus) -> String {
    let header = [
        "SERVICE",
        "VIP",
        "SCHED",
        "SERVER",
        "ADDRESS",
        "WEIGHT",
        "STATE",
        "HEALTH",
        "LAST CHECK",
        "TRANS",
        "ACTIVE",
        "INACTIVE",
        "CONNS",
        "PACKETS",
        "BYTES",
    ];
    let mut quorums = Vec::new();
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for s in &status.services {
        let vip = {
            let v = if s.vip.is_ipv6() {
                format!("[{}]", s.vip)
            } else {
                s.vip.to_string()
            };
            format!("{v}:{}/{}", s.ports, s.protocol)
        };
        let mut sched = s.scheduler.clone();
        if let Some(eff) = s
            .effective_scheduler
            .as_ref()
            .filter(|e| **e != s.scheduler)
        {
            sched = format!("{sched}->{eff}");
        }
        for b in &s.servers {
            let weight = if b.weight == b.effective_weight {
                b.weight.to_string()
            } else {
                format!("{} (of {})", b.effective_weight, b.weight)
            };
            let mut state = b.state.clone().unwrap_or_else(|| "-".to_owned());
            if b.server_override.is_some() {
                state.push_str(" (override)");
            }
            let mut health = b.health.clone();
            if b.held == Some(true) {
                health.push_str(" (flapping: held)");
            } else if !b.in_dataplane {
                health.push_str(" (removed)");
            }
            rows.push(vec![
                s.name.clone(),
                vip.clone(),
                sched.clone(),
                b.name.clone(),
                addr_port(b.address, b.port),
                weight,
                state,
                health,
                last_check(b.last_check.as_ref()),
                or_dash(b.transitions),
                or_dash(b.active_connections),
                or_dash(b.inactive_connections),
                or_dash(b.traffic.connections),
                or_dash(b.traffic.packets),
                or_dash(b.traffic.bytes),
            ]);
        }
        if let Some(z) = &s.sorry_server {
            let serving = s.serving == "sorry";
            rows.push(vec![
                s.name.clone(),
                vip.clone(),
                sched.clone(),
                "(sorry)".to_owned(),
                addr_port(z.address, z.port),
                if serving { "1" } else { "0" }.to_owned(),
                if serving { "serving" } else { "standby" }.to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                or_dash(z.traffic.connections),
                or_dash(z.traffic.packets),
                or_dash(z.traffic.bytes),
            ]);
        }
        if let Some(q) = &s.quorum {
            quorums.push(format!(
                "quorum {}: {} of {} needed servers up: {}\n",
                s.name,
                q.up,
                q.min,
                if q.met {
                    "met".to_owned()
                } else {
                    format!(
                        "LOST (priority of {} {})",
                        or_dash(q.group.as_ref()),
                        q.priority_delta
                    )
                }
            ));
        }
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
    for q in quorums {
        out.push_str(&q);
    }
    let o = &status.server_overrides;
    if !o.entries.is_empty() {
        let list: Vec<String> = o
            .entries
            .iter()
            .map(|e| format!("{}/{} {}", e.service, e.server, e.server_override))
            .collect();
        out.push_str(&format!(
            "server overrides on THIS NODE ONLY ({}): set them on the peer too, or a failover serves these servers as configured\n",
            list.join(", ")
        ));
    }
    if let Some(e) = &o.load_error {
        out.push_str(&format!(
            "server state file UNUSABLE at start-up, started without overrides: {e}\n"
        ));
    }
    if let Some(e) = &o.last_write_error {
        out.push_str(&format!(
            "server state file NOT written ({} errors): {e}; overrides are lost at a restart\n",
            o.write_errors
        ));
    }
    if let Some(e) = &status.connection_count.error {
        out.push_str(&format!("active/inactive connections unknown: {e}\n"));
    }
    if let Some(a) = &status.announce {
        out.push_str(&crate::announce::render(a));
    }
    let b = &status.backend;
    out.push_str(&format!(
        "node {}: backend {} (table {}): {}\n",
        status.node, b.name, b.table, b.reason
    ));
    out.extend(status.forwarding.iter().filter_map(forwarding_line));
    let v = &status.vrrpd;
    let roles: Vec<String> = v.groups.iter().map(|(g, s)| format!("{g} {s}")).collect();
    let roles = if roles.is_empty() {
        "no roles known".to_owned()
    } else {
        roles.join(", ")
    };
    if v.connected {
        out.push_str(&format!("vrrpd connected: {roles}\n"));
    } else {
        out.push_str(&format!(
            "vrrpd NOT connected ({}); last known: {roles}\n",
            or_dash(v.error.as_ref())
        ));
    }
    out.push_str(&sync_line(&status.sync));
    let d = &status.dataplane;
    match &d.last_apply {
        Some(last) if last.ok => out.push_str(&format!(
            "last apply ({}): {} changes in {:.1} ms; {} applies, {} errors\n",
            last.why,
            or_dash(last.changes),
            last.duration_ms.unwrap_or_default(),
            d.applies,
            d.apply_errors,
        )),
        Some(last) => out.push_str(&format!(
            "last apply ({}) FAILED: {}; {} errors\n",
            last.why,
            or_dash(last.error.as_ref()),
            d.apply_errors,
        )),
        None => {}
    }
    for n in &status.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_health_checks_and_quorum() {
        let status = json!({
            "services": [{
                "name": "web", "vip": "198.18.0.100", "ports": "80", "protocol": "tcp",
                "scheduler": "rr", "effective_scheduler": "rr", "serving": "servers",
                "servers": [
                    {"name": "srv1", "address": "198.18.1.21", "port": 80, "weight": 1,
                     "effective_weight": 0, "health": "up", "transitions": 0,
                     "state": "drain", "override": {"kind": "drain"},
                     "active_connections": 1, "inactive_connections": 4,
                     "last_check": {"ok": true, "duration_ms": 0.42, "reason": null}},
                    {"name": "srv2", "address": "198.18.1.22", "port": 80, "weight": 1,
                     "effective_weight": 0, "health": "down", "held": true, "transitions": 3,
                     "last_check": {"ok": false, "duration_ms": 1.0, "reason": "connection refused"}},
                ],
                "quorum": {"min": 2, "up": 1, "met": false, "priority_delta": -60, "group": "edge"},
            }],
            "node": "lb1",
            "backend": {"name": "nft", "table": "lbsuite", "reason": "configured"},
            "vrrpd": {"connected": true, "groups": {"edge": "MASTER"}},
            "server_overrides": {"entries": [
                {"service": "web", "server": "srv1", "override": {"kind": "drain"}, "since_unix_ms": 1}
            ]},
        });
        let table = render(&serde_json::from_value(status).unwrap());
        assert!(table.contains("LAST CHECK"), "{table}");
        assert!(table.contains("ok 0.4ms"), "{table}");
        let srv1 = table.lines().find(|l| l.contains("srv1")).unwrap();
        let cells: Vec<&str> = srv1
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(cells.contains(&"drain (override)"), "{srv1}");
        assert!(
            cells.windows(2).any(|w| w == ["1", "4"]),
            "ACTIVE 1 INACTIVE 4: {srv1}"
        );
        assert!(
            table.contains("server overrides on THIS NODE ONLY (web/srv1 drain)"),
            "{table}"
        );
        assert!(table.contains("down (flapping: held)"), "{table}");
        assert!(table.contains("connection refused 1.0ms"), "{table}");
        assert!(
            table.contains("quorum web: 1 of 2 needed servers up: LOST (priority of edge -60)"),
            "{table}"
        );
        assert!(table.contains("node lb1: backend nft"), "{table}");
        assert!(
            table.contains("sync off: connections do not survive a failover"),
            "{table}"
        );
    }

    #[test]
    fn forwarding_is_said_where_needed_with_the_fix_when_off() {
        let mut f: ForwardingStatus = serde_json::from_value(json!({
            "family": "ipv4", "sysctl": "net.ipv4.ip_forward", "enabled": false,
            "needed_by": ["service web", "nat web-snat"],
        }))
        .unwrap();
        assert_eq!(
            forwarding_line(&f).as_deref(),
            Some(
                "forwarding ipv4 OFF (net.ipv4.ip_forward = 0): service web, nat web-snat get no \
                 answers from their servers; fix: sysctl -w net.ipv4.ip_forward=1, kept in \
                 /etc/sysctl.d\n"
            )
        );
        f.enabled = Some(true);
        assert_eq!(
            forwarding_line(&f).as_deref(),
            Some("forwarding ipv4 on (net.ipv4.ip_forward = 1) for service web, nat web-snat\n")
        );
        f.enabled = Some(false);
        f.needed_by.clear();
        assert_eq!(
            forwarding_line(&f),
            None,
            "off and not needed: nothing to say"
        );
    }

    #[test]
    fn the_sync_line_says_whether_a_planned_failover_keeps_connections() {
        let mut sync: SyncStatus = serde_json::from_value(json!({
            "enabled": true, "mode": "conntrack", "listen": "198.18.1.11:7000",
            "peer": "198.18.1.12:7000", "connected": false, "receiving": true,
            "peer_complete": true, "entries_stored": 120, "entries_pending": 0,
        }))
        .unwrap();
        assert_eq!(
            sync_line(&sync),
            "sync conntrack with 198.18.1.12:7000: sending no, receiving yes; 120 entries from \
             the peer, 0 pending; peer's state complete: ready for a planned failover\n"
        );
        if let Some(link) = sync.link.as_mut() {
            link.peer_complete = false;
            link.incomplete_because = Some("the peer's dump is under way".into());
        }
        assert!(sync_line(&sync)
            .ends_with("NOT ready for a planned failover (the peer's dump is under way)\n"));
    }
}
