//! What is accepted with a warning, the file's fingerprint, and the host check both
//! daemons and `vrrpctl check-config --node` share.

const BASE: &str = include_str!("invalid/nat_destination_not_vip.toml");

/// The base file made valid, with `edits` applied.
fn text(edits: &[(&str, &str)]) -> String {
    let mut t = BASE
        .lines()
        .filter(|l| !l.starts_with("# expect"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(
            "destination = \"198.18.0.200\"",
            "destination = \"198.18.0.100\"",
        );
    for (from, to) in edits {
        assert!(t.contains(from), "{from}");
        t = t.replace(from, to);
    }
    t
}

#[test]
fn a_vip_outside_the_links_subnets_is_accepted_with_a_warning() {
    let clean = config::parse(&text(&[]), "t.toml").unwrap();
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
    let routed = config::parse(
        &text(&[
            (
                "vips = [\"198.18.1.100/24\"]",
                "vips = [\"198.18.5.100/32\"]",
            ),
            (
                "snat = { address = \"198.18.1.100\" }",
                "snat = { address = \"198.18.5.100\" }",
            ),
        ]),
        "t.toml",
    )
    .unwrap();
    assert_eq!(routed.warnings.len(), 1, "{:?}", routed.warnings);
    let w = &routed.warnings[0];
    assert!(
        w.message.contains("VIP 198.18.5.100 is outside node"),
        "{w}"
    );
    assert!(w.line > 0 && w.key.contains("vips[0]"), "{w}");
}

#[test]
fn a_scheduler_only_ipvs_has_under_auto_is_accepted_with_a_warning() {
    let sed = config::parse(
        &text(&[("[[service]]\n", "[[service]]\nscheduler = \"sed\"\n")]),
        "t.toml",
    )
    .unwrap();
    assert_eq!(sed.warnings.len(), 1, "{:?}", sed.warnings);
    let w = &sed.warnings[0];
    assert!(
        w.message
            .contains("scheduler sed is only on the ipvs backend")
            && w.key.contains("scheduler"),
        "{w}"
    );
    // Said outright, nothing to warn about.
    let ipvs = config::parse(
        &text(&[
            ("[[service]]\n", "[[service]]\nscheduler = \"sed\"\n"),
            ("[cluster]", "[dataplane]\nbackend = \"ipvs\"\n\n[cluster]"),
        ]),
        "t.toml",
    )
    .unwrap();
    assert!(ipvs.warnings.is_empty(), "{:?}", ipvs.warnings);
}

#[test]
fn the_fingerprint_follows_the_bytes_of_the_file() {
    let a = config::parse(&text(&[]), "t.toml").unwrap();
    let b = config::parse(&text(&[]), "other-name.toml").unwrap();
    let c = config::parse(&text(&[("port = 80", "port = 81")]), "t.toml").unwrap();
    assert_eq!(a.fingerprint.len(), 16);
    assert!(a.fingerprint.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
    let view = a.node_view(Some("lb1")).unwrap();
    assert_eq!(view.fingerprint, a.fingerprint);
}

#[test]
fn interfaces_missing_on_this_host_are_named_with_their_users() {
    let cluster = config::parse(&text(&[]), "t.toml").unwrap();
    let mut view = cluster.node_view(Some("lb1")).unwrap();
    // This namespace has `lo` and no interface of this name.
    for g in &mut view.groups {
        for i in &mut g.instances {
            i.config.interface = if i.config.name == "public" {
                "lo".to_owned()
            } else {
                "lbtnoexist9".to_owned()
            };
        }
    }
    for n in &mut view.nat {
        n.in_interface = Some("lo".to_owned());
        n.out_interface = Some("lbtnoexist9".to_owned());
    }
    let missing = config::host::missing_interfaces(&view, "t.toml");
    assert_eq!(missing.len(), 1, "{missing:?}");
    let m = &missing[0].message;
    assert!(
        m.contains("interface lbtnoexist9 does not exist on this host"),
        "{m}"
    );
    assert!(
        m.contains("instance `server`") && m.contains("nat rule `web-snat` (out)"),
        "{m}"
    );
    assert!(config::host::interface_exists("lo"));
}
