//! Rooms, producers and consumers: who feeds whom, and each one's forwarding state.

use std::time::{Duration, Instant};

use str0m::media::{Mid, Rid};

use crate::forward::Rewriter;
use crate::ids::{ConsumerId, ObserverId, ProducerId, RouterId, TransportId};
use crate::keyframe::VideoCodec;
use crate::ortc::{ConsumerParameters, MediaKind, RtpCapabilities, RtpParameters};
use crate::stats::{ConsumerStats, ProducerStats};

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
    pub(crate) paused: bool,
    pub(crate) consumers: Vec<ConsumerId>,
    /// Audio level observers watching it (usually none or one).
    pub(crate) observers: Vec<ObserverId>,
    /// `None` for audio.
    pub(crate) video_codec: Option<VideoCodec>,
    pub(crate) encodings: Vec<Encoding>,
    pub(crate) stats: ProducerStats,
}

/// One encoding (simulcast layer) of a producer.
#[derive(Debug)]
pub(crate) struct Encoding {
    pub(crate) ssrc: Option<u32>,
    pub(crate) rid: Option<Rid>,
    pub(crate) last_packet_at: Option<Instant>,
    pub(crate) key_frame_sent_at: Option<Instant>,
    pub(crate) key_frame_pending: bool,
}

impl Encoding {
    pub(crate) fn new(ssrc: Option<u32>, rid: Option<Rid>) -> Self {
        Self {
            ssrc,
            rid,
            last_packet_at: None,
            key_frame_sent_at: None,
            key_frame_pending: false,
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
    pub(crate) parameters: ConsumerParameters,
    pub(crate) stats: ConsumerStats,
}

impl Consumer {
    pub(crate) fn is_forwarding(&self) -> bool {
        !self.paused && !self.producer_paused
    }
}
