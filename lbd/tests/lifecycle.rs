//! The real lbd's life in a namespace (needs root): refused reloads change nothing
//! in the kernel; SIGKILL and SIGTERM leave the ruleset, the next start adopts it
//! unchanged; other tables are never touched; a refused config starts nothing.

mod support;

use support::*;

const DUPLICATE_SERVICE: (&str, &str) = (
    "# ---------------------------------------------------------------------------\n# Health checks",
    "[[service]]\nname = \"web-again\"\nvip = \"198.18.0.100\"\nport = 80\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\n\n# ---------------------------------------------------------------------------\n# Health checks",
);

const UNREACHABLE_SERVER: (&str, &str) = ("address = \"198.18.1.22\"", "address = \"198.18.5.22\"");

#[test]
fn refused_reload_changes_nothing_in_the_kernel() {
    if !integration::have_root("refused_reload_changes_nothing_in_the_kernel") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let lb1 = setup.host("lb1");
    let before = ruleset(lb1);
    assert!(before.contains("lbsuite"), "{before}");

    setup.write_config("lb1", &[NO_CHECKS, DUPLICATE_SERVICE]);
    let err = setup.reload("lb1").unwrap_err();
    println!("duplicate VIP:port reload: {err}");
    assert!(err.contains("reload refused"), "{err}");
    assert!(err.contains("overlaps service `web`"), "{err}");
    assert!(
        err.contains(".toml:"),
        "the diagnostic names the file and line: {err}"
    );
    assert_eq!(before, ruleset(lb1));

    setup.write_config("lb1", &[NO_CHECKS, UNREACHABLE_SERVER]);
    let err = setup.reload("lb1").unwrap_err();
    println!("unreachable server reload: {err}");
    assert!(err.contains("198.18.5.22 is in no subnet"), "{err}");
    assert_eq!(before, ruleset(lb1));

    // SIGHUP with the refused file: logged, nothing changes either.
    lbd.signal(libc::SIGHUP).unwrap();
    wait_for("the SIGHUP refusal in lbd's log", PATIENCE, || {
        lbd.stderr().contains("198.18.5.22 is in no subnet")
            || lbd.stderr().contains("198.18.5.22 is in no subnet")
    });
    assert_eq!(before, ruleset(lb1));
    // The running configuration still answers.
    assert_eq!(setup.status("lb1")["services"][0]["name"], "web");
}

#[test]
fn restart_after_sigkill_adopts_the_ruleset_and_spares_other_tables() {
    if !integration::have_root("restart_after_sigkill_adopts_the_ruleset_and_spares_other_tables") {
        return;
    }
    let setup = Setup::two_arm();
    let lb1 = setup.host("lb1");
    lb1.exec_ok(&["nft", "add table inet testown"]).unwrap();
    lb1.exec_ok(&[
        "nft",
        "add chain inet testown input { type filter hook input priority 0; }",
    ])
    .unwrap();
    lb1.exec_ok(&[
        "nft",
        "add rule inet testown input tcp dport 22 counter accept",
    ])
    .unwrap();
    let foreign = lb1
        .exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
        .unwrap();

    setup.write_config("lb1", &[NO_CHECKS]);
    let mut first = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let applied = ruleset(lb1);
    first.signal(libc::SIGKILL).unwrap();
    first.wait_timeout(PATIENCE).unwrap();
    assert_eq!(applied, ruleset(lb1), "SIGKILL leaves the ruleset");

    let mut second = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let last = &status["dataplane"]["last_apply"];
    println!("adopting apply: {last}");
    assert_eq!(last["changes"], 0, "nothing to change: {last}");
    assert_eq!(last["reread"], true);
    assert_eq!(applied, ruleset(lb1), "same ruleset, nothing duplicated");

    // SIGTERM: a clean stop that leaves the ruleset in place.
    second.signal(libc::SIGTERM).unwrap();
    let exit = second.wait_timeout(PATIENCE).unwrap().expect("lbd stopped");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(applied, ruleset(lb1), "SIGTERM leaves the ruleset");
    assert_eq!(
        foreign,
        lb1.exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
            .unwrap()
    );

    // --teardown removes lbd's table only.
    let config = setup.config("lb1");
    lb1.exec_ok(&[
        env!("CARGO_BIN_EXE_lbd"),
        "--config",
        config.to_str().unwrap(),
        "--node",
        "lb1",
        "--teardown",
    ])
    .unwrap();
    assert!(!ruleset(lb1).contains("\"lbsuite\""));
    assert_eq!(
        foreign,
        lb1.exec_ok(&["nft", "-j", "list", "table", "inet", "testown"])
            .unwrap()
    );
}

#[test]
fn refused_config_at_start_applies_nothing() {
    if !integration::have_root("refused_config_at_start_applies_nothing") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS, UNREACHABLE_SERVER]);
    let mut lbd = setup.start_lbd("lb1");
    let exit = lbd.wait_timeout(PATIENCE).unwrap().expect("lbd exits");
    assert_eq!(exit.code(), Some(1));
    assert!(
        lbd.stderr().contains("refused, nothing applied"),
        "{}",
        lbd.stderr()
    );
    assert!(!ruleset(setup.host("lb1")).contains("lbsuite"));
}

/// The nft backend, and the scheduler only IPVS has.
const NFT: (&str, &str) = ("backend = \"auto\"", "backend = \"nft\"");
const SED: (&str, &str) = ("scheduler = \"rr\"", "scheduler = \"sed\"");

#[test]
fn a_scheduler_the_backend_lacks_is_refused_at_start_and_reload() {
    if !integration::have_root("a_scheduler_the_backend_lacks_is_refused_at_start_and_reload") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS, NFT, SED]);
    let mut lbd = setup.start_lbd("lb1");
    let exit = lbd.wait_timeout(PATIENCE).unwrap().expect("lbd exits");
    assert_eq!(exit.code(), Some(1), "{}", lbd.stderr());
    let said = lbd.stderr();
    println!("{said}");
    assert!(
        said.contains("scheduler sed is not available with the nft backend")
            && said.contains("the ipvs backend has it"),
        "{said}"
    );
    assert!(!ruleset(setup.host("lb1")).contains("lbsuite"));

    // Running with rr, a reload to sed is refused and changes nothing (no wrr
    // in its place).
    setup.write_config("lb1", &[NO_CHECKS, NFT]);
    let _lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let before = ruleset(setup.host("lb1"));
    setup.write_config("lb1", &[NO_CHECKS, NFT, SED]);
    let err = setup.reload("lb1").unwrap_err();
    println!("reload to sed: {err}");
    assert!(err.contains("the ipvs backend has it"), "{err}");
    assert_eq!(before, ruleset(setup.host("lb1")));
    assert_eq!(setup.status("lb1")["services"][0]["scheduler"], "rr");
}

/// The example's check made half-open: it needs a raw socket.
const SYN_CHECK: &[(&str, &str)] = &[
    ("type = \"http\"", "type = \"tcp_syn\""),
    ("path = \"/\"\n", ""),
    ("expect_status = [200]\n", ""),
];

#[test]
fn tcp_syn_checks_without_cap_net_raw_refuse_the_config_before_anything_is_applied() {
    if !integration::have_root(
        "tcp_syn_checks_without_cap_net_raw_refuse_the_config_before_anything_is_applied",
    ) {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", SYN_CHECK);
    let config = setup.config("lb1");
    // lbd as root, but with CAP_NET_RAW out of its bounding set (as a unit file
    // without it would run it).
    let mut cmd = setup.host("lb1").command("setpriv");
    cmd.args(["--bounding-set", "-net_raw", "--"])
        .arg(env!("CARGO_BIN_EXE_lbd"))
        .args(["--config", config.to_str().unwrap(), "--node", "lb1"])
        .env("RUST_LOG", "info");
    let mut lbd = setup.host("lb1").spawn_command(cmd, "lbd").unwrap();
    let exit = lbd.wait_timeout(PATIENCE).unwrap().expect("lbd exits");
    assert_eq!(exit.code(), Some(1), "{}", lbd.stderr());
    assert!(
        lbd.stderr().contains("tcp_syn checks need CAP_NET_RAW"),
        "{}",
        lbd.stderr()
    );
    assert!(!ruleset(setup.host("lb1")).contains("lbsuite"));

    // With the capability the same file starts and applies its dataplane.
    let mut lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    assert_eq!(status["dataplane"]["last_apply"]["ok"], true, "{status}");
    lbd.signal(libc::SIGTERM).unwrap();
    let _ = lbd.wait_timeout(PATIENCE);
}

#[test]
fn restart_after_sigterm_adopts_by_record_unless_nf_tables_changed() {
    if !integration::have_root("restart_after_sigterm_adopts_by_record_unless_nf_tables_changed") {
        return;
    }
    const ADOPTED: &str = "adopted as the previous lbd left it";
    let setup = Setup::two_arm();
    let lb1 = setup.host("lb1");
    setup.write_config("lb1", &[NO_CHECKS]);
    let stop = |mut lbd: integration::Process| {
        lbd.signal(libc::SIGTERM).unwrap();
        let exit = lbd.wait_timeout(PATIENCE).unwrap().expect("lbd stopped");
        assert!(exit.success(), "{exit:?}");
    };
    let first = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let applied = ruleset(lb1);
    stop(first);

    // Nothing committed since: the table is taken as it is, not read back.
    let second = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let last = &status["dataplane"]["last_apply"];
    println!("adopting apply by record: {last}");
    assert_eq!(last["changes"], 0, "{last}");
    assert_eq!(last["reread"], false, "{last}");
    assert!(second.stderr().contains(ADOPTED), "{}", second.stderr());
    assert_eq!(applied, ruleset(lb1));
    stop(second);

    // Another table's commit meanwhile: read back (and nothing to change).
    lb1.exec_ok(&["nft", "add table inet testown"]).unwrap();
    let third = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let last = &status["dataplane"]["last_apply"];
    assert_eq!(last["reread"], true, "{last}");
    assert_eq!(last["changes"], 0, "{last}");
    assert!(!third.stderr().contains(ADOPTED), "{}", third.stderr());
    stop(third);

    // lbd's own table changed meanwhile: read back and repaired (rules come back
    // with new handles: compared as `nft list` prints them, without handles).
    let table = || {
        lb1.exec_ok(&["nft", "list", "table", "inet", "lbsuite"])
            .unwrap()
    };
    let listed = table();
    lb1.exec_ok(&["nft", "flush chain inet lbsuite lb_dnat"])
        .unwrap();
    assert_ne!(listed, table());
    let fourth = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let last = &status["dataplane"]["last_apply"];
    assert_eq!(last["reread"], true, "{last}");
    assert!(last["changes"].as_u64().unwrap() > 0, "{last}");
    assert!(!fourth.stderr().contains(ADOPTED), "{}", fourth.stderr());
    assert_eq!(listed, table(), "repaired");
    stop(fourth);
}
