//! Acceptance: crafted bad VRRP packets, put on the public segment by the
//! client through a packet socket, change nothing and are counted under the
//! right kind. Needs root (prints SKIP otherwise).

mod support;

use std::time::Duration;

use support::inject::{self, advert};
use support::*;
use vrrp::packet::Version;

/// Reads one counter from a scrape.
type Reader = Box<dyn Fn(&str) -> Option<f64>>;

/// How many of each bad packet are sent.
const EACH: usize = 3;

/// The example plus `legacy`: a VRRPv2 instance (VRID 53, 1 s) on eth0 in the
/// same group, to receive v2 adverts.
fn with_legacy(text: &mut String) {
    let from = "instances = [\"public\", \"server\"]\n";
    assert!(text.contains(from));
    *text = text.replacen(
        from,
        "instances = [\"public\", \"server\", \"legacy\"]\n",
        1,
    );
    text.push_str(
        "\n[[instance]]\nname = \"legacy\"\ninterface = \"eth0\"\nvrid = 53\nversion = 2\n\
         advert_interval_ms = 1000\nvips = [\"198.18.0.101/24\"]\n",
    );
}

fn state_counts_unchanged(metrics: &str) {
    for name in ["vrrp_release_master_total", "vrrp_become_master_total"] {
        for (labels, value) in samples(metrics, name) {
            let want = if name == "vrrp_become_master_total" {
                1.0
            } else {
                0.0
            };
            assert_eq!(value, want, "{name}{{{labels}}}");
        }
    }
}

#[test]
fn injected_bad_packets_change_nothing_and_are_counted_by_kind() {
    if !integration::have_root("injected_bad_packets_change_nothing_and_are_counted_by_kind") {
        return;
    }
    let c = Cluster::up_with(&[], with_legacy);
    let _lb1 = c.start("lb1");
    let _lb2 = c.start("lb2");
    wait_for("lb1 holds every VIP", PATIENCE, || {
        has_both(c.host("lb1")) && has(c.host("lb1"), "eth0", "198.18.0.101")
    });
    wait_for("lb2 is BACKUP", PATIENCE, || c.state_of("lb2") == "BACKUP");
    let before = scrape(c.host("lb1"));
    assert_no_receive_errors(&before);

    let client = "198.18.0.10";
    let vip = ["198.18.0.100"];
    // Each would make lb1 leave MASTER (priority 254) if it were believed.
    let ttl_64 = inject::ip_packet(&advert(Version::V3, 51, 254, 100, &vip), client, 64);
    let mut bad_checksum = inject::ip_packet(&advert(Version::V3, 51, 254, 100, &vip), client, 255);
    bad_checksum[20 + 6] ^= 0xff;
    // A spoofed advert "from lb2" with a higher priority and a bad checksum.
    let mut spoofed =
        inject::ip_packet(&advert(Version::V3, 51, 254, 100, &vip), "198.18.0.12", 255);
    spoofed[20 + 7] ^= 0x01;
    // Two addresses announced, one present.
    let mut truncated = inject::ip_packet(
        &advert(Version::V3, 51, 254, 100, &["198.18.0.100", "198.18.0.102"]),
        client,
        255,
    );
    let short = truncated.len() - 4;
    inject::truncate_ipv4(&mut truncated, short);
    let mut version_4 = inject::ip_packet(&advert(Version::V3, 51, 254, 100, &vip), client, 255);
    version_4[20] = 0x41;
    // VRRPv2 for `legacy` with 3 s instead of the configured 1 s.
    let interval = inject::ip_packet(
        &advert(Version::V2, 53, 254, 300, &["198.18.0.101"]),
        client,
        255,
    );
    let unknown_vrid = inject::ip_packet(&advert(Version::V3, 99, 254, 100, &vip), client, 255);

    let mac = capture::mac(&c.host("client").link("eth0").unwrap().mac);
    let mut frames = Vec::new();
    for _ in 0..EACH {
        for p in [
            &ttl_64,
            &bad_checksum,
            &spoofed,
            &truncated,
            &version_4,
            &interval,
            &unknown_vrid,
        ] {
            frames.push(inject::ethernet(mac, p));
        }
    }
    inject::send_frames(c.host("client"), "eth0", &frames);

    let n = EACH as f64;
    let decode = |kind| {
        move |m: &str| {
            sample(
                m,
                "vrrp_decode_errors_total",
                &[("interface", "eth0"), ("kind", kind)],
            )
        }
    };
    let expected: Vec<(&str, Reader, f64)> = vec![
        ("bad_ttl", Box::new(decode("bad_ttl")), n),
        (
            "ttl_errors",
            Box::new(|m: &str| sample(m, "vrrp_ttl_errors_total", &[("interface", "eth0")])),
            n,
        ),
        ("bad_checksum", Box::new(decode("bad_checksum")), 2.0 * n),
        ("truncated", Box::new(decode("truncated")), n),
        ("bad_version", Box::new(decode("bad_version")), n),
        (
            "interval",
            Box::new(|m: &str| {
                sample(
                    m,
                    "vrrp_advert_check_errors_total",
                    &[("vrrp_instance", "legacy"), ("kind", "interval")],
                )
            }),
            n,
        ),
        (
            "unknown_vrid",
            Box::new(|m: &str| sample(m, "vrrp_unknown_vrid_total", &[("interface", "eth0")])),
            n,
        ),
    ];
    let mut metrics = String::new();
    wait_for("every bad packet counted", PATIENCE, || {
        metrics = scrape(c.host("lb1"));
        expected
            .iter()
            .all(|(_, get, want)| get(&metrics) == Some(*want))
    });
    // Nothing else was counted: the other kinds and the server link stay 0.
    let total: f64 = samples(&metrics, "vrrp_decode_errors_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    // bad_ttl + 2 x bad_checksum + truncated + bad_version.
    assert_eq!(total, 5.0 * n, "{metrics}");
    let checks: f64 = samples(&metrics, "vrrp_advert_check_errors_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(checks, n, "{metrics}");
    // Only the well-formed v2 adverts reached an instance (lb2, BACKUP,
    // sends none), and `legacy` discarded them by its interval check.
    for (name, want) in [("public", 0.0), ("server", 0.0), ("legacy", n)] {
        assert_eq!(
            sample(
                &metrics,
                "vrrp_adverts_received_total",
                &[("vrrp_instance", name)]
            ),
            Some(want),
            "{name}: {metrics}"
        );
    }

    // No state change: lb1 MASTER with every VIP, lb2 BACKUP with none,
    // for longer than lb1's Master_Down_Interval.
    holds_for(
        "lb1 keeps every VIP, lb2 none",
        Duration::from_secs(4),
        || {
            has_both(c.host("lb1"))
                && has(c.host("lb1"), "eth0", "198.18.0.101")
                && has_neither(c.host("lb2"))
                && !has(c.host("lb2"), "eth0", "198.18.0.101")
        },
    );
    assert_eq!(c.state_of("lb1"), "MASTER");
    assert_eq!(c.state_of("lb2"), "BACKUP");
    state_counts_unchanged(&scrape(c.host("lb1")));
}
