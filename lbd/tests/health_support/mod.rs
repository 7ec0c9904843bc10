//! For the health-check namespace tests: a server whose HTTP status and life the
//! test controls and which records who connected, and a client that connects
//! through the VIP every few ms and records what happened.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use integration::{Host, NetnsThread};

/// One connection the server accepted: the peer and the request head it sent.
#[derive(Debug, Clone)]
pub struct Visit {
    pub peer: IpAddr,
    pub head: String,
    pub at: Instant,
}

impl Visit {
    /// Whether lbd's health checker sent it (HTTP checks name themselves; TCP
    /// checks send nothing and reset).
    pub fn is_http_check(&self) -> bool {
        self.head.contains("User-Agent: lbsuite-health")
    }
}

/// An HTTP/1.0 server answering `<name> <peer>` with a status the test sets; it
/// can be stopped (listener closed: connections refused) and started again.
pub struct TestServer {
    pub name: String,
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    pub visits: Arc<Mutex<Vec<Visit>>>,
    running: Option<(Arc<AtomicBool>, thread::JoinHandle<()>)>,
}

impl TestServer {
    /// Starts answering 200 on `addr` inside `host`.
    pub fn start(host: &Host, addr: &str, name: &str) -> TestServer {
        let mut s = TestServer {
            name: name.to_owned(),
            addr: addr.parse().unwrap(),
            status: Arc::new(AtomicU16::new(200)),
            visits: Arc::new(Mutex::new(Vec::new())),
            running: None,
        };
        s.resume(host);
        s
    }

    /// Whether the listener is open.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Opens the listener again (after [`TestServer::stop`]).
    pub fn resume(&mut self, host: &Host) {
        if self.running.is_some() {
            return;
        }
        let listener = host.tcp_listen(self.addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, name, status, visits) = (
            Arc::clone(&stop),
            self.name.clone(),
            Arc::clone(&self.status),
            Arc::clone(&self.visits),
        );
        let thread = thread::spawn(move || accept_loop(listener, flag, name, status, visits));
        self.running = Some((stop, thread));
    }

    /// Closes the listener: new connections are refused.
    pub fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    /// Every connection so far.
    pub fn visits(&self) -> Vec<Visit> {
        self.visits.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    name: String,
    status: Arc<AtomicU16>,
    visits: Arc<Mutex<Vec<Visit>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, peer)) => {
                let (name, status, visits) =
                    (name.clone(), Arc::clone(&status), Arc::clone(&visits));
                thread::spawn(move || answer(s, peer, &name, &status, &visits));
            }
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    // The listener drops here: the kernel refuses from now on.
}

fn answer(
    mut s: TcpStream,
    peer: SocketAddr,
    name: &str,
    status: &AtomicU16,
    visits: &Mutex<Vec<Visit>>,
) {
    let at = Instant::now();
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    visits.lock().unwrap().push(Visit {
        peer: peer.ip(),
        head: String::from_utf8_lossy(&head).into_owned(),
        at,
    });
    if head.is_empty() {
        return; // a TCP check: connected and reset
    }
    let code = status.load(Ordering::Relaxed);
    let body = format!("{name} {}", peer.ip());
    let _ = write!(
        s,
        "HTTP/1.0 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// What one client connection through the VIP did.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started: Instant,
    /// The server that answered, or the error.
    pub result: Result<String, String>,
}

/// A client connecting to `addr` every `every`, until stopped.
pub struct Client {
    stop: Arc<AtomicBool>,
    thread: Option<NetnsThread<Vec<Attempt>>>,
}

impl Client {
    pub fn start(host: &Host, addr: &str, every: Duration) -> Client {
        let addr: SocketAddr = addr.parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = host
            .thread_in(move || {
                let mut out = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    out.push(Attempt {
                        started,
                        result: one_request(addr),
                    });
                    if let Some(rest) = every.checked_sub(started.elapsed()) {
                        thread::sleep(rest);
                    }
                }
                out
            })
            .unwrap();
        Client {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns every attempt.
    pub fn finish(mut self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn one_request(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    body.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| format!("no body in {out:?}"))
}

/// Attempts started in `[from, to)`.
pub fn between(attempts: &[Attempt], from: Instant, to: Instant) -> Vec<&Attempt> {
    attempts
        .iter()
        .filter(|a| a.started >= from && a.started < to)
        .collect()
}

/// (answers per server, failures) of `attempts`.
pub fn tally(attempts: &[&Attempt]) -> (std::collections::BTreeMap<String, usize>, usize) {
    let mut per = std::collections::BTreeMap::new();
    let mut failed = 0;
    for a in attempts {
        match &a.result {
            Ok(s) => *per.entry(s.clone()).or_insert(0) += 1,
            Err(_) => failed += 1,
        }
    }
    (per, failed)
}

/// `service`/`server` in an lbd status reply.
pub fn server<'a>(
    status: &'a serde_json::Value,
    service: &str,
    server: &str,
) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["name"] == service))
        .and_then(|s| s["servers"].as_array())
        .and_then(|list| list.iter().find(|b| b["name"] == server))
        .unwrap_or(&serde_json::Value::Null)
}
