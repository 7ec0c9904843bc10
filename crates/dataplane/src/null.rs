//! A backend that only records: for tests and dry runs without a kernel.

use crate::nft::layout;
use crate::{AppliedState, ApplyReport, BackendCounters, Dataplane, DataplaneError, DesiredState};

/// Records the desired state; reports the nft layout it would produce.
#[derive(Debug, Default)]
pub struct NullBackend {
    applied: Option<DesiredState>,
    applies: usize,
}

impl NullBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last applied desired state.
    pub fn applied(&self) -> Option<&DesiredState> {
        self.applied.as_ref()
    }

    /// How many applies succeeded.
    pub fn applies(&self) -> usize {
        self.applies
    }
}

impl Dataplane for NullBackend {
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, DataplaneError> {
        let start = std::time::Instant::now();
        // Validate as the nft backend would, so tests catch what the kernel would refuse.
        let new = layout::plan(desired, layout::Counting::default())?;
        let old = match &self.applied {
            Some(d) => layout::plan(d, layout::Counting::default())?.state,
            None => layout::TableState::default(),
        };
        let mut report = layout::diff(&old, &new).report();
        report.duration = start.elapsed();
        self.applied = Some(desired.clone());
        self.applies += 1;
        Ok(report)
    }

    fn read_back(&self) -> Result<AppliedState, DataplaneError> {
        match &self.applied {
            Some(d) => Ok(layout::plan(d, layout::Counting::default())?
                .state
                .to_applied()),
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
                out.push(BackendCounters {
                    service: s.name.clone(),
                    backend: b.name.clone(),
                    addr: b.addr,
                    port: b.port,
                    connections: 0,
                    packets: single.then_some(0),
                    bytes: single.then_some(0),
                });
            }
        }
        Ok(out)
    }

    fn teardown(&mut self) -> Result<(), DataplaneError> {
        self.applied = None;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "null"
    }
}
