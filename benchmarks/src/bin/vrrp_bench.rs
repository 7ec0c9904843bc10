//! `vrrp_bench [--runs N] [--soak-s S] [--skip-soak]`: failover times of vrrpd and
//! keepalived 2.2.7 in the same two-arm lab, interleaved, and vrrpd's RSS and
//! CPU with 50 instances at 100 ms adverts. Prints figures; asserts nothing.
//! Needs root; run it with `cargo run --release -p integration --bin vrrp_bench`.
//!
//! Failover time: from the master's death (SIGKILL, then both cables pulled)
//! or its SIGTERM, to the first TCP connection from the client to the public
//! VIP answered by the backup (a responder on lb2's 0.0.0.0:8080). The client
//! starts a non-blocking connect every 250 µs, so the figure includes the
//! GARP that redirects the client's ARP entry. A second figure starts at the
//! advert that starts the protocol's clock, as lb2 received it (a raw socket
//! in lb2): the master's last advert (crash) or its priority-0 advert
//! (graceful). The targets apply to that one: the time from the signal also
//! holds where in the advert cycle the SIGKILL landed, which is chance.
//!
//! `vrrp_bench --only false-failover [--duration-s N] [--intervals-ms 1000,100,30,10]`:
//! lb1 MASTER and lb2 BACKUP at each advert interval while a CPU load at normal
//! priority saturates every core (`stress-ng --cpu N`, else a busy-loop process per
//! core), for `N` seconds (default 600) per cell: vrrpd with `[vrrpd]`
//! realtime_priority 20 and locked memory, the same with `late_timer_grace = false`,
//! vrrpd at normal priority, and keepalived with `vrrp_rt_priority 20` and
//! `vrrp_no_swap` (`--contenders` picks by name prefix). Counts false failovers (lb2
//! sending adverts as MASTER while lb1 lives) and the largest gap between lb1's
//! adverts, both from one packet socket in lb2 with kernel receive timestamps (the
//! capture itself runs at normal priority under the same load). Beside each cell:
//! how late a SCHED_FIFO 99 thread's 1 ms wake-ups came and the hypervisor's steal
//! (a stall no priority inside the machine avoids), and for each run of lb2's
//! adverts the pauses that preceded it, in lb1's sending and at lb2.
//! `--softirq default,fifo` runs each contender also with the kernel's ksoftirqd
//! threads at SCHED_FIFO 1 (restored after the cell), the host setting
//! docs/operations.md describes: the cells alternate, so both see the same load.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use integration::{Lab, Process, ReplyServer};
use socket2::{Domain, Socket, Type};

const PUBLIC_VIP: &str = "198.18.0.100";
const SERVER_VIP: &str = "198.18.1.100";
const PORT: u16 = 8080;
const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// Backup priority in every scenario (the master has 150).
const BACKUP_PRIORITY: u32 = 100;
/// Give up on one failover after this long.
const FAILOVER_LIMIT: Duration = Duration::from_secs(20);
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// A connect attempt whose SYN got no answer in this time is dropped (its
/// SYN went to the dead node's MAC); a new attempt starts every [`ATTEMPT_EVERY`].
const ATTEMPT_LIFETIME: Duration = Duration::from_millis(300);
const SOAK_INSTANCES: usize = 50;
/// How often the client starts a connect attempt: the resolution of every failover
/// figure (the two implementations differ by less than a millisecond).
const ATTEMPT_EVERY: Duration = Duration::from_micros(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Implementation {
    Vrrpd,
    Keepalived,
}

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Implementation::Vrrpd => "vrrpd",
            Implementation::Keepalived => "keepalived",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// SIGKILL and both cables out.
    Crash,
    /// SIGTERM: a priority-0 release.
    Graceful,
}

#[derive(Debug, Clone, Copy)]
struct Timers {
    label: &'static str,
    version: u8,
    interval_ms: u32,
}

impl Timers {
    /// Skew_Time of the backup (RFC 3768 §6.1 for v2, RFC 9568 §6.1 for v3).
    fn skew_ms(&self) -> f64 {
        let p = f64::from(256 - BACKUP_PRIORITY);
        match self.version {
            2 => p * 1000.0 / 256.0,
            _ => p * f64::from(self.interval_ms) / 256.0,
        }
    }

    /// Master_Down_Interval of the backup.
    fn master_down_ms(&self) -> f64 {
        3.0 * f64::from(self.interval_ms) + self.skew_ms()
    }

    fn target_ms(&self, kill: Kill) -> f64 {
        match kill {
            Kill::Crash => self.master_down_ms() + 20.0,
            Kill::Graceful => self.skew_ms() + 20.0,
        }
    }
}

const TIMERS: [Timers; 3] = [
    Timers {
        label: "v3 1 s",
        version: 3,
        interval_ms: 1000,
    },
    Timers {
        label: "v2 1 s",
        version: 2,
        interval_ms: 1000,
    },
    Timers {
        label: "v3 100 ms",
        version: 3,
        interval_ms: 100,
    },
];

struct Args {
    runs: usize,
    soak: Duration,
    skip_soak: bool,
    skip_failover: bool,
    /// Only the timers whose label contains this (e.g. "100 ms").
    only: Option<String>,
    /// `--only false-failover`: the false-failover run instead of the others.
    false_failover: bool,
    /// Per cell of the false-failover run.
    duration: Duration,
    /// Advert intervals of the false-failover run.
    intervals_ms: Vec<u32>,
    /// Contenders of the false-failover run (names as printed); empty: all.
    contenders: Vec<String>,
    /// How the ksoftirqd threads run in each cell of the false-failover run.
    softirq: Vec<Softirq>,
}

const USAGE: &str = "usage: vrrp_bench [--runs N] [--only TIMERS] [--soak-s S] [--skip-soak] [--skip-failover]\n       \
                     vrrp_bench --only false-failover [--duration-s N] [--intervals-ms 1000,100,30,10] [--contenders A,B] [--softirq default,fifo]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        runs: 5,
        soak: Duration::from_secs(30),
        skip_soak: false,
        skip_failover: false,
        only: None,
        false_failover: false,
        duration: Duration::from_secs(600),
        intervals_ms: vec![1000, 100, 30, 10],
        contenders: Vec::new(),
        softirq: vec![Softirq::Default],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                let v = it.next().ok_or_else(|| anyhow!("--runs needs a number"))?;
                args.runs = v.parse().with_context(|| format!("--runs {v}"))?;
            }
            "--soak-s" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("--soak-s needs a number"))?;
                args.soak =
                    Duration::from_secs(v.parse().with_context(|| format!("--soak-s {v}"))?);
            }
            "--skip-soak" => args.skip_soak = true,
            "--skip-failover" => args.skip_failover = true,
            "--only" => match it.next() {
                Some(o) if o == "false-failover" => args.false_failover = true,
                Some(o) => args.only = Some(o),
                None => bail!("--only needs a label or false-failover"),
            },
            "--contenders" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("--contenders needs a list of names"))?;
                args.contenders = v.split(',').map(|c| c.trim().to_owned()).collect();
            }
            "--duration-s" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("--duration-s needs a number"))?;
                args.duration =
                    Duration::from_secs(v.parse().with_context(|| format!("--duration-s {v}"))?);
            }
            "--intervals-ms" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("--intervals-ms needs a list"))?;
                args.intervals_ms = v
                    .split(',')
                    .map(|ms| {
                        ms.trim()
                            .parse::<u32>()
                            .with_context(|| format!("--intervals-ms {v}"))
                    })
                    .collect::<Result<_>>()?;
                if let Some(bad) = args
                    .intervals_ms
                    .iter()
                    .find(|&&ms| ms == 0 || ms % 10 != 0 || ms > 40_950)
                {
                    bail!("--intervals-ms: {bad} is not a VRRPv3 interval (10..=40950 ms in steps of 10)");
                }
            }
            "--softirq" => {
                let v = it
                    .next()
                    .ok_or_else(|| anyhow!("--softirq needs a list (default,fifo)"))?;
                args.softirq = v
                    .split(',')
                    .map(|w| match w.trim() {
                        "default" => Ok(Softirq::Default),
                        "fifo" => Ok(Softirq::Fifo),
                        other => Err(anyhow!("--softirq: {other:?} is neither default nor fifo")),
                    })
                    .collect::<Result<_>>()?;
            }
            // A child of the false-failover run: one core's worth of load.
            BURN_CPU => burn_cpu(),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if !integration::have_root("vrrp_bench") {
        bail!("vrrp_bench needs root (network namespaces)");
    }
    let vrrpd = vrrpd_binary()?;
    let keepalived = Path::new(KEEPALIVED).exists();
    println!("vrrpd: {}", vrrpd.display());
    if !keepalived {
        println!("NOTE: {KEEPALIVED} not found: keepalived columns stay empty");
    }
    let bench = Bench::new(vrrpd)?;
    if args.false_failover {
        return bench.false_failovers(
            args.duration,
            &args.intervals_ms,
            keepalived,
            &args.contenders,
            &args.softirq,
        );
    }
    if !args.skip_failover {
        bench.failover(args.runs, keepalived, args.only.as_deref())?;
    }
    if !args.skip_soak {
        bench.soak(args.soak, keepalived)?;
    }
    Ok(())
}

/// vrrpd from the same target directory as this binary, built if absent.
fn vrrpd_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating vrrp_bench")?;
    let bin = exe.with_file_name("vrrpd");
    if bin.exists() {
        return Ok(bin);
    }
    let release = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "vrrpd", "--bin", "vrrpd"]);
    if release {
        cmd.arg("--release");
    }
    println!("building vrrpd: {cmd:?}");
    let status = cmd.status().context("running cargo build -p vrrpd")?;
    if !status.success() || !bin.exists() {
        bail!("vrrpd was not built at {}", bin.display());
    }
    Ok(bin)
}

struct Bench {
    lab: Lab,
    dir: tempfile::TempDir,
    vrrpd: PathBuf,
    _responders: Vec<ReplyServer>,
}

/// The two running members of one scenario.
struct Pair {
    lb1: Process,
    lb2: Process,
}

/// One failover's times, ms.
struct Trial {
    /// From the signal to the master.
    ms: f64,
    /// From the advert that starts the protocol's clock (see `Adverts`).
    from_advert: f64,
    /// From that advert to the first ARP frame from lb2 naming the VIP (its GARP)
    /// at the client: the daemon's part, without the client's next attempt.
    garp: Option<f64>,
}

#[derive(Default)]
struct Figures {
    ms: Vec<f64>,
    failures: usize,
}

impl Figures {
    fn cell(&self) -> String {
        if self.ms.is_empty() {
            return if self.failures > 0 {
                format!("failed x{}", self.failures)
            } else {
                "-".into()
            };
        }
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        let fails = if self.failures > 0 {
            format!(" ({} failed)", self.failures)
        } else {
            String::new()
        };
        format!("{median:7.1} [{:.1}-{:.1}]{fails}", v[0], v[v.len() - 1])
    }

    fn median(&self) -> Option<f64> {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
}

impl Bench {
    fn new(vrrpd: PathBuf) -> Result<Bench> {
        let lab = Lab::two_arm().context("bringing up the two-arm lab")?;
        let dir = tempfile::tempdir().context("creating the work directory")?;
        let any: SocketAddr = SocketAddr::from(([0, 0, 0, 0], PORT));
        let responders = vec![
            lab["lb1"].serve_reply(any, "lb1")?,
            lab["lb2"].serve_reply(any, "lb2")?,
        ];
        Ok(Bench {
            lab,
            dir,
            vrrpd,
            _responders: responders,
        })
    }

    fn failover(&self, runs: usize, keepalived: bool, only: Option<&str>) -> Result<()> {
        let impls: Vec<Implementation> = if keepalived {
            vec![Implementation::Vrrpd, Implementation::Keepalived]
        } else {
            vec![Implementation::Vrrpd]
        };
        let kills = [Kill::Crash, Kill::Graceful];
        // (timers, kill, implementation) -> (from the kill, from the advert, GARP)
        let mut results: Vec<Vec<Vec<(Figures, Figures, Figures)>>> = TIMERS
            .iter()
            .map(|_| {
                kills
                    .iter()
                    .map(|_| impls.iter().map(|_| Default::default()).collect())
                    .collect()
            })
            .collect();
        let mut phases: Vec<Vec<(String, f64)>> = Vec::new();
        for run in 1..=runs {
            for (t, timers) in TIMERS.iter().enumerate() {
                if only.is_some_and(|o| !timers.label.contains(o)) {
                    continue;
                }
                for (k, kill) in kills.iter().enumerate() {
                    for (i, imp) in impls.iter().enumerate() {
                        let outcome = self.trial(*imp, *timers, *kill);
                        let (figures, from_advert, garp) = &mut results[t][k][i];
                        match outcome {
                            Ok((trial, p)) => {
                                println!(
                                    "run {run}/{runs} {:<10} {:<9} {:<8} {:8.1} ms ({:.1} ms from the {}; its GARP at the client after {})",
                                    imp.name(),
                                    timers.label,
                                    kill_name(*kill),
                                    trial.ms,
                                    trial.from_advert,
                                    reference_name(*kill),
                                    trial.garp.map_or("-".to_owned(), |g| format!("{g:.1} ms"))
                                );
                                figures.ms.push(trial.ms);
                                from_advert.ms.push(trial.from_advert);
                                garp.ms.extend(trial.garp);
                                if !p.is_empty() {
                                    phases.push(p);
                                }
                            }
                            Err(e) => {
                                println!(
                                    "run {run}/{runs} {:<10} {:<9} {:<8} FAILED: {e:#}",
                                    imp.name(),
                                    timers.label,
                                    kill_name(*kill)
                                );
                                figures.failures += 1;
                                from_advert.failures += 1;
                                garp.failures += 1;
                            }
                        }
                        self.reset()?;
                    }
                }
            }
        }

        println!();
        println!("Failover: time until the public VIP answers the client at the backup, ms");
        println!("median [min-max] of {runs} runs, interleaved; backup priority {BACKUP_PRIORITY}, master 150");
        println!();
        println!(
            "{:<46} {:<10} {:>9}   {:<28} {:<28}",
            "scenario", "timers", "target", "vrrpd", "keepalived"
        );
        for (t, timers) in TIMERS.iter().enumerate() {
            if only.is_some_and(|o| !timers.label.contains(o)) {
                continue;
            }
            for (k, kill) in kills.iter().enumerate() {
                let (scenario, from_advert) = match kill {
                    Kill::Crash => ("crash (SIGKILL + cables out)", "  from the last advert"),
                    Kill::Graceful => ("graceful (SIGTERM)", "  from the priority-0 advert"),
                };
                let kill_cells: Vec<String> =
                    results[t][k].iter().map(|(f, _, _)| f.cell()).collect();
                println!(
                    "{:<46} {:<10} {:>9}   {:<28} {:<28}",
                    format!("{scenario}, from the signal"),
                    timers.label,
                    "",
                    kill_cells[0],
                    kill_cells.get(1).map_or("-", String::as_str),
                );
                let advert_cells: Vec<String> =
                    results[t][k].iter().map(|(_, f, _)| f.cell()).collect();
                let vrrpd_ok = results[t][k][0]
                    .1
                    .median()
                    .is_some_and(|m| m <= timers.target_ms(*kill));
                println!(
                    "{:<46} {:<10} {:>9}   {:<28} {:<28} {}",
                    from_advert,
                    timers.label,
                    format!("<= {:.0}", timers.target_ms(*kill)),
                    advert_cells[0],
                    advert_cells.get(1).map_or("-", String::as_str),
                    if vrrpd_ok {
                        "vrrpd meets target"
                    } else {
                        "vrrpd MISSES target"
                    }
                );
                let garp_cells: Vec<String> =
                    results[t][k].iter().map(|(_, _, f)| f.cell()).collect();
                println!(
                    "{:<46} {:<10} {:>9}   {:<28} {:<28}",
                    "    of which: to its GARP at the client",
                    timers.label,
                    "",
                    garp_cells[0],
                    garp_cells.get(1).map_or("-", String::as_str),
                );
            }
        }
        println!();
        println!(
            "targets, timed from the advert lb2 last heard from lb1 (captured in lb2): \
             crash <= Master_Down_Interval + 20 ms (3 x interval + Skew_Time), \
             graceful <= Skew_Time + 20 ms; Skew_Time at priority 100 = 609 ms (1 s), 61 ms (100 ms)"
        );
        println!(
            "'from the signal' adds where in the advert cycle the SIGKILL landed (crash) \
             or the master's shutdown path (graceful)"
        );
        if !phases.is_empty() {
            println!();
            println!("vrrpd takeover phases on the new master (vrrp_takeover_last_phase_seconds), ms, median [min-max]:");
            for phase in ["prepare", "vips_added", "first_advert", "garp_sent"] {
                let f = Figures {
                    ms: phases
                        .iter()
                        .filter_map(|p| p.iter().find(|(n, _)| n == phase).map(|(_, v)| *v))
                        .collect(),
                    failures: 0,
                };
                println!("  {phase:<13} {}", f.cell());
            }
        }
        Ok(())
    }

    /// One failover; returns its times and, for vrrpd, the backup's takeover
    /// phases.
    fn trial(
        &self,
        imp: Implementation,
        timers: Timers,
        kill: Kill,
    ) -> Result<(Trial, Vec<(String, f64)>)> {
        let mut pair = self.start(imp, timers)?;
        // lb1 MASTER, answering the client (whose ARP entry now names lb1).
        self.wait_answer("lb1", SETTLE_LIMIT)?;
        if has_vip(&self.lab, "lb2", "eth0", PUBLIC_VIP)? {
            bail!("both nodes hold the VIP");
        }
        // From here on lb2 records the master's adverts as they reach it.
        let stop = Arc::new(AtomicBool::new(false));
        let capture = {
            let stop = Arc::clone(&stop);
            self.lab["lb2"].thread_in(move || capture_adverts(&stop))?
        };
        // lb2 hears a few adverts and settles in BACKUP.
        std::thread::sleep(Duration::from_millis(
            u64::from(timers.interval_ms) * 3 + 200,
        ));
        // Kill at a random point of the advert cycle: a crash's failover time
        // is Master_Down_Interval minus the time since the last advert, so a
        // fixed phase would favour whichever implementation it happens to suit.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let phase = u64::from(timers.interval_ms) * u64::from(nanos % 1000) / 1000;
        std::thread::sleep(Duration::from_millis(phase));

        let lb2_mac = mac_of(&self.lab, "lb2", "eth0")?;
        let garps = {
            let stop = Arc::clone(&stop);
            self.lab["client"].thread_in(move || capture_garp(&stop, lb2_mac))?
        };
        let (go_tx, go_rx) = mpsc::channel::<Instant>();
        let vip: SocketAddr = SocketAddr::new(parse_ip(PUBLIC_VIP)?, PORT);
        let poller = self.lab["client"].thread_in(move || -> Result<Instant> {
            let t0 = go_rx.recv().context("no start signal")?;
            poll_until_answer(vip, "lb2", t0 + FAILOVER_LIMIT)
        })?;
        let t0 = Instant::now();
        match kill {
            Kill::Crash => {
                pair.lb1.signal(libc::SIGKILL)?;
                let _ = go_tx.send(t0);
                self.lab.set_cable("lb1", "eth0", false)?;
                self.lab.set_cable("lb1", "eth1", false)?;
            }
            Kill::Graceful => {
                pair.lb1.signal(libc::SIGTERM)?;
                let _ = go_tx.send(t0);
            }
        }
        let answered = poller
            .join()
            .map_err(|_| anyhow!("the client's poller panicked"));
        stop.store(true, Ordering::Relaxed);
        let adverts = capture
            .join()
            .map_err(|_| anyhow!("the advert capture panicked"))??;
        let answered = answered??;
        let garp_at = garps
            .join()
            .map_err(|_| anyhow!("the ARP capture panicked"))??;
        let ms = answered.duration_since(t0).as_secs_f64() * 1000.0;
        // The protocol's clock starts at the last advert the backup heard
        // (crash) or at the priority-0 advert (graceful).
        let reference = match kill {
            Kill::Crash => adverts.last_live,
            Kill::Graceful => adverts.first_release,
        }
        .ok_or_else(|| anyhow!("lb2 captured no {} advert from lb1", kill_name(kill)))?;
        let from_advert = answered.duration_since(reference).as_secs_f64() * 1000.0;
        let garp = garp_at
            .filter(|g| *g >= reference)
            .map(|g| g.duration_since(reference).as_secs_f64() * 1000.0);
        let phases = if imp == Implementation::Vrrpd {
            // The takeover's record is written before the GARP: wait a little.
            std::thread::sleep(Duration::from_millis(50));
            takeover_phases(&self.lab).unwrap_or_default()
        } else {
            Vec::new()
        };
        let _ = pair.lb1.wait_timeout(Duration::from_secs(5));
        drop(pair);
        Ok((
            Trial {
                ms,
                from_advert,
                garp,
            },
            phases,
        ))
    }

    /// Both members of `imp` with `timers`: lb1 150, lb2 100.
    fn start(&self, imp: Implementation, timers: Timers) -> Result<Pair> {
        match imp {
            Implementation::Vrrpd => {
                let text = vrrpd_config(timers, self.dir.path());
                let mut started = Vec::new();
                for node in ["lb1", "lb2"] {
                    let path = self.dir.path().join(format!("{node}.toml"));
                    let node_text = text.replace("@NODE@", node);
                    std::fs::write(&path, node_text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    let mut cmd = self.lab[node].command(&self.vrrpd);
                    cmd.args(["--config", &path.to_string_lossy(), "--node", node])
                        .env("RUST_LOG", "info");
                    started.push(self.lab[node].spawn_command(cmd, "vrrpd")?);
                }
                let lb2 = started.pop().ok_or_else(|| anyhow!("lb2 not started"))?;
                let lb1 = started.pop().ok_or_else(|| anyhow!("lb1 not started"))?;
                Ok(Pair { lb1, lb2 })
            }
            Implementation::Keepalived => {
                let lb1 = self.keepalived("lb1", &keepalived_config("lb1", 150, timers))?;
                let lb2 = self.keepalived("lb2", &keepalived_config("lb2", 100, timers))?;
                Ok(Pair { lb1, lb2 })
            }
        }
    }

    fn keepalived(&self, node: &str, conf: &str) -> Result<Process> {
        let d = self.dir.path();
        let conf_path = d.join(format!("{node}-keepalived.conf"));
        std::fs::write(&conf_path, conf)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        let pid = d.join(format!("{node}-keepalived.pid"));
        let vrrp_pid = d.join(format!("{node}-keepalived-vrrp.pid"));
        Ok(self.lab[node].spawn(
            KEEPALIVED,
            [
                "-P".as_ref(),
                "-n".as_ref(),
                "-l".as_ref(),
                "-G".as_ref(),
                "-f".as_ref(),
                conf_path.as_os_str(),
                "-p".as_ref(),
                pid.as_os_str(),
                "-r".as_ref(),
                vrrp_pid.as_os_str(),
            ],
        )?)
    }

    /// Cables in, VIPs gone: the state before each trial.
    fn reset(&self) -> Result<()> {
        for node in ["lb1", "lb2"] {
            self.lab.set_cable(node, "eth0", true)?;
            self.lab.set_cable(node, "eth1", true)?;
            for (iface, vip) in [("eth0", PUBLIC_VIP), ("eth1", SERVER_VIP)] {
                if has_vip(&self.lab, node, iface, vip)? {
                    self.lab[node].ip(&["addr", "del", &format!("{vip}/24"), "dev", iface])?;
                }
            }
        }
        Ok(())
    }

    /// Waits until the client's connection to the VIP is answered by `node`.
    fn wait_answer(&self, node: &str, limit: Duration) -> Result<()> {
        let vip = SocketAddr::new(parse_ip(PUBLIC_VIP)?, PORT);
        let start = Instant::now();
        loop {
            if let Ok(reply) = self.lab["client"].tcp_fetch(vip, Duration::from_millis(300)) {
                if reply == node {
                    return Ok(());
                }
            }
            if start.elapsed() > limit {
                bail!("the VIP did not answer from {node} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// vrrpd with 50 instances at 100 ms on each node (lb1 MASTER of all):
    /// RSS and CPU over `span`.
    fn soak(&self, span: Duration, keepalived: bool) -> Result<()> {
        println!();
        println!(
            "Soak: {SOAK_INSTANCES} instances ({} sync groups of 2, eth0 + eth1), VRRPv3 100 ms adverts, {} s",
            SOAK_INSTANCES / 2,
            span.as_secs()
        );
        let mut rows = Vec::new();
        let text = soak_config(self.dir.path());
        let mut started = Vec::new();
        for node in ["lb1", "lb2"] {
            let path = self.dir.path().join(format!("soak-{node}.toml"));
            std::fs::write(&path, text.replace("@NODE@", node))
                .with_context(|| format!("writing {}", path.display()))?;
            let mut cmd = self.lab[node].command(&self.vrrpd);
            cmd.args(["--config", &path.to_string_lossy(), "--node", node])
                .env("RUST_LOG", "info");
            started.push(self.lab[node].spawn_command(cmd, "vrrpd-soak")?);
        }
        self.wait_all_vips("lb1")?;
        rows.push((
            "vrrpd",
            measure(
                &started.iter().map(|p| vec![p.pid()]).collect::<Vec<_>>(),
                span,
            )?,
        ));
        drop(started);
        self.flush_soak_vips()?;
        if keepalived {
            let lb1 = self.keepalived("lb1", &soak_keepalived_config("lb1", 150))?;
            let lb2 = self.keepalived("lb2", &soak_keepalived_config("lb2", 100))?;
            self.wait_all_vips("lb1")?;
            // keepalived runs a parent and a VRRP child: both count.
            let group = |p: &Process| -> Vec<u32> {
                let mut pids = vec![p.pid()];
                pids.extend(children(p.pid()));
                pids
            };
            let pids = vec![group(&lb1), group(&lb2)];
            rows.push(("keepalived", measure(&pids, span)?));
            drop((lb1, lb2));
            self.flush_soak_vips()?;
        }
        println!();
        println!(
            "{:<12} {:>16} {:>16} {:>14} {:>14}",
            "", "RSS master (MB)", "RSS backup (MB)", "CPU master %", "CPU backup %"
        );
        for (name, m) in &rows {
            println!(
                "{name:<12} {:>16.1} {:>16.1} {:>14.2} {:>14.2}",
                m[0].0, m[1].0, m[0].1, m[1].1
            );
        }
        println!("targets (vrrpd): RSS < 15 MB, CPU < 2 % of one core (release build)");
        Ok(())
    }

    fn wait_all_vips(&self, node: &str) -> Result<()> {
        let vips: Vec<IpAddr> = (1..=SOAK_INSTANCES / 2)
            .flat_map(|i| {
                let last = (100 + i) as u8;
                [
                    IpAddr::from([198, 18, 0, last]),
                    IpAddr::from([198, 18, 1, last]),
                ]
            })
            .collect();
        let start = Instant::now();
        loop {
            let mut held = self.lab[node].addresses("eth0")?;
            held.extend(self.lab[node].addresses("eth1")?);
            if vips.iter().all(|v| held.iter().any(|p| p.addr == *v)) {
                return Ok(());
            }
            if start.elapsed() > SETTLE_LIMIT {
                bail!("{node} did not get all {SOAK_INSTANCES} VIPs");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn flush_soak_vips(&self) -> Result<()> {
        for node in ["lb1", "lb2"] {
            for (iface, net) in [("eth0", 0), ("eth1", 1)] {
                for i in 1..=SOAK_INSTANCES / 2 {
                    let vip = format!("198.18.{net}.{}", 100 + i);
                    if has_vip(&self.lab, node, iface, &vip)? {
                        self.lab[node].ip(&["addr", "del", &format!("{vip}/24"), "dev", iface])?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn reference_name(kill: Kill) -> &'static str {
    match kill {
        Kill::Crash => "last advert",
        Kill::Graceful => "priority-0 advert",
    }
}

/// When lb2 received lb1's adverts of the public instance.
#[derive(Default)]
struct Adverts {
    /// The last one with a priority above 0: Master_Down_Interval runs from it.
    last_live: Option<Instant>,
    /// The first priority-0 one: Skew_Time runs from it.
    first_release: Option<Instant>,
}

/// In lb2's namespace: a raw socket for IP protocol 112 notes the arrival of
/// every VRRP packet from lb1's eth0 address with the public VRID until
/// `stop` is set. Every implementation is timed by the same socket.
fn capture_adverts(stop: &AtomicBool) -> Result<Adverts> {
    const LB1: [u8; 4] = [198, 18, 0, 11];
    const VRID: u8 = 51;
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(socket2::Protocol::from(112)))
        .context("raw VRRP socket")?;
    let mut adverts = Adverts::default();
    read_frames(socket, stop, "the raw VRRP socket", |buf, at| {
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        // IPv4 source at 12..16; VRRP's VRID and priority follow its first byte.
        if buf.len() < ihl + 3 || buf[12..16] != LB1 || buf[ihl + 1] != VRID {
            return false;
        }
        if buf[ihl + 2] == 0 {
            adverts.first_release.get_or_insert(at);
        } else {
            adverts.last_live = Some(at);
        }
        false
    })?;
    Ok(adverts)
}

/// Reads `socket` until `stop` is set, handing each packet and when it was read to
/// `seen`; returns early when `seen` says it has what it wanted.
fn read_frames(
    socket: Socket,
    stop: &AtomicBool,
    what: &str,
    mut seen: impl FnMut(&[u8], Instant) -> bool,
) -> Result<()> {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .context("read timeout")?;
    let mut socket = std::fs::File::from(std::os::fd::OwnedFd::from(socket));
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let n = match socket.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e).with_context(|| format!("reading {what}")),
        };
        if n > 0 && seen(&buf[..n], Instant::now()) {
            break;
        }
    }
    Ok(())
}

/// lb2's MAC address on `iface`.
fn mac_of(lab: &Lab, node: &str, iface: &str) -> Result<[u8; 6]> {
    let text = lab[node].ip(&["-o", "link", "show", iface])?;
    let mac = text
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .ok_or_else(|| anyhow!("no MAC in {text:?}"))?;
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(part, 16).with_context(|| format!("MAC {mac}"))?;
    }
    Ok(out)
}

/// In the client: when the first ARP frame from `mac` naming the public VIP as its
/// sender arrived (lb2's GARP, or its reply to the client's request).
fn capture_garp(stop: &AtomicBool, mac: [u8; 6]) -> Result<Option<Instant>> {
    let vip: std::net::Ipv4Addr = PUBLIC_VIP.parse()?;
    let eth_p_arp = (libc::ETH_P_ARP as u16).to_be();
    let socket = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(socket2::Protocol::from(i32::from(eth_p_arp))),
    )
    .context("packet socket for ARP")?;
    let mut first = None;
    read_frames(socket, stop, "ARP", |buf, at| {
        // Ethernet (14), then ARP: sender MAC at 8..14, sender IPv4 at 14..18.
        let hit = buf.len() >= 42 && buf[22..28] == mac && buf[28..32] == vip.octets();
        if hit {
            first = Some(at);
        }
        hit
    })?;
    Ok(first)
}

fn kill_name(kill: Kill) -> &'static str {
    match kill {
        Kill::Crash => "crash",
        Kill::Graceful => "graceful",
    }
}

fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse().with_context(|| format!("address {s}"))
}

fn has_vip(lab: &Lab, node: &str, iface: &str, vip: &str) -> Result<bool> {
    let vip = parse_ip(vip)?;
    Ok(lab[node].addresses(iface)?.iter().any(|p| p.addr == vip))
}

/// One connection attempt of the poller.
struct Attempt {
    born: Instant,
    socket: Socket,
    /// When the handshake completed, and what was read since.
    established: Option<(Instant, Vec<u8>)>,
}

/// From the client's namespace: a non-blocking connect to `vip` every
/// [`ATTEMPT_EVERY`] until one is answered with `reply`; returns when its handshake
/// completed. Nothing blocks: a connection that the old master accepted but
/// can no longer answer (its VIP gone) must not hold up the next attempts.
fn poll_until_answer(vip: SocketAddr, reply: &str, deadline: Instant) -> Result<Instant> {
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let now = Instant::now();
        if now > deadline {
            bail!("no answer from {reply} at {vip}");
        }
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).context("socket")?;
        socket.set_nonblocking(true).context("non-blocking")?;
        match socket.connect(&vip.into()) {
            Err(e) if e.raw_os_error() != Some(libc::EINPROGRESS) => {}
            _ => attempts.push(Attempt {
                born: now,
                socket,
                established: None,
            }),
        }
        let mut i = 0;
        while i < attempts.len() {
            let a = &mut attempts[i];
            let failed = !matches!(a.socket.take_error(), Ok(None));
            if failed || a.born.elapsed() > ATTEMPT_LIFETIME {
                attempts.swap_remove(i);
                continue;
            }
            if a.established.is_none() && a.socket.peer_addr().is_ok() {
                a.established = Some((Instant::now(), Vec::new()));
            }
            if let Some((at, got)) = a.established.as_mut() {
                match std::io::Read::read(&mut a.socket, &mut buf) {
                    Ok(0) => {
                        // The responder wrote its name and closed.
                        if got.as_slice() == reply.as_bytes() {
                            return Ok(*at);
                        }
                        attempts.swap_remove(i);
                        continue;
                    }
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        attempts.swap_remove(i);
                        continue;
                    }
                }
            }
            i += 1;
        }
        std::thread::sleep(ATTEMPT_EVERY);
    }
}

/// The last takeover's phases from lb2's /metrics, in ms.
fn takeover_phases(lab: &Lab) -> Result<Vec<(String, f64)>> {
    use std::io::Write;
    let addr = SocketAddr::from(([127, 0, 0, 1], 9612));
    let mut stream = lab["lb2"].tcp_connect(addr, Duration::from_secs(2))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("vrrp_takeover_last_phase_seconds{"))
        .filter_map(|l| {
            let phase = l.split("phase=\"").nth(1)?.split('"').next()?.to_owned();
            let v: f64 = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((phase, v * 1000.0))
        })
        .collect())
}

/// The cluster of cluster.toml.example reduced to its VRRP part (sync group
/// `edge`: `public` on eth0, VRID 51, and `server` on eth1, VRID 52; lb1 150,
/// lb2 100; every other setting at its default) with `timers`. The node's
/// sockets are in `dir` (`@NODE@` stands for the node); lbd's is absent, so
/// the prepare is a miss at once.
fn vrrpd_config(timers: Timers, dir: &Path) -> String {
    let d = dir.display();
    let instance = |name: &str, iface: &str, vrid: u8, vip: &str| {
        format!(
            "[[instance]]\nname = \"{name}\"\ninterface = \"{iface}\"\nvrid = {vrid}\n\
             version = {}\nadvert_interval_ms = {}\nvips = [\"{vip}\"]\n\n",
            timers.version, timers.interval_ms
        )
    };
    format!(
        "[cluster]\nname = \"edge\"\n\n\
         [[node]]\nname = \"lb1\"\npriority = {{ edge = 150 }}\n\
         addresses = {{ eth0 = [\"198.18.0.11/24\"], eth1 = [\"198.18.1.11/24\"] }}\n\n\
         [[node]]\nname = \"lb2\"\npriority = {{ edge = 100 }}\n\
         addresses = {{ eth0 = [\"198.18.0.12/24\"], eth1 = [\"198.18.1.12/24\"] }}\n\n\
         [[sync_group]]\nname = \"edge\"\ninstances = [\"public\", \"server\"]\n\n\
         {}{}\
         [control]\nvrrpd_socket = \"{d}/@NODE@-vrrpd.sock\"\nlbd_socket = \"{d}/@NODE@-lbd.sock\"\n",
        instance("public", "eth0", 51, "198.18.0.100/24"),
        instance("server", "eth1", 52, "198.18.1.100/24"),
    )
}

fn advert_int(interval_ms: u32) -> String {
    if interval_ms % 1000 == 0 {
        format!("{}", interval_ms / 1000)
    } else {
        format!("{:.2}", f64::from(interval_ms) / 1000.0)
    }
}

fn keepalived_instance(
    name: &str,
    iface: &str,
    vrid: u32,
    priority: u32,
    timers: Timers,
    vip: &str,
) -> String {
    format!(
        "vrrp_instance {name} {{\n    state BACKUP\n    interface {iface}\n    virtual_router_id {vrid}\n    \
         priority {priority}\n    advert_int {}\n    version {}\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n",
        advert_int(timers.interval_ms),
        timers.version
    )
}

/// keepalived's equivalent of cluster.toml.example: sync group `edge` with
/// `public` (eth0, VRID 51) and `server` (eth1, VRID 52); defaults otherwise.
fn keepalived_config(router_id: &str, priority: u32, timers: Timers) -> String {
    format!(
        "global_defs {{\n    router_id {router_id}\n}}\n\
         vrrp_sync_group edge {{\n    group {{\n        public\n        server\n    }}\n}}\n{}{}",
        keepalived_instance("public", "eth0", 51, priority, timers, "198.18.0.100/24"),
        keepalived_instance("server", "eth1", 52, priority, timers, "198.18.1.100/24"),
    )
}

/// The soak's cluster.toml: 25 groups of (eth0, eth1) instances, VRIDs 1-25,
/// VRRPv3 at 100 ms, no services.
fn soak_config(dir: &Path) -> String {
    let groups = SOAK_INSTANCES / 2;
    let prio = |p: u32| {
        (1..=groups)
            .map(|g| format!("g{g:02} = {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let d = dir.display();
    let mut t = format!(
        "[cluster]\nname = \"soak\"\n\n\
         [[node]]\nname = \"lb1\"\npriority = {{ {} }}\n\
         addresses = {{ eth0 = [\"198.18.0.11/24\"], eth1 = [\"198.18.1.11/24\"] }}\n\n\
         [[node]]\nname = \"lb2\"\npriority = {{ {} }}\n\
         addresses = {{ eth0 = [\"198.18.0.12/24\"], eth1 = [\"198.18.1.12/24\"] }}\n\n\
         [control]\nvrrpd_socket = \"{d}/soak-vrrpd-@NODE@.sock\"\nlbd_socket = \"{d}/soak-lbd.sock\"\n\n",
        prio(150),
        prio(100)
    );
    for g in 1..=groups {
        t.push_str(&format!(
            "[[sync_group]]\nname = \"g{g:02}\"\ninstances = [\"p{g:02}\", \"s{g:02}\"]\n\n\
             [[instance]]\nname = \"p{g:02}\"\ninterface = \"eth0\"\nvrid = {g}\nadvert_interval_ms = 100\n\
             vips = [\"198.18.0.{}/24\"]\n\n\
             [[instance]]\nname = \"s{g:02}\"\ninterface = \"eth1\"\nvrid = {g}\nadvert_interval_ms = 100\n\
             vips = [\"198.18.1.{}/24\"]\n\n",
            100 + g,
            100 + g
        ));
    }
    t
}

fn soak_keepalived_config(router_id: &str, priority: u32) -> String {
    let timers = Timers {
        label: "v3 100 ms",
        version: 3,
        interval_ms: 100,
    };
    let mut t = format!("global_defs {{\n    router_id {router_id}\n}}\n");
    for g in 1..=SOAK_INSTANCES / 2 {
        t.push_str(&format!(
            "vrrp_sync_group g{g:02} {{\n    group {{\n        p{g:02}\n        s{g:02}\n    }}\n}}\n"
        ));
        t.push_str(&keepalived_instance(
            &format!("p{g:02}"),
            "eth0",
            g as u32,
            priority,
            timers,
            &format!("198.18.0.{}/24", 100 + g),
        ));
        t.push_str(&keepalived_instance(
            &format!("s{g:02}"),
            "eth1",
            g as u32,
            priority,
            timers,
            &format!("198.18.1.{}/24", 100 + g),
        ));
    }
    t
}

/// The direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// CPU seconds (user + system) of `pid`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let (user, system) = benchmarks::cpu_seconds(pid)?;
    Ok(user + system)
}

/// (RSS MB at the end, CPU % of one core over `span`) per process group.
fn measure(groups: &[Vec<u32>], span: Duration) -> Result<Vec<(f64, f64)>> {
    let sum_cpu = |pids: &Vec<u32>| -> Result<f64> { pids.iter().map(|&p| cpu_seconds(p)).sum() };
    let before: Vec<f64> = groups.iter().map(sum_cpu).collect::<Result<_>>()?;
    let t0 = Instant::now();
    std::thread::sleep(span);
    let elapsed = t0.elapsed().as_secs_f64();
    let mut out = Vec::new();
    for (pids, b) in groups.iter().zip(before) {
        let cpu = (sum_cpu(pids)? - b) / elapsed * 100.0;
        let rss: f64 = pids
            .iter()
            .map(|&p| benchmarks::rss_mib(p))
            .sum::<Result<f64>>()?;
        out.push((rss, cpu));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// --only false-failover

/// Real-time priority of vrrpd (`[vrrpd] realtime_priority`) and keepalived
/// (`vrrp_rt_priority`) in the false-failover run: the shipped default.
const RT_PRIORITY: u8 = 20;
/// The argument that makes this binary one core's worth of busy loop.
const BURN_CPU: &str = "--burn-cpu";

/// What runs the pair in one column of the false-failover run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// vrrpd, `[vrrpd] realtime_priority = 20`, `lock_memory = true` (and
    /// `late_timer_grace = true`, the default).
    VrrpdRealtime,
    /// The same with `late_timer_grace = false`: the RFC's timer exactly.
    VrrpdRealtimeNoGrace,
    /// vrrpd, `realtime_priority = 0`, `lock_memory = false`.
    VrrpdNormal,
    /// keepalived, `vrrp_rt_priority 20`, `vrrp_no_swap`.
    KeepalivedRealtime,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::VrrpdRealtime => "vrrpd realtime 20",
            Contender::VrrpdRealtimeNoGrace => "vrrpd rt 20, no late grace",
            Contender::VrrpdNormal => "vrrpd normal priority",
            Contender::KeepalivedRealtime => "keepalived rt_priority 20",
        }
    }
}

/// How the kernel's ksoftirqd threads run during a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Softirq {
    /// As the machine has them (SCHED_OTHER on a stock kernel).
    Default,
    /// SCHED_FIFO 1: receive work the kernel defers to them after a stall waits
    /// behind no normal-priority load, only behind real-time threads.
    Fifo,
}

impl Softirq {
    fn name(self) -> &'static str {
        match self {
            Softirq::Default => "ksoftirqd default",
            Softirq::Fifo => "ksoftirqd FIFO 1",
        }
    }
}

/// The ksoftirqd threads' scheduling as found, put back by `restore` (or, at
/// worst, on drop).
struct SoftirqGuard {
    saved: Vec<(libc::pid_t, libc::c_int, libc::c_int)>,
}

impl SoftirqGuard {
    fn set(how: Softirq) -> Result<SoftirqGuard> {
        let mut guard = SoftirqGuard { saved: Vec::new() };
        if how == Softirq::Default {
            return Ok(guard);
        }
        for pid in ksoftirqd_pids()? {
            // SAFETY: plain syscalls on a pid with a parameter struct we own.
            let (policy, prio) = unsafe {
                let policy = libc::sched_getscheduler(pid);
                let mut p = libc::sched_param { sched_priority: 0 };
                if policy < 0 || libc::sched_getparam(pid, &mut p) != 0 {
                    continue; // gone meanwhile (CPU hot-unplugged)
                }
                (policy, p.sched_priority)
            };
            set_scheduler(pid, libc::SCHED_FIFO, 1)
                .with_context(|| format!("ksoftirqd {pid} to SCHED_FIFO 1"))?;
            guard.saved.push((pid, policy, prio));
        }
        if guard.saved.is_empty() {
            bail!("no ksoftirqd thread found in /proc");
        }
        Ok(guard)
    }

    fn restore(mut self) -> Result<()> {
        let mut first = Ok(());
        for (pid, policy, prio) in std::mem::take(&mut self.saved) {
            if let Err(e) = set_scheduler(pid, policy, prio) {
                if first.is_ok() {
                    first = Err(e.context(format!("restoring ksoftirqd {pid}")));
                }
            }
        }
        first
    }
}

impl Drop for SoftirqGuard {
    fn drop(&mut self) {
        for &(pid, policy, prio) in &self.saved {
            let _ = set_scheduler(pid, policy, prio);
        }
    }
}

fn set_scheduler(pid: libc::pid_t, policy: libc::c_int, prio: libc::c_int) -> Result<()> {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: plain syscall with a parameter struct we own.
    if unsafe { libc::sched_setscheduler(pid, policy, &p) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// The pids of the kernel's `ksoftirqd/N` threads.
fn ksoftirqd_pids() -> Result<Vec<libc::pid_t>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with("ksoftirqd/") {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// One cell: one contender at one interval under load.
struct Cell {
    /// lb2's public instance became MASTER this many times during the load, as lb2
    /// counts it (vrrpd: `vrrp_become_master_total`; keepalived: its log).
    false_failovers: usize,
    /// Runs of adverts from lb2 on the wire (it was MASTER); fewer than the
    /// transitions when lb2 went back and forth within a Master_Down_Interval.
    wire_episodes: usize,
    /// The largest gap between lb1's adverts as lb2 received them, ms.
    largest_gap_ms: f64,
    /// Gaps longer than lb2's Master_Down_Interval.
    gaps_over_mdi: usize,
    /// lb1's adverts lb2 received.
    adverts: usize,
    /// The scheduling the MASTER's VRRP process ran with.
    scheduling: String,
    /// What the machine itself did meanwhile (the real-time probe, steal).
    machine: String,
    /// One line per run of lb2's adverts: what preceded it.
    episodes: Vec<String>,
}

impl Cell {
    fn text(&self) -> String {
        format!(
            "{:>3} / {:>7.1} ms / {:>3}",
            self.false_failovers, self.largest_gap_ms, self.gaps_over_mdi
        )
    }
}

/// Kernel receive (or transmit) times, ns, of the public instance's adverts
/// (VRID 51 on eth0, priority above 0) seen in lb2's namespace.
#[derive(Default)]
struct AdvertLog {
    /// lb1's, as lb2 received them.
    lb1: Vec<i64>,
    /// lb2's own, as it sent them: lb2 was MASTER.
    lb2: Vec<i64>,
    /// lb1's adverts of the server-side instance (VRID 52 on eth1), the other
    /// member of the sync group: its silence alone lets lb2's group take over.
    lb1_server: Vec<i64>,
}

/// One core's worth of busy loop at normal priority, until killed or the parent
/// (the bench) dies.
fn burn_cpu() -> ! {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
}

/// A CPU load on every core at normal priority; stops (with its process group)
/// when dropped.
struct CpuLoad {
    _processes: Vec<Process>,
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).exists()))
}

/// Scheduling policy and real-time priority of `pid`'s main thread, from
/// /proc/PID/stat (fields 40 and 41).
fn scheduling_of(pid: u32) -> Option<(&'static str, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let prio: u32 = fields.get(40 - 3)?.parse().ok()?;
    let policy: u32 = fields.get(41 - 3)?.parse().ok()?;
    let name = match policy {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        _ => "other",
    };
    Some((name, prio))
}

/// In lb2's namespace: one packet socket (every frame, both directions) with
/// kernel timestamps notes lb1's and lb2's adverts of the public instance until
/// `stop` is set. The kernel's timestamps, not this thread's clock: this thread
/// runs at normal priority under the load.
fn capture_advert_times(stop: &AtomicBool) -> Result<AdvertLog> {
    use std::os::fd::AsRawFd;
    const LB1: [u8; 4] = [198, 18, 0, 11];
    const LB2: [u8; 4] = [198, 18, 0, 12];
    const LB1_SERVER_SIDE: [u8; 4] = [198, 18, 1, 11];
    const VRID: u8 = 51;
    const SERVER_VRID: u8 = 52;
    let eth_p_all = (libc::ETH_P_ALL as u16).to_be();
    let socket = Socket::new(
        Domain::PACKET,
        Type::RAW,
        Some(socket2::Protocol::from(i32::from(eth_p_all))),
    )
    .context("packet socket")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .context("read timeout")?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let one: libc::c_int = 1;
    // SAFETY: a valid int option value and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_TIMESTAMPNS");
    }
    let mut log = AdvertLog::default();
    let mut buf = [0u8; 2048];
    // u64 for the alignment cmsghdr needs.
    let mut control = [0u64; 32];
    while !stop.load(Ordering::Relaxed) {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; zero is a valid empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` points at `iov` (into `buf`) and `control`, both alive.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::Interrupted => continue,
                _ => return Err(e).context("reading the packet socket"),
            }
        }
        let frame = &buf[..n as usize];
        let mut at = None;
        // SAFETY: the CMSG_* walk stays inside `control` as msg describes it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    at = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let Some(at) = at else { continue };
        // Ethernet II (14 bytes), IPv4, protocol 112, VRRP: VRID, priority.
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 112 || ip.len() < ihl + 3 || ip[ihl + 2] == 0 {
            continue;
        }
        if ip[ihl + 1] == SERVER_VRID && ip[12..16] == LB1_SERVER_SIDE {
            log.lb1_server.push(at);
        }
        if ip[ihl + 1] != VRID {
            continue;
        }
        if ip[12..16] == LB1 {
            log.lb1.push(at);
        } else if ip[12..16] == LB2 {
            log.lb2.push(at);
        }
    }
    Ok(log)
}

/// The cell's figures from what lb2 captured: lb1's largest gap, and lb2's runs
/// of adverts as MASTER. Within a run lb2 sends every interval; a new run
/// follows at least 0.9 x Master_Down_Interval of silence.
fn analyse(log: &AdvertLog, mdi_ms: f64) -> Cell {
    let mdi_ns = mdi_ms * 1e6;
    let mut lb1 = log.lb1.clone();
    lb1.sort_unstable();
    let gaps: Vec<f64> = lb1.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mut lb2 = log.lb2.clone();
    lb2.sort_unstable();
    let episodes = lb2
        .iter()
        .enumerate()
        .filter(|(i, t)| *i == 0 || (**t - lb2[i - 1]) as f64 > 0.9 * mdi_ns)
        .count();
    Cell {
        false_failovers: 0,
        wire_episodes: episodes,
        largest_gap_ms: gaps.iter().copied().fold(0.0, f64::max) / 1e6,
        gaps_over_mdi: gaps.iter().filter(|&&g| g > mdi_ns).count(),
        adverts: lb1.len(),
        scheduling: String::new(),
        machine: String::new(),
        episodes: Vec::new(),
    }
}

/// Wall-clock now, ns (the clock the kernel's packet timestamps use).
fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The machine's steal time so far (all CPUs), in USER_HZ ticks: time the
/// hypervisor ran something else while this VM's CPUs wanted to run.
fn steal_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next()?.split_whitespace().nth(8)?.parse().ok())
        .unwrap_or(0)
}

/// What a thread at the highest real-time priority saw while the cell ran: how
/// late its 1 ms wake-ups came, and the hypervisor's steal. A stall this thread
/// sees no priority inside the machine can avoid.
#[derive(Default)]
struct MachineProbe {
    /// (wall-clock ns, lateness ns) of every wake-up later than [`PROBE_LATE`].
    late: Vec<(i64, i64)>,
    largest_late_ns: i64,
    wakeups: u64,
    /// Steal ticks over the run, and the most in one 100 ms window.
    steal_ticks: u64,
    largest_steal_window_ticks: u64,
    /// SCHED_FIFO 99 could not be set: the figures are at normal priority.
    normal_priority: bool,
}

const PROBE_PERIOD_NS: i64 = 1_000_000;
const PROBE_LATE: i64 = 5_000_000;

impl MachineProbe {
    fn summary(&self) -> String {
        format!(
            "machine: SCHED_FIFO 99 probe{} woke up to {:.1} ms late ({} of {} wake-ups > {} ms late), steal {:.2} s (at most {} ms in one 100 ms window)",
            if self.normal_priority { " (normal priority: not permitted)" } else { "" },
            self.largest_late_ns as f64 / 1e6,
            self.late.len(),
            self.wakeups,
            PROBE_LATE / 1_000_000,
            self.steal_ticks as f64 / 100.0,
            self.largest_steal_window_ticks * 10,
        )
    }

    /// The latest wake-up lateness, ns, of any late wake-up ending in `[from, to]`.
    fn largest_late_in(&self, from: i64, to: i64) -> i64 {
        self.late
            .iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .map(|&(_, late)| late)
            .max()
            .unwrap_or(0)
    }
}

/// A 1 ms periodic wake-up at SCHED_FIFO 99 until `stop`, noting lateness.
fn machine_probe(stop: &AtomicBool) -> MachineProbe {
    let mut probe = MachineProbe::default();
    let param = libc::sched_param { sched_priority: 99 };
    // SAFETY: plain syscall on this thread with a valid parameter.
    probe.normal_priority = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0;
    let mut next = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut next) };
    let start_steal = steal_ticks();
    let mut window_steal = start_steal;
    while !stop.load(Ordering::Relaxed) {
        next.tv_nsec += PROBE_PERIOD_NS;
        if next.tv_nsec >= 1_000_000_000 {
            next.tv_nsec -= 1_000_000_000;
            next.tv_sec += 1;
        }
        // SAFETY: absolute sleep to a valid timespec.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &next,
                std::ptr::null_mut(),
            )
        };
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        let late = (now.tv_sec - next.tv_sec) * 1_000_000_000 + (now.tv_nsec - next.tv_nsec);
        probe.wakeups += 1;
        probe.largest_late_ns = probe.largest_late_ns.max(late);
        if late > PROBE_LATE {
            probe.late.push((realtime_ns(), late));
            // Catch up instead of firing a burst of overdue wake-ups.
            next = now;
        }
        if probe.wakeups % 100 == 0 {
            let steal = steal_ticks();
            probe.largest_steal_window_ticks = probe
                .largest_steal_window_ticks
                .max(steal.saturating_sub(window_steal));
            window_steal = steal;
        }
    }
    probe.steal_ticks = steal_ticks().saturating_sub(start_steal);
    probe
}

/// For each run of lb2's adverts as MASTER: the gap in lb1's adverts lb2 saw
/// before it, the gap in what lb1 itself sent over the same span, and how late
/// the real-time probe woke meanwhile.
fn attribute_episodes(
    log: &AdvertLog,
    sent: &[i64],
    probe: &MachineProbe,
    mdi_ms: f64,
) -> Vec<String> {
    let mdi_ns = (mdi_ms * 1e6) as i64;
    let mut received = log.lb1.clone();
    received.sort_unstable();
    let mut server_side = log.lb1_server.clone();
    server_side.sort_unstable();
    let mut sent = sent.to_vec();
    sent.sort_unstable();
    let mut lb2 = log.lb2.clone();
    lb2.sort_unstable();
    let largest_gap = |times: &[i64], from: i64, to: i64| -> f64 {
        // The last event before `from` starts the first gap.
        let first = times.partition_point(|&t| t < from).saturating_sub(1);
        let last = times.partition_point(|&t| t <= to);
        times[first..last]
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain(times.get(last.saturating_sub(1)).map(|&t| to - t))
            .max()
            .unwrap_or(0) as f64
            / 1e6
    };
    lb2.iter()
        .enumerate()
        .filter(|(i, t)| *i == 0 || (**t - lb2[i - 1]) as f64 > 0.9 * mdi_ns as f64)
        .map(|(_, &t)| {
            let from = t - 2 * mdi_ns;
            format!(
                "lb2 MASTER at {:.3}: before it, lb1's adverts at lb2 paused {:.1} ms (server side {:.1} ms), lb1 sent with a pause of {:.1} ms, the real-time probe woke {:.1} ms late",
                t as f64 / 1e9,
                largest_gap(&received, from, t),
                largest_gap(&server_side, from, t),
                largest_gap(&sent, from, t),
                probe.largest_late_in(from, t) as f64 / 1e6,
            )
        })
        .collect()
}

/// `/metrics` of vrrpd in `node`.
fn scrape_metrics(lab: &Lab, node: &str) -> Result<String> {
    use std::io::Write;
    let addr = SocketAddr::from(([127, 0, 0, 1], 9612));
    let mut stream = lab[node].tcp_connect(addr, Duration::from_secs(10))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// The value of `name` for the public instance (or unlabelled) in a scrape.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        (n == name && (labels.is_empty() || labels.contains("vrrp_instance=\"public\"")))
            .then(|| value.parse().ok())
            .flatten()
    })
}

impl Bench {
    /// A CPU load at normal priority on every core for a little over `span`.
    fn cpu_load(&self, span: Duration) -> Result<(CpuLoad, String)> {
        let cpus = benchmarks::cpus_available();
        // The load has no network: any namespace does; the client's is the lab's.
        let host = &self.lab["client"];
        if on_path("stress-ng") {
            // --timeout: gone even if this bench is killed outright.
            let timeout = format!("{}s", span.as_secs() + 60);
            let p = host.spawn(
                "stress-ng",
                ["--cpu", &cpus.to_string(), "--timeout", &timeout, "--quiet"],
            )?;
            return Ok((
                CpuLoad {
                    _processes: vec![p],
                },
                format!("stress-ng --cpu {cpus}"),
            ));
        }
        let exe = std::env::current_exe().context("locating vrrp_bench")?;
        let processes = (0..cpus)
            .map(|_| host.spawn(&exe, [BURN_CPU]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            CpuLoad {
                _processes: processes,
            },
            format!("{cpus} busy-loop processes (stress-ng not installed)"),
        ))
    }

    /// lb1 (150) and lb2 (100) of `contender` at `timers`.
    fn start_contender(&self, contender: Contender, timers: Timers) -> Result<Pair> {
        let rt = |node: &str| -> String {
            format!(
                "global_defs {{\n    router_id {node}\n    vrrp_rt_priority {RT_PRIORITY}\n    vrrp_no_swap\n}}\n"
            )
        };
        match contender {
            Contender::VrrpdRealtime | Contender::VrrpdRealtimeNoGrace | Contender::VrrpdNormal => {
                let (priority, lock, grace) = match contender {
                    Contender::VrrpdRealtime => (RT_PRIORITY, true, true),
                    Contender::VrrpdRealtimeNoGrace => (RT_PRIORITY, true, false),
                    _ => (0, false, true),
                };
                let text = format!(
                    "{}\n[vrrpd]\nrealtime_priority = {priority}\nlock_memory = {lock}\nlate_timer_grace = {grace}\n",
                    vrrpd_config(timers, self.dir.path())
                );
                let mut started = Vec::new();
                for node in ["lb1", "lb2"] {
                    let path = self.dir.path().join(format!("{node}.toml"));
                    std::fs::write(&path, text.replace("@NODE@", node))
                        .with_context(|| format!("writing {}", path.display()))?;
                    let mut cmd = self.lab[node].command(&self.vrrpd);
                    cmd.args(["--config", &path.to_string_lossy(), "--node", node])
                        .env("RUST_LOG", "info");
                    started.push(self.lab[node].spawn_command(cmd, "vrrpd")?);
                }
                let lb2 = started.pop().ok_or_else(|| anyhow!("lb2 not started"))?;
                let lb1 = started.pop().ok_or_else(|| anyhow!("lb1 not started"))?;
                Ok(Pair { lb1, lb2 })
            }
            Contender::KeepalivedRealtime => {
                let conf = |node: &str, priority: u32| {
                    keepalived_config(node, priority, timers).replacen(
                        &format!("global_defs {{\n    router_id {node}\n}}\n"),
                        &rt(node),
                        1,
                    )
                };
                let lb1 = self.keepalived("lb1", &conf("lb1", 150))?;
                let lb2 = self.keepalived("lb2", &conf("lb2", 100))?;
                Ok(Pair { lb1, lb2 })
            }
        }
    }

    /// lb1 MASTER, lb2 BACKUP, at each interval, under a CPU load on every core,
    /// for each contender (interleaved per interval); prints a table.
    fn false_failovers(
        &self,
        span: Duration,
        intervals_ms: &[u32],
        keepalived: bool,
        only: &[String],
        softirq: &[Softirq],
    ) -> Result<()> {
        let contenders: Vec<Contender> = [
            Contender::VrrpdRealtime,
            Contender::VrrpdRealtimeNoGrace,
            Contender::VrrpdNormal,
            Contender::KeepalivedRealtime,
        ]
        .into_iter()
        .filter(|c| keepalived || *c != Contender::KeepalivedRealtime)
        .filter(|c| only.is_empty() || only.iter().any(|o| c.name().starts_with(o.as_str())))
        .collect();
        let columns: Vec<(Contender, Softirq)> = contenders
            .iter()
            .flat_map(|&c| softirq.iter().map(move |&s| (c, s)))
            .collect();
        let column_name = |(c, s): (Contender, Softirq)| match s {
            Softirq::Default if softirq.len() == 1 => c.name().to_owned(),
            s => format!("{}, {}", c.name(), s.name()),
        };
        let mut load_name = String::new();
        let mut rows: Vec<(Timers, Vec<Result<Cell>>)> = Vec::new();
        for &interval_ms in intervals_ms {
            let timers = Timers {
                label: "false-failover",
                version: 3,
                interval_ms,
            };
            let mut cells = Vec::new();
            for &(contender, host) in &columns {
                let cell = SoftirqGuard::set(host).and_then(|guard| {
                    let cell = self.false_failover_cell(contender, timers, span, &mut load_name);
                    guard.restore()?;
                    cell
                });
                match &cell {
                    Ok(c) => {
                        println!(
                            "{interval_ms:>5} ms  {:<26} false failovers {:>3} ({} runs of lb2 adverts on the wire), largest gap {:7.1} ms, gaps > Master_Down_Interval ({:.1} ms) {}, lb1 adverts seen {}; {}",
                            column_name((contender, host)),
                            c.false_failovers,
                            c.wire_episodes,
                            c.largest_gap_ms,
                            timers.master_down_ms(),
                            c.gaps_over_mdi,
                            c.adverts,
                            c.scheduling
                        );
                        println!("          {}", c.machine);
                        for e in &c.episodes {
                            println!("          {e}");
                        }
                    }
                    Err(e) => println!(
                        "{interval_ms:>5} ms  {:<26} FAILED: {e:#}",
                        column_name((contender, host))
                    ),
                }
                cells.push(cell);
                self.reset()?;
            }
            rows.push((timers, cells));
        }

        println!();
        println!(
            "False failovers under CPU saturation ({load_name}, normal priority), {} s per cell",
            span.as_secs()
        );
        println!(
            "lb1 MASTER (150), lb2 BACKUP ({BACKUP_PRIORITY}), VRRPv3; each cell: false failovers (lb2 \
             became MASTER) / largest gap between lb1's adverts at lb2 / gaps over lb2's Master_Down_Interval"
        );
        println!();
        print!("{:>9} {:>9}", "interval", "MDI");
        for &c in &columns {
            print!("   {:<29}", column_name(c));
        }
        println!();
        for (timers, cells) in &rows {
            print!(
                "{:>6} ms {:>6.1} ms",
                timers.interval_ms,
                timers.master_down_ms()
            );
            for cell in cells {
                let text = match cell {
                    Ok(c) => c.text(),
                    Err(_) => "failed".to_owned(),
                };
                print!("   {text:<29}");
            }
            println!();
        }
        println!();
        println!(
            "Master_Down_Interval = 3 x interval + Skew_Time ((256 - {BACKUP_PRIORITY}) / 256 x interval); \
             a gap longer than it lets the backup take over"
        );
        Ok(())
    }

    /// One contender at one interval under load for `span`.
    fn false_failover_cell(
        &self,
        contender: Contender,
        timers: Timers,
        span: Duration,
        load_name: &mut String,
    ) -> Result<Cell> {
        let mut pair = self.start_contender(contender, timers)?;
        self.wait_answer("lb1", SETTLE_LIMIT)?;
        if has_vip(&self.lab, "lb2", "eth0", PUBLIC_VIP)? {
            bail!("both nodes hold the VIP before the load starts");
        }
        // lb2 settles in BACKUP.
        std::thread::sleep(Duration::from_millis(
            u64::from(timers.interval_ms) * 3 + 500,
        ));
        let what = match contender {
            Contender::KeepalivedRealtime => {
                // keepalived's VRRP child is the process that should run real-time.
                let kids = children(pair.lb1.pid());
                kids.iter()
                    .filter_map(|&k| {
                        scheduling_of(k).map(|s| format!("VRRP child {k}: {} {}", s.0, s.1))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            _ => match scheduling_of(pair.lb1.pid()) {
                Some((p, n)) => format!("lb1 vrrpd: {p} {n}"),
                None => String::new(),
            },
        };
        let before = self.lb2_became_master(contender, &pair)?;
        let stop = Arc::new(AtomicBool::new(false));
        let capture_in = |node: &str| {
            let stop = Arc::clone(&stop);
            self.lab[node].thread_in(move || capture_advert_times(&stop))
        };
        let capture = capture_in("lb2")?;
        // lb1's own adverts as lb1's kernel sent them: a gap here is the sender's,
        // a gap only at lb2 is the path's.
        let sent = capture_in("lb1")?;
        let probe = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || machine_probe(&stop))
        };
        let (load, name) = self.cpu_load(span)?;
        *load_name = name;
        std::thread::sleep(span);
        drop(load);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let log = capture
            .join()
            .map_err(|_| anyhow!("the advert capture panicked"))??;
        let sent = sent
            .join()
            .map_err(|_| anyhow!("lb1's advert capture panicked"))??;
        let probe = probe
            .join()
            .map_err(|_| anyhow!("the machine probe panicked"))?;
        if let Some(status) = pair.lb1.try_wait()? {
            bail!("lb1 exited during the run ({status})");
        }
        let after = self.lb2_became_master(contender, &pair)?;
        let mut cell = analyse(&log, timers.master_down_ms());
        cell.false_failovers = after.saturating_sub(before);
        cell.scheduling = what;
        if contender != Contender::KeepalivedRealtime {
            // Master_Down_Timers that waited one more interval (late, or the host stalled).
            let text = scrape_metrics(&self.lab, "lb2")?;
            let graces = metric(&text, "vrrp_master_down_late_total").unwrap_or(0.0);
            cell.scheduling += &format!("; lb2 graces {graces}");
        }
        cell.machine = probe.summary();
        cell.episodes = attribute_episodes(&log, &sent.lb1, &probe, timers.master_down_ms());
        drop(pair);
        Ok(cell)
    }

    /// How often lb2's public instance has become MASTER so far, as lb2 counts
    /// it: vrrpd's `vrrp_become_master_total`, keepalived's log lines.
    fn lb2_became_master(&self, contender: Contender, pair: &Pair) -> Result<usize> {
        match contender {
            Contender::KeepalivedRealtime => {
                let log = pair.lb2.stdout() + &pair.lb2.stderr();
                Ok(log
                    .lines()
                    .filter(|l| l.contains("(public) Entering MASTER STATE"))
                    .count())
            }
            _ => {
                let text = scrape_metrics(&self.lab, "lb2")?;
                let n = metric(&text, "vrrp_become_master_total")
                    .ok_or_else(|| anyhow!("no vrrp_become_master_total in lb2's metrics"))?;
                Ok(n as usize)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episodes_are_separated_by_a_master_down_interval_of_silence() {
        let ms = |v: &[i64]| v.iter().map(|m| m * 1_000_000).collect::<Vec<_>>();
        let log = AdvertLog {
            lb1: ms(&[0, 30, 60, 150, 180]),
            // One episode of two adverts, then another 100 ms later.
            lb2: ms(&[120, 150, 250]),
            ..AdvertLog::default()
        };
        let cell = analyse(&log, 48.3);
        assert_eq!(cell.wire_episodes, 2);
        assert!((cell.largest_gap_ms - 90.0).abs() < 1e-9);
        assert_eq!(cell.gaps_over_mdi, 1);
        assert_eq!(cell.adverts, 5);
        assert_eq!(analyse(&AdvertLog::default(), 48.3).wire_episodes, 0);
    }
}
