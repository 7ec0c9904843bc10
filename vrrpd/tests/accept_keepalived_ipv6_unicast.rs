//! Acceptance: vrrpd (lb1) and keepalived 2.2.7 (lb2) over IPv6 unicast. keepalived
//! sends unicast adverts with its default hop limit (64, no `unicast_ttl 255`);
//! vrrpd drops them (RFC 9568 §7.1), so with keepalived at the higher priority both
//! are MASTER. vrrpd must say so (status, metrics, one log line naming the fix),
//! and `unicast_min_ttl` must end it. Needs root and /usr/sbin/keepalived (prints
//! SKIP otherwise).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::keepalived;
use support::*;

const VIP6: &str = "2001:db8:0:a::c8";

fn ready(test: &str) -> bool {
    if !integration::have_root(test) {
        return false;
    }
    if !std::path::Path::new(keepalived::KEEPALIVED).exists() {
        if std::env::var(integration::REQUIRE_ROOT_ENV).is_ok_and(|v| v == "1") {
            panic!("{test}: needs {}", keepalived::KEEPALIVED);
        }
        println!("SKIP (needs keepalived): {test}");
        return false;
    }
    true
}

/// The example plus sync group `v6` with the unicast IPv6 instance `public6`
/// (VRID 61 on eth0), lb1 at `lb1_priority`, and `extra` lines in the instance.
fn with_v6_unicast(lb1_priority: u8, extra: &str) -> impl Fn(&mut String) + '_ {
    move |text: &mut String| {
        let from = "priority = { edge = 150 }";
        assert!(text.contains(from));
        *text = text.replacen(
            from,
            &format!("priority = {{ edge = 150, v6 = {lb1_priority} }}"),
            1,
        );
        let from = "priority = { edge = 100 }";
        assert!(text.contains(from));
        *text = text.replacen(from, "priority = { edge = 100, v6 = 100 }", 1);
        text.push_str(&format!(
            "\n[[sync_group]]\nname = \"v6\"\ninstances = [\"public6\"]\n\
             \n[[instance]]\nname = \"public6\"\ninterface = \"eth0\"\nvrid = 61\n\
             vips = [\"{VIP6}/64\"]\nunicast = true\n{extra}"
        ));
    }
}

/// keepalived's public6 on lb2: unicast to lb1, its default hop limit. Its
/// unicast socket only hears packets to its source address (by default its
/// link-local); vrrpd sends to the peer's configured (global) address, so
/// keepalived's source is that one.
fn keepalived_conf(priority: u8) -> String {
    format!(
        "global_defs {{\n    router_id lb2\n}}\n\n\
         vrrp_instance public6 {{\n    state BACKUP\n    interface eth0\n    \
         virtual_router_id 61\n    priority {priority}\n    advert_int 1\n    version 3\n    \
         unicast_src_ip 2001:db8:0:a::12\n    \
         unicast_peer {{\n        2001:db8:0:a::11\n    }}\n    \
         virtual_ipaddress {{\n        {VIP6}/64\n    }}\n}}\n"
    )
}

/// lb1's instance `public6` in its status ("null" while not answering).
fn public6(c: &Cluster) -> Value {
    let socket = c.socket("lb1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let client = ctl::Client::connect(&socket).await.ok()?;
        client
            .request_with_timeout("status", Value::Null, Duration::from_secs(10))
            .await
            .ok()
    });
    status
        .as_ref()
        .and_then(|s| s["instances"].as_array())
        .and_then(|is| is.iter().find(|i| i["name"] == "public6"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn metric(c: &Cluster, name: &str, reason: &str) -> f64 {
    sample(
        &scrape(c.host("lb1")),
        name,
        &[("vrrp_instance", "public6"), ("reason", reason)],
    )
    .unwrap_or(f64::NAN)
}

#[test]
fn keepalived_unicast_hop_limit_64_is_two_masters_said_and_unicast_min_ttl_ends_it() {
    if !ready("keepalived_unicast_hop_limit_64_is_two_masters_said_and_unicast_min_ttl_ends_it") {
        return;
    }
    let c = Cluster::up_with(&[], with_v6_unicast(100, ""));
    let ka = keepalived::start(c.host("lb2"), c.dir.path(), &keepalived_conf(150));
    wait_for("keepalived MASTER with the VIP", PATIENCE, || {
        has(c.host("lb2"), "eth0", VIP6)
    });
    let lb1 = c.start("lb1");

    // vrrpd drops keepalived's adverts, so it takes the VIP too: two masters.
    wait_for("vrrpd says two masters", PATIENCE, || {
        !public6(&c)["dual_master"].is_null()
    });
    let inst = public6(&c);
    println!("{inst:#}");
    assert_eq!(inst["state"], "MASTER", "{inst:#}");
    assert!(has(c.host("lb1"), "eth0", VIP6) && has(c.host("lb2"), "eth0", VIP6));
    let d = &inst["dual_master"];
    assert_eq!(d["reason"], "bad_ttl", "{d:#}");
    assert_eq!(d["unicast"], true, "{d:#}");
    let ttl = d["ttl"].as_u64().unwrap();
    assert!(ttl < 255, "{d:#}");
    let fix = d["fix"].as_str().unwrap();
    assert!(fix.contains("unicast_ttl 255"), "{fix}");
    assert!(fix.contains(&format!("unicast_min_ttl = {ttl}")), "{fix}");
    assert_eq!(metric(&c, "vrrp_dual_master", "bad_ttl"), 1.0);
    assert!(metric(&c, "vrrp_dual_master_adverts_total", "bad_ttl") >= 1.0);
    if let Some(bin) = vrrpctl() {
        let socket = c.socket("lb1");
        let out = c
            .host("lb1")
            .exec_ok(&[
                bin.to_str().unwrap(),
                "--socket",
                socket.to_str().unwrap(),
                "status",
            ])
            .unwrap();
        assert!(out.contains("TWO MASTERS: public6"), "{out}");
    }
    // A few more adverts dropped: still one warning (rate-limited), naming the fix.
    std::thread::sleep(Duration::from_secs(3));
    let warnings = lb1
        .stderr()
        .lines()
        .filter(|l| l.contains("two masters:") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{}", lb1.stderr());
    assert!(lb1.stderr().contains("set `unicast_ttl 255`"));
    let log = keepalived::log(&ka);
    assert_eq!(keepalived::entered(&log, "public6", "BACKUP"), 1, "{log}");

    // The operator accepts keepalived's hop limit: vrrpd hears it and yields.
    c.write_config_with(
        &[],
        with_v6_unicast(100, &format!("unicast_min_ttl = {ttl}\n")),
    );
    let report = request(&c.socket("lb1"), "reload", Value::Null);
    assert_eq!(report["restarted"], serde_json::json!([]), "{report:#}");
    wait_for("vrrpd BACKUP, the VIP on keepalived only", PATIENCE, || {
        public6(&c)["state"] == "BACKUP"
            && !has(c.host("lb1"), "eth0", VIP6)
            && has(c.host("lb2"), "eth0", VIP6)
    });
    wait_for("two masters over", PATIENCE, || {
        public6(&c)["dual_master"].is_null()
    });
    assert_eq!(metric(&c, "vrrp_dual_master", "bad_ttl"), 0.0);
    let inst = public6(&c);
    assert!(inst["master_address"].is_string(), "{inst:#}");
    // keepalived never left MASTER (vrrpd's adverts were always heard there).
    let log = keepalived::log(&ka);
    assert_eq!(keepalived::entered(&log, "public6", "BACKUP"), 1, "{log}");
    assert_eq!(keepalived::entered(&log, "public6", "MASTER"), 1, "{log}");
    let errors = keepalived::error_lines(&log);
    assert!(errors.is_empty(), "keepalived complained: {errors:#?}");
}

#[test]
fn vrrpd_master_over_ipv6_unicast_keeps_keepalived_backup() {
    if !ready("vrrpd_master_over_ipv6_unicast_keeps_keepalived_backup") {
        return;
    }
    let c = Cluster::up_with(&[], with_v6_unicast(150, ""));
    let _lb1 = c.start("lb1");
    wait_for("vrrpd MASTER with the VIP", PATIENCE, || {
        has(c.host("lb1"), "eth0", VIP6)
    });
    let ka = keepalived::start(c.host("lb2"), c.dir.path(), &keepalived_conf(100));
    wait_for("keepalived BACKUP", PATIENCE, || {
        keepalived::entered(&keepalived::log(&ka), "public6", "BACKUP") >= 1
    });
    holds_for(
        "vrrpd alone holds the VIP, with no two-master report",
        Duration::from_secs(6),
        || {
            has(c.host("lb1"), "eth0", VIP6)
                && !has(c.host("lb2"), "eth0", VIP6)
                && public6(&c)["dual_master"].is_null()
        },
    );
    let log = keepalived::log(&ka);
    assert_eq!(keepalived::entered(&log, "public6", "MASTER"), 0, "{log}");
    let errors = keepalived::error_lines(&log);
    assert!(errors.is_empty(), "keepalived complained: {errors:#?}");
    // keepalived BACKUP sends nothing, so vrrpd has heard nothing wrong either.
    assert_no_receive_errors(&scrape(c.host("lb1")));
}
