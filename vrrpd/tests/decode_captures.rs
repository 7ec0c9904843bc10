//! `vrrpctl decode` on real captures (issue 11): `tcpdump -i any` in a lab host
//! writes Linux cooked v2 (libpcap 1.10); the segment carries vrrpd's adverts on
//! both links beside an IP fragment, a UDP packet with a bad header checksum and
//! ARP. The VRRP frames are shown with their times, the rest is skipped and
//! counted; a snapshot length shorter than an advert and a file cut mid-record
//! are read as far as they go. Needs root and tcpdump (prints SKIP otherwise).

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use integration::Process;
use serde_json::Value;
use support::*;

fn ready(test: &str) -> bool {
    if !integration::have_root(test) {
        return false;
    }
    let tools = vrrpctl().is_some()
        && std::process::Command::new("tcpdump")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !tools {
        if std::env::var(integration::REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
            panic!("{test}: needs tcpdump and vrrpctl built next to vrrpd");
        }
        println!("SKIP (needs tcpdump and vrrpctl built next to vrrpd): {test}");
    }
    tools
}

/// `tcpdump -i any` in `node`, whole frames or `snaplen` bytes of each.
fn tcpdump_any(c: &Cluster, node: &str, snaplen: &str, path: &Path) -> Process {
    let process = c
        .host(node)
        .spawn(
            "tcpdump",
            [
                "-i",
                "any",
                "-n",
                "-s",
                snaplen,
                "-U",
                "-w",
                path.to_str().unwrap(),
            ],
        )
        .unwrap();
    wait_for("tcpdump listening", Duration::from_secs(10), || {
        process.stderr().contains("listening on")
    });
    process
}

fn stop(mut process: Process) {
    process.signal(libc::SIGINT).unwrap();
    process.wait_timeout(Duration::from_secs(10)).unwrap();
}

fn decode(path: &Path, json: bool) -> Output {
    let bin = vrrpctl().unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("decode");
    if json {
        cmd.arg("--json");
    }
    cmd.arg(path).output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// A UDP/IPv4 packet from the client to lb2 (valid header checksum);
/// `flags_frag`: bytes 6-7 (0x2000: more fragments).
fn udp(flags_frag: [u8; 2]) -> Vec<u8> {
    let total = 20 + 8 + 32;
    let mut p = vec![0x45, 0, 0, total as u8, 0x12, 0x34];
    p.extend_from_slice(&flags_frag);
    p.extend_from_slice(&[64, 17, 0, 0, 198, 18, 0, 10, 198, 18, 0, 12]);
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x09, 0, 40, 0, 0]);
    p.extend_from_slice(&[0xab; 32]);
    let sum = vrrp::checksum::internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p
}

/// `packet` in an Ethernet frame from the client to lb2's eth0.
fn to_lb2(c: &Cluster, packet: &[u8]) -> Vec<u8> {
    let mut f = capture::mac(&c.host("lb2").link("eth0").unwrap().mac).to_vec();
    f.extend_from_slice(&capture::mac(&c.host("client").link("eth0").unwrap().mac));
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(packet);
    f
}

#[test]
fn tcpdump_any_captures_are_decoded_with_times() {
    if !ready("tcpdump_any_captures_are_decoded_with_times") {
        return;
    }
    let c = Cluster::up(&[]);
    let _lb1 = c.start("lb1");
    wait_for("lb1 holds both VIPs", PATIENCE, || has_both(c.host("lb1")));
    let whole = c.dir.path().join("any.pcap");
    let snapped = c.dir.path().join("any-snap.pcap");
    let full = tcpdump_any(&c, "lb2", "0", &whole);
    // Cooked v2 header 20 + IPv4 20 + 8 bytes of VRRP: each advert is cut.
    let snap = tcpdump_any(&c, "lb2", "48", &snapped);
    std::thread::sleep(Duration::from_millis(1500));
    let mut bad_sum = udp([0, 0]);
    bad_sum[10] ^= 0x5a;
    let frames = [to_lb2(&c, &udp([0x20, 0x00])), to_lb2(&c, &bad_sum)];
    support::inject::send_frames(c.host("client"), "eth0", &frames);
    std::thread::sleep(Duration::from_millis(2500));
    stop(full);
    stop(snap);

    let bytes = std::fs::read(&whole).unwrap();
    let link = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    println!("tcpdump -i any wrote link type {link}");
    assert!(link == 276 || link == 113, "link type {link}");

    let out = decode(&whole, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 fragments, 1 bad IPv4 header checksum"),
        "{stderr}"
    );
    let lines = json_lines(&out);
    // lb1's adverts on eth0 (VRID 51) and eth1 (VRID 52), about 4 s of them.
    for vrid in [51, 52] {
        let of: Vec<&Value> = lines.iter().filter(|l| l["vrid"] == vrid).collect();
        assert!(of.len() >= 3, "VRID {vrid}: {of:?}");
        assert!(of
            .iter()
            .all(|l| l["status"] == "ok" && l["priority"] == 150));
        assert_eq!(of[0]["vrid_gap_s"], Value::Null);
        for l in &of[1..] {
            let gap = l["vrid_gap_s"].as_f64().unwrap();
            assert!((0.5..1.5).contains(&gap), "1 s adverts, gap {gap}: {l}");
        }
    }
    let relative: Vec<f64> = lines
        .iter()
        .map(|l| l["time_relative_s"].as_f64().unwrap())
        .collect();
    assert!(relative.windows(2).all(|w| w[0] <= w[1]), "{relative:?}");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    let text = String::from_utf8_lossy(&decode(&whole, false).stdout).into_owned();
    println!("{text}");
    assert!(text.contains(" gap "), "{text}");

    // Snapped: the adverts are there, not checkable, not refused.
    let out = decode(&snapped, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = json_lines(&out);
    assert!(lines.len() >= 6, "{stderr}");
    assert!(
        lines.iter().all(|l| l["status"] == "incomplete"),
        "{lines:?}"
    );
    assert!(stderr.contains("cut by the snapshot length"), "{stderr}");

    // Cut mid-record: the complete frames, then the error.
    let cut = c.dir.path().join("any-cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let all = json_lines(&decode(&whole, true));
    let out = decode(&cut, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let shown = json_lines(&out);
    assert!(shown.len() + 1 >= all.len(), "{stderr}");
    assert_eq!(shown[..], all[..shown.len()]);
    assert!(stderr.contains("is truncated"), "{stderr}");
}
