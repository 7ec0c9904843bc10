//! Errors of this crate (configuration refused before anything runs).

use std::time::Duration;

use crate::target::TargetName;

/// Why targets or settings were refused. A variant that wraps another error says its
/// text itself and does not return it as `source()` as well: an `anyhow` chain (`{:#}`)
/// prints it once.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Two targets share a name.
    #[error("target {0} is listed twice")]
    DuplicateTarget(TargetName),
    /// A target given to replace some services' targets belongs to none of them.
    #[error("target {0} is not of the services being replaced")]
    OutsideServices(TargetName),
    /// Interval, timeout, rise or fall is zero.
    #[error("target {0}: interval, timeout, rise and fall must all be non-zero")]
    Timing(TargetName),
    /// Jitter above 50 % of the interval.
    #[error("jitter of {0}‰ is above the 500‰ maximum")]
    Jitter(u16),
    /// Dampening that could never let a target back up.
    #[error(
        "flap dampening needs at least 2 transitions per window and a non-zero window \
         (got {max_transitions} per {window:?})"
    )]
    Dampening {
        /// The refused count.
        max_transitions: u32,
        /// The refused window.
        window: Duration,
    },
    /// The TLS client configuration could not be built.
    #[error("TLS client configuration: {0}")]
    Tls(rustls::Error),
    /// A limit of zero concurrent checks.
    #[error("max_in_flight must be at least 1")]
    Concurrency,
    /// The checks' own thread could not be started.
    #[error("starting the health checks' thread")]
    Thread(#[source] std::io::Error),
}

// By hand, not `#[from]`, which would make the TLS error the source too.
impl From<rustls::Error> for HealthError {
    fn from(error: rustls::Error) -> Self {
        HealthError::Tls(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let tls: anyhow::Error =
            HealthError::from(rustls::Error::General("the TLS library said no".into())).into();
        let chain = format!("{tls:#}");
        assert_eq!(
            chain.matches("the TLS library said no").count(),
            1,
            "{chain}"
        );
    }
}
