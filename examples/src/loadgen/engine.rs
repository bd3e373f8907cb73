//! The generator's event loop: simulated participants (str0m clients from `sfu_tests`) on real
//! loopback UDP sockets, one mio poll for all of them, batched reads through quinn-udp.
//!
//! ## What is measured per packet, and how
//!
//! Media sent by a publisher goes through its str0m client (SRTP encryption included). Each
//! outgoing SRTP datagram's clear header (SSRC, sequence number) is read and its send time and
//! *payload length* are written into a ring per publication.
//!
//! A receiving participant does not decrypt what it gets (that would cost 9–14 µs a packet and
//! make the generator the bottleneck): it reads the clear RTP header. The SFU rewrites the
//! SSRC and the sequence number per consumer, so `(consumer ssrc, seq)` cannot be looked up in
//! the sender's table directly; but the rewrite is a constant offset while the consumer is not
//! paused or switched, and the payload length passes unchanged (the SRTP tag is the same size
//! on both legs). The generator makes lengths distinctive: an audio payload is shortened by
//! `seq % 32` bytes; every packet of a video frame by `frame % 32` bytes (so a frame's packets
//! stay equal in size and the SFU can still send them to a consumer in one GSO call, as with
//! real video) and the frame's last packet by 100 more. A consumer's offset is learned from a
//! packet whose length is unique among what its producer sent in the last 250 ms (an audio
//! packet, or the last packet of a video frame); every later packet is looked up through the
//! offset and its length is checked, and a mismatch relearns (counted). So every forwarded
//! packet gets a delay, and loss is counted from sequence gaps per consumer plus the tail the
//! consumer never got.
//!
//! The delay is taken two ways. The headline is the consumer socket's kernel receive
//! timestamp (`SO_TIMESTAMPNS`, which quinn-udp turns on) minus the realtime clock read just
//! before the publisher's `sendto`: on loopback both ends of that interval are stamped in the
//! sending thread's context, so it is the SFU's (and the kernel's) delay and excludes the
//! generator's own scheduling. The second is the generator's read time minus the send time,
//! which adds however long the generator took to get to the socket (on a shared machine,
//! milliseconds when another process holds its core).
//!
//! One receiver per room (the "probe") also feeds every datagram to its str0m client, which
//! decrypts it; its payloads are checked byte for byte, and the source `(ssrc, seq)` embedded
//! in the payload is compared with what the length matching said.
//!
//! Many viewers cost the generator more than the SFU can afford to share a machine with, so a
//! room may measure a sample of its viewers and only count the others ([`Role::Count`]): their
//! RTP is counted per consumer from the clear header (packets, sequence gaps, and the tail
//! they never got, through an offset learned once as above), with no delay and no length
//! check per packet. Once each of its consumers has a packet, such a viewer's socket leaves
//! the poll and is drained in batches every [`SWEEP`] (no wake-up per datagram, no read that
//! finds nothing); STUN, DTLS and RTCP still go to its client, so ICE consent and the
//! connection stay up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{RecvMeta, UdpSocketState};
use sfu_core::ortc::{ext_uri, MediaKind, RtpCapabilities};
use sfu_core::{
    ConsumeOptions, ConsumerId, ProduceOptions, ProducerId, RouterId, TransportId,
    WebRtcTransportCreated, WebRtcTransportOptions,
};
use sfu_runtime_mio::WorkerHandle;
use sfu_tests::client::{device_capabilities, ClientTransport};
use sfu_tests::media::{audio_payload, video_payload, OutPacket, Source};

use super::wire::{self, Security};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Slots in a publication's send-time ring.
const RING: usize = 1024;
/// Payloads are shortened by up to `TAG - 1` bytes so their length identifies them.
const TAG: u16 = 32;
/// How far back a consumer's offset is looked for among the sends: a packet is matched only if
/// its length is unique among the packets its publisher sent in this window.
const LEARN_WINDOW: Duration = Duration::from_millis(250);
/// How often the sockets of [`Role::Count`] viewers are drained, once they left the poll.
pub const SWEEP: Duration = Duration::from_millis(25);
/// Datagrams one `recvmmsg` call takes at most.
const SLOTS: usize = 32;

/// What an endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Publishes (a mediasoup-client send transport).
    Send,
    /// Consumes (a receive transport); a probe decrypts everything it gets.
    Recv {
        /// Whether every datagram goes through the str0m client.
        probe: bool,
    },
    /// Consumes and only counts: RTP is counted per consumer from the clear header (packets,
    /// sequence gaps, the tail it never got), with no delay and no length match. Once each of
    /// its consumers has received a packet its socket leaves the poll and is drained in
    /// batches every [`SWEEP`].
    Count,
    /// Connected, no media.
    Idle,
}

impl Role {
    /// Whether it is a viewer (consumes media).
    pub fn consumes(self) -> bool {
        matches!(self, Role::Recv { .. } | Role::Count)
    }
}

/// A client transport and its socket, dropped when the endpoint closes.
struct Link {
    client: ClientTransport,
    socket: mio::net::UdpSocket,
    state: UdpSocketState,
}

/// One client transport and its socket.
pub struct Endpoint {
    /// `None` once closed.
    link: Option<Box<Link>>,
    /// What it is for.
    pub role: Role,
    /// The server's transport id.
    pub transport: TransportId,
    /// When the transport was asked for.
    pub created: Instant,
    /// When ICE and DTLS were up at the client.
    pub connected: Option<Instant>,
    /// The first RTP datagram (any consumer), audio, video.
    pub first_rtp: Option<Instant>,
    /// First audio RTP datagram.
    pub first_audio: Option<Instant>,
    /// First video RTP datagram.
    pub first_video: Option<Instant>,
    /// Whether its join time counts (it joined a room where media already flowed).
    pub join_sample: bool,
    /// The SFU worker its transport lives on (an index into [`Engine::workers`]).
    pub worker: usize,
    scheduled: Instant,
    pubs: Vec<usize>,
    /// Its consumers: (SSRC, index into the tracks).
    consumers: Vec<(u32, usize)>,
    /// Whether its socket left the poll and is drained every [`SWEEP`] instead.
    swept: bool,
}

/// Packets from a pcap capture, looped.
#[derive(Debug)]
pub struct Capture {
    /// (time from the first packet, marker, timestamp delta from the first, payload)
    pub packets: Vec<(Duration, bool, u32, Vec<u8>)>,
    /// The capture's length.
    pub span: Duration,
}

enum Media {
    Synth(Box<Source>),
    Pcap {
        capture: Arc<Capture>,
        start: Instant,
        index: usize,
        lap: u32,
        seq: u64,
        ts0: u32,
    },
}

impl Media {
    fn next_at(&self) -> Instant {
        match self {
            Media::Synth(s) => s.next_at(),
            Media::Pcap {
                capture,
                start,
                index,
                lap,
                ..
            } => *start + capture.span * *lap + capture.packets[*index].0,
        }
    }

    fn poll(&mut self, now: Instant) -> Vec<OutPacket> {
        match self {
            Media::Synth(s) => s.poll(now),
            Media::Pcap {
                capture,
                start,
                index,
                lap,
                seq,
                ts0,
            } => {
                let mut out = Vec::new();
                loop {
                    let (at, marker, ts, payload) = &capture.packets[*index];
                    if *start + capture.span * *lap + *at > now {
                        break;
                    }
                    out.push(OutPacket {
                        seq: *seq,
                        timestamp: ts0.wrapping_add(*ts),
                        marker: *marker,
                        payload: payload.clone(),
                        audio_level: None,
                    });
                    *seq += 1;
                    *index += 1;
                    if *index == capture.packets.len() {
                        *index = 0;
                        *lap += 1;
                        // The next lap continues the timestamps after the capture's span.
                        *ts0 = ts0.wrapping_add(
                            (capture.span.as_micros() as u64 * 90 / 1000) as u32 + 3000,
                        );
                    }
                }
                out
            }
        }
    }

    fn request_key_frame(&mut self) {
        if let Media::Synth(s) = self {
            s.request_key_frame();
        }
    }
}

#[derive(Clone, Copy)]
struct Slot {
    seq: u16,
    len: u16,
    at: Instant,
    /// The same moment on the realtime clock, to compare with kernel receive timestamps.
    wall: Duration,
}

/// The realtime clock as the kernel stamps received datagrams (`SO_TIMESTAMPNS`).
fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A stream a participant publishes.
pub struct Publication {
    ep: usize,
    mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The publisher's SSRC.
    pub ssrc: u32,
    /// The server's producer id.
    pub producer: ProducerId,
    media: Option<Media>,
    pcap: Option<Arc<Capture>>,
    stagger: Duration,
    /// Whether it sends.
    pub active: bool,
    /// RTP packets sent (first transmissions).
    pub sent: u64,
    ring: Vec<Option<Slot>>,
    last_seq: Option<u16>,
    frame: u32,
    last_ts: Option<u32>,
}

/// One consumer as its receiver sees it.
struct Track {
    /// The consuming endpoint.
    ep: usize,
    publication: usize,
    kind: MediaKind,
    next: Option<u16>,
    received: u64,
    gaps: i64,
    offset: Option<u16>,
    last_src: Option<u16>,
}

/// Counters of the measurement window.
#[derive(Debug, Default)]
pub struct Window {
    /// Whether packets are counted.
    pub on: bool,
    /// RTP datagrams received by consumers (retransmissions included).
    pub forwarded: u64,
    /// Of which retransmissions (RTX).
    pub rtx: u64,
    /// RTP datagrams sent by publishers.
    pub sent: u64,
    /// Received RTP whose send time could not be matched.
    pub unmatched: u64,
    /// Of [`Window::forwarded`], the packets [`Role::Count`] viewers received (counted, no
    /// delay looked for).
    pub count_only: u64,
    /// Forwarding delays, publisher's send call to the consumer socket's kernel receive
    /// timestamp, microseconds.
    pub delays: super::hist::Delays,
    /// Forwarding delays, publisher's send call to the generator reading the datagram (this
    /// adds the generator's own scheduling), microseconds.
    pub app_delays: super::hist::Delays,
    /// What the consumers on each SFU worker received (by [`Endpoint::worker`]; workers past
    /// the first two count with the second).
    pub by_worker: [WorkerWindow; 2],
}

/// What the consumers whose transports live on one SFU worker received in the window.
#[derive(Debug, Default)]
pub struct WorkerWindow {
    /// RTP datagrams received (retransmissions included).
    pub forwarded: u64,
    /// Forwarding delays as [`Window::delays`], microseconds.
    pub delays: super::hist::Delays,
}

/// Totals over the whole run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Totals {
    /// Datagrams the probes decrypted and whose payload verified byte for byte.
    pub probe_verified: u64,
    /// Decrypted payloads that did not verify.
    pub probe_corrupt: u64,
    /// Decrypted packets whose embedded source sequence number agreed with the length match.
    pub probe_match_agreed: u64,
    /// ... and disagreed.
    pub probe_match_disagreed: u64,
    /// ... and could not be compared (the consumer's offset was not learned yet).
    pub probe_match_unknown: u64,
    /// Times a consumer's sequence offset was learned again after a mismatch.
    pub relearned: u64,
    /// Datagrams the generator could not send (full buffer).
    pub send_errors: u64,
    /// Socket read errors.
    pub recv_errors: u64,
}

/// Messages one endpoint sends on a data channel at a steady rate (the data relay phase).
#[derive(Debug)]
pub struct DataSource {
    /// The sending endpoint.
    pub ep: usize,
    /// Its channel's stream id.
    pub stream: u16,
    /// The message (binary), sent again and again.
    pub message: Vec<u8>,
    /// Time between messages.
    pub interval: Duration,
    /// When the next one is due.
    pub next: Instant,
    /// Messages the client took.
    pub sent: u64,
    /// Messages the client's channel refused (its buffer was full).
    pub refused: u64,
}

/// The generator.
pub struct Engine {
    /// The SFU worker endpoints are created on unless told otherwise (`workers[0]`).
    pub worker: WorkerHandle,
    /// Every SFU worker endpoints may live on.
    pub workers: Vec<WorkerHandle>,
    poll: Poll,
    events: Events,
    tokens: Vec<usize>,
    buf: Vec<u8>,
    slot: usize,
    meta: Vec<RecvMeta>,
    /// Client transports.
    pub eps: Vec<Endpoint>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Publications.
    pub pubs: Vec<Publication>,
    by_ssrc: HashMap<u32, usize>,
    tracks: Vec<Track>,
    rtx_ssrcs: HashSet<u32>,
    /// [`Role::Count`] endpoints whose sockets are drained every [`SWEEP`].
    swept: Vec<usize>,
    next_sweep: Instant,
    /// The measurement window.
    pub win: Window,
    /// Run totals.
    pub totals: Totals,
    /// What DTLS negotiated.
    pub security: Option<Security>,
    /// Transports are created with SCTP (data channels).
    pub sctp: bool,
    /// Consumers negotiate transport-wide congestion control ([`super::Options::bwe`]).
    pub bwe: bool,
    /// The data channel sender, when one runs.
    pub data_source: Option<DataSource>,
    /// Data channel messages the endpoints received.
    pub messages_received: u64,
}

impl Engine {
    /// A generator driving `worker`.
    pub fn new(worker: WorkerHandle) -> io::Result<Self> {
        Self::with_workers(vec![worker])
    }

    /// A generator driving several workers; endpoints go on the first unless created with
    /// [`Engine::add_endpoint_on`].
    pub fn with_workers(workers: Vec<WorkerHandle>) -> io::Result<Self> {
        let worker = workers
            .first()
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no worker"))?;
        Ok(Self {
            worker,
            workers,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            tokens: Vec::new(),
            buf: Vec::new(),
            slot: 0,
            meta: Vec::new(),
            eps: Vec::new(),
            timers: BinaryHeap::new(),
            due: BinaryHeap::new(),
            pubs: Vec::new(),
            by_ssrc: HashMap::new(),
            tracks: Vec::new(),
            rtx_ssrcs: HashSet::new(),
            swept: Vec::new(),
            next_sweep: Instant::now(),
            win: Window::default(),
            totals: Totals::default(),
            security: None,
            sctp: false,
            bwe: true,
            data_source: None,
            messages_received: 0,
        })
    }

    /// Creates a transport on the server (the first half of joining).
    pub fn create_transport(&self, router: RouterId) -> Result<WebRtcTransportCreated, Error> {
        self.create_transport_on(0, router)
    }

    /// Creates a transport on worker `worker` (an index into [`Engine::workers`]).
    fn create_transport_on(
        &self,
        worker: usize,
        router: RouterId,
    ) -> Result<WebRtcTransportCreated, Error> {
        let options = WebRtcTransportOptions {
            enable_sctp: self.sctp,
            ..WebRtcTransportOptions::default()
        };
        Ok(self.workers[worker].create_webrtc_transport(router, options)?)
    }

    /// Builds the client for a created transport, connects it (mediasoup's `connect`) and
    /// starts ICE. Returns the endpoint's index.
    pub fn attach(
        &mut self,
        created: &WebRtcTransportCreated,
        caps: &RtpCapabilities,
        role: Role,
        created_at: Instant,
    ) -> Result<usize, Error> {
        self.attach_on(0, created, caps, role, created_at)
    }

    /// As [`Engine::attach`], for a transport created on worker `worker`.
    fn attach_on(
        &mut self,
        worker: usize,
        created: &WebRtcTransportCreated,
        caps: &RtpCapabilities,
        role: Role,
        created_at: Instant,
    ) -> Result<usize, Error> {
        let std_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_socket.set_nonblocking(true)?;
        let local = std_socket.local_addr()?;
        let mut socket = mio::net::UdpSocket::from_std(std_socket);
        let state = UdpSocketState::new((&socket).into())?;
        if role.consumes() {
            // Deep enough that a busy generator does not lose what the SFU forwarded.
            let _ = state.set_recv_buffer_size((&socket).into(), 4 << 20);
        }
        if self.buf.is_empty() {
            let slots = quinn_udp::BATCH_SIZE.clamp(1, 32);
            self.slot = if state.gro_segments() > 1 {
                65_536
            } else {
                2_048
            };
            self.buf = vec![0; slots * self.slot];
            self.meta = vec![RecvMeta::default(); slots];
        }
        let e = self.eps.len();
        self.poll
            .registry()
            .register(&mut socket, Token(e), Interest::READABLE)?;
        let now = Instant::now();
        let mut client = ClientTransport::new(
            now,
            local,
            &created.parameters,
            caps,
            str0m::net::Protocol::Udp,
        );
        self.workers[worker].connect_webrtc_transport(created.id, client.dtls_parameters())?;
        self.eps.push(Endpoint {
            link: Some(Box::new(Link {
                client,
                socket,
                state,
            })),
            role,
            transport: created.id,
            created: created_at,
            connected: None,
            first_rtp: None,
            first_audio: None,
            first_video: None,
            join_sample: false,
            worker,
            scheduled: now,
            pubs: Vec::new(),
            consumers: Vec::new(),
            swept: false,
        });
        self.flush(e, now);
        Ok(e)
    }

    /// Creates, attaches and connects a transport in one go.
    pub fn add_endpoint(
        &mut self,
        router: RouterId,
        caps: &RtpCapabilities,
        role: Role,
    ) -> Result<usize, Error> {
        self.add_endpoint_on(0, router, caps, role)
    }

    /// As [`Engine::add_endpoint`], on worker `worker` (an index into [`Engine::workers`]),
    /// in `router` of that worker.
    pub fn add_endpoint_on(
        &mut self,
        worker: usize,
        router: RouterId,
        caps: &RtpCapabilities,
        role: Role,
    ) -> Result<usize, Error> {
        let created_at = Instant::now();
        let created = self.create_transport_on(worker, router)?;
        self.attach_on(worker, &created, caps, role, created_at)
    }

    /// Publishes a stream from endpoint `e`; it starts sending once `e` is connected.
    pub fn produce(
        &mut self,
        e: usize,
        kind: MediaKind,
        ssrc: u32,
        pcap: Option<Arc<Capture>>,
        stagger: Duration,
    ) -> Result<usize, Error> {
        let rtp_parameters = self.link(e)?.client.prepare_produce(kind, ssrc);
        let mid = rtp_parameters.mid.clone().unwrap_or_default();
        let producer = self.workers[self.eps[e].worker].produce(
            self.eps[e].transport,
            ProduceOptions {
                kind,
                rtp_parameters,
                paused: false,
            },
        )?;
        let p = self.pubs.len();
        self.pubs.push(Publication {
            ep: e,
            mid,
            kind,
            ssrc,
            producer,
            media: None,
            pcap,
            stagger,
            active: false,
            sent: 0,
            ring: vec![None; RING],
            last_seq: None,
            frame: 0,
            last_ts: None,
        });
        self.by_ssrc.insert(ssrc, p);
        self.eps[e].pubs.push(p);
        if self.eps[e].connected.is_some() {
            self.activate(p, Instant::now());
        }
        Ok(p)
    }

    /// Consumes publication `p` on endpoint `e`, paused (mediasoup's recommended flow). Resume
    /// it with [`WorkerHandle::resume_consumer`] once the client is ready.
    pub fn consume(
        &mut self,
        e: usize,
        p: usize,
        caps: &RtpCapabilities,
    ) -> Result<ConsumerId, Error> {
        let producer = self.pubs[p].producer;
        self.consume_as(e, p, producer, caps)
    }

    /// As [`Engine::consume`], of `producer` on endpoint `e`'s worker: a producer that
    /// carries publication `p`'s packets unchanged (a pipe producer fed by it).
    pub fn consume_as(
        &mut self,
        e: usize,
        p: usize,
        producer: ProducerId,
        caps: &RtpCapabilities,
    ) -> Result<ConsumerId, Error> {
        let mut rtp_capabilities = device_capabilities(caps);
        if !self.bwe {
            rtp_capabilities
                .header_extensions
                .retain(|e| e.uri != ext_uri::TRANSPORT_CC);
            for codec in &mut rtp_capabilities.codecs {
                codec.rtcp_feedback.retain(|f| f.kind != "transport-cc");
            }
        }
        let consumed = self.workers[self.eps[e].worker].consume(
            self.eps[e].transport,
            ConsumeOptions {
                producer,
                rtp_capabilities,
                paused: true,
            },
        )?;
        self.link(e)?.client.accept_consumer(&consumed.parameters);
        let enc = &consumed.parameters.rtp_parameters.encodings[0];
        let ssrc = enc.ssrc.ok_or("consumer without ssrc")?;
        self.eps[e].consumers.push((ssrc, self.tracks.len()));
        if let Some(rtx) = &enc.rtx {
            self.rtx_ssrcs.insert(rtx.ssrc);
        }
        self.tracks.push(Track {
            ep: e,
            publication: p,
            kind: self.pubs[p].kind,
            next: None,
            received: 0,
            gaps: 0,
            offset: None,
            last_src: None,
        });
        Ok(consumed.id)
    }

    /// Closes an endpoint's transport on the server, and drops its client, socket and the
    /// bookkeeping of its publications and consumers (a long churn run holds only the
    /// endpoints still open).
    pub fn close(&mut self, e: usize) -> Result<(), Error> {
        let ep = &mut self.eps[e];
        let Some(mut link) = ep.link.take() else {
            return Ok(());
        };
        if ep.swept {
            ep.swept = false;
            self.swept.retain(|&s| s != e);
        } else {
            let _ = self.poll.registry().deregister(&mut link.socket);
        }
        drop(link);
        let ep = &mut self.eps[e];
        for p in std::mem::take(&mut ep.pubs) {
            let publication = &mut self.pubs[p];
            publication.active = false;
            publication.media = None;
            publication.ring = Vec::new();
            self.by_ssrc.remove(&publication.ssrc);
        }
        ep.consumers = Vec::new();
        self.workers[ep.worker].close_transport(ep.transport)?;
        Ok(())
    }

    /// Endpoint `e`'s client and socket, or an error once it is closed.
    fn link(&mut self, e: usize) -> Result<&mut Link, Error> {
        Ok(self.eps[e].link.as_mut().ok_or("endpoint closed")?)
    }

    /// Stops every publication (for good: a restarted source would repeat sequence numbers).
    pub fn stop_media(&mut self) {
        for p in &mut self.pubs {
            p.active = false;
        }
    }

    /// What the generator keeps of a closed join (two endpoints, two publications, two
    /// tracks; its tables are indexed by position), in bytes, before the tables' spare
    /// capacity.
    pub fn retained_per_join() -> usize {
        2 * (std::mem::size_of::<Endpoint>()
            + std::mem::size_of::<Publication>()
            + std::mem::size_of::<Track>())
    }

    /// Endpoints not yet connected (closed ones excluded).
    pub fn unconnected(&self) -> usize {
        self.eps
            .iter()
            .filter(|e| e.link.is_some() && e.connected.is_none())
            .count()
    }

    fn activate(&mut self, p: usize, now: Instant) {
        let publication = &mut self.pubs[p];
        let start = now + publication.stagger;
        let media = match (&publication.pcap, publication.media.take()) {
            (_, Some(m)) => m,
            (Some(capture), None) => Media::Pcap {
                capture: capture.clone(),
                start,
                index: 0,
                lap: 0,
                seq: u64::from(publication.ssrc % 20_000) + 1,
                ts0: publication.ssrc.wrapping_mul(7),
            },
            (None, None) => {
                if publication.kind == MediaKind::Video {
                    Media::Synth(Box::new(Source::video(publication.ssrc, start)))
                } else {
                    Media::Synth(Box::new(Source::audio(publication.ssrc, start)))
                }
            }
        };
        let at = media.next_at();
        publication.media = Some(media);
        publication.active = true;
        self.due.push(Reverse((at, p)));
    }

    /// Runs the loop until `until`.
    pub fn run_until(&mut self, until: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            self.step(now, until)?;
        }
    }

    /// One round of the client loop without waiting: due media, client timers, readable
    /// sockets. Called between blocking control calls, so that clients keep connecting and
    /// publishers keep sending while the generator waits on the SFU.
    pub fn pump(&mut self) -> io::Result<()> {
        let now = Instant::now();
        self.step(now, now)
    }

    /// Sends due media, serves client timers, drains the swept sockets when due, then waits
    /// for readable sockets until the next of those deadlines or `until` (at most 5 ms) and
    /// reads them.
    fn step(&mut self, now: Instant, until: Instant) -> io::Result<()> {
        self.send_due(now);
        self.send_data(now);
        self.serve_timers(now);
        if !self.swept.is_empty() && self.next_sweep <= now {
            self.sweep(now);
        }
        let mut next = until;
        if !self.swept.is_empty() {
            next = next.min(self.next_sweep);
        }
        if let Some(d) = &self.data_source {
            next = next.min(d.next);
        }
        if let Some(Reverse((at, _))) = self.due.peek() {
            next = next.min(*at);
        }
        if let Some(Reverse((at, _))) = self.timers.peek() {
            next = next.min(*at);
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        match self.poll.poll(&mut self.events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        self.tokens.clear();
        self.tokens
            .extend(self.events.iter().map(|ev| ev.token().0));
        for i in 0..self.tokens.len() {
            let e = self.tokens[i];
            self.read(e);
        }
        Ok(())
    }

    /// Runs until every endpoint is connected, or `limit` passes. Returns whether all are.
    pub fn run_until_connected(&mut self, limit: Duration) -> io::Result<bool> {
        let until = Instant::now() + limit;
        while self.unconnected() > 0 {
            if Instant::now() >= until {
                return Ok(false);
            }
            self.run_until(Instant::now() + Duration::from_millis(2))?;
        }
        Ok(true)
    }

    fn send_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, p))) = self.due.peek() {
            if at > now {
                break;
            }
            self.due.pop();
            let publication = &mut self.pubs[p];
            if !publication.active {
                continue;
            }
            let Some(media) = publication.media.as_mut() else {
                continue;
            };
            let mut packets = media.poll(now);
            let next = media.next_at();
            let replay = publication.pcap.is_some();
            let video = publication.kind == MediaKind::Video;
            for packet in &mut packets {
                // Make lengths identify packets (see the module docs). Video: every packet of a
                // frame gets the same length, so the SFU can still send a frame to a consumer
                // with one GSO call as with real video, and the last one is shorter.
                let cut = if video {
                    if publication.last_ts != Some(packet.timestamp) {
                        publication.last_ts = Some(packet.timestamp);
                        publication.frame = publication.frame.wrapping_add(1);
                    }
                    (publication.frame % u32::from(TAG)) as usize
                } else {
                    usize::from(packet.seq as u16 % TAG)
                };
                if replay {
                    packet.payload.resize(packet.payload.len() + cut, 0);
                } else {
                    let marker_cut = if video && packet.marker { 100 } else { 0 };
                    let keep = packet.payload.len().saturating_sub(cut + marker_cut).max(8);
                    packet.payload.truncate(keep);
                }
            }
            let ep = publication.ep;
            let mid = publication.mid.clone();
            self.due.push(Reverse((next, p)));
            let Some(link) = self.eps[ep].link.as_mut() else {
                continue;
            };
            link.client.send(now, &mid, packets);
            self.flush(ep, now);
        }
    }

    /// Sends the data channel messages due by `now`.
    fn send_data(&mut self, now: Instant) {
        let Some(d) = self.data_source.as_mut() else {
            return;
        };
        if d.next > now {
            return;
        }
        let ep = d.ep;
        let Some(link) = self.eps[ep].link.as_mut() else {
            return;
        };
        while d.next <= now {
            if link.client.send_message(d.stream, true, &d.message) {
                d.sent += 1;
            } else {
                d.refused += 1;
            }
            d.next += d.interval;
        }
        self.flush(ep, now);
    }

    /// Opens endpoint `e`'s pre-negotiated data channel (after `produce_data` or
    /// `consume_data`).
    pub fn open_data_channel(
        &mut self,
        e: usize,
        params: &sfu_core::ortc::SctpStreamParameters,
    ) -> Result<(), Error> {
        self.link(e)?.client.open_data_channel(params, "load");
        self.flush(e, Instant::now());
        Ok(())
    }

    /// Whether endpoint `e`'s data channel on `stream` is open.
    pub fn data_channel_open(&self, e: usize, stream: u16) -> bool {
        self.eps[e]
            .link
            .as_ref()
            .is_some_and(|l| l.client.data_channel_open(stream))
    }

    fn serve_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, e))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let ep = &mut self.eps[e];
            let Some(link) = ep.link.as_mut().filter(|_| ep.scheduled == at) else {
                continue; // stale entry
            };
            link.client.timeout(now);
            self.flush(e, now);
        }
    }

    /// Drains endpoint `e`'s client: sends its datagrams, records send times, passes key frame
    /// requests to sources, checks what a probe decrypted, reschedules its timer.
    fn flush(&mut self, e: usize, now: Instant) {
        let ep = &mut self.eps[e];
        let Some(link) = ep.link.as_mut() else {
            return;
        };
        let mut out = link.client.drain(now);
        // A client that wants time right away (ICE starting its checks, a DTLS flight) gets it
        // now rather than at the next loop round, which may come only after a control call.
        for _ in 0..4 {
            if link.client.next_timeout() > now {
                break;
            }
            link.client.timeout(now);
            out.extend(link.client.drain(now));
        }
        for t in out {
            let at = Instant::now();
            let wall = wall_now();
            match link.socket.send_to(&t.contents, t.destination) {
                Ok(_) => {}
                Err(_) => {
                    self.totals.send_errors += 1;
                    continue;
                }
            }
            if let Some(h) = wire::rtp_header(&t.contents) {
                if let Some(&p) = self.by_ssrc.get(&h.ssrc) {
                    let publication = &mut self.pubs[p];
                    publication.ring[usize::from(h.seq) % RING] = Some(Slot {
                        seq: h.seq,
                        len: (t.contents.len() - h.header_len) as u16,
                        at,
                        wall,
                    });
                    // Retransmissions come on the RTX SSRC, so this is a first transmission.
                    publication.last_seq = Some(h.seq);
                    publication.sent += 1;
                    if self.win.on {
                        self.win.sent += 1;
                    }
                }
            }
        }
        if ep.connected.is_none() && link.client.connected {
            ep.connected = Some(now);
            let pubs = ep.pubs.clone();
            for p in pubs {
                if !self.pubs[p].active {
                    self.activate(p, now);
                }
            }
        }
        let ep = &mut self.eps[e];
        let Some(link) = ep.link.as_mut() else {
            return;
        };
        for (mid, _) in link.client.take_key_frame_requests() {
            for &p in &ep.pubs {
                if self.pubs[p].mid == mid.to_string() {
                    if let Some(m) = self.pubs[p].media.as_mut() {
                        m.request_key_frame();
                    }
                }
            }
        }
        if !link.client.messages.is_empty() {
            self.messages_received += link.client.messages.len() as u64;
            link.client.messages.clear();
        }
        if !link.client.received.is_empty() {
            let received = std::mem::take(&mut link.client.received);
            for r in received {
                self.check_probe_packet(e, r.ssrc, r.seq, &r.payload);
            }
        }
        let ep = &mut self.eps[e];
        let Some(link) = ep.link.as_mut() else {
            return;
        };
        let next = link.client.next_timeout();
        if next != ep.scheduled || next <= now {
            ep.scheduled = next;
            self.timers.push(Reverse((next, e)));
        }
    }

    fn check_probe_packet(&mut self, e: usize, ssrc: u32, seq: u16, payload: &[u8]) {
        let Some(t) = self.track_of(e, ssrc) else {
            return;
        };
        let Some((src_ssrc, src_seq)) = verify_trimmed(payload) else {
            if self.pubs[self.tracks[t].publication].pcap.is_none() {
                self.totals.probe_corrupt += 1;
            }
            return;
        };
        self.totals.probe_verified += 1;
        let track = &self.tracks[t];
        let expected = self.pubs[track.publication].ssrc;
        match track.offset.map(|o| seq.wrapping_sub(o)) {
            None => self.totals.probe_match_unknown += 1,
            Some(s) if src_ssrc == expected && s == src_seq => {
                self.totals.probe_match_agreed += 1;
            }
            Some(_) => self.totals.probe_match_disagreed += 1,
        }
    }

    /// The track of endpoint `e`'s consumer with SSRC `ssrc` (an endpoint has a few).
    fn track_of(&self, e: usize, ssrc: u32) -> Option<usize> {
        let consumers = &self.eps[e].consumers;
        consumers.iter().find(|c| c.0 == ssrc).map(|c| c.1)
    }

    /// Drains the sockets of the swept [`Role::Count`] endpoints.
    fn sweep(&mut self, now: Instant) {
        self.next_sweep = now + SWEEP;
        for i in 0..self.swept.len() {
            let e = self.swept[i];
            self.read(e);
        }
    }

    /// Reads endpoint `e`'s socket until it is empty, [`SLOTS`] datagrams a call.
    fn read(&mut self, e: usize) {
        if self.eps[e].link.is_none() {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let mut meta = std::mem::take(&mut self.meta);
        let slot = self.slot;
        let mut fed = false;
        let mut now = Instant::now();
        let swept = self.eps[e].swept;
        loop {
            let result = {
                let Some(link) = self.eps[e].link.as_ref() else {
                    break;
                };
                let mut chunks = buf.chunks_mut(slot);
                let mut slices: [IoSliceMut<'_>; SLOTS] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                let n = meta.len().min(SLOTS);
                link.state
                    .recv((&link.socket).into(), &mut slices[..n], &mut meta)
            };
            let count = match result {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.totals.recv_errors += 1;
                    break;
                }
            };
            now = Instant::now();
            for (i, m) in meta.iter().take(count).enumerate() {
                let bytes = &buf[i * slot..i * slot + m.len.min(slot)];
                let source = SocketAddr::new(m.addr.ip().to_canonical(), m.addr.port());
                for d in bytes.chunks(m.stride.max(1)) {
                    fed |= self.on_datagram(e, now, m.timestamp, source, d);
                }
            }
            // A swept socket is not waited on: a short batch means it was empty, and what
            // comes after waits for the next sweep (a polled socket is read until it would
            // block, as edge-triggered readiness asks).
            if swept && count < meta.len().min(SLOTS) {
                break;
            }
        }
        self.buf = buf;
        self.meta = meta;
        if fed {
            self.flush(e, now);
        }
        if !swept && self.eps[e].role == Role::Count {
            self.maybe_sweep(e);
        }
    }

    /// Moves a [`Role::Count`] endpoint from the poll to the sweep once each of its
    /// consumers has received a packet (its join times are taken on the prompt path).
    fn maybe_sweep(&mut self, e: usize) {
        let ep = &self.eps[e];
        let started = !ep.consumers.is_empty()
            && ep.consumers.iter().all(|c| self.tracks[c.1].received > 0)
            && ep.connected.is_some();
        if !started {
            return;
        }
        let ep = &mut self.eps[e];
        let Some(link) = ep.link.as_mut() else {
            return;
        };
        if self.poll.registry().deregister(&mut link.socket).is_ok() {
            ep.swept = true;
            self.swept.push(e);
        }
    }

    /// Handles one datagram; returns whether it went to the client (which then needs a drain).
    fn on_datagram(
        &mut self,
        e: usize,
        now: Instant,
        kernel: Option<Duration>,
        source: SocketAddr,
        d: &[u8],
    ) -> bool {
        let proto = str0m::net::Protocol::Udp;
        if let Some(h) = wire::rtp_header(d) {
            let role = self.eps[e].role;
            self.on_rtp(e, now, kernel, h, d.len());
            if role == (Role::Recv { probe: true }) {
                if let Some(link) = self.eps[e].link.as_mut() {
                    link.client.receive(now, proto, source, d);
                }
                return true;
            }
            return false;
        }
        if self.security.is_none() && (20..=63).contains(&d[0]) {
            self.security = wire::sniff_server_hello(d);
        }
        if let Some(link) = self.eps[e].link.as_mut() {
            link.client.receive(now, proto, source, d);
        }
        true
    }

    fn on_rtp(
        &mut self,
        e: usize,
        now: Instant,
        kernel: Option<Duration>,
        h: wire::RtpHeader,
        len: usize,
    ) {
        let worker = self.eps[e].worker.min(1);
        let Some(t) = self.track_of(e, h.ssrc) else {
            if self.win.on && self.rtx_ssrcs.contains(&h.ssrc) {
                self.win.rtx += 1;
                self.win.forwarded += 1;
                self.win.by_worker[worker].forwarded += 1;
            }
            return;
        };
        if self.win.on {
            self.win.forwarded += 1;
            self.win.by_worker[worker].forwarded += 1;
        }
        let track = &mut self.tracks[t];
        let ep = &mut self.eps[e];
        ep.first_rtp.get_or_insert(now);
        match track.kind {
            MediaKind::Audio => ep.first_audio.get_or_insert(now),
            MediaKind::Video => ep.first_video.get_or_insert(now),
        };
        // Loss: sequence gaps (a late packet fills one back in).
        match track.next {
            None => track.next = Some(h.seq.wrapping_add(1)),
            Some(next) => {
                let d = h.seq.wrapping_sub(next) as i16;
                if d >= 0 {
                    track.gaps += i64::from(d);
                    track.next = Some(h.seq.wrapping_add(1));
                } else {
                    track.gaps -= 1;
                }
            }
        }
        track.received += 1;
        let len = (len - h.header_len) as u16;
        let publication = &self.pubs[track.publication];
        if ep.role == Role::Count {
            // Counted only: the offset is learned once (for the tail), then followed.
            if self.win.on {
                self.win.count_only += 1;
            }
            track.offset = track
                .offset
                .or_else(|| learn(publication, h.seq, len, now).map(|(o, _)| o));
            track.last_src = track.offset.map(|o| h.seq.wrapping_sub(o));
            return;
        }
        // Delay: find the send time through the consumer's sequence offset.
        let lookup = |s: u16| {
            publication.ring[usize::from(s) % RING]
                .filter(|slot| slot.seq == s && slot.len == len && slot.at <= now)
        };
        let mut found = track
            .offset
            .and_then(|o| lookup(h.seq.wrapping_sub(o)).map(|s| (o, s)));
        if found.is_none() {
            found = learn(publication, h.seq, len, now);
            if found.is_some() && track.offset.is_some() {
                self.totals.relearned += 1;
            }
        }
        match found {
            Some((offset, slot)) => {
                track.offset = Some(offset);
                track.last_src = Some(slot.seq);
                if self.win.on {
                    let us = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
                    self.win.app_delays.push(us(now.duration_since(slot.at)));
                    if let Some(k) = kernel {
                        let delay = us(k.saturating_sub(slot.wall));
                        self.win.delays.push(delay);
                        self.win.by_worker[worker].delays.push(delay);
                    }
                }
            }
            None => {
                if self.win.on {
                    self.win.unmatched += 1;
                }
            }
        }
    }

    /// Loss over the run: (lost, expected, consumers that received nothing).
    pub fn loss(&self) -> (u64, u64, u64) {
        self.loss_where(|_| true)
    }

    /// As [`Engine::loss`], for the consumers on SFU worker `worker` alone.
    pub fn loss_on(&self, worker: usize) -> (u64, u64, u64) {
        self.loss_where(|e| e.worker == worker)
    }

    fn loss_where(&self, consumer: impl Fn(&Endpoint) -> bool) -> (u64, u64, u64) {
        let (mut lost, mut expected, mut silent) = (0u64, 0u64, 0u64);
        for t in self.tracks.iter().filter(|t| consumer(&self.eps[t.ep])) {
            let publication = &self.pubs[t.publication];
            if self.eps[publication.ep].link.is_none() || self.eps[t.ep].link.is_none() {
                continue;
            }
            if t.received == 0 {
                if publication.sent > 0 {
                    silent += 1;
                }
                continue;
            }
            let tail = match (publication.last_seq, t.last_src) {
                (Some(last), Some(got)) => u64::from(last.wrapping_sub(got).min(u16::MAX / 2)),
                _ => 0,
            };
            let l = t.gaps.max(0) as u64 + tail;
            lost += l;
            expected += t.received + l;
        }
        (lost, expected, silent)
    }

    /// Packets received and sequence gaps (lost, or not yet arrived out of order) over the
    /// run, every consumer together: a loss ratio between two moments without the packets in
    /// flight that [`Engine::loss`] counts as a tail.
    pub fn received_and_gaps(&self) -> (u64, i64) {
        self.tracks
            .iter()
            .filter(|t| self.eps[t.ep].link.is_some())
            .fold((0, 0), |(r, g), t| (r + t.received, g + t.gaps))
    }

    /// Consumers that exist.
    pub fn consumers(&self) -> usize {
        self.tracks
            .iter()
            .filter(|t| self.eps[t.ep].link.is_some())
            .count()
    }
}

/// Learns a consumer's sequence offset from a packet (consumer sequence number `seq`, payload
/// length `len`) whose length is unique among what `publication` sent in the last
/// [`LEARN_WINDOW`]: the offset and the send slot it matched.
fn learn(publication: &Publication, seq: u16, len: u16, now: Instant) -> Option<(u16, Slot)> {
    let last = publication.last_seq?;
    let horizon = now.checked_sub(LEARN_WINDOW).unwrap_or(now);
    let mut matches = (0..RING as u16)
        .map_while(|back| {
            publication.ring[usize::from(last.wrapping_sub(back)) % RING]
                .filter(|slot| slot.at >= horizon)
        })
        .filter(|slot| slot.len == len && slot.at <= now);
    match (matches.next(), matches.next()) {
        (Some(s), None) => Some((seq.wrapping_sub(s.seq), s)),
        _ => None,
    }
}

/// Checks a payload made by `sfu_tests::media` and shortened by the generator: returns the
/// embedded source (ssrc, seq) when every byte matches.
fn verify_trimmed(p: &[u8]) -> Option<(u32, u16)> {
    let (ssrc, seq, full) = match *p.first()? {
        0xA0 => {
            let ssrc = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
            let seq = u16::from_be_bytes(p.get(5..7)?.try_into().ok()?);
            (ssrc, seq, audio_payload(ssrc, seq))
        }
        0x10 | 0x00 => {
            let ssrc = u32::from_be_bytes(p.get(2..6)?.try_into().ok()?);
            let seq = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?);
            let full = video_payload(ssrc, seq, p[0] == 0x10, p[1] == 0x00);
            (ssrc, seq, full)
        }
        _ => return None,
    };
    let cut = full.len().checked_sub(p.len())?;
    (cut < usize::from(TAG) + 100 && full[..p.len()] == *p).then_some((ssrc, seq))
}
