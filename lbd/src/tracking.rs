//! Service quorums to vrrpd: lbd sends its complete list of priority tracks
//! (one per service with a `quorum`) with vrrpd's `track.set`, source `lbd`,
//! whenever the list changes and again every [`REASSERT`], so that a vrrpd that
//! restarted learns it within one period. vrrpd adds the deltas of a sync group
//! to its configured priority (see vrrpd's `tracking` module).
//!
//! A separate task sends, so that the daemon loop never waits for vrrpd (which
//! may itself be waiting for lbd's answer to `prepare`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrackReport {
    /// The list vrrpd last accepted.
    pub accepted: Option<Vec<PriorityTrack>>,
    /// When (Unix ms).
    pub accepted_unix_ms: Option<u64>,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
    /// Requests sent.
    pub requests: u64,
}

/// The task that keeps vrrpd's copy of lbd's tracks current. Dropping it stops it.
#[derive(Debug)]
pub struct TrackSender {
    wanted: watch::Sender<Vec<PriorityTrack>>,
    report: Arc<Mutex<TrackReport>>,
    task: JoinHandle<()>,
}

impl TrackSender {
    /// Starts sending to vrrpd's control socket `socket` (inside a tokio runtime).
    pub fn start(socket: PathBuf) -> TrackSender {
        let (wanted, rx) = watch::channel(Vec::new());
        let report = Arc::new(Mutex::new(TrackReport::default()));
        let task = tokio::spawn(run(socket, rx, Arc::clone(&report)));
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
    report: Arc<Mutex<TrackReport>>,
) {
    let mut failing = false;
    loop {
        let tracks = wanted.borrow_and_update().clone();
        let result = send(&socket, &tracks).await;
        {
            let mut r = report.lock().unwrap_or_else(PoisonError::into_inner);
            r.requests += 1;
            match &result {
                Ok(_) => {
                    if r.accepted.as_ref() != Some(&tracks) {
                        tracing::info!(tracks = ?tracks, "vrrpd accepted the priority tracks");
                    }
                    r.accepted = Some(tracks.clone());
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
            Err(e) if !failing && tracks.iter().any(|t| t.weight_delta != 0) => {
                failing = true;
                tracing::warn!(error = %e, socket = %socket.display(), "cannot tell vrrpd the priority tracks; retrying");
            }
            Err(e) => tracing::debug!(error = %e, "track.set failed"),
        }
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(REASSERT) => {}
        }
    }
}

async fn send(socket: &PathBuf, tracks: &[PriorityTrack]) -> Result<Value, String> {
    let client = ctl::Client::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    client
        .request_with_timeout(METHOD, json!({"source": SOURCE, "tracks": tracks}), TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}
