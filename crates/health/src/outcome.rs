//! The result of one probe.

use std::fmt;
use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The server refused the connection (TCP RST, ICMP port unreachable).
    Refused,
    /// No answer within the check's timeout.
    Timeout,
    /// HTTP status not among the expected codes.
    BadStatus(u16),
    /// HTTP body did not contain the expected substring.
    BodyMismatch,
    /// TLS handshake failed (certificate, protocol).
    TlsError(String),
    /// DNS reply with a non-zero RCODE.
    DnsRcode(u8),
    /// Program exited with a non-zero status.
    ExitCode(i32),
    /// Program was killed by a signal (not by our timeout).
    Signal(i32),
    /// The reply could not be understood (malformed HTTP head or DNS header).
    BadResponse(String),
    /// The check cannot run as configured (bad DNS name, empty argv, address family mismatch).
    Config(String),
    /// Any other I/O error.
    Io(String),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Refused => f.write_str("connection refused"),
            FailReason::Timeout => f.write_str("timeout"),
            FailReason::BadStatus(code) => write!(f, "unexpected HTTP status {code}"),
            FailReason::BodyMismatch => f.write_str("body does not contain the expected text"),
            FailReason::TlsError(e) => write!(f, "TLS error: {e}"),
            FailReason::DnsRcode(rcode) => write!(f, "DNS RCODE {rcode}"),
            FailReason::ExitCode(code) => write!(f, "exit status {code}"),
            FailReason::Signal(sig) => write!(f, "killed by signal {sig}"),
            FailReason::BadResponse(e) => write!(f, "bad response: {e}"),
            FailReason::Config(e) => write!(f, "check misconfigured: {e}"),
            FailReason::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

/// Whether a probe succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The server answered as expected.
    Ok,
    /// It did not.
    Fail(FailReason),
}

impl CheckOutcome {
    /// Whether this is `Ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckOutcome::Ok)
    }

    /// The failure reason, if any.
    pub fn reason(&self) -> Option<&FailReason> {
        match self {
            CheckOutcome::Ok => None,
            CheckOutcome::Fail(r) => Some(r),
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::Ok => f.write_str("ok"),
            CheckOutcome::Fail(r) => write!(f, "failed: {r}"),
        }
    }
}

/// A probe's outcome and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Success or the failure reason.
    pub outcome: CheckOutcome,
    /// Wall time from start to outcome.
    pub duration: Duration,
}

impl CheckResult {
    /// A success that took `duration`.
    pub fn ok(duration: Duration) -> Self {
        Self {
            outcome: CheckOutcome::Ok,
            duration,
        }
    }

    /// A failure that took `duration`.
    pub fn fail(reason: FailReason, duration: Duration) -> Self {
        Self {
            outcome: CheckOutcome::Fail(reason),
            duration,
        }
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {:.1} ms",
            self.outcome,
            self.duration.as_secs_f64() * 1e3
        )
    }
}
