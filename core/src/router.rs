//! Rooms, producers and consumers: who feeds whom, and each one's forwarding state.

use std::time::{Duration, Instant};

use crate::forward::Rewriter;
use crate::ids::{ConsumerId, Mid, ObserverId, ProducerId, Rid, RouterId, TransportId};
use crate::keyframe::VideoCodec;
use crate::layers::LayerFilter;
use crate::media::meter::BitrateMeter;
use crate::media::packet::ExtensionIdMap;
use crate::media::recv::{NackGenerator, RecvStream};
use crate::media::send::{ntp, SendStream, SenderReportData};
use crate::media::store::PacketStore;
use crate::ortc::{ConsumerParameters, MediaKind, RtpCapabilities, RtpParameters};
use crate::score::{ConsumerLayers, ConsumerScore};
use crate::stats::{ConsumerStats, ProducerStats};
use crate::trace::TraceFlags;
use crate::transport::extensions::ProducerExtensions;

/// An encoding counts as active while it has sent within this time.
const ENCODING_ACTIVE: Duration = Duration::from_millis(1000);

/// A room: its capabilities and the producers in it.
#[derive(Debug)]
pub(crate) struct Router {
    pub(crate) caps: RtpCapabilities,
    pub(crate) transports: Vec<TransportId>,
    pub(crate) producers: Vec<ProducerId>,
    pub(crate) observers: Vec<ObserverId>,
}

/// A media source arriving on a transport.
#[derive(Debug)]
pub(crate) struct Producer {
    pub(crate) router: RouterId,
    pub(crate) transport: TransportId,
    pub(crate) kind: MediaKind,
    pub(crate) mid: Mid,
    pub(crate) consumable: RtpParameters,
    /// Its header extension ids, and the router's id for each.
    pub(crate) extensions: ProducerExtensions,
    pub(crate) paused: bool,
    pub(crate) consumers: Vec<ConsumerId>,
    /// Audio level observers watching it (usually none or one).
    pub(crate) observers: Vec<ObserverId>,
    /// `None` for audio.
    pub(crate) video_codec: Option<VideoCodec>,
    pub(crate) encodings: Vec<Encoding>,
    /// The layers inside its one encoding (VP9 SVC, temporal layers, or the layers the
    /// dependency descriptor says for AV1 and H264), when it has several.
    pub(crate) svc: Option<Box<StreamLayers>>,
    /// Temporal layers inside each encoding when there is no `svc` (from the encodings'
    /// scalability modes; 1: none signalled): VP8's from its payload descriptor, AV1's and
    /// H264's from the dependency descriptor.
    pub(crate) encoding_temporal_layers: u8,
    /// The clock rate of the producer's media codec.
    pub(crate) clock_rate: u32,
    /// The producer's RTX payload types and the media payload type each repairs.
    pub(crate) rtx_payload_types: Vec<(u8, u8)>,
    /// Whether lost packets are asked for again (the codec has `nack` feedback).
    pub(crate) nack: bool,
    /// Whether key frames are asked for with PLI (else FIR).
    pub(crate) pli: bool,
    /// Sequence number of the next FIR.
    pub(crate) fir_seq: u8,
    /// Trace event types enabled (none by default).
    pub(crate) trace: TraceFlags,
    pub(crate) stats: ProducerStats,
}

/// Spatial layers a stream can carry (the VP9 descriptor's SID has 3 bits).
pub(crate) const MAX_SPATIAL_LAYERS: usize = 8;

/// The layers a producer's one encoding carries, from its scalability mode.
#[derive(Debug)]
pub(crate) struct StreamLayers {
    pub(crate) spatial_layers: u8,
    pub(crate) temporal_layers: u8,
    /// K-SVC (`_KEY`): upper spatial layers refer to lower ones only in key pictures.
    pub(crate) ksvc: bool,
    /// What each spatial layer brings (its own packets), measured over the last second.
    pub(crate) bitrate: [BitrateMeter; MAX_SPATIAL_LAYERS],
    /// When each spatial layer last had a packet.
    pub(crate) last_packet_at: [Option<Instant>; MAX_SPATIAL_LAYERS],
    /// What each temporal layer brings (all spatial layers).
    pub(crate) temporal_bitrate: TemporalRates,
}

/// Temporal layers a stream can carry (the descriptors' TID has at most 3 bits).
pub(crate) const MAX_TEMPORAL_LAYERS: usize = 8;

/// Temporal layers an encoding of several can carry (VP8's descriptor's TID has 2 bits; the
/// allocator has a step for each).
pub(crate) const MAX_ENCODING_TEMPORAL_LAYERS: u8 = 4;

/// What each temporal layer of a stream brings (its own packets), measured over the last
/// second: recording a packet adds to one meter.
#[derive(Debug, Clone, Default)]
pub(crate) struct TemporalRates([BitrateMeter; MAX_TEMPORAL_LAYERS]);

impl TemporalRates {
    /// Counts a packet of temporal layer `temporal` (`bytes` long) at `now`.
    pub(crate) fn record(&mut self, temporal: u8, bytes: usize, now: Instant) {
        if let Some(m) = self.0.get_mut(usize::from(temporal)) {
            m.record(now, bytes);
        }
    }

    /// Bits per second each temporal layer's own packets bring.
    pub(crate) fn bitrates(&self, now: Instant) -> [u64; MAX_TEMPORAL_LAYERS] {
        self.0.each_ref().map(|m| m.bitrate(now))
    }

    /// The share (per mille) of the stream's bitrate that temporal layers up to each one
    /// bring (1000 when nothing was measured).
    pub(crate) fn shares(&self, now: Instant) -> [u64; MAX_TEMPORAL_LAYERS] {
        let rates = self.bitrates(now);
        let total: u64 = rates.iter().sum();
        let mut shares = [1000u64; MAX_TEMPORAL_LAYERS];
        let mut sum = 0;
        for (share, rate) in shares.iter_mut().zip(rates) {
            sum += rate;
            if let Some(s) = (sum * 1000).checked_div(total) {
                *share = s;
            }
        }
        shares
    }
}

impl StreamLayers {
    /// The layers of a stream in scalability mode `mode`; `None` for a single layer.
    pub(crate) fn new(mode: crate::ortc::ScalabilityMode) -> Option<Box<Self>> {
        let spatial = mode.spatial_layers.clamp(1, MAX_SPATIAL_LAYERS as u8);
        let temporal = mode.temporal_layers.clamp(1, 8);
        (spatial > 1 || temporal > 1).then(|| {
            Box::new(Self {
                spatial_layers: spatial,
                temporal_layers: temporal,
                ksvc: mode.ksvc,
                bitrate: Default::default(),
                last_packet_at: [None; MAX_SPATIAL_LAYERS],
                temporal_bitrate: Default::default(),
            })
        })
    }

    /// Counts a packet of spatial layer `spatial` and temporal layer `temporal` (`bytes`
    /// long) at `now`.
    pub(crate) fn record(&mut self, (spatial, temporal): (u8, u8), bytes: usize, now: Instant) {
        let i = usize::from(spatial);
        if let (Some(m), Some(at)) = (self.bitrate.get_mut(i), self.last_packet_at.get_mut(i)) {
            m.record(now, bytes);
            *at = Some(now);
        }
        self.temporal_bitrate.record(temporal, bytes, now);
    }

    /// The highest spatial layer the stream carries now (with a packet within the last
    /// second); 0 when none does. A consumer aims no higher: asking for key frames to reach a
    /// layer the sender has stopped would make it send key frames without end.
    pub(crate) fn highest_active(&self, now: Instant) -> u8 {
        self.last_packet_at
            .iter()
            .rposition(|at| {
                at.is_some_and(|at| now.saturating_duration_since(at) < ENCODING_ACTIVE)
            })
            .map_or(0, |i| i as u8)
    }

    /// A new consumer's layer filter.
    pub(crate) fn filter(&self) -> LayerFilter {
        LayerFilter::new(self.spatial_layers, self.temporal_layers, self.ksvc)
    }

    /// The bitrate a consumer of spatial layers up to `spatial` gets (the layers below
    /// included).
    pub(crate) fn bitrate_up_to(&self, spatial: usize, now: Instant) -> u64 {
        self.bitrate
            .iter()
            .take(spatial + 1)
            .map(|m| m.bitrate(now))
            .sum()
    }
}

/// One encoding (simulcast layer) of a producer.
#[derive(Debug)]
pub(crate) struct Encoding {
    pub(crate) ssrc: Option<u32>,
    pub(crate) rid: Option<Rid>,
    /// The SSRC retransmissions of this encoding arrive on, once known.
    pub(crate) rtx_ssrc: Option<u32>,
    /// Receive statistics, from the first packet on.
    pub(crate) recv: Option<RecvStream>,
    /// What is missing and when to ask for it again (video with `nack` feedback).
    pub(crate) nack: Option<NackGenerator>,
    /// The last packets received, to answer consumers' NACKs (video).
    pub(crate) store: Option<PacketStore>,
    pub(crate) last_packet_at: Option<Instant>,
    pub(crate) key_frame_sent_at: Option<Instant>,
    pub(crate) key_frame_pending: bool,
    /// What the encoding brings, measured over the last second.
    pub(crate) bitrate: BitrateMeter,
    /// What each temporal layer inside the encoding brings (VP8 with TID, or temporal layers
    /// the dependency descriptor says), when it has several.
    pub(crate) temporal: Option<Box<TemporalRates>>,
    /// The encoding's dependency descriptors (its current template structure: each encoding's
    /// key frames carry their own), when they carry the layers: a codec whose payload does not
    /// say them (AV1, H264).
    pub(crate) dd: Option<crate::media::dd::Parser>,
    /// Packets that arrived as retransmissions and filled a gap.
    pub(crate) retransmitted: u64,
    /// The encoding's score (0–10, see [`crate::score`]), the last samples it is the mean of,
    /// and the receive counters it was last computed from: (expected, received,
    /// retransmitted).
    pub(crate) score: u8,
    pub(crate) score_samples: crate::score::Samples,
    pub(crate) score_base: (u64, u64, u64),
}

impl Encoding {
    pub(crate) fn new(ssrc: Option<u32>, rid: Option<Rid>, rtx_ssrc: Option<u32>) -> Self {
        Self {
            ssrc,
            rid,
            rtx_ssrc,
            recv: None,
            nack: None,
            store: None,
            last_packet_at: None,
            key_frame_sent_at: None,
            key_frame_pending: false,
            bitrate: BitrateMeter::default(),
            temporal: None,
            dd: None,
            retransmitted: 0,
            score: 0,
            score_samples: Default::default(),
            score_base: (0, 0, 0),
        }
    }

    fn is_active(&self, now: Instant) -> bool {
        self.last_packet_at
            .is_some_and(|at| now.saturating_duration_since(at) < ENCODING_ACTIVE)
    }
}

impl Producer {
    /// The layer a consumer preferring `preferred` should get: the highest active encoding not
    /// above it, else the lowest active one, else the preferred one itself.
    pub(crate) fn best_layer(&self, preferred: usize, now: Instant) -> usize {
        let top = preferred.min(self.encodings.len().saturating_sub(1));
        (0..=top)
            .rev()
            .find(|&i| self.encodings[i].is_active(now))
            .or_else(|| (0..self.encodings.len()).find(|&i| self.encodings[i].is_active(now)))
            .unwrap_or(top)
    }
}

/// The NTP clock of a consumer's sender reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportClock {
    /// The producer's, from its sender reports: receivers can synchronise the consumers of
    /// one endpoint's producers (lip sync).
    Producer,
    /// The Sfu's own, for a producer that sends no reports.
    Sfu,
}

/// One producer forwarded to one transport.
#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) producer: ProducerId,
    pub(crate) transport: TransportId,
    pub(crate) kind: MediaKind,
    pub(crate) mid: Mid,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    pub(crate) clock_rate: u32,
    pub(crate) paused: bool,
    pub(crate) producer_paused: bool,
    pub(crate) rewriter: Rewriter,
    /// The producer encoding being forwarded; `None` until the first one starts.
    pub(crate) current_layer: Option<usize>,
    /// The encoding the application prefers (simulcast); the highest by default.
    pub(crate) preferred_layer: usize,
    /// The highest encoding the transport's bandwidth allows, as the allocator last chose
    /// (`None`: no limit).
    pub(crate) target_layer: Option<usize>,
    /// The consumer's share of its transport's bandwidth relative to the others' (1..=255).
    pub(crate) priority: u8,
    pub(crate) parameters: ConsumerParameters,
    /// RTX payload type, when the consumer's endpoint takes retransmissions on an RTX stream.
    pub(crate) rtx_payload_type: Option<u8>,
    /// The outgoing stream: what was sent (to answer NACKs), sender reports, RTT.
    pub(crate) send: SendStream,
    /// The producer's header extensions the endpoint understands (ids kept), without the ones
    /// rewritten per consumer (mid, rid, repaired rid, transport-wide sequence number).
    pub(crate) extensions: ExtensionIdMap,
    /// Extension id of the mid the consumer's packets carry, if negotiated.
    pub(crate) mid_extension: Option<u8>,
    /// Extension id of the transport-wide sequence number, if negotiated.
    pub(crate) transport_cc_extension: Option<u8>,
    /// Extension id of abs-send-time, written with the time each packet leaves, if negotiated.
    pub(crate) abs_send_time_extension: Option<u8>,
    /// When the first packet was sent to the endpoint.
    pub(crate) first_sent_at: Option<Instant>,
    /// Whether the last enhancement-layer packet sent left its picture unfinished (the pacer
    /// sends the rest of that picture even when it is stale).
    pub(crate) enhancement_picture_open: bool,
    /// Which clock the consumer's sender reports speak, once the first was sent: the
    /// producer's (from its own sender reports) or the Sfu's. Never changes after that.
    pub(crate) report_clock: Option<ReportClock>,
    pub(crate) stats: ConsumerStats,
    /// A pipe consumer's streams: every encoding of the producer, each on its own SSRC.
    pub(crate) pipe: Option<Box<PipeStreams>>,
    /// The layers it gets of a producer whose stream carries several (VP9 SVC, temporal
    /// layers); `preferred_layer` and `target_layer` are then spatial layers of that stream.
    pub(crate) layers: Option<LayerFilter>,
    /// AV1: its receiver was told fewer active decode targets than the producer's since the
    /// last structure it got (so every descriptor says them until the next structure).
    pub(crate) descriptor_rewritten: bool,
    /// The temporal layer the application prefers (`None`: the highest).
    pub(crate) preferred_temporal_layer: Option<u8>,
    /// The highest temporal layer the allocator allows (`None`: no limit): inside the target
    /// encoding when the encodings carry temporal layers, or for spatial layers inside one
    /// stream when even the lowest does not fit.
    pub(crate) target_temporal_layer: Option<u8>,
    /// Trace event types enabled (none by default).
    pub(crate) trace: TraceFlags,
    /// The layers last reported by `layerschange` (simulcast consumers).
    pub(crate) reported_layers: Option<ConsumerLayers>,
    /// The score last reported, and the receiver report it was computed from: (its extended
    /// highest sequence number, its cumulative loss, the sequence numbers skipped by then, the
    /// packets retransmitted by then).
    pub(crate) score: ConsumerScore,
    pub(crate) score_base: Option<(u32, i64, u64, u64)>,
}

/// The streams of a pipe consumer: one per producer encoding, each carrying the encoding's
/// packets with their sequence numbers and timestamps as the producer received them.
#[derive(Debug)]
pub(crate) struct PipeStreams {
    /// The SSRC of each encoding's stream.
    pub(crate) ssrcs: Vec<u32>,
    /// The SSRC of each encoding's RTX stream (empty without RTX).
    pub(crate) rtx_ssrcs: Vec<u32>,
    /// The next sequence number of each RTX stream.
    pub(crate) rtx_seqs: Vec<u64>,
    /// For each encoding, the rollover count of the first packet sent: the SRTP index the
    /// peer estimates starts at zero there.
    pub(crate) roc_base: Vec<Option<u64>>,
    /// For each encoding, what its stream sent: the counts and clock its sender reports give.
    pub(crate) sent: Vec<PipeSent>,
}

/// What one stream of a pipe consumer sent (retransmissions not included).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PipeSent {
    /// Packets sent (modulo 2^32, as sender reports count them).
    pub(crate) packets: u32,
    /// Payload octets sent (modulo 2^32).
    pub(crate) octets: u32,
    /// The newest packet's RTP timestamp and when it was sent; `None` before the first.
    pub(crate) last: Option<(u32, Instant)>,
}

impl PipeStreams {
    /// The encoding whose stream (media or RTX) is `ssrc`.
    pub(crate) fn layer_of(&self, ssrc: u32) -> Option<usize> {
        self.ssrcs
            .iter()
            .position(|&s| s == ssrc)
            .or_else(|| self.rtx_ssrcs.iter().position(|&s| s == ssrc))
    }

    /// The SRTP index (rollover count in the high bits) the packet of extended sequence number
    /// `ext_seq` goes out with on `layer`'s stream.
    pub(crate) fn index(&mut self, layer: usize, ext_seq: u64) -> u64 {
        let Some(base) = self.roc_base.get_mut(layer) else {
            return ext_seq;
        };
        let base = *base.get_or_insert(ext_seq >> 16);
        ext_seq.saturating_sub(base << 16)
    }

    /// Counts a packet of `payload` octets with RTP timestamp `timestamp` sent on `layer`'s
    /// stream at `now`.
    pub(crate) fn on_sent(&mut self, layer: usize, payload: usize, timestamp: u32, now: Instant) {
        if let Some(sent) = self.sent.get_mut(layer) {
            sent.packets = sent.packets.wrapping_add(1);
            // The octet count wraps modulo 2^32 (RFC 3550 section 6.4.1).
            sent.octets = sent.octets.wrapping_add(payload as u32);
            sent.last = Some((timestamp, now));
        }
    }

    /// A sender report for `layer`'s stream as of `now`, or `None` before its first packet.
    ///
    /// The stream carries the producer's timestamps unchanged, so with `producer_sr` =
    /// `Some((ntp, rtp_ts, arrived_at))`, the encoding's latest sender report, the report is
    /// the producer's NTP/RTP pair advanced by `now - arrived_at`: the peer's consumers keep
    /// the sender's mapping (lip sync across the pipe). Without it, the NTP time is the Sfu's
    /// (`ntp_base`: an NTP time and the instant it stands for) and the RTP time the newest
    /// packet's timestamp advanced by the time since it was sent.
    pub(crate) fn sender_report(
        &self,
        layer: usize,
        now: Instant,
        producer_sr: Option<(u64, u32, Instant)>,
        clock_rate: u32,
        ntp_base: (u64, Instant),
    ) -> Option<SenderReportData> {
        let sent = self.sent.get(layer)?;
        let (last_ts, last_at) = sent.last?;
        let (ntp, rtp_ts) = match producer_sr {
            Some((ntp, rtp_ts, arrived_at)) => (
                ntp::ntp_at((ntp, arrived_at), now),
                ntp::rtp_at(rtp_ts, clock_rate, arrived_at, now),
            ),
            None => (
                ntp::ntp_at(ntp_base, now),
                ntp::rtp_at(last_ts, clock_rate, last_at, now),
            ),
        };
        Some(SenderReportData {
            ssrc: *self.ssrcs.get(layer)?,
            ntp,
            rtp_ts,
            packet_count: sent.packets,
            octet_count: sent.octets,
        })
    }
}

impl Consumer {
    /// The producer encodings a key frame is asked of for this consumer: the one it forwards
    /// (or prefers), or every one for a pipe consumer.
    pub(crate) fn key_frame_layers(&self) -> std::ops::Range<usize> {
        match self.pipe.as_deref() {
            Some(pipe) => 0..pipe.ssrcs.len(),
            None => {
                let layer = self.current_layer.unwrap_or(self.wanted_encoding());
                layer..layer + 1
            }
        }
    }

    /// The encoding to forward when active: the preferred one, no higher than the allocator's
    /// target.
    pub(crate) fn wanted_layer(&self) -> usize {
        self.target_layer
            .map_or(self.preferred_layer, |t| t.min(self.preferred_layer))
    }

    /// The producer encoding it should get: the wanted layer for simulcast, the one encoding
    /// of a producer with spatial layers inside it.
    pub(crate) fn wanted_encoding(&self) -> usize {
        if self.spatial_inside() {
            0
        } else {
            self.wanted_layer()
        }
    }

    /// Whether its layers are spatial layers inside one stream (VP9 SVC), not encodings.
    pub(crate) fn spatial_inside(&self) -> bool {
        self.layers.is_some_and(|f| f.spatial_layers() > 1)
    }

    pub(crate) fn is_forwarding(&self) -> bool {
        !self.paused && !self.producer_paused
    }
}
