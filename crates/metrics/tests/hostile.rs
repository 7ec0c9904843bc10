//! Clients that try to exhaust the endpoint: many idle connections, an endless
//! header line, pipelined requests never read, a descriptor shortage. Each test
//! runs the server in a process of its own (this test binary, started again with
//! `server_process`), so that its threads, descriptors and memory are the server's
//! alone. Bounds are generous: the machine may be loaded.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use metrics::prometheus::{IntCounterVec, Opts, Registry};
use metrics::{Limits, MetricsServer};

/// Set in the server process: its settings, as `key=value,...`.
const CHILD_ENV: &str = "METRICS_HOSTILE_SERVER";
/// A scrape counts as prompt below this, however loaded the machine.
const PROMPT: Duration = Duration::from_secs(5);

/// The server process of the other tests; does nothing when run by hand.
#[test]
#[ignore = "started by the other tests of this file as their server process"]
fn server_process() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let setting = |key: &str, default: u64| -> u64 {
        spec.split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    };
    let limits = Limits {
        max_connections: setting("max_connections", 64) as usize,
        idle_timeout: Duration::from_millis(setting("idle_ms", 10_000)),
        request_burst: setting("burst", 8) as u32,
        ..Limits::default()
    };
    let nofile = setting("nofile", 0);
    if nofile > 0 {
        set_nofile(nofile);
    }
    let registry = Registry::new();
    let series = IntCounterVec::new(
        Opts::new("test_series_total", "Series to make the text long"),
        &["backend"],
    )
    .unwrap();
    registry.register(Box::new(series.clone())).unwrap();
    for i in 0..setting("series", 10) {
        series
            .with_label_values(&[format!("backend-{i:06}").as_str()])
            .inc();
    }
    let server = MetricsServer::start_with("127.0.0.1:0".parse().unwrap(), registry, limits)
        .expect("starting the server");
    println!("PORT {}", server.addr().port());
    std::io::stdout().flush().unwrap();
    // Serve until the test closes our stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The server process; killed when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(spec: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "server_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let port = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints "test server_process ... " before it on the same line.
            .find_map(|line| {
                let (_, port) = line.split_once("PORT ")?;
                port.trim().parse::<u16>().ok()
            })
            .expect("the server process printed no port");
        ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .count()
    }

    fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises (or lowers) this process's soft descriptor limit, within the hard one.
fn set_nofile(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = wanted.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// The test's own client sockets need room.
fn room_for_clients() {
    set_nofile(u64::MAX);
}

/// A scrape on a fresh connection: the whole reply and how long it took.
fn scrape(addr: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    (
        String::from_utf8_lossy(&reply).into_owned(),
        start.elapsed(),
    )
}

fn assert_prompt_scrape(addr: SocketAddr, what: &str) -> Duration {
    let (reply, took) = scrape(addr);
    assert!(reply.starts_with("HTTP/1.1 200"), "{what}: {reply:.200}");
    assert!(reply.contains("test_series_total"), "{what}: {reply:.200}");
    assert!(took < PROMPT, "{what}: the scrape took {took:?}");
    took
}

/// The value of the sample `series` (name and labels) in a scrape's reply.
fn sample(reply: &str, series: &str) -> Option<u64> {
    reply
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether the server closed `stream` (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn a_thousand_idle_connections_leave_scrapes_threads_and_descriptors_alone() {
    room_for_clients();
    let server = ServerProcess::start("series=50");
    assert_prompt_scrape(server.addr, "before");
    let (threads, descriptors) = (server.threads(), server.descriptors());

    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    // Accepted in order: once this is answered, all 1000 have been seen.
    let took = assert_prompt_scrape(server.addr, "with 1000 idle connections");
    let (threads_after, descriptors_after) = (server.threads(), server.descriptors());
    eprintln!(
        "1000 idle: scrape {took:?}; threads {threads} -> {threads_after}; \
         descriptors {descriptors} -> {descriptors_after}"
    );
    // One more at most: the render thread may have come and gone.
    assert!(threads_after <= threads + 1, "{threads} -> {threads_after}");
    assert!(
        descriptors_after <= descriptors + Limits::default().max_connections,
        "{descriptors} -> {descriptors_after}"
    );
    drop(idle);
}

#[test]
fn an_endless_header_line_is_cut_off_and_costs_no_memory() {
    room_for_clients();
    let server = ServerProcess::start("series=50");
    assert_prompt_scrape(server.addr, "before");
    let rss = server.rss_kib();

    const CHUNK: usize = 64 * 1024;
    const GIVE_UP: usize = 256 * 1024 * 1024;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nX-Endless: ")
                    .unwrap();
                let chunk = vec![b'a'; CHUNK];
                let mut sent = 0;
                while sent < GIVE_UP {
                    match stream.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e) => return (sent, Some(e.kind())),
                    }
                }
                (sent, None)
            })
        })
        .collect();
    for sender in senders {
        let (sent, error) = sender.join().unwrap();
        eprintln!("endless header: the server closed after {sent} bytes ({error:?})");
        // Closed (reset or broken pipe), not stalled (a write timeout) or read on.
        assert!(
            matches!(
                error,
                Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
            ),
            "sent {sent} bytes: {error:?}"
        );
    }
    let rss_after = server.rss_kib();
    eprintln!("endless header: server RSS {rss} KiB -> {rss_after} KiB");
    assert!(
        rss_after < rss + 4 * 1024,
        "RSS grew from {rss} KiB to {rss_after} KiB"
    );
    assert_prompt_scrape(server.addr, "after");
}

#[test]
fn a_client_that_pipelines_and_never_reads_blocks_no_scrape() {
    room_for_clients();
    // About 360 KB of text per scrape: the responses fill the socket buffers.
    // No rate limit here: only the idle timeout can close these connections.
    let server = ServerProcess::start("series=8000,idle_ms=2000,burst=100000");
    assert_prompt_scrape(server.addr, "before");
    let (descriptors, rss) = (server.descriptors(), server.rss_kib());

    let request = b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".repeat(2000);
    let hostile: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            // The server may stop reading (or close) before all of it is sent.
            let _ = stream.write_all(&request);
            stream
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        slowest = slowest.max(assert_prompt_scrape(
            server.addr,
            &format!("scrape {i} beside 8 pipelining clients"),
        ));
    }
    let rss_after = server.rss_kib();
    // Never read: each stops moving bytes, and is closed after idle_ms.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.descriptors() > descriptors && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let descriptors_after = server.descriptors();
    eprintln!(
        "pipelining: slowest of 5 scrapes {slowest:?}; server RSS {rss} KiB -> {rss_after} KiB; \
         descriptors {descriptors} -> {descriptors_after} once the stuck clients were closed"
    );
    assert!(
        descriptors_after <= descriptors,
        "the stuck connections were not closed: {descriptors} -> {descriptors_after}"
    );
    drop(hostile);
}

#[test]
fn silent_and_slow_clients_are_closed_after_the_idle_timeout() {
    let server = ServerProcess::start("idle_ms=1000");
    let mut silent = TcpStream::connect(server.addr).unwrap();
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    // A byte every 100 ms is progress, but the head is never finished.
    let dripping = thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if slow.write_all(b"a").is_err() {
                return Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(100));
        }
        None
    });
    assert!(closed_within(&mut silent, Duration::from_secs(15)));
    let cut_after = dripping.join().unwrap();
    assert!(cut_after.is_some(), "the dripping client was never closed");
    eprintln!("slow head: closed after {cut_after:?}");
    assert_prompt_scrape(server.addr, "after");
}

#[test]
fn past_the_connection_cap_the_oldest_quiet_connection_goes() {
    let server = ServerProcess::start("max_connections=4");
    let mut clients: Vec<TcpStream> = Vec::new();
    for _ in 0..10 {
        clients.push(TcpStream::connect(server.addr).unwrap());
        // In order: the server sees them one after the other.
        thread::sleep(Duration::from_millis(20));
    }
    assert_prompt_scrape(server.addr, "at the cap");
    // The scrape took a place too: the first seven went, the last three stay.
    assert!(closed_within(&mut clients[0], Duration::from_secs(10)));
    let (reply, _) = scrape(server.addr);
    let shed = sample(&reply, "metrics_connections_shed_total{reason=\"limit\"}");
    // Seven counted; this scrape found the first one's place free again.
    assert_eq!(shed, Some(7), "{reply}");
    assert!(closed_within(&mut clients[6], Duration::from_secs(10)));
    assert!(!closed_within(&mut clients[9], Duration::from_millis(300)));
    assert!(server.descriptors() <= 4 + 16, "{}", server.descriptors());
}

#[test]
fn a_descriptor_shortage_sheds_metrics_clients_and_the_server_lives_on() {
    room_for_clients();
    // Fewer descriptors than the connection cap: accept runs out of them.
    let mut server = ServerProcess::start("nofile=40");
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    let took = assert_prompt_scrape(server.addr, "out of descriptors");
    assert!(server.alive());
    let descriptors = server.descriptors();
    eprintln!("descriptor shortage: scrape {took:?}, server holds {descriptors} descriptors");
    assert!(descriptors <= 40);
    drop(idle);
    assert_prompt_scrape(server.addr, "after");
    let (reply, _) = scrape(server.addr);
    let shed = sample(
        &reply,
        "metrics_connections_shed_total{reason=\"shortage\"}",
    );
    eprintln!("closed for the shortage: {shed:?}");
    assert!(shed.is_some_and(|n| n > 0), "{reply}");
}

#[test]
fn past_its_request_rate_a_connection_gets_429_and_is_closed() {
    let server = ServerProcess::start("burst=3");
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(&b"GET / HTTP/1.1\r\nHost: test\r\n\r\n".repeat(10))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut replies = Vec::new();
    let _ = stream.read_to_end(&mut replies);
    let replies = String::from_utf8_lossy(&replies);
    let statuses: Vec<&str> = replies
        .lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .collect();
    assert_eq!(
        statuses,
        ["200 OK", "200 OK", "200 OK", "429 Too Many Requests"],
        "{replies}"
    );
    assert!(replies.contains("retry-after: 1"), "{replies}");
    assert_prompt_scrape(server.addr, "another connection");
}
