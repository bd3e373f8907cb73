//! # sfu-core
//!
//! A WebRTC selective forwarding unit as a pure state machine: routers (rooms), WebRTC
//! transports, producers and consumers in mediasoup's terms, with no sockets, threads or clock.
//! Each endpoint sends its streams once; the Sfu relays them to every consumer without decoding.
//!
//! ## The run loop
//!
//! The Sfu is driven by two calls. [`Sfu::handle_input`] takes a datagram (with the time it was
//! received, its protocol and both addresses) or a deadline; [`Sfu::poll_output`] hands back
//! datagrams to send, [`Event`]s, and finally the next deadline as [`Output::Timeout`].
//!
//! **Every mutation is followed by a full drain**: after `handle_input` and after every control
//! call (`create_webrtc_transport`, `produce`, `consume`, `pause_consumer`, …), call
//! `poll_output` until it returns `Output::Timeout`, then wait for the next datagram, the
//! deadline, or the application's next call.
//!
//! A runtime that reads datagrams in batches (recvmmsg, GRO) may feed the whole batch before
//! draining. Forwarded packets are then sent from `poll_output`, grouped by consumer transport:
//! each destination's datagrams come out one after another. With
//! [`SfuConfig::gso_segments`] above 1, a destination's equal-size datagrams come as one
//! [`Transmit`] (`segment_size` set) for one GSO send, or to split with
//! [`Transmit::datagrams`]. Both bundled runtimes do this.
//!
//! ## The media plane
//!
//! Each WebRTC transport keeps a str0m `Rtc` for ICE-lite, DTLS and SCTP, with no media
//! declared. The SRTP keys come out of its DTLS handshake, and every RTP and RTCP datagram goes
//! to the core's own [`media`] plane: SRTP and SRTCP (RFC 3711, RFC 7714), RTP parsing and
//! header rewriting with the header extensions carried through, receive statistics and NACKs
//! toward publishers, an RTX history answering consumers' NACKs within a budget, sender and
//! receiver reports, key frame requests, and transport-wide congestion control feedback.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use sfu_core::ortc::{MediaKind, Protocol, RtpCodecCapability};
//! use sfu_core::{Input, ListenInfo, Output, RouterOptions, Sfu, SfuConfig, WebRtcTransportOptions};
//!
//! let start = Instant::now();
//! let mut sfu = Sfu::new(SfuConfig::with_seed(7), start).unwrap();
//! let opus = RtpCodecCapability {
//!     kind: MediaKind::Audio,
//!     mime_type: "audio/opus".into(),
//!     preferred_payload_type: None,
//!     clock_rate: 48_000,
//!     channels: Some(2),
//!     parameters: Default::default(),
//!     rtcp_feedback: vec![],
//! };
//! let router = sfu.create_router(RouterOptions { media_codecs: vec![opus] }).unwrap();
//! let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
//! let transport = sfu
//!     .create_webrtc_transport(router, WebRtcTransportOptions {
//!         listen_infos: vec![ListenInfo { protocol: Protocol::Udp, local, announced_address: None }],
//!         ..Default::default()
//!     })
//!     .unwrap();
//! // `transport.parameters` goes to the client over the application's signaling.
//! assert!(transport.parameters.ice_parameters.ice_lite == Some(true));
//!
//! // The loop a runtime runs: feed what arrives, drain, sleep until the deadline.
//! let garbage = [0xffu8; 40];
//! sfu.handle_input(Input::Receive {
//!     now: start + Duration::from_millis(1),
//!     proto: Protocol::Udp,
//!     source: "127.0.0.1:50000".parse().unwrap(),
//!     destination: local,
//!     contents: &garbage,
//! });
//! let deadline = loop {
//!     match sfu.poll_output() {
//!         Output::Transmit(t) => { /* send t.contents from t.source to t.destination */ }
//!         Output::Event(e) => { /* tell the application */ }
//!         Output::Timeout(at) => break at,
//!     }
//! };
//! sfu.handle_input(Input::Timeout(deadline));
//! assert_eq!(sfu.stats().dropped_malformed, 1);
//! ```
//!
//! ## Time
//!
//! The Sfu never reads a clock: time comes only with the inputs ([`Sfu::new`] takes the start
//! time). Randomness (ids, ICE credentials, SSRCs) comes from a generator seeded by
//! [`SfuConfig::seed`], so a simulation with the same seed and inputs repeats exactly.
//!
//! ## Errors and bugs
//!
//! Bad network input is never an error: a datagram that is malformed, unauthenticated, from a
//! path ICE never validated, or too long is dropped and counted ([`Sfu::stats`],
//! [`Sfu::transport_stats`]), and no other transport notices. Misuse of the control API
//! (unknown ids, parameters that cannot work) returns an [`Error`] and changes nothing. A panic
//! is a bug.
//!
//! ## Demultiplexing and cost
//!
//! A datagram is routed by its 5-tuple once ICE validated the path; a binding request from a
//! new path is routed by the server ufrag in its USERNAME and checked against that transport's
//! password before the path is learned. Deadlines sit in a min-heap. No datagram or deadline
//! walks all transports, so the cost of forwarding a packet depends on its consumers, not on how
//! many transports exist.
//!
//! ## Audio levels
//!
//! [`Sfu::create_audio_level_observer`] makes mediasoup's `AudioLevelObserver` in a router: add
//! audio producers to it, and every interval it reports the loudest of them as
//! [`Event::AudioLevelObserverVolumes`] (from the RFC 6464 audio level header extension of
//! their packets), or [`Event::AudioLevelObserverSilence`] once when they fall silent.
//!
//! ## Data channels
//!
//! A WebRTC transport created with [`WebRtcTransportOptions::enable_sctp`] signals
//! `sctpParameters` and carries str0m's SCTP association. [`Sfu::produce_data`] takes a stream
//! the client opened (mediasoup-client's pre-negotiated channel, identified by its stream id);
//! [`Sfu::consume_data`] picks a free stream on another transport of the same router and hands
//! back the parameters for the client's `consumeData`. Each message that arrives for a data
//! producer goes to each of its data consumers, text or binary as it came. A data consumer
//! buffers at most [`WebRtcTransportOptions::sctp_send_buffer_size`] bytes not yet
//! acknowledged; past that a message is dropped and counted
//! ([`DataConsumerStats::messages_dropped`]), and [`Event::DataConsumerBufferedAmountLow`] says
//! when the buffer drained below the threshold the application set.
//!
//! ## Plain transports
//!
//! [`Sfu::create_plain_transport`] makes mediasoup's `PlainTransport`, for endpoints such as
//! ffmpeg and GStreamer that send and receive RTP without ICE or DTLS: plain RTP, or SRTP keyed
//! by SDES (`srtpParameters`, [`ortc::SrtpParameters`]). It lives on a socket of its own (the
//! caller's; the bundled runtimes open one for it), RTCP muxed or on a second socket. Its
//! remote is given by [`Sfu::connect_plain_transport`], or with `comedia` learned from the
//! first valid packet ([`Event::Tuple`], [`Event::RtcpTuple`]); datagrams from anyone else
//! are dropped and counted ([`TransportStats::dropped_foreign_source`]).
//!
//! ## Payload types and header extensions
//!
//! Consumers are sent with the router's payload types; producers may use any other dynamic payload
//! type. Header extension ids are the router's (Chrome's numbering); a producer whose
//! parameters use an id for another extension, or a router RTX payload type for media, is
//! refused with a typed error. A consumer's packets carry every header extension of the
//! producer's that the consumer's endpoint negotiated, values unchanged, with its own mid and
//! its transport's transport-wide sequence number.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod codec;
mod config;
pub mod control;
mod data;
mod demux;
mod error;
mod event;
mod forward;
pub mod framing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod io;
mod keyframe;
mod layers;
pub mod media;
mod observer;
pub mod ortc;
mod router;
pub mod runtime;
mod score;
mod sfu;
mod stats;
mod timers;
mod trace;
mod transport;

pub use api::{
    pipe_produce_data_options, pipe_produce_options, ConsumeDataOptions, ConsumeOptions, Consumed,
    DataConsumed, PipeDataToRouterOptions, PipeToRouterOptions, PipeTransportCreated,
    PipedDataProducer, PipedProducer, PlainTransportCreated, ProduceDataOptions, ProduceOptions,
    RouterOptions, WebRtcTransportCreated,
};
pub use config::SfuConfig;
pub use error::Error;
pub use event::{
    AudioLevelVolume, ConsumerCloseReason, DataConsumerCloseReason, DtlsState, Event, IceState,
    SctpState, TransportTuple,
};
pub use ids::{
    ConsumerId, DataConsumerId, DataProducerId, ObserverId, ParseIdError, ProducerId, RouterId,
    TransportId,
};
pub use io::{Input, Output, Protocol, Transmit};
pub use observer::{ActiveSpeakerObserverOptions, AudioLevelObserverOptions};
pub use score::{ConsumerLayers, ConsumerScore, ProducerScore};
pub use sfu::{Sfu, MAX_SPARE_BUFFERS};
pub use stats::{
    ConsumerStats, DataConsumerStats, DataProducerStats, Footprint, ProducerStats, SfuStats,
    TransportStats,
};
pub use trace::{
    BweTraceInfo, RtpTraceInfo, TraceDirection, TraceEvent, TraceEventType, TraceInfo,
};
pub use transport::webrtc::dtls::crypto_provider;
pub use transport::{DirectTransportOptions, ListenInfo, WebRtcTransportOptions};

#[cfg(test)]
mod type_tests {
    use super::*;

    fn is_send<T: Send>() {}

    #[test]
    fn main_types_are_send() {
        is_send::<Sfu>();
        is_send::<Event>();
        is_send::<Output>();
        is_send::<Error>();
    }

    #[test]
    fn events_stay_small() {
        // The largest variants carry two socket addresses; traces and scores must not grow it.
        assert!(
            std::mem::size_of::<Event>() <= 80,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
