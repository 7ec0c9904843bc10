//! Reading a file again (`NodeSource::reload`) gives what reading it whole gives:
//! the same view or the same diagnostics, whether the changed `[[service]]` blocks
//! were parsed alone or the whole file was read.

use config::{NodeSource, NodeView};

const HEAD: &str = r#"[cluster]
name = "reread"

[[node]]
name = "lb1"
priority = { edge = 150 }
addresses = { lo = ["198.18.0.11/24"] }

[[node]]
name = "lb2"
priority = { edge = 100 }
addresses = { lo = ["198.18.0.12/24"] }

[[sync_group]]
name = "edge"
instances = ["public"]

[[instance]]
name = "public"
interface = "lo"
vrid = 51
vips = ["198.18.0.100/24", "198.18.0.101/24"]

[[check]]
name = "tcp"
type = "tcp"
"#;

const TAIL: &str = r#"
[[nat]]
name = "web-snat"
protocol = "tcp"
destination = "198.18.0.100"
snat = { address = "198.18.0.101" }
"#;

fn service(i: usize, weight: u32) -> String {
    format!(
        r#"
[[service]]
name = "svc{i}"
vip = "198.18.0.100"
port = {}
scheduler = "wrr"

[service.persistence]
timeout_s = 300

[[service.server]]
name = "srv1"
address = "198.18.0.21"
weight = {weight}
check = "tcp"

[[service.server]]
name = "srv2"
address = "198.18.0.22"
"#,
        1000 + i
    )
}

fn file(services: &[String], tail: &str) -> String {
    format!("{HEAD}{}{tail}", services.concat())
}

fn services(n: usize) -> Vec<String> {
    (0..n).map(|i| service(i, 1)).collect()
}

struct Files {
    _dir: tempfile::TempDir,
    source: NodeSource,
}

impl Files {
    fn new(text: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, text).unwrap();
        Files {
            _dir: dir,
            source: NodeSource {
                config_path: path,
                node: Some("lb1".to_owned()),
            },
        }
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.source.config_path, text).unwrap();
    }
}

/// Loads `before`, then reads `after` again: the result beside a whole read of
/// `after`; and how many blocks the reread parsed (`None`: the whole file).
fn reread(before: &str, after: &str) -> Option<usize> {
    let f = Files::new(before);
    let loaded = f.source.load().unwrap();
    f.write(after);
    let whole = f.source.load().map(|l| l.view);
    match (f.source.reload(&loaded.memo, &loaded.view), whole) {
        (Ok((view, memo)), Ok(whole)) => {
            assert_eq!(view, whole);
            // The memo reads the next change the same way.
            let parsed = memo.blocks_parsed();
            f.write(before);
            let back = f.source.reload(&memo, &view).unwrap().0;
            assert_eq!(back, loaded.view);
            parsed
        }
        (Err(e), Err(whole)) => {
            assert_eq!(e.to_string(), whole.to_string());
            None
        }
        (got, whole) => panic!("reread {got:?}\nwhole {whole:?}"),
    }
}

fn weight_of(view: &NodeView, service: &str) -> u32 {
    view.services
        .iter()
        .find(|s| s.name == service)
        .unwrap()
        .servers[0]
        .weight
}

#[test]
fn a_servers_weight_change_parses_one_block() {
    let before = file(&services(20), TAIL);
    let mut changed = services(20);
    changed[7] = service(7, 5);
    let after = file(&changed, TAIL);
    assert_eq!(reread(&before, &after), Some(1));

    let f = Files::new(&before);
    let loaded = f.source.load().unwrap();
    f.write(&after);
    let (view, _) = f.source.reload(&loaded.memo, &loaded.view).unwrap();
    assert_eq!(weight_of(&view, "svc7"), 5);
    assert_eq!(weight_of(&view, "svc6"), 1);
    assert_ne!(view.fingerprint, loaded.view.fingerprint);
    assert_eq!(view.fingerprint, config::fingerprint(&after));
}

#[test]
fn the_first_and_last_blocks_and_the_file_without_a_tail() {
    for tail in [TAIL, ""] {
        let before = file(&services(5), tail);
        for i in [0, 4] {
            let mut changed = services(5);
            changed[i] = service(i, 9);
            assert_eq!(reread(&before, &file(&changed, tail)), Some(1), "{i}");
        }
    }
}

#[test]
fn services_added_and_removed_among_the_blocks() {
    let before = file(&services(6), TAIL);
    let mut added = services(6);
    added.insert(3, service(40, 1));
    assert_eq!(reread(&before, &file(&added, TAIL)), Some(2));
    let mut appended = services(6);
    appended.push(service(41, 1));
    assert!(reread(&before, &file(&appended, TAIL)).is_some());
    let mut removed = services(6);
    removed.remove(2);
    assert!(reread(&before, &file(&removed, TAIL)).is_some());
    let mut two = services(6);
    two[1] = service(1, 3);
    two[4] = service(4, 3);
    assert_eq!(reread(&before, &file(&two, TAIL)), Some(4));
}

#[test]
fn an_unchanged_file_parses_nothing() {
    let before = file(&services(3), TAIL);
    assert_eq!(reread(&before, &before), Some(0));
}

#[test]
fn a_change_outside_the_services_reads_the_whole_file() {
    let before = file(&services(4), TAIL);
    let after = before.replace("vrid = 51", "vrid = 52");
    assert_eq!(reread(&before, &after), None);
    let after = before.replace(
        "snat = { address = \"198.18.0.101\" }",
        "snat = { address = \"198.18.0.100\" }",
    );
    assert_eq!(reread(&before, &after), None);
    // A section slipped in among the services.
    let mut s = services(4);
    s.insert(2, "\n[control]\nlbd_socket = \"/tmp/x.sock\"\n".to_owned());
    assert_eq!(reread(&before, &file(&s, TAIL)), None);
}

#[test]
fn refusals_are_those_of_the_whole_file_with_their_lines() {
    let before = file(&services(5), TAIL);
    let cases = [
        // Duplicate service name.
        ("name = \"svc3\"", "name = \"svc1\""),
        // Overlapping port on the same VIP.
        ("port = 1003", "port = 1001"),
        // Unknown check.
        ("check = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc3\"", "check = \"tpc\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc3\""),
        // A VIP no instance holds.
        ("vip = \"198.18.0.100\"\nport = 1002", "vip = \"198.18.0.109\"\nport = 1002"),
        // A server outside the nodes' subnets.
        ("address = \"198.18.0.21\"\nweight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc2\"", "address = \"198.18.9.21\"\nweight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc2\""),
        // Unknown key, bad type, syntax.
        ("timeout_s = 300\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.0.21\"\nweight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc4\"", "timeout_s = 300\ncolour = 1\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.0.21\"\nweight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc4\""),
        ("port = 1002", "port = \"1002\""),
        ("port = 1002", "port = 1002 x"),
        ("port = 1004\n", "port = 1004\nname = \"again\"\n"),
        // The header broken, or a section header among the services.
        ("[[service]]\nname = \"svc2\"", "[[servic]]\nname = \"svc2\""),
        ("[[service]]\nname = \"svc2\"", "[service]\nname = \"svc2\""),
        ("[[service]]\nname = \"svc2\"", "name = \"svc2\""),
        // A string left open across the next block.
        ("name = \"svc2\"", "name = \"\"\"svc2"),
    ];
    for (from, to) in cases {
        assert!(before.contains(from), "{from}");
        let after = before.replacen(from, to, 1);
        let f = Files::new(&before);
        let loaded = f.source.load().unwrap();
        f.write(&after);
        let whole = f.source.load().map(|l| l.view);
        let got = f.source.reload(&loaded.memo, &loaded.view).map(|(v, _)| v);
        match (&got, &whole) {
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{to}"),
            _ => panic!("{to}: reread {got:?}\nwhole {whole:?}"),
        }
        assert!(whole.is_err(), "{to} was accepted");
    }
}

#[test]
fn comments_multiline_values_and_odd_spacing_stay_equivalent() {
    let before = file(&services(4), TAIL);
    let edits = [
        ("[[service]]\nname = \"svc2\"", "  [[service]]  # two\nname = \"svc2\""),
        ("[[service]]\nname = \"svc2\"", "# a note\n[[service]]\nname = \"svc2\""),
        ("weight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n\n[[service]]\nname = \"svc3\"", "weight = 1\ncheck = \"tcp\"\n\n[[service.server]]\nname = \"srv2\"\naddress = \"198.18.0.22\"\n# trailing\n[[service]]\nname = \"svc3\""),
        ("port = 1001", "port = 1001\nsorry_server = { address = \"198.18.0.30\", port = 8080 }"),
        ("name = \"svc1\"", "name = '''svc1'''"),
    ];
    for (from, to) in edits {
        assert!(before.contains(from), "{from}");
        let after = before.replacen(from, to, 1);
        reread(&before, &after);
    }
}

#[test]
fn a_service_completed_after_another_section_is_read_whole() {
    // `[service.persistence]` after `[[nat]]` belongs to the last service: that file
    // is never read in parts.
    let mut s = services(3);
    s[2] = s[2].replace("\n[service.persistence]\ntimeout_s = 300\n", "");
    let before = format!(
        "{}\n[service.persistence]\ntimeout_s = 60\n",
        file(&s, TAIL)
    );
    let f = Files::new(&before);
    let loaded = f.source.load().unwrap();
    assert!(!loaded.memo.in_parts());
    let mut changed = s.clone();
    changed[2] = changed[2].replace("weight = 1", "weight = 4");
    let after = format!(
        "{}\n[service.persistence]\ntimeout_s = 60\n",
        file(&changed, TAIL)
    );
    assert_eq!(reread(&before, &after), None);
}

/// Random edits of a valid file (pieces of TOML put in or cut out anywhere): every
/// reread agrees with a whole read, accepted or refused.
#[test]
fn random_edits_get_the_verdict_of_a_whole_read() {
    const PIECES: &[&str] = &[
        "[[service]]\n",
        "\n",
        "\"",
        "\"\"\"",
        "'''",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "name = \"x\"\n",
        "weight = 2\n",
        "[service.persistence]\ntimeout_s = 5\n",
        "[[service.server]]\nname = \"s9\"\naddress = \"198.18.0.29\"\n",
        "[[nat]]\n",
        "[control]\n",
        "x = [\n",
        "]\n",
        "port = 1003\n",
    ];
    let before = file(&services(6), TAIL);
    let f = Files::new(&before);
    let loaded = f.source.load().unwrap();
    let mut seed: u64 = 0x5eed_1234;
    let mut next = |m: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % m
    };
    let (mut accepted, mut in_parts) = (0, 0);
    for _ in 0..600 {
        let mut after = before.clone();
        for _ in 0..1 + next(2) {
            // Within the services mostly: that is where reading in parts applies.
            let at = HEAD.len() + next(after.len() - HEAD.len());
            let at = (0..=at).rev().find(|&i| after.is_char_boundary(i)).unwrap();
            // At a line start half of the time: whole lines put in or taken out.
            let line = after[..at].rfind('\n').map_or(0, |i| i + 1);
            match next(5) {
                0 => after.insert_str(at, PIECES[next(PIECES.len())]),
                1 => after.insert_str(line, PIECES[next(PIECES.len())]),
                2 => {
                    let end = after[line..]
                        .find('\n')
                        .map_or(after.len(), |i| line + i + 1);
                    after.replace_range(line..end, "");
                }
                3 => {
                    // A digit changed: a weight, a port, an address.
                    if let Some(d) = after[at..].find(|c: char| c.is_ascii_digit()) {
                        let d = at + d;
                        let digit = char::from(b'0' + next(10) as u8).to_string();
                        after.replace_range(d..d + 1, &digit);
                    }
                }
                _ => {
                    let hi = (at + 1 + next(12)).min(after.len());
                    let hi = (hi..=after.len())
                        .find(|&i| after.is_char_boundary(i))
                        .unwrap();
                    after.replace_range(at..hi, "");
                }
            }
        }
        f.write(&after);
        let whole = f.source.load().map(|l| l.view);
        let got = f.source.reload(&loaded.memo, &loaded.view);
        match (&got, &whole) {
            (Ok((a, memo)), Ok(b)) => {
                assert_eq!(a, b, "{after}");
                accepted += 1;
                in_parts += usize::from(memo.blocks_parsed().is_some());
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{after}"),
            _ => panic!("{after}\nreread {got:?}\nwhole {whole:?}"),
        }
    }
    // The edits must exercise both paths.
    assert!(
        accepted > 30 && in_parts > 10,
        "{accepted} accepted, {in_parts} in parts"
    );
}

/// An active-active file checks every service against the cluster (its scheduler
/// must be `mh`): a changed service is never judged alone there, and one that
/// active-active refuses is refused by a reload as by a whole read.
#[test]
fn an_active_active_file_is_read_whole() {
    let aa_service = |i: usize, scheduler: &str| {
        format!(
            "\n[[service]]\nname = \"svc{i}\"\nvip = \"198.18.5.100\"\nport = {}\nscheduler = \"{scheduler}\"\n\n[[service.server]]\nname = \"srv1\"\naddress = \"198.18.0.21\"\n",
            1000 + i
        )
    };
    let head = "[cluster]\nname = \"aa\"\nmode = \"active-active\"\n\n[announce]\ndaemon = \"frr\"\nasn = 65010\n\n[[node]]\nname = \"lb1\"\naddresses = { lo = [\"198.18.0.11/24\"] }\n\n[[node]]\nname = \"lb2\"\naddresses = { lo = [\"198.18.0.12/24\"] }\n";
    let file = |schedulers: [&str; 3]| {
        let services: String = schedulers
            .iter()
            .enumerate()
            .map(|(i, s)| aa_service(i, s))
            .collect();
        format!("{head}{services}")
    };
    let before = file(["mh", "mh", "mh"]);
    let after = file(["mh", "wrr", "mh"]);
    let f = Files::new(&before);
    let loaded = f.source.load().unwrap();
    f.write(&after);
    let Err(e) = f.source.reload(&loaded.memo, &loaded.view) else {
        panic!("an active-active service with wrr reloaded");
    };
    assert!(e.to_string().contains("mh"), "{e}");
    assert_eq!(reread(&before, &after), None);
    // A change active-active accepts: read whole all the same.
    let mut heavier = before.clone();
    heavier.push_str("weight = 3\n");
    assert_eq!(reread(&before, &heavier), None);
}

/// A scheduler only one backend has is judged against every service and the
/// backend: a service changed to one is read with the whole file.
#[test]
fn a_scheduler_one_backend_lacks_is_read_whole() {
    let before = file(&services(4), TAIL);
    let mut changed = services(4);
    changed[2] = service(2, 1).replace("scheduler = \"wrr\"", "scheduler = \"sed\"");
    assert_eq!(reread(&before, &file(&changed, TAIL)), None);
    let nft = TAIL.to_owned() + "\n[dataplane]\nbackend = \"nft\"\n";
    let before = file(&services(4), &nft);
    let f = Files::new(&before);
    let loaded = f.source.load().unwrap();
    f.write(&file(&changed, &nft));
    let Err(e) = f.source.reload(&loaded.memo, &loaded.view) else {
        panic!("sed on the nft backend reloaded");
    };
    assert!(e.to_string().contains("the ipvs backend has it"), "{e}");
}
