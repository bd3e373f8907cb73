//! ORTC data model and RTP capability negotiation, modelled on mediasoup's `ortc.ts`.
//!
//! The serde types (e.g. [`RtpCapabilities`], [`RtpParameters`], [`ConsumerParameters`])
//! have the JSON shape mediasoup-client expects (router RTP capabilities, transport parameters, consumer parameters, producer
//! RTP parameters). The negotiation functions build router capabilities from configured
//! media codecs, validate and map producer parameters, and derive consumable and consumer
//! parameters.
//!
//! All functions process untrusted signaling input: they never panic and report problems
//! as [`OrtcError`].

mod negotiate;
mod pipe;
mod plain;
mod types;

pub use negotiate::*;
pub use pipe::*;
pub use plain::*;
pub use types::*;
