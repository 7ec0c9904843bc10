//! IP forwarding on the node, and what needs it.
//!
//! With NAT forwarding (`mode = "nat"`, either backend) the node routes the client's
//! packets to a server and the server's answers, once conntrack has undone the SNAT,
//! back to the client: the kernel must forward (`net.ipv4.ip_forward`,
//! `net.ipv6.conf.all.forwarding`). Direct routing and tunnels do not need it (IPVS
//! sends those packets from its input hook and the servers answer the clients
//! directly). SNAT rules rewrite traffic the node forwards, so they count too.
//!
//! Neither lbd nor the package sets these host-wide sysctls; lbd reads them at
//! start, at each reload and every second, and says when a family that needs
//! forwarding lacks it: a warning when that starts (and a line when it ends), the
//! `forwarding` field of its status, and the `lbd_ip_forwarding` gauges.

use std::net::IpAddr;

use config::{Forwarding, NodeView};
use ctl::contract::lbd::ForwardingStatus;

use crate::telemetry::Telemetry;

/// An address family and its forwarding sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `net.ipv4.ip_forward`.
    Ipv4,
    /// `net.ipv6.conf.all.forwarding`.
    Ipv6,
}

impl Family {
    /// Both families, in the order status lists them.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// `ipv4` or `ipv6` (status, the metric's `family` label).
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The sysctl that turns forwarding on.
    pub fn sysctl(self) -> &'static str {
        match self {
            Family::Ipv4 => "net.ipv4.ip_forward",
            Family::Ipv6 => "net.ipv6.conf.all.forwarding",
        }
    }

    /// The sysctl's file; /proc/sys/net is the reading thread's network namespace.
    fn path(self) -> &'static str {
        match self {
            Family::Ipv4 => "/proc/sys/net/ipv4/ip_forward",
            Family::Ipv6 => "/proc/sys/net/ipv6/conf/all/forwarding",
        }
    }

    fn of(address: IpAddr) -> Family {
        if address.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }
}

/// What of `family` in `view` the node forwards: `service NAME` for each service
/// with NAT forwarding, `nat NAME` for each SNAT rule.
pub fn needed_by(view: &NodeView, family: Family) -> Vec<String> {
    let services = view
        .services
        .iter()
        .filter(|s| s.mode == Forwarding::Nat && Family::of(s.vip) == family)
        .map(|s| format!("service {}", s.name));
    let rules = view
        .nat
        .iter()
        .filter(|r| Family::of(r.destination) == family)
        .map(|r| format!("nat {}", r.name));
    services.chain(rules).collect()
}

/// A forwarding sysctl's text: `0` is off, any other number on.
pub fn parse(text: &str) -> Result<bool, String> {
    text.trim()
        .parse::<i64>()
        .map(|v| v != 0)
        .map_err(|_| format!("not a number: {:?}", text.trim()))
}

/// Reads `family`'s sysctl in this thread's network namespace.
pub fn read(family: Family) -> Result<bool, String> {
    std::fs::read_to_string(family.path())
        .map_err(|e| format!("{}: {e}", family.path()))
        .and_then(|t| parse(&t))
}

/// A family whose forwarding went missing or came back at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The family's status after the check.
    pub status: ForwardingStatus,
    /// It is missing now (else: it was before).
    pub missing: bool,
}

/// What lbd last read of forwarding, per family.
#[derive(Debug, Clone)]
pub struct ForwardingWatch {
    families: Vec<ForwardingStatus>,
    /// The fingerprint of the file whose view `needed_by` was listed for: listing
    /// 10,000s of services each second (and at each reload) is skipped while the
    /// file is the same. Empty: list again.
    listed_for: String,
}

impl Default for ForwardingWatch {
    fn default() -> Self {
        ForwardingWatch {
            families: Family::ALL
                .iter()
                .map(|f| ForwardingStatus {
                    family: f.name().to_owned(),
                    sysctl: f.sysctl().to_owned(),
                    ..ForwardingStatus::default()
                })
                .collect(),
            listed_for: String::new(),
        }
    }
}

impl ForwardingWatch {
    /// Reads both sysctls against what `view` needs and tells: metrics, and a log
    /// line for each family that went missing or came back.
    pub fn check(&mut self, view: &NodeView, telemetry: &Telemetry, unix_ms: u64) {
        for change in self.update(view, read, unix_ms) {
            say(&change);
        }
        for s in &self.families {
            telemetry.forwarding(&s.family, s.enabled == Some(true), s.needed_by.len());
        }
    }

    /// The families as status shows them.
    pub fn statuses(&self) -> Vec<ForwardingStatus> {
        self.families.clone()
    }

    /// Records what `read` says of each family against what `view` needs; the
    /// families whose [`ForwardingStatus::missing`] changed (at the first check:
    /// those missing).
    pub fn update(
        &mut self,
        view: &NodeView,
        read: impl Fn(Family) -> Result<bool, String>,
        unix_ms: u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let listed = !view.fingerprint.is_empty() && view.fingerprint == self.listed_for;
        self.listed_for.clone_from(&view.fingerprint);
        for (family, status) in Family::ALL.iter().zip(&mut self.families) {
            let was = status.missing();
            let value = read(*family);
            status.enabled = value.as_ref().ok().copied();
            status.error = value.err();
            if !listed {
                status.needed_by = needed_by(view, *family);
            }
            status.checked_unix_ms = unix_ms;
            if status.missing() != was {
                changes.push(Change {
                    status: status.clone(),
                    missing: !was,
                });
            }
        }
        changes
    }
}

/// The log line of a change: a warning naming the sysctl, what needs it and the
/// fix, or the line that it is over.
fn say(change: &Change) {
    let s = &change.status;
    let needed = s.needed_by.join(", ");
    match (change.missing, &s.error) {
        (true, Some(e)) => tracing::warn!(
            family = %s.family, sysctl = %s.sysctl, needed_by = %needed, error = %e,
            "cannot read {}: {needed} need it set to 1 on this node, or their servers' answers are not forwarded to the clients (docs/operations.md, \"Forwarding on the nodes\")",
            s.sysctl
        ),
        (true, None) => tracing::warn!(
            family = %s.family, sysctl = %s.sysctl, needed_by = %needed,
            "{} is 0 on this node: {needed} get no answers from their servers (NAT forwarding routes them back through this node); set it: `sysctl -w {}=1`, and keep it in /etc/sysctl.d (docs/operations.md, \"Forwarding on the nodes\")",
            s.sysctl, s.sysctl
        ),
        (false, _) if s.needed_by.is_empty() => tracing::info!(
            family = %s.family, sysctl = %s.sysctl,
            "{} is off, and nothing configured needs it any more", s.sysctl
        ),
        (false, _) => tracing::info!(
            family = %s.family, sysctl = %s.sysctl, needed_by = %needed,
            "{} is 1 again: the node forwards for {needed}", s.sysctl
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str) -> NodeView {
        config::parse(text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap()
    }

    fn example() -> String {
        include_str!("../../cluster.toml.example").to_owned()
    }

    #[test]
    fn nat_services_and_snat_rules_need_their_familys_forwarding() {
        let v = view(&example());
        assert_eq!(needed_by(&v, Family::Ipv4), ["service web", "nat web-snat"]);
        assert!(needed_by(&v, Family::Ipv6).is_empty());
    }

    #[test]
    fn direct_routing_does_not_need_forwarding() {
        let text = example().replacen("mode = \"nat\"", "mode = \"dr\"", 1);
        assert!(text.contains("mode = \"dr\""));
        assert_eq!(needed_by(&view(&text), Family::Ipv4), ["nat web-snat"]);
    }

    #[test]
    fn sysctl_text_reads_as_on_or_off() {
        assert_eq!(parse("1\n"), Ok(true));
        assert_eq!(parse("0\n"), Ok(false));
        assert_eq!(parse("2"), Ok(true));
        assert!(parse("yes").is_err());
    }

    #[test]
    fn a_change_is_told_once_each_way_and_only_where_needed() {
        let v = view(&example());
        let mut watch = ForwardingWatch::default();
        let off = |_: Family| Ok(false);
        let on = |_: Family| Ok(true);
        // IPv4 services need it; nothing IPv6 does: only ipv4 goes missing.
        let first = watch.update(&v, off, 1);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].status.family, "ipv4");
        assert!(first[0].missing);
        assert!(watch.update(&v, off, 2).is_empty(), "not again each tick");
        let back = watch.update(&v, on, 3);
        assert_eq!(back.len(), 1);
        assert!(!back[0].missing);
        assert!(watch.update(&v, on, 4).is_empty());
        let status = watch.statuses();
        assert_eq!(status[0].sysctl, "net.ipv4.ip_forward");
        assert_eq!(status[0].enabled, Some(true));
        assert_eq!(status[0].checked_unix_ms, 4);
        assert_eq!(status[1].sysctl, "net.ipv6.conf.all.forwarding");
        // Unreadable counts as missing, with the reason.
        let unreadable = watch.update(&v, |_| Err("gone".to_owned()), 5);
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].status.error.as_deref(), Some("gone"));
        assert_eq!(unreadable[0].status.enabled, None);
    }
}
