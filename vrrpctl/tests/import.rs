//! `vrrpctl import`: every corpus file of crates/import imports to a file that the
//! built `vrrpctl check-config` accepts; the report on stdout names unmapped items
//! with file and line; a pair of files gives both nodes; malformed input exits 1
//! with file:line on stderr and writes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/import/tests/corpus")
        .join(rel)
}

/// Runs the built vrrpctl: exit code, stdout, stderr.
fn vrrpctl(args: &[&str]) -> (i32, String, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(args)
        .output();
    let out = run.unwrap_or_else(|e| panic!("vrrpctl {args:?}: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let code = out.status.code().unwrap_or(-1);
    (code, text(&out.stdout), text(&out.stderr))
}

/// Imports `files`, checks the output with check-config; returns the report
/// (import's stdout), check-config's stdout and the file's text.
fn import_and_check(format: &str, files: &[&str], extra: &[&str]) -> (String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster.toml");
    let paths: Vec<String> = files
        .iter()
        .map(|f| corpus(f).display().to_string())
        .collect();
    let mut args = vec!["import", format];
    args.extend(paths.iter().map(String::as_str));
    let out_s = out.display().to_string();
    args.extend(["--output", &out_s]);
    args.extend(extra);
    let (code, report, err) = vrrpctl(&args);
    assert_eq!(code, 0, "{files:?}: {err}");
    let (code, checked, err) = vrrpctl(&["check-config", &out_s]);
    assert_eq!(
        code, 0,
        "{files:?}: check-config refused the import:\n{err}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    (report, checked, text)
}

#[test]
fn every_corpus_file_imports_and_passes_check_config() {
    for f in [
        "keepalived/lb1.conf",
        "keepalived/lb2.conf",
        "keepalived/single.conf",
        "keepalived/unknown-keywords.conf",
    ] {
        import_and_check("keepalived", &[f], &[]);
    }
    for f in ["aloha/one-arm.cfg", "aloha/two-arm.cfg"] {
        import_and_check("aloha", &[f], &[]);
    }
}

#[test]
fn a_pair_gives_both_nodes_and_the_report_has_lines() {
    let (report, checked, text) = import_and_check(
        "keepalived",
        &["keepalived/lb1.conf", "keepalived/lb2.conf"],
        &[],
    );
    assert!(
        checked.contains("node lb1: cluster imported, peer lb2"),
        "{checked}"
    );
    assert!(
        checked.contains("node lb2: cluster imported, peer lb1"),
        "{checked}"
    );
    assert!(
        text.contains("EDGE = 150") && text.contains("EDGE = 100"),
        "{text}"
    );
    // `notify_master` is on line 31 of lb1.conf (the sync group's).
    let lb1 = corpus("keepalived/lb1.conf");
    let line = std::fs::read_to_string(&lb1)
        .unwrap()
        .lines()
        .position(|l| l.contains("notify_master"))
        .unwrap()
        + 1;
    let needle = format!(
        "{}:{line}: unmapped: vrrp_sync_group EDGE notify_master",
        lb1.display()
    );
    assert!(report.contains(&needle), "{needle}\n{report}");
    assert!(report.contains("differs"), "{report}");
}

#[test]
fn node_names_and_addresses_from_the_command_line() {
    let (_, checked, text) = import_and_check(
        "keepalived",
        &["keepalived/single.conf"],
        &[
            "--cluster-name",
            "edge",
            "--node-name",
            "a",
            "--node-name",
            "b",
            "--address",
            "a:eth0=198.18.0.11/24",
            "--address",
            "b:eth0=198.18.0.12/24",
        ],
    );
    assert!(
        checked.contains("node a: cluster edge, peer b"),
        "{checked}"
    );
    assert!(text.contains("198.18.0.11/24"), "{text}");
}

#[test]
fn malformed_input_exits_1_with_file_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster.toml");
    let out_s = out.display().to_string();
    for (format, rel, line) in [
        ("keepalived", "keepalived/bad/unbalanced.conf", 1),
        ("keepalived", "keepalived/bad/bad-address.conf", 5),
        ("keepalived", "keepalived/bad/missing-include.conf", 4),
        ("aloha", "aloha/bad/bad-balance.cfg", 2),
    ] {
        let path = corpus(rel).display().to_string();
        let (code, _, err) = vrrpctl(&["import", format, &path, "--output", &out_s]);
        assert_eq!(code, 1, "{rel}");
        assert!(err.contains(&format!("{path}:{line}")), "{rel}: {err}");
        assert!(!out.exists(), "{rel}: wrote a file");
    }
}

#[test]
fn an_existing_file_is_kept_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster.toml");
    std::fs::write(&out, "keep me").unwrap();
    let src = corpus("aloha/one-arm.cfg").display().to_string();
    let out_s = out.display().to_string();
    let (code, _, err) = vrrpctl(&["import", "aloha", &src, "--output", &out_s]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let (code, _, err) = vrrpctl(&["import", "aloha", &src, "--output", &out_s, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read_to_string(&out).unwrap(), "keep me");
}

#[test]
fn a_result_that_does_not_validate_is_kept_apart_with_its_diagnostics() {
    // A VIP that is the node's own address needs the owner's priority 255.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("owner.conf");
    std::fs::write(
        &src,
        "vrrp_instance V {\n interface eth0\n virtual_router_id 9\n unicast_src_ip 198.18.0.9\n unicast_peer {\n  198.18.0.12\n }\n virtual_ipaddress {\n  198.18.0.9/24\n }\n}\n",
    )
    .unwrap();
    let out = dir.path().join("cluster.toml");
    let out_s = out.display().to_string();
    let (code, _, err) = vrrpctl(&[
        "import",
        "keepalived",
        src.to_str().unwrap(),
        "--output",
        &out_s,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!out.exists());
    let rejected = format!("{out_s}.rejected");
    assert!(err.contains(&format!("{rejected}:")), "{err}");
    assert!(err.contains("own address"), "{err}");
    let (code, _, _) = vrrpctl(&["check-config", &rejected]);
    assert_eq!(code, 1, "the kept text is the refused one");
}
