//! `lab up [two-arm|one-arm]`: bring a lab up until Ctrl-C/SIGTERM; `lab sweep`:
//! remove namespaces left by dead runs.

use anyhow::{bail, Context, Result};
use integration::{sweep, Lab};

const USAGE: &str = "usage: lab up [two-arm|one-arm] | lab sweep";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up"] => up("two-arm"),
        ["up", kind] => up(kind),
        ["sweep"] => {
            let removed = sweep().context("sweeping lab namespaces")?;
            for name in &removed {
                println!("removed {name}");
            }
            println!("{} namespace(s) removed", removed.len());
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn up(kind: &str) -> Result<()> {
    // Blocked before any thread exists, so every thread inherits the mask and the
    // signals wait for sigwait below instead of killing the process mid-teardown.
    let signals = block_signals()?;
    let lab = match kind {
        "two-arm" => Lab::two_arm(),
        "one-arm" => Lab::one_arm(),
        other => bail!("unknown lab {other:?}; {USAGE}"),
    }
    .with_context(|| format!("bringing up the {kind} lab"))?;
    print!("{}", lab.describe());
    println!("enter a host with: ip netns exec <namespace> bash");
    println!("Ctrl-C or SIGTERM tears it down");
    wait_for(&signals)?;
    println!("tearing down {}", lab.id());
    lab.down().context("tearing down")?;
    Ok(())
}

fn block_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; pthread_sigmask only
    // changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

fn wait_for(set: &libc::sigset_t) -> Result<()> {
    let mut sig = 0;
    // SAFETY: set is an initialised sigset_t and sig a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        bail!("sigwait: {}", std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}
