//! No catchable signal ends lbd by surprise: SIGUSR1 writes its state beside the
//! control socket, SIGUSR2 its counters, the other signals whose default would end
//! the process are logged and ignored, and SIGQUIT stops it as SIGTERM does (the
//! dataplane stays for the connections).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[test]
fn signals_dump_or_are_ignored_and_quit_stops_in_order() {
    if !integration::have_root("signals_dump_or_are_ignored_and_quit_stops_in_order") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let mut lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let table = ruleset(setup.host("lb1"));

    let socket = setup.lbd_socket("lb1");
    lbd.signal(libc::SIGUSR1).unwrap();
    wait_for("the state dump", PATIENCE, || {
        std::fs::read_to_string(socket.with_extension("data")).is_ok_and(|t| {
            serde_json::from_str::<Value>(&t).is_ok_and(|v| v["backend"]["name"].is_string())
        })
    });
    lbd.signal(libc::SIGUSR2).unwrap();
    wait_for("the statistics dump", PATIENCE, || {
        std::fs::read_to_string(socket.with_extension("stats"))
            .is_ok_and(|t| t.contains("lbd_vrrpd_connected"))
    });
    for sig in [libc::SIGALRM, libc::SIGPWR, libc::SIGRTMIN() + 5] {
        lbd.signal(sig).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(lbd.try_wait().unwrap().is_none(), "lbd still runs");
    assert_eq!(setup.status("lb1")["node"], "lb1");

    lbd.signal(libc::SIGQUIT).unwrap();
    let exit = lbd.wait_timeout(PATIENCE).unwrap().expect("lbd exits");
    assert!(exit.success(), "{exit:?}: {}", lbd.stderr());
    assert_eq!(ruleset(setup.host("lb1")), table, "the dataplane stays");
}
