//! Scores (0–10, mediasoup's meaning) of what producers receive and consumers send, and the
//! layers a consumer forwards.
//!
//! A score says how well a stream arrives: 10 is perfect, 0 is nothing arriving. Scores are
//! computed on the transport's report timer every [`SCORE_INTERVAL`] from the streams'
//! counters, never per packet:
//!
//! - a **producer encoding** from what its receive statistics counted over the interval:
//!   the share of the packets expected that never arrived, even after retransmission, counts
//!   in full; the share that arrived only as a retransmission counts a quarter (a repaired
//!   packet cost a round trip of delay). Every 2% of that weighted loss costs one point, so 5%
//!   lost and repaired gives 9, 5% lost without repair 7 or 8, 20% or more 0. An encoding that
//!   received nothing over the interval scores 0. The score reported is the mean of the last
//!   three intervals' (so a stream that stops falls to 0 within three intervals).
//! - a **consumer** from its endpoint's receiver reports, between the report seen at the
//!   previous computation (or the first packet) and the latest: the packets the reports'
//!   cumulative loss grew by (what stayed lost) and the packets the Sfu sent again on the
//!   endpoint's NACKs (repaired), over the sequence numbers the reports' highest moved by; all
//!   less the sequence numbers the stream skipped, which are packets lost before the Sfu and
//!   its producer's score's business. The same scale as producers'. Without a new report a
//!   consumer keeps its score; one whose endpoint sends no reports stays at 10.

use serde::{Deserialize, Serialize};

/// How often scores are computed: on the transport's report timer, once this much has passed.
pub(crate) const SCORE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The score of one producer encoding (mediasoup's `ProducerScore`), shown in
/// [`ProducerStats::score`](crate::ProducerStats::score) and reported by
/// [`Event::ProducerScore`](crate::Event::ProducerScore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerScore {
    /// The encoding's index in the producer's `rtpParameters.encodings`.
    pub encoding_idx: usize,
    /// The encoding's SSRC (0 until known).
    pub ssrc: u32,
    /// The encoding's rid, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// 0 (nothing arrives) to 10 (nothing lost).
    pub score: u8,
}

/// A consumer's score (mediasoup's `ConsumerScore`), in
/// [`ConsumerStats::score`](crate::ConsumerStats::score) and
/// [`Event::ConsumerScore`](crate::Event::ConsumerScore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerScore {
    /// How well the consumer's stream reaches its endpoint (0–10), from its receiver reports.
    pub score: u8,
    /// The score of the producer encoding the consumer forwards (0 when it forwards none).
    pub producer_score: u8,
    /// The score of every encoding of the producer.
    pub producer_scores: Vec<u8>,
}

impl Default for ConsumerScore {
    fn default() -> Self {
        Self {
            score: 10,
            producer_score: 0,
            producer_scores: Vec::new(),
        }
    }
}

/// The layers a consumer forwards (mediasoup's `layerschange` payload): the simulcast encoding
/// (spatial layer) and, within it, the temporal layer (0 until temporal layers are selected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLayers {
    /// The spatial layer (simulcast encoding index, 0 = lowest).
    pub spatial_layer: u8,
    /// The temporal layer.
    pub temporal_layer: u8,
}

/// The last few samples of a producer encoding's score: what is reported is their mean, so
/// that one unlucky interval does not swing it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Samples {
    samples: [u8; SAMPLES],
    len: usize,
    next: usize,
}

/// Samples a producer encoding's score is the mean of.
const SAMPLES: usize = 3;

impl Samples {
    /// Adds a sample; returns the mean of the last ones, rounded to the nearest point.
    pub(crate) fn push(&mut self, sample: u8) -> u8 {
        self.samples[self.next] = sample;
        self.next = (self.next + 1) % SAMPLES;
        self.len = (self.len + 1).min(SAMPLES);
        let sum: usize = self.samples[..self.len]
            .iter()
            .map(|&s| usize::from(s))
            .sum();
        ((sum * 2 + self.len) / (2 * self.len)) as u8
    }
}

/// The score of `expected` packets of which `lost` never arrived and `repaired` arrived only
/// as retransmissions (see the module documentation).
pub(crate) fn score_of(expected: u64, lost: u64, repaired: u64) -> u8 {
    if expected == 0 {
        return 0;
    }
    // Weighted loss in per mille: lost in full, repaired a quarter.
    let weighted = (lost.min(expected) * 4 + repaired.min(expected)) * 1000 / (4 * expected);
    // One point per 20 per mille (2%), rounded to the nearest point.
    let points = (weighted + 10) / 20;
    10u64.saturating_sub(points) as u8
}

/// The score of a consumer's stream: `lost` of `expected` packets stayed lost, `repaired` were
/// sent again; at least 1 while anything arrives.
pub(crate) fn consumer_score_of(expected: u64, lost: u64, repaired: u64) -> u8 {
    score_of(expected, lost, repaired).max(u8::from(expected > 0 && lost < expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_stream_scores_ten_and_silence_zero() {
        assert_eq!(score_of(500, 0, 0), 10);
        assert_eq!(score_of(0, 0, 0), 0);
    }

    #[test]
    fn loss_lowers_the_score_and_repair_costs_less() {
        assert_eq!(score_of(1000, 50, 0), 7); // 5% lost: 2.5 points
        assert_eq!(score_of(1000, 0, 50), 9); // 5% repaired: 1.25% weighted
        assert_eq!(score_of(1000, 8, 0), 10); // under 1%: rounds to 10
        assert_eq!(score_of(1000, 10, 0), 9); // 1%: half a point, rounded up
        assert_eq!(score_of(1000, 200, 0), 0);
        assert_eq!(score_of(1000, 2000, 0), 0); // nonsense counters clamp
    }

    #[test]
    fn producer_scores_are_the_mean_of_the_last_three_samples() {
        let mut s = Samples::default();
        assert_eq!(s.push(10), 10);
        assert_eq!(s.push(5), 8); // 7.5 rounds up
        assert_eq!(s.push(5), 7); // 6.67
        assert_eq!(s.push(5), 5);
        assert_eq!(s.push(0), 3);
        assert_eq!(s.push(0), 2);
        assert_eq!(s.push(0), 0);
    }

    #[test]
    fn consumer_scores_follow_loss() {
        assert_eq!(consumer_score_of(1000, 0, 0), 10);
        assert_eq!(consumer_score_of(1000, 100, 0), 5);
        assert_eq!(consumer_score_of(1000, 0, 100), 9);
        assert_eq!(consumer_score_of(1000, 400, 0), 1); // still receiving something
        assert_eq!(consumer_score_of(1000, 1000, 0), 0);
    }

    #[test]
    fn serialized_as_mediasoup_names_them() {
        let p = ProducerScore {
            encoding_idx: 1,
            ssrc: 7,
            rid: Some("m".into()),
            score: 9,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"encodingIdx":1,"ssrc":7,"rid":"m","score":9}"#
        );
        let c = ConsumerScore {
            score: 10,
            producer_score: 9,
            producer_scores: vec![9, 10],
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"score":10,"producerScore":9,"producerScores":[9,10]}"#
        );
        let l = ConsumerLayers {
            spatial_layer: 2,
            temporal_layer: 0,
        };
        assert_eq!(
            serde_json::to_string(&l).unwrap(),
            r#"{"spatialLayer":2,"temporalLayer":0}"#
        );
    }
}
