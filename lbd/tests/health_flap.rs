//! A server that flaps (listener up and down every 300 ms) changes state at most
//! `max_transitions` times per dampening window, then is held down until stable
//! (needs root; real lbd).

mod health_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use health_support::*;
use support::*;

const MAX_TRANSITIONS: f64 = 4.0;
const WINDOW_S: f64 = 10.0;
const FLAP_FOR: Duration = Duration::from_secs(20);

const FLAPPY: &[(&str, &str)] = &[
    ("\ninterval_ms = 1000\n", "\ninterval_ms = 100\n"),
    ("\ntimeout_ms = 500\n", "\ntimeout_ms = 50\n"),
    ("\nrise = 2\n", "\nrise = 1\n"),
    ("\nfall = 2\n", "\nfall = 1\n"),
    (
        "dampening = { max_transitions = 4, window_ms = 60000, hold_ms = 30000 }",
        "dampening = { max_transitions = 4, window_ms = 10000, hold_ms = 2000 }",
    ),
];

fn transitions(setup: &Setup) -> f64 {
    let m = scrape(setup.host("lb1"), "127.0.0.1:9613");
    ["down", "up"]
        .iter()
        .map(|to| {
            sample(
                &m,
                &format!(
                    r#"lbd_health_transitions_total{{backend="srv2",service="web",to="{to}"}}"#
                ),
            )
            .unwrap_or(0.0)
        })
        .sum()
}

#[test]
fn flapping_server_is_dampened() {
    if !integration::have_root("flapping_server_is_dampened") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    let _srv1 = TestServer::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let srv2 = Arc::new(Mutex::new(TestServer::start(
        setup.host("srv2"),
        "198.18.1.22:80",
        "srv2",
    )));
    setup.write_config("lb1", FLAPPY);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let applies_before = setup.status("lb1")["dataplane"]["applies"]
        .as_u64()
        .unwrap();

    // Flap: 300 ms closed, 300 ms open.
    let stop = Arc::new(AtomicBool::new(false));
    let srv2_host = setup.host("srv2");
    let started = Instant::now();
    std::thread::scope(|scope| {
        let (flag, server) = (Arc::clone(&stop), Arc::clone(&srv2));
        scope.spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let mut s = server.lock().unwrap();
                if s.is_running() {
                    s.stop();
                } else {
                    s.resume(srv2_host);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(300));
            }
            server.lock().unwrap().resume(srv2_host);
        });
        std::thread::sleep(FLAP_FOR);
        stop.store(true, Ordering::Relaxed);
    });
    let flapped = started.elapsed().as_secs_f64();
    let count = transitions(&setup);
    let status = setup.status("lb1");
    let applies = status["dataplane"]["applies"].as_u64().unwrap() - applies_before;
    let s2 = server(&status, "web", "srv2");
    let cap = MAX_TRANSITIONS * (flapped / WINDOW_S).ceil();
    println!(
        "{flapped:.1} s of flapping every 300 ms: {count} transitions ({:.1}/min; cap {MAX_TRANSITIONS} per {WINDOW_S} s = {cap} here; undampened it would be ~{:.0}), {applies} dataplane applies; held: {}",
        count * 60.0 / flapped,
        flapped / 0.3,
        s2["held"]
    );
    assert!(count >= 2.0, "the server did flap: {count}");
    assert!(count <= cap, "{count} transitions > {cap}");
    assert!(applies as f64 <= cap, "{applies} applies");
    assert_eq!(s2["held"], true, "{s2}");
    assert_eq!(s2["health"], "down");

    // Stable again: released after the hold, once the window has room.
    wait_for(
        "srv2 released from the hold",
        Duration::from_secs(30),
        || server(&setup.status("lb1"), "web", "srv2")["health"] == "up",
    );
    let s2 = server(&setup.status("lb1"), "web", "srv2").clone();
    println!("released: {}", s2["last_transition"]);
    assert!(s2["last_transition"]["reason"]
        .as_str()
        .unwrap()
        .contains("flap hold released"));
    let m = scrape(setup.host("lb1"), "127.0.0.1:9613");
    assert!(
        sample(
            &m,
            r#"lbd_health_dampened_total{backend="srv2",service="web"}"#
        )
        .unwrap()
            >= 1.0
    );
}
