//! Connection-state sync between the two lbds (needs root, and vrrpd built next to
//! lbd): a TCP connection held through lb1, source-NATed from a port pool, keeps
//! echoing through lb2 after lb1 dies, because lb2 committed lb1's entry at prepare.
//! Without sync lb2 picks another pool port and the server resets the connection.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use integration::Host;
use serde_json::Value;
use support::*;

/// The example's single SNAT address becomes a pool with a port range: a fresh
/// mapping on lb2 would then pick another port than lb1 did.
const POOL: (&str, &str) = (
    "snat = { address = \"198.18.1.100\" }",
    "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }",
);
const SYNC_OFF: (&str, &str) = (
    "enabled = true\n# Interface carrying",
    "enabled = false\n# Interface carrying",
);

/// Echoes every byte back on each accepted connection.
fn echo_server(host: &Host, addr: &str) {
    let listener = host.tcp_listen(addr.parse().unwrap()).unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
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
fn echo(s: &mut TcpStream, msg: &str) -> std::io::Result<String> {
    s.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Brings up both nodes (sync on or off), holds a connection through lb1, kills lb1 and
/// returns what the held connection answers through lb2, lb2's status and metrics.
fn held_connection_after_failover(sync: bool) -> (std::io::Result<String>, Value, String) {
    let setup = Setup::two_arm();
    echo_server(setup.host("srv1"), "198.18.1.21:80");
    echo_server(setup.host("srv2"), "198.18.1.22:80");
    let mut edits = vec![NO_CHECKS, POOL];
    if !sync {
        edits.push(SYNC_OFF);
    }
    for node in ["lb1", "lb2"] {
        setup.write_config(node, &edits);
    }
    let lbd1 = setup.start_lbd("lb1");
    let _lbd2 = setup.start_lbd("lb2");
    setup.wait_applied("lb1");
    setup.wait_applied("lb2");
    let vrrpd1 = setup.start_vrrpd("lb1");
    let _vrrpd2 = setup.start_vrrpd("lb2");
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

    let client = setup.host("client");
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();
    let mut held = None;
    wait_for("a connection through the VIP on lb1", PATIENCE, || {
        held = client
            .tcp_connect(vip, Duration::from_secs(1))
            .ok()
            .filter(|s| s.set_read_timeout(Some(Duration::from_secs(2))).is_ok())
            .and_then(|mut s| echo(&mut s, "one").ok().filter(|r| r == "one").map(|_| s));
        held.is_some()
    });
    let mut held = held.unwrap();
    let port = held.local_addr().unwrap().port();
    let listed = setup
        .host("lb1")
        .exec_ok(&["conntrack", "-L", "-p", "tcp", "--sport", &port.to_string()])
        .unwrap();
    println!("lb1 conntrack: {listed}");
    if sync {
        wait_for("lb2 holds lb1's connection entry", PATIENCE, || {
            setup.status("lb2")["sync"]["entries_stored"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        });
        println!("lb2 sync: {}", setup.status("lb2")["sync"]);
    }

    // lb1 dies: both daemons killed, cables cut.
    vrrpd1.signal(libc::SIGKILL).unwrap();
    lbd1.signal(libc::SIGKILL).unwrap();
    setup.lab.set_cable("lb1", "eth0", false).unwrap();
    setup.lab.set_cable("lb1", "eth1", false).unwrap();
    wait_for("lb2 MASTER", PATIENCE, || {
        setup.role("lb2").as_deref() == Some("MASTER")
    });
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = echo(&mut held, "two");
    let status = setup.status("lb2");
    let listed = setup
        .host("lb2")
        .exec_ok(&["conntrack", "-L", "-p", "tcp", "--sport", &port.to_string()])
        .unwrap();
    println!("lb2 conntrack: {listed}");
    let metrics = scrape(setup.host("lb2"), "127.0.0.1:9613");
    (answer, status, metrics)
}

#[test]
fn synced_connection_survives_failover() {
    if !integration::have_root("synced_connection_survives_failover") {
        return;
    }
    let (answer, status, metrics) = held_connection_after_failover(true);
    println!("lb2 prepare: {}", status["prepare"]["last"]);
    println!("lb2 sync: {}", status["sync"]);
    assert_eq!(answer.unwrap(), "two", "held connection through lb2");
    let committed = &status["prepare"]["last"]["reply"]["sync"];
    assert!(
        committed["created"].as_u64().unwrap() + committed["updated"].as_u64().unwrap() >= 1,
        "{committed}"
    );
    assert_eq!(status["sync"]["mode"], "conntrack");
    assert_eq!(status["sync"]["last_commit"]["report"], *committed);
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("lb_sync_"))
        .collect();
    println!("{lines:?}");
    let commits = lines
        .iter()
        .find_map(|l| l.strip_prefix("lb_sync_commit_duration_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(commits.is_some_and(|n| n >= 1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("lb_sync_entries_stored ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("lb_sync_connected ")),
        "{lines:?}"
    );
}

#[test]
fn unsynced_pooled_connection_is_reset_by_the_server() {
    if !integration::have_root("unsynced_pooled_connection_is_reset_by_the_server") {
        return;
    }
    let (answer, status, _) = held_connection_after_failover(false);
    println!("held connection through lb2 without sync: {answer:?}");
    assert_eq!(status["sync"]["mode"], "off");
    assert_eq!(
        answer.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "without sync the server resets the re-NATed connection"
    );
}
