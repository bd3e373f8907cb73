//! The receive side of incoming RTP streams, one per producer encoding's SSRC.
//!
//! - [`RecvStream`]: sequence number validity and extended sequence numbers (RFC 3550
//!   Appendix A.1), received/expected/lost counts and the fraction lost since the previous
//!   report (A.3), interarrival jitter (A.8) and the LSR/DLSR of receiver reports (section
//!   6.4.1), all as one [`ReportBlock`].
//! - [`NackGenerator`]: which missing packets to ask the sender for again (RFC 4585 section
//!   6.2.1 generic NACK), retried once per round trip and given up after a bound.
//!
//! Both are pure logic: time comes in as `Instant` arguments, and nothing allocates after
//! construction.

mod nack;
mod stream;

#[allow(unused_imports)] // Used once the transports are wired to this module.
pub(crate) use nack::NackGenerator;
#[allow(unused_imports)] // Used once the transports are wired to this module.
pub(crate) use stream::{Arrival, RecvStream};

/// One RTCP report block (RFC 3550 section 6.4.1) as a receive stream reports it.
///
/// Same fields as the RTCP module's report block; this one stands in for it until the two are
/// joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReportBlock {
    /// The SSRC of the stream being reported on.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fixed-point fraction of 256.
    pub fraction_lost: u8,
    /// Packets lost since the stream began, clamped to 24-bit signed.
    pub cumulative_lost: i32,
    /// The extended highest sequence number received (cycles in the upper 16 bits).
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the newest sender report, or 0 if none.
    pub last_sr: u32,
    /// Time since that sender report arrived, in 1/65536 s, or 0 if none.
    pub delay_since_last_sr: u32,
}
