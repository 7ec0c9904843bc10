//! Which dataplane backend lbd runs, and the thread that owns it.
//!
//! The backends are synchronous and keep a netlink socket opened in the namespace of
//! the thread that created them; [`DataplaneThread`] creates the backend on a thread
//! of its own (in the daemon's namespace) and runs every operation there, one at a
//! time, for async and blocking callers alike.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use config::{ClusterMode, NodeView};
use dataplane::nft::flowtable::{Flowtable, FlowtableError};
use dataplane::{
    ApplyReport, BackendChoice, BackendKind, ChosenBackend, Counting, Dataplane, DataplaneError,
    DesiredState, DryRun, IpvsSettings, Selection,
};
use tokio::sync::oneshot;

/// What `kind` would refuse in `state`, found without touching the kernel (a reload
/// is refused on it): a [`DryRun`] of that backend.
pub fn validate(kind: BackendKind, state: &DesiredState) -> Result<(), DataplaneError> {
    DryRun::validate(kind, state)
}

/// Why no backend could be chosen or opened. A variant that wraps the dataplane's error
/// says its text itself and does not return it as `source()` as well: an `anyhow`
/// chain (`{:#}`) prints it once.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The configured backend could not be opened (no IPVS in the kernel, no
    /// permission, no netlink).
    #[error("dataplane.backend = \"{choice}\": {error}")]
    Open {
        /// The setting.
        choice: BackendChoice,
        /// What the dataplane said.
        error: DataplaneError,
    },
    /// The backend thread could not be started or died while opening.
    #[error("starting the dataplane thread: {0}")]
    Thread(String),
}

/// Where the backends keep what they own: the nftables table, and the IPVS
/// ownership record beside lbd's control socket (`/run/lbsuite/ipvs-owned` by
/// default), so that two lbds on one filesystem (test namespaces) keep theirs apart.
pub fn backend_settings(view: &NodeView) -> IpvsSettings {
    let dir = view
        .control
        .lbd_socket
        .parent()
        .map_or_else(|| PathBuf::from("/run/lbsuite"), PathBuf::from);
    IpvsSettings {
        nft_table: view.dataplane.nft_table.clone(),
        ownership_record: dir.join("ipvs-owned"),
        // A flow the router moves here arrives in the middle: IPVS must take it up.
        sloppy: view.mode == ClusterMode::ActiveActive,
    }
}

/// Where a stopping lbd leaves the nft backend's adoption record (beside the control
/// socket, one per table), so that the next start adopts the table without reading
/// it back when nothing changed it meanwhile.
pub fn adoption_record(view: &NodeView) -> PathBuf {
    let dir = view
        .control
        .lbd_socket
        .parent()
        .map_or_else(|| PathBuf::from("/run/lbsuite"), PathBuf::from);
    dir.join(format!("nft-{}.adopt", view.dataplane.nft_table))
}

/// The interfaces `[dataplane] flowtable` spans on this node (see
/// [`config::DataplaneSettings::flowtable_devices_of`]).
pub fn flowtable_devices(view: &NodeView) -> Vec<String> {
    view.dataplane.flowtable_devices_of(
        view.groups
            .iter()
            .flat_map(|g| g.instances.iter().map(|i| &i.config)),
        &view.nat,
    )
}

/// Sets up nftables' flowtable for the nft backend's established connections when
/// `[dataplane] flowtable = true` (a kernel without one is an error: the operator
/// asked for it), or removes one a previous lbd left when it is off. Runs on the
/// dataplane thread (lbd's network namespace). Returns the devices it spans.
pub async fn set_up_flowtable(
    thread: &DataplaneThread,
    view: &NodeView,
) -> anyhow::Result<Option<Vec<String>>> {
    let set_up = flowtable_set_up(view);
    thread.run(move |_| set_up()).await?
}

/// [`set_up_flowtable`]'s work, to run on the dataplane thread.
fn flowtable_set_up(view: &NodeView) -> impl FnOnce() -> anyhow::Result<Option<Vec<String>>> {
    let table = view.dataplane.nft_table.clone();
    let on = view.dataplane.flowtable;
    let devices = flowtable_devices(view);
    move || {
        let done = (|| -> Result<Option<Vec<String>>, FlowtableError> {
            let ft = Flowtable::new(&table)?;
            if on {
                // Nothing committed when the table is as the last lbd left it.
                ft.ensure(&devices)?;
                Ok(Some(devices))
            } else {
                ft.remove()?;
                Ok(None)
            }
        })();
        done.map_err(|e| {
            anyhow::anyhow!(
                "[dataplane] flowtable = {on}: table inet {}: {e}",
                dataplane::nft::flowtable::table_name(&table)
            )
        })
    }
}

/// The start's first apply, under way on the dataplane thread ([`first_apply`]).
pub struct FirstApply {
    /// The whole state passed the backend's checks and the flowtable is set up as
    /// configured (the devices it spans; `None`: off), or the flowtable's set-up
    /// failed (nothing applied). Closed without a word when the apply failed before
    /// its check (a state the backend refuses, or a kernel that does not answer).
    pub checked: oneshot::Receiver<anyhow::Result<Option<Vec<String>>>>,
    /// The apply's outcome; `Ok(None)`: stopped after its check, nothing sent.
    pub applied: oneshot::Receiver<Result<Option<ApplyReport>, DataplaneError>>,
}

/// Starts the start's first apply of `state` on the dataplane thread, to run while
/// the start prepares what does not touch the kernel: where the adoption record is
/// and what the table counts are set, the state is checked as a dry run would check
/// it (for nft the apply's own planning, not a second pass), the flowtable is set
/// up once that passed, then the state is applied. Nothing reaches the kernel
/// before the check passed.
pub fn first_apply(
    thread: &DataplaneThread,
    view: &NodeView,
    state: Arc<DesiredState>,
    counting: Counting,
) -> Result<FirstApply, ThreadGone> {
    let (checked_tx, checked) = oneshot::channel();
    let (applied_tx, applied) = oneshot::channel();
    let flowtable = flowtable_set_up(view);
    let record = adoption_record(view);
    let kind = thread.kind();
    thread.post(move |dp| {
        let check = move || {
            let set_up = flowtable();
            let go = set_up.is_ok();
            let _ = checked_tx.send(set_up);
            go
        };
        let applied = move |outcome| {
            let _ = applied_tx.send(outcome);
        };
        if let ChosenBackend::Nft(nft) = dp {
            nft.set_adoption_record(record);
            nft.set_counting(counting);
            nft.apply_first(&state, check, applied);
        } else {
            applied(match validate(kind, &state) {
                Err(e) => Err(e),
                Ok(()) if check() => dp.apply(&state).map(Some),
                Ok(()) => Ok(None),
            });
        }
        // The parser's pages and the first apply's go back to the kernel (after the
        // nft backend's counting batch, which comes after the caller heard).
        crate::daemon::release_free_memory();
    })?;
    Ok(FirstApply { checked, applied })
}

type Job = Box<dyn FnOnce(&mut ChosenBackend) + Send>;

/// The dataplane thread went away (it ends only when every handle is dropped, or if
/// a backend call panicked).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the dataplane thread is gone")]
pub struct ThreadGone;

/// A handle on the thread that owns the backend; cheap to clone.
#[derive(Debug, Clone)]
pub struct DataplaneThread {
    jobs: mpsc::Sender<Job>,
    kind: BackendKind,
}

impl DataplaneThread {
    /// Starts the thread and chooses and opens the backend there
    /// ([`dataplane::select_backend`]); returns once it is open.
    pub fn start(
        choice: BackendChoice,
        settings: IpvsSettings,
        desired: Option<DesiredState>,
    ) -> Result<(DataplaneThread, Selection), BackendError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, open_result) = mpsc::channel();
        thread::Builder::new()
            .name("dataplane".into())
            .spawn(move || {
                let chosen = dataplane::select_backend(choice, &settings, desired.as_ref());
                // Not kept for the thread's life (10,000s of services).
                drop(desired);
                let mut backend = match chosen {
                    Ok((b, selection)) => {
                        let _ = opened.send(Ok(selection));
                        b
                    }
                    Err(error) => {
                        let _ = opened.send(Err(BackendError::Open { choice, error }));
                        return;
                    }
                };
                for job in queue {
                    job(&mut backend);
                }
            })
            .map_err(|e| BackendError::Thread(e.to_string()))?;
        match open_result.recv() {
            Ok(Ok(selection)) => Ok((
                DataplaneThread {
                    jobs,
                    kind: selection.kind,
                },
                selection,
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BackendError::Thread(
                "the thread ended while opening the backend".into(),
            )),
        }
    }

    /// The backend kind.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// Queues `f` to run on the backend after the jobs already queued, without
    /// waiting for it. If the thread is gone, `f` is dropped unrun.
    pub fn post<F>(&self, f: F) -> Result<(), ThreadGone>
    where
        F: FnOnce(&mut ChosenBackend) + Send + 'static,
    {
        self.jobs.send(Box::new(f)).map_err(|_| ThreadGone)
    }

    /// Runs `f` on the backend and waits for it without blocking the runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ThreadGone>
    where
        T: Send + 'static,
        F: FnOnce(&mut ChosenBackend) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.post(move |dp| {
            let _ = tx.send(f(dp));
        })?;
        rx.await.map_err(|_| ThreadGone)
    }

    /// Runs `f` on the backend, blocking the calling (non-async) thread at most
    /// `timeout`; `None` if it took longer or the thread is gone.
    pub fn run_blocking<T, F>(&self, timeout: Duration, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut ChosenBackend) -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.post(move |dp| {
            let _ = tx.send(f(dp));
        })
        .ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{self, ServerHealth};

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let e: anyhow::Error = BackendError::Open {
            choice: BackendChoice::Nft,
            error: DataplaneError::Socket {
                op: "bind",
                error: std::io::Error::other("the kernel said no"),
            },
        }
        .into();
        let chain = format!("{e:#}");
        assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
    }

    /// IPVS takes up moved flows in the middle in active-active mode only.
    #[test]
    fn active_active_asks_ipvs_for_sloppy_pickup() {
        let view = |text: &str, node: &str| {
            config::parse(text, "t.toml")
                .unwrap()
                .node_view(Some(node))
                .unwrap()
        };
        let pair = view(include_str!("../../cluster.toml.example"), "lb1");
        let aa = include_str!("../../crates/config/tests/valid/active_active.toml");
        assert!(!backend_settings(&pair).sloppy);
        assert!(backend_settings(&view(aa, "lb1")).sloppy);
    }

    /// The flowtable spans the interfaces of the node's instances and SNAT rules
    /// (the example's two arms), or exactly the ones configured.
    #[test]
    fn flowtable_devices_are_the_forwarding_interfaces_or_the_configured_ones() {
        let example = include_str!("../../cluster.toml.example");
        let view = |text: &str| {
            config::parse(text, "t.toml")
                .unwrap()
                .node_view(Some("lb1"))
                .unwrap()
        };
        assert_eq!(flowtable_devices(&view(example)), ["eth0", "eth1"]);
        let text = example.replace(
            "# flowtable_devices = [\"eth0\", \"eth1\"]",
            "flowtable_devices = [\"eth1\", \"bond0\"]",
        );
        assert_ne!(text, example);
        assert_eq!(flowtable_devices(&view(&text)), ["eth1", "bond0"]);
    }

    /// The example's plan under IPVS, with service `web` on sed (shortest expected
    /// delay, which only IPVS computes).
    fn sed_state() -> DesiredState {
        let text = include_str!("../../cluster.toml.example")
            .replace("scheduler = \"rr\"", "scheduler = \"sed\"");
        let view = config::parse(&text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        std::sync::Arc::unwrap_or_clone(
            desired::plan(
                &view,
                |_, _| ServerHealth::Up,
                BackendKind::Ipvs.capabilities(),
            )
            .state,
        )
    }

    #[test]
    fn validation_follows_the_backend() {
        // sed needs each connection's expected delay: IPVS has it, the nft layout refuses it,
        // naming the backend that has it (lbd's plan keeps it as configured).
        let state = sed_state();
        validate(BackendKind::Ipvs, &state).unwrap();
        let err = validate(BackendKind::Nft, &state).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("scheduler sed is not available with the nft backend")
                && text.contains("the ipvs backend has it"),
            "{err}"
        );
        // A port range is nft's only.
        let mut state = sed_state();
        state.services[0].ports = dataplane::PortSpec::Range(8000, 8010);
        state.services[0].scheduler = dataplane::Scheduler::Wrr;
        for b in &mut state.services[0].backends {
            b.port = None;
        }
        let err = validate(BackendKind::Ipvs, &state).unwrap_err();
        assert!(err.to_string().contains("8000"), "{err}");
        validate(BackendKind::Nft, &state).unwrap();
    }

    #[test]
    fn settings_follow_the_config() {
        let text = include_str!("../../cluster.toml.example")
            .replace("\"/run/lbsuite/lbd.sock\"", "\"/tmp/x/lbd.sock\"")
            .replace("nft_table = \"lbsuite\"", "nft_table = \"mine\"");
        let view = config::parse(&text, "t.toml")
            .unwrap()
            .node_view(Some("lb1"))
            .unwrap();
        let s = backend_settings(&view);
        assert_eq!(s.nft_table, "mine");
        assert_eq!(s.ownership_record, PathBuf::from("/tmp/x/ipvs-owned"));
    }
}
