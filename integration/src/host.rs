//! A host of a running lab: its namespace, commands, processes and sockets in it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;

use crate::command::{describe, run, run_ok, IP_TIMEOUT};
use crate::error::LabError;
use crate::logs::LogDir;
use crate::netns;
use crate::process::Process;
use crate::topology::{InterfaceSpec, Prefix, Role};
use crate::traffic::ReplyServer;

/// Default timeout of [`Host::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// One host of a lab: a network namespace with its interfaces.
#[derive(Debug)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) netns: String,
    pub(crate) role: Role,
    pub(crate) number: u8,
    pub(crate) interfaces: Vec<InterfaceSpec>,
    pub(crate) logs: Arc<LogDir>,
}

/// State of a link as `ip -j link` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    /// Administratively up (the UP flag).
    pub up: bool,
    /// Carrier present (the LOWER_UP flag).
    pub carrier: bool,
    /// RFC 2863 operational state (UP, DOWN, LOWERLAYERDOWN, ...).
    pub operstate: String,
    /// Hardware address.
    pub mac: String,
    /// MTU.
    pub mtu: u32,
}

#[derive(Deserialize)]
struct IpLink {
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    operstate: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    local: Option<IpAddr>,
    prefixlen: Option<u8>,
}

impl Host {
    /// Host name as declared.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Network namespace name (`lbt-<pid>-<n>-<host>`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Role as declared.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Position in the topology, from 1; the MAC's fifth byte.
    pub fn number(&self) -> u8 {
        self.number
    }

    /// Interfaces as declared.
    pub fn interfaces(&self) -> &[InterfaceSpec] {
        &self.interfaces
    }

    /// The declared addresses of one interface.
    pub fn declared_addresses(&self, iface: &str) -> &[Prefix] {
        self.interfaces
            .iter()
            .find(|i| i.name == iface)
            .map_or(&[], |i| i.addrs.as_slice())
    }

    /// A `Command` that runs `program` inside this host (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Runs a command to completion in this host, killing it after [`EXEC_TIMEOUT`].
    /// A non-zero exit is not an error here: look at `Output::status`.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, LabError> {
        self.exec_timeout(argv, EXEC_TIMEOUT)
    }

    /// Like [`Host::exec`] with a chosen timeout.
    pub fn exec_timeout(&self, argv: &[&str], timeout: Duration) -> Result<Output, LabError> {
        let (program, args) = argv.split_first().ok_or(LabError::EmptyCommand)?;
        run(self.command(program).args(args), timeout)
    }

    /// Runs a command in this host and returns its stdout; a non-zero exit is an error.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String, LabError> {
        let (program, args) = argv.split_first().ok_or(LabError::EmptyCommand)?;
        run_ok(self.command(program).args(args), EXEC_TIMEOUT)
    }

    /// Runs `ip -n <netns> <args>` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        run_ok(
            Command::new("ip").args(["-n", &self.netns]).args(args),
            IP_TIMEOUT,
        )
    }

    /// Starts a long-running process in this host, its output going to the lab's log
    /// directory; the returned guard stops it.
    pub fn spawn<P, I, S>(&self, program: P, args: I) -> Result<Process, LabError>
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let label = Path::new(program.as_ref())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = self.command(program);
        cmd.args(args);
        self.spawn_command(cmd, &label)
    }

    /// Starts a prepared [`Host::command`] (with its own env, cwd, ...) like [`Host::spawn`];
    /// `label` names its log files.
    pub fn spawn_command(&self, mut cmd: Command, label: &str) -> Result<Process, LabError> {
        use std::os::unix::process::CommandExt;
        let command = describe(&cmd);
        let stem = self.logs.stem(&self.name, label);
        let (stdout, stderr) = (stem.join("stdout"), stem.join("stderr"));
        let open = |path: &Path| {
            File::create(path).map_err(|error| LabError::LogDir {
                path: path.to_owned(),
                error,
            })
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(open(&stdout)?)
            .stderr(open(&stderr)?)
            .process_group(0)
            .spawn()
            .map_err(|error| LabError::Spawn {
                command: command.clone(),
                error,
            })?;
        Ok(Process::new(
            child,
            command,
            stdout,
            stderr,
            Arc::clone(&self.logs),
        ))
    }

    /// Runs `f` on a fresh thread that has entered this host's namespace and returns
    /// its result. Sockets opened there stay in the namespace when handed back.
    /// A panic in `f` is resumed on the caller.
    pub fn run_in<F, T>(&self, f: F) -> Result<T, LabError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let netns = self.netns.as_str();
        thread::scope(|scope| {
            let handle = thread::Builder::new()
                .name(format!("netns-{}", self.name))
                .spawn_scoped(scope, move || netns::enter(netns).map(|()| f()))
                .map_err(LabError::Thread)?;
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts `f` on a thread inside this host's namespace; returns once the thread
    /// is in (or could not get in).
    pub fn thread_in<F, T>(&self, f: F) -> Result<NetnsThread<T>, LabError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let netns = self.netns.clone();
        let (entered_tx, entered_rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                let entered = netns::enter(&netns);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                ok.then(f)
            })
            .map_err(LabError::Thread)?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(NetnsThread { handle }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::ThreadLost(self.netns.clone())),
        }
    }

    /// Every address on `iface`, link-local ones included (`ip -j addr show dev`).
    pub fn addresses(&self, iface: &str) -> Result<Vec<Prefix>, LabError> {
        let link = self.ip_json_link(&["-j", "addr", "show", "dev", iface])?;
        Ok(link
            .addr_info
            .into_iter()
            .filter_map(|a| Some(Prefix::new(a.local?, a.prefixlen?)))
            .collect())
    }

    /// Flags, operational state and MAC of `iface` (`ip -j link show dev`).
    pub fn link(&self, iface: &str) -> Result<LinkState, LabError> {
        let link = self.ip_json_link(&["-j", "link", "show", "dev", iface])?;
        Ok(LinkState {
            up: link.flags.iter().any(|f| f == "UP"),
            carrier: link.flags.iter().any(|f| f == "LOWER_UP"),
            operstate: link.operstate,
            mac: link.address,
            mtu: link.mtu,
        })
    }

    fn ip_json_link(&self, args: &[&str]) -> Result<IpLink, LabError> {
        let out = self.ip(args)?;
        let command = format!("ip -n {} {}", self.netns, args.join(" "));
        let mut links: Vec<IpLink> =
            serde_json::from_str(&out).map_err(|error| LabError::IpJson { command, error })?;
        // `dev X` selects exactly one link; ip fails before printing if X is absent.
        Ok(links.swap_remove(0))
    }

    /// Sets `iface` administratively up or down inside the host.
    pub fn set_link(&self, iface: &str, up: bool) -> Result<(), LabError> {
        let state = if up { "up" } else { "down" };
        self.ip(&["link", "set", "dev", iface, state]).map(drop)
    }

    /// Adds a route to `dest` through `via`.
    pub fn add_route(&self, dest: Prefix, via: IpAddr) -> Result<(), LabError> {
        let (dest, via) = (dest.to_string(), via.to_string());
        self.ip(&["route", "add", &dest, "via", &via]).map(drop)
    }

    /// Adds an address to `iface` (IPv6 without duplicate address detection).
    pub fn add_address(&self, iface: &str, prefix: Prefix) -> Result<(), LabError> {
        let p = prefix.to_string();
        let mut args = vec!["addr", "add", &p, "dev", iface];
        if prefix.addr.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args).map(drop)
    }

    /// Removes an address from `iface`.
    pub fn del_address(&self, iface: &str, prefix: Prefix) -> Result<(), LabError> {
        let p = prefix.to_string();
        self.ip(&["addr", "del", &p, "dev", iface]).map(drop)
    }

    /// Reads a sysctl (dotted key such as `net.ipv4.ip_forward`) in this host.
    pub fn sysctl(&self, key: &str) -> Result<String, LabError> {
        let path = sysctl_path(key);
        let err = |error| LabError::Sysctl {
            netns: self.netns.clone(),
            key: key.to_owned(),
            error,
        };
        // /proc/sys/net resolves against the reading thread's namespace.
        self.run_in(|| std::fs::read_to_string(&path))?
            .map(|v| v.trim().to_owned())
            .map_err(err)
    }

    /// Writes a sysctl in this host.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        set_sysctls(&self.netns, &[(key, value)])
    }

    /// Binds a TCP listener inside this host.
    pub fn tcp_listen(&self, addr: SocketAddr) -> Result<TcpListener, LabError> {
        self.run_in(|| TcpListener::bind(addr))?
            .map_err(|error| LabError::Socket {
                what: "bind",
                addr,
                error,
            })
    }

    /// Connects over TCP from this host.
    pub fn tcp_connect(&self, addr: SocketAddr, timeout: Duration) -> Result<TcpStream, LabError> {
        let stream = self
            .run_in(|| TcpStream::connect_timeout(&addr, timeout))?
            .map_err(|error| LabError::Socket {
                what: "connect",
                addr,
                error,
            })?;
        let set = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)));
        set.map_err(|error| LabError::Socket {
            what: "configure",
            addr,
            error,
        })?;
        Ok(stream)
    }

    /// Connects from this host and reads until the server closes (lossy UTF-8).
    pub fn tcp_fetch(&self, addr: SocketAddr, timeout: Duration) -> Result<String, LabError> {
        let mut stream = self.tcp_connect(addr, timeout)?;
        let mut buf = Vec::new();
        stream
            .read_to_end(&mut buf)
            .map_err(|error| LabError::Socket {
                what: "read",
                addr,
                error,
            })?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Serves `reply` to every TCP connection on `addr` in this host, then closes it.
    pub fn serve_reply(&self, addr: SocketAddr, reply: &str) -> Result<ReplyServer, LabError> {
        ReplyServer::start(self.tcp_listen(addr)?, reply)
    }
}

/// A thread started by [`Host::thread_in`], running inside the host's namespace.
#[derive(Debug)]
pub struct NetnsThread<T> {
    // None only when the namespace could not be entered, which thread_in reported.
    handle: thread::JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the thread; `Err` carries its panic.
    pub fn join(self) -> thread::Result<T> {
        self.handle
            .join()?
            .ok_or_else(|| Box::new("namespace was not entered") as Box<dyn std::any::Any + Send>)
    }

    /// Whether the thread has finished.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// `/proc/sys/...` for a dotted (or slashed) sysctl key.
fn sysctl_path(key: &str) -> std::path::PathBuf {
    let rel = if key.contains('/') {
        key.to_owned()
    } else {
        key.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel)
}

/// Writes sysctls in a namespace from one helper thread, in order.
pub(crate) fn set_sysctls(netns: &str, pairs: &[(&str, &str)]) -> Result<(), LabError> {
    let result = thread::scope(|scope| {
        let handle = scope.spawn(|| -> Result<(), LabError> {
            netns::enter(netns)?;
            for (key, value) in pairs {
                std::fs::write(sysctl_path(key), value).map_err(|error| LabError::Sysctl {
                    netns: netns.to_owned(),
                    key: (*key).to_owned(),
                    error,
                })?;
            }
            Ok(())
        });
        handle.join()
    });
    result.unwrap_or_else(|_| Err(LabError::ThreadLost(netns.to_owned())))
}
