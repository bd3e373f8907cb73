//! The state machine: datagrams and deadlines in, datagrams, events and deadlines out.
//!
//! Everything the Sfu owns lives in id-keyed maps. A datagram is routed to exactly one transport
//! by the demux; the transport's `Rtc` is driven and drained; what it yields (RTP packets, key
//! frame requests, state changes) goes on a work queue that is processed until empty. Forwarding
//! one packet touches the producer, its consumers and their transports, nothing else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::media::KeyframeRequestKind;
use str0m::net::Receive;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use str0m::{IceConnectionState, IceCreds};
use tracing::{debug, trace};

use crate::config::SfuConfig;
use crate::demux::{self, Demux, Kind, Tuple};
use crate::error::Error;
use crate::event::{DtlsState, Event, IceState, TransportTuple};
use crate::ids::{ConsumerId, ObserverId, ProducerId, RouterId, TransportId};
use crate::io::{Input, Output, Protocol, Transmit};
use crate::keyframe::is_key_frame;
use crate::observer::AudioLevelObserver;
use crate::ortc::MediaKind;
use crate::router::{Consumer, Producer, Router};
use crate::stats::SfuStats;
use crate::timers::Timers;
use crate::transport::webrtc::{self, WebRtcTransport};

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
    /// Reused list of consumers while forwarding one packet.
    scratch_consumers: Vec<ConsumerId>,
    /// Key frame requests raised while forwarding one packet.
    scratch_key_frames: Vec<(ProducerId, usize)>,
    /// Consumer transports written to since the last [`poll_output`](Sfu::poll_output): their
    /// stacks are handed time and drained once, however many packets they were given.
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
    /// destination's datagrams one after another (ready for one GSO send) and pays each
    /// transport's send-side bookkeeping once per batch instead of once per packet.
    ///
    /// Consumer transports are encrypted and drained one at a time, as the calls reach them: a
    /// runtime that sends each destination's datagrams as soon as the next destination's begin
    /// gets the first ones out while the last are still to be made.
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
        t.rtp_pending = kind == Kind::RtpOrRtcp && !is_rtcp(contents);
        if let Err(e) = t.rtc.handle_input(input) {
            trace!(transport = %tid, error = %e, "datagram rejected");
            t.stats.rtc_errors += 1;
            note_rtc_error(t, tid, &e, &mut self.out);
        }
        self.drain(tid);
        if let Some(t) = self.transports.get_mut(&tid) {
            if std::mem::take(&mut t.rtp_pending) {
                t.stats.rtp_dropped += 1;
            }
        }
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
                    if matches!(e, str0m::Event::RtpPacket(_)) {
                        t.rtp_pending = false;
                    }
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

    /// Hands time to the next transport written to since it was last flushed, so that str0m
    /// stamps, encrypts and releases its queued packets, and drains it. False when none waits.
    fn flush_next_consumer_transport(&mut self) -> bool {
        let Some(tid) = self.flush_queue.pop_front() else {
            return false;
        };
        let now = self.now;
        if let Some(t) = self.transports.get_mut(&tid) {
            if std::mem::take(&mut t.flush_pending) {
                if let Err(e) = t.rtc.handle_input(str0m::Input::Timeout(now)) {
                    t.stats.rtc_errors += 1;
                    trace!(transport = %tid, error = %e, "write failed");
                }
                self.drain(tid);
                // Draining may raise events (a consumer's key frame request) that forward more.
                self.run_work();
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
            str0m::Event::RtpPacket(packet) => self.forward(tid, packet),
            str0m::Event::KeyframeRequest(req) => {
                let Some(t) = self.transports.get(&tid) else {
                    return;
                };
                let Some(&cid) = t.consumers_by_mid.get(&req.mid) else {
                    return;
                };
                let Some(c) = self.consumers.get_mut(&cid) else {
                    return;
                };
                c.stats.key_frame_requests_received += 1;
                let (pid, layer) = (c.producer, c.current_layer.unwrap_or(c.preferred_layer));
                trace!(consumer = %cid, kind = ?req.kind, "key frame requested");
                self.request_key_frame(pid, layer);
            }
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
                if let Some(t) = self.transports.get_mut(&tid) {
                    t.take_srtp_keys();
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

    /// Forwards one packet from a producer to its consumers.
    fn forward(&mut self, tid: TransportId, packet: RtpPacket) {
        let now = self.now;
        let ssrc = *packet.header.ssrc;
        let Some((pid, layer)) = self.producer_of(tid, ssrc) else {
            // An SSRC no producer of this transport declared (the stack took it in on a mid
            // the transport produces): dropped, counted like the stack's own drops.
            trace!(transport = %tid, ssrc, "RTP on an SSRC no producer of the transport has");
            if let Some(t) = self.transports.get_mut(&tid) {
                t.stats.rtp_dropped += 1;
            }
            return;
        };
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        p.stats.packets_received += 1;
        p.stats.bytes_received += packet.payload.len() as u64;
        if let Some(n) = p.stats.packets_per_encoding.get_mut(layer) {
            *n += 1;
        }
        if let Some(e) = p.encodings.get_mut(layer) {
            e.last_packet_at = Some(now);
        }
        if !p.observers.is_empty() && !p.paused {
            if let Some(level) = packet.header.ext_vals.audio_level {
                for oid in &p.observers {
                    if let Some(o) = self.observers.get_mut(oid) {
                        o.add_level(pid, level);
                    }
                }
            }
        }
        if p.paused || p.consumers.is_empty() {
            return;
        }
        let key_frame = p
            .video_codec
            .is_none_or(|codec| is_key_frame(codec, &packet.payload));
        let is_video = p.kind == MediaKind::Video;
        let simulcast = p.encodings.len() > 1;
        self.scratch_consumers.clear();
        self.scratch_consumers.extend_from_slice(&p.consumers);
        self.scratch_key_frames.clear();
        // The layer each preference resolves to, computed once per packet.
        let layers = p.encodings.len().clamp(1, MAX_LAYERS);
        let mut best = [0usize; MAX_LAYERS];
        if simulcast {
            for (pref, slot) in best.iter_mut().enumerate().take(layers) {
                *slot = p.best_layer(pref, now);
            }
        }

        for i in 0..self.scratch_consumers.len() {
            let cid = self.scratch_consumers[i];
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            if !c.is_forwarding() {
                continue;
            }
            // Which encoding this consumer should get, and whether this packet may start it.
            let target = best[c.preferred_layer.min(layers - 1)];
            if c.current_layer != Some(target) {
                if layer != target {
                    if c.current_layer != Some(layer) {
                        continue;
                    }
                    // Keep forwarding the current layer until the target has a key frame.
                    if !self.scratch_key_frames.contains(&(pid, target)) {
                        self.scratch_key_frames.push((pid, target));
                    }
                } else if key_frame || !is_video {
                    c.current_layer = Some(target);
                    c.stats.current_layer = Some(target);
                    c.rewriter.request_resync();
                } else {
                    c.stats.packets_waiting_for_key_frame += 1;
                    if !self.scratch_key_frames.contains(&(pid, target)) {
                        self.scratch_key_frames.push((pid, target));
                    }
                    continue;
                }
            }
            if c.current_layer != Some(layer) {
                continue;
            }
            if c.rewriter.needs_resync() && is_video && !key_frame {
                c.stats.packets_waiting_for_key_frame += 1;
                if !self.scratch_key_frames.contains(&(pid, layer)) {
                    self.scratch_key_frames.push((pid, layer));
                }
                continue;
            }
            let Some((seq, ts)) =
                c.rewriter
                    .rewrite(*packet.seq_no, packet.header.timestamp, now, c.clock_rate)
            else {
                continue;
            };
            c.stats.packets_sent += 1;
            c.stats.bytes_sent += packet.payload.len() as u64;
            let (ctid, cssrc, pt) = (c.transport, c.ssrc, c.payload_type);
            let Some(ct) = self.transports.get_mut(&ctid) else {
                continue;
            };
            let ext = &packet.header.ext_vals;
            let ext_vals = ExtensionValues {
                audio_level: ext.audio_level,
                voice_activity: ext.voice_activity,
                video_orientation: ext.video_orientation,
                ..Default::default()
            };
            let mut api = ct.rtc.direct_api();
            let Some(stream) = api.stream_tx(&cssrc.into()) else {
                continue;
            };
            stream.write_rtp(
                RtpWrite::new(pt.into(), seq.into(), ts, now, packet.payload.clone())
                    .marker(packet.header.marker)
                    .ext_vals(ext_vals)
                    .nackable(is_video),
            );
            // str0m stamps and sends queued packets when time is handed to it; without that the
            // packet would wait for the transport's next deadline. Done once per transport in
            // `poll_output`, after all the packets of the caller's batch.
            if !std::mem::replace(&mut ct.flush_pending, true) {
                self.flush_queue.push_back(ctid);
            }
        }
        for i in 0..self.scratch_key_frames.len() {
            let (pid, layer) = self.scratch_key_frames[i];
            self.request_key_frame(pid, layer);
        }
    }

    /// The producer (and encoding) an SSRC arriving on a transport belongs to.
    fn producer_of(&mut self, tid: TransportId, ssrc: u32) -> Option<(ProducerId, usize)> {
        let t = self.transports.get_mut(&tid)?;
        if let Some(&found) = t.producer_ssrcs.get(&ssrc) {
            return Some(found);
        }
        // An SSRC that str0m mapped through mid/rid header extensions (simulcast by rid).
        let (mid, rid) = {
            let mut api = t.rtc.direct_api();
            let stream = api.stream_rx(&ssrc.into())?;
            (stream.mid(), stream.rid())
        };
        let pid = *t.producers_by_mid.get(&mid)?;
        let p = self.producers.get_mut(&pid)?;
        let layer = p
            .encodings
            .iter()
            .position(|e| rid.is_some() && e.rid == rid)?;
        p.encodings[layer].ssrc = Some(ssrc);
        t.producer_ssrcs.insert(ssrc, (pid, layer));
        Some((pid, layer))
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
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let (tid, mid) = (p.transport, p.mid);
        let Some(e) = p.encodings.get_mut(layer) else {
            return;
        };
        // Before DTLS is up no RTCP can leave: the request would be lost, uncounted by anyone.
        // Packets only arrive once it is up, and each one that finds a consumer waiting for a
        // key frame asks again.
        let Some(t) = self
            .transports
            .get_mut(&tid)
            .filter(|t| t.dtls_state == DtlsState::Connected)
        else {
            return;
        };
        let mut api = t.rtc.direct_api();
        let stream = match e.ssrc {
            Some(ssrc) => api.stream_rx(&ssrc.into()),
            None => api.stream_rx_by_mid(mid, e.rid),
        };
        // No stream for the encoding yet: nothing to ask, and nothing that throttles the next
        // request.
        let Some(stream) = stream else {
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        trace!(producer = %pid, layer, "key frame request sent");
        e.key_frame_sent_at = Some(now);
        e.key_frame_pending = false;
        p.stats.key_frame_requests_sent += 1;
        if let Err(e) = t.rtc.handle_input(str0m::Input::Timeout(now)) {
            t.stats.rtc_errors += 1;
            trace!(transport = %tid, error = %e, "key frame request failed");
        }
        self.drain(tid);
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

/// Whether an RTP/RTCP datagram is RTCP (RFC 5761: payload types 64–95 after masking the
/// marker bit).
fn is_rtcp(buf: &[u8]) -> bool {
    buf.get(1).is_some_and(|b| (64..96).contains(&(b & 0x7f)))
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
