//! RTP packets: a checked view of the header, CSRCs, extension block and payload.
//!
//! - [`RtpPacket::parse`] checks a packet once (RFC 3550 section 5.1: version, CSRC list,
//!   header extension block, padding; RFC 8285 section 4: every element of a one-byte
//!   `0xBEDE` or two-byte `0x100X` extension block), so the accessors only read what was
//!   checked.
//! - `set_*` functions edit the fixed header of a checked packet in place.
//! - [`write_forwarded`] writes the packet a consumer receives: a new fixed header, the
//!   source's CSRCs, its header extensions with ids remapped ([`ExtensionIdMap`]) plus extra
//!   ones, optionally the RTX original sequence number (RFC 4588 section 4), and the payload.
//!   It writes into a caller's buffer and allocates nothing.
//! - [`ExtensionKind`] names the header extension URIs the core understands; [`audio_level`],
//!   [`transport_wide_seq`], [`rid`] and [`video_orientation`] read their values.
//!
//! Extension blocks of any other profile (RFC 3550 section 5.3.1) are accepted and carried
//! nowhere: they hold no elements as far as this module is concerned.

use std::fmt;
use std::ops::Range;

use thiserror::Error;

use crate::ortc::ext_uri;

/// Length of the fixed RTP header (RFC 3550 section 5.1).
const FIXED_HEADER_LEN: usize = 12;
/// Profile of the one-byte header extension form (RFC 8285 section 4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile of the two-byte header extension form, without its 4 "appbits" (RFC 8285 4.3).
const TWO_BYTE_PROFILE: u16 = 0x1000;
/// The bits of the profile field that identify the two-byte form.
const TWO_BYTE_PROFILE_MASK: u16 = 0xFFF0;
/// Largest id of the one-byte form; 15 stops the walk, 0 is padding.
const MAX_ONE_BYTE_ID: u8 = 14;
/// Largest value length of the one-byte form.
const MAX_ONE_BYTE_LEN: usize = 16;
/// Largest value length of the two-byte form.
const MAX_TWO_BYTE_LEN: usize = 255;
/// Length of the RTX original sequence number in front of an RTX payload (RFC 4588).
const RTX_OSN_LEN: usize = 2;

/// The length of an RTP packet's header (fixed part, CSRCs and extension block), or `None` when
/// the buffer is not long enough to hold the header it announces or is not RTP version 2.
pub fn header_len(buf: &[u8]) -> Option<usize> {
    layout(buf).ok().map(|l| l.header_len)
}

/// Why a packet was refused, or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Shorter than the 12-byte fixed header.
    #[error("shorter than the RTP fixed header")]
    TooShort,
    /// The version field is not 2.
    #[error("not RTP version 2")]
    BadVersion,
    /// The CSRC list announced by the CC field does not fit in the packet.
    #[error("CSRC list longer than the packet")]
    BadCsrcCount,
    /// The extension block does not fit, or one of its elements is malformed; or an extension
    /// to be written has an id or a length no form can carry.
    #[error("malformed header extension")]
    BadExtension,
    /// The P bit is set but the padding count is 0 or longer than the packet after its header.
    #[error("bad padding length")]
    BadPadding,
    /// The output buffer cannot hold the packet to be written.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// A checked view of one RTP packet. parse() validates everything the accessors read.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    fixed: &'a [u8; FIXED_HEADER_LEN],
    header_len: usize,
    /// Where the extension block's elements start (after its 4-byte header).
    ext_start: usize,
    ext_form: ExtForm,
    padding_len: u8,
}

impl<'a> RtpPacket<'a> {
    /// Checks `buf` as one RTP packet: version 2, the CSRC list fits, the extension block
    /// fits and its elements (one- or two-byte form) are well formed, and with the P bit the
    /// padding count is at least 1 and no longer than what follows the header.
    pub fn parse(buf: &'a [u8]) -> Result<Self, PacketError> {
        let Layout {
            fixed,
            header_len,
            ext_start,
            ext_form,
        } = layout(buf)?;
        let block = buf.get(ext_start..header_len).unwrap_or_default();
        let mut pos = 0;
        while next_element(ext_form, block, &mut pos)?.is_some() {}
        let padding_len = if fixed[0] & 0x20 != 0 {
            let n = *buf.last().ok_or(PacketError::TooShort)?;
            if n == 0 || usize::from(n) > buf.len() - header_len {
                return Err(PacketError::BadPadding);
            }
            n
        } else {
            0
        };
        Ok(RtpPacket {
            buf,
            fixed,
            header_len,
            ext_start,
            ext_form,
            padding_len,
        })
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.fixed[1] & 0x80 != 0
    }

    /// The payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.fixed[1] & 0x7f
    }

    /// The sequence number.
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.fixed[2], self.fixed[3]])
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.fixed[4], self.fixed[5], self.fixed[6], self.fixed[7]])
    }

    /// The synchronization source.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.fixed[8], self.fixed[9], self.fixed[10], self.fixed[11]])
    }

    /// The number of CSRCs (the CC field).
    pub fn csrc_count(&self) -> usize {
        usize::from(self.fixed[0] & 0x0f)
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrc_bytes()
            .chunks_exact(4)
            .filter_map(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes)
    }

    /// The length of the header: fixed part, CSRCs and extension block.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        usize::from(self.padding_len)
    }

    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.buf.len() - self.padding_len();
        self.buf.get(self.header_len..end).unwrap_or_default()
    }

    /// The header extensions as `(id, value)`, in packet order, in either form; padding bytes
    /// are skipped. Empty without the X bit or with a profile other than the RFC 8285 forms.
    pub fn extensions(&self) -> Extensions<'a> {
        Extensions {
            block: self
                .buf
                .get(self.ext_start..self.header_len)
                .unwrap_or_default(),
            form: self.ext_form,
            pos: 0,
        }
    }

    /// The value of the first header extension with `id`.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions()
            .find(|&(i, _)| i == id)
            .map(|(_, value)| value)
    }

    /// The whole packet, as parsed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    fn csrc_bytes(&self) -> &'a [u8] {
        let end = FIXED_HEADER_LEN + 4 * self.csrc_count();
        self.buf.get(FIXED_HEADER_LEN..end).unwrap_or_default()
    }
}

/// The header extensions of an [`RtpPacket`]: `(id, value)` pairs in packet order.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    block: &'a [u8],
    form: ExtForm,
    pos: usize,
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // The block was checked by `RtpPacket::parse`; an error here cannot happen, and would
        // only end the walk.
        match next_element(self.form, self.block, &mut self.pos) {
            Ok(Some((id, range))) => Some((id, self.block.get(range)?)),
            _ => {
                self.pos = self.block.len();
                None
            }
        }
    }
}

/// Sets the sequence number of a packet that [`RtpPacket::parse`] accepted (no-op if `buf` is
/// shorter than the fixed header).
pub fn set_sequence_number(buf: &mut [u8], seq: u16) {
    if let Some(fixed) = fixed_mut(buf) {
        fixed[2..4].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Sets the RTP timestamp of a packet (no-op if `buf` is shorter than the fixed header).
pub fn set_timestamp(buf: &mut [u8], ts: u32) {
    if let Some(fixed) = fixed_mut(buf) {
        fixed[4..8].copy_from_slice(&ts.to_be_bytes());
    }
}

/// Sets the SSRC of a packet (no-op if `buf` is shorter than the fixed header).
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) {
    if let Some(fixed) = fixed_mut(buf) {
        fixed[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Sets the payload type (its low 7 bits) of a packet, keeping the marker bit (no-op if `buf`
/// is shorter than the fixed header).
pub fn set_payload_type(buf: &mut [u8], pt: u8) {
    if let Some(fixed) = fixed_mut(buf) {
        fixed[1] = (fixed[1] & 0x80) | (pt & 0x7f);
    }
}

/// Sets the marker bit of a packet, keeping the payload type (no-op if `buf` is shorter than
/// the fixed header).
pub fn set_marker(buf: &mut [u8], marker: bool) {
    if let Some(fixed) = fixed_mut(buf) {
        fixed[1] = (fixed[1] & 0x7f) | (u8::from(marker) << 7);
    }
}

/// What a forwarded packet's header says (everything else comes from the source packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutHeader {
    /// Payload type (7 bits; the high bit is ignored).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Marker bit.
    pub marker: bool,
}

/// Maps a producer's extension ids to the consumer side's ids; unmapped ids are dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtensionIdMap {
    /// `to[from]`, 0 when `from` is not mapped (0 is never a valid id).
    to: [u8; 256],
}

impl ExtensionIdMap {
    /// A map that maps nothing.
    pub fn new() -> Self {
        ExtensionIdMap { to: [0; 256] }
    }

    /// A map that keeps every id (1..=255) as it is.
    pub fn identity() -> Self {
        let mut map = Self::new();
        for id in 1..=u8::MAX {
            map.set(id, id);
        }
        map
    }

    /// Maps `from` to `to`; `to == 0` removes the mapping. `from == 0` (padding) is ignored.
    pub fn set(&mut self, from: u8, to: u8) {
        if from != 0 {
            self.to[usize::from(from)] = to;
        }
    }

    /// The id `from` is mapped to, if any.
    pub fn get(&self, from: u8) -> Option<u8> {
        match self.to[usize::from(from)] {
            0 => None,
            to => Some(to),
        }
    }
}

impl Default for ExtensionIdMap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ExtensionIdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries((1..=u8::MAX).filter_map(|from| self.get(from).map(|to| (from, to))))
            .finish()
    }
}

/// Writes a forwarded packet into `out`: fixed header from `header`, the source's CSRCs, the
/// source's extensions with ids mapped through `map` (unmapped ones dropped) followed by `extra`
/// (id, value) pairs (e.g. the transport-wide sequence number), in the one-byte form when every
/// id <= 14 and every length is 1..=16, else the two-byte form; then, if `rtx_osn` is Some, the
/// 2-byte original sequence number (RFC 4588) before the payload; then the source's payload
/// without its padding. Returns the length written. No allocation.
///
/// A source extension whose new id is also the id of an `extra` pair is dropped, so the extra
/// value replaces it. Without any extension to write the X bit is clear. The packet carries no
/// padding. Errors: [`PacketError::BadExtension`] for an extra with id 0 or a value longer than
/// 255 bytes (or an extension block over 65535 words), [`PacketError::BufferTooSmall`] when
/// `out` is shorter than the packet.
pub fn write_forwarded(
    out: &mut [u8],
    src: &RtpPacket<'_>,
    header: OutHeader,
    map: &ExtensionIdMap,
    extra: &[(u8, &[u8])],
    rtx_osn: Option<u16>,
) -> Result<usize, PacketError> {
    let mut count = 0;
    let mut value_bytes = 0;
    let mut one_byte = true;
    for (id, value) in forwarded_extensions(src, map, extra) {
        if id == 0 || value.len() > MAX_TWO_BYTE_LEN {
            return Err(PacketError::BadExtension);
        }
        count += 1;
        value_bytes += value.len();
        one_byte &= id <= MAX_ONE_BYTE_ID && (1..=MAX_ONE_BYTE_LEN).contains(&value.len());
    }
    let form = match (count, one_byte) {
        (0, _) => ExtForm::None,
        (_, true) => ExtForm::OneByte,
        (_, false) => ExtForm::TwoByte,
    };
    let element_headers = if one_byte { count } else { 2 * count };
    let block_len = (value_bytes + element_headers).next_multiple_of(4);
    let block_words = u16::try_from(block_len / 4).map_err(|_| PacketError::BadExtension)?;

    let csrcs = src.csrc_bytes();
    let ext_start = FIXED_HEADER_LEN + csrcs.len();
    let ext_len = if form == ExtForm::None {
        0
    } else {
        4 + block_len
    };
    let osn_len = if rtx_osn.is_some() { RTX_OSN_LEN } else { 0 };
    let payload = src.payload();
    let total = ext_start + ext_len + osn_len + payload.len();
    let out = out.get_mut(..total).ok_or(PacketError::BufferTooSmall)?;

    let x_bit = if form == ExtForm::None { 0 } else { 0x10 };
    out[0] = 0x80 | x_bit | (src.fixed[0] & 0x0f);
    out[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7f);
    out[2..4].copy_from_slice(&header.sequence_number.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    out[FIXED_HEADER_LEN..ext_start].copy_from_slice(csrcs);

    let (ext, rest) = out[ext_start..].split_at_mut(ext_len);
    if form != ExtForm::None {
        let profile = if one_byte {
            ONE_BYTE_PROFILE
        } else {
            TWO_BYTE_PROFILE
        };
        ext[0..2].copy_from_slice(&profile.to_be_bytes());
        ext[2..4].copy_from_slice(&block_words.to_be_bytes());
        let mut at = 4;
        for (id, value) in forwarded_extensions(src, map, extra) {
            at += write_element(&mut ext[at..], one_byte, id, value);
        }
        ext[at..].fill(0);
    }
    let (osn, body) = rest.split_at_mut(osn_len);
    if let Some(seq) = rtx_osn {
        osn.copy_from_slice(&seq.to_be_bytes());
    }
    body.copy_from_slice(payload);
    Ok(total)
}

/// Writes a padding-only packet into `out` (RFC 3550 section 5.1: the P bit set, no payload,
/// `padding` bytes of padding whose last byte counts them): fixed header from `header`, then
/// the `extra` (id, value) pairs as [`write_forwarded`] writes them. Returns the length
/// written. No allocation. Errors: [`PacketError::BadPadding`] for a padding of 0 or more than
/// 255 bytes, the others as [`write_forwarded`].
pub fn write_padding(
    out: &mut [u8],
    header: OutHeader,
    extra: &[(u8, &[u8])],
    padding: usize,
) -> Result<usize, PacketError> {
    let count_byte = u8::try_from(padding)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(PacketError::BadPadding)?;
    let mut value_bytes = 0;
    let mut one_byte = true;
    for (id, value) in extra {
        if *id == 0 || value.len() > MAX_TWO_BYTE_LEN {
            return Err(PacketError::BadExtension);
        }
        value_bytes += value.len();
        one_byte &= *id <= MAX_ONE_BYTE_ID && (1..=MAX_ONE_BYTE_LEN).contains(&value.len());
    }
    let element_headers = if one_byte {
        extra.len()
    } else {
        2 * extra.len()
    };
    let block_len = (value_bytes + element_headers).next_multiple_of(4);
    let block_words = u16::try_from(block_len / 4).map_err(|_| PacketError::BadExtension)?;
    let ext_len = if extra.is_empty() { 0 } else { 4 + block_len };
    let total = FIXED_HEADER_LEN + ext_len + padding;
    let out = out.get_mut(..total).ok_or(PacketError::BufferTooSmall)?;
    let x_bit = if extra.is_empty() { 0 } else { 0x10 };
    out[0] = 0x80 | 0x20 | x_bit;
    out[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7f);
    out[2..4].copy_from_slice(&header.sequence_number.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    let (ext, pad) = out[FIXED_HEADER_LEN..].split_at_mut(ext_len);
    if !extra.is_empty() {
        let profile = if one_byte {
            ONE_BYTE_PROFILE
        } else {
            TWO_BYTE_PROFILE
        };
        ext[0..2].copy_from_slice(&profile.to_be_bytes());
        ext[2..4].copy_from_slice(&block_words.to_be_bytes());
        let mut at = 4;
        for &(id, value) in extra {
            at += write_element(&mut ext[at..], one_byte, id, value);
        }
        ext[at..].fill(0);
    }
    pad.fill(0);
    pad[padding - 1] = count_byte;
    Ok(total)
}

/// RTX de-encapsulation: (original sequence number, original payload) of an RTX packet's payload.
pub fn rtx_original(payload: &[u8]) -> Option<(u16, &[u8])> {
    match payload {
        [hi, lo, rest @ ..] => Some((u16::from_be_bytes([*hi, *lo]), rest)),
        _ => None,
    }
}

/// Header extension URIs the core understands, and their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtensionKind {
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464), read by [`audio_level`].
    AudioLevel,
    /// Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01),
    /// read by [`transport_wide_seq`].
    TransportWideCc,
    /// Absolute send time (24-bit 6.18 fixed point seconds).
    AbsSendTime,
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843), read by [`rid`].
    Mid,
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (RFC 8852), read by [`rid`].
    Rid,
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (RFC 8852), read by [`rid`].
    RepairedRid,
    /// Coordination of video orientation (3GPP TS 26.114), read by [`video_orientation`].
    VideoOrientation,
    /// Absolute capture time.
    AbsCaptureTime,
    /// Playout delay limits.
    PlayoutDelay,
    /// The AV1 dependency descriptor (often longer than 16 bytes).
    DependencyDescriptor,
    /// Video layers allocation.
    VideoLayersAllocation,
    /// Transmission time offset (RFC 5450).
    TimeOffset,
    /// Any other URI.
    Other,
}

/// Every known kind with its URI; one table for both directions.
const EXTENSION_URIS: [(ExtensionKind, &str); 12] = [
    (ExtensionKind::AudioLevel, ext_uri::SSRC_AUDIO_LEVEL),
    (ExtensionKind::TransportWideCc, ext_uri::TRANSPORT_CC),
    (ExtensionKind::AbsSendTime, ext_uri::ABS_SEND_TIME),
    (ExtensionKind::Mid, ext_uri::MID),
    (ExtensionKind::Rid, ext_uri::RTP_STREAM_ID),
    (ExtensionKind::RepairedRid, ext_uri::REPAIRED_RTP_STREAM_ID),
    (ExtensionKind::VideoOrientation, ext_uri::VIDEO_ORIENTATION),
    (
        ExtensionKind::AbsCaptureTime,
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time",
    ),
    (
        ExtensionKind::PlayoutDelay,
        "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    ),
    (
        ExtensionKind::DependencyDescriptor,
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
    ),
    (
        ExtensionKind::VideoLayersAllocation,
        "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00",
    ),
    (ExtensionKind::TimeOffset, ext_uri::TOFFSET),
];

impl ExtensionKind {
    /// The kind of `uri` (compared case-insensitively), [`ExtensionKind::Other`] if unknown.
    pub fn from_uri(uri: &str) -> ExtensionKind {
        EXTENSION_URIS
            .iter()
            .find(|(_, known)| known.eq_ignore_ascii_case(uri))
            .map_or(ExtensionKind::Other, |&(kind, _)| kind)
    }

    /// The URI of this kind; `None` for [`ExtensionKind::Other`].
    pub fn uri(self) -> Option<&'static str> {
        EXTENSION_URIS
            .iter()
            .find(|&&(kind, _)| kind == self)
            .map(|&(_, uri)| uri)
    }
}

/// The audio level extension's value (RFC 6464 section 3): (voice activity, level in -dBov,
/// 0..=127). `None` unless the value is exactly one byte.
pub fn audio_level(data: &[u8]) -> Option<(bool /*voice*/, u8 /*level -dBov 0..127*/)> {
    match data {
        &[b] => Some((b & 0x80 != 0, b & 0x7f)),
        _ => None,
    }
}

/// The transport-wide sequence number. `None` unless the value is exactly two bytes.
pub fn transport_wide_seq(data: &[u8]) -> Option<u16> {
    match data {
        &[hi, lo] => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// The value of a mid, rid or repaired-rid extension: 1..=16 bytes of ASCII letters, digits,
/// `-` and `_` (the `rid-id` syntax of RFC 8851 that RFC 8852 identifiers follow); `None`
/// otherwise.
pub fn rid(data: &[u8]) -> Option<&str> {
    let valid = (1..=MAX_ONE_BYTE_LEN).contains(&data.len())
        && data
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        std::str::from_utf8(data).ok()
    } else {
        None
    }
}

/// The video orientation extension's value (3GPP TS 26.114 section 7.4.5): the low 4 bits
/// `C F R1 R0` (camera, flip, rotation in quarter turns). `None` unless the value is exactly
/// one byte.
pub fn video_orientation(data: &[u8]) -> Option<u8> {
    match data {
        &[b] => Some(b & 0x0f),
        _ => None,
    }
}

/// Which elements an extension block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtForm {
    /// No X bit.
    None,
    /// RFC 8285 one-byte form (profile `0xBEDE`).
    OneByte,
    /// RFC 8285 two-byte form (profile `0x100X`).
    TwoByte,
    /// Another profile: opaque.
    Other,
}

/// Where the parts of a packet's header are; checked to fit in the buffer.
struct Layout<'a> {
    fixed: &'a [u8; FIXED_HEADER_LEN],
    header_len: usize,
    ext_start: usize,
    ext_form: ExtForm,
}

/// Checks the fixed header, the CSRC list and the extension block's header and length.
fn layout(buf: &[u8]) -> Result<Layout<'_>, PacketError> {
    let fixed: &[u8; FIXED_HEADER_LEN] = buf
        .get(..FIXED_HEADER_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(PacketError::TooShort)?;
    if fixed[0] >> 6 != 2 {
        return Err(PacketError::BadVersion);
    }
    let csrc_end = FIXED_HEADER_LEN + 4 * usize::from(fixed[0] & 0x0f);
    if csrc_end > buf.len() {
        return Err(PacketError::BadCsrcCount);
    }
    if fixed[0] & 0x10 == 0 {
        return Ok(Layout {
            fixed,
            header_len: csrc_end,
            ext_start: csrc_end,
            ext_form: ExtForm::None,
        });
    }
    let Some(&[p0, p1, w0, w1]) = buf.get(csrc_end..csrc_end + 4) else {
        return Err(PacketError::BadExtension);
    };
    let ext_start = csrc_end + 4;
    let header_len = ext_start + 4 * usize::from(u16::from_be_bytes([w0, w1]));
    if header_len > buf.len() {
        return Err(PacketError::BadExtension);
    }
    let profile = u16::from_be_bytes([p0, p1]);
    let ext_form = if profile == ONE_BYTE_PROFILE {
        ExtForm::OneByte
    } else if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE {
        ExtForm::TwoByte
    } else {
        ExtForm::Other
    };
    Ok(Layout {
        fixed,
        header_len,
        ext_start,
        ext_form,
    })
}

/// One step of the walk through an extension block (RFC 8285 sections 4.2 and 4.3): the next
/// element's id and value range, `Ok(None)` at the end, or an error for an element that does
/// not fit or a one-byte element with id 0 and a non-zero length. Zero bytes are padding; in
/// the one-byte form id 15 ends the walk.
fn next_element(
    form: ExtForm,
    block: &[u8],
    pos: &mut usize,
) -> Result<Option<(u8, Range<usize>)>, PacketError> {
    let (id, start, len) = loop {
        let Some(&first) = block.get(*pos) else {
            return Ok(None);
        };
        if first == 0 {
            *pos += 1;
            continue;
        }
        match form {
            ExtForm::OneByte => match first >> 4 {
                15 => {
                    *pos = block.len();
                    return Ok(None);
                }
                0 => return Err(PacketError::BadExtension),
                id => break (id, *pos + 1, usize::from(first & 0x0f) + 1),
            },
            ExtForm::TwoByte => {
                let len = *block.get(*pos + 1).ok_or(PacketError::BadExtension)?;
                break (first, *pos + 2, usize::from(len));
            }
            ExtForm::None | ExtForm::Other => return Ok(None),
        }
    };
    let end = start + len;
    if end > block.len() {
        return Err(PacketError::BadExtension);
    }
    *pos = end;
    Ok(Some((id, start..end)))
}

/// The extensions [`write_forwarded`] writes: the source's, mapped, minus those an extra
/// replaces, then the extras.
fn forwarded_extensions<'s>(
    src: &RtpPacket<'s>,
    map: &'s ExtensionIdMap,
    extra: &'s [(u8, &'s [u8])],
) -> impl Iterator<Item = (u8, &'s [u8])> + 's {
    src.extensions()
        .filter_map(move |(id, value)| {
            let to = map.get(id)?;
            (!extra.iter().any(|&(e, _)| e == to)).then_some((to, value))
        })
        .chain(extra.iter().copied())
}

/// Writes one element into `out` (which `write_forwarded` sized for it); returns its length.
fn write_element(out: &mut [u8], one_byte: bool, id: u8, value: &[u8]) -> usize {
    let head = if one_byte { 1 } else { 2 };
    let Some(element) = out.get_mut(..head + value.len()) else {
        return 0;
    };
    if one_byte {
        // `write_forwarded` chose this form only for lengths 1..=16.
        element[0] = (id << 4) | (value.len().saturating_sub(1) as u8 & 0x0f);
    } else {
        element[0] = id;
        // `write_forwarded` refused values longer than 255 bytes.
        element[1] = value.len() as u8;
    }
    element[head..].copy_from_slice(value);
    head + value.len()
}

/// The fixed header of `buf`, if it is long enough.
fn fixed_mut(buf: &mut [u8]) -> Option<&mut [u8; FIXED_HEADER_LEN]> {
    buf.get_mut(..FIXED_HEADER_LEN)?.try_into().ok()
}

#[cfg(test)]
mod tests;
