//! IPVS generic-netlink messages: the payload type, the requests the client
//! sends, and their wire encoding.

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkMessage, NetlinkPayload, ParseableParametrized, NLM_F_ACK,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use crate::attr::{parse_cmd_attrs, CmdAttr, DaemonAttr};
use crate::constants::*;
use crate::error::IpvsError;
use crate::model::{DaemonRole, Destination, Service, SyncDaemon, Timeouts};

/// The payload of an IPVS genetlink message: a command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// `IPVS_CMD_*`.
    pub cmd: u8,
    /// Top-level attributes.
    pub attrs: Vec<CmdAttr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs: parse_cmd_attrs(header.cmd, buf)?,
        })
    }
}

/// A request and how the kernel answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The message.
    pub message: IpvsMessage,
    /// Dump (`NLM_F_DUMP`, answered by messages then `NLMSG_DONE`) or a single
    /// operation (`NLM_F_ACK`, answered by an optional reply then an ACK).
    pub dump: bool,
}

impl Request {
    fn ack(cmd: u8, attrs: Vec<CmdAttr>) -> Request {
        Request {
            message: IpvsMessage { cmd, attrs },
            dump: false,
        }
    }

    fn dump(cmd: u8, attrs: Vec<CmdAttr>) -> Request {
        Request {
            message: IpvsMessage { cmd, attrs },
            dump: true,
        }
    }

    /// `IPVS_CMD_NEW_SERVICE` with the full service.
    pub fn new_service(svc: &Service) -> Result<Request, IpvsError> {
        Ok(Request::ack(
            IPVS_CMD_NEW_SERVICE,
            vec![CmdAttr::Service(svc.full_attrs()?)],
        ))
    }

    /// `IPVS_CMD_SET_SERVICE` with the full service.
    pub fn set_service(svc: &Service) -> Result<Request, IpvsError> {
        Ok(Request::ack(
            IPVS_CMD_SET_SERVICE,
            vec![CmdAttr::Service(svc.full_attrs()?)],
        ))
    }

    /// `IPVS_CMD_DEL_SERVICE` with the service key.
    pub fn del_service(svc: &Service) -> Request {
        Request::ack(
            IPVS_CMD_DEL_SERVICE,
            vec![CmdAttr::Service(svc.key_attrs())],
        )
    }

    /// `IPVS_CMD_GET_SERVICE` dump of every service.
    pub fn get_services() -> Request {
        Request::dump(IPVS_CMD_GET_SERVICE, vec![])
    }

    /// `IPVS_CMD_NEW_DEST`: service key and full destination.
    pub fn new_dest(svc: &Service, dest: &Destination) -> Result<Request, IpvsError> {
        Ok(Request::ack(
            IPVS_CMD_NEW_DEST,
            vec![
                CmdAttr::Service(svc.key_attrs()),
                CmdAttr::Dest(dest.full_attrs()?),
            ],
        ))
    }

    /// `IPVS_CMD_SET_DEST`: service key and full destination.
    pub fn set_dest(svc: &Service, dest: &Destination) -> Result<Request, IpvsError> {
        Ok(Request::ack(
            IPVS_CMD_SET_DEST,
            vec![
                CmdAttr::Service(svc.key_attrs()),
                CmdAttr::Dest(dest.full_attrs()?),
            ],
        ))
    }

    /// `IPVS_CMD_DEL_DEST`: service key and destination key.
    pub fn del_dest(svc: &Service, dest: &Destination) -> Request {
        Request::ack(
            IPVS_CMD_DEL_DEST,
            vec![
                CmdAttr::Service(svc.key_attrs()),
                CmdAttr::Dest(dest.key_attrs()),
            ],
        )
    }

    /// `IPVS_CMD_GET_DEST` dump of one service's real servers.
    pub fn get_dests(svc: &Service) -> Request {
        Request::dump(IPVS_CMD_GET_DEST, vec![CmdAttr::Service(svc.key_attrs())])
    }

    /// `IPVS_CMD_NEW_DAEMON`: start a sync daemon.
    pub fn new_daemon(daemon: &SyncDaemon) -> Result<Request, IpvsError> {
        Ok(Request::ack(
            IPVS_CMD_NEW_DAEMON,
            vec![CmdAttr::Daemon(daemon.attrs()?)],
        ))
    }

    /// `IPVS_CMD_DEL_DAEMON`: stop the sync daemon of a role (only STATE is read).
    pub fn del_daemon(role: DaemonRole) -> Request {
        Request::ack(
            IPVS_CMD_DEL_DAEMON,
            vec![CmdAttr::Daemon(vec![DaemonAttr::State(role.number())])],
        )
    }

    /// `IPVS_CMD_GET_DAEMON` dump of the running sync daemons.
    pub fn get_daemons() -> Request {
        Request::dump(IPVS_CMD_GET_DAEMON, vec![])
    }

    /// `IPVS_CMD_GET_INFO`, answered by `IPVS_CMD_SET_INFO`.
    pub fn get_info() -> Request {
        Request::ack(IPVS_CMD_GET_INFO, vec![])
    }

    /// `IPVS_CMD_GET_CONFIG`, answered by `IPVS_CMD_SET_CONFIG` with the timeouts.
    pub fn get_config() -> Request {
        Request::ack(IPVS_CMD_GET_CONFIG, vec![])
    }

    /// `IPVS_CMD_SET_CONFIG` with the three timeouts (0 = unchanged).
    pub fn set_config(t: &Timeouts) -> Request {
        Request::ack(
            IPVS_CMD_SET_CONFIG,
            vec![
                CmdAttr::TimeoutTcp(t.tcp),
                CmdAttr::TimeoutTcpFin(t.tcp_fin),
                CmdAttr::TimeoutUdp(t.udp),
            ],
        )
    }

    /// `IPVS_CMD_ZERO`: zero the counters of one service, or of all.
    pub fn zero(svc: Option<&Service>) -> Request {
        let attrs = svc
            .map(|s| vec![CmdAttr::Service(s.key_attrs())])
            .unwrap_or_default();
        Request::ack(IPVS_CMD_ZERO, attrs)
    }

    /// `IPVS_CMD_FLUSH`: delete every service of the namespace (lbd never
    /// sends it: it owns only its own services).
    pub fn flush() -> Request {
        Request::ack(IPVS_CMD_FLUSH, vec![])
    }

    /// `NLM_F_*` flags of this request.
    pub fn flags(&self) -> u16 {
        if self.dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        }
    }

    /// The whole netlink datagram: nlmsghdr, genlmsghdr, attributes.
    pub fn encode(&self, family_id: u16, seq: u32) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(self.message.clone());
        genl.set_resolved_family_id(family_id);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = self.flags();
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }
}

/// One netlink message of a reply datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An IPVS message (dump entry or GET reply), with its sequence number.
    Message(u32, IpvsMessage),
    /// ACK (errno 0) or error (negative errno) for the sequence number.
    Ack(u32, i32),
    /// End of a dump, with its status (0 or a negative errno).
    Done(u32, i32),
}

/// Splits a datagram from the kernel into its messages.
pub fn decode_datagram(mut buf: &[u8]) -> Result<Vec<Reply>, IpvsError> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let msg = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(buf)?;
        let len = msg.header.length as usize;
        let seq = msg.header.sequence_number;
        match msg.payload {
            NetlinkPayload::InnerMessage(genl) => out.push(Reply::Message(seq, genl.payload)),
            NetlinkPayload::Error(e) => out.push(Reply::Ack(seq, e.raw_code())),
            NetlinkPayload::Done(d) => out.push(Reply::Done(seq, d.code)),
            _ => {}
        }
        // Messages are 4-byte aligned within a datagram.
        let step = (len + 3) & !3;
        if len < 16 || step > buf.len() {
            break;
        }
        buf = &buf[step..];
    }
    Ok(out)
}
