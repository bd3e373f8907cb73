//! Isolation under collision: two rooms on one Sfu whose peers use the same SSRCs (RTX too), the
//! same mids and rids, and client addresses that differ only by port; and clients that send RTP
//! on SSRCs other transports produce. Tests whose peers all have unique SSRCs and addresses
//! cannot tell a lookup by SSRC (or by IP) from one by transport (or by 5-tuple); these can.
//!
//! Sources are named apart from their RTP SSRCs: a source's payloads (and so the delivery
//! checker) carry an identity unique in the whole simulation, while its RTP SSRC is the same in
//! both rooms. A packet that reaches a consumer of the wrong room, or that a spoofer made,
//! shows up as a packet from a source the consumer does not carry.

mod common_peers;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common_peers::{consume_all, join_at, sub_delivery, Peer, Sub, SETTLE};
use sfu_core::ortc::MediaKind;
use sfu_core::{ConsumerId, ProducerId, RouterId};
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::{verify_payload, Source};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The one IP address every client of these tests uses; clients differ only by port.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9));

/// Simulcast layers, the same rids and RTP SSRCs in every room (RTX on SSRC + 1).
const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 7010), ("r2", 7020)];

/// What room `room`'s sources add to their RTP SSRC to make their identity. Identities start
/// their sequence numbers at `identity % 20_000 + 1` (see `media::initial_sequence`): the rooms'
/// colliding sources are 1,000 apart, so a packet forwarded into the wrong room is not taken
/// for a duplicate of one already forwarded there, and reaches (and fails) the checker.
fn identity_offset(room: u32) -> u32 {
    20_000 * (room + 1) + 1_000 * room
}

/// The send and receive transport addresses of peer `n` of room `room`.
fn peer_addrs(room: u32, n: u32) -> (SocketAddr, SocketAddr) {
    let port = 50_000 + 100 * room as u16 + 2 * n as u16;
    (
        SocketAddr::new(CLIENT_IP, port),
        SocketAddr::new(CLIENT_IP, port + 1),
    )
}

/// A simulcast producer's consumer.
#[derive(Debug, Clone)]
struct SimulcastSub {
    send: usize,
    recv: usize,
    consumer: ConsumerId,
    ssrc: u32,
    /// The layers' identities, lowest first.
    layers: [u32; 3],
}

/// Publishes [`LAYERS`] from `publisher` under room `room`'s identities, and has every other peer
/// of `peers` in the same room consume it.
fn simulcast_in_room(
    sim: &mut Sim,
    room: u32,
    publisher: &Peer,
    peers: &[Peer],
) -> (ProducerId, Vec<SimulcastSub>) {
    let off = identity_offset(room);
    let layers: Vec<(&str, u32, u32)> = LAYERS.iter().map(|&(r, s)| (r, s, off + s)).collect();
    let producer = sim.produce_simulcast_as(publisher.send, &layers);
    let identities = LAYERS.map(|(_, s)| off + s);
    let mut subs = Vec::new();
    for p in peers
        .iter()
        .filter(|p| p.router == publisher.router && p.send != publisher.send)
    {
        let caps = sim.device_caps(p.router);
        let c = sim.consume(p.recv, producer, caps, true);
        sim.sfu.resume_consumer(c.id).unwrap();
        sim.flush();
        subs.push(SimulcastSub {
            send: publisher.send,
            recv: p.recv,
            consumer: c.id,
            ssrc: c.parameters.rtp_parameters.encodings[0].ssrc.unwrap(),
            layers: identities,
        });
    }
    (producer, subs)
}

fn assert_clean_sub(sim: &Sim, sub: &Sub, min: usize) {
    let d = sub_delivery(sim, sub, sim.start);
    if let Err(e) = d.check(min) {
        panic!(
            "{:?} consumer {} of source {} (receiver {}): {e}\nproducer {:?}\nrecv transport {:?}",
            sub.kind,
            sub.consumer,
            sub.source_ssrc,
            sub.recv,
            sim.sfu.producer_stats(sub.producer),
            sim.sfu.transport_stats(sim.clients[sub.recv].id),
        );
    }
    assert_eq!(d.runs, 1, "one continuous run: {d:?}");
    if sub.kind == MediaKind::Video {
        assert!(d.first_is_key_frame, "video must start with a key frame");
    }
}

/// The consumer gets the top layer from the key frame it switched to it at (within a second of
/// both transports being up) until the end, clean; before that only lower layers of its own
/// producer.
fn assert_clean_simulcast(sim: &Sim, s: &SimulcastSub) {
    let up = [s.send, s.recv]
        .map(|c| sim.dtls_connected_at(c).expect("connected"))
        .into_iter()
        .max()
        .unwrap();
    let end = sim.now - SETTLE;
    let top = s.layers[2];
    let first_top = sim.clients[s.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == s.ssrc)
        .filter_map(|p| verify_payload(&p.payload))
        .find(|i| i.ssrc == top)
        .unwrap_or_else(|| panic!("consumer {} never got the top layer", s.consumer));
    let switched_at = sim.sent[&top]
        .packets
        .iter()
        .find(|p| p.seq as u16 == first_top.seq)
        .expect("a packet the top layer made")
        .at;
    assert!(
        switched_at <= up + Duration::from_secs(1),
        "consumer {} reached the top layer only {:?} after connecting",
        s.consumer,
        switched_at - up
    );
    let never = end + Duration::from_nanos(1);
    let expect = [
        Expect::between(top, switched_at, end),
        Expect::between(s.layers[0], never, end),
        Expect::between(s.layers[1], never, end),
    ];
    let d = delivery(sim, s.recv, s.ssrc, &expect);
    if let Err(e) = d.check(300) {
        panic!(
            "simulcast consumer {} (receiver {}): {e}",
            s.consumer, s.recv
        );
    }
    let (last, before) = d.run_sources.split_last().expect("runs");
    assert!(
        *last == top && before.iter().all(|l| s.layers[..2].contains(l)),
        "lower layers, then the top layer: {:?}",
        d.run_sources
    );
}

/// Every client transport is DTLS-connected, and the server sends to it at its own address.
fn assert_connected_on_own_paths(sim: &Sim) {
    for (i, c) in sim.clients.iter().enumerate() {
        assert!(
            sim.dtls_connected_at(i).is_some(),
            "client {i} ({}) never connected",
            c.local
        );
        let stats = sim.sfu.transport_stats(c.id).unwrap();
        let tuple = stats.selected_tuple.expect("a selected path");
        assert_eq!(
            tuple.remote, c.local,
            "client {i}'s transport sends to another client's address"
        );
    }
}

/// Which identities each receiving client may see.
fn allowed(subs: &[Sub], simulcast: &[SimulcastSub]) -> HashMap<usize, HashSet<u32>> {
    let mut m: HashMap<usize, HashSet<u32>> = HashMap::new();
    for s in subs {
        m.entry(s.recv).or_default().insert(s.source_ssrc);
    }
    for s in simulcast {
        m.entry(s.recv).or_default().extend(s.layers);
    }
    m
}

/// Every packet any client received verifies and comes from a source it consumes; send
/// transports receive no media at all.
fn assert_nothing_foreign(sim: &Sim, allowed: &HashMap<usize, HashSet<u32>>) {
    for (i, c) in sim.clients.iter().enumerate() {
        let mine = allowed.get(&i);
        for p in &c.received {
            let info = verify_payload(&p.payload)
                .unwrap_or_else(|| panic!("client {i} got a payload no source made"));
            assert!(
                mine.is_some_and(|m| m.contains(&info.ssrc)),
                "client {i} ({}) got a packet of source {} it does not consume",
                c.local,
                info.ssrc
            );
        }
    }
}

/// How many packets the sources with these identities sent (not muted).
fn sent_count(sim: &Sim, identities: &[u32]) -> u64 {
    identities
        .iter()
        .map(|id| sim.sent[id].packets.iter().filter(|p| p.sent).count() as u64)
        .sum()
}

/// A producer received no more packets than its own sources sent, and most of them (the ones
/// sent before DTLS was up cannot arrive).
fn assert_producer_counts(sim: &Sim, producer: ProducerId, identities: &[u32]) {
    let sent = sent_count(sim, identities);
    let got = sim.sfu.producer_stats(producer).unwrap().packets_received;
    assert!(
        got <= sent && got * 10 >= sent * 8,
        "producer {producer} of sources {identities:?} received {got} packets, its sources sent {sent}"
    );
}

/// One router per entry of `sizes`, with that many peers (see [`join_at`]) at [`peer_addrs`].
fn rooms(sim: &mut Sim, sizes: &[u32]) -> (Vec<RouterId>, Vec<Peer>) {
    let mut routers = Vec::new();
    let mut peers = Vec::new();
    for (room, &n) in sizes.iter().enumerate() {
        let room = room as u32;
        let router = sim.create_router();
        routers.push(router);
        for i in 0..n {
            peers.push(join_at(
                sim,
                router,
                i,
                Protocol::Udp,
                peer_addrs(room, i),
                identity_offset(room),
            ));
        }
    }
    (routers, peers)
}

#[test]
fn rooms_with_the_same_ssrcs_mids_rids_and_ip_stay_apart() {
    let mut sim = Sim::new(seed_from_env("isolation_collision"));
    let (routers, peers) = rooms(&mut sim, &[3, 3]);
    // The same SSRCs, mids and rids in both rooms: peer i of each room sends audio on
    // 1000 + 10 i (mid 0), video on 5000 + 10 i with RTX on 5001 + 10 i (mid 1); peer 0 of each
    // room also sends simulcast (mid 2) with rids r0..r2 on 7000, 7010, 7020 (RTX + 1).
    let mut simulcast = Vec::new();
    let mut simulcast_producers = Vec::new();
    for (room, &router) in routers.iter().enumerate() {
        let publisher = peers.iter().find(|p| p.router == router).unwrap().clone();
        let (producer, subs) = simulcast_in_room(&mut sim, room as u32, &publisher, &peers);
        simulcast_producers.push((producer, subs[0].layers));
        simulcast.extend(subs);
    }
    let subs = consume_all(&mut sim, &peers);
    assert_eq!(subs.len(), 2 * 3 * 2 * 2);
    assert_eq!(simulcast.len(), 2 * 2);
    sim.run_for(Duration::from_secs(5));

    assert_connected_on_own_paths(&sim);
    // Nothing crossed: no receiver got a packet of a source it does not consume.
    assert_nothing_foreign(&sim, &allowed(&subs, &simulcast));
    // Each producer counted its own sources' packets, not the other room's too.
    for p in &peers {
        assert_producer_counts(&sim, p.audio, &[p.audio_ssrc]);
        assert_producer_counts(&sim, p.video, &[p.video_ssrc]);
    }
    for (producer, layers) in &simulcast_producers {
        assert_producer_counts(&sim, *producer, layers);
    }
    // Every consumer got exactly its own room's source, complete and in order.
    for sub in &subs {
        let min = if sub.kind == MediaKind::Audio {
            200
        } else {
            400
        };
        assert_clean_sub(&sim, sub, min);
    }
    for s in &simulcast {
        assert_clean_simulcast(&sim, s);
    }
}

/// A spoofed stream: on which of the spoofer's mids, on whose SSRC, what it sends.
struct Spoof {
    mid: &'static str,
    ssrc: u32,
    source: Source,
}

#[test]
fn ssrcs_spoofed_from_another_transport_are_dropped_counted_and_reach_no_one() {
    let mut sim = Sim::new(seed_from_env("isolation_spoof"));
    // Room A: a0 (the spoofer) and a1, who also sends simulcast. Room B: b0, b1 (on a1's SSRCs
    // too) and b2 (on SSRCs no one in room A has).
    let (_, peers) = rooms(&mut sim, &[2, 3]);
    let (a0, a1) = (peers[0].clone(), peers[1].clone());
    let (simulcast_producer, simulcast) = simulcast_in_room(&mut sim, 0, &a1, &peers);
    let subs = consume_all(&mut sim, &peers);

    // The spoofer is a0's send transport. Besides its real audio and video (mids 0 and 1) it
    // produced decoys on mids 2 to 6 with SSRCs no one else uses, never sent: it takes them
    // over to send other transports' SSRCs (the server's stack hands such packets on only on a
    // mid the transport produces). And it sends on a mid it never produced, too.
    let spoofer = a0.send;
    for (i, kind) in [MediaKind::Audio, MediaKind::Audio]
        .into_iter()
        .chain([MediaKind::Video; 3])
        .enumerate()
    {
        let ssrc = 9000 + 10 * i as u32;
        let decoy = sim.produce_as(spoofer, kind, ssrc, 0x5a00_0000 + ssrc);
        sim.set_muted(decoy, true);
    }
    sim.run_for(Duration::from_secs(1));

    let stats = |sim: &Sim| -> Vec<u64> {
        sim.clients
            .iter()
            .map(|c| sim.sfu.transport_stats(c.id).unwrap().rtp_dropped)
            .collect()
    };
    let before = stats(&sim);
    let now = sim.now;
    let spoof = |mid, ssrc: u32, video: bool| Spoof {
        mid,
        ssrc,
        source: if video {
            Source::video(0x5b00_0000 + ssrc, now)
        } else {
            Source::audio(0x5b00_0000 + ssrc, now)
        },
    };
    let mut spoofs = [
        // a1's audio and video (and b1's, in room B).
        spoof("2", 1010, false),
        spoof("4", 5010, true),
        // b2's audio and video, only in room B.
        spoof("3", 1020, false),
        spoof("5", 5020, true),
        // a1's simulcast layer r1, which the server learned by rid.
        spoof("6", 7010, true),
        // a1's video RTX SSRC, on a mid the spoofer never produced.
        spoof("9", 5011, false),
    ];
    let mut spoofed = 0u64;
    let spoof_until = sim.now + Duration::from_secs(3);
    while sim.now < spoof_until {
        let now = sim.now;
        for s in &mut spoofs {
            let packets = s.source.poll(now);
            spoofed += packets.len() as u64;
            sim.clients[spoofer].send_spoofed(now, s.mid, s.ssrc, packets);
        }
        sim.flush();
        sim.run_for(Duration::from_millis(20));
    }
    sim.run_for(Duration::from_secs(1));
    let after = stats(&sim);
    assert_connected_on_own_paths(&sim);

    // No one received a spoofed packet (nor anything else foreign).
    assert_nothing_foreign(&sim, &allowed(&subs, &simulcast));
    // Dropped and counted on the spoofer's transport, every one; no other transport dropped
    // anything.
    let dropped = after[spoofer] - before[spoofer];
    assert_eq!(
        dropped, spoofed,
        "spoofed packets sent ({spoofed}) and counted dropped on the spoofer's transport ({dropped})"
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if i != spoofer {
            assert_eq!(a, b, "client {i}'s transport dropped RTP");
        }
    }
    // The real producers' consumers, in both rooms, were undisturbed (the spoofer's own too).
    for sub in &subs {
        let min = if sub.kind == MediaKind::Audio {
            150
        } else {
            300
        };
        assert_clean_sub(&sim, sub, min);
    }
    for s in &simulcast {
        assert_clean_simulcast(&sim, s);
    }
    // The spoofed packets were not counted as the real producers' either.
    for p in &peers {
        assert_producer_counts(&sim, p.audio, &[p.audio_ssrc]);
        assert_producer_counts(&sim, p.video, &[p.video_ssrc]);
    }
    assert_producer_counts(&sim, simulcast_producer, &simulcast[0].layers);
}
