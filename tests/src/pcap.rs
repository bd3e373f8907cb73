//! Loading RTP packets from pcap and pcapng captures, for replay through the simulation.
//!
//! [`read_udp_packets`] reads a classic pcap file (microsecond or nanosecond timestamps, either
//! byte order) or a pcapng file (any number of sections and interfaces, enhanced, simple and
//! obsolete packet blocks, `if_tsresol` and `if_tsoffset`), detected by the magic number. It
//! decodes these link types:
//!
//! | link type | value |
//! | --- | --- |
//! | BSD loopback (`NULL`, `LOOP`) | 0, 108 |
//! | Ethernet, with any number of 802.1Q / 802.1ad VLAN tags | 1 |
//! | raw IP, raw IPv4, raw IPv6 | 101, 228, 229 |
//! | Linux cooked capture v1 and v2 (`tcpdump -i any`) | 113, 276 |
//!
//! then IPv4 or IPv6 (skipping hop-by-hop, routing, destination-options, mobility, HIP, shim6
//! and AH extension headers) and UDP, and returns every UDP datagram with its payload. Frames
//! that are something else (ARP, TCP, ICMP, IP fragments, truncated by the snap length, ...) are
//! skipped; a file that is itself malformed or truncated is an error. Checksums are not
//! verified. The reader works on a byte slice with bounds-checked reads only, so no input can
//! make it panic.
//!
//! [`parse_rtp`] and [`rtp_streams`] then pick out the RTP packets (RFC 3550, demultiplexed from
//! RTCP as in RFC 5761).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One UDP datagram from a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// The capture time relative to the first UDP datagram of the capture (zero for the first;
    /// a timestamp earlier than the first one's gives zero).
    pub time: Duration,
    /// The UDP source address.
    pub source: SocketAddr,
    /// The UDP destination address.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// Why a capture could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum PcapError {
    /// The file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The input starts with neither a pcap nor a pcapng magic number.
    UnknownFormat {
        /// The first four bytes, or fewer if the input is shorter.
        magic: Vec<u8>,
    },
    /// The input ends in the middle of a header, record or block.
    Truncated {
        /// The offset of the incomplete structure.
        offset: usize,
        /// What was being read.
        what: &'static str,
    },
    /// A header, record or block is inconsistent.
    Malformed {
        /// The offset of the bad structure.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A classic pcap file has a link type this reader does not decode.
    UnsupportedLinkType(u32),
    /// The file has a format version this reader does not know.
    UnsupportedVersion {
        /// The major version.
        major: u16,
        /// The minor version.
        minor: u16,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Self::UnknownFormat { magic } => {
                write!(f, "not a pcap or pcapng file (starts with {magic:02x?})")
            }
            Self::Truncated { offset, what } => {
                write!(f, "capture truncated: incomplete {what} at offset {offset}")
            }
            Self::Malformed { offset, reason } => {
                write!(f, "malformed capture at offset {offset}: {reason}")
            }
            Self::UnsupportedLinkType(link) => write!(f, "unsupported link type {link}"),
            Self::UnsupportedVersion { major, minor } => {
                write!(f, "unsupported capture format version {major}.{minor}")
            }
        }
    }
}

impl std::error::Error for PcapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads the capture at `path` and returns its UDP datagrams in file order.
///
/// # Errors
///
/// [`PcapError::Io`] if the file cannot be read, else as [`read_udp_packets_from`].
pub fn read_udp_packets(path: &Path) -> Result<Vec<CapturedPacket>, PcapError> {
    let bytes = std::fs::read(path).map_err(|source| PcapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_udp_packets_from(&bytes)
}

/// Parses a whole pcap or pcapng capture held in memory and returns its UDP datagrams in file
/// order.
///
/// # Errors
///
/// If the input is not a pcap or pcapng file, is truncated (other than exactly at a record or
/// block boundary) or is inconsistent, or if a classic pcap file has an unsupported link type.
/// (pcapng packets from interfaces with unsupported link types are skipped.)
pub fn read_udp_packets_from(bytes: &[u8]) -> Result<Vec<CapturedPacket>, PcapError> {
    let mut packets = Vec::new();
    let mut first: Option<i128> = None;
    let mut on_frame = |frame: Frame<'_>| {
        if let Some((source, destination, payload)) = decode_frame(frame.link_type, frame.data) {
            let first = *first.get_or_insert(frame.nanos);
            packets.push(CapturedPacket {
                time: nanos_to_duration(frame.nanos.saturating_sub(first)),
                source,
                destination,
                payload: payload.to_vec(),
            });
        }
    };
    match capture_format(bytes)? {
        CaptureFormat::Pcap => parse_pcap(bytes, &mut on_frame)?,
        CaptureFormat::PcapNg => parse_pcapng(bytes, &mut on_frame)?,
    }
    Ok(packets)
}

/// Detects the container format from the magic number at the start of `bytes`.
///
/// # Errors
///
/// [`PcapError::UnknownFormat`] if the input starts with neither magic number.
pub fn capture_format(bytes: &[u8]) -> Result<CaptureFormat, PcapError> {
    match bytes.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4])
        | Some([0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]) => Ok(CaptureFormat::Pcap),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => Ok(CaptureFormat::PcapNg),
        _ => Err(PcapError::UnknownFormat {
            magic: bytes.iter().take(4).copied().collect(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Containers

/// One captured frame: its timestamp in nanoseconds since the epoch, link type and bytes.
struct Frame<'a> {
    nanos: i128,
    link_type: u32,
    data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn bytes<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
        buf.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(self, buf: &[u8], at: usize) -> Option<u16> {
        let b = Self::bytes(buf, at)?;
        Some(match self {
            Self::Little => u16::from_le_bytes(b),
            Self::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(self, buf: &[u8], at: usize) -> Option<u32> {
        let b = Self::bytes(buf, at)?;
        Some(match self {
            Self::Little => u32::from_le_bytes(b),
            Self::Big => u32::from_be_bytes(b),
        })
    }

    fn i64(self, buf: &[u8], at: usize) -> Option<i64> {
        let b = Self::bytes(buf, at)?;
        Some(match self {
            Self::Little => i64::from_le_bytes(b),
            Self::Big => i64::from_be_bytes(b),
        })
    }
}

/// A big-endian `u16` at `at`, as in network headers.
fn be16(buf: &[u8], at: usize) -> Option<u16> {
    Endian::Big.u16(buf, at)
}

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LOOP: u32 = 108;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL2: u32 = 276;

fn link_type_supported(link_type: u32) -> bool {
    matches!(
        link_type,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL2
    )
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

fn nanos_to_duration(nanos: i128) -> Duration {
    if nanos <= 0 {
        return Duration::ZERO;
    }
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

fn truncated(offset: usize, what: &'static str) -> PcapError {
    PcapError::Truncated { offset, what }
}

fn malformed(offset: usize, reason: &'static str) -> PcapError {
    PcapError::Malformed { offset, reason }
}

/// Parses a classic pcap file, passing each record to `on_frame`.
fn parse_pcap(b: &[u8], on_frame: &mut dyn FnMut(Frame<'_>)) -> Result<(), PcapError> {
    const HEADER_LEN: usize = 24;
    const RECORD_HEADER_LEN: usize = 16;
    let (endian, frac_nanos) = match b.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => (Endian::Little, 1_000),
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => (Endian::Big, 1_000),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) => (Endian::Little, 1),
        Some([0xa1, 0xb2, 0x3c, 0x4d]) => (Endian::Big, 1),
        _ => return Err(malformed(0, "bad pcap magic number")),
    };
    if b.len() < HEADER_LEN {
        return Err(truncated(0, "pcap file header"));
    }
    let field = |at| {
        endian
            .u32(b, at)
            .ok_or_else(|| truncated(0, "pcap file header"))
    };
    let major = endian.u16(b, 4).unwrap_or(0);
    let minor = endian.u16(b, 6).unwrap_or(0);
    if major != 2 {
        return Err(PcapError::UnsupportedVersion { major, minor });
    }
    // The upper bits carry the FCS length, which the IP total length makes irrelevant.
    let link_type = field(20)? & 0x03ff_ffff;
    if !link_type_supported(link_type) {
        return Err(PcapError::UnsupportedLinkType(link_type));
    }

    let mut offset = HEADER_LEN;
    while offset < b.len() {
        let header = |at| {
            endian
                .u32(b, offset + at)
                .ok_or_else(|| truncated(offset, "pcap record header"))
        };
        let secs = header(0)?;
        let frac = header(4)?;
        let incl_len = header(8)?;
        let data_start = offset + RECORD_HEADER_LEN;
        let data = usize::try_from(incl_len)
            .ok()
            .and_then(|len| b.get(data_start..data_start.checked_add(len)?))
            .ok_or_else(|| truncated(offset, "pcap record data"))?;
        on_frame(Frame {
            nanos: i128::from(secs) * NANOS_PER_SEC + i128::from(frac) * frac_nanos,
            link_type,
            data,
        });
        offset = data_start + data.len();
    }
    Ok(())
}

/// A pcapng interface: its link type and timestamp units.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    /// `if_tsresol`: the top bit selects a power of two, else a power of ten.
    tsresol: u8,
    /// `if_tsoffset`, in seconds.
    tsoffset: i64,
    /// The timestamp of the interface's latest packet, for simple packet blocks.
    last_nanos: Option<i128>,
}

impl Interface {
    /// A timestamp in this interface's units as nanoseconds since the epoch.
    fn nanos(&self, ticks: u64) -> i128 {
        let ticks = i128::from(ticks);
        let exp = u32::from(self.tsresol & 0x7f);
        let nanos = if self.tsresol & 0x80 != 0 {
            // 2^-exp seconds per tick; ticks * 1e9 < 2^94 fits.
            (ticks * NANOS_PER_SEC) >> exp.min(127)
        } else if exp <= 9 {
            ticks * 10_i128.pow(9 - exp)
        } else {
            10_i128.checked_pow(exp - 9).map_or(0, |div| ticks / div)
        };
        nanos + i128::from(self.tsoffset) * NANOS_PER_SEC
    }
}

const BLOCK_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 1;
const BLOCK_PACKET: u32 = 2;
const BLOCK_SIMPLE_PACKET: u32 = 3;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// Parses a pcapng file, passing each packet to `on_frame`.
fn parse_pcapng(b: &[u8], on_frame: &mut dyn FnMut(Frame<'_>)) -> Result<(), PcapError> {
    let mut endian = Endian::Little;
    let mut interfaces: Vec<Interface> = Vec::new();
    // The latest timestamp in the file, for a simple packet block on an interface that had no
    // timestamped packet yet.
    let mut last_nanos: Option<i128> = None;
    let mut offset = 0;
    while offset < b.len() {
        let block_type = Endian::Little.u32(b, offset);
        if offset == 0 && block_type != Some(BLOCK_SECTION_HEADER) {
            return Err(malformed(
                0,
                "pcapng file does not start with a section header",
            ));
        }
        if block_type == Some(BLOCK_SECTION_HEADER) {
            // The type reads the same in both byte orders; the byte-order magic decides.
            endian = match Endian::Big.u32(b, offset + 8) {
                Some(0x1a2b_3c4d) => Endian::Big,
                Some(0x4d3c_2b1a) => Endian::Little,
                Some(_) => return Err(malformed(offset + 8, "bad pcapng byte-order magic")),
                None => return Err(truncated(offset, "pcapng section header")),
            };
            interfaces.clear();
        }
        let (Some(block_type), Some(total_len)) = (
            endian.u32(b, offset),
            endian
                .u32(b, offset + 4)
                .and_then(|l| usize::try_from(l).ok()),
        ) else {
            return Err(truncated(offset, "pcapng block header"));
        };
        if total_len < 12 || total_len % 4 != 0 {
            return Err(malformed(offset, "bad pcapng block length"));
        }
        let end = offset
            .checked_add(total_len)
            .filter(|&end| end <= b.len())
            .ok_or_else(|| truncated(offset, "pcapng block"))?;
        if endian.u32(b, end - 4).and_then(|l| usize::try_from(l).ok()) != Some(total_len) {
            return Err(malformed(offset, "pcapng block trailer length mismatch"));
        }
        let body = b.get(offset + 8..end - 4).unwrap_or_default();
        let body_offset = offset + 8;
        let too_short = || malformed(offset, "pcapng block too short for its type");

        match block_type {
            BLOCK_SECTION_HEADER => {
                let (Some(major), Some(minor)) = (endian.u16(body, 4), endian.u16(body, 6)) else {
                    return Err(too_short());
                };
                if major != 1 {
                    return Err(PcapError::UnsupportedVersion { major, minor });
                }
            }
            BLOCK_INTERFACE_DESCRIPTION => {
                let link_type = endian.u16(body, 0).ok_or_else(too_short)?;
                let mut interface = Interface {
                    link_type: u32::from(link_type),
                    tsresol: 6,
                    tsoffset: 0,
                    last_nanos: None,
                };
                let options = body.get(8..).ok_or_else(too_short)?;
                for (code, value) in options_iter(options, endian, body_offset + 8)? {
                    match (code, value) {
                        (OPT_IF_TSRESOL, [resol]) => interface.tsresol = *resol,
                        (OPT_IF_TSOFFSET, v) if v.len() == 8 => {
                            interface.tsoffset = endian.i64(v, 0).unwrap_or(0);
                        }
                        _ => {}
                    }
                }
                interfaces.push(interface);
            }
            BLOCK_ENHANCED_PACKET | BLOCK_PACKET => {
                // Both have the captured data at offset 20; the obsolete packet block has a
                // 16-bit interface id followed by a drop count.
                const DATA_AT: usize = 20;
                let id = if block_type == BLOCK_ENHANCED_PACKET {
                    endian.u32(body, 0)
                } else {
                    endian.u16(body, 0).map(u32::from)
                };
                let (Some(id), Some(high), Some(low), Some(caplen)) = (
                    id,
                    endian.u32(body, 4),
                    endian.u32(body, 8),
                    endian.u32(body, 12),
                ) else {
                    return Err(too_short());
                };
                let interface = usize::try_from(id)
                    .ok()
                    .and_then(|id| interfaces.get_mut(id))
                    .ok_or_else(|| malformed(offset, "packet from an undescribed interface"))?;
                let data = usize::try_from(caplen)
                    .ok()
                    .and_then(|len| body.get(DATA_AT..DATA_AT.checked_add(len)?))
                    .ok_or_else(|| malformed(offset, "packet longer than its block"))?;
                let nanos = interface.nanos((u64::from(high) << 32) | u64::from(low));
                interface.last_nanos = Some(nanos);
                last_nanos = Some(nanos);
                if link_type_supported(interface.link_type) {
                    on_frame(Frame {
                        nanos,
                        link_type: interface.link_type,
                        data,
                    });
                }
            }
            BLOCK_SIMPLE_PACKET => {
                let interface = interfaces
                    .first()
                    .ok_or_else(|| malformed(offset, "packet from an undescribed interface"))?;
                let orig_len = endian
                    .u32(body, 0)
                    .and_then(|l| usize::try_from(l).ok())
                    .ok_or_else(too_short)?;
                let available = body.get(4..).unwrap_or_default();
                let data = available.get(..orig_len).unwrap_or(available);
                // Simple packet blocks have no timestamp: use the interface's previous one.
                if link_type_supported(interface.link_type) {
                    on_frame(Frame {
                        nanos: interface.last_nanos.or(last_nanos).unwrap_or(0),
                        link_type: interface.link_type,
                        data,
                    });
                }
            }
            _ => {} // Name resolution, statistics, custom, ...: nothing to do.
        }
        offset = end;
    }
    Ok(())
}

/// The (code, value) pairs of a pcapng options list, up to `opt_endofopt` or the end.
fn options_iter(
    mut options: &[u8],
    endian: Endian,
    mut offset: usize,
) -> Result<Vec<(u16, &[u8])>, PcapError> {
    let mut out = Vec::new();
    while options.len() >= 4 {
        let code = endian.u16(options, 0).unwrap_or(OPT_END);
        let len = usize::from(endian.u16(options, 2).unwrap_or(0));
        if code == OPT_END {
            break;
        }
        let padded = len.div_ceil(4) * 4;
        let value = options
            .get(4..4 + len)
            .ok_or_else(|| malformed(offset, "pcapng option longer than its block"))?;
        out.push((code, value));
        options = options.get(4 + padded..).unwrap_or_default();
        offset += 4 + padded;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Link, network and transport layers

/// What the link layer says the payload is.
#[derive(Debug, Clone, Copy)]
enum Network {
    Ipv4,
    Ipv6,
    /// Decide by the IP version nibble.
    Ip,
}

/// The UDP source, destination and payload of a frame, or `None` if it is not a whole,
/// unfragmented UDP datagram over IP.
fn decode_frame(link_type: u32, data: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let (network, packet) = match link_type {
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            // The address family, in the capturing host's byte order for NULL, big-endian for
            // LOOP. The values for IPv6 differ between BSDs.
            let family = Endian::Little.u32(data, 0)?;
            let family = if link_type == LINKTYPE_LOOP || family > 0xffff {
                family.swap_bytes()
            } else {
                family
            };
            let network = match family {
                2 => Network::Ipv4,
                10 | 24 | 28 | 30 => Network::Ipv6,
                _ => return None,
            };
            (network, data.get(4..)?)
        }
        LINKTYPE_ETHERNET => {
            let mut ethertype = be16(data, 12)?;
            let mut at = 14;
            // 802.1Q, 802.1ad and the old QinQ tag: TCI then the inner EtherType.
            while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                ethertype = be16(data, at + 2)?;
                at += 4;
            }
            (ethertype_network(ethertype)?, data.get(at..)?)
        }
        LINKTYPE_RAW => (Network::Ip, data),
        LINKTYPE_IPV4 => (Network::Ipv4, data),
        LINKTYPE_IPV6 => (Network::Ipv6, data),
        LINKTYPE_LINUX_SLL => (ethertype_network(be16(data, 14)?)?, data.get(16..)?),
        LINKTYPE_LINUX_SLL2 => (ethertype_network(be16(data, 0)?)?, data.get(20..)?),
        _ => return None,
    };
    let version = packet.first()? >> 4;
    match (network, version) {
        (Network::Ipv4 | Network::Ip, 4) => ipv4_udp(packet),
        (Network::Ipv6 | Network::Ip, 6) => ipv6_udp(packet),
        _ => None,
    }
}

fn ethertype_network(ethertype: u16) -> Option<Network> {
    match ethertype {
        0x0800 => Some(Network::Ipv4),
        0x86dd => Some(Network::Ipv6),
        _ => None,
    }
}

const IPPROTO_UDP: u8 = 17;

fn ipv4_udp(p: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let header_len = usize::from(p.first()? & 0x0f) * 4;
    let total_len = usize::from(be16(p, 2)?);
    if header_len < 20 || total_len < header_len || total_len > p.len() {
        return None;
    }
    // More-fragments flag or a fragment offset: a fragment.
    if be16(p, 6)? & 0x3fff != 0 || *p.get(9)? != IPPROTO_UDP {
        return None;
    }
    let source: [u8; 4] = p.get(12..16)?.try_into().ok()?;
    let destination: [u8; 4] = p.get(16..20)?.try_into().ok()?;
    udp(
        p.get(header_len..total_len)?,
        Ipv4Addr::from(source).into(),
        Ipv4Addr::from(destination).into(),
    )
}

fn ipv6_udp(p: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    const HEADER_LEN: usize = 40;
    // A zero payload length means a jumbogram: not supported.
    let end = HEADER_LEN + usize::from(be16(p, 4)?);
    if end == HEADER_LEN || end > p.len() {
        return None;
    }
    let source: [u8; 16] = p.get(8..24)?.try_into().ok()?;
    let destination: [u8; 16] = p.get(24..40)?.try_into().ok()?;
    let mut next_header = *p.get(6)?;
    let mut at = HEADER_LEN;
    while next_header != IPPROTO_UDP {
        let len = match next_header {
            // Hop-by-hop, routing, destination options, mobility, HIP, shim6: 8-octet units
            // not counting the first.
            0 | 43 | 60 | 135 | 139 | 140 => (usize::from(*p.get(at + 1)?) + 1) * 8,
            // Authentication header: 4-octet units not counting the first two.
            51 => (usize::from(*p.get(at + 1)?) + 2) * 4,
            // Fragment (44), no next header (59), ESP, or another upper layer.
            _ => return None,
        };
        next_header = *p.get(at)?;
        at += len;
    }
    udp(
        p.get(at..end)?,
        Ipv6Addr::from(source).into(),
        Ipv6Addr::from(destination).into(),
    )
}

fn udp(
    segment: &[u8],
    source: IpAddr,
    destination: IpAddr,
) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let source_port = be16(segment, 0)?;
    let destination_port = be16(segment, 2)?;
    let len = usize::from(be16(segment, 4)?);
    let payload = segment.get(8..len)?;
    Some((
        SocketAddr::new(source, source_port),
        SocketAddr::new(destination, destination_port),
        payload,
    ))
}

// ---------------------------------------------------------------------------------------------
// RTP

/// The fixed header fields of an RTP packet, from [`parse_rtp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacketView {
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
    /// The marker bit.
    pub marker: bool,
    /// The length of the header, including CSRCs and the header extension: the payload starts
    /// here.
    pub header_len: usize,
    /// The number of padding bytes at the end (0 without the P bit): the payload ends this
    /// many bytes before the end of the packet.
    pub padding_len: usize,
}

impl RtpPacketView {
    /// The payload of `packet`, the buffer this view was parsed from (empty if `packet` is
    /// shorter than the view says).
    #[must_use]
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet
            .len()
            .checked_sub(self.padding_len)
            .and_then(|end| packet.get(self.header_len..end))
            .unwrap_or_default()
    }
}

/// Parses the header of an RTP packet: version 2, with CSRCs, header extension and padding
/// accounted for. Returns `None` for anything else, including RTCP (the second byte, without
/// its top bit, in `72..=79`, i.e. RTCP packet types 200 to 207, as RFC 5761 demultiplexes),
/// a header longer than the packet, and invalid padding.
#[must_use]
pub fn parse_rtp(buf: &[u8]) -> Option<RtpPacketView> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    if b0 >> 6 != 2 {
        return None;
    }
    let payload_type = b1 & 0x7f;
    if (72..=79).contains(&payload_type) {
        return None;
    }
    let sequence_number = be16(buf, 2)?;
    let timestamp = Endian::Big.u32(buf, 4)?;
    let ssrc = Endian::Big.u32(buf, 8)?;
    let mut header_len = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = usize::from(be16(buf, header_len + 2)?);
        header_len += 4 + 4 * words;
    }
    if header_len > buf.len() {
        return None;
    }
    let padding_len = if b0 & 0x20 != 0 {
        let padding = usize::from(*buf.last()?);
        if padding == 0 || header_len + padding > buf.len() {
            return None;
        }
        padding
    } else {
        0
    };
    Some(RtpPacketView {
        payload_type,
        sequence_number,
        timestamp,
        ssrc,
        marker: b1 & 0x80 != 0,
        header_len,
        padding_len,
    })
}

/// An RTP packet of a capture: the captured datagram and its parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacketRef<'a> {
    /// The captured datagram.
    pub packet: &'a CapturedPacket,
    /// Its RTP header.
    pub rtp: RtpPacketView,
}

impl<'a> RtpPacketRef<'a> {
    /// The RTP payload (without header and padding).
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.rtp.payload(&self.packet.payload)
    }
}

/// Groups the RTP packets of `packets` by SSRC, each group in capture order. Datagrams that are
/// not RTP (RTCP, STUN, DTLS, ...) are left out.
#[must_use]
pub fn rtp_streams(packets: &[CapturedPacket]) -> BTreeMap<u32, Vec<RtpPacketRef<'_>>> {
    let mut streams: BTreeMap<u32, Vec<RtpPacketRef<'_>>> = BTreeMap::new();
    for packet in packets {
        if let Some(rtp) = parse_rtp(&packet.payload) {
            streams
                .entry(rtp.ssrc)
                .or_default()
                .push(RtpPacketRef { packet, rtp });
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_with_csrc_extension_and_padding() {
        let mut p = vec![0xb1, 0xe0, 0x12, 0x34, 0, 0, 0, 9, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 2, 3, 4]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // extension, one word
        p.extend_from_slice(b"media");
        p.extend_from_slice(&[0, 0, 3]); // padding
        let v = parse_rtp(&p).expect("valid");
        assert_eq!(v.payload_type, 96);
        assert!(v.marker);
        assert_eq!(v.sequence_number, 0x1234);
        assert_eq!(v.timestamp, 9);
        assert_eq!(v.ssrc, 7);
        assert_eq!(v.header_len, 24);
        assert_eq!(v.padding_len, 3);
        assert_eq!(v.payload(&p), b"media");
    }

    #[test]
    fn rtp_rejects_rtcp_bad_version_and_bad_padding() {
        // RTCP sender report.
        assert_eq!(parse_rtp(&[0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(parse_rtp(&[0x80, 207, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        // Version 1.
        assert_eq!(parse_rtp(&[0x40, 96, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        // Padding count of zero, and padding longer than the packet.
        assert_eq!(parse_rtp(&[0xa0, 96, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(parse_rtp(&[0xa0, 96, 0, 6, 0, 0, 0, 1, 0, 0, 0, 13]), None);
        // Extension header beyond the end.
        assert_eq!(parse_rtp(&[0x90, 96, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]), None);
        // Short.
        assert_eq!(parse_rtp(&[0x80, 96, 0, 6]), None);
        // PT 71 and 80 are fine.
        assert!(parse_rtp(&[0x80, 71, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]).is_some());
        assert!(parse_rtp(&[0x80, 80, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]).is_some());
    }

    #[test]
    fn pcapng_timestamp_resolutions() {
        let micro = Interface {
            link_type: 1,
            tsresol: 6,
            tsoffset: 0,
            last_nanos: None,
        };
        assert_eq!(micro.nanos(1_500_000), 1_500_000_000);
        let nano = Interface {
            tsresol: 9,
            ..micro
        };
        assert_eq!(nano.nanos(7), 7);
        let pico = Interface {
            tsresol: 12,
            ..micro
        };
        assert_eq!(pico.nanos(7_000), 7);
        let binary = Interface {
            tsresol: 0x80 | 10,
            ..micro
        };
        assert_eq!(binary.nanos(1024), 1_000_000_000);
        let offset = Interface {
            tsoffset: 2,
            ..micro
        };
        assert_eq!(offset.nanos(1), 2_000_001_000);
        let absurd = Interface {
            tsresol: 0x7f,
            ..micro
        };
        assert_eq!(absurd.nanos(u64::MAX), 0);
        let absurd = Interface {
            tsresol: 0xff,
            ..micro
        };
        assert_eq!(absurd.nanos(u64::MAX), 0);
    }
}
