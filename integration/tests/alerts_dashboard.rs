//! The Prometheus alert rules (dist/prometheus/lbsuite-alerts.yml) and the Grafana
//! dashboard (dist/grafana/lbsuite-dashboard.json) stay valid and in step with the
//! daemons' series: promtool checks the rules and runs their unit tests
//! (lbsuite-alerts.test.yml), checks every dashboard query as PromQL, and every metric
//! name an alert or a panel uses is one docs/metrics.md documents. That each of
//! these names is also served is checked by the daemons' first-scrape tests
//! (`integration::dashboard::assert_served`, in lbd/tests/systemd.rs and
//! vrrpd/tests/daemon_systemd.rs).
//!
//! Without promtool (Debian's `prometheus` package; scripts/deps.sh installs it) the
//! promtool tests print SKIP, or fail when LBSUITE_REQUIRE_ROOT=1 (as in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::process::{Command, Output};

use integration::dashboard::{
    alert_rules, dashboard, dashboard_exprs, metric_names, panels, read, repo_file, DASHBOARD,
    RULES, RULE_TESTS,
};
use integration::exposition::{doc_text, documented};
use integration::REQUIRE_ROOT_ENV;

/// Runs promtool with `args`; None (after printing SKIP) when it is not installed and
/// LBSUITE_REQUIRE_ROOT is not 1.
fn promtool(test: &str, args: &[&str]) -> Option<Output> {
    match Command::new("promtool").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if std::env::var(REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
                panic!("{test}: promtool is not installed (Debian package prometheus; scripts/deps.sh) and {REQUIRE_ROOT_ENV}=1");
            }
            println!("SKIP (no promtool; apt-get install prometheus): {test}");
            None
        }
        Err(e) => panic!("{test}: promtool: {e}"),
    }
}

fn assert_success(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    println!("{what}:\n{}", stdout.trim());
}

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let test = "promtool_checks_and_tests_the_alert_rules";
    let rules = repo_file(RULES);
    let rules = rules.to_str().expect("utf-8 path");
    let Some(out) = promtool(test, &["check", "rules", rules]) else {
        return;
    };
    assert_success("promtool check rules", &out);
    let tests = repo_file(RULE_TESTS);
    let out = promtool(
        test,
        &["test", "rules", tests.to_str().expect("utf-8 path")],
    )
    .expect("promtool ran a moment ago");
    assert_success("promtool test rules", &out);
}

/// Every query of the dashboard, with Grafana's variables replaced, as PromQL that
/// promtool parses (as recording rules).
#[test]
fn promtool_parses_every_dashboard_query() {
    let test = "promtool_parses_every_dashboard_query";
    let exprs = dashboard_exprs(&dashboard());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, expr)) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$cluster", "edge")
            .replace("$__rate_interval", "1m");
        let quoted = serde_json::to_string(&expr).expect("a string serializes");
        rules.push_str(&format!(
            "      # {title}\n      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, &rules).expect("write the rules");
    let Some(out) = promtool(
        test,
        &["check", "rules", path.to_str().expect("utf-8 path")],
    ) else {
        return;
    };
    assert_success(
        &format!("promtool check rules ({} dashboard queries)", exprs.len()),
        &out,
    );
}

/// The names an expression uses that docs/metrics.md does not document (a
/// histogram's `_bucket`, `_sum` and `_count` count as its own name; `up` is
/// Prometheus' own).
fn undocumented(expr: &str, documented: &BTreeSet<String>) -> Vec<String> {
    metric_names(expr)
        .into_iter()
        .filter(|n| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n);
            n != "up" && !documented.contains(n) && !documented.contains(base)
        })
        .collect()
}

fn documented_names() -> BTreeSet<String> {
    let doc = doc_text();
    let mut names = documented(&doc, "vrrpd");
    names.extend(documented(&doc, "lbd"));
    names
}

#[test]
fn alerts_and_panels_use_only_documented_series() {
    let documented = documented_names();
    let mut bad = Vec::new();
    let rules = alert_rules(&read(RULES));
    for (name, (_, expr)) in &rules {
        assert!(!expr.is_empty(), "alert {name} has no expr");
        for n in undocumented(expr, &documented) {
            bad.push(format!("alert {name}: {n}"));
        }
    }
    let exprs = dashboard_exprs(&dashboard());
    for (title, expr) in &exprs {
        for n in undocumented(expr, &documented) {
            bad.push(format!("panel {title:?}: {n}"));
        }
    }
    assert!(
        bad.is_empty(),
        "series not documented in docs/metrics.md: {bad:#?}"
    );
    println!(
        "{} alerts and {} panel queries use only documented series",
        rules.len(),
        exprs.len()
    );
}

#[test]
fn every_alert_has_for_severity_annotations_and_tests_both_ways() {
    let rules = alert_rules(&read(RULES));
    assert!(rules.len() >= 8, "alerts: {:?}", rules.keys());
    let tests = read(RULE_TESTS);
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    // alertname -> (a case that expects alerts, a case that expects none)
    let mut cases: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for w in lines.windows(2) {
        if let Some(name) = w[0].strip_prefix("alertname:") {
            let case = cases.entry(name.trim()).or_default();
            match w[1] {
                "exp_alerts: []" => case.1 = true,
                "exp_alerts:" => case.0 = true,
                _ => {}
            }
        }
    }
    for (name, (body, _)) in &rules {
        for key in ["for:", "severity:", "summary:", "description:"] {
            assert!(
                body.lines().any(|l| l.trim_start().starts_with(key)),
                "alert {name} has no {key}\n{body}"
            );
        }
        assert!(
            body.contains("severity: critical")
                || body.contains("severity: warning")
                || body.contains("severity: info"),
            "alert {name}: severity is critical, warning or info"
        );
        assert_eq!(
            cases.get(name.as_str()),
            Some(&(true, true)),
            "alert {name}: {RULE_TESTS} needs a case that fires it and one that must not"
        );
    }
}

#[test]
fn the_dashboard_is_well_formed() {
    let dash = dashboard();
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let vars = dash["templating"]["list"].as_array().expect("templating");
    let cluster = vars
        .iter()
        .find(|v| v["name"] == "cluster")
        .expect("a cluster variable");
    assert!(
        cluster["definition"]
            .as_str()
            .is_some_and(|d| d.starts_with("label_values(") && d.contains("cluster)")),
        "{cluster}"
    );
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in panels(&dash) {
        let id = p["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} twice");
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("every panel has a title");
        let targets = p["targets"].as_array().map_or(&[][..], |t| t.as_slice());
        assert!(!targets.is_empty(), "panel {title:?} has no target");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(
                expr.contains("cluster=\"$cluster\""),
                "panel {title:?}: {expr:?} does not select the cluster"
            );
            queries += 1;
        }
    }
    println!("{} panels, {queries} queries", ids.len());
}

/// The queries the rules' unit tests evaluate (`promql_expr_test`) are the
/// dashboard's own, so that what promtool checks is what Grafana shows.
#[test]
fn the_tested_dashboard_queries_are_the_dashboards() {
    let tests = read(RULE_TESTS);
    let tested: Vec<String> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- expr: '"))
        .filter_map(|e| e.strip_suffix('\''))
        .map(|e| e.replace("cluster=\"edge\"", "cluster=\"$cluster\""))
        .collect();
    assert!(tested.len() >= 2, "{RULE_TESTS}: no promql_expr_test");
    let exprs: BTreeSet<String> = dashboard_exprs(&dashboard())
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    for e in &tested {
        assert!(exprs.contains(e), "tested but not in {DASHBOARD}: {e}");
    }
}
