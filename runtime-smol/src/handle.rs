//! The cloneable handle through which any thread controls a worker.

use std::sync::Arc;

use sfu_core::control::{Reply, Request};
use sfu_core::ortc::{DtlsParameters, IceParameters, RtpCapabilities};
use sfu_core::runtime::WorkerShared;
use sfu_core::{
    AudioLevelObserverOptions, ConsumeOptions, Consumed, ConsumerId, ConsumerStats, ListenInfo,
    ObserverId, ProduceOptions, ProducerId, ProducerStats, RouterId, RouterOptions, SfuStats,
    TransportId, TransportStats, WebRtcTransportCreated, WebRtcTransportOptions,
};
use smol::channel::{self, Sender};

use crate::{RuntimeCounters, RuntimeError};

/// A request on its way to a worker, with the channel its reply goes back on.
pub(crate) struct Command {
    pub(crate) request: Request,
    pub(crate) reply: Sender<Result<Reply, sfu_core::Error>>,
}

/// Controls one worker from any thread: cheap to clone, `Send` and `Sync`.
///
/// Each call travels to the worker as a [`Request`] over a channel, the worker carries it out on
/// its `Sfu` between datagrams, and the [`Reply`] comes back on a one-shot channel.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    index: usize,
    requests: Sender<Command>,
    shared: Arc<WorkerShared>,
}

macro_rules! expect_reply {
    ($variant:path) => {
        |reply| match reply {
            $variant(value) => Ok(value),
            other => Err(Box::new(other)),
        }
    };
}

fn done(reply: Reply) -> Result<(), Box<Reply>> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(Box::new(other)),
    }
}

impl WorkerHandle {
    pub(crate) fn new(index: usize, requests: Sender<Command>, shared: Arc<WorkerShared>) -> Self {
        Self {
            index,
            requests,
            shared,
        }
    }

    /// The worker's index in [`Runtime::workers`](crate::Runtime::workers); events carry it.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The addresses of the worker's sockets, as transports created without listen infos get
    /// them.
    pub fn listen_infos(&self) -> &[ListenInfo] {
        &self.shared.listen_infos
    }

    /// A snapshot of the worker's counters (read without a round trip to the worker).
    pub fn counters(&self) -> RuntimeCounters {
        self.shared.counters.snapshot()
    }

    /// The worker's load, what [`Runtime::least_loaded`] compares: the transports alive in its
    /// Sfu.
    ///
    /// [`Runtime::least_loaded`]: crate::Runtime::least_loaded
    pub fn load(&self) -> usize {
        self.shared.counters.load()
    }

    /// Carries out any request of the control API on the worker.
    pub async fn call(&self, request: Request) -> Result<Reply, RuntimeError> {
        let (reply, answer) = channel::bounded(1);
        self.requests
            .send(Command { request, reply })
            .await
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        let result = answer
            .recv()
            .await
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        Ok(result?)
    }

    /// [`call`](Self::call), blocking the current thread until the reply comes. Do not call it
    /// from inside an async task (it would block that executor's thread).
    pub fn call_blocking(&self, request: Request) -> Result<Reply, RuntimeError> {
        smol::block_on(self.call(request))
    }

    async fn call_as<T>(
        &self,
        request: Request,
        unpack: impl FnOnce(Reply) -> Result<T, Box<Reply>>,
    ) -> Result<T, RuntimeError> {
        unpack(self.call(request).await?).map_err(RuntimeError::UnexpectedReply)
    }

    /// Creates a router (a room).
    pub async fn create_router(&self, options: RouterOptions) -> Result<RouterId, RuntimeError> {
        self.call_as(Request::CreateRouter(options), expect_reply!(Reply::Router))
            .await
    }

    /// Closes a router and everything in it.
    pub async fn close_router(&self, router: RouterId) -> Result<(), RuntimeError> {
        self.call_as(Request::CloseRouter(router), done).await
    }

    /// A router's RTP capabilities.
    pub async fn router_rtp_capabilities(
        &self,
        router: RouterId,
    ) -> Result<RtpCapabilities, RuntimeError> {
        self.call_as(
            Request::RouterRtpCapabilities(router),
            expect_reply!(Reply::RtpCapabilities),
        )
        .await
    }

    /// Whether a device with these capabilities can receive this producer.
    pub async fn can_consume(
        &self,
        producer: ProducerId,
        rtp_capabilities: RtpCapabilities,
    ) -> Result<bool, RuntimeError> {
        let request = Request::CanConsume {
            producer,
            rtp_capabilities,
        };
        self.call_as(request, expect_reply!(Reply::Bool)).await
    }

    /// Creates a WebRTC transport. With empty `listen_infos` (the default options) it is
    /// reachable on all of the worker's sockets.
    pub async fn create_webrtc_transport(
        &self,
        router: RouterId,
        options: WebRtcTransportOptions,
    ) -> Result<WebRtcTransportCreated, RuntimeError> {
        let request = Request::CreateWebRtcTransport { router, options };
        self.call_as(request, expect_reply!(Reply::WebRtcTransport))
            .await
    }

    /// Gives a transport the client's DTLS parameters.
    pub async fn connect_webrtc_transport(
        &self,
        transport: TransportId,
        dtls_parameters: DtlsParameters,
    ) -> Result<(), RuntimeError> {
        let request = Request::ConnectWebRtcTransport {
            transport,
            dtls_parameters,
        };
        self.call_as(request, done).await
    }

    /// New ICE credentials for a transport.
    pub async fn restart_ice(&self, transport: TransportId) -> Result<IceParameters, RuntimeError> {
        self.call_as(
            Request::RestartIce(transport),
            expect_reply!(Reply::IceParameters),
        )
        .await
    }

    /// Closes a transport with its producers and consumers.
    pub async fn close_transport(&self, transport: TransportId) -> Result<(), RuntimeError> {
        self.call_as(Request::CloseTransport(transport), done).await
    }

    /// Starts receiving media from a client.
    pub async fn produce(
        &self,
        transport: TransportId,
        options: ProduceOptions,
    ) -> Result<ProducerId, RuntimeError> {
        let request = Request::Produce { transport, options };
        self.call_as(request, expect_reply!(Reply::Producer)).await
    }

    /// Closes a producer and its consumers.
    pub async fn close_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.call_as(Request::CloseProducer(producer), done).await
    }

    /// Pauses a producer.
    pub async fn pause_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.call_as(Request::PauseProducer(producer), done).await
    }

    /// Resumes a producer.
    pub async fn resume_producer(&self, producer: ProducerId) -> Result<(), RuntimeError> {
        self.call_as(Request::ResumeProducer(producer), done).await
    }

    /// Forwards a producer to a transport.
    pub async fn consume(
        &self,
        transport: TransportId,
        options: ConsumeOptions,
    ) -> Result<Consumed, RuntimeError> {
        let request = Request::Consume { transport, options };
        self.call_as(request, expect_reply!(Reply::Consumer)).await
    }

    /// Closes a consumer.
    pub async fn close_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.call_as(Request::CloseConsumer(consumer), done).await
    }

    /// Pauses a consumer.
    pub async fn pause_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.call_as(Request::PauseConsumer(consumer), done).await
    }

    /// Resumes a consumer.
    pub async fn resume_consumer(&self, consumer: ConsumerId) -> Result<(), RuntimeError> {
        self.call_as(Request::ResumeConsumer(consumer), done).await
    }

    /// Picks the simulcast layer a consumer should receive.
    pub async fn set_consumer_preferred_layers(
        &self,
        consumer: ConsumerId,
        spatial_layer: usize,
    ) -> Result<(), RuntimeError> {
        let request = Request::SetConsumerPreferredLayers {
            consumer,
            spatial_layer,
        };
        self.call_as(request, done).await
    }

    /// Asks the consumer's producer for a key frame.
    pub async fn request_consumer_key_frame(
        &self,
        consumer: ConsumerId,
    ) -> Result<(), RuntimeError> {
        self.call_as(Request::RequestConsumerKeyFrame(consumer), done)
            .await
    }

    /// A transport's state and counters.
    pub async fn transport_stats(
        &self,
        transport: TransportId,
    ) -> Result<TransportStats, RuntimeError> {
        self.call_as(
            Request::TransportStats(transport),
            expect_reply!(Reply::TransportStats),
        )
        .await
    }

    /// A producer's counters.
    pub async fn producer_stats(
        &self,
        producer: ProducerId,
    ) -> Result<ProducerStats, RuntimeError> {
        self.call_as(
            Request::ProducerStats(producer),
            expect_reply!(Reply::ProducerStats),
        )
        .await
    }

    /// A consumer's counters.
    pub async fn consumer_stats(
        &self,
        consumer: ConsumerId,
    ) -> Result<ConsumerStats, RuntimeError> {
        self.call_as(
            Request::ConsumerStats(consumer),
            expect_reply!(Reply::ConsumerStats),
        )
        .await
    }

    /// The core's counters of datagrams dropped before reaching a transport.
    pub async fn sfu_stats(&self) -> Result<SfuStats, RuntimeError> {
        self.call_as(Request::SfuStats, expect_reply!(Reply::SfuStats))
            .await
    }

    /// Creates an audio level observer in a router.
    pub async fn create_audio_level_observer(
        &self,
        router: RouterId,
        options: AudioLevelObserverOptions,
    ) -> Result<ObserverId, RuntimeError> {
        let request = Request::CreateAudioLevelObserver { router, options };
        self.call_as(request, expect_reply!(Reply::Observer)).await
    }

    /// Closes an audio level observer.
    pub async fn close_audio_level_observer(
        &self,
        observer: ObserverId,
    ) -> Result<(), RuntimeError> {
        self.call_as(Request::CloseAudioLevelObserver(observer), done)
            .await
    }

    /// Starts observing an audio producer's levels.
    pub async fn audio_level_observer_add_producer(
        &self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), RuntimeError> {
        let request = Request::AudioLevelObserverAddProducer { observer, producer };
        self.call_as(request, done).await
    }

    /// Stops observing a producer.
    pub async fn audio_level_observer_remove_producer(
        &self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), RuntimeError> {
        let request = Request::AudioLevelObserverRemoveProducer { observer, producer };
        self.call_as(request, done).await
    }

    /// Pauses an audio level observer.
    pub async fn pause_audio_level_observer(
        &self,
        observer: ObserverId,
    ) -> Result<(), RuntimeError> {
        self.call_as(Request::PauseAudioLevelObserver(observer), done)
            .await
    }

    /// Resumes an audio level observer.
    pub async fn resume_audio_level_observer(
        &self,
        observer: ObserverId,
    ) -> Result<(), RuntimeError> {
        self.call_as(Request::ResumeAudioLevelObserver(observer), done)
            .await
    }
}
