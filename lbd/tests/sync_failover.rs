//! Connection-state sync between the two lbds (needs root, and vrrpd built next to
//! lbd): a TCP connection held through lb1, source-NATed from a port pool, keeps
//! echoing through lb2 after lb1 dies, because lb2 wrote lb1's entry into its kernel
//! as it arrived (while BACKUP).
//! Without sync lb2 picks another pool port and the server resets the connection.
//! When lb1 comes back it preempts only once its lbd has lb2's complete state (or
//! `[sync] preempt_wait_ms` runs out), so connections made through lb2 survive too.

mod support;

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::held::*;
use support::*;

/// Brings up both nodes (sync on or off), holds a connection through lb1, kills lb1 and
/// returns what the held connection answers through lb2, lb2's status and metrics.
fn held_connection_after_failover(sync: bool) -> (std::io::Result<String>, Value, String) {
    let (setup, daemons) = two_nodes(sync, &[]);
    let mut held = connect_through_vip(&setup);
    println!("lb1 conntrack: {}", conntrack_of(&setup, "lb1", &held));
    if sync {
        // Written into lb2's kernel as it arrived, before any takeover.
        wait_for(
            "lb2's kernel holds lb1's connection entry",
            PATIENCE,
            || conntrack_of(&setup, "lb2", &held).contains("dport=80"),
        );
        println!(
            "lb2 conntrack before: {}",
            conntrack_of(&setup, "lb2", &held)
        );
        println!("lb2 sync: {}", setup.status("lb2")["sync"]);
        assert_eq!(setup.status("lb2")["sync"]["writing_to_kernel"], true);
    }
    kill_lb1(&setup, &daemons);
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = echo(&mut held, "two");
    let status = setup.status("lb2");
    println!("lb2 conntrack: {}", conntrack_of(&setup, "lb2", &held));
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
    assert!(committed["elapsed_ms"].is_number(), "{committed}");
    assert_eq!(committed["failed"], 0, "{committed}");
    assert!(
        status["sync"]["entries_written"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{}",
        status["sync"]
    );
    assert_eq!(
        status["sync"]["writing_to_kernel"], false,
        "MASTER now: the peer's entries are held only"
    );
    assert_eq!(status["sync"]["mode"], "conntrack");
    assert_eq!(status["sync"]["last_commit"]["report"], *committed);
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("lbd_sync_"))
        .collect();
    println!("{lines:?}");
    let commits = lines
        .iter()
        .find_map(|l| l.strip_prefix("lbd_sync_commit_duration_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(commits.is_some_and(|n| n >= 1), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("lbd_sync_entries_stored ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("lbd_sync_connected ")),
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

/// lb1 dies, a connection is made through lb2 (lb1 never saw it), and lb1 comes back
/// while lb2's sync stream cannot reach it; returns once lb1's vrrpd is BACKUP.
fn lb1_returns_with_sync_blocked(more: &[(&str, &str)]) -> (Setup, Daemons, TcpStream) {
    let (setup, mut daemons) = two_nodes(true, more);
    kill_lb1(&setup, &daemons);
    // lb2 chooses this connection's SNAT port from the pool.
    let held = connect_through_vip(&setup);
    println!("lb2 conntrack: {}", conntrack_of(&setup, "lb2", &held));
    let lb1 = setup.host("lb1");
    lb1.exec_ok(&["nft", "add table inet test_block"]).unwrap();
    lb1.exec_ok(&[
        "nft",
        "add chain inet test_block input { type filter hook input priority 0 ; }",
    ])
    .unwrap();
    lb1.exec_ok(&["nft", "add rule inet test_block input tcp dport 8848 drop"])
        .unwrap();
    setup.lab.set_cable("lb1", "eth0", true).unwrap();
    setup.lab.set_cable("lb1", "eth1", true).unwrap();
    daemons.lbd1 = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    daemons.vrrpd1 = setup.start_vrrpd("lb1");
    wait_for("lb1 BACKUP", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("BACKUP")
    });
    (setup, daemons, held)
}

#[test]
fn returning_node_preempts_only_once_it_has_the_peers_connections() {
    if !integration::have_root("returning_node_preempts_only_once_it_has_the_peers_connections") {
        return;
    }
    let (setup, _daemons, mut held) = lb1_returns_with_sync_blocked(&[]);
    let lb1 = setup.host("lb1");
    // Well past Master_Down_Interval (3.4 s at priority 150): lb1 (150) would have
    // preempted lb2 (100) by now; it holds back instead.
    thread::sleep(Duration::from_secs(6));
    let hold = vrrpd_status(&setup, "lb1")["preempt_hold"].clone();
    println!("lb1 preempt hold while blocked: {hold}");
    println!("lb1 sync: {}", setup.status("lb1")["sync"]);
    assert_eq!(setup.role("lb1").as_deref(), Some("BACKUP"));
    assert_eq!(setup.role("lb2").as_deref(), Some("MASTER"));
    assert_eq!(hold["held"], true, "{hold}");
    assert!(hold["reasons"]["lbd"].is_string(), "{hold}");
    assert_eq!(setup.status("lb1")["sync"]["peer_complete"], false);
    let metrics = scrape(lb1, "127.0.0.1:9612");
    assert_eq!(sample(&metrics, "vrrp_preempt_hold "), Some(1.0));

    // The stream gets through: the dump completes, the hold ends, lb1 preempts and
    // carries the connection lb2 made.
    lb1.exec_ok(&["nft", "delete table inet test_block"])
        .unwrap();
    wait_for("lb1 MASTER", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER")
    });
    let hold = vrrpd_status(&setup, "lb1")["preempt_hold"].clone();
    let status = setup.status("lb1");
    println!("lb1 preempt hold after: {hold}");
    println!("lb1 prepare: {}", status["prepare"]["last"]);
    println!("lb1 conntrack: {}", conntrack_of(&setup, "lb1", &held));
    assert_eq!(hold["held"], false, "{hold}");
    assert_eq!(
        hold["expirations"], 0,
        "released by lbd, not by the time limit: {hold}"
    );
    assert_eq!(status["sync"]["peer_complete"], true);
    assert!(
        status["sync"]["entries_written"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "lb2's entry went into lb1's kernel: {}",
        status["sync"]
    );
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        echo(&mut held, "two").unwrap(),
        "two",
        "lb2's connection through lb1"
    );
}

#[test]
fn a_hold_that_runs_out_preempts_anyway_and_says_so() {
    if !integration::have_root("a_hold_that_runs_out_preempts_anyway_and_says_so") {
        return;
    }
    let wait = ("preempt_wait_ms = 30000", "preempt_wait_ms = 2000");
    let (setup, _daemons, _held) = lb1_returns_with_sync_blocked(&[wait]);
    let lb1 = setup.host("lb1");
    // Held for 2 s, then Master_Down_Interval: lb1 preempts without lb2's state.
    wait_for("lb1 MASTER", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER")
    });
    let hold = vrrpd_status(&setup, "lb1")["preempt_hold"].clone();
    println!("lb1 preempt hold: {hold}");
    // MASTER now: nothing is held back; the ran-out hold is counted.
    assert_eq!(hold["held"], false, "{hold}");
    assert_eq!(hold["expirations"], 1, "{hold}");
    // lb2 lacked lb1's stream too, for longer than 2 s, but never stood to preempt
    // (BACKUP under lb1's higher priority, then MASTER): nothing ran out there.
    let hold2 = vrrpd_status(&setup, "lb2")["preempt_hold"].clone();
    println!("lb2 preempt hold: {hold2}");
    assert_eq!(hold2["expirations"], 0, "{hold2}");
    assert!(
        hold["reasons"]["lbd"].is_string(),
        "lbd still lacks the state: {hold}"
    );
    let metrics = scrape(lb1, "127.0.0.1:9612");
    assert_eq!(
        sample(&metrics, "vrrp_preempt_hold_expired_total "),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "vrrp_preempt_hold "), Some(0.0));
}
