//! vrrpd's Prometheus metrics (documented in docs/metrics.md).

use std::collections::HashMap;
use std::time::Duration;

use prometheus::{
    exponential_buckets, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry,
};
use vrrp::instance::{Counters, State};

/// Every state an instance can be in, as the `state` label spells it.
pub const STATES: [State; 5] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
    State::Maintenance,
];

/// The `state` label value of a state.
pub fn state_label(state: State) -> &'static str {
    match state {
        State::Initialize => "init",
        State::Backup => "backup",
        State::Master => "master",
        State::Fault => "fault",
        State::Maintenance => "maintenance",
    }
}

/// Takeover phases, measured from the decision to take over.
pub const PHASES: [&str; 4] = ["prepare", "vips_added", "first_advert", "garp_sent"];

/// The label set of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceLabels {
    /// Instance name (the `vrrp_instance` label).
    pub instance: String,
    /// Sync group.
    pub group: String,
    /// Interface.
    pub interface: String,
    /// VRID as text.
    pub vrid: String,
}

impl InstanceLabels {
    fn values(&self) -> [&str; 4] {
        [&self.instance, &self.group, &self.interface, &self.vrid]
    }
}

// `vrrp_instance`, not `instance`: Prometheus sets `instance` on every
// scraped series (the target), and a clash would rename ours.
const INSTANCE: [&str; 4] = ["vrrp_instance", "group", "interface", "vrid"];

/// The metric families vrrpd exports.
#[derive(Clone)]
pub struct Telemetry {
    registry: Registry,
    state: IntGaugeVec,
    priority: IntGaugeVec,
    effective_priority: IntGaugeVec,
    adverts_sent: IntCounterVec,
    advert_send_errors: IntCounterVec,
    adverts_received: IntCounterVec,
    priority_zero_sent: IntCounterVec,
    priority_zero_received: IntCounterVec,
    became_master: IntCounterVec,
    left_master: IntCounterVec,
    advert_checks_failed: IntCounterVec,
    transitions: IntCounterVec,
    last_transition: GaugeVec,
    gratuitous_sent: IntCounterVec,
    decode_errors: IntCounterVec,
    ttl_errors: IntCounterVec,
    unknown_vrid: IntCounterVec,
    prepare_misses: IntCounterVec,
    vip_errors: IntCounterVec,
    takeover_phase: HistogramVec,
    last_takeover_phase: GaugeVec,
    preempt_hold: IntGaugeVec,
    preempt_hold_expired: IntCounterVec,
    realtime_priority: IntGaugeVec,
    memory_locked: IntGaugeVec,
    dual_master: IntGaugeVec,
    dual_master_adverts: IntCounterVec,
    split_brains: IntCounterVec,
    late_master_down_graces: IntCounterVec,
    vip_add_failures: IntCounterVec,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| {
        // Names and labels are constants: a failure is a programming error.
        unreachable!("metric {name}: {e}")
    });
    registry
        .register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    c
}

fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    g
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    g
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    /// Registers every family in a fresh registry (no `cluster` label).
    pub fn new() -> Self {
        Telemetry::for_cluster("")
    }

    /// Registers every family in a fresh registry whose series carry
    /// `cluster="<cluster>"`, beside `vrrp_build_info` and the process metrics.
    pub fn for_cluster(cluster: &str) -> Self {
        let r = metrics::daemon_registry(metrics::DaemonInfo {
            prefix: "vrrp",
            version: env!("CARGO_PKG_VERSION"),
            cluster,
        });
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            INSTANCE.iter().chain(extra).copied().collect()
        };
        let phase_opts = HistogramOpts::new(
            "vrrp_takeover_phase_seconds",
            "Time from the decision to take over to the end of each phase (prepare, vips_added, first_advert, garp_sent).",
        )
        .buckets(exponential_buckets(0.000_25, 2.0, 16).unwrap_or_default());
        let takeover_phase = HistogramVec::new(phase_opts, &["group", "phase"])
            .unwrap_or_else(|e| unreachable!("histogram: {e}"));
        r.register(Box::new(takeover_phase.clone()))
            .unwrap_or_else(|e| unreachable!("histogram: {e}"));
        let t = Telemetry {
            state: int_gauge(&r, "vrrp_instance_state", "1 for the instance's current state, 0 for the others.", &with(&["state"])),
            priority: int_gauge(&r, "vrrp_instance_priority", "Configured priority.", &INSTANCE),
            effective_priority: int_gauge(&r, "vrrp_instance_effective_priority", "Priority after tracked-interface weights (what adverts carry).", &INSTANCE),
            adverts_sent: counter(&r, "vrrp_adverts_sent_total", "Adverts sent (one per destination, priority 0 included).", &INSTANCE),
            advert_send_errors: counter(&r, "vrrp_advert_send_errors_total", "Adverts that could not be encoded or sent.", &INSTANCE),
            adverts_received: counter(&r, "vrrp_adverts_received_total", "Valid adverts delivered to the instance.", &INSTANCE),
            priority_zero_sent: counter(&r, "vrrp_priority_zero_sent_total", "Priority-0 (release) adverts sent.", &INSTANCE),
            priority_zero_received: counter(&r, "vrrp_priority_zero_received_total", "Priority-0 (release) adverts received.", &INSTANCE),
            became_master: counter(&r, "vrrp_become_master_total", "Transitions to MASTER.", &INSTANCE),
            left_master: counter(&r, "vrrp_release_master_total", "Transitions out of MASTER.", &INSTANCE),
            advert_checks_failed: counter(&r, "vrrp_advert_check_errors_total", "Adverts discarded by the instance's checks (kind: version, interval, address_list, auth).", &with(&["kind"])),
            transitions: counter(&r, "vrrp_transitions_total", "State transitions.", &with(&["from", "to"])),
            last_transition: gauge(&r, "vrrp_last_transition_timestamp_seconds", "Unix time of the instance's last state transition.", &INSTANCE),
            gratuitous_sent: counter(&r, "vrrp_gratuitous_sent_total", "Gratuitous ARP / unsolicited NA frames sent.", &INSTANCE),
            decode_errors: counter(&r, "vrrp_decode_errors_total", "Received VRRP packets refused by the decoder, by kind.", &["interface", "kind"]),
            ttl_errors: counter(&r, "vrrp_ttl_errors_total", "Received VRRP packets whose TTL / hop limit was not 255.", &["interface"]),
            unknown_vrid: counter(&r, "vrrp_unknown_vrid_total", "Valid adverts for a VRID no instance runs on the interface.", &["interface"]),
            prepare_misses: counter(&r, "vrrp_prepare_misses_total", "Takeovers that went on without lbd's prepare acknowledgement (reason: absent, timeout, error).", &["group", "reason"]),
            vip_errors: counter(&r, "vrrp_vip_errors_total", "VIP add / remove steps the kernel refused (op: add, remove).", &["group", "op"]),
            last_takeover_phase: gauge(&r, "vrrp_takeover_last_phase_seconds", "The last takeover's phase times, from the decision.", &["group", "phase"]),
            preempt_hold: int_gauge(&r, "vrrp_preempt_hold", "1 while preemption is held back because lbd lacks the peer's connection state.", &[]),
            preempt_hold_expired: counter(&r, "vrrp_preempt_hold_expired_total", "Preemption holds that ran out ([sync] preempt_wait_ms) before lbd had the peer's connection state.", &[]),
            realtime_priority: int_gauge(&r, "vrrp_realtime_priority", "Real-time priority (SCHED_RR/FIFO) vrrpd's event loop runs at; 0 for normal scheduling ([vrrpd] realtime_priority).", &[]),
            memory_locked: int_gauge(&r, "vrrp_memory_locked", "1 if vrrpd's memory is locked into RAM (mlockall; [vrrpd] lock_memory).", &[]),
            dual_master: int_gauge(&r, "vrrp_dual_master", "1 while this MASTER instance drops a peer's adverts for its VRID (both nodes MASTER), by reason (bad_ttl, bad_checksum, auth, interval, version, ...); reason peer_master: it heard another master it outranks (a split brain healing).", &with(&["reason"])),
            dual_master_adverts: counter(&r, "vrrp_dual_master_adverts_total", "Adverts of a peer claiming the instance's VRID dropped while the instance was MASTER, by reason; peer_master: adverts of another master heard during a split brain.", &with(&["reason"])),
            late_master_down_graces: counter(&r, "vrrp_master_down_late_total", "Master_Down_Timers that fired more than half an advert interval late (vrrpd was held up), or whose interval saw the hypervisor steal half an advert interval, and waited one more advert interval for the master's adverts ([vrrpd] late_timer_grace).", &INSTANCE),
            vip_add_failures: counter(&r, "vrrp_takeover_vip_failures_total", "Takeovers given up because the instance's VIPs could not be added: it went to FAULT, released with priority 0 and removed its group's VIPs.", &INSTANCE),
            split_brains: counter(&r, "vrrp_split_brain_total", "Split brains healed with this instance staying MASTER: periods in which it heard another master of its VRID after being MASTER for a Master_Down_Interval or more (the group's VIPs re-announced each time).", &INSTANCE),
            takeover_phase,
            registry: r,
        };
        // Unlabelled series exist from the start, at 0.
        t.preempt_hold(false);
        t.realtime(0, false);
        t.preempt_hold_expired
            .with_label_values(&[] as &[&str])
            .inc_by(0);
        t
    }

    /// Serves the control socket's connection counters (`vrrp_control_*`).
    pub fn control_socket(&self, stats: std::sync::Arc<ctl::ServerStats>) {
        match ctl::StatsCollector::new("vrrp", stats) {
            // Registered once per process; a second registration is a harmless no-op.
            Ok(c) => drop(self.registry.register(Box::new(c))),
            Err(e) => tracing::warn!(error = %e, "control socket metrics unavailable"),
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates every series of an instance at 0 so dashboards see it at once.
    pub fn register_instance(&self, l: &InstanceLabels, priority: u8) {
        let v = l.values();
        for s in STATES {
            let mut with = v.to_vec();
            with.push(state_label(s));
            self.state.with_label_values(&with).set(0);
        }
        self.priority.with_label_values(&v).set(i64::from(priority));
        self.effective_priority
            .with_label_values(&v)
            .set(i64::from(priority));
        self.last_transition.with_label_values(&v);
        for from in STATES {
            for to in STATES.into_iter().filter(|to| *to != from) {
                let mut with = v.to_vec();
                with.extend([state_label(from), state_label(to)]);
                self.transitions.with_label_values(&with);
            }
        }
        for c in [
            &self.adverts_sent,
            &self.advert_send_errors,
            &self.adverts_received,
            &self.priority_zero_sent,
            &self.priority_zero_received,
            &self.became_master,
            &self.left_master,
            &self.gratuitous_sent,
            &self.split_brains,
            &self.late_master_down_graces,
            &self.vip_add_failures,
        ] {
            c.with_label_values(&v);
        }
        for kind in CHECK_KINDS {
            let mut with = v.to_vec();
            with.push(kind);
            self.advert_checks_failed.with_label_values(&with);
        }
        for reason in crate::dual_master::REASONS {
            let mut with = v.to_vec();
            with.push(reason);
            self.dual_master.with_label_values(&with).set(0);
            self.dual_master_adverts.with_label_values(&with);
        }
    }

    /// Whether an instance is MASTER beside a peer whose adverts it drops for `reason`.
    pub fn dual_master(&self, l: &InstanceLabels, reason: &str, on: bool) {
        let mut with = l.values().to_vec();
        with.push(reason);
        self.dual_master.with_label_values(&with).set(i64::from(on));
    }

    /// One such advert dropped.
    pub fn dual_master_advert(&self, l: &InstanceLabels, reason: &str) {
        let mut with = l.values().to_vec();
        with.push(reason);
        self.dual_master_adverts.with_label_values(&with).inc();
    }

    /// Creates every decode-error kind of an interface at 0.
    pub fn register_interface(&self, interface: &str) {
        for kind in vrrp::error::DecodeError::KINDS {
            self.decode_errors.with_label_values(&[interface, kind]);
        }
        self.ttl_errors.with_label_values(&[interface]);
        self.unknown_vrid.with_label_values(&[interface]);
    }

    /// Creates a group's takeover series at 0 (the phase histograms empty).
    pub fn register_group(&self, group: &str) {
        for phase in PHASES {
            self.takeover_phase.with_label_values(&[group, phase]);
            self.last_takeover_phase
                .with_label_values(&[group, phase])
                .set(0.0);
        }
        for reason in ["absent", "timeout", "error"] {
            self.prepare_misses.with_label_values(&[group, reason]);
        }
        for op in ["add", "remove"] {
            self.vip_errors.with_label_values(&[group, op]);
        }
    }

    /// An instance changed state.
    pub fn transition(&self, l: &InstanceLabels, from: State, to: State, unix_seconds: f64) {
        let v = l.values();
        for s in STATES {
            let mut with = v.to_vec();
            with.push(state_label(s));
            self.state.with_label_values(&with).set(i64::from(s == to));
        }
        let mut with = v.to_vec();
        with.extend([state_label(from), state_label(to)]);
        self.transitions.with_label_values(&with).inc();
        self.last_transition.with_label_values(&v).set(unix_seconds);
    }

    /// Priorities as the state machine reports them.
    pub fn priorities(&self, l: &InstanceLabels, configured: u8, effective: u8) {
        let v = l.values();
        self.priority
            .with_label_values(&v)
            .set(i64::from(configured));
        self.effective_priority
            .with_label_values(&v)
            .set(i64::from(effective));
    }

    /// The state machine's counters grew from `before` to `now`.
    pub fn counters(&self, l: &InstanceLabels, before: &Counters, now: &Counters) {
        let v = l.values();
        let add = |c: &IntCounterVec, b: u64, n: u64| {
            if n > b {
                c.with_label_values(&v).inc_by(n - b);
            }
        };
        add(
            &self.adverts_received,
            before.adverts_received,
            now.adverts_received,
        );
        add(
            &self.priority_zero_received,
            before.priority_zero_received,
            now.priority_zero_received,
        );
        add(
            &self.priority_zero_sent,
            before.priority_zero_sent,
            now.priority_zero_sent,
        );
        add(&self.became_master, before.became_master, now.became_master);
        add(&self.left_master, before.left_master, now.left_master);
        add(&self.split_brains, before.split_brains, now.split_brains);
        add(
            &self.vip_add_failures,
            before.vip_add_failures,
            now.vip_add_failures,
        );
        add(
            &self.late_master_down_graces,
            before.late_master_down_graces,
            now.late_master_down_graces,
        );
        for (kind, b, n) in [
            ("version", before.version_errors, now.version_errors),
            ("interval", before.interval_errors, now.interval_errors),
            (
                "address_list",
                before.address_list_errors,
                now.address_list_errors,
            ),
            ("auth", before.auth_errors, now.auth_errors),
        ] {
            if n > b {
                let mut with = v.to_vec();
                with.push(kind);
                self.advert_checks_failed
                    .with_label_values(&with)
                    .inc_by(n - b);
            }
        }
    }

    /// An advert went out.
    pub fn advert_sent(&self, l: &InstanceLabels) {
        self.adverts_sent.with_label_values(&l.values()).inc();
    }

    /// An advert could not be sent.
    pub fn advert_send_error(&self, l: &InstanceLabels) {
        self.advert_send_errors.with_label_values(&l.values()).inc();
    }

    /// Gratuitous frames went out.
    pub fn gratuitous(&self, l: &InstanceLabels, frames: u64) {
        self.gratuitous_sent
            .with_label_values(&l.values())
            .inc_by(frames);
    }

    /// A received packet failed decoding.
    pub fn decode_error(&self, interface: &str, kind: &str) {
        self.decode_errors
            .with_label_values(&[interface, kind])
            .inc();
        if kind == "bad_ttl" {
            self.ttl_errors.with_label_values(&[interface]).inc();
        }
    }

    /// An advert for no instance of ours.
    pub fn unknown_vrid(&self, interface: &str) {
        self.unknown_vrid.with_label_values(&[interface]).inc();
    }

    /// A prepare that did not succeed in time.
    pub fn prepare_miss(&self, group: &str, reason: &str) {
        self.prepare_misses
            .with_label_values(&[group, reason])
            .inc();
    }

    /// Whether preemption is held back now.
    pub fn preempt_hold(&self, held: bool) {
        self.preempt_hold
            .with_label_values(&[] as &[&str])
            .set(i64::from(held));
    }

    /// A preemption hold ran out.
    pub fn preempt_hold_expired(&self) {
        self.preempt_hold_expired
            .with_label_values(&[] as &[&str])
            .inc();
    }

    /// What `[vrrpd]` got at start-up: the event loop's real-time priority (0:
    /// normal scheduling) and whether memory is locked.
    pub fn realtime(&self, priority: u8, memory_locked: bool) {
        self.realtime_priority
            .with_label_values(&[] as &[&str])
            .set(i64::from(priority));
        self.memory_locked
            .with_label_values(&[] as &[&str])
            .set(i64::from(memory_locked));
    }

    /// A VIP step the kernel refused.
    pub fn vip_error(&self, group: &str, op: &str) {
        self.vip_errors.with_label_values(&[group, op]).inc();
    }

    /// A takeover reached the end of `phase` after `elapsed`.
    pub fn phase(&self, group: &str, phase: &str, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        self.takeover_phase
            .with_label_values(&[group, phase])
            .observe(s);
        self.last_takeover_phase
            .with_label_values(&[group, phase])
            .set(s);
    }

    /// The text exposition of every metric (what /metrics serves).
    pub fn render(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The `kind` values of `vrrp_advert_check_errors_total`.
pub const CHECK_KINDS: [&str; 4] = ["version", "interval", "address_list", "auth"];

/// Per-instance snapshot of the state machine's counters, to export deltas.
pub type CounterSnapshots = HashMap<String, Counters>;

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> InstanceLabels {
        InstanceLabels {
            instance: "public".into(),
            group: "edge".into(),
            interface: "eth0".into(),
            vrid: "51".into(),
        }
    }

    #[test]
    fn every_series_exists_at_zero_after_registration() {
        let t = Telemetry::new();
        t.register_instance(&labels(), 150);
        t.register_interface("eth0");
        t.register_group("edge");
        let text = t.render();
        assert!(text.contains(
            r#"vrrp_instance_state{group="edge",interface="eth0",state="master",vrid="51",vrrp_instance="public"} 0"#
        ));
        assert!(text.contains(r#"vrrp_instance_priority{group="edge",interface="eth0",vrid="51",vrrp_instance="public"} 150"#));
        for kind in vrrp::error::DecodeError::KINDS {
            assert!(
                text.contains(&format!(
                    r#"vrrp_decode_errors_total{{interface="eth0",kind="{kind}"}} 0"#
                )),
                "{kind} missing"
            );
        }
        assert!(text.contains(r#"vrrp_prepare_misses_total{group="edge",reason="timeout"} 0"#));
    }

    #[test]
    fn transitions_move_the_state_gauge_and_count() {
        let t = Telemetry::new();
        let l = labels();
        t.register_instance(&l, 150);
        t.transition(&l, State::Initialize, State::Backup, 1.0);
        t.transition(&l, State::Backup, State::Master, 2.0);
        let text = t.render();
        assert!(text.contains(r#"state="master",vrid="51",vrrp_instance="public"} 1"#));
        assert!(text.contains(r#"state="backup",vrid="51",vrrp_instance="public"} 0"#));
        assert!(text.contains(r#"vrrp_transitions_total{from="backup",group="edge",interface="eth0",to="master",vrid="51",vrrp_instance="public"} 1"#));
        assert!(text.contains(r#"vrrp_last_transition_timestamp_seconds{group="edge",interface="eth0",vrid="51",vrrp_instance="public"} 2"#));
        t.decode_error("eth0", "bad_ttl");
        let text = t.render();
        assert!(text.contains(r#"vrrp_ttl_errors_total{interface="eth0"} 1"#));
        assert!(text.contains(r#"vrrp_decode_errors_total{interface="eth0",kind="bad_ttl"} 1"#));
    }

    #[test]
    fn counter_deltas_are_exported_once() {
        let t = Telemetry::new();
        let l = labels();
        let before = Counters::default();
        let now = Counters {
            adverts_received: 3,
            address_list_errors: 1,
            ..Counters::default()
        };
        t.counters(&l, &before, &now);
        t.counters(&l, &now, &now);
        let text = t.render();
        assert!(text.contains(r#"vrrp_adverts_received_total{group="edge",interface="eth0",vrid="51",vrrp_instance="public"} 3"#));
        assert!(text.contains(r#"kind="address_list",vrid="51",vrrp_instance="public"} 1"#));
    }
}
