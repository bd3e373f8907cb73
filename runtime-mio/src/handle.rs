//! The application's side of a worker: a cloneable handle that ferries [`Request`]s to the
//! worker thread (a channel plus a mio [`Waker`]) and waits for the [`Reply`].

use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;

use mio::Waker;
use sfu_core::control::{Reply, Request};
use sfu_core::ortc::{DtlsParameters, IceParameters, RtpCapabilities};
use sfu_core::runtime::WorkerShared;
use sfu_core::{
    AudioLevelObserverOptions, ConsumeOptions, Consumed, ConsumerId, ConsumerStats, ListenInfo,
    ObserverId, ProduceOptions, ProducerId, ProducerStats, RouterId, RouterOptions, SfuStats,
    TransportId, TransportStats, WebRtcTransportCreated, WebRtcTransportOptions,
};

use crate::{RuntimeCounters, RuntimeError};

/// What a handle sends to its worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Carry out a request and send the result back.
    Call(Request, SyncSender<Result<Reply, sfu_core::Error>>),
    /// Stop the worker.
    Shutdown,
}

/// Controls one worker from any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    index: usize,
    commands: Sender<Command>,
    waker: Arc<Waker>,
    shared: Arc<WorkerShared>,
}

impl WorkerHandle {
    pub(crate) fn new(
        index: usize,
        commands: Sender<Command>,
        waker: Arc<Waker>,
        shared: Arc<WorkerShared>,
    ) -> Self {
        Self {
            index,
            commands,
            waker,
            shared,
        }
    }

    /// The worker's index in [`Runtime::workers`](crate::Runtime::workers).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The worker's load: the transports alive in its Sfu.
    pub fn load(&self) -> usize {
        self.shared.counters.load()
    }

    /// The worker's socket counters (read without a round trip to the worker).
    pub fn counters(&self) -> RuntimeCounters {
        self.shared.counters.snapshot()
    }

    /// The concrete addresses of the worker's sockets, as offered to transports created with
    /// empty listen infos.
    pub fn listen_infos(&self) -> &[ListenInfo] {
        &self.shared.listen_infos
    }

    /// Carries out one control call on the worker's Sfu and waits for the reply. A
    /// [`Request::CreateWebRtcTransport`] with empty `listen_infos` gets the worker's own.
    pub fn call(&self, request: Request) -> Result<Reply, RuntimeError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Command::Call(request, tx))?;
        rx.recv()
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?
            .map_err(RuntimeError::from)
    }

    /// Asks the worker to stop; does not wait.
    pub(crate) fn request_shutdown(&self) {
        let _ = self.send(Command::Shutdown);
    }

    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        self.commands
            .send(command)
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        // A failed wake means the worker's poll is gone; the reply channel will say so.
        let _ = self.waker.wake();
        Ok(())
    }

    fn done(&self, request: Request) -> Result<(), RuntimeError> {
        match self.call(request)? {
            Reply::Done => Ok(()),
            other => Err(RuntimeError::UnexpectedReply(Box::new(other))),
        }
    }
}

/// Typed wrappers of [`WorkerHandle::call`], one per [`Request`].
macro_rules! typed {
    ($($(#[doc = $doc:literal])* fn $name:ident($($arg:ident: $ty:ty),*) -> $out:ty = $req:expr, $pat:pat => $val:expr;)*) => {
        impl WorkerHandle {
            $(
                $(#[doc = $doc])*
                pub fn $name(&self, $($arg: $ty),*) -> Result<$out, RuntimeError> {
                    match self.call($req)? {
                        $pat => Ok($val),
                        other => Err(RuntimeError::UnexpectedReply(Box::new(other))),
                    }
                }
            )*
        }
    };
}

typed! {
    /// Creates a router (a room).
    fn create_router(options: RouterOptions) -> RouterId =
        Request::CreateRouter(options), Reply::Router(id) => id;
    /// The router's RTP capabilities (for the client's device).
    fn router_rtp_capabilities(router: RouterId) -> RtpCapabilities =
        Request::RouterRtpCapabilities(router), Reply::RtpCapabilities(caps) => caps;
    /// Whether a device with these capabilities can consume the producer.
    fn can_consume(producer: ProducerId, rtp_capabilities: RtpCapabilities) -> bool =
        Request::CanConsume { producer, rtp_capabilities }, Reply::Bool(b) => b;
    /// Creates a WebRTC transport; empty `listen_infos` means the worker's own sockets.
    fn create_webrtc_transport(router: RouterId, options: WebRtcTransportOptions)
        -> WebRtcTransportCreated =
        Request::CreateWebRtcTransport { router, options }, Reply::WebRtcTransport(t) => t;
    /// Restarts ICE with new credentials.
    fn restart_ice(transport: TransportId) -> IceParameters =
        Request::RestartIce(transport), Reply::IceParameters(p) => p;
    /// Publishes a producer on a transport.
    fn produce(transport: TransportId, options: ProduceOptions) -> ProducerId =
        Request::Produce { transport, options }, Reply::Producer(id) => id;
    /// Creates a consumer on a transport.
    fn consume(transport: TransportId, options: ConsumeOptions) -> Consumed =
        Request::Consume { transport, options }, Reply::Consumer(c) => c;
    /// A transport's state and counters.
    fn transport_stats(transport: TransportId) -> TransportStats =
        Request::TransportStats(transport), Reply::TransportStats(s) => s;
    /// A producer's counters.
    fn producer_stats(producer: ProducerId) -> ProducerStats =
        Request::ProducerStats(producer), Reply::ProducerStats(s) => s;
    /// A consumer's counters.
    fn consumer_stats(consumer: ConsumerId) -> ConsumerStats =
        Request::ConsumerStats(consumer), Reply::ConsumerStats(s) => s;
    /// The Sfu's counters of datagrams dropped before any transport.
    fn sfu_stats() -> SfuStats = Request::SfuStats, Reply::SfuStats(s) => s;
    /// Creates an audio level observer in a router.
    fn create_audio_level_observer(router: RouterId, options: AudioLevelObserverOptions)
        -> ObserverId =
        Request::CreateAudioLevelObserver { router, options }, Reply::Observer(id) => id;
}

impl WorkerHandle {
    /// Closes a router with everything in it.
    pub fn close_router(&self, router: RouterId) -> Result<(), RuntimeError> {
        self.done(Request::CloseRouter(router))
    }

    /// Connects a transport with the client's DTLS parameters (mediasoup's `connect`).
    pub fn connect_webrtc_transport(
        &self,
        transport: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<(), RuntimeError> {
        self.done(Request::ConnectWebRtcTransport {
            transport,
            dtls_parameters,
        })
    }

    /// Closes a transport with its producers and consumers.
    pub fn close_transport(&self, transport: TransportId) -> Result<(), RuntimeError> {
        self.done(Request::CloseTransport(transport))
    }

    /// Closes a producer (and its consumers).
    pub fn close_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.done(Request::CloseProducer(producer))
    }

    /// Pauses a producer.
    pub fn pause_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.done(Request::PauseProducer(producer))
    }

    /// Resumes a producer.
    pub fn resume_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.done(Request::ResumeProducer(producer))
    }

    /// Closes a consumer.
    pub fn close_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.done(Request::CloseConsumer(consumer))
    }

    /// Pauses a consumer.
    pub fn pause_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.done(Request::PauseConsumer(consumer))
    }

    /// Resumes a consumer.
    pub fn resume_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.done(Request::ResumeConsumer(consumer))
    }

    /// Selects the simulcast layer a consumer prefers.
    pub fn set_consumer_preferred_layers(
        &self,
        consumer: ConsumerId,
        spatial_layer: usize,
    ) -> Result<(), RuntimeError> {
        self.done(Request::SetConsumerPreferredLayers {
            consumer,
            spatial_layer,
        })
    }

    /// Asks the consumer's producer for a key frame.
    pub fn request_consumer_key_frame(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.done(Request::RequestConsumerKeyFrame(consumer))
    }

    /// Closes an audio level observer.
    pub fn close_audio_level_observer(&self, observer: ObserverId) -> Result<(), RuntimeError> {
        self.done(Request::CloseAudioLevelObserver(observer))
    }

    /// Starts observing an audio producer's levels.
    pub fn audio_level_observer_add_producer(
        &self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), RuntimeError> {
        self.done(Request::AudioLevelObserverAddProducer { observer, producer })
    }

    /// Stops observing a producer.
    pub fn audio_level_observer_remove_producer(
        &self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), RuntimeError> {
        self.done(Request::AudioLevelObserverRemoveProducer { observer, producer })
    }

    /// Pauses an audio level observer.
    pub fn pause_audio_level_observer(&self, observer: ObserverId) -> Result<(), RuntimeError> {
        self.done(Request::PauseAudioLevelObserver(observer))
    }

    /// Resumes an audio level observer.
    pub fn resume_audio_level_observer(&self, observer: ObserverId) -> Result<(), RuntimeError> {
        self.done(Request::ResumeAudioLevelObserver(observer))
    }
}
