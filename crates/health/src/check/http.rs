//! HTTP/1.0 GET over any byte stream (plain TCP or TLS).
//!
//! HTTP/1.0 on purpose: a server must not answer it with chunked encoding, so
//! the body arrives as plain bytes to search, and the server closes (and keeps
//! the TIME_WAIT). `Host` is sent anyway, for name-based virtual hosts.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::check::tcp::io_reason;
use crate::outcome::FailReason;
use crate::target::HttpProbe;

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How much of the body is searched for `body_match`.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The `Host` header value: the configured one, else the address (with the
/// port unless it is the scheme's default).
pub(crate) fn host_header(probe: &HttpProbe, addr: SocketAddr, default_port: u16) -> String {
    if let Some(host) = &probe.host {
        return host.clone();
    }
    let ip = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    if addr.port() == default_port {
        ip
    } else {
        format!("{ip}:{}", addr.port())
    }
}

/// The request bytes; refuses header injection through path or host.
pub(crate) fn request(probe: &HttpProbe, host: &str) -> Result<Vec<u8>, FailReason> {
    let path = if probe.path.is_empty() {
        "/"
    } else {
        probe.path.as_str()
    };
    let bad = |s: &str| s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if bad(path) || bad(host) {
        return Err(FailReason::Config(
            "path and Host must not contain spaces or control characters".into(),
        ));
    }
    Ok(format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lbsuite-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes())
}

/// Send the request and judge the response.
pub(crate) async fn exchange<S>(
    mut stream: S,
    probe: &HttpProbe,
    request: &[u8],
) -> Result<(), FailReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request).await.map_err(io_reason)?;
    stream.flush().await.map_err(io_reason)?;

    let mut buf = Vec::with_capacity(4096);
    let (status, head_len, content_length) = loop {
        if read_some(&mut stream, &mut buf, MAX_HEAD).await? == 0 {
            return Err(FailReason::BadResponse(
                "connection closed before the response head ended".into(),
            ));
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.unwrap_or(0);
                let content_length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<usize>().ok());
                break (status, len, content_length);
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(FailReason::BadResponse("response head too large".into()));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(FailReason::BadResponse(e.to_string())),
        }
    };
    if !probe.expect_status.contains(&status) {
        return Err(FailReason::BadStatus(status));
    }
    let Some(needle) = probe.body_match.as_deref().map(str::as_bytes) else {
        return Ok(());
    };
    let body_end = content_length.map_or(MAX_BODY, |l| l.min(MAX_BODY));
    buf.drain(..head_len);
    loop {
        if contains(&buf, needle) {
            return Ok(());
        }
        if buf.len() >= body_end {
            return Err(FailReason::BodyMismatch);
        }
        if read_some(&mut stream, &mut buf, body_end).await? == 0 {
            return Err(FailReason::BodyMismatch);
        }
    }
}

/// Read into the spare room of `buf` (up to `limit` bytes in all); 0 at EOF.
async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, FailReason> {
    let mut chunk = [0u8; 4096];
    let room = limit.saturating_sub(buf.len()).min(chunk.len());
    if room == 0 {
        return Ok(0);
    }
    let n = stream.read(&mut chunk[..room]).await.map_err(io_reason)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_defaults_to_address_with_port() {
        let p = HttpProbe::new("/");
        assert_eq!(
            host_header(&p, "127.0.0.1:80".parse().unwrap(), 80),
            "127.0.0.1"
        );
        assert_eq!(
            host_header(&p, "127.0.0.1:8080".parse().unwrap(), 80),
            "127.0.0.1:8080"
        );
        assert_eq!(
            host_header(&p, "[2001:db8::1]:443".parse().unwrap(), 443),
            "[2001:db8::1]"
        );
        let mut named = HttpProbe::new("/");
        named.host = Some("www.example.org".into());
        assert_eq!(
            host_header(&named, "127.0.0.1:8080".parse().unwrap(), 80),
            "www.example.org"
        );
    }

    #[test]
    fn request_refuses_header_injection() {
        let p = HttpProbe::new("/x\r\nEvil: 1");
        assert!(matches!(request(&p, "h"), Err(FailReason::Config(_))));
        let ok = request(&HttpProbe::new("/health"), "h").unwrap();
        assert!(ok.starts_with(b"GET /health HTTP/1.0\r\nHost: h\r\n"));
        assert!(ok.ends_with(b"\r\n\r\n"));
    }
}
