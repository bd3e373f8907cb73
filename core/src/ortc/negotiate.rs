//! RTP capability negotiation, following the rules of mediasoup's `ortc.ts`.
//!
//! Every function here may be fed hostile signaling input: none of them panics, problems are
//! reported as [`OrtcError`].

use std::collections::{BTreeMap, HashSet};

use super::types::{
    codec_param_u32, is_rtx_mime, CodecParameters, MediaKind, ParameterValue, RtcpFeedback,
    RtcpParameters, RtpCapabilities, RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters,
    RtpHeaderExtension, RtpHeaderExtensionDirection, RtpHeaderExtensionParameters, RtpParameters,
};

/// Errors of the ORTC validation and negotiation functions.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OrtcError {
    /// A codec is not supported (by the router, or by the given capabilities).
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// Parameters are malformed or inconsistent.
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// The same media codec was configured twice.
    #[error("duplicate codec: {0}")]
    DuplicateCodec(String),
    /// No codec of the parameters matched the capabilities.
    #[error("no matching codec")]
    NoMatchingCodec,
    /// All dynamic payload types are in use.
    #[error("cannot allocate more dynamic codec payload types")]
    PayloadTypesExhausted,
}

/// Header extension URIs offered by the router.
pub mod ext_uri {
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (id 1, audio).
    pub const SSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time` (id 2).
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01` (id 3).
    pub const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (id 4).
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (id 10, video).
    pub const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (id 11, video).
    pub const REPAIRED_RTP_STREAM_ID: &str =
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// `urn:3gpp:video-orientation` (id 13, video).
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    /// `urn:ietf:params:rtp-hdrext:toffset` (id 14, video).
    pub const TOFFSET: &str = "urn:ietf:params:rtp-hdrext:toffset";
    /// `http://www.webrtc.org/experiments/rtp-hdrext/playout-delay` (id 5): the sender's
    /// minimum and maximum playout delay, 3 bytes.
    pub const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time` (id 6): the capture
    /// time of the frame in the original capturer's NTP clock, 8 or 16 bytes.
    pub const ABS_CAPTURE_TIME: &str =
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time";
    /// The AV1 RTP specification's dependency descriptor (id 12, video): frame dependency
    /// structure and chains for selective forwarding, often longer than 16 bytes.
    pub const DEPENDENCY_DESCRIPTOR: &str =
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
}

/// The router's fixed header extension table: (kind, uri, id), in capability order.
///
/// A producer's packets are forwarded with the ids they arrive with (see
/// [`header_extension_id`]), and mediasoup-client produces with the browser's own ids, so the
/// ids are the ones Chrome gives these extensions by default; the kinds are mediasoup's.
/// mediasoup's own ids differ and map by URI: its playout delay (14) and absolute capture time
/// (13) would clash with toffset and video orientation here. Playout delay takes Chrome's id 5,
/// the dependency descriptor Chrome's id 12, and absolute capture time (which Chrome only
/// negotiates on request) the free id 6. All are offered `sendrecv`, so consumers receive them
/// (mediasoup offers the dependency descriptor `recvonly`).
const ROUTER_HEADER_EXTENSIONS: &[(MediaKind, &str, u8)] = &[
    (MediaKind::Audio, ext_uri::SSRC_AUDIO_LEVEL, 1),
    (MediaKind::Audio, ext_uri::ABS_SEND_TIME, 2),
    (MediaKind::Video, ext_uri::ABS_SEND_TIME, 2),
    (MediaKind::Audio, ext_uri::TRANSPORT_CC, 3),
    (MediaKind::Video, ext_uri::TRANSPORT_CC, 3),
    (MediaKind::Audio, ext_uri::MID, 4),
    (MediaKind::Video, ext_uri::MID, 4),
    (MediaKind::Audio, ext_uri::PLAYOUT_DELAY, 5),
    (MediaKind::Video, ext_uri::PLAYOUT_DELAY, 5),
    (MediaKind::Audio, ext_uri::ABS_CAPTURE_TIME, 6),
    (MediaKind::Video, ext_uri::ABS_CAPTURE_TIME, 6),
    (MediaKind::Video, ext_uri::RTP_STREAM_ID, 10),
    (MediaKind::Video, ext_uri::REPAIRED_RTP_STREAM_ID, 11),
    (MediaKind::Video, ext_uri::DEPENDENCY_DESCRIPTOR, 12),
    (MediaKind::Video, ext_uri::VIDEO_ORIENTATION, 13),
    (MediaKind::Video, ext_uri::TOFFSET, 14),
];

/// The fixed extension id the router (and the server's RTP stack) uses for `uri`
/// (compared case-insensitively), or `None` when the router does not offer it.
pub fn header_extension_id(uri: &str) -> Option<u8> {
    ROUTER_HEADER_EXTENSIONS
        .iter()
        .find(|(_, u, _)| u.eq_ignore_ascii_case(uri))
        .map(|&(_, _, id)| id)
}

/// The URI the router (and every transport) means by header extension `id`, or `None` when the
/// router does not use the id.
pub fn header_extension_uri(id: u8) -> Option<&'static str> {
    ROUTER_HEADER_EXTENSIONS
        .iter()
        .find(|&&(_, _, i)| i == id)
        .map(|&(_, uri, _)| uri)
}

/// Maximum number of encodings accepted in producer RTP parameters, and forwarded: a producer
/// may declare no more than its consumers can be given.
pub const MAX_ENCODINGS: usize = 8;

/// Which feedback set the router attaches to a codec.
#[derive(Clone, Copy)]
enum FeedbackSet {
    Opus,
    AudioBasic,
    Video,
}

impl FeedbackSet {
    fn build(self) -> Vec<RtcpFeedback> {
        match self {
            FeedbackSet::Opus => vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("transport-cc", ""),
            ],
            FeedbackSet::AudioBasic => vec![RtcpFeedback::new("transport-cc", "")],
            FeedbackSet::Video => vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli"),
                RtcpFeedback::new("ccm", "fir"),
                RtcpFeedback::new("goog-remb", ""),
                RtcpFeedback::new("transport-cc", ""),
            ],
        }
    }
}

/// A codec the router supports.
struct SupportedCodec {
    kind: MediaKind,
    mime_type: &'static str,
    clock_rate: u32,
    /// Channels for audio codecs (the only accepted value; absent means this value).
    channels: Option<u8>,
    static_payload_type: Option<u8>,
    feedback: FeedbackSet,
}

const SUPPORTED_CODECS: &[SupportedCodec] = &[
    SupportedCodec {
        kind: MediaKind::Audio,
        mime_type: "audio/opus",
        clock_rate: 48000,
        channels: Some(2),
        static_payload_type: None,
        feedback: FeedbackSet::Opus,
    },
    SupportedCodec {
        kind: MediaKind::Audio,
        mime_type: "audio/PCMU",
        clock_rate: 8000,
        channels: Some(1),
        static_payload_type: Some(0),
        feedback: FeedbackSet::AudioBasic,
    },
    SupportedCodec {
        kind: MediaKind::Audio,
        mime_type: "audio/PCMA",
        clock_rate: 8000,
        channels: Some(1),
        static_payload_type: Some(8),
        feedback: FeedbackSet::AudioBasic,
    },
    SupportedCodec {
        kind: MediaKind::Audio,
        mime_type: "audio/G722",
        clock_rate: 8000,
        channels: Some(1),
        static_payload_type: Some(9),
        feedback: FeedbackSet::AudioBasic,
    },
    SupportedCodec {
        kind: MediaKind::Video,
        mime_type: "video/VP8",
        clock_rate: 90000,
        channels: None,
        static_payload_type: None,
        feedback: FeedbackSet::Video,
    },
    SupportedCodec {
        kind: MediaKind::Video,
        mime_type: "video/VP9",
        clock_rate: 90000,
        channels: None,
        static_payload_type: None,
        feedback: FeedbackSet::Video,
    },
    SupportedCodec {
        kind: MediaKind::Video,
        mime_type: "video/H264",
        clock_rate: 90000,
        channels: None,
        static_payload_type: None,
        feedback: FeedbackSet::Video,
    },
    SupportedCodec {
        kind: MediaKind::Video,
        mime_type: "video/AV1",
        clock_rate: 90000,
        channels: None,
        static_payload_type: None,
        feedback: FeedbackSet::Video,
    },
    SupportedCodec {
        kind: MediaKind::Video,
        mime_type: "video/H265",
        clock_rate: 90000,
        channels: None,
        static_payload_type: None,
        feedback: FeedbackSet::Video,
    },
];

/// Dynamic payload types in allocation order: 100..=127, then 96..=99, then 35..=63.
fn dynamic_payload_types() -> impl Iterator<Item = u8> {
    (100..=127u8).chain(96..=99).chain(35..=63)
}

/// Splits a mime type into its kind and subtype, if well formed (`audio/x` or `video/x`).
fn parse_mime(mime: &str) -> Option<(MediaKind, &str)> {
    let (kind, sub) = mime.split_once('/')?;
    let kind = if kind.eq_ignore_ascii_case("audio") {
        MediaKind::Audio
    } else if kind.eq_ignore_ascii_case("video") {
        MediaKind::Video
    } else {
        return None;
    };
    let well_formed = !sub.is_empty()
        && sub.len() <= 64
        && sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    well_formed.then_some((kind, sub))
}

/// Builds the router's RTP capabilities from the configured media codecs.
///
/// Each media codec must be one of audio/opus (48000 Hz, 2 channels), audio/PCMU,
/// audio/PCMA, audio/G722 (8000 Hz, 1 channel), video/VP8, video/VP9, video/H264,
/// video/AV1 or video/H265 (90000 Hz). Payload types: a free `preferred_payload_type`
/// (0..=127) is kept; PCMU/PCMA/G722 then get their static payload type when free; all other
/// codecs get dynamic payload types (100..=127, 96..=99, 35..=63). Every video codec is
/// followed by a `video/rtx` codec whose `apt` is its payload type. RTCP feedback is set by
/// the router; parameters given by the application are kept. The header extensions are the
/// fixed set described in [`ext_uri`].
pub fn generate_router_rtp_capabilities(
    media_codecs: &[RtpCodecCapability],
) -> Result<RtpCapabilities, OrtcError> {
    let mut prepared: Vec<(RtpCodecCapability, Option<u8>)> = Vec::new();

    for media_codec in media_codecs {
        let mime = &media_codec.mime_type;
        let (mime_kind, sub) = parse_mime(mime)
            .ok_or_else(|| OrtcError::InvalidParameters(format!("invalid mime type {mime:?}")))?;
        if mime_kind != media_codec.kind {
            return Err(OrtcError::InvalidParameters(format!(
                "mime type {mime:?} does not match kind {:?}",
                media_codec.kind.as_str()
            )));
        }
        if sub.eq_ignore_ascii_case("rtx") {
            return Err(OrtcError::InvalidParameters(
                "rtx codecs are added by the router and must not be configured".into(),
            ));
        }
        let supported = SUPPORTED_CODECS
            .iter()
            .find(|s| s.kind == mime_kind && s.mime_type.eq_ignore_ascii_case(mime))
            .ok_or_else(|| OrtcError::UnsupportedCodec(mime.clone()))?;
        if media_codec.clock_rate != supported.clock_rate {
            return Err(OrtcError::InvalidParameters(format!(
                "invalid clock rate {} for {} (expected {})",
                media_codec.clock_rate, supported.mime_type, supported.clock_rate
            )));
        }
        let channels = match (supported.kind, media_codec.channels) {
            (MediaKind::Video, _) => None,
            (MediaKind::Audio, None) => supported.channels,
            (MediaKind::Audio, Some(c)) if Some(c) == supported.channels => Some(c),
            (MediaKind::Audio, Some(c)) => {
                return Err(OrtcError::InvalidParameters(format!(
                    "invalid channels {c} for {}",
                    supported.mime_type
                )))
            }
        };
        let codec = RtpCodecCapability {
            kind: supported.kind,
            mime_type: supported.mime_type.to_owned(),
            preferred_payload_type: None,
            clock_rate: supported.clock_rate,
            channels,
            parameters: media_codec.parameters.clone(),
            rtcp_feedback: supported.feedback.build(),
        };
        if prepared
            .iter()
            .any(|(other, _)| codecs_match(&CodecView::cap(other), &CodecView::cap(&codec)))
        {
            return Err(OrtcError::DuplicateCodec(supported.mime_type.to_owned()));
        }
        prepared.push((codec, media_codec.preferred_payload_type));
    }

    // Payload type assignment: preferred first, then static, then dynamic.
    let mut used: HashSet<u8> = HashSet::new();
    let mut assigned: Vec<Option<u8>> = vec![None; prepared.len()];
    for (slot, (_, preferred)) in assigned.iter_mut().zip(&prepared) {
        if let Some(pt) = *preferred {
            if pt <= 127 && used.insert(pt) {
                *slot = Some(pt);
            }
        }
    }
    for (slot, (codec, _)) in assigned.iter_mut().zip(&prepared) {
        if slot.is_none() {
            let static_pt = SUPPORTED_CODECS
                .iter()
                .find(|s| s.mime_type == codec.mime_type)
                .and_then(|s| s.static_payload_type);
            if let Some(pt) = static_pt {
                if used.insert(pt) {
                    *slot = Some(pt);
                }
            }
        }
    }
    let next_dynamic = |used: &mut HashSet<u8>| -> Result<u8, OrtcError> {
        let pt = dynamic_payload_types()
            .find(|pt| !used.contains(pt))
            .ok_or(OrtcError::PayloadTypesExhausted)?;
        used.insert(pt);
        Ok(pt)
    };

    let mut caps = RtpCapabilities::default();
    for ((mut codec, _), slot) in prepared.into_iter().zip(assigned) {
        let pt = match slot {
            Some(pt) => pt,
            None => next_dynamic(&mut used)?,
        };
        codec.preferred_payload_type = Some(pt);
        let is_video = codec.kind == MediaKind::Video;
        let clock_rate = codec.clock_rate;
        caps.codecs.push(codec);
        if is_video {
            let rtx_pt = next_dynamic(&mut used)?;
            let mut parameters = CodecParameters::new();
            parameters.insert("apt".to_owned(), ParameterValue::from(pt));
            caps.codecs.push(RtpCodecCapability {
                kind: MediaKind::Video,
                mime_type: "video/rtx".to_owned(),
                preferred_payload_type: Some(rtx_pt),
                clock_rate,
                channels: None,
                parameters,
                rtcp_feedback: Vec::new(),
            });
        }
    }

    caps.header_extensions = ROUTER_HEADER_EXTENSIONS
        .iter()
        .map(|&(kind, uri, id)| RtpHeaderExtension {
            kind,
            uri: uri.to_owned(),
            preferred_id: id,
            preferred_encrypt: false,
            direction: Some(RtpHeaderExtensionDirection::Sendrecv),
        })
        .collect();

    Ok(caps)
}

/// Mapping from a producer's payload types to the router's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RtpMapping {
    /// One entry per mapped producer codec (media and rtx).
    pub codecs: Vec<CodecMapping>,
}

impl RtpMapping {
    /// The router payload type the producer payload type `pt` maps to.
    pub fn mapped_payload_type(&self, pt: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.payload_type == pt)
            .map(|c| c.mapped_payload_type)
    }

    /// The producer payload type that maps to router payload type `mapped`.
    pub fn producer_payload_type(&self, mapped: u8) -> Option<u8> {
        self.codecs
            .iter()
            .find(|c| c.mapped_payload_type == mapped)
            .map(|c| c.payload_type)
    }
}

/// Mapping of one producer codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecMapping {
    /// Payload type used by the producer.
    pub payload_type: u8,
    /// Payload type of the matching router codec.
    pub mapped_payload_type: u8,
}

/// Validates producer RTP parameters received from a client.
///
/// Checks: codecs non-empty; mime types well formed (`audio/..` or `video/..`, all of the
/// same kind); clock rates non-zero; payload types in 0..=127 and unique; rtx codecs have an
/// `apt` naming a present non-rtx codec; encodings non-empty (at most [`MAX_ENCODINGS`]);
/// every encoding has an `ssrc` or a `rid`; rids well formed and unique; ssrcs (media and
/// rtx) non-zero and unique; an encoding's `codecPayloadType` names a present codec; header
/// extension ids in 1..=14 and unique.
pub fn validate_rtp_parameters(params: &RtpParameters) -> Result<(), OrtcError> {
    let invalid = |msg: String| Err(OrtcError::InvalidParameters(msg));

    if params.codecs.is_empty() {
        return invalid("no codecs".into());
    }
    let mut kind: Option<MediaKind> = None;
    let mut pts: HashSet<u8> = HashSet::new();
    for codec in &params.codecs {
        let Some((k, _)) = parse_mime(&codec.mime_type) else {
            return invalid(format!("invalid mime type {:?}", codec.mime_type));
        };
        match kind {
            None => kind = Some(k),
            Some(prev) if prev != k => return invalid("codecs of different kinds".into()),
            Some(_) => {}
        }
        if codec.clock_rate == 0 {
            return invalid(format!("invalid clock rate 0 for {}", codec.mime_type));
        }
        if codec.payload_type > 127 {
            return invalid(format!("invalid payload type {}", codec.payload_type));
        }
        if !pts.insert(codec.payload_type) {
            return invalid(format!("duplicate payload type {}", codec.payload_type));
        }
    }
    for codec in params.codecs.iter().filter(|c| c.is_rtx()) {
        let Some(apt) = codec.apt() else {
            return invalid(format!(
                "rtx codec {} without valid apt",
                codec.payload_type
            ));
        };
        let ok = params
            .codecs
            .iter()
            .any(|c| c.payload_type == apt && !c.is_rtx());
        if !ok {
            return invalid(format!(
                "rtx codec {} has apt {apt} not naming a media codec",
                codec.payload_type
            ));
        }
    }

    if params.encodings.is_empty() {
        return invalid("no encodings".into());
    }
    if params.encodings.len() > MAX_ENCODINGS {
        return invalid(format!("too many encodings ({})", params.encodings.len()));
    }
    let mut rids: HashSet<&str> = HashSet::new();
    let mut ssrcs: HashSet<u32> = HashSet::new();
    for encoding in &params.encodings {
        if encoding.ssrc.is_none() && encoding.rid.is_none() {
            return invalid("encoding without ssrc and rid".into());
        }
        if let Some(rid) = &encoding.rid {
            let well_formed = !rid.is_empty()
                && rid.len() <= 255
                && rid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !well_formed {
                return invalid(format!("invalid rid {rid:?}"));
            }
            if !rids.insert(rid) {
                return invalid(format!("duplicate rid {rid:?}"));
            }
        }
        let rtx_ssrc = encoding.rtx.as_ref().map(|r| r.ssrc);
        for ssrc in encoding.ssrc.into_iter().chain(rtx_ssrc) {
            if ssrc == 0 {
                return invalid("ssrc 0".into());
            }
            if !ssrcs.insert(ssrc) {
                return invalid(format!("duplicate ssrc {ssrc}"));
            }
        }
        if let Some(pt) = encoding.codec_payload_type {
            if !pts.contains(&pt) {
                return invalid(format!("encoding codecPayloadType {pt} names no codec"));
            }
        }
    }

    let mut ids: HashSet<u8> = HashSet::new();
    for ext in &params.header_extensions {
        if !(1..=14).contains(&ext.id) {
            return invalid(format!("invalid header extension id {}", ext.id));
        }
        if !ids.insert(ext.id) {
            return invalid(format!("duplicate header extension id {}", ext.id));
        }
    }
    Ok(())
}

/// A borrowed view on the fields codec matching looks at.
struct CodecView<'a> {
    mime_type: &'a str,
    clock_rate: u32,
    channels: Option<u8>,
    parameters: &'a CodecParameters,
}

impl<'a> CodecView<'a> {
    fn cap(c: &'a RtpCodecCapability) -> Self {
        CodecView {
            mime_type: &c.mime_type,
            clock_rate: c.clock_rate,
            channels: c.channels,
            parameters: &c.parameters,
        }
    }

    fn params(c: &'a RtpCodecParameters) -> Self {
        CodecView {
            mime_type: &c.mime_type,
            clock_rate: c.clock_rate,
            channels: c.channels,
            parameters: &c.parameters,
        }
    }
}

/// Reads an unsigned parameter with a default when absent; `None` when present but invalid.
fn param_u32_or(params: &CodecParameters, key: &str, default: u32) -> Option<u32> {
    match params.get(key) {
        None => Some(default),
        Some(v) => v.as_u32(),
    }
}

/// H.264 profiles as in the `h264-profile-level-id` rules (RFC 6184 table 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    PredictiveHigh444,
}

/// Parses the profile of an H.264 `profile-level-id` (default `42e01f` when absent).
fn h264_profile(params: &CodecParameters) -> Option<H264Profile> {
    let plid = match params.get("profile-level-id") {
        None => "42e01f",
        Some(ParameterValue::String(s)) => s.as_str(),
        Some(_) => return None,
    };
    if plid.len() != 6 || !plid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let profile_idc = u8::from_str_radix(plid.get(0..2)?, 16).ok()?;
    let iop = u8::from_str_radix(plid.get(2..4)?, 16).ok()?;
    // Patterns: (profile_idc, mask, value, profile), checked on the profile_iop byte.
    const PATTERNS: &[(u8, u8, u8, H264Profile)] = &[
        (
            0x42,
            0b0100_1111,
            0b0100_0000,
            H264Profile::ConstrainedBaseline,
        ),
        (
            0x4d,
            0b1000_1111,
            0b1000_0000,
            H264Profile::ConstrainedBaseline,
        ),
        (
            0x58,
            0b1100_1111,
            0b1100_0000,
            H264Profile::ConstrainedBaseline,
        ),
        (0x42, 0b0100_1111, 0b0000_0000, H264Profile::Baseline),
        (0x58, 0b1100_1111, 0b1000_0000, H264Profile::Baseline),
        (0x4d, 0b1000_1111, 0b0000_0000, H264Profile::Main),
        (0x64, 0b1111_1111, 0b0000_0000, H264Profile::High),
        (0x64, 0b1111_1111, 0b0000_1100, H264Profile::ConstrainedHigh),
        (
            0xf4,
            0b1111_1111,
            0b0000_0000,
            H264Profile::PredictiveHigh444,
        ),
    ];
    PATTERNS
        .iter()
        .find(|&&(idc, mask, value, _)| idc == profile_idc && iop & mask == value)
        .map(|&(_, _, _, p)| p)
}

/// Same H.264 profile, treating Baseline and Constrained Baseline as compatible (WebRTC
/// encoders produce Constrained Baseline streams for both).
fn h264_same_profile(a: &CodecParameters, b: &CodecParameters) -> bool {
    use H264Profile::{Baseline, ConstrainedBaseline};
    match (h264_profile(a), h264_profile(b)) {
        (Some(x), Some(y)) => {
            x == y
                || matches!(
                    (x, y),
                    (Baseline, ConstrainedBaseline) | (ConstrainedBaseline, Baseline)
                )
        }
        _ => false,
    }
}

/// mediasoup's strict codec matching.
fn codecs_match(a: &CodecView<'_>, b: &CodecView<'_>) -> bool {
    if !a.mime_type.eq_ignore_ascii_case(b.mime_type) {
        return false;
    }
    if a.clock_rate != b.clock_rate {
        return false;
    }
    let Some((kind, sub)) = parse_mime(a.mime_type) else {
        return false;
    };
    if kind == MediaKind::Audio && a.channels.unwrap_or(1) != b.channels.unwrap_or(1) {
        return false;
    }
    if sub.eq_ignore_ascii_case("h264") {
        let pm_a = param_u32_or(a.parameters, "packetization-mode", 0);
        let pm_b = param_u32_or(b.parameters, "packetization-mode", 0);
        if pm_a.is_none() || pm_a != pm_b {
            return false;
        }
        if !h264_same_profile(a.parameters, b.parameters) {
            return false;
        }
    } else if sub.eq_ignore_ascii_case("vp9") {
        let pa = param_u32_or(a.parameters, "profile-id", 0);
        let pb = param_u32_or(b.parameters, "profile-id", 0);
        if pa.is_none() || pa != pb {
            return false;
        }
    }
    true
}

/// Whether codec parameters `codec` match capability `cap` under mediasoup's strict rules:
/// same mime type (case-insensitive) and clock rate, same channels for audio (default 1),
/// for H.264 the same packetization-mode (default 0) and profile (Baseline and Constrained
/// Baseline are treated as compatible), for VP9 the same profile-id (default 0).
pub fn codec_matches_capability(codec: &RtpCodecParameters, cap: &RtpCodecCapability) -> bool {
    codecs_match(&CodecView::params(codec), &CodecView::cap(cap))
}

/// Validates producer parameters and maps their payload types to the router's.
///
/// Every non-rtx codec that matches a router codec is mapped to it; every rtx codec whose
/// media codec was mapped is mapped to the router rtx codec whose `apt` is that router
/// codec's payload type. Producer codecs the router does not support (and rtx codecs without
/// a router counterpart) are left out of the mapping rather than rejected; mediasoup rejects
/// them instead, which makes no difference for mediasoup-client, which sends one codec.
/// Errors when no codec matched, or when an encoding's `codecPayloadType` names an unmapped
/// codec.
pub fn get_producer_rtp_mapping(
    params: &RtpParameters,
    caps: &RtpCapabilities,
) -> Result<RtpMapping, OrtcError> {
    validate_rtp_parameters(params)?;
    let mut mapping = RtpMapping::default();

    for codec in params.codecs.iter().filter(|c| !c.is_rtx()) {
        let view = CodecView::params(codec);
        let matched = caps
            .codecs
            .iter()
            .filter(|cap| !is_rtx_mime(&cap.mime_type))
            .find(|cap| codecs_match(&view, &CodecView::cap(cap)));
        if let Some(pt) = matched.and_then(|c| c.preferred_payload_type) {
            mapping.codecs.push(CodecMapping {
                payload_type: codec.payload_type,
                mapped_payload_type: pt,
            });
        }
    }
    if mapping.codecs.is_empty() {
        let first = params
            .codecs
            .iter()
            .find(|c| !c.is_rtx())
            .map(|c| c.mime_type.clone())
            .unwrap_or_default();
        return Err(OrtcError::UnsupportedCodec(first));
    }

    let mut rtx_mappings = Vec::new();
    for codec in params.codecs.iter().filter(|c| c.is_rtx()) {
        let Some(router_media_pt) = codec.apt().and_then(|apt| mapping.mapped_payload_type(apt))
        else {
            continue;
        };
        let router_rtx = caps.codecs.iter().find(|cap| {
            is_rtx_mime(&cap.mime_type)
                && codec_param_u32(&cap.parameters, "apt") == Some(u32::from(router_media_pt))
        });
        if let Some(pt) = router_rtx.and_then(|c| c.preferred_payload_type) {
            rtx_mappings.push(CodecMapping {
                payload_type: codec.payload_type,
                mapped_payload_type: pt,
            });
        }
    }
    mapping.codecs.extend(rtx_mappings);

    for encoding in &params.encodings {
        if let Some(pt) = encoding.codec_payload_type {
            if mapping.mapped_payload_type(pt).is_none() {
                return Err(OrtcError::InvalidParameters(format!(
                    "encoding codecPayloadType {pt} names an unsupported codec"
                )));
            }
        }
    }
    Ok(mapping)
}

/// Merges codec parameters: `base` overlaid with `overlay`.
fn merge_parameters(base: &CodecParameters, overlay: &CodecParameters) -> CodecParameters {
    let mut merged: BTreeMap<String, ParameterValue> = base.clone();
    for (k, v) in overlay {
        merged.insert(k.clone(), v.clone());
    }
    merged
}

/// True when a capability header extension direction lets the router send it.
fn router_may_send(direction: Option<RtpHeaderExtensionDirection>) -> bool {
    matches!(
        direction,
        None | Some(RtpHeaderExtensionDirection::Sendrecv)
            | Some(RtpHeaderExtensionDirection::Sendonly)
    )
}

/// Builds the "consumable" RTP parameters of a producer: the producer's streams expressed
/// with the router's payload types, extensions and feedback.
///
/// Codecs: for each mapped producer media codec, the router codec (router payload type,
/// router parameters overlaid with the producer's parameters, router RTCP feedback),
/// followed by the router's rtx codec for it if any. Header extensions: the router
/// extensions of `kind` with direction sendrecv/sendonly. Encodings: one per producer
/// encoding, keeping ssrc, rid, scalability mode, bitrate, dtx etc., without rtx and with
/// `codecPayloadType` mapped to the router's. RTCP: producer cname, reduced size, mux.
pub fn get_consumable_rtp_parameters(
    kind: MediaKind,
    params: &RtpParameters,
    caps: &RtpCapabilities,
    mapping: &RtpMapping,
) -> RtpParameters {
    let mut codecs = Vec::new();
    for codec in params.codecs.iter().filter(|c| !c.is_rtx()) {
        let Some(router_pt) = mapping.mapped_payload_type(codec.payload_type) else {
            continue;
        };
        let Some(cap) = caps
            .codecs
            .iter()
            .find(|c| c.preferred_payload_type == Some(router_pt) && !is_rtx_mime(&c.mime_type))
        else {
            continue;
        };
        if codecs
            .iter()
            .any(|c: &RtpCodecParameters| c.payload_type == router_pt)
        {
            continue;
        }
        codecs.push(RtpCodecParameters {
            mime_type: cap.mime_type.clone(),
            payload_type: router_pt,
            clock_rate: cap.clock_rate,
            channels: cap.channels,
            parameters: merge_parameters(&cap.parameters, &codec.parameters),
            rtcp_feedback: cap.rtcp_feedback.clone(),
        });
        let rtx = caps.codecs.iter().find(|c| {
            is_rtx_mime(&c.mime_type)
                && codec_param_u32(&c.parameters, "apt") == Some(u32::from(router_pt))
        });
        if let Some((rtx, rtx_pt)) = rtx.and_then(|r| r.preferred_payload_type.map(|pt| (r, pt))) {
            codecs.push(RtpCodecParameters {
                mime_type: rtx.mime_type.clone(),
                payload_type: rtx_pt,
                clock_rate: rtx.clock_rate,
                channels: None,
                parameters: rtx.parameters.clone(),
                rtcp_feedback: rtx.rtcp_feedback.clone(),
            });
        }
    }

    let header_extensions = caps
        .header_extensions
        .iter()
        .filter(|e| e.kind == kind && router_may_send(e.direction))
        .map(|e| RtpHeaderExtensionParameters {
            uri: e.uri.clone(),
            id: e.preferred_id,
            encrypt: e.preferred_encrypt,
            parameters: CodecParameters::new(),
        })
        .collect();

    let encodings = params
        .encodings
        .iter()
        .map(|e| RtpEncodingParameters {
            rtx: None,
            codec_payload_type: e
                .codec_payload_type
                .and_then(|pt| mapping.mapped_payload_type(pt)),
            ..e.clone()
        })
        .collect();

    RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings,
        rtcp: RtcpParameters {
            cname: params.rtcp.cname.clone(),
            reduced_size: Some(true),
            mux: Some(true),
        },
    }
}

/// Whether a device with capabilities `caps` can consume a producer with the given
/// consumable parameters: at least one non-rtx codec matches a capability codec.
pub fn can_consume(consumable: &RtpParameters, caps: &RtpCapabilities) -> bool {
    consumable.codecs.iter().filter(|c| !c.is_rtx()).any(|c| {
        caps.codecs
            .iter()
            .any(|cap| codec_matches_capability(c, cap))
    })
}

/// Spatial and temporal layer counts of a scalability mode such as `L1T3` or `S3T3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalabilityMode {
    /// Number of spatial layers (1..=99).
    pub spatial_layers: u8,
    /// Number of temporal layers (1..=99).
    pub temporal_layers: u8,
    /// Whether the mode is K-SVC (`_KEY` suffix).
    pub ksvc: bool,
}

impl Default for ScalabilityMode {
    fn default() -> Self {
        ScalabilityMode {
            spatial_layers: 1,
            temporal_layers: 1,
            ksvc: false,
        }
    }
}

/// Parses a scalability mode (`[LS]<spatial>T<temporal>[_KEY...]`), like mediasoup;
/// returns one spatial and one temporal layer for `None` or a malformed mode.
pub fn parse_scalability_mode(mode: Option<&str>) -> ScalabilityMode {
    fn layers(s: &str) -> Option<(u8, &str)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 2 {
            return None;
        }
        let n: u8 = s.get(..digits)?.parse().ok()?;
        (n >= 1).then_some((n, s.get(digits..)?))
    }
    let parse = |m: &str| -> Option<ScalabilityMode> {
        let rest = m.strip_prefix('L').or_else(|| m.strip_prefix('S'))?;
        let (spatial, rest) = layers(rest)?;
        let rest = rest.strip_prefix('T')?;
        let (temporal, rest) = layers(rest)?;
        Some(ScalabilityMode {
            spatial_layers: spatial,
            temporal_layers: temporal,
            ksvc: rest.starts_with("_KEY"),
        })
    };
    mode.and_then(parse).unwrap_or_default()
}

/// True when a remote capability header extension direction lets the remote receive it.
fn remote_may_receive(direction: Option<RtpHeaderExtensionDirection>) -> bool {
    matches!(
        direction,
        None | Some(RtpHeaderExtensionDirection::Sendrecv)
            | Some(RtpHeaderExtensionDirection::Recvonly)
    )
}

/// Builds a consumer's RTP parameters from a producer's consumable parameters and the
/// consuming device's RTP capabilities.
///
/// Codecs: the first consumable media codec matching a remote codec (consumable payload
/// type kept, RTCP feedback reduced to the entries the remote codec also lists), followed by
/// its consumable rtx codec when the remote capabilities list any rtx codec. Unlike
/// mediasoup, which keeps every matching codec, only the first match is kept. Header
/// extensions: the consumable ones whose URI the remote lists for the same kind with a
/// direction allowing reception. Feedback is then reduced as mediasoup does: with
/// transport-cc negotiated `goog-remb` is dropped, else with abs-send-time `transport-cc` is
/// dropped, else both are. Encodings: exactly one, without ssrc and rtx (the caller fills
/// them in), with the largest `maxBitrate` of the consumable encodings and, for simulcast
/// (several encodings), scalability mode `S{n}T{t}` where `t` is the first encoding's
/// temporal layer count (else the consumable scalability mode, if any). RTCP: consumable
/// cname, reduced size, mux. `mid` is left unset.
pub fn get_consumer_rtp_parameters(
    consumable: &RtpParameters,
    remote_caps: &RtpCapabilities,
) -> Result<RtpParameters, OrtcError> {
    let mut codecs = Vec::new();
    let matched = consumable
        .codecs
        .iter()
        .filter(|c| !c.is_rtx())
        .find_map(|c| {
            remote_caps
                .codecs
                .iter()
                .find(|cap| codec_matches_capability(c, cap))
                .map(|cap| (c, cap))
        });
    let Some((media, remote_codec)) = matched else {
        return Err(OrtcError::NoMatchingCodec);
    };
    let kind = parse_mime(&media.mime_type)
        .map(|(k, _)| k)
        .ok_or_else(|| OrtcError::InvalidParameters("invalid mime type".into()))?;
    let mut media_codec = media.clone();
    media_codec
        .rtcp_feedback
        .retain(|fb| remote_codec.rtcp_feedback.contains(fb));
    codecs.push(media_codec);

    let remote_has_rtx = remote_caps.codecs.iter().any(|c| is_rtx_mime(&c.mime_type));
    if remote_has_rtx {
        if let Some(rtx) = consumable
            .codecs
            .iter()
            .find(|c| c.is_rtx() && c.apt() == Some(media.payload_type))
        {
            codecs.push(rtx.clone());
        }
    }

    let header_extensions: Vec<RtpHeaderExtensionParameters> = consumable
        .header_extensions
        .iter()
        .filter(|ext| {
            remote_caps.header_extensions.iter().any(|cap| {
                cap.kind == kind
                    && cap.uri.eq_ignore_ascii_case(&ext.uri)
                    && remote_may_receive(cap.direction)
            })
        })
        .cloned()
        .collect();

    let has_ext = |uri: &str| {
        header_extensions
            .iter()
            .any(|e| e.uri.eq_ignore_ascii_case(uri))
    };
    let drop_fb: &[&str] = if has_ext(ext_uri::TRANSPORT_CC) {
        &["goog-remb"]
    } else if has_ext(ext_uri::ABS_SEND_TIME) {
        &["transport-cc"]
    } else {
        &["transport-cc", "goog-remb"]
    };
    for codec in &mut codecs {
        codec
            .rtcp_feedback
            .retain(|fb| !drop_fb.contains(&fb.kind.as_str()));
    }

    let first_mode = consumable
        .encodings
        .first()
        .and_then(|e| e.scalability_mode.as_deref());
    let scalability_mode = if consumable.encodings.len() > 1 {
        let temporal = parse_scalability_mode(first_mode).temporal_layers;
        Some(format!("S{}T{}", consumable.encodings.len(), temporal))
    } else {
        first_mode.map(str::to_owned)
    };
    let max_bitrate = consumable
        .encodings
        .iter()
        .filter_map(|e| e.max_bitrate)
        .max();

    Ok(RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings: vec![RtpEncodingParameters {
            scalability_mode,
            max_bitrate,
            ..RtpEncodingParameters::default()
        }],
        rtcp: RtcpParameters {
            cname: consumable.rtcp.cname.clone(),
            reduced_size: Some(true),
            mux: Some(true),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(mime: &str, clock_rate: u32, params: &[(&str, ParameterValue)]) -> RtpCodecCapability {
        let kind = if mime.starts_with("audio") {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        RtpCodecCapability {
            kind,
            mime_type: mime.into(),
            preferred_payload_type: None,
            clock_rate,
            channels: None,
            parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            rtcp_feedback: Vec::new(),
        }
    }

    fn h264(pm: i64, plid: &str) -> RtpCodecCapability {
        codec(
            "video/H264",
            90000,
            &[
                ("packetization-mode", pm.into()),
                ("profile-level-id", plid.into()),
            ],
        )
    }

    fn pts(caps: &RtpCapabilities) -> Vec<(String, u8)> {
        caps.codecs
            .iter()
            .map(|c| (c.mime_type.clone(), c.preferred_payload_type.unwrap_or(255)))
            .collect()
    }

    #[test]
    fn payload_type_assignment() {
        let mut vp9 = codec("video/VP9", 90000, &[]);
        vp9.preferred_payload_type = Some(100);
        let mut pcma = codec("audio/PCMA", 8000, &[]);
        pcma.preferred_payload_type = Some(200); // invalid: gets its static PT
        let caps = generate_router_rtp_capabilities(&[
            codec("audio/opus", 48000, &[]),
            vp9,
            codec("audio/pcmu", 8000, &[]),
            pcma,
        ])
        .unwrap();
        assert_eq!(
            pts(&caps),
            vec![
                ("audio/opus".into(), 101),
                ("video/VP9".into(), 100),
                ("video/rtx".into(), 102),
                ("audio/PCMU".into(), 0),
                ("audio/PCMA".into(), 8),
            ]
        );
        assert_eq!(caps.codecs[0].channels, Some(2));
        assert_eq!(caps.codecs[3].channels, Some(1));
        assert_eq!(
            caps.codecs[3].rtcp_feedback,
            vec![RtcpFeedback::new("transport-cc", "")]
        );
    }

    #[test]
    fn payload_types_run_out() {
        // 30 distinct H264 variants need 60 PTs: fits (61 dynamic PTs).
        let ok: Vec<_> = (0..30).map(|pm| h264(pm, "42e01f")).collect();
        let caps = generate_router_rtp_capabilities(&ok).unwrap();
        let last = caps.codecs.last().and_then(|c| c.preferred_payload_type);
        assert_eq!(last, Some(62));
        let too_many: Vec<_> = (0..31).map(|pm| h264(pm, "42e01f")).collect();
        assert_eq!(
            generate_router_rtp_capabilities(&too_many),
            Err(OrtcError::PayloadTypesExhausted)
        );
    }

    #[test]
    fn h264_matching() {
        let router = h264(1, "42e01f");
        let view =
            |c: &RtpCodecCapability| codecs_match(&CodecView::cap(c), &CodecView::cap(&router));
        assert!(view(&h264(1, "42e01f")));
        assert!(view(&h264(1, "42e034"))); // level differs
        assert!(view(&h264(1, "42001f"))); // baseline vs constrained baseline: lenient
        assert!(view(&h264(1, "4de01f"))); // constrained baseline via main + constraint_set1
        assert!(!view(&h264(0, "42e01f"))); // packetization mode differs
        assert!(!view(&h264(1, "4d001f"))); // main
        assert!(!view(&h264(1, "640032"))); // high
        assert!(!view(&h264(1, "zzzzzz")));
        assert!(!view(&h264(1, "42e0")));
        let default = codec("video/H264", 90000, &[]);
        assert!(codecs_match(
            &CodecView::cap(&default),
            &CodecView::cap(&h264(0, "42e01f"))
        ));
    }

    #[test]
    fn vp9_and_audio_matching() {
        let p0 = codec("video/VP9", 90000, &[]);
        let p0b = codec("video/vp9", 90000, &[("profile-id", 0i64.into())]);
        let p2 = codec("video/VP9", 90000, &[("profile-id", "2".into())]);
        assert!(codecs_match(&CodecView::cap(&p0), &CodecView::cap(&p0b)));
        assert!(!codecs_match(&CodecView::cap(&p0), &CodecView::cap(&p2)));
        let mut mono = codec("audio/opus", 48000, &[]);
        let mut stereo = mono.clone();
        stereo.channels = Some(2);
        assert!(!codecs_match(
            &CodecView::cap(&mono),
            &CodecView::cap(&stereo)
        ));
        mono.channels = Some(1);
        assert!(!codecs_match(
            &CodecView::cap(&mono),
            &CodecView::cap(&stereo)
        ));
        let opus16 = codec("audio/opus", 16000, &[]);
        assert!(!codecs_match(
            &CodecView::cap(&opus16),
            &CodecView::cap(&mono)
        ));
    }

    #[test]
    fn scalability_modes() {
        let m = |s: Option<&str>| {
            let r = parse_scalability_mode(s);
            (r.spatial_layers, r.temporal_layers, r.ksvc)
        };
        assert_eq!(m(Some("L1T3")), (1, 3, false));
        assert_eq!(m(Some("S3T3")), (3, 3, false));
        assert_eq!(m(Some("L3T2_KEY")), (3, 2, true));
        assert_eq!(m(Some("L12T10")), (12, 10, false));
        assert_eq!(m(Some("L0T3")), (1, 1, false));
        assert_eq!(m(Some("L123T3")), (1, 1, false));
        assert_eq!(m(Some("X1T3")), (1, 1, false));
        assert_eq!(m(Some("L1")), (1, 1, false));
        assert_eq!(m(Some("")), (1, 1, false));
        assert_eq!(m(None), (1, 1, false));
    }

    #[test]
    fn header_extension_table() {
        for (i, &(kind, uri, id)) in ROUTER_HEADER_EXTENSIONS.iter().enumerate() {
            // One-byte form ids, one id per URI, one URI per id, each (kind, uri) once.
            assert!((1..=14).contains(&id), "{uri}");
            assert_eq!(header_extension_id(uri), Some(id), "{uri}");
            assert_eq!(header_extension_uri(id), Some(uri), "{id}");
            assert!(!ROUTER_HEADER_EXTENSIONS[..i]
                .iter()
                .any(|&(k, u, _)| k == kind && u == uri));
        }
        let offered = |kind, uri| {
            ROUTER_HEADER_EXTENSIONS
                .iter()
                .any(|&(k, u, _)| k == kind && u == uri)
        };
        assert_eq!(header_extension_id(ext_uri::PLAYOUT_DELAY), Some(5));
        assert_eq!(header_extension_id(ext_uri::ABS_CAPTURE_TIME), Some(6));
        assert_eq!(
            header_extension_id(ext_uri::DEPENDENCY_DESCRIPTOR),
            Some(12)
        );
        for kind in [MediaKind::Audio, MediaKind::Video] {
            assert!(offered(kind, ext_uri::PLAYOUT_DELAY));
            assert!(offered(kind, ext_uri::ABS_CAPTURE_TIME));
        }
        assert!(offered(MediaKind::Video, ext_uri::DEPENDENCY_DESCRIPTOR));
        assert!(!offered(MediaKind::Audio, ext_uri::DEPENDENCY_DESCRIPTOR));
        assert_eq!(
            header_extension_id(&ext_uri::DEPENDENCY_DESCRIPTOR.to_uppercase()),
            Some(12)
        );
        assert_eq!(
            header_extension_id(
                "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00"
            ),
            None
        );
        assert_eq!(header_extension_uri(7), None);
    }

    #[test]
    fn mapping_lookups() {
        let m = RtpMapping {
            codecs: vec![CodecMapping {
                payload_type: 96,
                mapped_payload_type: 101,
            }],
        };
        assert_eq!(m.mapped_payload_type(96), Some(101));
        assert_eq!(m.producer_payload_type(101), Some(96));
        assert_eq!(m.mapped_payload_type(97), None);
    }
}
