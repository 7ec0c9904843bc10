//! config_bench: how long lbd takes to load its configuration at start.
//!
//! `config_bench [--runs N] [--sizes 1000,10000] [--node lb1] [--baseline PATH]`
//!
//! Writes the file `lb_bench --only reload` starts lbd with (N wrr services of 8
//! servers, every server checked by TCP; see `lbd_config` there) and loads it for
//! node lb1 the way lbd does before anything else (`config::NodeSource::load`: read,
//! parse, validate, the node's view, the memo for rereads), in a fresh process each
//! run, `runs` times. With `--baseline PATH` (a config_bench built from an older
//! tree) each run of this build is followed by one of the baseline, so that both
//! see the same machine. Prints the medians of: the load alone (timed inside the
//! process), and from spawning the process to the load having returned (what a
//! daemon's start pays for it, the executable's start included).
//!
//! No root needed; the node's interface (eth0) must exist, as it must for lbd.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use benchmarks::median;

/// CLOCK_MONOTONIC in nanoseconds: the same clock in the parent and in the child.
fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// The child: loads `file` for `node` and prints "<load ns> <monotonic ns at return>".
fn child(file: &Path, node: &str) -> Result<()> {
    let source = config::NodeSource {
        config_path: file.to_owned(),
        node: Some(node.to_owned()),
    };
    let start = std::time::Instant::now();
    let loaded = source.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let took = start.elapsed().as_nanos();
    let done = monotonic_ns();
    println!("{took} {done} {}", loaded.cluster.services.len());
    // lbd keeps what it loaded: its freeing is not part of a start.
    std::mem::forget(loaded);
    Ok(())
}

/// One run of `bin` on `file`: (load ms, spawn-to-loaded ms).
fn run_once(bin: &Path, file: &Path, node: &str, services: usize) -> Result<(f64, f64)> {
    let spawned = monotonic_ns();
    let out = Command::new(bin)
        .arg("--child")
        .arg(file)
        .arg("--node")
        .arg(node)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} refused {}: {}",
            bin.display(),
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u128> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} printed {line:?}", bin.display()))?;
    let [took, done, n] = fields[..] else {
        bail!("{} printed {line:?}", bin.display());
    };
    if n != services as u128 {
        bail!("{} loaded {n} services of {services}", bin.display());
    }
    Ok((took as f64 / 1e6, done.saturating_sub(spawned) as f64 / 1e6))
}

struct Args {
    runs: usize,
    sizes: Vec<usize>,
    node: String,
    baseline: Option<PathBuf>,
    child: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        runs: 7,
        sizes: vec![1_000, 10_000],
        node: "lb1".into(),
        baseline: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--runs" => a.runs = value()?.parse()?,
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--node" => a.node = value()?,
            "--baseline" => a.baseline = Some(value()?.into()),
            "--child" => a.child = Some(value()?.into()),
            other => bail!(
                "unknown argument {other}; use --runs N, --sizes 1000,10000, --node NAME, --baseline PATH"
            ),
        }
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    if let Some(file) = &a.child {
        return child(file, &a.node);
    }
    let me = std::env::current_exe()?;
    let mut builds = vec![("this build", me)];
    if let Some(b) = &a.baseline {
        builds.push(("baseline", b.clone()));
    }
    let dir = tempfile::tempdir()?;
    println!(
        "lbd's configuration load (config::NodeSource::load, node {}) on N services x 8 servers, median of {} runs, builds alternated",
        a.node, a.runs
    );
    println!(
        "  {:<10} | {:>8} | {:>7} | {:>9} | {:>16} | binary",
        "build", "services", "file", "load", "spawn to loaded"
    );
    for &n in &a.sizes {
        let file = dir.path().join(format!("cluster-{n}.toml"));
        let text = benchmarks::lbd_config(n, dir.path(), 1_000, None);
        std::fs::write(&file, &text)?;
        let mut figures = vec![(Vec::new(), Vec::new()); builds.len()];
        for _ in 0..a.runs {
            for ((_, bin), (load, total)) in builds.iter().zip(&mut figures) {
                let (l, t) = run_once(bin, &file, &a.node, n)?;
                load.push(l);
                total.push(t);
            }
        }
        for ((name, bin), (load, total)) in builds.iter().zip(figures) {
            println!(
                "  {:<10} | {:>8} | {:>5.1}MB | {:>6.1} ms | {:>13.1} ms | {}",
                name,
                n,
                text.len() as f64 / 1e6,
                median(load),
                median(total),
                bin.display()
            );
        }
    }
    Ok(())
}
