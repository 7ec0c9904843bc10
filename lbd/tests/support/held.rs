//! Two nodes with vrrpd and lbd, echo servers behind the VIP, and connections held
//! through failovers: what the connection-state sync tests share.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use integration::{Host, Process};
use serde_json::{json, Value};

use super::*;

/// The example's single SNAT address becomes a pool with a port range: a fresh
/// mapping on the other node would then pick another port than the first did.
pub const POOL: (&str, &str) = (
    "snat = { address = \"198.18.1.100\" }",
    "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }",
);
/// Connection-state sync off.
pub const SYNC_OFF: (&str, &str) = (
    "enabled = true\n# Interface carrying",
    "enabled = false\n# Interface carrying",
);

/// Echoes every byte back on each accepted connection.
pub fn echo_server(host: &Host, addr: &str) {
    let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Sends `msg` and returns what came back (an error on reset or timeout).
pub fn echo(s: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    s.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The daemons of both nodes.
pub struct Daemons {
    pub lbd1: Process,
    pub vrrpd1: Process,
    pub lbd2: Process,
    pub vrrpd2: Process,
}

/// Brings up both nodes (sync on or off; `more` edits to the config, after the pool
/// and without checks) until lb1 is MASTER and lb2 BACKUP, with echo servers on srv1
/// and srv2.
pub fn two_nodes(sync: bool, more: &[(&str, &str)]) -> (Setup, Daemons) {
    let setup = Setup::two_arm();
    echo_server(setup.host("srv1"), "198.18.1.21:80");
    echo_server(setup.host("srv2"), "198.18.1.22:80");
    let mut edits = vec![NO_CHECKS, POOL];
    if !sync {
        edits.push(SYNC_OFF);
    }
    edits.extend_from_slice(more);
    for node in ["lb1", "lb2"] {
        setup.write_config(node, &edits);
    }
    let lbd1 = setup.start_lbd("lb1");
    let lbd2 = setup.start_lbd("lb2");
    setup.wait_applied("lb1");
    setup.wait_applied("lb2");
    let vrrpd1 = setup.start_vrrpd("lb1");
    let vrrpd2 = setup.start_vrrpd("lb2");
    wait_for("lb1 MASTER and lb2 BACKUP", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER")
            && setup.role("lb2").as_deref() == Some("BACKUP")
    });
    if sync {
        wait_for("both sync streams up", PATIENCE, || {
            setup.status("lb1")["sync"]["connected"] == true
                && setup.status("lb2")["sync"]["connected"] == true
        });
    }
    let daemons = Daemons {
        lbd1,
        vrrpd1,
        lbd2,
        vrrpd2,
    };
    (setup, daemons)
}

/// A connection from the client through the VIP that has echoed once.
pub fn connect_through_vip(setup: &Setup) -> TcpStream {
    let client = setup.host("client");
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut held = None;
    wait_for("a connection through the VIP", PATIENCE, || {
        held = client
            .tcp_connect(vip, Duration::from_secs(1))
            .ok()
            .filter(|s| s.set_read_timeout(Some(Duration::from_secs(2))).is_ok())
            .and_then(|mut s| echo(&mut s, "one").ok().filter(|r| r == "one").map(|_| s));
        held.is_some()
    });
    held.unwrap()
}

/// conntrack's entries in `node` for the client's source port of `held`.
pub fn conntrack_of(setup: &Setup, node: &str, held: &TcpStream) -> String {
    let port = held.local_addr().unwrap().port().to_string();
    setup
        .host(node)
        .exec_ok(&["conntrack", "-L", "-p", "tcp", "--sport", &port])
        .unwrap()
}

/// lb1 dies (both daemons killed, cables cut); returns once lb2 is MASTER.
pub fn kill_lb1(setup: &Setup, daemons: &Daemons) {
    daemons.vrrpd1.signal(libc::SIGKILL).unwrap();
    daemons.lbd1.signal(libc::SIGKILL).unwrap();
    setup.lab.set_cable("lb1", "eth0", false).unwrap();
    setup.lab.set_cable("lb1", "eth1", false).unwrap();
    wait_until_master(setup, "lb2");
}

/// Waits until lbd in `node` follows vrrpd as MASTER and the other node's lbd no
/// longer does (it is BACKUP, or its vrrpd or lbd is gone).
pub fn wait_until_master(setup: &Setup, node: &str) {
    let other = if node == "lb1" { "lb2" } else { "lb1" };
    wait_for(&format!("{node} MASTER"), PATIENCE, || {
        let other_master =
            request(&setup.lbd_socket(other), "status", Value::Null).is_ok_and(|s| {
                s["vrrpd"]["connected"] == true && s["vrrpd"]["groups"]["edge"] == "MASTER"
            });
        setup.role(node).as_deref() == Some("MASTER") && !other_master
    });
}

/// vrrpd's status in `node`.
pub fn vrrpd_status(setup: &Setup, node: &str) -> Value {
    request(&setup.vrrpd_socket(node), "status", Value::Null).unwrap()
}

/// A control request to vrrpd in `node`.
pub fn vrrpd_request(setup: &Setup, node: &str, method: &str, params: Value) -> Value {
    request(&setup.vrrpd_socket(node), method, params)
        .unwrap_or_else(|e| panic!("{method} on {node}: {e}"))
}

/// Connections held through the VIP, each with a payload of its own size.
pub struct HeldConnections {
    conns: Vec<TcpStream>,
    /// Whether each connection has answered every time so far.
    alive: Vec<bool>,
}

impl HeldConnections {
    /// Opens `n` connections through the VIP (each echoes once).
    pub fn open(setup: &Setup, n: usize) -> HeldConnections {
        let conns = (0..n).map(|_| connect_through_vip(setup)).collect();
        HeldConnections {
            conns,
            alive: vec![true; n],
        }
    }

    /// How many connections echo a message now, each given up to `patience` (TCP
    /// retransmits over a takeover). Every connection writes 8 KiB and reads it back,
    /// in parallel; a connection that failed once stays failed.
    pub fn survivors(&mut self, patience: Duration) -> usize {
        let payload = "y".repeat(8192);
        let answers: Vec<bool> = thread::scope(|scope| {
            let running: Vec<_> = self
                .conns
                .iter_mut()
                .zip(&self.alive)
                .map(|(s, alive)| {
                    let payload = &payload;
                    scope.spawn(move || {
                        *alive
                            && s.set_read_timeout(Some(patience)).is_ok()
                            && echo(s, payload).is_ok_and(|r| r == *payload)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| matches!(h.join(), Ok(true)))
                .collect()
        });
        self.alive = answers;
        self.alive.iter().filter(|a| **a).count()
    }

    /// Number of connections held.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Adds `other`'s connections to these.
    pub fn extend(&mut self, other: HeldConnections) {
        self.conns.extend(other.conns);
        self.alive.extend(other.alive);
    }
}

/// Starts a failover drill on lb1 (the master): lb1 releases, lb2 takes over, lb1
/// returns and preempts once its lbd has lb2's state. Returns the drill's reply.
pub fn drill_failover(setup: &Setup) -> Value {
    vrrpd_request(setup, "lb1", "drill.failover", json!({}))
}

/// Maintenance on or off in `node`.
pub fn maintenance(setup: &Setup, node: &str, on: bool) -> Value {
    vrrpd_request(setup, node, "maintenance", json!({ "on": on }))
}
