//! What a daemon tells systemd, without systemd: a Unix datagram socket to pass as
//! `NOTIFY_SOCKET`, read on a thread that records each message with its arrival
//! time, and calls back as it arrives (to look at the kernel at that moment).

use std::os::unix::net::UnixDatagram;

use crate::Host;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// One datagram: its lines (`READY=1`, `STATUS=...`) and when it arrived.
#[derive(Debug, Clone)]
pub struct Notification {
    /// When the test read it.
    pub at: Instant,
    /// Its `KEY=value` lines.
    pub lines: Vec<String>,
    /// What the callback found when it arrived (see [`NotifySocket::bind_with`]).
    pub observed: Option<String>,
}

impl Notification {
    /// Whether it carries `line` (e.g. `READY=1`).
    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    /// The value of `key` (`STATUS`), if it carries one.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }
}

type Observer = Box<dyn Fn(&[String]) -> Option<String> + Send>;

/// A bound `NOTIFY_SOCKET`; stops reading when dropped.
pub struct NotifySocket {
    path: PathBuf,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NotifySocket {
    /// Binds `path` and records every datagram.
    pub fn bind(path: &Path) -> std::io::Result<NotifySocket> {
        Self::bind_with(path, |_| None)
    }

    /// Like [`NotifySocket::bind`]; `observe` runs on each datagram as it arrives,
    /// and what it returns is kept with it (e.g. whether a VIP was there then).
    pub fn bind_with(
        path: &Path,
        observe: impl Fn(&[String]) -> Option<String> + Send + 'static,
    ) -> std::io::Result<NotifySocket> {
        let socket = UnixDatagram::bind(path)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let observe: Observer = Box::new(observe);
        let (store, flag) = (Arc::clone(&received), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let at = Instant::now();
                let lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned)
                    .collect();
                let observed = observe(&lines);
                store
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Notification {
                        at,
                        lines,
                        observed,
                    });
            }
        });
        Ok(NotifySocket {
            path: path.to_owned(),
            received,
            stop,
            thread: Some(thread),
        })
    }

    /// Like [`NotifySocket::bind`]; when a datagram with `READY=1` arrives, runs
    /// `argv` and keeps its stdout with it (what the kernel held at that moment:
    /// `ip -n <ns> addr`, `nft list table ...`).
    pub fn bind_observing_ready(path: &Path, argv: Vec<String>) -> std::io::Result<NotifySocket> {
        Self::bind_with(path, move |lines| {
            let (program, args) = argv.split_first()?;
            lines.iter().any(|l| l == "READY=1").then(|| {
                std::process::Command::new(program)
                    .args(args)
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default()
            })
        })
    }

    /// How many datagrams so far carry `line`.
    pub fn count(&self, line: &str) -> usize {
        self.received().iter().filter(|n| n.has(line)).count()
    }

    /// The `WATCHDOG=1` datagrams that arrive in the next `span` (the caller sleeps).
    pub fn watchdog_pings_in(&self, span: Duration) -> usize {
        let before = self.count("WATCHDOG=1");
        thread::sleep(span);
        self.count("WATCHDOG=1") - before
    }

    /// Waits for `RELOADING=1` after the first `skip` datagrams, then `READY=1`
    /// after it; returns the latter.
    pub fn wait_for_reload(&self, skip: usize, timeout: Duration) -> Option<Notification> {
        let (reloading, _) = self.wait_for("RELOADING=1", skip, timeout)?;
        self.wait_for("READY=1", reloading, timeout).map(|(_, n)| n)
    }

    /// The socket's path (the value of `NOTIFY_SOCKET`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Notification> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for a datagram after the first `skip` that carries
    /// `line`; returns its index and the datagram.
    pub fn wait_for(
        &self,
        line: &str,
        skip: usize,
        timeout: Duration,
    ) -> Option<(usize, Notification)> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .received()
                .into_iter()
                .enumerate()
                .skip(skip)
                .find(|(_, n)| n.has(line));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The `ExecReload=` command of the unit file `unit` (one of `dist/`), as it runs
/// for a daemon started on `config`: `/usr/sbin/vrrpctl` becomes `vrrpctl`, the
/// unit's `/etc/lbsuite/cluster.toml` becomes `config`. `None` if the unit has no
/// `ExecReload=` or cannot be read.
fn unit_exec_reload(unit: &Path, vrrpctl: &Path, config: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(unit).ok()?;
    let exec = text.lines().find_map(|l| l.strip_prefix("ExecReload="))?;
    Some(
        exec.split_whitespace()
            .map(|a| match a {
                "/usr/sbin/vrrpctl" => vrrpctl.display().to_string(),
                "/etc/lbsuite/cluster.toml" => config.display().to_string(),
                a => a.to_owned(),
            })
            .collect(),
    )
}

/// Runs the `ExecReload=` of `dist/<daemon>.service` in `host`, as it runs for a
/// daemon started on `config` ([`unit_exec_reload`]), and returns its stdout.
/// Panics (it is for tests) unless it succeeds with `daemon`, and only `daemon`,
/// reloaded.
pub fn reload_as_the_unit(host: &Host, daemon: &str, vrrpctl: &Path, config: &Path) -> String {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(format!("{daemon}.service"));
    let argv = unit_exec_reload(&unit, vrrpctl, config)
        .unwrap_or_else(|| panic!("no ExecReload= in {}", unit.display()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = host
        .exec(&argv)
        .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{}: {}\n{stdout}", argv.join(" "), out.status);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{daemon}: applied")), "{stdout}");
    let others: Vec<&str> = stdout
        .lines()
        .filter(|l| ["vrrpd:", "lbd:"].iter().any(|d| l.starts_with(d)))
        .filter(|l| !l.starts_with(&format!("{daemon}:")))
        .collect();
    assert!(others.is_empty(), "only {daemon} is asked: {stdout}");
    stdout
}
