//! The IPVS backend: services and real servers in the kernel's IPVS table (through
//! the `ipvs` crate's generic-netlink client), the SNAT rules through an
//! [`NftBackend`] holding only those, `net.ipv4.vs.conntrack=1` so that netfilter
//! sees IPVS connections, and the kernel's connection sync daemon.
//!
//! Apply reads the kernel's services, plans the difference ([`plan::plan`]) and
//! sends only that: a weight change is one SET_DEST. IPVS has no transactions; a
//! failed apply leaves what was done so far, and the next apply (which diffs
//! against the kernel again) finishes the job.
//!
//! Ownership: a service is this backend's when the desired state names its
//! protocol, VIP and port (it is created, or adopted and corrected), or when the
//! ownership record ([`owned`]) says this backend created it. Only those are ever
//! changed or deleted; a service added by hand on another VIP survives every
//! reconcile. The record, in `/run/lbsuite/ipvs-owned` by default, is how a
//! restarted lbd knows which services it made; without it (deleted file) lbd owns
//! only what its configuration names, and leaves stale services in place.
//!
//! Like [`IpvsClient`], the backend acts on the network namespace of the thread that
//! created it, from whichever thread it is then called.

mod error;
pub mod owned;
pub mod plan;
pub mod resync;
mod select;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ::ipvs::{DaemonRole, IpvsClient, IpvsError, SyncDaemon};

pub use error::IpvsBackendError;
pub use owned::{OwnershipRecord, DEFAULT_RECORD};
pub use plan::{CurrentService, Op, ServiceKey, WantedService};
pub use select::{select_backend, BackendChoice, ChosenBackend, Selection};

use crate::{
    diff_services, AppliedState, ApplyReport, BackendCounters, BackendKind, Dataplane,
    DataplaneError, DesiredState, Drift, NftBackend, Service,
};

/// The sysctl that makes IPVS keep netfilter conntrack entries (needed by SNAT).
pub const CONNTRACK_SYSCTL: &str = "/proc/sys/net/ipv4/vs/conntrack";

/// The sysctls that let IPVS take up a TCP or SCTP connection from any of its
/// packets, not only from its first (SYN, INIT): what a node needs when a router
/// moves established flows to it (active-active behind ECMP).
pub const SLOPPY_SYSCTLS: [&str; 2] = [
    "/proc/sys/net/ipv4/vs/sloppy_tcp",
    "/proc/sys/net/ipv4/vs/sloppy_sctp",
];

/// Where the IPVS backend keeps its SNAT rules and its ownership record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsSettings {
    /// nftables table (family inet) holding the SNAT rules.
    pub nft_table: String,
    /// The ownership record file.
    pub ownership_record: PathBuf,
    /// Whether IPVS schedules a connection from any of its packets
    /// ([`SLOPPY_SYSCTLS`] set to 1 at each apply): on in active-active mode, where
    /// a flow the router moves arrives in the middle; off leaves the sysctls alone.
    pub sloppy: bool,
}

impl Default for IpvsSettings {
    fn default() -> Self {
        IpvsSettings {
            nft_table: crate::DEFAULT_TABLE.to_owned(),
            ownership_record: PathBuf::from(DEFAULT_RECORD),
            sloppy: false,
        }
    }
}

/// Which IPVS sync daemon should run (lbd follows the VRRP role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncRole {
    /// Send connection state (the node holding the VIPs).
    Master,
    /// Receive connection state (the standby).
    Backup,
    /// No sync daemon.
    Off,
}

/// The IPVS dataplane backend.
#[derive(Debug)]
pub struct IpvsBackend {
    client: Mutex<IpvsClient>,
    snat: NftBackend,
    conntrack: File,
    /// The sloppy sysctls, opened when the settings ask for them.
    sloppy: Vec<(&'static str, File)>,
    record: OwnershipRecord,
    /// Services of the last successful apply.
    applied: Vec<WantedService>,
    last_ops: Vec<Op>,
    /// The sync daemon this backend started, if any.
    sync: Option<SyncDaemon>,
}

impl IpvsBackend {
    /// Connects to IPVS in the calling thread's network namespace. Changes nothing
    /// until the first apply; fails when the kernel has no IPVS
    /// ([`IpvsBackendError::Connect`]) or no `net.ipv4.vs.conntrack` sysctl here.
    pub fn new(settings: &IpvsSettings) -> Result<IpvsBackend, DataplaneError> {
        let client = IpvsClient::connect().map_err(IpvsBackendError::Connect)?;
        // Opened now: /proc/sys/net resolves against the opening thread's namespace.
        let open = |path: &str| OpenOptions::new().read(true).write(true).open(path);
        let conntrack = open(CONNTRACK_SYSCTL).map_err(|error| IpvsBackendError::Conntrack {
            path: PathBuf::from(CONNTRACK_SYSCTL),
            error,
        })?;
        let mut sloppy = Vec::new();
        for path in SLOPPY_SYSCTLS.into_iter().filter(|_| settings.sloppy) {
            let file = open(path).map_err(|error| IpvsBackendError::Sloppy {
                path: PathBuf::from(path),
                error,
            })?;
            sloppy.push((path, file));
        }
        Ok(IpvsBackend {
            client: Mutex::new(client),
            snat: NftBackend::new(&settings.nft_table)?,
            conntrack,
            sloppy,
            record: OwnershipRecord::new(&settings.ownership_record),
            applied: Vec::new(),
            last_ops: Vec::new(),
            sync: None,
        })
    }

    /// The operations the last apply performed (empty: nothing differed).
    pub fn last_ops(&self) -> &[Op] {
        &self.last_ops
    }

    /// The ownership record's path.
    pub fn ownership_record(&self) -> &Path {
        self.record.path()
    }

    /// IPVS version as "major.minor.patch".
    pub fn version(&self) -> Result<String, DataplaneError> {
        let info = self.client().info().map_err(IpvsBackendError::Read)?;
        Ok(info.version_string())
    }

    /// The services this backend owns as the kernel holds them, real servers included.
    pub fn owned_services(&self) -> Result<Vec<CurrentService>, DataplaneError> {
        self.services_of(BTreeSet::new())
    }

    /// The kernel services this backend owns or `also` names, in the desired state's
    /// terms (those it cannot express, such as one whose scheduler was changed by hand
    /// to one we never set, are left out).
    fn held_services(&self, also: BTreeSet<ServiceKey>) -> Result<Vec<Service>, DataplaneError> {
        Ok(self
            .services_of(also)?
            .iter()
            .filter_map(|c| plan::applied_service(c, &self.applied))
            .collect())
    }

    /// The kernel services this backend owns or `keys` names, real servers included.
    fn services_of(
        &self,
        mut keys: BTreeSet<ServiceKey>,
    ) -> Result<Vec<CurrentService>, DataplaneError> {
        keys.extend(self.record.load()?);
        keys.extend(self.applied.iter().map(WantedService::key));
        self.read_kernel(&keys)
            .map(|all| {
                all.into_iter()
                    .filter(|c| ServiceKey::of(&c.service).is_some_and(|k| keys.contains(&k)))
                    .collect()
            })
            .map_err(DataplaneError::from)
    }

    /// Starts or stops the kernel's connection sync daemon: `Master` sends the
    /// connections of this node on `iface` with `sync_id`, `Backup` receives them,
    /// `Off` stops both. A daemon of the other role, or with another interface or id,
    /// is stopped first; one already as asked is left running. True when a daemon
    /// was started (a new backup daemon's table holds nothing yet).
    pub fn set_sync_role(
        &mut self,
        role: SyncRole,
        iface: &str,
        sync_id: u8,
    ) -> Result<bool, DataplaneError> {
        let want = match role {
            SyncRole::Master => Some(DaemonRole::Master),
            SyncRole::Backup => Some(DaemonRole::Backup),
            SyncRole::Off => None,
        };
        if want.is_some() && (iface.is_empty() || iface.len() > 15) {
            return Err(IpvsBackendError::SyncInterface(iface.to_owned()).into());
        }
        let want = want.map(|r| SyncDaemon::new(r, iface, u32::from(sync_id)));
        let mut client = self.client();
        let running = client.daemons().map_err(IpvsBackendError::Sync)?;
        let mut keep = false;
        for d in &running {
            let matches = want.as_ref().is_some_and(|w| {
                w.role == d.role && w.ifname == d.ifname && w.sync_id == d.sync_id
            });
            if matches {
                keep = true;
                continue;
            }
            match client.stop_daemon(d.role) {
                Ok(()) | Err(IpvsError::DaemonNotRunning { .. }) => {}
                Err(e) => return Err(IpvsBackendError::Sync(e).into()),
            }
            tracing::info!(role = %d.role, iface = %d.ifname, sync_id = d.sync_id, "IPVS sync daemon stopped");
        }
        let mut started = false;
        if let Some(w) = &want {
            if !keep {
                client.start_daemon(w).map_err(IpvsBackendError::Sync)?;
                started = true;
                tracing::info!(role = %w.role, iface = %w.ifname, sync_id = w.sync_id, "IPVS sync daemon started");
            }
        }
        drop(client);
        self.sync = want;
        Ok(started)
    }

    /// The running sync daemons as the kernel reports them.
    pub fn sync_daemons(&self) -> Result<Vec<SyncDaemon>, DataplaneError> {
        Ok(self.client().daemons().map_err(IpvsBackendError::Sync)?)
    }

    fn client(&self) -> MutexGuard<'_, IpvsClient> {
        // A panic while holding the lock leaves nothing half-written in the client.
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every kernel service, with the real servers of those whose key is in `keys`.
    fn read_kernel(
        &self,
        keys: &BTreeSet<ServiceKey>,
    ) -> Result<Vec<CurrentService>, IpvsBackendError> {
        let mut client = self.client();
        let services = client.services().map_err(IpvsBackendError::Read)?;
        let mut out = Vec::with_capacity(services.len());
        for e in services {
            let dests = match ServiceKey::of(&e.service) {
                Some(k) if keys.contains(&k) => client
                    .destinations(&e.service)
                    .map_err(IpvsBackendError::Read)?
                    .into_iter()
                    .map(|d| d.destination)
                    .collect(),
                _ => Vec::new(),
            };
            out.push(CurrentService {
                service: e.service,
                dests,
            });
        }
        Ok(out)
    }

    /// Makes sure `net.ipv4.vs.conntrack` is 1, and the sloppy sysctls when asked.
    fn enable_sysctls(&self) -> Result<(), IpvsBackendError> {
        set_to_one(&self.conntrack, CONNTRACK_SYSCTL).map_err(|error| {
            IpvsBackendError::Conntrack {
                path: PathBuf::from(CONNTRACK_SYSCTL),
                error,
            }
        })?;
        for (path, file) in &self.sloppy {
            set_to_one(file, path).map_err(|error| IpvsBackendError::Sloppy {
                path: PathBuf::from(path),
                error,
            })?;
        }
        Ok(())
    }

    fn run(&self, op: &Op, wanted: &[WantedService]) -> Result<(), IpvsBackendError> {
        let mut c = self.client();
        let result = match op {
            Op::AddService(s) => c.add_service(s),
            Op::EditService(s) => c.edit_service(s),
            Op::DelService(s) => match c.del_service(s) {
                // Gone already: what was asked.
                Err(IpvsError::NoSuchService { .. }) => Ok(()),
                r => r,
            },
            Op::AddDest(s, d) => c.add_dest(s, d),
            Op::EditDest(s, d) => c.edit_dest(s, d),
            Op::DelDest(s, d) => match c.del_dest(s, d) {
                Err(IpvsError::NoSuchDestination { .. }) => Ok(()),
                r => r,
            },
        };
        result.map_err(|error| {
            let key = ServiceKey::of(op.service());
            let service = wanted
                .iter()
                .find(|w| Some(w.key()) == key)
                .map_or_else(|| op.service().to_string(), |w| w.name.clone());
            IpvsBackendError::Kernel { service, error }
        })
    }
}

/// Writes 1 to a sysctl file unless it holds 1 already (logged when changed).
fn set_to_one(file: &File, path: &str) -> io::Result<()> {
    let mut buf = [0u8; 16];
    let n = file.read_at(&mut buf, 0)?;
    if buf[..n].trim_ascii() != b"1" {
        file.write_at(b"1\n", 0)?;
        let name = path.trim_start_matches("/proc/sys/").replace('/', ".");
        tracing::info!("{name} set to 1");
    }
    Ok(())
}

impl Dataplane for IpvsBackend {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let start = Instant::now();
        let wanted = plan::wanted(desired)?;
        self.enable_sysctls()?;

        // SNAT first: a balanced connection must never leave without its new source.
        // The table also loses any DNAT of an earlier nft balancer, which would
        // otherwise divert the VIPs' traffic before IPVS sees it.
        let mut report = self.snat.apply(&DesiredState {
            services: Vec::new(),
            snat: desired.snat.clone(),
        })?;

        let owned = self.record.load()?;
        let wanted_keys: BTreeSet<ServiceKey> = wanted.iter().map(WantedService::key).collect();
        let mut keys = owned.clone();
        keys.extend(wanted_keys.iter().copied());
        let current = self.read_kernel(&keys)?;
        let ops = plan::plan(&wanted, &current, &owned);

        if !ops.is_empty() {
            let before = owned::before_apply(&owned, &wanted_keys);
            if before != owned {
                self.record.store(&before)?;
            }
        }
        for op in &ops {
            self.run(op, &wanted)?;
            tracing::debug!(op = %op, "ipvs");
        }
        if wanted_keys.is_empty() {
            self.record.remove()?;
        } else if wanted_keys != owned {
            self.record.store(&wanted_keys)?;
        }

        plan::count(&ops, &mut report);
        report.duration = start.elapsed();
        if !ops.is_empty() {
            tracing::info!(
                services = report.kernel.ipvs.services,
                destinations = report.kernel.ipvs.destinations,
                "IPVS applied"
            );
        }
        self.applied = wanted;
        self.last_ops = ops;
        Ok(report)
    }

    /// The services this backend owns as the kernel holds them (those the desired
    /// state cannot express, such as one whose scheduler was changed by hand to one we
    /// never set, are left out, so that `verify` reports them missing), and the SNAT
    /// table.
    fn read_back(&self) -> Result<AppliedState, DataplaneError> {
        Ok(AppliedState {
            services: self.held_services(BTreeSet::new())?,
            nft: self.snat.read_back()?.nft,
        })
    }

    /// The services against the read-back ones, and the SNAT table against the
    /// layout of `desired`'s SNAT rules.
    fn verify(&self, desired: &DesiredState) -> Result<Vec<Drift>, DataplaneError> {
        let wanted = plan::wanted(desired)?;
        let services = self.held_services(wanted.iter().map(WantedService::key).collect())?;
        let mut out = diff_services(&desired.services, &services);
        out.extend(self.snat.verify(&crate::dry_run::snat_only(desired))?);
        Ok(out)
    }

    fn counters(&self) -> Result<Vec<BackendCounters>, DataplaneError> {
        let mut out = Vec::new();
        let mut client = self.client();
        for w in &self.applied {
            let dests = match client.destinations(&w.service) {
                Ok(d) => d,
                Err(e) => {
                    return Err(IpvsBackendError::Kernel {
                        service: w.name.clone(),
                        error: e,
                    }
                    .into())
                }
            };
            for (name, want) in &w.dests {
                let Some(d) = dests
                    .iter()
                    .find(|d| d.destination.addr == want.addr && d.destination.port == want.port)
                else {
                    continue;
                };
                out.push(BackendCounters {
                    service: w.name.clone(),
                    backend: name.clone(),
                    addr: want.addr,
                    port: Some(want.port),
                    connections: d.stats.conns,
                    packets: Some(d.stats.in_packets + d.stats.out_packets),
                    bytes: Some(d.stats.in_bytes + d.stats.out_bytes),
                });
            }
        }
        Ok(out)
    }

    fn teardown(&mut self) -> Result<(), DataplaneError> {
        let mut keys = self.record.load()?;
        keys.extend(self.applied.iter().map(WantedService::key));
        let current = self.read_kernel(&BTreeSet::new())?;
        let doomed = plan::deletable(&current, &[], &keys);
        for s in &doomed {
            self.run(&Op::DelService(s.clone()), &self.applied)?;
        }
        self.record.remove()?;
        self.applied.clear();
        self.last_ops = doomed.into_iter().map(Op::DelService).collect();
        self.snat.teardown()?;
        if self.sync.is_some() {
            self.set_sync_role(SyncRole::Off, "", 0).map(drop)?;
        }
        Ok(())
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Ipvs
    }
}
