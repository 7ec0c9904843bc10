//! The read-only status page: `GET /status` (HTML with its style and script inline)
//! and `GET /status.json` (the daemon's `status` reply, the JSON `vrrpctl --json`
//! shows), which the page polls.
//!
//! Nothing here changes the daemon: the page has no form and no action, and the JSON
//! comes from a source the daemon hands over that can only ask for its status. The
//! answers forbid everything the page does not need (a Content-Security-Policy with
//! the hashes of the inline script and style, no framing, no referrer), carry no CORS
//! header (other origins cannot read them), and are refused unless the request's
//! `Host` is an address or `localhost`: a web page whose name was rebound to the
//! loopback address cannot read the status either.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The answers of status requests this close together share one question to the
/// daemon: any number of open pages cost the daemon's loop at most a few a second.
const SHARED_FOR: Duration = Duration::from_millis(500);
/// How long a status request waits for the daemon's answer.
const STATUS_WAIT: Duration = Duration::from_secs(5);

const STYLE: &str = include_str!("status/page.css");
const SCRIPT: &str = include_str!("status/page.js");

/// What a status source answers: the status as JSON, or why there is none.
pub type StatusFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

type Source = dyn Fn() -> StatusFuture + Send + Sync;

/// A daemon's status page: its name and how to ask it for its status.
#[derive(Clone)]
pub struct StatusPage {
    daemon: &'static str,
    source: Arc<Source>,
    last: Arc<Mutex<Option<(Instant, Bytes)>>>,
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

impl StatusPage {
    /// The page of `daemon` (`vrrpd`, `lbd`: how the page lays the JSON out), whose
    /// JSON `source` produces. `source` runs on the metrics thread's runtime.
    pub fn new<F, Fut>(daemon: &'static str, source: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u8>, String>> + Send + 'static,
    {
        StatusPage {
            daemon,
            source: Arc::new(move || Box::pin(source()) as StatusFuture),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The HTML of the page.
    pub fn html(&self) -> String {
        // The daemon's name is one of the suite's constants; kept to letters anyway,
        // since it goes into an attribute.
        let daemon: String = self
            .daemon
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>{daemon} status</title><style>{STYLE}</style></head>\n\
             <body data-daemon=\"{daemon}\"><header><h1>{daemon} status (read-only)</h1>\
             <p id=\"updated\">loading</p></header><main id=\"content\"></main>\
             <script>{SCRIPT}</script></body></html>\n"
        )
    }

    /// The status JSON, shared with requests of the last [`SHARED_FOR`].
    async fn json(&self) -> Result<Bytes, (StatusCode, String)> {
        let mut last = self.last.lock().await;
        if let Some((at, body)) = last.as_ref() {
            if at.elapsed() < SHARED_FOR {
                return Ok(body.clone());
            }
        }
        // Aged from the question: an answer is shared for SHARED_FOR after the daemon
        // was asked, however long it took to answer.
        let asked = Instant::now();
        match tokio::time::timeout(STATUS_WAIT, (self.source)()).await {
            Ok(Ok(body)) => {
                let body = Bytes::from(body);
                *last = Some((asked, body.clone()));
                Ok(body)
            }
            Ok(Err(why)) => Err((StatusCode::SERVICE_UNAVAILABLE, why)),
            Err(_) => Err((
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{} did not answer within {} s",
                    self.daemon,
                    STATUS_WAIT.as_secs()
                ),
            )),
        }
    }
}

/// `Content-Security-Policy` of the page: its own inline style and script, requests
/// to its own origin, nothing else.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = |text: &str| {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    };
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    )
});

type Reply = Response<Full<Bytes>>;

/// The answer to `GET /status` or `GET /status.json` with `host` (the request's
/// `Host` header, if any).
pub(crate) async fn answer(page: &StatusPage, json: bool, host: Option<&str>) -> Reply {
    if !host.is_some_and(host_is_local_or_address) {
        return reply(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain; charset=utf-8",
            Bytes::from_static(
                b"the status page answers requests to an address or localhost only\n",
            ),
        );
    }
    if !json {
        return reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(page.html()),
        );
    }
    match page.json().await {
        Ok(body) => reply(StatusCode::OK, "application/json", body),
        Err((status, why)) => reply(
            status,
            "text/plain; charset=utf-8",
            Bytes::from(format!("{why}\n")),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&POLICY) {
        headers.insert(HeaderName::from_static("content-security-policy"), policy);
    }
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    reply
}

/// Whether `host` (a `Host` header: name or address, and maybe a port) names an
/// address or `localhost`, not a DNS name someone else controls.
fn host_is_local_or_address(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6] or [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(addr, _)| addr.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_and_localhost_are_accepted_hosts() {
        for ok in [
            "127.0.0.1:9612",
            "127.0.0.1",
            "[::1]:9612",
            "[::1]",
            "localhost:9612",
            "LocalHost",
            "198.18.0.1:80",
        ] {
            assert!(host_is_local_or_address(ok), "{ok}");
        }
        for bad in [
            "evil.example:9612",
            "evil.example",
            "[nope]:1",
            "",
            "127.0.0.1.nip:1",
        ] {
            assert!(!host_is_local_or_address(bad), "{bad}");
        }
    }

    #[test]
    fn the_policy_names_the_inline_script_and_style_and_nothing_else() {
        assert!(POLICY.starts_with("default-src 'none'; script-src 'sha256-"));
        assert_eq!(POLICY.matches("'sha256-").count(), 2);
        let html = StatusPage::new("vrrpd", || async { Ok(Vec::new()) }).html();
        // Exactly one script and one style element, whose texts are the hashed ones.
        assert_eq!(html.matches("<script>").count(), 1);
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
        // The script writes values as text only.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }
}
