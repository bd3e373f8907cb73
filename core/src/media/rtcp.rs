//! RTCP: parsing and building of compound RTCP packets.
//!
//! What is understood:
//!
//! - sender and receiver reports, SDES and BYE (RFC 3550 sections 6.4-6.6);
//! - generic NACK and picture loss indication (RFC 4585 sections 6.2.1 and 6.3.1);
//! - full intra request (RFC 5104 section 4.3.1);
//! - receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb-03 section 2.2);
//! - transport-wide congestion control feedback
//!   (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1).
//!
//! [`compound`] walks a compound datagram one packet at a time; every packet is checked before
//! it is handed out and its accessors then read fixed places of the checked bytes, so nothing
//! here panics on any input and nothing allocates. The checks of the `rtcp-types` crate run
//! first on every packet type it knows; our own checks add what our accessors rely on (counts
//! that fit inside the unpadded packet, the padding itself, the transport-cc chunks and deltas).
//! Its types never leave this module.
//!
//! The `write_*` builders write one packet each at the start of a caller's buffer and return its
//! length; calling them one after another on the rest of the buffer makes a compound packet.
//! They write the bytes by hand: the `rtcp-types` builders collect into `Vec`s and sets.

use rtcp_types::{
    Bye as RtBye, FciParser, Fir as RtFir, Nack as RtNack, PayloadFeedback, Pli as RtPli,
    ReceiverReport as RtReceiverReport, RtcpPacketParser, RtcpParseError,
    SenderReport as RtSenderReport, TransportFeedback, Twcc, TwccPacketStatus,
};

/// Packet type of a sender report (RFC 3550 section 6.4.1).
const PT_SR: u8 = 200;
/// Packet type of a receiver report (RFC 3550 section 6.4.2).
const PT_RR: u8 = 201;
/// Packet type of source description (RFC 3550 section 6.5).
const PT_SDES: u8 = 202;
/// Packet type of BYE (RFC 3550 section 6.6).
const PT_BYE: u8 = 203;
/// Packet type of transport layer feedback (RFC 4585 section 6.1).
pub(crate) const PT_RTPFB: u8 = 205;
/// Packet type of payload-specific feedback (RFC 4585 section 6.1).
const PT_PSFB: u8 = 206;

/// Transport layer feedback format: generic NACK.
const FMT_NACK: u8 = 1;
/// Transport layer feedback format: transport-wide congestion control.
pub(crate) const FMT_TWCC: u8 = 15;
/// Payload-specific feedback format: picture loss indication.
const FMT_PLI: u8 = 1;
/// Payload-specific feedback format: full intra request.
const FMT_FIR: u8 = 4;
/// Payload-specific feedback format: application layer feedback (REMB among others).
const FMT_AFB: u8 = 15;

/// SDES item type of the canonical name (RFC 3550 section 6.5.1).
const SDES_CNAME: u8 = 1;
/// Length of one report block (RFC 3550 section 6.4.1).
const REPORT_BLOCK_LEN: usize = 24;
/// Largest count in the five-bit count field of the common header.
const MAX_COUNT: usize = 31;
/// Length of the common header plus the two SSRCs of a feedback packet (RFC 4585 section 6.1).
pub(crate) const FEEDBACK_HEADER_LEN: usize = 12;

/// Why an RTCP packet could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer bytes than a header, or than the smallest packet of its type.
    #[error("RTCP packet too short")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
    /// A length, count or padding field does not agree with the bytes that are there.
    #[error("RTCP length, count or padding does not match the packet")]
    BadLength,
    /// Well framed, but with content this module does not accept or cannot write (reserved
    /// transport-cc symbols, more items than a count field holds, an empty NACK list).
    #[error("unsupported RTCP content")]
    Unsupported,
    /// The output buffer cannot hold the packet.
    #[error("output buffer too small for the RTCP packet")]
    BufferTooSmall,
}

/// Iterates the packets of a compound RTCP datagram.
///
/// Each item is checked: a length field that runs past the buffer (or a header that does not
/// fit, or a version other than 2) yields `Err` once and ends the iteration, since the packets
/// after it cannot be found. A packet that is framed correctly but malformed inside yields
/// `Err` and the iteration goes on with the next packet. An empty buffer yields one
/// `Err(TooShort)`.
pub fn compound(buf: &[u8]) -> Compound<'_> {
    Compound {
        rest: buf,
        started: false,
        done: false,
    }
}

/// The iterator returned by [`compound`].
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
    started: bool,
    done: bool,
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.started && self.rest.is_empty()) {
            return None;
        }
        self.started = true;
        match split_packet(self.rest) {
            Ok((packet, rest)) => {
                self.rest = rest;
                Some(parse_packet(packet))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    /// A sender report (RFC 3550 section 6.4.1).
    SenderReport(SenderReport<'a>),
    /// A receiver report (RFC 3550 section 6.4.2).
    ReceiverReport(ReceiverReport<'a>),
    /// A generic NACK (RFC 4585 section 6.2.1).
    Nack(Nack<'a>),
    /// A picture loss indication (RFC 4585 section 6.3.1).
    Pli(Pli),
    /// A full intra request (RFC 5104 section 4.3.1).
    Fir(Fir<'a>),
    /// A receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
    Remb(Remb<'a>),
    /// Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc).
    TransportCc(TransportCc<'a>),
    /// A source description (RFC 3550 section 6.5); its structure was checked, its items are
    /// not handed out.
    Sdes,
    /// A BYE (RFC 3550 section 6.6).
    Bye(Bye<'a>),
    /// A well-framed packet of a type (or feedback format) this module does not read: XR, APP,
    /// SLI, RPSI, application layer feedback other than REMB, and anything unknown.
    Other {
        /// The packet type field (for feedback: 205 or 206, whatever the format).
        packet_type: u8,
    },
}

/// A report block of a sender or receiver report (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed on the wire; builders clamp to it).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the last sender report received (LSR).
    pub last_sr: u32,
    /// Delay since the last sender report, in 1/65536 seconds (DLSR).
    pub delay_since_last_sr: u32,
}

/// A checked sender report.
#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    data: &'a [u8],
    blocks: &'a [u8],
}

impl<'a> SenderReport<'a> {
    /// SSRC of the sender.
    pub fn ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// NTP timestamp (32.32 fixed point seconds since 1900).
    pub fn ntp_timestamp(&self) -> u64 {
        (u64::from(be_u32(self.data, 8)) << 32) | u64::from(be_u32(self.data, 12))
    }

    /// RTP timestamp corresponding to the NTP timestamp.
    pub fn rtp_timestamp(&self) -> u32 {
        be_u32(self.data, 16)
    }

    /// Sender's packet count.
    pub fn packet_count(&self) -> u32 {
        be_u32(self.data, 20)
    }

    /// Sender's octet count.
    pub fn octet_count(&self) -> u32 {
        be_u32(self.data, 24)
    }

    /// The report blocks (as many as the count field says).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.blocks
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(read_report_block)
    }
}

/// A checked receiver report.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    data: &'a [u8],
    blocks: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    /// SSRC of the packet sender.
    pub fn ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// The report blocks (as many as the count field says).
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        self.blocks
            .chunks_exact(REPORT_BLOCK_LEN)
            .map(read_report_block)
    }
}

/// A checked generic NACK.
#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    data: &'a [u8],
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    /// SSRC of the sender of the NACK.
    pub fn sender_ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// SSRC of the media source whose packets are missing.
    pub fn media_ssrc(&self) -> u32 {
        be_u32(self.data, 8)
    }

    /// The missing sequence numbers: each PID followed by those its BLP marks, pair by pair.
    pub fn sequence_numbers(&self) -> impl Iterator<Item = u16> + 'a {
        self.fci.chunks_exact(4).flat_map(|pair| {
            let pid = be_u16(pair, 0);
            let blp = be_u16(pair, 2);
            std::iter::once(pid).chain(
                (0u16..16)
                    .filter(move |bit| blp & (1 << bit) != 0)
                    .map(move |bit| pid.wrapping_add(bit + 1)),
            )
        })
    }
}

/// A picture loss indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    /// SSRC of the sender of the PLI.
    pub sender_ssrc: u32,
    /// SSRC of the media source that should send a key frame.
    pub media_ssrc: u32,
}

/// A checked full intra request.
#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    data: &'a [u8],
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    /// SSRC of the sender of the FIR.
    pub fn sender_ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// The requests: (SSRC of the media source, command sequence number).
    pub fn entries(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.fci
            .chunks_exact(8)
            .map(|entry| (be_u32(entry, 0), entry.get(4).copied().unwrap_or(0)))
    }
}

/// A checked receiver estimated maximum bitrate.
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    data: &'a [u8],
    bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    /// SSRC of the sender of the REMB.
    pub fn sender_ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// The estimated maximum bitrate in bits per second (mantissa << exponent; saturates at
    /// `u64::MAX` when the product does not fit).
    pub fn bitrate(&self) -> u64 {
        self.bitrate
    }

    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|s| be_u32(s, 0))
    }
}

/// Checked transport-wide congestion control feedback.
///
/// A sender-side estimator maps each reported packet to an arrival time on the receiver's
/// clock: `reference_time() * 64_000 + offset` microseconds, where `offset` comes from
/// [`TransportCc::packets`]. The reference time is a 24-bit counter (it wraps every
/// 2^24 * 64 ms, about 12.4 days), so compare reference times of consecutive feedbacks modulo
/// 2^24.
#[derive(Debug, Clone, Copy)]
pub struct TransportCc<'a> {
    data: &'a [u8],
    fci: &'a [u8],
}

impl<'a> TransportCc<'a> {
    /// SSRC of the sender of the feedback.
    pub fn sender_ssrc(&self) -> u32 {
        be_u32(self.data, 4)
    }

    /// SSRC of the media source (senders usually put one of their SSRCs or 0 here).
    pub fn media_ssrc(&self) -> u32 {
        be_u32(self.data, 8)
    }

    /// The transport-wide sequence number of the first packet reported.
    pub fn base_sequence(&self) -> u16 {
        be_u16(self.fci, 0)
    }

    /// The number of packets reported (received or not), starting at the base sequence.
    pub fn packet_status_count(&self) -> u16 {
        be_u16(self.fci, 2)
    }

    /// The feedback packet count: incremented by one for every feedback the receiver sends.
    pub fn feedback_count(&self) -> u8 {
        self.fci.get(7).copied().unwrap_or(0)
    }

    /// The reference time, in units of 64 ms on the receiver's clock (24 bits).
    pub fn reference_time(&self) -> u32 {
        be_u32(self.fci, 4) >> 8
    }

    /// Every reported packet in sequence order, [`packet_status_count`](Self::packet_status_count)
    /// of them: its transport-wide sequence number and, if it was received, its arrival time in
    /// microseconds after the reference time (cumulative: the deltas on the wire are summed, so
    /// each value is an offset from `reference_time()`, not from the previous packet; it can be
    /// negative when packets were reordered). `None`: reported as not received. Resolution
    /// 250 µs.
    pub fn packets(&self) -> impl Iterator<Item = (u16, Option<i64>)> + 'a {
        let mut offset_us: i64 = 0;
        // The FCI was parsed and its chunks and deltas checked in `parse_twcc`, so the
        // decoder yields exactly `packet_status_count` items and no error; `map_while` stops
        // at an error anyway rather than trusting that.
        Twcc::parse(self.fci)
            .ok()
            .into_iter()
            .flat_map(|twcc| twcc.packets())
            .map_while(Result::ok)
            .map(move |(seq, status)| match status {
                TwccPacketStatus::NotReceived => (seq, None),
                TwccPacketStatus::Received { delta } => {
                    offset_us += i64::from(delta) * 250;
                    (seq, Some(offset_us))
                }
            })
    }
}

/// A checked BYE.
#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
}

impl<'a> Bye<'a> {
    /// The sources that are leaving.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|s| be_u32(s, 0))
    }
}

/// Writes a sender report with the given report blocks (at most 31).
pub fn write_sender_report(
    out: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packet_count: u32,
    octet_count: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::Unsupported);
    }
    let len = 28 + REPORT_BLOCK_LEN * blocks.len();
    let out = packet_buf(out, len)?;
    write_header(out, blocks.len() as u8, PT_SR, len);
    put_u32(out, 4, ssrc);
    put_u32(out, 8, (ntp >> 32) as u32);
    put_u32(out, 12, ntp as u32);
    put_u32(out, 16, rtp_ts);
    put_u32(out, 20, packet_count);
    put_u32(out, 24, octet_count);
    for (i, block) in blocks.iter().enumerate() {
        write_report_block(out, 28 + i * REPORT_BLOCK_LEN, block);
    }
    Ok(len)
}

/// Writes a receiver report with the given report blocks (at most 31).
pub fn write_receiver_report(
    out: &mut [u8],
    ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::Unsupported);
    }
    let len = 8 + REPORT_BLOCK_LEN * blocks.len();
    let out = packet_buf(out, len)?;
    write_header(out, blocks.len() as u8, PT_RR, len);
    put_u32(out, 4, ssrc);
    for (i, block) in blocks.iter().enumerate() {
        write_report_block(out, 8 + i * REPORT_BLOCK_LEN, block);
    }
    Ok(len)
}

/// Writes an SDES packet with one chunk holding one CNAME item (at most 255 bytes).
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    let name = cname.as_bytes();
    let Ok(name_len) = u8::try_from(name.len()) else {
        return Err(RtcpError::Unsupported);
    };
    // SSRC, item type, item length, the name, then at least one zero octet ending the item
    // list, up to the next 32-bit boundary (RFC 3550 section 6.5).
    let chunk_len = (4 + 2 + name.len() + 1).next_multiple_of(4);
    let len = 4 + chunk_len;
    let out = packet_buf(out, len)?;
    write_header(out, 1, PT_SDES, len);
    put_u32(out, 4, ssrc);
    out[8] = SDES_CNAME;
    out[9] = name_len;
    out[10..10 + name.len()].copy_from_slice(name);
    out[10 + name.len()..].fill(0);
    Ok(len)
}

/// Writes a generic NACK for the given sequence numbers, in any order (duplicates are fine),
/// packed into PID/BLP pairs. The order is taken relative to the first number given, so all of
/// them should lie within 32,768 of it (a NACK list always does).
///
/// `Unsupported` for an empty list. Cost: one pass over `seqs` when they come sorted, else one
/// pass per PID/BLP pair written.
pub fn write_nack(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seqs: &[u16],
) -> Result<usize, RtcpError> {
    let Some(&first) = seqs.first() else {
        return Err(RtcpError::Unsupported);
    };
    // Sequence numbers ordered by their distance from a pivot half the number space before
    // the first one, so that a list crossing the wrap from 65535 to 0 stays in order.
    let pivot = first.wrapping_sub(0x8000);
    let key = |seq: u16| u32::from(seq.wrapping_sub(pivot));
    let mut len = FEEDBACK_HEADER_LEN;
    let mut push_pair = |pid_key: u32, blp: u16| -> Result<(), RtcpError> {
        let pair = out.get_mut(len..len + 4).ok_or(RtcpError::BufferTooSmall)?;
        pair[..2].copy_from_slice(&(pid_key as u16).wrapping_add(pivot).to_be_bytes());
        pair[2..].copy_from_slice(&blp.to_be_bytes());
        len += 4;
        Ok(())
    };
    if seqs.windows(2).all(|w| key(w[0]) <= key(w[1])) {
        // Sorted (what a NACK generator hands over): one pass.
        let (mut pid_key, mut blp) = (key(first), 0u16);
        for k in seqs.iter().map(|&s| key(s)) {
            if k > pid_key + 16 {
                push_pair(pid_key, blp)?;
                (pid_key, blp) = (k, 0);
            } else if k > pid_key {
                blp |= 1 << (k - pid_key - 1);
            }
        }
        push_pair(pid_key, blp)?;
    } else {
        // Any order: the smallest number not yet covered starts each pair.
        let mut next_key = 0u32;
        while let Some(pid_key) = seqs
            .iter()
            .map(|&s| key(s))
            .filter(|&k| k >= next_key)
            .min()
        {
            let mut blp = 0u16;
            for k in seqs.iter().map(|&s| key(s)) {
                if k > pid_key && k <= pid_key + 16 {
                    blp |= 1 << (k - pid_key - 1);
                }
            }
            push_pair(pid_key, blp)?;
            next_key = pid_key + 17;
        }
    }
    if len / 4 - 1 > usize::from(u16::MAX) {
        return Err(RtcpError::Unsupported);
    }
    write_feedback_header(out, FMT_NACK, PT_RTPFB, len, sender_ssrc, media_ssrc);
    Ok(len)
}

/// Writes a picture loss indication.
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let len = FEEDBACK_HEADER_LEN;
    let out = packet_buf(out, len)?;
    write_feedback_header(out, FMT_PLI, PT_PSFB, len, sender_ssrc, media_ssrc);
    Ok(len)
}

/// Writes a full intra request for one media source, with command sequence number `seq`.
/// The media source goes in the FCI entry; the header's media source field is 0
/// (RFC 5104 section 4.3.1.2).
pub fn write_fir(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq: u8,
) -> Result<usize, RtcpError> {
    let len = FEEDBACK_HEADER_LEN + 8;
    let out = packet_buf(out, len)?;
    write_feedback_header(out, FMT_FIR, PT_PSFB, len, sender_ssrc, 0);
    put_u32(out, 12, media_ssrc);
    out[16] = seq;
    out[17..20].fill(0);
    Ok(len)
}

/// Writes a REMB with the bitrate in bits per second (rounded down to what an 18-bit mantissa
/// and 6-bit exponent hold) for the given media sources (at most 255).
pub fn write_remb(
    out: &mut [u8],
    sender_ssrc: u32,
    bitrate: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let Ok(count) = u8::try_from(ssrcs.len()) else {
        return Err(RtcpError::Unsupported);
    };
    let len = FEEDBACK_HEADER_LEN + 8 + 4 * ssrcs.len();
    let out = packet_buf(out, len)?;
    write_feedback_header(out, FMT_AFB, PT_PSFB, len, sender_ssrc, 0);
    out[12..16].copy_from_slice(b"REMB");
    // At most 64 - 18 = 46, so the exponent fits its six bits.
    let exp = (64 - bitrate.leading_zeros()).saturating_sub(18);
    let mantissa = (bitrate >> exp) as u32;
    put_u32(out, 16, (u32::from(count) << 24) | (exp << 18) | mantissa);
    for (i, &ssrc) in ssrcs.iter().enumerate() {
        put_u32(out, 20 + 4 * i, ssrc);
    }
    Ok(len)
}

/// Writes a BYE for the given sources (at most 31), without a reason.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, RtcpError> {
    if ssrcs.len() > MAX_COUNT {
        return Err(RtcpError::Unsupported);
    }
    let len = 4 + 4 * ssrcs.len();
    let out = packet_buf(out, len)?;
    write_header(out, ssrcs.len() as u8, PT_BYE, len);
    for (i, &ssrc) in ssrcs.iter().enumerate() {
        put_u32(out, 4 + 4 * i, ssrc);
    }
    Ok(len)
}

/// Whether a datagram that is RTP or RTCP (first byte 128..=191) is RTCP: its second byte is
/// 192..=223 (RFC 5761 section 4: RTCP packet types 192-223 would be RTP payload types 64-95
/// with the marker bit set, which RTP must not use when multiplexed).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

// ---- parsing ------------------------------------------------------------------------------

/// Splits the first packet off a compound: checks the header and that the length field stays
/// inside the buffer.
fn split_packet(buf: &[u8]) -> Result<(&[u8], &[u8]), RtcpError> {
    let Some(header) = buf.get(..4) else {
        return Err(RtcpError::TooShort);
    };
    if header[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let len = 4 * (usize::from(be_u16(header, 2)) + 1);
    if len > buf.len() {
        return Err(RtcpError::BadLength);
    }
    Ok(buf.split_at(len))
}

/// Parses one framed packet (its length agrees with its header, version 2).
fn parse_packet(packet: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let end = unpadded_len(packet)?;
    let count = usize::from(packet[0] & 0x1f);
    let packet_type = packet[1];
    match packet_type {
        PT_SR => {
            RtSenderReport::parse(packet).map_err(map_parse_error)?;
            let blocks = packet
                .get(28..28 + count * REPORT_BLOCK_LEN)
                .filter(|_| 28 + count * REPORT_BLOCK_LEN <= end)
                .ok_or(RtcpError::BadLength)?;
            Ok(RtcpPacket::SenderReport(SenderReport {
                data: packet,
                blocks,
            }))
        }
        PT_RR => {
            RtReceiverReport::parse(packet).map_err(map_parse_error)?;
            let blocks = packet
                .get(8..8 + count * REPORT_BLOCK_LEN)
                .filter(|_| 8 + count * REPORT_BLOCK_LEN <= end)
                .ok_or(RtcpError::BadLength)?;
            Ok(RtcpPacket::ReceiverReport(ReceiverReport {
                data: packet,
                blocks,
            }))
        }
        PT_SDES => {
            check_sdes(&packet[4..end], count)?;
            Ok(RtcpPacket::Sdes)
        }
        PT_BYE => {
            RtBye::parse(packet).map_err(map_parse_error)?;
            let ssrcs = packet
                .get(4..4 + 4 * count)
                .filter(|_| 4 + 4 * count <= end)
                .ok_or(RtcpError::BadLength)?;
            Ok(RtcpPacket::Bye(Bye { ssrcs }))
        }
        PT_RTPFB => parse_transport_feedback(packet, end),
        PT_PSFB => parse_payload_feedback(packet, end),
        _ => Ok(RtcpPacket::Other { packet_type }),
    }
}

/// Parses transport layer feedback (packet type 205).
fn parse_transport_feedback(packet: &[u8], end: usize) -> Result<RtcpPacket<'_>, RtcpError> {
    let fb = TransportFeedback::parse(packet).map_err(map_parse_error)?;
    let fci = packet
        .get(FEEDBACK_HEADER_LEN..end)
        .ok_or(RtcpError::TooShort)?;
    match packet[0] & 0x1f {
        FMT_NACK => {
            fb.parse_fci::<RtNack>().map_err(map_parse_error)?;
            if fci.is_empty() {
                return Err(RtcpError::TooShort);
            }
            if fci.len() % 4 != 0 {
                return Err(RtcpError::BadLength);
            }
            Ok(RtcpPacket::Nack(Nack { data: packet, fci }))
        }
        FMT_TWCC => {
            fb.parse_fci::<Twcc>().map_err(map_parse_error)?;
            check_twcc(fci)?;
            Ok(RtcpPacket::TransportCc(TransportCc { data: packet, fci }))
        }
        _ => Ok(RtcpPacket::Other {
            packet_type: PT_RTPFB,
        }),
    }
}

/// Parses payload-specific feedback (packet type 206).
fn parse_payload_feedback(packet: &[u8], end: usize) -> Result<RtcpPacket<'_>, RtcpError> {
    PayloadFeedback::parse(packet).map_err(map_parse_error)?;
    let fci = packet
        .get(FEEDBACK_HEADER_LEN..end)
        .ok_or(RtcpError::TooShort)?;
    match packet[0] & 0x1f {
        FMT_PLI => {
            // The PLI has no FCI; parse what is left once the padding is gone.
            RtPli::parse(fci).map_err(map_parse_error)?;
            Ok(RtcpPacket::Pli(Pli {
                sender_ssrc: be_u32(packet, 4),
                media_ssrc: be_u32(packet, 8),
            }))
        }
        FMT_FIR => {
            RtFir::parse(fci).map_err(map_parse_error)?;
            if fci.len() % 8 != 0 {
                return Err(RtcpError::BadLength);
            }
            Ok(RtcpPacket::Fir(Fir { data: packet, fci }))
        }
        FMT_AFB if fci.starts_with(b"REMB") => parse_remb(packet, fci),
        _ => Ok(RtcpPacket::Other {
            packet_type: PT_PSFB,
        }),
    }
}

/// Parses the FCI of a REMB (draft-alvestrand-rmcat-remb-03 section 2.2), which `rtcp-types`
/// does not know.
fn parse_remb<'a>(packet: &'a [u8], fci: &'a [u8]) -> Result<RtcpPacket<'a>, RtcpError> {
    let Some(word) = fci.get(4..8) else {
        return Err(RtcpError::TooShort);
    };
    let word = be_u32(word, 0);
    let count = (word >> 24) as usize;
    let exp = (word >> 18) & 0x3f;
    let mantissa = u64::from(word & 0x3_ffff);
    let bitrate = if mantissa.leading_zeros() < exp {
        u64::MAX
    } else {
        mantissa << exp
    };
    let ssrcs = fci.get(8..8 + 4 * count).ok_or(RtcpError::BadLength)?;
    Ok(RtcpPacket::Remb(Remb {
        data: packet,
        bitrate,
        ssrcs,
    }))
}

/// The length of a packet without its padding (RFC 3550 section 6.4.1, "padding"): the last
/// octet counts the padding octets, itself included; zero, or more than the packet after its
/// header, is malformed.
fn unpadded_len(packet: &[u8]) -> Result<usize, RtcpError> {
    if packet[0] & 0x20 == 0 {
        return Ok(packet.len());
    }
    let pad = usize::from(*packet.last().ok_or(RtcpError::TooShort)?);
    if pad == 0 || pad > packet.len() - 4 {
        return Err(RtcpError::BadLength);
    }
    Ok(packet.len() - pad)
}

/// Checks the chunks of an SDES packet (RFC 3550 section 6.5): `count` chunks, each an SSRC and
/// a list of items ended by a zero octet and padded with zeros to a 32-bit boundary, filling the
/// packet.
fn check_sdes(mut body: &[u8], count: usize) -> Result<(), RtcpError> {
    for _ in 0..count {
        let mut at = 4;
        if body.len() < at {
            return Err(RtcpError::BadLength);
        }
        loop {
            match body.get(at) {
                None => return Err(RtcpError::BadLength),
                Some(0) => break,
                Some(_) => {
                    let item_len = usize::from(*body.get(at + 1).ok_or(RtcpError::BadLength)?);
                    at += 2 + item_len;
                }
            }
        }
        // The item list ends at the zero octet; padding runs to the next 32-bit boundary.
        let chunk_end = (at + 1).next_multiple_of(4);
        let padding = body.get(at..chunk_end).ok_or(RtcpError::BadLength)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(RtcpError::BadLength);
        }
        body = &body[chunk_end..];
    }
    if body.is_empty() {
        Ok(())
    } else {
        Err(RtcpError::BadLength)
    }
}

/// Checks the FCI of transport-cc feedback without expanding it: the packet status chunks
/// cover the packet status count, no reserved symbol is used for a reported packet, and the
/// receive deltas the symbols call for are all there. Costs one step per chunk, whatever the
/// count says.
fn check_twcc(fci: &[u8]) -> Result<(), RtcpError> {
    if fci.len() < 8 {
        return Err(RtcpError::TooShort);
    }
    let mut remaining = usize::from(be_u16(fci, 2));
    let mut at = 8;
    let mut delta_bytes = 0usize;
    while remaining > 0 {
        let chunk = fci.get(at..at + 2).ok_or(RtcpError::BadLength)?;
        let chunk = be_u16(chunk, 0);
        at += 2;
        if chunk & 0x8000 == 0 {
            // Run length chunk: a two-bit symbol, a 13-bit run.
            let run = usize::from(chunk & 0x1fff).min(remaining);
            delta_bytes += run * symbol_delta_bytes((chunk >> 13) & 3, run)?;
            remaining -= run;
        } else if chunk & 0x4000 == 0 {
            // Status vector of 14 one-bit symbols: 1 is received with a small delta.
            let n = remaining.min(14);
            let used = (chunk & 0x3fff) >> (14 - n);
            delta_bytes += used.count_ones() as usize;
            remaining -= n;
        } else {
            // Status vector of 7 two-bit symbols.
            let n = remaining.min(7);
            for i in 0..n {
                let symbol = (chunk >> (12 - 2 * i)) & 3;
                delta_bytes += symbol_delta_bytes(symbol, 1)?;
            }
            remaining -= n;
        }
    }
    if at + delta_bytes > fci.len() {
        return Err(RtcpError::BadLength);
    }
    Ok(())
}

/// Delta bytes per packet for a two-bit transport-cc symbol; the reserved symbol is refused
/// when it stands for at least one packet.
fn symbol_delta_bytes(symbol: u16, packets: usize) -> Result<usize, RtcpError> {
    match symbol {
        0 => Ok(0),
        1 => Ok(1),
        2 => Ok(2),
        _ if packets == 0 => Ok(0),
        _ => Err(RtcpError::Unsupported),
    }
}

/// Maps an `rtcp-types` parse error onto ours.
fn map_parse_error(e: RtcpParseError) -> RtcpError {
    match e {
        RtcpParseError::UnsupportedVersion(_) => RtcpError::BadVersion,
        RtcpParseError::Truncated { .. } => RtcpError::TooShort,
        RtcpParseError::TwccReservedPacketStatus => RtcpError::Unsupported,
        _ => RtcpError::BadLength,
    }
}

/// Reads a report block from 24 bytes.
fn read_report_block(b: &[u8]) -> ReportBlock {
    let lost = be_u32(b, 4);
    ReportBlock {
        ssrc: be_u32(b, 0),
        fraction_lost: (lost >> 24) as u8,
        // Sign-extend the 24-bit cumulative loss.
        cumulative_lost: ((lost << 8) as i32) >> 8,
        extended_highest_seq: be_u32(b, 8),
        jitter: be_u32(b, 12),
        last_sr: be_u32(b, 16),
        delay_since_last_sr: be_u32(b, 20),
    }
}

/// A big-endian `u32` at `at`, or 0 past the end (callers read only checked places).
fn be_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// A big-endian `u16` at `at`, or 0 past the end (callers read only checked places).
fn be_u16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

// ---- building -----------------------------------------------------------------------------

/// The first `len` bytes of `out`, or `BufferTooSmall`.
fn packet_buf(out: &mut [u8], len: usize) -> Result<&mut [u8], RtcpError> {
    out.get_mut(..len).ok_or(RtcpError::BufferTooSmall)
}

/// Writes the common header: version 2, no padding, the count (or format) and the length of a
/// packet of `len` bytes (a multiple of 4, at least 4).
fn write_header(out: &mut [u8], count: u8, packet_type: u8, len: usize) {
    out[0] = 0x80 | (count & 0x1f);
    out[1] = packet_type;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
}

/// Writes the common header and the two SSRCs of a feedback packet (RFC 4585 section 6.1).
pub(crate) fn write_feedback_header(
    out: &mut [u8],
    fmt: u8,
    packet_type: u8,
    len: usize,
    sender_ssrc: u32,
    media_ssrc: u32,
) {
    write_header(out, fmt, packet_type, len);
    put_u32(out, 4, sender_ssrc);
    put_u32(out, 8, media_ssrc);
}

/// Writes a report block at `at` (RFC 3550 section 6.4.1), clamping the cumulative loss to
/// 24-bit signed.
fn write_report_block(out: &mut [u8], at: usize, block: &ReportBlock) {
    let lost = block.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
    put_u32(out, at, block.ssrc);
    put_u32(out, at + 4, (u32::from(block.fraction_lost) << 24) | lost);
    put_u32(out, at + 8, block.extended_highest_seq);
    put_u32(out, at + 12, block.jitter);
    put_u32(out, at + 16, block.last_sr);
    put_u32(out, at + 20, block.delay_since_last_sr);
}

/// Writes a big-endian `u32` at `at` of a buffer already checked to be long enough.
pub(crate) fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::SystemTime;
    use str0m::rtp::rtcp::{Rtcp, SdesType};

    fn block(n: u32) -> ReportBlock {
        ReportBlock {
            ssrc: 0x1000 + n,
            fraction_lost: n as u8 * 3,
            cumulative_lost: -7 + n as i32 * 1000,
            extended_highest_seq: 0x0001_fff0 + n,
            jitter: 17 * n,
            last_sr: 0xdead_0000 | n,
            delay_since_last_sr: 65_536 + n,
        }
    }

    /// Parses `buf` as a compound that must hold exactly one valid packet.
    fn only(buf: &[u8]) -> RtcpPacket<'_> {
        let mut packets = compound(buf);
        let packet = packets.next().expect("one packet").expect("valid packet");
        assert!(packets.next().is_none(), "exactly one packet");
        packet
    }

    /// The packet without its padding, as str0m's parser takes it.
    fn str0m_parse(packet: &[u8]) -> Rtcp {
        let end = unpadded_len(packet).expect("padding");
        Rtcp::try_from(&packet[..end]).expect("str0m parses it")
    }

    /// Every value the accessors of a packet hand out, so a test or proptest touches all.
    fn touch(packet: &RtcpPacket<'_>) -> usize {
        match packet {
            RtcpPacket::SenderReport(sr) => {
                (sr.ssrc() ^ sr.rtp_timestamp() ^ sr.packet_count() ^ sr.octet_count()) as usize
                    + sr.ntp_timestamp() as usize % 7
                    + sr.report_blocks().count()
            }
            RtcpPacket::ReceiverReport(rr) => rr.ssrc() as usize % 7 + rr.report_blocks().count(),
            RtcpPacket::Nack(n) => {
                (n.sender_ssrc() ^ n.media_ssrc()) as usize % 7 + n.sequence_numbers().count()
            }
            RtcpPacket::Pli(p) => p.sender_ssrc as usize % 7,
            RtcpPacket::Fir(f) => f.sender_ssrc() as usize % 7 + f.entries().count(),
            RtcpPacket::Remb(r) => r.bitrate() as usize % 7 + r.ssrcs().count(),
            RtcpPacket::TransportCc(t) => {
                let n = t.packets().count();
                assert_eq!(n, usize::from(t.packet_status_count()));
                (t.sender_ssrc() ^ t.media_ssrc() ^ t.reference_time()) as usize % 7
                    + usize::from(t.base_sequence() ^ u16::from(t.feedback_count()))
                    + n
            }
            RtcpPacket::Sdes => 1,
            RtcpPacket::Bye(b) => b.ssrcs().count(),
            RtcpPacket::Other { packet_type } => usize::from(*packet_type),
        }
    }

    #[test]
    fn sender_report_round_trips_and_matches_str0m() {
        let blocks = [block(1), block(2)];
        let ntp = 0xe8f1_2345_8000_0000u64;
        let mut buf = [0u8; 200];
        let len = write_sender_report(&mut buf, 0xabcd, ntp, 90_000, 10, 12_000, &blocks).unwrap();
        assert_eq!(len, 28 + 48);
        let RtcpPacket::SenderReport(sr) = only(&buf[..len]) else {
            panic!("not an SR");
        };
        assert_eq!(sr.ssrc(), 0xabcd);
        assert_eq!(sr.ntp_timestamp(), ntp);
        assert_eq!(sr.rtp_timestamp(), 90_000);
        assert_eq!(sr.packet_count(), 10);
        assert_eq!(sr.octet_count(), 12_000);
        assert_eq!(sr.report_blocks().collect::<Vec<_>>(), blocks);

        let Rtcp::SenderReport(theirs) = str0m_parse(&buf[..len]) else {
            panic!("str0m: not an SR");
        };
        let info = theirs.sender_info;
        assert_eq!(*info.ssrc, 0xabcd);
        assert_eq!(info.sender_packet_count, 10);
        assert_eq!(info.sender_octet_count, 12_000);
        // str0m keeps the NTP time as a SystemTime (through an f64): compare to 1 ms.
        let secs_1900 = 2_208_988_800f64;
        let theirs_secs = info
            .ntp_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + secs_1900;
        assert!((theirs_secs - ntp as f64 / 4_294_967_296.0).abs() < 0.001);
        compare_blocks(theirs.reports.iter(), &blocks);
    }

    fn compare_blocks<'a>(
        theirs: impl Iterator<Item = &'a str0m::rtp::rtcp::ReceptionReport>,
        ours: &[ReportBlock],
    ) {
        let theirs: Vec<_> = theirs.collect();
        assert_eq!(theirs.len(), ours.len());
        for (t, o) in theirs.iter().zip(ours) {
            assert_eq!(*t.ssrc, o.ssrc);
            assert_eq!(t.fraction_lost, o.fraction_lost);
            assert_eq!(t.packets_lost, o.cumulative_lost as u32 & 0xff_ffff);
            assert_eq!(t.max_seq, o.extended_highest_seq);
            assert_eq!(t.jitter, o.jitter);
            assert_eq!(t.last_sr_time, o.last_sr);
            assert_eq!(t.last_sr_delay, o.delay_since_last_sr);
        }
    }

    #[test]
    fn receiver_report_round_trips_and_matches_str0m() {
        let blocks = [block(0), block(5), block(9)];
        let mut buf = [0u8; 200];
        let len = write_receiver_report(&mut buf, 77, &blocks).unwrap();
        assert_eq!(len, 8 + 72);
        let RtcpPacket::ReceiverReport(rr) = only(&buf[..len]) else {
            panic!("not an RR");
        };
        assert_eq!(rr.ssrc(), 77);
        assert_eq!(rr.report_blocks().collect::<Vec<_>>(), blocks);
        let Rtcp::ReceiverReport(theirs) = str0m_parse(&buf[..len]) else {
            panic!("str0m: not an RR");
        };
        assert_eq!(*theirs.sender_ssrc, 77);
        compare_blocks(theirs.reports.iter(), &blocks);

        // An empty RR is the smallest valid one.
        let len = write_receiver_report(&mut buf, 78, &[]).unwrap();
        assert_eq!(&buf[..len], &[0x80, 201, 0, 1, 0, 0, 0, 78]);
    }

    #[test]
    fn cumulative_loss_is_24_bit_signed() {
        let mut buf = [0u8; 64];
        for (given, read) in [
            (-1, -1),
            (-0x80_0000, -0x80_0000),
            (0x7f_ffff, 0x7f_ffff),
            (i32::MAX, 0x7f_ffff),
            (i32::MIN, -0x80_0000),
        ] {
            let b = ReportBlock {
                cumulative_lost: given,
                ..block(1)
            };
            let len = write_receiver_report(&mut buf, 1, &[b]).unwrap();
            let RtcpPacket::ReceiverReport(rr) = only(&buf[..len]) else {
                panic!("not an RR");
            };
            assert_eq!(rr.report_blocks().next().unwrap().cumulative_lost, read);
        }
        // -1 on the wire is 0xffffff after the fraction lost.
        let b = ReportBlock {
            cumulative_lost: -1,
            fraction_lost: 0x12,
            ..block(1)
        };
        write_receiver_report(&mut buf, 1, &[b]).unwrap();
        assert_eq!(&buf[12..16], &[0x12, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn sdes_cname_is_well_formed_and_matches_str0m() {
        let mut buf = [0u8; 300];
        for name in ["", "a", "ab", "abc", "abcd", "user@host", &"x".repeat(255)] {
            let len = write_sdes_cname(&mut buf, 0x1234, name).unwrap();
            assert_eq!(len % 4, 0);
            // Header, SSRC, item type and length, the name and at least one zero octet.
            assert!(len > 4 + 4 + 2 + name.len());
            assert!(matches!(only(&buf[..len]), RtcpPacket::Sdes));
            let Rtcp::SourceDescription(theirs) = str0m_parse(&buf[..len]) else {
                panic!("str0m: not SDES");
            };
            let chunk = theirs.reports.iter().next().unwrap();
            assert_eq!(*chunk.ssrc, 0x1234);
            let values: Vec<_> = chunk.values.iter().collect();
            assert_eq!(values, [&(SdesType::CNAME, name.to_string())]);
        }
        assert_eq!(
            write_sdes_cname(&mut buf, 1, &"x".repeat(256)),
            Err(RtcpError::Unsupported)
        );
        // "ab": header, SSRC, CNAME item of 2, one zero octet, padding to 12 bytes of chunk.
        let len = write_sdes_cname(&mut buf, 1, "ab").unwrap();
        assert_eq!(
            &buf[..len],
            &[0x81, 202, 0, 3, 0, 0, 0, 1, 1, 2, b'a', b'b', 0, 0, 0, 0]
        );
    }

    #[test]
    fn nack_packs_pairs_in_any_order_and_matches_str0m() {
        let cases: &[&[u16]] = &[
            &[100],
            &[100, 101, 116],
            &[117, 100],
            &[5, 3, 4, 3, 40, 22, 21],
            &[65_535, 0, 2, 65_534, 15],
            &[1000, 999, 2000, 1010, 1500],
        ];
        let mut buf = [0u8; 200];
        for seqs in cases {
            let len = write_nack(&mut buf, 9, 10, seqs).unwrap();
            let RtcpPacket::Nack(nack) = only(&buf[..len]) else {
                panic!("not a NACK");
            };
            assert_eq!((nack.sender_ssrc(), nack.media_ssrc()), (9, 10));
            let mut want: Vec<u16> = seqs.to_vec();
            let pivot = seqs[0].wrapping_sub(0x8000);
            want.sort_by_key(|s| s.wrapping_sub(pivot));
            want.dedup();
            assert_eq!(
                nack.sequence_numbers().collect::<Vec<_>>(),
                want,
                "{seqs:?}"
            );

            let Rtcp::Nack(theirs) = str0m_parse(&buf[..len]) else {
                panic!("str0m: not a NACK");
            };
            assert_eq!((*theirs.sender_ssrc, *theirs.ssrc), (9, 10));
            let mut expanded = vec![];
            for e in theirs.reports.iter() {
                expanded.push(e.pid);
                expanded.extend(
                    (0..16)
                        .filter(|b| e.blp & (1 << b) != 0)
                        .map(|b| e.pid.wrapping_add(b + 1)),
                );
            }
            assert_eq!(expanded, want);
        }
        // 100 and 101 and 116 share one pair: PID 100, BLP bits 0 and 15.
        let len = write_nack(&mut buf, 1, 2, &[116, 101, 100]).unwrap();
        assert_eq!(
            &buf[..len],
            &[0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 100, 0x80, 0x01]
        );
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::Unsupported));
        assert_eq!(
            write_nack(&mut buf[..16], 1, 2, &[1, 100]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn pli_fir_remb_bye_round_trip_and_match_str0m() {
        let mut buf = [0u8; 1200];
        let len = write_pli(&mut buf, 3, 4).unwrap();
        assert_eq!(&buf[..len], &[0x81, 206, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]);
        let RtcpPacket::Pli(pli) = only(&buf[..len]) else {
            panic!("not a PLI");
        };
        assert_eq!(
            pli,
            Pli {
                sender_ssrc: 3,
                media_ssrc: 4
            }
        );
        let Rtcp::Pli(theirs) = str0m_parse(&buf[..len]) else {
            panic!("str0m: not a PLI");
        };
        assert_eq!((*theirs.sender_ssrc, *theirs.ssrc), (3, 4));

        let len = write_fir(&mut buf, 5, 6, 200).unwrap();
        let RtcpPacket::Fir(fir) = only(&buf[..len]) else {
            panic!("not a FIR");
        };
        assert_eq!(fir.sender_ssrc(), 5);
        assert_eq!(fir.entries().collect::<Vec<_>>(), [(6, 200)]);
        let Rtcp::Fir(theirs) = str0m_parse(&buf[..len]) else {
            panic!("str0m: not a FIR");
        };
        assert_eq!(*theirs.sender_ssrc, 5);
        let entries: Vec<_> = theirs.reports.iter().map(|e| (*e.ssrc, e.seq_no)).collect();
        assert_eq!(entries, [(6, 200)]);

        for (bitrate, ssrcs) in [
            (0u64, &[1u32][..]),
            (300_000, &[1, 2, 3][..]),
            ((1 << 18) - 1, &[][..]),
            (2_500_000_000, &[7][..]),
        ] {
            let len = write_remb(&mut buf, 8, bitrate, ssrcs).unwrap();
            let RtcpPacket::Remb(remb) = only(&buf[..len]) else {
                panic!("not a REMB");
            };
            assert_eq!(remb.sender_ssrc(), 8);
            assert_eq!(remb.ssrcs().collect::<Vec<_>>(), ssrcs);
            // Rounded down to an 18-bit mantissa: within one part in 2^17.
            assert!(remb.bitrate() <= bitrate && bitrate - remb.bitrate() <= bitrate >> 17);
            let Rtcp::Remb(theirs) = str0m_parse(&buf[..len]) else {
                panic!("str0m: not a REMB");
            };
            assert_eq!(theirs.ssrcs, ssrcs);
            if bitrate == 0 {
                // str0m reads a zero mantissa as 2^23 (its float conversion); skip it.
                continue;
            }
            let diff = (f64::from(theirs.bitrate) - remb.bitrate() as f64).abs();
            assert!(
                diff <= bitrate as f64 * 1e-6,
                "{bitrate}: {} {}",
                theirs.bitrate,
                remb.bitrate()
            );
        }
        // Exactly representable values come back exactly.
        let len = write_remb(&mut buf, 8, 0x3_ffff << 20, &[]).unwrap();
        let RtcpPacket::Remb(remb) = only(&buf[..len]) else {
            panic!("not a REMB");
        };
        assert_eq!(remb.bitrate(), 0x3_ffff << 20);
        assert_eq!(
            write_remb(&mut buf, 8, 1, &[0; 256]),
            Err(RtcpError::Unsupported)
        );

        let len = write_bye(&mut buf, &[11, 12]).unwrap();
        let RtcpPacket::Bye(bye) = only(&buf[..len]) else {
            panic!("not a BYE");
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), [11, 12]);
        let Rtcp::Goodbye(theirs) = str0m_parse(&buf[..len]) else {
            panic!("str0m: not a BYE");
        };
        assert_eq!(
            theirs.reports.iter().map(|s| **s).collect::<Vec<_>>(),
            [11, 12]
        );
        assert_eq!(write_bye(&mut buf, &[0; 32]), Err(RtcpError::Unsupported));
    }

    #[test]
    fn remb_bitrate_saturates_instead_of_overflowing() {
        // Exponent 63 with an 18-bit mantissa does not fit 64 bits.
        let packet = [
            0x8f, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0, 0xff, 0xff, 0xff,
        ];
        let RtcpPacket::Remb(remb) = only(&packet) else {
            panic!("not a REMB");
        };
        assert_eq!(remb.bitrate(), u64::MAX);
    }

    #[test]
    fn builders_chain_into_a_compound() {
        let mut buf = [0u8; 1500];
        let mut len = 0;
        len += write_receiver_report(&mut buf[len..], 1, &[block(1)]).unwrap();
        len += write_sdes_cname(&mut buf[len..], 1, "cname").unwrap();
        len += write_nack(&mut buf[len..], 1, 2, &[10, 12]).unwrap();
        len += write_pli(&mut buf[len..], 1, 2).unwrap();
        len += write_fir(&mut buf[len..], 1, 2, 1).unwrap();
        len += write_remb(&mut buf[len..], 1, 1_000_000, &[2]).unwrap();
        len += write_bye(&mut buf[len..], &[1]).unwrap();
        len += write_sender_report(&mut buf[len..], 1, 2, 3, 4, 5, &[]).unwrap();
        let kinds: Vec<_> = compound(&buf[..len])
            .map(|p| std::mem::discriminant(&p.unwrap()))
            .collect();
        let want = [
            RtcpPacket::ReceiverReport(ReceiverReport {
                data: &[],
                blocks: &[],
            }),
            RtcpPacket::Sdes,
            RtcpPacket::Nack(Nack {
                data: &[],
                fci: &[],
            }),
            RtcpPacket::Pli(Pli {
                sender_ssrc: 0,
                media_ssrc: 0,
            }),
            RtcpPacket::Fir(Fir {
                data: &[],
                fci: &[],
            }),
            RtcpPacket::Remb(Remb {
                data: &[],
                bitrate: 0,
                ssrcs: &[],
            }),
            RtcpPacket::Bye(Bye { ssrcs: &[] }),
            RtcpPacket::SenderReport(SenderReport {
                data: &[],
                blocks: &[],
            }),
        ]
        .map(|p| std::mem::discriminant(&p));
        assert_eq!(kinds, want);
    }

    #[test]
    fn builders_refuse_small_buffers() {
        let mut buf = [0u8; 64];
        let small = &mut buf[..11];
        assert_eq!(write_pli(small, 1, 2), Err(RtcpError::BufferTooSmall));
        assert_eq!(write_fir(small, 1, 2, 3), Err(RtcpError::BufferTooSmall));
        assert_eq!(write_remb(small, 1, 2, &[]), Err(RtcpError::BufferTooSmall));
        assert_eq!(write_bye(small, &[1, 2, 3]), Err(RtcpError::BufferTooSmall));
        assert_eq!(write_receiver_report(small, 1, &[]).map(|_| ()), Ok(()));
        assert_eq!(
            write_receiver_report(small, 1, &[block(1)]),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(
            write_sender_report(small, 1, 2, 3, 4, 5, &[]),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(
            write_sdes_cname(small, 1, "abc"),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(
            write_nack(small, 1, 2, &[1]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn framing_errors_end_the_iteration() {
        let mut buf = [0u8; 64];
        let rr = write_receiver_report(&mut buf, 1, &[]).unwrap();
        let pli = write_pli(&mut buf[rr..], 1, 2).unwrap();
        let good = buf[..rr + pli].to_vec();

        assert_eq!(compound(&[]).collect::<Vec<_>>().len(), 1);
        assert!(matches!(
            compound(&[]).next(),
            Some(Err(RtcpError::TooShort))
        ));
        // A header cut short after a good packet.
        let results: Vec<_> = compound(&good[..rr + 3]).collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(RtcpError::TooShort)));
        // A length field that runs past the buffer: one error, then nothing.
        let mut lying = good.clone();
        lying[3] = 9;
        let results: Vec<_> = compound(&lying).collect();
        assert_eq!(results.len(), 1);
        assert!(matches!(results[0], Err(RtcpError::BadLength)));
        // Version 1.
        let mut old = good.clone();
        old[rr] = 0x41;
        let results: Vec<_> = compound(&old).collect();
        assert_eq!(results.len(), 2);
        assert!(matches!(results[1], Err(RtcpError::BadVersion)));
    }

    #[test]
    fn malformed_packets_are_errors_and_the_next_packet_is_read() {
        let mut pli = [0u8; 12];
        write_pli(&mut pli, 1, 2).unwrap();
        let check = |bad: &[u8], want: RtcpError| {
            let mut buf = bad.to_vec();
            buf.extend_from_slice(&pli);
            let results: Vec<_> = compound(&buf).collect();
            assert_eq!(results.len(), 2, "{bad:?}");
            assert_eq!(results[0].as_ref().err(), Some(&want), "{bad:?}");
            assert!(matches!(results[1], Ok(RtcpPacket::Pli(_))));
        };
        // Zero-length packets (a header alone) of every type that needs a body.
        for pt in [200, 201, 205, 206] {
            check(&[0x80, pt, 0, 0], RtcpError::TooShort);
        }
        // A zero-length SDES with a count of 1, a BYE counting more SSRCs than it holds.
        check(&[0x81, 202, 0, 0], RtcpError::BadLength);
        check(&[0x82, 203, 0, 1, 0, 0, 0, 1], RtcpError::TooShort);
        // An RR whose count needs 24 more bytes.
        check(&[0x81, 201, 0, 1, 0, 0, 0, 1], RtcpError::TooShort);
        // Padding bit with a zero padding count, and with one larger than the packet.
        check(&[0xa0, 201, 0, 1, 0, 0, 0, 0], RtcpError::BadLength);
        check(&[0xa0, 201, 0, 1, 0, 0, 0, 9], RtcpError::BadLength);
        // An RR with one report block, whose last 4 bytes are padding: the block is cut.
        let mut padded = vec![0xa1, 201, 0, 7];
        padded.extend_from_slice(&[0; 27]);
        padded.push(4);
        check(&padded, RtcpError::BadLength);
        // A NACK without FCI, a NACK with half a pair, a PLI with FCI.
        check(
            &[0x81, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2],
            RtcpError::TooShort,
        );
        check(
            &[0xa1, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0, 2],
            RtcpError::BadLength,
        );
        check(
            &[0x81, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0],
            RtcpError::BadLength,
        );
        // A REMB counting two SSRCs and holding one.
        check(
            &[
                0x8f, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 2, 0, 0, 1, 0, 0,
                0, 9,
            ],
            RtcpError::BadLength,
        );
        // Transport-cc: status count 3 with a run chunk of 3 small deltas but 2 delta bytes,
        // a chunk missing, the reserved symbol.
        let twcc = |chunk: [u8; 2], deltas: [u8; 2]| {
            let mut p = vec![
                0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0,
            ];
            p.extend_from_slice(&chunk);
            p.extend_from_slice(&deltas);
            p
        };
        check(&twcc([0x20, 3], [1, 2]), RtcpError::BadLength);
        check(&twcc([0x20, 2], [1, 2]), RtcpError::BadLength);
        check(&twcc([0x60, 3], [0, 0]), RtcpError::Unsupported);
        // The same packet well formed: three received packets 1, 2 and 3 ticks apart.
        let good = [
            0xaf, 205, 0, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0x20, 3, 1, 2, 4, 0,
            0, 3,
        ];
        let RtcpPacket::TransportCc(cc) = only(&good[..]) else {
            panic!("not transport-cc");
        };
        assert_eq!(
            cc.packets().collect::<Vec<_>>(),
            [(0, Some(250)), (1, Some(750)), (2, Some(1750))]
        );
    }

    #[test]
    fn unknown_types_and_formats_are_other() {
        let app = [0x80, 204, 0, 2, 0, 0, 0, 1, b'n', b'a', b'm', b'e'];
        assert!(matches!(only(&app), RtcpPacket::Other { packet_type: 204 }));
        let sli = [0x82, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
        assert!(matches!(only(&sli), RtcpPacket::Other { packet_type: 206 }));
        let afb = [
            0x8f, 206, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, b'A', b'B', b'C', b'D',
        ];
        assert!(matches!(only(&afb), RtcpPacket::Other { packet_type: 206 }));
        let tmmbr = [0x83, 205, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        assert!(matches!(
            only(&tmmbr),
            RtcpPacket::Other { packet_type: 205 }
        ));
    }

    #[test]
    fn rtcp_is_told_from_rtp_by_the_second_byte() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 192]));
        assert!(is_rtcp(&[0x81, 223]));
        assert!(!is_rtcp(&[0x80, 191]));
        assert!(!is_rtcp(&[0x80, 224]));
        // RTP with payload type 96, with and without the marker.
        assert!(!is_rtcp(&[0x80, 96]));
        assert!(!is_rtcp(&[0x80, 0x80 | 96]));
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }

    /// A compound of one of each packet this module builds, plus a transport-cc packet.
    fn sample_compound() -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let mut len = 0;
        len += write_sender_report(&mut buf[len..], 1, 2, 3, 4, 5, &[block(1), block(2)]).unwrap();
        len += write_sdes_cname(&mut buf[len..], 1, "cname").unwrap();
        len += write_nack(&mut buf[len..], 1, 2, &[10, 12, 40]).unwrap();
        len += write_pli(&mut buf[len..], 1, 2).unwrap();
        len += write_fir(&mut buf[len..], 1, 2, 1).unwrap();
        len += write_remb(&mut buf[len..], 1, 1_000_000, &[2, 3]).unwrap();
        let twcc = [
            0xaf, 205, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 20, 0, 0, 1, 9, 0x20, 3, 0xc0, 0,
            0x80, 0x10, 1, 1, 1, 5, 0, 2,
        ];
        buf[len..len + twcc.len()].copy_from_slice(&twcc);
        len += twcc.len();
        len += write_bye(&mut buf[len..], &[1]).unwrap();
        buf.truncate(len);
        buf
    }

    #[test]
    fn sample_compound_is_valid() {
        let bytes = sample_compound();
        let packets: Vec<_> = compound(&bytes)
            .enumerate()
            .map(|(i, p)| p.map_err(|e| (i, e)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(packets.len(), 8);
        let RtcpPacket::TransportCc(cc) = packets[6] else {
            panic!("not transport-cc");
        };
        assert_eq!((cc.base_sequence(), cc.packet_status_count()), (10, 20));
        assert_eq!((cc.reference_time(), cc.feedback_count()), (1, 9));
        let packets: Vec<_> = cc.packets().collect();
        assert_eq!(packets.len(), 20);
        assert_eq!(
            &packets[..4],
            &[
                (10, Some(250)),
                (11, Some(500)),
                (12, Some(750)),
                (13, None)
            ]
        );
        assert_eq!(packets[19], (29, Some(750 + 5 * 250)));
        for packet in &packets[4..19] {
            assert_eq!(packet.1, None);
        }
    }

    #[test]
    fn every_truncation_is_an_error_at_the_cut() {
        let bytes = sample_compound();
        let boundaries: Vec<usize> = {
            let mut at = 0;
            let mut v = vec![0];
            while at < bytes.len() {
                at += 4 * (usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])) + 1);
                v.push(at);
            }
            v
        };
        for cut in 0..bytes.len() {
            let results: Vec<_> = compound(&bytes[..cut]).collect();
            let whole = boundaries.iter().filter(|&&b| b > 0 && b <= cut).count();
            assert!(results[..whole].iter().all(Result::is_ok), "cut {cut}");
            if boundaries.contains(&cut) && cut > 0 {
                assert_eq!(results.len(), whole, "cut {cut}");
            } else {
                assert_eq!(results.len(), whole + 1, "cut {cut}");
                assert!(results[whole].is_err(), "cut {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            for packet in compound(&bytes).flatten() {
                touch(&packet);
            }
        }

        #[test]
        fn well_framed_packets_of_known_types_never_panic(
            first in any::<u8>(),
            packet_type in prop::sample::select(vec![200u8, 201, 202, 203, 204, 205, 206, 207]),
            words in proptest::collection::vec(any::<[u8; 4]>(), 0..40),
            ssrc_words in 0usize..3,
        ) {
            // Version 2, any padding bit and count; a length field that matches the body.
            let mut bytes = vec![(first | 0x80) & !0x40, packet_type];
            bytes.extend_from_slice(&((words.len() + ssrc_words) as u16).to_be_bytes());
            bytes.extend(std::iter::repeat_n(0, 4 * ssrc_words));
            bytes.extend(words.iter().flatten());
            let mut n = 0;
            for packet in compound(&bytes).flatten() {
                touch(&packet);
                n += 1;
            }
            prop_assert!(n <= 1);
        }

        #[test]
        fn one_changed_byte_never_panics(at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let mut bytes = sample_compound();
            let i = at.index(bytes.len());
            bytes[i] = value;
            let mut n = 0;
            for result in compound(&bytes) {
                if let Ok(packet) = result {
                    touch(&packet);
                }
                n += 1;
            }
            prop_assert!(n <= 9);
        }

        #[test]
        fn report_blocks_round_trip(
            ssrc in any::<u32>(),
            ntp in any::<u64>(),
            fields in proptest::collection::vec(any::<(u32, u8, i32, u32, u32, u32, u32)>(), 0..=31),
        ) {
            let blocks: Vec<_> = fields
                .iter()
                .map(|&(ssrc, fraction_lost, lost, seq, jitter, last_sr, dlsr)| ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff),
                    extended_highest_seq: seq,
                    jitter,
                    last_sr,
                    delay_since_last_sr: dlsr,
                })
                .collect();
            let mut buf = [0u8; 800];
            let len = write_sender_report(&mut buf, ssrc, ntp, 1, 2, 3, &blocks).unwrap();
            let RtcpPacket::SenderReport(sr) = only(&buf[..len]) else {
                panic!("not an SR");
            };
            prop_assert_eq!(sr.ntp_timestamp(), ntp);
            prop_assert_eq!(sr.report_blocks().collect::<Vec<_>>(), blocks);
        }

        #[test]
        fn nack_round_trips(first in any::<u16>(), offsets in proptest::collection::vec(0u16..2000, 1..200)) {
            let seqs: Vec<u16> = offsets.iter().map(|o| first.wrapping_add(*o)).collect();
            let mut buf = [0u8; 2000];
            let len = write_nack(&mut buf, 1, 2, &seqs).unwrap();
            let RtcpPacket::Nack(nack) = only(&buf[..len]) else {
                panic!("not a NACK");
            };
            let mut want = offsets.clone();
            want.sort_unstable();
            want.dedup();
            let want: Vec<u16> = want.iter().map(|o| first.wrapping_add(*o)).collect();
            prop_assert_eq!(nack.sequence_numbers().collect::<Vec<_>>(), want);

            // The same numbers sorted (duplicates kept) take the one-pass path: same bytes.
            let mut sorted = offsets.clone();
            sorted.sort_unstable();
            let sorted: Vec<u16> = sorted.iter().map(|o| first.wrapping_add(*o)).collect();
            let mut again = [0u8; 2000];
            let len_sorted = write_nack(&mut again, 1, 2, &sorted).unwrap();
            prop_assert_eq!(&again[..len_sorted], &buf[..len]);
        }

        #[test]
        fn remb_round_trips(bitrate in any::<u64>(), count in 0usize..20) {
            let ssrcs: Vec<u32> = (0..count as u32).collect();
            let mut buf = [0u8; 200];
            let len = write_remb(&mut buf, 1, bitrate, &ssrcs).unwrap();
            let RtcpPacket::Remb(remb) = only(&buf[..len]) else {
                panic!("not a REMB");
            };
            prop_assert!(remb.bitrate() <= bitrate);
            prop_assert!(bitrate - remb.bitrate() <= bitrate >> 17);
            prop_assert_eq!(remb.ssrcs().collect::<Vec<_>>(), ssrcs);
        }
    }

    #[test]
    fn parsing_does_not_outlive_the_iterator() {
        // The accessors' iterators borrow the datagram, not the packet value.
        let bytes = sample_compound();
        let blocks: Vec<ReportBlock> = {
            // The packet value goes out of scope at the end of this block.
            let Some(Ok(RtcpPacket::SenderReport(sr))) = compound(&bytes).next() else {
                panic!("not an SR");
            };
            sr.report_blocks()
        }
        .collect();
        assert_eq!(blocks.len(), 2);
    }
}
