//! Transports: one network path each to one endpoint.

pub(crate) mod extensions;
pub(crate) mod keys;
pub(crate) mod webrtc;

pub use webrtc::{ListenInfo, WebRtcTransportOptions};
