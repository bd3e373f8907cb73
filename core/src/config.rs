//! Configuration of an [`Sfu`](crate::Sfu).

use std::time::Duration;

/// How an [`Sfu`](crate::Sfu) behaves. `Default` suits most uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SfuConfig {
    /// Seed for ids, ICE credentials and SSRCs. The same seed and the same inputs give the same
    /// run. `None` draws a seed from the operating system.
    pub seed: Option<u64>,
    /// Datagrams longer than this are dropped and counted.
    pub max_datagram_size: usize,
    /// How many datagrams to one UDP path the Sfu may put back to back in one
    /// [`Transmit`](crate::Transmit) (with `segment_size` set) for the caller to send in one
    /// GSO call. 1, the default, gives one datagram per transmit. The bundled runtimes set it
    /// from their sockets.
    pub gso_segments: usize,
    /// At most one key frame request per producer stream is sent in this interval; requests in
    /// between are merged into one sent when it ends.
    pub key_frame_request_interval: Duration,
    /// A transport knows at most this many network paths (a peer may try several candidates,
    /// and a NAT may move it): a new authenticated path replaces the oldest one media does not
    /// go out on.
    pub max_tuples_per_transport: usize,
    /// ICE consent (RFC 7675; mediasoup's `iceConsentTimeout`): a WebRTC transport whose
    /// client sent no valid binding request for this long after its first one has lost the
    /// client's consent: its ICE state becomes disconnected and the transport is closed, with
    /// the events of [`Sfu::close_transport`](crate::Sfu::close_transport). Browsers check
    /// every few seconds. Zero turns the check off.
    pub ice_consent_timeout: Duration,
    /// Whether WebRTC transports pace their consumers' video: a leaky bucket at a multiple of
    /// the transport's bandwidth estimate spreads key frame bursts (audio, RTCP and
    /// retransmissions never wait). On by default.
    pub pacing: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            seed: None,
            max_datagram_size: 2000,
            gso_segments: 1,
            key_frame_request_interval: Duration::from_millis(200),
            max_tuples_per_transport: 8,
            ice_consent_timeout: Duration::from_secs(30),
            pacing: true,
        }
    }
}

impl SfuConfig {
    /// The default configuration with a fixed seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..Self::default()
        }
    }
}
