//! Carrying out the state machine's actions, in the order it gives them:
//! lbd's prepare, then member by member VIPs, advert, GARP / NA burst, timers; the
//! state reports (logs, events, transition records) after the batch, off the
//! takeover's path. A member whose VIPs fail takes back the ones the state machine
//! names, and the rest of the takeover (adverts, VIPs, bursts) is not carried out:
//! the caller reports the failure to the state machine, which releases.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctl::contract::lbd::{PrepareParams, PrepareReply};
use ctl::contract::vrrpd::GroupStateEvent;
use netif::AddressSpec;
use tokio::time::Instant;
use vrrp::action::{Action, Destination, Reason, VipSet};
use vrrp::instance::State;
use vrrp::packet::{self, Advertisement, Family, IpContext};

use crate::daemon::{
    reason_name, state_name, unix_ms, vrrp_state, Daemon, TakeoverRecord, TransitionRecord,
};
use crate::telemetry::Telemetry;
use crate::timers::TimerKey;

/// Why lbd's prepare did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareMiss {
    /// No lbd listening on its socket.
    Absent,
    /// No answer within the budget.
    Timeout,
    /// lbd answered with an error, or the connection failed.
    Error,
}

impl PrepareMiss {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            PrepareMiss::Absent => "absent",
            PrepareMiss::Timeout => "timeout",
            PrepareMiss::Error => "error",
        }
    }
}

/// Asks lbd to prepare a takeover, waiting at most `budget` in all
/// (connect included).
pub async fn prepare(
    lbd_socket: &std::path::Path,
    budget: Duration,
    group: Option<&str>,
    instances: &[String],
) -> Result<PrepareReply, (PrepareMiss, String)> {
    // No socket file, no lbd: say so without a connect (this is a takeover's path).
    if let Err(e) = std::fs::symlink_metadata(lbd_socket) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return Err((
                PrepareMiss::Absent,
                format!("no lbd socket at {}", lbd_socket.display()),
            ));
        }
    }
    let params = PrepareParams {
        group: group.map(str::to_owned),
        instances: instances.to_vec(),
    };
    let exchange = async {
        let client = ctl::Client::connect(lbd_socket).await?;
        client
            .call_with_timeout(ctl::methods::PREPARE, &params, budget)
            .await
    };
    match tokio::time::timeout(budget, exchange).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e @ ctl::CtlError::NotRunning { .. })) => Err((PrepareMiss::Absent, e.to_string())),
        Ok(Err(e @ ctl::CtlError::Timeout { .. })) => Err((PrepareMiss::Timeout, e.to_string())),
        Ok(Err(e)) => Err((PrepareMiss::Error, e.to_string())),
        Err(_) => Err((
            PrepareMiss::Timeout,
            format!("no answer within {} ms", budget.as_millis()),
        )),
    }
}

/// Counts down the GARP bursts of one takeover; the last one records the
/// `garp_sent` phase.
struct GarpTracker {
    group: String,
    started: Instant,
    remaining: AtomicUsize,
    record: Arc<Mutex<TakeoverRecord>>,
}

impl GarpTracker {
    fn burst_done(&self, telemetry: &Telemetry) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let elapsed = self.started.elapsed();
            telemetry.phase(&self.group, "garp_sent", elapsed);
            if let Ok(mut r) = self.record.lock() {
                r.phases_ms.set("garp_sent", elapsed.as_secs_f64() * 1000.0);
            }
        }
    }
}

/// One takeover being carried out.
struct Takeover {
    record: Arc<Mutex<TakeoverRecord>>,
    first_advert: bool,
    garp: Option<Arc<GarpTracker>>,
}

impl Daemon {
    /// Carries out `actions` of `group` in order. Returns the instance whose VIPs
    /// could not be added, if one could not: the rest of that takeover was not
    /// carried out, and the state machine must hear of it (`Input::VipAddFailed`).
    pub(crate) async fn execute(
        &mut self,
        group: &str,
        actions: Vec<Action>,
        started: Instant,
    ) -> Option<String> {
        let bursts = actions
            .iter()
            .filter(|a| matches!(a, Action::SendGratuitous { .. }))
            .count();
        let mut takeover: Option<Takeover> = None;
        // Logs, events and records of transitions wait until the batch's packets and
        // VIPs are out: they cost a write each, and a takeover must not wait on them.
        let mut notices: Vec<Action> = Vec::new();
        let mut missed: Option<(PrepareMiss, Duration, String)> = None;
        let mut vips_changed: Vec<(bool, Vec<String>)> = Vec::new();
        // The members whose VIPs this batch added, to take back if a later one fails.
        let mut added: Vec<VipSet> = Vec::new();
        // The member whose VIPs failed: from there on no advert, VIP or burst goes
        // out (a MASTER without its VIPs would draw the traffic and drop it).
        let mut failed: Option<String> = None;
        for action in actions {
            if failed.is_some()
                && matches!(
                    action,
                    Action::SendAdvert { .. }
                        | Action::AddVips { .. }
                        | Action::SendGratuitous { .. }
                )
            {
                continue;
            }
            match action {
                Action::SendAdvert {
                    instance,
                    interface,
                    source,
                    destination,
                    advert,
                } => {
                    let sent = self
                        .send_advert(&instance, &interface, source, destination, &advert)
                        .await;
                    if let Some(t) = takeover.as_mut().filter(|t| !t.first_advert && sent) {
                        t.first_advert = true;
                        self.phase(group, &t.record, "first_advert", started);
                    }
                }
                Action::ArmTimer {
                    instance,
                    timer,
                    at,
                } => self.timers.arm(TimerKey::Router { instance, timer }, at),
                Action::CancelTimer { instance, timer } => {
                    self.timers.cancel(&TimerKey::Router { instance, timer })
                }
                Action::PrepareTakeover {
                    group: g,
                    instances,
                } => {
                    let t = takeover.get_or_insert_with(|| self.begin_takeover(group));
                    let budget =
                        Duration::from_millis(u64::from(self.view.control.prepare_budget_ms));
                    let outcome = prepare(
                        &self.view.control.lbd_socket,
                        budget,
                        g.as_deref(),
                        &instances,
                    )
                    .await;
                    let text = match outcome {
                        Ok(_) => "acknowledged".to_owned(),
                        Err((miss, why)) => {
                            let text = format!("missed: {}", miss.label());
                            missed = Some((miss, budget, why));
                            text
                        }
                    };
                    if let Ok(mut r) = t.record.lock() {
                        r.prepare = text;
                    }
                    let record = Arc::clone(&t.record);
                    self.phase(group, &record, "prepare", started);
                }
                Action::AddVips { sets, rollback, .. } => {
                    if let Some(done) = self.change_vips(group, &sets, true).await {
                        vips_changed.push(done);
                        added.extend(sets);
                    } else {
                        // The state machine's rollback, of what this batch did add.
                        let (taken, kept): (Vec<VipSet>, Vec<VipSet>) =
                            added.drain(..).partition(|s| rollback.contains(s));
                        added = kept;
                        if !taken.is_empty() {
                            tracing::error!(
                                group,
                                members = taken.len(),
                                "a member's VIPs failed: removing the other members' again"
                            );
                            self.change_vips(group, &taken, false).await;
                        }
                        failed = sets.first().map(|s| s.instance.clone());
                        if let Some(instance) = &failed {
                            tracing::error!(
                                group,
                                instance,
                                "takeover given up: the VIPs could not be added; releasing to the peer"
                            );
                        }
                    }
                    if let Some(t) = takeover.as_ref().filter(|_| failed.is_none()) {
                        let record = Arc::clone(&t.record);
                        self.phase(group, &record, "vips_added", started);
                    }
                }
                Action::RemoveVips { sets, .. } => {
                    if let Some(done) = self.change_vips(group, &sets, false).await {
                        vips_changed.push(done);
                    }
                }
                Action::SendGratuitous {
                    instance,
                    interface,
                    addresses,
                    count,
                    spacing,
                } => {
                    let tracker = takeover.as_mut().map(|t| {
                        Arc::clone(t.garp.get_or_insert_with(|| {
                            Arc::new(GarpTracker {
                                group: group.to_owned(),
                                started,
                                remaining: AtomicUsize::new(bursts),
                                record: Arc::clone(&t.record),
                            })
                        }))
                    });
                    if spacing.is_zero() {
                        if let Some(burst) = self.gratuitous_burst(
                            &instance, &interface, addresses, count, spacing, tracker,
                        ) {
                            burst.await;
                        }
                    } else {
                        self.spawn_gratuitous(
                            &instance, &interface, addresses, count, spacing, tracker,
                        );
                    }
                }
                notice @ Action::StateChanged { .. } => notices.push(notice),
                notice @ Action::GroupStateChanged { to, .. } => {
                    if to == State::Master {
                        takeover.get_or_insert_with(|| self.begin_takeover(group));
                    }
                    notices.push(notice);
                }
            }
        }
        for (added, vips) in vips_changed {
            tracing::info!(group, vips = %ctl::logging::list(&vips), "VIPs {}", if added { "added" } else { "removed" });
        }
        if let Some((miss, budget, why)) = missed {
            self.telemetry.prepare_miss(group, miss.label());
            *self.prepare_misses.entry(group.to_owned()).or_default() += 1;
            tracing::warn!(group, reason = miss.label(), budget_ms = budget.as_millis() as u64, error = %why, "lbd did not prepare the takeover; went on without it");
        }
        for notice in notices {
            match notice {
                Action::StateChanged {
                    instance,
                    group: g,
                    from,
                    to,
                    reason,
                } => self.instance_changed(
                    &instance,
                    g.as_deref().unwrap_or(group),
                    from,
                    to,
                    reason,
                ),
                Action::GroupStateChanged {
                    group: g,
                    from,
                    to,
                    reason,
                } => {
                    tracing::info!(group = %g, from = state_name(from), to = state_name(to), reason = reason_name(reason), "sync group state changed");
                    self.publish_state(GroupStateEvent {
                        group: g,
                        instance: None,
                        from: vrrp_state(from),
                        to: vrrp_state(to),
                        reason: reason_name(reason).to_owned(),
                        time: unix_ms(),
                    });
                }
                _ => {}
            }
        }
        if let Some(t) = takeover.filter(|_| failed.is_none()) {
            if let Ok(r) = t.record.lock() {
                tracing::info!(group, phases_ms = %ctl::logging::pairs(r.phases_ms.in_order().into_iter().map(|(p, ms)| (p, format!("{ms:.1}")))), prepare = %r.prepare, "takeover done (garp_sent follows when the bursts end)");
            }
        }
        failed
    }

    /// Publishes a `group.state` event.
    fn publish_state(&self, event: GroupStateEvent) {
        match serde_json::to_value(&event) {
            Ok(data) => {
                self.events.publish(ctl::topics::GROUP_STATE, data);
            }
            Err(e) => tracing::error!(error = %e, "group.state event not published"),
        }
    }

    fn begin_takeover(&mut self, group: &str) -> Takeover {
        let record = Arc::new(Mutex::new(TakeoverRecord {
            started_unix_ms: unix_ms(),
            ..TakeoverRecord::default()
        }));
        self.takeovers.insert(group.to_owned(), Arc::clone(&record));
        Takeover {
            record,
            first_advert: false,
            garp: None,
        }
    }

    fn phase(
        &self,
        group: &str,
        record: &Arc<Mutex<TakeoverRecord>>,
        phase: &str,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        self.telemetry.phase(group, phase, elapsed);
        if let Ok(mut r) = record.lock() {
            r.phases_ms.set(phase, elapsed.as_secs_f64() * 1000.0);
        }
    }

    /// Encodes and sends an advert to each destination; true if any went out.
    async fn send_advert(
        &mut self,
        instance: &str,
        interface: &str,
        source: IpAddr,
        destination: Destination,
        advert: &Advertisement,
    ) -> bool {
        let family = Family::of(source);
        let labels = self.labels(instance);
        let Some(socket) = self.sockets.get(&(interface.to_owned(), family)).cloned() else {
            tracing::error!(
                instance,
                iface = interface,
                "no VRRP socket for the interface"
            );
            self.telemetry.advert_send_error(&labels);
            return false;
        };
        let form = self
            .plan
            .instance(instance)
            .map(|p| p.checksum)
            .unwrap_or_default();
        let destinations = match destination {
            Destination::Multicast => vec![family.vrrp_group()],
            Destination::Unicast(peers) => peers,
        };
        let link_up = self.links.get(interface).is_some_and(|l| l.up);
        let mut any = false;
        for dst in destinations {
            let bytes = match packet::encode(advert, &IpContext::new(source, dst), form) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(instance, iface = interface, %dst, error = %e, "cannot encode advert");
                    self.telemetry.advert_send_error(&labels);
                    continue;
                }
            };
            match socket.send_from(&bytes, source, dst).await {
                Ok(()) => {
                    any = true;
                    self.telemetry.advert_sent(&labels);
                    tracing::trace!(instance, iface = interface, %dst, priority = advert.priority, "advert sent");
                }
                Err(e) => {
                    self.telemetry.advert_send_error(&labels);
                    if link_up {
                        tracing::warn!(instance, iface = interface, %dst, error = %e, "advert not sent");
                    } else {
                        tracing::debug!(instance, iface = interface, %dst, error = %e, "advert not sent (link down)");
                    }
                }
            }
        }
        any
    }

    /// Adds or removes every VIP of the sets in one netlink step; on success, what to
    /// log once the batch is done (failures are logged at once).
    async fn change_vips(
        &mut self,
        group: &str,
        sets: &[VipSet],
        add: bool,
    ) -> Option<(bool, Vec<String>)> {
        let mut specs = Vec::new();
        let mut names = HashMap::new();
        for set in sets {
            let Some(index) = self.links.get(&set.interface).map(|l| l.index) else {
                tracing::error!(group, iface = %set.interface, "VIP interface unknown");
                if add {
                    // Adding the others would leave the set half added.
                    self.telemetry.vip_error(group, "add");
                    return None;
                }
                continue;
            };
            names.insert(index, set.interface.clone());
            let plan = self.plan.instance(&set.instance);
            for &addr in &set.addresses {
                let vip = plan.and_then(|p| p.vips.iter().find(|v| v.address == addr));
                let prefix_len =
                    vip.map(|v| v.prefix_len)
                        .unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
                let mut spec = AddressSpec::new(index, addr, prefix_len);
                if add {
                    if let Some(label) = vip.and_then(|v| v.label.as_deref()) {
                        spec = spec.with_label(label);
                    }
                }
                specs.push(spec);
            }
        }
        let (op, result) = if add {
            (
                "add",
                self.netif
                    .add_addresses_known(&specs, &names)
                    .await
                    .map(drop),
            )
        } else {
            (
                "remove",
                self.netif.remove_addresses(&specs).await.map(drop),
            )
        };
        // Formatted after the change: the add is on a takeover's path.
        let list: Vec<String> = specs
            .iter()
            .map(|s| format!("{}/{}", s.addr, s.prefix_len))
            .collect();
        match result {
            Ok(()) => Some((add, list)),
            Err(e) => {
                self.telemetry.vip_error(group, op);
                tracing::error!(group, vips = %ctl::logging::list(list), error = %e, "VIP {op} failed");
                None
            }
        }
    }

    /// Sends a GARP / NA burst without holding up the loop.
    fn spawn_gratuitous(
        &self,
        instance: &str,
        interface: &str,
        addresses: Vec<IpAddr>,
        count: u8,
        spacing: Duration,
        tracker: Option<Arc<GarpTracker>>,
    ) {
        if let Some(burst) =
            self.gratuitous_burst(instance, interface, addresses, count, spacing, tracker)
        {
            tokio::spawn(burst);
        }
    }

    /// The burst as a future that owns what it needs: spawned when it must wait between
    /// rounds, awaited in place when it goes out back to back (no task hand-off on the
    /// takeover path: the neighbours learn the new MAC sooner).
    fn gratuitous_burst(
        &self,
        instance: &str,
        interface: &str,
        addresses: Vec<IpAddr>,
        count: u8,
        spacing: Duration,
        tracker: Option<Arc<GarpTracker>>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let Some(announcer) = self.announcers.get(interface).cloned() else {
            tracing::error!(
                instance,
                iface = interface,
                "no announcer for the interface"
            );
            return None;
        };
        let telemetry = self.telemetry.clone();
        let labels = self.labels(instance);
        let instance = instance.to_owned();
        Some(async move {
            match announcer
                .send_burst(&addresses, u32::from(count), spacing)
                .await
            {
                Ok(frames) => {
                    telemetry.gratuitous(&labels, frames as u64);
                    tracing::debug!(instance = %instance, iface = %labels.interface, frames, "gratuitous burst sent");
                }
                Err(e) => {
                    tracing::warn!(instance = %instance, iface = %labels.interface, error = %e, "gratuitous burst failed")
                }
            }
            if let Some(t) = tracker {
                t.burst_done(&telemetry);
            }
        })
    }

    /// The periodic refresh burst of a MASTER instance (`garp.refresh_s`).
    pub(crate) fn refresh_gratuitous(&mut self, instance: &str) {
        let Some(group) = self.by_instance.get(instance).cloned() else {
            return;
        };
        let Some(rt) = self.groups.get(&group) else {
            return;
        };
        let master = rt
            .router
            .instance(instance)
            .is_some_and(|s| s.state == State::Master);
        let Some(config) = rt.plan.instance_config(instance).cloned() else {
            return;
        };
        let refresh = self.plan.instance(instance).and_then(|p| p.garp_refresh);
        if !master {
            return;
        }
        self.spawn_gratuitous(
            instance,
            &config.interface,
            config.virtual_addresses.clone(),
            config.gratuitous.count,
            config.gratuitous.spacing,
            None,
        );
        if let Some(every) = refresh {
            let at = self.clock.now() + every;
            self.timers.arm(
                TimerKey::GarpRefresh {
                    instance: instance.to_owned(),
                },
                at,
            );
        }
    }

    /// Logs, counts, records and publishes an instance's transition.
    fn instance_changed(
        &mut self,
        instance: &str,
        group: &str,
        from: State,
        to: State,
        reason: Reason,
    ) {
        let labels = self.labels(instance);
        tracing::info!(
            group,
            instance,
            iface = %labels.interface,
            vrid = %labels.vrid,
            from = state_name(from),
            to = state_name(to),
            reason = reason_name(reason),
            "state changed"
        );
        let now_ms = unix_ms();
        self.telemetry
            .transition(&labels, from, to, now_ms as f64 / 1000.0);
        self.transitions.insert(
            instance.to_owned(),
            TransitionRecord {
                from,
                to,
                reason: reason_name(reason).to_owned(),
                unix_ms: now_ms,
                at: Instant::now(),
            },
        );
        self.publish_state(GroupStateEvent {
            group: group.to_owned(),
            instance: Some(instance.to_owned()),
            from: vrrp_state(from),
            to: vrrp_state(to),
            reason: reason_name(reason).to_owned(),
            time: now_ms,
        });
        let key = TimerKey::GarpRefresh {
            instance: instance.to_owned(),
        };
        if to == State::Master {
            if let Some(every) = self.plan.instance(instance).and_then(|p| p.garp_refresh) {
                let at = self.clock.now() + every;
                self.timers.arm(key, at);
            }
        } else {
            self.timers.cancel(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::{EventBus, ReplyError, RequestHandler, Server, SocketPerms};
    use serde_json::{json, Value};
    use tokio::sync::watch;

    /// An lbd stand-in: answers `prepare` after `delay`, or with an error.
    struct FakeLbd {
        delay: Duration,
        fail: bool,
    }

    impl RequestHandler for FakeLbd {
        async fn handle(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
            assert_eq!(method, "prepare");
            assert_eq!(params["group"], "edge");
            tokio::time::sleep(self.delay).await;
            if self.fail {
                Err(ReplyError::failed("dataplane not ready"))
            } else {
                Ok(json!({"prepared": true}))
            }
        }
    }

    async fn lbd(
        dir: &std::path::Path,
        delay: Duration,
        fail: bool,
    ) -> (std::path::PathBuf, watch::Sender<bool>) {
        let path = dir.join("lbd.sock");
        let server = Server::bind(&path, SocketPerms::default()).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(server.serve(Arc::new(FakeLbd { delay, fail }), EventBus::new(8), stopped));
        (path, stop)
    }

    const BUDGET: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn prepare_without_lbd_is_an_absent_miss() {
        let dir = tempfile::tempdir().unwrap();
        let err = prepare(&dir.path().join("none.sock"), BUDGET, Some("edge"), &[])
            .await
            .unwrap_err();
        assert_eq!(err.0, PrepareMiss::Absent);
    }

    #[tokio::test]
    async fn prepare_acknowledged_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = lbd(dir.path(), Duration::ZERO, false).await;
        let instances = vec!["public".to_owned(), "server".to_owned()];
        let ok = prepare(&path, BUDGET, Some("edge"), &instances)
            .await
            .unwrap();
        assert!(ok.prepared);
        drop(_stop);
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = lbd(dir.path(), Duration::ZERO, true).await;
        let err = prepare(&path, BUDGET, Some("edge"), &instances)
            .await
            .unwrap_err();
        assert_eq!(err.0, PrepareMiss::Error);
        assert!(err.1.contains("dataplane not ready"), "{}", err.1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_lbd_costs_the_budget_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _stop) = lbd(dir.path(), Duration::from_secs(10), false).await;
        let start = Instant::now();
        let err = prepare(&path, BUDGET, Some("edge"), &[]).await.unwrap_err();
        assert_eq!(err.0, PrepareMiss::Timeout);
        // Paused clock: exactly the budget passed, not lbd's 10 s.
        assert_eq!(start.elapsed(), BUDGET);
    }
}
