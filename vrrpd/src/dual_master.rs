//! Two masters, seen from the one that can tell: a MASTER instance that receives
//! adverts for its own VRID which it must drop (TTL / hop limit, checksum,
//! authentication, interval, version). The peer is sending, so it believes it is
//! MASTER (or BACKUP and about to be); we cannot hear it, so we stay MASTER too.
//! Dropping stays right (the RFC says so), but it is said: in `status`
//! (`instances[].dual_master`), in `vrrp_dual_master` / `vrrp_dual_master_adverts_total`,
//! and in one warning a minute per instance and reason that names the fix.
//!
//! And a split brain that heals (reason `peer_master`): a MASTER instance hears
//! another master of its VRID after having been MASTER for a while (the nodes
//! could not hear each other) and stays MASTER; the state machine has the group
//! re-announce its VIPs and counts the period (`vrrp_split_brain_total`). It is
//! reported the same way, with one warning per period.

use std::net::IpAddr;
use std::time::Duration;

use ctl::contract::vrrpd::DualMasterStatus;
use tokio::time::Instant;
use vrrp::instance::{Counters, State};
use vrrp::packet::{self, Family};

use crate::daemon::{unix_ms, Daemon};
use crate::timers::TimerKey;

/// At most one warning per instance and reason in this long.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The reasons pre-registered in metrics (others appear when seen): decode
/// kinds of the packet, and the instance checks' kinds.
pub(crate) const REASONS: [&str; 6] = [
    "bad_ttl",
    "bad_checksum",
    "auth",
    "interval",
    "version",
    PEER_MASTER,
];

/// The reason of a healed split brain: another master heard, outranked.
pub(crate) const PEER_MASTER: &str = "peer_master";

/// What one MASTER instance saw of a peer whose adverts it drops.
#[derive(Debug, Clone)]
pub(crate) struct DualMaster {
    pub(crate) reason: String,
    pub(crate) peer: IpAddr,
    /// TTL / hop limit of the last one.
    pub(crate) ttl: u8,
    /// Whether the last one was sent unicast (to our address, not the group).
    pub(crate) unicast: bool,
    pub(crate) adverts: u64,
    pub(crate) since_unix_ms: u64,
    pub(crate) last_unix_ms: u64,
    /// When the last warning was logged.
    pub(crate) logged: Option<Instant>,
}

/// How an operator ends it, for the log line and `status`.
pub(crate) fn fix(reason: &str, ttl: u8, unicast: bool, instance: &str) -> String {
    match reason {
        "bad_ttl" if unicast => format!(
            "the peer sends TTL / hop limit {ttl}, not 255: set `unicast_ttl 255` in the peer's \
             vrrp_instance (keepalived), or accept it here with unicast_min_ttl = {ttl} on \
             instance {instance}"
        ),
        "bad_ttl" => format!(
            "the peer's multicast adverts arrive with TTL / hop limit {ttl}, not 255: something \
             routes or rewrites them between the nodes; VRRP multicast must stay on one link"
        ),
        "bad_checksum" => "the peer's checksum does not verify: check its VRRP version and that \
             it sends from its own address (keepalived: no vrrp_strict mismatch, same version)"
            .to_owned(),
        "auth" => format!(
            "the peer's authentication differs: set the same auth_pass on instance {instance} \
             and on the peer (keepalived: authentication {{ auth_type PASS auth_pass ... }})"
        ),
        "interval" => format!(
            "the peer's advert interval differs (VRRPv2 requires the same): set the same \
             advert_interval_ms on instance {instance} and on the peer (keepalived: advert_int)"
        ),
        "version" => format!(
            "the peer speaks another VRRP version: set the same version on instance {instance} \
             and on the peer (keepalived: version)"
        ),
        PEER_MASTER => format!(
            "nothing to change in the configuration: the nodes could not hear each other's \
             adverts for a while (a link or switch between them), so both were MASTER; instance \
             {instance} stays MASTER and re-announced the group's VIPs on every member link. Find \
             what cut the path between the nodes"
        ),
        other => format!("the peer's adverts are refused ({other}): compare its configuration"),
    }
}

/// The instance-check counters an advert can raise when the instance drops it,
/// with the reason each one means.
fn check_drops(c: &Counters) -> [(u64, &'static str); 3] {
    [
        (c.auth_errors, "auth"),
        (c.interval_errors, "interval"),
        (c.version_errors, "version"),
    ]
}

impl Daemon {
    /// The group and instance running `vrid` of `family` on `iface`.
    pub(crate) fn instance_for(
        &self,
        iface: &str,
        vrid: u8,
        ipv6: bool,
    ) -> Option<(String, String)> {
        let group = self.by_advert.get(&(iface.to_owned(), vrid, ipv6))?.clone();
        let plan = self.plan.group(&group)?;
        let inst = plan.instances.iter().find(|i| {
            i.interface == iface && i.vrid == vrid && (i.family == Family::Ipv6) == ipv6
        })?;
        Some((group, inst.name.clone()))
    }

    /// Whether `instance` of `group` is MASTER now.
    fn is_master(&self, group: &str, instance: &str) -> bool {
        self.groups
            .get(group)
            .and_then(|rt| rt.router.instance(instance))
            .is_some_and(|s| s.state == State::Master)
    }

    /// The lowest TTL / hop limit accepted on a unicast advert: the instance's
    /// `unicast_min_ttl`, once the VRID is read from the message; 255 otherwise.
    pub(crate) fn unicast_min_ttl(&self, iface: &str, payload: &[u8], src: IpAddr) -> u8 {
        let Ok((advert, _)) = packet::decode_unverified(payload, Family::of(src)) else {
            return packet::REQUIRED_TTL;
        };
        self.instance_for(iface, advert.vrid, src.is_ipv6())
            .and_then(|(_, name)| self.plan.instance(&name))
            .map_or(packet::REQUIRED_TTL, |p| p.unicast_min_ttl)
    }

    /// A packet refused by the decoder (`kind`): if it is an advert for the VRID
    /// of an instance that is MASTER here, from another address, two masters.
    pub(crate) fn decode_dropped(
        &mut self,
        iface: &str,
        payload: &[u8],
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        kind: &str,
    ) {
        let Ok((advert, _)) = packet::decode_unverified(payload, Family::of(src)) else {
            return;
        };
        let Some((group, instance)) = self.instance_for(iface, advert.vrid, src.is_ipv6()) else {
            return;
        };
        if advert.priority == 0 || !self.is_master(&group, &instance) {
            return;
        }
        let own = self
            .plan
            .group(&group)
            .and_then(|g| g.instance_config(&instance))
            .is_some_and(|c| c.primary_address == src);
        if !own {
            self.peer_dropped(&instance, kind, src, ttl, !dst.is_multicast());
        }
    }

    /// The check counters of the instance an advert is for, if it is MASTER: taken
    /// before the state machine sees the advert, for [`Self::checks_dropped`].
    pub(crate) fn master_counters(&self, group: &str, instance: &str) -> Option<Counters> {
        let rt = self.groups.get(group)?;
        let s = rt.router.instance(instance)?;
        (s.state == State::Master).then_some(s.counters)
    }

    /// After the state machine saw an advert: a check counter that rose since
    /// `before` (the instance was MASTER) means it dropped a peer's advert.
    pub(crate) fn checks_dropped(
        &mut self,
        group: &str,
        instance: &str,
        before: &Counters,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
    ) {
        let Some(after) = self.counters_of(group, instance) else {
            return;
        };
        let rose = check_drops(before)
            .into_iter()
            .zip(check_drops(&after))
            .find(|((b, _), (a, _))| a > b)
            .map(|(_, (_, reason))| reason);
        if let Some(reason) = rose {
            self.peer_dropped(instance, reason, src, ttl, !dst.is_multicast());
        }
    }

    /// An instance's counters now, if the group and instance exist.
    fn counters_of(&self, group: &str, instance: &str) -> Option<Counters> {
        self.groups
            .get(group)
            .and_then(|rt| rt.router.instance(instance))
            .map(|s| s.counters)
    }

    /// After the state machine saw an advert: another master heard by a MASTER
    /// instance that stays MASTER (`before`: its counters until then). A new
    /// split-brain period opens a `peer_master` record; further adverts of the
    /// same period keep it open.
    pub(crate) fn other_master_heard(
        &mut self,
        group: &str,
        instance: &str,
        before: &Counters,
        src: IpAddr,
        ttl: u8,
        unicast: bool,
    ) {
        let Some(after) = self.counters_of(group, instance) else {
            return;
        };
        let new_period = after.split_brains > before.split_brains;
        let open = self
            .dual_masters
            .get(instance)
            .is_some_and(|d| d.reason == PEER_MASTER);
        if new_period || (open && after.other_master_adverts > before.other_master_adverts) {
            self.record_dual_master(instance, PEER_MASTER, src, ttl, unicast, new_period);
        }
    }

    /// Records, exports and (rate-limited) logs one dropped advert of a peer
    /// while `instance` is MASTER.
    fn peer_dropped(&mut self, instance: &str, reason: &str, peer: IpAddr, ttl: u8, unicast: bool) {
        self.record_dual_master(instance, reason, peer, ttl, unicast, false);
    }

    /// One advert of a second master for `instance`'s VRID: the record, the
    /// metrics, a warning (once a minute per reason, or at each new split-brain
    /// period), and the timer that ends it once the peer is quiet.
    fn record_dual_master(
        &mut self,
        instance: &str,
        reason: &str,
        peer: IpAddr,
        ttl: u8,
        unicast: bool,
        new_period: bool,
    ) {
        let now_ms = unix_ms();
        let labels = self.labels(instance);
        let record = self
            .dual_masters
            .entry(instance.to_owned())
            .or_insert_with(|| DualMaster {
                reason: reason.to_owned(),
                peer,
                ttl,
                unicast,
                adverts: 0,
                since_unix_ms: now_ms,
                last_unix_ms: now_ms,
                logged: None,
            });
        if record.reason != reason || new_period {
            self.telemetry.dual_master(&labels, &record.reason, false);
            record.reason = reason.to_owned();
            record.since_unix_ms = now_ms;
            record.adverts = 0;
            record.logged = None;
        }
        record.peer = peer;
        record.ttl = ttl;
        record.unicast = unicast;
        record.adverts += 1;
        record.last_unix_ms = now_ms;
        let log = record.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if log {
            record.logged = Some(Instant::now());
        }
        self.telemetry.dual_master(&labels, reason, true);
        self.telemetry.dual_master_advert(&labels, reason);
        if log && reason == PEER_MASTER {
            tracing::warn!(
                instance,
                group = %labels.group,
                iface = %labels.interface,
                vrid = %labels.vrid,
                peer = %peer,
                reason,
                "two masters: {peer} was MASTER of this VRID too (split brain); this node \
                 outranks it and stays MASTER, the group's VIPs re-announced on every member link. \
                 {}",
                fix(reason, ttl, unicast, instance)
            );
        } else if log {
            tracing::warn!(
                instance,
                group = %labels.group,
                iface = %labels.interface,
                vrid = %labels.vrid,
                peer = %peer,
                reason,
                ttl,
                "two masters: this MASTER drops the adverts of {peer}, which claims the same VRID \
                 ({reason}), so neither node yields. Fix: {}",
                fix(reason, ttl, unicast, instance)
            );
        }
        // Over once the peer has been quiet for a Master_Down_Interval's worth.
        let interval = self
            .plan
            .group(&labels.group)
            .and_then(|g| g.instance_config(instance))
            .map_or(Duration::from_secs(1), |c| {
                Duration::from_millis(u64::from(c.advert_interval_cs) * 10)
            });
        let at = self.clock.now() + interval * 3 + Duration::from_secs(1);
        self.timers.arm(
            TimerKey::DualMasterQuiet {
                instance: instance.to_owned(),
            },
            at,
        );
    }

    /// No dropped advert for a while: no longer two masters (as far as we see).
    pub(crate) fn dual_master_quiet(&mut self, instance: &str) {
        if let Some(record) = self.dual_masters.remove(instance) {
            let labels = self.labels(instance);
            self.telemetry.dual_master(&labels, &record.reason, false);
            tracing::info!(instance, peer = %record.peer, reason = %record.reason, adverts = record.adverts, "two masters: no more adverts from the other master");
        }
    }

    /// `status` of an instance's two-master suspicion (null when none).
    pub(crate) fn dual_master_status(&self, instance: &str) -> Option<DualMasterStatus> {
        let d = self.dual_masters.get(instance)?;
        Some(DualMasterStatus {
            reason: d.reason.clone(),
            peer: d.peer,
            ttl: d.ttl,
            unicast: d.unicast,
            adverts: d.adverts,
            since_unix_ms: d.since_unix_ms,
            last_unix_ms: d.last_unix_ms,
            fix: fix(&d.reason, d.ttl, d.unicast, instance),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_names_both_ends() {
        let text = fix("bad_ttl", 64, true, "public6");
        assert!(text.contains("unicast_ttl 255"), "{text}");
        assert!(
            text.contains("unicast_min_ttl = 64 on instance public6"),
            "{text}"
        );
        let text = fix("bad_ttl", 254, false, "public");
        assert!(!text.contains("unicast_min_ttl"), "{text}");
        assert!(fix("auth", 255, false, "public").contains("auth_pass"));
        assert!(fix(PEER_MASTER, 255, false, "public").contains("re-announced"));
    }
}
