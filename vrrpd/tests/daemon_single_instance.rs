//! A second vrrpd started by mistake on a running master changes nothing: it exits
//! naming the first one's pid, the VIPs stay, the first stays MASTER. Needs root
//! (prints SKIP otherwise).

mod support;

use std::time::Duration;

use support::*;

#[test]
fn a_second_vrrpd_on_the_master_changes_nothing() {
    if !integration::have_root("a_second_vrrpd_on_the_master_changes_nothing") {
        return;
    }
    let c = Cluster::up(&[]);
    let first = c.start("lb1");
    wait_for("lb1 MASTER with both VIPs", PATIENCE, || {
        has_both(c.host("lb1")) && c.state_of("lb1") == "MASTER"
    });

    let mut second = c.start("lb1");
    let exit = second
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the second vrrpd exits");
    let stderr = second.stderr();
    println!("second vrrpd: {exit:?}: {stderr}");
    assert!(!exit.success(), "{exit:?}");

    // Nothing moved: the VIPs stay on the master, which still answers as MASTER.
    holds_for("lb1 holds both VIPs", Duration::from_secs(3), || {
        has_both(c.host("lb1"))
    });
    assert_eq!(c.state_of("lb1"), "MASTER");
    assert!(
        !second.stderr().contains("removing leftover VIP"),
        "{}",
        second.stderr()
    );
    assert!(
        stderr.contains(&format!("another vrrpd (pid {})", first.pid())),
        "the refusal names the running vrrpd's pid: {stderr}"
    );
}
