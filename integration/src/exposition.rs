//! Reading what `/metrics` serves, for tests and benchmarks: the metric names
//! docs/metrics.md promises per daemon and the check that a scrape has every one (a
//! documented series that goes missing fails the tests that call [`missing`]), and
//! the scrape without the `cluster` label every series carries, so that a series
//! can be matched by its own labels.

use std::collections::BTreeSet;

/// `text` (Prometheus text format) without the constant `cluster="..."` label.
pub fn without_cluster(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(start) = line.find("cluster=\"") else {
                return line.to_owned();
            };
            let Some(len) = line[start + 9..].find('"') else {
                return line.to_owned();
            };
            let end = start + 9 + len + 1;
            let (before, after) = (&line[..start], &line[end..]);
            match (
                before.strip_suffix(','),
                before.ends_with('{'),
                after.strip_prefix(','),
            ) {
                (Some(b), _, _) => format!("{b}{after}"),
                (None, true, Some(a)) => format!("{before}{a}"),
                // The only label: `name{cluster="x"} 1` becomes `name 1`.
                (None, true, None) => format!("{}{}", &before[..before.len() - 1], &after[1..]),
                _ => line.to_owned(),
            }
        })
        .map(|l| l + "\n")
        .collect()
}

/// docs/metrics.md of the repository.
pub fn doc_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/metrics.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every metric name in backquotes in the document's sections for `daemon`
/// (`vrrpd` or `lbd`): the top-level (`# `) sections whose title starts with the
/// daemon's name, and those that say "(both daemons)". Names are those with the
/// daemon's prefix (`vrrp_`, `lbd_`) or `process_`; labels in braces are dropped.
pub fn documented(doc: &str, daemon: &str) -> BTreeSet<String> {
    let prefix = match daemon {
        "vrrpd" => "vrrp_",
        _ => "lbd_",
    };
    let mut names = BTreeSet::new();
    // Label names in braces (`{vrrp_instance,group}`, `{state="master"}`) are not
    // metrics, whatever their prefix.
    let labels: BTreeSet<&str> = doc
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(inside, _)| inside))
        .flat_map(|inside| inside.split(','))
        .map(|l| l.split(['=', '!']).next().unwrap_or("").trim())
        .collect();
    let mut ours = false;
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            ours = title.starts_with(daemon) || title.contains("(both daemons)");
            continue;
        }
        if !ours {
            continue;
        }
        for quoted in line.split('`').skip(1).step_by(2) {
            let name: String = quoted
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rest = &quoted[name.len()..];
            // A name, possibly with labels or a comparison after it; not a prefix
            // like `vrrp_control_*`.
            if (name.starts_with(prefix) || name.starts_with("process_"))
                && !rest.starts_with('*')
                && !name.ends_with('_')
                && !labels.contains(name.as_str())
            {
                names.insert(name);
            }
        }
    }
    names
}

/// Asserts that `scrape` (as served) has every series docs/metrics.md names for
/// `daemon` and that each of the daemon's own series carries `cluster="<cluster>"`;
/// returns how many names were checked.
pub fn assert_documented_and_labelled(scrape: &str, daemon: &str, cluster: &str) -> usize {
    let documented = documented(&doc_text(), daemon);
    let missing = missing(scrape, &documented);
    assert!(
        missing.is_empty(),
        "{daemon}: documented in docs/metrics.md but not in the scrape: {missing:?}\n{scrape}"
    );
    let prefix = if daemon == "vrrpd" { "vrrp_" } else { "lbd_" };
    let label = format!("cluster=\"{cluster}\"");
    let unlabelled: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.contains(&label))
        .collect();
    assert!(unlabelled.is_empty(), "without {label}: {unlabelled:?}");
    documented.len()
}

/// The documented names of which `scrape` (Prometheus text) has no sample: for a
/// histogram its `_count` counts.
pub fn missing(scrape: &str, names: &BTreeSet<String>) -> Vec<String> {
    let present: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    names
        .iter()
        .filter(|n| {
            !present.contains(n.as_str()) && !present.contains(format!("{n}_count").as_str())
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# vrrpd metrics\n\
        | `vrrp_a{x}` | gauge |\n\
        labels: `vrrp_x` (the instance), used as `vrrp_b{vrrp_x=\"1\"}`\n\
        see `vrrp_control_*`, `vrrp_` and `vrrp_b == 1`, `keepalived_c`\n\
        # lbd\n\
        | `lbd_d` | histogram |\n\
        # The endpoint (both daemons)\n\
        `process_start_time_seconds`\n";

    #[test]
    fn names_come_from_the_daemon_sections() {
        let v: Vec<String> = documented(DOC, "vrrpd").into_iter().collect();
        assert_eq!(v, ["process_start_time_seconds", "vrrp_a", "vrrp_b"]);
        let l: Vec<String> = documented(DOC, "lbd").into_iter().collect();
        assert_eq!(l, ["lbd_d", "process_start_time_seconds"]);
    }

    #[test]
    fn histograms_count_by_their_count() {
        let names = documented(DOC, "lbd");
        let scrape = "# TYPE lbd_d histogram\nlbd_d_count 0\n";
        assert_eq!(missing(scrape, &names), ["process_start_time_seconds"]);
    }

    #[test]
    fn the_cluster_label_goes_and_the_others_stay() {
        let text = "# HELP a x\n\
            a{cluster=\"edge\"} 1\n\
            b{k=\"v\",cluster=\"edge\"} 2\n\
            c{cluster=\"edge\",k=\"v\"} 3\n\
            d 4\n";
        assert_eq!(
            without_cluster(text),
            "# HELP a x\na 1\nb{k=\"v\"} 2\nc{k=\"v\"} 3\nd 4\n"
        );
    }

    #[test]
    fn the_real_document_names_both_daemons_series() {
        let doc = doc_text();
        assert!(documented(&doc, "vrrpd").contains("vrrp_instance_state"));
        assert!(documented(&doc, "lbd").contains("lbd_backend_up"));
    }
}
