//! Conferences over a runtime: str0m client peers ([`crate::client`]) driven over real
//! loopback sockets by a plain polling loop on the test thread, every consumer checked against
//! its source. Generic over the runtime ([`Runtime`]).
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sfu_core::framing::{frame_header, FrameDecoder};
use sfu_core::ortc::{MediaKind, RtpCapabilities};
use sfu_core::runtime::call;
use sfu_core::{ConsumeOptions, ListenInfo, ProduceOptions, Protocol, RouterId, RouterOptions};
use sfu_core::{SfuStats, WebRtcTransportOptions};

use super::Runtime;
use crate::client::{device_capabilities, ClientTransport};
use crate::delivery::{delivery_of, Expect};
use crate::media::{clock_rate, Source};
use crate::sim::{media_codecs, SentLog};

/// Serializes the conferences of one test binary: each drives its peers from one thread and
/// measures loss, so they should not compete for the machine's (two) cores with each other.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a peer reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    UdpV4,
    UdpV6,
    Tcp,
}

enum Net {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        server: SocketAddr,
        decoder: FrameDecoder,
        out: Vec<u8>,
    },
}

/// A stream a peer publishes.
pub struct Publication {
    pub mid: String,
    pub kind: MediaKind,
    pub ssrc: u32,
    pub producer: sfu_core::ProducerId,
    pub source: Option<Source>,
    pub sent: usize,
    /// Every packet the source made.
    pub log: SentLog,
}

/// A stream a peer consumes: the consumer's SSRC and the source it must carry.
#[derive(Debug, Clone)]
pub struct Sub {
    pub ssrc: u32,
    pub source_ssrc: u32,
    pub kind: MediaKind,
}

/// One endpoint: a client transport that both sends and receives.
pub struct Peer<R: Runtime> {
    pub name: String,
    pub client: ClientTransport,
    net: Net,
    pub worker: R::Handle,
    pub router: RouterId,
    pub caps: RtpCapabilities,
    pub publications: Vec<Publication>,
    pub subs: Vec<Sub>,
    buf: Vec<u8>,
}

/// A router with the simulation's codecs.
pub fn room<R: Runtime>(worker: &R::Handle) -> (RouterId, RtpCapabilities) {
    let options = RouterOptions {
        media_codecs: media_codecs(),
    };
    let router = R::call(worker, call::CreateRouter { options }).expect("router");
    let caps = R::call(worker, call::RouterRtpCapabilities { router }).expect("caps");
    (router, caps)
}

/// The worker's listen infos for `path`.
fn listen_for<R: Runtime>(worker: &R::Handle, path: Path) -> Vec<ListenInfo> {
    R::listen_infos(worker)
        .into_iter()
        .filter(|i| match path {
            Path::UdpV4 => i.protocol == Protocol::Udp && i.local.is_ipv4(),
            Path::UdpV6 => i.protocol == Protocol::Udp && i.local.is_ipv6(),
            Path::Tcp => i.protocol == Protocol::Tcp,
        })
        .collect()
}

/// A peer joins `router` over `path` and publishes audio and video (ssrc `n * 100 + 1, + 2`).
pub fn join<R: Runtime>(
    worker: &R::Handle,
    router: RouterId,
    caps: &RtpCapabilities,
    path: Path,
    n: u32,
) -> Peer<R> {
    let listen_infos = listen_for::<R>(worker, path);
    assert!(
        !listen_infos.is_empty(),
        "worker has no socket for {path:?}"
    );
    let server = listen_infos[0].local;
    let options = WebRtcTransportOptions {
        listen_infos,
        ..Default::default()
    };
    let created =
        R::call(worker, call::CreateWebRtcTransport { router, options }).expect("transport");
    let (net, local, proto) = match path {
        Path::UdpV4 | Path::UdpV6 => {
            let ip: IpAddr = if path == Path::UdpV4 {
                "127.0.0.1".parse().unwrap()
            } else {
                "::1".parse().unwrap()
            };
            let socket = UdpSocket::bind((ip, 0)).expect("client udp");
            socket.set_nonblocking(true).unwrap();
            let local = socket.local_addr().unwrap();
            (Net::Udp(socket), local, str0m::net::Protocol::Udp)
        }
        Path::Tcp => {
            let stream = TcpStream::connect(server).expect("client tcp");
            stream.set_nonblocking(true).unwrap();
            stream.set_nodelay(true).unwrap();
            let local = stream.local_addr().unwrap();
            let net = Net::Tcp {
                stream,
                server,
                decoder: FrameDecoder::new(65_535),
                out: Vec::new(),
            };
            (net, local, str0m::net::Protocol::Tcp)
        }
    };
    let mut client = ClientTransport::new(Instant::now(), local, &created.parameters, caps, proto);
    let connect = call::ConnectWebRtcTransport {
        transport: created.id,
        dtls_parameters: client.dtls_parameters(),
    };
    R::call(worker, connect).expect("connect");
    let mut publications = Vec::new();
    for (kind, ssrc) in [
        (MediaKind::Audio, n * 100 + 1),
        (MediaKind::Video, n * 100 + 2),
    ] {
        let rtp_parameters = client.prepare_produce(kind, ssrc);
        let mid = rtp_parameters.mid.clone().expect("mid");
        let options = ProduceOptions {
            kind,
            rtp_parameters,
            paused: false,
        };
        let produce = call::Produce {
            transport: created.id,
            options,
        };
        let producer = R::call(worker, produce).expect("produce");
        publications.push(Publication {
            mid,
            kind,
            ssrc,
            producer,
            source: None,
            sent: 0,
            log: SentLog::new(clock_rate(kind == MediaKind::Video)),
        });
    }
    Peer {
        name: format!("peer{n}/{path:?}"),
        client,
        net,
        worker: worker.clone(),
        router,
        caps: caps.clone(),
        publications,
        subs: Vec::new(),
        buf: vec![0; 65_536],
    }
}

/// A producer, its source SSRC and its kind.
type Published = (sfu_core::ProducerId, u32, MediaKind);

/// Every peer consumes every other peer of its room.
pub fn consume_all<R: Runtime>(peers: &mut [Peer<R>]) {
    let all: Vec<(RouterId, String, Vec<Published>)> = peers
        .iter()
        .map(|p| {
            let pubs = p
                .publications
                .iter()
                .map(|x| (x.producer, x.ssrc, x.kind))
                .collect();
            (p.router, p.name.clone(), pubs)
        })
        .collect();
    for peer in peers.iter_mut() {
        for (router, name, pubs) in &all {
            if *router != peer.router || *name == peer.name {
                continue;
            }
            for &(producer, source_ssrc, kind) in pubs {
                let options = ConsumeOptions {
                    producer,
                    rtp_capabilities: device_capabilities(&peer.caps),
                    paused: false,
                };
                let consume = call::Consume {
                    transport: peer.client.id,
                    options,
                };
                let consumed = R::call(&peer.worker, consume).expect("consume");
                peer.client.accept_consumer(&consumed.parameters);
                let ssrc = consumed.parameters.rtp_parameters.encodings[0]
                    .ssrc
                    .expect("consumer ssrc");
                peer.subs.push(Sub {
                    ssrc,
                    source_ssrc,
                    kind,
                });
            }
        }
    }
}

impl<R: Runtime> Peer<R> {
    /// A second handle on a UDP peer's socket, to send from the peer's own (validated) address.
    pub fn udp_socket(&self) -> Option<UdpSocket> {
        match &self.net {
            Net::Udp(socket) => socket.try_clone().ok(),
            Net::Tcp { .. } => None,
        }
    }

    /// One round: read what arrived, send due media, serve the client's timer.
    fn pump(&mut self) {
        self.receive();
        let now = Instant::now();
        for p in &mut self.publications {
            if let Some(source) = &mut p.source {
                if source.next_at() <= now {
                    let packets = source.poll(now);
                    p.sent += packets.len();
                    p.log.record(&packets, now, true);
                    self.client.send(now, &p.mid, packets);
                }
            }
        }
        if self.client.next_timeout() <= now {
            self.client.timeout(now);
        }
        self.transmit(now);
    }

    fn receive(&mut self) {
        let mut arrived = Vec::new();
        match &mut self.net {
            Net::Udp(socket) => loop {
                match socket.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
                        let proto = str0m::net::Protocol::Udp;
                        arrived.push((Instant::now(), proto, from, self.buf[..n].to_vec()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}: udp read: {e}", self.name),
                }
            },
            Net::Tcp {
                stream,
                server,
                decoder,
                ..
            } => loop {
                match stream.read(&mut self.buf) {
                    Ok(0) => panic!("{}: server closed the tcp connection", self.name),
                    Ok(n) => {
                        decoder.extend(&self.buf[..n]);
                        let now = Instant::now();
                        while let Some(f) = decoder.next_frame().expect("server framing") {
                            let proto = str0m::net::Protocol::Tcp;
                            arrived.push((now, proto, *server, f.to_vec()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{}: tcp read: {e}", self.name),
                }
            },
        }
        for (now, proto, from, bytes) in arrived {
            self.client.receive(now, proto, from, &bytes);
            self.transmit(now);
        }
    }

    /// Drains the client and puts its datagrams on the wire.
    fn transmit(&mut self, now: Instant) {
        let out = self.client.drain(now);
        match &mut self.net {
            Net::Udp(socket) => {
                for t in out {
                    // Loopback does not lose; a full buffer would show up as a test failure.
                    let _ = socket.send_to(&t.contents, t.destination);
                }
            }
            Net::Tcp { stream, out: q, .. } => {
                for t in out {
                    q.extend_from_slice(&frame_header(t.contents.len()).expect("frame"));
                    q.extend_from_slice(&t.contents);
                }
                while !q.is_empty() {
                    match stream.write(q) {
                        Ok(n) => {
                            q.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("tcp write: {e}"),
                    }
                }
            }
        }
    }
}

/// Pumps every peer for `d`.
pub fn run_for<R: Runtime>(peers: &mut [Peer<R>], d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for p in peers.iter_mut() {
            p.pump();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Pumps until every client is connected (ICE and DTLS), or panics after `limit`.
pub fn connect_all<R: Runtime>(peers: &mut [Peer<R>], limit: Duration) {
    let until = Instant::now() + limit;
    while peers.iter().any(|p| !p.client.connected) {
        assert!(
            Instant::now() < until,
            "not connected: {:?}",
            peers
                .iter()
                .filter(|p| !p.client.connected)
                .map(|p| &p.name)
                .collect::<Vec<_>>()
        );
        for p in peers.iter_mut() {
            p.pump();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Connects, sends media for `media`, lets it drain, and checks every consumer got every
/// packet of its source, byte for byte, in order.
pub fn conference<R: Runtime>(peers: &mut [Peer<R>], media: Duration) {
    connect_all(peers, Duration::from_secs(10));
    let start = Instant::now();
    for p in peers.iter_mut() {
        for publication in &mut p.publications {
            publication.source = Some(match publication.kind {
                MediaKind::Audio => Source::audio(publication.ssrc, start),
                MediaKind::Video => Source::video(publication.ssrc, start),
            });
        }
    }
    run_for(peers, media);
    for p in peers.iter_mut() {
        for publication in &mut p.publications {
            publication.source = None;
        }
    }
    run_for(peers, Duration::from_millis(700));
    check_no_loss(peers);
}

/// Every consumer received exactly what its source sent.
pub fn check_no_loss<R: Runtime>(peers: &[Peer<R>]) {
    for p in peers {
        for sub in &p.subs {
            let publication = peers
                .iter()
                .flat_map(|q| &q.publications)
                .find(|x| x.ssrc == sub.source_ssrc)
                .expect("source");
            let sent = publication.sent;
            assert!(sent > 0, "{}: nothing sent", p.name);
            let logs = [(publication.ssrc, publication.log.clone())].into();
            let everything = Expect::between(
                sub.source_ssrc,
                publication.log.packets[0].at,
                publication.log.packets[sent - 1].at,
            );
            let r = delivery_of(&logs, &p.client.received, sub.ssrc, &[everything]);
            if let Err(e) = r.check(sent) {
                let source = peers
                    .iter()
                    .find(|q| q.publications.iter().any(|x| x.ssrc == sub.source_ssrc))
                    .expect("source peer");
                let producer = source
                    .publications
                    .iter()
                    .find(|x| x.ssrc == sub.source_ssrc)
                    .map(|x| x.producer)
                    .expect("producer");
                eprintln!(
                    "{}: {:?} from {}: sent {sent}, {} packets, last seq {:?}\n\
                     receiver ice {:?} connected {}; sender ice {:?} connected {}\n\
                     producer {:?}\nreceiver transport {:?}\nsender transport {:?}\n\
                     worker {:?}\nsfu {:?}\nkernel udp receive buffer drops so far: {:?}",
                    p.name,
                    sub.kind,
                    sub.source_ssrc,
                    r.received,
                    r.source_seqs.get(&sub.source_ssrc).and_then(|s| s.last()),
                    p.client.ice_states,
                    p.client.connected,
                    source.client.ice_states,
                    source.client.connected,
                    R::call(&p.worker, call::ProducerStats { producer }),
                    R::call(
                        &p.worker,
                        call::TransportStats {
                            transport: p.client.id
                        }
                    ),
                    R::call(
                        &p.worker,
                        call::TransportStats {
                            transport: source.client.id
                        }
                    ),
                    R::counters(&p.worker),
                    R::call(&p.worker, call::SfuStats {}),
                    kernel_udp_rcvbuf_errors()
                );
                panic!("{}: {:?} from {}: {e}", p.name, sub.kind, sub.source_ssrc);
            }
            assert_eq!(r.runs, 1, "{}: one continuous run {r:?}", p.name);
        }
    }
}

/// The total of the Sfu's drop counters.
pub fn sfu_drops(s: &SfuStats) -> u64 {
    s.dropped_oversized
        + s.dropped_malformed
        + s.dropped_unknown_source
        + s.dropped_stun_unknown_ufrag
        + s.dropped_stun_unauthenticated
        + s.dropped_too_many_tuples
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (Linux), to tell the
/// kernel's drops from the runtime's when a test fails.
pub fn kernel_udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}
