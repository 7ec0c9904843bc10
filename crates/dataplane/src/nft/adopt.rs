//! The adoption record: what a stopping lbd leaves so that the next one adopts its
//! table without reading it back, and without planning it before it runs.
//!
//! Reading back a table of 10,000 services takes about a second (the kernel walks a
//! set from its start again for each page of a dump), and planning it a few hundred
//! milliseconds. But when nothing committed to nf_tables since the last lbd's last
//! batch, the table is exactly what that lbd planned from its desired state. The
//! record names the boot, the network namespace (its cookie, never reused within a
//! boot), the ruleset generation right after that batch (bumped by any commit,
//! anyone's), the table's name, what it counts, and a fingerprint of what was
//! committed: the services and SNAT rules, what the table counts, and the layout
//! this build plans ([`layout_fingerprint`]: a fixed desired state planned once, so
//! that a build that plans another table does not adopt). A start that wants that
//! very desired state, in the same namespace and boot, at the same generation,
//! takes the table as it is; anything else reads the table back.
//!
//! The record also holds what the stopping lbd kept of the table ([`Held`]: chains,
//! sets' shapes and counts, rules' comments; no elements), so that the first change
//! after the start is computed at once, as any later one. A record without it (the
//! stopping lbd had not planned the table yet, or its lines do not add up to their
//! checksum) is still adopted, and the table is planned on a thread of its own
//! ([`Committed::adopted`](super::record::Committed::adopted)). The record is removed when read: it describes one
//! moment.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::Path;

use std::net::IpAddr;
use std::sync::OnceLock;

use super::layout::{self, Counting, TableState};
use super::record::{Fingerprint, Held};
use crate::model::{
    Backend, DesiredState, Forwarding, NatProtocol, Persistence, PortSpec, Protocol, Scheduler,
    Service, SnatRule, SnatSource,
};

/// SO_NETNS_COOKIE (asm-generic/socket.h; Linux 5.14 and later).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Where and when a table was committed, and from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptionRecord {
    boot_id: String,
    netns_cookie: u64,
    generation: u32,
    table: String,
    counting: Counting,
    content: u128,
}

impl AdoptionRecord {
    /// The record of `table`, counting `counting`, holding what was committed with
    /// fingerprint `content` ([`Committed::content`](super::record::Committed::content))
    /// at `generation`, in this boot and the calling thread's namespace; `None` if
    /// the boot or the namespace cannot be told.
    pub fn now(
        table: &str,
        counting: Counting,
        content: u128,
        generation: u32,
    ) -> Option<AdoptionRecord> {
        Some(AdoptionRecord {
            boot_id: boot_id()?,
            netns_cookie: netns_cookie()?,
            generation,
            table: table.to_owned(),
            counting,
            content,
        })
    }

    /// Writes the record to `path` (atomically: a temporary file renamed), with
    /// the committed table if there is one (`held` lines and their checksum).
    pub fn write(&self, path: &Path, held: Option<&Held>) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        writeln!(f, "boot_id {}", self.boot_id)?;
        writeln!(f, "netns_cookie {}", self.netns_cookie)?;
        writeln!(f, "generation {}", self.generation)?;
        writeln!(f, "table {}", self.table)?;
        writeln!(f, "counting {:?}", self.counting)?;
        writeln!(f, "content {:032x}", self.content)?;
        if let Some(lines) = held.and_then(Held::encode) {
            for line in &lines {
                writeln!(f, "held {line}")?;
            }
            writeln!(f, "held_sum {:032x}", Fingerprint::of(&lines))?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads and removes the record at `path`, with the committed table when it
    /// holds one that adds up to its checksum; `None` if there is no record or it
    /// does not parse.
    pub fn take(path: &Path) -> Option<(AdoptionRecord, Option<Held>)> {
        let text = std::fs::read_to_string(path).ok()?;
        let _ = std::fs::remove_file(path);
        let mut r = AdoptionRecord {
            boot_id: String::new(),
            netns_cookie: 0,
            generation: 0,
            table: String::new(),
            counting: Counting::default(),
            content: 0,
        };
        let mut seen = 0;
        let mut held: Vec<&str> = Vec::new();
        let mut held_sum = None;
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            match key {
                "held" => {
                    held.push(value);
                    continue;
                }
                "held_sum" => {
                    held_sum = Some(u128::from_str_radix(value, 16).ok()?);
                    continue;
                }
                "boot_id" => r.boot_id = value.to_owned(),
                "netns_cookie" => r.netns_cookie = value.parse().ok()?,
                "generation" => r.generation = value.parse().ok()?,
                "table" => r.table = value.to_owned(),
                "counting" => {
                    r.counting = [Counting::Off, Counting::Connections, Counting::Traffic]
                        .into_iter()
                        .find(|c| format!("{c:?}") == value)?;
                }
                "content" => r.content = u128::from_str_radix(value, 16).ok()?,
                _ => return None,
            }
            seen += 1;
        }
        if seen != 6 {
            return None;
        }
        // (A `Vec<&str>` feeds the hasher what the written `Vec<String>` fed it.)
        let held = (held_sum == Some(Fingerprint::of(&held)))
            .then(|| Held::decode(held))
            .flatten();
        Some((r, held))
    }
}

/// The fingerprint of a table's content as a read-back is compared: chains, each
/// map's shape and elements (key and data; not comments or counters), rules.
pub fn fingerprint(t: &TableState) -> u128 {
    struct Content<'a>(&'a TableState);
    impl Hash for Content<'_> {
        fn hash<H: Hasher>(&self, h: &mut H) {
            let t = self.0;
            t.exists.hash(h);
            t.chains.hash(h);
            t.sets.len().hash(h);
            for (name, set) in &t.sets {
                name.hash(h);
                format!("{:?}", set.spec).hash(h);
                set.elements.len().hash(h);
                for (key, data) in &set.elements {
                    key.hash(h);
                    data.data.hash(h);
                }
            }
            t.rules.hash(h);
        }
    }
    Fingerprint::of(&Content(t))
}

/// The fingerprint of the table this build plans for a fixed desired state that
/// uses every part of the layout (each scheduler, port ranges, IPv6, persistence,
/// SNAT maps and pools), with the crate's version: a build whose layout differs
/// gets another one, so it never adopts a table planned by another build. Computed
/// once per process.
pub fn layout_fingerprint() -> u128 {
    static ONCE: OnceLock<u128> = OnceLock::new();
    *ONCE.get_or_init(|| {
        let probe = probe_state();
        let planned = [Counting::Off, Counting::Connections, Counting::Traffic]
            .map(|c| layout::plan(&probe, c).map_or(0, |l| fingerprint(&l.state)));
        Fingerprint::of(&(env!("CARGO_PKG_VERSION"), planned))
    })
}

/// The fixed desired state of [`layout_fingerprint`].
fn probe_state() -> DesiredState {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let backends = |base: &str, n: u8| -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                name: format!("b{i}"),
                addr: ip(&format!("{base}{}", i + 1)),
                port: None,
                weight: u32::from(i % 3),
            })
            .collect()
    };
    let mut services = Vec::new();
    for (i, scheduler) in [
        Scheduler::Rr,
        Scheduler::Wrr,
        Scheduler::Random,
        Scheduler::Sh,
        Scheduler::Mh,
    ]
    .into_iter()
    .enumerate()
    {
        let i = i as u16;
        for (v4, ports) in [
            (true, PortSpec::Single(80 + i)),
            (true, PortSpec::Range(1000 + 100 * i, 1010 + 100 * i)),
            (false, PortSpec::Single(80 + i)),
        ] {
            let (vip, base) = if v4 {
                (ip("198.18.0.1"), "198.18.1.")
            } else {
                (ip("2001:db8::1"), "2001:db8:1::")
            };
            for persistence in [
                None,
                Some(Persistence {
                    timeout_s: 300,
                    prefix_len: 24,
                }),
            ] {
                let n = services.len();
                services.push(Service {
                    name: format!("s{n}"),
                    vip,
                    ports: match ports {
                        PortSpec::Single(p) => {
                            PortSpec::Single(p + 20 * u16::from(persistence.is_some()))
                        }
                        PortSpec::Range(a, b) => {
                            let d = 20 * u16::from(persistence.is_some());
                            PortSpec::Range(a + d, b + d)
                        }
                    },
                    protocol: if n % 2 == 0 {
                        Protocol::Tcp
                    } else {
                        Protocol::Udp
                    },
                    scheduler,
                    backends: backends(base, 3),
                    forward: Forwarding::Nat,
                    persistence,
                });
            }
        }
    }
    let snat = vec![
        SnatRule {
            name: "a".into(),
            in_iface: Some("eth0".into()),
            out_iface: None,
            protocol: NatProtocol::Tcp,
            orig_daddr: ip("198.18.0.1"),
            orig_dports: Some(PortSpec::Range(1000, 2000)),
            source: SnatSource::Address(ip("198.18.1.100")),
        },
        SnatRule {
            name: "p".into(),
            in_iface: None,
            out_iface: Some("eth1".into()),
            protocol: NatProtocol::Any,
            orig_daddr: ip("2001:db8::1"),
            orig_dports: None,
            source: SnatSource::Pool(vec![(ip("2001:db8:1::100"), Some((2000, 3000)))]),
        },
    ];
    DesiredState { services, snat }
}

/// This boot's id.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// The cookie of the calling thread's network namespace.
fn netns_cookie() -> Option<u64> {
    // SAFETY: a plain socket, closed below; getsockopt writes at most `len` bytes
    // into `cookie`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut cookie: u64 = 0;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        );
        libc::close(fd);
        (r == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_once() {
        let path = std::env::temp_dir().join(format!("lbsuite-adopt-test-{}", std::process::id()));
        let r = AdoptionRecord::now("t", Counting::Traffic, 0x1234, 7).unwrap();
        r.write(&path, None).unwrap();
        assert_eq!(AdoptionRecord::take(&path), Some((r, None)));
        assert_eq!(AdoptionRecord::take(&path), None);
    }

    #[test]
    fn a_record_carries_the_committed_table_unless_its_lines_are_spoiled() {
        let path = std::env::temp_dir().join(format!("lbsuite-adopt-held-{}", std::process::id()));
        let planned = layout::plan(&probe_state(), Counting::Traffic).unwrap();
        let held = Held::of(planned.state);
        let r = AdoptionRecord::now("t", Counting::Traffic, 0x1234, 7).unwrap();
        r.write(&path, Some(&held)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().filter(|l| l.starts_with("held ")).count() > 10);
        assert_eq!(AdoptionRecord::take(&path), Some((r.clone(), Some(held))));
        // One count changed: the lines no longer add up to their checksum; the record
        // is adopted still, without the table.
        let spoiled: String = text
            .lines()
            .map(|l| match l.strip_prefix("held set ") {
                Some(rest) => format!("held set {rest}1\n"),
                None => format!("{l}\n"),
            })
            .collect();
        assert_ne!(spoiled, text);
        std::fs::write(&path, spoiled).unwrap();
        assert_eq!(AdoptionRecord::take(&path), Some((r, None)));
    }

    #[test]
    fn the_layout_probe_plans_every_part_of_the_layout() {
        let l = layout::plan(&probe_state(), Counting::Traffic).unwrap();
        let sets: Vec<&str> = l.state.sets.keys().map(String::as_str).collect();
        for prefix in [
            "dnat4_bucket_",
            "dnatr4_bucket_",
            "dnat6_bucket_",
            "dnat4_rand_",
            "dnat4_hash_",
            "svc4",
            "svcr4",
            "svc6",
            "rec4",
            "persist4_tcp",
            "conn4",
            "count6",
            "snat4_",
            "snat_p",
        ] {
            assert!(
                sets.iter().any(|s| s.starts_with(prefix)),
                "{prefix}: {sets:?}"
            );
        }
        assert_ne!(layout_fingerprint(), 0);
        assert_eq!(layout_fingerprint(), layout_fingerprint());
    }

    #[test]
    fn the_fingerprint_follows_the_content() {
        let a = TableState::default();
        let mut b = TableState::default();
        b.chains.insert("lb_dnat".into());
        let mut c = b.clone();
        c.rules.insert("lb_dnat".into(), vec!["x".into()]);
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&b), fingerprint(&c));
    }
}
