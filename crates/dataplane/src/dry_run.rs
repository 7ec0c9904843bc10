//! A dry run: a backend that touches no kernel. It validates a desired state as the
//! backend it stands in for would (what that backend would refuse, it refuses with
//! the same error), reports what an apply would change, and records the state.
//! lbd validates a reload with it before touching the kernel; tests use it where no
//! kernel is at hand.

use crate::ipvs::plan::{self as ipvs_plan, CurrentService, WantedService};
use crate::nft::layout;
use crate::{
    AppliedState, ApplyReport, BackendCounters, BackendKind, Dataplane, DataplaneError,
    DesiredState,
};

/// Validates and records desired states as backend `kind` would, without a kernel.
#[derive(Debug)]
pub struct DryRun {
    kind: BackendKind,
    applied: Option<DesiredState>,
    applies: usize,
}

impl DryRun {
    /// A dry run of backend `kind`, holding nothing yet.
    pub fn new(kind: BackendKind) -> Self {
        DryRun {
            kind,
            applied: None,
            applies: 0,
        }
    }

    /// What backend `kind` would refuse in `desired`: what the first apply of a dry
    /// run of it refuses, with the same error, without counting what it would change
    /// or recording the state (a check of the whole state before a first apply).
    pub fn validate(kind: BackendKind, desired: &DesiredState) -> Result<(), DataplaneError> {
        DryRun::new(kind).nft_layout(desired)?;
        if kind == BackendKind::Ipvs {
            ipvs_plan::wanted(desired)?;
        }
        Ok(())
    }

    /// The last applied desired state.
    pub fn applied(&self) -> Option<&DesiredState> {
        self.applied.as_ref()
    }

    /// How many applies succeeded.
    pub fn applies(&self) -> usize {
        self.applies
    }

    /// What this backend's nftables table would hold for `desired`: everything under
    /// nft, the SNAT rules only under IPVS.
    fn nft_layout(&self, desired: &DesiredState) -> Result<layout::Layout, DataplaneError> {
        match self.kind {
            BackendKind::Nft => layout::plan(desired, layout::Counting::default()),
            BackendKind::Ipvs => layout::plan(&snat_only(desired), layout::Counting::default()),
        }
    }
}

/// `desired` without its services (what the IPVS backend's nftables table holds).
pub(crate) fn snat_only(desired: &DesiredState) -> DesiredState {
    DesiredState {
        services: Vec::new(),
        snat: desired.snat.clone(),
    }
}

impl Dataplane for DryRun {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let start = std::time::Instant::now();
        // Validate as the backend would, so that a dry run refuses what the kernel
        // would never be asked to hold.
        let new = self.nft_layout(desired)?;
        let old = match &self.applied {
            Some(d) => self.nft_layout(d)?.state,
            None => layout::TableState::default(),
        };
        let mut report = ApplyReport::default();
        report.kernel.nft = layout::diff(&old, &new).counts();
        if self.kind == BackendKind::Ipvs {
            let wanted = ipvs_plan::wanted(desired)?;
            let before = match &self.applied {
                Some(d) => ipvs_plan::wanted(d)?,
                None => Vec::new(),
            };
            let owned = before.iter().map(WantedService::key).collect();
            let current: Vec<CurrentService> =
                before.iter().map(CurrentService::of_wanted).collect();
            let ops = ipvs_plan::plan(&wanted, &current, &owned);
            ipvs_plan::count(&ops, &mut report);
        }
        // What the nft backend would count (under IPVS: for its SNAT table): against
        // the state applied before, or on a first apply whatever the table needs.
        let empty = DesiredState::default();
        let before = match &self.applied {
            Some(d) => Some(d),
            None => (report.kernel.nft.total() > 0).then_some(&empty),
        };
        if let Some(before) = before {
            if self.kind == BackendKind::Nft {
                report.count_services(&before.services, &desired.services);
            }
            report.count_snat(&before.snat, &desired.snat);
        }
        report.duration = start.elapsed();
        self.applied = Some(desired.clone());
        self.applies += 1;
        Ok(report)
    }

    fn read_back(&self) -> Result<AppliedState, DataplaneError> {
        match &self.applied {
            Some(d) => Ok(AppliedState {
                services: d.services.clone(),
                nft: self.nft_layout(d)?.state.to_table(),
            }),
            None => Ok(AppliedState::default()),
        }
    }

    fn counters(&self) -> Result<Vec<BackendCounters>, DataplaneError> {
        let Some(d) = &self.applied else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for s in &d.services {
            for b in &s.backends {
                let single = matches!(s.ports, crate::PortSpec::Single(_));
                out.push(BackendCounters::zero(s, b, single));
            }
        }
        Ok(out)
    }

    fn teardown(&mut self) -> Result<(), DataplaneError> {
        self.applied = None;
        Ok(())
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn name(&self) -> &'static str {
        "dry-run"
    }
}
