//! vrrpd as systemd sees it, without systemd: the notify protocol on a socket of the
//! test's own (READY=1 only once the node is MASTER with both VIPs, WATCHDOG=1 from
//! the event loop every WATCHDOG_USEC/2, RELOADING=1 / READY=1 around reloads, a
//! refused file making `vrrpctl reload` — the unit's ExecReload — exit non-zero,
//! STOPPING=1 at SIGTERM), and /metrics: the first scrape of a vrrpd that was never
//! MASTER has every series docs/metrics.md names for vrrpd, and every vrrpd series
//! the Grafana dashboard and the alert rules query. Needs root (prints SKIP
//! otherwise).

mod support;

use std::time::Duration;

use integration::{dashboard, exposition, NotifySocket};
use support::*;

#[test]
fn systemd_hears_ready_once_the_vips_are_up_and_the_watchdog_keeps_pinging() {
    if !integration::have_root(
        "systemd_hears_ready_once_the_vips_are_up_and_the_watchdog_keeps_pinging",
    ) {
        return;
    }
    let c = Cluster::up(&[]);
    let path = c.dir.path().join("notify.sock");
    // The addresses at the moment READY=1 arrives.
    let netns = c.host("lb1").netns();
    let argv = ["ip", "-n", netns, "-o", "addr", "show"].map(String::from);
    let notify = NotifySocket::bind_observing_ready(&path, argv.to_vec()).unwrap();
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
    let pings = notify.watchdog_pings_in(Duration::from_secs(3));
    assert!(
        (4..=8).contains(&pings),
        "{pings} WATCHDOG=1 in 3 s, WATCHDOG_USEC=1 s"
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
    let after = notify.wait_for_reload(seen, PATIENCE).expect("no reload");
    let status = after.value("STATUS").unwrap_or("");
    assert!(status.starts_with("reload refused"), "{status}");
    assert!(has_both(c.host("lb1")));

    // A good file again, by SIGHUP: READY=1 with the groups in STATUS=.
    std::fs::write(c.config("lb1"), &good).unwrap();
    let seen = notify.received().len();
    lb1.signal(libc::SIGHUP).unwrap();
    let after = notify.wait_for_reload(seen, PATIENCE).expect("no reload");
    assert_eq!(after.value("STATUS"), Some("edge MASTER"));

    // The unit's own ExecReload (dist/vrrpd.service) on the file vrrpd was started
    // with: the socket comes from that file, as in ExecStart, and only vrrpd is asked.
    if let Some(bin) = vrrpctl() {
        let seen = notify.received().len();
        integration::reload_as_the_unit(c.host("lb1"), "vrrpd", &bin, &c.config("lb1"));
        let after = notify.wait_for_reload(seen, PATIENCE).expect("no reload");
        assert_eq!(after.value("STATUS"), Some("edge MASTER"));
    }

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
    let documented = exposition::assert_documented_and_labelled(&text, "vrrpd", "edge");
    let queried = dashboard::assert_served(&text, "vrrpd");
    assert!(
        text.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    println!(
        "{} documented vrrpd series and the {} the dashboard and alerts use, all in the first scrape ({} lines)",
        documented,
        queried,
        text.lines().count()
    );
}
