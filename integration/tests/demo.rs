//! The README's demo command keeps working: the demo binary, run on the example config,
//! brings the cluster up, balances through the VIP with SNAT, fails over and recovers.

use std::path::Path;
use std::process::Command;

#[test]
fn demo_runs_on_the_example_config() {
    if !integration::have_root("demo_runs_on_the_example_config") {
        return;
    }
    let demo = Path::new(env!("CARGO_BIN_EXE_demo"));
    let bin_dir = demo.parent().unwrap();
    for daemon in ["vrrpd", "lbd", "vrrpctl"] {
        assert!(
            bin_dir.join(daemon).exists(),
            "{daemon} is not built next to the demo: run `cargo build --workspace` first"
        );
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml.example");
    let out = Command::new(demo)
        .arg(&example)
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for line in [
        "ok  election        lb1 MASTER",
        "ok  traffic         12 connections: srv1 6, srv2 6; servers saw source 198.18.1.100",
        "ok  crash failover  lb2 took over",
        "ok  recovery        lb1 rejoined and preempted",
        "ok  drill failover",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
