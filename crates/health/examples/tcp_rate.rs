//! A quick figure: N TCP targets against listeners on 127.0.0.1, checked at
//! a 1 s interval for a few seconds; prints checks/s and the CPU time of this
//! process. The listeners run in a child process (this program re-run with
//! `--serve`), so the CPU figure is the checking side only.
//!
//! `cargo run --release -p health --example tcp_rate -- [targets] [seconds] [listeners]`

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use health::{CheckSpec, HealthRunner, Probe, RunnerSettings, Target, TargetName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let listeners = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
        return serve(listeners);
    }
    let targets: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let listeners: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(16);

    let mut server = Command::new(std::env::current_exe()?)
        .args(["--serve", &listeners.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let ports: Vec<u16> = line
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if ports.is_empty() {
        return Err("the listener process reported no ports".into());
    }

    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(measure(targets, seconds, &ports));
    server.kill()?;
    server.wait()?;
    result
}

async fn measure(n: usize, seconds: u64, ports: &[u16]) -> Result<(), Box<dyn std::error::Error>> {
    let targets = (0..n)
        .map(|i| Target {
            name: TargetName::new("bench", format!("s{i}")),
            address: SocketAddr::from(([127, 0, 0, 1], ports[i % ports.len()])),
            source: None,
            check: CheckSpec::new(
                Probe::Tcp,
                Duration::from_secs(1),
                Duration::from_millis(500),
                2,
                3,
            )
            .into(),
        })
        .collect();
    let cpu0 = cpu_time()?;
    let wall0 = Instant::now();
    let (runner, _events) = HealthRunner::new(targets, RunnerSettings::default())?;
    let mut most_pending = 0;
    let end = wall0 + Duration::from_secs(seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
        most_pending = most_pending.max(runner.counters().pending);
    }
    let c = runner.counters();
    let wall = wall0.elapsed();
    let cpu = cpu_time()? - cpu0;
    runner.shutdown().await;

    let s = c.scheduler;
    let done = s.checks_ok + s.checks_failed;
    println!(
        "targets={n} listeners={} interval=1s duration={:.2}s",
        ports.len(),
        wall.as_secs_f64()
    );
    println!(
        "checks: started={} done={done} ok={} failed={} overruns={} -> {:.0} checks/s",
        s.checks_started,
        s.checks_ok,
        s.checks_failed,
        s.overruns,
        done as f64 / wall.as_secs_f64()
    );
    println!(
        "cpu (user+sys, this process) = {:.3} s = {:.1}% of one core; {:.1} µs per check; peak pending {most_pending}",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        1e6 * cpu.as_secs_f64() / done.max(1) as f64
    );
    Ok(())
}

/// User + system time of this process, from /proc/self/stat (USER_HZ = 100).
fn cpu_time() -> Result<Duration, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').ok_or("odd /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

/// Child mode: `listeners` TCP listeners that accept and drop; prints their ports.
fn serve(listeners: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut ports = Vec::new();
        for _ in 0..listeners {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            ports.push(l.local_addr()?.port().to_string());
            tokio::spawn(async move { while l.accept().await.is_ok() {} });
        }
        let mut out = std::io::stdout();
        writeln!(out, "{}", ports.join(" "))?;
        out.flush()?;
        std::future::pending::<()>().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
