//! Choosing the backend: `auto` takes IPVS when the kernel has it, else nftables,
//! and says why (for the log and `status`).

use ::ipvs::IpvsError;
pub use config::BackendChoice;

use serde::Serialize;

use super::error::IpvsBackendError;
use super::{IpvsBackend, IpvsSettings};
use crate::{
    AppliedState, ApplyReport, BackendCounters, BackendKind, ChangeHint, Dataplane, DataplaneError,
    DesiredState, Drift, NftBackend,
};

/// The backend in use.
#[derive(Debug)]
pub enum ChosenBackend {
    /// IPVS (with SNAT through nftables).
    Ipvs(Box<IpvsBackend>),
    /// nftables.
    Nft(NftBackend),
}

impl ChosenBackend {
    /// The IPVS backend, for what only it does (the sync daemon).
    pub fn ipvs(&mut self) -> Option<&mut IpvsBackend> {
        match self {
            ChosenBackend::Ipvs(b) => Some(b),
            ChosenBackend::Nft(_) => None,
        }
    }

    fn inner(&self) -> &dyn Dataplane {
        match self {
            ChosenBackend::Ipvs(b) => b.as_ref(),
            ChosenBackend::Nft(b) => b,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Dataplane {
        match self {
            ChosenBackend::Ipvs(b) => b.as_mut(),
            ChosenBackend::Nft(b) => b,
        }
    }
}

impl Dataplane for ChosenBackend {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        self.inner_mut().apply(desired)
    }

    fn apply_changed(
        &mut self,
        desired: &DesiredState,
        changed: &ChangeHint,
    ) -> Result<ApplyReport, DataplaneError> {
        self.inner_mut().apply_changed(desired, changed)
    }

    fn read_back(&self) -> Result<AppliedState, DataplaneError> {
        self.inner().read_back()
    }

    fn verify(&self, desired: &DesiredState) -> Result<Vec<Drift>, DataplaneError> {
        self.inner().verify(desired)
    }

    fn counters(&self) -> Result<Vec<BackendCounters>, DataplaneError> {
        self.inner().counters()
    }

    fn teardown(&mut self) -> Result<(), DataplaneError> {
        self.inner_mut().teardown()
    }

    fn kind(&self) -> BackendKind {
        self.inner().kind()
    }
}

/// Which backend was chosen, and why in words (for the log and `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// The backend.
    pub kind: BackendKind,
    /// Why it was chosen ("auto: ipvs, the kernel has IPVS 1.2.1").
    pub reason: String,
}

/// Creates the backend `choice` asks for, in the calling thread's network namespace.
/// `Auto` takes IPVS when it can be used, and nft when the kernel has no IPVS or when
/// `desired` needs what IPVS lacks (its [`Capabilities`](crate::Capabilities) say:
/// the random scheduler, port ranges); any other failure (no permission, no
/// conntrack sysctl) is an error rather than a silent fallback.
pub fn select_backend(
    choice: BackendChoice,
    settings: &IpvsSettings,
    desired: Option<&DesiredState>,
) -> Result<(ChosenBackend, Selection), DataplaneError> {
    let nft = |reason: String| -> Result<(ChosenBackend, Selection), DataplaneError> {
        let backend = ChosenBackend::Nft(NftBackend::new(&settings.nft_table)?);
        Ok(chosen(backend, reason))
    };
    let ipvs = |b: IpvsBackend, reason: String| chosen(ChosenBackend::Ipvs(Box::new(b)), reason);
    match choice {
        BackendChoice::Nft => nft("configured: nft".into()),
        BackendChoice::Ipvs => {
            let b = IpvsBackend::new(settings)?;
            let reason = format!("configured: ipvs (IPVS {})", b.version()?);
            Ok(ipvs(b, reason))
        }
        BackendChoice::Auto => {
            let refusal = desired.and_then(|d| BackendKind::Ipvs.capabilities().refusal(d));
            if let Some(why) = refusal {
                return nft(format!("auto: nft, because {why}, which IPVS cannot do"));
            }
            match IpvsBackend::new(settings) {
                Ok(b) => {
                    let reason = format!("auto: ipvs, the kernel has IPVS {}", b.version()?);
                    Ok(ipvs(b, reason))
                }
                Err(DataplaneError::Ipvs(e))
                    if matches!(*e, IpvsBackendError::Connect(IpvsError::NotAvailable)) =>
                {
                    nft("auto: nft, the kernel has no IPVS (generic netlink family \"IPVS\" not found)".into())
                }
                Err(e) => Err(e),
            }
        }
    }
}

fn chosen(backend: ChosenBackend, reason: String) -> (ChosenBackend, Selection) {
    let kind = backend.kind();
    (backend, Selection { kind, reason })
}
