#![allow(dead_code)] // Each test binary uses a different part.

// Shared by the integration tests: a room of peers that each publish audio and video and
// consume everyone else.

use std::collections::{HashMap, HashSet};

use sfu_core::ortc::MediaKind;
use std::time::{Duration, Instant};

use sfu_core::{ConsumerId, ProducerId, RouterId};
use sfu_tests::delivery::{delivery, locate, Delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[derive(Debug, Clone)]
pub struct Peer {
    pub router: RouterId,
    pub send: usize,
    pub recv: usize,
    pub audio: ProducerId,
    pub video: ProducerId,
    pub audio_ssrc: u32,
    pub video_ssrc: u32,
}

/// What a consumer is: who receives, which producer, the consumer's SSRC.
#[derive(Debug, Clone)]
pub struct Sub {
    pub router: RouterId,
    /// The publishing client transport.
    pub send: usize,
    pub recv: usize,
    pub producer: ProducerId,
    pub source_ssrc: u32,
    pub kind: MediaKind,
    pub consumer: ConsumerId,
    pub ssrc: u32,
}

pub fn join(sim: &mut Sim, router: RouterId, n: u32, proto: Protocol) -> Peer {
    let send = sim.add_transport(router, proto);
    let recv = sim.add_transport(router, proto);
    publish(sim, router, (send, recv), n, 0)
}

/// As [`join`], with the client transports at chosen addresses, and the sources named apart
/// from their SSRCs: the peer sends RTP on the SSRCs `join` would give peer `n` (so peers of
/// different rooms may collide on them), while its payloads, and so the checker, name them
/// `identity_offset + ssrc`. `Peer::audio_ssrc`/`video_ssrc` hold those identities.
pub fn join_at(
    sim: &mut Sim,
    router: RouterId,
    n: u32,
    proto: Protocol,
    (send_at, recv_at): (std::net::SocketAddr, std::net::SocketAddr),
    identity_offset: u32,
) -> Peer {
    let send = sim.add_transport_at(router, proto, send_at);
    let recv = sim.add_transport_at(router, proto, recv_at);
    publish(sim, router, (send, recv), n, identity_offset)
}

/// Peer `n`'s audio and video on `send` (RTP SSRCs 1000 + 10n and 5000 + 10n, named
/// `identity_offset` + those in their payloads), received on `recv`.
fn publish(
    sim: &mut Sim,
    router: RouterId,
    (send, recv): (usize, usize),
    n: u32,
    identity_offset: u32,
) -> Peer {
    let (audio_rtp, video_rtp) = (1000 + n * 10, 5000 + n * 10);
    let (audio_ssrc, video_ssrc) = (identity_offset + audio_rtp, identity_offset + video_rtp);
    let audio = sim.produce_as(send, MediaKind::Audio, audio_rtp, audio_ssrc);
    let video = sim.produce_as(send, MediaKind::Video, video_rtp, video_ssrc);
    Peer {
        router,
        send,
        recv,
        audio,
        video,
        audio_ssrc,
        video_ssrc,
    }
}

/// A room of `n` peers on UDP, everyone consuming everyone else.
pub fn room_of(sim: &mut Sim, n: u32) -> (Vec<Peer>, Vec<Sub>) {
    let room = sim.create_router();
    let peers: Vec<_> = (0..n).map(|i| join(sim, room, i, Protocol::Udp)).collect();
    let subs = consume_all(sim, &peers);
    (peers, subs)
}

/// Every peer consumes every other peer of its room (server-initiated, created paused and then
/// resumed like mediasoup's recommended flow).
pub fn consume_all(sim: &mut Sim, peers: &[Peer]) -> Vec<Sub> {
    let mut subs = Vec::new();
    for a in peers {
        for b in peers
            .iter()
            .filter(|b| b.router == a.router && b.send != a.send)
        {
            for (producer, source_ssrc, kind) in [
                (b.audio, b.audio_ssrc, MediaKind::Audio),
                (b.video, b.video_ssrc, MediaKind::Video),
            ] {
                let caps = sim.device_caps(a.router);
                let c = sim.consume(a.recv, producer, caps, true);
                sim.sfu.resume_consumer(c.id).unwrap();
                sim.flush();
                let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
                subs.push(Sub {
                    router: a.router,
                    send: b.send,
                    recv: a.recv,
                    producer,
                    source_ssrc,
                    kind,
                    consumer: c.id,
                    ssrc,
                });
            }
        }
    }
    subs
}

/// Which source SSRCs each receiving client may legitimately see.
pub fn allowed_sources(subs: &[Sub]) -> HashMap<usize, Vec<u32>> {
    let mut m: HashMap<usize, Vec<u32>> = HashMap::new();
    for s in subs {
        m.entry(s.recv).or_default().push(s.source_ssrc);
    }
    m
}

/// Simulcast layers a test publisher sends: (rid, SSRC), lowest first.
pub const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 7100), ("r2", 7200)];

/// How long after the end of a run packets may still be in flight (two 10 ms links, RTX).
pub const SETTLE: Duration = Duration::from_millis(200);

/// What `sub`'s receiver got against its source: everything the source sent from its first
/// decodable start after both transports were connected and `after` (or from the first packet
/// received, if that came earlier: a key frame made before the transports were up is sent once
/// they are), until `SETTLE` before now, must have arrived.
pub fn sub_delivery(sim: &Sim, sub: &Sub, after: Instant) -> Delivery {
    let from = connected(sim, &[sub.send, sub.recv]).max(after);
    let end = sim.now - SETTLE;
    let mut expect = Expect::from_first_key_frame(sim, sub.source_ssrc, from, end);
    let first = Expect::from_first_received(sim, sub.recv, sub.ssrc, sub.source_ssrc, end);
    if first.from >= after {
        expect.from = expect.from.min(first.from);
    }
    delivery(sim, sub.recv, sub.ssrc, &[expect])
}

/// For each packet of its source that `sub`'s receiver got (first arrival only): when the source
/// made it and when it arrived. A packet that took much longer than the links' latency was
/// retransmitted. (Source sequence numbers are matched on 16 bits: for runs shorter than 65,536
/// packets per source.)
pub fn arrivals(sim: &Sim, sub: &Sub) -> Vec<(Instant, Instant)> {
    let Some(log) = sim.sent.get(&sub.source_ssrc) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    sim.clients[sub.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == sub.ssrc)
        .filter_map(|p| {
            let info = verify_payload(&p.payload)?;
            let i = locate(log, info.seq, None)?;
            (info.ssrc == sub.source_ssrc && seen.insert(i)).then_some((log.packets[i].at, p.at))
        })
        .collect()
}

/// The one-way latency of the links between the server and `client`. For exact timing claims:
/// asserts the links do not jitter and both directions are equal.
pub fn one_way(sim: &Sim, client: usize) -> Duration {
    let local = sim.clients[client].local;
    let down = sim.net.link_config(sim.server_udp, local);
    let up = sim.net.link_config(local, sim.server_udp);
    assert_eq!(
        down.jitter,
        Duration::ZERO,
        "timing claims need exact links"
    );
    assert_eq!(up.jitter, Duration::ZERO, "timing claims need exact links");
    assert_eq!(down.latency, up.latency);
    down.latency
}

/// When key frame requests for `producer` reached its publishing client, in order.
pub fn key_frame_requests(sim: &Sim, producer: ProducerId) -> Vec<Instant> {
    let mut times: Vec<Instant> = sim
        .publications
        .iter()
        .filter(|p| p.producer == producer)
        .flat_map(|p| p.key_frame_request_times.iter().copied())
        .collect();
    times.sort();
    times
}

/// When all of `clients`' transports were DTLS-connected (media can flow between them).
pub fn connected(sim: &Sim, clients: &[usize]) -> Instant {
    clients
        .iter()
        .map(|&c| sim.dtls_connected_at(c).expect("transport connected"))
        .max()
        .expect("clients")
}
