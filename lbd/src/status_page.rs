//! lbd's read-only status page on the metrics listener: the loop's `status` reply
//! (what `vrrpctl services --json` prints), with each SNAT address's port use read
//! from the conntrack table beside it, on the metrics thread, not the loop.

use ctl::contract::lbd::LbdStatus;

use crate::conntrack::SnatUsage;
use crate::control::ControlHandler;
use crate::telemetry::Telemetry;

/// The page; `handler` is only ever asked for `status`.
pub fn status_page(handler: ControlHandler, telemetry: Telemetry) -> metrics::StatusPage {
    metrics::StatusPage::new("lbd", move || {
        let (handler, telemetry) = (handler.clone(), telemetry.clone());
        async move {
            let reply = ctl::daemon::status_reply(&handler).await?;
            let mut status: LbdStatus =
                serde_json::from_value(reply).map_err(|e| format!("lbd's status reply: {e}"))?;
            match tokio::task::spawn_blocking(move || telemetry.snat_usage()).await {
                Ok(Ok(usage)) => add_port_use(&mut status, &usage),
                Ok(Err(e)) => status
                    .notes
                    .push(format!("SNAT port use unavailable (conntrack): {e}")),
                Err(e) => status.notes.push(format!("SNAT port use unavailable: {e}")),
            }
            serde_json::to_vec(&status).map_err(|e| e.to_string())
        }
    })
}

/// Sets `ports_in_use` and `ports_available` of every SNAT address `usage` counts.
fn add_port_use(status: &mut LbdStatus, usage: &[SnatUsage]) {
    for source in status
        .snat
        .iter_mut()
        .flat_map(|rule| rule.source.iter_mut())
    {
        if let Some(u) = usage.iter().find(|u| u.address == source.address) {
            source.ports_in_use = Some(u.ports_in_use);
            source.ports_available = Some(u.ports_available);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctl::contract::lbd::{SnatAddress, SnatStatus};

    #[test]
    fn port_use_lands_on_the_addresses_it_counts() {
        let a = "198.18.1.100".parse().unwrap();
        let b = "198.18.1.101".parse().unwrap();
        let mut status = LbdStatus {
            snat: vec![SnatStatus {
                name: "web-snat".into(),
                destination: "198.18.1.0".parse().unwrap(),
                source: [a, b]
                    .into_iter()
                    .map(|address| SnatAddress {
                        address,
                        ports: None,
                        ports_in_use: None,
                        ports_available: None,
                    })
                    .collect(),
            }],
            ..LbdStatus::default()
        };
        let usage = [SnatUsage {
            address: a,
            ports_in_use: 7,
            ports_available: 64512,
        }];
        add_port_use(&mut status, &usage);
        let source = &status.snat[0].source;
        assert_eq!(
            (source[0].ports_in_use, source[0].ports_available),
            (Some(7), Some(64512))
        );
        assert_eq!(
            (source[1].ports_in_use, source[1].ports_available),
            (None, None)
        );
    }
}
