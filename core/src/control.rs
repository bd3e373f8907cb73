//! The control API as plain data, so a runtime can ferry calls from other threads.
//!
//! A runtime's handle sends a [`Request`] to the worker that owns the [`Sfu`]; the worker calls
//! [`Sfu::handle_request`], drains the Sfu, and sends the [`Reply`] back. Events travel the other
//! way as [`Event`](crate::Event)s tagged with the worker that produced them. Both bundled
//! runtimes ferry exactly these types.

use crate::api::{
    ConsumeDataOptions, ConsumeOptions, Consumed, DataConsumed, PipeDataToRouterOptions,
    PipeToRouterOptions, PipeTransportCreated, PipedDataProducer, PipedProducer,
    PlainTransportCreated, ProduceDataOptions, ProduceOptions, RouterOptions,
    WebRtcTransportCreated,
};
use crate::error::Error;
use crate::ids::{
    ConsumerId, DataConsumerId, DataProducerId, ObserverId, ProducerId, RouterId, TransportId,
};
use crate::observer::{ActiveSpeakerObserverOptions, AudioLevelObserverOptions};
use crate::ortc::{
    DtlsParameters, IceParameters, PipeTransportConnectParameters, PipeTransportOptions,
    PlainTransportConnectParameters, PlainTransportOptions, RtpCapabilities,
};
use crate::sfu::Sfu;
use crate::stats::{
    ConsumerStats, DataConsumerStats, DataProducerStats, ProducerStats, SfuStats, TransportStats,
};
use crate::trace::TraceEventType;
use crate::transport::WebRtcTransportOptions;

/// One call of the control API.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// [`Sfu::create_router`].
    CreateRouter(RouterOptions),
    /// [`Sfu::close_router`].
    CloseRouter(RouterId),
    /// [`Sfu::router_rtp_capabilities`].
    RouterRtpCapabilities(RouterId),
    /// [`Sfu::can_consume`].
    CanConsume {
        /// The producer.
        producer: ProducerId,
        /// The device's capabilities.
        rtp_capabilities: RtpCapabilities,
    },
    /// [`Sfu::create_webrtc_transport`]. A runtime fills in empty `listen_infos` with the
    /// addresses of its own sockets.
    CreateWebRtcTransport {
        /// The router.
        router: RouterId,
        /// Listen addresses.
        options: WebRtcTransportOptions,
    },
    /// [`Sfu::connect_webrtc_transport`].
    ConnectWebRtcTransport {
        /// The transport.
        transport: TransportId,
        /// The client's DTLS parameters.
        dtls_parameters: DtlsParameters,
    },
    /// [`Sfu::create_plain_transport`]. A runtime opens the transport's socket when its listen
    /// info has port 0.
    CreatePlainTransport {
        /// The router.
        router: RouterId,
        /// Listen info, RTCP mux, comedia, SRTP.
        options: PlainTransportOptions,
    },
    /// [`Sfu::connect_plain_transport`].
    ConnectPlainTransport {
        /// The transport.
        transport: TransportId,
        /// The remote's address and SRTP keys.
        parameters: PlainTransportConnectParameters,
    },
    /// [`Sfu::create_pipe_transport`]. A runtime opens the transport's socket when its listen
    /// info has port 0.
    CreatePipeTransport {
        /// The router.
        router: RouterId,
        /// Listen info, RTX, SRTP.
        options: PipeTransportOptions,
    },
    /// [`Sfu::connect_pipe_transport`].
    ConnectPipeTransport {
        /// The transport.
        transport: TransportId,
        /// The peer's address and SRTP keys.
        parameters: PipeTransportConnectParameters,
    },
    /// [`Sfu::pipe_to_router`], for an Sfu whose caller opened the pipes' sockets (the
    /// bundled runtimes pipe with [`runtime::pipe`](crate::runtime::pipe) instead).
    PipeToRouter(PipeToRouterOptions),
    /// [`Sfu::pipe_data_to_router`], for an Sfu whose caller opened the pipes' sockets.
    PipeDataToRouter(PipeDataToRouterOptions),
    /// [`Sfu::restart_ice`].
    RestartIce(TransportId),
    /// [`Sfu::close_transport`].
    CloseTransport(TransportId),
    /// [`Sfu::set_max_outgoing_bitrate`].
    SetMaxOutgoingBitrate {
        /// The transport.
        transport: TransportId,
        /// Bits per second; 0 for no limit.
        bitrate: u64,
    },
    /// [`Sfu::set_min_outgoing_bitrate`].
    SetMinOutgoingBitrate {
        /// The transport.
        transport: TransportId,
        /// Bits per second; 0 for no floor.
        bitrate: u64,
    },
    /// [`Sfu::produce`].
    Produce {
        /// The transport.
        transport: TransportId,
        /// What to produce.
        options: ProduceOptions,
    },
    /// [`Sfu::close_producer`].
    CloseProducer(ProducerId),
    /// [`Sfu::pause_producer`].
    PauseProducer(ProducerId),
    /// [`Sfu::resume_producer`].
    ResumeProducer(ProducerId),
    /// [`Sfu::consume`].
    Consume {
        /// The transport.
        transport: TransportId,
        /// What to consume.
        options: ConsumeOptions,
    },
    /// [`Sfu::close_consumer`].
    CloseConsumer(ConsumerId),
    /// [`Sfu::pause_consumer`].
    PauseConsumer(ConsumerId),
    /// [`Sfu::resume_consumer`].
    ResumeConsumer(ConsumerId),
    /// [`Sfu::set_consumer_preferred_layers`].
    SetConsumerPreferredLayers {
        /// The consumer.
        consumer: ConsumerId,
        /// The spatial layer.
        spatial_layer: usize,
    },
    /// [`Sfu::set_consumer_preferred_temporal_layer`].
    SetConsumerPreferredTemporalLayer {
        /// The consumer.
        consumer: ConsumerId,
        /// The temporal layer (`None`: the highest).
        temporal_layer: Option<usize>,
    },
    /// [`Sfu::set_consumer_priority`].
    SetConsumerPriority {
        /// The consumer.
        consumer: ConsumerId,
        /// Its priority (1..=255).
        priority: u8,
    },
    /// [`Sfu::request_consumer_key_frame`].
    RequestConsumerKeyFrame(ConsumerId),
    /// [`Sfu::enable_producer_trace_event`] (mediasoup's `enableTraceEvent({ types })`).
    EnableProducerTraceEvent {
        /// The producer.
        producer: ProducerId,
        /// The types to trace (JSON: `["keyframe", "pli", ...]`); empty turns tracing off.
        types: Vec<TraceEventType>,
    },
    /// [`Sfu::enable_consumer_trace_event`].
    EnableConsumerTraceEvent {
        /// The consumer.
        consumer: ConsumerId,
        /// The types to trace; empty turns tracing off.
        types: Vec<TraceEventType>,
    },
    /// [`Sfu::enable_transport_trace_event`].
    EnableTransportTraceEvent {
        /// The transport.
        transport: TransportId,
        /// The types to trace (`["bwe"]`); empty turns tracing off.
        types: Vec<TraceEventType>,
    },
    /// [`Sfu::produce_data`].
    ProduceData {
        /// The transport.
        transport: TransportId,
        /// The stream, label and protocol.
        options: ProduceDataOptions,
    },
    /// [`Sfu::close_data_producer`].
    CloseDataProducer(DataProducerId),
    /// [`Sfu::pause_data_producer`].
    PauseDataProducer(DataProducerId),
    /// [`Sfu::resume_data_producer`].
    ResumeDataProducer(DataProducerId),
    /// [`Sfu::consume_data`].
    ConsumeData {
        /// The transport.
        transport: TransportId,
        /// The data producer and the reliability.
        options: ConsumeDataOptions,
    },
    /// [`Sfu::close_data_consumer`].
    CloseDataConsumer(DataConsumerId),
    /// [`Sfu::pause_data_consumer`].
    PauseDataConsumer(DataConsumerId),
    /// [`Sfu::resume_data_consumer`].
    ResumeDataConsumer(DataConsumerId),
    /// [`Sfu::data_consumer_buffered_amount`].
    DataConsumerBufferedAmount(DataConsumerId),
    /// [`Sfu::set_data_consumer_buffered_amount_low_threshold`].
    SetDataConsumerBufferedAmountLowThreshold {
        /// The data consumer.
        data_consumer: DataConsumerId,
        /// The threshold, in bytes.
        threshold: usize,
    },
    /// [`Sfu::create_audio_level_observer`].
    CreateAudioLevelObserver {
        /// The router.
        router: RouterId,
        /// Entries, threshold, interval.
        options: AudioLevelObserverOptions,
    },
    /// [`Sfu::close_audio_level_observer`].
    CloseAudioLevelObserver(ObserverId),
    /// [`Sfu::audio_level_observer_add_producer`].
    AudioLevelObserverAddProducer {
        /// The observer.
        observer: ObserverId,
        /// The audio producer.
        producer: ProducerId,
    },
    /// [`Sfu::audio_level_observer_remove_producer`].
    AudioLevelObserverRemoveProducer {
        /// The observer.
        observer: ObserverId,
        /// The producer.
        producer: ProducerId,
    },
    /// [`Sfu::pause_audio_level_observer`].
    PauseAudioLevelObserver(ObserverId),
    /// [`Sfu::resume_audio_level_observer`].
    ResumeAudioLevelObserver(ObserverId),
    /// [`Sfu::create_active_speaker_observer`].
    CreateActiveSpeakerObserver {
        /// The router.
        router: RouterId,
        /// The decision interval.
        options: ActiveSpeakerObserverOptions,
    },
    /// [`Sfu::close_active_speaker_observer`].
    CloseActiveSpeakerObserver(ObserverId),
    /// [`Sfu::active_speaker_observer_add_producer`].
    ActiveSpeakerObserverAddProducer {
        /// The observer.
        observer: ObserverId,
        /// The audio producer.
        producer: ProducerId,
    },
    /// [`Sfu::active_speaker_observer_remove_producer`].
    ActiveSpeakerObserverRemoveProducer {
        /// The observer.
        observer: ObserverId,
        /// The producer.
        producer: ProducerId,
    },
    /// [`Sfu::pause_active_speaker_observer`].
    PauseActiveSpeakerObserver(ObserverId),
    /// [`Sfu::resume_active_speaker_observer`].
    ResumeActiveSpeakerObserver(ObserverId),
    /// [`Sfu::transport_stats`].
    TransportStats(TransportId),
    /// [`Sfu::producer_stats`].
    ProducerStats(ProducerId),
    /// [`Sfu::consumer_stats`].
    ConsumerStats(ConsumerId),
    /// [`Sfu::data_producer_stats`].
    DataProducerStats(DataProducerId),
    /// [`Sfu::data_consumer_stats`].
    DataConsumerStats(DataConsumerId),
    /// [`Sfu::stats`].
    SfuStats,
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// The call succeeded and returns nothing.
    Done,
    /// A new router.
    Router(RouterId),
    /// RTP capabilities.
    RtpCapabilities(RtpCapabilities),
    /// A yes/no answer.
    Bool(bool),
    /// A new WebRTC transport.
    WebRtcTransport(WebRtcTransportCreated),
    /// A new plain transport.
    PlainTransport(PlainTransportCreated),
    /// A new pipe transport.
    PipeTransport(PipeTransportCreated),
    /// A producer piped into another router.
    Piped(PipedProducer),
    /// What [`Sfu::pipe_data_to_router`] made.
    PipedData(PipedDataProducer),
    /// New ICE parameters.
    IceParameters(IceParameters),
    /// A new producer.
    Producer(ProducerId),
    /// A new consumer.
    Consumer(Consumed),
    /// A new audio level observer.
    Observer(ObserverId),
    /// A new data producer.
    DataProducer(DataProducerId),
    /// A new data consumer.
    DataConsumer(DataConsumed),
    /// A number of bytes.
    Bytes(usize),
    /// Data producer stats.
    DataProducerStats(DataProducerStats),
    /// Data consumer stats.
    DataConsumerStats(DataConsumerStats),
    /// Transport stats.
    TransportStats(TransportStats),
    /// Producer stats.
    ProducerStats(ProducerStats),
    /// Consumer stats.
    ConsumerStats(ConsumerStats),
    /// Sfu stats.
    SfuStats(SfuStats),
}

impl Sfu {
    /// Carries out one [`Request`]. Drain [`Sfu::poll_output`] afterwards, as after any call.
    pub fn handle_request(&mut self, request: Request) -> Result<Reply, Error> {
        use Request as R;
        Ok(match request {
            R::CreateRouter(o) => Reply::Router(self.create_router(o)?),
            R::CloseRouter(id) => self.close_router(id).map(|()| Reply::Done)?,
            R::RouterRtpCapabilities(id) => {
                Reply::RtpCapabilities(self.router_rtp_capabilities(id)?.clone())
            }
            R::CanConsume {
                producer,
                rtp_capabilities,
            } => Reply::Bool(self.can_consume(producer, &rtp_capabilities)?),
            R::CreateWebRtcTransport { router, options } => {
                Reply::WebRtcTransport(self.create_webrtc_transport(router, options)?)
            }
            R::ConnectWebRtcTransport {
                transport,
                dtls_parameters,
            } => self
                .connect_webrtc_transport(transport, &dtls_parameters)
                .map(|()| Reply::Done)?,
            R::CreatePlainTransport { router, options } => {
                Reply::PlainTransport(self.create_plain_transport(router, options)?)
            }
            R::ConnectPlainTransport {
                transport,
                parameters,
            } => self
                .connect_plain_transport(transport, &parameters)
                .map(|()| Reply::Done)?,
            R::CreatePipeTransport { router, options } => {
                Reply::PipeTransport(self.create_pipe_transport(router, options)?)
            }
            R::ConnectPipeTransport {
                transport,
                parameters,
            } => self
                .connect_pipe_transport(transport, &parameters)
                .map(|()| Reply::Done)?,
            R::PipeToRouter(options) => Reply::Piped(self.pipe_to_router(options)?),
            R::PipeDataToRouter(options) => Reply::PipedData(self.pipe_data_to_router(options)?),
            R::RestartIce(id) => Reply::IceParameters(self.restart_ice(id)?),
            R::CloseTransport(id) => self.close_transport(id).map(|()| Reply::Done)?,
            R::Produce { transport, options } => Reply::Producer(self.produce(transport, options)?),
            R::CloseProducer(id) => self.close_producer(id).map(|()| Reply::Done)?,
            R::PauseProducer(id) => self.pause_producer(id).map(|()| Reply::Done)?,
            R::ResumeProducer(id) => self.resume_producer(id).map(|()| Reply::Done)?,
            R::Consume { transport, options } => Reply::Consumer(self.consume(transport, options)?),
            R::CloseConsumer(id) => self.close_consumer(id).map(|()| Reply::Done)?,
            R::PauseConsumer(id) => self.pause_consumer(id).map(|()| Reply::Done)?,
            R::ResumeConsumer(id) => self.resume_consumer(id).map(|()| Reply::Done)?,
            R::SetConsumerPreferredLayers {
                consumer,
                spatial_layer,
            } => self
                .set_consumer_preferred_layers(consumer, spatial_layer)
                .map(|()| Reply::Done)?,
            R::SetConsumerPreferredTemporalLayer {
                consumer,
                temporal_layer,
            } => self
                .set_consumer_preferred_temporal_layer(consumer, temporal_layer)
                .map(|()| Reply::Done)?,
            R::SetConsumerPriority { consumer, priority } => self
                .set_consumer_priority(consumer, priority)
                .map(|()| Reply::Done)?,
            R::SetMaxOutgoingBitrate { transport, bitrate } => self
                .set_max_outgoing_bitrate(transport, bitrate)
                .map(|()| Reply::Done)?,
            R::SetMinOutgoingBitrate { transport, bitrate } => self
                .set_min_outgoing_bitrate(transport, bitrate)
                .map(|()| Reply::Done)?,
            R::RequestConsumerKeyFrame(id) => {
                self.request_consumer_key_frame(id).map(|()| Reply::Done)?
            }
            R::EnableProducerTraceEvent { producer, types } => self
                .enable_producer_trace_event(producer, &types)
                .map(|()| Reply::Done)?,
            R::EnableConsumerTraceEvent { consumer, types } => self
                .enable_consumer_trace_event(consumer, &types)
                .map(|()| Reply::Done)?,
            R::EnableTransportTraceEvent { transport, types } => self
                .enable_transport_trace_event(transport, &types)
                .map(|()| Reply::Done)?,
            R::ProduceData { transport, options } => {
                Reply::DataProducer(self.produce_data(transport, options)?)
            }
            R::CloseDataProducer(id) => self.close_data_producer(id).map(|()| Reply::Done)?,
            R::PauseDataProducer(id) => self.pause_data_producer(id).map(|()| Reply::Done)?,
            R::ResumeDataProducer(id) => self.resume_data_producer(id).map(|()| Reply::Done)?,
            R::ConsumeData { transport, options } => {
                Reply::DataConsumer(self.consume_data(transport, options)?)
            }
            R::CloseDataConsumer(id) => self.close_data_consumer(id).map(|()| Reply::Done)?,
            R::PauseDataConsumer(id) => self.pause_data_consumer(id).map(|()| Reply::Done)?,
            R::ResumeDataConsumer(id) => self.resume_data_consumer(id).map(|()| Reply::Done)?,
            R::DataConsumerBufferedAmount(id) => {
                Reply::Bytes(self.data_consumer_buffered_amount(id)?)
            }
            R::SetDataConsumerBufferedAmountLowThreshold {
                data_consumer,
                threshold,
            } => self
                .set_data_consumer_buffered_amount_low_threshold(data_consumer, threshold)
                .map(|()| Reply::Done)?,
            R::DataProducerStats(id) => Reply::DataProducerStats(self.data_producer_stats(id)?),
            R::DataConsumerStats(id) => Reply::DataConsumerStats(self.data_consumer_stats(id)?),
            R::CreateAudioLevelObserver { router, options } => {
                Reply::Observer(self.create_audio_level_observer(router, options)?)
            }
            R::CloseAudioLevelObserver(id) => {
                self.close_audio_level_observer(id).map(|()| Reply::Done)?
            }
            R::AudioLevelObserverAddProducer { observer, producer } => self
                .audio_level_observer_add_producer(observer, producer)
                .map(|()| Reply::Done)?,
            R::AudioLevelObserverRemoveProducer { observer, producer } => self
                .audio_level_observer_remove_producer(observer, producer)
                .map(|()| Reply::Done)?,
            R::PauseAudioLevelObserver(id) => {
                self.pause_audio_level_observer(id).map(|()| Reply::Done)?
            }
            R::ResumeAudioLevelObserver(id) => {
                self.resume_audio_level_observer(id).map(|()| Reply::Done)?
            }
            R::CreateActiveSpeakerObserver { router, options } => {
                Reply::Observer(self.create_active_speaker_observer(router, options)?)
            }
            R::CloseActiveSpeakerObserver(id) => self
                .close_active_speaker_observer(id)
                .map(|()| Reply::Done)?,
            R::ActiveSpeakerObserverAddProducer { observer, producer } => self
                .active_speaker_observer_add_producer(observer, producer)
                .map(|()| Reply::Done)?,
            R::ActiveSpeakerObserverRemoveProducer { observer, producer } => self
                .active_speaker_observer_remove_producer(observer, producer)
                .map(|()| Reply::Done)?,
            R::PauseActiveSpeakerObserver(id) => self
                .pause_active_speaker_observer(id)
                .map(|()| Reply::Done)?,
            R::ResumeActiveSpeakerObserver(id) => self
                .resume_active_speaker_observer(id)
                .map(|()| Reply::Done)?,
            R::TransportStats(id) => Reply::TransportStats(self.transport_stats(id)?),
            R::ProducerStats(id) => Reply::ProducerStats(self.producer_stats(id)?),
            R::ConsumerStats(id) => Reply::ConsumerStats(self.consumer_stats(id)?),
            R::SfuStats => Reply::SfuStats(self.stats()),
        })
    }
}
