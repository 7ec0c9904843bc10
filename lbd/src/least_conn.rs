//! Least-connection scheduling (lc, wlc) on the nft backend: the servers' connection
//! counts, taken from conntrack every [`PERIOD`], fed into the service's slots.
//!
//! The nft layout gives an lc/wlc service a fixed number of slots (32, or one per
//! server beyond 32) walked by a counter of its own, shared by the weights the
//! desired state holds (`dataplane::slots::least_conn_slots`). This module makes
//! those weights follow the load:
//!
//! - a thread ([`Feeder`]) dumps the conntrack entries whose original destination
//!   is an lc/wlc service's VIP (the kernel filters them), and counts per server
//!   the load `a = active + inactive / 256` (IPVS's connection overhead, in
//!   connections: TCP ESTABLISHED is active, every other TCP state inactive, other
//!   protocols active) and the connections that appeared since the last count;
//! - it fills the servers' gaps up to a common level ([`fill`]): with `A` the
//!   arrivals expected before the next count (those of the last periods), the level
//!   `L` with `sum max(0, L * w - a) = A`, and each server's share
//!   `max(0, L * w - a)` (w: 1 for lc, the weight for wlc; 0 while down or drained);
//! - lbd puts the shares in place of the weights of the service it hands the
//!   backend ([`LeastConn::planned`], [`LeastConn::feed`]), which applies that
//!   service only: some of its 32 slot elements change, nothing else.
//!
//! Where it differs from IPVS, which picks for each connection the server with the
//! least overhead at that moment: between two counts the picks follow the shares
//! computed at the last one, so a burst far above the expected arrivals is spread
//! in proportion to the gaps of the last count (and through the slots' resolution
//! of 1/32), not one connection at a time; a connection that ends is seen at the
//! next count. The dump walks the kernel's whole table: the period stretches to 10
//! times the last dump's duration, so that counting never takes more than a tenth
//! of a CPU.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dataplane::{DesiredState, PortSpec, Scheduler, Service};
use tokio::sync::{mpsc, watch};

/// How often the counts are taken (at least; see the module's text).
pub const PERIOD: Duration = Duration::from_millis(200);

/// The period is at least this many times the last dump's duration.
const DUMP_SHARE: u32 = 10;

/// The resolution of the shares handed to the backend (each server's share of this
/// total; the backend spreads them over its slots).
const SHARE_SCALE: f64 = 1_000_000.0;

/// New weights for some services: (service, weight per backend of its plan).
pub type Update = Vec<(String, Vec<u32>)>;

/// Whether the backend needs its `scheduler`'s weights fed (lc and wlc).
pub fn fed(scheduler: Scheduler) -> bool {
    matches!(scheduler, Scheduler::Lc | Scheduler::Wlc)
}

/// The level that fills the servers' gaps with `arrivals` connections, and each
/// server's share of them: `max(0, L * weights[i] - load[i])`, summing to
/// `arrivals` (all 0 when no weight is positive).
pub fn fill(weights: &[f64], load: &[f64], arrivals: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    if order.is_empty() {
        return vec![0.0; weights.len()];
    }
    // By the level at which each server starts to take connections.
    order.sort_by(|&a, &b| (load[a] / weights[a]).total_cmp(&(load[b] / weights[b])));
    let (mut w_sum, mut a_sum) = (0.0, 0.0);
    let mut level = 0.0;
    for (k, &i) in order.iter().enumerate() {
        w_sum += weights[i];
        a_sum += load[i];
        // The level if the servers so far take everything.
        level = (arrivals + a_sum) / w_sum;
        let next = order.get(k + 1).map(|&j| load[j] / weights[j]);
        if next.is_none_or(|n| level <= n) {
            break;
        }
    }
    (0..weights.len())
        .map(|i| (level * weights[i] - load[i]).max(0.0) * f64::from(u8::from(weights[i] > 0.0)))
        .collect()
}

/// One lc/wlc service's weights from its servers' loads and the arrivals expected:
/// the [`fill`] shares scaled to integers (a server with weight 0 stays at 0).
pub fn shares(s: &Service, load: &[f64], arrivals: f64) -> Vec<u32> {
    let weights: Vec<f64> = s
        .backends
        .iter()
        .map(|b| match (b.weight, s.scheduler) {
            (0, _) => 0.0,
            (_, Scheduler::Lc) => 1.0,
            (w, _) => f64::from(w),
        })
        .collect();
    let arrivals = arrivals.max(1.0);
    fill(&weights, load, arrivals)
        .iter()
        .map(|g| (g / arrivals * SHARE_SCALE).round() as u32)
        .collect()
}

/// The fed services as planned and the weights fed to them; owned by the daemon.
#[derive(Debug)]
pub struct LeastConn {
    /// The lc/wlc services as planned (health and overrides applied), by name.
    planned: BTreeMap<String, Service>,
    /// The weights last fed, by service (for the backends of its plan).
    fed: HashMap<String, Vec<u32>>,
    /// The planned services, to the feeder.
    services: watch::Sender<Arc<Vec<Service>>>,
}

impl LeastConn {
    /// Starts the [`Feeder`] thread, which sends its weights to `updates` and ends
    /// when this is dropped or nobody receives.
    pub fn start(updates: mpsc::UnboundedSender<Update>) -> std::io::Result<LeastConn> {
        let (services, watched) = watch::channel(Arc::new(Vec::new()));
        let feeder = Feeder {
            services: watched,
            updates,
            last: HashMap::new(),
        };
        thread::Builder::new()
            .name("least-conn".into())
            .spawn(move || feeder.run())?;
        Ok(LeastConn {
            planned: BTreeMap::new(),
            fed: HashMap::new(),
            services,
        })
    }

    /// After planning `names` (`None`: every service) into `state`: remembers their
    /// plans, drops the weights fed for a plan that changed, and puts the others
    /// into `state`.
    pub fn planned(&mut self, state: &mut Arc<DesiredState>, names: Option<&BTreeSet<String>>) {
        let mut changed = false;
        let now: Vec<&Service> = state
            .services
            .iter()
            .filter(|s| fed(s.scheduler) && names.is_none_or(|n| n.contains(&s.name)))
            .collect();
        match names {
            None => {
                let keep: HashSet<&str> = now.iter().map(|s| s.name.as_str()).collect();
                let before = self.planned.len();
                self.planned.retain(|n, _| keep.contains(n.as_str()));
                self.fed.retain(|n, _| keep.contains(n.as_str()));
                changed |= before != self.planned.len();
            }
            Some(names) => {
                for n in names {
                    if !now.iter().any(|s| &s.name == n) && self.planned.remove(n).is_some() {
                        self.fed.remove(n);
                        changed = true;
                    }
                }
            }
        }
        for s in now {
            if self.planned.get(&s.name) != Some(s) {
                self.fed.remove(&s.name);
                self.planned.insert(s.name.clone(), s.clone());
                changed = true;
            }
        }
        if changed {
            let list = self.planned.values().cloned().collect();
            self.services.send_replace(Arc::new(list));
        }
        let fed: Vec<String> = self.fed.keys().cloned().collect();
        self.put(state, &fed);
    }

    /// Weights from the feeder: keeps those for services still planned as they were
    /// counted, puts them into `state`, and names the services whose weights changed.
    pub fn feed(&mut self, state: &mut Arc<DesiredState>, update: Update) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for (name, weights) in update {
            let Some(s) = self.planned.get(&name) else {
                continue;
            };
            if s.backends.len() != weights.len() || self.fed.get(&name) == Some(&weights) {
                continue;
            }
            self.fed.insert(name.clone(), weights);
            changed.insert(name);
        }
        let names: Vec<String> = changed.iter().cloned().collect();
        self.put(state, &names);
        changed
    }

    /// The fed weights of `names` into `state` (changed in place when they differ).
    fn put(&self, state: &mut Arc<DesiredState>, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let differs = |s: &Service| {
            self.fed.get(&s.name).is_some_and(|w| {
                w.len() == s.backends.len() && s.backends.iter().zip(w).any(|(b, w)| b.weight != *w)
            })
        };
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        if !state
            .services
            .iter()
            .any(|s| wanted.contains(s.name.as_str()) && differs(s))
        {
            return;
        }
        for s in &mut Arc::make_mut(state).services {
            if !wanted.contains(s.name.as_str()) || !differs(s) {
                continue;
            }
            if let Some(w) = self.fed.get(&s.name) {
                for (b, w) in s.backends.iter_mut().zip(w) {
                    b.weight = *w;
                }
            }
        }
    }
}

/// What the feeder keeps of a service between two counts.
#[derive(Debug, Default)]
struct Seen {
    /// Conntrack ids of its connections at the last count.
    ids: HashSet<u32>,
    /// Expected arrivals per period (moving average).
    arrivals: f64,
    /// The weights last sent.
    sent: Vec<u32>,
}

/// The thread that counts and computes the weights.
struct Feeder {
    services: watch::Receiver<Arc<Vec<Service>>>,
    updates: mpsc::UnboundedSender<Update>,
    last: HashMap<String, Seen>,
}

impl Feeder {
    fn run(mut self) {
        let mut ct: Option<ctsync::Conntrack> = None;
        let mut period = PERIOD;
        loop {
            thread::sleep(period);
            if self.updates.is_closed() || self.services.has_changed().is_err() {
                return;
            }
            let services = Arc::clone(&self.services.borrow_and_update());
            if services.is_empty() {
                self.last.clear();
                continue;
            }
            let started = Instant::now();
            if ct.is_none() {
                ct = ctsync::Conntrack::open()
                    .map_err(|e| tracing::debug!(error = %e, "least-connection count: no conntrack socket"))
                    .ok();
            }
            let Some(c) = ct.as_mut() else {
                continue;
            };
            let mut vips: Vec<IpAddr> = services.iter().map(|s| s.vip).collect();
            vips.sort();
            vips.dedup();
            let filter = ctsync::FlowFilter {
                orig_dst: vips,
                ..ctsync::FlowFilter::default()
            };
            let entries = c.dump(&filter);
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!(error = %e, "least-connection count: conntrack dump failed");
                    ct = None;
                    continue;
                }
            };
            let took = started.elapsed();
            period = PERIOD.max(took * DUMP_SHARE);
            let update = self.count(&services, &entries);
            if !update.is_empty() && self.updates.send(update).is_err() {
                return;
            }
        }
    }

    /// Counts `entries` per server of each service and returns the weights that
    /// changed.
    fn count(&mut self, services: &[Service], entries: &[ctsync::Entry]) -> Update {
        let mut by_vip: HashMap<(IpAddr, u8), Vec<usize>> = HashMap::new();
        for (i, s) in services.iter().enumerate() {
            by_vip
                .entry((s.vip, s.protocol.number()))
                .or_default()
                .push(i);
        }
        let mut load: Vec<Vec<f64>> = services
            .iter()
            .map(|s| vec![0.0; s.backends.len()])
            .collect();
        let mut ids: Vec<HashSet<u32>> = vec![HashSet::new(); services.len()];
        for e in entries {
            let Some(dport) = e.orig.dst_port() else {
                continue;
            };
            let Some(candidates) = by_vip.get(&(e.orig.dst, e.orig.proto)) else {
                continue;
            };
            let Some(&si) = candidates.iter().find(|&&i| {
                let (lo, hi) = match services[i].ports {
                    PortSpec::Single(p) => (p, p),
                    PortSpec::Range(a, b) => (a, b),
                };
                (lo..=hi).contains(&dport)
            }) else {
                continue;
            };
            let s = &services[si];
            let from = (e.reply.src, e.reply.src_port());
            let Some(bi) = s
                .backends
                .iter()
                .position(|b| (b.addr, Some(b.port.unwrap_or(dport))) == from)
            else {
                continue;
            };
            let active = e
                .tcp
                .is_none_or(|t| t.state == ctsync::TcpState::ESTABLISHED);
            load[si][bi] += if active { 1.0 } else { 1.0 / 256.0 };
            if let Some(id) = e.id {
                ids[si].insert(id);
            }
        }
        let mut update = Vec::new();
        let mut last = HashMap::with_capacity(services.len());
        for (si, s) in services.iter().enumerate() {
            let mut seen = self.last.remove(&s.name).unwrap_or_default();
            let new = ids[si].difference(&seen.ids).count() as f64;
            // The first count of a service has no earlier one to compare with.
            seen.arrivals = if seen.ids.is_empty() && seen.sent.is_empty() {
                0.0
            } else {
                0.5 * seen.arrivals + 0.5 * new
            };
            seen.ids = std::mem::take(&mut ids[si]);
            let weights = shares(s, &load[si], seen.arrivals);
            if weights != seen.sent {
                update.push((s.name.clone(), weights.clone()));
                seen.sent = weights;
            }
            last.insert(s.name.clone(), seen);
        }
        self.last = last;
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::{Backend, Forwarding, Protocol};

    fn service(scheduler: Scheduler, weights: &[u32]) -> Service {
        Service {
            name: "web".into(),
            vip: "198.18.0.100".parse().unwrap(),
            ports: PortSpec::Single(80),
            protocol: Protocol::Tcp,
            scheduler,
            backends: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Backend {
                    name: format!("srv{i}"),
                    addr: format!("198.18.1.{}", 10 + i).parse().unwrap(),
                    port: Some(80),
                    weight: w,
                })
                .collect(),
            forward: Forwarding::Nat,
            persistence: None,
        }
    }

    #[test]
    fn the_gaps_fill_up_to_one_level() {
        // 10 and 2 open, 4 arriving: all to the second (level 6 < 10).
        let g = fill(&[1.0, 1.0], &[10.0, 2.0], 4.0);
        assert_eq!(g, vec![0.0, 4.0]);
        // 10 arriving: the second reaches 10 after 8, the last 2 split.
        let g = fill(&[1.0, 1.0], &[10.0, 2.0], 10.0);
        assert_eq!(g, vec![1.0, 9.0]);
        // Weighted: 3:1 with nothing open splits 3:1.
        let g = fill(&[3.0, 1.0], &[0.0, 0.0], 8.0);
        assert_eq!(g, vec![6.0, 2.0]);
        // Weight 0 takes nothing, however idle.
        let g = fill(&[0.0, 1.0], &[0.0, 50.0], 2.0);
        assert_eq!(g, vec![0.0, 2.0]);
        assert_eq!(fill(&[0.0, 0.0], &[0.0, 0.0], 2.0), vec![0.0, 0.0]);
    }

    #[test]
    fn lc_ignores_weights_and_wlc_follows_them() {
        let lc = shares(&service(Scheduler::Lc, &[3, 1]), &[0.0, 0.0], 4.0);
        assert_eq!(lc[0], lc[1]);
        let wlc = shares(&service(Scheduler::Wlc, &[3, 1]), &[0.0, 0.0], 4.0);
        assert_eq!(wlc[0], 3 * wlc[1]);
        // A drained server stays out.
        let lc = shares(&service(Scheduler::Lc, &[0, 1]), &[0.0, 9.0], 4.0);
        assert_eq!(lc[0], 0);
    }

    #[test]
    fn fed_weights_replace_the_planned_ones_until_the_plan_changes() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut lc = LeastConn::start(tx).unwrap();
        let mut state = Arc::new(DesiredState {
            services: vec![service(Scheduler::Lc, &[1, 1])],
            snat: Vec::new(),
        });
        lc.planned(&mut state, None);
        assert_eq!(lc.services.borrow().len(), 1);
        let changed = lc.feed(&mut state, vec![("web".into(), vec![0, 7])]);
        assert_eq!(changed.len(), 1);
        assert_eq!(state.services[0].backends[1].weight, 7);
        // The same weights again change nothing.
        assert!(lc
            .feed(&mut state, vec![("web".into(), vec![0, 7])])
            .is_empty());
        // A replan of the same service keeps them in place.
        let names: BTreeSet<String> = ["web".to_owned()].into();
        Arc::make_mut(&mut state).services[0] = service(Scheduler::Lc, &[1, 1]);
        lc.planned(&mut state, Some(&names));
        assert_eq!(state.services[0].backends[1].weight, 7);
        // A server going down changes the plan: its old weights go.
        Arc::make_mut(&mut state).services[0] = service(Scheduler::Lc, &[1, 0]);
        lc.planned(&mut state, Some(&names));
        assert_eq!(state.services[0].backends[0].weight, 1);
        // Weights for a service not planned are ignored.
        assert!(lc
            .feed(&mut state, vec![("api".into(), vec![1])])
            .is_empty());
    }
}
