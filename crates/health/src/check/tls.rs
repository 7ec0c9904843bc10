//! TLS client configurations for HTTPS probes: one verifying against a root
//! store, one that accepts any certificate (`verify_cert = false`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::check::tcp::io_reason;
use crate::error::HealthError;
use crate::outcome::FailReason;

/// The two client configurations, built once and shared by every check.
#[derive(Clone)]
pub(crate) struct TlsClients {
    verified: TlsConnector,
    unverified: TlsConnector,
}

impl TlsClients {
    /// Verify against `roots`.
    pub(crate) fn new(roots: RootCertStore) -> Result<Self, HealthError> {
        // An explicit provider, so no process-wide default needs installing.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Self {
            verified: TlsConnector::from(Arc::new(verified)),
            unverified: TlsConnector::from(Arc::new(unverified)),
        })
    }

    /// Handshake over `tcp`; the server name is `host` (without a port) when it
    /// is a valid DNS name or IP address, else the target's IP address.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: Option<&str>,
        addr: SocketAddr,
        verify: bool,
    ) -> Result<TlsStream<TcpStream>, FailReason> {
        let name = host
            .and_then(server_name)
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let connector = if verify {
            &self.verified
        } else {
            &self.unverified
        };
        connector.connect(name, tcp).await.map_err(tls_reason)
    }
}

/// The system trust store (rustls-native-certs: /etc/ssl/certs and friends).
/// Unreadable entries are skipped; an empty store makes every verified check
/// fail with a TLS error, which says what is wrong.
pub(crate) fn system_roots() -> RootCertStore {
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        tracing::warn!(error = %e, "reading the system trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!("no trusted root certificates found: HTTPS checks with verify_cert fail");
    }
    tracing::debug!(added, ignored, "system trust store loaded");
    roots
}

fn server_name(host: &str) -> Option<ServerName<'static>> {
    if let Ok(name) = ServerName::try_from(host.to_string()) {
        return Some(name);
    }
    // "name:port", "[v6]:port" or "[v6]"
    let without_port = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let bare = without_port.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).ok()
}

/// Handshake failures carry a rustls error; anything else is plain I/O.
fn tls_reason(e: io::Error) -> FailReason {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return FailReason::TlsError(inner.to_string());
    }
    match e.kind() {
        io::ErrorKind::InvalidData => FailReason::TlsError(e.to_string()),
        _ => io_reason(e),
    }
}

/// Accepts any certificate, but still checks the handshake signatures so the
/// connection is a real TLS session with whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_strips_ports_and_brackets() {
        assert_eq!(
            server_name("www.example.org:8443"),
            Some(ServerName::try_from("www.example.org").unwrap())
        );
        assert_eq!(
            server_name("[2001:db8::1]:443"),
            Some(ServerName::try_from("2001:db8::1").unwrap())
        );
        assert_eq!(
            server_name("2001:db8::1"),
            Some(ServerName::try_from("2001:db8::1").unwrap())
        );
        assert_eq!(server_name("bad name"), None);
    }
}
