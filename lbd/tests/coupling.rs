//! lbd with vrrpd on both balancers (needs root, and vrrpd and vrrpctl built next
//! to lbd): roles in lbd's status, `vrrpctl services`, and a failover where vrrpd
//! on the backup asks its lbd to prepare and the client is served through lb2.

mod support;

use serde_json::Value;
use support::*;

#[test]
fn roles_services_and_failover_with_prepare() {
    if !integration::have_root("roles_services_and_failover_with_prepare") {
        return;
    }
    let vrrpctl = sibling_binary("vrrpctl");
    let setup = Setup::two_arm();
    let _srv1 = Responder::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let _srv2 = Responder::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    for node in ["lb1", "lb2"] {
        setup.write_config(node, &[NO_CHECKS]);
    }
    // lbd first, so that vrrpd's first prepare finds it.
    let _lbd1 = setup.start_lbd("lb1");
    let _lbd2 = setup.start_lbd("lb2");
    setup.wait_applied("lb1");
    setup.wait_applied("lb2");
    let vrrpd1 = setup.start_vrrpd("lb1");
    let _vrrpd2 = setup.start_vrrpd("lb2");

    wait_for(
        "lb1 MASTER and lb2 BACKUP in lbd's status",
        PATIENCE,
        || {
            setup.role("lb1").as_deref() == Some("MASTER")
                && setup.role("lb2").as_deref() == Some("BACKUP")
        },
    );
    let status = setup.status("lb1");
    assert_eq!(status["vrrpd"]["connected"], true);
    // vrrpd's status names the master's priority on the backup, and each group's VIPs.
    let master = request(&setup.vrrpd_socket("lb1"), "status", Value::Null).unwrap();
    let backup = request(&setup.vrrpd_socket("lb2"), "status", Value::Null).unwrap();
    for (m, b) in master["instances"]
        .as_array()
        .unwrap()
        .iter()
        .zip(backup["instances"].as_array().unwrap())
    {
        assert_eq!(m["master_priority"], m["effective_priority"], "{m}");
        assert_eq!(b["master_priority"], m["effective_priority"], "{b}");
        assert_eq!(b["master_address"], m["primary_address"], "{b}");
    }
    assert_eq!(
        backup["groups"][0]["vips"],
        serde_json::json!(["198.18.0.100/24", "198.18.1.100/24"]),
        "{backup:#}"
    );

    // vrrpctl services, JSON and table, inside lb1.
    let sock = setup.lbd_socket("lb1");
    let out = setup
        .host("lb1")
        .exec_ok(&[
            vrrpctl.to_str().unwrap(),
            "--socket",
            sock.to_str().unwrap(),
            "services",
            "--json",
        ])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["vrrpd"]["groups"]["edge"], "MASTER");
    assert_eq!(v["services"][0]["servers"].as_array().unwrap().len(), 2);
    let config = setup.config("lb1");
    let table = setup
        .host("lb1")
        .exec_ok(&[
            vrrpctl.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "services",
        ])
        .unwrap();
    println!("{table}");
    assert!(table.contains("vrrpd connected: edge MASTER"), "{table}");

    let client = setup.host("client");
    let vip = format!("{VIP}:80");
    wait_for("an answer through the VIP on lb1", PATIENCE, || {
        try_fetch(client, &vip).is_some()
    });
    let (_, peer) = fetch(client, &vip);
    assert_eq!(peer, SNAT_VIP);
    let prepares_before = setup.status("lb2")["prepare"]["count"].as_u64().unwrap();

    // lb1 dies: vrrpd killed, cables cut.
    vrrpd1.signal(libc::SIGKILL).unwrap();
    setup.lab.set_cable("lb1", "eth0", false).unwrap();
    setup.lab.set_cable("lb1", "eth1", false).unwrap();
    let mut reply = None;
    wait_for("an answer through the VIP from lb2", PATIENCE, || {
        reply = try_fetch(client, &vip);
        reply.is_some()
    });
    let (server, peer) = reply.unwrap();
    println!("after failover: {server} saw {peer}");
    assert_eq!(peer, SNAT_VIP);

    wait_for("lb2 MASTER in its lbd's status", PATIENCE, || {
        setup.role("lb2").as_deref() == Some("MASTER")
    });
    let status = setup.status("lb2");
    println!("lb2 prepare: {}", status["prepare"]);
    assert!(status["prepare"]["count"].as_u64().unwrap() > prepares_before);
    assert_eq!(status["prepare"]["last"]["reply"]["prepared"], true);
    let vrrpd_status = request(&setup.vrrpd_socket("lb2"), "status", Value::Null).unwrap();
    assert_eq!(
        vrrpd_status["groups"][0]["last_takeover"]["prepare"],
        "acknowledged"
    );
    let metrics = scrape(setup.host("lb2"), "127.0.0.1:9612");
    let misses: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("vrrp_prepare_misses_total"))
        .collect();
    println!("{misses:?}");
    assert!(misses.iter().all(|l| l.ends_with(" 0")), "{misses:?}");
}

/// Issue 13 item 3: `vrrpctl reload` checks the file once, then reloads both
/// daemons and says each one's result; lbd applies a weight change and logs it; a
/// refused file reloads nothing; a daemon that is not running is said as such.
#[test]
fn vrrpctl_reload_checks_the_file_then_reloads_both_daemons() {
    if !integration::have_root("vrrpctl_reload_checks_the_file_then_reloads_both_daemons") {
        return;
    }
    let vrrpctl = sibling_binary("vrrpctl");
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let _vrrpd = setup.start_vrrpd("lb1");
    wait_for("lb1 MASTER in lbd's status", PATIENCE, || {
        setup.role("lb1").as_deref() == Some("MASTER")
    });
    let config = setup.config("lb1");
    let reload = || {
        let out = setup
            .host("lb1")
            .exec(&[
                vrrpctl.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "reload",
            ])
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let weight = |s: &Value| s["services"][0]["servers"][0]["weight"].as_u64();
    assert_eq!(weight(&setup.status("lb1")), Some(1));

    // srv1's weight 1 -> 3: one command, both daemons, lbd applies it.
    setup.write_config("lb1", &[NO_CHECKS, ("weight = 1", "weight = 3")]);
    let (code, out, err) = reload();
    println!("{out}{err}");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("vrrpd: applied (unchanged: edge)"), "{out}");
    assert!(out.contains("lbd: applied (services changed: web"), "{out}");
    let status = setup.status("lb1");
    assert_eq!(weight(&status), Some(3), "{}", status["services"]);
    assert_eq!(
        status["services"][0]["servers"][0]["effective_weight"], 3,
        "{}",
        status["services"]
    );
    assert!(
        lbd.stderr().contains("reloaded on request"),
        "lbd logs the reload: {}",
        lbd.stderr()
    );
    let loaded = status["config"]["loaded_unix_ms"].clone();

    // A refused file: said once, nothing reloaded in either daemon.
    setup.write_config(
        "lb1",
        &[
            NO_CHECKS,
            ("weight = 1", "weight = 3"),
            ("vrid = 51", "vrid = 0"),
        ],
    );
    let (code, out, err) = reload();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("vrid 0 is out of range"), "{err}");
    assert!(err.contains("refused: nothing reloaded"), "{err}");
    assert!(!out.contains("applied"), "{out}");
    assert_eq!(setup.status("lb1")["config"]["loaded_unix_ms"], loaded);

    // lbd stopped: vrrpd still reloads, lbd is said not running.
    drop(lbd.stop());
    setup.write_config("lb1", &[NO_CHECKS]);
    let (code, out, err) = reload();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("vrrpd: applied"), "{out}");
    assert!(out.contains("lbd: not running"), "{out}");
}
