//! Active-active mode: every node's view of one file.

use std::net::IpAddr;
use std::path::PathBuf;

fn load() -> config::ClusterConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/valid/active_active.toml");
    match config::load(&path) {
        Ok(c) => c,
        Err(e) => panic!("refused:\n{e}"),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn each_node_translates_to_its_own_address_and_names_its_own_frr_instance() {
    let cfg = load();
    assert_eq!(cfg.cluster.mode, config::ClusterMode::ActiveActive);
    assert_eq!(cfg.node_names(), vec!["lb1", "lb2", "lb3"]);
    for (node, snat) in [
        ("lb1", "198.18.1.11"),
        ("lb2", "198.18.1.12"),
        ("lb3", "198.18.1.13"),
    ] {
        let view = cfg.node_view(Some(node)).unwrap();
        assert_eq!(view.mode, config::ClusterMode::ActiveActive);
        assert_eq!(view.members, vec!["lb1", "lb2", "lb3"]);
        assert!(view.groups.is_empty(), "no VRRP in active-active");
        assert_eq!(
            view.nat[0].snat,
            config::SnatTarget::Address(ip(snat)),
            "{node}"
        );
        let announce = view.announce.as_ref().unwrap();
        assert_eq!(announce.daemon, config::RoutingDaemon::Frr);
        assert_eq!(announce.asn, Some(65010));
        assert_eq!(announce.pathspace.as_deref(), Some(node));
        // Everything else is the same file on every node.
        assert_eq!(view.services, cfg.services);
    }
}

#[test]
fn the_default_mode_is_active_backup_without_announcements() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../cluster.toml.example");
    let cfg = config::load(&path).unwrap();
    assert_eq!(cfg.cluster.mode, config::ClusterMode::ActiveBackup);
    let view = cfg.node_view(Some("lb1")).unwrap();
    assert_eq!(view.announce, None);
    assert_eq!(view.mode, config::ClusterMode::ActiveBackup);
}
