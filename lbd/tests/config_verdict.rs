//! One file, one verdict: lbd, vrrpd and `vrrpctl check-config --node` refuse the
//! same file on a host that lacks an interface it names; and both daemons show the
//! fingerprint of the file they run, lbd saying when vrrpd's differs.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The example's server-side instance and SNAT rule moved to eth2, which lb1 lacks.
const ON_ETH2: &[(&str, &str)] = &[
    (
        "interface = \"eth1\"\nvrid = 52",
        "interface = \"eth2\"\nvrid = 52",
    ),
    (
        "eth1 = [\"198.18.1.11/24\"]",
        "eth1 = [\"198.18.1.11/24\"], eth2 = [\"198.18.1.11/24\"]",
    ),
    (
        "eth1 = [\"198.18.1.12/24\"]",
        "eth1 = [\"198.18.1.12/24\"], eth2 = [\"198.18.1.12/24\"]",
    ),
    ("out_interface = \"eth1\"", "out_interface = \"eth2\""),
];

#[test]
fn a_file_naming_a_missing_interface_is_refused_by_all_three() {
    if !integration::have_root("a_file_naming_a_missing_interface_is_refused_by_all_three") {
        return;
    }
    let setup = Setup::two_arm();
    let mut edits = vec![NO_CHECKS];
    edits.extend_from_slice(ON_ETH2);
    setup.write_config("lb1", &edits);
    let config = setup.config("lb1");
    let lb1 = setup.host("lb1");

    // The file itself is valid; on this host, for lb1, it is not.
    let vrrpctl = sibling_binary("vrrpctl");
    let anywhere = Command::new(&vrrpctl)
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(anywhere.status.success(), "{anywhere:?}");
    let here = lb1
        .exec(&[
            vrrpctl.to_str().unwrap(),
            "check-config",
            "--node",
            "lb1",
            config.to_str().unwrap(),
        ])
        .unwrap();
    assert_eq!(here.status.code(), Some(1), "{here:?}");
    let said = String::from_utf8_lossy(&here.stderr).to_string();
    assert!(
        said.contains("interface eth2 does not exist on this host"),
        "{said}"
    );

    for daemon in ["lbd", "vrrpd"] {
        let mut p = if daemon == "lbd" {
            setup.start_lbd("lb1")
        } else {
            setup.start_vrrpd("lb1")
        };
        let status = p.wait_timeout(PATIENCE).unwrap().expect("refused at once");
        assert_eq!(status.code(), Some(1), "{daemon}");
        let log = p.stdout() + &p.stderr();
        assert!(
            log.contains("interface eth2 does not exist on this host"),
            "{daemon}: {log}"
        );
        assert!(log.contains("refused, nothing applied"), "{daemon}: {log}");
    }
    // Nothing reached the kernel.
    assert!(!ruleset(lb1).contains("lbsuite"), "{}", ruleset(lb1));
}

#[test]
fn lbd_says_when_vrrpd_runs_another_configuration() {
    if !integration::have_root("lbd_says_when_vrrpd_runs_another_configuration") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let _vrrpd = setup.start_vrrpd("lb1");
    let lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let config = |s: &Value| s["config"].clone();
    let mut seen = Value::Null;
    wait_for("lbd knows vrrpd's fingerprint", PATIENCE, || {
        seen = config(&setup.status("lb1"));
        seen["vrrpd_fingerprint"].is_string()
    });
    assert_eq!(seen["differs_from_vrrpd"], false, "{seen}");
    assert_eq!(seen["fingerprint"], seen["vrrpd_fingerprint"], "{seen}");
    let first = seen["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 16);

    // A weight edited and only lbd reloaded: the two run different files now.
    setup.write_config(
        "lb1",
        &[
            NO_CHECKS,
            (
                "name = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\nweight = 1",
                "name = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\nweight = 2",
            ),
        ],
    );
    lbd.signal(libc::SIGHUP).unwrap();
    wait_for("lbd sees the difference", PATIENCE, || {
        seen = config(&setup.status("lb1"));
        seen["differs_from_vrrpd"] == true
    });
    assert_ne!(seen["fingerprint"], first.as_str(), "{seen}");
    assert_eq!(seen["vrrpd_fingerprint"], first.as_str(), "{seen}");
    let log = lbd.stdout() + &lbd.stderr();
    assert!(
        log.contains("lbd and vrrpd run different configurations"),
        "{log}"
    );

    // vrrpd reloaded too: the same again.
    request(&setup.vrrpd_socket("lb1"), "reload", Value::Null).unwrap();
    wait_for(
        "lbd sees the same file again",
        Duration::from_secs(30),
        || {
            seen = config(&setup.status("lb1"));
            seen["differs_from_vrrpd"] == false
        },
    );
    assert_eq!(seen["fingerprint"], seen["vrrpd_fingerprint"], "{seen}");
}

/// A file whose services vanished (cut at a section boundary) is refused by a
/// reload, SIGHUP included, with the services it would drop; `force` accepts it.
#[test]
fn a_reload_that_drops_every_service_needs_force() {
    if !integration::have_root("a_reload_that_drops_every_service_needs_force") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let before = ruleset(setup.host("lb1"));
    assert!(before.contains("198.18.0.100"), "{before}");

    // The [[service]] block gone, as a cut or a bad merge leaves it.
    let text = std::fs::read_to_string(setup.config("lb1")).unwrap();
    let start = text.find("[[service]]").unwrap();
    let end = start + text[start..].find("# Health checks").unwrap();
    std::fs::write(
        setup.config("lb1"),
        format!("{}{}", &text[..start], &text[end..]),
    )
    .unwrap();

    lbd.signal(libc::SIGHUP).unwrap();
    wait_for("lbd refused the SIGHUP reload", PATIENCE, || {
        (lbd.stdout() + &lbd.stderr()).contains("removes 1 of the 1 running services (web)")
    });
    let refused = request(&setup.lbd_socket("lb1"), "reload", Value::Null).unwrap_err();
    assert!(refused.contains("reload --force"), "{refused}");
    assert_eq!(ruleset(setup.host("lb1")), before, "nothing applied");
    assert_eq!(
        setup.status("lb1")["services"].as_array().map(Vec::len),
        Some(1)
    );

    let forced = request(
        &setup.lbd_socket("lb1"),
        "reload",
        serde_json::json!({"force": true}),
    )
    .unwrap();
    assert_eq!(
        forced["services_removed"],
        serde_json::json!(["web"]),
        "{forced}"
    );
    wait_for("the service is gone from the kernel", PATIENCE, || {
        !ruleset(setup.host("lb1")).contains("198.18.0.100 . tcp . 80")
            && ruleset(setup.host("lb1")) != before
    });
}
