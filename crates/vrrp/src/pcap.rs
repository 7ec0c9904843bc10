//! A reader for classic pcap captures (not pcapng) held in memory: either
//! byte order, microsecond or nanosecond timestamps. Small on purpose: the
//! golden tests and `vrrpctl decode` read keepalived captures with it.

use crate::frame::LinkType;

const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// pcapng's Section Header Block type, to name it in the error.
const PCAPNG_MAGIC: u32 = 0x0a0d_0d0a;

/// A capture that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    /// Shorter than the 24-byte global header.
    #[error("not a pcap file: {len} bytes, shorter than the 24-byte header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// pcapng, which this reader does not handle.
    #[error("pcapng capture: write classic pcap instead (tcpdump -w does; or editcap -F pcap)")]
    Pcapng,
    /// Neither pcap magic number in either byte order.
    #[error("not a pcap file: magic {0:#010x}")]
    BadMagic(u32),
    /// A link type this crate cannot take IP packets out of.
    #[error(
        "unsupported pcap link type {0} (Ethernet 1, raw IP 101/228/229, Linux cooked 113 and 276 are)"
    )]
    UnsupportedLinkType(u32),
    /// A record header or its data runs past the end of the file.
    #[error("pcap record {index} at byte {offset} is truncated")]
    RecordTruncated {
        /// Record number, from 1.
        index: usize,
        /// Byte offset of its header.
        offset: usize,
    },
}

/// One captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record number in the file, from 1 (as tcpdump and Wireshark count).
    pub index: usize,
    /// Seconds since the Unix epoch.
    pub ts_sec: u32,
    /// Nanoseconds within the second.
    pub ts_nanos: u32,
    /// Frame length on the wire (may exceed `data.len()` when snapped).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// A classic pcap capture over a byte buffer.
#[derive(Debug, Clone, Copy)]
pub struct Capture<'a> {
    data: &'a [u8],
    big_endian: bool,
    nanos: bool,
    /// The pcap LINKTYPE_ number.
    pub link_type_number: u32,
    /// The link type frames are decoded as.
    pub link_type: LinkType,
}

impl<'a> Capture<'a> {
    /// Reads the global header; records are read lazily by [`Capture::records`].
    pub fn parse(data: &'a [u8]) -> Result<Capture<'a>, PcapError> {
        let header = data
            .get(..GLOBAL_HEADER_LEN)
            .ok_or(PcapError::TooShort { len: data.len() })?;
        let le = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (big_endian, nanos) = match (le, le.swap_bytes()) {
            (MAGIC_MICROS, _) => (false, false),
            (MAGIC_NANOS, _) => (false, true),
            (_, MAGIC_MICROS) => (true, false),
            (_, MAGIC_NANOS) => (true, true),
            (PCAPNG_MAGIC, _) => return Err(PcapError::Pcapng),
            _ => return Err(PcapError::BadMagic(le)),
        };
        let read = |b: &[u8]| {
            let word = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(word)
            } else {
                u32::from_le_bytes(word)
            }
        };
        // The low 28 bits are the link type; the top bits hold FCS info.
        let link_type_number = read(&header[20..24]) & 0x0fff_ffff;
        let link_type = match link_type_number {
            1 => LinkType::Ethernet,
            101 | 228 | 229 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => return Err(PcapError::UnsupportedLinkType(other)),
        };
        Ok(Capture {
            data,
            big_endian,
            nanos,
            link_type_number,
            link_type,
        })
    }

    /// The records in file order; stops after the first error.
    pub fn records(&self) -> Records<'a> {
        Records {
            capture: *self,
            offset: GLOBAL_HEADER_LEN,
            index: 0,
            failed: false,
        }
    }

    /// Whether timestamps have nanosecond resolution (else microseconds).
    pub fn nanosecond_timestamps(&self) -> bool {
        self.nanos
    }

    fn read_u32(&self, b: &[u8]) -> u32 {
        let word = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        }
    }
}

/// Iterator over the records of a [`Capture`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    capture: Capture<'a>,
    offset: usize,
    index: usize,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        let data = self.capture.data;
        if self.failed || self.offset >= data.len() {
            return None;
        }
        self.index += 1;
        let offset = self.offset;
        let truncated = PcapError::RecordTruncated {
            index: self.index,
            offset,
        };
        let Some(header) = data.get(offset..offset + RECORD_HEADER_LEN) else {
            self.failed = true;
            return Some(Err(truncated));
        };
        let cap = &self.capture;
        let ts_sec = cap.read_u32(&header[0..4]);
        let frac = cap.read_u32(&header[4..8]);
        let incl_len = cap.read_u32(&header[8..12]) as usize;
        let orig_len = cap.read_u32(&header[12..16]);
        let start = offset + RECORD_HEADER_LEN;
        let Some(frame) = start
            .checked_add(incl_len)
            .and_then(|end| data.get(start..end))
        else {
            self.failed = true;
            return Some(Err(truncated));
        };
        self.offset = start + incl_len;
        Some(Ok(Record {
            index: self.index,
            ts_sec,
            ts_nanos: if cap.nanos {
                frac
            } else {
                frac.saturating_mul(1000)
            },
            orig_len,
            data: frame,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(big_endian: bool, nanos: bool, link: u32, frames: &[&[u8]]) -> Vec<u8> {
        let w32 = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w16 = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = Vec::new();
        out.extend_from_slice(&w32(if nanos { MAGIC_NANOS } else { MAGIC_MICROS }));
        out.extend_from_slice(&w16(2));
        out.extend_from_slice(&w16(4));
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&w32(65535));
        out.extend_from_slice(&w32(link));
        for (i, f) in frames.iter().enumerate() {
            out.extend_from_slice(&w32(1_700_000_000 + i as u32));
            out.extend_from_slice(&w32(7));
            out.extend_from_slice(&w32(f.len() as u32));
            out.extend_from_slice(&w32(f.len() as u32 + 4));
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn reads_both_byte_orders_and_resolutions() {
        for (big_endian, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
            let bytes = capture(big_endian, nanos, 1, &[b"abc", b"", b"defgh"]);
            let cap = Capture::parse(&bytes).unwrap();
            assert_eq!(cap.link_type, LinkType::Ethernet);
            let records: Vec<_> = cap.records().collect::<Result<_, _>>().unwrap();
            assert_eq!(records.len(), 3);
            assert_eq!(records[2].data, b"defgh");
            assert_eq!(records[2].index, 3);
            assert_eq!(records[2].orig_len, 9);
            assert_eq!(records[1].ts_sec, 1_700_000_001);
            assert_eq!(records[0].ts_nanos, if nanos { 7 } else { 7000 });
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            Capture::parse(&[0; 10]).unwrap_err(),
            PcapError::TooShort { len: 10 }
        );
        assert_eq!(
            Capture::parse(&[0; 24]).unwrap_err(),
            PcapError::BadMagic(0)
        );
        let ng = [&0x0a0d_0d0au32.to_le_bytes()[..], &[0; 20]].concat();
        assert_eq!(Capture::parse(&ng).unwrap_err(), PcapError::Pcapng);
        let bytes = capture(false, false, 105, &[]);
        assert_eq!(
            Capture::parse(&bytes).unwrap_err(),
            PcapError::UnsupportedLinkType(105)
        );
        let mut bytes = capture(false, false, 1, &[b"abcdef"]);
        bytes.truncate(bytes.len() - 1);
        let cap = Capture::parse(&bytes).unwrap();
        let all: Vec<_> = cap.records().collect();
        assert_eq!(
            all,
            vec![Err(PcapError::RecordTruncated {
                index: 1,
                offset: 24
            })]
        );
    }
}
