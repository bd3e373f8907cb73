//! Serde data model for the ORTC objects exchanged with mediasoup-client.
//!
//! Field names follow mediasoup's JSON (camelCase). Unknown incoming fields are ignored so
//! that newer clients sending extra keys keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::negotiate::OrtcError;

/// Media kind of a codec, header extension, producer or consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// `"audio"`.
    Audio,
    /// `"video"`.
    Video,
}

impl MediaKind {
    /// The lowercase string used in JSON and in mime types (`"audio"` / `"video"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// One value of a codec (fmtp) parameter: a JSON number or a JSON string.
///
/// Integers round-trip as integers (`{"apt": 101}`), non-integral numbers as floats and
/// strings as strings (`{"profile-level-id": "42e01f"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParameterValue {
    /// An integral JSON number.
    Number(i64),
    /// A non-integral (or out of `i64` range) JSON number.
    Float(f64),
    /// A JSON string.
    String(String),
}

impl ParameterValue {
    /// The value as a `u32`, accepting integral numbers and decimal numeric strings.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            ParameterValue::Number(n) => u32::try_from(*n).ok(),
            ParameterValue::Float(_) => None,
            ParameterValue::String(s) => s.trim().parse::<u32>().ok(),
        }
    }

    /// The value as a string slice, if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParameterValue::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<i64> for ParameterValue {
    fn from(v: i64) -> Self {
        ParameterValue::Number(v)
    }
}

impl From<u8> for ParameterValue {
    fn from(v: u8) -> Self {
        ParameterValue::Number(i64::from(v))
    }
}

impl From<u32> for ParameterValue {
    fn from(v: u32) -> Self {
        ParameterValue::Number(i64::from(v))
    }
}

impl From<&str> for ParameterValue {
    fn from(v: &str) -> Self {
        ParameterValue::String(v.to_owned())
    }
}

impl From<String> for ParameterValue {
    fn from(v: String) -> Self {
        ParameterValue::String(v)
    }
}

/// Codec specific parameters (the SDP `a=fmtp` line), keyed by parameter name.
pub type CodecParameters = BTreeMap<String, ParameterValue>;

/// Reads parameter `key` as a `u32`, accepting integral numbers and numeric strings.
pub fn codec_param_u32(params: &CodecParameters, key: &str) -> Option<u32> {
    params.get(key).and_then(ParameterValue::as_u32)
}

/// One RTCP feedback mechanism supported by a codec (`a=rtcp-fb`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpFeedback {
    /// Feedback type, e.g. `"nack"`, `"ccm"`, `"goog-remb"`, `"transport-cc"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Feedback parameter, e.g. `"pli"` or `"fir"`; `""` when none (always serialized).
    #[serde(default)]
    pub parameter: String,
}

impl RtcpFeedback {
    /// Builds a feedback entry.
    pub fn new(kind: impl Into<String>, parameter: impl Into<String>) -> Self {
        RtcpFeedback {
            kind: kind.into(),
            parameter: parameter.into(),
        }
    }
}

/// A codec as listed in RTP capabilities (router media codec input or capabilities entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecCapability {
    /// Media kind.
    pub kind: MediaKind,
    /// Mime type, e.g. `"video/VP8"`.
    pub mime_type: String,
    /// Preferred payload type (assigned by the router in its capabilities).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_payload_type: Option<u8>,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Number of audio channels (audio only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Codec specific parameters.
    #[serde(default)]
    pub parameters: CodecParameters,
    /// Supported RTCP feedback.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

impl RtpCodecCapability {
    /// A media codec for [`RouterOptions`](crate::RouterOptions): no preferred payload type (the
    /// router assigns one), no parameters, no feedback (the router adds what it supports).
    pub fn new(kind: MediaKind, mime_type: &str, clock_rate: u32, channels: Option<u8>) -> Self {
        Self {
            kind,
            mime_type: mime_type.into(),
            preferred_payload_type: None,
            clock_rate,
            channels,
            parameters: CodecParameters::new(),
            rtcp_feedback: Vec::new(),
        }
    }

    /// Opus, 48 kHz stereo.
    pub fn opus() -> Self {
        Self::new(MediaKind::Audio, "audio/opus", 48_000, Some(2))
    }

    /// VP8, 90 kHz.
    pub fn vp8() -> Self {
        Self::new(MediaKind::Video, "video/VP8", 90_000, None)
    }

    /// VP9 profile 0, 90 kHz.
    pub fn vp9() -> Self {
        let mut c = Self::new(MediaKind::Video, "video/VP9", 90_000, None);
        c.parameters
            .insert("profile-id".into(), ParameterValue::Number(0));
        c
    }
}

/// Direction in which a header extension may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtpHeaderExtensionDirection {
    /// Send and receive.
    Sendrecv,
    /// Send only.
    Sendonly,
    /// Receive only.
    Recvonly,
    /// Neither.
    Inactive,
}

/// A header extension as listed in RTP capabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtension {
    /// Media kind the extension applies to.
    pub kind: MediaKind,
    /// Extension URI.
    pub uri: String,
    /// Preferred extension id (1..=14 for one-byte headers).
    pub preferred_id: u8,
    /// Whether the extension should be encrypted.
    #[serde(default)]
    pub preferred_encrypt: bool,
    /// Direction the extension may be used in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<RtpHeaderExtensionDirection>,
}

/// RTP capabilities of a router or an endpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCapabilities {
    /// Supported codecs.
    #[serde(default)]
    pub codecs: Vec<RtpCodecCapability>,
    /// Supported header extensions.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtension>,
}

/// A codec as used in concrete RTP parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecParameters {
    /// Mime type, e.g. `"video/VP8"`.
    pub mime_type: String,
    /// Payload type.
    pub payload_type: u8,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Number of audio channels (audio only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Codec specific parameters.
    #[serde(default)]
    pub parameters: CodecParameters,
    /// RTCP feedback in use.
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

impl RtpCodecParameters {
    /// True when this is an RTX (retransmission) codec (mime type ends with `/rtx`).
    pub fn is_rtx(&self) -> bool {
        is_rtx_mime(&self.mime_type)
    }

    /// The `apt` (associated payload type) parameter, if present and a valid payload type.
    pub fn apt(&self) -> Option<u8> {
        codec_param_u32(&self.parameters, "apt").and_then(|v| u8::try_from(v).ok())
    }
}

/// True when `mime_type` names an RTX codec (ends with `/rtx`, case-insensitive).
pub fn is_rtx_mime(mime_type: &str) -> bool {
    let b = mime_type.as_bytes();
    b.len() >= 4 && b[b.len() - 4..].eq_ignore_ascii_case(b"/rtx")
}

/// A header extension as used in concrete RTP parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtensionParameters {
    /// Extension URI.
    pub uri: String,
    /// Extension id.
    pub id: u8,
    /// Whether the extension is encrypted.
    #[serde(default)]
    pub encrypt: bool,
    /// Extension parameters.
    #[serde(default)]
    pub parameters: CodecParameters,
}

/// RTX stream of an encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtxParameters {
    /// SSRC of the RTX stream.
    pub ssrc: u32,
}

/// One encoding (RTP stream) of a producer or consumer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpEncodingParameters {
    /// SSRC of the media stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    /// RTP stream id (simulcast).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Payload type of the codec used by this encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_payload_type: Option<u8>,
    /// RTX stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<RtxParameters>,
    /// Discontinuous transmission (audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtx: Option<bool>,
    /// Scalability mode, e.g. `"L1T3"` or `"S3T3"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    /// Resolution down-scaling factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_resolution_down_by: Option<f64>,
    /// Maximum bitrate in bps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u32>,
    /// Maximum frame rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_framerate: Option<f64>,
    /// Whether the encoding is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// RTCP parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpParameters {
    /// Canonical name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    /// Reduced-size RTCP (RFC 5506).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduced_size: Option<bool>,
    /// RTP/RTCP multiplexing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mux: Option<bool>,
}

/// Concrete RTP parameters of a producer or consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpParameters {
    /// MID (media section identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// Codecs (media codecs and their RTX codecs).
    pub codecs: Vec<RtpCodecParameters>,
    /// Header extensions.
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    /// Encodings.
    #[serde(default)]
    pub encodings: Vec<RtpEncodingParameters>,
    /// RTCP parameters.
    #[serde(default)]
    pub rtcp: RtcpParameters,
}

/// ICE parameters of a transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceParameters {
    /// ICE username fragment.
    pub username_fragment: String,
    /// ICE password.
    pub password: String,
    /// Whether this endpoint is ICE-lite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_lite: Option<bool>,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `"udp"`.
    Udp,
    /// `"tcp"`.
    Tcp,
}

/// ICE candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceCandidateType {
    /// Host candidate.
    Host,
    /// Server reflexive candidate.
    Srflx,
    /// Peer reflexive candidate.
    Prflx,
    /// Relayed candidate.
    Relay,
}

/// ICE TCP candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IceCandidateTcpType {
    /// Passive TCP candidate (the server only accepts connections).
    Passive,
}

/// An ICE candidate of a transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// Foundation.
    pub foundation: String,
    /// Priority.
    pub priority: u32,
    /// Address (IP or hostname) — newer mediasoup-client field.
    pub address: String,
    /// IP address — older mediasoup-client field, same value as `address`.
    pub ip: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
    /// Candidate type.
    #[serde(rename = "type")]
    pub kind: IceCandidateType,
    /// TCP type (TCP candidates only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_type: Option<IceCandidateTcpType>,
}

/// DTLS role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    /// Decided later.
    #[default]
    Auto,
    /// DTLS client.
    Client,
    /// DTLS server.
    Server,
}

/// A certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtlsFingerprint {
    /// Hash algorithm, e.g. `"sha-256"`.
    pub algorithm: String,
    /// Fingerprint value, colon separated uppercase hex.
    pub value: String,
}

/// DTLS parameters of a transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DtlsParameters {
    /// DTLS role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DtlsRole>,
    /// Certificate fingerprints.
    pub fingerprints: Vec<DtlsFingerprint>,
}

/// The SCTP port of every association, at both ends (WebRTC's, and mediasoup's on pipes).
pub const SCTP_PORT: u16 = 5000;

/// SCTP parameters of a transport (mediasoup's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SctpParameters {
    /// SCTP port (always [`SCTP_PORT`]).
    pub port: u16,
    /// Number of outgoing streams.
    #[serde(rename = "OS")]
    pub os: u16,
    /// Maximum number of incoming streams.
    #[serde(rename = "MIS")]
    pub mis: u16,
    /// Maximum message size.
    pub max_message_size: u32,
}

/// The number of SCTP streams a transport's association offers (mediasoup's `numSctpStreams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumSctpStreams {
    /// Outgoing streams: the transport's data consumers use stream ids below this.
    #[serde(rename = "OS")]
    pub os: u16,
    /// Incoming streams: the transport's data producers use stream ids below this.
    #[serde(rename = "MIS")]
    pub mis: u16,
}

impl Default for NumSctpStreams {
    /// mediasoup's default: 1024 each way.
    fn default() -> Self {
        Self {
            os: 1024,
            mis: 1024,
        }
    }
}

/// How a data channel's messages travel on its SCTP stream (mediasoup's
/// `sctpStreamParameters`). `ordered` left out means ordered, unless a `maxPacketLifeTime` or
/// `maxRetransmits` is given (then unordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SctpStreamParameters {
    /// The SCTP stream id (the data channel's `id`, as the channel is pre-negotiated).
    pub stream_id: u16,
    /// Whether messages are delivered in the order they were sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// Partial reliability: how long, in milliseconds, a message may be retransmitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packet_life_time: Option<u16>,
    /// Partial reliability: how many times a message may be retransmitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retransmits: Option<u16>,
}

impl SctpStreamParameters {
    /// Ordered and reliable on `stream_id`.
    pub fn reliable(stream_id: u16) -> Self {
        Self {
            stream_id,
            ordered: Some(true),
            max_packet_life_time: None,
            max_retransmits: None,
        }
    }

    /// Whether messages are delivered in order (the default, unless partially reliable).
    pub fn is_ordered(&self) -> bool {
        self.ordered
            .unwrap_or(self.max_packet_life_time.is_none() && self.max_retransmits.is_none())
    }

    /// Checks mediasoup's rules (not both partial reliability limits; an ordered channel is
    /// reliable) and fills in `ordered`.
    pub fn validated(mut self) -> Result<Self, OrtcError> {
        if self.max_packet_life_time.is_some() && self.max_retransmits.is_some() {
            return Err(OrtcError::InvalidParameters(
                "both maxPacketLifeTime and maxRetransmits".into(),
            ));
        }
        let partial = self.max_packet_life_time.is_some() || self.max_retransmits.is_some();
        if self.ordered == Some(true) && partial {
            return Err(OrtcError::InvalidParameters(
                "an ordered stream cannot have maxPacketLifeTime or maxRetransmits".into(),
            ));
        }
        self.ordered = Some(self.is_ordered());
        Ok(self)
    }
}

/// What a client needs to consume data (mediasoup-client's `consumeData`): it opens a
/// pre-negotiated data channel on the stream id the server chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataConsumerParameters {
    /// The data consumer's id.
    pub id: String,
    /// The data producer's id.
    pub data_producer_id: String,
    /// The stream and its reliability.
    pub sctp_stream_parameters: SctpStreamParameters,
    /// The channel's label (the data producer's).
    pub label: String,
    /// The channel's subprotocol (the data producer's).
    pub protocol: String,
}

/// Everything a client needs to create a send or receive transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebRtcTransportParameters {
    /// Transport id.
    pub id: String,
    /// ICE parameters.
    pub ice_parameters: IceParameters,
    /// ICE candidates.
    pub ice_candidates: Vec<IceCandidate>,
    /// DTLS parameters.
    pub dtls_parameters: DtlsParameters,
    /// SCTP parameters (when data channels are enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp_parameters: Option<SctpParameters>,
}

/// Consumer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsumerType {
    /// Single stream.
    Simple,
    /// Simulcast producer.
    Simulcast,
    /// SVC producer.
    Svc,
    /// Pipe consumer (all streams).
    Pipe,
}

/// Everything a client needs for `recvTransport.consume(..)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerParameters {
    /// Consumer id.
    pub id: String,
    /// Producer id.
    pub producer_id: String,
    /// Media kind.
    pub kind: MediaKind,
    /// Consumer type.
    #[serde(rename = "type")]
    pub consumer_type: ConsumerType,
    /// Whether the producer is paused.
    pub producer_paused: bool,
    /// RTP parameters of the consumer.
    pub rtp_parameters: RtpParameters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_values() {
        let p: CodecParameters =
            serde_json::from_str(r#"{"a":1,"b":"42","c":"x","d":1.5,"e":-1}"#).unwrap();
        assert_eq!(p["a"], ParameterValue::Number(1));
        assert_eq!(codec_param_u32(&p, "a"), Some(1));
        assert_eq!(codec_param_u32(&p, "b"), Some(42));
        assert_eq!(codec_param_u32(&p, "c"), None);
        assert_eq!(codec_param_u32(&p, "d"), None);
        assert_eq!(codec_param_u32(&p, "e"), None);
        assert_eq!(codec_param_u32(&p, "missing"), None);
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"a":1,"b":"42","c":"x","d":1.5,"e":-1}"#
        );
    }

    #[test]
    fn rtx_detection() {
        assert!(is_rtx_mime("video/rtx"));
        assert!(is_rtx_mime("VIDEO/RTX"));
        assert!(!is_rtx_mime("rtx"));
        assert!(!is_rtx_mime("video/VP8"));
        assert!(!is_rtx_mime("é/rtxé"));
    }

    #[test]
    fn feedback_parameter_defaults_and_serializes() {
        let fb: RtcpFeedback = serde_json::from_str(r#"{"type":"transport-cc"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&fb).unwrap(),
            r#"{"type":"transport-cc","parameter":""}"#
        );
    }

    #[test]
    fn unknown_fields_ignored() {
        let e: RtpEncodingParameters =
            serde_json::from_str(r#"{"rid":"r0","networkPriority":"low","priority":"high"}"#)
                .unwrap();
        assert_eq!(e.rid.as_deref(), Some("r0"));
    }

    #[test]
    fn sctp_shapes_are_mediasoups() {
        let p = SctpParameters {
            port: 5000,
            os: 1024,
            mis: 1024,
            max_message_size: 262_144,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"port":5000,"OS":1024,"MIS":1024,"maxMessageSize":262144}"#
        );
        let s: SctpStreamParameters =
            serde_json::from_str(r#"{"streamId":3,"maxRetransmits":0}"#).unwrap();
        assert_eq!(
            (s.stream_id, s.max_retransmits, s.ordered),
            (3, Some(0), None)
        );
        let d = DataConsumerParameters {
            id: "a".into(),
            data_producer_id: "b".into(),
            sctp_stream_parameters: SctpStreamParameters::reliable(2),
            label: "chat".into(),
            protocol: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"id":"a","dataProducerId":"b","sctpStreamParameters":{"streamId":2,"ordered":true},"label":"chat","protocol":""}"#
        );
    }

    #[test]
    fn sctp_stream_parameters_follow_mediasoups_rules() {
        let unordered = |life: Option<u16>, rtx: Option<u16>, ordered: Option<bool>| {
            SctpStreamParameters {
                stream_id: 1,
                ordered,
                max_packet_life_time: life,
                max_retransmits: rtx,
            }
            .validated()
            .map(|s| s.ordered)
        };
        assert_eq!(unordered(None, None, None), Ok(Some(true)));
        assert_eq!(unordered(None, None, Some(false)), Ok(Some(false)));
        assert_eq!(unordered(Some(100), None, None), Ok(Some(false)));
        assert_eq!(unordered(None, Some(0), None), Ok(Some(false)));
        assert!(unordered(Some(100), Some(1), None).is_err());
        assert!(unordered(None, Some(1), Some(true)).is_err());
    }
}
