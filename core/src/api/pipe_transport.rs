//! Pipe transports (mediasoup's `PipeTransport`): a link between two routers, in this Sfu,
//! another worker or another host; pipe consumers; and pipe to router.
//!
//! A pipe transport is a plain transport without comedia, RTCP muxed: it shares the plain
//! transport's socket demux, SDES-keyed SRTP and media session. What it adds is its consumers:
//! a pipe consumer forwards every encoding of a producer on a stream of its own, with the
//! sequence numbers and timestamps the producer received, and its parameters are what the peer
//! pipe transport produces with.

use super::*;
use crate::ortc::{
    PipeTransportConnectParameters, PipeTransportOptions, PipeTransportParameters,
    PlainTransportConnectParameters, PlainTransportOptions, RtcpFeedback, TransportListenInfo,
    PIPE_SRTP_CRYPTO_SUITE,
};
use crate::router::{PipeSent, PipeStreams};
use crate::sfu::set_sctp_state;
use crate::transport::pipe_sctp::PipeSctp;
use std::net::SocketAddr;

/// A created pipe transport: its id and what the peer's `connect` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PipeTransportCreated {
    /// The transport's id.
    pub id: TransportId,
    /// mediasoup's `PipeTransport` data: `tuple`, `srtpParameters`.
    pub parameters: PipeTransportParameters,
}

impl PipeTransportCreated {
    /// What the peer pipe transport's `connect` takes to reach this one: its signaled address
    /// (which must be an ip, not a host name) and keys.
    pub fn connect_parameters(&self) -> Result<PipeTransportConnectParameters, Error> {
        let tuple = &self.parameters.tuple;
        let ip = tuple.local_address.parse().map_err(|_| {
            Error::InvalidConnectParameters(format!("{} is not an ip address", tuple.local_address))
        })?;
        Ok(PipeTransportConnectParameters {
            ip,
            port: tuple.local_port,
            srtp_parameters: self.parameters.srtp_parameters.clone(),
        })
    }
}

/// Options for [`Sfu::pipe_to_router`].
#[derive(Debug, Clone, PartialEq)]
pub struct PipeToRouterOptions {
    /// The producer to pipe.
    pub producer: ProducerId,
    /// The router to pipe it to (another router of this Sfu).
    pub router: RouterId,
    /// Where the pipe transport in the producer's router listens (a concrete address of a
    /// socket the caller feeds datagrams from).
    pub listen_info: TransportListenInfo,
    /// Where the pipe transport in `router` listens.
    pub remote_listen_info: TransportListenInfo,
    /// Retransmissions across the pipe.
    pub enable_rtx: bool,
    /// SRTP on the pipe.
    pub enable_srtp: bool,
    /// SCTP on the pipe, so that data producers can be piped through the same pair later
    /// ([`Sfu::pipe_data_to_router`]; mediasoup's `enableSctp`).
    pub enable_sctp: bool,
}

/// Options for [`Sfu::pipe_data_to_router`]: the pipe pair it makes has SCTP (with the
/// default streams and sizes of [`PipeTransportOptions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PipeDataToRouterOptions {
    /// The data producer to pipe.
    pub data_producer: DataProducerId,
    /// The router to pipe it to (another router of this Sfu).
    pub router: RouterId,
    /// Where the pipe transport in the data producer's router listens.
    pub listen_info: TransportListenInfo,
    /// Where the pipe transport in `router` listens.
    pub remote_listen_info: TransportListenInfo,
    /// Retransmissions across the pipe (for media piped through the same pair).
    pub enable_rtx: bool,
    /// SRTP on the pipe (for media piped through the same pair; SCTP is not encrypted).
    pub enable_srtp: bool,
}

/// What [`Sfu::pipe_data_to_router`] made or reused.
#[derive(Debug, Clone, PartialEq)]
pub struct PipedDataProducer {
    /// The pipe transport in the data producer's router.
    pub local_transport: TransportId,
    /// The pipe transport in the other router.
    pub remote_transport: TransportId,
    /// The pipe data consumer of the data producer.
    pub pipe_data_consumer: DataConsumerId,
    /// The data producer in the other router: consume it there like any other.
    pub pipe_data_producer: DataProducerId,
}

/// What [`Sfu::pipe_to_router`] made or reused.
#[derive(Debug, Clone, PartialEq)]
pub struct PipedProducer {
    /// The pipe transport in the producer's router.
    pub local_transport: TransportId,
    /// The pipe transport in the other router.
    pub remote_transport: TransportId,
    /// The pipe consumer of the producer.
    pub pipe_consumer: ConsumerId,
    /// The producer in the other router: consume it there like any other.
    pub pipe_producer: ProducerId,
}

impl Sfu {
    /// Creates a pipe transport in a router, on a socket of its own: its listen info must name
    /// the concrete UDP address of that socket, which the caller opened and feeds datagrams
    /// from. It sends nothing until [`Sfu::connect_pipe_transport`] gives the peer's address
    /// (and keys, with SRTP). With `enable_sctp` it carries data channels too: see
    /// [`Sfu::produce_data`] and [`Sfu::consume_data`] on a pipe transport.
    pub fn create_pipe_transport(
        &mut self,
        router: RouterId,
        options: PipeTransportOptions,
    ) -> Result<PipeTransportCreated, Error> {
        let sctp_parameters = options.sctp_parameters();
        let send_buffer_size = options.sctp_send_buffer_size as usize;
        let plain = PlainTransportOptions {
            enable_srtp: options.enable_srtp,
            srtp_crypto_suite: PIPE_SRTP_CRYPTO_SUITE,
            ..PlainTransportOptions::new(options.listen_info)
        };
        let created = self.create_udp_link(router, plain, Some(options.enable_rtx))?;
        let tuple = created.parameters.tuple;
        if let Some(parameters) = &sctp_parameters {
            let t = self.transport_mut(created.id)?;
            // The address the peer is given; the socket's own when it is announced by name.
            let signaled = tuple
                .local_address
                .parse()
                .map(|ip| SocketAddr::new(ip, tuple.local_port))
                .ok()
                .or_else(|| t.plain().map(|l| l.local));
            if let (Some(signaled), TransportKind::Pipe { sctp, .. }) = (signaled, &mut t.kind) {
                *sctp = Some(Box::new(PipeSctp::new(
                    parameters.clone(),
                    send_buffer_size,
                    signaled,
                )));
                t.stats.sctp_state = Some(SctpState::New);
            }
        }
        Ok(PipeTransportCreated {
            id: created.id,
            parameters: PipeTransportParameters {
                id: created.parameters.id,
                tuple,
                rtx: options.enable_rtx,
                srtp_parameters: created.parameters.srtp_parameters,
                sctp_parameters,
            },
        })
    }

    /// Gives a pipe transport its peer's address and, with SRTP, the keys the peer sends with
    /// (mediasoup's `PipeTransport.connect`). Once only. With SCTP, the association starts:
    /// the side whose signaled address sorts lower sends INIT (see
    /// [`PipeTransportOptions::enable_sctp`]).
    pub fn connect_pipe_transport(
        &mut self,
        transport: TransportId,
        parameters: &PipeTransportConnectParameters,
    ) -> Result<(), Error> {
        if self.transport(transport)?.pipe_rtx().is_none() {
            return Err(Error::NotPipe(transport));
        }
        let plain = PlainTransportConnectParameters {
            ip: Some(parameters.ip),
            port: Some(parameters.port),
            rtcp_port: None,
            srtp_parameters: parameters.srtp_parameters.clone(),
        };
        self.connect_udp_link(transport, &plain)?;
        let remote = SocketAddr::new(parameters.ip, parameters.port);
        let Some(t) = self.transports.get_mut(&transport) else {
            return Ok(());
        };
        if let Some(sctp) = t.pipe_sctp_mut() {
            sctp.start(remote);
            set_sctp_state(t, transport, SctpState::Connecting, &mut self.out);
            self.drain(transport);
        }
        Ok(())
    }

    /// Pipes a producer into another router of this Sfu (mediasoup's `pipeToRouter`): a pair
    /// of connected pipe transports between the two routers (made once per pair of routers,
    /// then reused), a pipe consumer of the producer on one, and the producer it feeds on the
    /// other. The returned producer is consumed in `router` like any other.
    pub fn pipe_to_router(&mut self, options: PipeToRouterOptions) -> Result<PipedProducer, Error> {
        let from = self.producer(options.producer)?.router;
        if from == options.router {
            return Err(Error::PipeToSameRouter);
        }
        if !self.routers.contains_key(&options.router) {
            return Err(Error::UnknownRouter(options.router));
        }
        let template = PipeTransportOptions {
            enable_rtx: options.enable_rtx,
            enable_srtp: options.enable_srtp,
            enable_sctp: options.enable_sctp,
            ..PipeTransportOptions::new(options.listen_info.clone())
        };
        let (local, remote) =
            self.reusable_pipe_pair(from, options.router, &template, &options.remote_listen_info)?;
        let consumed = self.consume_pipe(local, options.producer, false)?;
        let produced = self.produce(remote, pipe_produce_options(&consumed));
        let pipe_producer = match produced {
            Ok(id) => id,
            Err(e) => {
                self.remove_consumer(consumed.id, None);
                return Err(e);
            }
        };
        Ok(PipedProducer {
            local_transport: local,
            remote_transport: remote,
            pipe_consumer: consumed.id,
            pipe_producer,
        })
    }

    /// Pipes a data producer into another router of this Sfu (mediasoup's `pipeToRouter`
    /// with a `dataProducerId`): the pair of connected pipe transports between the two routers
    /// (made with SCTP once per pair of routers, then reused; a pair made without SCTP is
    /// refused with [`Error::SctpNotEnabled`]), a pipe data consumer of the data producer on
    /// one, and on the other the data producer it feeds, on the same stream and with the same
    /// ordering and reliability, label and protocol. Messages sent before the pipe's
    /// association is up are dropped and counted by the pipe data consumer.
    pub fn pipe_data_to_router(
        &mut self,
        options: PipeDataToRouterOptions,
    ) -> Result<PipedDataProducer, Error> {
        let from = self
            .data_producers
            .get(&options.data_producer)
            .ok_or(Error::UnknownDataProducer(options.data_producer))?
            .router;
        if from == options.router {
            return Err(Error::PipeToSameRouter);
        }
        if !self.routers.contains_key(&options.router) {
            return Err(Error::UnknownRouter(options.router));
        }
        let template = PipeTransportOptions {
            enable_rtx: options.enable_rtx,
            enable_srtp: options.enable_srtp,
            enable_sctp: true,
            ..PipeTransportOptions::new(options.listen_info.clone())
        };
        let (local, remote) =
            self.reusable_pipe_pair(from, options.router, &template, &options.remote_listen_info)?;
        let consumed = self.consume_data(local, ConsumeDataOptions::new(options.data_producer))?;
        let produced = self.produce_data(remote, pipe_produce_data_options(&consumed));
        let pipe_data_producer = match produced {
            Ok(id) => id,
            Err(e) => {
                self.remove_data_consumer(consumed.id, None);
                return Err(e);
            }
        };
        Ok(PipedDataProducer {
            local_transport: local,
            remote_transport: remote,
            pipe_data_consumer: consumed.id,
            pipe_data_producer,
        })
    }

    /// The pipe pair between two routers: the one made before, else a new one from
    /// `template` (its listen info for `from`'s side, `remote_listen_info` for the other's).
    fn reusable_pipe_pair(
        &mut self,
        from: RouterId,
        to: RouterId,
        template: &PipeTransportOptions,
        remote_listen_info: &TransportListenInfo,
    ) -> Result<(TransportId, TransportId), Error> {
        if let Some(&(a, b)) = self.pipes.get(&(from, to)) {
            if self.transports.contains_key(&a) && self.transports.contains_key(&b) {
                return Ok((a, b));
            }
        }
        let pair = self.pipe_pair(from, to, template, remote_listen_info)?;
        self.pipes.insert((from, to), pair);
        Ok(pair)
    }

    fn pipe_pair(
        &mut self,
        from: RouterId,
        to: RouterId,
        template: &PipeTransportOptions,
        remote_listen_info: &TransportListenInfo,
    ) -> Result<(TransportId, TransportId), Error> {
        let a = self.create_pipe_transport(from, template.clone())?;
        let remote = PipeTransportOptions {
            listen_info: remote_listen_info.clone(),
            ..template.clone()
        };
        let b = match self.create_pipe_transport(to, remote) {
            Ok(b) => b,
            Err(e) => {
                self.close_transport(a.id)?;
                return Err(e);
            }
        };
        let connected = b
            .connect_parameters()
            .and_then(|p| self.connect_pipe_transport(a.id, &p))
            .and_then(|()| a.connect_parameters())
            .and_then(|p| self.connect_pipe_transport(b.id, &p));
        if let Err(e) = connected {
            self.close_transport(a.id)?;
            self.close_transport(b.id)?;
            return Err(e);
        }
        Ok((a.id, b.id))
    }

    /// A pipe consumer: every encoding of the producer on a stream of its own (SSRCs chosen
    /// here, payload types and header extension ids the router's), sequence numbers and
    /// timestamps as the producer received them; RTX streams when the transport has RTX.
    pub(super) fn consume_pipe(
        &mut self,
        transport: TransportId,
        producer: ProducerId,
        paused: bool,
    ) -> Result<Consumed, Error> {
        let t = self.transport(transport)?;
        let rtx = t.pipe_rtx().ok_or(Error::NotPipe(transport))?;
        let p = self.producer(producer)?;
        if p.router != t.router {
            return Err(Error::WrongRouter(producer));
        }
        let mut rtp = pipe_rtp_parameters(&p.consumable, rtx);
        let (payload_type, clock_rate, rtx_payload_type) =
            super::consumer::send_payload_types(&rtp).ok_or(Error::CannotConsume(producer))?;
        let (extensions, _) =
            super::consumer::consumer_extensions(&p.extensions.to_router, &rtp.header_extensions);
        let (kind, producer_paused, layers) = (p.kind, p.paused, p.encodings.len());
        let ssrcs: Vec<u32> = (0..layers).map(|_| self.random_ssrc()).collect();
        let rtx_ssrcs: Vec<u32> = if rtx_payload_type.is_some() {
            (0..layers).map(|_| self.random_ssrc()).collect()
        } else {
            Vec::new()
        };
        for (i, e) in rtp.encodings.iter_mut().enumerate() {
            e.ssrc = ssrcs.get(i).copied();
            e.rtx = rtx_ssrcs.get(i).map(|&ssrc| RtxParameters { ssrc });
        }
        let initial_rtx_seq = (self.next_u64() % 0x7fff) as u16;
        let cid = ConsumerId::from_raw(self.next_u64());
        let Some(t) = self.transports.get_mut(&transport) else {
            return Err(Error::UnknownTransport(transport));
        };
        let mid = t.next_consumer_mid();
        t.consumers_by_mid.insert(mid, cid);
        for &ssrc in ssrcs.iter().chain(&rtx_ssrcs) {
            t.consumers_by_ssrc.insert(ssrc, cid);
        }
        let parameters = ConsumerParameters {
            id: cid.to_string(),
            producer_id: producer.to_string(),
            kind,
            consumer_type: ConsumerType::Pipe,
            producer_paused,
            rtp_parameters: rtp,
        };
        let ssrc = ssrcs.first().copied().unwrap_or_default();
        let initial_score = self.initial_consumer_score(producer);
        self.consumers.insert(
            cid,
            Consumer {
                producer,
                transport,
                kind,
                mid,
                ssrc,
                payload_type,
                clock_rate,
                paused,
                producer_paused,
                rewriter: Rewriter::new(0),
                current_layer: None,
                preferred_layer: layers.saturating_sub(1),
                target_layer: None,
                priority: 1,
                parameters: parameters.clone(),
                rtx_payload_type,
                send: SendStream::new(ssrc, rtx_ssrcs.first().copied(), clock_rate, 0),
                extensions,
                mid_extension: None,
                transport_cc_extension: None,
                abs_send_time_extension: None,
                first_sent_at: None,
                enhancement_picture_open: false,
                report_clock: None,
                stats: ConsumerStats {
                    priority: 1,
                    ..ConsumerStats::default()
                },
                pipe: Some(Box::new(PipeStreams {
                    rtx_seqs: vec![u64::from(initial_rtx_seq); rtx_ssrcs.len()],
                    roc_base: vec![None; layers],
                    sent: vec![PipeSent::default(); layers],
                    ssrcs,
                    rtx_ssrcs,
                })),
                layers: None,
                descriptor_rewritten: false,
                preferred_temporal_layer: None,
                target_temporal_layer: None,
                trace: Default::default(),
                reported_layers: None,
                score: initial_score,
                score_base: None,
            },
        );
        if let Some(p) = self.producers.get_mut(&producer) {
            p.consumers.push(cid);
        }
        if !paused && !producer_paused {
            for layer in 0..layers {
                self.request_key_frame(producer, layer);
            }
        }
        self.wake_media(transport);
        self.kick(transport);
        info!(consumer = %cid, producer = %producer, transport = %transport, "pipe consumer created");
        Ok(Consumed {
            id: cid,
            parameters,
        })
    }
}

/// What the peer pipe transport produces with, from a pipe consumer (mediasoup's
/// `pipeToRouter` passes the pipe consumer's RTP parameters to the pipe producer).
pub fn pipe_produce_options(consumed: &Consumed) -> ProduceOptions {
    ProduceOptions {
        kind: consumed.parameters.kind,
        rtp_parameters: consumed.parameters.rtp_parameters.clone(),
        paused: consumed.parameters.producer_paused,
    }
}

/// What the peer pipe transport produces data with, from a pipe data consumer (mediasoup's
/// `pipeToRouter` passes the pipe data consumer's stream parameters, label and protocol to the
/// pipe data producer).
pub fn pipe_produce_data_options(consumed: &DataConsumed) -> ProduceDataOptions {
    ProduceDataOptions {
        sctp_stream_parameters: consumed.parameters.sctp_stream_parameters,
        label: consumed.parameters.label.clone(),
        protocol: consumed.parameters.protocol.clone(),
        paused: false,
    }
}

/// A pipe consumer's parameters before its SSRCs are chosen: the producer's consumable
/// parameters, without the header extensions written per hop (mid, abs-send-time,
/// transport-wide sequence numbers); without RTX, without RTX codecs and NACK feedback; one
/// encoding per producer encoding, without rid.
fn pipe_rtp_parameters(consumable: &RtpParameters, rtx: bool) -> RtpParameters {
    let mut rtp = consumable.clone();
    rtp.mid = None;
    rtp.header_extensions.retain(|e| {
        !matches!(
            ExtensionKind::from_uri(&e.uri),
            ExtensionKind::Mid
                | ExtensionKind::Rid
                | ExtensionKind::RepairedRid
                | ExtensionKind::AbsSendTime
                | ExtensionKind::TransportWideCc
        )
    });
    if !rtx {
        rtp.codecs.retain(|c| !c.is_rtx());
        for c in &mut rtp.codecs {
            c.rtcp_feedback
                .retain(|f: &RtcpFeedback| f.kind != "nack" || !f.parameter.is_empty());
        }
    }
    for e in &mut rtp.encodings {
        e.rid = None;
        e.rtx = None;
    }
    rtp
}
