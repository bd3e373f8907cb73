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

pub(crate) use nack::NackGenerator;
pub(crate) use stream::{Arrival, RecvStream, MAX_DROPOUT};

pub(crate) use crate::media::rtcp::ReportBlock;
