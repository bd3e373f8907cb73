//! The control API, in mediasoup's terms: routers, transports, producers, consumers.
//!
//! Each call changes state, may queue datagrams and events, and returns at once. Drain
//! [`Sfu::poll_output`] after every call.

mod bitrate;
mod consumer;
mod data_consumer;
mod data_producer;
mod direct_transport;
mod pipe_transport;
mod plain_transport;
mod producer;
mod router;
mod trace;
mod webrtc_transport;

use rand::RngCore;
use tracing::{debug, info};

use crate::data::{DataConsumer, DataProducer, DataStream};
use crate::error::Error;
use crate::event::{ConsumerCloseReason, DtlsState, Event, IceState};
use crate::event::{DataConsumerCloseReason, SctpState};
use crate::forward::Rewriter;
use crate::ids::{
    ConsumerId, DataConsumerId, DataProducerId, Mid, ProducerId, Rid, RouterId, TransportId,
};
use crate::io::{Output, Transmit};
use crate::keyframe::VideoCodec;
use crate::media::bwe::Bwe;
use crate::media::packet::{ExtensionIdMap, ExtensionKind};
use crate::media::send::SendStream;
use crate::media::session::RxRole;
use crate::ortc::{
    self, ConsumerParameters, ConsumerType, DataConsumerParameters, DtlsFingerprint,
    DtlsParameters, IceParameters, MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters,
    RtxParameters, SctpStreamParameters, WebRtcTransportParameters,
};
use crate::router::{Consumer, Encoding, Producer, Router};
use crate::sfu::{set_dtls_state, Sfu, TimerKey};
use crate::stats::{
    ConsumerStats, DataConsumerStats, DataProducerStats, ProducerStats, TransportStats,
};
use crate::transport::direct::DirectLink;
use crate::transport::extensions::ProducerExtensions;
use crate::transport::webrtc::drive::Created;
use crate::transport::webrtc::WebRtcLink;
use crate::transport::{DirectTransportOptions, WebRtcTransportOptions};
use crate::transport::{Transport, TransportKind};

pub use pipe_transport::{
    pipe_produce_data_options, pipe_produce_options, PipeDataToRouterOptions, PipeToRouterOptions,
    PipeTransportCreated, PipedDataProducer, PipedProducer,
};
pub use plain_transport::PlainTransportCreated;

/// Options for [`Sfu::create_router`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterOptions {
    /// The codecs the room uses (payload types are assigned by the router).
    pub media_codecs: Vec<RtpCodecCapability>,
}

/// A created WebRTC transport: its id and the parameters to signal to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct WebRtcTransportCreated {
    /// The transport's id.
    pub id: TransportId,
    /// What the client needs (`device.createSendTransport(..)` and friends).
    pub parameters: WebRtcTransportParameters,
}

/// Options for [`Sfu::produce`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceOptions {
    /// Audio or video.
    pub kind: MediaKind,
    /// The RTP parameters the client sends with (mediasoup-client's `produce` request).
    pub rtp_parameters: RtpParameters,
    /// Start paused.
    pub paused: bool,
}

/// Options for [`Sfu::consume`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumeOptions {
    /// The producer to receive.
    pub producer: ProducerId,
    /// What the receiving device can decode (`device.rtpCapabilities`).
    pub rtp_capabilities: RtpCapabilities,
    /// Start paused (mediasoup's recommended flow: resume once the client is ready).
    pub paused: bool,
}

/// A created consumer: its id and the parameters to signal to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumed {
    /// The consumer's id.
    pub id: ConsumerId,
    /// What the client needs (`transport.consume(..)`).
    pub parameters: ConsumerParameters,
}

/// Options for [`Sfu::produce_data`] (mediasoup-client's `produceData` request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceDataOptions {
    /// The SCTP stream the client sends on, and how. A direct transport has no SCTP: there it
    /// is not read (see [`ProduceDataOptions::direct`]), and messages from the application
    /// are delivered in order, each once.
    pub sctp_stream_parameters: SctpStreamParameters,
    /// The channel's label.
    pub label: String,
    /// The channel's subprotocol.
    pub protocol: String,
    /// Start paused (messages are dropped until resumed).
    pub paused: bool,
}

impl ProduceDataOptions {
    /// Options for a data producer on a direct transport, with a label and no subprotocol.
    pub fn direct(label: &str) -> Self {
        Self {
            sctp_stream_parameters: SctpStreamParameters::reliable(0),
            label: label.to_owned(),
            protocol: String::new(),
            paused: false,
        }
    }
}

/// Options for [`Sfu::consume_data`]. The reliability fields left out are the data
/// producer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeDataOptions {
    /// The data producer to receive.
    pub data_producer: DataProducerId,
    /// Whether messages are delivered in order (`Some(true)`: ordered and reliable).
    pub ordered: Option<bool>,
    /// Partial reliability: how long, in milliseconds, a message may be retransmitted.
    pub max_packet_life_time: Option<u16>,
    /// Partial reliability: how many times a message may be retransmitted.
    pub max_retransmits: Option<u16>,
    /// Start paused (nothing is sent until resumed).
    pub paused: bool,
}

impl ConsumeDataOptions {
    /// The data producer's own reliability, not paused.
    pub fn new(data_producer: DataProducerId) -> Self {
        Self {
            data_producer,
            ordered: None,
            max_packet_life_time: None,
            max_retransmits: None,
            paused: false,
        }
    }
}

/// A created data consumer: its id and the parameters to signal to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConsumed {
    /// The data consumer's id.
    pub id: DataConsumerId,
    /// What the client needs (`transport.consumeData(..)`).
    pub parameters: DataConsumerParameters,
}

impl Sfu {
    /// The number of routers, transports, producers and consumers alive.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.routers.len(),
            self.transports.len(),
            self.producers.len(),
            self.consumers.len(),
        )
    }

    fn router(&self, id: RouterId) -> Result<&Router, Error> {
        self.routers.get(&id).ok_or(Error::UnknownRouter(id))
    }

    fn transport(&self, id: TransportId) -> Result<&Transport, Error> {
        self.transports
            .get(&id)
            .map(|t| &**t)
            .ok_or(Error::UnknownTransport(id))
    }

    fn transport_mut(&mut self, id: TransportId) -> Result<&mut Transport, Error> {
        self.transports
            .get_mut(&id)
            .map(|t| &mut **t)
            .ok_or(Error::UnknownTransport(id))
    }

    fn producer(&self, id: ProducerId) -> Result<&Producer, Error> {
        self.producers.get(&id).ok_or(Error::UnknownProducer(id))
    }

    fn producer_mut(&mut self, id: ProducerId) -> Result<&mut Producer, Error> {
        self.producers
            .get_mut(&id)
            .ok_or(Error::UnknownProducer(id))
    }

    fn consumer(&self, id: ConsumerId) -> Result<&Consumer, Error> {
        self.consumers.get(&id).ok_or(Error::UnknownConsumer(id))
    }

    fn data_producer_mut(&mut self, id: DataProducerId) -> Result<&mut DataProducer, Error> {
        self.data_producers
            .get_mut(&id)
            .ok_or(Error::UnknownDataProducer(id))
    }

    fn data_consumer_mut(&mut self, id: DataConsumerId) -> Result<&mut DataConsumer, Error> {
        self.data_consumers
            .get_mut(&id)
            .ok_or(Error::UnknownDataConsumer(id))
    }

    fn consumer_mut(&mut self, id: ConsumerId) -> Result<&mut Consumer, Error> {
        self.consumers
            .get_mut(&id)
            .ok_or(Error::UnknownConsumer(id))
    }
}
