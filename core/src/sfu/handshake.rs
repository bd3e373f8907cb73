//! WebRTC transports' handshakes: paths admitted by ICE, the `Rtc` drained, its events acted on,
//! and the media session started with the keys DTLS exported.

use super::*;
use crate::event::{IceState, SctpState};
use crate::transport::pipe_sctp::PipeSctpOutput;
use crate::transport::webrtc::sctp::ChannelEvent;

impl Sfu {
    /// An authenticated binding request arrived on `tuple`: the client's consent is renewed
    /// (the timer that checks it starts with the first one), and a request that nominates its
    /// path (USE-CANDIDATE) makes it the path media goes out on, so a client whose NAT
    /// mapping changed keeps receiving.
    pub(super) fn binding_request(&mut self, tid: TransportId, tuple: Tuple, contents: &[u8]) {
        let consent = self.config.ice_consent_timeout;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let Some(link) = t.webrtc_mut() else {
            return;
        };
        if !consent.is_zero() && !link.consent_timer {
            link.consent_timer = true;
            self.timers
                .schedule(TimerKey::Consent(tid), self.now + consent);
        }
        if stun::nominates(contents) {
            let (proto, local, remote) = tuple;
            let tuple = TransportTuple {
                proto,
                local,
                remote,
            };
            select_path(t, tid, tuple, &mut self.out);
        }
    }

    /// A transport's consent timer fired: closes the transport when no valid binding request
    /// renewed its consent in time (RFC 7675), else waits for the renewed deadline.
    pub(super) fn consent_timeout(&mut self, tid: TransportId) {
        let (now, consent) = (self.now, self.config.ice_consent_timeout);
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let Some(link) = t.webrtc_mut() else {
            return;
        };
        let Some(at) = link.consent_at.map(|at| at + consent) else {
            return;
        };
        if at > now {
            self.timers.schedule(TimerKey::Consent(tid), at);
            return;
        }
        debug!(transport = %tid, "ICE consent expired");
        if link.ice_state != IceState::Disconnected {
            link.ice_state = IceState::Disconnected;
            t.stats.ice_state = IceState::Disconnected;
            self.out.push_back(Output::Event(Event::IceStateChange {
                transport: tid,
                state: IceState::Disconnected,
            }));
        }
        // The transport exists: closing it cannot fail.
        let _ = self.close_transport(tid);
    }

    /// A binding request from a path no transport knows yet: find the transport by the local
    /// ufrag, check the request's integrity with that transport's password, and learn the path.
    pub(super) fn admit_stun(&mut self, tuple: Tuple, contents: &[u8]) -> Option<TransportId> {
        let Some((local, remote)) = stun::binding_request_ufrags(contents) else {
            self.stats.dropped_stun_unknown_ufrag += 1;
            return None;
        };
        let Some(tid) = self.demux.by_ufrag(&local) else {
            self.stats.dropped_stun_unknown_ufrag += 1;
            return None;
        };
        let t = self.transports.get_mut(&tid)?;
        let selected = t.selected.map(|s| (s.proto, s.local, s.remote));
        let link = t.webrtc_mut()?;
        let limits = (self.config.max_tuples_per_transport, selected);
        match link.admit(&self.identity, tuple, remote, contents, limits) {
            Ok(evicted) => {
                if let Some(old) = evicted {
                    self.demux.remove_tuple(&old);
                    debug!(transport = %tid, ?old, "path forgotten");
                }
            }
            Err(AdmitRefusal::Unauthenticated) => {
                self.stats.dropped_stun_unauthenticated += 1;
                return None;
            }
            Err(AdmitRefusal::TooManyTuples) => {
                self.stats.dropped_too_many_tuples += 1;
                return None;
            }
        }
        self.demux.insert_tuple(tuple, tid);
        debug!(transport = %tid, ?tuple, "path learned");
        Some(tid)
    }

    /// Polls a WebRTC transport's `Rtc` (a pipe transport's SCTP association) until it names
    /// its next deadline. Datagrams go to the output queue, events to the work queue.
    pub(crate) fn drain(&mut self, tid: TransportId) {
        let now = self.now;
        self.stats.transport_polls += 1;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if t.pipe_sctp().is_some() {
            self.drain_pipe_sctp(tid);
            return;
        }
        loop {
            let Some(link) = t.webrtc_mut() else {
                return;
            };
            match link.poll(now) {
                LinkOutput::Transmit(tx) => {
                    t.stats.datagrams_sent += 1;
                    t.stats.bytes_sent += tx.contents.len() as u64;
                    note_path(t, tid, &tx, &mut self.out);
                    self.out.push_back(Output::Transmit(tx));
                }
                LinkOutput::Event(e) => self.work.push_back((tid, e)),
                LinkOutput::Timeout(at) => {
                    self.timers.schedule(TimerKey::Transport(tid), at);
                    break;
                }
                LinkOutput::Failed { dtls_failed, at } => {
                    trace!(transport = %tid, "poll failed");
                    t.stats.rtc_errors += 1;
                    if dtls_failed {
                        set_dtls_state(t, tid, DtlsState::Failed, &mut self.out);
                    }
                    self.timers.schedule(TimerKey::Transport(tid), at);
                    break;
                }
            }
        }
    }

    /// Polls a pipe transport's SCTP association until it names its next deadline: its
    /// datagrams go to the pipe's peer, its messages to the work queue.
    fn drain_pipe_sctp(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        loop {
            let Some(sctp) = t.pipe_sctp_mut() else {
                return;
            };
            match sctp.poll(now) {
                PipeSctpOutput::Transmit(datagram) => {
                    let Some(tuple) = t.selected else {
                        continue;
                    };
                    t.stats.datagrams_sent += 1;
                    t.stats.bytes_sent += datagram.len() as u64;
                    self.out.push_back(Output::Transmit(Transmit {
                        proto: tuple.proto,
                        source: tuple.local,
                        destination: tuple.remote,
                        contents: self.buffers.copy_of(&datagram),
                        segment_size: None,
                    }));
                }
                PipeSctpOutput::Event(e) => self.work.push_back((tid, LinkEvent::Channel(e))),
                PipeSctpOutput::State(state) => set_sctp_state(t, tid, state, &mut self.out),
                PipeSctpOutput::Timeout(at) => {
                    if let Some(at) = at {
                        self.timers.schedule(TimerKey::Transport(tid), at.max(now));
                    }
                    return;
                }
            }
        }
    }

    /// Acts on queued `Rtc` events until none are left.
    pub(crate) fn run_work(&mut self) {
        while let Some((tid, event)) = self.work.pop_front() {
            self.serving = Some(tid);
            self.on_link_event(tid, event);
        }
    }

    pub(super) fn on_link_event(&mut self, tid: TransportId, event: LinkEvent) {
        match event {
            LinkEvent::Ice(state) => {
                let Some(t) = self.transports.get_mut(&tid) else {
                    return;
                };
                let Some(link) = t.webrtc_mut() else {
                    return;
                };
                if link.ice_state != state {
                    link.ice_state = state;
                    t.stats.ice_state = state;
                    debug!(transport = %tid, ?state, "ICE state");
                    self.out.push_back(Output::Event(Event::IceStateChange {
                        transport: tid,
                        state,
                    }));
                }
            }
            LinkEvent::Channel(ChannelEvent::Message {
                stream_id,
                binary,
                data,
            }) => self.relay_message(tid, stream_id, binary, &data),
            LinkEvent::Channel(ChannelEvent::BufferedAmountLow { stream_id }) => {
                self.buffered_amount_low(tid, stream_id);
            }
            LinkEvent::Channel(ChannelEvent::Stray) => {
                if let Some(t) = self.transports.get_mut(&tid) {
                    trace!(transport = %tid, "stray data channel");
                    t.stats.data_dropped += 1;
                }
            }
            LinkEvent::Channel(ChannelEvent::Connected) => {
                if let Some(t) = self.transports.get_mut(&tid) {
                    set_sctp_state(t, tid, SctpState::Connected, &mut self.out);
                }
            }
            LinkEvent::Connected => {
                self.start_media(tid);
                if let Some(t) = self.transports.get_mut(&tid) {
                    set_dtls_state(t, tid, DtlsState::Connected, &mut self.out);
                }
                self.request_key_frames_for_transport(tid);
            }
            LinkEvent::Closed => {
                if let Some(t) = self.transports.get_mut(&tid) {
                    set_dtls_state(t, tid, DtlsState::Closed, &mut self.out);
                }
            }
        }
    }

    /// DTLS is up: the transport's media session starts with the keys the handshake exported.
    pub(super) fn start_media(&mut self, tid: TransportId) {
        let now = self.now;
        let rtcp_ssrc = self.random_ssrc();
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let Some(link) = t.webrtc_mut() else {
            return;
        };
        if let Some(suite) = link.take_srtp_keys() {
            t.stats.srtp_profile = Some(suite);
        }
        if t.media.is_some() {
            return;
        }
        let keys = t.webrtc().and_then(|link| link.srtp_keys.as_ref());
        let session = keys.and_then(|keys| {
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
}

/// Reports the path a transport sends media over when it changes.
pub(super) fn note_path(
    t: &mut Transport,
    tid: TransportId,
    tx: &Transmit,
    out: &mut VecDeque<Output>,
) {
    // STUN answers go wherever a check came from; only media and DTLS show the chosen path.
    if matches!(tx.contents.first(), Some(0..=3)) {
        return;
    }
    let tuple = TransportTuple {
        proto: tx.proto,
        local: tx.source,
        remote: tx.destination,
    };
    select_path(t, tid, tuple, out);
}

/// Makes `tuple` the path media goes out on (an event when it changes).
fn select_path(
    t: &mut Transport,
    tid: TransportId,
    tuple: TransportTuple,
    out: &mut VecDeque<Output>,
) {
    if t.selected != Some(tuple) {
        t.selected = Some(tuple);
        t.outbox.set_udp(tuple.proto == Protocol::Udp);
        t.stats.selected_tuple = Some(tuple);
        out.push_back(Output::Event(Event::IceSelectedTupleChange {
            transport: tid,
            tuple,
        }));
    }
}

/// A WebRTC transport's DTLS state changes (an event when it does).
pub(crate) fn set_dtls_state(
    t: &mut Transport,
    tid: TransportId,
    state: DtlsState,
    out: &mut VecDeque<Output>,
) {
    let Some(link) = t.webrtc_mut() else {
        return;
    };
    if link.dtls_state != state {
        link.dtls_state = state;
        t.stats.dtls_state = state;
        debug!(transport = %tid, ?state, "DTLS state");
        out.push_back(Output::Event(Event::DtlsStateChange {
            transport: tid,
            state,
        }));
        let sctp = match state {
            DtlsState::Connected => Some(SctpState::Connecting),
            DtlsState::Failed => Some(SctpState::Failed),
            DtlsState::Closed => Some(SctpState::Closed),
            DtlsState::New | DtlsState::Connecting => None,
        };
        if let Some(sctp) = sctp {
            set_sctp_state(t, tid, sctp, out);
        }
    }
}

/// A transport's SCTP state changes (an event when it does); nothing for a transport without
/// SCTP. An association fails only before it is up (its DTLS failed, or a pipe's handshake).
pub(crate) fn set_sctp_state(
    t: &mut Transport,
    tid: TransportId,
    state: SctpState,
    out: &mut VecDeque<Output>,
) {
    let Some(current) = t.sctp_state_mut() else {
        return;
    };
    let allowed = match state {
        SctpState::Failed => matches!(current, SctpState::New | SctpState::Connecting),
        _ => true,
    };
    if *current != state && allowed {
        *current = state;
        t.stats.sctp_state = Some(state);
        debug!(transport = %tid, ?state, "SCTP state");
        out.push_back(Output::Event(Event::SctpStateChange {
            transport: tid,
            state,
        }));
    }
}
