//! lbd as systemd sees it, without systemd: the notify protocol on a socket of the
//! test's own (READY=1 only once the service's rules are in the kernel, WATCHDOG=1
//! from the reconcile loop every WATCHDOG_USEC/2, RELOADING=1 / READY=1 around a
//! reload, a refused file making `vrrpctl --socket <lbd> reload` — the unit's
//! ExecReload — exit non-zero), and /metrics: one scrape right after start has every
//! series docs/metrics.md names for lbd, and every lbd series the Grafana dashboard
//! and the alert rules query. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use integration::{dashboard, exposition, NotifySocket};
use support::*;

/// lbd's metrics address in the example config.
const METRICS: &str = "127.0.0.1:9613";

#[test]
fn systemd_hears_ready_once_the_rules_are_in_the_kernel() {
    if !integration::have_root("systemd_hears_ready_once_the_rules_are_in_the_kernel") {
        return;
    }
    let s = Setup::two_arm();
    s.write_config("lb1", &[NO_CHECKS]);
    let path = s.dir.path().join("notify.sock");
    // lbd's table at the moment READY=1 arrives.
    let netns = s.host("lb1").netns();
    let argv = [
        "ip", "netns", "exec", netns, "nft", "list", "table", "inet", "lbsuite",
    ];
    let notify =
        NotifySocket::bind_observing_ready(&path, argv.map(String::from).to_vec()).unwrap();
    let mut lbd = s.start_lbd_with_env(
        "lb1",
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let (_, ready) = notify
        .wait_for("READY=1", 0, PATIENCE)
        .expect("lbd never said READY=1");
    let table = ready.observed.clone().unwrap_or_default();
    assert!(
        table.contains(VIP) && table.contains(SNAT_VIP),
        "READY=1 came before the service and SNAT rules were in the kernel:\n{table}"
    );
    let status = ready.value("STATUS").unwrap_or("");
    assert!(
        status.starts_with("1 services, 2 of 2 servers up"),
        "{status}"
    );

    let pings = notify.watchdog_pings_in(Duration::from_secs(3));
    assert!(
        (4..=8).contains(&pings),
        "{pings} WATCHDOG=1 in 3 s, WATCHDOG_USEC=1 s"
    );

    // ExecReload with a refused file: non-zero exit, RELOADING=1 then READY=1.
    let good = std::fs::read_to_string(s.config("lb1")).unwrap();
    std::fs::write(
        s.config("lb1"),
        good.replacen("scheduler = ", "scheduler = \"no-such\"\n# ", 1),
    )
    .unwrap();
    let seen = notify.received().len();
    let vrrpctl = sibling_binary("vrrpctl");
    let out = s
        .host("lb1")
        .exec(&[
            vrrpctl.to_str().unwrap(),
            "--socket",
            s.lbd_socket("lb1").to_str().unwrap(),
            "reload",
        ])
        .unwrap();
    assert!(!out.status.success(), "vrrpctl reload accepted a bad file");
    let after = notify.wait_for_reload(seen, PATIENCE).expect("no reload");
    let status = after.value("STATUS").unwrap_or("");
    assert!(status.starts_with("reload refused"), "{status}");
    assert!(lbd.try_wait().unwrap().is_none(), "lbd exited");
    println!(
        "vrrpctl reload of a refused file: {}; STATUS={status}",
        out.status
    );

    // The unit's own ExecReload (dist/lbd.service) on the file lbd was started
    // with: the socket comes from that file, as in ExecStart, and only lbd is asked.
    std::fs::write(s.config("lb1"), &good).unwrap();
    let seen = notify.received().len();
    integration::reload_as_the_unit(s.host("lb1"), "lbd", &vrrpctl, &s.config("lb1"));
    let after = notify.wait_for_reload(seen, PATIENCE).expect("no reload");
    assert!(
        !after
            .value("STATUS")
            .unwrap_or("")
            .starts_with("reload refused"),
        "{after:?}"
    );
}

#[test]
fn the_first_scrape_has_every_documented_series() {
    if !integration::have_root("the_first_scrape_has_every_documented_series") {
        return;
    }
    let s = Setup::two_arm();
    // Every optional series: checks (in the example), SNAT and sync (in the
    // example), a quorum.
    s.write_config(
        "lb1",
        &[
            ("# quorum = 1", "quorum = 1"),
            (
                "# quorum_priority_delta = -60",
                "quorum_priority_delta = -60",
            ),
        ],
    );
    let _lbd = s.start_lbd("lb1");
    let addr = METRICS.parse().unwrap();
    wait_for("lbd's /metrics answers", PATIENCE, || {
        s.host("lb1")
            .tcp_connect(addr, Duration::from_secs(1))
            .is_ok()
    });
    let text = scrape_raw(s.host("lb1"), METRICS);
    let documented = exposition::assert_documented_and_labelled(&text, "lbd", "edge");
    let queried = dashboard::assert_served(&text, "lbd");
    assert!(!text.lines().any(|l| l.starts_with("lb_")), "{text}");
    println!(
        "{} documented lbd series and the {} the dashboard and alerts use, all in the first scrape ({} lines)",
        documented,
        queried,
        text.lines().count()
    );
}

/// The syslog priority a JSON line's level must carry (sd-daemon(3)).
fn priority_of(level: &str) -> &'static str {
    match level {
        "ERROR" => "<3>",
        "WARN" => "<4>",
        "INFO" => "<6>",
        _ => "<7>",
    }
}

#[test]
fn the_journal_gets_priorities_and_json_lines_with_plain_values() {
    if !integration::have_root("the_journal_gets_priorities_and_json_lines_with_plain_values") {
        return;
    }
    let s = Setup::two_arm();
    // The example's checks, and no server answering them: both go down.
    s.write_config("lb1", &[]);
    let config = s.config("lb1");
    let mut cmd = s.host("lb1").command("sh");
    // As systemd connects stderr to the journal: JOURNAL_STREAM names that stream.
    cmd.args([
        "-c",
        "export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); exec \"$@\"",
        "sh",
        env!("CARGO_BIN_EXE_lbd"),
        "--config",
        config.to_str().unwrap(),
        "--node",
        "lb1",
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "info");
    let lbd = s.host("lb1").spawn_command(cmd, "lbd").unwrap();
    wait_for("both servers down in the log", PATIENCE, || {
        lbd.stderr().matches("server health changed: down").count() >= 2
    });
    let log = lbd.stderr();
    assert!(lbd.stdout().is_empty(), "stdout: {}", lbd.stdout());
    let mut seen = std::collections::BTreeMap::new();
    for line in log.lines() {
        let (prefix, json) = line.split_at(line.find('{').unwrap_or(0));
        let v: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
        let level = v["level"].as_str().unwrap_or("");
        assert_eq!(prefix, priority_of(level), "{line}");
        let message = v["message"].as_str().unwrap_or("").to_owned();
        // Durations rounded to 0.1 ms, numbers not text.
        for (k, x) in v.as_object().unwrap() {
            if k.ends_with("_ms") && x.is_f64() {
                let text = x.to_string();
                let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
                assert!(decimals <= 1, "{k}={text} in {line}");
            }
        }
        seen.insert(message, (prefix.to_owned(), line.to_owned()));
    }
    let down = &seen["server health changed: down"];
    assert_eq!(down.0, "<4>", "{}", down.1);
    let running = &seen["lbd running"];
    assert_eq!(running.0, "<6>", "{}", running.1);
    assert!(seen.contains_key("dataplane applied"), "{log}");
    println!("{}", down.1);
}
