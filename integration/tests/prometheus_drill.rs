//! A real Prometheus (Debian's package, /usr/bin/prometheus) scrapes vrrpd and lbd on
//! both nodes of the lab built from cluster.toml.example, evaluates
//! dist/prometheus/lbsuite-alerts.yml, and is asked through its HTTP API during a
//! failover drill: lb1's vrrpd is stopped (lb2 takes over), the alerts about a missing
//! vrrpd fire and no "no master" / "two masters" alert does; vrrpd is started again
//! (lb1 preempts) and they clear. A second test runs the operator's drill instead,
//! `vrrpctl drill failover` on lb1: both nodes' takeovers are counted in Prometheus,
//! lb2's is timed, lb1 is MASTER again, and no alert stays firing (a takeover that
//! missed lbd's prepare budget on a loaded machine excepted: its alert is right to
//! fire for its 15-minute window). The two tests take turns (one lab at a time).
//!
//! Prometheus runs in the lab's client namespace, listening on its loopback; the
//! daemons' metrics listeners are moved from loopback to their node's address (the
//! example's `[metrics]` keys edited in each node's copy) so that it reaches them.
//! Scrapes and rule evaluations run every second, and the rules are a copy of the real
//! file with every `for:` divided by 12 (1m becomes 5s, 30s becomes 3s, 10m 50s):
//! the same expressions, in seconds instead of minutes.
//!
//! Without prometheus (scripts/deps.sh installs it) the test prints SKIP, or fails
//! when LBSUITE_REQUIRE_ROOT=1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use integration::cluster_run::Cluster;
use integration::{Host, Process, REQUIRE_ROOT_ENV};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const RULES: &str = "dist/prometheus/lbsuite-alerts.yml";
/// Prometheus' API, on the client namespace's loopback.
const API: &str = "127.0.0.1:9090";
/// The nodes' lab addresses on the public segment (cluster.toml.example).
const NODES: [(&str, &str); 2] = [("lb1", "198.18.0.11"), ("lb2", "198.18.0.12")];
/// vrrpd's scrape targets of lb1 and lb2 (Prometheus' `instance` label).
const LB1_VRRPD: &str = "198.18.0.11:9612";
const LB2_VRRPD: &str = "198.18.0.12:9612";
/// Time scale of the rules' `for:` durations in this test.
const FOR_DIVISOR: u64 = 12;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// `for: 1m` -> `for: 5s`, and so on; other lines unchanged.
fn shortened_rules(text: &str) -> String {
    let seconds = |d: &str| -> Option<u64> {
        let (n, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit())?);
        let n: u64 = n.parse().ok()?;
        Some(match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => return None,
        })
    };
    text.lines()
        .map(|line| {
            let Some((indent, value)) = line.split_once("for: ") else {
                return line.to_owned();
            };
            match seconds(value.trim()) {
                Some(s) if indent.trim().is_empty() => {
                    format!("{indent}for: {}s", s.div_ceil(FOR_DIVISOR))
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Percent-encodes a PromQL query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` of Prometheus' API from the client namespace; the `data` of its answer.
fn api(client: &Host, path: &str) -> Option<Value> {
    let addr: SocketAddr = API.parse().ok()?;
    let mut stream = client.tcp_connect(addr, Duration::from_secs(2)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {API}\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    let value: Value = serde_json::from_str(body).ok()?;
    (value["status"] == "success").then(|| value["data"].clone())
}

/// The alerts Prometheus has active: (name, labels without severity) -> state.
fn alerts(client: &Host) -> BTreeMap<String, String> {
    let Some(data) = api(client, "/api/v1/alerts") else {
        return BTreeMap::new();
    };
    data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let labels = &a["labels"];
            let mut name = labels["alertname"].as_str().unwrap_or("?").to_owned();
            for key in ["job", "instance", "daemon", "vrrp_instance", "reason"] {
                if let Some(v) = labels[key].as_str() {
                    name.push_str(&format!(" {key}={v}"));
                }
            }
            (name, a["state"].as_str().unwrap_or("?").to_owned())
        })
        .collect()
}

/// The active alerts, each remembered in `seen` with its last state; panics if
/// `LbsuiteNoMaster` or `LbsuiteTwoMasters` fires: the drill moves the master, it
/// never leaves the cluster without one or with two.
fn watch(client: &Host, seen: &mut BTreeMap<String, String>) -> BTreeMap<String, String> {
    let now = alerts(client);
    for (name, state) in &now {
        let forbidden =
            name.starts_with("LbsuiteNoMaster") || name.starts_with("LbsuiteTwoMasters");
        assert!(!(forbidden && state == "firing"), "{name} fired: {now:?}");
        seen.insert(name.clone(), state.clone());
    }
    now
}

/// The result vector of an instant query: one (labels, value) per series.
fn query(client: &Host, promql: &str) -> Vec<(Value, String)> {
    api(client, &format!("/api/v1/query?query={}", encode(promql)))
        .and_then(|d| d["result"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            (
                r["metric"].clone(),
                r["value"][1].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn wait_for<T>(what: &str, patience: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = probe() {
            println!("{what}: after {:.1?}", start.elapsed());
            return t;
        }
        assert!(
            start.elapsed() < patience,
            "gave up after {patience:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One watched cluster at a time: two clusters and two Prometheus servers side by
/// side load a small machine until scrapes time out and prepares miss their budget.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The lab's cluster with a Prometheus scraping both daemons of both nodes.
struct Watched {
    // Dropped first: Prometheus stops before the cluster goes.
    _prometheus: Process,
    cluster: Cluster,
    _turn: MutexGuard<'static, ()>,
}

impl Watched {
    /// Starts the cluster and Prometheus; returns once Prometheus scrapes all four
    /// targets, sees lb1 as MASTER and has nothing firing. `None` (after printing
    /// SKIP) without root or without Prometheus.
    fn start(test: &str) -> Option<Watched> {
        if !integration::have_root(test) {
            return None;
        }
        if !Path::new(PROMETHEUS).exists() {
            if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
                panic!("{test}: {PROMETHEUS} is missing (Debian package prometheus) and {REQUIRE_ROOT_ENV}=1");
            }
            println!("SKIP (no prometheus; apt-get install prometheus): {test}");
            return None;
        }
        // A test that failed while holding it poisons it; the next may still run.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let cluster = Cluster::start(
            &repo_file("cluster.toml.example"),
            &repo_file("target/debug"),
            |node, text| {
                let address = NODES
                    .iter()
                    .find(|(n, _)| *n == node)
                    .map_or("", |(_, a)| a);
                text.replace("\"127.0.0.1:9612\"", &format!("\"{address}:9612\""))
                    .replace("\"127.0.0.1:9613\"", &format!("\"{address}:9613\""))
            },
        );
        let client = cluster.lab.host("client").unwrap();

        let dir = cluster.work().join("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let rules = std::fs::read_to_string(repo_file(RULES)).unwrap();
        let short = shortened_rules(&rules);
        assert!(
            short.contains("for: 5s") && !short.contains("for: 1m"),
            "{short}"
        );
        std::fs::write(dir.join("rules.yml"), short).unwrap();
        let targets = |port: u16| {
            NODES
                .iter()
                .map(|(_, a)| format!("\"{a}:{port}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n\
             \x20 - job_name: vrrpd\n    static_configs: [{{targets: [{vrrpd}]}}]\n\
             \x20 - job_name: lbd\n    static_configs: [{{targets: [{lbd}]}}]\n",
            rules = dir.join("rules.yml"),
            vrrpd = targets(9612),
            lbd = targets(9613),
        );
        std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
        let prometheus = client
            .spawn(
                PROMETHEUS,
                [
                    format!("--config.file={}", dir.join("prometheus.yml").display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={API}"),
                    "--log.level=warn".to_owned(),
                ],
            )
            .unwrap();

        // Every target scraped, lb1 MASTER as Prometheus sees it, nothing firing.
        wait_for("all 4 targets up", Duration::from_secs(40), || {
            let up = query(client, "up == 1");
            (up.len() == 4).then_some(())
        });
        wait_lb1_master(client);
        let before = alerts(client);
        let firing_before: Vec<_> = before.iter().filter(|(_, s)| *s == "firing").collect();
        assert!(
            firing_before.is_empty(),
            "firing before the drill: {firing_before:?}"
        );
        Some(Watched {
            _prometheus: prometheus,
            cluster,
            _turn: turn,
        })
    }

    /// The client namespace, where Prometheus runs.
    fn client(&self) -> &Host {
        self.cluster.lab.host("client").unwrap()
    }
}

/// The nodes whose vrrpd reports an instance MASTER, as Prometheus last saw them.
fn master_of(client: &Host) -> BTreeSet<String> {
    query(client, "vrrp_instance_state{state=\"master\"} == 1")
        .into_iter()
        .filter_map(|(m, _)| m["instance"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until Prometheus sees lb1, and only lb1, as MASTER.
fn wait_lb1_master(client: &Host) {
    wait_for("lb1 MASTER in Prometheus", Duration::from_secs(10), || {
        (master_of(client) == BTreeSet::from([LB1_VRRPD.to_owned()])).then_some(())
    });
}

/// `vrrp_become_master_total` by (node, VRRP instance), as Prometheus last saw it.
fn become_master(client: &Host) -> BTreeMap<(String, String), f64> {
    query(client, "vrrp_become_master_total")
        .into_iter()
        .filter_map(|(m, v)| {
            let key = (
                m["instance"].as_str()?.to_owned(),
                m["vrrp_instance"].as_str()?.to_owned(),
            );
            Some((key, v.parse().ok()?))
        })
        .collect()
}

/// `vrrp_prepare_misses_total` as the alert names it: `instance=… reason=…` -> count.
fn prepare_misses(client: &Host) -> BTreeMap<String, f64> {
    query(
        client,
        "sum by (instance, reason) (vrrp_prepare_misses_total)",
    )
    .into_iter()
    .filter_map(|(m, v)| {
        let key = format!(
            "instance={} reason={}",
            m["instance"].as_str()?,
            m["reason"].as_str()?
        );
        Some((key, v.parse().ok()?))
    })
    .collect()
}

#[test]
fn prometheus_sees_a_failover_drill_fire_and_clear_the_alerts() {
    let Some(watched) =
        Watched::start("prometheus_sees_a_failover_drill_fire_and_clear_the_alerts")
    else {
        return;
    };
    let (cluster, client) = (&watched.cluster, watched.client());

    // The drill: lb1's vrrpd stops (priority-0 adverts, lb2 takes over).
    let stopped = Instant::now();
    cluster.stop("lb1", "vrrpd");
    let expected = [
        "LbsuiteTargetDown job=vrrpd instance=198.18.0.11:9612",
        "LbsuiteNodeMissing daemon=vrrpd",
        "LbsuiteLbdLostVrrpd job=lbd instance=198.18.0.11:9613",
    ];
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    wait_for(
        "the expected alerts firing",
        Duration::from_secs(40),
        || {
            let now = watch(client, &mut seen);
            expected
                .iter()
                .all(|e| now.get(*e).is_some_and(|s| s == "firing"))
                .then_some(())
        },
    );
    println!(
        "firing {:.1?} after vrrpd stopped on lb1",
        stopped.elapsed()
    );
    assert_eq!(
        master_of(client),
        BTreeSet::from([LB2_VRRPD.to_owned()]),
        "lb2 is MASTER as Prometheus sees it"
    );
    assert_eq!(cluster.group_state("lb2"), "MASTER");

    // vrrpd back on lb1: it preempts, and the alerts clear.
    let restarted = Instant::now();
    cluster.restart("lb1", "vrrpd");
    wait_for(
        "the drill's alerts cleared",
        Duration::from_secs(40),
        || {
            let now = watch(client, &mut seen);
            expected.iter().all(|e| !now.contains_key(*e)).then_some(())
        },
    );
    println!(
        "cleared {:.1?} after vrrpd restarted on lb1",
        restarted.elapsed()
    );
    wait_lb1_master(client);
    println!("alerts seen during the drill (last state): {seen:#?}");
}

/// `vrrpctl drill failover` on lb1 (the operator's drill: lb1 releases the group, lb2
/// takes over, lb1 preempts back): Prometheus sees each node's takeovers counted and
/// lb2's takeover timed, lb1 MASTER again, and no alert left firing.
#[test]
fn prometheus_sees_a_vrrpctl_failover_drill_go_and_return() {
    let Some(watched) = Watched::start("prometheus_sees_a_vrrpctl_failover_drill_go_and_return")
    else {
        return;
    };
    let (cluster, client) = (&watched.cluster, watched.client());
    let before = become_master(client);
    let misses_before = prepare_misses(client);
    assert!(
        before.keys().any(|(node, _)| node == LB2_VRRPD),
        "lb2's takeover counters are scraped: {before:?}"
    );

    // The drill runs in lb1 while Prometheus is watched.
    let vrrpctl = cluster.bin_dir().join("vrrpctl");
    let socket = cluster.files("lb1").vrrpd_socket.clone();
    let mut drill = cluster
        .lab
        .host("lb1")
        .unwrap()
        .spawn(
            &vrrpctl,
            [
                "--socket".as_ref(),
                socket.as_os_str(),
                "drill".as_ref(),
                "failover".as_ref(),
            ],
        )
        .unwrap();
    let started = Instant::now();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let exit = wait_for("vrrpctl drill failover", Duration::from_secs(60), || {
        watch(client, &mut seen);
        drill.try_wait().unwrap()
    });
    let out = drill.stdout();
    println!("vrrpctl drill failover ({exit}):\n{out}{}", drill.stderr());
    assert!(exit.success(), "{exit}: {}", drill.stderr());
    assert!(
        out.contains("peer 198.18.0.12") && out.contains("preempted back to MASTER"),
        "lb2 took over and lb1 came back (the example preempts): {out}"
    );

    // Each instance: one takeover more on lb2 and one on lb1 (coming back), seen
    // in Prometheus whatever the scrapes caught of the short hand-over.
    let after = wait_for(
        "both nodes' takeovers counted in Prometheus",
        Duration::from_secs(20),
        || {
            let now = become_master(client);
            let moved = before
                .iter()
                .all(|(key, was)| now.get(key) == Some(&(was + 1.0)));
            moved.then_some(now)
        },
    );
    println!("vrrp_become_master_total before {before:?}, after {after:?}");
    let lb2_takeover = query(
        client,
        &format!(
            "vrrp_takeover_last_phase_seconds{{instance=\"{LB2_VRRPD}\",phase=\"vips_added\"}} > 0"
        ),
    );
    println!("lb2's takeover, VIPs added after: {lb2_takeover:?}");
    assert!(!lb2_takeover.is_empty(), "lb2's takeover is timed");
    wait_lb1_master(client);
    // A takeover that went on without lbd's prepare (a loaded machine: lbd answered
    // after control.prepare_budget_ms) is counted, and its alert rightly fires for
    // the 15 minutes of its window: the one alert allowed to stay, and only for a
    // miss Prometheus counted.
    let missed: Vec<String> = prepare_misses(client)
        .into_iter()
        .filter(|(key, n)| misses_before.get(key).map_or(*n > 0.0, |was| n > was))
        .map(|(key, _)| format!("LbsuitePrepareBudgetMissed {key}"))
        .collect();
    if !missed.is_empty() {
        println!("takeovers without lbd's prepare during the drill: {missed:?}");
    }
    // Whatever else went pending or fired during the drill is over.
    let settled = Instant::now();
    loop {
        let now = watch(client, &mut seen);
        let firing: Vec<&String> = now
            .iter()
            .filter(|(n, s)| *s == "firing" && !missed.contains(n))
            .map(|(n, _)| n)
            .collect();
        if firing.is_empty() {
            break;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(40),
            "still firing 40 s after the drill: {firing:?}; seen: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "drill took {:.1?}; nothing (else) firing {:.1?} after it",
        settled.duration_since(started),
        settled.elapsed()
    );
    println!("alerts seen during the drill (last state): {seen:#?}");
}

#[test]
fn rules_are_shortened_by_the_divisor_only_in_for_lines() {
    let text = "      - alert: A\n        for: 1m\n        expr: x\n      - alert: B\n        for: 30s\n        for: 0s\n        # keep for: 1m in comments\n";
    let short = shortened_rules(text);
    assert_eq!(
        short,
        "      - alert: A\n        for: 5s\n        expr: x\n      - alert: B\n        for: 3s\n        for: 0s\n        # keep for: 1m in comments"
    );
}
