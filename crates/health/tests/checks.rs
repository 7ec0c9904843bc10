//! The checkers against real listeners on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use health::{
    CheckOutcome, CheckResult, CheckSpec, Checker, FailReason, HttpProbe, Probe, Target, TargetName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

fn target(probe: Probe, address: SocketAddr, timeout_ms: u64) -> Target {
    Target {
        name: TargetName::new("web", "srv1"),
        address,
        source: None,
        check: CheckSpec::new(
            probe,
            Duration::from_secs(1),
            Duration::from_millis(timeout_ms),
            1,
            1,
        )
        .into(),
    }
}

fn checker() -> Checker {
    Checker::new().unwrap()
}

fn reason(r: &CheckResult) -> Option<&FailReason> {
    r.outcome.reason()
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------- TCP

#[tokio::test]
async fn tcp_up_and_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (peers, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((_, peer)) = listener.accept().await {
            let _ = peers.send(peer);
        }
    });
    let up = checker().check(&target(Probe::Tcp, addr, 1000)).await;
    assert_eq!(up.outcome, CheckOutcome::Ok);
    assert!(
        seen.recv().await.is_some(),
        "the listener saw the connection"
    );

    let down = checker()
        .check(&target(Probe::Tcp, closed_port().await, 1000))
        .await;
    assert_eq!(reason(&down), Some(&FailReason::Refused));
    assert!(down.to_string().contains("connection refused"));
}

#[tokio::test]
async fn checks_leave_from_the_source_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (_, peer) = listener.accept().await.unwrap();
        peer
    });
    let mut t = target(Probe::Tcp, addr, 1000);
    let source: IpAddr = "127.0.0.2".parse().unwrap();
    t.source = Some(source);
    assert_eq!(checker().check(&t).await.outcome, CheckOutcome::Ok);
    assert_eq!(accepted.await.unwrap().ip(), source);

    t.source = Some("::1".parse().unwrap());
    assert!(matches!(
        reason(&checker().check(&t).await),
        Some(FailReason::Config(_))
    ));
}

// ---------------------------------------------------------------- HTTP

/// An HTTP server answering every request with `status` and `body` (sent in
/// two writes, split in the middle); each request head goes to the channel.
async fn http_server(
    status: u16,
    body: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let head = read_head(&mut conn).await;
                let _ = heads.send(head);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let (a, b) = body.split_at(body.len() / 2);
                conn.write_all(reply.as_bytes()).await.unwrap();
                conn.write_all(a.as_bytes()).await.unwrap();
                conn.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = conn.write_all(b.as_bytes()).await;
            });
        }
    });
    (addr, rx)
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(conn: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn http_status_codes() {
    let (addr, mut heads) = http_server(200, "hello world").await;
    let ok = checker()
        .check(&target(Probe::Http(HttpProbe::new("/health")), addr, 1000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok);
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("GET /health HTTP/1.0\r\n"), "{head}");
    assert!(
        head.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", addr.port())),
        "{head}"
    );

    let (addr, _) = http_server(500, "oops").await;
    let bad = checker()
        .check(&target(Probe::Http(HttpProbe::new("/")), addr, 1000))
        .await;
    assert_eq!(reason(&bad), Some(&FailReason::BadStatus(500)));

    let mut accept_500 = HttpProbe::new("/");
    accept_500.expect_status = vec![200, 500];
    let ok = checker()
        .check(&target(Probe::Http(accept_500), addr, 1000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok);
}

#[tokio::test]
async fn http_body_match_and_host_header() {
    let (addr, mut heads) = http_server(200, "status: all systems nominal").await;
    let mut probe = HttpProbe::new("/");
    // Split across the server's two writes.
    probe.body_match = Some("systems nom".into());
    probe.host = Some("www.example.org".into());
    let ok = checker()
        .check(&target(Probe::Http(probe.clone()), addr, 1000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok);
    let head = heads.recv().await.unwrap();
    assert!(head.contains("\r\nHost: www.example.org\r\n"), "{head}");

    probe.body_match = Some("degraded".into());
    let bad = checker()
        .check(&target(Probe::Http(probe), addr, 1000))
        .await;
    assert_eq!(reason(&bad), Some(&FailReason::BodyMismatch));
}

#[tokio::test]
async fn http_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let r = checker()
        .check(&target(Probe::Http(HttpProbe::new("/")), addr, 200))
        .await;
    assert_eq!(reason(&r), Some(&FailReason::Timeout));
}

#[tokio::test]
async fn http_garbage_is_a_bad_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = read_head(&mut conn).await;
            let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
        }
    });
    let r = checker()
        .check(&target(Probe::Http(HttpProbe::new("/")), addr, 1000))
        .await;
    assert!(
        matches!(reason(&r), Some(FailReason::BadResponse(_))),
        "{r}"
    );
}

// ---------------------------------------------------------------- HTTPS

struct TestCert {
    der: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn self_signed() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    TestCert {
        der: ck.cert.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()).into(),
    }
}

/// An HTTPS server answering 200 "secure ok" with `cert`.
async fn https_server(cert: &TestCert) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let heads = heads.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                let _ = heads.send(read_head(&mut tls).await);
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsecure ok")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn https_self_signed_with_and_without_verification() {
    let cert = self_signed();
    let (addr, mut heads) = https_server(&cert).await;
    let mut probe = HttpProbe::new("/");
    probe.body_match = Some("secure".into());

    probe.verify_cert = false;
    let ok = checker()
        .check(&target(Probe::Https(probe.clone()), addr, 2000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok, "{ok}");
    assert!(heads.recv().await.unwrap().starts_with("GET / HTTP/1.0"));

    probe.verify_cert = true;
    let bad = checker()
        .check(&target(Probe::Https(probe.clone()), addr, 2000))
        .await;
    assert!(
        matches!(reason(&bad), Some(FailReason::TlsError(_))),
        "{bad}"
    );

    // Trusted, but issued for "localhost", not for the IP address.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let trusting = Checker::with_roots(roots).unwrap();
    let wrong_name = trusting
        .check(&target(Probe::Https(probe.clone()), addr, 2000))
        .await;
    assert!(
        matches!(reason(&wrong_name), Some(FailReason::TlsError(_))),
        "{wrong_name}"
    );

    probe.host = Some("localhost".into());
    let ok = trusting
        .check(&target(Probe::Https(probe), addr, 2000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok, "{ok}");
}

// ---------------------------------------------------------------- DNS

/// A DNS responder on 127.0.0.1: for each query, first a reply with the wrong
/// id (to be ignored), then one with the query's id and `rcode`; `None`
/// answers nothing.
async fn dns_server(rcode: Option<u8>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let Some(rcode) = rcode else { continue };
            assert!(n > 12);
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80; // QR
            reply[3] = 0x80 | rcode; // RA + RCODE
            let mut stray = reply.clone();
            stray[0] ^= 0xff;
            let _ = socket.send_to(&stray, peer).await;
            let _ = socket.send_to(&reply, peer).await;
        }
    });
    addr
}

fn dns(name: &str) -> Probe {
    Probe::UdpDns {
        query_name: name.into(),
    }
}

#[tokio::test]
async fn dns_rcodes_and_silence() {
    let ok = checker()
        .check(&target(dns("example.org"), dns_server(Some(0)).await, 1000))
        .await;
    assert_eq!(ok.outcome, CheckOutcome::Ok, "{ok}");

    let servfail = checker()
        .check(&target(dns("example.org"), dns_server(Some(2)).await, 1000))
        .await;
    assert_eq!(reason(&servfail), Some(&FailReason::DnsRcode(2)));

    let silent = checker()
        .check(&target(dns("example.org"), dns_server(None).await, 200))
        .await;
    assert_eq!(reason(&silent), Some(&FailReason::Timeout));

    // Nothing bound: ICMP port unreachable comes back as a refusal.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let closed = socket.local_addr().unwrap();
    drop(socket);
    let refused = checker()
        .check(&target(dns("example.org"), closed, 1000))
        .await;
    assert_eq!(reason(&refused), Some(&FailReason::Refused));

    let bad_name = checker().check(&target(dns("a..b"), closed, 1000)).await;
    assert!(matches!(reason(&bad_name), Some(FailReason::Config(_))));
}

// ---------------------------------------------------------------- exec

fn exec(argv: &[&str]) -> Probe {
    Probe::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
    }
}

fn here() -> SocketAddr {
    "127.0.0.1:8080".parse().unwrap()
}

/// Live processes whose command line contains `marker` (zombies have none).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn exec_exit_status() {
    let up = checker()
        .check(&target(exec(&["/bin/true"]), here(), 2000))
        .await;
    assert_eq!(up.outcome, CheckOutcome::Ok);
    let down = checker()
        .check(&target(exec(&["/bin/false"]), here(), 2000))
        .await;
    assert_eq!(reason(&down), Some(&FailReason::ExitCode(1)));
    let missing = checker()
        .check(&target(exec(&["/nonexistent/check"]), here(), 2000))
        .await;
    assert!(
        matches!(reason(&missing), Some(FailReason::Io(_))),
        "{missing}"
    );
    let empty = checker().check(&target(exec(&[]), here(), 2000)).await;
    assert!(matches!(reason(&empty), Some(FailReason::Config(_))));
}

#[tokio::test]
async fn exec_gets_the_target_in_its_environment_and_no_shell() {
    let script = r#"test "$LBSUITE_SERVICE/$LBSUITE_SERVER $LBSUITE_ADDRESS $LBSUITE_PORT $LBSUITE_SOURCE" = "web/srv1 127.0.0.1 8080 127.0.0.2""#;
    let mut t = target(exec(&["/bin/sh", "-c", script]), here(), 2000);
    t.source = Some("127.0.0.1".parse().unwrap());
    assert_eq!(
        reason(&checker().check(&t).await),
        Some(&FailReason::ExitCode(1))
    );
    t.source = Some("127.0.0.2".parse().unwrap());
    assert_eq!(checker().check(&t).await.outcome, CheckOutcome::Ok);

    // argv is not a shell line: the metacharacters reach `test` as arguments.
    let literal = checker()
        .check(&target(
            exec(&["/usr/bin/test", "a", "=", "a;", "false"]),
            here(),
            2000,
        ))
        .await;
    assert!(
        matches!(reason(&literal), Some(FailReason::ExitCode(2))),
        "{literal}"
    );
}

#[tokio::test]
async fn exec_timeout_kills_the_process() {
    let marker = "5.0173";
    let r = checker()
        .check(&target(exec(&["/bin/sleep", marker]), here(), 200))
        .await;
    assert_eq!(reason(&r), Some(&FailReason::Timeout));
    assert_eq!(processes_with(marker), Vec::<u32>::new(), "sleep is gone");
}

#[tokio::test]
async fn exec_timeout_kills_what_the_program_started() {
    let marker = "6.0291";
    let line = format!("/bin/sleep {marker} & /bin/sleep {marker}; :");
    let r = checker()
        .check(&target(exec(&["/bin/sh", "-c", &line]), here(), 300))
        .await;
    assert_eq!(reason(&r), Some(&FailReason::Timeout));
    // The background sleep is not our child: it dies when the signal lands,
    // which the kernel does asynchronously, so wait for it (bounded).
    for _ in 0..100 {
        if processes_with(marker).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still running: {:?}", processes_with(marker));
}
