//! IPVS persistence, to compare with the nft backend's
//! (`persistence_keeps_a_client_on_its_server_until_its_timeout` in tests/nft.rs):
//! run inside the VM by integration/vm/ipvs-tests.sh (`--ignored`). A client keeps
//! its server while its template lives, whatever the server set does; once the
//! template has expired it is scheduled anew.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use dataplane::{Dataplane, DesiredState, IpvsBackend, IpvsSettings, Persistence, Scheduler};
use integration::{Host, Lab};
use vm_common::{note, web_state, SNAT_VIP, VIP};

mod vm_common;

/// Greets each connection with `name`, then reads until the client goes.
fn named_server(host: &Host, addr: SocketAddr, name: &'static str) {
    let listener = host.tcp_listen(addr).unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                if s.write_all(format!("{name}\n").as_bytes()).is_ok() {
                    let mut lines = BufReader::new(s).lines();
                    while let Some(Ok(_)) = lines.next() {}
                }
            });
        }
    });
}

/// The server one new connection reaches; the connection ends with a reset, so
/// that IPVS forgets it sooner than after TIME_WAIT's 2 minutes and the
/// template's timeout starts.
fn fetch(client: &Host, vip: SocketAddr) -> String {
    let s = client.tcp_connect(vip, Duration::from_secs(10)).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
    line.trim().to_owned()
}

fn state(weights: [u32; 2], timeout_s: u32) -> DesiredState {
    let mut state = web_state(Scheduler::Rr, weights);
    state.services[0].persistence = Some(Persistence {
        timeout_s,
        prefix_len: 32,
    });
    state
}

#[test]
#[ignore = "needs IPVS: run in the VM"]
fn ipvs_persistence_keeps_a_client_on_its_server_until_its_timeout() {
    let lab = Lab::two_arm().unwrap();
    let (client, lb1) = (&lab["client"], &lab["lb1"]);
    lb1.add_address("eth0", format!("{VIP}/32").parse().unwrap())
        .unwrap();
    lb1.add_address("eth1", format!("{SNAT_VIP}/32").parse().unwrap())
        .unwrap();
    named_server(&lab["srv1"], "198.18.1.21:80".parse().unwrap(), "srv1");
    named_server(&lab["srv2"], "198.18.1.22:80".parse().unwrap(), "srv2");
    let settings = IpvsSettings {
        nft_table: "lbsuite".into(),
        ownership_record: std::env::temp_dir()
            .join(format!("lbsuite-ipvs-{}-persistence", std::process::id())),
        sloppy: false,
    };
    let mut ipvs = lb1
        .run_in(move || IpvsBackend::new(&settings))
        .unwrap()
        .unwrap();
    let timeout_s = 2;
    ipvs.apply(&state([1, 1], timeout_s)).unwrap();
    let vip: SocketAddr = format!("{VIP}:80").parse().unwrap();

    // rr would alternate; the client keeps the server it got first.
    let first = fetch(client, vip);
    let got: Vec<String> = (0..5).map(|_| fetch(client, vip)).collect();
    assert!(got.iter().all(|g| *g == first), "{first} then {got:?}");
    // Whatever the server set does meanwhile: the other server's weight up.
    let other = if first == "srv1" { 1 } else { 0 };
    let mut weights = [1, 1];
    weights[other] = 3;
    ipvs.apply(&state(weights, timeout_s)).unwrap();
    let after: Vec<String> = (0..4).map(|_| fetch(client, vip)).collect();
    assert!(after.iter().all(|g| *g == first), "{first} then {after:?}");
    let templates = lb1.exec_ok(&["ipvsadm", "-Lnc"]).unwrap();
    println!("{templates}");

    // Idle: the template goes timeout_s after the client's last connection is gone
    // (IPVS keeps a template while it controls connections; measured: about 60 s
    // after the resets); then the client is scheduled anew, to the other server
    // (round robin goes on from the first pick).
    let idle = Instant::now();
    let end = idle + Duration::from_secs(90);
    loop {
        let table = lb1.exec_ok(&["ipvsadm", "-Lnc"]).unwrap();
        if !table.contains("198.18.0.10") {
            break;
        }
        assert!(
            Instant::now() < end,
            "the template did not expire:\n{table}"
        );
        thread::sleep(Duration::from_millis(500));
    }
    let forgotten = idle.elapsed();
    let next = fetch(client, vip);
    let kept: Vec<String> = (0..3).map(|_| fetch(client, vip)).collect();
    note(&format!(
        "ipvs persistence (rr, timeout {timeout_s} s, /32): first {first}, 5 more {got:?}, after a weight change {after:?}; template gone {:.1} s after the last connection; then {next}, kept {kept:?}",
        forgotten.as_secs_f64()
    ));
    assert_ne!(next, first, "scheduled anew after the template expired");
    assert!(kept.iter().all(|g| *g == next), "{next} then {kept:?}");
    ipvs.teardown().unwrap();
}
