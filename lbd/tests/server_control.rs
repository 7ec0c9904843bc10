//! Run-time control of one server (`vrrpctl server drain|disable|enable|weight|
//! list|clear`) on a real lbd in namespaces: what an operator relies on when
//! draining a server for maintenance (needs root).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;

use integration::Host;
use serde_json::{json, Value};
use support::*;

/// The echo of `msg` on a held connection.
fn echo(held: &mut BufReader<TcpStream>, msg: &str) -> String {
    held.get_mut()
        .write_all(format!("{msg}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    held.read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// Which server each of `n` new connections reached: (srv1, srv2).
fn spread(client: &Host, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        let (_, name) = connect_named(client);
        match name.as_str() {
            "srv1" => counts.0 += 1,
            "srv2" => counts.1 += 1,
            other => panic!("unexpected server {other:?}"),
        }
    }
    counts
}

fn vrrpctl(socket: &Path, args: &[&str]) -> Output {
    let out = std::process::Command::new(sibling_binary("vrrpctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    println!(
        "$ vrrpctl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn srv<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["services"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

/// The example without checks, scheduler wrr (weights decide the spread).
const EDITS: &[(&str, &str)] = &[NO_CHECKS, ("scheduler = \"rr\"", "scheduler = \"wrr\"")];

#[test]
fn drain_disable_weight_survive_restart_and_reload() {
    if !integration::have_root("drain_disable_weight_survive_restart_and_reload") {
        return;
    }
    let setup = Setup::two_arm();
    setup.add_vip("lb1", "eth0", VIP);
    setup.add_vip("lb1", "eth1", SNAT_VIP);
    named_echo_server(setup.host("srv1"), "198.18.1.21:80", "srv1");
    named_echo_server(setup.host("srv2"), "198.18.1.22:80", "srv2");
    setup.write_config("lb1", EDITS);
    let mut lbd = setup.start_lbd("lb1");
    setup.wait_applied("lb1");
    let socket = setup.lbd_socket("lb1");
    let client = setup.host("client");

    // Counters off: no packets or bytes on nft; both servers take connections.
    let status = setup.status("lb1");
    assert_eq!(srv(&status, "srv2")["packets"], Value::Null, "{status}");
    assert_eq!(srv(&status, "srv2")["state"], "up");
    let (a, b) = spread(client, 10);
    assert!(a > 0 && b > 0, "({a}, {b})");

    // A connection held on srv2 across the drain.
    let mut held = loop {
        let (c, name) = connect_named(client);
        if name == "srv2" {
            break c;
        }
    };
    assert_eq!(echo(&mut held, "before"), "before");

    let out = ok(&vrrpctl(&socket, &["server", "drain", "web/srv2"]));
    assert!(
        out.contains("web/srv2 on lb1: drain (was none); state drain, weight 0"),
        "{out}"
    );
    assert!(out.contains("this node's lbd only"), "{out}");
    assert_eq!(
        spread(client, 12),
        (12, 0),
        "no new connection to a drained server"
    );
    assert_eq!(
        echo(&mut held, "during"),
        "during",
        "established ones continue"
    );
    let status = setup.status("lb1");
    let s2 = srv(&status, "srv2");
    assert_eq!(s2["state"], "drain", "{s2}");
    assert_eq!(s2["override"], json!({"kind": "drain"}));
    assert_eq!(s2["effective_weight"], 0);
    // Counts are up to a second old (one dump answers every request for a second).
    wait_for(
        "srv2's active connections at 1: the held one",
        PATIENCE,
        || srv(&setup.status("lb1"), "srv2")["active_connections"] == 1,
    );
    let table = ok(&vrrpctl(&socket, &["services"]));
    let row = table.lines().find(|l| l.contains("srv2")).unwrap();
    assert!(row.contains("drain (override)"), "{row}");
    let metrics = scrape(setup.host("lb1"), "127.0.0.1:9613");
    let gauge = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("backend=\"srv2\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        gauge("lbd_backend_connections_active{"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(gauge("lbd_backend_weight{"), Some(0.0));
    assert!(table.contains("THIS NODE ONLY (web/srv2 drain)"), "{table}");

    // The state file: owner-only, beside the socket (no state_dir here).
    let state_file = socket.with_file_name("lb1-lbd.state");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // SIGKILL and a new lbd: still drained from its first apply on.
    lbd.signal(libc::SIGKILL).unwrap();
    lbd.wait_timeout(PATIENCE).unwrap();
    let mut lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    assert_eq!(srv(&status, "srv2")["state"], "drain", "after a restart");
    assert_eq!(spread(client, 8), (8, 0));
    assert_eq!(echo(&mut held, "after restart"), "after restart");

    // A reload keeps it.
    let reply = setup.reload("lb1").unwrap();
    assert_eq!(reply["overrides_dropped"], json!([]));
    assert_eq!(spread(client, 8), (8, 0), "after a reload");
    let out = ok(&vrrpctl(&socket, &["server", "list"]));
    assert!(out.contains("web/srv2: drain"), "{out}");

    // Drained to zero once the held connection is gone.
    drop(held);
    wait_for("srv2's active connections at 0", PATIENCE, || {
        srv(&setup.status("lb1"), "srv2")["active_connections"] == 0
    });

    // Enable: back to the configuration, srv2 takes connections again.
    let out = ok(&vrrpctl(&socket, &["server", "enable", "web/srv2"]));
    assert!(
        out.contains("no override (the configuration rules) (was drain)"),
        "{out}"
    );
    let (a, b) = spread(client, 10);
    assert!(a > 0 && b > 0, "({a}, {b})");

    // Weight 3 against srv1's 1: the slots split 1:3.
    ok(&vrrpctl(&socket, &["server", "weight", "web/srv2", "3"]));
    let (a, b) = spread(client, 40);
    println!("weight 1:3 -> srv1 {a}, srv2 {b}");
    assert!(b >= 25 && a >= 5, "({a}, {b})");
    assert_eq!(srv(&setup.status("lb1"), "srv2")["effective_weight"], 3);

    // Disable: as a failed check.
    ok(&vrrpctl(&socket, &["server", "disable", "web/srv1"]));
    assert_eq!(spread(client, 8), (0, 8));
    assert_eq!(srv(&setup.status("lb1"), "srv1")["state"], "disabled");

    // Bad names and weights: refused, exit status not 0, the names that exist said.
    let out = vrrpctl(&socket, &["server", "drain", "web/srv9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("its servers: srv1, srv2"),
        "{out:?}"
    );
    let out = vrrpctl(&socket, &["server", "drain", "api/srv1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("services: web"));
    assert!(
        !vrrpctl(&socket, &["server", "weight", "web/srv2", "65536"])
            .status
            .success()
    );
    assert!(!vrrpctl(&socket, &["server", "drain", "srv2"])
        .status
        .success());
    let params = request(
        &socket,
        "server.drain",
        json!({"service": "web", "server": "srv2", "force": true}),
    );
    assert!(params.unwrap_err().contains("force"));
    let metrics = scrape(setup.host("lb1"), "127.0.0.1:9613");
    assert_eq!(
        sample(&metrics, "lbd_server_commands_rejected_total"),
        Some(4.0),
        "two unknown names, a weight, unknown params (the SERVICE/SERVER typo never reached lbd)"
    );

    // List and clear.
    let out = ok(&vrrpctl(&socket, &["server", "list"]));
    assert!(
        out.contains("web/srv1: disable") && out.contains("web/srv2: weight 3"),
        "{out}"
    );
    let out = ok(&vrrpctl(&socket, &["server", "clear", "--all"]));
    assert!(out.contains("cleared web/srv1: disable"), "{out}");
    assert!(ok(&vrrpctl(&socket, &["server", "list"])).contains("no server override on lb1"));
    let (a, b) = spread(client, 10);
    assert!(a > 0 && b > 0, "({a}, {b})");

    // A reload that removes the server drops its override, and says so; with
    // `counters = true` packets and bytes are counted.
    ok(&vrrpctl(&socket, &["server", "drain", "web/srv2"]));
    let mut edits = EDITS.to_vec();
    edits.push((
        "inhibit_on_failure = true",
        "inhibit_on_failure = true\ncounters = true",
    ));
    edits.push(("name = \"srv2\"", "name = \"srv3\""));
    setup.write_config("lb1", &edits);
    let reply = setup.reload("lb1").unwrap();
    assert_eq!(
        reply["overrides_dropped"],
        json!(["web/srv2: drain"]),
        "{reply}"
    );
    let (a, b) = spread(client, 6);
    assert_eq!(a + b, 6);
    let status = setup.status("lb1");
    assert!(status["server_overrides"]["entries"]
        .as_array()
        .unwrap()
        .is_empty());
    let packets = srv(&status, "srv1")["packets"].as_u64();
    assert!(packets.unwrap_or(0) > 0, "counters = true: {status}");
    let table = ok(&vrrpctl(&socket, &["services"]));
    let row = table.lines().find(|l| l.contains("srv1")).unwrap();
    assert!(
        !row.trim_end().ends_with("-  -"),
        "PACKETS and BYTES shown: {row}"
    );

    // A corrupt state file: lbd starts without overrides, says why, keeps a copy.
    lbd.signal(libc::SIGKILL).unwrap();
    lbd.wait_timeout(PATIENCE).unwrap();
    std::fs::write(&state_file, b"{\"version\": 1, \"node\": ").unwrap();
    let _lbd = setup.start_lbd("lb1");
    let status = setup.wait_applied("lb1");
    let load_error = status["server_overrides"]["load_error"]
        .as_str()
        .unwrap_or("");
    assert!(
        load_error.contains("not a valid lbd state file"),
        "{status}"
    );
    assert!(state_file.with_file_name("lb1-lbd.state.bad").exists());
    let table = ok(&vrrpctl(&socket, &["services"]));
    assert!(table.contains("server state file UNUSABLE"), "{table}");
    let metrics = scrape(setup.host("lb1"), "127.0.0.1:9613");
    assert_eq!(
        sample(
            &metrics,
            "lbd_server_state_file_errors_total{operation=\"read\"}"
        ),
        Some(1.0)
    );
}
