//! `[vrrpd]`: vrrpd's scheduling and memory settings, their defaults and limits.

use std::path::PathBuf;

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml.example");
    std::fs::read_to_string(path).unwrap()
}

/// The example with its `[vrrpd]` section replaced by `section` (empty: none).
fn with_vrrpd(section: &str) -> Result<config::ClusterConfig, config::ConfigError> {
    let text = example();
    let start = text.find("\n[vrrpd]\n").expect("the example has [vrrpd]");
    // Keep the comments above the table; drop the table to the end of the file.
    let text = format!("{}\n{section}", &text[..start]);
    config::parse(&text, "cluster.toml")
}

#[test]
fn the_example_runs_vrrpd_at_real_time_priority_20_with_locked_memory() {
    let cfg = with_vrrpd("[vrrpd]\nrealtime_priority = 20\nlock_memory = true\n").unwrap();
    assert_eq!(cfg.vrrpd.realtime_priority, 20);
    assert!(cfg.vrrpd.lock_memory);
    assert!(cfg.vrrpd.late_timer_grace);
    let view = cfg.node_view(Some("lb1")).unwrap();
    assert_eq!(view.vrrpd, cfg.vrrpd);
}

#[test]
fn without_the_section_the_defaults_apply() {
    let cfg = with_vrrpd("").unwrap();
    assert_eq!(
        cfg.vrrpd,
        config::VrrpdSettings {
            realtime_priority: config::DEFAULT_REALTIME_PRIORITY,
            lock_memory: true,
            late_timer_grace: true,
        }
    );
    assert_eq!(config::DEFAULT_REALTIME_PRIORITY, 20);
    // An empty table too.
    assert_eq!(with_vrrpd("[vrrpd]\n").unwrap().vrrpd, cfg.vrrpd);
}

#[test]
fn zero_means_normal_scheduling_and_every_priority_up_to_99_is_accepted() {
    for p in [0u8, 1, 50, 99] {
        let cfg = with_vrrpd(&format!(
            "[vrrpd]\nrealtime_priority = {p}\nlock_memory = false\n"
        ))
        .unwrap();
        assert_eq!(cfg.vrrpd.realtime_priority, p);
        assert!(!cfg.vrrpd.lock_memory);
    }
}

#[test]
fn out_of_range_and_mistyped_values_are_refused_with_the_key_and_a_fix() {
    for (section, key, words) in [
        (
            "[vrrpd]\nrealtime_priority = 100\n",
            "vrrpd.realtime_priority",
            "100",
        ),
        (
            "[vrrpd]\nrealtime_priority = -1\n",
            "vrrpd.realtime_priority",
            "-1",
        ),
        (
            "[vrrpd]\nrealtime_priority = \"high\"\n",
            "vrrpd.realtime_priority",
            "integer",
        ),
        ("[vrrpd]\nlock_memory = 1\n", "vrrpd.lock_memory", "boolean"),
        (
            "[vrrpd]\nlate_timer_grace = \"yes\"\n",
            "vrrpd.late_timer_grace",
            "boolean",
        ),
        (
            "[vrrpd]\nrt_priority = 20\n",
            "vrrpd.rt_priority",
            "rt_priority",
        ),
    ] {
        let err = with_vrrpd(section).unwrap_err();
        assert_eq!(err.diagnostics.len(), 1, "{section}: {err}");
        let d = &err.diagnostics[0];
        assert_eq!(d.key, key, "{section}: {err}");
        assert!(d.message.contains(words), "{section}: {err}");
        assert!(!d.fix.is_empty(), "{section}: {err}");
    }
}

#[test]
fn a_changed_section_shows_in_the_diff() {
    let old = with_vrrpd("[vrrpd]\nrealtime_priority = 20\n").unwrap();
    let new = with_vrrpd("[vrrpd]\nrealtime_priority = 0\n").unwrap();
    let d = config::diff(&old, &new);
    assert!(d.vrrpd_changed && d.global_changed());
    assert!(d.to_string().contains("~ [vrrpd]"), "{d}");
    assert!(!config::diff(&old, &old).vrrpd_changed);
}

#[test]
fn the_late_timer_grace_can_be_turned_off_and_reaches_the_node_view() {
    let cfg = with_vrrpd("[vrrpd]\nlate_timer_grace = false\n").unwrap();
    assert!(!cfg.vrrpd.late_timer_grace);
    assert_eq!(
        cfg.vrrpd.realtime_priority,
        config::DEFAULT_REALTIME_PRIORITY
    );
    assert!(!cfg.node_view(Some("lb2")).unwrap().vrrpd.late_timer_grace);
}
