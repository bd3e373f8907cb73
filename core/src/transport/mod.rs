//! Transports: one network path each to one endpoint.
//!
//! A [`Transport`] holds what every kind of transport has: its router, the producers and
//! consumers on it, its media session (SRTP, the state of what arrives, the transport-wide
//! sequence numbers) and the datagrams it has written. [`TransportKind`] holds what one kind
//! adds: a WebRTC transport's ICE-lite and DTLS ([`webrtc`], the only module that speaks to
//! str0m), a plain transport's own socket and remote address ([`plain`]). Router and
//! forwarding code see only [`Transport`].

pub(crate) mod direct;
pub(crate) mod extensions;
pub(crate) mod outbox;
pub(crate) mod pipe_sctp;
pub(crate) mod plain;
pub(crate) mod webrtc;

use std::collections::HashMap;
use std::time::Instant;

use crate::data::DataStream;
use crate::event::{DtlsState, IceState, TransportTuple};
use crate::ids::{ConsumerId, Mid, ProducerId, RouterId};
use crate::media::bwe::Bwe;
use crate::media::pacer::{Pacer, PacerConfig};
use crate::media::session::{MediaSession, RxRole};
use crate::ortc::RtpCapabilities;
use crate::stats::TransportStats;
use direct::DirectLink;
use extensions::RxExtensions;
use outbox::Outbox;
use pipe_sctp::PipeSctp;
use plain::PlainLink;
use webrtc::WebRtcLink;

pub use direct::DirectTransportOptions;
pub use webrtc::{ListenInfo, WebRtcTransportOptions};

/// Everything the Sfu keeps for one transport.
pub(crate) struct Transport {
    pub(crate) router: RouterId,
    /// The path media goes out on, once known.
    pub(crate) selected: Option<TransportTuple>,
    /// The path RTCP goes out on when it is not muxed with media (a plain transport's
    /// `rtcpTuple`), once known; its datagrams wait in `rtcp_out`.
    pub(crate) rtcp_selected: Option<TransportTuple>,
    /// RTCP must go out on `rtcp_selected`, not with media.
    pub(crate) rtcp_separate: bool,
    /// RTCP datagrams for `rtcp_selected`, not yet handed to the caller.
    pub(crate) rtcp_out: Vec<Vec<u8>>,
    pub(crate) producers_by_mid: HashMap<Mid, ProducerId>,
    /// SSRCs the transport's producers declared: (producer, encoding index, media or RTX).
    /// SSRCs of rid-based encodings are learned by the media session from the packets.
    pub(crate) producer_ssrcs: HashMap<u32, (ProducerId, usize, RxRole)>,
    pub(crate) consumers_by_mid: HashMap<Mid, ConsumerId>,
    /// Consumers by their media SSRC, for the RTCP their endpoint sends about them.
    pub(crate) consumers_by_ssrc: HashMap<u32, ConsumerId>,
    /// The SCTP streams its data producers and data consumers use.
    pub(crate) data_streams: HashMap<u16, DataStream>,
    /// The header extension ids the endpoint sends with, as its producers declared them.
    pub(crate) rx_extensions: RxExtensions,
    /// SRTP and the per-SSRC state of what arrives; `None` until the transport has keys.
    pub(crate) media: Option<MediaSession>,
    /// Datagrams written for this transport's path and not yet handed to the caller; they go
    /// out together from `poll_output`, so each destination's datagrams leave in one run.
    pub(crate) outbox: Outbox,
    /// When the media session's timer is set for.
    pub(crate) media_timer_at: Option<Instant>,
    /// The estimate of the bandwidth toward the endpoint, from its transport-cc feedback.
    pub(crate) bwe: Bwe,
    /// How the estimate was last shared among the transport's consumers.
    pub(crate) alloc: crate::sfu::allocate::Allocation,
    /// Whether its consumers' video goes through `pacer` (WebRTC transports).
    pub(crate) paced: bool,
    /// Video packets waiting for their turn toward the endpoint.
    pub(crate) pacer: Pacer<crate::sfu::egress::Paced>,
    /// When the pacing timer (paced video and probes) is set for.
    pub(crate) pace_timer_at: Option<Instant>,
    /// The estimate the transport started with (for the `bwe` trace).
    pub(crate) start_bitrate: u64,
    /// Trace event types enabled (none by default).
    pub(crate) trace: crate::trace::TraceFlags,
    /// When the scores of the transport's producers and consumers are next computed.
    pub(crate) next_score_at: Option<Instant>,
    pub(crate) next_mid: u32,
    /// The RTCP cname of this transport's producers (the first non-empty one given).
    pub(crate) cname: Option<String>,
    /// Packets were written to this transport and it waits in the Sfu's flush queue.
    pub(crate) flush_pending: bool,
    pub(crate) stats: TransportStats,
    /// A test asked the next datagram to this transport to panic (fault isolation tests).
    pub(crate) panic_on_next_datagram: bool,
    /// What the kind of transport adds.
    pub(crate) kind: TransportKind,
}

/// The kinds of transport, each with what it adds to a [`Transport`].
// Transports live boxed in the Sfu's table; keeping the WebRTC link inline spares the packet
// path a pointer hop, at the price of unused bytes in the few transports of other kinds.
#[allow(clippy::large_enum_variant)]
pub(crate) enum TransportKind {
    /// A WebRTC endpoint: ICE-lite and DTLS.
    WebRtc(WebRtcLink),
    /// Plain RTP or SDES-SRTP to one remote address.
    Plain(PlainLink),
    /// A link to a peer pipe transport in another router: a plain link without comedia, whose
    /// consumers are pipe consumers.
    Pipe {
        /// The socket, remote and keys, as a plain transport's.
        link: PlainLink,
        /// Pipe consumers carry RTX and answer NACKs.
        rtx: bool,
        /// The SCTP association of its data producers and consumers (with `enable_sctp`).
        sctp: Option<Box<PipeSctp>>,
    },
    /// The application itself.
    Direct(DirectLink),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Transport");
        d.field("router", &self.router)
            .field("selected", &self.selected);
        match &self.kind {
            TransportKind::WebRtc(w) => d.field("webrtc", w),
            TransportKind::Plain(p) => d.field("plain", p),
            TransportKind::Pipe { link, rtx, sctp } => d
                .field("pipe", link)
                .field("rtx", rtx)
                .field("sctp", &sctp.as_ref().map(|s| s.state)),
            TransportKind::Direct(l) => d.field("direct", l),
        };
        d.finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport whose runs of datagrams hold at most `gso_segments` on a UDP path.
    pub(crate) fn new(router: RouterId, kind: TransportKind, gso_segments: usize) -> Self {
        Self {
            router,
            selected: None,
            rtcp_selected: None,
            rtcp_separate: false,
            rtcp_out: Vec::new(),
            producers_by_mid: HashMap::new(),
            producer_ssrcs: HashMap::new(),
            consumers_by_mid: HashMap::new(),
            consumers_by_ssrc: HashMap::new(),
            data_streams: HashMap::new(),
            rx_extensions: RxExtensions::default(),
            media: None,
            outbox: Outbox::new(gso_segments),
            media_timer_at: None,
            bwe: Bwe::new(crate::media::bwe::DEFAULT_INITIAL_BITRATE),
            alloc: Default::default(),
            paced: matches!(kind, TransportKind::WebRtc(_)),
            pacer: Pacer::new(
                PacerConfig::default(),
                crate::media::bwe::DEFAULT_INITIAL_BITRATE,
            ),
            pace_timer_at: None,
            start_bitrate: crate::media::bwe::DEFAULT_INITIAL_BITRATE,
            trace: Default::default(),
            next_score_at: None,
            next_mid: 0,
            cname: None,
            flush_pending: false,
            stats: TransportStats {
                ice_state: IceState::New,
                dtls_state: DtlsState::New,
                selected_tuple: None,
                datagrams_received: 0,
                bytes_received: 0,
                datagrams_sent: 0,
                bytes_sent: 0,
                rtp_dropped: 0,
                rtc_errors: 0,
                dtls_dropped: 0,
                rtcp_dropped: 0,
                srtp_profile: None,
                sctp_state: None,
                data_dropped: 0,
                rtcp_tuple: None,
                dropped_foreign_source: 0,
                sctp_dropped: 0,
                messages_unknown_stream: 0,
                available_outgoing_bitrate: crate::media::bwe::DEFAULT_INITIAL_BITRATE,
                feedback_ignored: 0,
                probe_clusters: 0,
                probe_clusters_carried: 0,
                probe_clusters_failed: 0,
                probe_packets: 0,
                pacer_dropped: 0,
                pacer_dropped_enhancement: 0,
                pacer_refused: 0,
            },
            panic_on_next_datagram: false,
            kind,
        }
    }

    /// The WebRTC part, for a WebRTC transport.
    pub(crate) fn webrtc(&self) -> Option<&WebRtcLink> {
        match &self.kind {
            TransportKind::WebRtc(w) => Some(w),
            _ => None,
        }
    }

    /// The WebRTC part, for a WebRTC transport.
    pub(crate) fn webrtc_mut(&mut self) -> Option<&mut WebRtcLink> {
        match &mut self.kind {
            TransportKind::WebRtc(w) => Some(w),
            _ => None,
        }
    }

    /// The socket-and-remote part, for a plain or pipe transport.
    pub(crate) fn plain(&self) -> Option<&PlainLink> {
        match &self.kind {
            TransportKind::Plain(p) | TransportKind::Pipe { link: p, .. } => Some(p),
            _ => None,
        }
    }

    /// The socket-and-remote part, for a plain or pipe transport.
    pub(crate) fn plain_mut(&mut self) -> Option<&mut PlainLink> {
        match &mut self.kind {
            TransportKind::Plain(p) | TransportKind::Pipe { link: p, .. } => Some(p),
            _ => None,
        }
    }

    /// For a pipe transport, whether it carries RTX; `None` for other kinds.
    pub(crate) fn pipe_rtx(&self) -> Option<bool> {
        match &self.kind {
            TransportKind::Pipe { rtx, .. } => Some(*rtx),
            _ => None,
        }
    }

    /// The SCTP association, for a pipe transport with SCTP.
    pub(crate) fn pipe_sctp(&self) -> Option<&PipeSctp> {
        match &self.kind {
            TransportKind::Pipe { sctp, .. } => sctp.as_deref(),
            _ => None,
        }
    }

    /// The SCTP association, for a pipe transport with SCTP.
    pub(crate) fn pipe_sctp_mut(&mut self) -> Option<&mut PipeSctp> {
        match &mut self.kind {
            TransportKind::Pipe { sctp, .. } => sctp.as_deref_mut(),
            _ => None,
        }
    }

    /// The SCTP association's state, for a transport with SCTP (WebRTC or pipe).
    pub(crate) fn sctp_state_mut(&mut self) -> Option<&mut crate::event::SctpState> {
        match &mut self.kind {
            TransportKind::WebRtc(w) => w.sctp.as_mut().map(|s| &mut s.state),
            TransportKind::Pipe { sctp, .. } => sctp.as_deref_mut().map(|s| &mut s.state),
            _ => None,
        }
    }

    /// Whether media written for the transport has somewhere to go: a known path, or the
    /// application (a direct transport).
    pub(crate) fn has_path(&self) -> bool {
        self.selected.is_some() || matches!(self.kind, TransportKind::Direct(_))
    }

    /// Whether RTCP written for the transport has somewhere to go.
    pub(crate) fn has_rtcp_path(&self) -> bool {
        if self.rtcp_separate {
            self.rtcp_selected.is_some()
        } else {
            self.has_path()
        }
    }

    /// The direct part, for a direct transport.
    pub(crate) fn direct(&self) -> Option<&DirectLink> {
        match &self.kind {
            TransportKind::Direct(l) => Some(l),
            _ => None,
        }
    }

    /// The largest message the transport's endpoint takes: the SCTP association's maximum
    /// message size, the direct transport's, or 0 without data channels.
    pub(crate) fn max_message_size(&self) -> usize {
        match &self.kind {
            TransportKind::WebRtc(w) => w
                .sctp
                .as_ref()
                .map_or(0, |s| s.parameters.max_message_size as usize),
            TransportKind::Direct(l) => l.max_message_size,
            TransportKind::Pipe { sctp, .. } => sctp
                .as_ref()
                .map_or(0, |s| s.parameters.max_message_size as usize),
            TransportKind::Plain(_) => 0,
        }
    }

    /// A stream id no data producer or data consumer of the transport uses, below `limit`.
    pub(crate) fn free_stream_id(&self, limit: u16) -> Option<u16> {
        let busy = |id: u16| {
            self.data_streams.contains_key(&id)
                || self
                    .webrtc()
                    .and_then(|l| l.sctp.as_ref())
                    .is_some_and(|s| s.stream_busy(id))
        };
        (0..limit).find(|&id| !busy(id))
    }

    /// A mid for a new consumer that no producer or consumer on this transport uses.
    pub(crate) fn next_consumer_mid(&mut self) -> Mid {
        loop {
            let text = self.next_mid.to_string();
            self.next_mid += 1;
            let Some(mid) = Mid::new(&text) else {
                continue; // never: a number is a valid mid
            };
            if !self.producers_by_mid.contains_key(&mid)
                && !self.consumers_by_mid.contains_key(&mid)
            {
                return mid;
            }
        }
    }
}

/// Payload types of the router's codecs that a transport treats as retransmissions.
pub(crate) fn rtx_payload_types(caps: &RtpCapabilities) -> impl Iterator<Item = u8> + '_ {
    caps.codecs
        .iter()
        .filter(|c| c.mime_type.to_ascii_lowercase().ends_with("/rtx"))
        .filter_map(|c| c.preferred_payload_type)
}
