//! Idle clients cannot take lbd down: with far more connections opened to its control
//! socket than it serves, lbd's descriptors stay bounded, its health checks go on
//! (both servers stay in the DNAT map), vrrpd's prepare still gets through (the
//! peer's reserve), and once the idle ones time out a fresh client is served.
//! Needs root (prints SKIP otherwise).

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use serde_json::Value;
use support::*;

const CAP: usize = 16;
/// More than lbd's descriptor limit below: without a cap, lbd runs out.
const FLOOD: usize = 700;
const LBD_NOFILE: u64 = 512;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn backends(setup: &Setup) -> std::collections::BTreeSet<String> {
    dnat_slots(setup.host("lb1")).into_values().collect()
}

#[test]
fn idle_connections_over_the_cap_leave_lbd_serving() {
    if !integration::have_root("idle_connections_over_the_cap_leave_lbd_serving") {
        return;
    }
    let setup = Setup::two_arm();
    let _srv1 = Responder::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let _srv2 = Responder::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    let limits = [
        ("max_connections = 64", "max_connections = 16"),
        ("idle_timeout_ms = 30000", "idle_timeout_ms = 20000"),
    ];
    setup.write_config("lb1", &limits);
    // lbd with a small descriptor limit, as a daemon under a tight LimitNOFILE has.
    let config = setup.config("lb1");
    let mut cmd = setup.host("lb1").command(env!("CARGO_BIN_EXE_lbd"));
    cmd.args(["--config", config.to_str().unwrap(), "--node", "lb1"])
        .env("RUST_LOG", "info,lbd=debug");
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: LBD_NOFILE,
                rlim_max: LBD_NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let lbd = setup.host("lb1").spawn_command(cmd, "lbd").unwrap();
    setup.wait_applied("lb1");
    wait_for("both servers up in the DNAT map", PATIENCE, || {
        backends(&setup).len() == 2
    });
    let checks = |s: &Value| s["health"]["counters"]["checks_started"].as_u64().unwrap();
    let checks_before = checks(&setup.status("lb1"));
    // Wait out the idle timeout of the status connections just used.
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = open_fds(lbd.pid());

    let socket = setup.lbd_socket("lb1");
    let mut flood = Vec::with_capacity(FLOOD);
    for i in 0..FLOOD {
        match UnixStream::connect(&socket) {
            Ok(s) => flood.push(s),
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let fds_flooded = open_fds(lbd.pid());
    println!("lbd descriptors: {fds_before} before, {fds_flooded} with {FLOOD} connections open to its socket (cap {CAP})");
    assert!(
        fds_flooded <= fds_before + CAP + 8,
        "descriptors grew from {fds_before} to {fds_flooded}"
    );

    // Over the cap: a fresh client is told why at once.
    let fresh = request(&socket, "status", Value::Null).unwrap_err();
    println!("fresh client while full: {fresh}");
    assert!(fresh.contains("too many control connections"), "{fresh}");
    let mut over = BufReader::new(flood.last().unwrap().try_clone().unwrap());
    let mut line = String::new();
    over.read_line(&mut line).unwrap();
    assert!(line.contains("-32003"), "{line}");

    // Health checks go on: both servers stay in the map, and vrrpd's prepare at its
    // takeover gets through on the reserve.
    let vrrpd = setup.start_vrrpd("lb1");
    let vrrpd_socket = setup.vrrpd_socket("lb1");
    let mut takeover = Value::Null;
    wait_for("vrrpd MASTER after its takeover", PATIENCE, || {
        let Ok(s) = request(&vrrpd_socket, "status", Value::Null) else {
            return false;
        };
        takeover = s["groups"][0]["last_takeover"].clone();
        s["groups"][0]["state"] == "MASTER" && takeover["phases_ms"].get("vips_added").is_some()
    });
    println!("takeover while lbd's socket is full: {takeover}");
    let vrrpd_status = request(&vrrpd_socket, "status", Value::Null).unwrap();
    assert_eq!(
        vrrpd_status["groups"][0]["prepare_misses"], 0,
        "{vrrpd_status}"
    );
    for _ in 0..20 {
        assert_eq!(backends(&setup).len(), 2, "a server left the DNAT map");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(open_fds(lbd.pid()) <= fds_before + 2 * CAP + 8);

    // The idle ones time out; a fresh client is served again.
    let status = {
        let mut status = Value::Null;
        wait_for(
            "lbd answers a fresh client",
            Duration::from_secs(60),
            || match request(&socket, "status", Value::Null) {
                Ok(s) => {
                    status = s;
                    true
                }
                Err(_) => false,
            },
        );
        status
    };
    let control = &status["control"];
    println!("lbd control counters: {control}");
    assert!(
        control["refused"].as_u64().unwrap() >= (FLOOD - CAP) as u64,
        "{control}"
    );
    assert!(
        control["idle_closed"].as_u64().unwrap() >= CAP as u64,
        "{control}"
    );
    assert!(control["reserved"].as_u64().unwrap() >= 1, "{control}");
    assert!(
        status["prepare"]["count"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        checks(&status) > checks_before + 10,
        "health checks ran meanwhile"
    );
    let metrics = scrape(setup.host("lb1"), "127.0.0.1:9613");
    let refused = sample(&metrics, "lbd_control_connections_refused_total").unwrap();
    assert!(refused >= (FLOOD - CAP) as f64, "{refused}");
    drop(flood);
    drop(vrrpd);
}

#[test]
fn a_request_with_duplicate_keys_is_refused() {
    if !integration::have_root("a_request_with_duplicate_keys_is_refused") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let _lbd = setup.start_lbd("lb1");
    let loaded = setup.wait_applied("lb1")["config"]["loaded_unix_ms"].clone();
    let mut s = UnixStream::connect(setup.lbd_socket("lb1")).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"{\"v\":1,\"id\":1,\"method\":\"status\",\"method\":\"reload\"}\n",
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    println!("{line}");
    let reply: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate key \"method\""),
        "{reply}"
    );
    // Neither of the two ran: nothing was reloaded.
    let status = setup.status("lb1");
    assert_eq!(status["config"]["loaded_unix_ms"], loaded);
    assert_eq!(
        status["control"]["bad_requests"], 1,
        "{}",
        status["control"]
    );
}
