//! The process shell both daemons share: a one-thread tokio runtime, SIGTERM / SIGINT
//! / SIGQUIT as the shutdown signal, no other catchable signal that ends the process,
//! and the exit status.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

/// The daemon's `status` reply, asked through `handler` as the control socket asks
/// it: what the read-only status page on the metrics listener serves as JSON (the
/// typed contract `vrrpctl --json` prints). Only `status` is ever asked.
pub async fn status_reply(
    handler: &impl crate::RequestHandler,
) -> Result<serde_json::Value, String> {
    handler
        .handle(crate::methods::STATUS, serde_json::Value::Null)
        .await
        .map_err(|e| e.message)
}

/// Resolves on SIGTERM or SIGINT.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `body` on a one-thread tokio runtime until it returns, handing it a future that
/// resolves on SIGTERM or SIGINT. One thread: the daemons' loops, their netlink tasks
/// and control servers hand work to each other on their hot paths (a takeover, 10,000
/// health checks/s), and on one thread that is a task switch, not a cross-thread
/// wake-up; blocking work has threads of its own. An error is logged and printed as
/// `name: error` and the exit status is 1.
pub fn run<E, Fut>(name: &str, body: impl FnOnce(Shutdown) -> Fut) -> ExitCode
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<(), E>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (mut term, mut int, mut quit) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) {
            (Ok(t), Ok(i), Ok(q)) => (t, i, q),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return Err(format!("installing signal handlers: {e}"))
            }
        };
        if let Err(e) = keep_alive_on_other_signals() {
            return Err(format!("installing signal handlers: {e}"));
        }
        let shutdown: Shutdown = Box::pin(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
                _ = quit.recv() => tracing::info!("SIGQUIT: shutting down as on SIGTERM"),
            }
        });
        body(shutdown).await.map_err(|e| format!("{e:#}"))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// What a daemon's start-up says about the configuration it loaded.
#[cfg(feature = "daemon")]
struct Loaded<'a> {
    /// Its control socket: the instance lock sits beside it.
    socket: &'a std::path::Path,
    /// The node it runs as.
    node: &'a str,
    /// The configuration's fingerprint.
    fingerprint: &'a str,
    /// One line: cluster, peer, groups, services.
    summary: String,
    /// What the configuration accepted but warns about.
    warnings: Vec<String>,
}

/// The start-up both daemons share once the command line is read: logging on stderr
/// in `format`, the configuration at `config` loaded (`load`: the error is the
/// diagnostics, printed with `name: config: refused, nothing applied`), the instance
/// lock beside the control socket taken before anything touches the kernel (a second
/// daemon would take a running one's addresses or rules for leftovers), the loaded
/// configuration and its warnings logged, and the descriptor limit raised. Returns
/// the configuration and the lock to hold for the life of the process, or the exit
/// status to end with.
#[cfg(feature = "daemon")]
fn start<L, E: std::fmt::Display>(
    name: &str,
    format: crate::logging::LogFormat,
    config: &std::path::Path,
    load: impl FnOnce() -> Result<L, E>,
    describe: impl for<'a> FnOnce(&'a L) -> Loaded<'a>,
) -> Result<(L, InstanceLock), ExitCode> {
    crate::logging::init(format);
    let loaded = match load() {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("{name}: {}: refused, nothing applied", config.display());
            return Err(ExitCode::from(1));
        }
    };
    let about = describe(&loaded);
    let lock = match InstanceLock::acquire(name, about.socket) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{name}: {e}");
            return Err(ExitCode::from(1));
        }
    };
    tracing::info!(config = %config.display(), node = %about.node, fingerprint = %about.fingerprint, "{}", about.summary);
    for w in &about.warnings {
        tracing::warn!("configuration: {w}");
    }
    raise_descriptor_limit();
    Ok((loaded, lock))
}

/// The options both daemons take: `#[command(flatten)]` them into a daemon's
/// command line (the man pages list them from there).
#[cfg(feature = "daemon")]
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// The cluster.toml shared by both members.
    #[arg(long, value_name = "PATH", default_value = "/etc/lbsuite/cluster.toml")]
    pub config: std::path::PathBuf,
    /// This member's node name (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Log line format on stderr: `text` or `json` (one object a line). Under
    /// systemd each line starts with its syslog priority for the journal.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: crate::logging::LogFormat,
}

#[cfg(feature = "daemon")]
impl DaemonArgs {
    /// Where the configuration is read from.
    pub fn source(&self) -> config::NodeSource {
        config::NodeSource {
            config_path: self.config.clone(),
            node: self.node.clone(),
        }
    }
}

/// [`start`] for a daemon of the cluster: the configuration is `args`' node view of
/// the file, and the instance lock sits beside the control socket `socket` names
/// (vrrpd's or lbd's). Returns where the configuration came from (for reloads), the
/// configuration, and the lock to hold for the life of the process, or the exit
/// status to end with.
#[cfg(feature = "daemon")]
pub fn start_node(
    name: &str,
    args: &DaemonArgs,
    socket: fn(&config::NodeView) -> &std::path::Path,
) -> Result<(config::NodeSource, config::LoadedNode, InstanceLock), ExitCode> {
    let source = args.source();
    let (loaded, lock) = start(
        name,
        args.log_format,
        &source.config_path,
        || source.load(),
        |l: &config::LoadedNode| Loaded {
            socket: socket(&l.view),
            node: &l.view.name,
            fingerprint: &l.view.fingerprint,
            summary: l.view.summary(),
            warnings: l.cluster.warnings.iter().map(ToString::to_string).collect(),
        },
    )?;
    Ok((source, loaded, lock))
}

/// Signals whose default action would end the daemon (and leave its VIPs on the
/// interfaces while the peer takes them too) and that it does not act on itself.
/// SIGUSR1 and SIGUSR2 are the daemons' (state and statistics dumps, as keepalived
/// has them); the others are logged and ignored.
const KEPT_ALIVE: &[(libc::c_int, &str)] = &[
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSTKFLT, "SIGSTKFLT"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
];

/// Installs handlers for [`KEPT_ALIVE`] and the real-time signals: once tokio
/// handles a signal, its default action is gone for the life of the process. Each
/// one that arrives is logged (SIGUSR1/SIGUSR2 at debug: the daemon answers them).
fn keep_alive_on_other_signals() -> std::io::Result<()> {
    let mut kinds: Vec<(libc::c_int, String)> = KEPT_ALIVE
        .iter()
        .map(|(n, name)| (*n, (*name).to_owned()))
        .collect();
    for n in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        kinds.push((n, format!("SIGRTMIN+{}", n - libc::SIGRTMIN())));
    }
    for (n, name) in kinds {
        let mut stream = match signal(SignalKind::from_raw(n)) {
            Ok(s) => s,
            // The C library keeps some real-time signals for itself.
            Err(_) if n >= libc::SIGRTMIN() => continue,
            Err(e) => return Err(e),
        };
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if n == libc::SIGUSR1 || n == libc::SIGUSR2 {
                    tracing::debug!("{name} received");
                } else {
                    tracing::warn!("{name} received and ignored (its default action would end the daemon and leave its addresses behind)");
                }
            }
        });
    }
    Ok(())
}

/// Writes what SIGUSR1 (`.data`: the state) or SIGUSR2 (`.stats`: the counters)
/// asks for beside the control socket, and logs where (or why not).
pub fn write_dump(signal: &str, what: &str, socket: &std::path::Path, extension: &str, text: &str) {
    match dump_to(socket, extension, text) {
        Ok(path) => tracing::info!(path = %path.display(), "{signal}: {what} written"),
        Err(e) => tracing::warn!(error = %e, "{signal}: cannot write the {what}"),
    }
}

/// Where a daemon writes what SIGUSR1 (`.data`) or SIGUSR2 (`.stats`) asks for:
/// beside its control socket, owner-only, replaced whole.
fn dump_to(
    socket: &std::path::Path,
    extension: &str,
    text: &str,
) -> std::io::Result<std::path::PathBuf> {
    let path = socket.with_extension(extension);
    write_atomically(&path, text.as_bytes())?;
    Ok(path)
}

/// Replaces `path` whole with `bytes`, owner-only (0600): written to `<path>.tmp`,
/// synced, renamed over `path`, then the directory synced, so that a reader or a
/// crash sees the old contents or the new ones, never a part.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a daemon whose control socket is `socket` keeps its state file (what an
/// operator set at run time): `<dir>/<socket's file stem>.state`, `dir` being
/// `state_dir` (`[control] state_dir`), else `env_dir` (systemd's
/// `$STATE_DIRECTORY`, a colon-separated list: the first, if absolute), else the
/// socket's directory. The stem keeps two nodes sharing one machine (test labs)
/// apart; `default_stem` serves a socket path without one.
pub fn state_path(
    socket: &std::path::Path,
    state_dir: Option<&std::path::Path>,
    env_dir: Option<&std::ffi::OsStr>,
    default_stem: &str,
) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    let stem = socket
        .file_stem()
        .filter(|s| !s.is_empty())
        .unwrap_or(std::ffi::OsStr::new(default_stem));
    let mut name = stem.to_os_string();
    name.push(".state");
    let env_dir = env_dir
        .and_then(|d| d.to_str())
        .and_then(|d| d.split(':').next())
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from);
    let dir = state_dir
        .map(Path::to_path_buf)
        .or(env_dir)
        .or_else(|| socket.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/"));
    dir.join(name)
}

/// Writes `value` to the state file `path` as pretty JSON (with a final newline),
/// creating its directory, atomically and owner-only ([`write_atomically`]).
pub fn store_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> std::io::Result<()> {
    let mut text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    text.push(b'\n');
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(path, &text)
}

/// Keeps a copy of a state file that could not be used, `<path>.bad`, before it is
/// replaced; returns the copy's path.
pub fn keep_aside(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let mut name = path.as_os_str().to_os_string();
    name.push(".bad");
    let bad = std::path::PathBuf::from(name);
    std::fs::copy(path, &bad)?;
    Ok(bad)
}

/// What keeps a second daemon off one node: an exclusive `flock` on
/// `<control socket>.lock`, held for the daemon's life and released by the kernel
/// when the process ends, however it ends. The holder writes its pid into the file,
/// so that a second start can name it.
///
/// Taken before the daemon touches anything: a second vrrpd on a running master
/// would otherwise remove the live VIPs as leftovers of a crash. Per socket path,
/// so nodes that share a machine (tests, labs) each have their own. The file stays
/// after the daemon stops (removing it would race with the next start); its text is
/// the pid of the last holder; the lock is what counts.
#[derive(Debug)]
pub struct InstanceLock {
    // Never read: holding the descriptor holds the lock.
    _file: std::fs::File,
    path: std::path::PathBuf,
}

/// Why [`InstanceLock::acquire`] failed. Each variant says the OS error's text itself
/// and does not return it as `source()` as well: an `anyhow` chain (`{:#}`) prints it
/// once.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: the same daemon already runs for this node.
    #[error(
        "another {daemon} (pid {}) is already running for this node: it holds {}; \
         nothing was changed. Stop that one first, or give this one its own control socket",
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        path.display()
    )]
    Held {
        /// The daemon's name.
        daemon: String,
        /// The lock file.
        path: std::path::PathBuf,
        /// The holder's pid, as it wrote it into the file.
        pid: Option<i32>,
    },
    /// The lock file (or its directory) could not be created or opened.
    #[error("{}: cannot open the instance lock file: {error}", path.display())]
    Open {
        /// The lock file.
        path: std::path::PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
    /// Locking failed for another reason than a holder.
    #[error("{}: cannot lock: {error}", path.display())]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
}

impl LockError {
    /// The holder's pid, when another daemon holds the lock.
    pub fn holder(&self) -> Option<i32> {
        match self {
            LockError::Held { pid, .. } => *pid,
            _ => None,
        }
    }
}

impl InstanceLock {
    /// The lock file of the daemon whose control socket is `socket`: beside it,
    /// the socket's file name with `.lock` appended.
    pub fn path_for(socket: &std::path::Path) -> std::path::PathBuf {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        std::path::PathBuf::from(name)
    }

    /// Takes the lock of the daemon `daemon` serving `socket`, without waiting;
    /// creates the socket's directory (0755) and the lock file (0644) if missing.
    pub fn acquire(daemon: &str, socket: &std::path::Path) -> Result<InstanceLock, LockError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

        let path = Self::path_for(socket);
        let open_err = |error| LockError::Open {
            path: path.clone(),
            error,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(parent)
                    .map_err(open_err)?;
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // A symlink planted in a shared directory must not redirect our writes.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(open_err)?;
        // SAFETY: the descriptor is open for the whole call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            // For operators (`cat`) and for a second start's message.
            let _ = file.set_len(0);
            let _ = writeln!(file, "{}", std::process::id());
            let _ = file.flush();
            return Ok(InstanceLock { _file: file, path });
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Err(LockError::Held {
                daemon: daemon.to_string(),
                pid: holder_pid(&mut file),
                path,
            })
        } else {
            Err(LockError::Lock { path, error })
        }
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// The pid the holder wrote into the lock file; it writes it right after taking
/// the lock, so an empty file is read again for a moment.
fn holder_pid(file: &mut std::fs::File) -> Option<i32> {
    use std::io::{Read, Seek};
    for _ in 0..20 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse::<i32>() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Raises the soft descriptor limit to the hard one (systemd's default soft limit
/// is 1024), and logs it. Whatever else runs short, the /metrics server sheds its
/// own clients first; this leaves room for what the daemon itself needs (VRRP and
/// netlink sockets, the dataplane, health checks, connection sync, control clients).
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot read the descriptor limit (RLIMIT_NOFILE)");
        return;
    }
    let hard = if limit.rlim_max == libc::RLIM_INFINITY {
        // The kernel refuses more than fs.nr_open descriptors, whatever the limit.
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur >= hard {
        tracing::debug!(
            soft = limit.rlim_cur,
            "descriptor limit already at the hard limit"
        );
        return;
    }
    let from = limit.rlim_cur;
    limit.rlim_cur = hard;
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(
            from,
            to = hard,
            "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
        );
    } else {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, soft = from, hard, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let path = || std::path::PathBuf::from("/run/lbsuite/vrrpd.sock.lock");
        let os = || std::io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            LockError::Open {
                path: path(),
                error: os(),
            }
            .into(),
            LockError::Lock {
                path: path(),
                error: os(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }

    #[test]
    fn lock_path_is_beside_the_socket() {
        assert_eq!(
            InstanceLock::path_for(std::path::Path::new("/run/lbsuite/vrrpd.sock")),
            std::path::Path::new("/run/lbsuite/vrrpd.sock.lock")
        );
    }

    /// Run by [`a_second_holder_is_refused_and_told_the_first_pid`] as another
    /// process: tries the lock, prints the outcome.
    #[test]
    fn second_process_helper() {
        let Some(socket) = std::env::var_os("CTL_LOCK_HELPER_SOCKET") else {
            return;
        };
        match InstanceLock::acquire("vrrpd", std::path::Path::new(&socket)) {
            Ok(_) => println!("HELPER acquired"),
            Err(e) => println!("HELPER holder={:?} message={e}", e.holder()),
        }
    }

    #[test]
    fn a_second_holder_is_refused_and_told_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sub/vrrpd.sock");
        let first = InstanceLock::acquire("vrrpd", &socket).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let second = || {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "daemon::tests::second_process_helper",
                    "--nocapture",
                ])
                .env("CTL_LOCK_HELPER_SOCKET", &socket)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let refused = second();
        println!("{refused}");
        let ours = format!("holder=Some({})", std::process::id());
        assert!(refused.contains(&ours), "{refused}");
        assert!(
            refused.contains(&format!("another vrrpd (pid {})", std::process::id())),
            "{refused}"
        );
        drop(first);
        // Released with its holder: the next start takes it.
        assert!(second().contains("HELPER acquired"));
    }
}
