//! The room logic behind the demo's WebSocket: rooms, peers, and the request/notification
//! protocol that carries the ORTC objects mediasoup-client needs.
//!
//! Nothing here touches a socket: a connection calls [`Signaling::connect`] to get a
//! [`PeerSession`], feeds it each text message with [`PeerSession::handle_text`], writes back the
//! reply it returns, and forwards what arrives on [`PeerSession::notifications`]. Dropping the
//! session is the peer leaving. An event thread feeds the runtime's events to
//! [`Signaling::handle_event`]. The protocol is described in the module [`crate::demo`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Deserialize;
use serde_json::{json, Value};
use sfu_core::ortc::{
    DtlsParameters, DtlsRole, MediaKind, PlainTransportOptions, Protocol, RtcpParameters,
    RtpCapabilities, RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
    SctpStreamParameters, TransportListenInfo,
};
use sfu_core::{
    AudioLevelObserverOptions, ConsumeDataOptions, ConsumeOptions, ConsumerId, DataConsumerId,
    DataProducerId, Event, ObserverId, ProduceDataOptions, ProduceOptions, ProducerId, RouterId,
    RouterOptions, TransportId, WebRtcTransportOptions,
};
use sfu_runtime_mio::{RuntimeError, WorkerHandle};
use smol::channel::{self, Receiver, Sender};
use tracing::{debug, info, warn};

/// Transports one peer may hold at once (a send and a receive transport, plus restarts).
pub const MAX_TRANSPORTS_PER_PEER: usize = 4;
/// Producers one peer may hold at once.
pub const MAX_PRODUCERS_PER_PEER: usize = 8;
/// Data producers (data channels it sends on) one peer may hold at once.
pub const MAX_DATA_PRODUCERS_PER_PEER: usize = 4;
/// Longest accepted room name or peer id.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted data channel label or subprotocol.
const MAX_LABEL_LEN: usize = 256;
/// ffmpeg publishers one room may hold at once.
pub const MAX_FFMPEG_PER_ROOM: usize = 2;
/// ffmpeg publishers the whole server may hold at once.
pub const MAX_FFMPEG_TOTAL: usize = 16;
/// An ffmpeg publisher that receives no datagram for this long is closed: it never started, or
/// ffmpeg stopped.
pub const FFMPEG_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The SSRC ffmpeg's video stream is told to use.
pub const FFMPEG_VIDEO_SSRC: u32 = 22_222_222;
/// The SSRC ffmpeg's audio stream is told to use.
pub const FFMPEG_AUDIO_SSRC: u32 = 11_111_111;
/// The payload type of ffmpeg's VP8.
pub const FFMPEG_VP8_PT: u8 = 96;
/// The payload type of ffmpeg's Opus.
pub const FFMPEG_OPUS_PT: u8 = 111;
/// How often a room reports its active speaker.
pub const ACTIVE_SPEAKER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(800);

/// The codecs every room uses: Opus, VP8 and VP9 (payload types and RTX are added by the
/// router). Browsers send VP8 unless they ask for VP9 (for its SVC modes).
pub fn default_media_codecs() -> Vec<RtpCodecCapability> {
    vec![
        RtpCodecCapability::opus(),
        RtpCodecCapability::vp8(),
        RtpCodecCapability::vp9(),
    ]
}

/// The server side of every room: which worker and router each room lives on, and its peers.
/// Cheap to clone; every clone shares the same rooms.
#[derive(Clone)]
pub struct Signaling {
    inner: Arc<Inner>,
}

struct Inner {
    workers: Vec<WorkerHandle>,
    media_codecs: Vec<RtpCodecCapability>,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    /// How long an ffmpeg publisher may go without a datagram.
    ffmpeg_idle_timeout: std::time::Duration,
    /// Which room and peer own a transport or consumer, to route the runtime's events.
    owners: Mutex<HashMap<Owned, Owner>>,
}

/// An object the runtime reports events about, keyed with its worker's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owned {
    Transport(usize, TransportId),
    Consumer(usize, ConsumerId),
    Producer(usize, ProducerId),
    DataConsumer(usize, DataConsumerId),
    DataProducer(usize, DataProducerId),
    /// A room's audio level observer (its owner's peer is empty).
    Observer(usize, ObserverId),
}

#[derive(Clone)]
struct Owner {
    room: Arc<Room>,
    peer: String,
}

struct Room {
    name: String,
    worker: WorkerHandle,
    router: RouterId,
    rtp_capabilities: RtpCapabilities,
    /// Finds the active speaker among the room's microphones.
    observer: Option<ObserverId>,
    state: Mutex<RoomState>,
}

#[derive(Default)]
struct RoomState {
    peers: BTreeMap<String, PeerState>,
}

struct PeerState {
    notify: Sender<String>,
    rtp_capabilities: Option<RtpCapabilities>,
    transports: BTreeMap<TransportId, TransportEntry>,
    producers: BTreeMap<ProducerId, MediaKind>,
    consumers: BTreeMap<ConsumerId, ProducerId>,
    /// Each data producer's label.
    data_producers: BTreeMap<DataProducerId, String>,
    data_consumers: BTreeMap<DataConsumerId, DataProducerId>,
    /// An ffmpeg publisher made by [`Signaling::publish_ffmpeg`], not a browser: it has no
    /// session, and the room closes when only such peers are left.
    ffmpeg: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Send,
    Recv,
}

struct TransportEntry {
    direction: Direction,
    connected: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking request handler must not take every other peer down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Builds a notification message.
fn notification(method: &str, data: Value) -> String {
    json!({ "notification": true, "method": method, "data": data }).to_string()
}

impl PeerState {
    /// The receive transport a consumer goes on: the one named, or the peer's first.
    fn recv_transport(&self, requested: Option<&str>) -> Result<TransportId, Failure> {
        match requested {
            Some(t) => {
                let id: TransportId = parse_id("transportId", t)?;
                match self.transports.get(&id) {
                    Some(e) if e.direction == Direction::Recv => Ok(id),
                    Some(_) => Err(format!("transport {id} is a send transport")),
                    None => Err(format!(
                        "transport {id} is not one of this peer's transports"
                    )),
                }
            }
            None => self
                .transports
                .iter()
                .find(|(_, e)| e.direction == Direction::Recv)
                .map(|(id, _)| *id)
                .ok_or_else(|| "create a receive transport before consuming".to_owned()),
        }
    }
}

impl RoomState {
    /// Sends a notification to every peer but `except`.
    fn broadcast(&self, except: &str, method: &str, data: &Value) {
        let text = notification(method, data.clone());
        for (id, p) in &self.peers {
            if id != except {
                let _ = p.notify.try_send(text.clone());
            }
        }
    }

    /// Sends a notification to every peer but `except` that has joined.
    fn announce(&self, except: &str, method: &str, data: &Value) {
        let text = notification(method, data.clone());
        for (id, p) in &self.peers {
            if id != except && p.rtp_capabilities.is_some() {
                let _ = p.notify.try_send(text.clone());
            }
        }
    }

    fn producer_owner(&self, producer: ProducerId) -> Option<&str> {
        self.peers
            .iter()
            .find(|(_, p)| p.producers.contains_key(&producer))
            .map(|(id, _)| id.as_str())
    }

    fn data_producer_owner(&self, data_producer: DataProducerId) -> Option<&str> {
        self.peers
            .iter()
            .find(|(_, p)| p.data_producers.contains_key(&data_producer))
            .map(|(id, _)| id.as_str())
    }
}

impl Signaling {
    /// Rooms on these workers, each room's router configured with `media_codecs`.
    pub fn new(workers: Vec<WorkerHandle>, media_codecs: Vec<RtpCodecCapability>) -> Self {
        assert!(!workers.is_empty(), "at least one worker is needed");
        Self {
            inner: Arc::new(Inner {
                workers,
                media_codecs,
                rooms: Mutex::new(HashMap::new()),
                ffmpeg_idle_timeout: FFMPEG_IDLE_TIMEOUT,
                owners: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The names of the rooms that have peers, sorted.
    pub fn rooms(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.inner.rooms).keys().cloned().collect();
        names.sort();
        names
    }

    /// The peers in a room, sorted (empty when the room does not exist).
    pub fn peers(&self, room: &str) -> Vec<String> {
        let room = lock(&self.inner.rooms).get(room).cloned();
        room.map(|r| lock(&r.state).peers.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A peer joins a room, which is created (with a router on the least loaded worker) if it
    /// does not exist. Fails on a bad room name or peer id, or a peer id already in the room.
    pub fn connect(&self, room: &str, peer: &str) -> Result<PeerSession, String> {
        check_name("room", room)?;
        check_name("peer", peer)?;
        let (tx, rx) = channel::unbounded();
        let mut rooms = lock(&self.inner.rooms);
        let room = match rooms.get(room) {
            Some(r) => r.clone(),
            None => {
                let worker = self
                    .inner
                    .workers
                    .iter()
                    .min_by_key(|w| w.load())
                    .cloned()
                    .ok_or("no worker")?;
                let router = worker
                    .create_router(RouterOptions {
                        media_codecs: self.inner.media_codecs.clone(),
                    })
                    .map_err(|e| format!("cannot create the room's router: {e}"))?;
                let rtp_capabilities = worker
                    .router_rtp_capabilities(router)
                    .map_err(|e| format!("cannot read the router's capabilities: {e}"))?;
                let options = AudioLevelObserverOptions {
                    max_entries: 1,
                    threshold: -80,
                    interval: ACTIVE_SPEAKER_INTERVAL,
                };
                let observer = worker
                    .create_audio_level_observer(router, options)
                    .map_err(|e| warn!(room, error = %e, "no active speaker detection"))
                    .ok();
                info!(room, router = %router, worker = worker.index(), "room created");
                let r = Arc::new(Room {
                    name: room.to_owned(),
                    worker,
                    router,
                    rtp_capabilities,
                    observer,
                    state: Mutex::new(RoomState::default()),
                });
                if let Some(o) = observer {
                    self.own(&r, "", Owned::Observer(r.worker.index(), o));
                }
                rooms.insert(room.to_owned(), r.clone());
                r
            }
        };
        let mut state = lock(&room.state);
        if state.peers.contains_key(peer) {
            return Err(format!(
                "peer {peer:?} is already in room {:?}; pick another peer id",
                room.name
            ));
        }
        state.peers.insert(
            peer.to_owned(),
            PeerState {
                notify: tx,
                rtp_capabilities: None,
                transports: BTreeMap::new(),
                producers: BTreeMap::new(),
                consumers: BTreeMap::new(),
                data_producers: BTreeMap::new(),
                data_consumers: BTreeMap::new(),
                ffmpeg: false,
            },
        );
        drop(state);
        drop(rooms);
        info!(room = %room.name, peer, "peer connected");
        Ok(PeerSession {
            signaling: self.clone(),
            room,
            peer: peer.to_owned(),
            notifications: rx,
        })
    }

    /// Routes one runtime event (from worker `worker`) to the peer it concerns.
    pub fn handle_event(&self, worker: usize, event: &Event) {
        let (key, remove) = match event {
            Event::AudioLevelObserverVolumes { observer, .. }
            | Event::AudioLevelObserverSilence { observer } => {
                (Owned::Observer(worker, *observer), false)
            }
            Event::IceStateChange { transport, .. }
            | Event::IceSelectedTupleChange { transport, .. }
            | Event::DtlsStateChange { transport, .. }
            | Event::SctpStateChange { transport, .. } => {
                (Owned::Transport(worker, *transport), false)
            }
            Event::TransportClosed { transport } => (Owned::Transport(worker, *transport), true),
            Event::ProducerClosed { producer } => (Owned::Producer(worker, *producer), true),
            Event::ConsumerProducerPaused { consumer }
            | Event::ConsumerProducerResumed { consumer } => {
                (Owned::Consumer(worker, *consumer), false)
            }
            Event::ConsumerClosed { consumer, .. } => (Owned::Consumer(worker, *consumer), true),
            Event::DataProducerClosed { data_producer } => {
                (Owned::DataProducer(worker, *data_producer), true)
            }
            Event::DataConsumerClosed { data_consumer, .. } => {
                (Owned::DataConsumer(worker, *data_consumer), true)
            }
            _ => return,
        };
        let owner = {
            let mut owners = lock(&self.inner.owners);
            if remove {
                owners.remove(&key)
            } else {
                owners.get(&key).cloned()
            }
        };
        let Some(Owner { room, peer }) = owner else {
            return;
        };
        let mut state = lock(&room.state);
        // The room's active speaker goes to everyone in it.
        match event {
            Event::AudioLevelObserverVolumes { volumes, .. } => {
                let Some(loudest) = volumes.first() else {
                    return;
                };
                let Some(speaker) = state.producer_owner(loudest.producer) else {
                    return;
                };
                let data = json!({
                    "peerId": speaker,
                    "producerId": loudest.producer.to_string(),
                    "volume": loudest.volume,
                });
                state.broadcast("", "activeSpeaker", &data);
                return;
            }
            Event::AudioLevelObserverSilence { .. } => {
                state.broadcast("", "activeSpeaker", &json!({ "peerId": null }));
                return;
            }
            _ => {}
        }
        let Some(p) = state.peers.get_mut(&peer) else {
            return;
        };
        let message = match event {
            Event::IceStateChange { transport, state } => notification(
                "transportState",
                json!({ "transportId": transport.to_string(), "ice": lower(state) }),
            ),
            Event::DtlsStateChange { transport, state } => notification(
                "transportState",
                json!({ "transportId": transport.to_string(), "dtls": lower(state) }),
            ),
            Event::SctpStateChange { transport, state } => notification(
                "transportState",
                json!({ "transportId": transport.to_string(), "sctp": lower(state) }),
            ),
            Event::IceSelectedTupleChange { transport, tuple } => notification(
                "transportTuple",
                json!({
                    "transportId": transport.to_string(),
                    "protocol": protocol_name(tuple.proto),
                    "local": tuple.local.to_string(),
                    "remote": tuple.remote.to_string(),
                }),
            ),
            Event::TransportClosed { transport } => {
                p.transports.remove(transport);
                notification(
                    "transportClosed",
                    json!({ "transportId": transport.to_string() }),
                )
            }
            Event::ConsumerProducerPaused { consumer } => notification(
                "consumerPaused",
                json!({ "consumerId": consumer.to_string() }),
            ),
            Event::ConsumerProducerResumed { consumer } => notification(
                "consumerResumed",
                json!({ "consumerId": consumer.to_string() }),
            ),
            Event::ConsumerClosed { consumer, reason } => {
                let producer = p.consumers.remove(consumer);
                notification(
                    "consumerClosed",
                    json!({
                        "consumerId": consumer.to_string(),
                        "producerId": producer.map(|p| p.to_string()),
                        "reason": lower(reason),
                    }),
                )
            }
            Event::ProducerClosed { producer } => {
                // Closed by the Sfu itself (its transport closed); tell the others.
                if p.producers.remove(producer).is_some() {
                    let data = json!({ "producerId": producer.to_string(), "peerId": peer });
                    state.broadcast(&peer, "producerClosed", &data);
                }
                return;
            }
            Event::DataConsumerClosed {
                data_consumer,
                reason,
            } => {
                let data_producer = p.data_consumers.remove(data_consumer);
                notification(
                    "dataConsumerClosed",
                    json!({
                        "dataConsumerId": data_consumer.to_string(),
                        "dataProducerId": data_producer.map(|p| p.to_string()),
                        "reason": lower(reason),
                    }),
                )
            }
            Event::DataProducerClosed { data_producer } => {
                // Closed by the Sfu itself (its transport closed); tell the others.
                if p.data_producers.remove(data_producer).is_some() {
                    let data =
                        json!({ "dataProducerId": data_producer.to_string(), "peerId": peer });
                    state.broadcast(&peer, "dataProducerClosed", &data);
                }
                return;
            }
            _ => return,
        };
        let _ = p.notify.try_send(message);
    }

    /// The same rooms, with ffmpeg publishers closed after `timeout` without a datagram
    /// instead of [`FFMPEG_IDLE_TIMEOUT`]. Call it before cloning the signaling.
    pub fn with_ffmpeg_idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("set the ffmpeg timeout before the signaling is shared")
            .ffmpeg_idle_timeout = timeout;
        self
    }

    /// Makes a publisher for ffmpeg in an open room: two comedia plain transports (VP8 video and
    /// Opus audio, each with its own RTCP port as ffmpeg's RTP muxer sends it), a producer on
    /// each with fixed SSRCs and payload types, and a peer (`ffmpeg-N`) that the room's pages
    /// see join and publish like any browser. Returns the ffmpeg command line that feeds it.
    ///
    /// Fails when the room has nobody in it, or at [`MAX_FFMPEG_PER_ROOM`] or
    /// [`MAX_FFMPEG_TOTAL`] publishers. A publisher is closed when no datagram has arrived for
    /// the idle timeout ([`FFMPEG_IDLE_TIMEOUT`]), by [`Signaling::close_ffmpeg`], or with its
    /// room.
    pub fn publish_ffmpeg(&self, room: &str) -> Result<FfmpegPublisher, FfmpegRefusal> {
        let rooms = lock(&self.inner.rooms);
        let room = rooms
            .get(room)
            .cloned()
            .ok_or_else(|| FfmpegRefusal::NoRoom(room.to_owned()))?;
        let total: usize = rooms
            .values()
            .map(|r| lock(&r.state).peers.values().filter(|p| p.ffmpeg).count())
            .sum();
        if total >= MAX_FFMPEG_TOTAL {
            return Err(FfmpegRefusal::Limit(format!(
                "the server holds its limit of {MAX_FFMPEG_TOTAL} ffmpeg publishers"
            )));
        }
        let peer = {
            let state = lock(&room.state);
            if state.peers.values().filter(|p| p.ffmpeg).count() >= MAX_FFMPEG_PER_ROOM {
                return Err(FfmpegRefusal::Limit(format!(
                    "a room may hold at most {MAX_FFMPEG_PER_ROOM} ffmpeg publishers"
                )));
            }
            (1..)
                .map(|n| format!("ffmpeg-{n}"))
                .find(|name| !state.peers.contains_key(name))
                .expect("a free name")
        };
        let worker = &room.worker;
        let ip = worker
            .listen_infos()
            .iter()
            .find(|l| l.protocol == Protocol::Udp)
            .map(|l| l.local.ip())
            .ok_or_else(|| FfmpegRefusal::Failed("the server has no UDP socket".into()))?;
        let mut made: Vec<(MediaKind, sfu_core::PlainTransportCreated, ProducerId)> = Vec::new();
        let close_made = |made: &[(MediaKind, sfu_core::PlainTransportCreated, ProducerId)]| {
            for (_, t, _) in made {
                let _ = worker.close_transport(t.id);
            }
        };
        for kind in [MediaKind::Video, MediaKind::Audio] {
            let mut options = PlainTransportOptions::new(TransportListenInfo::udp(ip));
            options.comedia = true;
            options.rtcp_mux = false;
            let created = match worker.create_plain_transport(room.router, options) {
                Ok(c) => c,
                Err(e) => {
                    close_made(&made);
                    return Err(FfmpegRefusal::Failed(runtime_error(
                        "createPlainTransport",
                        e,
                    )));
                }
            };
            match worker.produce(
                created.id,
                ProduceOptions {
                    kind,
                    rtp_parameters: ffmpeg_rtp_parameters(kind),
                    paused: false,
                },
            ) {
                Ok(producer) => made.push((kind, created, producer)),
                Err(e) => {
                    let _ = worker.close_transport(created.id);
                    close_made(&made);
                    return Err(FfmpegRefusal::Failed(runtime_error("produce", e)));
                }
            }
        }
        if let Some(observer) = room.observer {
            let audio = made.iter().find(|(k, _, _)| *k == MediaKind::Audio);
            if let Some((_, _, producer)) = audio {
                let _ = worker.audio_level_observer_add_producer(observer, *producer);
            }
        }
        // Nobody reads an ffmpeg peer's notifications.
        let (notify, _) = channel::bounded(1);
        let mut me = PeerState {
            notify,
            rtp_capabilities: Some(room.rtp_capabilities.clone()),
            transports: BTreeMap::new(),
            producers: BTreeMap::new(),
            consumers: BTreeMap::new(),
            data_producers: BTreeMap::new(),
            data_consumers: BTreeMap::new(),
            ffmpeg: true,
        };
        for (kind, t, producer) in &made {
            let entry = TransportEntry {
                direction: Direction::Send,
                connected: true,
            };
            me.transports.insert(t.id, entry);
            me.producers.insert(*producer, *kind);
            self.own(&room, &peer, Owned::Transport(worker.index(), t.id));
            self.own(&room, &peer, Owned::Producer(worker.index(), *producer));
        }
        {
            let mut state = lock(&room.state);
            state.peers.insert(peer.clone(), me);
            state.broadcast(&peer, "peerJoined", &json!({ "peerId": peer }));
            for (kind, _, producer) in &made {
                let data =
                    json!({ "producerId": producer.to_string(), "peerId": peer, "kind": kind });
                state.announce(&peer, "newProducer", &data);
            }
        }
        drop(rooms);
        let ports = |kind: MediaKind| {
            let (_, t, _) = made.iter().find(|(k, _, _)| *k == kind).expect("made");
            let rtcp = t.parameters.rtcp_tuple.as_ref();
            (
                t.parameters.tuple.local_address.clone(),
                t.parameters.tuple.local_port,
                rtcp.map_or(t.parameters.tuple.local_port, |r| r.local_port),
            )
        };
        let (host, video_port, video_rtcp_port) = ports(MediaKind::Video);
        let (_, audio_port, audio_rtcp_port) = ports(MediaKind::Audio);
        let publisher = FfmpegPublisher {
            room: room.name.clone(),
            peer_id: peer.clone(),
            command: ffmpeg_command(
                &host,
                (video_port, video_rtcp_port),
                (audio_port, audio_rtcp_port),
            ),
            host,
            video_port,
            video_rtcp_port,
            audio_port,
            audio_rtcp_port,
        };
        info!(room = %room.name, peer = %peer, video_port, audio_port, "ffmpeg publisher created");
        self.watch_ffmpeg(room, peer, made.iter().map(|(_, t, _)| t.id).collect());
        Ok(publisher)
    }

    /// Closes an ffmpeg publisher; its room's pages see its producers close and it leave.
    /// Fails when `room` has no ffmpeg publisher `peer`.
    pub fn close_ffmpeg(&self, room: &str, peer: &str) -> Result<(), String> {
        let room = lock(&self.inner.rooms)
            .get(room)
            .cloned()
            .ok_or_else(|| format!("room {room:?} has nobody in it"))?;
        if self.remove_ffmpeg(&room, peer, None) {
            Ok(())
        } else {
            Err(format!(
                "room {:?} has no ffmpeg publisher {peer:?}",
                room.name
            ))
        }
    }

    /// Removes the ffmpeg peer `peer` from `room` (only if it still holds `transport`, when
    /// given), telling the others and closing its transports. Whether it was there.
    fn remove_ffmpeg(&self, room: &Arc<Room>, peer: &str, transport: Option<TransportId>) -> bool {
        let mut state = lock(&room.state);
        let present = state
            .peers
            .get(peer)
            .is_some_and(|p| p.ffmpeg && transport.is_none_or(|t| p.transports.contains_key(&t)));
        if !present {
            return false;
        }
        let me = state.peers.remove(peer).expect("present");
        for pid in me.producers.keys() {
            let data = json!({ "producerId": pid.to_string(), "peerId": peer });
            state.broadcast(peer, "producerClosed", &data);
        }
        state.broadcast(peer, "peerLeft", &json!({ "peerId": peer }));
        drop(state);
        for tid in me.transports.keys() {
            let _ = room.worker.close_transport(*tid);
        }
        self.disown(owned_by(room.worker.index(), &me));
        info!(room = %room.name, peer, "ffmpeg publisher closed");
        true
    }

    /// Closes the publisher once a whole idle timeout passes without a datagram on its
    /// transports; ends when the publisher is gone.
    fn watch_ffmpeg(&self, room: Arc<Room>, peer: String, transports: Vec<TransportId>) {
        let signaling = self.clone();
        let idle = self.inner.ffmpeg_idle_timeout;
        let watch = move || {
            let mut last = 0;
            loop {
                std::thread::sleep(idle);
                let alive = lock(&room.state)
                    .peers
                    .get(&peer)
                    .is_some_and(|p| p.ffmpeg && p.transports.contains_key(&transports[0]));
                if !alive {
                    return;
                }
                let received: u64 = transports
                    .iter()
                    .filter_map(|t| room.worker.transport_stats(*t).ok())
                    .map(|s| s.datagrams_received)
                    .sum();
                if received == last {
                    info!(room = %room.name, peer = %peer, received, "ffmpeg publisher idle");
                    signaling.remove_ffmpeg(&room, &peer, Some(transports[0]));
                    return;
                }
                last = received;
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("ffmpeg-watch".into())
            .spawn(watch)
        {
            warn!(error = %e, "cannot watch an ffmpeg publisher; it lives as long as its room");
        }
    }

    fn own(&self, room: &Arc<Room>, peer: &str, key: Owned) {
        lock(&self.inner.owners).insert(
            key,
            Owner {
                room: room.clone(),
                peer: peer.to_owned(),
            },
        );
    }

    fn disown(&self, keys: impl IntoIterator<Item = Owned>) {
        let mut owners = lock(&self.inner.owners);
        for k in keys {
            owners.remove(&k);
        }
    }
}

/// An ffmpeg publisher made by [`Signaling::publish_ffmpeg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfmpegPublisher {
    /// Its room.
    pub room: String,
    /// The peer id the room's pages see it as (`ffmpeg-N`).
    pub peer_id: String,
    /// The address ffmpeg sends to.
    pub host: String,
    /// The video transport's RTP port.
    pub video_port: u16,
    /// The video transport's RTCP port.
    pub video_rtcp_port: u16,
    /// The audio transport's RTP port.
    pub audio_port: u16,
    /// The audio transport's RTCP port.
    pub audio_rtcp_port: u16,
    /// The shell command that publishes a test pattern and a tone to it until interrupted.
    pub command: String,
}

/// Why [`Signaling::publish_ffmpeg`] made no publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FfmpegRefusal {
    /// No room of that name is open (nobody is in it).
    NoRoom(String),
    /// The room or the server holds as many publishers as it may.
    Limit(String),
    /// The runtime refused a transport or producer.
    Failed(String),
}

impl std::fmt::Display for FfmpegRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRoom(room) => write!(f, "room {room:?} has nobody in it; open it first"),
            Self::Limit(text) | Self::Failed(text) => f.write_str(text),
        }
    }
}

/// The parameters ffmpeg's RTP muxer sends with: one codec, one fixed SSRC.
fn ffmpeg_rtp_parameters(kind: MediaKind) -> RtpParameters {
    let (mime, payload_type, clock_rate, channels, ssrc) = match kind {
        MediaKind::Video => ("video/VP8", FFMPEG_VP8_PT, 90_000, None, FFMPEG_VIDEO_SSRC),
        MediaKind::Audio => (
            "audio/opus",
            FFMPEG_OPUS_PT,
            48_000,
            Some(2),
            FFMPEG_AUDIO_SSRC,
        ),
    };
    RtpParameters {
        mid: None,
        codecs: vec![RtpCodecParameters {
            mime_type: mime.into(),
            payload_type,
            clock_rate,
            channels,
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: RtcpParameters {
            cname: Some("ffmpeg".into()),
            ..Default::default()
        },
    }
}

/// The ffmpeg command line that sends a 640x360 test pattern (VP8, a key frame a second) and a
/// 440 Hz tone (Opus) in real time to the given (RTP, RTCP) ports.
fn ffmpeg_command(host: &str, video: (u16, u16), audio: (u16, u16)) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let url =
        |(rtp, rtcp): (u16, u16)| format!("'rtp://{host}:{rtp}?rtcpport={rtcp}&pkt_size=1200'");
    format!(
        "ffmpeg -re -f lavfi -i testsrc=size=640x360:rate=30 \
-f lavfi -i sine=frequency=440:sample_rate=48000 \
-map 0:v -c:v libvpx -deadline realtime -g 30 -b:v 800k -auto-alt-ref 0 \
-ssrc {FFMPEG_VIDEO_SSRC} -payload_type {FFMPEG_VP8_PT} -f rtp {} \
-map 1:a -c:a libopus -ac 2 -b:a 64k \
-ssrc {FFMPEG_AUDIO_SSRC} -payload_type {FFMPEG_OPUS_PT} -f rtp {}",
        url(video),
        url(audio),
    )
}

/// The runtime objects a peer holds, as owner-map keys.
fn owned_by(worker: usize, p: &PeerState) -> Vec<Owned> {
    p.transports
        .keys()
        .map(|t| Owned::Transport(worker, *t))
        .chain(p.producers.keys().map(|x| Owned::Producer(worker, *x)))
        .chain(p.consumers.keys().map(|c| Owned::Consumer(worker, *c)))
        .chain(
            p.data_producers
                .keys()
                .map(|d| Owned::DataProducer(worker, *d)),
        )
        .chain(
            p.data_consumers
                .keys()
                .map(|d| Owned::DataConsumer(worker, *d)),
        )
        .collect()
}

fn lower(value: &impl std::fmt::Debug) -> String {
    format!("{value:?}").to_ascii_lowercase()
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("missing {what} name"));
    }
    if name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "bad {what} name {name:?}: use up to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// One peer's connection to its room. Dropping it closes the peer's transports, removes its
/// producers from the room (the other peers are told) and closes the room when it was the last.
pub struct PeerSession {
    signaling: Signaling,
    room: Arc<Room>,
    peer: String,
    notifications: Receiver<String>,
}

/// An error reply's text.
type Failure = String;

fn runtime_error(what: &str, e: RuntimeError) -> Failure {
    format!("{what} failed: {e}")
}

fn parse_id<T: std::str::FromStr>(field: &str, text: &str) -> Result<T, Failure>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| format!("invalid {field} {text:?}: {e}"))
}

fn data<T: for<'de> Deserialize<'de>>(method: &str, data: Value) -> Result<T, Failure> {
    serde_json::from_value(data).map_err(|e| format!("invalid data for {method}: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateTransportData {
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    force_tcp: bool,
    /// The DTLS role the transport takes (default: `auto`, it follows the client's).
    #[serde(default)]
    dtls_role: DtlsRole,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectData {
    transport_id: String,
    dtls_parameters: DtlsParameters,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TransportData {
    transport_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinData {
    rtp_capabilities: RtpCapabilities,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProduceData {
    transport_id: String,
    kind: MediaKind,
    rtp_parameters: RtpParameters,
    #[serde(default)]
    paused: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumeData {
    producer_id: String,
    #[serde(default)]
    transport_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProduceDataData {
    transport_id: String,
    sctp_stream_parameters: SctpStreamParameters,
    #[serde(default)]
    label: String,
    #[serde(default)]
    protocol: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumeDataData {
    data_producer_id: String,
    #[serde(default)]
    transport_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProducerData {
    producer_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsumerData {
    consumer_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayersData {
    consumer_id: String,
    spatial_layer: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BitrateData {
    transport_id: String,
    bitrate: u64,
}

/// The lowest cap `setMaxOutgoingBitrate` takes (0 lifts the cap), as mediasoup's.
const MIN_OUTGOING_BITRATE_CAP: u64 = 30_000;

impl PeerSession {
    /// The peer's id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The room's name.
    pub fn room(&self) -> &str {
        &self.room.name
    }

    /// Server notifications for this peer (JSON text), to be written to its socket: await
    /// `recv()` in a task, or `try_recv()` / `recv_blocking()` outside one.
    pub fn notifications(&self) -> &Receiver<String> {
        &self.notifications
    }

    /// Handles one request (JSON text) and returns the reply (JSON text). Never fails: bad
    /// input is answered with `{"id": …, "ok": false, "error": "…"}`.
    pub fn handle_text(&mut self, text: &str) -> String {
        let request: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return json!({ "id": null, "ok": false, "error": format!("malformed JSON: {e}") })
                    .to_string()
            }
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let result = match (request.get("method"), request.as_object()) {
            (_, None) => Err("a request must be a JSON object".to_owned()),
            (Some(Value::String(method)), Some(_)) => {
                let data = request.get("data").cloned().unwrap_or(json!({}));
                self.handle(method, data)
            }
            (_, Some(_)) => Err("missing \"method\" (a string)".to_owned()),
        };
        match result {
            Ok(data) => json!({ "id": id, "ok": true, "data": data }).to_string(),
            Err(error) => {
                debug!(room = %self.room.name, peer = %self.peer, %error, "request refused");
                json!({ "id": id, "ok": false, "error": error }).to_string()
            }
        }
    }

    /// Carries out one request method.
    fn handle(&mut self, method: &str, d: Value) -> Result<Value, Failure> {
        match method {
            "getRouterRtpCapabilities" => Ok(to_value(&self.room.rtp_capabilities)),
            "createWebRtcTransport" => self.create_transport(data(method, d)?),
            "connectWebRtcTransport" => self.connect_transport(data(method, d)?),
            "restartIce" => self.restart_ice(data(method, d)?),
            "join" => self.join(data(method, d)?),
            "produce" => self.produce(data(method, d)?),
            "closeProducer" => self.close_producer(data(method, d)?),
            "pauseProducer" | "resumeProducer" => {
                let d: ProducerData = data(method, d)?;
                let id = self.own_producer(&d.producer_id)?;
                let w = &self.room.worker;
                let r = if method == "pauseProducer" {
                    w.pause_producer(id)
                } else {
                    w.resume_producer(id)
                };
                r.map_err(|e| runtime_error(method, e))?;
                Ok(json!({}))
            }
            "consume" => self.consume(data(method, d)?),
            "produceData" => self.produce_data(data(method, d)?),
            "consumeData" => self.consume_data(data(method, d)?),
            "resumeConsumer" | "pauseConsumer" | "closeConsumer" => {
                let d: ConsumerData = data(method, d)?;
                let id = self.own_consumer(&d.consumer_id)?;
                let w = &self.room.worker;
                let r = match method {
                    "resumeConsumer" => w.resume_consumer(id),
                    "pauseConsumer" => w.pause_consumer(id),
                    _ => w.close_consumer(id),
                };
                r.map_err(|e| runtime_error(method, e))?;
                if method == "closeConsumer" {
                    self.with_peer(|p| p.consumers.remove(&id));
                    self.signaling
                        .disown([Owned::Consumer(self.room.worker.index(), id)]);
                }
                Ok(json!({}))
            }
            "setConsumerPreferredLayers" => {
                let d: LayersData = data(method, d)?;
                let id = self.own_consumer(&d.consumer_id)?;
                self.room
                    .worker
                    .set_consumer_preferred_layers(id, d.spatial_layer)
                    .map_err(|e| runtime_error(method, e))?;
                info!(room = %self.room.name, peer = %self.peer, consumer = %id,
                    spatial_layer = d.spatial_layer, "preferred layer");
                Ok(json!({}))
            }
            "setMaxOutgoingBitrate" => {
                // What the server sends through one of the peer's own transports.
                let d: BitrateData = data(method, d)?;
                let (id, _) = self.own_transport(&d.transport_id)?;
                if d.bitrate != 0 && d.bitrate < MIN_OUTGOING_BITRATE_CAP {
                    return Err(format!(
                        "bitrate must be 0 (no cap) or at least {MIN_OUTGOING_BITRATE_CAP}"
                    ));
                }
                self.room
                    .worker
                    .set_max_outgoing_bitrate(id, d.bitrate)
                    .map_err(|e| runtime_error(method, e))?;
                info!(room = %self.room.name, peer = %self.peer, transport = %id,
                    bitrate = d.bitrate, "maximum outgoing bitrate");
                Ok(json!({}))
            }
            "getConsumerStats" => {
                let d: ConsumerData = data(method, d)?;
                let id = self.own_consumer(&d.consumer_id)?;
                let s = self
                    .room
                    .worker
                    .consumer_stats(id)
                    .map_err(|e| runtime_error(method, e))?;
                Ok(json!({
                    "packetsSent": s.packets_sent,
                    "bytesSent": s.bytes_sent,
                    "currentLayer": s.current_layer,
                    "keyFrameRequestsReceived": s.key_frame_requests_received,
                }))
            }
            "getTransportStats" => {
                let d: TransportData = data(method, d)?;
                let (id, _) = self.own_transport(&d.transport_id)?;
                let s = self
                    .room
                    .worker
                    .transport_stats(id)
                    .map_err(|e| runtime_error(method, e))?;
                Ok(json!({
                    "iceState": lower(&s.ice_state),
                    "dtlsState": lower(&s.dtls_state),
                    "selectedTuple": s.selected_tuple.map(|t| json!({
                        "protocol": protocol_name(t.proto),
                        "local": t.local.to_string(),
                        "remote": t.remote.to_string(),
                    })),
                    "datagramsReceived": s.datagrams_received,
                    "bytesReceived": s.bytes_received,
                    "datagramsSent": s.datagrams_sent,
                    "bytesSent": s.bytes_sent,
                    "rtpDropped": s.rtp_dropped,
                    "rtcErrors": s.rtc_errors,
                    "srtpProfile": s.srtp_profile,
                    "availableOutgoingBitrate": s.available_outgoing_bitrate,
                }))
            }
            other => Err(format!("unknown method {other:?}")),
        }
    }

    fn with_peer<R>(&self, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut state = lock(&self.room.state);
        let p = state
            .peers
            .get_mut(&self.peer)
            .expect("a session's peer stays in its room until the session drops");
        f(p)
    }

    fn own_transport(&self, text: &str) -> Result<(TransportId, Direction), Failure> {
        let id: TransportId = parse_id("transportId", text)?;
        self.with_peer(|p| p.transports.get(&id).map(|t| t.direction))
            .map(|d| (id, d))
            .ok_or_else(|| format!("transport {id} is not one of this peer's transports"))
    }

    fn own_producer(&self, text: &str) -> Result<ProducerId, Failure> {
        let id: ProducerId = parse_id("producerId", text)?;
        if self.with_peer(|p| p.producers.contains_key(&id)) {
            Ok(id)
        } else {
            Err(format!("producer {id} is not one of this peer's producers"))
        }
    }

    fn own_consumer(&self, text: &str) -> Result<ConsumerId, Failure> {
        let id: ConsumerId = parse_id("consumerId", text)?;
        if self.with_peer(|p| p.consumers.contains_key(&id)) {
            Ok(id)
        } else {
            Err(format!("consumer {id} is not one of this peer's consumers"))
        }
    }

    fn create_transport(&mut self, d: CreateTransportData) -> Result<Value, Failure> {
        let direction = match d.direction.as_deref() {
            Some("send") => Direction::Send,
            Some("recv") => Direction::Recv,
            other => {
                return Err(format!(
                    "direction must be \"send\" or \"recv\", not {other:?}"
                ))
            }
        };
        if self.with_peer(|p| p.transports.len()) >= MAX_TRANSPORTS_PER_PEER {
            return Err(format!(
                "a peer may hold at most {MAX_TRANSPORTS_PER_PEER} transports"
            ));
        }
        let created = self
            .room
            .worker
            .create_webrtc_transport(
                self.room.router,
                WebRtcTransportOptions {
                    dtls_role: d.dtls_role,
                    enable_sctp: true,
                    ..WebRtcTransportOptions::default()
                },
            )
            .map_err(|e| runtime_error("createWebRtcTransport", e))?;
        let mut parameters = created.parameters;
        if d.force_tcp {
            parameters
                .ice_candidates
                .retain(|c| c.protocol == Protocol::Tcp);
            if parameters.ice_candidates.is_empty() {
                let _ = self.room.worker.close_transport(created.id);
                return Err("forceTcp: the server has no ICE-TCP candidate".into());
            }
        }
        self.with_peer(|p| {
            p.transports.insert(
                created.id,
                TransportEntry {
                    direction,
                    connected: false,
                },
            )
        });
        self.signaling.own(
            &self.room,
            &self.peer,
            Owned::Transport(self.room.worker.index(), created.id),
        );
        info!(room = %self.room.name, peer = %self.peer, transport = %created.id, ?direction,
            candidates = parameters.ice_candidates.len(), dtls_role = ?d.dtls_role, "transport created");
        Ok(to_value(&parameters))
    }

    fn connect_transport(&mut self, d: ConnectData) -> Result<Value, Failure> {
        let (id, _) = self.own_transport(&d.transport_id)?;
        if self.with_peer(|p| p.transports.get(&id).is_some_and(|t| t.connected)) {
            return Err(format!("transport {id} is already connected"));
        }
        self.room
            .worker
            .connect_webrtc_transport(id, d.dtls_parameters)
            .map_err(|e| runtime_error("connectWebRtcTransport", e))?;
        self.with_peer(|p| {
            if let Some(t) = p.transports.get_mut(&id) {
                t.connected = true;
            }
        });
        Ok(json!({}))
    }

    fn restart_ice(&mut self, d: TransportData) -> Result<Value, Failure> {
        let (id, _) = self.own_transport(&d.transport_id)?;
        let ice = self
            .room
            .worker
            .restart_ice(id)
            .map_err(|e| runtime_error("restartIce", e))?;
        Ok(to_value(&ice))
    }

    fn join(&mut self, d: JoinData) -> Result<Value, Failure> {
        let mut state = lock(&self.room.state);
        let me = state.peers.get_mut(&self.peer).expect("peer in its room");
        if me.rtp_capabilities.is_some() {
            return Err("already joined".into());
        }
        me.rtp_capabilities = Some(d.rtp_capabilities);
        let mut peers = Vec::new();
        let mut producers = Vec::new();
        let mut data_producers = Vec::new();
        for (id, p) in &state.peers {
            if *id == self.peer || p.rtp_capabilities.is_none() {
                continue;
            }
            peers.push(id.clone());
            for (pid, kind) in &p.producers {
                producers
                    .push(json!({ "producerId": pid.to_string(), "peerId": id, "kind": kind }));
            }
            for (dpid, label) in &p.data_producers {
                data_producers.push(
                    json!({ "dataProducerId": dpid.to_string(), "peerId": id, "label": label }),
                );
            }
        }
        state.broadcast(&self.peer, "peerJoined", &json!({ "peerId": self.peer }));
        info!(room = %self.room.name, peer = %self.peer, "peer joined");
        Ok(json!({
            "peerId": self.peer,
            "room": self.room.name,
            "peers": peers,
            "producers": producers,
            "dataProducers": data_producers,
            "worker": self.room.worker.index(),
            "router": self.room.router.to_string(),
        }))
    }

    fn produce(&mut self, d: ProduceData) -> Result<Value, Failure> {
        let (transport, direction) = self.own_transport(&d.transport_id)?;
        if direction != Direction::Send {
            return Err(format!("transport {transport} is a receive transport"));
        }
        if self.with_peer(|p| p.producers.len()) >= MAX_PRODUCERS_PER_PEER {
            return Err(format!(
                "a peer may hold at most {MAX_PRODUCERS_PER_PEER} producers"
            ));
        }
        let params_json = serde_json::to_string(&d.rtp_parameters).unwrap_or_default();
        info!(room = %self.room.name, peer = %self.peer, kind = ?d.kind,
            rtp_parameters = %params_json, "produce");
        let producer = self
            .room
            .worker
            .produce(
                transport,
                ProduceOptions {
                    kind: d.kind,
                    rtp_parameters: d.rtp_parameters,
                    paused: d.paused,
                },
            )
            .map_err(|e| {
                warn!(room = %self.room.name, peer = %self.peer, error = %e,
                    rtp_parameters = %params_json, "produce refused");
                runtime_error("produce", e)
            })?;
        if let (Some(observer), MediaKind::Audio) = (self.room.observer, d.kind) {
            if let Err(e) = self
                .room
                .worker
                .audio_level_observer_add_producer(observer, producer)
            {
                warn!(room = %self.room.name, producer = %producer, error = %e,
                    "microphone not watched for the active speaker");
            }
        }
        let mut state = lock(&self.room.state);
        if let Some(p) = state.peers.get_mut(&self.peer) {
            p.producers.insert(producer, d.kind);
        }
        let data =
            json!({ "producerId": producer.to_string(), "peerId": self.peer, "kind": d.kind });
        state.announce(&self.peer, "newProducer", &data);
        drop(state);
        self.signaling.own(
            &self.room,
            &self.peer,
            Owned::Producer(self.room.worker.index(), producer),
        );
        Ok(json!({ "id": producer.to_string() }))
    }

    fn close_producer(&mut self, d: ProducerData) -> Result<Value, Failure> {
        let id = self.own_producer(&d.producer_id)?;
        self.room
            .worker
            .close_producer(id)
            .map_err(|e| runtime_error("closeProducer", e))?;
        let mut state = lock(&self.room.state);
        if let Some(p) = state.peers.get_mut(&self.peer) {
            p.producers.remove(&id);
        }
        let data = json!({ "producerId": id.to_string(), "peerId": self.peer });
        state.broadcast(&self.peer, "producerClosed", &data);
        drop(state);
        self.signaling
            .disown([Owned::Producer(self.room.worker.index(), id)]);
        Ok(json!({}))
    }

    fn consume(&mut self, d: ConsumeData) -> Result<Value, Failure> {
        let producer: ProducerId = parse_id("producerId", &d.producer_id)?;
        let (caps, transport, producer_peer) = {
            let state = lock(&self.room.state);
            let me = &state.peers[&self.peer];
            let caps = me
                .rtp_capabilities
                .clone()
                .ok_or("join (with the device's rtpCapabilities) before consuming")?;
            let transport = me.recv_transport(d.transport_id.as_deref())?;
            let owner = state
                .producer_owner(producer)
                .ok_or_else(|| format!("producer {producer} is not in room {:?}", self.room.name))?
                .to_owned();
            (caps, transport, owner)
        };
        let worker = &self.room.worker;
        if !worker
            .can_consume(producer, caps.clone())
            .map_err(|e| runtime_error("canConsume", e))?
        {
            return Err(format!(
                "this device cannot receive producer {producer} (no common codec)"
            ));
        }
        let consumed = worker
            .consume(
                transport,
                ConsumeOptions {
                    producer,
                    rtp_capabilities: caps,
                    paused: true,
                },
            )
            .map_err(|e| runtime_error("consume", e))?;
        self.with_peer(|p| p.consumers.insert(consumed.id, producer));
        self.signaling.own(
            &self.room,
            &self.peer,
            Owned::Consumer(worker.index(), consumed.id),
        );
        let mut value = to_value(&consumed.parameters);
        if let Some(o) = value.as_object_mut() {
            o.insert("peerId".into(), Value::String(producer_peer));
        }
        Ok(value)
    }

    fn produce_data(&mut self, d: ProduceDataData) -> Result<Value, Failure> {
        let (transport, direction) = self.own_transport(&d.transport_id)?;
        if direction != Direction::Send {
            return Err(format!("transport {transport} is a receive transport"));
        }
        if d.label.len() > MAX_LABEL_LEN || d.protocol.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label and protocol may be at most {MAX_LABEL_LEN} bytes long"
            ));
        }
        if self.with_peer(|p| p.data_producers.len()) >= MAX_DATA_PRODUCERS_PER_PEER {
            return Err(format!(
                "a peer may hold at most {MAX_DATA_PRODUCERS_PER_PEER} data producers"
            ));
        }
        let label = d.label.clone();
        let data_producer = self
            .room
            .worker
            .produce_data(
                transport,
                ProduceDataOptions {
                    sctp_stream_parameters: d.sctp_stream_parameters,
                    label: d.label,
                    protocol: d.protocol,
                    paused: false,
                },
            )
            .map_err(|e| runtime_error("produceData", e))?;
        let mut state = lock(&self.room.state);
        if let Some(p) = state.peers.get_mut(&self.peer) {
            p.data_producers.insert(data_producer, label.clone());
        }
        let data = json!({
            "dataProducerId": data_producer.to_string(),
            "peerId": self.peer,
            "label": label,
        });
        state.announce(&self.peer, "newDataProducer", &data);
        drop(state);
        self.signaling.own(
            &self.room,
            &self.peer,
            Owned::DataProducer(self.room.worker.index(), data_producer),
        );
        info!(room = %self.room.name, peer = %self.peer, data_producer = %data_producer,
            label = %label, "produce data");
        Ok(json!({ "id": data_producer.to_string() }))
    }

    fn consume_data(&mut self, d: ConsumeDataData) -> Result<Value, Failure> {
        let data_producer: DataProducerId = parse_id("dataProducerId", &d.data_producer_id)?;
        let (transport, producer_peer) = {
            let state = lock(&self.room.state);
            let me = &state.peers[&self.peer];
            if me.rtp_capabilities.is_none() {
                return Err("join before consuming data".into());
            }
            let transport = me.recv_transport(d.transport_id.as_deref())?;
            let owner = state
                .data_producer_owner(data_producer)
                .ok_or_else(|| {
                    format!(
                        "data producer {data_producer} is not in room {:?}",
                        self.room.name
                    )
                })?
                .to_owned();
            (transport, owner)
        };
        let worker = &self.room.worker;
        let consumed = worker
            .consume_data(transport, ConsumeDataOptions::new(data_producer))
            .map_err(|e| runtime_error("consumeData", e))?;
        self.with_peer(|p| p.data_consumers.insert(consumed.id, data_producer));
        self.signaling.own(
            &self.room,
            &self.peer,
            Owned::DataConsumer(worker.index(), consumed.id),
        );
        let mut value = to_value(&consumed.parameters);
        if let Some(o) = value.as_object_mut() {
            o.insert("peerId".into(), Value::String(producer_peer));
        }
        Ok(value)
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("ORTC types serialize")
}

impl Drop for PeerSession {
    fn drop(&mut self) {
        let worker = self.room.worker.index();
        let mut rooms = lock(&self.signaling.inner.rooms);
        let mut state = lock(&self.room.state);
        let Some(me) = state.peers.remove(&self.peer) else {
            return;
        };
        for pid in me.producers.keys() {
            let data = json!({ "producerId": pid.to_string(), "peerId": self.peer });
            state.broadcast(&self.peer, "producerClosed", &data);
        }
        for dpid in me.data_producers.keys() {
            let data = json!({ "dataProducerId": dpid.to_string(), "peerId": self.peer });
            state.broadcast(&self.peer, "dataProducerClosed", &data);
        }
        if me.rtp_capabilities.is_some() {
            state.broadcast(&self.peer, "peerLeft", &json!({ "peerId": self.peer }));
        }
        // Closing the transports closes their producers; the consumers of the other peers close
        // with them and are reported to those peers as events.
        for tid in me.transports.keys() {
            if let Err(e) = self.room.worker.close_transport(*tid) {
                debug!(transport = %tid, error = %e, "close on leave");
            }
        }
        // ffmpeg publishers alone do not keep a room open.
        let empty = state.peers.values().all(|p| p.ffmpeg);
        let publishers = if empty {
            std::mem::take(&mut state.peers)
        } else {
            BTreeMap::new()
        };
        drop(state);
        self.signaling.disown(
            std::iter::once(&me)
                .chain(publishers.values())
                .flat_map(|p| owned_by(worker, p)),
        );
        if empty {
            rooms.remove(&self.room.name);
            if let Some(o) = self.room.observer {
                self.signaling.disown([Owned::Observer(worker, o)]);
            }
            if let Err(e) = self.room.worker.close_router(self.room.router) {
                debug!(router = %self.room.router, error = %e, "close router");
            }
            info!(room = %self.room.name, "room closed");
        }
        info!(room = %self.room.name, peer = %self.peer, "peer left");
    }
}
