//! Scores, `layerschange` and trace events: what the Sfu tells the application about the
//! quality of its streams (see [`crate::score`] and [`crate::trace`]).
//!
//! Scores are computed on each transport's report timer from counters the packet path keeps
//! anyway; layers are reported by the one function that sets the layer a consumer forwards;
//! traces are pushed where the traced packet passes, behind a test of one bit.

use std::collections::VecDeque;
use std::time::Instant;

use crate::event::Event;
use crate::ids::{ConsumerId, ProducerId, TransportId};
use crate::io::Output;
use crate::media::packet::OutHeader;
use crate::ortc::{ConsumerType, MediaKind};
use crate::router::{Consumer, Producer};
use crate::score::{self, ConsumerLayers, ConsumerScore, ProducerScore, SCORE_INTERVAL};
use crate::trace::{
    BweTraceInfo, RtpTraceInfo, TraceDirection, TraceEvent, TraceEventType, TraceInfo,
};

use super::Sfu;

/// Sets the producer encoding consumer `c` (`cid`) forwards (`None`: none) and reports
/// [`Event::ConsumerLayersChange`] when its layers change. Every change of `current_layer`, or
/// of whether the consumer forwards at all (pause), goes through here. A consumer that starts
/// an encoding with temporal layers inside reports once its layer filter has taken the
/// packet that starts it (see `Sfu::forward`): the temporal layer changes there too, and the
/// one reported is the one sent.
pub(crate) fn set_current_layer(
    c: &mut Consumer,
    cid: ConsumerId,
    layer: Option<usize>,
    out: &mut VecDeque<Output>,
) {
    c.current_layer = layer;
    c.stats.current_layer = layer;
    if layer.is_none() || c.layers.is_none() {
        report_layers(c, cid, out);
    }
}

/// Reports [`Event::ConsumerLayersChange`] when the layers consumer `c` (`cid`) gets changed:
/// a simulcast consumer's encoding (and the temporal layers inside it), an SVC consumer's
/// spatial and temporal layers; `None` while it forwards nothing.
pub(crate) fn report_layers(c: &mut Consumer, cid: ConsumerId, out: &mut VecDeque<Output>) {
    let inside = c.layers.as_ref().and_then(|f| f.current());
    let layers = match c.parameters.consumer_type {
        ConsumerType::Simulcast => c.current_layer.map(|l| ConsumerLayers {
            spatial_layer: l.min(usize::from(u8::MAX)) as u8,
            temporal_layer: inside.map_or(0, |(_, t)| t),
        }),
        ConsumerType::Svc => inside.map(|(s, t)| ConsumerLayers {
            spatial_layer: s,
            temporal_layer: t,
        }),
        _ => return,
    }
    .filter(|_| c.is_forwarding());
    if layers != c.reported_layers {
        c.reported_layers = layers;
        out.push_back(Output::Event(Event::ConsumerLayersChange {
            consumer: cid,
            layers,
        }));
    }
}

/// A trace of `kind` with `info` at `now`, for an Sfu created at `start`.
pub(crate) fn trace_event(
    kind: TraceEventType,
    direction: TraceDirection,
    info: TraceInfo,
    (start, now): (Instant, Instant),
) -> Box<TraceEvent> {
    Box::new(TraceEvent {
        kind,
        timestamp: timestamp(start, now),
        direction,
        info,
    })
}

/// Reports a packet sent to consumer `c` (its `header`, `size` bytes of which `payload` are
/// payload) as the `rtp` and `keyframe` traces it has enabled; `key_frame` says whether the
/// packet starts a key frame, asked only when one is enabled.
#[inline]
pub(crate) fn trace_sent(
    c: &Consumer,
    cid: ConsumerId,
    (header, size, payload): (&OutHeader, usize, usize),
    key_frame: impl FnOnce() -> bool,
    times: (Instant, Instant),
    out: &mut VecDeque<Output>,
) {
    let (rtp, keyframe) = (
        c.trace.has(TraceEventType::Rtp),
        c.trace.has(TraceEventType::Keyframe),
    );
    let video_keyframe = keyframe && c.kind == MediaKind::Video;
    if !(rtp || video_keyframe) {
        return;
    }
    let key_frame = c.kind == MediaKind::Video && key_frame();
    if rtp {
        let info = RtpTraceInfo {
            payload_type: header.payload_type,
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            marker: header.marker,
            ssrc: header.ssrc,
            is_key_frame: key_frame,
            size,
            payload_size: payload,
        };
        let info = TraceInfo::Rtp(info);
        let trace = trace_event(TraceEventType::Rtp, TraceDirection::Out, info, times);
        out.push_back(Output::Event(Event::ConsumerTrace {
            consumer: cid,
            trace,
        }));
    }
    if keyframe && key_frame {
        trace_key_frame_sent(c, cid, times, out);
    }
}

/// Reports that a key frame packet was sent to consumer `c`, if it traces key frames.
#[inline]
pub(crate) fn trace_key_frame_sent(
    c: &Consumer,
    cid: ConsumerId,
    times: (Instant, Instant),
    out: &mut VecDeque<Output>,
) {
    if c.trace.has(TraceEventType::Keyframe) {
        let info = TraceInfo::Stream { ssrc: c.ssrc };
        let trace = trace_event(TraceEventType::Keyframe, TraceDirection::Out, info, times);
        out.push_back(Output::Event(Event::ConsumerTrace {
            consumer: cid,
            trace,
        }));
    }
}

fn timestamp(start: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

/// Every encoding's score.
pub(crate) fn producer_scores(p: &Producer) -> Vec<ProducerScore> {
    p.encodings
        .iter()
        .enumerate()
        .map(|(i, e)| ProducerScore {
            encoding_idx: i,
            ssrc: e.ssrc.unwrap_or(0),
            rid: e.rid.map(|r| r.as_str().to_owned()),
            score: e.score,
        })
        .collect()
}

impl Sfu {
    /// When the Sfu was created: trace timestamps count from there.
    pub(crate) fn started(&self) -> Instant {
        self.ntp_base.1
    }

    /// A consumer's score when it is created: its producer's scores as they stand.
    pub(crate) fn initial_consumer_score(&self, producer: ProducerId) -> ConsumerScore {
        ConsumerScore {
            producer_scores: self
                .producers
                .get(&producer)
                .map(|p| p.encodings.iter().map(|e| e.score).collect())
                .unwrap_or_default(),
            ..ConsumerScore::default()
        }
    }

    /// Reports a trace of `kind` on producer `pid` about its stream `ssrc`, if enabled.
    pub(crate) fn trace_producer(
        &mut self,
        pid: ProducerId,
        kind: TraceEventType,
        direction: TraceDirection,
        ssrc: u32,
    ) {
        if self.producers.get(&pid).is_some_and(|p| p.trace.has(kind)) {
            let info = TraceInfo::Stream { ssrc };
            let trace = trace_event(kind, direction, info, (self.started(), self.now));
            self.out.push_back(Output::Event(Event::ProducerTrace {
                producer: pid,
                trace,
            }));
        }
    }

    /// Reports a trace of `kind` on consumer `cid`, if enabled.
    pub(crate) fn trace_consumer(
        &mut self,
        cid: ConsumerId,
        kind: TraceEventType,
        direction: TraceDirection,
    ) {
        let Some(c) = self.consumers.get(&cid).filter(|c| c.trace.has(kind)) else {
            return;
        };
        let info = TraceInfo::Stream { ssrc: c.ssrc };
        let trace = trace_event(kind, direction, info, (self.started(), self.now));
        self.out.push_back(Output::Event(Event::ConsumerTrace {
            consumer: cid,
            trace,
        }));
    }

    /// Reports transport `tid`'s bandwidth estimate as a `bwe` trace, if enabled: the estimate,
    /// the application's bounds, and what its consumers would send at their preferred layers
    /// (desired) and at the layers the allocator gives them (effective), from the producers'
    /// measured bitrates.
    pub(crate) fn trace_bwe(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self
            .transports
            .get(&tid)
            .filter(|t| t.trace.has(TraceEventType::Bwe))
        else {
            return;
        };
        let (mut desired, mut effective) = (0u64, 0u64);
        for cid in t.consumers_by_mid.values() {
            let Some(c) = self.consumers.get(cid).filter(|c| c.is_forwarding()) else {
                continue;
            };
            let Some(p) = self.producers.get(&c.producer) else {
                continue;
            };
            let top = p.encodings.len().saturating_sub(1);
            let rate = |l: usize| {
                p.encodings
                    .get(l.min(top))
                    .map_or(0, |e| e.bitrate.bitrate(now))
            };
            if c.pipe.is_some() {
                let all: u64 = (0..=top).map(rate).sum();
                desired += all;
                effective += all;
            } else if c.kind == MediaKind::Audio {
                desired += rate(0);
                effective += rate(0);
            } else {
                desired += rate(c.preferred_layer);
                effective += rate(c.wanted_layer());
            }
        }
        let info = BweTraceInfo {
            desired_bitrate: desired,
            effective_desired_bitrate: effective,
            min_bitrate: t.bwe.min(),
            max_bitrate: t.bwe.max().unwrap_or(0),
            start_bitrate: t.start_bitrate,
            max_padding_bitrate: 0,
            available_bitrate: t.bwe.estimate(),
        };
        let times = (self.started(), now);
        let trace = trace_event(
            TraceEventType::Bwe,
            TraceDirection::Out,
            TraceInfo::Bwe(info),
            times,
        );
        self.out.push_back(Output::Event(Event::TransportTrace {
            transport: tid,
            trace,
        }));
    }

    /// On transport `tid`'s report timer, once every [`SCORE_INTERVAL`]: the scores of its
    /// producers' encodings (`producers`) and of its consumers, each reported when it changed.
    pub(crate) fn update_scores(&mut self, tid: TransportId, producers: &[ProducerId]) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if t.next_score_at.is_some_and(|at| now < at) {
            return;
        }
        t.next_score_at = Some(now + SCORE_INTERVAL);
        let consumers: Vec<ConsumerId> = t.consumers_by_mid.values().copied().collect();
        for &pid in producers {
            self.update_producer_score(pid);
        }
        for cid in consumers {
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            let own = own_score(c);
            if let Some(p) = self.producers.get(&c.producer) {
                refresh_consumer_score(c, cid, own, p, &mut self.out);
            }
        }
    }

    /// Scores each encoding of producer `pid` over the interval since the last time; reports
    /// the producer's scores, and its consumers', when one changed.
    fn update_producer_score(&mut self, pid: ProducerId) {
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let mut changed = false;
        for e in &mut p.encodings {
            let (expected, received) = e.recv.as_ref().map_or((0, 0), |r| r.counts());
            let (expected_before, received_before, repaired_before) =
                std::mem::replace(&mut e.score_base, (expected, received, e.retransmitted));
            let expected = expected.saturating_sub(expected_before);
            let received = received.saturating_sub(received_before);
            let repaired = e.retransmitted.saturating_sub(repaired_before);
            let sample = score::score_of(expected, expected.saturating_sub(received), repaired);
            let s = e.score_samples.push(sample);
            changed |= s != e.score;
            e.score = s;
        }
        if !changed {
            return;
        }
        let Some(p) = self.producers.get(&pid) else {
            return;
        };
        self.out.push_back(Output::Event(Event::ProducerScore {
            producer: pid,
            scores: producer_scores(p),
        }));
        for cid in &p.consumers {
            if let Some(c) = self.consumers.get_mut(cid) {
                let own = c.score.score;
                refresh_consumer_score(c, *cid, own, p, &mut self.out);
            }
        }
    }
}

/// A consumer's own score from its endpoint's receiver reports since the last time (the first
/// time: since its first packet): the packets the endpoint counts lost among those it
/// expected, both less the sequence numbers the stream skipped (packets lost before the Sfu),
/// and the packets sent again in the meantime as repaired. Its score as it was without a new
/// report.
fn own_score(c: &mut Consumer) -> u8 {
    let (Some((highest, holes)), Some(first)) = (c.send.report_position(), c.send.first_sent_seq())
    else {
        return c.score.score;
    };
    let stats = c.send.stats();
    let (lost, repaired) = (i64::from(stats.packets_lost), stats.packets_retransmitted);
    let (highest_before, lost_before, holes_before, repaired_before) =
        c.score_base.unwrap_or((first.wrapping_sub(1), 0, 0, 0));
    let span = u64::from(highest.wrapping_sub(highest_before));
    if span == 0 || span >= 1 << 31 {
        // No new report, or one that went backwards (reordered): nothing to learn.
        return c.score.score;
    }
    c.score_base = Some((highest, lost, holes, repaired));
    let skipped = holes.saturating_sub(holes_before);
    let lost_now = u64::try_from(lost - lost_before)
        .unwrap_or(0)
        .saturating_sub(skipped);
    let expected = span.saturating_sub(skipped);
    let repaired_now = repaired.saturating_sub(repaired_before);
    score::consumer_score_of(expected, lost_now, repaired_now)
}

/// Sets consumer `c`'s score from its own (`own`) and its producer `p`'s scores; reports
/// [`Event::ConsumerScore`] when anything changed.
fn refresh_consumer_score(
    c: &mut Consumer,
    cid: ConsumerId,
    own: u8,
    p: &Producer,
    out: &mut VecDeque<Output>,
) {
    let score_of_layer = |l: usize| p.encodings.get(l).map_or(0, |e| e.score);
    let producer_score = if c.pipe.is_some() {
        p.encodings.iter().map(|e| e.score).max().unwrap_or(0)
    } else if c.parameters.consumer_type == ConsumerType::Simulcast {
        c.current_layer.map_or(0, score_of_layer)
    } else {
        score_of_layer(0)
    };
    let same_producer_scores = c.score.producer_scores.len() == p.encodings.len()
        && c.score
            .producer_scores
            .iter()
            .zip(&p.encodings)
            .all(|(s, e)| *s == e.score);
    if own == c.score.score && producer_score == c.score.producer_score && same_producer_scores {
        return;
    }
    c.score = ConsumerScore {
        score: own,
        producer_score,
        producer_scores: p.encodings.iter().map(|e| e.score).collect(),
    };
    out.push_back(Output::Event(Event::ConsumerScore {
        consumer: cid,
        score: Box::new(c.score.clone()),
    }));
}
