//! The blocking IPVS client.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::attr::CmdAttr;
use crate::constants::*;
use crate::error::IpvsError;
use crate::message::{decode_datagram, IpvsMessage, Reply, Request};
use crate::model::{
    DaemonRole, Destination, DestinationEntry, Info, Service, ServiceEntry, SyncDaemon, Timeouts,
};

/// How long to wait for the kernel before giving up on a request.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A blocking client of the kernel's IPVS generic-netlink family.
///
/// Each call sends one request and waits for its answer, so from async code
/// call it inside `tokio::task::spawn_blocking` (or own it on a dedicated
/// thread). The socket belongs to the network namespace of the thread that
/// called [`IpvsClient::connect`], and so do the services it sees. Not `Sync`:
/// one client per thread, or behind a mutex.
#[derive(Debug)]
pub struct IpvsClient {
    socket: Socket,
    family_id: u16,
    seq: u32,
}

impl IpvsClient {
    /// Opens a socket and resolves the "IPVS" family; fails with
    /// [`IpvsError::NotAvailable`] when the kernel has no IPVS.
    pub fn connect() -> Result<IpvsClient, IpvsError> {
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
        socket.bind_auto().map_err(IpvsError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(IpvsError::Socket)?;
        set_receive_timeout(&socket, RECEIVE_TIMEOUT).map_err(IpvsError::Socket)?;
        let mut client = IpvsClient {
            socket,
            family_id: 0,
            seq: 0,
        };
        client.family_id = client.resolve_family()?;
        Ok(client)
    }

    /// The family id the kernel assigned to IPVS.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// Every virtual service of this network namespace.
    pub fn services(&mut self) -> Result<Vec<ServiceEntry>, IpvsError> {
        let replies = self.transact("list services", &Request::get_services())?;
        replies
            .iter()
            .filter(|m| m.cmd == IPVS_CMD_NEW_SERVICE)
            .map(decode_service)
            .collect()
    }

    /// Adds a virtual service.
    pub fn add_service(&mut self, svc: &Service) -> Result<(), IpvsError> {
        let op = format!("add service {svc}");
        self.transact(&op, &Request::new_service(svc)?)
            .map_err(|e| service_error(e, &op, svc))
            .map(drop)
    }

    /// Changes the scheduler, flags or persistence of an existing service.
    pub fn edit_service(&mut self, svc: &Service) -> Result<(), IpvsError> {
        let op = format!("edit service {svc}");
        self.transact(&op, &Request::set_service(svc)?)
            .map_err(|e| service_error(e, &op, svc))
            .map(drop)
    }

    /// Deletes a virtual service and its real servers.
    pub fn del_service(&mut self, svc: &Service) -> Result<(), IpvsError> {
        let op = format!("delete service {svc}");
        self.transact(&op, &Request::del_service(svc))
            .map_err(|e| service_error(e, &op, svc))
            .map(drop)
    }

    /// Real servers of a service (empty when the service does not exist: the
    /// kernel's dump says nothing then).
    pub fn destinations(&mut self, svc: &Service) -> Result<Vec<DestinationEntry>, IpvsError> {
        let op = format!("list real servers of {svc}");
        let replies = self.transact(&op, &Request::get_dests(svc))?;
        replies
            .iter()
            .filter(|m| m.cmd == IPVS_CMD_NEW_DEST)
            .map(|m| decode_dest(svc, m))
            .collect()
    }

    /// Adds a real server to a service.
    pub fn add_dest(&mut self, svc: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let op = format!("add real server {dest} to {svc}");
        self.transact(&op, &Request::new_dest(svc, dest)?)
            .map_err(|e| dest_error(e, &op, svc, dest))
            .map(drop)
    }

    /// Changes the weight, thresholds or forwarding of a real server.
    pub fn edit_dest(&mut self, svc: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let op = format!("edit real server {dest} of {svc}");
        self.transact(&op, &Request::set_dest(svc, dest)?)
            .map_err(|e| dest_error(e, &op, svc, dest))
            .map(drop)
    }

    /// Removes a real server from a service.
    pub fn del_dest(&mut self, svc: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let op = format!("delete real server {dest} of {svc}");
        self.transact(&op, &Request::del_dest(svc, dest))
            .map_err(|e| dest_error(e, &op, svc, dest))
            .map(drop)
    }

    /// Starts the connection sync daemon.
    pub fn start_daemon(&mut self, daemon: &SyncDaemon) -> Result<(), IpvsError> {
        let op = format!("start {} sync daemon on {}", daemon.role, daemon.ifname);
        self.transact(&op, &Request::new_daemon(daemon)?)
            .map_err(|e| match kernel_errno(&e) {
                Some(libc::EEXIST) => IpvsError::DaemonRunning {
                    role: daemon.role.to_string(),
                },
                Some(libc::ENODEV) => IpvsError::NoSuchInterface {
                    ifname: daemon.ifname.clone(),
                },
                _ => e,
            })
            .map(drop)
    }

    /// Stops the connection sync daemon of a role.
    pub fn stop_daemon(&mut self, role: DaemonRole) -> Result<(), IpvsError> {
        let op = format!("stop {role} sync daemon");
        self.transact(&op, &Request::del_daemon(role))
            .map_err(|e| match kernel_errno(&e) {
                Some(libc::ESRCH) => IpvsError::DaemonNotRunning {
                    role: role.to_string(),
                },
                _ => e,
            })
            .map(drop)
    }

    /// The running sync daemons (at most one master and one backup).
    pub fn daemons(&mut self) -> Result<Vec<SyncDaemon>, IpvsError> {
        let replies = self.transact("list sync daemons", &Request::get_daemons())?;
        let mut out = Vec::new();
        for m in replies.iter().filter(|m| m.cmd == IPVS_CMD_NEW_DAEMON) {
            for attr in &m.attrs {
                if let CmdAttr::Daemon(attrs) = attr {
                    out.push(SyncDaemon::from_attrs(attrs)?);
                }
            }
        }
        Ok(out)
    }

    /// IPVS version and connection table size.
    pub fn info(&mut self) -> Result<Info, IpvsError> {
        let replies = self.transact("get IPVS info", &Request::get_info())?;
        decode_info(&replies)
    }

    /// The tcp, tcpfin and udp connection timeouts.
    pub fn timeouts(&mut self) -> Result<Timeouts, IpvsError> {
        let replies = self.transact("get IPVS timeouts", &Request::get_config())?;
        decode_timeouts(&replies)
    }

    /// Sets the connection timeouts (a 0 leaves that one unchanged).
    pub fn set_timeouts(&mut self, t: &Timeouts) -> Result<(), IpvsError> {
        self.transact("set IPVS timeouts", &Request::set_config(t))
            .map(drop)
    }

    /// Zeroes the counters of one service, or of all services when `None`.
    pub fn zero(&mut self, svc: Option<&Service>) -> Result<(), IpvsError> {
        let op = match svc {
            Some(s) => format!("zero counters of {s}"),
            None => "zero all counters".to_string(),
        };
        self.transact(&op, &Request::zero(svc)).map(drop)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends a request and collects the IPVS messages of its answer, until
    /// the ACK or the end of the dump.
    fn transact(&mut self, op: &str, req: &Request) -> Result<Vec<IpvsMessage>, IpvsError> {
        let seq = self.next_seq();
        let bytes = req.encode(self.family_id, seq);
        self.socket.send(&bytes, 0).map_err(IpvsError::Send)?;
        let mut out = Vec::new();
        loop {
            let datagram = self.receive(op)?;
            for reply in decode_datagram(&datagram)? {
                match reply {
                    // Stale answers to an earlier, timed-out request.
                    Reply::Message(s, _) | Reply::Ack(s, _) | Reply::Done(s, _) if s != seq => {}
                    Reply::Message(_, m) => out.push(m),
                    Reply::Ack(_, 0) => return Ok(out),
                    Reply::Ack(_, code) | Reply::Done(_, code) if code != 0 => {
                        return Err(refusal(op, code))
                    }
                    Reply::Done(_, _) => return Ok(out),
                    Reply::Ack(_, _) => {}
                }
            }
        }
    }

    fn receive(&self, op: &str) -> Result<Vec<u8>, IpvsError> {
        // Peek the datagram's size first: a dump datagram can exceed any
        // fixed buffer and a short read would truncate it.
        let mut probe: Vec<u8> = Vec::with_capacity(16);
        let size = loop {
            match self
                .socket
                .recv(&mut probe, libc::MSG_PEEK | libc::MSG_TRUNC)
            {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => {
                    return Err(IpvsError::Timeout {
                        op: op.to_string(),
                        secs: RECEIVE_TIMEOUT.as_secs(),
                    })
                }
                Err(e) => return Err(IpvsError::Receive(e)),
            }
        };
        let mut buf: Vec<u8> = Vec::with_capacity(size.max(16));
        self.socket.recv(&mut buf, 0).map_err(IpvsError::Receive)?;
        Ok(buf)
    }

    /// CTRL_CMD_GETFAMILY "IPVS" → its id; ENOENT means no IPVS.
    fn resolve_family(&mut self) -> Result<u16, IpvsError> {
        let seq = self.next_seq();
        let mut genl = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_string())],
        });
        genl.finalize();
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(IpvsError::Send)?;

        let mut family_id = None;
        loop {
            let datagram = self.receive("resolve the IPVS family")?;
            let mut rest = &datagram[..];
            while rest.len() >= 16 {
                let reply = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(rest)?;
                let len = reply.header.length as usize;
                if reply.header.sequence_number == seq {
                    match reply.payload {
                        NetlinkPayload::InnerMessage(m) => {
                            for nla in m.payload.nlas {
                                if let GenlCtrlAttrs::FamilyId(id) = nla {
                                    family_id = Some(id);
                                }
                            }
                        }
                        NetlinkPayload::Error(e) if e.raw_code() == -libc::ENOENT => {
                            return Err(IpvsError::NotAvailable)
                        }
                        NetlinkPayload::Error(e) if e.raw_code() != 0 => {
                            return Err(refusal("resolve the IPVS family", e.raw_code()))
                        }
                        NetlinkPayload::Error(_) => {
                            return family_id.ok_or(IpvsError::NotAvailable);
                        }
                        _ => {}
                    }
                }
                let step = (len + 3) & !3;
                if len < 16 || step > rest.len() {
                    break;
                }
                rest = &rest[step..];
            }
        }
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: a valid fd and a timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A negative errno from the kernel, as an error of the request `op`.
fn refusal(op: &str, code: i32) -> IpvsError {
    let errno = code.abs();
    if errno == libc::EPERM {
        return IpvsError::PermissionDenied { op: op.to_string() };
    }
    IpvsError::Kernel {
        op: op.to_string(),
        error: io::Error::from_raw_os_error(errno),
    }
}

fn kernel_errno(e: &IpvsError) -> Option<i32> {
    match e {
        IpvsError::Kernel { error, .. } => error.raw_os_error(),
        _ => None,
    }
}

fn service_error(e: IpvsError, op: &str, svc: &Service) -> IpvsError {
    let is_add = op.starts_with("add");
    match kernel_errno(&e) {
        Some(libc::EEXIST) if is_add => IpvsError::ServiceExists {
            service: svc.to_string(),
        },
        Some(libc::ESRCH) => IpvsError::NoSuchService {
            op: op.to_string(),
            service: svc.to_string(),
        },
        // ip_vs_scheduler_get() failing (module not found) is the only
        // ENOENT of NEW/SET_SERVICE without a persistence engine.
        Some(libc::ENOENT) if !op.starts_with("delete") => IpvsError::SchedulerMissing {
            scheduler: svc.scheduler.clone(),
        },
        _ => e,
    }
}

fn dest_error(e: IpvsError, op: &str, svc: &Service, dest: &Destination) -> IpvsError {
    let is_del = op.starts_with("delete");
    match kernel_errno(&e) {
        Some(libc::ESRCH) => IpvsError::NoSuchService {
            op: op.to_string(),
            service: svc.to_string(),
        },
        Some(libc::EEXIST) => IpvsError::DestinationExists {
            service: svc.to_string(),
            destination: dest.to_string(),
        },
        Some(libc::ENOENT) => IpvsError::NoSuchDestination {
            op: op.to_string(),
            service: svc.to_string(),
            destination: dest.to_string(),
        },
        Some(libc::EINVAL) if !is_del => IpvsError::DestinationRejected {
            service: svc.to_string(),
            destination: dest.to_string(),
        },
        Some(libc::ERANGE) => IpvsError::OutOfRange {
            op: op.to_string(),
            destination: dest.to_string(),
        },
        _ => e,
    }
}

/// A service from one GET_SERVICE dump message.
pub fn decode_service(m: &IpvsMessage) -> Result<ServiceEntry, IpvsError> {
    m.attrs
        .iter()
        .find_map(|a| match a {
            CmdAttr::Service(attrs) => Some(Service::from_attrs(attrs)),
            _ => None,
        })
        .unwrap_or_else(|| {
            Err(IpvsError::Malformed(
                "service message without IPVS_CMD_ATTR_SERVICE".into(),
            ))
        })
}

/// A real server of `svc` from one GET_DEST dump message.
pub fn decode_dest(svc: &Service, m: &IpvsMessage) -> Result<DestinationEntry, IpvsError> {
    m.attrs
        .iter()
        .find_map(|a| match a {
            CmdAttr::Dest(attrs) => Some(Destination::from_attrs(svc.af, attrs)),
            _ => None,
        })
        .unwrap_or_else(|| {
            Err(IpvsError::Malformed(
                "destination message without IPVS_CMD_ATTR_DEST".into(),
            ))
        })
}

/// The info from a GET_INFO answer.
pub fn decode_info(replies: &[IpvsMessage]) -> Result<Info, IpvsError> {
    let mut version = None;
    let mut size = None;
    for attr in replies.iter().flat_map(|m| &m.attrs) {
        match attr {
            CmdAttr::InfoVersion(v) => version = Some(*v),
            CmdAttr::InfoConnTabSize(v) => size = Some(*v),
            _ => {}
        }
    }
    match (version, size) {
        (Some(version), Some(conn_table_size)) => Ok(Info {
            version,
            conn_table_size,
        }),
        _ => Err(IpvsError::Malformed(
            "info reply without IPVS_INFO_ATTR_VERSION or CONN_TAB_SIZE".into(),
        )),
    }
}

/// The timeouts from a GET_CONFIG answer.
pub fn decode_timeouts(replies: &[IpvsMessage]) -> Result<Timeouts, IpvsError> {
    let mut t = Timeouts::default();
    let mut seen = false;
    for attr in replies.iter().flat_map(|m| &m.attrs) {
        match attr {
            CmdAttr::TimeoutTcp(v) => t.tcp = *v,
            CmdAttr::TimeoutTcpFin(v) => t.tcp_fin = *v,
            CmdAttr::TimeoutUdp(v) => t.udp = *v,
            _ => continue,
        }
        seen = true;
    }
    if seen {
        Ok(t)
    } else {
        Err(IpvsError::Malformed("config reply without timeouts".into()))
    }
}
