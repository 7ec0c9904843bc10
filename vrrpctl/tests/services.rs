//! `vrrpctl services` against a stand-in lbd (a real control server answering
//! `status` with a canned reply): the table, JSON, and how the socket is found.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ctl::{EventBus, ReplyError, RequestHandler, Server, SocketPerms};
use serde_json::{json, Value};
use tokio::sync::watch;

fn status_reply() -> Value {
    json!({
        "node": "lb1",
        "backend": {"name": "nft", "reason": "dataplane.backend = \"nft\"", "table": "lbsuite"},
        "vrrpd": {"connected": true, "error": null, "groups": {"edge": "MASTER"}},
        "services": [{
            "name": "web", "vip": "198.18.0.100", "ports": "80", "protocol": "tcp",
            "scheduler": "wlc", "effective_scheduler": "wrr", "serving": "servers",
            "servers": [
                {"name": "srv1", "address": "198.18.1.21", "port": 80, "weight": 3,
                 "effective_weight": 3, "health": "up", "state": "up", "active_connections": 7,
                 "inactive_connections": 2, "connections": 12, "packets": 140, "bytes": 9000},
                {"name": "srv2", "address": "198.18.1.22", "port": 80, "weight": 1,
                 "effective_weight": 0, "health": "up", "state": "drain", "override": {"kind": "drain"},
                 "active_connections": 1, "inactive_connections": 0,
                 "connections": 4, "packets": null, "bytes": null}
            ],
            "sorry_server": {"address": "198.18.1.30", "port": 80, "connections": null}
        }],
        "dataplane": {"applies": 3, "apply_errors": 1, "last_apply": {"ok": true, "why": "health", "changes": 2, "duration_ms": 0.8}},
        "notes": ["service web: scheduler wlc ...; using wrr"],
        "server_overrides": {"entries": [
            {"service": "web", "server": "srv2", "override": {"kind": "drain"}, "since_unix_ms": 1}
        ]},
    })
}

fn server_reply(params: &Value, kind: Value) -> Value {
    json!({
        "node": "lb1", "service": params["service"], "server": params["server"],
        "override": kind, "previous": null, "state": "drain", "weight": 1,
        "effective_weight": 0, "persisted": true,
        "apply": {"ok": true, "changes": 2, "duration_ms": 0.5, "error": null},
    })
}

struct FakeLbd;

impl RequestHandler for FakeLbd {
    async fn handle(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
        if method.starts_with("server.") && params["server"] == "srv9" {
            return Err(ReplyError::failed(
                "service `web` has no server `srv9`; its servers: srv1, srv2",
            ));
        }
        match method {
            "status" => Ok(status_reply()),
            "server.drain" => Ok(server_reply(&params, json!({"kind": "drain"}))),
            "server.weight" if params["weight"] == 5 => Ok(server_reply(
                &params,
                json!({"kind": "weight", "weight": 5}),
            )),
            "server.list" => Ok(json!({"node": "lb1", "overrides": [
                {"service": "web", "server": "srv2", "override": {"kind": "drain"}, "since_unix_ms": 1}
            ]})),
            "server.clear" if params == json!({"all": true}) => Ok(json!({
                "node": "lb1", "persisted": true,
                "cleared": [{"service": "web", "server": "srv2", "override": {"kind": "drain"}, "since_unix_ms": 1}],
                "apply": {"ok": false, "error": "kernel said no"},
            })),
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A stand-in lbd on its own runtime; stops when dropped.
struct Lbd {
    stop: watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
}

impl Lbd {
    fn start(path: &Path) -> Lbd {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = runtime
            .block_on(Server::bind(path, SocketPerms::default()))
            .unwrap();
        runtime.spawn(server.serve(Arc::new(FakeLbd), EventBus::new(16), stopped));
        Lbd {
            stop,
            _runtime: runtime,
        }
    }
}

impl Drop for Lbd {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn vrrpctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn services_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbd.sock");
    let _lbd = Lbd::start(&path);
    let s = path.to_str().unwrap();

    let (code, out, err) = vrrpctl(&["--socket", s, "services"]);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    for col in [
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
    ] {
        assert!(lines[0].contains(col), "{col} missing: {}", lines[0]);
    }
    let srv1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        srv1,
        [
            "web",
            "198.18.0.100:80/tcp",
            "wlc->wrr",
            "srv1",
            "198.18.1.21:80",
            "3",
            "up",
            "up",
            "-",
            "-",
            "7",
            "2",
            "12",
            "140",
            "9000"
        ]
    );
    let srv2: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        srv2,
        [
            "web",
            "198.18.0.100:80/tcp",
            "wlc->wrr",
            "srv2",
            "198.18.1.22:80",
            "0",
            "(of",
            "1)",
            "drain",
            "(override)",
            "up",
            "-",
            "-",
            "1",
            "0",
            "4",
            "-",
            "-"
        ]
    );
    assert!(
        lines[3].contains("(sorry)") && lines[3].contains("standby"),
        "{out}"
    );
    assert!(out.contains("backend nft (table lbsuite)"), "{out}");
    assert!(out.contains("vrrpd connected: edge MASTER"), "{out}");
    assert!(out.contains("last apply (health): 2 changes"), "{out}");
    assert!(out.contains("note: service web"), "{out}");

    let (code, out, _) = vrrpctl(&["--socket", s, "services", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, status_reply());
}

#[test]
fn services_socket_from_config_and_absent_lbd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-config.sock");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../cluster.toml.example"
    ))
    .unwrap()
    .replace(
        "lbd_socket = \"/run/lbsuite/lbd.sock\"",
        &format!("lbd_socket = {path:?}"),
    );
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, example).unwrap();
    let c = config.to_str().unwrap();

    // Nobody there yet: a clear error naming the socket, exit 1.
    let (code, _, err) = vrrpctl(&["--config", c, "services"]);
    assert_eq!(code, 1);
    assert!(err.contains("from-config.sock"), "{err}");

    let _lbd = Lbd::start(&path);
    let (code, out, err) = vrrpctl(&["--config", c, "services", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"], "lb1");
}

#[test]
fn server_commands_print_what_lbd_did_and_fail_on_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lbd.sock");
    let _lbd = Lbd::start(&path);
    let s = path.to_str().unwrap();

    let (code, out, err) = vrrpctl(&["--socket", s, "server", "drain", "web/srv2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("web/srv2 on lb1: drain (was none); state drain, weight 0 (configured 1); applied (2 dataplane changes)"),
        "{out}"
    );
    assert!(out.contains("this node's lbd only"), "{out}");

    let (code, out, _) = vrrpctl(&["--socket", s, "server", "weight", "web/srv2", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains(": weight 5 (was none)"), "{out}");

    let (code, _, err) = vrrpctl(&["--socket", s, "server", "drain", "web/srv9"]);
    assert_eq!(code, 1);
    assert!(err.contains("its servers: srv1, srv2"), "{err}");
    let (code, _, err) = vrrpctl(&["--socket", s, "server", "drain", "srv2"]);
    assert_eq!(code, 1);
    assert!(err.contains("SERVICE/SERVER"), "{err}");
    let (code, _, err) = vrrpctl(&["--socket", s, "server", "weight", "web/srv2", "-1"]);
    assert_ne!(code, 0, "{err}");

    let (code, out, _) = vrrpctl(&["--socket", s, "server", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("server overrides on lb1 (this node only):\nweb/srv2: drain"),
        "{out}"
    );

    // clear needs --all; a failed apply is exit status 1.
    let (code, _, _) = vrrpctl(&["--socket", s, "server", "clear"]);
    assert_ne!(code, 0);
    let (code, out, _) = vrrpctl(&["--socket", s, "server", "clear", "--all"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cleared web/srv2: drain"), "{out}");
    assert!(
        out.contains("dataplane apply FAILED: kernel said no"),
        "{out}"
    );

    let (code, out, _) = vrrpctl(&["--socket", s, "services"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("server overrides on THIS NODE ONLY (web/srv2 drain)"),
        "{out}"
    );
}
