//! Dataplane benchmark (prints figures; not a test; needs root, nginx-light and wrk):
//! `cargo run --release -p benchmarks --bin lb_bench -- [--runs 5] [--duration 5]
//! [--only apply|change|traffic|ablation|snat|reload|config] [--placement separate|shared|plain|both]
//! [--lbd PATH] [--baseline-lbd PATH] [--reloads 100] [--check-interval-ms 10000]
//! [--sizes 1000,10000] [--vrrpctl PATH] [--baseline-vrrpctl PATH]`.
//!
//! 1. Full apply of 1,000 and 10,000 services x 8 servers (rr, wrr; mh at 1,000), a
//!    fresh table each run, with the default counting (connections) and with packets
//!    and bytes counted too; wall time, and the CPU time of the applying thread (the
//!    kernel's work on the batch included: less inflated by a busy machine).
//! 2. One server change (a weight, a server removed), a service added or removed, at
//!    1,000 and 10,000 services, through `apply` (which compares every service) and
//!    through `apply_changed` with the hint lbd gives (the service's name).
//! 3. Requests/s and new connections/s through the VIP (DNAT + SNAT by the nft
//!    backend, counting connections only, and counting packets and bytes too)
//!    against the same server reached directly through lb1 (routing, no NAT, no
//!    table), runs interleaved; with lb1's CPU per request (its receive threads).
//!    Placements (`--placement`, default `both` = separate, then plain):
//!    - separate: every veth receives in a NAPI thread of its own; lb1's on CPU 1,
//!      the rest (wrk, nginx, the client's, server's and bridge's receives) on CPU 0,
//!      so the balancer is a machine of its own as deployed, and the ratio says
//!      whether it holds the traffic back;
//!    - plain: plain veths, all on both CPUs; every hop (lb1's forwarding, conntrack
//!      and NAT included) runs in the sender's context, wrk's or nginx's, so the
//!      ratio is the whole path's CPU per request;
//!    - shared: NAPI threads as in separate, nothing pinned.
//! 4. `--only ablation` (not part of the default run): new connections/s through the
//!    VIP with one part of the table changed at a time, interleaved with direct runs.
//! 5. `--only snat` (also part of the default run): new connections/s through the
//!    VIP with 2, 1,000 and 10,000 SNAT rules (the others for other VIPs, before the
//!    service's own), and with 1,000 and 10,000 as the linear chain of one rule per
//!    SNAT rule that the backend wrote before its SNAT maps (loaded by `nft -f` in
//!    the same run), interleaved with direct runs.
//! 6. `--only reload` (not part of the default run): the real lbd (the release lbd
//!    next to lb_bench, or `--lbd PATH`) in lb1 with 1,000 and 10,000 services x 8
//!    servers, every server TCP-checked: start to running (empty kernel, and adopting
//!    the table a stopped lbd left), a one-server weight change by the control
//!    socket's `reload` and by SIGHUP (until lbd says it reloaded: the apply is part
//!    of both): the first change after an adopting start (2 s after it, and as soon
//!    as lbd runs, with and without the table in the adoption record) apart from the
//!    later ones; RSS after start and after `--reloads`
//!    more reloads; beside `nft -f` of the same one-server change on a hand-written
//!    map layout, in the same lab. `--baseline-lbd PATH` (an older build) is measured
//!    the same way, alternated with this build round by round (`--runs` rounds).
//! 7. `--only config` (not part of the default run, no root needed): `vrrpctl
//!    check-config` (the release one next to lb_bench, or `--vrrpctl PATH`) on the
//!    files of part 6: wall time and peak RSS, beside `--baseline-vrrpctl PATH` (an
//!    older build) in the same run.
//!
//! Every figure is the median of the runs.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use benchmarks::{
    cpu_seconds_of, cpus_available, lbd_config, median, napi_switch, napi_thread, pin, CHECKED,
    CHECKED_PORT, FIRST_PORT,
};
use dataplane::{
    Backend, ChangeHint, Counting, Dataplane, DesiredState, Forwarding, NatProtocol, NftBackend,
    PortSpec, Protocol, Scheduler, Service, SnatRule, SnatSource,
};
use integration::{Host, Lab, Prefix, Process};

const NGINX: &str = "/usr/sbin/nginx";
const WRK: &str = "/usr/bin/wrk";
/// SNAT addresses for the VIP runs: a pool, so that new-connection runs do not run out
/// of (address, port) pairs still held in TIME_WAIT by conntrack (120 s).
const SNAT_POOL: usize = 8;

struct Args {
    runs: usize,
    duration: u32,
    only: Option<String>,
    placements: Vec<Placement>,
    /// `--only reload`: the lbd to run (default: the release lbd next to lb_bench).
    lbd: Option<std::path::PathBuf>,
    /// `--only reload`: SIGHUP reloads before the second RSS figure.
    reloads: usize,
    /// `--only reload`: the TCP checks' interval.
    check_ms: u32,
    /// `--only reload` and `config`: the service counts (default 1,000 and 10,000).
    sizes: Vec<usize>,
    /// `--only reload`: an lbd to measure first, the same way (an older build).
    baseline_lbd: Option<std::path::PathBuf>,
    /// `--only config`: the vrrpctl to run (default: the release one next to lb_bench).
    vrrpctl: Option<std::path::PathBuf>,
    /// `--only config`: a vrrpctl to compare with (an older build).
    baseline_vrrpctl: Option<std::path::PathBuf>,
}

/// Where the traffic runs' work is done.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every veth receives in a NAPI thread of its own; lb1's two threads on CPU 1,
    /// everything else (wrk, nginx, the client's, server's and bridge's receives) on
    /// CPU 0: the balancer is a machine of its own, as deployed.
    Separate,
    /// The same threads, nothing pinned: everything shares both CPUs, so the figure
    /// is the whole path's CPU per request (the balancer's share included).
    Shared,
    /// Plain veths (no NAPI threads): every hop, the balancer's forwarding included,
    /// runs in the sender's context (wrk's or nginx's), as in session 1's figures.
    Plain,
}

impl Placement {
    fn parse(s: &str) -> Result<Vec<Placement>> {
        Ok(match s {
            "separate" => vec![Placement::Separate],
            "shared" => vec![Placement::Shared],
            "plain" => vec![Placement::Plain],
            "both" => vec![Placement::Separate, Placement::Plain],
            other => bail!("unknown placement {other}; use separate, shared, plain or both"),
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Placement::Separate => {
                "lb1's receive threads on CPU 1; client, server, bridge on CPU 0 (separate machines)"
            }
            Placement::Shared => {
                "every receive in its own thread, all sharing both CPUs (whole-path CPU cost)"
            }
            Placement::Plain => {
                "plain veths: every hop in the sender's context, all sharing both CPUs"
            }
        }
    }
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 5,
        duration: 5,
        only: None,
        placements: vec![Placement::Separate, Placement::Plain],
        lbd: None,
        reloads: 100,
        check_ms: 10_000,
        sizes: vec![1000, 10_000],
        baseline_lbd: None,
        vrrpctl: None,
        baseline_vrrpctl: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => a.runs = value("--runs")?.parse().context("--runs")?,
            "--duration" => a.duration = value("--duration")?.parse().context("--duration")?,
            "--only" => a.only = Some(value("--only")?),
            "--placement" => a.placements = Placement::parse(&value("--placement")?)?,
            "--lbd" => a.lbd = Some(value("--lbd")?.into()),
            "--baseline-lbd" => a.baseline_lbd = Some(value("--baseline-lbd")?.into()),
            "--vrrpctl" => a.vrrpctl = Some(value("--vrrpctl")?.into()),
            "--baseline-vrrpctl" => {
                a.baseline_vrrpctl = Some(value("--baseline-vrrpctl")?.into())
            }
            "--reloads" => a.reloads = value("--reloads")?.parse().context("--reloads")?,
            "--sizes" => {
                a.sizes = value("--sizes")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--sizes")?
            }
            "--check-interval-ms" => {
                a.check_ms = value("--check-interval-ms")?
                    .parse()
                    .context("--check-interval-ms")?
            }
            other => bail!(
                "unknown argument {other}; use --runs N, --duration S, --only apply|change|traffic|ablation|snat|reload|config, --placement separate|shared|plain|both, --lbd PATH, --baseline-lbd PATH, --reloads N, --check-interval-ms MS, --sizes 1000,10000, --vrrpctl PATH, --baseline-vrrpctl PATH"
            ),
        }
    }
    a.runs = a.runs.max(1);
    Ok(a)
}

fn state(services: usize, scheduler: Scheduler) -> DesiredState {
    let services = (0..services)
        .map(|i| Service {
            name: format!("svc{i}"),
            vip: IpAddr::V4(Ipv4Addr::new(
                198,
                19,
                (i / 250 % 256) as u8,
                (i % 250 + 1) as u8,
            )),
            ports: PortSpec::Single(80 + (i / 64000) as u16),
            protocol: Protocol::Tcp,
            scheduler,
            backends: (0..8)
                .map(|j| Backend {
                    name: format!("srv{j}"),
                    addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 21 + j)),
                    port: Some(8080),
                    weight: 1 + u32::from(scheduler == Scheduler::Wrr) * (j % 3) as u32,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        })
        .collect();
    DesiredState {
        services,
        snat: Vec::new(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One printed line: what, figures, target.
struct Row {
    what: String,
    at_1k: String,
    at_10k: String,
    ratio: String,
    target: String,
}

fn row(what: &str, at_1k: String, at_10k: String, ratio: String, target: &str) -> Row {
    Row {
        what: what.to_owned(),
        at_1k,
        at_10k,
        ratio,
        target: target.to_owned(),
    }
}

fn print_table(title: &str, cols: [&str; 3], rows: &[Row]) {
    println!("\n{title}");
    let w = rows.iter().map(|r| r.what.len()).max().unwrap_or(10).max(6);
    println!(
        "  {:<w$} | {:>12} | {:>12} | {:>8} | target",
        "", cols[0], cols[1], cols[2]
    );
    println!("  {}", "-".repeat(w + 50));
    for r in rows {
        println!(
            "  {:<w$} | {:>12} | {:>12} | {:>8} | {}",
            r.what, r.at_1k, r.at_10k, r.ratio, r.target
        );
    }
}

fn nft_in(host: &Host, table: &str) -> Result<NftBackend> {
    nft_counting(host, table, Counting::default())
}

fn nft_counting(host: &Host, table: &str, counting: Counting) -> Result<NftBackend> {
    let t = table.to_owned();
    Ok(host.run_in(move || NftBackend::with_counting(&t, counting))??)
}

/// Median full-apply time (ms) of `n` services, a fresh table each run; and the
/// median CPU time (ms, user + system, the kernel's work on the batch included) of
/// the applying thread, which a machine busy with other work inflates less.
fn full_apply(
    lb: &Host,
    n: usize,
    sched: Scheduler,
    counting: Counting,
    runs: usize,
) -> Result<(f64, f64)> {
    let s = state(n, sched);
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..runs {
        let mut nft = nft_counting(lb, "lbbench", counting)?;
        nft.teardown()?;
        let (t, c) = (Instant::now(), thread_cpu_ms());
        nft.apply(&s)?;
        times.push(ms(t.elapsed()));
        cpu.push(thread_cpu_ms() - c);
        nft.teardown()?;
    }
    Ok((median(times), median(cpu)))
}

/// CPU time (user + system) of the calling thread, in ms.
fn thread_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Single-change figures at `n` services (ms): weight change, server removed, service
/// added and removed, each through `apply` and through `apply_changed`; same state
/// again; plus adopt and counters once (information).
struct ChangeFigures {
    weight: f64,
    removed: f64,
    hinted_weight: f64,
    hinted_removed: f64,
    hinted_added_service: f64,
    hinted_removed_service: f64,
    added_service: f64,
    same: f64,
    adopt: f64,
    counters: f64,
}

fn changes(lb: &Host, n: usize, runs: usize) -> Result<ChangeFigures> {
    let mut s = state(n, Scheduler::Wrr);
    let mut nft = nft_in(lb, "lbbench")?;
    nft.teardown()?;
    nft.apply(&s)?;
    let k = runs.max(11);
    let check = |r: dataplane::ApplyReport, hinted: bool| -> Result<f64> {
        if r.reread {
            bail!("an apply re-read the table: something else changed nf_tables");
        }
        if hinted && !r.hint_used {
            bail!("apply_changed did not use its hint: {r:?}");
        }
        Ok(ms(r.duration))
    };
    let time = |s: &DesiredState, nft: &mut NftBackend| -> Result<f64> {
        let t = Instant::now();
        let r = nft.apply(s)?;
        let e = ms(t.elapsed());
        check(r, false)?;
        Ok(e)
    };
    let time_hinted = |s: &DesiredState, name: &str, nft: &mut NftBackend| -> Result<f64> {
        let hint = ChangeHint::for_service(name);
        let t = Instant::now();
        let r = nft.apply_changed(s, &hint)?;
        let e = ms(t.elapsed());
        check(r, true)?;
        Ok(e)
    };
    let mut same = Vec::new();
    for _ in 0..k {
        same.push(time(&s, &mut nft)?);
    }
    // Interleaved: apply and apply_changed take turns on the same kind of change.
    let (mut weight, mut hinted_weight) = (Vec::new(), Vec::new());
    for i in 0..2 * k {
        // Spread over the table; each changes one server of one service.
        let svc = &mut s.services[(i * 7919) % n];
        svc.backends[3].weight += 1;
        let name = svc.name.clone();
        if i % 2 == 0 {
            weight.push(time(&s, &mut nft)?);
        } else {
            hinted_weight.push(time_hinted(&s, &name, &mut nft)?);
        }
    }
    let (mut removed, mut hinted_removed) = (Vec::new(), Vec::new());
    for i in 0..2 * k {
        let svc = &mut s.services[(i * 104_729 + 1) % n];
        if svc.backends.len() < 2 {
            continue;
        }
        svc.backends.remove(1);
        let name = svc.name.clone();
        if i % 2 == 0 {
            removed.push(time(&s, &mut nft)?);
        } else {
            hinted_removed.push(time_hinted(&s, &name, &mut nft)?);
        }
    }
    // A reload that adds a service (appended), then one that removes it again.
    let extra = state(n + 2 * k, Scheduler::Wrr);
    let (mut added, mut hinted_added, mut hinted_gone) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..2 * k {
        let mut svc = extra.services[n + i].clone();
        svc.name = format!("added{i}");
        let name = svc.name.clone();
        s.services.push(svc);
        if i % 2 == 0 {
            added.push(time(&s, &mut nft)?);
            s.services.pop();
            time(&s, &mut nft)?;
        } else {
            hinted_added.push(time_hinted(&s, &name, &mut nft)?);
            s.services.pop();
            hinted_gone.push(time_hinted(&s, &name, &mut nft)?);
        }
    }
    let mut adopter = nft_in(lb, "lbbench")?;
    let t = Instant::now();
    let r = adopter.apply(&s)?;
    let adopt = ms(t.elapsed());
    if r.changes() != 0 {
        bail!("adopting the table found {} changes", r.changes());
    }
    let t = Instant::now();
    adopter.counters()?;
    let counters = ms(t.elapsed());
    nft.teardown()?;
    Ok(ChangeFigures {
        weight: median(weight),
        removed: median(removed),
        hinted_weight: median(hinted_weight),
        hinted_removed: median(hinted_removed),
        hinted_added_service: median(hinted_added),
        hinted_removed_service: median(hinted_gone),
        added_service: median(added),
        same: median(same),
        adopt,
        counters,
    })
}

/// Requests/s reported by one wrk run in `client` against `url` (on CPU 0 when the
/// placement is `Separate`).
fn wrk(client: &Host, url: &str, close: bool, duration: u32, placement: Placement) -> Result<f64> {
    let d = format!("{duration}s");
    let mut argv = Vec::new();
    if placement == Placement::Separate {
        argv.extend(["taskset", "-c", "0"]);
    }
    argv.extend([WRK, "-t1", "-c32", "-d", &d, "--timeout", "2s"]);
    if close {
        argv.extend(["-H", "Connection: close"]);
    }
    argv.push(url);
    let out = client.exec_timeout(&argv, Duration::from_secs(u64::from(duration) + 30))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    for line in text.lines() {
        if line.contains("Socket errors") || line.contains("Non-2xx") {
            println!("    wrk {url}: {}", line.trim());
        }
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk output: {text}"))
}

fn nginx_conf(dir: &Path, listen: &str) -> Result<std::path::PathBuf> {
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    // A small static file.
    std::fs::write(www.join("index.html"), "lbsuite benchmark page\n".repeat(8))?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/html;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{ listen {listen}; root {d}/www; }}
}}
"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// The benchmark's one service, SNAT to a pool of `snat_pool` addresses or (0) to the
/// single address 198.18.1.120.
fn vip_state(snat_pool: usize) -> DesiredState {
    let source = if snat_pool == 0 {
        SnatSource::Address(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 120)))
    } else {
        SnatSource::Pool(
            (0..snat_pool)
                .map(|i| (IpAddr::V4(Ipv4Addr::new(198, 18, 1, 100 + i as u8)), None))
                .collect(),
        )
    };
    DesiredState {
        services: vec![Service {
            name: "web".into(),
            vip: "198.18.0.100".parse().expect("literal"),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Rr,
            backends: vec![Backend {
                name: "srv1".into(),
                addr: "198.18.1.21".parse().expect("literal"),
                port: Some(80),
                weight: 1,
            }],
            forward: Forwarding::Nat,
            persistence: None,
        }],
        snat: vec![SnatRule {
            name: "web-out".into(),
            in_iface: Some("eth0".into()),
            out_iface: Some("eth1".into()),
            protocol: NatProtocol::Tcp,
            orig_daddr: "198.18.0.100".parse().expect("literal"),
            orig_dports: Some(PortSpec::Single(80)),
            source,
        }],
    }
}

/// The address of the `i`th SNAT rule for another VIP (198.19.0.0/16, routed nowhere).
fn filler_vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, (i / 250 % 256) as u8, (i % 250 + 1) as u8)
}

/// `n` SNAT rules for other VIPs, matching what the service's own rule matches but
/// the address (a VIP each, to one address): a site with `n` VIPs.
fn snat_fillers(n: usize) -> Vec<SnatRule> {
    let own = vip_state(0).snat.remove(0);
    (0..n)
        .map(|i| SnatRule {
            name: format!("other{i}"),
            orig_daddr: IpAddr::V4(filler_vip(i)),
            source: SnatSource::Address(IpAddr::V4(Ipv4Addr::new(198, 18, 1, 120))),
            ..own.clone()
        })
        .collect()
}

/// `n` such rules as the nft backend wrote them before its SNAT maps: a rule each,
/// inserted at the head of lb_snat (an `nft -f` file).
fn linear_snat(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "insert rule inet lbsuite lb_snat meta nfproto ipv4 meta l4proto tcp iifname \"eth0\" oifname \"eth1\" ct original ip daddr {} ct original proto-dst 80 snat ip to 198.18.1.120\n",
                filler_vip(i)
            )
        })
        .collect()
}

/// client -> lb1 -> srv1 with nginx on srv1; lb1 holds the VIP and the SNAT addresses.
struct TrafficLab {
    // Dropped before the lab: nginx stops first.
    _nginx: Process,
    lab: Lab,
    placement: Placement,
    /// lb1's NAPI threads (eth0, eth1); empty with plain veths.
    lb_threads: BTreeSet<u32>,
}

/// Gives every veth of the lab a receive thread; with `Separate`, puts lb1's on CPU 1
/// and the others on CPU 0. Returns lb1's.
fn place_receives(lab: &Lab, placement: Placement) -> Result<BTreeSet<u32>> {
    if placement == Placement::Plain {
        return Ok(BTreeSet::new());
    }
    let (client, lb, srv) = (&lab["client"], &lab["lb1"], &lab["srv1"]);
    let mut lb_threads = napi_thread(lb.netns(), "eth0")?;
    lb_threads.extend(napi_thread(lb.netns(), "eth1")?);
    let mut others = napi_thread(client.netns(), "eth0")?;
    others.extend(napi_thread(srv.netns(), "eth0")?);
    others.extend(napi_switch(lab)?);
    if placement == Placement::Separate {
        if cpus_available() < 2 {
            bail!("--placement separate needs 2 CPUs");
        }
        for &pid in &lb_threads {
            pin(pid, &[1])?;
        }
        for &pid in &others {
            pin(pid, &[0])?;
        }
    }
    Ok(lb_threads)
}

fn traffic_lab(placement: Placement) -> Result<TrafficLab> {
    let lab = Lab::two_arm()?;
    let (client, lb, srv) = (&lab["client"], &lab["lb1"], &lab["srv1"]);
    let p = |s: &str, len| Prefix::new(s.parse().expect("literal"), len);
    lb.add_address("eth0", p("198.18.0.100", 24))?;
    for i in 0..SNAT_POOL {
        lb.add_address("eth1", p(&format!("198.18.1.{}", 100 + i), 24))?;
    }
    lb.add_address("eth1", p("198.18.1.120", 24))?;
    client.add_route(p("198.18.1.0", 24), "198.18.0.11".parse()?)?;
    let dir = lab.log_dir().join("nginx");
    let conf = nginx_conf(&dir, "198.18.1.21:80")?;
    let errlog = dir.join("error.log");
    let conf_s = conf.display().to_string();
    let err_s = errlog.display().to_string();
    let lb_threads = place_receives(&lab, placement)?;
    let nginx_args = ["-c", &conf_s, "-e", &err_s, "-g", "daemon off;"];
    let nginx = if placement == Placement::Separate {
        // taskset execs nginx in place: the pid is nginx's, and its worker inherits.
        let mut argv = vec!["-c", "0", NGINX];
        argv.extend(nginx_args);
        srv.spawn("taskset", argv)?
    } else {
        srv.spawn(NGINX, nginx_args)?
    };
    // Wait for nginx to listen.
    let started = Instant::now();
    while srv
        .tcp_connect("198.18.1.21:80".parse()?, Duration::from_millis(300))
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(10) {
            bail!(
                "nginx did not start: {}{}",
                nginx.stderr(),
                std::fs::read_to_string(&errlog).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(TrafficLab {
        _nginx: nginx,
        lab,
        placement,
        lb_threads,
    })
}

const DIRECT_URL: &str = "http://198.18.1.21/";
const VIP_URL: &str = "http://198.18.0.100/";

/// One way of reaching srv1: directly (routing through lb1, no table), or through the
/// VIP with a table counting `counting`, SNAT to a pool or one address, and nft
/// commands run on top (for the ablation).
#[derive(Clone, Copy)]
struct Path_ {
    name: &'static str,
    counting: Option<Counting>,
    snat_pool: usize,
    nft: &'static [&'static str],
    /// With a table: still reach srv1 at its own address (the table loaded, so
    /// conntrack runs, but no NAT on this path).
    direct: bool,
    /// SNAT rules for other VIPs before the service's own, in lbd's layout.
    snat_fillers: usize,
    /// The same, as one rule each at the head of lb_snat (the layout before the
    /// SNAT maps), loaded by `nft -f`.
    linear_fillers: usize,
}

const DIRECT: Path_ = Path_ {
    name: "direct (routing, no table)",
    counting: None,
    snat_pool: SNAT_POOL,
    nft: &[],
    direct: false,
    snat_fillers: 0,
    linear_fillers: 0,
};

/// One wrk run: requests/s, and lb1's receive threads' CPU seconds per request.
struct Run {
    rate: f64,
    lb_cpu_per_request: Option<f64>,
}

/// Sets lb1 and srv1 up for `path` and runs wrk.
fn run_path(
    t: &TrafficLab,
    nft: &mut NftBackend,
    path: Path_,
    close: bool,
    duration: u32,
) -> Result<Run> {
    let (client, lb, srv) = (&t.lab["client"], &t.lab["lb1"], &t.lab["srv1"]);
    nft.teardown()?;
    let url = match path.counting {
        None => {
            srv.ip(&["route", "replace", "198.18.0.0/24", "via", "198.18.1.11"])?;
            DIRECT_URL
        }
        Some(counting) => {
            nft.set_counting(counting);
            let mut state = vip_state(path.snat_pool);
            state.snat.splice(0..0, snat_fillers(path.snat_fillers));
            nft.apply(&state)?;
            for cmd in path.nft {
                lb.exec_ok(&["nft", cmd])?;
            }
            if path.linear_fillers > 0 {
                let file = t.lab.log_dir().join("linear-snat.nft");
                std::fs::write(&file, linear_snat(path.linear_fillers))?;
                lb.exec_ok(&["nft", "-f", &file.display().to_string()])?;
            }
            if path.direct {
                srv.ip(&["route", "replace", "198.18.0.0/24", "via", "198.18.1.11"])?;
                DIRECT_URL
            } else {
                // srv1 has no route back to the clients: only SNAT brings the replies back.
                srv.ip(&["route", "del", "198.18.0.0/24"]).ok();
                VIP_URL
            }
        }
    };
    let cpu0 = cpu_seconds_of(&t.lb_threads);
    let rate = wrk(client, url, close, duration, t.placement)?;
    let cpu = cpu_seconds_of(&t.lb_threads) - cpu0;
    let requests = rate * f64::from(duration);
    Ok(Run {
        rate,
        lb_cpu_per_request: (!t.lb_threads.is_empty() && requests > 0.0).then(|| cpu / requests),
    })
}

struct Traffic {
    /// Per path (direct first): requests/s keep-alive, new connections/s (medians).
    rps: Vec<f64>,
    cps: Vec<f64>,
    /// Per path: lb1's CPU microseconds per keep-alive request and per new
    /// connection (medians; None with plain veths).
    lb_us_rps: Vec<Option<f64>>,
    lb_us_cps: Vec<Option<f64>>,
    /// Per VIP path: median of the per-round VIP/direct ratios.
    paired_rps: Vec<f64>,
    paired_cps: Vec<f64>,
}

/// Runs every path `runs` times, interleaved (the order rotates each round), for
/// keep-alive requests (unless `only_close`) and new connections.
fn compare(
    paths: &[Path_],
    runs: usize,
    duration: u32,
    only_close: bool,
    placement: Placement,
) -> Result<Traffic> {
    let t = traffic_lab(placement)?;
    let mut nft = nft_in(&t.lab["lb1"], "lbsuite")?;
    let n = paths.len();
    let mut rps = vec![Vec::new(); n];
    let mut cps = vec![Vec::new(); n];
    let mut lb_rps = vec![Vec::new(); n];
    let mut lb_cps = vec![Vec::new(); n];
    let modes: &[bool] = if only_close { &[true] } else { &[false, true] };
    for run in 0..runs {
        for &close in modes {
            let mut got = vec![0.0; n];
            for k in 0..n {
                let i = (k + run) % n;
                let r = run_path(&t, &mut nft, paths[i], close, duration)?;
                got[i] = r.rate;
                if let Some(c) = r.lb_cpu_per_request {
                    let into = if close { &mut lb_cps } else { &mut lb_rps };
                    into[i].push(c * 1e6);
                }
            }
            let line: Vec<String> = paths
                .iter()
                .zip(&got)
                .skip(1)
                .map(|(p, v)| format!("{}: {:.0}/s {:.3}x", p.name, v, v / got[0]))
                .collect();
            println!(
                "    run {} {}: direct {:.0}/s; {}",
                run + 1,
                if close { "new conns" } else { "keep-alive" },
                got[0],
                line.join("; ")
            );
            for (i, v) in got.into_iter().enumerate() {
                if v <= 0.0 {
                    bail!("{} served nothing", paths[i].name);
                }
                let into = if close { &mut cps } else { &mut rps };
                into[i].push(v);
            }
        }
    }
    nft.teardown()?;
    let paired = |v: &[f64], d: &[f64]| median(v.iter().zip(d).map(|(v, d)| v / d).collect());
    Ok(Traffic {
        paired_rps: (1..n).map(|i| paired(&rps[i], &rps[0])).collect(),
        paired_cps: (1..n).map(|i| paired(&cps[i], &cps[0])).collect(),
        rps: rps.into_iter().map(median).collect(),
        cps: cps.into_iter().map(median).collect(),
        lb_us_rps: lb_rps.into_iter().map(median_of).collect(),
        lb_us_cps: lb_cps.into_iter().map(median_of).collect(),
    })
}

/// New connections/s through the VIP with one part of the table changed at a time.
fn ablation(runs: usize, duration: u32) -> Result<()> {
    let paths = [
        DIRECT,
        Path_ {
            name: "connections counted (default)",
            counting: Some(Counting::Connections),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "nothing counted",
            counting: Some(Counting::Off),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "packets/bytes: every forwarded packet",
            counting: Some(Counting::Traffic),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "packets/bytes: lookup for ct state new only",
            counting: Some(Counting::Traffic),
            snat_pool: SNAT_POOL,
            nft: &["insert rule inet lbsuite lb_count ct state != new accept"],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "packets/bytes: original direction only",
            counting: Some(Counting::Traffic),
            snat_pool: SNAT_POOL,
            nft: &["insert rule inet lbsuite lb_count ct direction reply accept"],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "connections + an empty lb_dnat_range chain",
            counting: Some(Counting::Connections),
            snat_pool: SNAT_POOL,
            nft: &["add chain inet lbsuite lb_dnat_range { type nat hook prerouting priority dstnat + 1 ; }"],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "connections, SNAT to one address",
            counting: Some(Counting::Connections),
            snat_pool: 0,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
    ];
    let placement = Placement::Separate;
    println!(
        "\nAblation: new connections/s, wrk -t1 -c32 -d{duration}s, interleaved; {}",
        placement.describe()
    );
    let t = compare(&paths, runs, duration, true, placement)?;
    let rows = cps_rows(&paths, &t, |_| String::new());
    print_table(
        &format!("Ablation, new connections/s (ratio: median of paired runs, {runs} runs)"),
        ["direct", "via VIP", "VIP/dir"],
        &rows,
    );
    Ok(())
}

/// Per VIP path: its new connections/s against direct, and lb1's CPU per
/// connection; `note(i)` in the target column.
fn cps_rows(paths: &[Path_], t: &Traffic, note: impl Fn(usize) -> String) -> Vec<Row> {
    paths
        .iter()
        .enumerate()
        .skip(1)
        .flat_map(|(i, p)| {
            [
                row(
                    p.name,
                    format!("{:.0}", t.cps[0]),
                    format!("{:.0}", t.cps[i]),
                    format!("{:.3}x", t.paired_cps[i - 1]),
                    &note(i),
                ),
                row(
                    "  lb1 CPU per connection, us",
                    us(t.lb_us_cps[0]),
                    us(t.lb_us_cps[i]),
                    ratio_of(t.lb_us_cps[i], t.lb_us_cps[0]),
                    "",
                ),
            ]
        })
        .collect()
}

/// New connections/s through the node with 2, 1,000 and 10,000 SNAT rules (all but
/// the service's own for other VIPs, before it), and 10,000 as the linear chain of
/// the layout before the SNAT maps, interleaved with direct runs.
fn snat_scaling(runs: usize, duration: u32) -> Result<()> {
    let vip = |name, fillers, linear| Path_ {
        name,
        counting: Some(Counting::Connections),
        snat_pool: SNAT_POOL,
        nft: &[],
        direct: false,
        snat_fillers: fillers,
        linear_fillers: linear,
    };
    let paths = [
        DIRECT,
        vip("2 SNAT rules (maps)", 1, 0),
        vip("1,000 SNAT rules (maps)", 999, 0),
        vip("10,000 SNAT rules (maps)", 9999, 0),
        vip("1,000 SNAT rules, linear chain (before)", 1, 998),
        vip("10,000 SNAT rules, linear chain (before)", 1, 9998),
    ];
    let placement = Placement::Separate;
    println!(
        "\nSNAT rules: new connections/s through the VIP, wrk -t1 -c32 -d{duration}s, interleaved; {}",
        placement.describe()
    );
    let t = compare(&paths, runs, duration, true, placement)?;
    let base = t.cps[1];
    let rows = cps_rows(&paths, &t, |i| {
        if i == 1 {
            String::new()
        } else {
            format!("{:.3}x of 2 rules", t.cps[i] / base)
        }
    });
    print_table(
        &format!("New connections/s by SNAT rule count (ratio: median of paired runs, {runs} runs; target: 10,000 within 5 % of 2)"),
        ["direct", "via VIP", "VIP/dir"],
        &rows,
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = args()?;
    if a.only.as_deref() == Some("config") {
        return check_config(&a);
    }
    if !integration::have_root("lb_bench") {
        return Ok(());
    }
    let want = |part: &str| a.only.as_deref().is_none_or(|o| o == part);
    let runs = a.runs;
    println!("lb_bench: medians of {runs} runs (release build expected)");
    if a.only.as_deref() == Some("reload") {
        return reload(&a, a.lbd.as_deref());
    }

    if want("apply") || want("change") {
        let lab = Lab::one_arm()?;
        let lb = &lab["lb1"];
        if want("apply") {
            let mut rows = Vec::new();
            for (sched, counting, what) in [
                (Scheduler::Rr, Counting::Connections, "rr"),
                (Scheduler::Wrr, Counting::Connections, "wrr (15 slots each)"),
                (
                    Scheduler::Wrr,
                    Counting::Traffic,
                    "wrr, packets/bytes counted too",
                ),
                (Scheduler::Wrr, Counting::Off, "wrr, nothing counted"),
            ] {
                let (t1, c1) = full_apply(lb, 1000, sched, counting, runs)?;
                let (t10, c10) = full_apply(lb, 10000, sched, counting, runs)?;
                rows.push(row(
                    &format!("full apply, 8 servers, {what}"),
                    format!("{t1:.1} ms"),
                    format!("{t10:.1} ms"),
                    format!("{:.1}x", t10 / t1),
                    "10,000 services < 1 s",
                ));
                rows.push(row(
                    &format!("  CPU of the applying thread, {what}"),
                    format!("{c1:.1} ms"),
                    format!("{c10:.1} ms"),
                    format!("{:.1}x", c10 / c1),
                    "information",
                ));
            }
            let (mh, _) = full_apply(lb, 1000, Scheduler::Mh, Counting::Connections, runs)?;
            rows.push(row(
                "full apply, 8 servers, mh (251 slots each)",
                format!("{mh:.1} ms"),
                "-".into(),
                "-".into(),
                "information",
            ));
            print_table(
                "Full apply (fresh table each run)",
                ["1,000 svc", "10,000 svc", "10k/1k"],
                &rows,
            );
        }
        if want("change") {
            let c1 = changes(lb, 1000, runs)?;
            let c10 = changes(lb, 10000, runs)?;
            let r = |a: f64, b: f64| format!("{:.2}x", b / a);
            let rows = vec![
                row(
                    "apply_changed: one server's weight changed (wrr)",
                    format!("{:.3} ms", c1.hinted_weight),
                    format!("{:.3} ms", c10.hinted_weight),
                    r(c1.hinted_weight, c10.hinted_weight),
                    "< 5 ms; 10k/1k <= 2x",
                ),
                row(
                    "apply_changed: one server removed",
                    format!("{:.3} ms", c1.hinted_removed),
                    format!("{:.3} ms", c10.hinted_removed),
                    r(c1.hinted_removed, c10.hinted_removed),
                    "< 5 ms; 10k/1k <= 2x",
                ),
                row(
                    "apply_changed: a service added (reload)",
                    format!("{:.3} ms", c1.hinted_added_service),
                    format!("{:.3} ms", c10.hinted_added_service),
                    r(c1.hinted_added_service, c10.hinted_added_service),
                    "information",
                ),
                row(
                    "apply_changed: a service removed (reload)",
                    format!("{:.3} ms", c1.hinted_removed_service),
                    format!("{:.3} ms", c10.hinted_removed_service),
                    r(c1.hinted_removed_service, c10.hinted_removed_service),
                    "information",
                ),
                row(
                    "apply: one server's weight changed (wrr)",
                    format!("{:.3} ms", c1.weight),
                    format!("{:.3} ms", c10.weight),
                    r(c1.weight, c10.weight),
                    "< 5 ms",
                ),
                row(
                    "apply: one server removed",
                    format!("{:.3} ms", c1.removed),
                    format!("{:.3} ms", c10.removed),
                    r(c1.removed, c10.removed),
                    "< 5 ms",
                ),
                row(
                    "apply: a service added",
                    format!("{:.3} ms", c1.added_service),
                    format!("{:.3} ms", c10.added_service),
                    r(c1.added_service, c10.added_service),
                    "information",
                ),
                row(
                    "apply: same state again (no change)",
                    format!("{:.3} ms", c1.same),
                    format!("{:.3} ms", c10.same),
                    r(c1.same, c10.same),
                    "a few ms at 10k",
                ),
                row(
                    "adopt after restart (read back + diff), once",
                    format!("{:.0} ms", c1.adopt),
                    format!("{:.0} ms", c10.adopt),
                    r(c1.adopt, c10.adopt),
                    "information",
                ),
                row(
                    "counters of all servers, once",
                    format!("{:.0} ms", c1.counters),
                    format!("{:.0} ms", c10.counters),
                    r(c1.counters, c10.counters),
                    "information",
                ),
            ];
            print_table(
                &format!(
                    "One change at N services x 8 servers (end to end, median of {})",
                    runs.max(11)
                ),
                ["1,000 svc", "10,000 svc", "10k/1k"],
                &rows,
            );
        }
    }

    if want("traffic") || matches!(a.only.as_deref(), Some("ablation" | "snat")) {
        let missing: Vec<&str> = [NGINX, WRK]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            println!(
                "\nthroughput skipped: {} missing; install with: apt-get install nginx-light wrk",
                missing.join(", ")
            );
            return Ok(());
        }
        if a.only.as_deref() == Some("ablation") {
            return ablation(runs, a.duration);
        }
        if a.only.as_deref() == Some("snat") {
            return snat_scaling(runs, a.duration);
        }
        for &placement in &a.placements {
            traffic(runs, a.duration, placement)?;
        }
        if want("snat") {
            snat_scaling(runs, a.duration)?;
        }
    }
    Ok(())
}

/// Microseconds with one decimal, or "-" when missing.
fn us(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// The median, or None for no samples.
fn median_of(v: Vec<f64>) -> Option<f64> {
    (!v.is_empty()).then(|| median(v))
}

/// "a/b" as a ratio, or "-" when either is missing.
fn ratio_of(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// Requests/s and new connections/s through the VIP against direct, with lb1's CPU
/// per request, for one placement.
fn traffic(runs: usize, duration: u32, placement: Placement) -> Result<()> {
    println!(
        "\nThroughput: client -> lb1 -> srv1 (nginx, 1 worker), wrk -t1 -c32 -d{duration}s, interleaved;\n  {}",
        placement.describe()
    );
    let paths = [
        DIRECT,
        Path_ {
            name: "direct, lbd's table loaded (conntrack on)",
            counting: Some(Counting::Connections),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: true,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "VIP, connections counted (default)",
            counting: Some(Counting::Connections),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
        Path_ {
            name: "VIP, packets/bytes too",
            counting: Some(Counting::Traffic),
            snat_pool: SNAT_POOL,
            nft: &[],
            direct: false,
            snat_fillers: 0,
            linear_fillers: 0,
        },
    ];
    let t = compare(&paths, runs, duration, false, placement)?;
    let mut rows = Vec::new();
    let measures = [
        (
            "requests/s, keep-alive",
            &t.rps,
            &t.paired_rps,
            &t.lb_us_rps,
        ),
        ("new connections/s", &t.cps, &t.paired_cps, &t.lb_us_cps),
    ];
    for (what, medians, paired, lb_us) in measures {
        for (i, p) in paths.iter().enumerate().skip(1) {
            rows.push(row(
                &format!("{what}; {}", p.name),
                format!("{:.0}", medians[0]),
                format!("{:.0}", medians[i]),
                format!("{:.3}x", medians[i] / medians[0]),
                "VIP >= 0.9x direct",
            ));
            rows.push(row(
                "  median of paired run ratios",
                "".into(),
                "".into(),
                format!("{:.3}x", paired[i - 1]),
                "",
            ));
            rows.push(row(
                "  lb1 CPU per request, us (its receive threads)",
                us(lb_us[0]),
                us(lb_us[i]),
                ratio_of(lb_us[i], lb_us[0]),
                "",
            ));
        }
    }
    // The same VIP figures against srv1 reached directly through a node that has
    // lbd's table loaded (conntrack tracking every connection, as on any node
    // running lbd): what the VIP itself costs, DNAT + SNAT + the maps.
    for (i, p) in paths.iter().enumerate().skip(2) {
        for (what, medians, _, _) in measures {
            rows.push(row(
                &format!("{what}; {} vs direct with table", p.name),
                format!("{:.0}", medians[1]),
                format!("{:.0}", medians[i]),
                format!("{:.3}x", medians[i] / medians[1]),
                "",
            ));
        }
    }
    print_table(
        &format!(
            "Throughput through the VIP (DNAT + SNAT to a pool of {SNAT_POOL} addresses) vs direct (routing, no NAT), medians of {runs}"
        ),
        ["direct", "via VIP", "VIP/dir"],
        &rows,
    );
    Ok(())
}

/// `--only reload`: the real lbd (release, or `--lbd PATH`) in lb1 of the one-arm
/// lab with `n` services x 8 servers, each server TCP-checked; see [`reload_bench`].
#[derive(Debug, Clone, Copy)]
struct LbdFigures {
    start_fresh: f64,
    start_adopt: f64,
    adopt_apply: f64,
    rss_start: f64,
    first_reload: f64,
    first_apply: f64,
    at_once_reload: f64,
    at_once_apply: f64,
    planned_reload: f64,
    planned_apply: f64,
    socket_reload: f64,
    socket_apply: f64,
    hup_reload: f64,
    rss_reloads: f64,
    nft_change: f64,
}

/// Reads what a process appends to its log, to see when it says something.
struct LogTail {
    path: std::path::PathBuf,
    offset: u64,
    pending: String,
}

impl LogTail {
    fn new(path: &Path) -> LogTail {
        LogTail {
            path: path.to_owned(),
            offset: 0,
            pending: String::new(),
        }
    }

    /// Waits until a line appended since the last call contains `needle`; the moment
    /// it was seen. Fails after `patience`, or on a line with `refusal`.
    fn wait_for(&mut self, needle: &str, refusal: &str, patience: Duration) -> Result<Instant> {
        self.wait_for_line(needle, refusal, patience)
            .map(|(at, _)| at)
    }

    /// [`LogTail::wait_for`], with the line.
    fn wait_for_line(
        &mut self,
        needle: &str,
        refusal: &str,
        patience: Duration,
    ) -> Result<(Instant, String)> {
        use std::io::{Read as _, Seek as _};
        let end = Instant::now() + patience;
        loop {
            let mut f = std::fs::File::open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            f.seek(std::io::SeekFrom::Start(self.offset))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            self.offset += buf.len() as u64;
            self.pending.push_str(&String::from_utf8_lossy(&buf));
            while let Some(nl) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=nl).collect();
                if line.contains(needle) {
                    return Ok((Instant::now(), line));
                }
                if line.contains(refusal) {
                    bail!("lbd: {}", line.trim_end());
                }
            }
            if Instant::now() > end {
                bail!("lbd did not log {needle:?} within {patience:?}");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

/// Starts lbd in `lb`; returns it once it logs "lbd running", with the time that
/// took and the duration of its first apply (adopting what the kernel holds).
fn start_lbd(lb: &Host, lbd: &Path, config: &Path) -> Result<(integration::Process, f64, f64)> {
    let mut cmd = lb.command(lbd);
    cmd.args([
        "--config",
        config.to_str().unwrap_or_default(),
        "--node",
        "lb1",
    ])
    // Debug: an apply that changes nothing ("dataplane current") is logged too.
    .env("RUST_LOG", "info,lbd::daemon=debug");
    let t = Instant::now();
    let p = lb.spawn_command(cmd, "lbd")?;
    let mut log = LogTail::new(p.stderr_path());
    let (_, line) = log.wait_for_line("why=\"start\"", "Error", Duration::from_secs(120))?;
    let apply = line
        .split_once("duration_ms=")
        .and_then(|(_, v)| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no duration_ms in {line:?}"))?;
    let at = log.wait_for("lbd running", "Error", Duration::from_secs(120))?;
    Ok((p, ms(at - t), apply))
}

/// The hand-written layout for `n` services x 8 servers (one map, 8 slots each),
/// loaded by `nft -f`; then the median time of `nft -f` changing one server's
/// element, `runs` times.
fn hand_written_change(lb: &Host, dir: &Path, n: usize, runs: usize) -> Result<f64> {
    use std::fmt::Write as _;
    let mut t = String::from(
        "table ip lbhand {\n  map backends {\n    typeof ip daddr . tcp dport . numgen inc mod 8 : ip daddr . tcp dport\n    elements = {\n",
    );
    for i in 0..n {
        for j in 0..8 {
            let _ = writeln!(
                t,
                "      198.18.0.100 . {} . {j} : {CHECKED} . {},",
                FIRST_PORT + i,
                usize::from(CHECKED_PORT) + j
            );
        }
    }
    t.push_str("    }\n  }\n  chain pre {\n    type nat hook prerouting priority dstnat; policy accept;\n    dnat ip to ip daddr . tcp dport . numgen inc mod 8 map @backends\n  }\n}\n");
    let full = dir.join("hand.nft");
    std::fs::write(&full, t)?;
    let _ = lb.exec(&["nft", "delete", "table", "ip", "lbhand"]);
    lb.exec_ok(&["nft", "-f", &full.display().to_string()])?;
    let mut times = Vec::new();
    for r in 0..runs {
        let svc = FIRST_PORT + (r * 7919) % n;
        let change = dir.join("hand-change.nft");
        std::fs::write(
            &change,
            format!(
                "delete element ip lbhand backends {{ 198.18.0.100 . {svc} . 3 }}\nadd element ip lbhand backends {{ 198.18.0.100 . {svc} . 3 : {CHECKED} . {} }}\n",
                usize::from(CHECKED_PORT) + 3 + r % 2
            ),
        )?;
        let t = Instant::now();
        lb.exec_ok(&["nft", "-f", &change.display().to_string()])?;
        times.push(ms(t.elapsed()));
    }
    lb.exec_ok(&["nft", "delete", "table", "ip", "lbhand"])?;
    Ok(median(times))
}

/// One-server changes measured in each adopted lbd after its first: the median of
/// these is the "later changes" figure.
const LATER_CHANGES: usize = 5;

/// Figures of the real lbd at `n` services x 8 servers, one round: start to running
/// on an empty kernel and on the table a stopped lbd left (adoption), RSS once
/// running, the first one-server weight change by the control socket's `reload`
/// after that adopting start (2 s after it, as a change that comes later; until its
/// reply, and the apply inside it), the first change again right after another
/// adopting start (lbd just running) and after one more whose adoption record does
/// not hold the table (lbd plans it meanwhile), then [`LATER_CHANGES`] more changes by
/// `reload` and by SIGHUP (until lbd logs "reloaded on SIGHUP"; medians), RSS after
/// `reloads` more SIGHUP reloads; and `nft -f` of the same one-server change on a
/// hand-written map layout.
fn reload_bench(
    lb: &Host,
    lbd: &Path,
    n: usize,
    reloads: usize,
    check_ms: u32,
) -> Result<LbdFigures> {
    let dir = tempfile::tempdir()?;
    let nft_change = hand_written_change(lb, dir.path(), n, 1)?;
    let config = dir.path().join("cluster.toml");
    let socket = dir.path().join("lbd.sock");
    std::fs::write(&config, lbd_config(n, dir.path(), check_ms, None))?;
    let mut bumped: Option<usize> = None;
    // Each change moves one service's `srv3` between weight 1 and 2.
    let mut next_change = |k: usize| -> Result<()> {
        bumped = match bumped {
            Some(_) => None,
            None => Some((k * 7919) % n),
        };
        std::fs::write(&config, lbd_config(n, dir.path(), check_ms, bumped))?;
        Ok(())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // A one-server change by the control socket: until the reply, and its apply.
    let by_socket = |log: &mut LogTail| -> Result<(f64, f64)> {
        let t = Instant::now();
        let reply = rt.block_on(async {
            let c = ctl::Client::connect(&socket).await?;
            c.with_timeout(Duration::from_secs(600))
                .request("reload", serde_json::Value::Null)
                .await
        })?;
        let e2e = ms(t.elapsed());
        let reply: ctl::contract::lbd::LbdReloadReply = serde_json::from_value(reply)?;
        if reply.services_changed.len() != 1 || !reply.apply.ok {
            bail!("reload by socket: one service should change: {reply:?}");
        }
        log.wait_for(
            "reloaded on request",
            "reload refused",
            Duration::from_secs(600),
        )?;
        Ok((e2e, reply.apply.duration_ms.unwrap_or(f64::NAN)))
    };
    let running = |p: &integration::Process| -> Result<LogTail> {
        let mut log = LogTail::new(p.stderr_path());
        log.wait_for("lbd running", "Error", Duration::from_secs(5))?;
        Ok(log)
    };
    let teardown = || lb.exec(&["nft", "delete", "table", "inet", "lbbench"]);
    let _ = teardown();
    let (p, start_fresh, _) = start_lbd(lb, lbd, &config)?;
    p.stop()?;
    let (p, start_adopt, adopt_apply) = start_lbd(lb, lbd, &config)?;
    let mut log = running(&p)?;
    // Settled: the first checks ran.
    std::thread::sleep(Duration::from_secs(2));
    let rss_start = benchmarks::rss_mib(p.pid())?;
    next_change(1)?;
    let (first_reload, first_apply) = by_socket(&mut log)?;
    p.stop()?;
    // The first change again, as soon as the adopting lbd runs.
    let (p, _, _) = start_lbd(lb, lbd, &config)?;
    let mut log = running(&p)?;
    next_change(2)?;
    let (at_once_reload, at_once_apply) = by_socket(&mut log)?;
    p.stop()?;
    // And with an adoption record that does not hold the committed table (as an
    // older lbd, or one stopped before it had planned the table, leaves it): lbd
    // plans it on a thread of its own while it runs. Nothing to remove from the
    // record of a build that does not write the table into it.
    let record = dir.path().join("nft-lbbench.adopt");
    let text = std::fs::read_to_string(&record).context("adoption record")?;
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("held"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&record, kept)?;
    let (p, _, _) = start_lbd(lb, lbd, &config)?;
    let mut log = running(&p)?;
    next_change(3)?;
    let (planned_reload, planned_apply) = by_socket(&mut log)?;
    let (mut socket_e2e, mut socket_apply, mut hup) = (vec![], vec![], vec![]);
    for k in 0..LATER_CHANGES {
        next_change(4 + k)?;
        let (e2e, apply) = by_socket(&mut log)?;
        socket_e2e.push(e2e);
        socket_apply.push(apply);

        next_change(4 + k)?;
        let t = Instant::now();
        p.signal(libc::SIGHUP)?;
        let at = log.wait_for(
            "reloaded on SIGHUP",
            "reload refused",
            Duration::from_secs(600),
        )?;
        hup.push(ms(at - t));
    }
    for k in 0..reloads {
        next_change(k)?;
        p.signal(libc::SIGHUP)?;
        log.wait_for(
            "reloaded on SIGHUP",
            "reload refused",
            Duration::from_secs(600),
        )?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss_reloads = benchmarks::rss_mib(p.pid())?;
    p.stop()?;
    let _ = teardown();
    Ok(LbdFigures {
        start_fresh,
        start_adopt,
        adopt_apply,
        rss_start,
        first_reload,
        first_apply,
        at_once_reload,
        at_once_apply,
        planned_reload,
        planned_apply,
        socket_reload: median(socket_e2e),
        socket_apply: median(socket_apply),
        hup_reload: median(hup),
        rss_reloads,
        nft_change,
    })
}

/// The median of each figure over rounds.
fn median_figures(rounds: &[LbdFigures]) -> LbdFigures {
    let m = |get: fn(&LbdFigures) -> f64| median(rounds.iter().map(get).collect());
    LbdFigures {
        start_fresh: m(|f| f.start_fresh),
        start_adopt: m(|f| f.start_adopt),
        adopt_apply: m(|f| f.adopt_apply),
        rss_start: m(|f| f.rss_start),
        first_reload: m(|f| f.first_reload),
        first_apply: m(|f| f.first_apply),
        at_once_reload: m(|f| f.at_once_reload),
        at_once_apply: m(|f| f.at_once_apply),
        planned_reload: m(|f| f.planned_reload),
        planned_apply: m(|f| f.planned_apply),
        socket_reload: m(|f| f.socket_reload),
        socket_apply: m(|f| f.socket_apply),
        hup_reload: m(|f| f.hup_reload),
        rss_reloads: m(|f| f.rss_reloads),
        nft_change: m(|f| f.nft_change),
    }
}

fn reload(a: &Args, lbd: Option<&Path>) -> Result<()> {
    let (runs, reloads, check_ms) = (a.runs, a.reloads, a.check_ms);
    let lbd = match lbd {
        Some(p) => p.to_owned(),
        None => benchmarks::lbd_binary()?,
    };
    let lab = Lab::one_arm()?;
    let srv = &lab["srv1"];
    let listeners = srv.run_in(|| -> Result<Vec<std::net::TcpListener>> {
        (0..8)
            .map(|j| {
                let a = std::net::SocketAddr::new(IpAddr::V4(CHECKED), CHECKED_PORT + j);
                std::net::TcpListener::bind(a).with_context(|| format!("bind {a}"))
            })
            .collect()
    })??;
    std::thread::spawn(move || benchmarks::accept_forever(listeners));
    let mut builds = vec![("this build", lbd)];
    if let Some(b) = &a.baseline_lbd {
        builds.insert(0, ("baseline", b.clone()));
    }
    for (name, lbd) in &builds {
        println!(
            "{name}: lbd {}: services x 8 servers, TCP checks every {check_ms} ms",
            lbd.display()
        );
    }
    // Rounds: each build once per size in turn (baseline first), `runs` times.
    let mut rounds: Vec<Vec<Vec<LbdFigures>>> = vec![vec![Vec::new(); a.sizes.len()]; builds.len()];
    for round in 0..runs {
        for (b, (name, lbd)) in builds.iter().enumerate() {
            for (i, &n) in a.sizes.iter().enumerate() {
                let f = reload_bench(&lab["lb1"], lbd, n, reloads, check_ms)?;
                println!(
                    "  round {} {name} {n} services: first change {:.1} ms (apply {:.1}), at once {:.1} ms (apply {:.1}), at once without the table recorded {:.1} ms (apply {:.1}), later {:.1} ms (apply {:.1})",
                    round + 1,
                    f.first_reload,
                    f.first_apply,
                    f.at_once_reload,
                    f.at_once_apply,
                    f.planned_reload,
                    f.planned_apply,
                    f.socket_reload,
                    f.socket_apply
                );
                rounds[b][i].push(f);
            }
        }
    }
    let figures: Vec<Vec<LbdFigures>> = rounds
        .iter()
        .map(|per_size| per_size.iter().map(|r| median_figures(r)).collect())
        .collect();
    match &figures[..] {
        [base, this] => {
            for (i, &n) in a.sizes.iter().enumerate() {
                print_reload_table(
                    &format!(
                        "The real lbd at {n} services x 8 servers, baseline beside this build (median of {runs})"
                    ),
                    ["baseline", "this build", "this/base"],
                    reloads,
                    base[i],
                    this[i],
                );
            }
        }
        [this] => match &this[..] {
            [f] => print_reload_one(a, *f),
            [.., first, last] => print_reload_table(
                &format!(
                    "The real lbd at N services x 8 servers (median of {runs}; sizes {:?})",
                    a.sizes
                ),
                ["small", "large", "large/small"],
                reloads,
                *first,
                *last,
            ),
            [] => {}
        },
        _ => {}
    }
    Ok(())
}

/// A row of the reload table: what, the figure, its unit, the target.
type ReloadRow = (String, fn(&LbdFigures) -> f64, &'static str, &'static str);

/// The rows of the reload table.
fn reload_rows(reloads: usize) -> Vec<ReloadRow> {
    vec![
        (
            "first reload by socket after an adopting start (2 s on)".into(),
            |f| f.first_reload,
            "ms",
            "< 50 ms at 10,000",
        ),
        (
            "  of which the dataplane apply".into(),
            |f| f.first_apply,
            "ms",
            "information",
        ),
        (
            "first reload by socket as soon as the adopting lbd runs".into(),
            |f| f.at_once_reload,
            "ms",
            "information",
        ),
        (
            "  of which the dataplane apply".into(),
            |f| f.at_once_apply,
            "ms",
            "information",
        ),
        (
            "  the same, the table not in the adoption record".into(),
            |f| f.planned_reload,
            "ms",
            "information",
        ),
        (
            "    of which the dataplane apply".into(),
            |f| f.planned_apply,
            "ms",
            "information",
        ),
        (
            format!("later reloads by socket, one server's weight (median of {LATER_CHANGES})"),
            |f| f.socket_reload,
            "ms",
            "< 50 ms at 10,000",
        ),
        (
            "  of which the dataplane apply".into(),
            |f| f.socket_apply,
            "ms",
            "information",
        ),
        (
            format!("later reloads by SIGHUP, one server's weight (until logged; median of {LATER_CHANGES})"),
            |f| f.hup_reload,
            "ms",
            "< 50 ms at 10,000",
        ),
        (
            "nft -f of the same change, hand-written map layout".into(),
            |f| f.nft_change,
            "ms",
            "baseline",
        ),
        (
            "start to running, empty kernel".into(),
            |f| f.start_fresh,
            "ms",
            "< 1 s at 10,000",
        ),
        (
            "start to running, adopting the table (restart)".into(),
            |f| f.start_adopt,
            "ms",
            "information",
        ),
        (
            "  of which the adopting apply".into(),
            |f| f.adopt_apply,
            "ms",
            "< 200 ms at 10,000",
        ),
        (
            "RSS 2 s after start".into(),
            |f| f.rss_start,
            "MiB",
            "< 100 MB at 10,000",
        ),
        (
            format!("RSS after {reloads} more reloads"),
            |f| f.rss_reloads,
            "MiB",
            "flat",
        ),
    ]
}

/// Two sets of reload figures side by side (two sizes, or a baseline and this build).
fn print_reload_table(
    title: &str,
    cols: [&str; 3],
    reloads: usize,
    left: LbdFigures,
    right: LbdFigures,
) {
    let rows: Vec<Row> = reload_rows(reloads)
        .into_iter()
        .map(|(what, get, unit, target)| {
            let (l, r) = (get(&left), get(&right));
            row(
                &what,
                format!("{l:.1} {unit}"),
                format!("{r:.1} {unit}"),
                format!("{:.2}x", r / l),
                target,
            )
        })
        .collect();
    print_table(title, cols, &rows);
}

/// The reload figures of one size, as a table.
fn print_reload_one(a: &Args, f: LbdFigures) {
    let n = a.sizes.first().copied().unwrap_or(0);
    let rows: Vec<Row> = reload_rows(a.reloads)
        .into_iter()
        .map(|(what, get, unit, target)| {
            row(
                &what,
                format!("{:.1} {unit}", get(&f)),
                "-".into(),
                "-".into(),
                target,
            )
        })
        .collect();
    print_table(
        &format!(
            "The real lbd at {n} services x 8 servers (median of {})",
            a.runs
        ),
        [&format!("{n} svc"), "", ""],
        &rows,
    );
}

/// `--only config`: `vrrpctl check-config` on the files `--only reload` uses, each
/// size `runs` times: median wall time and peak RSS, beside the baseline vrrpctl.
fn check_config(a: &Args) -> Result<()> {
    let vrrpctl = match &a.vrrpctl {
        Some(p) => p.clone(),
        None => benchmarks::release_binary("vrrpctl", "vrrpctl")?,
    };
    let dir = tempfile::tempdir()?;
    let mut builds = vec![("this build", vrrpctl)];
    if let Some(b) = &a.baseline_vrrpctl {
        builds.insert(0, ("baseline", b.clone()));
    }
    println!(
        "\nvrrpctl check-config on N services x 8 servers (median of {} runs)",
        a.runs
    );
    println!(
        "  {:<10} | {:>8} | {:>9} | {:>10} | {:>12} | binary",
        "build", "services", "file", "wall", "peak RSS"
    );
    for &n in &a.sizes {
        let file = dir.path().join(format!("cluster-{n}.toml"));
        let text = lbd_config(n, dir.path(), a.check_ms, None);
        std::fs::write(&file, &text)?;
        for (name, bin) in &builds {
            let (mut wall, mut rss) = (Vec::new(), Vec::new());
            for _ in 0..a.runs {
                let (took, peak, ok) = benchmarks::run_measured(
                    std::process::Command::new(bin)
                        .arg("check-config")
                        .arg(&file),
                )?;
                if !ok {
                    bail!(
                        "{} check-config {} refused the file",
                        bin.display(),
                        file.display()
                    );
                }
                wall.push(ms(took));
                rss.push(peak);
            }
            println!(
                "  {:<10} | {:>8} | {:>7.1}MB | {:>7.1} ms | {:>8.1} MiB | {}",
                name,
                n,
                text.len() as f64 / 1e6,
                median(wall),
                median(rss),
                bin.display()
            );
        }
    }
    Ok(())
}
