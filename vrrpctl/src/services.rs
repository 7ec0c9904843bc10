//! `vrrpctl services`: lbd's services and servers (weights, health, counters) as a
//! table, or lbd's `status` reply as JSON.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
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
        println!(
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
        );
    } else {
        print!("{}", render(&reply));
    }
    Ok(0)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn addr_port(addr: &Value, port: &Value) -> String {
    let a = text(addr);
    match port.as_u64() {
        Some(p) if a.contains(':') => format!("[{a}]:{p}"),
        Some(p) => format!("{a}:{p}"),
        None => a,
    }
}

/// A server's last check: `ok 0.4ms`, or the failure reason.
fn last_check(c: &Value) -> String {
    if !c.is_object() {
        return "-".to_owned();
    }
    let ms = c["duration_ms"].as_f64().unwrap_or(f64::NAN);
    if c["ok"] == Value::Bool(true) {
        format!("ok {ms:.1}ms")
    } else {
        format!("{} {ms:.1}ms", text(&c["reason"]))
    }
}

/// The table: one row per server (and sorry server), then the backend, vrrpd and
/// the last apply.
pub fn render(status: &Value) -> String {
    let header = [
        "SERVICE",
        "VIP",
        "SCHED",
        "SERVER",
        "ADDRESS",
        "WEIGHT",
        "HEALTH",
        "LAST CHECK",
        "TRANS",
        "CONNS",
        "PACKETS",
        "BYTES",
    ];
    let mut quorums = Vec::new();
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for s in status["services"].as_array().into_iter().flatten() {
        let vip = {
            let v = text(&s["vip"]);
            let v = if v.contains(':') { format!("[{v}]") } else { v };
            format!("{v}:{}/{}", text(&s["ports"]), text(&s["protocol"]))
        };
        let mut sched = text(&s["scheduler"]);
        if s["effective_scheduler"] != s["scheduler"] && !s["effective_scheduler"].is_null() {
            sched = format!("{sched}->{}", text(&s["effective_scheduler"]));
        }
        for b in s["servers"].as_array().into_iter().flatten() {
            let weight = if b["weight"] == b["effective_weight"] {
                text(&b["weight"])
            } else {
                format!(
                    "{} (of {})",
                    text(&b["effective_weight"]),
                    text(&b["weight"])
                )
            };
            let mut health = text(&b["health"]);
            if b["held"] == Value::Bool(true) {
                health.push_str(" (flapping: held)");
            } else if b["in_dataplane"] == Value::Bool(false) {
                health.push_str(" (removed)");
            }
            rows.push(vec![
                text(&s["name"]),
                vip.clone(),
                sched.clone(),
                text(&b["name"]),
                addr_port(&b["address"], &b["port"]),
                weight,
                health,
                last_check(&b["last_check"]),
                text(&b["transitions"]),
                text(&b["connections"]),
                text(&b["packets"]),
                text(&b["bytes"]),
            ]);
        }
        let z = &s["sorry_server"];
        if z.is_object() {
            let serving = s["serving"] == "sorry";
            rows.push(vec![
                text(&s["name"]),
                vip.clone(),
                sched.clone(),
                "(sorry)".to_owned(),
                addr_port(&z["address"], &z["port"]),
                if serving { "1" } else { "0" }.to_owned(),
                if serving { "serving" } else { "standby" }.to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                text(&z["connections"]),
                text(&z["packets"]),
                text(&z["bytes"]),
            ]);
        }
        let q = &s["quorum"];
        if q.is_object() {
            let met = q["met"] == Value::Bool(true);
            quorums.push(format!(
                "quorum {}: {} of {} needed servers up: {}\n",
                text(&s["name"]),
                text(&q["up"]),
                text(&q["min"]),
                if met {
                    "met".to_owned()
                } else {
                    format!(
                        "LOST (priority of {} {})",
                        text(&q["group"]),
                        text(&q["priority_delta"])
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
    let b = &status["backend"];
    out.push_str(&format!(
        "backend {} (table {}): {}\n",
        text(&b["name"]),
        text(&b["table"]),
        text(&b["reason"])
    ));
    let v = &status["vrrpd"];
    let roles: Vec<String> = v["groups"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(g, s)| format!("{g} {}", text(s)))
        .collect();
    let roles = if roles.is_empty() {
        "no roles known".to_owned()
    } else {
        roles.join(", ")
    };
    if v["connected"] == Value::Bool(true) {
        out.push_str(&format!("vrrpd connected: {roles}\n"));
    } else {
        out.push_str(&format!(
            "vrrpd NOT connected ({}); last known: {roles}\n",
            text(&v["error"])
        ));
    }
    let d = &status["dataplane"];
    let last = &d["last_apply"];
    if last["ok"] == Value::Bool(true) {
        out.push_str(&format!(
            "last apply ({}): {} changes in {:.1} ms; {} applies, {} errors\n",
            text(&last["why"]),
            text(&last["changes"]),
            last["duration_ms"].as_f64().unwrap_or(f64::NAN),
            text(&d["applies"]),
            text(&d["apply_errors"]),
        ));
    } else if last.is_object() {
        out.push_str(&format!(
            "last apply ({}) FAILED: {}; {} errors\n",
            text(&last["why"]),
            text(&last["error"]),
            text(&d["apply_errors"]),
        ));
    }
    for n in status["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", text(n)));
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
                     "effective_weight": 1, "health": "up", "transitions": 0,
                     "last_check": {"ok": true, "duration_ms": 0.42, "reason": null}},
                    {"name": "srv2", "address": "198.18.1.22", "port": 80, "weight": 1,
                     "effective_weight": 0, "health": "down", "held": true, "transitions": 3,
                     "last_check": {"ok": false, "duration_ms": 1.0, "reason": "connection refused"}},
                ],
                "quorum": {"min": 2, "up": 1, "met": false, "priority_delta": -60, "group": "edge"},
            }],
            "backend": {"name": "nft", "table": "lbsuite", "reason": "configured"},
            "vrrpd": {"connected": true, "groups": {"edge": "MASTER"}},
        });
        let table = render(&status);
        assert!(table.contains("LAST CHECK"), "{table}");
        assert!(table.contains("ok 0.4ms"), "{table}");
        assert!(table.contains("down (flapping: held)"), "{table}");
        assert!(table.contains("connection refused 1.0ms"), "{table}");
        assert!(
            table.contains("quorum web: 1 of 2 needed servers up: LOST (priority of edge -60)"),
            "{table}"
        );
    }
}
