//! Real client peers (str0m, from `sfu_tests::client`) on real loopback sockets, driven by a
//! plain loop on the test thread, talking to a `sfu-runtime-smol` runtime.
#![allow(dead_code)] // Each test binary uses a part.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sfu_core::framing::{frame_header, FrameDecoder};
use sfu_core::ortc::{MediaKind, RtpCapabilities};
use sfu_core::{ConsumeOptions, ProduceOptions, RouterId, RouterOptions, WebRtcTransportOptions};
use sfu_runtime_smol::WorkerHandle;
use sfu_tests::client::{device_capabilities, ClientTransport};
use sfu_tests::delivery::{delivery_of, Expect};
use sfu_tests::media::{clock_rate, Source};
use sfu_tests::sim::{media_codecs, SentLog};
use str0m::net::Protocol;

/// The test's clock.
#[allow(clippy::disallowed_methods)] // Tests own their clock.
pub fn now() -> Instant {
    Instant::now()
}

/// Whether this host has IPv6 loopback.
pub fn has_ipv6() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

/// The network side of one client: a UDP socket or a TCP connection with RFC 4571 framing.
enum Link {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        decoder: FrameDecoder,
        out: Vec<u8>,
        closed: bool,
    },
}

/// One client peer: a str0m transport and its socket.
pub struct Peer {
    /// The str0m side.
    pub client: ClientTransport,
    link: Link,
    /// Which room it is in.
    pub room: usize,
    /// Datagrams handed to the socket, and datagrams the socket refused.
    pub sent: (u64, u64),
    /// Stopped reading its socket (a slow reader).
    pub frozen: bool,
}

/// A stream a peer publishes, and how many packets went out.
pub struct Publication {
    peer: usize,
    mid: String,
    source: Source,
    /// The source SSRC.
    pub ssrc: u32,
    /// Audio or video.
    pub kind: MediaKind,
    /// Packets handed to the client.
    pub sent: usize,
    /// Every packet the source made.
    pub log: SentLog,
}

/// One consumer to check: on which peer, its SSRC, and the source SSRC it must carry.
pub struct Subscription {
    peer: usize,
    ssrc: u32,
    publication: usize,
    consumer: sfu_core::ConsumerId,
}

/// A room on one worker.
pub struct Room {
    /// Its worker.
    pub worker: WorkerHandle,
    /// Its router.
    pub router: RouterId,
    caps: RtpCapabilities,
}

/// Peers in rooms, publishing to each other.
#[derive(Default)]
pub struct Conference {
    /// The rooms.
    pub rooms: Vec<Room>,
    /// The peers.
    pub peers: Vec<Peer>,
    /// What they publish.
    pub publications: Vec<Publication>,
    subscriptions: Vec<Subscription>,
    producers: Vec<sfu_core::ProducerId>,
    media_on: bool,
}

impl Conference {
    /// Opens a room on `worker`.
    pub fn add_room(&mut self, worker: &WorkerHandle) -> usize {
        let router = smol::block_on(worker.create_router(RouterOptions {
            media_codecs: media_codecs(),
        }))
        .expect("router");
        let caps = smol::block_on(worker.router_rtp_capabilities(router)).expect("caps");
        self.rooms.push(Room {
            worker: worker.clone(),
            router,
            caps,
        });
        self.rooms.len() - 1
    }

    /// A peer joins `room` over `proto` from `ip` (the server candidate of that protocol and
    /// family is used).
    pub fn join(&mut self, room: usize, proto: Protocol, ip: IpAddr) -> usize {
        self.join_with(room, proto, ip, WebRtcTransportOptions::default())
    }

    /// [`join`](Self::join) with explicit transport options.
    pub fn join_with(
        &mut self,
        room: usize,
        proto: Protocol,
        ip: IpAddr,
        options: WebRtcTransportOptions,
    ) -> usize {
        let r = &self.rooms[room];
        let created =
            smol::block_on(r.worker.create_webrtc_transport(r.router, options)).expect("transport");
        let server = created
            .parameters
            .ice_candidates
            .iter()
            .find(|c| {
                let ip_ok =
                    c.ip.parse::<IpAddr>()
                        .is_ok_and(|a| a.is_ipv4() == ip.is_ipv4());
                let proto_ok =
                    (c.protocol == sfu_core::ortc::Protocol::Udp) == (proto == Protocol::Udp);
                ip_ok && proto_ok
            })
            .map(|c| SocketAddr::new(c.ip.parse().expect("ip"), c.port))
            .expect("a server candidate for the protocol and family");
        let link = match proto {
            Protocol::Udp => {
                let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("client udp");
                // Room for bursts while the test thread is descheduled (tests run in parallel).
                let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20);
                socket.set_nonblocking(true).expect("nonblocking");
                Link::Udp(socket)
            }
            _ => {
                // A small receive buffer, so that a peer that stops reading backs up quickly.
                let socket = socket2::Socket::new(
                    socket2::Domain::for_address(server),
                    socket2::Type::STREAM,
                    None,
                )
                .expect("client tcp socket");
                socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
                socket.connect(&server.into()).expect("client tcp connect");
                let stream: TcpStream = socket.into();
                stream.set_nonblocking(true).expect("nonblocking");
                stream.set_nodelay(true).expect("nodelay");
                Link::Tcp {
                    stream,
                    decoder: FrameDecoder::new(0xffff),
                    out: Vec::new(),
                    closed: false,
                }
            }
        };
        let local = match &link {
            Link::Udp(s) => s.local_addr(),
            Link::Tcp { stream, .. } => stream.local_addr(),
        }
        .expect("local addr");
        // Keep only the candidate we reach, so the client talks to it.
        let mut params = created.parameters.clone();
        params.ice_candidates.retain(|c| {
            c.port == server.port() && c.ip.parse::<IpAddr>().ok() == Some(server.ip())
        });
        let mut client = ClientTransport::new(now(), local, &params, &r.caps, proto);
        let dtls = client.dtls_parameters();
        smol::block_on(r.worker.connect_webrtc_transport(created.id, dtls)).expect("connect");
        self.peers.push(Peer {
            client,
            link,
            room,
            sent: (0, 0),
            frozen: false,
        });
        self.peers.len() - 1
    }

    /// Pumps until every peer is connected (ICE and DTLS), or panics after `timeout`.
    pub fn wait_connected(&mut self, timeout: Duration) {
        let until = now() + timeout;
        while !self.peers.iter().all(|p| p.client.connected) {
            assert!(now() < until, "peers did not connect in {timeout:?}");
            self.pump();
        }
    }

    /// Every peer publishes audio and video, and consumes everything the others in its room
    /// publish.
    pub fn publish_and_subscribe(&mut self) {
        for peer in 0..self.peers.len() {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let ssrc =
                    10_000 * (peer as u32 + 1) + if kind == MediaKind::Video { 100 } else { 0 };
                let p = &mut self.peers[peer];
                let params = p.client.prepare_produce(kind, ssrc);
                let mid = params.mid.clone().expect("mid");
                let room = &self.rooms[p.room];
                let producer = smol::block_on(room.worker.produce(
                    p.client.id,
                    ProduceOptions {
                        kind,
                        rtp_parameters: params,
                        paused: false,
                    },
                ))
                .expect("produce");
                self.publications.push(Publication {
                    peer,
                    mid,
                    source: match kind {
                        MediaKind::Audio => Source::audio(ssrc, now()),
                        MediaKind::Video => Source::video(ssrc, now()),
                    },
                    ssrc,
                    kind,
                    sent: 0,
                    log: SentLog::new(clock_rate(kind == MediaKind::Video)),
                });
                self.producers.push(producer);
            }
        }
        // Consumers after all producers: a consumer takes the next free mid on its transport,
        // which must not be one the peer later produces with (as with one mediasoup-client
        // transport per direction).
        for publication in 0..self.publications.len() {
            let (peer, producer) = (
                self.publications[publication].peer,
                self.producers[publication],
            );
            for other in 0..self.peers.len() {
                let o = &self.peers[other];
                if other == peer || o.room != self.peers[peer].room {
                    continue;
                }
                let room = &self.rooms[o.room];
                let consumed = smol::block_on(room.worker.consume(
                    o.client.id,
                    ConsumeOptions {
                        producer,
                        rtp_capabilities: device_capabilities(&room.caps),
                        paused: false,
                    },
                ))
                .expect("consume");
                self.peers[other]
                    .client
                    .accept_consumer(&consumed.parameters);
                let ssrc = consumed.parameters.rtp_parameters.encodings[0]
                    .ssrc
                    .expect("consumer ssrc");
                self.subscriptions.push(Subscription {
                    peer: other,
                    ssrc,
                    publication,
                    consumer: consumed.id,
                });
            }
        }
    }

    /// Sends media for `duration`, then stops the sources and lets the last packets arrive.
    pub fn run_media(&mut self, duration: Duration) {
        let start = now();
        for p in &mut self.publications {
            p.source = match p.kind {
                MediaKind::Audio => Source::audio(p.ssrc, start),
                MediaKind::Video => Source::video(p.ssrc, start),
            };
        }
        self.media_on = true;
        self.run_for(duration);
        self.media_on = false;
        self.run_for(Duration::from_millis(500));
    }

    /// Pumps for `duration`.
    pub fn run_for(&mut self, duration: Duration) {
        let until = now() + duration;
        while now() < until {
            self.pump();
        }
    }

    /// Checks that every consumer got every packet of its source, intact, in order (frozen
    /// peers excepted).
    pub fn assert_no_loss(&self) {
        for s in &self.subscriptions {
            if self.peers[s.peer].frozen {
                continue;
            }
            let publication = &self.publications[s.publication];
            let logs = [(publication.ssrc, publication.log.clone())].into();
            let everything = publication.log.packets.first().map(|first| {
                let last = publication.log.packets.last().map_or(first.at, |p| p.at);
                Expect::between(publication.ssrc, first.at, last)
            });
            let report = delivery_of(
                &logs,
                &self.peers[s.peer].client.received,
                s.ssrc,
                everything.as_slice(),
            );
            let what = format!(
                "{:?} from peer {} to peer {}",
                publication.kind, publication.peer, s.peer
            );
            let checked = report.check(publication.sent);
            if checked.is_err() {
                let worker = &self.rooms[self.peers[s.peer].room].worker;
                let producer = self.producers[s.publication];
                eprintln!("{what}: sent {}", publication.sent);
                eprintln!(
                    "producer {:?}",
                    smol::block_on(worker.producer_stats(producer))
                );
                eprintln!(
                    "consumer {:?}",
                    smol::block_on(worker.consumer_stats(s.consumer))
                );
                for p in [publication.peer, s.peer] {
                    let id = self.peers[p].client.id;
                    eprintln!(
                        "transport of peer {p}: {:?}",
                        smol::block_on(worker.transport_stats(id))
                    );
                    eprintln!("peer {p} socket sent/refused {:?}", self.peers[p].sent);
                }
            }
            assert!(publication.sent > 0, "{what}: nothing sent");
            if let Err(e) = checked {
                panic!("{what}: {e}");
            }
            assert_eq!(report.runs, 1, "{what}: one continuous run {report:?}");
        }
    }

    /// Packets sent over all publications.
    pub fn packets_sent(&self) -> usize {
        self.publications.iter().map(|p| p.sent).sum()
    }

    /// One turn: read what arrived, send due media, run due timers, send what the clients
    /// want sent. Sleeps a little when nothing happened.
    pub fn pump(&mut self) {
        let mut busy = false;
        let mut buf = vec![0u8; 65_536];
        for i in 0..self.peers.len() {
            busy |= self.read_peer(i, &mut buf);
        }
        let t = now();
        if self.media_on {
            for p in &mut self.publications {
                if p.source.next_at() <= t {
                    let packets = p.source.poll(t);
                    p.sent += packets.len();
                    p.log.record(&packets, t, true);
                    self.peers[p.peer].client.send(t, &p.mid, packets);
                    busy = true;
                }
            }
        }
        let mut key_frames: HashMap<(usize, String), ()> = HashMap::new();
        for (i, peer) in self.peers.iter_mut().enumerate() {
            if peer.client.next_timeout() <= t {
                peer.client.timeout(t);
            }
            busy |= peer.flush(t);
            for mid in peer.client.take_key_frame_requests() {
                key_frames.insert((i, mid.0.to_string()), ());
            }
        }
        for p in &mut self.publications {
            if key_frames.contains_key(&(p.peer, p.mid.clone())) {
                p.source.request_key_frame();
            }
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    fn read_peer(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let peer = &mut self.peers[i];
        let mut busy = false;
        if peer.frozen {
            return false;
        }
        loop {
            let t = now();
            match &mut peer.link {
                Link::Udp(socket) => match socket.recv_from(buf) {
                    Ok((n, from)) => {
                        peer.client
                            .receive(t, Protocol::Udp, canonical(from), &buf[..n]);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client udp receive: {e}"),
                },
                Link::Tcp {
                    stream,
                    decoder,
                    closed,
                    ..
                } => {
                    if *closed {
                        break;
                    }
                    match stream.read(buf) {
                        Ok(0) => {
                            *closed = true;
                            break;
                        }
                        Ok(n) => {
                            decoder.extend(&buf[..n]);
                            let mut frames = Vec::new();
                            while let Some(frame) = decoder.next_frame().expect("server framing") {
                                frames.push(frame.to_vec());
                            }
                            // str0m's rule: drain after every input.
                            let remote = peer.client.remote;
                            for frame in frames {
                                peer.client.receive(t, Protocol::Tcp, remote, &frame);
                                peer.flush(t);
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("client tcp receive: {e}"),
                    }
                }
            }
            busy = true;
            peer.flush(t);
        }
        busy
    }
}

impl Peer {
    /// Sends whatever the client wants sent; true if anything was.
    fn flush(&mut self, t: Instant) -> bool {
        let out = self.client.drain(t);
        let busy = !out.is_empty();
        for tx in out {
            match &mut self.link {
                Link::Udp(socket) => match socket.send_to(&tx.contents, tx.destination) {
                    Ok(_) => self.sent.0 += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => self.sent.1 += 1,
                    Err(e) => panic!("client udp send: {e}"),
                },
                Link::Tcp { out, .. } => {
                    out.extend_from_slice(&frame_header(tx.contents.len()).expect("frame"));
                    out.extend_from_slice(&tx.contents);
                }
            }
        }
        if let Link::Tcp { stream, out, .. } = &mut self.link {
            while !out.is_empty() {
                match stream.write(out) {
                    Ok(n) => {
                        out.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client tcp send: {e}"),
                }
            }
        }
        busy
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}
