//! Service quorums to vrrpd: lbd sends its complete list of priority tracks
//! (one per service with a `quorum`) with vrrpd's `track.set`, source `lbd`,
//! whenever the list changes and again every [`REASSERT`], so that a vrrpd that
//! restarted learns it within one period. vrrpd adds the deltas of a sync group
//! to its configured priority (see vrrpd's `tracking` module). The same request
//! carries `preempt_hold`: why vrrpd should hold back preemption (this node lacks
//! the peer's connection state, see the `sync` module), or null.
//!
//! A separate task sends, so that the daemon loop never waits for vrrpd (which
//! may itself be waiting for lbd's answer to `prepare`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ctl::contract::vrrpd::{TrackParams, TrackSetReply};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::desired::PriorityTrack;

/// The `source` lbd names itself with.
pub const SOURCE: &str = "lbd";
/// vrrpd's method.
pub const METHOD: &str = "track.set";
/// How often the list is sent again when nothing changed.
pub const REASSERT: Duration = Duration::from_secs(2);
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(1);

/// What the sender last did, for status.
pub use ctl::contract::lbd::TrackReport;

/// The task that keeps vrrpd's copy of lbd's tracks current. Dropping it stops it.
#[derive(Debug)]
pub struct TrackSender {
    wanted: watch::Sender<Vec<PriorityTrack>>,
    report: Arc<Mutex<TrackReport>>,
    task: JoinHandle<()>,
}

impl TrackSender {
    /// Starts sending to vrrpd's control socket `socket` (inside a tokio runtime);
    /// `hold` gives the preemption hold as it changes (None: never holds).
    pub fn start(socket: PathBuf, hold: Option<watch::Receiver<Option<String>>>) -> TrackSender {
        let (wanted, rx) = watch::channel(Vec::new());
        let report = Arc::new(Mutex::new(TrackReport::default()));
        let hold = hold.unwrap_or_else(|| watch::channel(None).1);
        let task = tokio::spawn(run(socket, rx, hold, Arc::clone(&report)));
        TrackSender {
            wanted,
            report,
            task,
        }
    }

    /// The current list; sent at once if it differs from the previous one.
    pub fn set(&self, tracks: Vec<PriorityTrack>) {
        self.wanted.send_if_modified(|old| {
            let changed = *old != tracks;
            *old = tracks;
            changed
        });
    }

    /// What the sender last did.
    pub fn report(&self) -> TrackReport {
        self.report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TrackSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn run(
    socket: PathBuf,
    mut wanted: watch::Receiver<Vec<PriorityTrack>>,
    mut hold: watch::Receiver<Option<String>>,
    report: Arc<Mutex<TrackReport>>,
) {
    let mut failing = false;
    // With the sender of `hold` gone (no sync link), its last value stands.
    let mut hold_open = true;
    loop {
        let tracks = wanted.borrow_and_update().clone();
        let preempt_hold = hold.borrow_and_update().clone();
        let result = send(&socket, &tracks, preempt_hold.as_deref()).await;
        {
            let mut r = report.lock().unwrap_or_else(PoisonError::into_inner);
            r.requests += 1;
            match &result {
                Ok(_) => {
                    if r.accepted.as_ref() != Some(&tracks) {
                        tracing::info!(tracks = %ctl::logging::list(tracks.iter().map(|t| format!("{}: {} {}", t.group, t.name, t.weight_delta))), "vrrpd accepted the priority tracks");
                    }
                    if r.accepted_preempt_hold != preempt_hold {
                        tracing::info!(
                            preempt_hold = preempt_hold.as_deref().unwrap_or("none"),
                            "vrrpd accepted the preemption hold"
                        );
                    }
                    r.accepted = Some(tracks.clone());
                    r.accepted_preempt_hold = preempt_hold.clone();
                    r.accepted_unix_ms = Some(unix_ms());
                    r.error = None;
                }
                Err(e) => r.error = Some(e.clone()),
            }
        }
        match result {
            Ok(_) => failing = false,
            // A lost quorum that vrrpd does not hear of is worth a warning; an
            // absent vrrpd with nothing to say is not.
            Err(e)
                if !failing
                    && (preempt_hold.is_some() || tracks.iter().any(|t| t.weight_delta != 0)) =>
            {
                failing = true;
                tracing::warn!(error = %e, socket = %socket.display(), "cannot tell vrrpd the priority tracks; retrying");
            }
            Err(e) => tracing::debug!(error = %e, "track.set failed"),
        }
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            changed = hold.changed(), if hold_open => hold_open = changed.is_ok(),
            () = tokio::time::sleep(REASSERT) => {}
        }
    }
}

async fn send(
    socket: &PathBuf,
    tracks: &[PriorityTrack],
    preempt_hold: Option<&str>,
) -> Result<TrackSetReply, String> {
    let client = ctl::Client::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    let params = TrackParams {
        source: SOURCE.to_owned(),
        tracks: tracks.to_vec(),
        preempt_hold: preempt_hold.map(str::to_owned),
    };
    client
        .call_with_timeout(METHOD, &params, TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}
