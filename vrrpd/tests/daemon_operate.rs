//! Operator commands against a real vrrpd pair: maintenance, the failover
//! drill, reload. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn vrrpctl_in(c: &Cluster, node: &str, args: &[&str]) -> Option<String> {
    let bin = vrrpctl()?;
    let socket = c.socket(node);
    let mut argv = vec![bin.to_str().unwrap(), "--socket", socket.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = c.host(node).exec(&argv).unwrap();
    assert!(
        out.status.success(),
        "vrrpctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn maintenance_moves_the_group_away_and_back() {
    if !integration::have_root("maintenance_moves_the_group_away_and_back") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));

    match vrrpctl_in(&c, "lb1", &["maintenance", "on"]) {
        Some(out) => assert!(out.contains("maintenance on"), "{out}"),
        None => drop(request(
            &c.socket("lb1"),
            "maintenance",
            json!({"on": true}),
        )),
    }
    let took = wait_for("lb2 holds both VIPs", PATIENCE, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });
    println!("lb2 took over {took:?} after maintenance on");
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MAINTENANCE", "{s1:#}");
    holds_for("lb1 stays out", Duration::from_secs(5), || {
        has_neither(c.host("lb1"))
    });

    match vrrpctl_in(&c, "lb1", &["maintenance", "off"]) {
        Some(out) => assert!(out.contains("maintenance off"), "{out}"),
        None => drop(request(
            &c.socket("lb1"),
            "maintenance",
            json!({"on": false}),
        )),
    }
    let took = wait_for("lb1 preempts back", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    println!("lb1 back {took:?} after maintenance off");
}

#[test]
fn failover_drill_times_the_peer_on_every_link_and_comes_back() {
    if !integration::have_root("failover_drill_times_the_peer_on_every_link_and_comes_back") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    wait_for("lb2 is BACKUP", PATIENCE, || {
        group_state(&c.status("lb2")) == "BACKUP"
    });

    // On the backup the drill is refused.
    let err = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = ctl::Client::connect(c.socket("lb2")).await.unwrap();
            client
                .request("drill.failover", json!({}))
                .await
                .unwrap_err()
        })
    };
    assert!(
        err.to_string().contains("run drill.failover on the master"),
        "{err}"
    );

    let reply = request(&c.socket("lb1"), "drill.failover", json!({}));
    println!("drill: {reply:#}");
    assert_eq!(reply["group"], "edge");
    let links = reply["links"].as_array().unwrap();
    assert_eq!(links.len(), 2, "{reply:#}");
    for link in links {
        assert_eq!(link["peer_priority"], 100);
        assert!(link["takeover_ms"].as_f64().unwrap() > 0.0);
    }
    let ifaces: Vec<&str> = links
        .iter()
        .map(|l| l["interface"].as_str().unwrap())
        .collect();
    assert!(
        ifaces.contains(&"eth0") && ifaces.contains(&"eth1"),
        "{reply:#}"
    );
    assert_eq!(reply["expect_preempt_back"], true);
    assert!(reply["preempted_back_ms"].as_f64().is_some(), "{reply:#}");
    assert_eq!(reply["state"], "MASTER");
    wait_for("lb1 holds both VIPs again", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
}

#[test]
fn reload_applies_a_priority_change_and_refuses_a_bad_file() {
    if !integration::have_root("reload_applies_a_priority_change_and_refuses_a_bad_file") {
        return;
    }
    let c = Cluster::up(&[]);
    let lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));

    // A broken file is refused with the config crate's diagnostics; nothing changes.
    std::fs::write(c.config("lb1"), "[cluster]\nname = 1\n").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        let client = ctl::Client::connect(c.socket("lb1")).await.unwrap();
        client.request("reload", json!(null)).await.unwrap_err()
    });
    let text = err.to_string();
    assert!(
        text.contains("reload refused") && text.contains("lb1.toml"),
        "{text}"
    );
    assert!(has_both(c.host("lb1")));

    // lb1's priority drops below lb2's: applied in place, lb2 preempts.
    c.write_config(&[("priority = { edge = 150 }", "priority = { edge = 90 }")]);
    let reply = request(&c.socket("lb1"), "reload", json!(null));
    assert_eq!(reply["updated"], json!(["edge"]), "{reply:#}");
    wait_for("lb2 preempts lb1", PATIENCE, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });
    let s1 = c.status("lb1");
    assert_eq!(s1["instances"][0]["priority"], 90, "{s1:#}");

    // SIGHUP reloads too: back to 150, lb1 preempts again.
    c.write_config(&[]);
    lb1.signal(libc::SIGHUP).unwrap();
    wait_for("lb1 preempts back after SIGHUP", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
}

#[test]
fn fault_drill_holds_the_group_in_fault_then_releases_it() {
    if !integration::have_root("fault_drill_holds_the_group_in_fault_then_releases_it") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));

    let reply = request(&c.socket("lb1"), "drill.fault", json!({"seconds": 6}));
    assert_eq!(reply["groups"][0]["state"], "FAULT", "{reply:#}");
    assert!(has_neither(c.host("lb1")), "FAULT keeps no VIP");
    wait_for("lb2 takes over from the faulted lb1", PATIENCE, || {
        has_both(c.host("lb2"))
    });
    assert_eq!(group_state(&c.status("lb1")), "FAULT");
    // Over after 6 s: lb1 is BACKUP again and, with the higher priority, preempts.
    wait_for("lb1 back as MASTER", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
}

/// Issue 11: `vrrpctl watch` shows the shutdown transitions the log has
/// (MASTER -> INIT on SIGTERM), not only those of a running daemon.
#[test]
fn watch_shows_the_shutdown_transition() {
    if !integration::have_root("watch_shows_the_shutdown_transition") {
        return;
    }
    let Some(bin) = vrrpctl() else {
        println!("SKIP (needs vrrpctl built next to vrrpd): watch_shows_the_shutdown_transition");
        return;
    };
    let c = Cluster::up(&[]);
    let mut lb1 = c.start("lb1");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    let socket = c.socket("lb1");
    let watch = c
        .host("lb1")
        .spawn(&bin, ["--socket", socket.to_str().unwrap(), "watch"])
        .unwrap();
    wait_for("watch prints the status", PATIENCE, || {
        watch.stdout().contains("group edge: MASTER")
    });

    lb1.signal(libc::SIGTERM).unwrap();
    let status = lb1.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{}", lb1.stderr());
    let log = lb1.stderr();
    assert!(log.contains("INIT"), "the log has the transition: {log}");
    wait_for(
        "watch prints the shutdown transitions",
        Duration::from_secs(5),
        || {
            let out = watch.stdout();
            out.contains("edge (group): MASTER -> INIT (shutdown)")
                && out.contains("edge public: MASTER -> INIT (shutdown)")
                && out.contains("edge server: MASTER -> INIT (shutdown)")
        },
    );
    println!("watch:\n{}", watch.stdout());
    drop(watch.stop());
}

/// Issue 11: an error from the daemon is printed once, not once per cause.
#[test]
fn a_daemon_error_is_printed_once() {
    if !integration::have_root("a_daemon_error_is_printed_once") {
        return;
    }
    let Some(bin) = vrrpctl() else {
        println!("SKIP (needs vrrpctl built next to vrrpd): a_daemon_error_is_printed_once");
        return;
    };
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    let socket = c.socket("lb1");
    let out = c
        .host("lb1")
        .exec(&[
            bin.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "maintenance",
            "on",
            "--group",
            "nosuchgroup",
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("nosuchgroup").count(), 1, "{err}");
    assert!(err.contains("maintenance failed"), "{err}");
}
