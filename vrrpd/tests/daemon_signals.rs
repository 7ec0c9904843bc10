//! No catchable signal ends vrrpd with its VIPs left behind: SIGUSR1 writes the
//! state beside the control socket (as keepalived dumps its data), SIGUSR2 the
//! counters, SIGQUIT shuts down as SIGTERM does (releasing), and the rest are logged
//! and ignored. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use support::*;

#[test]
fn signals_never_leave_the_vips_behind() {
    if !integration::have_root("signals_never_leave_the_vips_behind") {
        return;
    }
    let c = Cluster::up(&[]);
    let mut vrrpd = c.start("lb1");
    wait_for("lb1 MASTER with both VIPs", PATIENCE, || {
        has_both(c.host("lb1")) && c.state_of("lb1") == "MASTER"
    });

    // keepalived's habit: `kill -USR1` for a data dump, -USR2 for statistics.
    let data = c.socket("lb1").with_extension("data");
    let stats = c.socket("lb1").with_extension("stats");
    vrrpd.signal(libc::SIGUSR1).unwrap();
    wait_for("the state dump", PATIENCE, || {
        std::fs::read_to_string(&data).is_ok_and(|t| t.contains("\"MASTER\""))
    });
    vrrpd.signal(libc::SIGUSR2).unwrap();
    wait_for("the statistics dump", PATIENCE, || {
        std::fs::read_to_string(&stats).is_ok_and(|t| t.contains("vrrp_"))
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "owner-only, as the control socket");

    // Signals whose default action would end the process.
    for sig in [
        libc::SIGALRM,
        libc::SIGPWR,
        libc::SIGVTALRM,
        libc::SIGRTMIN() + 3,
    ] {
        vrrpd.signal(sig).unwrap();
    }
    holds_for(
        "vrrpd lives on, MASTER with both VIPs",
        Duration::from_secs(2),
        || has_both(c.host("lb1")),
    );
    assert!(vrrpd.try_wait().unwrap().is_none(), "vrrpd still runs");
    assert_eq!(c.state_of("lb1"), "MASTER");
    wait_for("the ignored signals logged", PATIENCE, || {
        vrrpd.stderr().matches("received and ignored").count() >= 4
    });

    // SIGQUIT: an orderly shutdown that releases the VIPs.
    vrrpd.signal(libc::SIGQUIT).unwrap();
    let exit = vrrpd.wait_timeout(PATIENCE).unwrap().expect("vrrpd exits");
    assert!(exit.success(), "{exit:?}: {}", vrrpd.stderr());
    assert!(!has_both(c.host("lb1")), "the VIPs were released");
    assert!(vrrpd.stderr().contains("SIGQUIT"), "{}", vrrpd.stderr());
}
