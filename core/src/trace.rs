//! Trace events (mediasoup's `enableTraceEvent` and `trace`): per transport the bandwidth
//! estimate (`bwe`) and probe padding (`probation`), per producer and consumer the RTP packets,
//! key frames, NACKs, PLIs and FIRs that pass.
//!
//! Off by default. Each producer, consumer and transport keeps the types enabled as a bit set
//! ([`TraceFlags`]); the places that could trace test one bit, so a disabled trace costs a
//! load and a branch.

use serde::{Deserialize, Serialize};

/// A type of trace event (mediasoup's names, lowercase in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TraceEventType {
    /// An RTP packet: received by a producer (direction in), sent by a consumer (out).
    Rtp,
    /// A packet of a video key frame: received by a producer (direction in), sent by a
    /// consumer (out).
    Keyframe,
    /// A NACK: sent to a producer's endpoint (out), received from a consumer's (in).
    Nack,
    /// A PLI, likewise.
    Pli,
    /// A FIR, likewise.
    Fir,
    /// A transport's bandwidth estimate, on every transport-wide congestion control feedback.
    Bwe,
    /// A probe padding packet a transport sent (out).
    Probation,
}

impl TraceEventType {
    /// The types a producer or consumer traces.
    pub const MEDIA: [TraceEventType; 5] =
        [Self::Rtp, Self::Keyframe, Self::Nack, Self::Pli, Self::Fir];
    /// The types a transport traces.
    pub const TRANSPORT: [TraceEventType; 2] = [Self::Bwe, Self::Probation];

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Which way a traced packet went, seen from the Sfu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceDirection {
    /// Received from the endpoint.
    In,
    /// Sent to the endpoint.
    Out,
}

/// One trace event (mediasoup's `TraceEventData`): `{ type, timestamp, direction, info }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// What was traced.
    #[serde(rename = "type")]
    pub kind: TraceEventType,
    /// When, in milliseconds on the Sfu's clock since the Sfu was created.
    pub timestamp: u64,
    /// Which way.
    pub direction: TraceDirection,
    /// Details of the type.
    pub info: TraceInfo,
}

/// The details of a [`TraceEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum TraceInfo {
    /// An RTP packet (`rtp`, `probation`).
    Rtp(RtpTraceInfo),
    /// A key frame packet, PLI, FIR or NACK: the SSRC of the stream it is about (on a
    /// consumer, its own SSRC; on a producer, the encoding's).
    Stream {
        /// The stream's SSRC.
        ssrc: u32,
    },
    /// A transport's bandwidth estimate.
    Bwe(BweTraceInfo),
}

/// An `rtp` or `probation` trace's details: the packet's header as it was received (producer)
/// or sent (consumer, transport), mediasoup's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpTraceInfo {
    /// The RTP payload type.
    pub payload_type: u8,
    /// The RTP sequence number.
    pub sequence_number: u16,
    /// The RTP timestamp.
    pub timestamp: u32,
    /// The marker bit.
    pub marker: bool,
    /// The SSRC.
    pub ssrc: u32,
    /// Whether the packet starts a video key frame.
    pub is_key_frame: bool,
    /// The packet's size in bytes (header, payload and padding; before SRTP).
    pub size: usize,
    /// The payload's size in bytes.
    pub payload_size: usize,
}

/// A `bwe` trace's details (mediasoup's names; bits per second).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BweTraceInfo {
    /// What the transport's consumers would send at their preferred layers (audio included).
    pub desired_bitrate: u64,
    /// What they send at the layers the allocator gives them.
    pub effective_desired_bitrate: u64,
    /// The application's floor (`set_min_outgoing_bitrate`; 0: none).
    pub min_bitrate: u64,
    /// The application's cap (`set_max_outgoing_bitrate`; 0: none).
    pub max_bitrate: u64,
    /// The estimate the transport started with.
    pub start_bitrate: u64,
    /// A steady padding rate the transport may send (always 0: it probes in short clusters
    /// instead, see the `probation` trace).
    pub max_padding_bitrate: u64,
    /// The estimate, as the transport's `available_outgoing_bitrate`.
    pub available_bitrate: u64,
}

/// The trace event types enabled on a producer, consumer or transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TraceFlags(u16);

impl TraceFlags {
    /// Exactly `types`, each checked against what the object can trace (`allowed`); the first
    /// it cannot is returned as the error.
    pub(crate) fn of(
        types: &[TraceEventType],
        allowed: &[TraceEventType],
    ) -> Result<Self, TraceEventType> {
        let mut bits = 0;
        for t in types {
            if !allowed.contains(t) {
                return Err(*t);
            }
            bits |= t.bit();
        }
        Ok(Self(bits))
    }

    /// Whether `kind` is enabled.
    #[inline]
    pub(crate) fn has(self, kind: TraceEventType) -> bool {
        self.0 & kind.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_hold_exactly_what_was_enabled() {
        let f = TraceFlags::of(
            &[TraceEventType::Pli, TraceEventType::Nack],
            &TraceEventType::MEDIA,
        )
        .unwrap();
        assert!(f.has(TraceEventType::Pli) && f.has(TraceEventType::Nack));
        assert!(!f.has(TraceEventType::Fir) && !f.has(TraceEventType::Keyframe));
        assert_eq!(
            TraceFlags::of(&[TraceEventType::Bwe], &TraceEventType::MEDIA),
            Err(TraceEventType::Bwe)
        );
        assert!(!TraceFlags::default().has(TraceEventType::Bwe));
    }

    #[test]
    fn serialized_as_mediasoup_names_them() {
        let t = TraceEvent {
            kind: TraceEventType::Pli,
            timestamp: 1500,
            direction: TraceDirection::Out,
            info: TraceInfo::Stream { ssrc: 42 },
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"type":"pli","timestamp":1500,"direction":"out","info":{"ssrc":42}}"#
        );
        let types: Vec<TraceEventType> = serde_json::from_str(r#"["bwe","keyframe"]"#).unwrap();
        assert_eq!(types, [TraceEventType::Bwe, TraceEventType::Keyframe]);
        let bwe = serde_json::to_value(TraceInfo::Bwe(BweTraceInfo {
            available_bitrate: 1,
            ..BweTraceInfo::default()
        }))
        .unwrap();
        assert_eq!(bwe["availableBitrate"], 1);
        assert_eq!(bwe["effectiveDesiredBitrate"], 0);
    }
}
