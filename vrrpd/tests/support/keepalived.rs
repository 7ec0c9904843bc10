//! keepalived (Debian's /usr/sbin/keepalived) as the foreign VRRP peer: a
//! configuration mirroring cluster.toml.example's sync group, started the way
//! the golden vectors were captured, and its log read for errors.

use std::path::Path;

use integration::{Host, Process};

/// Where Debian installs it.
pub const KEEPALIVED: &str = "/usr/sbin/keepalived";

/// Phrases of keepalived 2.2.7's packet-check failures (from the strings of
/// its vrrp_check_packet and receive path): none may appear in its log.
pub const ERROR_PHRASES: &[&str] = &[
    "vrrp packet too",
    "invalid ttl/hl",
    "wrong version",
    "auth, expecting",
    "invalid passwd",
    "advertisement interval mismatch",
    "invalid packet type",
    "unexpected ip number count",
    "ip_tot_len mismatch",
    "icast packet but received",
    "vips but received",
    "not present in master advert",
    "not in range",
    "invalid vrrpv3 checksum",
    "invalid vrrpv2 checksum",
    "invalid auth type",
    "icast packet on",
    "bogus",
];

/// The VRRP parameters both sides share.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// 2 or 3.
    pub version: u8,
    /// Advert interval in ms (v2: whole seconds).
    pub interval_ms: u32,
}

impl Params {
    /// cluster.toml.example edits giving vrrpd these parameters (both instances).
    pub fn vrrpd_edits(&self) -> Vec<(&'static str, String)> {
        let mut edits = Vec::new();
        if self.version == 2 {
            edits.push(("version = 3\n", "version = 2\n".to_owned()));
            // The checksum form is a v3 setting: refused on v2.
            edits.push(("checksum = \"pseudo-header\"\n", String::new()));
            edits.push((
                "name = \"server\"\ninterface = \"eth1\"\n",
                "name = \"server\"\ninterface = \"eth1\"\nversion = 2\n".to_owned(),
            ));
        }
        if self.interval_ms != 1000 {
            let to = format!("advert_interval_ms = {}\n", self.interval_ms);
            edits.push(("advert_interval_ms = 1000\n", to.clone()));
            edits.push(("advert_interval_ms = 1000\n", to));
        }
        edits
    }

    /// keepalived's config for one node: the `edge` sync group with
    /// `public` (eth0, VRID 51, 198.18.0.100/24) and `server` (eth1, VRID 52,
    /// 198.18.1.100/24), as cluster.toml.example has them.
    pub fn keepalived_conf(&self, router_id: &str, priority: u8) -> String {
        let advert_int = if self.interval_ms % 1000 == 0 {
            format!("{}", self.interval_ms / 1000)
        } else {
            format!("{:.2}", f64::from(self.interval_ms) / 1000.0)
        };
        let instance = |name: &str, iface: &str, vrid: u8, vip: &str| {
            format!(
                "vrrp_instance {name} {{\n    state BACKUP\n    interface {iface}\n    \
                 virtual_router_id {vrid}\n    priority {priority}\n    advert_int {advert_int}\n    \
                 version {}\n    virtual_ipaddress {{\n        {vip}\n    }}\n}}\n\n",
                self.version
            )
        };
        format!(
            "global_defs {{\n    router_id {router_id}\n}}\n\n\
             vrrp_sync_group edge {{\n    group {{\n        public\n        server\n    }}\n}}\n\n{}{}",
            instance("public", "eth0", 51, "198.18.0.100/24"),
            instance("server", "eth1", 52, "198.18.1.100/24"),
        )
    }
}

/// Starts keepalived (VRRP only, in the foreground, logging to the console)
/// in `host` with `conf`, its files in `dir`.
pub fn start(host: &Host, dir: &Path, conf: &str) -> Process {
    let name = host.name();
    let conf_path = dir.join(format!("{name}-keepalived.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let pid = dir.join(format!("{name}-keepalived.pid"));
    let vrrp_pid = dir.join(format!("{name}-keepalived-vrrp.pid"));
    host.spawn(
        KEEPALIVED,
        [
            "-P",
            "-n",
            "-l",
            "-D",
            "-G",
            "-f",
            conf_path.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
            "-r",
            vrrp_pid.to_str().unwrap(),
        ],
    )
    .unwrap()
}

/// Everything keepalived logged so far (it logs to stdout and stderr).
pub fn log(keepalived: &Process) -> String {
    format!("{}{}", keepalived.stdout(), keepalived.stderr())
}

/// The lines of `log` naming a packet-check failure.
pub fn error_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let l = l.to_lowercase();
            ERROR_PHRASES.iter().any(|p| l.contains(p))
        })
        .map(str::to_owned)
        .collect()
}

/// How many times instance `name` logged entering `state` ("MASTER", "BACKUP").
pub fn entered(log: &str, name: &str, state: &str) -> usize {
    let needle = format!("({name}) Entering {state} STATE");
    log.matches(&needle).count()
}
