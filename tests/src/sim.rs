//! A whole conference on a virtual clock: one [`Sfu`], client transports, and the virtual
//! network between them. Time jumps to the next thing that happens, so seconds of media run in
//! milliseconds, and the same seed gives the same run.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sfu_core::ortc::{
    DtlsRole, MediaKind, ParameterValue, PipeTransportOptions, PlainTransportConnectParameters,
    PlainTransportOptions, Protocol as OrtcProtocol, RtcpFeedback, RtcpParameters, RtpCapabilities,
    RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
    SctpStreamParameters, SrtpCryptoSuite, TransportListenInfo,
};
use sfu_core::{
    ConsumeDataOptions, ConsumeOptions, Consumed, DataConsumed, DataProducerId, Input, ListenInfo,
    Output, PipeDataToRouterOptions, PipeToRouterOptions, PipeTransportCreated, PipedDataProducer,
    PipedProducer, PlainTransportCreated, ProduceDataOptions, ProduceOptions, ProducerId, RouterId,
    RouterOptions, Sfu, SfuConfig, WebRtcTransportOptions,
};
use str0m::net::Protocol;

use crate::client::{device_capabilities, ClientTransport, ExtensionIds};
use crate::media::Source;
use crate::netsim::{Datagram, LinkConfig, Network, Proto};
use crate::plain::PlainClient;

/// The payload type plain endpoints send VP8 with (ffmpeg's first dynamic one).
pub const PLAIN_VP8_PT: u8 = 96;
/// The payload type plain endpoints send Opus with.
pub const PLAIN_OPUS_PT: u8 = 111;

/// The server's UDP address in simulations.
pub const SERVER_UDP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40000);
/// The server's TCP address in simulations.
pub const SERVER_TCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 40001);

/// The router codecs simulations use: Opus, VP8 and H264.
pub fn media_codecs() -> Vec<RtpCodecCapability> {
    let mut h264 = RtpCodecCapability::new(MediaKind::Video, "video/H264", 90_000, None);
    h264.parameters = [
        ("packetization-mode".to_string(), ParameterValue::Number(1)),
        (
            "profile-level-id".to_string(),
            ParameterValue::String("42e01f".into()),
        ),
    ]
    .into_iter()
    .collect();
    vec![RtpCodecCapability::opus(), RtpCodecCapability::vp8(), h264]
}

/// A media source a client publishes.
#[derive(Debug)]
pub struct Publication {
    /// The client transport sending it.
    pub client: usize,
    /// Its mid on that transport.
    pub mid: String,
    /// The server's producer.
    pub producer: ProducerId,
    /// The generator.
    pub source: Source,
    /// Paused at the source (nothing is sent).
    pub muted: bool,
    /// Key frame requests (PLI/FIR) the publishing client received for it.
    pub key_frame_requests: u64,
    /// When each of those requests reached the publishing client.
    pub key_frame_request_times: Vec<Instant>,
    /// The simulcast layer (rid) this source feeds, if any.
    pub rid: Option<String>,
}

/// One packet a [`Source`] made.
#[derive(Debug, Clone)]
pub struct SentPacket {
    /// Its (extended) sequence number.
    pub seq: u64,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Its marker bit.
    pub marker: bool,
    /// Whether it starts a video key frame.
    pub key_frame: bool,
    /// The audio level it carries in its header extension (dBov), if any.
    pub audio_level: Option<i8>,
    /// Its payload's size in bytes.
    pub size: usize,
    /// When it was made.
    pub at: Instant,
    /// Whether the client sent it (false while the publication was muted).
    pub sent: bool,
}

/// Everything one source (one SSRC) made, in order: sequence numbers are contiguous.
#[derive(Debug, Clone, Default)]
pub struct SentLog {
    /// The RTP clock rate of its timestamps.
    pub clock_rate: u32,
    /// The packets, in sequence number order.
    pub packets: Vec<SentPacket>,
}

impl SentLog {
    /// An empty log of a source with this clock rate.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            packets: Vec::new(),
        }
    }

    /// Logs packets the source made at `at`; `sent` says whether they went out.
    pub fn record(&mut self, packets: &[crate::media::OutPacket], at: Instant, sent: bool) {
        self.packets.extend(packets.iter().map(|o| SentPacket {
            seq: o.seq,
            timestamp: o.timestamp,
            marker: o.marker,
            key_frame: crate::media::verify_payload(&o.payload).is_some_and(|i| i.key_frame),
            audio_level: o.audio_level,
            size: o.payload.len(),
            at,
            sent,
        }));
    }
}

/// The simulation.
pub struct Sim {
    /// Virtual now.
    pub now: Instant,
    /// Virtual start.
    pub start: Instant,
    /// The server.
    pub sfu: Sfu,
    /// The network.
    pub net: Network,
    /// Client transports by index.
    pub clients: Vec<ClientTransport>,
    /// What clients publish.
    pub publications: Vec<Publication>,
    /// Events the server reported, with their time.
    pub events: Vec<(Instant, sfu_core::Event)>,
    /// Every packet each source made, by source SSRC (what the checker compares receivers with).
    pub sent: HashMap<u32, SentLog>,
    /// The server's UDP address.
    pub server_udp: SocketAddr,
    /// The server's TCP address.
    pub server_tcp: SocketAddr,
    /// Datagrams delivered to the server, and the transport polls they caused.
    pub server_receives: u64,
    /// Transport polls caused by datagrams delivered to the server.
    pub server_receive_polls: u64,
    /// Transmits the server handed out (a run of datagrams for GSO counts once).
    pub transmits: u64,
    /// The DTLS role the server's transports are created with from now on
    /// (`WebRtcTransportOptions::dtls_role`; default `Auto`). Each client takes the role
    /// mediasoup-client would: the DTLS server when the server announces `client`, else the
    /// DTLS client.
    pub dtls_role: DtlsRole,
    /// The header extension ids clients added from now on send with (default: the router's).
    pub extension_ids: ExtensionIds,
    /// The options the server's transports are created with from now on, but for their listen
    /// addresses and DTLS role (default: [`WebRtcTransportOptions::default`], no SCTP).
    pub transport_options: WebRtcTransportOptions,
    /// Clients behind a NAT whose mapping changed (see [`rebind`](Self::rebind)): the address
    /// the server sees for each client address, and back.
    nat: HashMap<SocketAddr, SocketAddr>,
    nat_back: HashMap<SocketAddr, SocketAddr>,
    /// Plain RTP endpoints (see [`add_plain_transport`](Self::add_plain_transport)).
    pub plain: Vec<PlainClient>,
    /// Sources the application hands to producers of direct transports: (producer, payload
    /// type, source).
    pub direct_sources: Vec<(ProducerId, u8, Source)>,
    /// The plain endpoints' addresses (RTP and RTCP).
    plain_by_addr: HashMap<SocketAddr, usize>,
    /// The server's plain transports' own addresses.
    server_plain: std::collections::HashSet<SocketAddr>,
    /// The server's pipe transports' own addresses.
    server_pipes: std::collections::HashSet<SocketAddr>,
    /// Every datagram that crossed a pipe between two of the server's routers: when it
    /// arrived, where, and its bytes.
    pub pipe_wire: Vec<(Instant, SocketAddr, Vec<u8>)>,
    /// Clients whose datagrams are lost from now on (see [`silence`](Self::silence)).
    silenced: std::collections::HashSet<usize>,
    sfu_deadline: Instant,
    by_addr: HashMap<SocketAddr, usize>,
    next_host: u32,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// A simulation with this seed (for the network and the server).
    #[allow(clippy::disallowed_methods)] // The simulation's origin; only durations are added.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, SfuConfig::with_seed(seed))
    }

    /// A simulation whose server runs with `config` (its seed should be `seed`'s).
    #[allow(clippy::disallowed_methods)] // The simulation's origin; only durations are added.
    pub fn with_config(seed: u64, config: SfuConfig) -> Self {
        let start = Instant::now();
        let mut net = Network::new(seed);
        net.set_default_link(LinkConfig::default().with_latency(Duration::from_millis(10)));
        Self {
            now: start,
            start,
            sfu: Sfu::new(config, start).expect("sfu"),
            net,
            clients: Vec::new(),
            publications: Vec::new(),
            events: Vec::new(),
            sent: HashMap::new(),
            server_udp: SERVER_UDP,
            server_tcp: SERVER_TCP,
            server_receives: 0,
            server_receive_polls: 0,
            transmits: 0,
            dtls_role: DtlsRole::Auto,
            extension_ids: ExtensionIds::Router,
            transport_options: WebRtcTransportOptions::default(),
            nat: HashMap::new(),
            nat_back: HashMap::new(),
            plain: Vec::new(),
            direct_sources: Vec::new(),
            plain_by_addr: HashMap::new(),
            server_plain: Default::default(),
            server_pipes: Default::default(),
            pipe_wire: Vec::new(),
            silenced: Default::default(),
            sfu_deadline: start,
            by_addr: HashMap::new(),
            next_host: 1,
        }
    }

    /// A simulation whose server and clients use IPv6 loopback addresses.
    pub fn new_ipv6(seed: u64) -> Self {
        let mut sim = Self::new(seed);
        sim.server_udp = "[::1]:40000".parse().expect("address");
        sim.server_tcp = "[::1]:40001".parse().expect("address");
        sim
    }

    /// Creates a router with [`media_codecs`].
    pub fn create_router(&mut self) -> RouterId {
        let r = self
            .sfu
            .create_router(RouterOptions {
                media_codecs: media_codecs(),
            })
            .expect("router");
        self.flush();
        r
    }

    /// Creates a router with [`media_codecs`], VP9 and AV1.
    pub fn create_router_with_vp9(&mut self) -> RouterId {
        let mut codecs = media_codecs();
        codecs.push(RtpCodecCapability::new(
            MediaKind::Video,
            "video/VP9",
            90_000,
            None,
        ));
        codecs.push(RtpCodecCapability::new(
            MediaKind::Video,
            "video/AV1",
            90_000,
            None,
        ));
        let r = self
            .sfu
            .create_router(RouterOptions {
                media_codecs: codecs,
            })
            .expect("router");
        self.flush();
        r
    }

    /// The server's listen addresses.
    pub fn listen_infos(&self) -> Vec<ListenInfo> {
        vec![
            ListenInfo {
                protocol: OrtcProtocol::Udp,
                local: self.server_udp,
                announced_address: None,
            },
            ListenInfo {
                protocol: OrtcProtocol::Tcp,
                local: self.server_tcp,
                announced_address: None,
            },
        ]
    }

    /// A new client transport in `router`, connected like mediasoup-client does it (server
    /// creates, client gets parameters, client `connect`s with its DTLS parameters).
    pub fn add_transport(&mut self, router: RouterId, proto: Protocol) -> usize {
        let host = self.next_host;
        self.next_host += 1;
        let local = if self.server_udp.is_ipv6() {
            // Distinct ports on [::1] (IPv6 has one loopback address).
            SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                50_000 + host as u16,
            )
        } else {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(
                    127,
                    0,
                    1 + (host / 250) as u8,
                    (host % 250) as u8 + 2,
                )),
                50_000,
            )
        };
        self.add_transport_at(router, proto, local)
    }

    /// As [`add_transport`](Self::add_transport), with the client at `local` (for tests whose
    /// clients share an IP address and differ only by port). `local` must be unused.
    pub fn add_transport_at(
        &mut self,
        router: RouterId,
        proto: Protocol,
        local: SocketAddr,
    ) -> usize {
        assert!(
            !self.by_addr.contains_key(&local),
            "client address {local} already in use"
        );
        let created = self
            .sfu
            .create_webrtc_transport(
                router,
                WebRtcTransportOptions {
                    listen_infos: self.listen_infos(),
                    dtls_role: self.dtls_role,
                    ..self.transport_options.clone()
                },
            )
            .expect("transport");
        self.flush();
        let caps = self
            .sfu
            .router_rtp_capabilities(router)
            .expect("caps")
            .clone();
        let mut client = ClientTransport::with_extension_ids(
            self.now,
            local,
            &created.parameters,
            &caps,
            proto,
            self.extension_ids,
        );
        let dtls = client.dtls_parameters();
        self.sfu
            .connect_webrtc_transport(created.id, &dtls)
            .expect("connect");
        self.flush();
        let idx = self.clients.len();
        self.by_addr.insert(local, idx);
        self.clients.push(client);
        idx
    }

    /// Puts `client` behind a NAT that now maps it to `public` (a NAT rebinding): its datagrams
    /// reach the server from `public`, datagrams to `public` reach it, and datagrams to its
    /// previous address are lost. The client itself notices nothing.
    pub fn rebind(&mut self, client: usize, public: SocketAddr) {
        let local = self.clients[client].local;
        if let Some(old) = self.nat.insert(local, public) {
            self.nat_back.remove(&old);
        }
        self.nat_back.insert(public, local);
    }

    /// Loses every datagram `client` sends from now on (a client that went away without a
    /// word).
    pub fn silence(&mut self, client: usize) {
        self.silenced.insert(client);
    }

    /// The RTP capabilities of a device that loaded this router's capabilities.
    pub fn device_caps(&self, router: RouterId) -> RtpCapabilities {
        device_capabilities(self.sfu.router_rtp_capabilities(router).expect("caps"))
    }

    /// Asks the server to produce `params` on `client`'s transport; returns the producer and its
    /// mid.
    fn produce_with(
        &mut self,
        client: usize,
        kind: MediaKind,
        params: sfu_core::ortc::RtpParameters,
    ) -> (ProducerId, String) {
        let mid = params.mid.clone().expect("mid");
        let id = self.clients[client].id;
        let options = ProduceOptions {
            kind,
            rtp_parameters: params,
            paused: false,
        };
        let producer = self.sfu.produce(id, options).expect("produce");
        self.flush();
        (producer, mid)
    }

    /// Publishes a source of `kind` from `client`.
    pub fn produce(&mut self, client: usize, kind: MediaKind, ssrc: u32) -> ProducerId {
        self.produce_as(client, kind, ssrc, ssrc)
    }

    /// As [`produce`](Self::produce), but the source's payloads (and [`sent`](Self::sent), and
    /// so the delivery checker) name it `identity` while the client sends it on RTP SSRC `ssrc`:
    /// clients in different rooms may then use the same SSRCs and still be told apart.
    pub fn produce_as(
        &mut self,
        client: usize,
        kind: MediaKind,
        ssrc: u32,
        identity: u32,
    ) -> ProducerId {
        let params = self.clients[client].prepare_produce(kind, ssrc);
        let (producer, mid) = self.produce_with(client, kind, params);
        let source = match kind {
            MediaKind::Audio => Source::audio(identity, self.now),
            MediaKind::Video => Source::video(identity, self.now),
        };
        self.publications.push(Publication {
            client,
            mid,
            producer,
            source,
            muted: false,
            key_frame_requests: 0,
            key_frame_request_times: Vec::new(),
            rid: None,
        });
        producer
    }

    /// Publishes a VP9 `L3T3_KEY` stream ([`Source::vp9_svc`]) from `client` on `ssrc` (the
    /// router must offer VP9: [`create_router_with_vp9`](Self::create_router_with_vp9)).
    pub fn produce_vp9_svc(&mut self, client: usize, ssrc: u32) -> ProducerId {
        let params = self.clients[client].prepare_produce_vp9(ssrc, "L3T3_KEY");
        let (producer, mid) = self.produce_with(client, MediaKind::Video, params);
        self.publications.push(Publication {
            client,
            mid,
            producer,
            source: Source::vp9_svc(ssrc, self.now),
            muted: false,
            key_frame_requests: 0,
            key_frame_request_times: Vec::new(),
            rid: None,
        });
        producer
    }

    /// Publishes an AV1 `L1T3` stream with dependency descriptors ([`Source::av1_l1t3`]) from
    /// `client` on `ssrc` (the router must offer AV1:
    /// [`create_router_with_vp9`](Self::create_router_with_vp9); the client's transport must
    /// have the dependency descriptor negotiated: `ExtensionIds`/raw extensions).
    pub fn produce_av1_l1t3(&mut self, client: usize, ssrc: u32) -> ProducerId {
        let source = Source::av1_l1t3(ssrc, self.now);
        self.produce_av1(client, ssrc, "L1T3", source)
    }

    /// Publishes an AV1 `L3T3_KEY` stream with dependency descriptors
    /// ([`Source::av1_l3t3_key`]) from `client` on `ssrc`, as
    /// [`produce_av1_l1t3`](Self::produce_av1_l1t3).
    pub fn produce_av1_l3t3_key(&mut self, client: usize, ssrc: u32) -> ProducerId {
        let source = Source::av1_l3t3_key(ssrc, self.now);
        self.produce_av1(client, ssrc, "L3T3_KEY", source)
    }

    /// Publishes an H264 `L1T3` stream ([`Source::h264_l1t3`]) from `client` on `ssrc`, with
    /// its dependency descriptors when `descriptor` (without: the descriptor is not
    /// negotiated, as a sender without it does).
    pub fn produce_h264_l1t3(&mut self, client: usize, ssrc: u32, descriptor: bool) -> ProducerId {
        let source = Source::h264_l1t3(ssrc, self.now, descriptor);
        let params = self.clients[client].prepare_produce_h264(ssrc, "L1T3", descriptor);
        self.publish(client, params, source)
    }

    fn produce_av1(&mut self, client: usize, ssrc: u32, mode: &str, source: Source) -> ProducerId {
        let params = self.clients[client].prepare_produce_av1(ssrc, mode);
        self.publish(client, params, source)
    }

    /// Produces `params` from `client`, fed by `source`.
    fn publish(&mut self, client: usize, params: RtpParameters, source: Source) -> ProducerId {
        let (producer, mid) = self.produce_with(client, MediaKind::Video, params);
        self.publications.push(Publication {
            client,
            mid,
            producer,
            source,
            muted: false,
            key_frame_requests: 0,
            key_frame_request_times: Vec::new(),
            rid: None,
        });
        producer
    }

    /// Publishes simulcast VP8 with three temporal layers in each encoding (`L1T3`,
    /// [`Source::vp8_temporal`]) from `client`: one source per `(rid, ssrc)` layer.
    pub fn produce_simulcast_temporal(
        &mut self,
        client: usize,
        layers: &[(&str, u32)],
    ) -> ProducerId {
        let mut params = self.clients[client].prepare_produce_simulcast(layers);
        for e in &mut params.encodings {
            e.scalability_mode = Some("L1T3".into());
        }
        self.publish_simulcast(client, params, layers, Source::vp8_temporal)
    }

    /// Publishes simulcast H264 with three temporal layers in each encoding signalled by the
    /// dependency descriptor (`L1T3`, [`Source::h264_l1t3`]), as browsers send it, from
    /// `client`: one source per `(rid, ssrc)` layer, each with its own structure (the `n`th
    /// layer's template ids offset by `20 * n`).
    pub fn produce_h264_simulcast(&mut self, client: usize, layers: &[(&str, u32)]) -> ProducerId {
        self.produce_simulcast_with_descriptor(client, layers, "video/H264", |ssrc, start| {
            Source::h264_l1t3(ssrc, start, true)
        })
    }

    /// As [`produce_h264_simulcast`](Self::produce_h264_simulcast) for AV1
    /// ([`Source::av1_l1t3`]).
    pub fn produce_av1_simulcast(&mut self, client: usize, layers: &[(&str, u32)]) -> ProducerId {
        self.produce_simulcast_with_descriptor(client, layers, "video/AV1", Source::av1_l1t3)
    }

    fn produce_simulcast_with_descriptor(
        &mut self,
        client: usize,
        layers: &[(&str, u32)],
        mime: &str,
        source: impl Fn(u32, Instant) -> Source,
    ) -> ProducerId {
        let params =
            self.clients[client].prepare_produce_simulcast_with_descriptor(layers, mime, "L1T3");
        let producer = self.publish_simulcast(client, params, layers, source);
        let ours = self
            .publications
            .iter_mut()
            .filter(|p| p.producer == producer);
        for (n, p) in ours.enumerate() {
            p.source.set_template_id_offset(20 * n as u8);
        }
        producer
    }

    /// Produces the simulcast `params` from `client`, each `(rid, ssrc)` layer fed by
    /// `source(ssrc, now)`.
    fn publish_simulcast(
        &mut self,
        client: usize,
        params: RtpParameters,
        layers: &[(&str, u32)],
        source: impl Fn(u32, Instant) -> Source,
    ) -> ProducerId {
        let (producer, mid) = self.produce_with(client, MediaKind::Video, params);
        for (rid, ssrc) in layers {
            self.publications.push(Publication {
                client,
                mid: mid.clone(),
                producer,
                source: source(*ssrc, self.now),
                muted: false,
                key_frame_requests: 0,
                key_frame_request_times: Vec::new(),
                rid: Some((*rid).to_string()),
            });
        }
        producer
    }

    /// Publishes simulcast video from `client`: one source per `(rid, ssrc)` layer.
    pub fn produce_simulcast(&mut self, client: usize, layers: &[(&str, u32)]) -> ProducerId {
        let layers: Vec<(&str, u32, u32)> = layers.iter().map(|&(r, s)| (r, s, s)).collect();
        self.produce_simulcast_as(client, &layers)
    }

    /// As [`produce_simulcast`](Self::produce_simulcast), with layers `(rid, ssrc, identity)`:
    /// each layer is sent on RTP SSRC `ssrc` and its payloads name it `identity` (see
    /// [`produce_as`](Self::produce_as)).
    pub fn produce_simulcast_as(
        &mut self,
        client: usize,
        layers: &[(&str, u32, u32)],
    ) -> ProducerId {
        let rtp: Vec<(&str, u32)> = layers.iter().map(|&(r, s, _)| (r, s)).collect();
        let params = self.clients[client].prepare_produce_simulcast(&rtp);
        let (producer, mid) = self.produce_with(client, MediaKind::Video, params);
        for (rid, _, identity) in layers {
            self.publications.push(Publication {
                client,
                mid: mid.clone(),
                producer,
                source: Source::video(*identity, self.now),
                muted: false,
                key_frame_requests: 0,
                key_frame_request_times: Vec::new(),
                rid: Some((*rid).to_string()),
            });
        }
        producer
    }

    /// Consumes `producer` on `client` (the server creates the consumer, the client accepts
    /// it). With `paused`, the consumer starts paused as in mediasoup's recommended flow.
    pub fn consume(
        &mut self,
        client: usize,
        producer: ProducerId,
        caps: RtpCapabilities,
        paused: bool,
    ) -> Consumed {
        let id = self.clients[client].id;
        let consumed = self
            .sfu
            .consume(
                id,
                ConsumeOptions {
                    producer,
                    rtp_capabilities: caps,
                    paused,
                },
            )
            .expect("consume");
        self.clients[client].accept_consumer(&consumed.parameters);
        self.flush();
        consumed
    }

    /// `client` opens a pre-negotiated data channel with `params` and the server takes it as a
    /// data producer (mediasoup-client's `produceData`).
    pub fn produce_data(
        &mut self,
        client: usize,
        params: SctpStreamParameters,
        label: &str,
    ) -> DataProducerId {
        self.clients[client].open_data_channel(&params, label);
        let transport = self.clients[client].id;
        let id = self
            .sfu
            .produce_data(
                transport,
                ProduceDataOptions {
                    sctp_stream_parameters: params,
                    label: label.into(),
                    protocol: String::new(),
                    paused: false,
                },
            )
            .expect("produce_data");
        self.flush();
        id
    }

    /// The server creates a data consumer on `client`'s transport and the client opens its
    /// channel with the parameters handed back (mediasoup-client's `consumeData`).
    pub fn consume_data(&mut self, client: usize, options: ConsumeDataOptions) -> DataConsumed {
        let transport = self.clients[client].id;
        let consumed = self
            .sfu
            .consume_data(transport, options)
            .expect("consume_data");
        let p = &consumed.parameters;
        self.clients[client].open_data_channel(&p.sctp_stream_parameters, &p.label);
        self.flush();
        consumed
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        let mut same_time = 0u32;
        loop {
            self.flush();
            let mut next = until;
            if let Some(t) = self.net.next_delivery() {
                next = next.min(t);
            }
            next = next.min(self.sfu_deadline);
            for c in &self.clients {
                next = next.min(c.next_timeout());
            }
            for p in self.publications.iter().filter(|p| !p.muted) {
                next = next.min(p.source.next_at());
            }
            for c in &self.plain {
                next = c.next_at().map_or(next, |at| next.min(at));
            }
            for (_, _, source) in &self.direct_sources {
                next = next.min(source.next_at());
            }
            if next <= self.now {
                same_time += 1;
                // Something asks to be served at an instant that never passes: a bug in the
                // server, a client or the harness, never something to paper over.
                assert!(
                    same_time <= 10_000,
                    "the simulation made no progress: 10,000 steps at {:?}",
                    self.now - self.start
                );
            } else {
                same_time = 0;
            }
            let next = next.max(self.now);
            if next >= until && self.now >= until {
                break;
            }
            self.now = next.min(until);
            let now = self.now;
            while let Some((at, d)) = self.net.poll_due(now) {
                self.deliver(at, d);
            }
            for i in 0..self.publications.len() {
                let p = &mut self.publications[i];
                if p.source.next_at() <= now {
                    let packets = p.source.poll(now);
                    record(&mut self.sent, &p.source, &packets, now, !p.muted);
                    if !p.muted {
                        let (client, mid, rid) = (p.client, p.mid.clone(), p.rid.clone());
                        self.clients[client].send_layer(now, &mid, rid.as_deref(), packets);
                        self.drain_client(client);
                    }
                }
            }
            for i in 0..self.plain.len() {
                self.poll_plain_sources(i, now);
            }
            self.poll_direct_sources(now);
            if self.sfu_deadline <= now {
                self.sfu.handle_input(Input::Timeout(now));
            }
            for i in 0..self.clients.len() {
                if self.clients[i].next_timeout() <= now {
                    self.clients[i].timeout(now);
                    self.drain_client(i);
                }
            }
            if self.now >= until {
                self.flush();
                break;
            }
        }
    }

    fn deliver(&mut self, at: Instant, d: Datagram) {
        let proto = match d.proto {
            Proto::Udp => OrtcProtocol::Udp,
            Proto::Tcp => OrtcProtocol::Tcp,
        };
        if d.destination == self.server_udp
            || d.destination == self.server_tcp
            || self.server_plain.contains(&d.destination)
        {
            if self.server_pipes.contains(&d.destination) {
                self.pipe_wire.push((at, d.destination, d.contents.clone()));
            }
            let polls = self.sfu.stats().transport_polls;
            self.sfu.handle_input(Input::Receive {
                now: at,
                proto,
                source: d.source,
                destination: d.destination,
                contents: &d.contents,
            });
            self.server_receives += 1;
            self.server_receive_polls += self.sfu.stats().transport_polls - polls;
        } else if let Some(&i) = self
            .nat_back
            .get(&d.destination)
            .or_else(|| (!self.nat.contains_key(&d.destination)).then_some(&d.destination))
            .and_then(|local| self.by_addr.get(local))
        {
            // str0m's rule: every input is followed by a full drain.
            self.clients[i].receive(at, proto.into_str0m(), d.source, &d.contents);
            self.drain_client(i);
        } else if let Some(&i) = self.plain_by_addr.get(&d.destination) {
            self.plain[i].receive(at, d.destination, &d.contents);
        }
    }

    /// Sends a raw datagram to the server now, as if from `source` (for garbage tests).
    pub fn inject(&mut self, proto: OrtcProtocol, source: SocketAddr, contents: &[u8]) {
        let destination = if proto == OrtcProtocol::Udp {
            self.server_udp
        } else {
            self.server_tcp
        };
        self.sfu.handle_input(Input::Receive {
            now: self.now,
            proto,
            source,
            destination,
            contents,
        });
        self.flush();
    }

    /// Moves every pending output of the server and the clients onto the network.
    pub fn flush(&mut self) {
        let now = self.now;
        loop {
            let mut moved = false;
            loop {
                match self.sfu.poll_output() {
                    Output::Transmit(t) => {
                        moved = true;
                        let proto = match t.proto {
                            OrtcProtocol::Udp => Proto::Udp,
                            OrtcProtocol::Tcp => Proto::Tcp,
                        };
                        self.transmits += 1;
                        let datagram = |contents| Datagram {
                            proto,
                            source: t.source,
                            destination: t.destination,
                            contents,
                        };
                        if t.segment_size.is_none() {
                            self.net.send(now, datagram(t.contents));
                        } else {
                            for d in t.datagrams() {
                                self.net.send(now, datagram(d.to_vec()));
                            }
                        }
                    }
                    Output::Event(e) => {
                        if let sfu_core::Event::DirectTransportRtcp { packet, .. } = &e {
                            self.direct_rtcp(packet);
                        }
                        self.events.push((now, e));
                    }
                    Output::Timeout(at) => {
                        self.sfu_deadline = at;
                        break;
                    }
                }
            }
            for i in 0..self.clients.len() {
                moved |= self.drain_client(i);
            }
            for i in 0..self.plain.len() {
                moved |= self.drain_plain(i);
            }
            if !moved {
                break;
            }
        }
    }

    /// A plain transport in `router` (options from `configure`, whose listen infos the
    /// simulation sets) and a plain endpoint for it, which sends with SRTP of `own_suite` (a
    /// random key) when the transport has SRTP. Returns the endpoint's index in
    /// [`plain`](Self::plain) and what the server created.
    pub fn add_plain_transport(
        &mut self,
        router: RouterId,
        own_suite: Option<SrtpCryptoSuite>,
        configure: impl FnOnce(&mut PlainTransportOptions),
    ) -> (usize, PlainTransportCreated) {
        let n = self.plain.len() as u16;
        let server_ip = self.server_udp.ip();
        let server = SocketAddr::new(server_ip, 41_000 + 2 * n);
        let server_rtcp = SocketAddr::new(server_ip, 41_001 + 2 * n);
        let mut options = PlainTransportOptions::new(TransportListenInfo::at(server));
        configure(&mut options);
        options.listen_info = TransportListenInfo {
            announced_address: options.listen_info.announced_address.clone(),
            ..TransportListenInfo::at(server)
        };
        if !options.rtcp_mux {
            options.rtcp_listen_info = Some(TransportListenInfo::at(server_rtcp));
        }
        let created = self
            .sfu
            .create_plain_transport(router, options)
            .expect("plain transport");
        self.flush();
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1 + n as u8)), 5004);
        let own = created.parameters.srtp_parameters.as_ref().map(|_| {
            let suite = own_suite.unwrap_or_default();
            let key: Vec<u8> = (0..suite.key_len())
                .map(|i| (u32::from(n) * 31 + i as u32 * 7 + 1) as u8)
                .collect();
            (suite, key)
        });
        let mut client = PlainClient::new(
            created.id,
            local,
            server,
            created.parameters.srtp_parameters.as_ref(),
            own,
        );
        self.server_plain.insert(server);
        if created.parameters.rtcp_tuple.is_some() {
            let rtcp_local = SocketAddr::new(local.ip(), 5005);
            client.rtcp_local = Some(rtcp_local);
            client.server_rtcp = Some(server_rtcp);
            self.server_plain.insert(server_rtcp);
            self.plain_by_addr.insert(rtcp_local, self.plain.len());
        }
        self.plain_by_addr.insert(local, self.plain.len());
        self.plain.push(client);
        (self.plain.len() - 1, created)
    }

    /// `connect` of plain endpoint `i`'s transport: its address (unless `comedia`) and its
    /// SRTP keys.
    pub fn connect_plain(&mut self, i: usize, comedia: bool) -> Result<(), sfu_core::Error> {
        let c = &self.plain[i];
        let parameters = PlainTransportConnectParameters {
            ip: (!comedia).then_some(c.local.ip()),
            port: (!comedia).then_some(c.local.port()),
            rtcp_port: c.rtcp_local.filter(|_| !comedia).map(|a| a.port()),
            srtp_parameters: c.srtp_parameters.clone(),
        };
        let result = self.sfu.connect_plain_transport(c.transport, &parameters);
        self.flush();
        result
    }

    /// Plain endpoint `i` produces a VP8 or Opus stream on `ssrc` (ssrc-based encoding, no
    /// mid, payload types [`PLAIN_VP8_PT`] and [`PLAIN_OPUS_PT`]; video with NACK and PLI),
    /// starting now.
    pub fn plain_produce(&mut self, i: usize, kind: MediaKind, ssrc: u32) -> ProducerId {
        let transport = self.plain[i].transport;
        let (producer, source, pt) =
            self.ssrc_produce(transport, kind, ssrc, &format!("plain-{i}"));
        self.plain[i].sources.push((source, pt));
        producer
    }

    /// The application produces a VP8 or Opus stream on `ssrc` on direct transport
    /// `transport` (as [`plain_produce`](Self::plain_produce) describes), handing the Sfu its
    /// packets from now on.
    pub fn direct_produce(
        &mut self,
        transport: sfu_core::TransportId,
        kind: MediaKind,
        ssrc: u32,
    ) -> ProducerId {
        let (producer, source, pt) = self.ssrc_produce(transport, kind, ssrc, "direct");
        self.direct_sources.push((producer, pt, source));
        producer
    }

    /// Produces a VP8 or Opus stream on `ssrc` on `transport`; the producer, a source for its
    /// packets, and its payload type.
    fn ssrc_produce(
        &mut self,
        transport: sfu_core::TransportId,
        kind: MediaKind,
        ssrc: u32,
        cname: &str,
    ) -> (ProducerId, Source, u8) {
        let video = kind == MediaKind::Video;
        let (mime, pt, clock_rate, channels) = if video {
            ("video/VP8", PLAIN_VP8_PT, 90_000, None)
        } else {
            ("audio/opus", PLAIN_OPUS_PT, 48_000, Some(2))
        };
        let rtcp_feedback = if video {
            vec![
                RtcpFeedback::new("nack", ""),
                RtcpFeedback::new("nack", "pli"),
            ]
        } else {
            vec![]
        };
        let rtp_parameters = RtpParameters {
            mid: None,
            codecs: vec![RtpCodecParameters {
                mime_type: mime.into(),
                payload_type: pt,
                clock_rate,
                channels,
                parameters: Default::default(),
                rtcp_feedback,
            }],
            header_extensions: vec![],
            encodings: vec![RtpEncodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            }],
            rtcp: RtcpParameters {
                cname: Some(cname.into()),
                reduced_size: None,
                mux: None,
            },
        };
        let producer = self
            .sfu
            .produce(
                transport,
                ProduceOptions {
                    kind,
                    rtp_parameters,
                    paused: false,
                },
            )
            .expect("produce with an ssrc-based encoding");
        self.flush();
        let source = if video {
            Source::video(ssrc, self.now)
        } else {
            Source::audio(ssrc, self.now)
        };
        (producer, source, pt)
    }

    /// Consumes `producer` on plain endpoint `i`'s transport with `caps`.
    pub fn plain_consume(
        &mut self,
        i: usize,
        producer: ProducerId,
        caps: RtpCapabilities,
    ) -> Consumed {
        let consumed = self
            .sfu
            .consume(
                self.plain[i].transport,
                ConsumeOptions {
                    producer,
                    rtp_capabilities: caps,
                    paused: false,
                },
            )
            .expect("consume on a plain transport");
        self.flush();
        consumed
    }

    /// Pipes `producer` into `router` (the Sfu's `pipe_to_router`; the pipe pair's addresses
    /// are the simulation's, made once per pair of routers), with RTX and SRTP on the pipe as
    /// asked.
    pub fn pipe_to_router(
        &mut self,
        producer: ProducerId,
        router: RouterId,
        enable_rtx: bool,
        enable_srtp: bool,
    ) -> PipedProducer {
        let (local, remote) = self.next_pipe_addresses();
        let piped = self
            .sfu
            .pipe_to_router(PipeToRouterOptions {
                producer,
                router,
                listen_info: TransportListenInfo::at(local),
                remote_listen_info: TransportListenInfo::at(remote),
                enable_rtx,
                enable_srtp,
                enable_sctp: false,
            })
            .expect("pipe to router");
        self.note_pipe(local, remote);
        self.flush();
        piped
    }

    /// Pipes `data_producer` into `router` (the Sfu's `pipe_data_to_router`; the pipe pair's
    /// addresses are the simulation's, made once per pair of routers, with SCTP).
    pub fn pipe_data_to_router(
        &mut self,
        data_producer: DataProducerId,
        router: RouterId,
    ) -> PipedDataProducer {
        let (local, remote) = self.next_pipe_addresses();
        let piped = self
            .sfu
            .pipe_data_to_router(PipeDataToRouterOptions {
                data_producer,
                router,
                listen_info: TransportListenInfo::at(local),
                remote_listen_info: TransportListenInfo::at(remote),
                enable_rtx: false,
                enable_srtp: false,
            })
            .expect("pipe data to router");
        self.note_pipe(local, remote);
        self.flush();
        piped
    }

    /// A pipe transport in each router, made with `options` (but for their listen infos, the
    /// simulation's) and connected to each other.
    pub fn add_pipe_pair(
        &mut self,
        a: RouterId,
        b: RouterId,
        options: &PipeTransportOptions,
    ) -> (PipeTransportCreated, PipeTransportCreated) {
        let (local, remote) = self.next_pipe_addresses();
        let mut create = |router, at| {
            let options = PipeTransportOptions {
                listen_info: TransportListenInfo::at(at),
                ..options.clone()
            };
            self.sfu
                .create_pipe_transport(router, options)
                .expect("pipe transport")
        };
        let (ta, tb) = (create(a, local), create(b, remote));
        self.note_pipe(local, remote);
        for (t, peer) in [(&ta, &tb), (&tb, &ta)] {
            let parameters = peer.connect_parameters().expect("connect parameters");
            self.sfu
                .connect_pipe_transport(t.id, &parameters)
                .expect("connect pipe transport");
        }
        self.flush();
        (ta, tb)
    }

    /// Two addresses for the server's next pipe pair.
    fn next_pipe_addresses(&self) -> (SocketAddr, SocketAddr) {
        let ip = self.server_udp.ip();
        let n = self.server_pipes.len() as u16;
        (
            SocketAddr::new(ip, 43_000 + n),
            SocketAddr::new(ip, 43_001 + n),
        )
    }

    /// Datagrams to these addresses are the server's, and recorded in `pipe_wire`.
    fn note_pipe(&mut self, local: SocketAddr, remote: SocketAddr) {
        for addr in [local, remote] {
            self.server_plain.insert(addr);
            self.server_pipes.insert(addr);
        }
    }

    /// Sends a raw datagram now from `source` to the server's address `destination`.
    pub fn inject_at(&mut self, source: SocketAddr, destination: SocketAddr, contents: &[u8]) {
        self.sfu.handle_input(Input::Receive {
            now: self.now,
            proto: OrtcProtocol::Udp,
            source,
            destination,
            contents,
        });
        self.flush();
    }

    /// Plain endpoint `i`'s sources make their due packets, logged and sent.
    fn poll_plain_sources(&mut self, i: usize, now: Instant) {
        for s in 0..self.plain[i].sources.len() {
            let (source, pt) = &mut self.plain[i].sources[s];
            if source.next_at() > now {
                continue;
            }
            let pt = *pt;
            let packets = source.poll(now);
            let ssrc = source.ssrc;
            record(
                &mut self.sent,
                &self.plain[i].sources[s].0,
                &packets,
                now,
                true,
            );
            for p in &packets {
                self.plain[i].send(ssrc, pt, p);
            }
        }
        self.drain_plain(i);
    }

    /// The application acts on a direct transport's RTCP as an endpoint would: a PLI makes the
    /// next frame of its source a key frame.
    fn direct_rtcp(&mut self, compound: &[u8]) {
        for (pt, fmt, bytes) in crate::plain::split_rtcp(compound) {
            if pt == 206 && fmt == 1 && bytes.len() >= 12 {
                let media = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                for (_, _, source) in &mut self.direct_sources {
                    if source.ssrc == media {
                        source.request_key_frame();
                    }
                }
            }
        }
    }

    /// The application's sources make their due packets, logged and handed to their
    /// producers on direct transports.
    fn poll_direct_sources(&mut self, now: Instant) {
        for (producer, pt, source) in &mut self.direct_sources {
            if source.next_at() > now {
                continue;
            }
            let packets = source.poll(now);
            record(&mut self.sent, source, &packets, now, true);
            for p in &packets {
                let packet = crate::plain::rtp(source.ssrc, *pt, p);
                self.sfu.send_rtp(*producer, &packet).expect("send_rtp");
            }
        }
    }

    /// Moves plain endpoint `i`'s datagrams onto the network; true if there were any.
    fn drain_plain(&mut self, i: usize) -> bool {
        let now = self.now;
        let out = std::mem::take(&mut self.plain[i].outbox);
        let moved = !out.is_empty();
        for (source, destination, contents) in out {
            self.net.send(
                now,
                Datagram {
                    proto: Proto::Udp,
                    source,
                    destination,
                    contents,
                },
            );
        }
        moved
    }

    /// Moves a client's pending output onto the network; true if it sent anything.
    fn drain_client(&mut self, i: usize) -> bool {
        let now = self.now;
        let out = self.clients[i].drain(now);
        let moved = !out.is_empty();
        for t in out {
            if self.silenced.contains(&i) {
                continue;
            }
            let source = self.nat.get(&t.source).copied().unwrap_or(t.source);
            self.net.send(
                now,
                Datagram {
                    proto: if t.proto == Protocol::Udp {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    },
                    source,
                    destination: t.destination,
                    contents: t.contents,
                },
            );
        }
        for (mid, rid) in self.clients[i].take_key_frame_requests() {
            let rid = rid.map(|r| r.to_string());
            for p in &mut self.publications {
                if p.client == i && p.mid == mid.to_string() && p.rid == rid {
                    p.source.request_key_frame();
                    p.key_frame_requests += 1;
                    p.key_frame_request_times.push(now);
                }
            }
        }
        moved
    }

    /// Has `client` send `packets` on `mid` and returns the datagrams it wrote towards the
    /// server, without delivering them (benchmarks feed them to the server themselves).
    pub fn capture_sent(
        &mut self,
        client: usize,
        mid: &str,
        packets: Vec<crate::media::OutPacket>,
    ) -> Vec<Vec<u8>> {
        let now = self.now;
        self.clients[client].send(now, mid, packets);
        self.clients[client]
            .drain(now)
            .into_iter()
            .filter(|t| t.destination == self.server_udp)
            .map(|t| t.contents)
            .collect()
    }

    /// Takes the packets publication `i`'s source makes by `at`, logged as sent, for a test that
    /// sends them itself (see [`capture_sent`](Self::capture_sent)).
    pub fn take_source_packets(&mut self, i: usize, at: Instant) -> Vec<crate::media::OutPacket> {
        let p = &mut self.publications[i];
        let packets = p.source.poll(at);
        record(&mut self.sent, &p.source, &packets, at, true);
        packets
    }

    /// When the server reported `client`'s transport DTLS-connected (it can then send and
    /// receive media).
    pub fn dtls_connected_at(&self, client: usize) -> Option<Instant> {
        let id = self.clients[client].id;
        self.events.iter().find_map(|(at, e)| match e {
            sfu_core::Event::DtlsStateChange {
                transport,
                state: sfu_core::DtlsState::Connected,
            } if *transport == id => Some(*at),
            _ => None,
        })
    }

    /// Mutes or unmutes a publication at its source.
    pub fn set_muted(&mut self, producer: ProducerId, muted: bool) {
        for p in &mut self.publications {
            if p.producer == producer {
                p.muted = muted;
                if !muted {
                    p.source.request_key_frame();
                }
            }
        }
    }
}

/// Logs packets `source` made in `sent`.
fn record(
    sent: &mut HashMap<u32, SentLog>,
    source: &Source,
    packets: &[crate::media::OutPacket],
    at: Instant,
    was_sent: bool,
) {
    sent.entry(source.ssrc)
        .or_insert_with(|| SentLog::new(source.clock_rate()))
        .record(packets, at, was_sent);
}

/// Conversion to str0m's protocol.
pub trait IntoStr0m {
    /// str0m's protocol for ours.
    fn into_str0m(self) -> Protocol;
}

impl IntoStr0m for OrtcProtocol {
    fn into_str0m(self) -> Protocol {
        match self {
            OrtcProtocol::Udp => Protocol::Udp,
            OrtcProtocol::Tcp => Protocol::Tcp,
        }
    }
}
