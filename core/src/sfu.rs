//! The state machine: datagrams and deadlines in, datagrams, events and deadlines out.
//!
//! Everything the Sfu owns lives in id-keyed maps. A datagram is routed to exactly one transport
//! by the demux. STUN and DTLS go to the transport's `Rtc`, which is driven and drained; its
//! state changes go on a work queue processed until empty. SRTP and SRTCP go to the
//! transport's media session ([`ingress`]), and forwarded packets leave through the consumers'
//! transports ([`egress`]). Forwarding one packet touches the producer, its consumers and their
//! transports, nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::net::Receive;
use str0m::{IceConnectionState, IceCreds};
use tracing::{debug, trace};

use crate::config::SfuConfig;
use crate::demux::{self, Demux, Kind, Tuple};
use crate::error::Error;
use crate::event::{DtlsState, Event, IceState, TransportTuple};
use crate::ids::{ConsumerId, ObserverId, ProducerId, RouterId, TransportId};
use crate::io::{Input, Output, Protocol, Transmit};
use crate::media::session::MediaSession;
use crate::observer::AudioLevelObserver;
use crate::ortc::MediaKind;
use crate::router::{Consumer, Producer, Router};
use crate::stats::SfuStats;
use crate::timers::Timers;
use crate::transport::webrtc::{self, WebRtcTransport};

pub(crate) mod egress;
pub(crate) mod ingress;

/// NTP time (RFC 5905, 64-bit fixed point) the Sfu's start is taken to be, for sender reports
/// of streams whose producer sent none yet: 2026-01-01T00:00:00Z. The Sfu has no wall clock;
/// receivers use these times only relative to each other.
const NTP_AT_START: u64 = 3_976_214_400 << 32;

/// The most sent datagrams' buffers [`Sfu::recycle`] keeps for reuse.
pub const MAX_SPARE_BUFFERS: usize = 4096;

/// The capacity of the buffers the Sfu writes datagrams into (a whole datagram fits).
pub(crate) const SPARE_BUFFER_SIZE: usize = 1600;

/// The shortest time a transport is put back to sleep for when its stack names no later
/// deadline.
const MIN_WAKE: std::time::Duration = std::time::Duration::from_millis(1);

/// How long a transport that was never connected sleeps when its stack names no later deadline
/// (everything it can do before `connect` is driven by arriving datagrams).
const IDLE_WAKE: std::time::Duration = std::time::Duration::from_millis(500);

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
}

/// A selective forwarding unit: routers, transports, producers and consumers, as a pure state
/// machine. See the [crate documentation](crate) for the run loop.
pub struct Sfu {
    pub(crate) config: SfuConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Instant,
    pub(crate) cert: DtlsCert,
    pub(crate) crypto: Arc<CryptoProvider>,
    /// The certificate's fingerprint as signaled: ("sha-256", "AB:CD:…").
    pub(crate) fingerprint: Option<(String, String)>,
    pub(crate) routers: FxHashMap<RouterId, Router>,
    /// Boxed: a transport is ~10 KB, and held inline the table would spread the few hot ones
    /// over a table sized for all (86 MB at 5,000) and move every one of them when it grows.
    pub(crate) transports: FxHashMap<TransportId, Box<WebRtcTransport>>,
    pub(crate) producers: FxHashMap<ProducerId, Producer>,
    pub(crate) consumers: FxHashMap<ConsumerId, Consumer>,
    pub(crate) observers: FxHashMap<ObserverId, AudioLevelObserver>,
    pub(crate) demux: Demux,
    pub(crate) timers: Timers<TimerKey>,
    pub(crate) out: VecDeque<Output>,
    /// Events from `Rtc`s waiting to be acted on.
    work: VecDeque<(TransportId, str0m::Event)>,
    /// The datagram being taken apart (SRTP is decrypted in place, so input is copied once).
    rx_buf: Vec<u8>,
    /// Buffers of sent datagrams the caller gave back ([`Sfu::recycle`]), reused for the next
    /// ones.
    pub(crate) spare_buffers: Vec<Vec<u8>>,
    /// The NTP time of an Instant, for sender reports.
    pub(crate) ntp_base: (u64, Instant),
    /// Reused list of consumers while forwarding one packet.
    scratch_consumers: Vec<ConsumerId>,
    /// Key frame requests raised while forwarding one packet.
    scratch_key_frames: Vec<(ProducerId, usize)>,
    /// Consumer transports written to since the last [`poll_output`](Sfu::poll_output): their
    /// datagrams leave together, however many packets they were given.
    flush_queue: VecDeque<TransportId>,
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
        let crypto = crate::dtls::crypto_provider();
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| Error::Certificate("the crypto provider made none".into()))?;
        let max_datagram = config.max_datagram_size;
        let rng = match config.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Ok(Self {
            config,
            rng,
            now,
            cert,
            crypto,
            fingerprint: None,
            routers: FxHashMap::default(),
            transports: FxHashMap::default(),
            producers: FxHashMap::default(),
            consumers: FxHashMap::default(),
            observers: FxHashMap::default(),
            demux: Demux::default(),
            timers: Timers::new(),
            out: VecDeque::new(),
            work: VecDeque::new(),
            rx_buf: Vec::with_capacity(max_datagram),
            spare_buffers: Vec::new(),
            ntp_base: (NTP_AT_START, now),
            scratch_consumers: Vec::new(),
            scratch_key_frames: Vec::new(),
            flush_queue: VecDeque::new(),
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
                self.receive(proto, source, destination, contents);
            }
            Input::Timeout(now) => {
                self.advance(now);
                self.timeout();
            }
        }
        self.run_work();
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
    /// Sfu keeps at most [`MAX_SPARE_BUFFERS`] and drops the rest.
    pub fn recycle(&mut self, buffer: Vec<u8>) {
        // Kept at its length: only the bytes a later datagram writes are used again.
        if self.spare_buffers.len() < MAX_SPARE_BUFFERS && buffer.capacity() >= SPARE_BUFFER_SIZE {
            self.spare_buffers.push(buffer);
        }
    }

    /// Counters of datagrams dropped before reaching a transport.
    pub fn stats(&self) -> SfuStats {
        self.stats
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
        let known_path = routed.is_some();
        let tid = match routed {
            Some(tid) => tid,
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
        let Some(t) = self.transports.get_mut(&tid) else {
            self.stats.dropped_unknown_source += 1;
            return;
        };
        t.stats.datagrams_received += 1;
        t.stats.bytes_received += contents.len() as u64;
        // SRTP and SRTCP belong to the media session, never to the WebRTC stack.
        if kind == Kind::RtpOrRtcp {
            self.media_in(tid, contents);
            return;
        }
        let Ok(recv) = Receive::new(proto.into(), source, destination, contents) else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let input = str0m::Input::Receive(now, recv);
        if kind == Kind::Stun && !t.rtc.accepts(&input) {
            self.stats.dropped_stun_unauthenticated += 1;
            return;
        }
        // On a validated path str0m takes any STUN and its ICE agent drops what does not verify,
        // uncounted: check it as `admit_stun` checks a new path.
        if kind == Kind::Stun && known_path {
            if demux::binding_request_ufrags(contents).is_none_or(|(local, _)| local != t.ufrag) {
                self.stats.dropped_stun_unknown_ufrag += 1;
                return;
            }
            if !stun_verifies(&self.crypto, &t.ice_password, contents) {
                self.stats.dropped_stun_unauthenticated += 1;
                return;
            }
        }
        // A DTLS datagram that is not a sequence of well-formed DTLS 1.2 records: the DTLS
        // stack would discard it silently, uncounted.
        if kind == Kind::Dtls && !demux::is_dtls12_records(contents) {
            t.stats.dtls_dropped += 1;
            return;
        }
        if let Err(e) = t.rtc.handle_input(input) {
            trace!(transport = %tid, error = %e, "datagram rejected");
            t.stats.rtc_errors += 1;
            note_rtc_error(t, tid, &e, &mut self.out);
        }
        self.drain(tid);
    }

    /// A binding request from a path no transport knows yet: find the transport by the local
    /// ufrag, check the request's integrity with that transport's password, and learn the path.
    fn admit_stun(&mut self, tuple: Tuple, contents: &[u8]) -> Option<TransportId> {
        let Some((local, remote)) = demux::binding_request_ufrags(contents) else {
            self.stats.dropped_stun_unknown_ufrag += 1;
            return None;
        };
        let Some(tid) = self.demux.by_ufrag(&local) else {
            self.stats.dropped_stun_unknown_ufrag += 1;
            return None;
        };
        let t = self.transports.get_mut(&tid)?;
        let (proto, destination, _) = tuple;
        let verified = stun_verifies(&self.crypto, &t.ice_password, contents);
        if !verified || !t.listens_on(proto, destination) {
            self.stats.dropped_stun_unauthenticated += 1;
            return None;
        }
        if t.tuples.len() >= self.config.max_tuples_per_transport {
            self.stats.dropped_too_many_tuples += 1;
            return None;
        }
        // The server never needs the client's ICE password (ICE-lite answers only), but str0m
        // holds binding requests back until it has remote credentials: learn the client's ufrag
        // from its first authenticated request, and again after an ICE restart.
        if t.remote_ufrag.as_deref() != Some(remote.as_str()) {
            t.rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag: remote.clone(),
                pass: String::new(),
            });
            t.remote_ufrag = Some(remote);
        }
        t.tuples.push(tuple);
        self.demux.insert_tuple(tuple, tid);
        debug!(transport = %tid, ?tuple, "path learned");
        Some(tid)
    }

    /// Wakes everything whose deadline has passed.
    fn timeout(&mut self) {
        let now = self.now;
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Transport(tid) => {
                    let Some(t) = self.transports.get_mut(&tid) else {
                        continue;
                    };
                    if let Err(e) = t.rtc.handle_input(str0m::Input::Timeout(now)) {
                        t.stats.rtc_errors += 1;
                        note_rtc_error(t, tid, &e, &mut self.out);
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
                TimerKey::Observer(oid) => self.audio_level_report(oid),
                TimerKey::Media(tid) => self.media_timeout(tid),
            }
            self.run_work();
        }
    }

    /// Polls a transport's `Rtc` until it names its next deadline. Datagrams go to the output
    /// queue, events to the work queue.
    pub(crate) fn drain(&mut self, tid: TransportId) {
        let now = self.now;
        self.stats.transport_polls += 1;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        loop {
            match t.rtc.poll_output() {
                Ok(str0m::Output::Transmit(tx)) => {
                    t.stats.datagrams_sent += 1;
                    t.stats.bytes_sent += tx.contents.len() as u64;
                    let proto = Protocol::from(tx.proto);
                    note_path(t, tid, proto, &tx, &mut self.out);
                    self.out.push_back(Output::Transmit(Transmit {
                        proto,
                        source: tx.source,
                        destination: tx.destination,
                        contents: tx.contents.into(),
                    }));
                }
                Ok(str0m::Output::Event(e)) => {
                    self.work.push_back((tid, e));
                }
                Ok(str0m::Output::Timeout(at)) => {
                    // After a full drain at `now`, a deadline at or before `now` means nothing
                    // is due yet: str0m reports its unstarted DTLS as due "now" until
                    // `connect`, and briefly while DTLS connects. Wake such a transport a
                    // little later instead of spinning on it.
                    let at = match (at > now, t.connected) {
                        (true, _) => at,
                        (false, true) => now + MIN_WAKE,
                        (false, false) => now + IDLE_WAKE,
                    };
                    self.timers.schedule(TimerKey::Transport(tid), at);
                    break;
                }
                Err(e) => {
                    trace!(transport = %tid, error = %e, "poll failed");
                    t.stats.rtc_errors += 1;
                    note_rtc_error(t, tid, &e, &mut self.out);
                    self.timers
                        .schedule(TimerKey::Transport(tid), webrtc::fallback_deadline(now));
                    break;
                }
            }
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
            if let Some(tuple) = t.selected {
                for contents in t.outbox.drain(..) {
                    self.out.push_back(Output::Transmit(Transmit {
                        proto: tuple.proto,
                        source: tuple.local,
                        destination: tuple.remote,
                        contents,
                    }));
                }
            } else {
                t.outbox.clear();
            }
        }
        true
    }

    /// Acts on queued `Rtc` events until none are left.
    pub(crate) fn run_work(&mut self) {
        while let Some((tid, event)) = self.work.pop_front() {
            self.on_rtc_event(tid, event);
        }
    }

    fn on_rtc_event(&mut self, tid: TransportId, event: str0m::Event) {
        match event {
            str0m::Event::IceConnectionStateChange(state) => {
                let state = match state {
                    IceConnectionState::New | IceConnectionState::Checking => return,
                    IceConnectionState::Connected => IceState::Connected,
                    IceConnectionState::Completed => IceState::Completed,
                    IceConnectionState::Disconnected => IceState::Disconnected,
                };
                let Some(t) = self.transports.get_mut(&tid) else {
                    return;
                };
                if t.ice_state != state {
                    t.ice_state = state;
                    t.stats.ice_state = state;
                    debug!(transport = %tid, ?state, "ICE state");
                    self.out.push_back(Output::Event(Event::IceStateChange {
                        transport: tid,
                        state,
                    }));
                }
            }
            str0m::Event::Connected => {
                self.start_media(tid);
                if let Some(t) = self.transports.get_mut(&tid) {
                    set_dtls_state(t, tid, DtlsState::Connected, &mut self.out);
                }
                self.request_key_frames_for_transport(tid);
            }
            str0m::Event::Closed => {
                if let Some(t) = self.transports.get_mut(&tid) {
                    set_dtls_state(t, tid, DtlsState::Closed, &mut self.out);
                }
            }
            _ => {}
        }
    }

    /// DTLS is up: the transport's media session starts with the keys the handshake exported.
    fn start_media(&mut self, tid: TransportId) {
        let now = self.now;
        let rtcp_ssrc = self.random_ssrc();
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        t.take_srtp_keys();
        if t.media.is_some() {
            return;
        }
        let session = t.srtp_keys.as_ref().and_then(|keys| {
            let profile = keys.media_profile()?;
            MediaSession::new(
                profile,
                keys.local_key(),
                keys.local_salt(),
                keys.remote_key(),
                keys.remote_salt(),
                rtcp_ssrc,
                now,
            )
            .ok()
        });
        let Some(session) = session else {
            // A connected transport without keys cannot carry media; everything it gets is
            // counted as dropped.
            t.stats.rtc_errors += 1;
            return;
        };
        let at = session.deadline();
        t.media = Some(session);
        self.schedule_media(tid, at);
    }

    /// Asks a producer's endpoint for a key frame on one encoding, at most once per
    /// `key_frame_request_interval`; a request inside the interval is sent when it ends.
    pub(crate) fn request_key_frame(&mut self, pid: ProducerId, layer: usize) {
        let now = self.now;
        let interval = self.config.key_frame_request_interval;
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        let Some(e) = p.encodings.get_mut(layer) else {
            return;
        };
        if let Some(last) = e.key_frame_sent_at {
            if now < last + interval {
                if !e.key_frame_pending {
                    e.key_frame_pending = true;
                    self.timers
                        .schedule(TimerKey::KeyFrame(pid, layer), last + interval);
                }
                return;
            }
        }
        self.request_key_frame_now(pid, layer);
    }

    fn request_key_frame_now(&mut self, pid: ProducerId, layer: usize) {
        let now = self.now;
        // No keys yet (before DTLS is up no RTCP can leave) or no SSRC known for the encoding:
        // nothing is asked, and nothing throttles the next request. Packets only arrive once
        // DTLS is up, and each one that finds a consumer waiting for a key frame asks again.
        if !self.send_key_frame_request(pid, layer) {
            return;
        }
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        if let Some(e) = p.encodings.get_mut(layer) {
            e.key_frame_sent_at = Some(now);
            e.key_frame_pending = false;
        }
        p.stats.key_frame_requests_sent += 1;
        trace!(producer = %pid, layer, "key frame request sent");
    }

    /// A transport just became able to receive: its consumers need a key frame.
    fn request_key_frames_for_transport(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        let wanted: Vec<(ProducerId, usize)> = t
            .consumers_by_mid
            .values()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| c.kind == MediaKind::Video && c.is_forwarding())
            .map(|c| (c.producer, c.current_layer.unwrap_or(c.preferred_layer)))
            .collect();
        for (pid, layer) in wanted {
            self.request_key_frame(pid, layer);
        }
    }
}

/// Whether a STUN message's MESSAGE-INTEGRITY verifies with a transport's ICE password.
fn stun_verifies(crypto: &CryptoProvider, password: &str, contents: &[u8]) -> bool {
    let hmac = crypto.sha1_hmac_provider;
    str0m::ice::StunMessage::parse(contents)
        .is_ok_and(|msg| msg.verify(password.as_bytes(), |key, data| hmac.sha1_hmac(key, data)))
}

fn far_future(now: Instant) -> Instant {
    now + std::time::Duration::from_secs(3600)
}

/// Reports the path a transport sends media over when it changes.
fn note_path(
    t: &mut WebRtcTransport,
    tid: TransportId,
    proto: Protocol,
    tx: &str0m::net::Transmit,
    out: &mut VecDeque<Output>,
) {
    // STUN answers go wherever a check came from; only media and DTLS show the chosen path.
    if matches!(tx.contents.first(), Some(0..=3)) {
        return;
    }
    let tuple = TransportTuple {
        proto,
        local: tx.source,
        remote: tx.destination,
    };
    if t.selected != Some(tuple) {
        t.selected = Some(tuple);
        t.stats.selected_tuple = Some(tuple);
        out.push_back(Output::Event(Event::IceSelectedTupleChange {
            transport: tid,
            tuple,
        }));
    }
}

pub(crate) fn set_dtls_state(
    t: &mut WebRtcTransport,
    tid: TransportId,
    state: DtlsState,
    out: &mut VecDeque<Output>,
) {
    if t.dtls_state != state {
        t.dtls_state = state;
        t.stats.dtls_state = state;
        debug!(transport = %tid, ?state, "DTLS state");
        out.push_back(Output::Event(Event::DtlsStateChange {
            transport: tid,
            state,
        }));
    }
}

fn note_rtc_error(
    t: &mut WebRtcTransport,
    tid: TransportId,
    e: &str0m::RtcError,
    out: &mut VecDeque<Output>,
) {
    if matches!(e, str0m::RtcError::Dtls(_)) && t.dtls_state == DtlsState::Connecting {
        set_dtls_state(t, tid, DtlsState::Failed, out);
    }
}

impl From<str0m::net::Protocol> for Protocol {
    fn from(p: str0m::net::Protocol) -> Self {
        match p {
            str0m::net::Protocol::Udp => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }
}

impl From<Protocol> for str0m::net::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Udp => str0m::net::Protocol::Udp,
            Protocol::Tcp => str0m::net::Protocol::Tcp,
        }
    }
}
