//! `vrrpctl decode` as an operator runs it: on keepalived captures and on
//! hex lines, checking the printed fields.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn vector(name: &str) -> String {
    format!(
        "{}/../crates/vrrp/tests/vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn decodes_a_capture_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(["decode", "--json", &vector("s8.pcap")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "2 adverts; the 5 GARPs are skipped");
    let first = &lines[0];
    assert_eq!(first["frame"], 1);
    assert_eq!(first["version"], 3);
    assert_eq!(first["type"], 1);
    assert_eq!(first["vrid"], 81);
    assert_eq!(first["priority"], 150);
    assert_eq!(first["count"], 1);
    assert_eq!(first["interval"], 100);
    assert_eq!(first["checksum"], "0xcade");
    assert_eq!(first["checksum_ok"], true);
    assert_eq!(first["checksum_form"], "pseudo_header");
    assert_eq!(first["addresses"], serde_json::json!(["198.18.0.181"]));
    assert_eq!(first["auth_type"], Value::Null);
    assert_eq!(first["src"], "198.18.0.1");
    assert_eq!(first["dst"], "224.0.0.18");
    assert_eq!(first["ttl"], 255);
    assert_eq!(first["error"], Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("7 frames: 2 VRRP (0 refused), 5 non-VRRP skipped"),
        "{stderr}"
    );
}

#[test]
fn text_output_and_refused_packets_from_stdin() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(["decode"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // s2's first advert (password secret12), then the same with one bit of
    // the priority flipped.
    let good = "210c9603010186cac6120079c612007ac612007b7365637265743132";
    let bad = "210c9703010186cac6120079c612007ac612007b7365637265743132";
    writeln!(child.stdin.take().unwrap(), "{good}\n# a comment\n{bad}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused packet makes the exit status 1"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].contains("VRRPv2 vrid 12 prio 150 count 3 int 1s auth 1"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("ok (message_only) addrs 198.18.0.121,198.18.0.122,198.18.0.123"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("#3 "), "{}", lines[1]);
    assert!(lines[1].contains("ERROR bad_checksum"), "{}", lines[1]);
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(["decode", "/nonexistent/capture.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/capture.pcap"));
}
