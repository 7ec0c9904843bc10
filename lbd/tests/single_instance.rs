//! A second lbd, or `lbd --teardown`, started by mistake beside a running lbd changes
//! nothing: it exits naming the running one's pid, and the nftables table stays.
//! Needs root (prints SKIP otherwise).

mod support;

use support::*;

#[test]
fn a_second_lbd_or_a_teardown_beside_a_running_one_changes_nothing() {
    if !integration::have_root("a_second_lbd_or_a_teardown_beside_a_running_one_changes_nothing") {
        return;
    }
    let setup = Setup::two_arm();
    setup.write_config("lb1", &[NO_CHECKS]);
    let first = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let lb1 = setup.host("lb1");
    let before = ruleset(lb1);
    assert!(before.contains("\"lbsuite\""), "{before}");

    let mut second = setup.start_lbd("lb1");
    let exit = second
        .wait_timeout(PATIENCE)
        .unwrap()
        .expect("the second lbd exits");
    let stderr = second.stderr();
    println!("second lbd: {exit:?}: {stderr}");
    assert!(!exit.success(), "{exit:?}");
    assert_eq!(before, ruleset(lb1), "the table is untouched");

    // `--teardown` beside a running lbd would remove its live dataplane.
    let config = setup.config("lb1");
    let out = lb1
        .exec(&[
            env!("CARGO_BIN_EXE_lbd"),
            "--config",
            config.to_str().unwrap(),
            "--node",
            "lb1",
            "--teardown",
        ])
        .unwrap();
    let teardown = String::from_utf8_lossy(&out.stderr);
    println!("teardown beside it: {:?}: {teardown}", out.status);
    assert_eq!(before, ruleset(lb1), "the table is untouched");
    assert!(!out.status.success());
    assert_eq!(setup.status("lb1")["services"][0]["name"], "web");

    for refusal in [&*stderr, &*teardown] {
        assert!(
            refusal.contains(&format!("another lbd (pid {})", first.pid())),
            "the refusal names the running lbd's pid: {refusal}"
        );
    }
}
