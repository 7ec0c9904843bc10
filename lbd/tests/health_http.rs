//! A server that accepts TCP but answers HTTP 500 is taken out by an HTTP check
//! and kept by a TCP check of another service (needs root; real lbd).

mod health_support;
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use health_support::*;
use support::*;

/// A second service on port 81 with the same servers and a TCP check; the SNAT
/// rule then covers every TCP port of the VIP.
const TWO_SERVICES: &[(&str, &str)] = &[
    ("\ninterval_ms = 1000\n", "\ninterval_ms = 200\n"),
    ("\ntimeout_ms = 500\n", "\ntimeout_ms = 100\n"),
    ("destination_port = 80\n", ""),
    (
        "# ---------------------------------------------------------------------------\n# Health checks",
        "[[service]]\nname = \"web-tcp\"\nvip = \"198.18.0.100\"\nport = 81\nscheduler = \"rr\"\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\nport = 80\ncheck = \"tcp-80\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\ncheck = \"tcp-80\"\n\n[[check]]\nname = \"tcp-80\"\ntype = \"tcp\"\ninterval_ms = 200\ntimeout_ms = 100\nrise = 2\nfall = 2\n\n# ---------------------------------------------------------------------------\n# Health checks",
    ),
];

#[test]
fn http_500_fails_the_http_check_and_passes_the_tcp_check() {
    if !integration::have_root("http_500_fails_the_http_check_and_passes_the_tcp_check") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    let _srv1 = TestServer::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let srv2 = TestServer::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    setup.write_config("lb1", TWO_SERVICES);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let client = setup.host("client");

    srv2.status.store(500, Ordering::Relaxed);
    wait_for("web/srv2 down by its HTTP check", PATIENCE, || {
        server(&setup.status("lb1"), "web", "srv2")["health"] == "down"
    });
    let checks_then = server(&setup.status("lb1"), "web-tcp", "srv2")["checks"]
        .as_u64()
        .unwrap();
    wait_for("ten more TCP checks of srv2", PATIENCE, || {
        let s = setup.status("lb1");
        server(&s, "web-tcp", "srv2")["checks"].as_u64().unwrap() >= checks_then + 10
    });
    let status = setup.status("lb1");
    let http = server(&status, "web", "srv2");
    let tcp = server(&status, "web-tcp", "srv2");
    println!("HTTP check: {http}\nTCP check: {tcp}");
    assert_eq!(http["last_check"]["reason"], "unexpected HTTP status 500");
    assert_eq!(http["effective_weight"], 0);
    assert_eq!(tcp["health"], "up");
    assert_eq!(tcp["last_check"]["ok"], true);
    assert_eq!(tcp["transitions"], 0);
    assert_eq!(tcp["effective_weight"], 1);

    let through = |port: u16| -> BTreeSet<String> {
        (0..10)
            .map(|_| fetch(client, &format!("{VIP}:{port}")).0)
            .collect()
    };
    let web = through(80);
    let web_tcp = through(81);
    println!("port 80 reached {web:?}; port 81 reached {web_tcp:?}");
    assert_eq!(web, BTreeSet::from(["srv1".to_owned()]));
    assert_eq!(
        web_tcp,
        BTreeSet::from(["srv1".to_owned(), "srv2".to_owned()])
    );

    // 200 again: back in the HTTP service after rise.
    srv2.status.store(200, Ordering::Relaxed);
    wait_for("web/srv2 up again", PATIENCE, || {
        server(&setup.status("lb1"), "web", "srv2")["health"] == "up"
    });
    assert!(through(80).contains("srv2"));
}
