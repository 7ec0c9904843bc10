//! Helpers the benchmark binaries share: a process's CPU time and memory, and receive
//! threads for the lab's veths so that each "machine" does its own receive work.
//!
//! A plain veth hands a packet to its peer in the sender's context: the client's
//! `send` then runs the bridge, the balancer's forwarding and the server's TCP receive
//! on the client's CPU time. On real hardware each machine's NIC raises its own
//! interrupts. [`napi_thread`] gets close to that: with GRO on, veth receives through
//! NAPI, and `threaded` moves that poll into a kernel thread of its own per interface,
//! which a benchmark can measure and place on a CPU ([`pin`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use integration::Lab;

/// Clock ticks per second of /proc/<pid>/stat.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// (user, system) CPU seconds of `pid`.
pub fn cpu_seconds(pid: u32) -> Result<(f64, f64)> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// utime and stime of a `stat` file, in seconds.
fn stat_cpu(path: &str) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name (which may hold spaces); utime
    // and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("{path}: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| anyhow!("{path}: field {} unreadable", i + 3))
    };
    let hz = clock_ticks();
    Ok((ticks(11)? / hz, ticks(12)? / hz))
}

/// User and system CPU seconds of `pid`'s threads whose name starts with `prefix`
/// (`/proc/PID/task/TID/stat`; a thread that has exited is no longer counted).
pub fn thread_cpu_seconds(pid: u32, prefix: &str) -> Result<(f64, f64)> {
    let dir = format!("/proc/{pid}/task");
    let mut sum = (0.0, 0.0);
    for task in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let task = task?.path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        if let Ok((u, s)) = stat_cpu(&task.join("stat").to_string_lossy()) {
            sum = (sum.0 + u, sum.1 + s);
        }
    }
    Ok(sum)
}

/// VmRSS of `pid` in MiB.
pub fn rss_mib(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{path}: no VmRSS"))?;
    Ok(kb / 1024.0)
}

/// Pids of the kernel's NAPI poll threads (`napi/<dev>-<id>`).
pub fn napi_pids() -> BTreeSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("napi/"))
        })
        .collect()
}

/// Total CPU seconds of `pids` (threads that are gone count nothing).
pub fn cpu_seconds_of(pids: &BTreeSet<u32>) -> f64 {
    pids.iter()
        .filter_map(|&pid| cpu_seconds(pid).ok())
        .map(|(u, s)| u + s)
        .sum()
}

/// Runs `argv` in `netns`, with `input` on its standard input.
fn run_in(netns: &str, argv: &[&str], input: Option<&str>) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).args(argv);
    cmd.stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {argv:?} in {netns}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        if let Some(text) = input {
            stdin.write_all(text.as_bytes())?;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{argv:?} in {netns} failed ({status}); is ethtool installed?");
    }
    Ok(())
}

/// Gives `iface` in namespace `netns` a NAPI poll thread of its own (veth polls
/// through NAPI once GRO is on; `threaded` moves the poll into a kernel thread) and
/// returns the pids of the threads this made.
pub fn napi_thread(netns: &str, iface: &str) -> Result<BTreeSet<u32>> {
    let before = napi_pids();
    // veth takes the NAPI path only for packets it may GRO: with TSO on at the
    // sender, a forwarded or locally sent packet goes the softirq way instead.
    run_in(
        netns,
        &["ethtool", "-K", iface, "gro", "on", "tso", "off"],
        None,
    )?;
    let path = format!("/sys/class/net/{iface}/threaded");
    run_in(netns, &["tee", &path], Some("1"))?;
    Ok(napi_pids().difference(&before).copied().collect())
}

/// Names of the veths in the lab's switch namespace (the bridge ports).
pub fn switch_ports(lab: &Lab) -> Result<Vec<String>> {
    let switch = lab.switch_netns();
    let out = Command::new("ip")
        .args(["-n", switch, "-o", "link", "show", "type", "veth"])
        .output()
        .with_context(|| format!("listing the veths of {switch}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split(": ").nth(1)?.split('@').next())
        .map(str::to_owned)
        .collect())
}

/// Gives every bridge port of the lab a NAPI thread; returns their pids.
pub fn napi_switch(lab: &Lab) -> Result<BTreeSet<u32>> {
    let mut pids = BTreeSet::new();
    for port in switch_ports(lab)? {
        pids.extend(napi_thread(lab.switch_netns(), &port)?);
    }
    Ok(pids)
}

/// Restricts `pid` (a process, or a kernel thread that allows it) to the CPUs `cpus`.
pub fn pin(pid: u32, cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `set` is a valid cpu_set_t; CPU_SET ignores CPUs beyond its size.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    let pid_t = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: `set` outlives the call, and its size is passed with it.
    let rc = unsafe { libc::sched_setaffinity(pid_t, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        bail!(
            "pinning pid {pid} to CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The number of CPUs this process may run on.
pub fn cpus_available() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The release lbd next to this binary (built first when run through cargo).
pub fn lbd_binary() -> Result<PathBuf> {
    release_binary("lbd", "lbd")
}

/// The release binary `name` of `package` next to this binary (built first when
/// run through cargo).
pub fn release_binary(name: &str, package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if let Ok(cargo) = std::env::var("CARGO") {
        println!("building {name} (release) ...");
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", package, "--bin", name])
            .status()
            .with_context(|| format!("running cargo build -p {package}"))?;
        if !status.success() {
            bail!("cargo build --release -p {package} failed");
        }
    }
    if !path.exists() {
        bail!(
            "{} not found: run `cargo build --release -p {package}` first",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `cmd` to its end: its wall time and peak resident size (MiB, from the
/// kernel's accounting of the child), and whether it exited 0.
pub fn run_measured(cmd: &mut Command) -> Result<(std::time::Duration, f64, bool)> {
    let start = std::time::Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child's pid, and pointers to locals that outlive the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // ru_maxrss is in KiB on Linux.
    Ok((took, usage.ru_maxrss as f64 / 1024.0, ok))
}

/// Accepts and closes every connection on `listeners` (one epoll loop), so that
/// accept queues never fill. Runs until the process exits.
pub fn accept_forever(listeners: Vec<TcpListener>) -> Result<()> {
    // SAFETY: plain syscalls on descriptors this function owns for its lifetime.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        bail!("epoll_create1: {}", std::io::Error::last_os_error());
    }
    for l in &listeners {
        l.set_nonblocking(true)?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: l.as_raw_fd() as u64,
        };
        // SAFETY: ep and the listener's fd are open; ev outlives the call.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, l.as_raw_fd(), &mut ev) } < 0 {
            bail!("epoll_ctl: {}", std::io::Error::last_os_error());
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    loop {
        // SAFETY: events has room for 256 entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, 1000) };
        for e in events.iter().take(n.max(0) as usize) {
            let fd = e.u64 as i32;
            loop {
                // SAFETY: fd is a listening socket kept open by `listeners`.
                let c = unsafe {
                    libc::accept4(
                        fd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                };
                if c < 0 {
                    break;
                }
                // SAFETY: c is the descriptor accept4 just returned.
                unsafe { libc::close(c) };
            }
        }
    }
}

/// The check servers: srv1's own address, one port per server of a service.
pub const CHECKED: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 21);
pub const CHECKED_PORT: u16 = 8080;
/// Service ports: every service on the public VIP 198.18.0.100, port 10,000 + i.
pub const FIRST_PORT: usize = 10_000;

/// lbd's configuration as `lb_bench --only reload` and `config_bench` start it: `n` wrr services of 8 servers (weight 1; `srv3` of service
/// `bumped` weight 2), every server checked by TCP every `check_ms`.
pub fn lbd_config(n: usize, dir: &Path, check_ms: u32, bumped: Option<usize>) -> String {
    use std::fmt::Write as _;
    let mut t = format!(
        r#"[cluster]
name = "bench"

[[node]]
name = "lb1"
priority = {{ edge = 150 }}
addresses = {{ eth0 = ["198.18.0.11/24"] }}

[[node]]
name = "lb2"
priority = {{ edge = 100 }}
addresses = {{ eth0 = ["198.18.0.12/24"] }}

[[sync_group]]
name = "edge"
instances = ["public"]

[[instance]]
name = "public"
interface = "eth0"
vrid = 51
vips = ["198.18.0.100/24"]

[[check]]
name = "tcp"
type = "tcp"
interval_ms = {check_ms}
timeout_ms = 1000
rise = 2
fall = 3

[control]
vrrpd_socket = "{dir}/vrrpd.sock"
lbd_socket = "{dir}/lbd.sock"

[metrics]
enabled = false

[dataplane]
backend = "nft"
nft_table = "lbbench"
"#,
        dir = dir.display()
    );
    for i in 0..n {
        let _ = write!(
            t,
            "\n[[service]]\nname = \"svc{i}\"\nvip = \"198.18.0.100\"\nport = {}\nscheduler = \"wrr\"\n",
            FIRST_PORT + i
        );
        for j in 0..8 {
            let weight = if bumped == Some(i) && j == 3 { 2 } else { 1 };
            let _ = write!(
                t,
                "[[service.server]]\nname = \"srv{j}\"\naddress = \"{CHECKED}\"\nport = {}\nweight = {weight}\ncheck = \"tcp\"\n",
                usize::from(CHECKED_PORT) + j
            );
        }
    }
    t
}

/// The median of `v` (NaN when empty; the mean of the middle two when even).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
