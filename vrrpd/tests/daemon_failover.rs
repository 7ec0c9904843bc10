//! Failover of a real vrrpd pair: node death, leftover VIPs on return,
//! preemption, SIGTERM release. Needs root (prints SKIP otherwise).

mod support;

use std::time::{Duration, Instant};

use support::*;

const PREEMPT_OFF: [(&str, &str); 2] = [
    ("preempt = true\n", "preempt = false\n"),
    (
        "name = \"server\"\ninterface = \"eth1\"\n",
        "name = \"server\"\ninterface = \"eth1\"\npreempt = false\n",
    ),
];

/// lb1 MASTER, then it dies (SIGKILL, cables out): lb2 takes both VIPs and
/// serves through them. Returns the cluster and lb2's vrrpd.
fn kill_master(c: &Cluster) -> (integration::Process, integration::Process) {
    let mut lb1 = c.start("lb1");
    let lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    lb1.signal(libc::SIGKILL).unwrap();
    assert!(lb1.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
    c.lab.set_cable("lb1", "eth0", false).unwrap();
    c.lab.set_cable("lb1", "eth1", false).unwrap();
    let took = wait_for("lb2 holds both VIPs", PATIENCE, || has_both(c.host("lb2")));
    println!("lb2 took over {took:?} after lb1's death");
    // The dead node's VIPs are still on its (unplugged) interfaces.
    assert!(has_both(c.host("lb1")), "SIGKILL left no VIPs behind?");
    (lb1, lb2)
}

/// lb1 comes back (cables in, vrrpd restarted): it removes its leftover
/// VIPs while lb2 is still MASTER.
fn bring_back(c: &Cluster) -> integration::Process {
    c.lab.set_cable("lb1", "eth0", true).unwrap();
    c.lab.set_cable("lb1", "eth1", true).unwrap();
    let lb1 = c.start("lb1");
    wait_for("lb1 removed its leftover VIPs", PATIENCE, || {
        has_neither(c.host("lb1"))
    });
    assert!(
        has_both(c.host("lb2")),
        "lb2 lost the VIPs before lb1 cleaned up"
    );
    wait_for("lb1 logged the leftovers", PATIENCE, || {
        lb1.stderr().contains("removing leftover VIP")
    });
    lb1
}

#[test]
fn node_death_moves_both_vips_and_the_returning_node_preempts() {
    if !integration::have_root("node_death_moves_both_vips_and_the_returning_node_preempts") {
        return;
    }
    let c = Cluster::up(&[]);
    let server = c
        .host("lb2")
        .serve_reply("0.0.0.0:8080".parse().unwrap(), "lb2")
        .unwrap();
    let (_dead, _lb2) = kill_master(&c);
    let reply = c
        .host("client")
        .tcp_fetch(
            format!("{PUBLIC_VIP}:8080").parse().unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(reply, "lb2");
    assert!(server.served() >= 1);

    let _lb1 = bring_back(&c);
    let took = wait_for("lb1 preempts back", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    println!("lb1 preempted {took:?} after cleaning up");
    assert_eq!(group_state(&c.status("lb1")), "MASTER");
    wait_for("lb2 reports BACKUP", PATIENCE, || {
        group_state(&c.status("lb2")) == "BACKUP"
    });
}

#[test]
fn without_preempt_the_returning_node_stays_backup() {
    if !integration::have_root("without_preempt_the_returning_node_stays_backup") {
        return;
    }
    let c = Cluster::up(&PREEMPT_OFF);
    let (_dead, _lb2) = kill_master(&c);
    let _lb1 = bring_back(&c);
    // Longer than lb1's Master_Down_Interval (3.414 s) with margin.
    holds_for(
        "lb2 keeps both VIPs, lb1 none",
        Duration::from_secs(8),
        || has_both(c.host("lb2")) && has_neither(c.host("lb1")),
    );
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "BACKUP", "{s1:#}");
    assert_eq!(
        s1["instances"][0]["master_address"], "198.18.0.12",
        "{s1:#}"
    );
}

#[test]
fn sigterm_releases_at_once_and_exits_zero() {
    if !integration::have_root("sigterm_releases_at_once_and_exits_zero") {
        return;
    }
    let c = Cluster::up(&[]);
    let mut lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    wait_for("lb2 is BACKUP", PATIENCE, || {
        group_state(&c.status("lb2")) == "BACKUP"
    });
    let t0 = Instant::now();
    lb1.signal(libc::SIGTERM).unwrap();
    wait_for("lb2 holds both VIPs", PATIENCE, || has_both(c.host("lb2")));
    println!("lb2 holds both VIPs {:?} after SIGTERM to lb1 (priority-0 release; Master_Down_Interval would be 3.61 s)", t0.elapsed());
    let status = lb1
        .wait_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("lb1 exits");
    assert!(
        status.success(),
        "exit status {status:?}; stderr: {}",
        lb1.stderr()
    );
    assert!(has_neither(c.host("lb1")));
    let out = lb1.stderr();
    assert!(out.contains("vrrpd stopped"), "{out}");
}
