#![allow(dead_code)] // Each test binary uses a different part.

// Shared by the integration tests: a room of peers that each publish audio and video and
// consume everyone else.

use std::collections::HashMap;

use sfu_core::ortc::MediaKind;
use std::time::{Duration, Instant};

use sfu_core::{ConsumerId, ProducerId, RouterId};
use sfu_tests::delivery::{delivery, Delivery, Expect};
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
    let audio_ssrc = 1000 + n * 10;
    let video_ssrc = 5000 + n * 10;
    let audio = sim.produce(send, MediaKind::Audio, audio_ssrc);
    let video = sim.produce(send, MediaKind::Video, video_ssrc);
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

/// How long after the end of a run packets may still be in flight (two 10 ms links, RTX).
pub const SETTLE: Duration = Duration::from_millis(200);

/// What `sub`'s receiver got against its source: everything the source sent from its first
/// decodable start after both transports were connected and `after`, until `SETTLE` before now,
/// must have arrived.
pub fn sub_delivery(sim: &Sim, sub: &Sub, after: Instant) -> Delivery {
    let up = [
        sim.dtls_connected_at(sub.send),
        sim.dtls_connected_at(sub.recv),
    ]
    .into_iter()
    .map(|t| t.expect("transport connected"))
    .fold(after, Instant::max);
    let expect = Expect::from_first_key_frame(sim, sub.source_ssrc, up, sim.now - SETTLE);
    delivery(sim, sub.recv, sub.ssrc, &[expect])
}
