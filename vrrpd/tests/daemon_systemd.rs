//! vrrpd as systemd sees it, without systemd: the notify protocol on a socket of the
//! test's own (READY=1 only once the node is MASTER with both VIPs, WATCHDOG=1 from
//! the event loop every WATCHDOG_USEC/2, RELOADING=1 / READY=1 around reloads, a
//! refused file making `vrrpctl reload` — the unit's ExecReload — exit non-zero,
//! STOPPING=1 at SIGTERM), and /metrics: the first scrape of a vrrpd that was never
//! MASTER has every series docs/metrics.md names for vrrpd. Needs root (prints SKIP
//! otherwise).

mod support;

use std::process::Command;
use std::time::Duration;

use integration::{exposition, NotifySocket};
use support::*;

/// The `WATCHDOG=1` datagrams received so far.
fn pings(notify: &NotifySocket) -> usize {
    notify
        .received()
        .iter()
        .filter(|n| n.has("WATCHDOG=1"))
        .count()
}

#[test]
fn systemd_hears_ready_once_the_vips_are_up_and_the_watchdog_keeps_pinging() {
    if !integration::have_root(
        "systemd_hears_ready_once_the_vips_are_up_and_the_watchdog_keeps_pinging",
    ) {
        return;
    }
    let c = Cluster::up(&[]);
    let path = c.dir.path().join("notify.sock");
    let netns = c.host("lb1").netns().to_owned();
    // The addresses at the moment READY=1 arrives.
    let notify = NotifySocket::bind_with(&path, move |lines| {
        lines.iter().any(|l| l == "READY=1").then(|| {
            Command::new("ip")
                .args(["-n", &netns, "-o", "addr", "show"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        })
    })
    .unwrap();
    let socket = path.to_str().unwrap();
    let lb1 = c.start_with_env(
        "lb1",
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "1000000")],
    );

    let (first_ready, ready) = notify
        .wait_for("READY=1", 0, PATIENCE)
        .expect("vrrpd never said READY=1");
    let addrs = ready.observed.clone().unwrap_or_default();
    assert!(
        addrs.contains(&format!("{PUBLIC_VIP}/")) && addrs.contains(&format!("{SERVER_VIP}/")),
        "READY=1 came before both VIPs were on the interfaces:\n{addrs}"
    );
    assert_eq!(ready.value("STATUS"), Some("edge MASTER"), "{ready:?}");
    println!("READY=1 with STATUS={:?}", ready.value("STATUS"));

    // WATCHDOG=1 every 500 ms from the event loop, on and on.
    let before = pings(&notify);
    std::thread::sleep(Duration::from_secs(3));
    let during = pings(&notify) - before;
    assert!(
        (4..=8).contains(&during),
        "{during} WATCHDOG=1 in 3 s with WATCHDOG_USEC=1 s"
    );

    // A refused file: ExecReload (vrrpctl reload) fails, vrrpd says RELOADING=1
    // then READY=1 with the refusal in STATUS=, and keeps running.
    let good = std::fs::read_to_string(c.config("lb1")).unwrap();
    std::fs::write(c.config("lb1"), good.replacen("vrid = 51", "vrid = 0", 1)).unwrap();
    let seen = notify.received().len();
    match vrrpctl() {
        Some(bin) => {
            let out = c
                .host("lb1")
                .exec(&[
                    bin.to_str().unwrap(),
                    "--socket",
                    c.socket("lb1").to_str().unwrap(),
                    "reload",
                ])
                .unwrap();
            assert!(!out.status.success(), "vrrpctl reload accepted a bad file");
            println!(
                "vrrpctl reload of a refused file: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        None => lb1.signal(libc::SIGHUP).unwrap(),
    }
    let (reloading, _) = notify
        .wait_for("RELOADING=1", seen, PATIENCE)
        .expect("no RELOADING=1");
    let (_, after) = notify
        .wait_for("READY=1", reloading, PATIENCE)
        .expect("no READY=1 after the reload");
    let status = after.value("STATUS").unwrap_or("");
    assert!(status.starts_with("reload refused"), "{status}");
    assert!(has_both(c.host("lb1")));

    // A good file again, by SIGHUP: READY=1 with the groups in STATUS=.
    std::fs::write(c.config("lb1"), &good).unwrap();
    let seen = notify.received().len();
    lb1.signal(libc::SIGHUP).unwrap();
    let (reloading, _) = notify
        .wait_for("RELOADING=1", seen, PATIENCE)
        .expect("no RELOADING=1");
    let (_, after) = notify
        .wait_for("READY=1", reloading, PATIENCE)
        .expect("no READY=1 after the reload");
    assert_eq!(after.value("STATUS"), Some("edge MASTER"));

    let seen = notify.received().len();
    lb1.stop().unwrap();
    assert!(notify.wait_for("STOPPING=1", seen, PATIENCE).is_some());
    let all = notify.received();
    let readies = all.iter().filter(|n| n.has("READY=1")).count();
    println!(
        "{} datagrams: first READY=1 at #{first_ready}, {readies} READY=1 in all",
        all.len()
    );
}

#[test]
fn the_first_scrape_of_a_node_never_master_has_every_documented_series() {
    if !integration::have_root(
        "the_first_scrape_of_a_node_never_master_has_every_documented_series",
    ) {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    wait_for("lb1 MASTER with both VIPs", PATIENCE, || {
        has_both(c.host("lb1"))
    });
    // lb2 (lower priority) hears lb1 from its start: it is never MASTER.
    let _lb2 = c.start("lb2");
    let addr = "127.0.0.1:9612".parse().unwrap();
    wait_for("lb2's /metrics answers", PATIENCE, || {
        c.host("lb2")
            .tcp_connect(addr, Duration::from_secs(1))
            .is_ok()
    });
    let text = scrape_raw(c.host("lb2"));
    assert_eq!(
        sample(
            &text,
            "vrrp_become_master_total",
            &[("vrrp_instance", "public")]
        ),
        Some(0.0)
    );
    let documented = exposition::documented(&exposition::doc_text(), "vrrpd");
    let missing = exposition::missing(&text, &documented);
    assert!(
        missing.is_empty(),
        "documented in docs/metrics.md but not in the first scrape: {missing:?}\n{text}"
    );
    // Every series of ours says which cluster it belongs to.
    let unlabelled: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("vrrp_") && !l.contains("cluster=\"edge\""))
        .collect();
    assert!(unlabelled.is_empty(), "{unlabelled:?}");
    assert!(
        text.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    println!(
        "{} documented vrrpd series, all in the first scrape ({} lines)",
        documented.len(),
        text.lines().count()
    );
}
