//! A pipe transport's SCTP association (mediasoup's `enableSctp` on a `PipeTransport`): SCTP
//! packets travel as UDP datagrams of their own on the pipe, with no DTLS under them, beside
//! the pipe's RTP and RTCP. Both ends use SCTP port 5000; streams are pre-negotiated (the
//! stream id of a pipe data consumer is the stream id the peer's pipe data producer reads), so
//! no DCEP goes on the wire.
//!
//! The association is sctp-proto's, sans-IO: datagrams and the Sfu's time go in, datagrams,
//! messages and a deadline come out.
//!
//! **Who initiates.** SCTP needs one side to send INIT. The side whose own signaled address
//! (the `tuple` its creation returned, as ip and port) sorts lower than its peer's (what
//! `connect` was given) is the client and sends INIT when it is connected; the other waits for
//! it. Both ends compare the same two addresses, so two pipe transports of this crate always
//! agree. A peer that initiates whatever its role (mediasoup does) still connects: the waiting
//! side answers its INIT as usual, and the initiating side, when the peer's INIT comes before
//! its own association is up, gives that association up for the one the peer's INIT opens.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};
use sctp_proto::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig,
    EndpointEvent, Event as AssociationEvent, Payload, PayloadProtocolIdentifier, ReliabilityType,
    ServerConfig, StreamEvent, TransportConfig,
};
use tracing::{debug, trace};

use super::webrtc::sctp::{ChannelEvent, SendOutcome};
use crate::event::SctpState;
use crate::ortc::{SctpParameters, SctpStreamParameters};

/// The SCTP payload of a datagram on a pipe: the UDP payload less the SCTP common header (12
/// bytes) and a DATA chunk header (16 bytes), in datagrams no larger than 1,200 bytes.
const MAX_PAYLOAD: u32 = 1200 - 12 - 16;

/// What a pipe transport keeps for its SCTP association.
pub(crate) struct PipeSctp {
    /// What the transport signals (`sctpParameters`).
    pub(crate) parameters: SctpParameters,
    /// The most bytes a data consumer may have buffered (sent, not acknowledged).
    pub(crate) send_buffer_size: usize,
    /// The state the Sfu last reported.
    pub(crate) state: SctpState,
    /// The association is up.
    up: bool,
    /// The association closed or failed (a new one is not taken).
    ended: bool,
    /// A state change to report from the next poll.
    pending_state: Option<SctpState>,
    /// This side initiates by the rule, and so yields to a peer that initiates as well.
    initiates: bool,
    /// The transport's own signaled address, to decide who initiates.
    pub(crate) signaled: SocketAddr,
    endpoint: Endpoint,
    /// The peer's address, once `connect` gave it.
    remote: Option<SocketAddr>,
    association: Option<(AssociationHandle, Box<Association>)>,
    /// The streams data consumers send on, and how.
    outbound: FxHashMap<u16, SctpStreamParameters>,
    /// Outbound streams not yet opened in the association (it was not up, or the stream id
    /// was still being reset).
    unopened: FxHashSet<u16>,
    /// Datagrams the association wrote, not yet handed to the Sfu.
    transmits: VecDeque<Bytes>,
    /// Events for the Sfu, not yet handed to it.
    events: VecDeque<ChannelEvent>,
}

/// What [`PipeSctp::poll`] hands the Sfu.
pub(crate) enum PipeSctpOutput {
    /// A datagram for the peer.
    Transmit(Bytes),
    /// A message, the association coming up, a buffered amount low.
    Event(ChannelEvent),
    /// The association closed or could not be set up.
    State(SctpState),
    /// Nothing more now: call again after the input or deadline (if any) given.
    Timeout(Option<Instant>),
}

impl PipeSctp {
    /// An association waiting for `connect`, with the transport's `sctpParameters` (messages
    /// up to twice their `max_message_size` reach the Sfu, which drops and counts those past
    /// it), the send buffer of each data consumer, and the transport's signaled address.
    pub(crate) fn new(
        parameters: SctpParameters,
        send_buffer_size: usize,
        signaled: SocketAddr,
    ) -> Self {
        let mut config = EndpointConfig::new();
        config.max_payload_size(MAX_PAYLOAD);
        let mut server = ServerConfig::new();
        server.transport = Arc::new(transport_config(&parameters));
        Self {
            parameters,
            send_buffer_size,
            state: SctpState::New,
            up: false,
            ended: false,
            pending_state: None,
            initiates: false,
            signaled,
            endpoint: Endpoint::new(Arc::new(config), Some(Arc::new(server))),
            remote: None,
            association: None,
            outbound: FxHashMap::default(),
            unopened: FxHashSet::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// `connect` gave the peer's address: the association starts (this side sends INIT when
    /// its signaled address sorts below the peer's). Returns whether this side initiates.
    pub(crate) fn start(&mut self, remote: SocketAddr) -> bool {
        let client = self.signaled <= remote;
        self.initiates = client;
        self.start_as(remote, client);
        client
    }

    /// Starts the association toward `remote`, sending INIT when `client`.
    fn start_as(&mut self, remote: SocketAddr, client: bool) {
        self.remote = Some(remote);
        if client {
            let mut config = ClientConfig::new();
            config.transport = Arc::new(transport_config(&self.parameters));
            match self.endpoint.connect(config, remote) {
                Ok((handle, association)) => {
                    self.association = Some((handle, Box::new(association)));
                }
                Err(e) => {
                    debug!(error = %e, "SCTP association not started");
                    self.ended = true;
                    self.pending_state = Some(SctpState::Failed);
                }
            }
        }
        debug!(%remote, client, "pipe SCTP association starting");
    }

    /// A datagram from the peer that looks like SCTP (port 5000 both ways). False when it is no
    /// intact SCTP packet (its checksum fails): dropped, for the caller to count.
    pub(crate) fn receive(&mut self, now: Instant, datagram: &[u8]) -> bool {
        if !super::webrtc::dtls::sctp_packet_intact(datagram) {
            return false;
        }
        let Some(remote) = self.remote else {
            return false;
        };
        let data = Bytes::copy_from_slice(datagram);
        let Some((handle, event)) = self.endpoint.handle(now, remote, None, None, data) else {
            return true;
        };
        match event {
            DatagramEvent::NewAssociation(association) => {
                // The peer's INIT. Taken when this side waits for it; or when this side
                // initiated too and is not up yet (a peer such as mediasoup's initiates
                // whatever its role): then the peer's association replaces this side's own.
                let take = match &self.association {
                    None => !self.ended,
                    Some(_) => self.initiates && !self.up,
                };
                let dropped = if take {
                    self.association
                        .replace((handle, Box::new(association)))
                        .map(|(old, _)| old)
                } else {
                    trace!("extra SCTP association discarded");
                    Some(handle)
                };
                if let Some(dropped) = dropped {
                    let _ = self
                        .endpoint
                        .handle_event(dropped, EndpointEvent::drained());
                }
            }
            DatagramEvent::AssociationEvent(event) => match &mut self.association {
                Some((own, association)) if *own == handle => association.handle_event(event),
                _ => {}
            },
        }
        true
    }

    /// The association's deadline passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, association)) = &mut self.association {
            association.handle_timeout(now);
        }
    }

    /// What the association has for the Sfu: call until it returns
    /// [`PipeSctpOutput::Timeout`].
    pub(crate) fn poll(&mut self, now: Instant) -> PipeSctpOutput {
        loop {
            if let Some(datagram) = self.transmits.pop_front() {
                return PipeSctpOutput::Transmit(datagram);
            }
            if let Some(event) = self.events.pop_front() {
                return PipeSctpOutput::Event(event);
            }
            if let Some(state) = self.pending_state.take() {
                return PipeSctpOutput::State(state);
            }
            let Some((handle, association)) = &mut self.association else {
                return PipeSctpOutput::Timeout(None);
            };
            while let Some(e) = association.poll_endpoint_event() {
                if let Some(back) = self.endpoint.handle_event(*handle, e) {
                    association.handle_event(back);
                }
            }
            if let Some(transmit) = association.poll_transmit(now) {
                if let Payload::RawEncode(datagrams) = transmit.payload {
                    self.transmits.extend(datagrams);
                }
                continue;
            }
            // (A server's association is "closed" until the COOKIE-ECHO: only its events say
            // when it is lost.)
            let Some(event) = association.poll() else {
                if association.is_closing() && std::mem::take(&mut self.up) {
                    // The peer shuts the association down (its pipe transport closed).
                    return PipeSctpOutput::State(SctpState::Closed);
                }
                return PipeSctpOutput::Timeout(association.poll_timeout());
            };
            if let Some(state) = self.on_association_event(event) {
                return PipeSctpOutput::State(state);
            }
        }
    }

    /// The transport closes: the association shuts down gracefully (a SHUTDOWN chunk, once
    /// nothing sent is unacknowledged), so that the peer learns of it; `send` gets the
    /// datagrams that go out now.
    pub(crate) fn shut_down(&mut self, now: Instant, mut send: impl FnMut(&[u8])) {
        let Some((_, association)) = &mut self.association else {
            return;
        };
        if association.shutdown().is_err() {
            return;
        }
        while let Some(transmit) = association.poll_transmit(now) {
            if let Payload::RawEncode(datagrams) = transmit.payload {
                datagrams.iter().for_each(|d| send(d));
            }
        }
    }

    /// Opens the stream of a pipe data consumer: its messages leave on it ordered or not, and
    /// reliable or not, as `params` say.
    pub(crate) fn open_outbound(&mut self, params: &SctpStreamParameters) {
        self.outbound.insert(params.stream_id, *params);
        self.unopened.insert(params.stream_id);
        self.open_pending();
    }

    /// Closes a stream a data consumer or data producer used (the stream is reset, so the id
    /// can serve again).
    pub(crate) fn close_stream(&mut self, stream_id: u16) {
        self.outbound.remove(&stream_id);
        self.unopened.remove(&stream_id);
        if let Some((_, association)) = &mut self.association {
            if let Ok(mut stream) = association.stream(stream_id) {
                let _ = stream.close();
            }
        }
    }

    /// Sends a message on a data consumer's stream, unless it is larger than the transport's
    /// maximum message size, the stream's buffered amount would pass the send buffer size, or
    /// the association is not up. An empty message goes as one zero byte under the empty
    /// PPID (RFC 8831 section 6.6).
    pub(crate) fn send(&mut self, stream_id: u16, binary: bool, data: &[u8]) -> SendOutcome {
        if data.len() > self.parameters.max_message_size as usize
            || !self.up
            || self.unopened.contains(&stream_id)
            || !self.outbound.contains_key(&stream_id)
        {
            return SendOutcome::Dropped;
        }
        let Some((_, association)) = &mut self.association else {
            return SendOutcome::Dropped;
        };
        let Ok(mut stream) = association.stream(stream_id) else {
            return SendOutcome::Dropped;
        };
        let buffered = stream.buffered_amount().unwrap_or(usize::MAX);
        if buffered.saturating_add(data.len()) > self.send_buffer_size {
            return SendOutcome::Dropped;
        }
        let (ppi, payload): (_, &[u8]) = match (binary, data.is_empty()) {
            (false, false) => (PayloadProtocolIdentifier::String, data),
            (true, false) => (PayloadProtocolIdentifier::Binary, data),
            (false, true) => (PayloadProtocolIdentifier::StringEmpty, &[0]),
            (true, true) => (PayloadProtocolIdentifier::BinaryEmpty, &[0]),
        };
        match stream.write_with_ppi(payload, ppi) {
            Ok(_) => SendOutcome::Sent,
            Err(e) => {
                trace!(stream_id, error = %e, "SCTP message refused");
                SendOutcome::Dropped
            }
        }
    }

    /// The bytes a data consumer's stream has sent and the peer not yet acknowledged.
    pub(crate) fn buffered_amount(&mut self, stream_id: u16) -> usize {
        let Some((_, association)) = &mut self.association else {
            return 0;
        };
        association
            .stream(stream_id)
            .and_then(|s| s.buffered_amount())
            .unwrap_or(0)
    }

    /// Sets when a data consumer's stream reports its buffered amount low.
    pub(crate) fn set_buffered_amount_low_threshold(&mut self, stream_id: u16, threshold: usize) {
        if let Some((_, association)) = &mut self.association {
            if let Ok(mut stream) = association.stream(stream_id) {
                let _ = stream.set_buffered_amount_low_threshold(threshold);
            }
        }
    }

    /// Acts on one association event; a state for the Sfu when the association closed.
    fn on_association_event(&mut self, event: AssociationEvent) -> Option<SctpState> {
        match event {
            AssociationEvent::Connected => {
                self.up = true;
                self.open_pending();
                self.events.push_back(ChannelEvent::Connected);
                None
            }
            AssociationEvent::HandshakeFailed { reason } => {
                debug!(%reason, "pipe SCTP handshake failed");
                self.end();
                Some(SctpState::Failed)
            }
            AssociationEvent::AssociationLost { reason } => {
                debug!(%reason, "pipe SCTP association lost");
                self.end();
                Some(SctpState::Closed)
            }
            AssociationEvent::Stream(StreamEvent::Opened { id } | StreamEvent::Readable { id }) => {
                self.read_stream(id);
                None
            }
            AssociationEvent::Stream(StreamEvent::BufferedAmountLow { id }) => {
                self.events
                    .push_back(ChannelEvent::BufferedAmountLow { stream_id: id });
                None
            }
            AssociationEvent::Stream(StreamEvent::ResetComplete { id }) => {
                if self.unopened.contains(&id) {
                    self.open_pending();
                }
                None
            }
            _ => None,
        }
    }

    /// Takes every whole message waiting on a stream.
    fn read_stream(&mut self, stream_id: u16) {
        let Some((_, association)) = &mut self.association else {
            return;
        };
        // Streams the peer opened are taken as they come; their ids are read below.
        while association.accept_stream().is_some() {}
        let Ok(mut stream) = association.stream(stream_id) else {
            return;
        };
        while let Ok(Some(chunks)) = stream.read_sctp() {
            let binary = match chunks.ppi {
                PayloadProtocolIdentifier::String | PayloadProtocolIdentifier::StringEmpty => false,
                PayloadProtocolIdentifier::Binary | PayloadProtocolIdentifier::BinaryEmpty => true,
                // DCEP (pipes pre-negotiate their streams) and PPIDs no data channel uses.
                _ => {
                    self.events.push_back(ChannelEvent::Stray);
                    continue;
                }
            };
            let data = if matches!(
                chunks.ppi,
                PayloadProtocolIdentifier::StringEmpty | PayloadProtocolIdentifier::BinaryEmpty
            ) {
                Vec::new()
            } else {
                let mut data = vec![0; chunks.len()];
                match chunks.read(&mut data) {
                    Ok(n) => data.truncate(n),
                    Err(_) => continue,
                }
                data
            };
            self.events.push_back(ChannelEvent::Message {
                stream_id,
                binary,
                data,
            });
        }
    }

    /// Opens the outbound streams waiting for the association (or for their id's reset).
    fn open_pending(&mut self) {
        if !self.up {
            return;
        }
        let Some((_, association)) = &mut self.association else {
            return;
        };
        let outbound = &self.outbound;
        self.unopened.retain(|&id| {
            let Some(params) = outbound.get(&id) else {
                return false;
            };
            let stream = match association.open_stream(id, PayloadProtocolIdentifier::Binary) {
                Ok(stream) => Some(stream),
                // The peer sent on it first: the stream is there already.
                Err(sctp_proto::Error::ErrStreamAlreadyExist) => association.stream(id).ok(),
                Err(_) => None,
            };
            let Some(mut stream) = stream else {
                return true;
            };
            let (kind, value) = reliability(params);
            let _ = stream.set_reliability_params(!params.is_ordered(), kind, value);
            false
        });
    }

    /// The association is gone: a new one is not taken.
    fn end(&mut self) {
        (self.up, self.ended) = (false, true);
        if let Some((handle, _)) = self.association.take() {
            let _ = self.endpoint.handle_event(handle, EndpointEvent::drained());
        }
    }
}

/// sctp-proto's settings for a pipe's association: the streams each way and the message size
/// the transport signals (taking up to twice that, so the Sfu sees and counts what is too
/// large), and the port both ends use.
fn transport_config(parameters: &SctpParameters) -> TransportConfig {
    TransportConfig::default()
        .with_max_num_outbound_streams(parameters.os)
        .with_max_num_inbound_streams(parameters.mis)
        .with_max_send_message_size(parameters.max_message_size)
        .with_max_receive_message_size(parameters.max_message_size.saturating_mul(2))
        .with_local_port(parameters.port)
        .with_remote_port(parameters.port)
}

/// sctp-proto's reliability for a stream's parameters.
fn reliability(params: &SctpStreamParameters) -> (ReliabilityType, u32) {
    match (params.max_packet_life_time, params.max_retransmits) {
        (Some(lifetime), _) => (ReliabilityType::Timed, u32::from(lifetime)),
        (None, Some(retransmits)) => (ReliabilityType::Rexmit, u32::from(retransmits)),
        (None, None) => (ReliabilityType::Reliable, 0),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ortc::SCTP_PORT;

    fn link(signaled: &str) -> PipeSctp {
        let parameters = SctpParameters {
            port: SCTP_PORT,
            os: 16,
            mis: 16,
            max_message_size: 4096,
        };
        PipeSctp::new(parameters, 65_536, signaled.parse().unwrap())
    }

    /// Runs both ends for `steps` of 10 ms, carrying every datagram across; the events each
    /// end reported.
    fn run(ends: &mut [PipeSctp; 2], now: &mut Instant, steps: usize) -> [Vec<ChannelEvent>; 2] {
        let mut events = [Vec::new(), Vec::new()];
        for _ in 0..steps {
            for from in 0..2 {
                loop {
                    match ends[from].poll(*now) {
                        PipeSctpOutput::Transmit(d) => {
                            assert!(ends[1 - from].receive(*now, &d), "intact SCTP");
                        }
                        PipeSctpOutput::Event(e) => events[from].push(e),
                        PipeSctpOutput::State(s) => panic!("end {from}: {s:?}"),
                        PipeSctpOutput::Timeout(_) => break,
                    }
                }
            }
            *now += Duration::from_millis(10);
            for end in ends.iter_mut() {
                end.handle_timeout(*now);
            }
        }
        events
    }

    fn messages(events: &[ChannelEvent]) -> Vec<(u16, bool, Vec<u8>)> {
        events
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Message {
                    stream_id,
                    binary,
                    data,
                } => Some((*stream_id, *binary, data.clone())),
                _ => None,
            })
            .collect()
    }

    /// Both ends of ours agree on who initiates; a peer that initiates whatever its role (as
    /// mediasoup's does) connects as well. Messages then cross both ways with their type.
    #[test]
    fn ends_connect_whoever_initiates_and_carry_typed_messages() {
        for peer_initiates_too in [false, true] {
            #[allow(clippy::disallowed_methods)] // A test's own clock.
            let mut now = Instant::now();
            let (a_addr, b_addr) = ("10.0.0.1:4000", "10.0.0.2:4000");
            let mut ends = [link(a_addr), link(b_addr)];
            assert!(
                ends[0].start(b_addr.parse().unwrap()),
                "the lower address initiates"
            );
            if peer_initiates_too {
                ends[1].start_as(a_addr.parse().unwrap(), true);
            } else {
                assert!(!ends[1].start(a_addr.parse().unwrap()));
            }
            let events = run(&mut ends, &mut now, 50);
            for (i, e) in events.iter().enumerate() {
                assert_eq!(
                    e,
                    &[ChannelEvent::Connected],
                    "end {i} ({peer_initiates_too})"
                );
            }
            ends[0].open_outbound(&SctpStreamParameters::reliable(3));
            ends[1].open_outbound(&SctpStreamParameters::reliable(5));
            let sent = [(false, b"hi".to_vec()), (true, vec![]), (false, vec![])];
            for (binary, data) in &sent {
                assert_eq!(ends[0].send(3, *binary, data), SendOutcome::Sent);
                assert_eq!(ends[1].send(5, *binary, data), SendOutcome::Sent);
            }
            assert_eq!(
                ends[0].send(3, true, &[0; 4097]),
                SendOutcome::Dropped,
                "over the maximum message size"
            );
            assert_eq!(
                ends[0].send(4, true, b"x"),
                SendOutcome::Dropped,
                "no such stream"
            );
            let events = run(&mut ends, &mut now, 20);
            let expect =
                |stream| -> Vec<_> { sent.iter().map(|(b, d)| (stream, *b, d.clone())).collect() };
            assert_eq!(messages(&events[1]), expect(3));
            assert_eq!(messages(&events[0]), expect(5));
        }
    }

    /// Datagrams that are not intact SCTP are refused before the association sees them.
    #[test]
    fn broken_packets_are_refused() {
        let mut end = link("10.0.0.1:4000");
        end.start("10.0.0.2:4000".parse().unwrap());
        #[allow(clippy::disallowed_methods)] // A test's own clock.
        let now = Instant::now();
        assert!(!end.receive(now, &[]));
        assert!(!end.receive(now, &[0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0]));
    }
}
