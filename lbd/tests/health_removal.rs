//! A dead server leaves balancing within interval x fall (+ an interval), comes
//! back after rise, and no client connection is sent to it in between; checks
//! leave from the node's own server-side address (needs root; real lbd).

mod health_support;
mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use health_support::*;
use support::*;

/// Checks every 200 ms, 100 ms timeout; rise 2, fall 2 (the example's).
pub const FAST_CHECKS: &[(&str, &str)] = &[
    ("\ninterval_ms = 1000\n", "\ninterval_ms = 200\n"),
    ("\ntimeout_ms = 500\n", "\ntimeout_ms = 100\n"),
];

fn wait_health(setup: &Setup, name: &str, want: &str) -> Instant {
    let mut at = Instant::now();
    wait_for(
        &format!("web/{name} {want} in lbd's status"),
        PATIENCE,
        || {
            let s = setup.status("lb1");
            at = Instant::now();
            server(&s, "web", name)["health"] == want
        },
    );
    at
}

#[test]
fn dead_server_leaves_fast_returns_after_rise_and_gets_no_connection_meanwhile() {
    if !integration::have_root("dead_server_leaves_fast_returns_after_rise") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    let _srv1 = TestServer::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let mut srv2 = TestServer::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    setup.write_config("lb1", FAST_CHECKS);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    wait_for("a few passing checks of srv2", PATIENCE, || {
        let s = setup.status("lb1");
        server(&s, "web", "srv2")["checks"].as_u64().unwrap_or(0) >= 3
    });

    let client = Client::start(
        setup.host("client"),
        &format!("{VIP}:80"),
        Duration::from_millis(20),
    );
    std::thread::sleep(Duration::from_secs(2));

    let killed = Instant::now();
    srv2.stop();
    let down = wait_health(&setup, "srv2", "down");
    let status = setup.status("lb1");
    let s2 = server(&status, "web", "srv2");
    println!("srv2 after its listener closed: {s2}");
    assert_eq!(s2["effective_weight"], 0);
    assert_eq!(s2["last_check"]["reason"], "connection refused");
    assert!(
        s2["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("2 consecutive failed checks"),
        "{s2}"
    );
    std::thread::sleep(Duration::from_secs(2));

    let restarted = Instant::now();
    srv2.resume(setup.host("srv2"));
    let up = wait_health(&setup, "srv2", "up");
    std::thread::sleep(Duration::from_secs(2));
    let attempts = client.finish();

    let out_after = down - killed;
    let back_after = up - restarted;
    println!(
        "srv2 out of balancing {:.0} ms after its death (bound interval x fall + interval = 600 ms, +-10 % jitter, + status polling); back {:.0} ms after its restart (rise 2 x 200 ms)",
        out_after.as_secs_f64() * 1e3,
        back_after.as_secs_f64() * 1e3
    );
    assert!(out_after < Duration::from_secs(5), "{out_after:?}");
    assert!(back_after < Duration::from_secs(5), "{back_after:?}");

    let (before, failed_before) =
        tally(&between(&attempts, killed - Duration::from_secs(2), killed));
    let (dying, failed_dying) = tally(&between(&attempts, killed, down));
    let (while_down, failed_down) = tally(&between(&attempts, down, restarted));
    let (back, failed_back) = tally(&between(&attempts, up, Instant::now()));
    println!("before: {before:?}, {failed_before} failed");
    println!("until marked down: {dying:?}, {failed_dying} failed (refused by the dead srv2)");
    println!("marked down until restart: {while_down:?}, {failed_down} failed");
    println!("back: {back:?}, {failed_back} failed");
    assert_eq!(failed_before, 0);
    assert!(before.contains_key("srv2"));
    assert_eq!(
        failed_down, 0,
        "no connection reaches the dead server once it is down"
    );
    assert_eq!(while_down.get("srv2"), None);
    assert!(while_down.get("srv1").copied().unwrap_or(0) > 20);
    assert_eq!(failed_back, 0);
    assert!(back.get("srv2").copied().unwrap_or(0) > 5, "{back:?}");

    // The server saw checks from lb1's own eth1 address, balanced traffic from the SNAT VIP.
    let node: IpAddr = "198.18.1.11".parse().unwrap();
    let snat: IpAddr = SNAT_VIP.parse().unwrap();
    let visits = srv2.visits();
    let checks: Vec<&Visit> = visits.iter().filter(|v| v.is_http_check()).collect();
    let clients: Vec<&Visit> = visits.iter().filter(|v| !v.is_http_check()).collect();
    println!(
        "srv2 saw {} checks from {:?} and {} client connections from {:?}",
        checks.len(),
        checks
            .iter()
            .map(|v| v.peer)
            .collect::<std::collections::BTreeSet<_>>(),
        clients.len(),
        clients
            .iter()
            .map(|v| v.peer)
            .collect::<std::collections::BTreeSet<_>>()
    );
    assert!(checks.len() > 10);
    assert!(checks.iter().all(|v| v.peer == node));
    assert!(!clients.is_empty());
    assert!(clients.iter().all(|v| v.peer == snat));
    let status = setup.status("lb1");
    assert_eq!(
        server(&status, "web", "srv2")["check_source"],
        serde_json::json!("198.18.1.11")
    );

    let metrics = scrape(setup.host("lb1"), "127.0.0.1:9613");
    for to in ["down", "up"] {
        assert_eq!(
            sample(
                &metrics,
                &format!(
                    r#"lbd_health_transitions_total{{backend="srv2",service="web",to="{to}"}}"#
                )
            ),
            Some(1.0),
            "{to}"
        );
    }
    assert!(sample(&metrics, r#"lbd_health_checks_total{result="failed"}"#).unwrap() >= 2.0);
}
