//! The control API, in mediasoup's terms: routers, transports, producers, consumers.
//!
//! Each call changes state, may queue datagrams and events, and returns at once. Drain
//! [`Sfu::poll_output`] after every call.

mod consumer;
mod producer;
mod router;
mod webrtc_transport;

use rand::RngCore;
use tracing::{debug, info};

use crate::error::Error;
use crate::event::{ConsumerCloseReason, DtlsState, Event, IceState};
use crate::forward::Rewriter;
use crate::ids::{ConsumerId, Mid, ProducerId, Rid, RouterId, TransportId};
use crate::io::Output;
use crate::keyframe::VideoCodec;
use crate::media::packet::{ExtensionIdMap, ExtensionKind};
use crate::media::send::SendStream;
use crate::media::session::RxRole;
use crate::ortc::{
    self, ConsumerParameters, ConsumerType, DtlsFingerprint, DtlsParameters, IceParameters,
    MediaKind, RtpCapabilities, RtpCodecCapability, RtpParameters, RtxParameters,
    WebRtcTransportParameters,
};
use crate::router::{Consumer, Encoding, Producer, Router};
use crate::sfu::{set_dtls_state, Sfu, TimerKey};
use crate::stats::{ConsumerStats, ProducerStats, TransportStats};
use crate::transport::extensions::ProducerExtensions;
use crate::transport::webrtc::drive::Created;
use crate::transport::webrtc::WebRtcLink;
use crate::transport::WebRtcTransportOptions;
use crate::transport::{Transport, TransportKind};

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

    fn consumer_mut(&mut self, id: ConsumerId) -> Result<&mut Consumer, Error> {
        self.consumers
            .get_mut(&id)
            .ok_or(Error::UnknownConsumer(id))
    }
}
