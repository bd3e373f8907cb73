//! Events the [`Sfu`](crate::Sfu) reports to the application.

use std::net::SocketAddr;

use crate::ids::{ConsumerId, DataConsumerId, DataProducerId, ObserverId, ProducerId, TransportId};
use crate::io::Protocol;
use crate::score::{ConsumerLayers, ConsumerScore, ProducerScore};
use crate::trace::TraceEvent;

/// Something happened that the application may want to act on or tell its peers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A transport's ICE state changed.
    IceStateChange {
        /// The transport.
        transport: TransportId,
        /// The new state.
        state: IceState,
    },
    /// A transport started sending over another network path.
    IceSelectedTupleChange {
        /// The transport.
        transport: TransportId,
        /// The path now in use.
        tuple: TransportTuple,
    },
    /// A plain transport's remote address became known: given by `connect`, or learned by
    /// comedia from the first valid packet (mediasoup's `tuple`).
    Tuple {
        /// The transport.
        transport: TransportId,
        /// The path, with the remote address.
        tuple: TransportTuple,
    },
    /// A plain transport's remote RTCP address became known when RTCP is not muxed
    /// (mediasoup's `rtcptuple`).
    RtcpTuple {
        /// The transport.
        transport: TransportId,
        /// The RTCP path, with the remote address.
        tuple: TransportTuple,
    },
    /// A transport's DTLS state changed.
    DtlsStateChange {
        /// The transport.
        transport: TransportId,
        /// The new state.
        state: DtlsState,
    },
    /// A transport closed (by the API, or because its peer closed DTLS).
    TransportClosed {
        /// The transport.
        transport: TransportId,
    },
    /// A producer closed, so did its consumers (reported as [`Event::ConsumerClosed`]).
    ProducerClosed {
        /// The producer.
        producer: ProducerId,
    },
    /// The producer of this consumer was paused.
    ConsumerProducerPaused {
        /// The consumer.
        consumer: ConsumerId,
    },
    /// The producer of this consumer was resumed.
    ConsumerProducerResumed {
        /// The consumer.
        consumer: ConsumerId,
    },
    /// A consumer closed for a reason other than its own `close_consumer` call.
    ConsumerClosed {
        /// The consumer.
        consumer: ConsumerId,
        /// Why.
        reason: ConsumerCloseReason,
    },
    /// A transport's SCTP association changed state (mediasoup's `sctpstatechange`).
    SctpStateChange {
        /// The transport.
        transport: TransportId,
        /// The new state.
        state: SctpState,
    },
    /// A data producer closed because its transport closed; its data consumers closed too
    /// (reported as [`Event::DataConsumerClosed`]).
    DataProducerClosed {
        /// The data producer.
        data_producer: DataProducerId,
    },
    /// A data consumer closed for a reason other than its own `close_data_consumer` call.
    DataConsumerClosed {
        /// The data consumer.
        data_consumer: DataConsumerId,
        /// Why (mediasoup's `dataproducerclose` or `transportclose`).
        reason: DataConsumerCloseReason,
    },
    /// The data producer of this data consumer was paused (mediasoup's `dataproducerpause`).
    DataConsumerProducerPaused {
        /// The data consumer.
        data_consumer: DataConsumerId,
    },
    /// The data producer of this data consumer was resumed (mediasoup's `dataproducerresume`).
    DataConsumerProducerResumed {
        /// The data consumer.
        data_consumer: DataConsumerId,
    },
    /// A data consumer's buffered amount fell below the threshold the application set
    /// (mediasoup's `bufferedamountlow`).
    DataConsumerBufferedAmountLow {
        /// The data consumer.
        data_consumer: DataConsumerId,
        /// The bytes still buffered.
        buffered_amount: usize,
    },
    /// A message for the application from a data consumer on a direct transport (mediasoup's
    /// data consumer `message` event).
    DataConsumerMessage {
        /// The data consumer.
        data_consumer: DataConsumerId,
        /// Binary (WebRTC's PPID 53 or 57) or text (51 or 56).
        binary: bool,
        /// The message, byte for byte (possibly empty).
        data: Vec<u8>,
    },
    /// An RTP packet of a consumer on a direct transport, for the application (mediasoup's
    /// consumer `rtp` event): the packet as the consumer sends it (its SSRC, payload type,
    /// sequence number and timestamp), unencrypted.
    DirectConsumerRtp {
        /// The consumer.
        consumer: ConsumerId,
        /// The RTP packet.
        packet: Vec<u8>,
    },
    /// An RTCP compound packet a direct transport sends (sender reports for its consumers,
    /// receiver reports and feedback for its producers), for the application (mediasoup's
    /// direct transport `rtcp` event).
    DirectTransportRtcp {
        /// The transport.
        transport: TransportId,
        /// The RTCP compound packet.
        packet: Vec<u8>,
    },
    /// An audio level observer's interval ended with sound: the loudest observed producers at
    /// or above its threshold, loudest first (mediasoup's `volumes`).
    AudioLevelObserverVolumes {
        /// The observer.
        observer: ObserverId,
        /// At most `max_entries` producers with their mean level over the interval.
        volumes: Vec<AudioLevelVolume>,
    },
    /// An audio level observer's interval ended without sound after one that had some, or the
    /// observer was paused after sound (mediasoup's `silence`). Reported once per silence.
    AudioLevelObserverSilence {
        /// The observer.
        observer: ObserverId,
    },
    /// An active speaker observer's dominant speaker changed (mediasoup's `dominantspeaker`).
    ActiveSpeakerObserverDominantSpeaker {
        /// The observer.
        observer: ObserverId,
        /// The producer now dominant.
        producer: ProducerId,
    },
    /// The score of one or more of a producer's encodings changed (mediasoup's producer
    /// `score`): every encoding's score.
    ProducerScore {
        /// The producer.
        producer: ProducerId,
        /// One entry per encoding.
        scores: Vec<ProducerScore>,
    },
    /// A consumer's score, or that of its producer, changed (mediasoup's consumer `score`).
    ConsumerScore {
        /// The consumer.
        consumer: ConsumerId,
        /// Its score now.
        score: Box<ConsumerScore>,
    },
    /// The layers a simulcast consumer forwards changed (mediasoup's `layerschange`): `None`
    /// when it forwards none (paused, its producer paused, or waiting for a key frame).
    ConsumerLayersChange {
        /// The consumer.
        consumer: ConsumerId,
        /// The layers now forwarded.
        layers: Option<ConsumerLayers>,
    },
    /// A producer trace event of a type enabled with
    /// [`Sfu::enable_producer_trace_event`](crate::Sfu::enable_producer_trace_event).
    ProducerTrace {
        /// The producer.
        producer: ProducerId,
        /// What happened.
        trace: Box<TraceEvent>,
    },
    /// A consumer trace event of a type enabled with
    /// [`Sfu::enable_consumer_trace_event`](crate::Sfu::enable_consumer_trace_event).
    ConsumerTrace {
        /// The consumer.
        consumer: ConsumerId,
        /// What happened.
        trace: Box<TraceEvent>,
    },
    /// A transport trace event of a type enabled with
    /// [`Sfu::enable_transport_trace_event`](crate::Sfu::enable_transport_trace_event).
    TransportTrace {
        /// The transport.
        transport: TransportId,
        /// What happened.
        trace: Box<TraceEvent>,
    },
}

impl Event {
    /// The name mediasoup gives this event on its object (`score`, `layerschange`, `trace`,
    /// `icestatechange`, ...), for applications that relay events under those names.
    pub fn mediasoup_name(&self) -> &'static str {
        match self {
            Event::IceStateChange { .. } => "icestatechange",
            Event::IceSelectedTupleChange { .. } => "iceselectedtuplechange",
            Event::Tuple { .. } => "tuple",
            Event::RtcpTuple { .. } => "rtcptuple",
            Event::DtlsStateChange { .. } => "dtlsstatechange",
            Event::TransportClosed { .. } => "transportclose",
            Event::ProducerClosed { .. } | Event::ConsumerClosed { .. } => "close",
            Event::ConsumerProducerPaused { .. } => "producerpause",
            Event::ConsumerProducerResumed { .. } => "producerresume",
            Event::SctpStateChange { .. } => "sctpstatechange",
            Event::DataProducerClosed { .. } | Event::DataConsumerClosed { .. } => "close",
            Event::DataConsumerProducerPaused { .. } => "dataproducerpause",
            Event::DataConsumerProducerResumed { .. } => "dataproducerresume",
            Event::DataConsumerBufferedAmountLow { .. } => "bufferedamountlow",
            Event::DataConsumerMessage { .. } => "message",
            Event::DirectConsumerRtp { .. } => "rtp",
            Event::DirectTransportRtcp { .. } => "rtcp",
            Event::AudioLevelObserverVolumes { .. } => "volumes",
            Event::AudioLevelObserverSilence { .. } => "silence",
            Event::ActiveSpeakerObserverDominantSpeaker { .. } => "dominantspeaker",
            Event::ProducerScore { .. } | Event::ConsumerScore { .. } => "score",
            Event::ConsumerLayersChange { .. } => "layerschange",
            Event::ProducerTrace { .. }
            | Event::ConsumerTrace { .. }
            | Event::TransportTrace { .. } => "trace",
        }
    }
}

/// One producer's level in an [`Event::AudioLevelObserverVolumes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevelVolume {
    /// The producer.
    pub producer: ProducerId,
    /// Its mean audio level over the interval, dBov (−127 silent to 0 loudest).
    pub volume: i8,
}

/// Why a consumer closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerCloseReason {
    /// Its producer closed (mediasoup's `producerclose`).
    ProducerClosed,
    /// Its transport closed (mediasoup's `transportclose`).
    TransportClosed,
}

/// Why a data consumer closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataConsumerCloseReason {
    /// Its data producer closed (mediasoup's `dataproducerclose`).
    DataProducerClosed,
    /// Its transport closed (mediasoup's `transportclose`).
    TransportClosed,
}

/// SCTP state of a transport (mediasoup's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SctpState {
    /// DTLS is not up yet.
    New,
    /// DTLS is up; the association is being set up.
    Connecting,
    /// The association is up: data channels open.
    Connected,
    /// The association could not be set up (DTLS failed).
    Failed,
    /// The association closed.
    Closed,
}

/// ICE state of a transport (mediasoup's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// No binding request seen yet.
    New,
    /// A path was validated.
    Connected,
    /// Connected and nominated.
    Completed,
    /// The peer stopped answering on every path.
    Disconnected,
    /// The transport is closed.
    Closed,
}

/// DTLS state of a transport (mediasoup's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// Not connected yet.
    New,
    /// The handshake is under way.
    Connecting,
    /// The handshake completed and SRTP keys are set.
    Connected,
    /// The handshake failed.
    Failed,
    /// Closed.
    Closed,
}

/// The network path a transport uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportTuple {
    /// UDP or TCP.
    pub proto: Protocol,
    /// The local address.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
}
