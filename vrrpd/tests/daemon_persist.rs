//! Issue 13 items 1 and 4: what an operator set (maintenance, priority overrides)
//! survives a restart of vrrpd, a crash included, and is listed and cleared.
//! Real vrrpd pairs in network namespaces; needs root (prints SKIP otherwise).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Several advert intervals (1 s) and more than a Master_Down_Interval (3.61 s).
const WATCH: Duration = Duration::from_secs(8);

fn state_file(c: &Cluster, node: &str) -> PathBuf {
    c.dir.path().join(format!("{node}-vrrpd.state"))
}

/// `vrrpctl --socket S args...` in `node`: (exit code, stdout, stderr); `None`
/// without a vrrpctl built next to vrrpd.
fn vrrpctl_out(c: &Cluster, node: &str, args: &[&str]) -> Option<(i32, String, String)> {
    let bin = vrrpctl()?;
    let socket = c.socket(node);
    let mut argv = vec![bin.to_str().unwrap(), "--socket", socket.to_str().unwrap()];
    argv.extend_from_slice(args);
    let out = c.host(node).exec(&argv).unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A control request's error text.
fn request_error(c: &Cluster, node: &str, method: &str, params: Value) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = ctl::Client::connect(c.socket(node)).await.unwrap();
        client
            .request(method, params)
            .await
            .unwrap_err()
            .to_string()
    })
}

/// SIGKILL, as a crash: no shutdown of any kind.
fn crash(p: &mut integration::Process) {
    p.signal(libc::SIGKILL).unwrap();
    assert!(p.wait_timeout(Duration::from_secs(5)).unwrap().is_some());
}

/// How often the instances of a status reply became MASTER.
fn became_master(status: &Value) -> u64 {
    status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["counters"]["became_master"].as_u64().unwrap())
        .sum()
}

/// lb1 restarted after a crash watched from its first moment: it never holds a VIP
/// while lb2 keeps both; returns lb1's new vrrpd.
fn restart_and_stay_out(c: &Cluster) -> integration::Process {
    let lb1 = c.start("lb1");
    holds_for("lb1 holds no VIP, lb2 both", WATCH, || {
        has_neither(c.host("lb1")) && has_both(c.host("lb2"))
    });
    let s1 = c.status("lb1");
    assert_eq!(became_master(&s1), 0, "{s1:#}");
    assert!(!lb1.stderr().contains("VIPs added"), "{}", lb1.stderr());
    lb1
}

#[test]
fn maintenance_survives_a_crash_and_its_end_survives_the_next() {
    if !integration::have_root("maintenance_survives_a_crash_and_its_end_survives_the_next") {
        return;
    }
    let c = Cluster::up(&[]);
    let mut lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));

    let reply = request(&c.socket("lb1"), "maintenance", json!({"on": true}));
    assert_eq!(reply["persisted"], true, "{reply:#}");
    wait_for("lb2 holds both VIPs", PATIENCE, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });
    let file = state_file(&c, "lb1");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());

    // A reload that rebuilds the group (a VIP added) keeps it in maintenance.
    c.write_config(&[(
        "vips = [\"198.18.1.100/24\"]",
        "vips = [\"198.18.1.100/24\", \"198.18.1.101/24\"]",
    )]);
    let reply = request(&c.socket("lb1"), "reload", Value::Null);
    assert_eq!(reply["restarted"], json!(["edge"]), "{reply:#}");
    holds_for(
        "lb1 stays out after the reload",
        Duration::from_secs(3),
        || has_neither(c.host("lb1")),
    );
    assert_eq!(group_state(&c.status("lb1")), "MAINTENANCE");

    // A reload that renames the group would end its maintenance with the old name:
    // refused, nothing changes, lb1 stays out.
    let renamed = [
        (
            "vips = [\"198.18.1.100/24\"]",
            "vips = [\"198.18.1.100/24\", \"198.18.1.101/24\"]",
        ),
        ("priority = { edge = 150 }", "priority = { gate = 150 }"),
        ("priority = { edge = 100 }", "priority = { gate = 100 }"),
        (
            "given per group.\nname = \"edge\"",
            "given per group.\nname = \"gate\"",
        ),
    ];
    c.write_config(&renamed);
    let refused = request_error(&c, "lb1", "reload", Value::Null);
    println!("reload renaming the group: {refused}");
    assert!(
        refused.contains("\"edge\" is in maintenance") && refused.contains("maintenance off"),
        "{refused}"
    );
    holds_for(
        "lb1 stays out after the refused reload",
        Duration::from_secs(3),
        || has_neither(c.host("lb1")),
    );
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MAINTENANCE", "{s1:#}");
    assert_eq!(s1["groups"][0]["name"], "edge", "{s1:#}");
    c.write_config(&renamed[..1]);

    crash(&mut lb1);
    let mut lb1 = restart_and_stay_out(&c);
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MAINTENANCE", "{s1:#}");
    let m = &s1["groups"][0]["maintenance"];
    assert_eq!(m["reason"], "vrrpctl maintenance on", "{s1:#}");
    assert!(m["since_unix_ms"].as_u64().unwrap() > 0, "{s1:#}");
    assert_eq!(
        s1["state_file"]["path"],
        json!(file.to_str().unwrap()),
        "{s1:#}"
    );
    if let Some((code, out, err)) = vrrpctl_out(&c, "lb1", &["status"]) {
        assert_eq!(code, 0, "{err}");
        println!("{out}");
        assert!(out.contains("group edge: maintenance since "), "{out}");
    }

    // Off: lb1 preempts back, and a crash after that brings it back as MASTER.
    let reply = request(&c.socket("lb1"), "maintenance", json!({"on": false}));
    assert_eq!(reply["persisted"], true, "{reply:#}");
    wait_for("lb1 preempts back", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    crash(&mut lb1);
    let _lb1 = c.start("lb1");
    // (Its leftover VIPs are on its interfaces until the new vrrpd removes them.)
    wait_for("lb1 MASTER again after the second crash", PATIENCE, || {
        c.state_of("lb1") == "MASTER" && has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MASTER", "{s1:#}");
    assert!(s1["groups"][0]["maintenance"].is_null(), "{s1:#}");
}

#[test]
fn a_priority_override_survives_a_crash_and_a_reload_until_cleared() {
    if !integration::have_root("a_priority_override_survives_a_crash_and_a_reload_until_cleared") {
        return;
    }
    let c = Cluster::up(&[]);
    let mut lb1 = c.start("lb1");
    let lb2 = c.start("lb2");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));

    // Refused like check-config refuses the same value in the file.
    let err = request_error(
        &c,
        "lb1",
        "priority.set",
        json!({"group": "edge", "priority": 255}),
    );
    let rule = "priority 255 is for the owner of the VIPs, but node `lb1` owns none of group `edge`'s VIPs";
    assert!(
        err.contains(rule) && err.contains("fix: use 1..=254"),
        "{err}"
    );
    if let Some((code, _, err)) =
        vrrpctl_out(&c, "lb1", &["priority", "set", "--group", "edge", "255"])
    {
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(rule), "{err}");
        c.write_config(&[("priority = { edge = 150 }", "priority = { edge = 255 }")]);
        let config = c.config("lb1");
        let (code, _, check) =
            vrrpctl_out(&c, "lb1", &["check-config", config.to_str().unwrap()]).unwrap();
        assert_eq!(code, 1, "{check}");
        assert!(check.contains(rule), "check-config says the same: {check}");
        c.write_config(&[]);
    }
    // One member of the sync group alone: refused, the group named.
    let err = request_error(
        &c,
        "lb1",
        "priority.set",
        json!({"instance": "public", "priority": 90}),
    );
    assert!(
        err.contains("one member of sync group `edge`") && err.contains("--group edge"),
        "{err}"
    );
    let s1 = c.status("lb1");
    assert!(
        s1["instances"][0]["priority_override"].is_null(),
        "nothing changed: {s1:#}"
    );

    // Below lb2's 100: lb2 preempts.
    let reply = request(
        &c.socket("lb1"),
        "priority.set",
        json!({"group": "edge", "priority": 90}),
    );
    assert_eq!(reply["persisted"], true, "{reply:#}");
    wait_for("lb2 preempts lb1", PATIENCE, || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });

    crash(&mut lb1);
    let lb1 = restart_and_stay_out(&c);
    let s1 = c.status("lb1");
    for i in s1["instances"].as_array().unwrap() {
        assert_eq!(i["priority"], 90, "{s1:#}");
        assert_eq!(i["configured_priority"], 150, "{s1:#}");
        assert_eq!(i["priority_override"]["priority"], 90, "{s1:#}");
    }
    let list = request(&c.socket("lb1"), "priority.list", Value::Null);
    let names: Vec<&str> = list["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["public", "server"], "{list:#}");
    if let Some((code, out, err)) = vrrpctl_out(&c, "lb1", &["priority", "list"]) {
        assert_eq!(code, 0, "{err}");
        println!("{out}");
        assert!(
            out.contains("edge public: priority overridden to 90 (file: 150)"),
            "{out}"
        );
    }

    // A reload, even one that changes the file's priority, keeps the override.
    c.write_config(&[("priority = { edge = 150 }", "priority = { edge = 160 }")]);
    let reply = request(&c.socket("lb1"), "reload", Value::Null);
    assert_eq!(reply["updated"], json!(["edge"]), "{reply:#}");
    let s1 = c.status("lb1");
    assert_eq!(s1["instances"][0]["priority"], 90, "{s1:#}");
    assert_eq!(s1["instances"][0]["configured_priority"], 160, "{s1:#}");
    holds_for("lb2 stays MASTER", Duration::from_secs(4), || {
        has_both(c.host("lb2")) && has_neither(c.host("lb1"))
    });

    // Cleared: the file's 160 applies, lb1 preempts back; nothing left to list.
    let reply = match vrrpctl_out(&c, "lb1", &["priority", "clear", "--all"]) {
        Some((code, out, err)) => {
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("public: priority 160"), "{out}");
            Value::Null
        }
        None => request(&c.socket("lb1"), "priority.clear", json!({"all": true})),
    };
    println!("{reply}");
    wait_for("lb1 preempts back", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    let list = request(&c.socket("lb1"), "priority.list", Value::Null);
    assert_eq!(list["overrides"], json!([]), "{list:#}");
    drop((lb1, lb2));
}

#[test]
fn an_unusable_state_file_starts_the_node_in_maintenance() {
    if !integration::have_root("an_unusable_state_file_starts_the_node_in_maintenance") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb2 = c.start("lb2");
    wait_for("lb2 holds both VIPs", PATIENCE, || has_both(c.host("lb2")));
    let file = state_file(&c, "lb1");
    std::fs::write(&file, "{\"version\":1,\"node\":\"lb1\",\"maint").unwrap();

    let mut lb1 = restart_and_stay_out(&c);
    let s1 = c.status("lb1");
    assert_eq!(group_state(&s1), "MAINTENANCE", "{s1:#}");
    let err = s1["state_file"]["load_error"].as_str().unwrap();
    assert!(err.contains("not a valid state file"), "{s1:#}");
    assert!(
        lb1.stderr().contains("state file unusable"),
        "{}",
        lb1.stderr()
    );
    let metrics = scrape(c.host("lb1"));
    assert_eq!(
        sample(
            &metrics,
            "vrrp_state_file_errors_total",
            &[("operation", "read")]
        ),
        Some(1.0),
        "{metrics}"
    );
    let mut bad = file.clone().into_os_string();
    bad.push(".bad");
    assert!(std::fs::read_to_string(&bad).unwrap().ends_with("\"maint"));
    if let Some((code, out, err)) = vrrpctl_out(&c, "lb1", &["status"]) {
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("STATE FILE UNUSABLE"), "{out}");
    }

    // The safe state is on disk: another crash comes back in maintenance too.
    crash(&mut lb1);
    let mut lb1 = restart_and_stay_out(&c);
    assert!(c.status("lb1")["state_file"]["load_error"].is_null());
    crash(&mut lb1);

    // Entries the configuration has no place for are reported and ignored.
    std::fs::write(
        &file,
        r#"{"version":1,"node":"lb1","written_unix_ms":1,
            "maintenance":{"gone":{"since_unix_ms":1,"reason":"vrrpctl maintenance on"}},
            "priority_overrides":{"nosuch":{"priority":50,"since_unix_ms":1}}}"#,
    )
    .unwrap();
    let lb1 = c.start("lb1");
    wait_for("lb1 preempts (nothing holds it out)", PATIENCE, || {
        has_both(c.host("lb1")) && has_neither(c.host("lb2"))
    });
    let s1 = c.status("lb1");
    let ignored = s1["state_file"]["ignored"].as_array().unwrap();
    assert_eq!(ignored.len(), 2, "{s1:#}");
    assert!(
        ignored[0]
            .as_str()
            .unwrap()
            .contains("\"gone\": no such group"),
        "{s1:#}"
    );
    assert!(lb1.stderr().contains("state file entry ignored"));
}
