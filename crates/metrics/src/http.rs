//! What one connection is answered: `GET /metrics`, `GET /`, the status page
//! (`GET /status`, `GET /status.json`) when the daemon has one, 405 for other
//! methods on those paths, 404 for the rest, and 429 (then the connection closes)
//! past its request rate.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use crate::render::Renderer;
use crate::status::{self, StatusPage};
use crate::Limits;

/// What the accept loop and the idle watchdog know of one connection.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Set at the first request head: the connection is no longer a quiet one.
    asked: AtomicBool,
    /// Scrapes of this connection waiting for a render: the server is slow, not
    /// the client.
    waiting: AtomicUsize,
}

impl Activity {
    /// Whether the client has sent a complete request head.
    pub(crate) fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }

    /// Whether a scrape of this connection waits for a render.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }
}

/// Counts a scrape as waiting while it lives.
struct Waiting(Arc<Activity>);

impl Waiting {
    fn new(activity: Arc<Activity>) -> Self {
        activity.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(activity)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The hyper service of one connection.
pub(crate) struct Endpoint {
    renderer: Renderer,
    status: Option<StatusPage>,
    bucket: Mutex<TokenBucket>,
    activity: Arc<Activity>,
}

impl Endpoint {
    pub(crate) fn new(
        renderer: Renderer,
        status: Option<StatusPage>,
        limits: &Limits,
        activity: Arc<Activity>,
    ) -> Self {
        Endpoint {
            renderer,
            status,
            bucket: Mutex::new(TokenBucket::new(
                limits.request_burst,
                limits.requests_per_second,
                Instant::now(),
            )),
            activity,
        }
    }
}

type Reply = Response<Full<Bytes>>;

impl hyper::service::Service<Request<Incoming>> for Endpoint {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.asked.store(true, Ordering::Relaxed);
        let allowed = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        if !allowed {
            return Box::pin(async { Ok(too_many()) });
        }
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => {
                let renderer = self.renderer.clone();
                let waiting = Waiting::new(Arc::clone(&self.activity));
                Box::pin(async move {
                    let rendered = renderer.scrape().await;
                    drop(waiting);
                    Ok(match rendered {
                        Ok(body) => {
                            let mut reply = Response::new(Full::new(body));
                            reply.headers_mut().insert(
                                CONTENT_TYPE,
                                HeaderValue::from_static(prometheus::TEXT_FORMAT),
                            );
                            reply
                        }
                        Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
                    })
                })
            }
            (&Method::GET, "/") => {
                let pointer = if self.status.is_some() {
                    "see /metrics, and /status for the status page\n"
                } else {
                    "see /metrics\n"
                };
                Box::pin(async { Ok(text(StatusCode::OK, pointer.into())) })
            }
            (&Method::GET, path @ ("/status" | "/status.json")) if self.status.is_some() => {
                let json = path == "/status.json";
                let page = self.status.clone();
                let host = request
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned);
                let waiting = Waiting::new(Arc::clone(&self.activity));
                Box::pin(async move {
                    let reply = match &page {
                        Some(page) => status::answer(page, json, host.as_deref()).await,
                        None => text(StatusCode::NOT_FOUND, "no status page\n".into()),
                    };
                    drop(waiting);
                    Ok(reply)
                })
            }
            (_, "/metrics" | "/") => Box::pin(async { Ok(only_get()) }),
            (_, "/status" | "/status.json") if self.status.is_some() => {
                Box::pin(async { Ok(only_get()) })
            }
            _ => Box::pin(async {
                Ok(text(
                    StatusCode::NOT_FOUND,
                    "not found; try GET /metrics\n".into(),
                ))
            }),
        }
    }
}

fn text(status: StatusCode, body: String) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

/// A method other than GET on a path that is served: nothing here takes writes.
fn only_get() -> Reply {
    let mut reply = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "read-only: GET is the one method served\n".into(),
    );
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET"));
    reply
}

/// Past the connection's rate: say so and close it, so that a client pipelining
/// requests costs nothing more.
fn too_many() -> Reply {
    let mut reply = text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests on this connection\n".into(),
    );
    let headers = reply.headers_mut();
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    reply
}

/// `burst` requests at once, then `per_second`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(burst: u32, per_second: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            burst,
            per_second: f64::from(per_second),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 2, start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start));
        assert!(!bucket.take(start + Duration::from_millis(250)));
        assert!(bucket.take(start + Duration::from_millis(500)));
        assert!(!bucket.take(start + Duration::from_millis(500)));
        // Idle time refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }
}
