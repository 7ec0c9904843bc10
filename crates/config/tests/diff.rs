//! Reload diffs: only what changed shows up.

use std::path::PathBuf;

fn example_text() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml.example"),
    )
    .unwrap()
}

fn parse(text: &str) -> config::ClusterConfig {
    match config::parse(text, "cluster.toml") {
        Ok(c) => c,
        Err(e) => panic!("refused:\n{e}"),
    }
}

/// Replaces the `nth` (1-based) occurrence of `old`.
fn replace_nth(text: &str, old: &str, new: &str, nth: usize) -> String {
    let (idx, _) = text.match_indices(old).nth(nth - 1).unwrap();
    format!("{}{new}{}", &text[..idx], &text[idx + old.len()..])
}

#[test]
fn same_file_has_no_diff() {
    let a = parse(&example_text());
    let d = config::diff(&a, &a.clone());
    assert!(d.is_empty(), "{d}");
    assert_eq!(d.to_string(), "no changes\n");
}

#[test]
fn weight_change_shows_only_that_server() {
    let text = example_text();
    let old = parse(&text);
    // srv2 is the second server with "weight = 1".
    let new = parse(&replace_nth(&text, "weight = 1\n", "weight = 5\n", 2));
    let d = config::diff(&old, &new);
    assert!(!d.is_empty());
    assert!(
        d.instances.is_empty(),
        "unchanged instances are absent: {d}"
    );
    assert!(d.sync_groups.is_empty() && d.nodes.is_empty() && d.nat.is_empty());
    assert!(d.checks.is_empty() && !d.global_changed());
    assert!(d.services.added.is_empty() && d.services.removed.is_empty());
    assert_eq!(d.services.changed.len(), 1);
    let web = &d.services.changed[0];
    assert_eq!(web.name, "web");
    assert!(
        web.fields.is_empty(),
        "service-level settings unchanged: {:?}",
        web.fields
    );
    assert!(web.servers.added.is_empty() && web.servers.removed.is_empty());
    assert_eq!(
        web.servers.changed,
        vec![config::FieldChanges {
            name: "srv2".into(),
            fields: vec!["weight".into()]
        }]
    );
    assert_eq!(d.to_string(), "~ server web/srv2 (weight)\n");
}

#[test]
fn instance_priority_and_global_changes_are_named() {
    let text = example_text();
    let old = parse(&text);
    let changed = replace_nth(
        &text,
        "advert_interval_ms = 1000",
        "advert_interval_ms = 500",
        2,
    )
    .replace("priority = { edge = 100 }", "priority = { edge = 120 }")
    .replace(
        "lbd_listen = \"127.0.0.1:9613\"",
        "lbd_listen = \"127.0.0.1:9623\"",
    );
    let new = parse(&changed);
    let d = config::diff(&old, &new);
    assert_eq!(
        d.instances.changed,
        vec![config::FieldChanges {
            name: "server".into(),
            fields: vec!["advert_interval_ms".into()]
        }]
    );
    assert!(!d.instances.touches("public"));
    assert_eq!(d.nodes.changed.len(), 1);
    assert_eq!(d.nodes.changed[0].name, "lb2");
    assert_eq!(d.nodes.changed[0].fields, vec!["priority".to_string()]);
    assert!(d.metrics_changed);
    assert!(!d.control_changed && !d.dataplane_changed && !d.sync_changed);
    assert!(d.services.is_empty());
}

#[test]
fn added_and_removed_items_are_listed() {
    let text = example_text();
    let old = parse(&text);
    let extra = format!(
        "{text}\n[[service]]\nname = \"dns\"\nvip = \"198.18.0.100\"\nport = 53\nprotocol = \"udp\"\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.1.21\"\n"
    );
    let new = parse(&extra);
    let d = config::diff(&old, &new);
    assert_eq!(d.services.added, vec!["dns".to_string()]);
    assert!(d.services.changed.is_empty());
    let back = config::diff(&new, &old);
    assert_eq!(back.services.removed, vec!["dns".to_string()]);
    assert!(back.to_string().contains("- service dns"));
}

#[test]
fn server_added_to_a_service() {
    let text = example_text();
    let old = parse(&text);
    let new = parse(&text.replace(
        "# ---------------------------------------------------------------------------\n# Health checks",
        "[[service.server]]\nname = \"srv3\"\naddress = \"198.18.1.23\"\n\n# Health checks",
    ));
    let d = config::diff(&old, &new);
    assert_eq!(d.services.changed.len(), 1);
    assert_eq!(
        d.services.changed[0].servers.added,
        vec!["srv3".to_string()]
    );
    assert!(d.services.changed[0].servers.changed.is_empty());
}
