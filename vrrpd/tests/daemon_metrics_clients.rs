//! vrrpd's /metrics endpoint against hostile local clients, as the process shows
//! it: 1000 idle connections, endless header lines and clients that pipeline
//! requests without reading leave a scrape prompt, vrrpd's threads, descriptors and
//! memory bounded, and the node MASTER. Also: vrrpd raised its soft descriptor
//! limit to the hard one. Needs root (prints SKIP otherwise).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

/// vrrpd's metrics address in the example config.
const METRICS: &str = "127.0.0.1:9612";

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (soft, hard) "Max open files" of `pid`.
fn open_files_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("{limits}"));
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

/// The test's own sockets need room.
fn room_for_clients() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

#[test]
fn hostile_metrics_clients_leave_scrapes_prompt_and_vrrpd_bounded() {
    if !integration::have_root("hostile_metrics_clients_leave_scrapes_prompt_and_vrrpd_bounded") {
        return;
    }
    room_for_clients();
    let c = Cluster::up(&[]);
    let lb1 = c.start("lb1");
    wait_for("lb1 MASTER with both VIPs", PATIENCE, || {
        has_both(c.host("lb1"))
    });
    let pid = lb1.pid();
    let (soft, hard) = open_files_limit(pid);
    assert_eq!(soft, hard, "vrrpd did not raise its soft descriptor limit");

    let host = c.host("lb1");
    let addr: SocketAddr = METRICS.parse().unwrap();
    assert!(scrape(host).contains("vrrp_adverts_sent_total"));
    let (threads_before, fds_before, rss_before) = (threads(pid), descriptors(pid), rss_kib(pid));

    // Clients in lb1's namespace; their sockets stay there whatever thread uses them.
    let (idle, endless, pipelining) = host
        .run_in(|| {
            let connect = || TcpStream::connect(addr).unwrap();
            let idle: Vec<TcpStream> = (0..1000).map(|_| connect()).collect();
            let endless: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
            let pipelining: Vec<TcpStream> = (0..4).map(|_| connect()).collect();
            (idle, endless, pipelining)
        })
        .unwrap();
    let requests = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".repeat(2000);
    for mut stream in pipelining.iter() {
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Never read: the server stops reading, or closes, before all of it is sent.
        let _ = stream.write_all(&requests);
    }
    let senders: Vec<_> = endless
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                stream
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nX-Endless: ");
                let chunk = vec![b'a'; 64 * 1024];
                let mut sent = 0usize;
                while sent < 256 << 20 {
                    match stream.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => return (sent, true),
                    }
                }
                (sent, false)
            })
        })
        .collect();

    let start = Instant::now();
    let metrics = scrape(host);
    let took = start.elapsed();
    assert!(
        metrics.contains("vrrp_adverts_sent_total"),
        "{metrics:.300}"
    );
    assert!(took < Duration::from_secs(5), "scrape took {took:?}");

    for sender in senders {
        let (sent, closed) = sender.join().unwrap();
        assert!(closed, "an endless header line was read on: {sent} bytes");
    }
    let (threads_after, fds_after, rss_after) = (threads(pid), descriptors(pid), rss_kib(pid));
    println!(
        "vrrpd with 1000 idle, 4 endless-header and 4 pipelining clients: scrape {took:?}; \
         threads {threads_before} -> {threads_after}; descriptors {fds_before} -> {fds_after}; \
         RSS {rss_before} -> {rss_after} KiB; open files limit {soft}/{hard}"
    );
    // The render thread may have come (or gone) meanwhile.
    assert!(threads_after <= threads_before + 1);
    assert!(fds_after <= fds_before + 64);
    assert!(rss_after < rss_before + 16 * 1024);
    assert!(has_both(host), "lb1 lost its VIPs");

    // A keep-alive client beside them all is answered too.
    let mut keep = host.tcp_connect(addr, Duration::from_secs(10)).unwrap();
    for _ in 0..2 {
        keep.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut reply = [0u8; 512];
        let n = keep.read(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply[..n]);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    drop((idle, pipelining));
}
