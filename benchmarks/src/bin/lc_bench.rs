//! lc_bench: least-connection scheduling on the nft backend against wrr (what a user
//! got before) and against IPVS lc/wlc in the VM, under one skewed load
//! (`integration::skewed_load`: srv1 answers at once, srv2 after 300 ms; every 5th
//! connection of a client held 1.5 s, the others closed at once).
//!
//! ```text
//! lc_bench [--runs N] [--duration S] [--lbd PATH] [--only wrr,lc,wlc] [--services N]
//!          [--idle S] [--workers N] [--pause-ms MS] [--ipvs-vm]
//! ```
//!
//! The real lbd (the release build next to lc_bench unless `--lbd`) runs in lb1 of
//! the two-arm lab with the nft backend; for each run, wrr, lc and wlc (weights
//! srv1 2, srv2 1) in turn, each under the same load. Figure: the imbalance, max /
//! mean over the servers of (open connections / weight), sampled every 100 ms from
//! the servers' own counts, averaged over a run; the median over the runs is
//! printed (1.00: each server holds its share), with lbd's CPU during the load
//! (user + system time / wall time). `--services N` adds N idle lc services (other
//! ports of the VIP, same servers) to the measured one; `--idle S` also measures
//! lbd's CPU for S seconds before the load; `--workers` and `--pause-ms` change the
//! load's clients (24) and their pause between connections (100 ms), for a higher
//! connection rate. With `--ipvs-vm` it also runs the
//! VM stage's `least_conn_vm` test (`integration/vm/ipvs-tests.sh`, IPVS lc, wlc
//! and wrr under the same load in qemu) and prints its figures beside these.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use integration::skewed_load::{self, SkewServer, SkewedLoad};
use integration::{Host, Lab, Prefix};

const VIP: &str = "198.18.0.100";
const SNAT_VIP: &str = "198.18.1.100";

struct Args {
    runs: usize,
    duration: Duration,
    lbd: Option<PathBuf>,
    ipvs_vm: bool,
    only: Option<Vec<String>>,
    services: usize,
    idle: Duration,
    workers: Option<usize>,
    pause: Option<Duration>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 3,
        duration: Duration::from_secs(8),
        lbd: None,
        ipvs_vm: false,
        only: None,
        services: 0,
        idle: Duration::ZERO,
        workers: None,
        pause: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => a.runs = value("--runs")?.parse()?,
            "--duration" => a.duration = Duration::from_secs(value("--duration")?.parse()?),
            "--lbd" => a.lbd = Some(PathBuf::from(value("--lbd")?)),
            "--ipvs-vm" => a.ipvs_vm = true,
            "--only" => {
                a.only = Some(value("--only")?.split(',').map(str::to_owned).collect());
            }
            "--services" => a.services = value("--services")?.parse()?,
            "--idle" => a.idle = Duration::from_secs(value("--idle")?.parse()?),
            "--workers" => a.workers = Some(value("--workers")?.parse()?),
            "--pause-ms" => a.pause = Some(Duration::from_millis(value("--pause-ms")?.parse()?)),
            other => {
                bail!("unknown argument {other}; use --runs N, --duration S, --lbd PATH, --only LIST, --services N, --idle S, --workers N, --pause-ms MS, --ipvs-vm")
            }
        }
    }
    Ok(a)
}

/// lbd's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command (which may hold spaces), from the 3rd on.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).context("no utime")?.parse::<u64>()?
        + f.get(12).context("no stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// `n` more lc services on other ports of the VIP (1000 on), srv1 and srv2 each.
fn extra_services(n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "\n[[service]]\nname = \"idle{i}\"\nvip = \"{VIP}\"\nport = {}\nprotocol = \"tcp\"\nscheduler = \"lc\"\nmode = \"nat\"\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\nport = 80\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\nport = 80\n",
            1000 + i
        ));
    }
    text
}

/// The example configuration, without checks, on nft, with `scheduler` and srv1's
/// `weight`, its sockets in `dir`.
fn config(dir: &Path, scheduler: &str, srv1_weight: u32) -> Result<String> {
    let mut text = include_str!("../../../cluster.toml.example").to_owned();
    for (from, to) in [
        ("check = \"web-http\"", String::new()),
        ("backend = \"auto\"", "backend = \"nft\"".to_owned()),
        ("scheduler = \"rr\"", format!("scheduler = \"{scheduler}\"")),
        (
            "weight = 1\n# Health",
            format!("weight = {srv1_weight}\n# Health"),
        ),
        (
            "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
            format!("vrrpd_socket = {:?}", dir.join("vrrpd.sock")),
        ),
        (
            "lbd_socket = \"/run/lbsuite/lbd.sock\"",
            format!("lbd_socket = {:?}", dir.join("lbd.sock")),
        ),
    ] {
        if !text.contains(from) {
            bail!("cluster.toml.example lacks {from:?}");
        }
        text = text.replace(from, &to);
    }
    Ok(text)
}

/// Waits until the table's service chain uses `scheduler`'s slots (lbd applied).
fn wait_applied(lb: &Host, patience: Duration) -> Result<()> {
    let end = Instant::now() + patience;
    while Instant::now() < end {
        if let Ok(out) = lb.exec_ok(&[
            "nft",
            "list",
            "chain",
            "inet",
            "lbsuite",
            "svc_tcp_198.18.0.100_80",
        ]) {
            if out.contains("numgen inc") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("lbd did not apply within {patience:?}")
}

fn main() -> Result<()> {
    let args = args()?;
    if !integration::have_root("lc_bench") {
        bail!("lc_bench needs root (network namespaces)");
    }
    let lbd = match args.lbd.clone() {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for lc_bench")?
            .join("lbd"),
    };
    if !lbd.exists() {
        bail!(
            "{} not found: cargo build --release -p lbd, or --lbd PATH",
            lbd.display()
        );
    }
    let lab = Lab::two_arm()?;
    let dir = tempfile::tempdir()?;
    let lb = &lab["lb1"];
    lb.add_address("eth0", Prefix::new(VIP.parse()?, 24))?;
    lb.add_address("eth1", Prefix::new(SNAT_VIP.parse()?, 24))?;
    let srv1 = SkewServer::start(
        &lab["srv1"],
        "198.18.1.21:80".parse()?,
        Duration::from_millis(0),
    )?;
    let srv2 = SkewServer::start(
        &lab["srv2"],
        "198.18.1.22:80".parse()?,
        skewed_load::SLOW_DELAY,
    )?;
    let vip: SocketAddr = format!("{VIP}:80").parse()?;
    let mut load = SkewedLoad {
        duration: args.duration,
        ..SkewedLoad::default()
    };
    if let Some(w) = args.workers {
        load.workers = w;
    }
    if let Some(p) = args.pause {
        load.pause = p;
    }
    println!(
        "lc_bench: srv1 answers at once, srv2 after 300 ms; {} clients, every {}th connection held {:?}, pause {:?}; {:?} per run, {} runs, sampled every {:?}; lbd {}, {} idle lc services besides",
        load.workers, load.long_one_in, load.long_hold, load.pause, load.duration, args.runs, load.sample_every, lbd.display(), args.services
    );
    // (scheduler, srv1 weight, weights the imbalance is relative to)
    let cases: [(&str, u32, [f64; 2]); 3] = [
        ("wrr", 1, [1.0, 1.0]),
        ("lc", 1, [1.0, 1.0]),
        ("wlc", 2, [2.0, 1.0]),
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut opens: Vec<Vec<Vec<f64>>> = vec![Vec::new(); cases.len()];
    let mut load_cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut idle_cpu: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let config_path = dir.path().join("lb1.toml");
    for run in 0..args.runs {
        for (k, (sched, w1, weights)) in cases.iter().enumerate() {
            if args
                .only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|x| x == sched))
            {
                continue;
            }
            let text = config(dir.path(), sched, *w1)? + &extra_services(args.services);
            std::fs::write(&config_path, text)?;
            let mut cmd = lb.command(&lbd);
            cmd.args([
                "--config",
                config_path.to_str().unwrap_or_default(),
                "--node",
                "lb1",
            ])
            .env("RUST_LOG", "info");
            let mut p = lb.spawn_command(cmd, "lbd")?;
            wait_applied(lb, Duration::from_secs(30))?;
            // Let the connections of the previous case end.
            std::thread::sleep(Duration::from_secs(2));
            if !args.idle.is_zero() {
                let before = cpu_time(p.pid())?;
                std::thread::sleep(args.idle);
                let cpu = (cpu_time(p.pid())? - before).as_secs_f64() / args.idle.as_secs_f64();
                println!(
                    "run {run} nft {sched:>3}: lbd CPU idle {:.1}% ({} services)",
                    cpu * 100.0,
                    args.services + 1
                );
                idle_cpu[k].push(cpu * 100.0);
            }
            let (cpu_before, started) = (cpu_time(p.pid())?, Instant::now());
            let r = skewed_load::run(
                &lab["client"],
                vip,
                &[(&srv1, weights[0]), (&srv2, weights[1])],
                &load,
            )?;
            let cpu = (cpu_time(p.pid())? - cpu_before).as_secs_f64()
                / started.elapsed().as_secs_f64()
                * 100.0;
            p.signal(libc::SIGTERM)?;
            let _ = p.wait_timeout(Duration::from_secs(10));
            println!(
                "run {run} nft {sched:>3}: imbalance {:.2}, mean open srv1 {:.1} srv2 {:.1}, {} connections, {} failed, lbd CPU {cpu:.1}%",
                r.mean_imbalance(),
                r.mean_open[0],
                r.mean_open[1],
                r.connections,
                r.failures
            );
            figures[k].push(r.mean_imbalance());
            load_cpu[k].push(cpu);
            opens[k].push(r.mean_open.clone());
        }
    }
    println!();
    println!("imbalance = max/mean over servers of open connections / weight, sampled every 100 ms (1.00 = perfect); median of {} runs", args.runs);
    println!(
        "{:<10} {:>9} {:>14} {:>14} {:>9} {:>9}  runs",
        "scheduler", "imbalance", "open srv1", "open srv2", "lbd CPU", "idle CPU"
    );
    for (k, (sched, w1, _)) in cases.iter().enumerate() {
        if figures[k].is_empty() {
            continue;
        }
        let o1: Vec<f64> = opens[k].iter().map(|o| o[0]).collect();
        let o2: Vec<f64> = opens[k].iter().map(|o| o[1]).collect();
        let runs: Vec<String> = figures[k].iter().map(|f| format!("{f:.2}")).collect();
        let idle = if idle_cpu[k].is_empty() {
            "-".to_owned()
        } else {
            format!("{:.1}%", skewed_load::median(&idle_cpu[k]))
        };
        println!(
            "{:<10} {:>9.2} {:>14.1} {:>14.1} {:>8.1}% {:>9}  {}{}",
            format!("nft {sched}"),
            skewed_load::median(&figures[k]),
            skewed_load::median(&o1),
            skewed_load::median(&o2),
            skewed_load::median(&load_cpu[k]),
            idle,
            runs.join(" "),
            if *w1 != 1 { "  (weights 2:1)" } else { "" }
        );
    }
    if args.ipvs_vm {
        println!();
        println!("IPVS in the VM (qemu, TCG; integration/vm/ipvs-tests.sh, test least_conn_vm):");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new(root.join("integration/vm/ipvs-tests.sh"))
            .current_dir(&root)
            .env("VM_TEST_FILTER", "imbalance_under_skewed_load")
            .output()
            .context("running integration/vm/ipvs-tests.sh")?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("ipvs ") && l.contains("imbalance") || l.starts_with("VERDICT"))
            .collect();
        if lines.is_empty() {
            println!("  no figures; the stage said:\n{text}");
        }
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}
