//! Control calls as typed values: each call names what it returns ([`Call::Output`]), so a
//! worker hands back exactly that and no runtime matches on a reply it did not expect.
//!
//! A runtime's handle wraps a call in a [`Command`] with a way to send the result back, ships
//! it to the worker that owns the [`Sfu`], and the worker runs it through
//! [`Driver::command`](super::Driver::command). The typed methods of both runtimes' handles
//! (`create_router`, `produce`, ...) are written once, by
//! [`worker_handle_methods!`](crate::worker_handle_methods).

use std::net::SocketAddr;

use super::addr::SocketAddrs;
use super::driver::UdpSockets;
use super::ListenOptions;
use crate::control::{Reply, Request};
use crate::ortc::{PipeTransportOptions, PlainTransportOptions, TransportListenInfo};
use crate::{
    Error, ListenInfo, PipeTransportCreated, PlainTransportCreated, RouterId, Sfu, TransportId,
};

/// One control call on a worker's Sfu.
pub trait Call: Send + 'static {
    /// What the call returns.
    type Output: Send + 'static;

    /// Carries the call out on `sfu`, with what the worker offers it (`worker`: its own
    /// sockets' addresses, and sockets opened on demand).
    fn call(self, sfu: &mut Sfu, worker: &mut WorkerContext<'_>) -> Result<Self::Output, Error>;
}

/// What a worker offers a call besides its Sfu: the addresses of its own sockets (for a
/// WebRTC transport created with none), and sockets opened on demand for plain transports,
/// which the worker closes when their transport closes.
pub struct WorkerContext<'a> {
    /// The worker's own sockets' addresses.
    pub listen_infos: &'a [ListenInfo],
    sockets: &'a mut dyn UdpSockets,
    port_range: Option<(u16, u16)>,
    opened: &'a mut Vec<(TransportId, SocketAddr)>,
}

impl<'a> WorkerContext<'a> {
    /// A context whose sockets come from `sockets`, in `port_range` when a listen info names
    /// no port; sockets opened for a transport are added to `opened`.
    pub(crate) fn new(
        listen_infos: &'a [ListenInfo],
        sockets: &'a mut dyn UdpSockets,
        port_range: Option<(u16, u16)>,
        opened: &'a mut Vec<(TransportId, SocketAddr)>,
    ) -> Self {
        Self {
            listen_infos,
            sockets,
            port_range,
            opened,
        }
    }

    /// Opens a UDP socket for `info`: on its port, else the first free one of its port range,
    /// else of the runtime's `rtc_port_range`, else any.
    fn open(&mut self, info: &TransportListenInfo) -> Result<(usize, SocketAddrs), Error> {
        // The Sfu knows a plain transport by the address its datagrams arrive at, which a
        // wildcard socket does not name.
        if info.ip.is_unspecified() {
            return Err(Error::InvalidListenInfo(format!(
                "a plain transport listens on a concrete ip, not {}",
                info.ip
            )));
        }
        let range = info.port_range.map(|r| (r.min, r.max)).or(self.port_range);
        let options = ListenOptions {
            protocol: info.protocol,
            ip: info.ip,
            announced_address: None,
            port: info.port,
            port_range: if info.port == 0 { range } else { None },
        };
        let sockets = &mut *self.sockets;
        super::addr::bind_first(&options, 0, |addr| sockets.open(addr))
            .map_err(|e| Error::InvalidListenInfo(format!("no UDP socket on {}: {e}", info.ip)))
    }

    /// Creates a plain transport on sockets opened for it (the RTCP one too without
    /// `rtcp_mux`, on the RTP listen info's ip unless an RTCP listen info says otherwise). The
    /// sockets close again if the Sfu refuses the transport, and with the transport.
    pub fn create_plain_transport(
        &mut self,
        sfu: &mut Sfu,
        router: RouterId,
        mut options: PlainTransportOptions,
    ) -> Result<PlainTransportCreated, Error> {
        let mut opened = Vec::new();
        let result = self
            .open_plain(&mut options, &mut opened)
            .and_then(|()| sfu.create_plain_transport(router, options));
        match &result {
            Ok(created) => self.opened.extend(
                opened
                    .into_iter()
                    .map(|(_, addrs)| (created.id, addrs.local)),
            ),
            Err(_) => {
                for (slot, _) in opened {
                    self.sockets.close(slot);
                }
            }
        }
        result
    }

    /// Creates a pipe transport on a socket opened for it, which closes again if the Sfu
    /// refuses the transport, and with the transport.
    pub fn create_pipe_transport(
        &mut self,
        sfu: &mut Sfu,
        router: RouterId,
        mut options: PipeTransportOptions,
    ) -> Result<PipeTransportCreated, Error> {
        let (slot, addrs) = self.open(&options.listen_info)?;
        options.listen_info.ip = addrs.local.ip();
        options.listen_info.port = addrs.local.port();
        let result = sfu.create_pipe_transport(router, options);
        match &result {
            Ok(created) => self.opened.push((created.id, addrs.local)),
            Err(_) => self.sockets.close(slot),
        }
        result
    }

    fn open_plain(
        &mut self,
        options: &mut PlainTransportOptions,
        opened: &mut Vec<(usize, SocketAddrs)>,
    ) -> Result<(), Error> {
        let rtp = self.open(&options.listen_info)?;
        opened.push(rtp);
        let rtp = rtp.1;
        if !options.rtcp_mux {
            let info = options
                .rtcp_listen_info
                .get_or_insert_with(|| TransportListenInfo {
                    port: 0,
                    ..options.listen_info.clone()
                });
            let rtcp = self.open(info)?;
            opened.push(rtcp);
            let rtcp = rtcp.1;
            info.ip = rtcp.local.ip();
            info.port = rtcp.local.port();
        }
        options.listen_info.ip = rtp.local.ip();
        options.listen_info.port = rtp.local.port();
        Ok(())
    }
}

/// Any request of the control API, answered with the matching [`Reply`].
impl Call for Request {
    type Output = Reply;

    fn call(mut self, sfu: &mut Sfu, worker: &mut WorkerContext<'_>) -> Result<Reply, Error> {
        match &mut self {
            Request::CreateWebRtcTransport { options, .. } => {
                offer(&mut options.listen_infos, worker.listen_infos);
            }
            Request::CreatePlainTransport { router, options } => {
                let created = worker.create_plain_transport(sfu, *router, options.clone())?;
                return Ok(Reply::PlainTransport(created));
            }
            Request::CreatePipeTransport { router, options } => {
                let created = worker.create_pipe_transport(sfu, *router, options.clone())?;
                return Ok(Reply::PipeTransport(created));
            }
            _ => {}
        }
        sfu.handle_request(self)
    }
}

/// Fills empty listen infos with the worker's own.
fn offer(requested: &mut Vec<ListenInfo>, own: &[ListenInfo]) {
    if requested.is_empty() {
        requested.extend_from_slice(own);
    }
}

/// A call carried out on the worker's Sfu, whose result goes back to the caller once the worker
/// has drained what the call made (so the caller sees its events and gauges).
type Run = Box<dyn FnOnce(&mut Sfu, &mut WorkerContext<'_>) -> Answer + Send>;

/// What a handle sends to its worker: a call with the way back for its result, or the order to
/// stop.
pub enum Command {
    /// Run this on the worker's Sfu.
    Call(Run),
    /// Stop the worker.
    Stop,
}

/// A call's result on its way back to the caller.
pub struct Answer(Box<dyn FnOnce() + Send>);

impl Answer {
    /// Sends it (the caller may have given up waiting).
    pub fn send(self) {
        (self.0)()
    }
}

impl Command {
    /// Wraps `call`; the worker passes its result to `reply`.
    pub fn call<C: Call>(
        call: C,
        reply: impl FnOnce(Result<C::Output, Error>) + Send + 'static,
    ) -> Self {
        Command::Call(Box::new(move |sfu, worker| {
            let result = call.call(sfu, worker);
            Answer(Box::new(move || reply(result)))
        }))
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Call(_) => "Command::Call",
            Command::Stop => "Command::Stop",
        })
    }
}

/// Every typed call: `method / Type (arguments) -> Output = |sfu, worker| body;` (`worker`
/// the [`WorkerContext`]), given to the macro named first (with any tokens after it).
#[doc(hidden)]
#[macro_export]
macro_rules! __with_calls {
    ($then:ident $($extra:tt)*) => {
        $crate::$then! { $($extra)* ;
            /// Creates a router (a room).
            create_router / CreateRouter(options: $crate::RouterOptions) -> $crate::RouterId =
                |sfu, _l| sfu.create_router(options);
            /// Closes a router with everything in it.
            close_router / CloseRouter(router: $crate::RouterId) -> () =
                |sfu, _l| sfu.close_router(router);
            /// The router's RTP capabilities (for the client's device).
            router_rtp_capabilities / RouterRtpCapabilities(router: $crate::RouterId)
                -> $crate::ortc::RtpCapabilities =
                |sfu, _l| sfu.router_rtp_capabilities(router).cloned();
            /// Whether a device with these capabilities can consume the producer.
            can_consume / CanConsume(
                producer: $crate::ProducerId,
                rtp_capabilities: $crate::ortc::RtpCapabilities
            ) -> bool = |sfu, _l| sfu.can_consume(producer, &rtp_capabilities);
            /// Creates a WebRTC transport; empty `listen_infos` means the worker's own sockets.
            create_webrtc_transport / CreateWebRtcTransport(
                router: $crate::RouterId,
                options: $crate::WebRtcTransportOptions
            ) -> $crate::WebRtcTransportCreated = |sfu, own| {
                let mut options = options;
                offer(&mut options.listen_infos, own.listen_infos);
                sfu.create_webrtc_transport(router, options)
            };
            /// Creates a direct transport: the application's own data producers and consumers.
            create_direct_transport / CreateDirectTransport(
                router: $crate::RouterId,
                options: $crate::DirectTransportOptions
            ) -> $crate::TransportId = |sfu, _l| sfu.create_direct_transport(router, options);
            /// Hands a producer of a direct transport an RTP packet (`producer.send`).
            send_rtp / SendRtp(
                producer: $crate::ProducerId,
                packet: Vec<u8>
            ) -> () = |sfu, _l| sfu.send_rtp(producer, &packet);
            /// Hands a direct transport an RTCP compound packet (`directTransport.sendRtcp`).
            send_rtcp / SendRtcp(
                transport: $crate::TransportId,
                packet: Vec<u8>
            ) -> () = |sfu, _l| sfu.send_rtcp(transport, &packet);
            /// Sends a message on a data producer of a direct transport (`dataProducer.send`).
            send_data / SendData(
                data_producer: $crate::DataProducerId,
                binary: bool,
                data: Vec<u8>
            ) -> () = |sfu, _l| sfu.send_data(data_producer, binary, &data);
            /// Connects a transport with the client's DTLS parameters (mediasoup's `connect`).
            connect_webrtc_transport / ConnectWebRtcTransport(
                transport: $crate::TransportId,
                dtls_parameters: $crate::ortc::DtlsParameters
            ) -> () = |sfu, _l| sfu.connect_webrtc_transport(transport, &dtls_parameters);
            /// Creates a plain transport (RTP for ffmpeg, GStreamer and the like) on a UDP
            /// socket the worker opens for it: on the listen info's port, else in its port
            /// range, else in the runtime's `rtc_port_range`. The socket closes with the
            /// transport.
            create_plain_transport / CreatePlainTransport(
                router: $crate::RouterId,
                options: $crate::ortc::PlainTransportOptions
            ) -> $crate::PlainTransportCreated =
                |sfu, own| own.create_plain_transport(sfu, router, options);
            /// Gives a plain transport the remote's address and SRTP keys.
            connect_plain_transport / ConnectPlainTransport(
                transport: $crate::TransportId,
                parameters: $crate::ortc::PlainTransportConnectParameters
            ) -> () = |sfu, _l| sfu.connect_plain_transport(transport, &parameters);
            /// Creates a pipe transport (a link to a peer pipe transport in another router, on
            /// this worker, another one or another host) on a UDP socket the worker opens for
            /// it, as for a plain transport. The socket closes with the transport.
            create_pipe_transport / CreatePipeTransport(
                router: $crate::RouterId,
                options: $crate::ortc::PipeTransportOptions
            ) -> $crate::PipeTransportCreated =
                |sfu, own| own.create_pipe_transport(sfu, router, options);
            /// Gives a pipe transport its peer's address and SRTP keys.
            connect_pipe_transport / ConnectPipeTransport(
                transport: $crate::TransportId,
                parameters: $crate::ortc::PipeTransportConnectParameters
            ) -> () = |sfu, _l| sfu.connect_pipe_transport(transport, &parameters);
            /// Restarts ICE with new credentials.
            restart_ice / RestartIce(transport: $crate::TransportId)
                -> $crate::ortc::IceParameters = |sfu, _l| sfu.restart_ice(transport);
            /// Closes a transport with its producers and consumers.
            close_transport / CloseTransport(transport: $crate::TransportId) -> () =
                |sfu, _l| sfu.close_transport(transport);
            /// Caps the bandwidth estimate toward a transport's endpoint (0: no cap).
            set_max_outgoing_bitrate / SetMaxOutgoingBitrate(
                transport: $crate::TransportId,
                bitrate: u64
            ) -> () = |sfu, _l| sfu.set_max_outgoing_bitrate(transport, bitrate);
            /// Keeps the bandwidth estimate toward a transport's endpoint above a floor (0: none).
            set_min_outgoing_bitrate / SetMinOutgoingBitrate(
                transport: $crate::TransportId,
                bitrate: u64
            ) -> () = |sfu, _l| sfu.set_min_outgoing_bitrate(transport, bitrate);
            /// Publishes a producer on a transport.
            produce / Produce(transport: $crate::TransportId, options: $crate::ProduceOptions)
                -> $crate::ProducerId = |sfu, _l| sfu.produce(transport, options);
            /// Closes a producer and its consumers.
            close_producer / CloseProducer(producer: $crate::ProducerId) -> () =
                |sfu, _l| sfu.close_producer(producer);
            /// Pauses a producer.
            pause_producer / PauseProducer(producer: $crate::ProducerId) -> () =
                |sfu, _l| sfu.pause_producer(producer);
            /// Resumes a producer.
            resume_producer / ResumeProducer(producer: $crate::ProducerId) -> () =
                |sfu, _l| sfu.resume_producer(producer);
            /// Creates a consumer on a transport.
            consume / Consume(transport: $crate::TransportId, options: $crate::ConsumeOptions)
                -> $crate::Consumed = |sfu, _l| sfu.consume(transport, options);
            /// Closes a consumer.
            close_consumer / CloseConsumer(consumer: $crate::ConsumerId) -> () =
                |sfu, _l| sfu.close_consumer(consumer);
            /// Pauses a consumer.
            pause_consumer / PauseConsumer(consumer: $crate::ConsumerId) -> () =
                |sfu, _l| sfu.pause_consumer(consumer);
            /// Resumes a consumer.
            resume_consumer / ResumeConsumer(consumer: $crate::ConsumerId) -> () =
                |sfu, _l| sfu.resume_consumer(consumer);
            /// Picks the simulcast layer a consumer should receive.
            set_consumer_preferred_layers / SetConsumerPreferredLayers(
                consumer: $crate::ConsumerId,
                spatial_layer: usize
            ) -> () = |sfu, _l| sfu.set_consumer_preferred_layers(consumer, spatial_layer);
            /// Picks the temporal layer a consumer of a stream with temporal layers should
            /// receive (`None`: the highest).
            set_consumer_preferred_temporal_layer / SetConsumerPreferredTemporalLayer(
                consumer: $crate::ConsumerId,
                temporal_layer: Option<usize>
            ) -> () = |sfu, _l| sfu.set_consumer_preferred_temporal_layer(consumer, temporal_layer);
            /// Sets a consumer's priority in sharing its transport's bandwidth.
            set_consumer_priority / SetConsumerPriority(consumer: $crate::ConsumerId, priority: u8)
                -> () = |sfu, _l| sfu.set_consumer_priority(consumer, priority);
            /// Asks the consumer's producer for a key frame.
            request_consumer_key_frame / RequestConsumerKeyFrame(consumer: $crate::ConsumerId)
                -> () = |sfu, _l| sfu.request_consumer_key_frame(consumer);
            /// Sets the trace event types a producer reports (mediasoup's `enableTraceEvent`).
            enable_producer_trace_event / EnableProducerTraceEvent(
                producer: $crate::ProducerId,
                types: Vec<$crate::TraceEventType>
            ) -> () = |sfu, _l| sfu.enable_producer_trace_event(producer, &types);
            /// Sets the trace event types a consumer reports (mediasoup's `enableTraceEvent`).
            enable_consumer_trace_event / EnableConsumerTraceEvent(
                consumer: $crate::ConsumerId,
                types: Vec<$crate::TraceEventType>
            ) -> () = |sfu, _l| sfu.enable_consumer_trace_event(consumer, &types);
            /// Sets the trace event types a transport reports (mediasoup's `enableTraceEvent`).
            enable_transport_trace_event / EnableTransportTraceEvent(
                transport: $crate::TransportId,
                types: Vec<$crate::TraceEventType>
            ) -> () = |sfu, _l| sfu.enable_transport_trace_event(transport, &types);
            /// Starts receiving a data channel on a transport (mediasoup's `produceData`).
            produce_data / ProduceData(
                transport: $crate::TransportId,
                options: $crate::ProduceDataOptions
            ) -> $crate::DataProducerId = |sfu, _l| sfu.produce_data(transport, options);
            /// Closes a data producer and its data consumers.
            close_data_producer / CloseDataProducer(data_producer: $crate::DataProducerId)
                -> () = |sfu, _l| sfu.close_data_producer(data_producer);
            /// Pauses a data producer.
            pause_data_producer / PauseDataProducer(data_producer: $crate::DataProducerId)
                -> () = |sfu, _l| sfu.pause_data_producer(data_producer);
            /// Resumes a data producer.
            resume_data_producer / ResumeDataProducer(data_producer: $crate::DataProducerId)
                -> () = |sfu, _l| sfu.resume_data_producer(data_producer);
            /// Creates a data consumer on a transport (mediasoup's `consumeData`).
            consume_data / ConsumeData(
                transport: $crate::TransportId,
                options: $crate::ConsumeDataOptions
            ) -> $crate::DataConsumed = |sfu, _l| sfu.consume_data(transport, options);
            /// Closes a data consumer.
            close_data_consumer / CloseDataConsumer(data_consumer: $crate::DataConsumerId)
                -> () = |sfu, _l| sfu.close_data_consumer(data_consumer);
            /// Pauses a data consumer.
            pause_data_consumer / PauseDataConsumer(data_consumer: $crate::DataConsumerId)
                -> () = |sfu, _l| sfu.pause_data_consumer(data_consumer);
            /// Resumes a data consumer.
            resume_data_consumer / ResumeDataConsumer(data_consumer: $crate::DataConsumerId)
                -> () = |sfu, _l| sfu.resume_data_consumer(data_consumer);
            /// The bytes a data consumer has sent and its endpoint not yet acknowledged.
            data_consumer_buffered_amount / DataConsumerBufferedAmount(
                data_consumer: $crate::DataConsumerId
            ) -> usize = |sfu, _l| sfu.data_consumer_buffered_amount(data_consumer);
            /// Sets when a data consumer reports its buffered amount low.
            set_data_consumer_buffered_amount_low_threshold /
                SetDataConsumerBufferedAmountLowThreshold(
                    data_consumer: $crate::DataConsumerId,
                    threshold: usize
                ) -> () = |sfu, _l| {
                    sfu.set_data_consumer_buffered_amount_low_threshold(data_consumer, threshold)
                };
            /// A data producer's counters.
            data_producer_stats / DataProducerStats(data_producer: $crate::DataProducerId)
                -> $crate::DataProducerStats = |sfu, _l| sfu.data_producer_stats(data_producer);
            /// A data consumer's counters.
            data_consumer_stats / DataConsumerStats(data_consumer: $crate::DataConsumerId)
                -> $crate::DataConsumerStats = |sfu, _l| sfu.data_consumer_stats(data_consumer);
            /// Creates an audio level observer in a router.
            create_audio_level_observer / CreateAudioLevelObserver(
                router: $crate::RouterId,
                options: $crate::AudioLevelObserverOptions
            ) -> $crate::ObserverId = |sfu, _l| sfu.create_audio_level_observer(router, options);
            /// Closes an audio level observer.
            close_audio_level_observer / CloseAudioLevelObserver(observer: $crate::ObserverId)
                -> () = |sfu, _l| sfu.close_audio_level_observer(observer);
            /// Starts observing an audio producer's levels.
            audio_level_observer_add_producer / AudioLevelObserverAddProducer(
                observer: $crate::ObserverId,
                producer: $crate::ProducerId
            ) -> () = |sfu, _l| sfu.audio_level_observer_add_producer(observer, producer);
            /// Stops observing a producer.
            audio_level_observer_remove_producer / AudioLevelObserverRemoveProducer(
                observer: $crate::ObserverId,
                producer: $crate::ProducerId
            ) -> () = |sfu, _l| sfu.audio_level_observer_remove_producer(observer, producer);
            /// Pauses an audio level observer.
            pause_audio_level_observer / PauseAudioLevelObserver(observer: $crate::ObserverId)
                -> () = |sfu, _l| sfu.pause_audio_level_observer(observer);
            /// Resumes an audio level observer.
            resume_audio_level_observer / ResumeAudioLevelObserver(observer: $crate::ObserverId)
                -> () = |sfu, _l| sfu.resume_audio_level_observer(observer);
            /// Creates an active speaker observer in a router.
            create_active_speaker_observer / CreateActiveSpeakerObserver(
                router: $crate::RouterId,
                options: $crate::ActiveSpeakerObserverOptions
            ) -> $crate::ObserverId =
                |sfu, _l| sfu.create_active_speaker_observer(router, options);
            /// Closes an active speaker observer.
            close_active_speaker_observer / CloseActiveSpeakerObserver(
                observer: $crate::ObserverId
            ) -> () = |sfu, _l| sfu.close_active_speaker_observer(observer);
            /// Starts observing an audio producer for the dominant speaker.
            active_speaker_observer_add_producer / ActiveSpeakerObserverAddProducer(
                observer: $crate::ObserverId,
                producer: $crate::ProducerId
            ) -> () = |sfu, _l| sfu.active_speaker_observer_add_producer(observer, producer);
            /// Stops observing a producer.
            active_speaker_observer_remove_producer / ActiveSpeakerObserverRemoveProducer(
                observer: $crate::ObserverId,
                producer: $crate::ProducerId
            ) -> () = |sfu, _l| sfu.active_speaker_observer_remove_producer(observer, producer);
            /// Pauses an active speaker observer.
            pause_active_speaker_observer / PauseActiveSpeakerObserver(
                observer: $crate::ObserverId
            ) -> () = |sfu, _l| sfu.pause_active_speaker_observer(observer);
            /// Resumes an active speaker observer.
            resume_active_speaker_observer / ResumeActiveSpeakerObserver(
                observer: $crate::ObserverId
            ) -> () = |sfu, _l| sfu.resume_active_speaker_observer(observer);
            /// A transport's state and counters.
            transport_stats / TransportStats(transport: $crate::TransportId)
                -> $crate::TransportStats = |sfu, _l| sfu.transport_stats(transport);
            /// A producer's counters.
            producer_stats / ProducerStats(producer: $crate::ProducerId)
                -> $crate::ProducerStats = |sfu, _l| sfu.producer_stats(producer);
            /// A consumer's counters.
            consumer_stats / ConsumerStats(consumer: $crate::ConsumerId)
                -> $crate::ConsumerStats = |sfu, _l| sfu.consumer_stats(consumer);
            /// The Sfu's counters of datagrams dropped before any transport.
            sfu_stats / SfuStats() -> $crate::SfuStats = |sfu, _l| Ok(sfu.stats());
            /// The size of each of the Sfu's tables (to check that they return to their size).
            footprint / Footprint() -> $crate::Footprint = |sfu, _l| Ok(sfu.footprint());
        }
    };
}

/// Defines one struct per call, with its [`Call`] implementation.
#[doc(hidden)]
#[macro_export]
macro_rules! __define_calls {
    (; $($(#[doc = $doc:literal])* $method:ident / $name:ident ($($arg:ident: $ty:ty),*)
        -> $out:ty = |$sfu:ident, $own:ident| $body:expr;)*) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, PartialEq)]
            pub struct $name { $(#[doc = concat!("`", stringify!($arg), "`.")] pub $arg: $ty,)* }

            impl Call for $name {
                type Output = $out;

                #[allow(clippy::unused_unit)]
                fn call(self, $sfu: &mut Sfu, $own: &mut WorkerContext<'_>)
                    -> Result<$out, Error> {
                    let Self { $($arg),* } = self;
                    $body
                }
            }
        )*
    };
}
__with_calls!(__define_calls);

/// What a runtime type is beside its own start and stop, written once for both runtimes: it
/// dereferences to its [`Workers`](crate::runtime::Workers) (`workers`, `worker`,
/// `least_loaded`, `counters`) and stops when dropped. `runtime_common!(Runtime, WorkerHandle)`
/// for a `Runtime` with a field `workers: Workers<WorkerHandle>` and a method `stop(&mut self)`.
#[macro_export]
macro_rules! runtime_common {
    ($runtime:ty, $handle:ty) => {
        impl ::std::ops::Deref for $runtime {
            type Target = $crate::runtime::Workers<$handle>;

            /// `workers`, `worker`, `least_loaded` and `counters`.
            fn deref(&self) -> &$crate::runtime::Workers<$handle> {
                &self.workers
            }
        }

        impl Drop for $runtime {
            fn drop(&mut self) {
                self.stop();
            }
        }
    };
}

/// The methods of a worker handle, written once for both runtimes: one per call, and what the
/// handle reads without a round trip. `worker_handle_methods!(blocking)` in a type whose
/// `call(&self, C) -> Result<C::Output, RuntimeError>` blocks, `worker_handle_methods!(async)`
/// where `call` is async. Expand it in an `impl` block of a type with the fields `index:
/// usize` and `shared: Arc<WorkerShared>`.
#[macro_export]
macro_rules! worker_handle_methods {
    ($mode:tt) => {
        /// The worker's index in the runtime's workers; events carry it.
        pub fn index(&self) -> usize {
            self.index
        }

        /// The worker's load, what the runtime's `least_loaded` compares: the transports alive
        /// in its Sfu.
        pub fn load(&self) -> usize {
            self.shared.counters.load()
        }

        /// A snapshot of the worker's counters (read without a round trip to the worker).
        pub fn counters(&self) -> $crate::runtime::RuntimeCounters {
            self.shared.counters.snapshot()
        }

        /// The concrete addresses of the worker's sockets, as offered to transports created
        /// with empty listen infos.
        pub fn listen_infos(&self) -> &[$crate::ListenInfo] {
            &self.shared.listen_infos
        }

        $crate::__with_calls!(__handle_methods $mode);
    };
}

/// Expands to the handle methods (see [`worker_handle_methods!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! __handle_methods {
    (blocking ; $($(#[doc = $doc:literal])* $method:ident / $name:ident ($($arg:ident: $ty:ty),*)
        -> $out:ty = |$sfu:ident, $own:ident| $body:expr;)*) => {
        $(
            $(#[doc = $doc])*
            pub fn $method(&self, $($arg: $ty),*)
                -> ::std::result::Result<$out, $crate::runtime::RuntimeError> {
                self.call($crate::runtime::call::$name { $($arg),* })
            }
        )*
    };
    (async ; $($(#[doc = $doc:literal])* $method:ident / $name:ident ($($arg:ident: $ty:ty),*)
        -> $out:ty = |$sfu:ident, $own:ident| $body:expr;)*) => {
        $(
            $(#[doc = $doc])*
            pub async fn $method(&self, $($arg: $ty),*)
                -> ::std::result::Result<$out, $crate::runtime::RuntimeError> {
                self.call($crate::runtime::call::$name { $($arg),* }).await
            }
        )*
    };
}
