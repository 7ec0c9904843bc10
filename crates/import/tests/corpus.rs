//! The corpus (written here from keepalived.conf(5) and ALOHA's LB Layer4
//! reference): every file imports to a cluster.toml the configuration crate
//! accepts, the report names the unmapped items with their lines, a pair of files
//! gives both nodes, and malformed files are errors that name file and line.

use std::path::{Path, PathBuf};

use import::{Format, ImportError, Imported, ItemKind, Options};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

fn import(format: Format, files: &[&str], options: &Options) -> Result<Imported, ImportError> {
    let files: Vec<PathBuf> = files.iter().map(|f| corpus(f)).collect();
    import::import(format, &files, options)
}

fn ok(format: Format, files: &[&str]) -> Imported {
    match import(format, files, &Options::default()) {
        Ok(i) => i,
        Err(e) => panic!("{files:?}: {e}"),
    }
}

/// The 1-based line of `rel` that contains `needle` (the first one).
fn line_of(rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(corpus(rel)).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {rel}"))
}

/// The report has an item of `kind` at `rel`:`line` whose `what` contains `what`.
fn has_item(i: &Imported, kind: ItemKind, rel: &str, line: usize, what: &str) -> bool {
    i.report.items.iter().any(|it| {
        it.kind == kind
            && it.what.contains(what)
            && it
                .at
                .as_ref()
                .is_some_and(|at| at.file.ends_with(rel) && at.line == line)
    })
}

fn assert_item(i: &Imported, kind: ItemKind, rel: &str, needle: &str, what: &str) {
    let line = line_of(rel, needle);
    assert!(
        has_item(i, kind, rel, line, what),
        "no {kind:?} item {what:?} at {rel}:{line}; report:\n{}",
        i.report
    );
}

/// Each (file, the text of its line, what the item names) is an unmapped item there.
fn assert_unmapped(i: &Imported, items: &[(&str, &str, &str)]) {
    for (rel, needle, what) in items {
        assert_item(i, ItemKind::Unmapped, rel, needle, what);
    }
}

fn parsed(i: &Imported) -> config::ClusterConfig {
    config::parse(&i.text, "imported").unwrap_or_else(|e| panic!("{e}\n{}", i.text))
}

#[test]
fn a_keepalived_pair_gives_both_nodes_from_their_own_files() {
    let i = ok(
        Format::Keepalived,
        &["keepalived/lb1.conf", "keepalived/lb2.conf"],
    );
    let c = parsed(&i);
    let lb1 = c.node("lb1").expect("lb1 from router_id");
    let lb2 = c.node("lb2").expect("lb2 from router_id");
    assert_eq!(lb1.priority.get("EDGE"), Some(&150));
    assert_eq!(lb2.priority.get("EDGE"), Some(&100));
    assert_eq!(lb1.addresses["eth0"][0].to_string(), "198.18.0.11/24");
    assert_eq!(lb2.addresses["eth1"][0].to_string(), "198.18.1.12/24");
    assert_eq!(lb1.unicast_peers["VI_PUBLIC"][0].to_string(), "198.18.0.12");
    assert_eq!(lb2.unicast_peers["VI_SERVER"][0].to_string(), "198.18.1.11");
    // Both files leave nothing to placeholders.
    assert!(!i.text.contains("PLACEHOLDER"), "{}", i.text);
    // The one real difference besides the per-node keys is reported.
    assert_item(
        &i,
        ItemKind::Differs,
        "keepalived/lb2.conf",
        "vrrp_instance VI_PUBLIC",
        "vrrp_instance VI_PUBLIC",
    );
    let public = c.instance("VI_PUBLIC").unwrap();
    assert_eq!(public.garp.refresh_s, 60, "the first file's value is kept");
}

#[test]
fn keepalived_keywords_map_onto_the_schema() {
    let i = ok(
        Format::Keepalived,
        &["keepalived/lb1.conf", "keepalived/lb2.conf"],
    );
    let c = parsed(&i);
    let group = &c.sync_groups[0];
    assert_eq!((group.name.as_str(), group.instances.len()), ("EDGE", 2));
    let public = c.instance("VI_PUBLIC").unwrap();
    assert_eq!(public.version.number(), 3, "vrrp_version 3 in global_defs");
    assert_eq!(public.vrid, 51);
    assert!(public.unicast);
    assert_eq!(public.preempt_delay_ms, 5000);
    assert_eq!(
        (
            public.garp.count,
            public.garp.repeat_after_s,
            public.garp.spacing_ms
        ),
        (3, 10, 10)
    );
    assert_eq!(public.vips[0].label.as_deref(), Some("eth0:web"));
    let tracks: Vec<(&str, i16)> = public
        .track_interfaces
        .iter()
        .map(|t| (t.name.as_str(), t.weight))
        .collect();
    assert_eq!(tracks, [("eth2", -30), ("eth3", 0)]);
    let server = c.instance("VI_SERVER").unwrap();
    assert_eq!(server.version.number(), 2);
    assert_eq!(server.auth_pass.as_deref(), Some("s3cret"));
    assert!(c.sync.enabled);
    assert_eq!(c.sync.interface.as_deref(), Some("eth1"));
    assert_eq!(c.sync.ipvs_sync_id, 7);
    assert_eq!(c.vrrpd.realtime_priority, 30);
    assert!(c.vrrpd.lock_memory);

    let web = c
        .services
        .iter()
        .find(|s| s.vip.to_string() == "198.18.0.100" && s.ports.start == 80)
        .unwrap();
    assert_eq!(web.scheduler.name(), "wrr");
    assert_eq!(web.mode.name(), "nat");
    let p = web.persistence.unwrap();
    assert_eq!((p.timeout_s, p.prefix_len), (300, 24));
    assert_eq!(web.sorry_server.unwrap().address.to_string(), "198.18.1.30");
    assert_eq!(web.quorum, Some(1));
    assert!(web.inhibit_on_failure);
    assert_eq!(web.servers.len(), 2);
    assert_eq!(web.servers[0].weight, 2);
    let check = c.check(web.servers[0].check.as_deref().unwrap()).unwrap();
    match &check.kind {
        config::CheckKind::Http(h) => {
            assert_eq!(h.path, "/health");
            assert_eq!(h.expect_status, [200]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (check.interval_ms, check.timeout_ms, check.fall),
        (5000, 2000, 3)
    );
    assert_eq!(
        web.servers[0].check, web.servers[1].check,
        "equal checks shared"
    );

    let tls = c.services.iter().find(|s| s.ports.start == 443).unwrap();
    assert_eq!(tls.scheduler.name(), "lc");
    assert!(
        !tls.inhibit_on_failure,
        "keepalived removes failed servers by default"
    );
    let kinds: Vec<String> = tls
        .servers
        .iter()
        .map(|s| format!("{:?}", c.check(s.check.as_deref().unwrap()).unwrap().kind))
        .collect();
    assert!(kinds[0].starts_with("Https"), "{kinds:?}");
    assert!(kinds[1].starts_with("Tcp"), "{kinds:?}");

    let dns = c.services.iter().find(|s| s.ports.start == 53).unwrap();
    assert_eq!(dns.protocol.name(), "udp");
    assert_eq!(dns.mode.name(), "dr");
    let dns_checks: Vec<&config::CheckKind> = dns
        .servers
        .iter()
        .map(|s| &c.check(s.check.as_deref().unwrap()).unwrap().kind)
        .collect();
    assert!(
        matches!(dns_checks[0], config::CheckKind::UdpDns { query_name } if query_name == "example.org")
    );
    assert!(
        matches!(dns_checks[1], config::CheckKind::Exec { argv } if argv[0] == "/usr/local/bin/check-dns")
    );
    let tun = c.services.iter().find(|s| s.ports.start == 8080).unwrap();
    assert_eq!(tun.mode.name(), "tunnel");
}

#[test]
fn keepalived_unmapped_items_carry_file_and_line() {
    let i = ok(Format::Keepalived, &["keepalived/lb1.conf"]);
    let lb1 = "keepalived/lb1.conf";
    let web = "keepalived/conf.d/web.conf";
    let other = "keepalived/conf.d/other.conf";
    assert_unmapped(
        &i,
        &[
            (lb1, "vrrp_script chk_proxy", "vrrp_script"),
            (lb1, "notify_master", "notify_master"),
            (lb1, "notify_backup", "notify_backup"),
            (lb1, "    track_script {", "track_script"),
            (lb1, "notification_email {", "notification_email"),
            (lb1, "lvs_sync_daemon", "maxlen"),
            (lb1, "brd 198.18.0.255", "brd"),
            (web, "quorum_down", "quorum_down"),
            (web, "hysteresis", "hysteresis"),
            (web, "notify_down", "notify_down"),
            (web, "digest", "digest"),
            (web, "delay_before_retry", "delay_before_retry"),
            (other, "lb_algo lblc", "lblc"),
            (other, "PING_CHECK", "PING_CHECK"),
            (other, "virtual_server fwmark 5", "fwmark"),
            (other, "virtual_server 198.18.0.150 80", "198.18.0.150"),
        ],
    );
    // The equivalents are named.
    let notify = i
        .report
        .items
        .iter()
        .find(|it| it.what.contains("notify_master"))
        .unwrap();
    assert!(notify.detail.contains("vrrpctl watch"), "{}", notify.detail);
    let misc = parsed(&i);
    assert!(misc
        .checks
        .iter()
        .any(|c| matches!(c.kind, config::CheckKind::Exec { .. })));
}

#[test]
fn one_keepalived_file_derives_the_peer_and_names_its_placeholders() {
    let i = ok(Format::Keepalived, &["keepalived/lb1.conf"]);
    let c = parsed(&i);
    let peer = c
        .node("lb2")
        .expect("the peer gets the default second name");
    assert_eq!(
        peer.priority.get("EDGE"),
        Some(&100),
        "MASTER at 150: the peer 50 below"
    );
    // Its addresses come from lb1's unicast_peer lines.
    assert_eq!(peer.addresses["eth0"][0].to_string(), "198.18.0.12/24");
    assert_eq!(
        peer.unicast_peers["VI_PUBLIC"][0].to_string(),
        "198.18.0.11"
    );

    let s = ok(Format::Keepalived, &["keepalived/single.conf"]);
    let c = parsed(&s);
    assert!(s.text.contains("PLACEHOLDER"), "{}", s.text);
    let lb1 = c.node("lb1").unwrap();
    let lb2 = c.node("lb2").unwrap();
    assert_eq!(
        lb2.priority.get("V4"),
        Some(&170),
        "BACKUP at 120: the peer 50 above"
    );
    let eth0: Vec<String> = lb1.addresses["eth0"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert!(eth0.contains(&"198.18.0.0/24".to_string()), "{eth0:?}");
    assert!(
        eth0.contains(&"198.18.5.0/24".to_string()),
        "server subnet: {eth0:?}"
    );
    assert!(
        eth0.iter().any(|a| a.starts_with("2001:db8:0:a::")),
        "{eth0:?}"
    );
    assert!(lb2.addresses["eth0"]
        .iter()
        .any(|a| a.to_string() == "198.18.0.255/24"));
    let placeholders = s
        .report
        .of(ItemKind::Assumed)
        .filter(|it| it.detail.contains("PLACEHOLDER"))
        .count();
    assert_eq!(placeholders, 6, "{}", s.report);
    let v4 = c.instance("V4").unwrap();
    assert_eq!(v4.advert_interval_ms, 250);
    assert!(!v4.preempt && v4.accept_mode);
    assert_eq!(v4.vips.len(), 2, "the excluded address joins the VIPs");
    assert_unmapped(
        &s,
        &[
            (
                "keepalived/single.conf",
                "2001:db8:0:a::60/64",
                "2001:db8:0:a::60",
            ),
            ("keepalived/single.conf", "this-label-is-too-long", "label"),
            ("keepalived/single.conf", "vrrp_strict", "vrrp_strict"),
            ("keepalived/single.conf", "SMTP_CHECK", "SMTP_CHECK"),
        ],
    );
}

#[test]
fn addresses_given_on_the_command_line_replace_placeholders() {
    let options = Options {
        node_names: vec!["alpha".into(), "beta".into()],
        addresses: vec![
            "alpha:eth0=198.18.0.11/24".parse().unwrap(),
            "2:eth0=198.18.0.12/24".parse().unwrap(),
        ],
        ..Options::default()
    };
    let i = import(Format::Keepalived, &["keepalived/single.conf"], &options).unwrap();
    let c = parsed(&i);
    assert_eq!(
        c.node("alpha").unwrap().addresses["eth0"][0].to_string(),
        "198.18.0.11/24"
    );
    assert_eq!(
        c.node("beta").unwrap().addresses["eth0"][0].to_string(),
        "198.18.0.12/24"
    );
    assert!(!i.text.contains("198.18.0.0/24"), "{}", i.text);
    let e = import(
        Format::Keepalived,
        &["keepalived/single.conf"],
        &Options {
            addresses: vec!["lb9:eth0=198.18.0.11/24".parse().unwrap()],
            ..Options::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lb9"), "{e}");
}

#[test]
fn unknown_keywords_are_reported_with_their_lines() {
    let i = ok(Format::Keepalived, &["keepalived/unknown-keywords.conf"]);
    parsed(&i);
    let rel = "keepalived/unknown-keywords.conf";
    assert_unmapped(
        &i,
        &[
            (rel, "frobnicate_everything", "frobnicate_everything"),
            (rel, "@lb1", "@lb1"),
            (rel, "wobble", "wobble"),
        ],
    );
}

#[test]
fn malformed_keepalived_files_are_errors_with_file_and_line() {
    for (rel, needle, words) in [
        (
            "keepalived/bad/unbalanced.conf",
            "vrrp_instance",
            "not closed",
        ),
        ("keepalived/bad/extra-brace.conf", "}\n}", "closes no block"),
        (
            "keepalived/bad/bad-address.conf",
            "198.18.0.999",
            "not an IP address",
        ),
        (
            "keepalived/bad/missing-include.conf",
            "include",
            "does-not-exist.conf",
        ),
    ] {
        let e = import(Format::Keepalived, &[rel], &Options::default())
            .err()
            .unwrap_or_else(|| panic!("{rel} imported"))
            .to_string();
        let line = if needle == "}\n}" {
            5
        } else {
            line_of(rel, needle)
        };
        assert!(e.contains(&format!("{rel}:{line}")), "{rel}: {e}");
        assert!(e.contains(words), "{rel}: {e}");
    }
}

#[test]
fn the_aloha_source_nat_example_imports() {
    let i = ok(Format::Aloha, &["aloha/one-arm.cfg"]);
    let c = parsed(&i);
    let web = &c.services[0];
    assert_eq!((web.name.as_str(), web.ports.start), ("web", 8000));
    assert_eq!(web.scheduler.name(), "wlc");
    assert_eq!(web.mode.name(), "nat");
    assert_eq!(web.servers[0].weight, 10);
    let nat = &c.nat[0];
    assert_eq!(nat.in_interface.as_deref(), Some("eth0"));
    assert_eq!(nat.destination.to_string(), "198.18.0.3");
    assert_eq!(nat.snat.addresses()[0].to_string(), "198.18.0.4");
    assert!(c.instance_holding("198.18.0.4".parse().unwrap()).is_some());
    // ALOHA's VRRP settings are not in the file: the instance is an assumption.
    assert!(i
        .report
        .of(ItemKind::Assumed)
        .any(|it| it.what == "instance public"));
}

#[test]
fn aloha_keywords_map_and_the_rest_is_reported() {
    let i = ok(Format::Aloha, &["aloha/two-arm.cfg"]);
    let c = parsed(&i);
    let svc = |n: &str| c.services.iter().find(|s| s.name == n).unwrap();
    let web = svc("web");
    assert_eq!(web.scheduler.name(), "wrr");
    assert_eq!(web.sorry_server.unwrap().address.to_string(), "198.18.1.30");
    assert_eq!(web.servers.len(), 2, "the sorry server is not a server");
    let check = c.check(web.servers[0].check.as_deref().unwrap()).unwrap();
    assert_eq!(
        (check.interval_ms, check.timeout_ms, check.port),
        (5000, 2000, Some(8080))
    );
    match &check.kind {
        config::CheckKind::Http(h) => {
            assert_eq!(h.path, "/health");
            assert_eq!(h.expect_status, [204]);
            assert_eq!(h.host.as_deref(), Some("www.example.org"));
        }
        other => panic!("{other:?}"),
    }
    let sticky = svc("sticky");
    assert_eq!(sticky.scheduler.name(), "sh");
    let p = sticky.persistence.unwrap();
    assert_eq!((p.timeout_s, p.prefix_len), (600, 24));
    assert_eq!(svc("dns").scheduler.name(), "sed");
    assert_eq!(svc("dns").mode.name(), "dr");
    assert_eq!(svc("tun").mode.name(), "tunnel");
    assert_eq!(svc("queue").scheduler.name(), "nq");
    assert_eq!(svc("six").vip.to_string(), "2001:db8:0:a::100");
    // Two arms: the SNAT sources are VIPs of an instance on eth1.
    let server = c.instance("server").unwrap();
    assert_eq!(server.interface, "eth1");
    let pool = c.nat.iter().find(|n| n.name == "pool-snat").unwrap();
    assert_eq!(pool.snat.addresses().len(), 2);
    let rel = "aloha/two-arm.cfg";
    assert_unmapped(
        &i,
        &[
            (rel, "option icmpcheck", "icmpcheck"),
            (rel, "option arpcheck", "arpcheck"),
            (rel, "leastconn localitybased", "localitybased"),
            (rel, "balance dest", "dest"),
            (rel, "director marked", "marked"),
            (rel, "from 198.19.0.0/24", "from"),
            (rel, "nat stray", "stray"),
        ],
    );
}

#[test]
fn an_aloha_pair_gives_both_nodes() {
    let i = ok(Format::Aloha, &["aloha/one-arm.cfg", "aloha/one-arm.cfg"]);
    let c = parsed(&i);
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(i.report.count(ItemKind::Differs), 0, "{}", i.report);
    let j = ok(Format::Aloha, &["aloha/one-arm.cfg", "aloha/two-arm.cfg"]);
    assert_eq!(j.report.count(ItemKind::Differs), 1, "{}", j.report);
}

#[test]
fn malformed_aloha_files_are_errors_with_file_and_line() {
    for (rel, needle) in [
        ("aloha/bad/bad-balance.cfg", "balance fastest"),
        ("aloha/bad/bad-address.cfg", "198.18.0.299"),
        ("aloha/bad/nat-no-source.cfg", "nat web-snat"),
    ] {
        let e = import(Format::Aloha, &[rel], &Options::default())
            .err()
            .unwrap_or_else(|| panic!("{rel} imported"))
            .to_string();
        let line = line_of(rel, needle);
        assert!(e.contains(&format!("{rel}:{line}")), "{rel}: {e}");
    }
}

#[test]
fn truncated_inputs_are_errors_or_imports_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    for (format, rel) in [
        (Format::Keepalived, "keepalived/lb1.conf"),
        (Format::Keepalived, "keepalived/conf.d/web.conf"),
        (Format::Keepalived, "keepalived/single.conf"),
        (Format::Aloha, "aloha/two-arm.cfg"),
    ] {
        let text = std::fs::read_to_string(corpus(rel)).unwrap();
        let cut = dir.path().join("cut.conf");
        let mut ends: Vec<usize> = (0..text.len()).step_by(5).collect();
        ends.push(text.len());
        for end in ends {
            if !text.is_char_boundary(end) {
                continue;
            }
            std::fs::write(&cut, &text[..end]).unwrap();
            // Either outcome is fine; a panic fails the test.
            let _ = import::import(format, std::slice::from_ref(&cut), &Options::default());
        }
    }
}

#[test]
fn checker_differences_between_the_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = |timeout: u32| {
        format!(
            "vrrp_instance V {{\n interface eth0\n virtual_router_id 9\n unicast_src_ip 198.18.0.11\n unicast_peer {{\n  198.18.0.12\n }}\n virtual_ipaddress {{\n  198.18.0.9/24\n }}\n}}\nvirtual_server 198.18.0.9 80 {{\n inhibit_on_failure\n real_server 198.18.0.21 80 {{\n  TCP_CHECK {{\n   connect_timeout {timeout}\n  }}\n }}\n}}\n"
        )
    };
    let a = dir.path().join("a.conf");
    let b = dir.path().join("b.conf");
    std::fs::write(&a, text(2)).unwrap();
    std::fs::write(&b, text(2)).unwrap();
    let same = import::import(
        Format::Keepalived,
        &[a.clone(), b.clone()],
        &Options::default(),
    )
    .unwrap();
    assert_eq!(same.report.count(ItemKind::Differs), 0, "{}", same.report);
    // The service-level inhibit_on_failure applies to its real servers.
    assert!(parsed(&same).services[0].inhibit_on_failure);
    std::fs::write(&b, text(4)).unwrap();
    let differ = import::import(Format::Keepalived, &[a, b], &Options::default()).unwrap();
    let item = differ
        .report
        .of(ItemKind::Differs)
        .next()
        .expect("a difference");
    assert!(item.what.contains("checker"), "{item}");
    assert_eq!(
        item.at.as_ref().unwrap().line,
        12,
        "the virtual_server line: {item}"
    );
    let c = parsed(&differ);
    assert_eq!(c.checks[0].timeout_ms, 2000, "the first file's value");
}
