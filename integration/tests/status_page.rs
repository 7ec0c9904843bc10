//! The read-only status page each daemon serves on its metrics listener, loaded by a
//! real browser: Debian's Chromium, headless, inside a node's namespace of the lab
//! built from cluster.toml.example, with both daemons running on both nodes. The page
//! draws what its script fetched from /status.json; the test reads the DOM Chromium
//! dumps after the script ran (`--virtual-time-budget`) and checks its values against
//! `vrrpctl --json` on the same node, and that the script fetched and drew the status
//! more than once in that time without a reload (`data-polls`; within Chromium's fast
//! virtual time the answers may be one shared answer, so this shows the polling, and
//! crates/metrics/tests/status_page.rs that a later request gets a new answer). A
//! screenshot of each page is kept in target/artefacts/status-<daemon>.png.
//!
//! Chromium runs as root here (the lab needs root), and as root it starts only with
//! `--no-sandbox`: the browser loads nothing but the daemon's page on the node's
//! loopback, in a namespace that reaches nothing outside the lab.
//!
//! Without chromium (scripts/deps.sh installs it) the tests print SKIP, or fail when
//! LBSUITE_REQUIRE_ROOT=1.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use integration::cluster_run::Cluster;
use integration::REQUIRE_ROOT_ENV;
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Virtual time the page's script gets before the DOM is dumped: its first fetch and
/// a refresh or two (it polls every 2 s).
const SCRIPT_TIME_MS: u32 = 5000;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn have_chromium(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {CHROMIUM} is missing (Debian package chromium; scripts/deps.sh) and {REQUIRE_ROOT_ENV}=1");
    }
    println!("SKIP (no chromium; apt-get install chromium): {test}");
    false
}

/// What the page tests need beside the running cluster.
trait Browse {
    fn browse(&self, node: &str, url: &str, screenshot: &Path) -> String;
}

impl Browse for Cluster {
    /// Chromium, headless, in `node`'s namespace: the DOM of `url` after its script
    /// ran, and a screenshot of it at `screenshot`.
    fn browse(&self, node: &str, url: &str, screenshot: &Path) -> String {
        let host = self.lab.host(node).unwrap();
        let profile = self.work().join(format!("chromium-{node}"));
        let profile_arg = format!("--user-data-dir={}", profile.display());
        let budget = format!("--virtual-time-budget={SCRIPT_TIME_MS}");
        let home = format!("HOME={}", self.work().display());
        let common = [
            "env",
            home.as_str(),
            CHROMIUM,
            "--headless",
            // Root: Chromium refuses to start with its sandbox (see the module doc).
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            profile_arg.as_str(),
            budget.as_str(),
        ];
        let run = |extra: &[&str]| {
            let argv: Vec<&str> = common.iter().chain(extra).copied().collect();
            let out = host
                .exec_timeout(&argv, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("chromium on {node}: {e}"));
            assert!(
                out.status.success(),
                "chromium {extra:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // Chromium's virtual time does not always wait for the page's first fetch:
        // a DOM dumped before the script drew anything is dumped again.
        let mut dom = run(&["--dump-dom", url]);
        for _ in 0..3 {
            if polls(&dom).is_some() {
                break;
            }
            dom = run(&["--dump-dom", url]);
        }
        let shot = format!("--screenshot={}", screenshot.display());
        run(&["--window-size=1400,1000", shot.as_str(), url]);
        dom
    }
}

/// The example's cluster running, or None (after SKIP) without root or Chromium.
fn example_cluster(test: &str) -> Option<Cluster> {
    if !integration::have_root(test) || !have_chromium(test) {
        return None;
    }
    Some(Cluster::start(
        &repo_file("cluster.toml.example"),
        &repo_file("target/debug"),
        |_, text| text,
    ))
}

/// How many times the page's script fetched and drew the status (`data-polls`), if
/// it did.
fn polls(dom: &str) -> Option<usize> {
    let (_, rest) = dom.split_once("<p id=\"updated\" data-polls=\"")?;
    rest.split('"').next()?.parse().ok()
}

/// The script drew the status, and again without a reload (it polls every 2 s and had
/// 5 s of the page's time).
fn assert_refreshed(dom: &str) {
    let polls = polls(dom).unwrap_or_else(|| panic!("the script drew nothing:\n{dom}"));
    assert!(polls >= 2, "the page drew the status once only:\n{dom}");
    println!("the page fetched and drew the status {polls} times");
}

/// The screenshot's path: target/artefacts/status-<daemon>.png.
fn artefact(daemon: &str) -> PathBuf {
    let dir = repo_file("target/artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("status-{daemon}.png"));
    let _ = std::fs::remove_file(&path);
    path
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is no PNG",
        path.display()
    );
    assert!(
        bytes.len() > 10_000,
        "{}: only {} bytes",
        path.display(),
        bytes.len()
    );
    println!("screenshot {} ({} bytes)", path.display(), bytes.len());
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text of the cell `field` in the row whose `data-key` is `key`.
fn cell(dom: &str, key: &str, field: &str) -> Option<String> {
    let start = dom.find(&format!("data-key=\"{key}\""))?;
    let row = &dom[start..start + dom[start..].find("</tr>")?];
    field_text(row, field)
}

/// The text of the first element with `data-field="field"` in `html`.
fn field_text(html: &str, field: &str) -> Option<String> {
    let at = html.find(&format!("data-field=\"{field}\""))?;
    let open_end = at + html[at..].find('>')? + 1;
    let close = open_end + html[open_end..].find('<')?;
    Some(unescape(&html[open_end..close]))
}

/// The part of the DOM in `<section id="id">`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section {id} in the DOM:\n{dom}"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

fn rows(dom: &str, prefix: &str) -> usize {
    dom.matches(&format!("data-key=\"{prefix}")).count()
}

/// How the page writes a JSON value (the script's `show`).
fn shown(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(shown).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[test]
fn vrrpd_status_page_in_chromium_matches_vrrpctl_json() {
    let Some(cluster) = example_cluster("vrrpd_status_page_in_chromium_matches_vrrpctl_json")
    else {
        return;
    };
    let shot = artefact("vrrpd");
    for node in ["lb1", "lb2"] {
        let path = if node == "lb1" {
            shot.clone()
        } else {
            cluster.work().join("lb2-vrrpd.png")
        };
        let dom = cluster.browse(node, "http://127.0.0.1:9612/status", &path);
        let status = cluster.ctl_json(node, "vrrpd", &["status"]);
        assert_refreshed(&dom);
        assert_eq!(
            field_text(section(&dom, "node"), "node").as_deref(),
            status["node"].as_str()
        );
        let groups = status["groups"].as_array().unwrap();
        let instances = status["instances"].as_array().unwrap();
        assert!(!groups.is_empty() && !instances.is_empty());
        assert_eq!(rows(&dom, "group:"), groups.len(), "{dom}");
        assert_eq!(rows(&dom, "instance:"), instances.len(), "{dom}");
        for g in groups {
            let key = format!("group:{}", g["name"].as_str().unwrap());
            for field in ["state", "priority", "members", "vips"] {
                assert_eq!(
                    cell(&dom, &key, field),
                    Some(shown(&g[field])),
                    "{node} {key} {field}"
                );
            }
        }
        for i in instances {
            let key = format!("instance:{}", i["name"].as_str().unwrap());
            for field in [
                "group",
                "interface",
                "vrid",
                "state",
                "priority",
                "effective_priority",
                "vips",
            ] {
                assert_eq!(
                    cell(&dom, &key, field),
                    Some(shown(&i[field])),
                    "{node} {key} {field}"
                );
            }
        }
        let expected = if node == "lb1" { "MASTER" } else { "BACKUP" };
        assert_eq!(
            cell(
                &dom,
                &format!("group:{}", groups[0]["name"].as_str().unwrap()),
                "state"
            )
            .as_deref(),
            Some(expected)
        );
        println!(
            "{node}: vrrpd page shows {} groups and {} instances as vrrpctl does",
            groups.len(),
            instances.len()
        );
    }
    assert_png(&shot);
}

#[test]
fn lbd_status_page_in_chromium_matches_vrrpctl_json() {
    let Some(cluster) = example_cluster("lbd_status_page_in_chromium_matches_vrrpctl_json") else {
        return;
    };
    let config = config::load(&repo_file("cluster.toml.example")).unwrap();
    let service = &config.services[0];
    let vip = std::net::SocketAddr::new(service.vip, service.ports.start);
    cluster.wait_until("every server up on lb1", |c| {
        let status = c.ctl_json("lb1", "lbd", &["services"]);
        status["services"][0]["servers"]
            .as_array()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["health"] == "up"))
    });
    // Connections through the VIP leave source-NATed entries in lb1's table: port use.
    let client = cluster.lab.host("client").unwrap();
    for _ in 0..4 {
        let mut stream = client.tcp_connect(vip, Duration::from_secs(3)).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    }
    let shot = artefact("lbd");
    let dom = cluster.browse("lb1", "http://127.0.0.1:9613/status", &shot);
    let status = cluster.ctl_json("lb1", "lbd", &["services"]);
    assert_refreshed(&dom);
    let node = section(&dom, "node");
    assert_eq!(field_text(node, "node").as_deref(), status["node"].as_str());
    assert_eq!(
        field_text(node, "vrrpd_connected"),
        Some(shown(&status["vrrpd"]["connected"]))
    );
    // The lab's nodes forward: the IPv4 NAT service's family shows on.
    assert_eq!(
        status["forwarding"][0]["enabled"], true,
        "{}",
        status["forwarding"]
    );
    assert_eq!(field_text(node, "forwarding").as_deref(), Some("ipv4 on"));
    let services = status["services"].as_array().unwrap();
    assert_eq!(rows(&dom, "service:"), services.len(), "{dom}");
    let mut servers = 0;
    for s in services {
        let name = s["name"].as_str().unwrap();
        for field in ["vip", "ports", "protocol", "serving"] {
            assert_eq!(
                cell(&dom, &format!("service:{name}"), field),
                Some(shown(&s[field])),
                "service {name} {field}"
            );
        }
        for r in s["servers"].as_array().unwrap() {
            servers += 1;
            let key = format!("server:{name}/{}", r["name"].as_str().unwrap());
            for field in ["health", "state", "weight", "effective_weight"] {
                assert_eq!(
                    cell(&dom, &key, field),
                    Some(shown(&r[field])),
                    "{key} {field}"
                );
            }
        }
    }
    assert!(servers > 0);
    assert_eq!(rows(&dom, "server:"), servers, "{dom}");
    let mut addresses = 0;
    for rule in status["snat"].as_array().unwrap() {
        for a in rule["source"].as_array().unwrap() {
            addresses += 1;
            let key = format!(
                "snat:{}/{}",
                rule["name"].as_str().unwrap(),
                a["address"].as_str().unwrap()
            );
            assert_eq!(
                cell(&dom, &key, "destination"),
                Some(shown(&rule["destination"]))
            );
            // The port use is the page's own (read from conntrack off the loop):
            // the connections just made hold at least one port.
            let in_use: u64 = cell(&dom, &key, "ports_in_use")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key}: no port use on the page:\n{dom}"));
            let available: u64 = cell(&dom, &key, "ports_available")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{key}: no ports available on the page"));
            assert!(
                in_use >= 1 && in_use <= available,
                "{key}: {in_use}/{available}"
            );
            println!("{key}: {in_use} of {available} ports in use");
        }
    }
    assert!(addresses > 0, "the example has a SNAT rule");
    assert_eq!(rows(&dom, "snat:"), addresses);
    let sync = section(&dom, "sync");
    for field in ["enabled", "mode", "connected"] {
        assert_eq!(
            field_text(sync, field),
            Some(shown(&status["sync"][field])),
            "sync {field}"
        );
    }
    println!(
        "lb1: lbd page shows {} services, {servers} servers, {addresses} SNAT addresses as vrrpctl does",
        services.len()
    );
    assert_png(&shot);
}
