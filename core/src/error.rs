//! Errors of the control API. Bad network input is never an error: it is dropped and counted.

use crate::ids::{
    ConsumerId, DataConsumerId, DataProducerId, ObserverId, ProducerId, RouterId, TransportId,
};
use crate::ortc::{DtlsRole, OrtcError};

/// An API call could not be carried out. Nothing changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such router.
    #[error("unknown router {0}")]
    UnknownRouter(RouterId),
    /// No such transport (never created, or closed).
    #[error("unknown transport {0}")]
    UnknownTransport(TransportId),
    /// No such producer.
    #[error("unknown producer {0}")]
    UnknownProducer(ProducerId),
    /// No such consumer.
    #[error("unknown consumer {0}")]
    UnknownConsumer(ConsumerId),
    /// A trace event type the object cannot trace: `rtp` and `probation` are not supported,
    /// `bwe` is a transport's type, `keyframe`, `nack`, `pli` and `fir` a producer's or
    /// consumer's.
    #[error("trace event type {0:?} is not supported here")]
    UnsupportedTraceEventType(crate::TraceEventType),
    /// No such data producer.
    #[error("unknown data producer {0}")]
    UnknownDataProducer(DataProducerId),
    /// No such data consumer.
    #[error("unknown data consumer {0}")]
    UnknownDataConsumer(DataConsumerId),
    /// The transport was created without SCTP (`enable_sctp`), so it carries no data channels.
    #[error("transport {0} has no SCTP")]
    SctpNotEnabled(TransportId),
    /// The SCTP stream id is already used by a data producer or consumer of this transport.
    #[error("SCTP stream id {0} is already in use on this transport")]
    StreamIdInUse(u16),
    /// The SCTP stream id is not below the transport's number of streams that way.
    #[error("SCTP stream id {stream_id} is out of range (the transport has {streams} streams)")]
    StreamIdOutOfRange {
        /// The stream id.
        stream_id: u16,
        /// The number of streams (MIS for data producers, OS for data consumers).
        streams: u16,
    },
    /// Every outgoing SCTP stream of the transport is in use.
    #[error("transport {0} has no free SCTP stream")]
    NoFreeStreamId(TransportId),
    /// The data producer lives in another router than the transport.
    #[error("data producer {0} is not in the transport's router")]
    DataProducerWrongRouter(DataProducerId),
    /// Only a data producer of a direct transport takes messages from the application.
    #[error("data producer {0} is not on a direct transport")]
    NotDirectDataProducer(DataProducerId),
    /// The call is for direct transports and this transport is of another kind.
    #[error("transport {0} is not a direct transport")]
    NotDirect(TransportId),
    /// The packet the application handed in is no RTP packet of this producer.
    #[error("invalid RTP packet for producer {producer}: {reason}")]
    InvalidRtpPacket {
        /// The producer.
        producer: ProducerId,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The packet the application handed a direct transport is no well-formed RTCP compound.
    #[error("invalid RTCP packet for transport {0}")]
    InvalidRtcpPacket(TransportId),
    /// Only a producer of a direct transport takes packets from the application.
    #[error("producer {0} is not on a direct transport")]
    NotDirectProducer(ProducerId),
    /// The message is larger than the transport's maximum message size.
    #[error("message of {size} bytes is larger than the transport's maximum of {max}")]
    MessageTooLarge {
        /// The message's size.
        size: usize,
        /// The transport's maximum message size.
        max: usize,
    },
    /// No such audio level observer.
    #[error("unknown audio level observer {0}")]
    UnknownObserver(ObserverId),
    /// The audio level observer's options are unusable.
    #[error("invalid audio level observer options: {0}")]
    InvalidObserverOptions(String),
    /// Only audio producers can be observed for audio levels.
    #[error("producer {0} is not audio")]
    NotAudio(ProducerId),
    /// The RTP or capability parameters were rejected.
    #[error("invalid RTP parameters: {0}")]
    Ortc(#[from] OrtcError),
    /// The consumer's RTP capabilities cannot receive this producer.
    #[error("cannot consume producer {0} with the given RTP capabilities")]
    CannotConsume(ProducerId),
    /// The producer lives in another router than the transport.
    #[error("producer {0} is not in the transport's router")]
    WrongRouter(ProducerId),
    /// `connect` was already called on this transport.
    #[error("transport {0} is already connected")]
    AlreadyConnected(TransportId),
    /// The call is for WebRTC transports and this transport is of another kind.
    #[error("transport {0} is not a WebRTC transport")]
    NotWebRtc(TransportId),
    /// The call is for plain transports and this transport is of another kind.
    #[error("transport {0} is not a plain transport")]
    NotPlain(TransportId),
    /// The call is for pipe transports and this transport is of another kind.
    #[error("transport {0} is not a pipe transport")]
    NotPipe(TransportId),
    /// `pipe_to_router` between a router and itself.
    #[error("pipe to router needs two different routers")]
    PipeToSameRouter,
    /// A plain transport's SRTP parameters are missing or unusable (a key of the wrong length,
    /// not base64).
    #[error("invalid SRTP parameters: {0}")]
    InvalidSrtpParameters(String),
    /// A plain transport's `connect` parameters are missing or unusable.
    #[error("invalid connect parameters: {0}")]
    InvalidConnectParameters(String),
    /// The DTLS parameters are unusable.
    #[error("invalid DTLS parameters: {0}")]
    InvalidDtlsParameters(String),
    /// The client's DTLS role contradicts the role the transport announced (both `client`, or
    /// both `server`).
    #[error("DTLS role conflict: the transport announced {announced:?}, the client asked for {remote:?}")]
    DtlsRoleConflict {
        /// The role the transport announced in its `dtlsParameters`.
        announced: DtlsRole,
        /// The role the client gave to `connect`.
        remote: DtlsRole,
    },
    /// The listen addresses are unusable.
    #[error("invalid listen info: {0}")]
    InvalidListenInfo(String),
    /// The mid is already used on this transport.
    #[error("mid {0:?} is already in use on this transport")]
    MidInUse(String),
    /// An SSRC is already used by another producer on this transport.
    #[error("SSRC {0} is already in use on this transport")]
    SsrcInUse(u32),
    /// A producer's payload type collides with a payload type the transport reserves for
    /// retransmissions (RTX) of the router's codecs.
    #[error("payload type {0} collides with the router's RTX payload type")]
    PayloadTypeConflict(u8),
    /// A producer's header extension id means another extension on this transport, or its
    /// extension is already there under another id (an endpoint uses one id per URI on a
    /// transport).
    #[error("header extension id {id} for {uri} conflicts with the transport's other producers")]
    HeaderExtensionConflict {
        /// The id.
        id: u8,
        /// The extension's URI.
        uri: String,
    },
    /// A transport's minimum outgoing bitrate would be above its maximum.
    #[error("minimum outgoing bitrate {min} is above the maximum {max}")]
    BitrateLimitConflict {
        /// The minimum, bits per second.
        min: u64,
        /// The maximum, bits per second.
        max: u64,
    },
    /// The DTLS certificate could not be made.
    #[error("DTLS certificate: {0}")]
    Certificate(String),
    /// The WebRTC stack refused the operation.
    #[error("WebRTC stack error: {0}")]
    Rtc(String),
}
