//! Dataplane benchmark (prints figures; not a test; needs root, nginx-light and wrk):
//! `cargo run --release -p integration --bin lb_bench -- [--runs 5] [--duration 5]
//! [--only apply|change|traffic]`.
//!
//! 1. Full apply of 1,000 and 10,000 services x 8 servers (rr, wrr; mh at 1,000), a
//!    fresh table each run.
//! 2. One server change (a weight, a server removed) at 1,000 and 10,000 services.
//! 3. Requests/s and new connections/s through the VIP (DNAT + SNAT by the nft
//!    backend) against the same server reached directly through lb1 (routing, no
//!    NAT), runs interleaved.
//!
//! Every figure is the median of the runs.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dataplane::{
    Backend, Dataplane, DesiredState, Forwarding, NftBackend, PortSpec, Protocol, Scheduler,
    Service, SnatProtocol, SnatRule, SnatSource,
};
use integration::{Host, Lab, Prefix};

const NGINX: &str = "/usr/sbin/nginx";
const WRK: &str = "/usr/bin/wrk";
/// SNAT addresses for the VIP runs: a pool, so that new-connection runs do not run out
/// of (address, port) pairs still held in TIME_WAIT by conntrack (120 s).
const SNAT_POOL: usize = 8;

struct Args {
    runs: usize,
    duration: u32,
    only: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 5,
        duration: 5,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => a.runs = value("--runs")?.parse().context("--runs")?,
            "--duration" => a.duration = value("--duration")?.parse().context("--duration")?,
            "--only" => a.only = Some(value("--only")?),
            other => bail!(
                "unknown argument {other}; use --runs N, --duration S, --only apply|change|traffic"
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
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
    let t = table.to_owned();
    Ok(host.run_in(move || NftBackend::new(&t))??)
}

/// Median full-apply time (ms) of `n` services, a fresh table each run.
fn full_apply(lb: &Host, n: usize, sched: Scheduler, runs: usize) -> Result<f64> {
    let s = state(n, sched);
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut nft = nft_in(lb, "lbbench")?;
        nft.teardown()?;
        let t = Instant::now();
        nft.apply(&s)?;
        times.push(ms(t.elapsed()));
        nft.teardown()?;
    }
    Ok(median(times))
}

/// Single-change figures at `n` services (ms): weight change, server removed, same
/// state again; plus adopt and counters once (information).
struct ChangeFigures {
    weight: f64,
    removed: f64,
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
    let time = |s: &DesiredState, nft: &mut NftBackend| -> Result<f64> {
        let t = Instant::now();
        let r = nft.apply(s)?;
        let e = ms(t.elapsed());
        if r.reread {
            bail!("an apply re-read the table: something else changed nf_tables");
        }
        Ok(e)
    };
    let mut same = Vec::new();
    for _ in 0..k {
        same.push(time(&s, &mut nft)?);
    }
    let mut weight = Vec::new();
    for i in 0..k {
        // Spread over the table; each changes one server of one service.
        let svc = &mut s.services[(i * 7919) % n];
        svc.backends[3].weight += 1;
        weight.push(time(&s, &mut nft)?);
    }
    let mut removed = Vec::new();
    for i in 0..k {
        let svc = &mut s.services[(i * 104_729 + 1) % n];
        svc.backends.remove(5);
        removed.push(time(&s, &mut nft)?);
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
        same: median(same),
        adopt,
        counters,
    })
}

/// Requests/s reported by one wrk run in `client` against `url`.
fn wrk(client: &Host, url: &str, close: bool, duration: u32) -> Result<f64> {
    let d = format!("{duration}s");
    let mut argv = vec![WRK, "-t1", "-c32", "-d", &d, "--timeout", "2s"];
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

fn vip_state(snat_pool: usize) -> DesiredState {
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
            protocol: SnatProtocol::Tcp,
            orig_daddr: "198.18.0.100".parse().expect("literal"),
            orig_dports: Some(PortSpec::Single(80)),
            source: SnatSource::Pool(
                (0..snat_pool)
                    .map(|i| (IpAddr::V4(Ipv4Addr::new(198, 18, 1, 100 + i as u8)), None))
                    .collect(),
            ),
        }],
    }
}

struct Traffic {
    direct_rps: f64,
    vip_rps: f64,
    direct_cps: f64,
    vip_cps: f64,
    /// Median of the per-run VIP/direct ratios (each pair ran back to back).
    paired_rps: f64,
    paired_cps: f64,
}

fn traffic(runs: usize, duration: u32) -> Result<Traffic> {
    let lab = Lab::two_arm()?;
    let (client, lb, srv) = (&lab["client"], &lab["lb1"], &lab["srv1"]);
    let p = |s: &str, len| Prefix::new(s.parse().expect("literal"), len);
    lb.add_address("eth0", p("198.18.0.100", 24))?;
    for i in 0..SNAT_POOL {
        lb.add_address("eth1", p(&format!("198.18.1.{}", 100 + i), 24))?;
    }
    client.add_route(p("198.18.1.0", 24), "198.18.0.11".parse()?)?;
    let dir = lab.log_dir().join("nginx");
    let conf = nginx_conf(&dir, "198.18.1.21:80")?;
    let errlog = dir.join("error.log");
    let conf_s = conf.display().to_string();
    let err_s = errlog.display().to_string();
    let nginx = srv.spawn(NGINX, ["-c", &conf_s, "-e", &err_s, "-g", "daemon off;"])?;
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
    let mut nft = nft_in(lb, "lbsuite")?;
    let direct_url = "http://198.18.1.21/";
    let vip_url = "http://198.18.0.100/";
    let route_back = ["route", "replace", "198.18.0.0/24", "via", "198.18.1.11"];
    let no_route_back = ["route", "del", "198.18.0.0/24"];
    let (mut d_rps, mut v_rps, mut d_cps, mut v_cps) = (vec![], vec![], vec![], vec![]);
    let mut vip_runs = Vec::new();
    for run in 0..runs {
        for close in [false, true] {
            // Direct: plain routing through lb1, no table of ours.
            nft.teardown()?;
            srv.ip(&route_back)?;
            let d = wrk(client, direct_url, close, duration)?;
            // Via the VIP: DNAT + SNAT; srv1 has no route back to the clients, so
            // only SNAT brings the replies back.
            nft.apply(&vip_state(SNAT_POOL))?;
            srv.ip(&no_route_back)?;
            let v = wrk(client, vip_url, close, duration)?;
            println!(
                "    run {}: {:<22} direct {:>9.0}/s  via VIP {:>9.0}/s  ({:.3}x)",
                run + 1,
                if close {
                    "new connections"
                } else {
                    "requests (keep-alive)"
                },
                d,
                v,
                v / d
            );
            if close {
                d_cps.push(d);
                v_cps.push(v);
            } else {
                d_rps.push(d);
                v_rps.push(v);
            }
            vip_runs.push(v);
        }
    }
    nft.teardown()?;
    // Proof that the VIP runs went through SNAT: srv1 had no route back.
    if vip_runs.iter().any(|&v| v <= 0.0) {
        bail!("a VIP run served nothing");
    }
    let paired = |v: &[f64], d: &[f64]| median(v.iter().zip(d).map(|(v, d)| v / d).collect());
    Ok(Traffic {
        paired_rps: paired(&v_rps, &d_rps),
        paired_cps: paired(&v_cps, &d_cps),
        direct_rps: median(d_rps),
        vip_rps: median(v_rps),
        direct_cps: median(d_cps),
        vip_cps: median(v_cps),
    })
}

fn main() -> Result<()> {
    let a = args()?;
    if !integration::have_root("lb_bench") {
        return Ok(());
    }
    let want = |part: &str| a.only.as_deref().is_none_or(|o| o == part);
    let runs = a.runs;
    println!("lb_bench: medians of {runs} runs (release build expected)");

    if want("apply") || want("change") {
        let lab = Lab::one_arm()?;
        let lb = &lab["lb1"];
        if want("apply") {
            let mut rows = Vec::new();
            for sched in [Scheduler::Rr, Scheduler::Wrr] {
                let t1 = full_apply(lb, 1000, sched, runs)?;
                let t10 = full_apply(lb, 10000, sched, runs)?;
                rows.push(row(
                    &format!("full apply, 8 servers, {sched}"),
                    format!("{t1:.1} ms"),
                    format!("{t10:.1} ms"),
                    format!("{:.1}x", t10 / t1),
                    "10,000 services < 1 s",
                ));
            }
            let mh = full_apply(lb, 1000, Scheduler::Mh, runs)?;
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
                    "one server's weight changed (wrr)",
                    format!("{:.3} ms", c1.weight),
                    format!("{:.3} ms", c10.weight),
                    r(c1.weight, c10.weight),
                    "< 5 ms; 10k/1k <= 2x",
                ),
                row(
                    "one server removed",
                    format!("{:.3} ms", c1.removed),
                    format!("{:.3} ms", c10.removed),
                    r(c1.removed, c10.removed),
                    "< 5 ms; 10k/1k <= 2x",
                ),
                row(
                    "same state again (no change)",
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
                    "One change at N services x 8 servers (apply() end to end, median of {})",
                    runs.max(11)
                ),
                ["1,000 svc", "10,000 svc", "10k/1k"],
                &rows,
            );
        }
    }

    if want("traffic") {
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
        println!(
            "\nThroughput: client -> lb1 -> srv1 (nginx, 1 worker), wrk -t1 -c32 -d{}s, interleaved",
            a.duration
        );
        let t = traffic(runs, a.duration)?;
        let rows = vec![
            row(
                "requests/s, keep-alive",
                format!("{:.0}", t.direct_rps),
                format!("{:.0}", t.vip_rps),
                format!("{:.3}x", t.vip_rps / t.direct_rps),
                "VIP >= 0.9x direct",
            ),
            row(
                "  median of paired run ratios",
                "".into(),
                "".into(),
                format!("{:.3}x", t.paired_rps),
                "",
            ),
            row(
                "new connections/s (Connection: close)",
                format!("{:.0}", t.direct_cps),
                format!("{:.0}", t.vip_cps),
                format!("{:.3}x", t.vip_cps / t.direct_cps),
                "VIP >= 0.9x direct",
            ),
            row(
                "  median of paired run ratios",
                "".into(),
                "".into(),
                format!("{:.3}x", t.paired_cps),
                "",
            ),
        ];
        print_table(
            &format!(
                "Throughput through the VIP (DNAT + SNAT to a pool of {SNAT_POOL} addresses) vs direct (routing, no NAT), medians of {runs}"
            ),
            ["direct", "via VIP", "VIP/dir"],
            &rows,
        );
    }
    Ok(())
}
