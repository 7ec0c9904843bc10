//! Every server down: the sorry server answers; one server back: traffic returns
//! to it. With `inhibit_on_failure = false` the down servers leave the dataplane's
//! service altogether (status `in_dataplane`; needs root; real lbd).

mod health_support;
mod support;

use std::collections::BTreeSet;

use health_support::*;
use support::*;

const SORRY: &[(&str, &str)] = &[
    ("\ninterval_ms = 1000\n", "\ninterval_ms = 200\n"),
    ("\ntimeout_ms = 500\n", "\ntimeout_ms = 100\n"),
    (
        "# sorry_server = { address = \"198.18.1.30\", port = 80 }",
        "sorry_server = { address = \"198.18.1.30\", port = 80 }",
    ),
    ("inhibit_on_failure = true", "inhibit_on_failure = false"),
];

/// Backend addresses in the kernel's DNAT slots.
fn slotted_backends(setup: &Setup) -> BTreeSet<String> {
    dnat_slots(setup.host("lb1")).into_values().collect()
}

#[test]
fn sorry_server_answers_when_every_server_is_down() {
    if !integration::have_root("sorry_server_answers_when_every_server_is_down") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    setup.add_vip("srv1", "eth0", "198.18.1.30");
    let mut srv1 = TestServer::start(setup.host("srv1"), "198.18.1.21:80", "srv1");
    let mut srv2 = TestServer::start(setup.host("srv2"), "198.18.1.22:80", "srv2");
    let _sorry = TestServer::start(setup.host("srv1"), "198.18.1.30:80", "sorry");
    setup.write_config("lb1", SORRY);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let client = setup.host("client");
    let vip = format!("{VIP}:80");
    assert_eq!(
        slotted_backends(&setup),
        BTreeSet::from(["198.18.1.21".to_owned(), "198.18.1.22".to_owned()])
    );

    srv1.stop();
    srv2.stop();
    wait_for("the sorry server serving", PATIENCE, || {
        setup.status("lb1")["services"][0]["serving"] == "sorry"
    });
    let replies: Vec<(String, String)> = (0..5).map(|_| fetch(client, &vip)).collect();
    println!("every server down: {replies:?}");
    assert!(replies
        .iter()
        .all(|(s, peer)| s == "sorry" && peer == SNAT_VIP));
    let status = setup.status("lb1");
    for name in ["srv1", "srv2"] {
        assert_eq!(server(&status, "web", name)["in_dataplane"], false);
    }
    // Only the sorry server has slots.
    assert_eq!(
        slotted_backends(&setup),
        BTreeSet::from(["198.18.1.30".to_owned()])
    );

    srv1.resume(setup.host("srv1"));
    wait_for("srv1 serving again", PATIENCE, || {
        setup.status("lb1")["services"][0]["serving"] == "servers"
    });
    let replies: BTreeSet<String> = (0..10).map(|_| fetch(client, &vip).0).collect();
    println!("srv1 back: {replies:?}");
    assert_eq!(replies, BTreeSet::from(["srv1".to_owned()]));
    assert_eq!(
        slotted_backends(&setup),
        BTreeSet::from(["198.18.1.21".to_owned()])
    );
}
