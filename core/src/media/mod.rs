//! The media plane: SRTP, RTP and RTCP, owned by the core.
//!
//! str0m keeps ICE, DTLS (and SCTP) for WebRTC transports; everything that carries media is
//! here, shared by every transport kind:
//!
//! - [`srtp`]: SRTP and SRTCP contexts (RFC 3711, RFC 7714), keys expanded once, in place.
//! - [`packet`]: a checked view of an RTP packet and in-place header rewriting.
//! - [`rtcp`]: parsing and building of compound RTCP.
//! - receive streams (statistics, NACK generation), send streams (RTX, sender reports), the
//!   received-packet store and transport-wide congestion control feedback.
//! - bandwidth estimation per transport from the feedback its endpoint returns (`bwe`), and
//!   a pacer (`pacer`, not yet in the send path).
//! - the AV1 dependency descriptor (`dd`): layers, decode targets and references per frame.

pub mod packet;
pub mod rtcp;
pub mod srtp;

pub(crate) mod bwe;
pub(crate) mod dd;
pub(crate) mod meter;
pub(crate) mod pacer;
pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod twcc;
