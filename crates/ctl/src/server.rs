//! Serving the control protocol on a Unix socket: binding safely, one task per
//! connection, built-in `ping`/`version`/`subscribe`, the rest to the daemon's handler.

use std::ffi::CString;
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::CtlError;
use crate::events::{EventBus, Published, Start};
use crate::limits::{is_peer_daemon, ServerLimits, ServerStats, Slot};
use crate::line::{Line, LineReader};
use crate::wire::{
    codes, methods, parse_unique_keys, topic_matches, Reply, ReplyError, Request, SubscribeParams,
    SubscribeResult, VersionInfo, MAX_REQUEST_LINE, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

/// Lines queued per connection before the connection's tasks wait for the socket.
const OUTGOING_QUEUE: usize = 256;
/// How long `bind` waits for an existing socket to answer before calling it live.
const LIVENESS_PROBE: Duration = Duration::from_secs(1);
/// Least time between two log lines about refused connections.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Answers the daemon-specific methods (`status`, `reload`, `prepare`, ...).
///
/// The server answers `ping`, `version` and `subscribe` itself. Return
/// [`ReplyError::method_not_found`] for methods the daemon does not know.
/// Requests on one connection are handled one at a time, in order.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request; the `Ok` value becomes the reply's `result`.
    fn handle(
        &self,
        method: &str,
        params: Value,
    ) -> impl Future<Output = Result<Value, ReplyError>> + Send;
}

/// Group allowed to use the socket besides its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketGroup {
    /// A numeric group id.
    Id(u32),
    /// A group name, resolved when binding.
    Name(String),
}

impl SocketGroup {
    /// Reads a config value: all digits is a gid, anything else a group name.
    pub fn parse(value: &str) -> SocketGroup {
        match value.parse::<u32>() {
            Ok(gid) => SocketGroup::Id(gid),
            Err(_) => SocketGroup::Name(value.to_string()),
        }
    }

    fn gid(&self) -> Result<u32, CtlError> {
        match self {
            SocketGroup::Id(gid) => Ok(*gid),
            SocketGroup::Name(name) => group_id(name),
        }
    }
}

/// Who may connect: the owner only (mode 0600), or also a group (mode 0660).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketPerms {
    /// Group given read/write access; `None` keeps the socket owner-only.
    pub group: Option<SocketGroup>,
}

impl SocketPerms {
    /// Mode bits the socket file gets.
    pub fn mode(&self) -> u32 {
        if self.group.is_some() {
            0o660
        } else {
            0o600
        }
    }
}

/// The socket file this server created; removed on drop unless someone replaced it.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                if let Err(err) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), %err, "cannot remove control socket");
                }
            }
        }
    }
}

/// A bound control socket, ready to [`serve`](Server::serve).
pub struct Server {
    listener: UnixListener,
    socket: SocketFile,
    identity: Arc<(String, String)>,
    limits: ServerLimits,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.socket.path)
            .field("daemon", &self.identity.0)
            .finish()
    }
}

impl Server {
    /// Binds the control socket at `path` with `perms`.
    ///
    /// Creates the parent directory (0755) if missing. An existing socket file is
    /// replaced only if nobody answers on it; a live socket or a non-socket file is an
    /// error. The socket gets its mode and group before it appears at `path`, so there
    /// is no moment where it is reachable with looser permissions.
    /// Must be called inside a tokio runtime.
    pub async fn bind(path: impl AsRef<Path>, perms: SocketPerms) -> Result<Server, CtlError> {
        let path = path.as_ref().to_path_buf();
        let gid = perms.group.as_ref().map(SocketGroup::gid).transpose()?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&parent)
                .map_err(|error| CtlError::CreateDir {
                    path: parent.clone(),
                    error,
                })?;
        }
        remove_if_stale(&path).await?;

        // Bind in a private directory, fix mode and group, then hard-link into place:
        // link(2) fails if the name exists, so a concurrent daemon is never clobbered.
        let staging = StagingDir::create(&parent).map_err(|error| CtlError::Bind {
            path: path.clone(),
            error,
        })?;
        let staged = staging.path.join("s");
        let listener = UnixListener::bind(&staged).map_err(|error| CtlError::Bind {
            path: path.clone(),
            error,
        })?;
        let perm_err = |error| CtlError::Permissions {
            path: path.clone(),
            error,
        };
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(perms.mode()))
            .map_err(perm_err)?;
        if let Some(gid) = gid {
            std::os::unix::fs::chown(&staged, None, Some(gid)).map_err(perm_err)?;
        }
        std::fs::hard_link(&staged, &path).map_err(|error| {
            if error.kind() == io::ErrorKind::AlreadyExists {
                CtlError::SocketInUse { path: path.clone() }
            } else {
                CtlError::Bind {
                    path: path.clone(),
                    error,
                }
            }
        })?;
        drop(staging);
        let meta = std::fs::symlink_metadata(&path).map_err(|error| CtlError::Bind {
            path: path.clone(),
            error,
        })?;
        tracing::info!(path = %path.display(), mode = format_args!("{:o}", perms.mode()), gid, "control socket bound");
        Ok(Server {
            listener,
            socket: SocketFile {
                path,
                dev: meta.dev(),
                ino: meta.ino(),
            },
            identity: Arc::new(("unknown".to_string(), "unknown".to_string())),
            limits: ServerLimits::default(),
            stats: Arc::new(ServerStats::default()),
        })
    }

    /// Sets the limits on clients (connection cap, peer reserve, timeouts).
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The socket's live counters (open connections, refusals, ...), for status and
    /// metrics; they keep counting while the server runs.
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
    }

    /// Sets the daemon name and version reported by the `version` method.
    pub fn with_identity(mut self, daemon: &str, version: &str) -> Self {
        self.identity = Arc::new((daemon.to_string(), version.to_string()));
        self
    }

    /// Path of the socket.
    pub fn path(&self) -> &Path {
        &self.socket.path
    }

    /// Serves connections until `shutdown` becomes `true` (or its sender is dropped),
    /// then removes the socket file and ends all connections.
    ///
    /// `events` is the bus whose events `subscribe` streams; it may outlive this server
    /// and be served again by a new one, and subscribers then resume without loss.
    pub async fn serve<H: RequestHandler>(
        self,
        handler: Arc<H>,
        events: EventBus,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), CtlError> {
        let Server {
            listener,
            socket,
            identity,
            limits,
            stats,
        } = self;
        let limits = Arc::new(limits);
        let mut connections = JoinSet::new();
        let mut last_refusal_log: Option<tokio::time::Instant> = None;
        let result = loop {
            tokio::select! {
                _ = wait_shutdown(&mut shutdown) => break Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        if let Ok(cred) = stream.peer_cred() {
                            tracing::debug!(uid = cred.uid(), pid = cred.pid(), "control connection");
                        }
                        let peer = limits.peer_daemon.as_deref();
                        let Some(slot) = Slot::take(&stats, &limits, || {
                            peer.is_some_and(|name| is_peer_daemon(&stream, name))
                        }) else {
                            refuse(&stream, limits.max_connections);
                            ServerStats::bump(&stats.refused);
                            if last_refusal_log.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY) {
                                last_refusal_log = Some(tokio::time::Instant::now());
                                tracing::warn!(
                                    path = %socket.path.display(),
                                    max_connections = limits.max_connections,
                                    refused_total = stats.snapshot().refused,
                                    "control socket full: refusing connections (logged at most every 10 s)"
                                );
                            }
                            continue;
                        };
                        let conn = Connection {
                            handler: Arc::clone(&handler),
                            events: events.clone(),
                            identity: Arc::clone(&identity),
                            shutdown: shutdown.clone(),
                            limits: Arc::clone(&limits),
                            stats: Arc::clone(&stats),
                        };
                        connections.spawn(conn.run(stream, slot));
                    }
                    Err(err) if is_transient_accept(&err) => {
                        tracing::warn!(path = %socket.path.display(), %err, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => break Err(CtlError::Accept { path: socket.path.clone(), error }),
                },
            }
        };
        // Socket file first, so no client finds a server that is going away.
        drop(listener);
        drop(socket);
        connections.shutdown().await;
        result
    }
}

/// Tells a connection over the cap why it is closed, without ever waiting for it.
fn refuse(stream: &UnixStream, max: usize) {
    let reply = Reply::error(
        0,
        ReplyError::new(
            codes::TOO_MANY_CONNECTIONS,
            format!(
                "too many control connections (this socket serves {max} at once); try again later"
            ),
        ),
    );
    let mut line = encode_reply(&reply);
    line.push('\n');
    // A fresh socket's buffer takes one short line; if not, closing says enough.
    let _ = stream.try_write(line.as_bytes());
}

fn is_transient_accept(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EINTR
        )
    )
}

/// Resolves when shutdown is requested or its sender is gone.
async fn wait_shutdown(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Removes `path` if it is a socket nobody answers on; refuses anything else.
async fn remove_if_stale(path: &Path) -> Result<(), CtlError> {
    let stale_err = |error| CtlError::StaleSocket {
        path: path.to_path_buf(),
        error,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(stale_err(err)),
    };
    if !meta.file_type().is_socket() {
        return Err(CtlError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match tokio::time::timeout(LIVENESS_PROBE, UnixStream::connect(path)).await {
        // Answering, or too busy to answer quickly: either way someone is there.
        Ok(Ok(_)) | Err(_) => Err(CtlError::SocketInUse {
            path: path.to_path_buf(),
        }),
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale control socket");
            match std::fs::remove_file(path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(stale_err(err)),
                _ => Ok(()),
            }
        }
        Ok(Err(err)) => Err(stale_err(err)),
    }
}

/// A private (0700) directory next to the socket path, removed on drop.
struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    fn create(parent: &Path) -> io::Result<StagingDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Short name: socket paths are limited to 107 bytes.
        let name = format!(
            ".ctl{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(StagingDir { path })
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Looks up a group's gid by name.
fn group_id(name: &str) -> Result<u32, CtlError> {
    let unknown = || CtlError::UnknownGroup {
        name: name.to_string(),
    };
    let cname = CString::new(name).map_err(|_| unknown())?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `group` is plain data that getgrnam_r fills in; `buf` outlives the
        // call and its length is passed; `result` is only read after the call.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut group,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(CtlError::GroupLookup {
                name: name.to_string(),
                error: io::Error::from_raw_os_error(rc),
            });
        }
        if result.is_null() {
            return Err(unknown());
        }
        return Ok(group.gr_gid);
    }
}

/// Aborts its task when dropped.
struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A line queued for a client.
enum Outgoing {
    Text(String),
    Event(Arc<Published>),
}

/// One client connection's state.
struct Connection<H> {
    handler: Arc<H>,
    events: EventBus,
    identity: Arc<(String, String)>,
    shutdown: watch::Receiver<bool>,
    limits: Arc<ServerLimits>,
    stats: Arc<ServerStats>,
}

impl<H: RequestHandler> Connection<H> {
    /// Serves one connection; `_slot` is its place under the cap, given back at the end.
    async fn run(self, stream: UnixStream, _slot: Slot) {
        let mut shutdown = self.shutdown.clone();
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(OUTGOING_QUEUE);
        // Guards, so that aborting this task (server shutdown) also ends its helpers,
        // which hold the socket open.
        let mut writer = TaskGuard(tokio::spawn(write_lines(
            write,
            rx,
            self.limits.write_stall_timeout,
            Arc::clone(&self.stats),
        )));
        let mut writer_done = false;
        let mut reader = LineReader::new(read, MAX_REQUEST_LINE);
        let mut forwarder: Option<TaskGuard> = None;
        let mut shutting_down = false;
        loop {
            // Subscribers only read, so silence is what they do; others must speak.
            let idle = forwarder.is_none().then_some(self.limits.idle_timeout);
            let next = async {
                match idle {
                    Some(limit) => tokio::time::timeout(limit, reader.next_line()).await.ok(),
                    None => Some(reader.next_line().await),
                }
            };
            let line = tokio::select! {
                _ = wait_shutdown(&mut shutdown) => { shutting_down = true; break }
                // The writer gave up (the client does not read): nothing more to say.
                _ = &mut writer.0 => { writer_done = true; break }
                line = next => line,
            };
            let Some(line) = line else {
                ServerStats::bump(&self.stats.idle_closed);
                tracing::debug!(
                    idle_ms = self.limits.idle_timeout.as_millis(),
                    "closing an idle control connection"
                );
                let reply = Reply::error(
                    0,
                    ReplyError::new(
                        codes::IDLE_TIMEOUT,
                        format!(
                            "no request for {} ms: connection closed",
                            self.limits.idle_timeout.as_millis()
                        ),
                    ),
                );
                let _ = tx.send(Outgoing::Text(encode_reply(&reply))).await;
                break;
            };
            let reply = match line {
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "control connection read error");
                    break;
                }
                Ok(Some(Line::TooLong)) => {
                    ServerStats::bump(&self.stats.bad_requests);
                    Reply::error(
                        0,
                        ReplyError::new(
                            codes::LINE_TOO_LONG,
                            format!("request line longer than {MAX_REQUEST_LINE} bytes"),
                        ),
                    )
                }
                Ok(Some(Line::Complete(bytes))) => {
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_request(&bytes) {
                        Err(reply) => {
                            ServerStats::bump(&self.stats.bad_requests);
                            reply
                        }
                        Ok(req) if req.method == methods::SUBSCRIBE => {
                            match self.subscribe(req, &tx, &mut forwarder).await {
                                Some(reply) => reply,
                                None => continue,
                            }
                        }
                        Ok(req) => {
                            let outcome = tokio::select! {
                                _ = wait_shutdown(&mut shutdown) => { shutting_down = true; break }
                                outcome = self.dispatch(&req.method, req.params) => outcome,
                            };
                            match outcome {
                                Ok(result) => Reply::result(req.id, result),
                                Err(error) => Reply::error(req.id, error),
                            }
                        }
                    }
                }
            };
            if tx.send(Outgoing::Text(encode_reply(&reply))).await.is_err() {
                break;
            }
        }
        drop(forwarder);
        drop(tx);
        if !shutting_down && !writer_done {
            // Flush replies already queued, unless the server shuts down meanwhile.
            tokio::select! {
                _ = &mut writer.0 => {}
                _ = wait_shutdown(&mut shutdown) => {}
            }
        }
    }

    async fn dispatch(&self, method: &str, params: Value) -> Result<Value, ReplyError> {
        match method {
            methods::PING => Ok(Value::from("pong")),
            methods::VERSION => serde_json::to_value(VersionInfo {
                protocol: PROTOCOL_VERSION,
                min_protocol: MIN_PROTOCOL_VERSION,
                daemon: self.identity.0.clone(),
                daemon_version: self.identity.1.clone(),
            })
            .map_err(ReplyError::internal),
            _ => self.handler.handle(method, params).await,
        }
    }

    /// Replies to `subscribe` and starts streaming; returns a reply only on error (the
    /// success reply must be queued before the first event, so it is sent here).
    async fn subscribe(
        &self,
        req: Request,
        tx: &mpsc::Sender<Outgoing>,
        forwarder: &mut Option<TaskGuard>,
    ) -> Option<Reply> {
        let params: SubscribeParams = if req.params.is_null() {
            SubscribeParams::default()
        } else {
            match crate::wire::decode_params(req.params) {
                Ok(p) => p,
                Err(err) => return Some(Reply::error(req.id, err)),
            }
        };
        // A second subscribe on one connection replaces the first.
        drop(forwarder.take());
        let start = self.events.start(params.since, params.epoch, false);
        let result = SubscribeResult {
            epoch: self.events.epoch(),
            latest_seq: start.latest_seq,
        };
        let reply = match serde_json::to_value(result) {
            Ok(v) => Reply::result(req.id, v),
            Err(err) => return Some(Reply::error(req.id, ReplyError::internal(err))),
        };
        if tx.send(Outgoing::Text(encode_reply(&reply))).await.is_err() {
            return None;
        }
        *forwarder = Some(TaskGuard(tokio::spawn(forward_events(
            self.events.clone(),
            params.topics,
            start,
            tx.clone(),
        ))));
        None
    }
}

/// Reads a request line: a reply explaining the problem if it is not a valid request.
/// (Public for the fuzz target in `fuzz/`.)
pub fn parse_request(bytes: &[u8]) -> Result<Request, Reply> {
    let value: Value = parse_unique_keys(bytes).map_err(|err| {
        if err.is_data() {
            // Valid JSON, but a key given twice: which one was meant is anyone's guess.
            Reply::error(
                0,
                ReplyError::new(
                    codes::INVALID_REQUEST,
                    format!("{err}: each key may appear once in a request"),
                ),
            )
        } else {
            Reply::error(
                0,
                ReplyError::new(codes::PARSE_ERROR, format!("not valid JSON: {err}")),
            )
        }
    })?;
    let id = value.get("id").and_then(Value::as_u64).unwrap_or(0);
    let invalid = |msg: String| Reply::error(id, ReplyError::new(codes::INVALID_REQUEST, msg));
    if !value.is_object() {
        return Err(invalid(
            "expected a JSON object {\"v\", \"id\", \"method\", \"params\"}".to_string(),
        ));
    }
    // The version is checked before the shape, so a newer client gets the clear answer.
    let v = match value.get("v").map(Value::as_u64) {
        None => {
            return Err(invalid(format!(
                "missing protocol version \"v\" (this server speaks {PROTOCOL_VERSION})"
            )))
        }
        Some(None) => return Err(invalid("\"v\" must be an unsigned integer".to_string())),
        Some(Some(v)) => v,
    };
    if v < u64::from(MIN_PROTOCOL_VERSION) || v > u64::from(PROTOCOL_VERSION) {
        return Err(Reply::error(
            id,
            ReplyError::new(
                codes::UNSUPPORTED_VERSION,
                format!(
                    "unsupported protocol version {v}; this server speaks versions \
                     {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                ),
            ),
        ));
    }
    serde_json::from_value(value).map_err(|err| invalid(format!("not a valid request: {err}")))
}

fn encode_reply(reply: &Reply) -> String {
    serde_json::to_string(reply).unwrap_or_else(|err| {
        // Only a non-string map key in a handler's result can get here.
        let fallback = Reply::error(reply.id, ReplyError::internal(err));
        serde_json::to_string(&fallback).unwrap_or_default()
    })
}

/// Streams the backlog after the subscription point, then live events; after a lag,
/// resumes from the backlog, with a gap marker only if events were really lost.
async fn forward_events(
    events: EventBus,
    topics: Vec<String>,
    start: Start,
    tx: mpsc::Sender<Outgoing>,
) {
    let mut start = start;
    loop {
        if let Some(gap) = start.gap {
            if tx.send(Outgoing::Text(gap.to_line())).await.is_err() {
                return;
            }
        }
        for event in start.replay.drain(..) {
            if topic_matches(&topics, &event.topic)
                && tx.send(Outgoing::Event(event)).await.is_err()
            {
                return;
            }
        }
        let mut last = start.latest_seq;
        let mut live = start.live;
        loop {
            match live.recv().await {
                Ok(event) => {
                    if event.seq <= last {
                        continue;
                    }
                    last = event.seq;
                    if topic_matches(&topics, &event.topic)
                        && tx.send(Outgoing::Event(event)).await.is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
        start = events.start(Some(last), Some(events.epoch()), true);
    }
}

/// Writes queued lines, flushing whenever the queue runs empty; gives up on a client
/// that leaves them unread for `stall` (the queue is bounded, so until then what
/// waits for it is too).
async fn write_lines(
    write: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    stall: Duration,
    stats: Arc<ServerStats>,
) {
    let mut out = BufWriter::new(write);
    let stalled = || {
        ServerStats::bump(&stats.stalled_closed);
        tracing::debug!(
            stall_ms = stall.as_millis(),
            "closing a control connection that does not read"
        );
    };
    while let Some(item) = rx.recv().await {
        let bytes = match &item {
            Outgoing::Text(text) => text.as_bytes(),
            Outgoing::Event(event) => event.line.as_bytes(),
        };
        let write = async {
            out.write_all(bytes).await?;
            out.write_all(b"\n").await?;
            if rx.is_empty() {
                out.flush().await?;
            }
            io::Result::Ok(())
        };
        match tokio::time::timeout(stall, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => return stalled(),
        }
    }
    if tokio::time::timeout(stall, out.flush()).await.is_err() {
        stalled();
    }
}
