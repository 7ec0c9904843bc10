//! `vrrpctl check-config`: the exit code and output contract of issue 2.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml.example")
}

fn vrrpctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(args)
        .output()
        .expect("run vrrpctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn example_is_valid_for_each_node() {
    let path = example();
    let path = path.to_str().unwrap();
    let (code, out, err) = vrrpctl(&["check-config", path]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("node lb1: cluster edge, peer lb2"), "{out}");
    assert!(out.contains("node lb2: cluster edge, peer lb1"), "{out}");
    // With --node the file is checked as that node's daemons check it on this
    // host: the example's eth0 and eth1 must exist here.
    let here = ["eth0", "eth1"]
        .iter()
        .all(|i| std::path::Path::new("/sys/class/net").join(i).exists());
    for node in ["lb1", "lb2"] {
        let (code, out, err) = vrrpctl(&["check-config", "--node", node, path]);
        if here {
            assert_eq!(code, 0, "{err}");
            assert!(out.contains(&format!("node {node}:")), "{out}");
        } else {
            assert_eq!(code, 1, "{out}");
            assert!(err.contains("does not exist on this host"), "{err}");
        }
    }
}

#[test]
fn unknown_node_is_refused() {
    let path = example();
    let (code, _, err) = vrrpctl(&["check-config", "--node", "lb9", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("lb9"), "{err}");
    assert!(
        err.contains("lb1") && err.contains("lb2"),
        "names the known nodes: {err}"
    );
}

#[test]
fn invalid_file_is_refused_with_locations_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replacen("vrid = 52", "vrid = 0", 1);
    let line = text
        .lines()
        .position(|l| l.starts_with("vrid = 0"))
        .unwrap()
        + 1;
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = vrrpctl(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.is_empty(),
        "nothing on stdout for a refused file: {out}"
    );
    let expected = format!("{}:{line}:8: vrid 0 is out of range", path.display());
    assert!(err.starts_with(&expected), "{err}");
}

#[test]
fn missing_file_names_the_path() {
    let (code, _, err) = vrrpctl(&["check-config", "/nonexistent/cluster.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/cluster.toml"), "{err}");
}
