//! The Prometheus alert rules (dist/prometheus/lbsuite-alerts.yml) and the Grafana
//! dashboard (dist/grafana/lbsuite-dashboard.json) stay valid and in step with the
//! daemons' series: promtool checks the rules and runs their unit tests
//! (lbsuite-alerts.test.yml), checks every dashboard query as PromQL, and every metric
//! name an alert or a panel uses is one docs/metrics.md documents.
//!
//! Without promtool (Debian's `prometheus` package; scripts/deps.sh installs it) the
//! promtool tests print SKIP, or fail when LBSUITE_REQUIRE_ROOT=1 (as in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use integration::exposition::{doc_text, documented};
use integration::REQUIRE_ROOT_ENV;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    let path = repo_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const RULES: &str = "dist/prometheus/lbsuite-alerts.yml";
const RULE_TESTS: &str = "dist/prometheus/lbsuite-alerts.test.yml";
const DASHBOARD: &str = "dist/grafana/lbsuite-dashboard.json";

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

/// Metric names (not functions, keywords, labels, strings, durations or Grafana
/// variables) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Drop strings, label matchers and ranges: what remains names series,
    // functions, keywords, grouping lists and numbers.
    let mut bare = String::new();
    let (mut quote, mut escaped, mut depth) = (None::<char>, false, 0usize);
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => bare.push(c),
            _ => {}
        }
        if matches!(c, '{' | '}' | '[' | ']' | '"' | '\'' | '`') {
            bare.push(' ');
        }
    }
    // Aggregations may put `by (...)` between their name and their parenthesis.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$';
    let mut names = BTreeSet::new();
    let mut rest = bare.as_str();
    while let Some(start) = rest.find(word) {
        let tail = &rest[start..];
        let len = tail.find(|c| !word(c)).unwrap_or(tail.len());
        let token = &tail[..len];
        let after = tail[len..].trim_start();
        rest = &tail[len..];
        if LISTS.contains(&token) {
            // Skip the label list in parentheses, if any.
            if let Some(list) = after.strip_prefix('(') {
                rest = list.split_once(')').map_or("", |(_, r)| r);
            }
            continue;
        }
        let is_name = token.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if is_name && !after.starts_with('(') && !KEYWORDS.contains(&token.to_lowercase().as_str())
        {
            names.insert(token.to_owned());
        }
    }
    names
}

#[test]
fn metric_names_skip_labels_functions_strings_and_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, group) (rate(vrrp_takeover_phase_seconds_bucket{cluster="$cluster",phase=~"a|b}"}[$__rate_interval])))
        / on (group) group_left lbd_x offset 5m > bool 1 or label_replace(up == 0, "daemon", "lbd_not_a_name", "", "")
        unless count without (instance) (process_open_fds) and sum(lbd_y) by (service)"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "lbd_x",
            "lbd_y",
            "process_open_fds",
            "up",
            "vrrp_takeover_phase_seconds_bucket"
        ]
    );
}

/// The alert rules, by name: (the text of the rule, its expression).
fn alert_rules(yaml: &str) -> BTreeMap<String, (String, String)> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let lines: Vec<&str> = yaml.lines().collect();
    let mut rules = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.trim_start().strip_prefix("- alert:") else {
            continue;
        };
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .copied()
            .take_while(|l| {
                l.trim().is_empty()
                    || l.trim_start().starts_with('#')
                    || !(l.trim_start().starts_with("- ") && indent(l) <= indent(line))
            })
            .collect();
        let mut expr = String::new();
        for (j, l) in body.iter().enumerate() {
            let Some(value) = l.trim_start().strip_prefix("expr:") else {
                continue;
            };
            let value = value.trim();
            expr = if matches!(value, "|" | ">" | "|-" | ">-") {
                body[j + 1..]
                    .iter()
                    .take_while(|m| m.trim().is_empty() || indent(m) > indent(l))
                    .map(|m| m.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                value.to_owned()
            };
        }
        rules.insert(name.trim().to_owned(), (body.join("\n"), expr));
    }
    rules
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, those inside (collapsed) rows included.
fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

/// (panel title, expr) of every target.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap_or("").to_owned()))
        })
        .collect()
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
