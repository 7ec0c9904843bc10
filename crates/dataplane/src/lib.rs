//! The load balancer's dataplane: a desired-state model ([`DesiredState`]), the
//! [`Dataplane`] trait every backend implements, the backends ([`NftBackend`] on
//! libnftnl, [`IpvsBackend`]) with what each can do ([`BackendKind`],
//! [`Capabilities`]), the choice between them ([`select_backend`]), and a
//! [`DryRun`] that validates as a backend would without touching a kernel.
//!
//! A backend diffs the desired state against what is applied and sends the
//! difference (nft: in one atomic transaction); [`Dataplane::read_back`] reports
//! what the kernel holds in the desired state's terms, and [`Dataplane::verify`]
//! where it differs from a desired state.

mod dry_run;
mod error;
pub mod ipvs;
mod kind;
mod model;
pub mod nft;
mod report;
pub mod slots;
mod verify;

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::ipvs::{
    select_backend, BackendChoice, ChosenBackend, IpvsBackend, IpvsSettings, Selection, SyncRole,
};
pub use dry_run::DryRun;
pub use error::DataplaneError;
pub use kind::{BackendKind, Capabilities};
pub use model::{
    Backend, DesiredState, Forwarding, NatProtocol, Persistence, PortSpec, Protocol, Scheduler,
    Service, SnatRule, SnatSource,
};
pub use nft::{Counting, NftBackend, DEFAULT_TABLE};
pub use report::{ApplyReport, Counts, IpvsChanges, KernelChanges, NftChanges};
pub use verify::{diff_services, Drift};

/// A dataplane backend: applies desired states, reads back, counts.
pub trait Dataplane {
    /// Makes the kernel hold `desired`, changing only what differs, all or nothing.
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError>;
    /// Like [`apply`](Dataplane::apply), trusting `hint` to name everything that may
    /// differ from the last desired state this backend applied successfully, so that a
    /// backend can look at those services only. The default ignores the hint.
    fn apply_changed(
        &mut self,
        desired: &DesiredState,
        hint: &ChangeHint,
    ) -> Result<ApplyReport, DataplaneError> {
        let _ = hint;
        self.apply(desired)
    }
    /// What the kernel holds now (the objects this backend owns).
    fn read_back(&self) -> Result<AppliedState, DataplaneError>;
    /// Where the kernel differs from `desired`, in its terms (empty: it holds exactly
    /// that). The default compares `desired`'s services with the read-back ones.
    fn verify(&self, desired: &DesiredState) -> Result<Vec<Drift>, DataplaneError> {
        Ok(diff_services(
            &desired.services,
            &self.read_back()?.services,
        ))
    }
    /// Per-backend counters of the last applied state.
    fn counters(&self) -> Result<Vec<BackendCounters>, DataplaneError>;
    /// Removes everything this backend owns (and nothing else).
    fn teardown(&mut self) -> Result<(), DataplaneError>;
    /// Which backend this is (a [`DryRun`] says which one it stands in for).
    fn kind(&self) -> BackendKind;
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities {
        self.kind().capabilities()
    }
    /// Backend name for logs ("nft", "ipvs", "dry-run").
    fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// What may differ between a desired state and the one last applied successfully
/// through the same backend: the caller's promise for [`Dataplane::apply_changed`].
///
/// A service that is not named must be in the new state exactly as it was in the last
/// one (same name, same value; its position may move). After an apply fails, the next
/// hint must still cover what the failed one covered (or call `apply`); the nft backend
/// also falls back to a full comparison by itself after a failure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeHint {
    /// Names of the services that may have been added, removed or modified.
    pub services: BTreeSet<String>,
    /// Whether the SNAT rules may have changed.
    pub snat: bool,
}

impl ChangeHint {
    /// A hint naming one service (a health change, a weight set by hand).
    pub fn for_service(name: &str) -> ChangeHint {
        ChangeHint::for_services([name])
    }

    /// A hint naming these services (a reload's added, removed and changed ones).
    pub fn for_services<I, S>(names: I) -> ChangeHint
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ChangeHint {
            services: names.into_iter().map(Into::into).collect(),
            snat: false,
        }
    }

    /// The same hint, with the SNAT rules marked as possibly changed.
    pub fn with_snat(mut self) -> ChangeHint {
        self.snat = true;
        self
    }
}

/// What a backend holds, read back from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The balanced services in the desired state's terms. IPVS: the services it
    /// owns, read from the kernel (names from the last apply; a service or server it
    /// did not name is called by its address). nft: the services of the last apply
    /// while the table is exactly their layout; empty when the table differs (its
    /// slot maps keep neither weights nor the scheduler's name, so a table changed
    /// by others cannot be read as services: [`Dataplane::verify`] names the
    /// difference).
    pub services: Vec<Service>,
    /// The nftables table the backend owns (detail: chains, sets, rules).
    pub nft: NftTable,
}

/// An nftables table as a backend holds it (the nft balancer's whole table, the IPVS
/// backend's SNAT rules): the backend-specific detail of a read-back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftTable {
    /// Whether the owned table exists.
    pub exists: bool,
    /// Chains of the table.
    pub chains: Vec<String>,
    /// Maps and sets with their elements, by name.
    pub sets: Vec<NftSet>,
    /// Rules: (chain, comment) in chain order; the comment identifies the rule.
    pub rules: Vec<(String, String)>,
}

impl NftTable {
    /// Every DNAT slot held, decoded (all DNAT maps).
    pub fn dnat_slots(&self) -> Vec<DnatSlot> {
        self.sets
            .iter()
            .flat_map(|s| s.elements.iter().filter_map(|e| e.slot.clone()))
            .collect()
    }

    /// The set or map called `name`.
    pub fn set(&self, name: &str) -> Option<&NftSet> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// One map or set of the owned table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftSet {
    /// Name.
    pub name: String,
    /// Elements in key order.
    pub elements: Vec<NftElement>,
}

/// One element: raw key (and range end), raw data, counter, and the decoded slot for
/// DNAT maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftElement {
    /// Key bytes as the kernel holds them (registers, 4-byte aligned fields).
    pub key: Vec<u8>,
    /// End of the key range (interval maps).
    pub key_end: Option<Vec<u8>>,
    /// Data bytes (maps).
    pub data: Vec<u8>,
    /// Counter (packets, bytes), when the set counts.
    pub counter: Option<(u64, u64)>,
    /// The decoded DNAT slot, for DNAT map elements.
    pub slot: Option<DnatSlot>,
}

/// One DNAT slot: which backend a (protocol, VIP, port, slot) goes to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DnatSlot {
    /// Map holding it.
    pub map: String,
    /// Protocol.
    pub protocol: Protocol,
    /// VIP.
    pub vip: IpAddr,
    /// Port or range.
    pub ports: PortSpec,
    /// Slot number (selector value).
    pub slot: u32,
    /// Backend address.
    pub backend: IpAddr,
    /// Backend port (`None`: the client's port is kept).
    pub backend_port: Option<u16>,
}

/// Counters of one backend of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Service name.
    pub service: String,
    /// Backend name.
    pub backend: String,
    /// Backend address.
    pub addr: IpAddr,
    /// Backend port (`None`: the client's port).
    pub port: Option<u16>,
    /// New connections sent to it since its counter was created (nft: a per-backend
    /// counter in a nat chain, or its DNAT slots for port ranges; 0 when not counted).
    pub connections: u64,
    /// Packets of its connections, both directions (`None`: not counted: port ranges,
    /// or the nft backend without [`Counting::Traffic`]).
    pub packets: Option<u64>,
    /// Bytes of its connections, both directions (`None` as for `packets`).
    pub bytes: Option<u64>,
}

impl BackendCounters {
    /// Nothing counted yet for `backend` of `service`: packets and bytes start at 0
    /// when `traffic` is counted, else are `None`.
    pub fn zero(service: &Service, backend: &Backend, traffic: bool) -> BackendCounters {
        BackendCounters {
            service: service.name.clone(),
            backend: backend.name.clone(),
            addr: backend.addr,
            port: backend.port,
            connections: 0,
            packets: traffic.then_some(0),
            bytes: traffic.then_some(0),
        }
    }
}
