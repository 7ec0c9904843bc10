//! Connection-state sync benchmark: lbd's sync beside conntrackd (FTFW) on the same
//! two-node lab, in the same run.
//!
//! ```text
//! sync_bench [--runs N] [--only commit|rate|stall] [--sizes 10000,100000,200000]
//!            [--rates 5000,10000,20000,40000] [--intervals-ms 1000,100,30,10]
//!            [--endpoint-rto-min-ms N]
//! ```
//!
//! - commit: the takeover's commit of the peer's entries at 10,000 / 100,000 /
//!   200,000 synced entries: lbd's prepare (drill out and back; the backup wrote the
//!   entries as they arrived) against `conntrackd -c` (the external cache into an
//!   empty kernel table, as at a keepalived notify_master).
//! - rate: new flows per second replicated without loss (no event overflow, the
//!   backup holds every flow) and the CPU it costs sender and receiver. The flows are
//!   real: the client sends a SYN per flow through lb1, which balances and
//!   source-NATs it, and the server's SYN-ACK passes back (two events a flow).
//! - stall: 200 connections echo every 20 ms through the VIP; lb1 crashes; the
//!   longest pause each connection saw, at each advert interval.
//!
//! Needs root; builds on the release binaries next to it (`cargo build --release
//! -p lbd -p vrrpd`). Entries of "other clients" are written into lb1's kernel
//! through ctnetlink (established, DNAT to srv1), so both daemons see conntrack events
//! exactly as from real flows.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use benchmarks::{cpu_seconds, thread_cpu_seconds};
use integration::{Host, Lab, Process};

const VIP: &str = "198.18.0.100";
const SERVER: &str = "198.18.1.21";
const CONNECTIONS: usize = 200;

#[derive(Debug)]
struct Args {
    runs: usize,
    only: Option<String>,
    sizes: Vec<usize>,
    rates: Vec<usize>,
    intervals: Vec<u32>,
    /// `rto_min` set on the client's and the servers' routes (0: the kernel's 200 ms).
    endpoint_rto_min_ms: u32,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| anyhow!("not a number: {x}")))
        .collect()
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        only: None,
        sizes: vec![10_000, 100_000, 200_000],
        rates: vec![5_000, 10_000, 20_000, 40_000],
        intervals: vec![1000, 100, 30, 10],
        endpoint_rto_min_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--runs" => args.runs = value()?.parse()?,
            "--only" => args.only = Some(value()?),
            "--sizes" => args.sizes = list(&value()?)?,
            "--rates" => args.rates = list(&value()?)?,
            "--intervals-ms" => args.intervals = list(&value()?)?,
            "--endpoint-rto-min-ms" => args.endpoint_rto_min_ms = value()?.parse()?,
            "-h" | "--help" => {
                println!("sync_bench [--runs N] [--only commit|rate|stall] [--sizes A,B] [--rates A,B] [--intervals-ms A,B] [--endpoint-rto-min-ms N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !integration::have_root("sync_bench") {
        bail!("sync_bench needs root (network namespaces)");
    }
    let bins = Binaries::find()?;
    let conntrackd = Path::new(CONNTRACKD).exists();
    if !conntrackd {
        println!(
            "NOTE: {CONNTRACKD} not found (apt-get install conntrackd): its columns stay empty"
        );
    }
    let want = |s: &str| args.only.as_deref().is_none_or(|o| o == s);
    if want("commit") {
        commit(&bins, &args, conntrackd)?;
    }
    if want("rate") {
        rate(&bins, &args, conntrackd)?;
    }
    if want("stall") {
        stall(&bins, &args)?;
    }
    Ok(())
}

/// lbd and vrrpd next to this binary.
struct Binaries {
    lbd: PathBuf,
    vrrpd: PathBuf,
}

impl Binaries {
    fn find() -> Result<Binaries> {
        let exe = std::env::current_exe().context("locating sync_bench")?;
        let bin = |name: &str| {
            let p = exe.with_file_name(name);
            if p.exists() {
                Ok(p)
            } else {
                Err(anyhow!(
                    "{} missing: cargo build --release -p lbd -p vrrpd",
                    p.display()
                ))
            }
        };
        Ok(Binaries {
            lbd: bin("lbd")?,
            vrrpd: bin("vrrpd")?,
        })
    }
}

// ---------------------------------------------------------------------------
// The two nodes with lbd and vrrpd

/// The service's source NAT in a lab.
#[derive(Debug, Clone, Copy)]
enum Snat {
    /// A pool of 10,000 ports (the stall and commit labs).
    Pool,
    /// One address with every port: room for the rate lab's 60,000 and more new flows
    /// per server.
    Address,
}

/// The lab, a directory for configs and sockets, and the daemons.
struct Ours {
    lab: Lab,
    dir: tempfile::TempDir,
    daemons: BTreeMap<String, Process>,
}

impl Ours {
    /// Both nodes up from the example (pool SNAT, no checks, sync on; adverts every
    /// `advert_ms`), lb1 MASTER and lb2 BACKUP, both streams up.
    fn up(bins: &Binaries, advert_ms: u32) -> Result<Ours> {
        Self::up_with(bins, advert_ms, Snat::Pool)
    }

    /// As [`Ours::up`], with the service's source NAT as `snat` says.
    fn up_with(bins: &Binaries, advert_ms: u32, snat: Snat) -> Result<Ours> {
        let lab = Lab::two_arm()?;
        let dir = tempfile::tempdir()?;
        let mut ours = Ours {
            lab,
            dir,
            daemons: BTreeMap::new(),
        };
        echo_server(&ours.lab["srv1"], "198.18.1.21:80")?;
        echo_server(&ours.lab["srv2"], "198.18.1.22:80")?;
        for node in ["lb1", "lb2"] {
            std::fs::write(ours.config(node), ours.config_text(node, advert_ms, snat)?)?;
        }
        for node in ["lb1", "lb2"] {
            ours.start(bins, node, "lbd")?;
        }
        for node in ["lb1", "lb2"] {
            wait_for("lbd applied", Duration::from_secs(30), || {
                ours.lbd(node)
                    .is_ok_and(|s| s["dataplane"]["last_apply"]["ok"] == true)
            })?;
            ours.start(bins, node, "vrrpd")?;
        }
        ours.wait_master("lb1")?;
        wait_for("both sync streams up", Duration::from_secs(30), || {
            ["lb1", "lb2"].iter().all(|n| {
                ours.lbd(n).is_ok_and(|s| {
                    s["sync"]["connected"] == true && s["sync"]["peer_complete"] == true
                })
            })
        })?;
        Ok(ours)
    }

    fn config(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.toml"))
    }

    fn socket(&self, node: &str, daemon: &str) -> PathBuf {
        self.dir.path().join(format!("{node}-{daemon}.sock"))
    }

    fn config_text(&self, node: &str, advert_ms: u32, snat: Snat) -> Result<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml.example");
        let mut text = std::fs::read_to_string(path)?;
        let single = "snat = { address = \"198.18.1.100\" }";
        let edits = [
            ("check = \"web-http\"", String::new()),
            (
                single,
                match snat {
                    Snat::Pool => "snat = { pool = [{ address = \"198.18.1.100\", ports = \"20000-29999\" }] }"
                        .to_owned(),
                    Snat::Address => single.to_owned(),
                },
            ),
            (
                "advert_interval_ms = 1000",
                format!("advert_interval_ms = {advert_ms}"),
            ),
            (
                "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
                format!("vrrpd_socket = {:?}", self.socket(node, "vrrpd")),
            ),
            (
                "lbd_socket = \"/run/lbsuite/lbd.sock\"",
                format!("lbd_socket = {:?}", self.socket(node, "lbd")),
            ),
        ];
        for (from, to) in edits {
            if !text.contains(from) {
                bail!("cluster.toml.example lacks {from:?}");
            }
            text = text.replace(from, &to);
        }
        Ok(text)
    }

    fn start(&mut self, bins: &Binaries, node: &str, daemon: &str) -> Result<()> {
        let bin = if daemon == "lbd" {
            &bins.lbd
        } else {
            &bins.vrrpd
        };
        let config = self.config(node);
        let mut cmd = self.lab[node].command(bin);
        cmd.args(["--config", &config.to_string_lossy(), "--node", node])
            .env("RUST_LOG", "info");
        let p = self.lab[node].spawn_command(cmd, daemon)?;
        self.daemons.insert(format!("{node}-{daemon}"), p);
        Ok(())
    }

    fn pid(&self, node: &str, daemon: &str) -> Result<u32> {
        self.daemons
            .get(&format!("{node}-{daemon}"))
            .map(Process::pid)
            .ok_or_else(|| anyhow!("{node} {daemon} not running"))
    }

    fn lbd(&self, node: &str) -> Result<Value> {
        request(&self.socket(node, "lbd"), "status", Value::Null)
    }

    fn vrrpd(&self, node: &str, method: &str, params: Value) -> Result<Value> {
        request(&self.socket(node, "vrrpd"), method, params)
    }

    fn role(&self, node: &str) -> Option<String> {
        self.lbd(node)
            .ok()
            .and_then(|s| s["vrrpd"]["groups"]["edge"].as_str().map(str::to_owned))
    }

    /// Waits until `node` is MASTER and the other node's lbd does not say MASTER.
    fn wait_master(&self, node: &str) -> Result<()> {
        let other = if node == "lb1" { "lb2" } else { "lb1" };
        wait_for(&format!("{node} MASTER"), Duration::from_secs(60), || {
            let other_master = self.lbd(other).is_ok_and(|s| {
                s["vrrpd"]["connected"] == true && s["vrrpd"]["groups"]["edge"] == "MASTER"
            });
            self.role(node).as_deref() == Some("MASTER") && !other_master
        })
    }

    /// Waits until `node` holds at least `n` of its peer's entries, all in its
    /// kernel, from a complete dump.
    fn wait_synced(&self, node: &str, n: usize, patience: Duration) -> Result<()> {
        wait_for(&format!("{node} holds {n} entries"), patience, || {
            self.lbd(node).is_ok_and(|s| {
                let s = &s["sync"];
                s["entries_stored"]
                    .as_u64()
                    .is_some_and(|k| k as usize >= n)
                    && s["entries_pending"] == 0
                    && s["peer_complete"] == true
            })
        })
    }
}

/// One control request over `socket`.
fn request(socket: &Path, method: &str, params: Value) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = ctl::Client::connect(socket).await?;
        let v = client
            .request_with_timeout(method, params, Duration::from_secs(60))
            .await?;
        Ok::<_, anyhow::Error>(v)
    })
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Echoes every byte back on each accepted connection.
fn echo_server(host: &Host, addr: &str) -> Result<()> {
    let listener = host.tcp_listen(addr.parse()?)?;
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Entries of other clients

/// Entry `i` of the made-up clients of the VIP (DNAT to srv1).
fn entry(i: usize) -> ctsync::Entry {
    let vip: IpAddr = VIP.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let srv: IpAddr = SERVER.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    ctsync::synthetic::background_entry(i, vip, srv)
}

/// Writes entries `range` into `host`'s kernel.
fn inject(host: &Host, range: std::ops::Range<usize>) -> Result<()> {
    let entries: Vec<_> = range.map(entry).collect();
    let report =
        host.run_in(|| ctsync::Conntrack::open().and_then(|mut c| c.replace_batch(&entries)))??;
    if report.created + report.replaced != entries.len() {
        bail!("injecting: {report:?}");
    }
    Ok(())
}

/// Entries of the test's VIP in `host`'s kernel.
fn count_in_kernel(host: &Host) -> Result<usize> {
    let out = host.exec_ok(&["conntrack", "-L", "-d", VIP, "-o", "id"])?;
    Ok(out.lines().filter(|l| l.contains("dst=")).count())
}

// ---------------------------------------------------------------------------
// conntrackd

const CONNTRACKD: &str = "/usr/sbin/conntrackd";

/// conntrackd (FTFW over eth1, UDP) on both nodes of `lab`.
struct Conntrackd {
    dir: tempfile::TempDir,
    procs: Vec<Process>,
}

impl Conntrackd {
    fn up(lab: &Lab) -> Result<Conntrackd> {
        let dir = tempfile::tempdir()?;
        let mut procs = Vec::new();
        for (node, me, peer) in [
            ("lb1", "198.18.1.11", "198.18.1.12"),
            ("lb2", "198.18.1.12", "198.18.1.11"),
        ] {
            let conf = dir.path().join(format!("{node}.conf"));
            std::fs::write(&conf, conntrackd_conf(dir.path(), node, me, peer))?;
            let conf = conf.to_string_lossy().into_owned();
            procs.push(lab[node].spawn(CONNTRACKD, ["-C", conf.as_str()])?);
        }
        let c = Conntrackd { dir, procs };
        thread::sleep(Duration::from_millis(500));
        Ok(c)
    }

    fn conf(&self, node: &str) -> String {
        self.dir
            .path()
            .join(format!("{node}.conf"))
            .to_string_lossy()
            .into_owned()
    }

    fn pid(&self, node: &str) -> u32 {
        self.procs[usize::from(node == "lb2")].pid()
    }

    /// Runs `conntrackd -C <conf> <args>` in `node`; stdout.
    fn ctl(&self, lab: &Lab, node: &str, args: &[&str]) -> Result<String> {
        let conf = self.conf(node);
        let mut argv = vec![CONNTRACKD, "-C", conf.as_str()];
        argv.extend_from_slice(args);
        Ok(lab[node].exec_ok(&argv)?)
    }

    /// Entries in `node`'s external cache (the peer's).
    fn external(&self, lab: &Lab, node: &str) -> Result<usize> {
        let out = self.ctl(lab, node, &["-s"])?;
        out.lines()
            .skip_while(|l| !l.starts_with("cache external:"))
            .find_map(|l| l.trim().strip_prefix("current active connections:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("conntrackd -s: {out}"))
    }
}

fn conntrackd_conf(dir: &Path, node: &str, me: &str, peer: &str) -> String {
    format!(
        r#"Sync {{
    Mode FTFW {{
        DisableExternalCache off
    }}
    UDP {{
        IPv4_address {me}
        IPv4_Destination_Address {peer}
        Port 3780
        Interface eth1
        SndSocketBuffer 24985600
        RcvSocketBuffer 24985600
        Checksum on
    }}
}}
General {{
    HashSize 65536
    HashLimit 1048576
    LogFile {dir}/{node}.log
    LockFile {dir}/{node}.lock
    UNIX {{
        Path {dir}/{node}.ctl
    }}
    NetlinkBufferSize 4194304
    NetlinkBufferSizeMaxGrowth 67108864
    NetlinkOverrunResync on
    Filter From Userspace {{
        Protocol Accept {{
            TCP
        }}
        Address Ignore {{
            IPv4_address 127.0.0.1
            IPv4_address {me}
        }}
    }}
}}
"#,
        dir = dir.display()
    )
}

// ---------------------------------------------------------------------------
// Figures

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("[{lo:.3}-{hi:.3}]")
}

fn cpu_total(pid: u32) -> f64 {
    cpu_seconds(pid).map(|(u, s)| u + s).unwrap_or(f64::NAN)
}

fn cpu_sys(pid: u32) -> f64 {
    cpu_seconds(pid).map(|(_, s)| s).unwrap_or(f64::NAN)
}

/// CPU seconds of lbd's sync threads (`sync-send`, `sync-recv`, `sync-refresh`), user
/// and system: the sync's own cost, without what the benchmark's status polls cost
/// lbd (each a conntrack dump of the services' VIPs, at most one a second).
fn cpu_sync_threads(pid: u32) -> f64 {
    thread_cpu_seconds(pid, "sync-")
        .map(|(u, s)| u + s)
        .unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------
// commit

fn commit(bins: &Binaries, args: &Args, conntrackd: bool) -> Result<()> {
    println!(
        "== takeover commit of the synced entries (ms, median [min-max] of {} takeovers)",
        args.runs
    );
    println!("   lbd: the new master's prepare writes what its kernel lacks (drill out and back)");
    println!("   conntrackd: `conntrackd -c` of the external cache into an empty table");
    for &n in &args.sizes {
        let (ours_commit, ours_prepare, resync) = commit_ours(bins, n, args.runs)?;
        let theirs = if conntrackd {
            commit_conntrackd(n, args.runs)?
        } else {
            Vec::new()
        };
        let (mut a, mut b, mut c, mut d) = (
            ours_commit.clone(),
            ours_prepare,
            theirs.clone(),
            resync.clone(),
        );
        println!(
            "  {n:>7} entries   lbd commit {:>8.3} {}   (whole prepare {:.3})   conntrackd -c {:>8.1} {}   lbd backup re-sync after leaving MASTER {:.0} ms",
            median(&mut a),
            spread(&ours_commit),
            median(&mut b),
            median(&mut c),
            spread(&theirs),
            median(&mut d),
        );
    }
    Ok(())
}

/// lbd: `runs` takeovers (drills out and back) with `n` synced entries; the prepare's
/// commit and whole duration (ms), and how long lb1 took to hold lb2's complete state
/// again after it left MASTER.
fn commit_ours(bins: &Binaries, n: usize, runs: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let ours = Ours::up(bins, 1000)?;
    inject(&ours.lab["lb1"], 0..n)?;
    ours.wait_synced("lb2", n, Duration::from_secs(300))?;
    let (mut commits, mut prepares, mut resyncs) = (Vec::new(), Vec::new(), Vec::new());
    while commits.len() < runs {
        let released = Instant::now();
        let drill = thread::scope(|scope| -> Result<Value> {
            let d = scope.spawn(|| ours.vrrpd("lb1", "drill.failover", json!({})));
            // lb1 holds lb2's complete state again (its re-sync after leaving MASTER).
            let mut resynced = None;
            wait_for("lb1 BACKUP", Duration::from_secs(30), || {
                ours.role("lb1").as_deref() == Some("BACKUP")
            })?;
            wait_for("lb1 re-synced", Duration::from_secs(300), || {
                let ok = ours.lbd("lb1").is_ok_and(|s| {
                    s["sync"]["peer_complete"] == true && s["sync"]["entries_pending"] == 0
                });
                if ok {
                    resynced = Some(released.elapsed());
                }
                ok
            })?;
            if let Some(r) = resynced {
                resyncs.push(r.as_secs_f64() * 1e3);
            }
            d.join().map_err(|_| anyhow!("drill thread"))?
        })?;
        if drill["state"] != "MASTER" {
            bail!("drill did not come back: {drill}");
        }
        for node in ["lb2", "lb1"] {
            let p = &ours.lbd(node)?["prepare"]["last"]["reply"];
            let (Some(c), Some(d)) = (p["sync"]["elapsed_ms"].as_f64(), p["duration_ms"].as_f64())
            else {
                bail!("{node}: no prepare report: {p}");
            };
            commits.push(c);
            prepares.push(d);
        }
        ours.wait_synced("lb2", n, Duration::from_secs(300))?;
    }
    Ok((commits, prepares, resyncs))
}

/// conntrackd: `runs` commits of `n` entries synced from lb1 into lb2's empty table.
fn commit_conntrackd(n: usize, runs: usize) -> Result<Vec<f64>> {
    let lab = Lab::two_arm()?;
    let ct = Conntrackd::up(&lab)?;
    inject(&lab["lb1"], 0..n)?;
    wait_for(
        "conntrackd on lb2 holds every entry",
        Duration::from_secs(300),
        || ct.external(&lab, "lb2").is_ok_and(|k| k >= n),
    )?;
    let mut out = Vec::new();
    for _ in 0..runs {
        lab["lb2"].exec_ok(&["conntrack", "-F"])?;
        let start = Instant::now();
        ct.ctl(&lab, "lb2", &["-c"])?;
        out.push(start.elapsed().as_secs_f64() * 1e3);
        let k = count_in_kernel(&lab["lb2"])?;
        if k < n {
            bail!("conntrackd -c left {k} of {n} entries in lb2's kernel");
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// rate

fn rate(bins: &Binaries, args: &Args, conntrackd: bool) -> Result<()> {
    const SECONDS: usize = 3;
    println!("== new flows replicated per second ({SECONDS} s of new flows at each rate; CPU in % of one core over those seconds; medians of {} runs)", args.runs);
    println!("   a flow: the client's SYN through lb1 (balanced, source-NATed) and the server's SYN-ACK back: two events");
    println!("   lost: the kernel dropped events for the sender (lbd: it then sends a full dump; conntrackd: the backup lacks flows after 60 s)");
    println!("   CPU: the whole process (lbd: with the benchmark's status polls, a conntrack dump each second while it waits for");
    println!("   the backup), its kernel (sys) share, and for lbd its sync threads alone (sync-send, sync-recv, sync-refresh: the");
    println!("   sync's own cost); conntrackd is one thread, all of it sync");
    println!("   lbd (own): the same with conntrack events off in lb2's namespace. The lab's nodes share one kernel, whose");
    println!("   netlink keeps one listener map for every namespace: lb1's subscription makes lb2's kernel build an event");
    println!("   message for each entry lbd writes there and throw it away (~20 % of lb2's lbd in perf). A backup on a");
    println!("   machine of its own has no listener while it is not MASTER, and builds none.");
    for &r in &args.rates {
        let n = r * SECONDS;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut own_kernel = Vec::new();
        for _ in 0..args.runs {
            ours.push(rate_ours(bins, r, n, false)?);
            own_kernel.push(rate_ours(bins, r, n, true)?);
            if conntrackd {
                theirs.push(rate_conntrackd(r, n)?);
            }
        }
        println!("  {r:>6}/s  lbd        {}", RateFigures::medians(&ours));
        println!(
            "  {r:>6}/s  lbd (own)  {}",
            RateFigures::medians(&own_kernel)
        );
        if conntrackd {
            println!("  {r:>6}/s  conntrackd {}", RateFigures::medians(&theirs));
        }
    }
    Ok(())
}

impl RateFigures {
    /// Medians of the runs (loss: in any run).
    fn medians(runs: &[RateFigures]) -> String {
        let m = |f: fn(&RateFigures) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        let lost = runs.iter().filter(|r| r.lost).count();
        format!(
            "achieved {:>6.0}/s  sender {:>5.1} % (sys {:>4.1}, sync threads {:>5.1})  receiver {:>5.1} % (sys {:>4.1}, sync threads {:>5.1})  backup had all after {:>6.0} ms  {}",
            m(|x| x.achieved),
            m(|x| x.sender_cpu) * 100.0,
            m(|x| x.sender_sys) * 100.0,
            m(|x| x.sender_sync) * 100.0,
            m(|x| x.receiver_cpu) * 100.0,
            m(|x| x.receiver_sys) * 100.0,
            m(|x| x.receiver_sync) * 100.0,
            m(|x| x.caught_up_ms),
            if lost > 0 {
                format!("LOST EVENTS in {lost} of {} runs (resync)", runs.len())
            } else {
                format!("no loss in {} runs", runs.len())
            }
        )
    }
}

struct RateFigures {
    achieved: f64,
    sender_cpu: f64,
    receiver_cpu: f64,
    /// Of which in the kernel (system time), sender and receiver.
    sender_sys: f64,
    receiver_sys: f64,
    /// Of which in the sync threads (lbd; conntrackd: all of it).
    sender_sync: f64,
    receiver_sync: f64,
    caught_up_ms: f64,
    lost: bool,
}

fn rate_ours(bins: &Binaries, r: usize, n: usize, own_kernel: bool) -> Result<RateFigures> {
    let ours = Ours::up_with(bins, 1000, Snat::Address)?;
    if own_kernel {
        ours.lab["lb2"].exec_ok(&["sysctl", "-qw", "net.netfilter.nf_conntrack_events=0"])?;
    }
    let (p1, p2) = (ours.pid("lb1", "lbd")?, ours.pid("lb2", "lbd")?);
    let lost_before = ours.lbd("lb1")?["sync"]["events_lost"]
        .as_u64()
        .unwrap_or(0);
    let (c1, c2) = (cpu_total(p1), cpu_total(p2));
    let (s1, s2) = (cpu_sys(p1), cpu_sys(p2));
    let (t1, t2) = (cpu_sync_threads(p1), cpu_sync_threads(p2));
    let start = Instant::now();
    let took = open_flows_at(&ours.lab, n, r)?;
    let made = count_in_kernel(&ours.lab["lb1"])?;
    ours.wait_synced("lb2", made, Duration::from_secs(300))?;
    let caught_up = start.elapsed();
    let (c1, c2) = (cpu_total(p1) - c1, cpu_total(p2) - c2);
    let (s1, s2) = (cpu_sys(p1) - s1, cpu_sys(p2) - s2);
    let (t1, t2) = (cpu_sync_threads(p1) - t1, cpu_sync_threads(p2) - t2);
    let lost = ours.lbd("lb1")?["sync"]["events_lost"]
        .as_u64()
        .unwrap_or(0)
        - lost_before;
    let secs = took.as_secs_f64();
    Ok(RateFigures {
        achieved: made as f64 / secs,
        sender_cpu: c1 / secs,
        receiver_cpu: c2 / secs,
        sender_sys: s1 / secs,
        receiver_sys: s2 / secs,
        sender_sync: t1 / secs,
        receiver_sync: t2 / secs,
        caught_up_ms: caught_up.as_secs_f64() * 1e3,
        lost: lost > 0,
    })
}

fn rate_conntrackd(r: usize, n: usize) -> Result<RateFigures> {
    let lab = Lab::two_arm()?;
    echo_server(&lab["srv1"], "198.18.1.21:80")?;
    echo_server(&lab["srv2"], "198.18.1.22:80")?;
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.nft");
    if !NFT_RULES.contains(RULES_POOL) {
        bail!("NFT_RULES lacks {RULES_POOL:?}");
    }
    std::fs::write(&rules, NFT_RULES.replace(RULES_POOL, RULES_ADDRESS))?;
    for node in ["lb1", "lb2"] {
        lab[node].exec_ok(&["nft", "-f", &rules.to_string_lossy()])?;
    }
    lab["lb1"].exec_ok(&["ip", "addr", "add", &format!("{VIP}/24"), "dev", "eth0"])?;
    lab["lb1"].exec_ok(&["ip", "addr", "add", "198.18.1.100/24", "dev", "eth1"])?;
    let ct = Conntrackd::up(&lab)?;
    let (p1, p2) = (ct.pid("lb1"), ct.pid("lb2"));
    let (c1, c2) = (cpu_total(p1), cpu_total(p2));
    let (s1, s2) = (cpu_sys(p1), cpu_sys(p2));
    let start = Instant::now();
    let took = open_flows_at(&lab, n, r)?;
    let made = count_in_kernel(&lab["lb1"])?;
    let caught = wait_for(
        "conntrackd on lb2 holds every flow",
        Duration::from_secs(60),
        || ct.external(&lab, "lb2").is_ok_and(|k| k >= made),
    );
    let caught_up = start.elapsed();
    let (c1, c2) = (cpu_total(p1) - c1, cpu_total(p2) - c2);
    let (s1, s2) = (cpu_sys(p1) - s1, cpu_sys(p2) - s2);
    let secs = took.as_secs_f64();
    Ok(RateFigures {
        achieved: made as f64 / secs,
        sender_cpu: c1 / secs,
        receiver_cpu: c2 / secs,
        sender_sys: s1 / secs,
        receiver_sys: s2 / secs,
        sender_sync: c1 / secs,
        receiver_sync: c2 / secs,
        caught_up_ms: caught_up.as_secs_f64() * 1e3,
        lost: caught.is_err(),
    })
}

/// Source addresses of the client's flows beyond its own (.10): 60,000 flows each.
const FLOWS_PER_SOURCE: usize = 60_000;

/// The client's source address and port of flow `i`.
fn flow_source(i: usize) -> (Ipv4Addr, u16) {
    let k = i / FLOWS_PER_SOURCE;
    let addr = if k == 0 {
        Ipv4Addr::new(198, 18, 0, 10)
    } else {
        Ipv4Addr::new(198, 18, 0, 200 + k as u8)
    };
    (addr, 1024 + (i % FLOWS_PER_SOURCE) as u16)
}

/// Opens `total` new TCP connections through lb1 at `per_second`, in 10 ms slices:
/// the client sends a SYN to the VIP from a source port of its own for each, so lb1's
/// kernel makes each entry from a packet (balanced and source-NATed), as under real
/// load, and both nodes' daemons see the events it sends for them (new, then the
/// server's SYN-ACK). The client's kernel knows none of these connections: its
/// resets to the SYN-ACKs are dropped, so every entry stays. Returns how long the
/// sending took.
fn open_flows_at(lab: &Lab, total: usize, per_second: usize) -> Result<Duration> {
    let client = &lab["client"];
    let sources = total.div_ceil(FLOWS_PER_SOURCE);
    for k in 1..sources {
        let (addr, _) = flow_source(k * FLOWS_PER_SOURCE);
        client.exec_ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
    }
    client.exec_ok(&[
        "nft",
        "add table ip bench_client; add chain ip bench_client out { type filter hook output priority 0; }; add rule ip bench_client out tcp flags rst drop",
    ])?;
    let vip: Ipv4Addr = VIP.parse()?;
    let sock = client.run_in(|| {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::TCP),
        )?;
        s.set_header_included_v4(true)?;
        Ok::<_, std::io::Error>(s)
    })??;
    let to = socket2::SockAddr::from(SocketAddr::new(IpAddr::V4(vip), 0));
    let slice = Duration::from_millis(10);
    let per_slice = (per_second / 100).max(1);
    let start = Instant::now();
    let mut done = 0;
    let mut k = 0u32;
    while done < total {
        let n = per_slice.min(total - done);
        for i in done..done + n {
            let (src, port) = flow_source(i);
            sock.send_to(&syn_packet(src, port, vip, 80, i as u32), &to)?;
        }
        done += n;
        k += 1;
        let next = start + slice * k;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    let took = start.elapsed();
    // The last SYN-ACKs pass lb1.
    thread::sleep(Duration::from_millis(200));
    Ok(took)
}

/// An IPv4 TCP SYN (the kernel fills in the IP checksum and length).
fn syn_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32) -> [u8; 40] {
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[8] = 64; // TTL
    p[9] = 6; // TCP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4; // data offset: 20 bytes
    t[13] = 0x02; // SYN
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    // Checksum over the pseudo-header (addresses, protocol, TCP length) and segment.
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for w in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6, 0, 20]);
    add(t);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    t[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p
}

// ---------------------------------------------------------------------------
// stall

fn stall(bins: &Binaries, args: &Args) -> Result<()> {
    let keepalived = Path::new(KEEPALIVED).exists() && Path::new(CONNTRACKD).exists();
    println!("== stall after a crash of lb1: the longest pause each of {CONNECTIONS} connections saw (an echo every 20 ms)");
    println!("   ms: median / p90 / max over connections, each the median over {} runs; kept: connections alive after", args.runs);
    println!("   theirs: keepalived (sync group, VRRPv3) + conntrackd FTFW (notify_master: -c -f -R -B) + nft DNAT/SNAT-pool rules");
    let rto = args.endpoint_rto_min_ms;
    if rto > 0 {
        println!("   the client's and the servers' routes carry rto_min {rto}ms (an endpoint's setting: the balancer's part of the stall shows)");
    } else {
        println!("   the endpoints keep TCP's minimum retransmission timeout (200 ms): a segment lost in the takeover waits at least that");
    }
    for &interval in &args.intervals {
        let ours = stall_runs(args.runs, rto, || {
            Ours::up(bins, interval).map(|o| Box::new(o) as Box<dyn Stack>)
        })?;
        println!("  adverts {interval:>4} ms   lbd + vrrpd              {ours}");
        if keepalived {
            let theirs = stall_runs(args.runs, rto, || {
                Theirs::up(interval).map(|t| Box::new(t) as Box<dyn Stack>)
            })?;
            println!("  adverts {interval:>4} ms   keepalived + conntrackd  {theirs}");
        }
    }
    Ok(())
}

/// `runs` crashes of a freshly started stack, summarised.
fn stall_runs(
    runs: usize,
    rto_min_ms: u32,
    mut up: impl FnMut() -> Result<Box<dyn Stack>>,
) -> Result<String> {
    let (mut med, mut p90, mut max, mut kept) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // A run whose stack did not come up or sync in time is reported, not fatal:
    // the other cells of the benchmark still print.
    let mut failed: Vec<String> = Vec::new();
    for _ in 0..runs {
        let s = match up().and_then(|mut stack| stall_once(stack.as_mut(), rto_min_ms)) {
            Ok(s) => s,
            Err(e) => {
                failed.push(format!("{e:#}"));
                continue;
            }
        };
        med.push(s.median);
        p90.push(s.p90);
        max.push(s.max);
        kept.push(s.kept as f64);
    }
    let min_kept = kept.iter().copied().fold(f64::INFINITY, f64::min);
    let failures = match failed.first() {
        None => String::new(),
        Some(first) => format!("  FAILED RUNS {} of {runs} (first: {first})", failed.len()),
    };
    Ok(format!(
        "median {:>7.1}  p90 {:>7.1}  max {:>7.1}  (medians {})  kept {:.0}/{CONNECTIONS} (min {min_kept:.0}){failures}",
        median(&mut med.clone()),
        median(&mut p90),
        median(&mut max),
        spread(&med),
        median(&mut kept),
    ))
}

/// Sets `rto_min` on every IPv4 route of `host` (what an operator of the client or
/// the server may do; the balancer cannot).
fn set_rto_min(host: &Host, ms: u32) -> Result<()> {
    let routes = host.exec_ok(&["ip", "-4", "route", "show"])?;
    for route in routes.lines().filter(|l| !l.trim().is_empty()) {
        let mut cmd = vec!["ip", "route", "change"];
        cmd.extend(route.split_whitespace());
        let rto = format!("{ms}ms");
        cmd.extend(["rto_min", rto.as_str()]);
        host.exec_ok(&cmd)?;
    }
    Ok(())
}

/// A two-node stack under test: the lab, its sync, and lb1's crash.
trait Stack {
    fn lab(&self) -> &Lab;
    /// Waits until lb2 holds `n` of lb1's connections.
    fn wait_synced(&self, n: usize) -> Result<()>;
    /// Kills lb1's daemons (SIGKILL) and cuts its cables.
    fn crash_lb1(&mut self) -> Result<()>;
}

impl Stack for Ours {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn wait_synced(&self, n: usize) -> Result<()> {
        Ours::wait_synced(self, "lb2", n, Duration::from_secs(60))
    }

    fn crash_lb1(&mut self) -> Result<()> {
        for d in ["vrrpd", "lbd"] {
            if let Some(p) = self.daemons.get(&format!("lb1-{d}")) {
                p.signal(libc::SIGKILL)?;
            }
        }
        cut_lb1(&self.lab)
    }
}

fn cut_lb1(lab: &Lab) -> Result<()> {
    lab.set_cable("lb1", "eth0", false)?;
    lab.set_cable("lb1", "eth1", false)?;
    Ok(())
}

const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// The balancing rules of the example's service, as plain nftables.
/// The SNAT of [`NFT_RULES`]: a pool of 10,000 ports ...
const RULES_POOL: &str = "snat to 198.18.1.100:20000-29999 random";
/// ... or the address with every port (the rate lab).
const RULES_ADDRESS: &str = "snat to 198.18.1.100";

const NFT_RULES: &str = "table ip bench {
  chain pre { type nat hook prerouting priority -100; ip daddr 198.18.0.100 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 198.18.1.21, 1 : 198.18.1.22 } : 80; }
  chain post { type nat hook postrouting priority 100; ip daddr { 198.18.1.21, 198.18.1.22 } tcp dport 80 snat to 198.18.1.100:20000-29999 random; }
}
";

/// keepalived + conntrackd (+ nftables rules) on both nodes.
struct Theirs {
    lab: Lab,
    conntrackd: Conntrackd,
    keepalived: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl Theirs {
    fn up(interval: u32) -> Result<Theirs> {
        let lab = Lab::two_arm()?;
        let dir = tempfile::tempdir()?;
        echo_server(&lab["srv1"], "198.18.1.21:80")?;
        echo_server(&lab["srv2"], "198.18.1.22:80")?;
        let rules = dir.path().join("rules.nft");
        std::fs::write(&rules, NFT_RULES)?;
        for node in ["lb1", "lb2"] {
            lab[node].exec_ok(&["nft", "-f", &rules.to_string_lossy()])?;
        }
        let conntrackd = Conntrackd::up(&lab)?;
        let mut keepalived = Vec::new();
        for (node, priority) in [("lb1", 150), ("lb2", 100)] {
            let notify = dir.path().join(format!("{node}-notify.sh"));
            std::fs::write(&notify, notify_script(&conntrackd.conf(node)))?;
            std::fs::set_permissions(&notify, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            let conf = dir.path().join(format!("{node}-keepalived.conf"));
            std::fs::write(&conf, keepalived_conf(node, priority, interval, &notify))?;
            let pid = dir.path().join(format!("{node}-keepalived.pid"));
            let vrrp_pid = dir.path().join(format!("{node}-keepalived-vrrp.pid"));
            keepalived.push(lab[node].spawn(
                KEEPALIVED,
                [
                    "-P".as_ref(),
                    "-n".as_ref(),
                    "-l".as_ref(),
                    "-f".as_ref(),
                    conf.as_os_str(),
                    "-p".as_ref(),
                    pid.as_os_str(),
                    "-r".as_ref(),
                    vrrp_pid.as_os_str(),
                ],
            )?);
        }
        let theirs = Theirs {
            lab,
            conntrackd,
            keepalived,
            _dir: dir,
        };
        wait_for(
            "keepalived on lb1 holds the VIP",
            Duration::from_secs(30),
            || {
                theirs.lab["lb1"]
                    .exec_ok(&["ip", "-o", "addr", "show", "dev", "eth0"])
                    .is_ok_and(|o| o.contains(VIP))
            },
        )?;
        Ok(theirs)
    }
}

impl Stack for Theirs {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn wait_synced(&self, n: usize) -> Result<()> {
        wait_for(
            "conntrackd on lb2 holds the connections",
            Duration::from_secs(60),
            || {
                self.conntrackd
                    .external(&self.lab, "lb2")
                    .is_ok_and(|k| k >= n)
            },
        )
    }

    fn crash_lb1(&mut self) -> Result<()> {
        self.keepalived[0].signal(libc::SIGKILL)?;
        self.conntrackd.procs[0].signal(libc::SIGKILL)?;
        cut_lb1(&self.lab)
    }
}

/// keepalived's notify script for a sync group, as conntrackd's primary-backup.sh.
fn notify_script(conntrackd_conf: &str) -> String {
    format!(
        "#!/bin/sh\nC=\"{CONNTRACKD} -C {conntrackd_conf}\"\ncase \"$1\" in\n  master) $C -c; $C -f; $C -R; $C -B ;;\n  backup|fault) $C -n ;;\nesac\n"
    )
}

fn keepalived_conf(node: &str, priority: u32, interval_ms: u32, notify: &Path) -> String {
    let advert = if interval_ms % 1000 == 0 {
        format!("{}", interval_ms / 1000)
    } else {
        format!("{:.2}", f64::from(interval_ms) / 1000.0)
    };
    let instance = |name: &str, iface: &str, vrid: u32, vip: &str| {
        format!(
            "vrrp_instance {name} {{\n    state BACKUP\n    interface {iface}\n    virtual_router_id {vrid}\n    \
             priority {priority}\n    advert_int {advert}\n    version 3\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n"
        )
    };
    let n = notify.display();
    format!(
        "global_defs {{\n    router_id {node}\n    script_user root\n}}\n\
         vrrp_sync_group edge {{\n    group {{\n        public\n        server\n    }}\n    \
         notify_master \"{n} master\"\n    notify_backup \"{n} backup\"\n    notify_fault \"{n} fault\"\n}}\n{}{}",
        instance("public", "eth0", 51, "198.18.0.100/24"),
        instance("server", "eth1", 52, "198.18.1.100/24"),
    )
}

struct Stall {
    median: f64,
    p90: f64,
    max: f64,
    kept: usize,
}

fn stall_once(stack: &mut dyn Stack, rto_min_ms: u32) -> Result<Stall> {
    if rto_min_ms > 0 {
        for host in ["client", "srv1", "srv2"] {
            set_rto_min(&stack.lab()[host], rto_min_ms)?;
        }
    }
    let vip: SocketAddr = format!("{VIP}:80").parse()?;
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let s = stack.lab()["client"].tcp_connect(vip, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        conns.push(s);
    }
    stack.wait_synced(CONNECTIONS)?;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                // (longest gap, alive at the end)
                let mut longest = Duration::ZERO;
                let mut last = Instant::now();
                let msg = [b'z'; 64];
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    let ok = s.write_all(&msg).is_ok() && s.read_exact(&mut buf).is_ok();
                    if !ok {
                        return (longest, false);
                    }
                    let now = Instant::now();
                    longest = longest.max(now - last);
                    last = now;
                    thread::sleep(Duration::from_millis(20));
                }
                (longest, true)
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(2));
    stack.crash_lb1()?;
    // Long enough for TCP's backoff over the slowest takeover (1 s adverts: 3.6 s,
    // retransmissions at 3.2 s then 6.4 s).
    thread::sleep(Duration::from_secs(14));
    stop.store(true, Ordering::Relaxed);
    let mut gaps = Vec::new();
    let mut kept = 0;
    for w in workers {
        let (gap, alive) = w.join().map_err(|_| anyhow!("worker"))?;
        if alive {
            kept += 1;
            gaps.push(gap.as_secs_f64() * 1e3);
        }
    }
    gaps.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(Stall {
        median: pct(0.5),
        p90: pct(0.9),
        max: pct(1.0),
        kept,
    })
}
