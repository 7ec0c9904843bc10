//! A skewed load for comparing least-connection schedulers (nft in namespaces,
//! IPVS in the VM): servers of unequal speed, clients mixing short and long
//! connections, and the servers' own count of open connections sampled over time.
//!
//! Each server answers a connection after its delay with one line, then keeps it
//! open until the client closes; it counts the connections it holds open (what
//! "active" means to a server, whatever the balancer counts). Each client worker
//! loops: connect to the VIP, read the line, close at once, except every
//! `long_one_in`-th connection, which it holds for `long_hold`; then it pauses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Host, LabError};

/// How long the slow server (srv2) takes to answer; srv1 answers at once.
pub const SLOW_DELAY: Duration = Duration::from_millis(300);

/// A server that answers after a delay and counts its open connections.
pub struct SkewServer {
    open: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SkewServer {
    /// Listens on `addr` in `host`; answers each connection after `delay`.
    pub fn start(host: &Host, addr: SocketAddr, delay: Duration) -> Result<SkewServer, LabError> {
        let listener = host.tcp_listen(addr)?;
        let _ = listener.set_nonblocking(true);
        let open = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (Arc::clone(&open), Arc::clone(&stop));
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                };
                let o = Arc::clone(&o);
                o.fetch_add(1, Ordering::Relaxed);
                thread::spawn(move || {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    thread::sleep(delay);
                    if conn.write_all(b"ok\n").is_ok() {
                        let mut buf = [0u8; 64];
                        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    }
                    o.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(SkewServer { open, stop })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for SkewServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The load's shape.
#[derive(Debug, Clone, Copy)]
pub struct SkewedLoad {
    /// Client workers, each one connection at a time.
    pub workers: usize,
    /// Every this many connections of a worker, one is held.
    pub long_one_in: usize,
    /// How long a long connection is held.
    pub long_hold: Duration,
    /// A worker's pause between two connections (keeps the rate within what one
    /// SNAT address and the client's ports sustain over several runs).
    pub pause: Duration,
    /// How long the load runs (samples are taken after the first `long_hold`).
    pub duration: Duration,
    /// Between two samples of the servers' open connections.
    pub sample_every: Duration,
}

impl Default for SkewedLoad {
    fn default() -> SkewedLoad {
        SkewedLoad {
            workers: 24,
            long_one_in: 5,
            long_hold: Duration::from_millis(1500),
            pause: Duration::from_millis(100),
            duration: Duration::from_secs(6),
            sample_every: Duration::from_millis(100),
        }
    }
}

/// What one run of the load measured.
#[derive(Debug, Clone, Default)]
pub struct LoadRun {
    /// Per sample: max / mean over the servers of open connections / weight.
    pub imbalance: Vec<f64>,
    /// Mean open connections per server over the samples.
    pub mean_open: Vec<f64>,
    /// Connections completed by the clients.
    pub connections: usize,
    /// Connections that failed (connect or read).
    pub failures: usize,
}

impl LoadRun {
    /// The mean of the samples' imbalance (1.0: every server at its share).
    pub fn mean_imbalance(&self) -> f64 {
        mean(&self.imbalance)
    }
}

/// Runs `load` from `client` to `vip`, sampling `servers` (with their weights).
pub fn run(
    client: &Host,
    vip: SocketAddr,
    servers: &[(&SkewServer, f64)],
    load: &SkewedLoad,
) -> Result<LoadRun, LabError> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::with_capacity(load.workers);
    for w in 0..load.workers {
        let (stop, done, failed) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
        let load = *load;
        workers.push(client.thread_in(move || {
            // Workers start out of step: the long connections do not come in waves.
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                thread::sleep(load.pause);
                match one(vip, n % load.long_one_in == 0, load.long_hold, &stop) {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        thread::sleep(Duration::from_millis(10));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })?);
    }
    let start = Instant::now();
    let mut out = LoadRun {
        mean_open: vec![0.0; servers.len()],
        ..LoadRun::default()
    };
    let mut samples = 0.0;
    while start.elapsed() < load.duration {
        thread::sleep(load.sample_every);
        if start.elapsed() < load.long_hold {
            continue;
        }
        let open: Vec<f64> = servers.iter().map(|(s, _)| s.open() as f64).collect();
        let per_weight: Vec<f64> = open.iter().zip(servers).map(|(o, (_, w))| o / w).collect();
        let m = mean(&per_weight);
        if m > 0.0 {
            let max = per_weight.iter().copied().fold(0.0, f64::max);
            out.imbalance.push(max / m);
        }
        for (acc, o) in out.mean_open.iter_mut().zip(&open) {
            *acc += o;
        }
        samples += 1.0;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    if samples > 0.0 {
        for acc in &mut out.mean_open {
            *acc /= samples;
        }
    }
    out.connections = done.load(Ordering::Relaxed);
    out.failures = failed.load(Ordering::Relaxed);
    Ok(out)
}

/// One connection: connect, read the line, hold it if `long`.
fn one(vip: SocketAddr, long: bool, hold: Duration, stop: &AtomicBool) -> std::io::Result<()> {
    let s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim() != "ok" {
        return Err(std::io::Error::other("no answer"));
    }
    if long {
        let until = Instant::now() + hold;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = r.get_mut().flush();
    Ok(())
}

/// The mean of `xs` (0 when empty).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// The median of `xs` (0 when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
