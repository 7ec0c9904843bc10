//! The sync port takes nothing unbounded (needs root, and vrrpd built next to lbd):
//! a 10 MB line without end sent from the peer's address costs lbd no more than the
//! line bound, drops that connection and is counted; a connection from another
//! address is refused and counted; the real peer's stream goes on.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::held::*;
use support::*;

/// `field` (e.g. `VmRSS`) of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Connects from the current namespace to `to`, sends `bytes` bytes without a
/// newline, then waits for the other side to close. Returns (bytes sent, how the
/// connection ended).
fn endless_line(to: &str, bytes: usize) -> (usize, String) {
    let mut s = TcpStream::connect(to).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < bytes {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => return (sent, format!("write: {e}")),
        }
    }
    match s.read(&mut [0u8; 16]) {
        Ok(0) => (sent, "closed".to_owned()),
        Ok(n) => (sent, format!("{n} bytes came back")),
        Err(e) => (sent, format!("read: {e}")),
    }
}

#[test]
fn an_endless_line_on_the_sync_port_is_cut_off_and_sync_goes_on() {
    if !integration::have_root("an_endless_line_on_the_sync_port_is_cut_off_and_sync_goes_on") {
        return;
    }
    let (setup, daemons) = two_nodes(true, &[]);
    // lb2 (BACKUP) receives lb1's stream; the line comes from lb1's address.
    let pid = daemons.lbd2.pid();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let rss_before = status_kib(pid, "VmRSS");
    let (sent, end) = setup
        .host("lb1")
        .run_in(|| endless_line("198.18.1.12:8848", 10 << 20))
        .unwrap();
    let peak = status_kib(pid, "VmHWM");
    println!(
        "lbd on lb2: VmRSS {rss_before} KiB before, peak {peak} KiB while {sent} bytes of one \
         line were sent ({end})"
    );
    assert!(
        peak < rss_before + 6 * 1024,
        "lbd grew from {rss_before} KiB to {peak} KiB"
    );
    assert!(end != "0 bytes came back", "{end}");
    let sync = &setup.status("lb2")["sync"];
    println!("lb2 sync: {sync}");
    assert_eq!(sync["lines_too_long"], 1, "{sync}");
    let metrics = scrape(setup.host("lb2"), "127.0.0.1:9613");
    assert_eq!(sample(&metrics, "lbd_sync_lines_too_long_total"), Some(1.0));

    // Another address is refused, counted, and closed.
    let (_, end) = setup
        .host("srv1")
        .run_in(|| endless_line("198.18.1.12:8848", 64 << 10))
        .unwrap();
    println!("from srv1: {end}");
    wait_for("the refusal counted", PATIENCE, || {
        setup.status("lb2")["sync"]["connections_refused"]["not_peer"] == 1
    });

    // The real stream goes on: new connections through lb1 reach lb2's store.
    let mut held = HeldConnections::open(&setup, 20);
    wait_for("lb2 holds lb1's 20 new entries", PATIENCE, || {
        let s = &setup.status("lb2")["sync"];
        s["entries_stored"].as_u64().is_some_and(|n| n >= 20) && s["receiving"] == true
    });
    assert_eq!(held.survivors(Duration::from_secs(10)), 20);
    assert!(status_kib(pid, "VmRSS") < rss_before + 6 * 1024);
}
