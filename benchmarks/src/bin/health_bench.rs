//! Health-check benchmark (prints figures; not a test; needs root):
//! `cargo run --release -p integration --bin health_bench -- [--seconds 30]
//! [--addresses 100] [--ports 100] [--interval-ms 1000]`.
//!
//! The real lbd (release build, next to this binary; built with `cargo build
//! --release -p lbd` first when run through cargo) checks `addresses x ports`
//! TCP listeners in srv1 of the two-arm lab, from lb1, through its ordinary
//! configuration path: a cluster.toml with 1,000 services of 10 servers each
//! (default shape: 100 addresses x 100 ports = 10,000 targets at a 1 s interval,
//! 10,000 checks/s). It measures, over `--seconds`, lbd's CPU time as a share of
//! one core and its resident memory (from /proc/<pid>/stat and status), and the
//! checks per second it achieved (from its lbd_health_checks_total).
//!
//! Client and servers share this machine's kernel. A plain veth hands each packet
//! to the receiving namespace's stack in the sender's own softirq, so lbd would be
//! charged for the servers' side of every check (their SYN-ACKs, their sockets) and
//! for the bridge. By default every veth end on the path (lb1's eth1, the bridge's
//! ports, srv1's eth0) gets a NAPI poll thread of its own (GRO on, `threaded` 1), as
//! a real NIC's receive path runs in its own context: lbd pays for its syscalls and
//! its transmits, the receivers for their receives. The NAPI threads' CPU is printed
//! too. `--shared-softirq` keeps plain veth (the old figure, for comparison).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use benchmarks::{
    accept_forever, cpu_seconds, cpu_seconds_of, lbd_binary, napi_pids, napi_switch, napi_thread,
    rss_mib,
};
use integration::{Host, Lab, Prefix};

struct Args {
    /// The check type: tcp (connect) or tcp_syn (half-open).
    check: String,
    shared_softirq: bool,
    seconds: u64,
    addresses: usize,
    ports: usize,
    interval_ms: u32,
}

fn args() -> Result<Args> {
    let mut a = Args {
        check: "tcp".into(),
        shared_softirq: false,
        seconds: 30,
        addresses: 100,
        ports: 100,
        interval_ms: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--shared-softirq" => a.shared_softirq = true,
            "--check" => a.check = value("--check")?,
            "--seconds" => a.seconds = value("--seconds")?.parse().context("--seconds")?,
            "--addresses" => a.addresses = value("--addresses")?.parse().context("--addresses")?,
            "--ports" => a.ports = value("--ports")?.parse().context("--ports")?,
            "--interval-ms" => {
                a.interval_ms = value("--interval-ms")?.parse().context("--interval-ms")?
            }
            other => bail!(
                "unknown argument {other}; use --seconds S, --addresses N (at most 100), --ports N, --interval-ms MS, --check tcp|tcp_syn, --shared-softirq"
            ),
        }
    }
    if a.check != "tcp" && a.check != "tcp_syn" {
        bail!("--check must be tcp or tcp_syn");
    }
    if a.addresses == 0 || a.addresses > 100 || a.ports == 0 || a.ports > 1000 {
        bail!("--addresses must be 1..=100 and --ports 1..=1000");
    }
    if (a.addresses * a.ports) % 10 != 0 {
        bail!("addresses x ports must be a multiple of 10 (10 servers per service)");
    }
    Ok(a)
}

/// Server addresses: 198.18.1.130.. inside lb1's eth1 subnet (checks leave from
/// lb1's own 198.18.1.11, as configured).
fn server_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 130 + i as u8)
}

fn server_port(j: usize) -> u16 {
    20_000 + j as u16
}

fn cluster_toml(a: &Args, dir: &Path) -> String {
    let mut t = String::new();
    let _ = write!(
        t,
        r#"[cluster]
name = "bench"

[[node]]
name = "lb1"
priority = {{ edge = 150 }}
addresses = {{ eth0 = ["198.18.0.11/24"], eth1 = ["198.18.1.11/24"] }}

[[node]]
name = "lb2"
priority = {{ edge = 100 }}
addresses = {{ eth0 = ["198.18.0.12/24"], eth1 = ["198.18.1.12/24"] }}

[[sync_group]]
name = "edge"
instances = ["public", "server"]

[[instance]]
name = "public"
interface = "eth0"
vrid = 51
vips = ["198.18.0.100/24"]

[[instance]]
name = "server"
interface = "eth1"
vrid = 52
vips = ["198.18.1.100/24"]

[[check]]
name = "tcp"
type = "{}"
interval_ms = {}
timeout_ms = {}
rise = 2
fall = 3

[[nat]]
name = "snat"
out_interface = "eth1"
protocol = "tcp"
destination = "198.18.0.100"
snat = {{ address = "198.18.1.100" }}

[control]
vrrpd_socket = "{}/vrrpd.sock"
lbd_socket = "{}/lbd.sock"

[dataplane]
backend = "nft"
nft_table = "lbbench"
"#,
        a.check,
        a.interval_ms,
        (a.interval_ms / 2).max(10),
        dir.display(),
        dir.display()
    );
    let targets = a.addresses * a.ports;
    for s in 0..targets / 10 {
        let _ = write!(
            t,
            "\n[[service]]\nname = \"svc{s}\"\nvip = \"198.18.0.100\"\nport = {}\nscheduler = \"rr\"\n",
            10_000 + s
        );
        for k in 0..10 {
            let flat = s * 10 + k;
            let _ = write!(
                t,
                "[[service.server]]\nname = \"s{k}\"\naddress = \"{}\"\nport = {}\ncheck = \"tcp\"\n",
                server_addr(flat / a.ports),
                server_port(flat % a.ports)
            );
        }
    }
    t
}

fn raise_nofile(n: u64) -> Result<()> {
    let lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!(
            "setrlimit(NOFILE, {n}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn scrape(host: &Host) -> Result<String> {
    let mut s = host.tcp_connect("127.0.0.1:9613".parse()?, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(integration::exposition::without_cluster(&out))
}

fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn checks_total(m: &str) -> (f64, f64) {
    (
        sample(m, r#"lbd_health_checks_total{result="ok"}"#).unwrap_or(0.0),
        sample(m, r#"lbd_health_checks_total{result="failed"}"#).unwrap_or(0.0),
    )
}

fn main() -> Result<()> {
    let a = args()?;
    if !integration::have_root("health_bench") {
        return Ok(());
    }
    let targets = a.addresses * a.ports;
    let lbd = lbd_binary()?;
    raise_nofile(targets as u64 + 4096)?;
    let lab = Lab::two_arm()?;
    let srv = &lab["srv1"];
    let lb1 = &lab["lb1"];
    for i in 0..a.addresses {
        srv.add_address("eth0", Prefix::new(IpAddr::V4(server_addr(i)), 24))?;
    }
    if !a.shared_softirq {
        napi_thread(lb1.netns(), "eth1")?;
        napi_thread(srv.netns(), "eth0")?;
        napi_switch(&lab)?;
    }
    lb1.add_address("eth0", Prefix::new("198.18.0.100".parse()?, 24))?;
    lb1.add_address("eth1", Prefix::new("198.18.1.100".parse()?, 24))?;
    let listeners = srv.run_in(|| -> Result<Vec<TcpListener>> {
        let mut out = Vec::with_capacity(targets);
        for i in 0..a.addresses {
            for j in 0..a.ports {
                let addr = SocketAddr::new(IpAddr::V4(server_addr(i)), server_port(j));
                out.push(TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?);
            }
        }
        Ok(out)
    })??;
    std::thread::spawn(move || accept_forever(listeners));

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster_toml(&a, dir.path()))?;
    let mut cmd = lb1.command(&lbd);
    cmd.args([
        "--config",
        config.to_str().unwrap_or_default(),
        "--node",
        "lb1",
    ])
    .env("RUST_LOG", "warn");
    if let Ok(v) = std::env::var("HEALTH_BENCH_ARENAS") {
        cmd.env("MALLOC_ARENA_MAX", v);
    }
    let proc = lb1.spawn_command(cmd, "lbd")?;
    let pid = proc.pid();
    println!(
        "lbd pid {pid}: {} services x 10 servers = {targets} {} check targets ({} addresses x {} ports), interval {} ms",
        targets / 10,
        a.check,
        a.addresses,
        a.ports,
        a.interval_ms
    );

    // Memory before anything scrapes the metrics (a scrape of 10,000 backends
    // builds every metric family in memory at once).
    std::thread::sleep(Duration::from_secs(8));
    let rss_unscraped = rss_mib(pid)?;
    println!("lbd RSS after 8 s, before any scrape: {rss_unscraped:.1} MiB");
    // Wait until the checks run at full rate (every target checked at least once).
    let started = Instant::now();
    let warm = loop {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("lbd did not reach {targets} checks within 120 s");
        }
        std::thread::sleep(Duration::from_secs(1));
        if let Ok(m) = scrape(lb1) {
            let (ok, failed) = checks_total(&m);
            if ok + failed >= 2.0 * targets as f64 {
                break started.elapsed();
            }
        }
    };
    println!(
        "warm after {:.1} s; measuring for {} s",
        warm.as_secs_f64(),
        a.seconds
    );

    let m0 = scrape(lb1)?;
    let t0 = Instant::now();
    let cpu0 = cpu_seconds(pid)?;
    let napi0 = cpu_seconds_of(&napi_pids());
    let mut rss_max: f64 = 0.0;
    let end = t0 + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        rss_max = rss_max.max(rss_mib(pid)?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let cpu1 = cpu_seconds(pid)?;
    let napi1 = cpu_seconds_of(&napi_pids());
    let wall = t0.elapsed().as_secs_f64();
    let rss_end = rss_mib(pid)?;
    let m1 = scrape(lb1)?;
    let wall_checks = t0.elapsed().as_secs_f64();
    let (ok0, failed0) = checks_total(&m0);
    let (ok1, failed1) = checks_total(&m1);
    let overruns = sample(&m1, "lbd_health_check_overruns_total").unwrap_or(0.0)
        - sample(&m0, "lbd_health_check_overruns_total").unwrap_or(0.0);
    let down = m1
        .lines()
        .filter(|l| l.starts_with("lbd_backend_up{") && l.ends_with(" 0"))
        .count();
    let user_share = (cpu1.0 - cpu0.0) / wall * 100.0;
    let sys_share = (cpu1.1 - cpu0.1) / wall * 100.0;
    let cpu_share = user_share + sys_share;
    let napi_share = (napi1 - napi0) / wall * 100.0;
    let rate = ((ok1 + failed1) - (ok0 + failed0)) / wall_checks;
    let failed_rate = (failed1 - failed0) / wall_checks;

    let wanted = targets as f64 * 1000.0 / f64::from(a.interval_ms);
    println!();
    println!("| figure                          | measured        | target      |");
    println!("|---------------------------------|-----------------|-------------|");
    println!("| check targets                   | {targets:>15} |             |");
    println!("| checks/s configured             | {wanted:>15.0} |      10,000 |");
    println!("| checks/s achieved (lbd metrics) | {rate:>15.0} |             |");
    println!("| failed checks/s                 | {failed_rate:>15.1} |           0 |");
    println!("| overruns in the window          | {overruns:>15.0} |           0 |");
    println!("| backends down at the end        | {down:>15} |           0 |");
    println!("| lbd CPU, % of one core          | {cpu_share:>14.1}% |      < 25 % |");
    println!("|   of which user space           | {user_share:>14.1}% |             |");
    if a.shared_softirq {
        println!(
            "|   of which kernel (sockets, TCP; both ends' softirqs) | {sys_share:>5.1}% |  |"
        );
    } else {
        println!("|   of which kernel (syscalls, transmits) | {sys_share:>5.1}% |   |");
        println!(
            "| NAPI threads (receives: servers, bridge, lb1), % of a core | {napi_share:>5.1}% | |"
        );
    }
    println!("| lbd RSS max, MiB                | {rss_max:>15.1} |     < 100 MB |");
    println!("| lbd RSS at the end, MiB         | {rss_end:>15.1} |             |");
    println!("| lbd RSS before any scrape, MiB  | {rss_unscraped:>15.1} |             |");
    println!("| measured over, s                | {wall:>15.1} |        >= 30 |");
    drop(proc);
    drop(lab);
    Ok(())
}
