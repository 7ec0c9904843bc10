//! What the shipped Grafana dashboard (dist/grafana/lbsuite-dashboard.json) and
//! Prometheus alert rules (dist/prometheus/lbsuite-alerts.yml) query: their
//! expressions and the metric names in them, for the tests that check them against
//! docs/metrics.md (integration/tests/alerts_dashboard.rs) and against what the
//! daemons really serve ([`assert_served`], called by the daemons' first-scrape
//! tests).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The alert rules, from the repository's root.
pub const RULES: &str = "dist/prometheus/lbsuite-alerts.yml";
/// The rules' unit tests (promtool), from the repository's root.
pub const RULE_TESTS: &str = "dist/prometheus/lbsuite-alerts.test.yml";
/// The dashboard, from the repository's root.
pub const DASHBOARD: &str = "dist/grafana/lbsuite-dashboard.json";

/// `rel`, a path from the repository's root.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// The text of `rel`, a file of the repository.
pub fn read(rel: &str) -> String {
    let path = repo_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The dashboard, parsed.
pub fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Metric names (not functions, keywords, labels, strings, durations or Grafana
/// variables) in a PromQL expression.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
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

/// The alert rules, by name: (the text of the rule, its expression).
pub fn alert_rules(yaml: &str) -> BTreeMap<String, (String, String)> {
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

/// Every panel, those inside (collapsed) rows included.
pub fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut all = Vec::new();
    for p in dash["panels"].as_array().into_iter().flatten() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

/// (panel title, expr) of every target.
pub fn dashboard_exprs(dash: &serde_json::Value) -> Vec<(String, String)> {
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

/// The metric names of `daemon` (`vrrpd` or `lbd`: its prefix `vrrp_` or `lbd_`,
/// and `process_`) that the dashboard's panels and the alert rules use.
pub fn used_names(daemon: &str) -> BTreeSet<String> {
    let prefix = if daemon == "vrrpd" { "vrrp_" } else { "lbd_" };
    let rules = alert_rules(&read(RULES));
    let dash = dashboard();
    let exprs = dashboard_exprs(&dash)
        .into_iter()
        .map(|(_, e)| e)
        .chain(rules.into_values().map(|(_, e)| e));
    exprs
        .flat_map(|e| metric_names(&e))
        .filter(|n| n.starts_with(prefix) || n.starts_with("process_"))
        .collect()
}

/// Asserts that `scrape` (what `daemon` serves) has a sample of every name of that
/// daemon the dashboard and the alert rules use (a histogram's `_bucket` by
/// itself); returns how many names were checked.
pub fn assert_served(scrape: &str, daemon: &str) -> usize {
    let used = used_names(daemon);
    let missing = crate::exposition::missing(scrape, &used);
    assert!(
        missing.is_empty(),
        "{daemon}: the dashboard or the alert rules use series the daemon does not serve: {missing:?}\n{scrape}"
    );
    used.len()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn both_daemons_have_names_in_the_dashboard_and_the_rules() {
        let vrrpd = used_names("vrrpd");
        let lbd = used_names("lbd");
        assert!(vrrpd.contains("vrrp_instance_state"), "{vrrpd:?}");
        assert!(lbd.contains("lbd_ip_forwarding_needed"), "{lbd:?}");
        assert!(!lbd.iter().any(|n| n.starts_with("vrrp_")), "{lbd:?}");
    }
}
