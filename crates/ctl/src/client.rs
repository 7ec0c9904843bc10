//! Talking to a daemon's control socket: requests with timeouts, subscriptions, and
//! a subscription that reconnects and resumes by itself.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::CtlError;
use crate::line::{Line, LineReader};
use crate::wire::{
    codes, methods, Event, Gap, Outcome, Reply, ReplyError, Request, ServerLine, SubscribeParams,
    SubscribeResult, MAX_SERVER_LINE, PROTOCOL_VERSION,
};

/// Default time a request waits for its reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Events buffered on the client side before the connection stops reading.
const EVENT_QUEUE: usize = 1024;

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The next event.
    Event(Event),
    /// Events were lost: re-read full status; events from `first_seq` on follow.
    Gap(Gap),
}

/// Why a connection ended, kept so that every waiter gets the same precise error.
#[derive(Debug, Clone)]
enum Closed {
    Eof,
    /// The server's last word, a reply to no request (id 0): why it closes.
    Dropped(ReplyError),
    Io(io::ErrorKind, String),
    Protocol(String),
}

impl Closed {
    fn error(&self, path: &Path) -> CtlError {
        let path = path.to_path_buf();
        match self {
            Closed::Eof => CtlError::ConnectionClosed { path },
            Closed::Dropped(error) => CtlError::Dropped {
                path,
                error: error.clone(),
            },
            Closed::Io(kind, msg) => CtlError::Io {
                path,
                error: io::Error::new(*kind, msg.clone()),
            },
            Closed::Protocol(reason) => CtlError::Protocol {
                path,
                reason: reason.clone(),
            },
        }
    }
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    closed: Option<Closed>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<ConnState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        // Every critical section is a single map operation: safe after a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn close(&self, why: Closed) {
        let mut state = self.lock();
        state.closed.get_or_insert(why);
        // Dropping the senders wakes every waiter.
        state.pending.clear();
    }

    fn closed_error(&self, path: &Path) -> CtlError {
        self.lock().closed.as_ref().map_or(
            CtlError::ConnectionClosed {
                path: path.to_path_buf(),
            },
            |c| c.error(path),
        )
    }
}

/// Removes a request from the pending map when its caller gives up (timeout, cancel).
struct PendingEntry<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

/// A connection to one daemon's control socket.
pub struct Client {
    path: PathBuf,
    shared: Arc<Shared>,
    lines: mpsc::Sender<String>,
    next_id: AtomicU64,
    timeout: Duration,
    pushes: Option<mpsc::Receiver<Notice>>,
    tasks: [JoinHandle<()>; 2],
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client {
    /// Connects to the socket at `path`. Errors name the path and say whether the
    /// daemon looks absent ([`CtlError::NotRunning`]) or forbids us ([`CtlError::PermissionDenied`]).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, CtlError> {
        let path = path.as_ref().to_path_buf();
        let stream = UnixStream::connect(&path)
            .await
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    CtlError::NotRunning {
                        path: path.clone(),
                        source,
                    }
                }
                io::ErrorKind::PermissionDenied => CtlError::PermissionDenied {
                    path: path.clone(),
                    source,
                },
                _ => CtlError::Connect {
                    path: path.clone(),
                    error: source,
                },
            })?;
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared::default());
        let (lines, lines_rx) = mpsc::channel(64);
        let (pushes_tx, pushes) = mpsc::channel(EVENT_QUEUE);
        let writer = tokio::spawn(write_lines(write, lines_rx, Arc::clone(&shared)));
        let reader = tokio::spawn(read_lines(read, Arc::clone(&shared), pushes_tx));
        Ok(Client {
            path,
            shared,
            lines,
            next_id: AtomicU64::new(1),
            timeout: DEFAULT_TIMEOUT,
            pushes: Some(pushes),
            tasks: [writer, reader],
        })
    }

    /// Sets the default request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends a request and waits (at most the client's timeout) for its result.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, CtlError> {
        self.request_with_timeout(method, params, self.timeout)
            .await
    }

    /// Sends typed params and reads the result as `R` (a [`crate::contract`] reply),
    /// waiting at most the client's timeout.
    pub async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<R, CtlError> {
        self.call_with_timeout(method, params, self.timeout).await
    }

    /// [`Client::call`] with its own timeout.
    pub async fn call_with_timeout<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, CtlError> {
        let params = serde_json::to_value(params).map_err(|error| CtlError::Encode {
            method: method.to_string(),
            error,
        })?;
        let value = self.request_with_timeout(method, params, timeout).await?;
        serde_json::from_value(value).map_err(|error| CtlError::Decode {
            path: self.path.clone(),
            method: method.to_string(),
            error,
        })
    }

    /// Sends a request and waits at most `timeout` for its result (e.g. a `prepare` budget).
    pub async fn request_with_timeout(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CtlError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = serde_json::to_string(&Request::new(id, method, params)).map_err(|error| {
            CtlError::Encode {
                method: method.to_string(),
                error,
            }
        })?;
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(closed) = &state.closed {
                return Err(closed.error(&self.path));
            }
            state.pending.insert(id, reply_tx);
        }
        let _entry = PendingEntry {
            shared: &self.shared,
            id,
        };
        let exchange = async {
            // Whole lines through a channel: a cancelled request never leaves half a line.
            self.lines
                .send(line)
                .await
                .map_err(|_| self.shared.closed_error(&self.path))?;
            reply_rx
                .await
                .map_err(|_| self.shared.closed_error(&self.path))
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CtlError::Timeout {
                path: self.path.clone(),
                method: method.to_string(),
                timeout,
            })??;
        match reply.outcome {
            Outcome::Result(value) => Ok(value),
            Outcome::Error(error) if error.code == codes::UNSUPPORTED_VERSION => {
                Err(CtlError::VersionMismatch {
                    path: self.path.clone(),
                    ours: PROTOCOL_VERSION,
                    message: error.message,
                })
            }
            Outcome::Error(error) => Err(CtlError::Remote {
                path: self.path.clone(),
                method: method.to_string(),
                error,
            }),
        }
    }

    /// Subscribes to `topics` (empty = all), resuming after `since` if given.
    pub async fn subscribe(
        self,
        topics: Vec<String>,
        since: Option<u64>,
    ) -> Result<Subscription, CtlError> {
        self.subscribe_with(SubscribeParams {
            topics,
            since,
            epoch: None,
        })
        .await
    }

    /// Subscribes with full parameters (including the epoch `since` belongs to).
    pub async fn subscribe_with(
        mut self,
        params: SubscribeParams,
    ) -> Result<Subscription, CtlError> {
        let since = params.since;
        let encoded = serde_json::to_value(&params).map_err(|error| CtlError::Encode {
            method: methods::SUBSCRIBE.to_string(),
            error,
        })?;
        let result = self.request(methods::SUBSCRIBE, encoded).await?;
        let result: SubscribeResult =
            serde_json::from_value(result).map_err(|err| CtlError::Protocol {
                path: self.path.clone(),
                reason: format!("bad subscribe result: {err}"),
            })?;
        let pushes = self.pushes.take().ok_or_else(|| CtlError::Protocol {
            path: self.path.clone(),
            reason: "connection already subscribed".to_string(),
        })?;
        Ok(Subscription {
            client: self,
            pushes,
            epoch: result.epoch,
            last_seq: since.unwrap_or(result.latest_seq),
        })
    }
}

/// Sends queued request lines; records why the connection broke if it does.
async fn write_lines(
    write: OwnedWriteHalf,
    mut lines: mpsc::Receiver<String>,
    shared: Arc<Shared>,
) {
    let mut out = BufWriter::new(write);
    while let Some(line) = lines.recv().await {
        let written = async {
            out.write_all(line.as_bytes()).await?;
            out.write_all(b"\n").await?;
            out.flush().await
        };
        if let Err(err) = written.await {
            // A server that closes says why first (too many connections, idle): let
            // the reader deliver that before the bare broken pipe.
            for _ in 0..10 {
                if shared.lock().closed.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            shared.close(Closed::Io(err.kind(), err.to_string()));
            return;
        }
    }
}

/// Routes replies to their waiting requests and events to the subscription.
async fn read_lines(read: OwnedReadHalf, shared: Arc<Shared>, pushes: mpsc::Sender<Notice>) {
    let mut reader = LineReader::new(read, MAX_SERVER_LINE);
    let why = loop {
        let bytes = match reader.next_line().await {
            Ok(None) => break Closed::Eof,
            Err(err) => break Closed::Io(err.kind(), err.to_string()),
            Ok(Some(Line::TooLong)) => {
                break Closed::Protocol(format!("line longer than {MAX_SERVER_LINE} bytes"))
            }
            Ok(Some(Line::Complete(bytes))) => bytes,
        };
        let notice = match ServerLine::parse(&bytes) {
            Err(err) => break Closed::Protocol(err.to_string()),
            Ok(ServerLine::Reply(Reply {
                id: 0,
                outcome: Outcome::Error(error),
            })) if matches!(
                error.code,
                codes::TOO_MANY_CONNECTIONS | codes::IDLE_TIMEOUT
            ) =>
            {
                // The server closes this connection: every waiter gets its reason.
                break Closed::Dropped(error);
            }
            Ok(ServerLine::Reply(reply)) => {
                let waiter = shared.lock().pending.remove(&reply.id);
                match waiter {
                    // The receiver may have timed out meanwhile; nothing to do then.
                    Some(waiter) => drop(waiter.send(reply)),
                    None => {
                        tracing::warn!(id = reply.id, ?reply.outcome, "control reply matches no request")
                    }
                }
                continue;
            }
            Ok(ServerLine::Event(event)) => Notice::Event(event),
            Ok(ServerLine::Gap(gap)) => Notice::Gap(gap),
        };
        // An error means nobody subscribes on this client: drop the event.
        let _ = pushes.send(notice).await;
    };
    shared.close(why);
}

/// A stream of events from one connection; ends with an error when the connection does.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    pushes: mpsc::Receiver<Notice>,
    epoch: u64,
    last_seq: u64,
}

impl Subscription {
    /// The next event or gap marker, in sequence order. Cancel-safe.
    pub async fn next(&mut self) -> Result<Notice, CtlError> {
        match self.pushes.recv().await {
            Some(notice) => {
                self.last_seq = match &notice {
                    Notice::Event(event) => event.seq,
                    Notice::Gap(gap) => gap.first_seq.saturating_sub(1),
                };
                Ok(notice)
            }
            None => Err(self.client.shared.closed_error(&self.client.path)),
        }
    }

    /// The sequence number this subscription has seen up to: resume with `since` = this.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The server's stream epoch, to pass along with `since` when resuming.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Sends a request on the subscribed connection.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, CtlError> {
        self.client.request(method, params).await
    }
}

/// A subscription that survives daemon restarts and dropped connections: it
/// reconnects with growing delays and resumes after the last sequence number seen.
/// If events were lost meanwhile (backlog too short, or the daemon restarted with a
/// new stream), it yields a [`Notice::Gap`].
#[derive(Debug)]
pub struct ResumingSubscription {
    path: PathBuf,
    params: SubscribeParams,
    timeout: Duration,
    retry: Duration,
    max_retry: Duration,
    current: Option<Subscription>,
}

impl ResumingSubscription {
    /// A subscription to `topics` at `path`, starting after `since` (None = from now).
    /// Connects on the first call to [`next`](Self::next).
    pub fn new(path: impl AsRef<Path>, topics: Vec<String>, since: Option<u64>) -> Self {
        ResumingSubscription {
            path: path.as_ref().to_path_buf(),
            params: SubscribeParams {
                topics,
                since,
                epoch: None,
            },
            timeout: DEFAULT_TIMEOUT,
            retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(5),
            current: None,
        }
    }

    /// Sets the first reconnect delay and the cap it doubles up to.
    pub fn with_retry(mut self, first: Duration, max: Duration) -> Self {
        self.retry = first;
        self.max_retry = max.max(first);
        self
    }

    /// Sets the timeout of the subscribe request.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The next event or gap marker. Connection failures are retried forever; only
    /// permanent errors (permission, version, protocol, refused subscription) return.
    pub async fn next(&mut self) -> Result<Notice, CtlError> {
        let mut delay = self.retry;
        loop {
            if self.current.is_none() {
                match self.connect().await {
                    Ok(sub) => {
                        delay = self.retry;
                        self.current = Some(sub);
                    }
                    Err(err) if err.is_transient() => {
                        tracing::debug!(%err, ?delay, "control subscription: retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(self.max_retry);
                        continue;
                    }
                    Err(err) => return Err(err),
                }
            }
            let Some(current) = self.current.as_mut() else {
                continue;
            };
            match current.next().await {
                Ok(notice) => {
                    self.params.since = Some(current.last_seq());
                    return Ok(notice);
                }
                Err(err) if err.is_transient() => {
                    tracing::info!(%err, since = ?self.params.since, "control subscription lost; reconnecting");
                    self.current = None;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn connect(&mut self) -> Result<Subscription, CtlError> {
        let client = Client::connect(&self.path)
            .await?
            .with_timeout(self.timeout);
        let sub = client.subscribe_with(self.params.clone()).await?;
        self.params.since = Some(sub.last_seq());
        self.params.epoch = Some(sub.epoch());
        Ok(sub)
    }

    /// The last sequence number seen (None before the first connection without `since`).
    pub fn last_seq(&self) -> Option<u64> {
        self.params.since
    }

    /// The current connection's subscription, if connected (e.g. to send requests on it).
    pub fn current(&self) -> Option<&Subscription> {
        self.current.as_ref()
    }
}
