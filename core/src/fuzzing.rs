//! Entry points for the fuzz targets (`tests/fuzz`), compiled only with the `fuzzing` feature.
//!
//! The crate-private code that reads network input, exposed as it is so that coverage-guided
//! fuzzing reaches it directly: RFC 7983 classification, the DTLS record check and the STUN
//! username split the Sfu routes new paths by, and the transport-cc feedback builder. Not a stable API.

use std::time::Instant;

use crate::demux::{self, Kind};

/// What the first bytes of a datagram say it is (RFC 7983), as the Sfu's demultiplexer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// STUN (first byte 0–3, at least a header).
    Stun,
    /// DTLS (first byte 20–63).
    Dtls,
    /// RTP or RTCP (first byte 128–191, at least an RTP header).
    RtpOrRtcp,
    /// SCTP over UDP, port 5000 both ways (a pipe transport's data channels).
    Sctp,
    /// Anything else: dropped as malformed.
    Unknown,
}

/// The demultiplexer's classification of `buf`.
pub fn classify(buf: &[u8]) -> DatagramKind {
    match demux::classify(buf) {
        Kind::Stun => DatagramKind::Stun,
        Kind::Dtls => DatagramKind::Dtls,
        Kind::RtpOrRtcp => DatagramKind::RtpOrRtcp,
        Kind::Sctp => DatagramKind::Sctp,
        Kind::Unknown => DatagramKind::Unknown,
    }
}

/// Whether `buf` is one or more whole DTLS 1.2 records (what the Sfu lets through to DTLS).
pub fn is_dtls12_records(buf: &[u8]) -> bool {
    demux::is_dtls12_records(buf)
}

/// A STUN binding request's username halves (server ufrag, client ufrag), as the Sfu reads
/// them to route a request from a new path.
pub fn binding_request_ufrags(buf: &[u8]) -> Option<(String, String)> {
    crate::transport::webrtc::stun::binding_request_ufrags(buf)
}

/// A transport's transport-cc recorder: arrivals in, feedback packets out.
#[derive(Debug, Default)]
pub struct TwccRecorder(crate::media::twcc::TwccRecorder);

impl TwccRecorder {
    /// Records the arrival of transport-wide sequence number `seq`.
    pub fn record(&mut self, seq: u16, arrival: Instant) {
        self.0.record(seq, arrival);
    }

    /// When the next feedback is due, if any packet is pending.
    pub fn next_feedback_at(&self) -> Option<Instant> {
        self.0.next_feedback_at()
    }

    /// Builds one feedback packet into `out`; its length, or `None` when nothing is pending.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Option<usize> {
        self.0.poll_feedback(now, sender_ssrc, media_ssrc, out)
    }
}

/// A transport's bandwidth estimator: packets sent in, transport-cc feedback in, the estimate
/// out (for the fuzz targets and the estimator's benchmark).
#[derive(Debug)]
pub struct BandwidthEstimator(crate::media::bwe::Bwe);

impl BandwidthEstimator {
    /// An estimator starting at `initial` bits per second.
    pub fn new(initial: u64) -> Self {
        Self(crate::media::bwe::Bwe::new(initial))
    }

    /// Records a packet sent with transport-wide sequence number `seq`.
    pub fn on_sent(&mut self, seq: u16, size: usize, now: Instant) {
        self.0.on_sent(seq, size, now, 0);
    }

    /// Feeds every transport-cc packet of the compound RTCP `buf`.
    pub fn on_rtcp(&mut self, buf: &[u8], now: Instant) {
        for packet in crate::media::rtcp::compound(buf) {
            if let Ok(crate::media::rtcp::RtcpPacket::TransportCc(feedback)) = packet {
                self.0.on_feedback(&feedback, now);
            }
        }
    }

    /// The estimate, bits per second.
    pub fn estimate(&self) -> u64 {
        self.0.estimate()
    }
}
