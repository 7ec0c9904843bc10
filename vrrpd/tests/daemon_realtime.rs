//! `[vrrpd]` realtime_priority and lock_memory as the kernel sees them: the
//! policy and priority of vrrpd's threads (/proc/PID/task/TID/stat), its locked
//! memory (VmLck), and what status and the metrics report. Needs root (prints
//! SKIP otherwise).

mod support;

use std::time::Duration;

use support::*;

/// Scheduling of one thread: (name, policy, real-time priority), from
/// /proc/PID/task/TID/stat (fields 40 `rt_priority` and 41 `policy`).
fn threads(pid: u32) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = entry.unwrap().file_name().into_string().unwrap();
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
            continue; // the thread ended meanwhile
        };
        let open = stat.find('(').unwrap();
        let close = stat.rfind(')').unwrap();
        let name = stat[open + 1..close].to_owned();
        // Fields after the name start at field 3 (state).
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let rt_priority = fields[40 - 3].parse().unwrap();
        let policy = fields[41 - 3].parse().unwrap();
        out.push((format!("{name} ({tid})"), policy, rt_priority));
    }
    out
}

/// The main thread's (policy, real-time priority).
fn main_thread(pid: u32) -> (i64, i64) {
    let all = threads(pid);
    let (_, policy, prio) = all
        .iter()
        .find(|(name, _, _)| name.ends_with(&format!("({pid})")))
        .unwrap_or_else(|| panic!("no main thread in {all:?}"));
    (*policy, *prio)
}

/// `VmLck` of `pid`, kB.
fn locked_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmLck in {status}"))
}

/// `VmRSS` of `pid`, kB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `chrt -p PID` (util-linux), for the record.
fn chrt(pid: u32) -> String {
    std::process::Command::new("chrt")
        .args(["-p", &pid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("chrt: {e}"))
}

const SCHED_OTHER: i64 = 0;
const SCHED_RR: i64 = 2;

/// lb1 alone, answering status (it becomes MASTER of both VIPs on its own).
fn wait_running(c: &Cluster) -> serde_json::Value {
    wait_for("lb1 MASTER with both VIPs", PATIENCE, || {
        has_both(c.host("lb1"))
    });
    c.status("lb1")
}

#[test]
fn realtime_priority_puts_the_event_loop_in_sched_rr_and_locks_memory() {
    if !integration::have_root("realtime_priority_puts_the_event_loop_in_sched_rr_and_locks_memory")
    {
        return;
    }
    // 17, not the default 20: the value seen must be the one configured.
    let c = Cluster::up(&[("realtime_priority = 20", "realtime_priority = 17")]);
    let lb1 = c.start("lb1");
    let status = wait_running(&c);
    let pid = lb1.pid();
    println!("{}", chrt(pid).trim_end());
    let all = threads(pid);
    println!("threads (name, policy, rt_priority): {all:?}");

    assert_eq!(main_thread(pid), (SCHED_RR, 17), "{all:?}");
    // Every other thread (the /metrics server, ...) was created after the
    // switch with SCHED_RESET_ON_FORK: normal scheduling.
    let others: Vec<_> = all
        .iter()
        .filter(|(name, _, _)| !name.ends_with(&format!("({pid})")))
        .collect();
    assert!(
        others
            .iter()
            .any(|(name, _, _)| name.starts_with("metrics")),
        "no metrics thread in {all:?}"
    );
    for (name, policy, prio) in &others {
        assert_eq!((*policy, *prio), (SCHED_OTHER, 0), "thread {name}");
    }
    let locked = locked_kib(pid);
    println!("VmLck {locked} kB, VmRSS {} kB", rss_kib(pid));
    assert!(locked > 0, "lock_memory = true but VmLck is 0");

    let rt = &status["realtime"];
    assert_eq!(rt["requested_priority"], 17, "{rt:#}");
    assert_eq!(rt["policy"], "SCHED_RR", "{rt:#}");
    assert_eq!(rt["priority"], 17, "{rt:#}");
    assert_eq!(rt["memory_locked"], true, "{rt:#}");
    assert!(rt["locked_kib"].as_u64() > Some(0), "{rt:#}");
    assert_eq!(rt["warnings"], serde_json::json!([]), "{rt:#}");

    let metrics = scrape(c.host("lb1"));
    assert_eq!(sample(&metrics, "vrrp_realtime_priority", &[]), Some(17.0));
    assert_eq!(sample(&metrics, "vrrp_memory_locked", &[]), Some(1.0));
}

#[test]
fn realtime_priority_0_leaves_normal_scheduling_and_swappable_memory() {
    if !integration::have_root("realtime_priority_0_leaves_normal_scheduling_and_swappable_memory")
    {
        return;
    }
    let c = Cluster::up(&[
        ("realtime_priority = 20", "realtime_priority = 0"),
        ("lock_memory = true", "lock_memory = false"),
    ]);
    let lb1 = c.start("lb1");
    let status = wait_running(&c);
    let pid = lb1.pid();
    println!("{}", chrt(pid).trim_end());
    let all = threads(pid);
    for (name, policy, prio) in &all {
        assert_eq!((*policy, *prio), (SCHED_OTHER, 0), "thread {name}");
    }
    assert_eq!(locked_kib(pid), 0);
    println!("VmRSS {} kB", rss_kib(pid));
    let rt = &status["realtime"];
    assert_eq!(rt["policy"], "SCHED_OTHER", "{rt:#}");
    assert_eq!(rt["priority"], 0, "{rt:#}");
    assert_eq!(rt["memory_locked"], false, "{rt:#}");
    let metrics = scrape(c.host("lb1"));
    assert_eq!(sample(&metrics, "vrrp_realtime_priority", &[]), Some(0.0));
    assert_eq!(sample(&metrics, "vrrp_memory_locked", &[]), Some(0.0));
}

#[test]
fn without_the_capabilities_vrrpd_warns_and_runs_on() {
    if !integration::have_root("without_the_capabilities_vrrpd_warns_and_runs_on") {
        return;
    }
    if which("setpriv").is_none() || which("prlimit").is_none() {
        println!("SKIP: setpriv / prlimit (util-linux) not installed");
        return;
    }
    let c = Cluster::up(&[]);
    // Root without CAP_SYS_NICE and CAP_IPC_LOCK, RLIMIT_RTPRIO 0 and an 8 MiB
    // RLIMIT_MEMLOCK: what a unit without the grants of dist/vrrpd.service gets.
    let config = c.config("lb1");
    let mut cmd = c.host("lb1").command("prlimit");
    cmd.args(["--rtprio=0", "--memlock=8388608:8388608", "setpriv"])
        .args([
            "--bounding-set=-sys_nice,-ipc_lock",
            "--inh-caps=-sys_nice,-ipc_lock",
        ])
        .arg(env!("CARGO_BIN_EXE_vrrpd"))
        .args(["--config", config.to_str().unwrap(), "--node", "lb1"])
        .env("RUST_LOG", "info");
    let lb1 = c.host("lb1").spawn_command(cmd, "vrrpd").unwrap();
    let status = wait_running(&c);
    let pid = lb1.pid();
    assert_eq!(main_thread(pid), (SCHED_OTHER, 0));
    assert_eq!(locked_kib(pid), 0);

    let rt = &status["realtime"];
    assert_eq!(rt["requested_priority"], 20, "{rt:#}");
    assert_eq!(rt["policy"], "SCHED_OTHER", "{rt:#}");
    assert_eq!(rt["memory_locked"], false, "{rt:#}");
    let warnings = rt["warnings"].to_string();
    assert!(warnings.contains("CAP_SYS_NICE"), "{warnings}");
    assert!(warnings.contains("CAP_IPC_LOCK"), "{warnings}");

    let log = lb1.stdout() + &lb1.stderr();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warns
            .iter()
            .any(|l| l.contains("vrrpd.realtime_priority") && l.contains("CAP_SYS_NICE")),
        "{log}"
    );
    assert!(
        warns
            .iter()
            .any(|l| l.contains("vrrpd.lock_memory") && l.contains("CAP_IPC_LOCK")),
        "{log}"
    );
    let metrics = scrape(c.host("lb1"));
    assert_eq!(sample(&metrics, "vrrp_realtime_priority", &[]), Some(0.0));
    assert_eq!(sample(&metrics, "vrrp_memory_locked", &[]), Some(0.0));
    // And it kept running: still MASTER a moment later.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(group_state(&c.status("lb1")), "MASTER");
}

#[test]
fn a_reload_reports_a_vrrpd_change_and_keeps_the_running_scheduling() {
    if !integration::have_root("a_reload_reports_a_vrrpd_change_and_keeps_the_running_scheduling") {
        return;
    }
    let c = Cluster::up(&[("realtime_priority = 20", "realtime_priority = 17")]);
    let lb1 = c.start("lb1");
    wait_running(&c);
    let pid = lb1.pid();
    assert_eq!(main_thread(pid), (SCHED_RR, 17));
    c.write_config(&[("realtime_priority = 20", "realtime_priority = 0")]);
    let reply = request(&c.socket("lb1"), "reload", serde_json::Value::Null);
    assert_eq!(reply["config_changed"]["vrrpd_changed"], true, "{reply:#}");
    // Applied at the next start only.
    assert_eq!(main_thread(pid), (SCHED_RR, 17));
    assert_eq!(c.status("lb1")["realtime"]["priority"], 17);
    let log = lb1.stdout() + &lb1.stderr();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("[vrrpd] changed")
            && l.contains("next restart")),
        "{log}"
    );
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.exists())
    })
}
