//! Client peers on str0m's direct API that do what mediasoup-client does.
//!
//! A [`ClientTransport`] is one `RTCPeerConnection`'s worth of state: it takes the server's
//! transport parameters (ICE credentials and candidates, DTLS fingerprint and role), is the ICE
//! controlling agent and the DTLS client (the DTLS server when the server announces the role
//! `client`, as mediasoup-client does), produces with its own payload types and SSRCs, and
//! consumes with the parameters the server hands it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use sfu_core::ortc::{
    ext_uri, ConsumerParameters, DtlsFingerprint, DtlsParameters, DtlsRole, MediaKind,
    RtcpFeedback, RtcpParameters, RtpCapabilities, RtpCodecCapability, RtpCodecParameters,
    RtpEncodingParameters, RtpHeaderExtension, RtpHeaderExtensionDirection,
    RtpHeaderExtensionParameters, RtpParameters, RtxParameters, WebRtcTransportParameters,
};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::config::{CryptoProvider, DtlsCert};

use crate::garble::Garble;
use str0m::format::Codec;
use str0m::media::{Frequency, KeyframeRequestKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, ExtensionSerializer, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig};

use crate::media::OutPacket;

/// Client-side payload types, deliberately not the router's, as a browser's would be.
pub const CLIENT_OPUS_PT: u8 = 111;
/// Client-side VP8 payload type.
pub const CLIENT_VP8_PT: u8 = 96;
/// Client-side VP8 RTX payload type.
pub const CLIENT_VP8_RTX_PT: u8 = 97;
/// Client-side VP9 payload type.
pub const CLIENT_VP9_PT: u8 = 98;
/// Client-side VP9 RTX payload type.
pub const CLIENT_VP9_RTX_PT: u8 = 99;
/// Client-side AV1 payload type.
pub const CLIENT_AV1_PT: u8 = 124;
/// Client-side AV1 RTX payload type.
pub const CLIENT_AV1_RTX_PT: u8 = 125;
/// Client-side H264 payload type.
pub const CLIENT_H264_PT: u8 = 122;
/// Client-side H264 RTX payload type.
pub const CLIENT_H264_RTX_PT: u8 = 123;

/// One packet a client received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When.
    pub at: Instant,
    /// The SSRC it arrived with (the consumer's).
    pub ssrc: u32,
    /// Sequence number as sent by the server (16 bits).
    pub seq: u16,
    /// RTP timestamp as sent by the server.
    pub timestamp: u32,
    /// Payload type as sent by the server.
    pub payload_type: u8,
    /// The marker bit as sent by the server.
    pub marker: bool,
    /// The audio level header extension's value (dBov), if the packet carried one.
    pub audio_level: Option<i8>,
    /// The audio level header extension's voice activity flag, if the packet carried one.
    pub voice_activity: Option<bool>,
    /// The abs-send-time header extension's value, if the packet carried one, as str0m reads
    /// it: an instant a fixed base plus 0 to 64 s later (differences between packets are what
    /// it means).
    pub abs_send_time: Option<Instant>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One RTCP sender report a client received.
#[derive(Debug, Clone)]
pub struct SenderReportSeen {
    /// When it arrived (virtual time).
    pub at: Instant,
    /// The SSRC of the stream it describes (a consumer's, when the server sent it).
    pub ssrc: u32,
    /// Its NTP time.
    pub ntp_time: std::time::SystemTime,
    /// The RTP timestamp that corresponds to `ntp_time`, as sent (32 bits).
    pub rtp_time: u32,
    /// The sender's packet count.
    pub packet_count: u32,
}

/// One data channel message a client received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// When (virtual time).
    pub at: Instant,
    /// The SCTP stream id of its channel.
    pub stream_id: u16,
    /// Binary (else text).
    pub binary: bool,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A datagram a client wants sent.
#[derive(Debug)]
pub struct ClientTransmit {
    /// UDP or TCP.
    pub proto: Protocol,
    /// From.
    pub source: SocketAddr,
    /// To.
    pub destination: SocketAddr,
    /// Bytes.
    pub contents: Vec<u8>,
}

/// One client transport (a mediasoup-client send or receive transport).
pub struct ClientTransport {
    /// The server's id for it.
    pub id: sfu_core::TransportId,
    /// The server's ICE ufrag for it.
    pub server_ufrag: String,
    /// The client's local address.
    pub local: SocketAddr,
    /// The server's candidate address it talks to.
    pub remote: SocketAddr,
    rtc: Rtc,
    /// Packets received, in arrival order.
    pub received: Vec<Received>,
    /// Key frame requests received for each local SSRC... by mid.
    pub key_frame_requests: Vec<(Mid, Option<Rid>)>,
    /// Whether ICE and DTLS are up.
    pub connected: bool,
    /// Whether this client is the DTLS client (false: the DTLS server, because the server
    /// announced the role `client`).
    pub dtls_active: bool,
    /// Corrupts the SCTP packets inside the next DTLS records the client sends.
    pub garble: Garble,
    /// RTCP sender reports received (SenderFeedback events).
    pub sender_reports: u64,
    /// What each of those sender reports said, in arrival order.
    pub sender_report_log: Vec<SenderReportSeen>,
    /// ICE state changes seen.
    pub ice_states: Vec<IceConnectionState>,
    /// The raw header extensions (see [`RAW_EXTENSION_URIS`]) of every received packet that
    /// carried any, in arrival order.
    pub received_extensions: Vec<ReceivedExtensions>,
    /// Raw header extension values attached to every packet sent on a mid.
    send_extensions: HashMap<Mid, RawExtensions>,
    /// The raw extensions the router offers: (kind, uri, id).
    raw_offers: Vec<(MediaKind, &'static str, u8)>,
    /// The header extension ids the client sends with.
    send_ids: ExtensionIds,
    /// Data channel messages received, in arrival order.
    pub messages: Vec<ReceivedMessage>,
    /// The client's data channels by SCTP stream id, and whether each is open.
    channels: HashMap<u16, (ChannelId, bool)>,
    /// Channels opened in-band.
    in_band: Vec<ChannelId>,
    next_timeout: Instant,
    produced: HashMap<(Mid, Option<Rid>), (u32, u8)>,
    /// Produced streams other than AV1 whose payloads carry their dependency descriptor in
    /// front (see [`crate::media::Source::h264_l1t3`]).
    descriptor_in_front: Vec<Mid>,
    next_mid: u32,
}

impl std::fmt::Debug for ClientTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTransport")
            .field("local", &self.local)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// The codecs a client device supports (what `device.rtpCapabilities` reports after loading
/// the router's capabilities): the router's own, since the client loaded them.
pub fn device_capabilities(router: &RtpCapabilities) -> RtpCapabilities {
    let mut caps = router.clone();
    for e in &mut caps.header_extensions {
        e.direction = Some(RtpHeaderExtensionDirection::Sendrecv);
    }
    caps
}

/// A device that can only decode H264 (for capability mismatch tests).
pub fn h264_only_capabilities() -> RtpCapabilities {
    RtpCapabilities {
        codecs: vec![RtpCodecCapability {
            kind: MediaKind::Video,
            mime_type: "video/H264".into(),
            preferred_payload_type: Some(102),
            clock_rate: 90_000,
            channels: None,
            parameters: [
                (
                    "packetization-mode".to_string(),
                    sfu_core::ortc::ParameterValue::Number(1),
                ),
                (
                    "profile-level-id".to_string(),
                    sfu_core::ortc::ParameterValue::String("42e01f".into()),
                ),
            ]
            .into_iter()
            .collect(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![RtpHeaderExtension {
            kind: MediaKind::Video,
            uri: "urn:ietf:params:rtp-hdrext:sdes:mid".into(),
            preferred_id: 4,
            preferred_encrypt: false,
            direction: Some(RtpHeaderExtensionDirection::Sendrecv),
        }],
    }
}

/// The DTLS certificate every client of this process presents, generated once (as a browser
/// profile keeps its certificate) by the provider the clients use: a client's key generation is
/// not part of what it measures.
fn shared_certificate(crypto: &CryptoProvider) -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        crypto
            .dtls_provider
            .generate_certificate()
            .expect("the crypto provider generates certificates")
    })
    .clone()
}

impl ClientTransport {
    /// A client transport for the server's `params`, reaching the server candidate of `proto`.
    pub fn new(
        now: Instant,
        local: SocketAddr,
        params: &WebRtcTransportParameters,
        router_caps: &RtpCapabilities,
        proto: Protocol,
    ) -> Self {
        Self::with_extension_ids(now, local, params, router_caps, proto, ExtensionIds::Router)
    }

    /// As [`new`](Self::new), sending header extensions under `send_ids`.
    pub fn with_extension_ids(
        now: Instant,
        local: SocketAddr,
        params: &WebRtcTransportParameters,
        router_caps: &RtpCapabilities,
        proto: Protocol,
        send_ids: ExtensionIds,
    ) -> Self {
        let garble = Garble::default();
        let crypto = crate::garble::crypto_provider(&garble);
        let mut config = RtcConfig::new()
            .set_dtls_cert(shared_certificate(&crypto))
            .set_crypto_provider(crypto)
            .set_rtp_mode(true)
            .clear_codecs()
            .set_stats_interval(None)
            .set_extension_map(raw_extension_map(router_caps, send_ids));
        let codecs = config.codec_config();
        // Sending side: the client's own payload types.
        codecs.add_config(
            CLIENT_OPUS_PT.into(),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            Default::default(),
        );
        codecs.add_config(
            CLIENT_VP8_PT.into(),
            Some(CLIENT_VP8_RTX_PT.into()),
            Codec::Vp8,
            Frequency::NINETY_KHZ,
            None,
            Default::default(),
        );
        codecs.add_config(
            CLIENT_VP9_PT.into(),
            Some(CLIENT_VP9_RTX_PT.into()),
            Codec::Vp9,
            Frequency::NINETY_KHZ,
            None,
            Default::default(),
        );
        codecs.add_config(
            CLIENT_AV1_PT.into(),
            Some(CLIENT_AV1_RTX_PT.into()),
            Codec::Av1,
            Frequency::NINETY_KHZ,
            None,
            Default::default(),
        );
        codecs.add_config(
            CLIENT_H264_PT.into(),
            Some(CLIENT_H264_RTX_PT.into()),
            Codec::H264,
            Frequency::NINETY_KHZ,
            None,
            Default::default(),
        );
        // Receiving side: the router's payload types, as consumers are sent with them.
        for c in router_caps
            .codecs
            .iter()
            .filter(|c| !c.mime_type.ends_with("/rtx"))
        {
            let Some(pt) = c.preferred_payload_type else {
                continue;
            };
            let rtx = router_caps
                .codecs
                .iter()
                .find(|r| {
                    r.mime_type.ends_with("/rtx")
                        && sfu_core::ortc::codec_param_u32(&r.parameters, "apt")
                            == Some(u32::from(pt))
                })
                .and_then(|r| r.preferred_payload_type);
            let codec = match c.mime_type.to_ascii_lowercase().as_str() {
                "audio/opus" => Codec::Opus,
                "video/vp8" => Codec::Vp8,
                "video/h264" => Codec::H264,
                "video/vp9" => Codec::Vp9,
                "video/av1" => Codec::Av1,
                _ => continue,
            };
            codecs.add_config(
                pt.into(),
                rtx.map(Into::into),
                codec,
                Frequency::new(c.clock_rate).unwrap_or(Frequency::NINETY_KHZ),
                c.channels,
                Default::default(),
            );
        }
        let mut rtc = config.build(now);
        let remote = params
            .ice_candidates
            .iter()
            .find(|c| (proto == Protocol::Udp) == (c.protocol == sfu_core::ortc::Protocol::Udp))
            .map(|c| SocketAddr::new(c.ip.parse().expect("server candidate ip"), c.port))
            .expect("a server candidate of the wanted protocol");
        {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(true);
            api.set_remote_ice_credentials(IceCreds {
                ufrag: params.ice_parameters.username_fragment.clone(),
                pass: params.ice_parameters.password.clone(),
            });
            let fp = &params.dtls_parameters.fingerprints[0];
            api.set_remote_fingerprint(
                format!("{} {}", fp.algorithm, fp.value)
                    .parse()
                    .expect("server fingerprint"),
            );
            api.enable_twcc_feedback();
        }
        let local_candidate = match proto {
            Protocol::Tcp => Candidate::builder()
                .tcp()
                .host(local)
                .tcptype(str0m::net::TcpType::Active)
                .build()
                .expect("tcp candidate"),
            _ => Candidate::host(local, "udp").expect("udp candidate"),
        };
        rtc.add_local_candidate(local_candidate);
        let remote_candidate = match proto {
            Protocol::Tcp => Candidate::builder()
                .tcp()
                .host(remote)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .expect("tcp candidate"),
            _ => Candidate::host(remote, "udp").expect("udp candidate"),
        };
        rtc.add_remote_candidate(remote_candidate);
        // mediasoup-client takes the role opposite to a role the server announces, and the
        // client role when the server's is `auto`.
        let dtls_active = params.dtls_parameters.role != Some(DtlsRole::Client);
        rtc.direct_api()
            .start_dtls(dtls_active)
            .expect("DTLS start");
        if params.sctp_parameters.is_some() {
            // As a browser does for an m=application section: the DTLS client initiates.
            rtc.direct_api().start_sctp(dtls_active);
        }
        let id = params.id.parse().expect("transport id");
        Self {
            id,
            server_ufrag: params.ice_parameters.username_fragment.clone(),
            local,
            remote,
            rtc,
            received: Vec::new(),
            key_frame_requests: Vec::new(),
            connected: false,
            dtls_active,
            garble,
            sender_reports: 0,
            sender_report_log: Vec::new(),
            ice_states: Vec::new(),
            received_extensions: Vec::new(),
            messages: Vec::new(),
            channels: HashMap::new(),
            in_band: Vec::new(),
            send_extensions: HashMap::new(),
            raw_offers: raw_offers(router_caps).collect(),
            send_ids,
            next_timeout: now,
            produced: HashMap::new(),
            descriptor_in_front: Vec::new(),
            next_mid: 0,
        }
    }

    /// What the client sends in `connect`: its fingerprint and DTLS role.
    pub fn dtls_parameters(&mut self) -> DtlsParameters {
        let text = self.rtc.direct_api().local_dtls_fingerprint().to_string();
        let (algorithm, value) = text.split_once(' ').expect("fingerprint text");
        DtlsParameters {
            role: Some(if self.dtls_active {
                DtlsRole::Client
            } else {
                DtlsRole::Server
            }),
            fingerprints: vec![DtlsFingerprint {
                algorithm: algorithm.into(),
                value: value.into(),
            }],
        }
    }

    /// Declares an outgoing stream and returns the `produce` RTP parameters, as
    /// mediasoup-client builds them: client payload types, a mid, one encoding.
    pub fn prepare_produce(&mut self, kind: MediaKind, ssrc: u32) -> RtpParameters {
        let mid_text = self.next_mid.to_string();
        self.next_mid += 1;
        let mid = Mid::from(mid_text.as_str());
        let video = kind == MediaKind::Video;
        let rtx_ssrc = video.then_some(ssrc.wrapping_add(1));
        {
            let mut api = self.rtc.direct_api();
            api.declare_media(mid, crate::client::str0m_kind(kind));
            api.declare_stream_tx(ssrc.into(), rtx_ssrc.map(Into::into), mid, None);
        }
        let pt = if video { CLIENT_VP8_PT } else { CLIENT_OPUS_PT };
        self.produced.insert((mid, None), (ssrc, pt));
        let fb = |t: &str, p: &str| RtcpFeedback::new(t, p);
        let mut codecs = vec![if video {
            RtpCodecParameters {
                mime_type: "video/VP8".into(),
                payload_type: CLIENT_VP8_PT,
                clock_rate: 90_000,
                channels: None,
                parameters: Default::default(),
                rtcp_feedback: vec![
                    fb("nack", ""),
                    fb("nack", "pli"),
                    fb("ccm", "fir"),
                    fb("transport-cc", ""),
                ],
            }
        } else {
            RtpCodecParameters {
                mime_type: "audio/opus".into(),
                payload_type: CLIENT_OPUS_PT,
                clock_rate: 48_000,
                channels: Some(2),
                parameters: Default::default(),
                rtcp_feedback: vec![fb("transport-cc", "")],
            }
        }];
        if video {
            codecs.push(RtpCodecParameters {
                mime_type: "video/rtx".into(),
                payload_type: CLIENT_VP8_RTX_PT,
                clock_rate: 90_000,
                channels: None,
                parameters: [(
                    "apt".to_string(),
                    sfu_core::ortc::ParameterValue::Number(i64::from(CLIENT_VP8_PT)),
                )]
                .into_iter()
                .collect(),
                rtcp_feedback: vec![],
            });
        }
        let ext = |uri: &str, id: u8| RtpHeaderExtensionParameters {
            uri: uri.into(),
            id,
            encrypt: false,
            parameters: Default::default(),
        };
        let id = |router_id: u8| self.send_ids.id(router_id);
        let mut header_extensions = vec![
            ext(ext_uri::MID, id(4)),
            ext(ext_uri::ABS_SEND_TIME, id(2)),
            ext(ext_uri::TRANSPORT_CC, id(3)),
        ];
        if !video {
            header_extensions.push(ext(ext_uri::SSRC_AUDIO_LEVEL, id(1)));
        }
        // The raw extensions too, as negotiated for the kind (see `set_send_extensions`).
        header_extensions.extend(
            self.raw_offers
                .iter()
                .filter(|&&(k, _, _)| k == kind)
                .map(|&(_, uri, router_id)| ext(uri, id(router_id))),
        );
        RtpParameters {
            mid: Some(mid_text),
            codecs,
            header_extensions,
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ssrc),
                rtx: rtx_ssrc.map(|ssrc| RtxParameters { ssrc }),
                ..Default::default()
            }],
            rtcp: RtcpParameters {
                cname: Some(format!("client-{}", self.local)),
                reduced_size: Some(true),
                mux: None,
            },
        }
    }

    /// As [`prepare_produce`](Self::prepare_produce) for VP9 video in one encoding with
    /// `scalability_mode` (an SVC stream, as a browser sends `L3T3_KEY`).
    pub fn prepare_produce_vp9(&mut self, ssrc: u32, scalability_mode: &str) -> RtpParameters {
        self.prepare_produce_codec(
            ssrc,
            "video/VP9",
            (CLIENT_VP9_PT, CLIENT_VP9_RTX_PT),
            scalability_mode,
        )
    }

    /// As [`prepare_produce_vp9`](Self::prepare_produce_vp9) for AV1 (whose payloads carry
    /// their dependency descriptor in front, see [`crate::media::Source::av1_l1t3`]).
    pub fn prepare_produce_av1(&mut self, ssrc: u32, scalability_mode: &str) -> RtpParameters {
        self.prepare_produce_codec(
            ssrc,
            "video/AV1",
            (CLIENT_AV1_PT, CLIENT_AV1_RTX_PT),
            scalability_mode,
        )
    }

    /// As [`prepare_produce_vp9`](Self::prepare_produce_vp9) for H264 (packetization mode 1,
    /// constrained baseline). With `descriptor` the dependency descriptor is negotiated and
    /// the payloads carry theirs in front (see [`crate::media::Source::h264_l1t3`]); without
    /// it the descriptor is not negotiated.
    pub fn prepare_produce_h264(
        &mut self,
        ssrc: u32,
        scalability_mode: &str,
        descriptor: bool,
    ) -> RtpParameters {
        let mut params = self.prepare_produce_codec(
            ssrc,
            "video/H264",
            (CLIENT_H264_PT, CLIENT_H264_RTX_PT),
            scalability_mode,
        );
        self.h264_parameters(&mut params, descriptor);
        params
    }

    /// As [`prepare_produce_simulcast`](Self::prepare_produce_simulcast) for `mime` (H264 or
    /// AV1) with the dependency descriptor, each encoding in `scalability_mode` (as a browser
    /// sends simulcast `L1T3`); the payloads carry their descriptor in front (see
    /// [`crate::media::Source::h264_l1t3`]).
    pub fn prepare_produce_simulcast_with_descriptor(
        &mut self,
        layers: &[(&str, u32)],
        mime: &str,
        scalability_mode: &str,
    ) -> RtpParameters {
        let mut params = self.prepare_produce_simulcast(layers);
        let mid = Mid::from(params.mid.as_deref().expect("mid"));
        let h264 = mime == "video/H264";
        let pts = if h264 {
            (CLIENT_H264_PT, CLIENT_H264_RTX_PT)
        } else {
            (CLIENT_AV1_PT, CLIENT_AV1_RTX_PT)
        };
        set_video_codec(&mut params, mime, pts);
        for (rid, _) in layers {
            if let Some(stream) = self.produced.get_mut(&(mid, Some(Rid::from(*rid)))) {
                stream.1 = pts.0;
            }
        }
        for e in &mut params.encodings {
            e.scalability_mode = Some(scalability_mode.into());
        }
        if h264 {
            self.h264_parameters(&mut params, true);
        }
        params
    }

    /// H264's parameters (packetization mode 1, constrained baseline) on `params`, and the
    /// dependency descriptor negotiated and carried in front of the payloads when
    /// `descriptor`, else not negotiated.
    fn h264_parameters(&mut self, params: &mut RtpParameters, descriptor: bool) {
        for c in params
            .codecs
            .iter_mut()
            .filter(|c| c.mime_type == "video/H264")
        {
            c.parameters = [
                (
                    "packetization-mode".to_string(),
                    sfu_core::ortc::ParameterValue::Number(1),
                ),
                (
                    "profile-level-id".to_string(),
                    sfu_core::ortc::ParameterValue::String("42e01f".into()),
                ),
            ]
            .into_iter()
            .collect();
        }
        if descriptor {
            let mid = Mid::from(params.mid.as_deref().expect("mid"));
            self.descriptor_in_front.push(mid);
        } else {
            params
                .header_extensions
                .retain(|e| e.uri != sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR);
        }
    }

    fn prepare_produce_codec(
        &mut self,
        ssrc: u32,
        mime: &str,
        (pt, rtx_pt): (u8, u8),
        scalability_mode: &str,
    ) -> RtpParameters {
        let mut params = self.prepare_produce(MediaKind::Video, ssrc);
        let mid = Mid::from(params.mid.as_deref().expect("mid"));
        self.produced.insert((mid, None), (ssrc, pt));
        set_video_codec(&mut params, mime, (pt, rtx_pt));
        params.encodings[0].scalability_mode = Some(scalability_mode.into());
        params
    }

    /// Prepares to receive a consumer (what `transport.consume(..)` does).
    pub fn accept_consumer(&mut self, params: &ConsumerParameters) {
        let mid = Mid::from(params.rtp_parameters.mid.as_deref().expect("consumer mid"));
        let enc = &params.rtp_parameters.encodings[0];
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, str0m_kind(params.kind));
        api.expect_stream_rx(
            enc.ssrc.expect("consumer ssrc").into(),
            enc.rtx.as_ref().map(|r| r.ssrc.into()),
            mid,
            None,
        );
    }

    /// Declares a simulcast video stream of one encoding per `(rid, ssrc)` and returns the
    /// `produce` parameters as a browser sending simulcast makes them: encodings by rid only.
    pub fn prepare_produce_simulcast(&mut self, layers: &[(&str, u32)]) -> RtpParameters {
        let mut params = self.prepare_produce(MediaKind::Video, layers[0].1);
        let mid = Mid::from(params.mid.as_deref().expect("mid"));
        self.produced.remove(&(mid, None));
        let mut api = self.rtc.direct_api();
        api.remove_stream_tx(layers[0].1.into());
        for (rid, ssrc) in layers {
            let rid = Rid::from(*rid);
            api.declare_stream_tx((*ssrc).into(), Some((ssrc + 1).into()), mid, Some(rid));
            self.produced
                .insert((mid, Some(rid)), (*ssrc, CLIENT_VP8_PT));
        }
        params.encodings = layers
            .iter()
            .map(|(rid, _)| RtpEncodingParameters {
                rid: Some((*rid).to_string()),
                scalability_mode: Some("L1T1".into()),
                ..Default::default()
            })
            .collect();
        for (uri, router_id) in [
            (ext_uri::RTP_STREAM_ID, 10),
            (ext_uri::REPAIRED_RTP_STREAM_ID, 11),
        ] {
            params.header_extensions.push(RtpHeaderExtensionParameters {
                uri: uri.into(),
                id: self.send_ids.id(router_id),
                encrypt: false,
                parameters: Default::default(),
            });
        }
        params
    }

    /// Sends packets on a produced stream (identified by its mid).
    pub fn send(&mut self, now: Instant, mid: &str, packets: Vec<OutPacket>) {
        self.send_layer(now, mid, None, packets);
    }

    /// Sends packets on a produced stream (identified by its mid and, for simulcast, rid).
    pub fn send_layer(
        &mut self,
        now: Instant,
        mid: &str,
        rid: Option<&str>,
        packets: Vec<OutPacket>,
    ) {
        let mid = Mid::from(mid);
        let rid = rid.map(Rid::from);
        let Some(&(ssrc, pt)) = self.produced.get(&(mid, rid)) else {
            return;
        };
        let video = pt != CLIENT_OPUS_PT;
        let descriptor_in_front = pt == CLIENT_AV1_PT || self.descriptor_in_front.contains(&mid);
        let raw = self.send_extensions.get(&mid).cloned();
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&ssrc.into()) else {
            return;
        };
        for mut p in packets {
            // AV1 (and H264 with layers): the dependency descriptor travels in front of the
            // payload (one length byte and its bytes) and leaves as its header extension.
            let mut raw = raw.clone();
            if descriptor_in_front && !p.payload.is_empty() {
                let len = usize::from(p.payload[0]).min(p.payload.len() - 1);
                let dd: Vec<u8> = p.payload.drain(..1 + len).skip(1).collect();
                let mut values = raw.take().unwrap_or(RawExtensions(Vec::new()));
                values
                    .0
                    .retain(|e| e.uri != sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR);
                values.0.push(RawExtension {
                    uri: sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR,
                    id: 0,
                    value: dd,
                });
                raw = Some(values);
            }
            let mut write = RtpWrite::new(pt.into(), p.seq.into(), p.timestamp, now, p.payload)
                .marker(p.marker)
                .nackable(video);
            if p.audio_level.is_some() || raw.is_some() {
                let mut ext_vals = ExtensionValues {
                    audio_level: p.audio_level,
                    voice_activity: p.audio_level.map(|level| level > -127),
                    ..Default::default()
                };
                if let Some(raw) = &raw {
                    ext_vals.user_values.set(raw.clone());
                }
                write = write.ext_vals(ext_vals);
            }
            stream.write_rtp(write);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Sends `packets` on RTP SSRC `ssrc` tagged with `mid` (its mid header extension), whether
    /// or not this client ever produced that SSRC: what a misbehaving client that reuses another
    /// participant's SSRC does. str0m paces by mid, so a mid carries one stream: the first call
    /// for a new `ssrc` stops what `mid` sent before (its produced stream, or an earlier spoofed
    /// SSRC). The payload type is that of the stream produced on `mid` (Opus when nothing was);
    /// a `mid` the client never declared is declared as audio.
    pub fn send_spoofed(&mut self, now: Instant, mid: &str, ssrc: u32, packets: Vec<OutPacket>) {
        let mid = Mid::from(mid);
        let pt = self
            .produced
            .iter()
            .find(|((m, _), _)| *m == mid)
            .map_or(CLIENT_OPUS_PT, |(_, &(_, pt))| pt);
        let video = pt != CLIENT_OPUS_PT;
        let declared = self.rtc.media(mid).is_some();
        let mut api = self.rtc.direct_api();
        if !declared {
            api.declare_media(mid, str0m::media::MediaKind::Audio);
        }
        if api.stream_tx(&ssrc.into()).is_none() {
            while let Some(old) = api.stream_tx_by_mid(mid, None).map(|s| s.ssrc()) {
                api.remove_stream_tx(old);
            }
            api.declare_stream_tx(ssrc.into(), None, mid, None);
        }
        let Some(stream) = api.stream_tx(&ssrc.into()) else {
            return;
        };
        for p in packets {
            stream.write_rtp(
                RtpWrite::new(pt.into(), p.seq.into(), p.timestamp, now, p.payload)
                    .marker(p.marker)
                    .nackable(video),
            );
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Feeds a datagram from the network.
    pub fn receive(&mut self, now: Instant, proto: Protocol, source: SocketAddr, contents: &[u8]) {
        if let Ok(r) = Receive::new(proto, source, self.local, contents) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
    }

    /// Advances time.
    pub fn timeout(&mut self, now: Instant) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// When the client needs [`timeout`](Self::timeout) next.
    pub fn next_timeout(&self) -> Instant {
        self.next_timeout
    }

    /// Asks the sender of a consumed stream for a key frame (a PLI from the receiving client).
    pub fn request_key_frame(&mut self, now: Instant, ssrc: u32) {
        if let Some(s) = self.rtc.direct_api().stream_rx(&ssrc.into()) {
            s.request_keyframe(KeyframeRequestKind::Pli);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Drains the client's output: datagrams to send are returned; events are recorded.
    pub fn drain(&mut self, now: Instant) -> Vec<ClientTransmit> {
        let mut out = Vec::new();
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => out.push(ClientTransmit {
                    proto: t.proto,
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Output::Timeout(at)) => {
                    self.next_timeout = at;
                    break;
                }
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(s) => self.ice_states.push(s),
                    Event::RtpPacket(p) => {
                        if let Some(raw) = p.header.ext_vals.user_values.get::<RawExtensions>() {
                            self.received_extensions.push(ReceivedExtensions {
                                at: now,
                                ssrc: *p.header.ssrc,
                                seq: p.header.sequence_number,
                                values: raw.clone(),
                            });
                        }
                        self.received.push(Received {
                            at: now,
                            ssrc: *p.header.ssrc,
                            seq: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            payload_type: *p.header.payload_type,
                            marker: p.header.marker,
                            audio_level: p.header.ext_vals.audio_level,
                            voice_activity: p.header.ext_vals.voice_activity,
                            abs_send_time: p.header.ext_vals.abs_send_time,
                            payload: p.payload.to_vec(),
                        });
                    }
                    Event::KeyframeRequest(r) => self.key_frame_requests.push((r.mid, r.rid)),
                    Event::ChannelOpen(id, _) => {
                        if let Some(c) = self.channels.values_mut().find(|c| c.0 == id) {
                            c.1 = true;
                        } else if self.in_band.contains(&id) {
                            let stream = self.rtc.direct_api().sctp_stream_id_by_channel_id(id);
                            if let Some(stream) = stream {
                                self.channels.insert(stream, (id, true));
                            }
                        }
                    }
                    Event::ChannelClose(id) => {
                        if let Some(c) = self.channels.values_mut().find(|c| c.0 == id) {
                            c.1 = false;
                        }
                    }
                    Event::ChannelData(d) => {
                        let stream_id = self
                            .channels
                            .iter()
                            .find(|(_, c)| c.0 == d.id)
                            .map(|(s, _)| *s);
                        if let Some(stream_id) = stream_id {
                            self.messages.push(ReceivedMessage {
                                at: now,
                                stream_id,
                                binary: d.binary,
                                data: d.data,
                            });
                        }
                    }
                    Event::SenderFeedback(f) => {
                        self.sender_reports += 1;
                        let info = f.sender_info;
                        self.sender_report_log.push(SenderReportSeen {
                            at: f.received_at,
                            ssrc: *info.ssrc,
                            ntp_time: info.ntp_time,
                            rtp_time: info.rtp_time.numer() as u32,
                            packet_count: info.sender_packet_count,
                        });
                    }
                    _ => {}
                },
                Err(_) => {
                    self.next_timeout = now + std::time::Duration::from_millis(10);
                    break;
                }
            }
        }
        out
    }

    /// Opens a pre-negotiated data channel on `params.stream_id` (mediasoup-client's
    /// `produceData` and `consumeData` open their channels with `negotiated: true`).
    pub fn open_data_channel(
        &mut self,
        params: &sfu_core::ortc::SctpStreamParameters,
        label: &str,
    ) {
        let reliability = match (params.max_packet_life_time, params.max_retransmits) {
            (Some(lifetime), _) => Reliability::MaxPacketLifetime { lifetime },
            (None, Some(retransmits)) => Reliability::MaxRetransmits { retransmits },
            (None, None) => Reliability::Reliable,
        };
        let id = self.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.into(),
            ordered: params.is_ordered(),
            reliability,
            negotiated: Some(params.stream_id),
            protocol: String::new(),
        });
        self.channels.insert(params.stream_id, (id, false));
    }

    /// Closes the connection (DTLS close_notify), as closing an `RTCPeerConnection` does.
    pub fn close(&mut self) {
        let _ = self.rtc.close();
    }

    /// Starts an SCTP association the server did not offer (for tests of a transport without
    /// SCTP).
    pub fn start_sctp(&mut self) {
        let active = self.dtls_active;
        self.rtc.direct_api().start_sctp(active);
    }

    /// Opens a data channel in-band (DCEP, `negotiated: false`), as a browser does by default;
    /// str0m picks its stream id (see [`Self::in_band_stream`]).
    pub fn open_in_band_channel(&mut self, label: &str) {
        let id = self.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.into(),
            ..Default::default()
        });
        self.in_band.push(id);
    }

    /// The stream id of the first in-band channel, once it opened.
    pub fn in_band_stream(&self) -> Option<u16> {
        let id = *self.in_band.first()?;
        self.channels
            .iter()
            .find(|(_, c)| c.0 == id)
            .map(|(stream, _)| *stream)
    }

    /// Whether the data channel on `stream_id` is open.
    pub fn data_channel_open(&self, stream_id: u16) -> bool {
        self.channels.get(&stream_id).is_some_and(|c| c.1)
    }

    /// Sends a message on the data channel of `stream_id`; false if the channel is not open or
    /// its buffer cannot take it.
    pub fn send_message(&mut self, stream_id: u16, binary: bool, data: &[u8]) -> bool {
        let Some(&(id, true)) = self.channels.get(&stream_id) else {
            return false;
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return false;
        };
        channel.write(binary, data).unwrap_or(false)
    }

    /// The bytes the data channel of `stream_id` has sent and the server not yet acknowledged.
    pub fn buffered_amount(&mut self, stream_id: u16) -> usize {
        let Some(&(id, true)) = self.channels.get(&stream_id) else {
            return 0;
        };
        self.rtc.channel(id).map_or(0, |mut c| c.buffered_amount())
    }

    /// Takes new ICE credentials from the server after an ICE restart (what
    /// `transport.restartIce({ iceParameters })` does): new local credentials too.
    pub fn restart_ice(&mut self, now: Instant, params: &sfu_core::ortc::IceParameters) {
        let mut api = self.rtc.direct_api();
        api.set_local_ice_credentials(IceCreds::new());
        api.set_remote_ice_credentials(IceCreds {
            ufrag: params.username_fragment.clone(),
            pass: params.password.clone(),
        });
        self.server_ufrag = params.username_fragment.clone();
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Attaches `values` to every packet sent on `mid` from now on (`None`: none), under the
    /// ids the router offers their URIs with.
    pub fn set_send_extensions(&mut self, mid: &str, values: Option<RawExtensions>) {
        let mid = Mid::from(mid);
        match values {
            Some(v) => self.send_extensions.insert(mid, v),
            None => self.send_extensions.remove(&mid),
        };
    }

    /// Key frame requests received since the last call, by mid.
    pub fn take_key_frame_requests(&mut self) -> Vec<(Mid, Option<Rid>)> {
        std::mem::take(&mut self.key_frame_requests)
    }
}

/// str0m's media kind for ours.
pub fn str0m_kind(kind: MediaKind) -> str0m::media::MediaKind {
    match kind {
        MediaKind::Audio => str0m::media::MediaKind::Audio,
        MediaKind::Video => str0m::media::MediaKind::Video,
    }
}

// Raw header extensions: values a client sends and reads byte for byte, for checking that the
// server forwards them unchanged. str0m writes and parses the header extension block (one-byte
// or two-byte form); these serializers only copy the values.

/// The header extensions clients send and read as raw bytes, under the ids the router offers
/// them with: the AV1 dependency descriptor, absolute capture time, playout delay and video
/// orientation.
pub const RAW_EXTENSION_URIS: [&str; 4] = [
    sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR,
    sfu_core::ortc::ext_uri::ABS_CAPTURE_TIME,
    sfu_core::ortc::ext_uri::PLAYOUT_DELAY,
    sfu_core::ortc::ext_uri::VIDEO_ORIENTATION,
];

/// One raw header extension value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawExtension {
    /// Its URI.
    pub uri: &'static str,
    /// The id it was read under (ignored when sending: the router's id for `uri` is used).
    pub id: u8,
    /// The value.
    pub value: Vec<u8>,
}

/// The raw header extensions of one packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawExtensions(pub Vec<RawExtension>);

impl RawExtensions {
    /// The value of `uri`, if present.
    pub fn get(&self, uri: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|e| e.uri == uri)
            .map(|e| e.value.as_slice())
    }
}

/// The raw extensions a received packet carried.
#[derive(Debug, Clone)]
pub struct ReceivedExtensions {
    /// When it arrived.
    pub at: Instant,
    /// Its SSRC.
    pub ssrc: u32,
    /// Its sequence number.
    pub seq: u16,
    /// The values, in the order of their ids.
    pub values: RawExtensions,
}

/// Writes and reads one raw extension (see [`RawExtensions`]).
#[derive(Debug)]
struct RawSerializer {
    uri: &'static str,
    id: u8,
    audio: bool,
    video: bool,
}

impl RawSerializer {
    fn value<'a>(&self, ev: &'a ExtensionValues) -> Option<&'a [u8]> {
        ev.user_values.get::<RawExtensions>()?.get(self.uri)
    }
}

impl ExtensionSerializer for RawSerializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        match (self.value(ev), buf) {
            (Some(v), buf) if !v.is_empty() && v.len() <= 255 && v.len() <= buf.len() => {
                buf[..v.len()].copy_from_slice(v);
                v.len()
            }
            _ => 0,
        }
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        let mut values = ev
            .user_values
            .get::<RawExtensions>()
            .cloned()
            .unwrap_or_default();
        values.0.push(RawExtension {
            uri: self.uri,
            id: self.id,
            value: buf.to_vec(),
        });
        ev.user_values.set(values);
        true
    }

    fn is_video(&self) -> bool {
        self.video
    }

    fn is_audio(&self) -> bool {
        self.audio
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        self.value(ev).is_some_and(|v| v.len() > 16)
    }
}

/// The router's offers of [`RAW_EXTENSION_URIS`]: (kind, uri, id).
fn raw_offers(
    router: &RtpCapabilities,
) -> impl Iterator<Item = (MediaKind, &'static str, u8)> + '_ {
    router.header_extensions.iter().filter_map(|e| {
        let uri = RAW_EXTENSION_URIS
            .into_iter()
            .find(|u| u.eq_ignore_ascii_case(&e.uri))?;
        Some((e.kind, uri, e.preferred_id))
    })
}

/// Which header extension ids a client sends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtensionIds {
    /// The router's (as a browser whose offer listed the extensions in the router's order).
    #[default]
    Router,
    /// Every id of the router's 1..=14 mirrored (`15 - id`), so each lands on an id the router
    /// uses for another extension: a client that can only send (it reads what it receives
    /// under these ids too).
    Mirrored,
}

impl ExtensionIds {
    /// The id this client sends the extension the router numbers `router_id` with.
    pub fn id(self, router_id: u8) -> u8 {
        match self {
            ExtensionIds::Router => router_id,
            ExtensionIds::Mirrored => 15 - router_id,
        }
    }
}

/// str0m's standard extensions, plus a raw serializer for each of [`RAW_EXTENSION_URIS`], under
/// the ids `ids` gives the router's ids for them.
fn raw_extension_map(router: &RtpCapabilities, ids: ExtensionIds) -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    for (id, ext) in [
        (1, Extension::AudioLevel),
        (2, Extension::AbsoluteSendTime),
        (3, Extension::TransportSequenceNumber),
        (4, Extension::RtpMid),
        (10, Extension::RtpStreamId),
        (11, Extension::RepairedRtpStreamId),
        (13, Extension::VideoOrientation),
    ] {
        map.set(ids.id(id), ext);
    }
    for (_, uri, router_id) in raw_offers(router) {
        let id = ids.id(router_id);
        let kinds = raw_offers(router).filter(|&(_, u, _)| u == uri);
        let (audio, video) = kinds.fold((false, false), |(a, v), (k, _, _)| {
            (a || k == MediaKind::Audio, v || k == MediaKind::Video)
        });
        let serializer = RawSerializer {
            uri,
            id,
            audio,
            video,
        };
        map.set(id, Extension::with_serializer(uri, serializer));
    }
    map
}

/// Makes the VP8 of `params` (from [`ClientTransport::prepare_produce`]) the codec `mime` on payload
/// type `pt`, its RTX on `rtx_pt`.
fn set_video_codec(params: &mut RtpParameters, mime: &str, (pt, rtx_pt): (u8, u8)) {
    for c in &mut params.codecs {
        if c.mime_type == "video/VP8" {
            c.mime_type = mime.into();
            c.payload_type = pt;
        } else if c.mime_type == "video/rtx" {
            c.payload_type = rtx_pt;
            c.parameters.insert(
                "apt".to_string(),
                sfu_core::ortc::ParameterValue::Number(i64::from(pt)),
            );
        }
    }
}
