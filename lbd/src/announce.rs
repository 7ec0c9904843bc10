//! Active-active mode: announcing the VIPs of this node's healthy services as host
//! routes through the node's routing daemon (FRR or BIRD 2), driven through the
//! daemon's own interface (`vtysh`, or an include file and `birdc configure`).
//!
//! The daemon loop computes which VIPs this node should announce ([`wanted`]) after
//! every plan and apply, and hands the set to the [`Announcer`]'s task. The task
//! reads back what the daemon announces (of the VIPs this file names: nothing else
//! is lbd's), changes the difference, and does it again every `refresh_ms`, so that
//! a routing daemon that restarted gets its routes back. When lbd stops, every VIP is
//! withdrawn before it exits.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{AnnounceSettings, NodeView, RoutingDaemon};
use ctl::contract::lbd::{AnnouncePeer, AnnounceStatus};
use serde_json::Value;
use tokio::sync::watch;

use crate::desired::{Plan, Serving};

/// How long one call of vtysh or birdc may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the routing daemon failed. Each variant says the inner error's text
/// itself and does not return it as `source()` as well: an `anyhow` chain (`{:#}`)
/// prints it once.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The program could not be started.
    #[error("cannot run {program}: {error}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// The program did not finish in time.
    #[error("{program} did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout {
        /// The program.
        program: String,
    },
    /// The program said something went wrong.
    #[error("{program} failed: {output}")]
    Refused {
        /// The program.
        program: String,
        /// What it printed.
        output: String,
    },
    /// The include file could not be written.
    #[error("cannot write {path}: {error}; lbd replaces it through a temporary file beside it, so it needs that directory: one root owns and BIRD reads (install -d -g bird -m 0750 DIR), writable under systemd (ReadWritePaths=DIR in a drop-in, docs/active-active.md)")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// The VIPs this node should announce now: those with a service that can take
/// traffic (its servers, or its sorry server) and whose quorum, if any, is met, once
/// the dataplane holds the plan (`applied`), and unless the node is drained.
pub fn wanted(plan: &Plan, applied: bool, drained: bool) -> BTreeSet<IpAddr> {
    if !applied || drained {
        return BTreeSet::new();
    }
    plan.services
        .iter()
        .filter(|s| matches!(s.serving, Serving::Servers | Serving::Sorry))
        .filter(|s| s.quorum.as_ref().is_none_or(|q| q.met))
        .map(|s| s.vip)
        .collect()
}

/// Every VIP the configuration names: what lbd may withdraw (a route to anything
/// else in the daemon is the operator's).
pub fn owned(view: &NodeView) -> BTreeSet<IpAddr> {
    view.services.iter().map(|s| s.vip).collect()
}

/// The host route of a VIP: `/32` or `/128`.
fn host_prefix(vip: IpAddr) -> String {
    match vip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The vtysh commands that make `router bgp asn` announce `add` and stop announcing
/// `remove`, in one configuration session.
pub fn frr_commands(asn: u32, add: &BTreeSet<IpAddr>, remove: &BTreeSet<IpAddr>) -> Vec<String> {
    let mut out = vec!["configure terminal".to_owned(), format!("router bgp {asn}")];
    for (family, v6) in [("ipv4", false), ("ipv6", true)] {
        let adds: Vec<&IpAddr> = add.iter().filter(|a| a.is_ipv6() == v6).collect();
        let removes: Vec<&IpAddr> = remove.iter().filter(|a| a.is_ipv6() == v6).collect();
        if adds.is_empty() && removes.is_empty() {
            continue;
        }
        out.push(format!("address-family {family} unicast"));
        out.extend(
            removes
                .iter()
                .map(|a| format!("no network {}", host_prefix(**a))),
        );
        out.extend(adds.iter().map(|a| format!("network {}", host_prefix(**a))));
        out.push("exit-address-family".to_owned());
    }
    out.push("end".to_owned());
    out
}

/// The host routes that `router bgp asn` (the default VRF's) announces with a
/// `network` line, read from FRR's running configuration.
pub fn frr_networks(running_config: &str, asn: u32) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    let header = format!("router bgp {asn}");
    for line in running_config.lines() {
        if !line.starts_with(' ') {
            // A top-level line opens or closes a block; `router bgp ASN vrf X` is
            // another VRF's.
            inside = line.trim_end() == header;
            continue;
        }
        if !inside {
            continue;
        }
        let Some(rest) = line.trim().strip_prefix("network ") else {
            continue;
        };
        let prefix = rest.split_whitespace().next().unwrap_or("");
        let Some((addr, len)) = prefix.split_once('/') else {
            continue;
        };
        if let Ok(a) = addr.parse::<IpAddr>() {
            let host = if a.is_ipv4() { "32" } else { "128" };
            if len == host {
                out.insert(a);
            }
        }
    }
    out
}

/// The BIRD include file announcing `vips` as static blackhole routes of the
/// protocols `name` (IPv4) and `name_v6` (IPv6). Each protocol is always defined,
/// so that bird.conf may refer to it while it has no route.
pub fn bird_include(name: &str, vips: &BTreeSet<IpAddr>) -> String {
    let mut out = String::from(
        "# Written by lbd (lbsuite): the VIPs this node announces. Do not edit; bird.conf\n\
         # includes this file and exports these protocols' routes to its BGP neighbours.\n",
    );
    for (suffix, channel, v6) in [("", "ipv4", false), ("_v6", "ipv6", true)] {
        out.push_str(&format!(
            "protocol static {name}{suffix} {{\n    {channel};\n"
        ));
        for vip in vips.iter().filter(|a| a.is_ipv6() == v6) {
            out.push_str(&format!("    route {} blackhole;\n", host_prefix(*vip)));
        }
        out.push_str("}\n");
    }
    out
}

/// The VIPs a BIRD include file written by [`bird_include`] announces.
pub fn bird_routes(text: &str) -> BTreeSet<IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("route "))
        .filter_map(|r| r.split('/').next())
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The host routes in BIRD's `show route protocol NAME` (lines that start with a
/// prefix; a protocol that does not exist yet shows none).
pub fn bird_shown_routes(text: &str) -> BTreeSet<IpAddr> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| p.split_once('/'))
        .filter(|(a, len)| {
            (*len == "32" && a.parse::<std::net::Ipv4Addr>().is_ok())
                || (*len == "128" && a.parse::<std::net::Ipv6Addr>().is_ok())
        })
        .filter_map(|(a, _)| a.parse().ok())
        .collect()
}

/// The BGP sessions in FRR's `show bgp summary json`, over its address families.
pub fn frr_peers(json: &str) -> Vec<AnnouncePeer> {
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let mut peers: std::collections::BTreeMap<String, AnnouncePeer> = Default::default();
    let Some(families) = v.as_object() else {
        return Vec::new();
    };
    for family in families.values() {
        let Some(list) = family.get("peers").and_then(Value::as_object) else {
            continue;
        };
        for (address, p) in list {
            let e = peers
                .entry(address.clone())
                .or_insert_with(|| AnnouncePeer {
                    address: address.clone(),
                    ..AnnouncePeer::default()
                });
            if let Some(state) = p.get("state").and_then(Value::as_str) {
                e.state = state.to_owned();
            }
            e.prefixes_sent += p.get("pfxSnt").and_then(Value::as_u64).unwrap_or(0);
        }
    }
    peers.into_values().collect()
}

/// The BGP protocols in BIRD's `show protocols` (name, and the info column, which
/// says `Established` for a session that is up); BIRD does not count prefixes there.
pub fn bird_peers(text: &str) -> Vec<AnnouncePeer> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 4 && cols[1] == "BGP").then(|| AnnouncePeer {
                address: cols[0].to_owned(),
                state: cols.last().copied().unwrap_or_default().to_owned(),
                prefixes_sent: 0,
            })
        })
        .collect()
}

/// One routing daemon as lbd drives it.
#[derive(Debug, Clone)]
pub struct Speaker {
    settings: AnnounceSettings,
}

impl Speaker {
    /// The speaker for this node's `[announce]`.
    pub fn new(settings: AnnounceSettings) -> Self {
        Self { settings }
    }

    /// Which daemon.
    pub fn daemon(&self) -> RoutingDaemon {
        self.settings.daemon
    }

    async fn run(
        &self,
        program: &std::path::Path,
        args: &[String],
    ) -> Result<String, AnnounceError> {
        let name = program.display().to_string();
        let mut cmd = tokio::process::Command::new(program);
        // A process group of its own: a SIGTERM sent to lbd's group (a terminal's
        // Ctrl-C, `kill -- -PGID`) must not kill the vtysh or birdc that withdraws
        // the VIPs on the way out (systemd's unit uses KillMode=mixed for the same).
        cmd.process_group(0);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|error| AnnounceError::Spawn {
            program: name.clone(),
            error,
        })?;
        let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| AnnounceError::Timeout {
                program: name.clone(),
            })?
            .map_err(|error| AnnounceError::Spawn {
                program: name.clone(),
                error,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // vtysh complains on stderr about a missing vtysh.conf in a pathspace; what
        // matters is its exit status and its "%" lines on stdout.
        let failed_line = stdout
            .lines()
            .find(|l| l.starts_with("% ") && !l.contains("vtysh.conf"));
        if !out.status.success() || failed_line.is_some() {
            let text = failed_line
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{} {}", stdout.trim(), stderr.trim()));
            return Err(AnnounceError::Refused {
                program: name,
                output: text.trim().to_owned(),
            });
        }
        Ok(stdout)
    }

    fn vtysh_args(&self, commands: &[String]) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(p) = &self.settings.pathspace {
            args.push("-N".to_owned());
            args.push(p.clone());
        }
        for c in commands {
            args.push("-c".to_owned());
            args.push(c.clone());
        }
        args
    }

    fn birdc_args(&self, command: &str) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(s) = &self.settings.bird_socket {
            args.push("-s".to_owned());
            args.push(s.display().to_string());
        }
        args.push(command.to_owned());
        args
    }

    /// Runs vtysh with these commands (in the node's pathspace).
    async fn vtysh(&self, commands: &[String]) -> Result<String, AnnounceError> {
        self.run(&self.settings.vtysh, &self.vtysh_args(commands))
            .await
    }

    /// Runs one birdc command (on the configured socket).
    async fn birdc(&self, command: &str) -> Result<String, AnnounceError> {
        self.run(&self.settings.birdc, &self.birdc_args(command))
            .await
    }

    /// What the daemon announces now, of `owned`.
    pub async fn read(&self, owned: &BTreeSet<IpAddr>) -> Result<BTreeSet<IpAddr>, AnnounceError> {
        let all = match self.settings.daemon {
            RoutingDaemon::Frr => {
                let text = self.vtysh(&["show running-config bgpd".to_owned()]).await?;
                frr_networks(&text, self.settings.asn.unwrap_or(0))
            }
            // What BIRD holds, not what the file says: a file written but refused
            // by `birdc configure` must not count as announced.
            RoutingDaemon::Bird => {
                let mut all = BTreeSet::new();
                // `show route protocol` of an unknown protocol is a syntax error.
                let listed = self.birdc("show protocols").await?;
                let known: BTreeSet<&str> = listed
                    .lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .collect();
                for suffix in ["", "_v6"] {
                    let protocol = format!("{}{suffix}", self.settings.bird_protocol);
                    if !known.contains(protocol.as_str()) {
                        continue;
                    }
                    let text = self
                        .birdc(&format!("show route protocol {protocol}"))
                        .await?;
                    all.extend(bird_shown_routes(&text));
                }
                all
            }
        };
        Ok(all.intersection(owned).copied().collect())
    }

    /// The daemon's BGP sessions.
    pub async fn peers(&self) -> Result<Vec<AnnouncePeer>, AnnounceError> {
        match self.settings.daemon {
            RoutingDaemon::Frr => {
                let json = self.vtysh(&["show bgp summary json".to_owned()]).await?;
                Ok(frr_peers(&json))
            }
            RoutingDaemon::Bird => {
                let text = self.birdc("show protocols").await?;
                Ok(bird_peers(&text))
            }
        }
    }

    /// Makes the daemon announce exactly `wanted` of `owned`, given that it announces
    /// `held` now.
    pub async fn set(
        &self,
        held: &BTreeSet<IpAddr>,
        wanted: &BTreeSet<IpAddr>,
    ) -> Result<(), AnnounceError> {
        match self.settings.daemon {
            RoutingDaemon::Frr => {
                let add: BTreeSet<IpAddr> = wanted.difference(held).copied().collect();
                let remove: BTreeSet<IpAddr> = held.difference(wanted).copied().collect();
                if add.is_empty() && remove.is_empty() {
                    return Ok(());
                }
                let commands = frr_commands(self.settings.asn.unwrap_or(0), &add, &remove);
                self.vtysh(&commands).await.map(|_| ())
            }
            RoutingDaemon::Bird => {
                if held == wanted && self.settings.bird_include.exists() {
                    return Ok(());
                }
                // The file may hold what BIRD refused before: it is rewritten whole.
                let path = &self.settings.bird_include;
                let text = bird_include(&self.settings.bird_protocol, wanted);
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, path))
                    .map_err(|error| AnnounceError::Write {
                        path: path.clone(),
                        error,
                    })?;
                let out = self.birdc("configure").await?;
                if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
                    Ok(())
                } else {
                    Err(AnnounceError::Refused {
                        program: self.settings.birdc.display().to_string(),
                        output: out.trim().to_owned(),
                    })
                }
            }
        }
    }
}

/// What the announcer did last, for status and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceState {
    /// The daemon ("frr" or "bird").
    pub daemon: String,
    /// What lbd wants announced.
    pub wanted: BTreeSet<IpAddr>,
    /// What the daemon announced at the last read-back.
    pub announced: BTreeSet<IpAddr>,
    /// The daemon's BGP sessions at the last read-back.
    pub peers: Vec<AnnouncePeer>,
    /// The last failure, if the last attempt failed.
    pub error: Option<String>,
    /// Changes made (announcements and withdrawals sent).
    pub changes: u64,
}

impl AnnounceState {
    /// As the control socket shows it.
    pub fn to_status(&self, members: &[String], drained: bool) -> AnnounceStatus {
        AnnounceStatus {
            daemon: self.daemon.clone(),
            members: members.to_vec(),
            drained,
            wanted: self.wanted.iter().map(ToString::to_string).collect(),
            announced: self.announced.iter().map(ToString::to_string).collect(),
            peers: self.peers.clone(),
            error: self.error.clone(),
            changes: self.changes,
        }
    }
}

/// The announcing task and its inputs.
pub struct Announcer {
    wanted: watch::Sender<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)>,
    state: Arc<Mutex<AnnounceState>>,
    speaker: Speaker,
    task: tokio::task::JoinHandle<()>,
}

impl Announcer {
    /// Starts the task for `settings`; nothing is announced until [`Announcer::set`].
    pub fn start(settings: AnnounceSettings, owned: BTreeSet<IpAddr>) -> Self {
        let refresh = Duration::from_millis(u64::from(settings.refresh_ms));
        let speaker = Speaker::new(settings);
        let state = Arc::new(Mutex::new(AnnounceState {
            daemon: speaker.daemon().name().to_owned(),
            ..AnnounceState::default()
        }));
        let (tx, rx) = watch::channel((BTreeSet::new(), owned));
        let task = tokio::spawn(keep(speaker.clone(), rx, Arc::clone(&state), refresh));
        Self {
            wanted: tx,
            state,
            speaker,
            task,
        }
    }

    /// Announce `wanted` (and withdraw the rest of `owned`) from now on. What was
    /// owned before stays owned: a VIP a reload removed is withdrawn too.
    pub fn set(&self, wanted: BTreeSet<IpAddr>, owned: BTreeSet<IpAddr>) {
        self.wanted.send_if_modified(|cur| {
            let owned: BTreeSet<IpAddr> = owned.union(&cur.1).copied().collect();
            let new = (wanted, owned);
            if *cur == new {
                false
            } else {
                *cur = new;
                true
            }
        });
    }

    /// What the announcer did last.
    pub fn state(&self) -> AnnounceState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the task and withdraws every VIP of `owned` the daemon announces.
    pub async fn withdraw_all(self) -> Result<BTreeSet<IpAddr>, AnnounceError> {
        self.task.abort();
        let owned = self.wanted.borrow().1.clone();
        let held = self.speaker.read(&owned).await?;
        self.speaker.set(&held, &BTreeSet::new()).await?;
        Ok(held)
    }
}

/// The task: on every change of the wanted set and every `refresh`, read back what
/// the daemon announces and change the difference.
async fn keep(
    speaker: Speaker,
    mut rx: watch::Receiver<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)>,
    state: Arc<Mutex<AnnounceState>>,
    refresh: Duration,
) {
    let mut tick = tokio::time::interval(refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (wanted, owned) = rx.borrow_and_update().clone();
        let peers = speaker.peers().await.ok();
        let result = async {
            let held = speaker.read(&owned).await?;
            if held != wanted {
                speaker.set(&held, &wanted).await?;
                let added: Vec<String> = wanted.difference(&held).map(|a| a.to_string()).collect();
                let removed: Vec<String> = held.difference(&wanted).map(|a| a.to_string()).collect();
                tracing::info!(daemon = speaker.daemon().name(), announced = %added.join(","), withdrawn = %removed.join(","), "VIP announcements changed");
                return Ok::<_, AnnounceError>((wanted.clone(), 1));
            }
            Ok((held, 0))
        }
        .await;
        if let Ok(mut s) = state.lock() {
            s.wanted = wanted.clone();
            s.peers = peers.unwrap_or_default();
            match result {
                Ok((announced, changes)) => {
                    if s.error.is_some() {
                        tracing::info!(
                            daemon = speaker.daemon().name(),
                            "routing daemon reachable again"
                        );
                    }
                    s.announced = announced;
                    s.changes += changes;
                    s.error = None;
                }
                Err(e) => {
                    if s.error.is_none() {
                        tracing::error!(daemon = speaker.daemon().name(), error = %e, "announcing VIPs");
                    }
                    s.error = Some(e.to_string());
                }
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{self, ServerHealth};

    #[test]
    fn a_chain_prints_the_inner_text_once() {
        let os = || std::io::Error::other("the kernel said no");
        let errors: Vec<anyhow::Error> = vec![
            AnnounceError::Spawn {
                program: "vtysh".into(),
                error: os(),
            }
            .into(),
            AnnounceError::Write {
                path: "/etc/bird/lbd.conf".into(),
                error: os(),
            }
            .into(),
        ];
        for e in errors {
            let chain = format!("{e:#}");
            assert_eq!(chain.matches("the kernel said no").count(), 1, "{chain}");
        }
    }

    /// The active-active example of the config crate's tests, its servers checked.
    fn view() -> NodeView {
        let text = include_str!("../../crates/config/tests/valid/active_active.toml")
            .replace(
                "address = \"198.18.1.21\"",
                "address = \"198.18.1.21\"\ncheck = \"tcp\"",
            )
            .replace(
                "address = \"198.18.1.22\"",
                "address = \"198.18.1.22\"\ncheck = \"tcp\"",
            )
            + "\n[[check]]\nname = \"tcp\"\ntype = \"tcp\"\n";
        config::parse(&text, "aa.toml")
            .unwrap()
            .node_view(Some("lb2"))
            .unwrap()
    }

    /// The nft DNAT maps (Maglev slot -> server) of `node` with `down` servers down.
    fn dnat_maps(
        node: &str,
        down: &'static [&'static str],
    ) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
        dnat_maps_of(
            include_str!("../../crates/config/tests/valid/active_active.toml"),
            node,
            down,
        )
    }

    fn dnat_maps_of(
        text: &str,
        node: &str,
        down: &'static [&'static str],
    ) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
        let view = config::parse(text, "aa.toml")
            .unwrap()
            .node_view(Some(node))
            .unwrap();
        let plan = desired::plan(
            &view,
            move |_, server| {
                if down.contains(&server) {
                    ServerHealth::Down
                } else {
                    ServerHealth::Up
                }
            },
            dataplane::BackendKind::Nft.capabilities(),
        );
        let layout =
            dataplane::nft::layout::plan(&plan.state, dataplane::Counting::default()).unwrap();
        layout
            .state
            .sets
            .iter()
            .filter(|(name, _)| name.starts_with("dnat"))
            .map(|(name, set)| {
                let elements = set
                    .elements
                    .iter()
                    .map(|(k, d)| (format!("{k:?}"), format!("{d:?}")))
                    .collect();
                (name.clone(), elements)
            })
            .collect()
    }

    #[test]
    fn every_node_builds_the_same_maglev_table() {
        let lb1 = dnat_maps("lb1", &[]);
        assert!(!lb1.is_empty());
        let slots: usize = lb1.values().map(Vec::len).sum();
        assert_eq!(
            slots, 251,
            "one service of 2 servers: a Maglev table of 251 slots"
        );
        assert_eq!(dnat_maps("lb2", &[]), lb1);
        assert_eq!(dnat_maps("lb3", &[]), lb1);
        // The same server health gives the same table on every node.
        assert_eq!(dnat_maps("lb3", &["srv2"]), dnat_maps("lb1", &["srv2"]));
    }

    #[test]
    fn a_server_going_down_moves_about_its_share_of_the_table() {
        // 17 servers: a table of 509 entries whether 17 or 16 are up.
        let mut text = include_str!("../../crates/config/tests/valid/active_active.toml").replace(
            "[[service.server]]\nname = \"srv2\"\naddress = \"198.18.1.22\"\n",
            "",
        );
        assert!(!text.contains("srv2"));
        for i in 2..=17 {
            let service_end = text.find("\n[[nat]]").unwrap();
            text.insert_str(
                service_end,
                &format!("\n[[service.server]]\nname = \"srv{i}\"\naddress = \"198.18.1.{}\"\ncheck = \"tcp\"\n", 20 + i),
            );
        }
        let text = text.replace(
            "address = \"198.18.1.21\"\n",
            "address = \"198.18.1.21\"\ncheck = \"tcp\"\n",
        ) + "\n[[check]]\nname = \"tcp\"\ntype = \"tcp\"\n";
        let all = dnat_maps_of(&text, "lb1", &[]);
        let less = dnat_maps_of(&text, "lb2", &["srv9"]);
        let (a, b): (Vec<_>, Vec<_>) = (
            all.values().flatten().collect(),
            less.values().flatten().collect(),
        );
        assert_eq!(a.len(), 509);
        assert_eq!(b.len(), 509, "the table keeps its size");
        let owned = a
            .iter()
            .filter(|(_, d)| d.contains("198, 18, 1, 29"))
            .count();
        let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        println!("17 servers, 509 entries: srv9 down moved {moved} entries (it owned {owned})");
        assert!(
            moved >= owned && moved <= owned * 2 + 509 / 17,
            "{moved} moved, {owned} owned"
        );
    }

    #[test]
    fn a_vip_is_wanted_while_a_server_can_take_its_traffic() {
        let view = view();
        let caps = dataplane::BackendKind::Nft.capabilities();
        let plan = |down: &'static [&'static str]| {
            desired::plan(
                &view,
                move |_, server| {
                    if down.contains(&server) {
                        ServerHealth::Down
                    } else {
                        ServerHealth::Up
                    }
                },
                caps,
            )
        };
        let vip = set(&["198.18.5.100"]);
        assert_eq!(wanted(&plan(&[]), true, false), vip);
        assert_eq!(wanted(&plan(&["srv1"]), true, false), vip);
        assert!(wanted(&plan(&["srv1", "srv2"]), true, false).is_empty());
        // Not before the dataplane holds the plan, and not while drained.
        assert!(wanted(&plan(&[]), false, false).is_empty());
        assert!(wanted(&plan(&[]), true, true).is_empty());
        assert_eq!(owned(&view), vip);
    }

    #[test]
    fn frr_peers_add_up_their_families() {
        let json = r#"{
          "ipv4Unicast": {"routerId": "198.18.0.11", "as": 65010,
            "peers": {"198.18.0.1": {"remoteAs": 65000, "pfxRcd": 0, "pfxSnt": 2, "state": "Established"}}},
          "ipv6Unicast": {"peers": {"198.18.0.1": {"pfxSnt": 1, "state": "Established"}}}
        }"#;
        assert_eq!(
            frr_peers(json),
            vec![AnnouncePeer {
                address: "198.18.0.1".to_owned(),
                state: "Established".to_owned(),
                prefixes_sent: 3
            }]
        );
        assert!(frr_peers("% not json").is_empty());
    }

    #[test]
    fn bird_peers_are_its_bgp_protocols() {
        let text = "BIRD 2.0.12 ready.\nName       Proto      Table      State  Since         Info\ndevice1    Device     ---        up     12:00:00.000\nrouter     BGP        ---        up     12:00:01.000  Established\nlbsuite_vips Static   master4    up     12:00:00.000\n";
        let peers = bird_peers(text);
        assert_eq!(peers.len(), 1);
        assert_eq!(
            (peers[0].address.as_str(), peers[0].state.as_str()),
            ("router", "Established")
        );
    }

    fn set(list: &[&str]) -> BTreeSet<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn frr_commands_change_both_families_in_one_session() {
        let c = frr_commands(
            65010,
            &set(&["198.18.5.100", "2001:db8::100"]),
            &set(&["198.18.5.101"]),
        );
        assert_eq!(
            c,
            vec![
                "configure terminal",
                "router bgp 65010",
                "address-family ipv4 unicast",
                "no network 198.18.5.101/32",
                "network 198.18.5.100/32",
                "exit-address-family",
                "address-family ipv6 unicast",
                "network 2001:db8::100/128",
                "exit-address-family",
                "end",
            ]
        );
    }

    #[test]
    fn frr_networks_are_read_from_the_right_router_only() {
        let text = "\
frr version 8.4.4
hostname lb1
router bgp 65010
 no bgp network import-check
 neighbor 198.18.10.1 remote-as 65000
 !
 address-family ipv4 unicast
  network 198.18.5.100/32
  network 198.18.6.0/24
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8::100/128
 exit-address-family
exit
!
router bgp 65010 vrf blue
 address-family ipv4 unicast
  network 198.18.5.101/32
 exit-address-family
exit
";
        assert_eq!(
            frr_networks(text, 65010),
            set(&["198.18.5.100", "2001:db8::100"])
        );
        assert!(frr_networks(text, 65011).is_empty());
    }

    #[test]
    fn the_bird_include_file_reads_back_as_written() {
        let vips = set(&["198.18.5.100", "198.18.5.101", "2001:db8::100"]);
        let text = bird_include("lbsuite_vips", &vips);
        assert!(text.contains(
            "protocol static lbsuite_vips {\n    ipv4;\n    route 198.18.5.100/32 blackhole;"
        ));
        assert!(text.contains(
            "protocol static lbsuite_vips_v6 {\n    ipv6;\n    route 2001:db8::100/128 blackhole;"
        ));
        assert_eq!(bird_routes(&text), vips);
        let shown = "BIRD 2.0.12 ready.\nTable master4:\n198.18.5.100/32      blackhole [lbsuite_vips 13:52:05.083] * (200)\n198.18.5.101/32      blackhole [lbsuite_vips 13:52:05.083] * (200)\n";
        assert_eq!(
            bird_shown_routes(shown),
            set(&["198.18.5.100", "198.18.5.101"])
        );
        let empty = bird_include("lbsuite_vips", &BTreeSet::new());
        assert!(empty.contains("protocol static lbsuite_vips {\n    ipv4;\n}"));
        assert!(bird_routes(&empty).is_empty());
    }
}
