//! vrrpctl's daemon commands against a stand-in vrrpd (a real control
//! server with canned answers): output, parameters sent, errors, and `watch`
//! across a daemon restart.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ctl::{EventBus, ReplyError, RequestHandler, Server, SocketPerms};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Records every request; answers `status` with a fixed reply.
#[derive(Default)]
struct FakeVrrpd {
    seen: Mutex<Vec<(String, Value)>>,
}

fn status_reply() -> Value {
    json!({
        "node": "lb1",
        "groups": [{"name": "edge", "state": "MASTER", "last_takeover": null}],
        "instances": [
            {"group": "edge", "name": "public", "interface": "eth0", "vrid": 51, "state": "MASTER",
             "priority": 150, "effective_priority": 150, "master_address": "198.18.0.11",
             "advert_interval_ms": 1000, "maintenance": false},
            {"group": "edge", "name": "server", "interface": "eth1", "vrid": 52, "state": "MASTER",
             "priority": 150, "effective_priority": 140, "master_address": "198.18.1.11",
             "advert_interval_ms": 1000, "maintenance": false}
        ]
    })
}

impl RequestHandler for FakeVrrpd {
    async fn handle(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
        self.seen
            .lock()
            .unwrap()
            .push((method.to_owned(), params.clone()));
        match method {
            "status" => Ok(status_reply()),
            "maintenance" => Ok(
                json!({"maintenance": params["on"], "groups": [{"group": "edge", "state": "MAINTENANCE"}]}),
            ),
            "priority.set" => Ok(
                json!({"instances": [{"instance": "public", "priority": params["priority"], "effective_priority": params["priority"], "state": "BACKUP", "override": {"priority": params["priority"], "since_unix_ms": 1}}],
                       "persisted": false, "warning": "cannot write the state file /x/vrrpd.state: No space left on device (os error 28); the change applies now but is lost at the next restart"}),
            ),
            "priority.clear" => Ok(json!({"cleared": [], "persisted": true})),
            "reload" => Err(ReplyError::failed(
                "reload refused, running configuration unchanged:\nx.toml:1:1: bad",
            )),
            other => Err(ReplyError::method_not_found(other)),
        }
    }
}

/// A stand-in daemon on its own runtime thread.
struct Daemon {
    fake: Arc<FakeVrrpd>,
    bus: EventBus,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
}

impl Daemon {
    fn start(path: &Path) -> Daemon {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = Arc::new(FakeVrrpd::default());
        let bus = EventBus::new(16);
        let (stop, stopped) = watch::channel(false);
        let server = runtime
            .block_on(Server::bind(path, SocketPerms::default()))
            .unwrap();
        runtime.spawn(server.serve(Arc::clone(&fake), bus.clone(), stopped));
        Daemon {
            fake,
            bus,
            stop,
            runtime,
        }
    }

    fn seen(&self) -> Vec<(String, Value)> {
        self.fake.seen.lock().unwrap().clone()
    }

    fn stop(self) {
        let _ = self.stop.send(true);
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

fn vrrpctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn socket(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("vrrpd.sock")
}

#[test]
fn status_prints_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let s = path.to_str().unwrap();
    let (code, out, err) = vrrpctl(&["--socket", s, "status"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("GROUP") && lines[0].contains("PRIO/EFF"),
        "{out}"
    );
    assert!(
        lines[1].contains("public") && lines[1].contains("150/150"),
        "{out}"
    );
    assert!(
        lines[2].contains("server") && lines[2].contains("150/140"),
        "{out}"
    );
    assert!(out.contains("group edge: MASTER"), "{out}");

    let (code, out, _) = vrrpctl(&["--socket", s, "status", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, status_reply());
    daemon.stop();
}

#[test]
fn the_socket_can_come_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml.example");
    let text = std::fs::read_to_string(example).unwrap().replacen(
        "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
        &format!("vrrpd_socket = {path:?}"),
        1,
    );
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    let (code, out, err) = vrrpctl(&["--config", config.to_str().unwrap(), "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("public"));
    daemon.stop();
}

/// A file in the middle of an edit (valid TOML, invalid configuration) still names
/// the socket: status needs nothing else from it.
#[test]
fn the_socket_comes_from_a_file_being_edited() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster.toml.example");
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replacen(
            "vrrpd_socket = \"/run/lbsuite/vrrpd.sock\"",
            &format!("vrrpd_socket = {path:?}"),
            1,
        )
        .replacen("vrid = 51", "vrid = 0", 1);
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    let (code, _, err) = vrrpctl(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "the file is invalid: {err}");
    let (code, out, err) = vrrpctl(&["--config", config.to_str().unwrap(), "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("public"), "{out}");
    daemon.stop();
}

/// `services` is lbd's; vrrpd's socket answers status without a dataplane, and an
/// empty table would say "no services".
#[test]
fn services_on_vrrpds_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let (code, out, err) = vrrpctl(&["--socket", path.to_str().unwrap(), "services"]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("is not lbd's socket"), "{err}");
    daemon.stop();
}

#[test]
fn commands_send_their_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let s = path.to_str().unwrap();
    let (code, out, err) = vrrpctl(&["--socket", s, "maintenance", "on", "--group", "edge"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "edge: maintenance on, now MAINTENANCE\n");
    let (code, _, err) = vrrpctl(&[
        "--socket",
        s,
        "priority",
        "set",
        "--instance",
        "public",
        "90",
    ]);
    assert_eq!(code, 0, "{err}");
    // Applied but not saved: said on stderr.
    assert!(
        err.starts_with("vrrpctl: warning: cannot write the state file"),
        "{err}"
    );
    let (code, out, err) = vrrpctl(&["--socket", s, "priority", "clear", "--all"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "no override to clear\n");
    let (code, _, err) = vrrpctl(&["--socket", s, "priority", "clear"]);
    assert_eq!(code, 2, "needs --instance, --group or --all: {err}");
    let (code, _, err) = vrrpctl(&["--socket", s, "priority", "set", "90"]);
    assert_eq!(code, 2, "needs --instance or --group: {err}");
    let (code, _, err) = vrrpctl(&["--socket", s, "priority", "set", "--group", "edge", "0"]);
    assert_eq!(code, 2, "priority 0 refused: {err}");
    let (code, _, err) = vrrpctl(&["--socket", s, "reload"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("reload refused") && err.contains("x.toml:1:1"),
        "{err}"
    );
    // Said once: the control error's message already holds the daemon's.
    assert_eq!(err.matches("x.toml:1:1").count(), 1, "{err}");
    assert_eq!(
        daemon.seen(),
        vec![
            (
                "maintenance".to_owned(),
                json!({"on": true, "group": "edge"})
            ),
            (
                "priority.set".to_owned(),
                json!({"instance": "public", "group": null, "priority": 90})
            ),
            ("priority.clear".to_owned(), json!({"all": true})),
            ("reload".to_owned(), Value::Null),
        ]
    );
    daemon.stop();
}

#[test]
fn a_missing_daemon_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let (code, _, err) = vrrpctl(&["--socket", path.to_str().unwrap(), "status"]);
    assert_eq!(code, 1);
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("is the daemon running?"), "{err}");
}

/// Lines of a child's stdout, through a channel so reads can time out.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`, publishing `nudge` meanwhile.
fn expect_line(rx: &mpsc::Receiver<String>, needle: &str, mut nudge: impl FnMut()) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        nudge();
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains(needle) {
                return line;
            }
        }
    }
    panic!("no line containing {needle:?}");
}

#[test]
fn watch_prints_transitions_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket(&dir);
    let daemon = Daemon::start(&path);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vrrpctl"))
        .args(["--socket", path.to_str().unwrap(), "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    expect_line(&rx, "group edge: MASTER", || {});
    let event = json!({"group": "edge", "instance": "public", "from": "BACKUP", "to": "MASTER", "reason": "MasterDown"});
    let line = expect_line(&rx, "edge public: BACKUP -> MASTER (MasterDown)", || {
        daemon.bus.publish("group.state", event.clone());
    });
    assert!(line.contains(':'), "{line}");

    // The daemon restarts: a new event stream. watch reconnects, says it
    // missed events and re-reads the status.
    daemon.stop();
    let daemon = Daemon::start(&path);
    expect_line(&rx, "missed events: re-reading status", || {});
    expect_line(&rx, "group edge: MASTER", || {});
    let event = json!({"group": "edge", "instance": null, "from": "MASTER", "to": "BACKUP", "reason": "HigherPriority"});
    expect_line(
        &rx,
        "edge (group): MASTER -> BACKUP (HigherPriority)",
        || {
            daemon.bus.publish("group.state", event.clone());
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    daemon.stop();
}
