//! The state machine: datagrams and deadlines in, datagrams, events and deadlines out.
//!
//! Everything the Sfu owns lives in id-keyed maps. A datagram is routed to exactly one transport
//! by the demux. STUN and DTLS go to a WebRTC transport's `Rtc` ([`handshake`]), which is
//! driven and drained; its state changes go on a work queue processed until empty. SRTP and
//! SRTCP go to the transport's media session ([`ingress`]), and forwarded packets leave through
//! the consumers' transports ([`egress`]). Forwarding one packet touches the producer, its
//! consumers and their transports, nothing else.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use tracing::{debug, trace};

use crate::config::SfuConfig;
use crate::data::{DataConsumer, DataProducer};
use crate::demux::{self, Demux, Kind, Tuple};
use crate::error::Error;
use crate::event::{DtlsState, Event, TransportTuple};
use crate::ids::{
    ConsumerId, DataConsumerId, DataProducerId, ObserverId, ProducerId, RouterId, TransportId,
};
use crate::io::{Input, Output, Protocol, Transmit};
use crate::media::rtcp;
use crate::media::session::MediaSession;
use crate::observer::Observer;
use crate::ortc::MediaKind;
use crate::router::{Consumer, Producer, Router};
use crate::stats::{Footprint, SfuStats};
use crate::timers::Timers;
use crate::transport::outbox::Buffers;
use crate::transport::webrtc::drive::{AdmitRefusal, LinkEvent, LinkOutput, Refusal};
use crate::transport::webrtc::{stun, DtlsIdentity};
use crate::transport::{Transport, TransportKind};

mod active_targets;
pub(crate) mod allocate;
pub(crate) mod egress;
mod handshake;
pub(crate) use handshake::{set_dtls_state, set_sctp_state};
pub(crate) mod ingress;
mod isolation;
mod keyframes;
mod plain;
pub(crate) mod quality;

/// NTP time (RFC 5905, 64-bit fixed point) the Sfu's start is taken to be, for sender reports
/// of streams whose producer sent none yet: 2026-01-01T00:00:00Z. The Sfu has no wall clock;
/// receivers use these times only relative to each other.
const NTP_AT_START: u64 = 3_976_214_400 << 32;

/// The most sent datagrams' buffers [`Sfu::recycle`] keeps for reuse.
pub const MAX_SPARE_BUFFERS: usize = 4096;

/// The capacity of the buffers the Sfu writes datagrams into (a whole datagram fits).
pub(crate) const SPARE_BUFFER_SIZE: usize = 1600;

/// Simulcast encodings a consumer can be given: every encoding a producer may declare.
pub(crate) const MAX_LAYERS: usize = crate::ortc::MAX_ENCODINGS;

/// What a deadline in the timer heap belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// A transport's `Rtc` is due.
    Transport(TransportId),
    /// A throttled key frame request for a producer encoding may go out.
    KeyFrame(ProducerId, usize),
    /// An audio level observer's interval ends.
    Observer(ObserverId),
    /// A transport's media session is due (NACKs, feedback, reports).
    Media(TransportId),
    /// A WebRTC transport's ICE consent expires unless renewed.
    Consent(TransportId),
    /// A transport's pacer or prober has a packet due.
    Pace(TransportId),
}

/// A selective forwarding unit: routers, transports, producers and consumers, as a pure state
/// machine. See the [crate documentation](crate) for the run loop.
pub struct Sfu {
    pub(crate) config: SfuConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Instant,
    /// When the datagram being processed arrived, as the caller said: `now` can be later, as
    /// the Sfu's clock never goes back.
    pub(crate) arrival: Instant,
    /// The DTLS certificate every WebRTC transport presents.
    pub(crate) identity: DtlsIdentity,
    pub(crate) routers: FxHashMap<RouterId, Router>,
    /// Boxed: a transport is ~10 KB, and held inline the table would spread the few hot ones
    /// over a table sized for all (86 MB at 5,000) and move every one of them when it grows.
    pub(crate) transports: FxHashMap<TransportId, Box<Transport>>,
    pub(crate) producers: FxHashMap<ProducerId, Producer>,
    pub(crate) consumers: FxHashMap<ConsumerId, Consumer>,
    pub(crate) observers: FxHashMap<ObserverId, Observer>,
    pub(crate) data_producers: FxHashMap<DataProducerId, DataProducer>,
    pub(crate) data_consumers: FxHashMap<DataConsumerId, DataConsumer>,
    pub(crate) demux: Demux,
    pub(crate) timers: Timers<TimerKey>,
    pub(crate) out: VecDeque<Output>,
    /// Events from WebRTC transports waiting to be acted on.
    work: VecDeque<(TransportId, LinkEvent)>,
    /// The datagram being taken apart (SRTP is decrypted in place, so input is copied once).
    rx_buf: Vec<u8>,
    /// Buffers of sent datagrams the caller gave back ([`Sfu::recycle`]), reused for the next
    /// ones.
    pub(crate) buffers: Buffers,
    /// The NTP time of an Instant, for sender reports.
    pub(crate) ntp_base: (u64, Instant),
    /// The pipe transports [`pipe_to_router`](Sfu::pipe_to_router) made, by (producer's
    /// router, other router).
    pub(crate) pipes: HashMap<(RouterId, RouterId), (TransportId, TransportId)>,
    /// Reused list of consumers while forwarding one packet.
    scratch_consumers: Vec<ConsumerId>,
    /// Key frame requests raised while forwarding one packet.
    scratch_key_frames: Vec<(ProducerId, usize)>,
    /// Consumers' numbers given to packets that were not sent, to fill with padding.
    scratch_unsent: Vec<(ConsumerId, u64)>,
    /// Reused list of transports a relayed message was written to.
    pub(crate) scratch_data_transports: Vec<TransportId>,
    /// Consumer transports written to since the last [`poll_output`](Sfu::poll_output): their
    /// datagrams leave together, however many packets they were given.
    flush_queue: VecDeque<TransportId>,
    /// The transport the input being processed belongs to (see [`isolation`]).
    serving: Option<TransportId>,
    pub(crate) stats: SfuStats,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("routers", &self.routers.len())
            .field("transports", &self.transports.len())
            .field("producers", &self.producers.len())
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// A new Sfu. `now` is the caller's current time: the Sfu has no clock of its own.
    ///
    /// Makes the DTLS certificate all transports of this Sfu share.
    pub fn new(config: SfuConfig, now: Instant) -> Result<Self, Error> {
        let identity = DtlsIdentity::new()?;
        let max_datagram = config.max_datagram_size;
        let rng = match config.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Ok(Self {
            config,
            rng,
            now,
            arrival: now,
            identity,
            routers: FxHashMap::default(),
            transports: FxHashMap::default(),
            producers: FxHashMap::default(),
            consumers: FxHashMap::default(),
            observers: FxHashMap::default(),
            data_producers: FxHashMap::default(),
            data_consumers: FxHashMap::default(),
            demux: Demux::default(),
            timers: Timers::new(),
            out: VecDeque::new(),
            work: VecDeque::new(),
            rx_buf: Vec::with_capacity(max_datagram),
            buffers: Buffers::default(),
            ntp_base: (NTP_AT_START, now),
            pipes: HashMap::new(),
            scratch_consumers: Vec::new(),
            scratch_key_frames: Vec::new(),
            scratch_unsent: Vec::new(),
            scratch_data_transports: Vec::new(),
            flush_queue: VecDeque::new(),
            serving: None,
            stats: SfuStats::default(),
        })
    }

    /// Feeds a datagram or a deadline. Drain [`poll_output`](Self::poll_output) afterwards.
    ///
    /// Never fails: input that is malformed, unauthenticated or for no transport is dropped and
    /// counted in [`stats`](Self::stats).
    pub fn handle_input(&mut self, input: Input<'_>) {
        match input {
            Input::Receive {
                now,
                proto,
                source,
                destination,
                contents,
            } => {
                self.advance(now);
                self.arrival = now;
                self.isolated(|sfu| sfu.receive(proto, source, destination, contents));
            }
            Input::Timeout(now) => {
                self.advance(now);
                self.timeout();
            }
        }
        self.isolated(|sfu| sfu.run_work());
    }

    /// The next thing to do: a datagram to send, an event, or the deadline for the next
    /// [`Input::Timeout`]. Call until it returns [`Output::Timeout`].
    ///
    /// Packets forwarded by the inputs since the last call are sent from here, grouped by
    /// consumer transport: a runtime that feeds a whole receive batch before polling gets each
    /// destination's datagrams one after another (ready for one GSO send).
    pub fn poll_output(&mut self) -> Output {
        loop {
            if let Some(out) = self.out.pop_front() {
                return out;
            }
            if !self.flush_next_consumer_transport() {
                break;
            }
        }
        let next = self.timers.next().unwrap_or_else(|| far_future(self.now));
        Output::Timeout(next)
    }

    /// Gives back the buffer of a datagram [`Output::Transmit`] handed out, once it is sent,
    /// so the Sfu writes a later datagram into it instead of allocating a new one. Optional:
    /// a caller that drops its transmits' buffers only costs an allocation per datagram. The
    /// Sfu keeps at most [`MAX_SPARE_BUFFERS`] (and 64 of runs for GSO) and drops the rest.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        // Kept at its length: only the bytes a later datagram writes are used again.
        self.buffers.give(buffer);
    }

    /// Counters of datagrams dropped before reaching a transport.
    pub fn stats(&self) -> SfuStats {
        self.stats
    }

    /// Whether a transport routes datagrams of this path (ICE validated it with an
    /// authenticated binding request): `local` is the Sfu's address, `remote` the peer's.
    pub fn knows_path(&self, proto: Protocol, local: SocketAddr, remote: SocketAddr) -> bool {
        self.demux.by_tuple(&(proto, local, remote)).is_some()
    }

    /// The size of each of the Sfu's tables.
    pub fn footprint(&self) -> Footprint {
        let (paths, ufrags, local_addresses) = self.demux.sizes();
        let (timers, timer_entries) = self.timers.sizes();
        Footprint {
            routers: self.routers.len(),
            transports: self.transports.len(),
            producers: self.producers.len(),
            consumers: self.consumers.len(),
            observers: self.observers.len(),
            router_members: self
                .routers
                .values()
                .map(|r| r.transports.len() + r.producers.len() + r.observers.len())
                .sum(),
            paths,
            ufrags,
            local_addresses,
            timers,
            timer_entries,
            queued_outputs: self.out.len() + self.work.len() + self.flush_queue.len(),
            spare_buffers: self.buffers.len(),
        }
    }

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Routes one datagram (the per-packet path).
    fn receive(
        &mut self,
        proto: Protocol,
        source: std::net::SocketAddr,
        destination: std::net::SocketAddr,
        contents: &[u8],
    ) {
        self.stats.datagrams_received += 1;
        if contents.len() > self.config.max_datagram_size {
            self.stats.dropped_oversized += 1;
            return;
        }
        let kind = demux::classify(contents);
        if kind == Kind::Unknown {
            self.stats.dropped_malformed += 1;
            return;
        }
        let tuple: Tuple = (proto, destination, source);
        let routed = self.demux.by_tuple(&tuple);
        if kind == Kind::Sctp {
            self.sctp_in(routed, contents);
            return;
        }
        let known_path = routed.is_some();
        let tid = match routed {
            Some(tid) => tid,
            None if proto == Protocol::Udp && self.demux.has_local(&destination) => {
                self.plain_from_new_source(kind, source, destination, contents);
                return;
            }
            None if kind == Kind::Stun => match self.admit_stun(tuple, contents) {
                Some(tid) => tid,
                None => return,
            },
            None => {
                self.stats.dropped_unknown_source += 1;
                return;
            }
        };
        let now = self.now;
        self.serving = Some(tid);
        let Some(t) = self.transports.get_mut(&tid) else {
            self.stats.dropped_unknown_source += 1;
            return;
        };
        if std::mem::take(&mut t.panic_on_next_datagram) {
            panic!("a test asked transport {tid} to fail");
        }
        t.stats.datagrams_received += 1;
        t.stats.bytes_received += contents.len() as u64;
        // SRTP and SRTCP belong to the media session, never to the WebRTC stack.
        if kind == Kind::RtpOrRtcp {
            self.media_in(tid, contents);
            return;
        }
        if t.plain().is_some() {
            // A plain transport's remote sends only RTP and RTCP.
            t.stats.rtp_dropped += 1;
            return;
        }
        let Some(link) = t.webrtc_mut() else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let received = link.receive(
            now,
            &self.identity,
            kind,
            known_path,
            proto,
            source,
            destination,
            contents,
        );
        match received {
            Ok(()) if kind == Kind::Stun => self.binding_request(tid, tuple, contents),
            Ok(()) => {}
            Err(Refusal::Malformed) => {
                self.stats.dropped_malformed += 1;
                return;
            }
            Err(Refusal::StunUnauthenticated) => {
                self.stats.dropped_stun_unauthenticated += 1;
                return;
            }
            Err(Refusal::StunUnknownUfrag) => {
                self.stats.dropped_stun_unknown_ufrag += 1;
                return;
            }
            Err(Refusal::DtlsMalformed) => {
                t.stats.dtls_dropped += 1;
                return;
            }
            Err(Refusal::DataWithoutSctp) => {
                t.stats.data_dropped += 1;
                return;
            }
            Err(Refusal::Rejected { dtls_failed }) => {
                trace!(transport = %tid, "datagram rejected");
                t.stats.rtc_errors += 1;
                if dtls_failed {
                    set_dtls_state(t, tid, DtlsState::Failed, &mut self.out);
                }
            }
        }
        self.drain(tid);
    }

    /// An SCTP packet over UDP: only a pipe transport with SCTP takes it, from its peer, and
    /// only intact (its CRC-32C checksum holds); a broken one is its `sctp_dropped`.
    fn sctp_in(&mut self, routed: Option<TransportId>, contents: &[u8]) {
        let now = self.now;
        let Some(tid) = routed else {
            self.stats.dropped_malformed += 1;
            return;
        };
        self.serving = Some(tid);
        // Anywhere else it is as malformed as before SCTP pipes existed.
        let Some(t) = self
            .transports
            .get_mut(&tid)
            .filter(|t| t.pipe_sctp().is_some())
        else {
            self.stats.dropped_malformed += 1;
            return;
        };
        t.stats.datagrams_received += 1;
        t.stats.bytes_received += contents.len() as u64;
        let Some(sctp) = t.pipe_sctp_mut() else {
            return;
        };
        if !sctp.receive(now, contents) {
            trace!(transport = %tid, "SCTP packet not intact");
            t.stats.sctp_dropped += 1;
            return;
        }
        self.drain(tid);
    }

    /// Wakes everything whose deadline has passed.
    fn timeout(&mut self) {
        let now = self.now;
        while let Some(key) = self.timers.pop_due(now) {
            self.isolated(|sfu| sfu.timer_fired(key));
        }
    }

    /// One due deadline.
    fn timer_fired(&mut self, key: TimerKey) {
        let now = self.now;
        {
            match key {
                TimerKey::Transport(tid) => {
                    self.serving = Some(tid);
                    let Some(t) = self.transports.get_mut(&tid) else {
                        return;
                    };
                    if let Some(sctp) = t.pipe_sctp_mut() {
                        sctp.handle_timeout(now);
                    }
                    if let Some(Err(dtls_failed)) = t.webrtc_mut().map(|link| link.timeout(now)) {
                        t.stats.rtc_errors += 1;
                        if dtls_failed {
                            set_dtls_state(t, tid, DtlsState::Failed, &mut self.out);
                        }
                    }
                    self.drain(tid);
                }
                TimerKey::KeyFrame(pid, layer) => {
                    let pending = self
                        .producers
                        .get_mut(&pid)
                        .and_then(|p| p.encodings.get_mut(layer))
                        .is_some_and(|e| std::mem::take(&mut e.key_frame_pending));
                    if pending {
                        self.request_key_frame_now(pid, layer);
                    }
                }
                TimerKey::Observer(oid) => self.observer_timeout(oid),
                TimerKey::Media(tid) => {
                    self.serving = Some(tid);
                    self.media_timeout(tid);
                }
                TimerKey::Consent(tid) => {
                    self.serving = Some(tid);
                    self.consent_timeout(tid);
                }
                TimerKey::Pace(tid) => {
                    self.serving = Some(tid);
                    self.pace_timeout(tid);
                }
            }
            self.run_work();
        }
    }

    /// Hands the caller the datagrams of the next transport written to since it was last
    /// flushed. False when none waits.
    fn flush_next_consumer_transport(&mut self) -> bool {
        let Some(tid) = self.flush_queue.pop_front() else {
            return false;
        };
        if let Some(t) = self.transports.get_mut(&tid) {
            t.flush_pending = false;
            if let Some(tuple) = t.rtcp_selected {
                for contents in t.rtcp_out.drain(..) {
                    self.out.push_back(Output::Transmit(Transmit {
                        proto: tuple.proto,
                        source: tuple.local,
                        destination: tuple.remote,
                        contents,
                        segment_size: None,
                    }));
                }
            }
            if let TransportKind::Direct(_) = t.kind {
                let consumers = &t.consumers_by_ssrc;
                for (packet, _) in t.outbox.drain() {
                    let event = direct_packet(consumers, tid, packet);
                    self.out.push_back(Output::Event(event));
                }
            } else if let Some(tuple) = t.selected {
                for (contents, segment_size) in t.outbox.drain() {
                    self.out.push_back(Output::Transmit(Transmit {
                        proto: tuple.proto,
                        source: tuple.local,
                        destination: tuple.remote,
                        contents,
                        segment_size,
                    }));
                }
            } else {
                t.outbox.clear(&mut self.buffers);
            }
        }
        true
    }
}

/// What a direct transport hands the application for a packet written for it: a consumer's
/// RTP (on its media or RTX SSRC), or the transport's RTCP.
fn direct_packet(
    consumers: &HashMap<u32, ConsumerId>,
    transport: TransportId,
    packet: Vec<u8>,
) -> Event {
    let ssrc = packet
        .get(8..12)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let consumer = ssrc.and_then(|s| consumers.get(&s).copied());
    match consumer {
        Some(consumer) if !rtcp::is_rtcp(&packet) => Event::DirectConsumerRtp { consumer, packet },
        _ => Event::DirectTransportRtcp { transport, packet },
    }
}

fn far_future(now: Instant) -> Instant {
    now + std::time::Duration::from_secs(3600)
}
