//! VP8 temporal layers (`L1T3` in each simulcast encoding): a consumer gets the temporal
//! layers it prefers within the encoding it is sent, switching up at layer sync points and
//! down at once, and every frame it receives is decodable, checked from the payload
//! descriptors and the references the synthetic encoder wrote into each frame.

mod common_peers;

use common_peers::LAYERS;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use sfu_tests::layers::{temporal_down_and_up, Stream};
use sfu_tests::media::VP8_TEMPORAL_MAGIC;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[derive(Debug, Clone, Copy)]
struct Packet {
    seq: u64,
    marker: bool,
    start: bool,
    ssrc: u32,
    picture_id: u16,
    temporal: u8,
    reference: Option<u16>,
}

/// Reads the VP8 descriptor (RFC 7741) and the synthetic bitstream behind it.
fn parse(p: &[u8]) -> Option<Packet> {
    let start = *p.first()? & 0x10 != 0;
    if *p.first()? & 0x80 == 0 || *p.get(1)? != 0xe0 {
        return None;
    }
    let picture_id = u16::from_be_bytes([*p.get(2)? & 0x7f, *p.get(3)?]);
    let temporal = *p.get(5)? >> 6;
    let i = if start { 7 } else { 6 };
    if *p.get(i)? != VP8_TEMPORAL_MAGIC {
        return None;
    }
    let ssrc = u32::from_be_bytes(p.get(i + 1..i + 5)?.try_into().ok()?);
    let r = u16::from_be_bytes([*p.get(i + 7)?, *p.get(i + 8)?]);
    Some(Packet {
        seq: 0,
        marker: false,
        start,
        ssrc,
        picture_id,
        temporal,
        reference: (r != 0xffff).then_some(r),
    })
}

#[derive(Debug, Default)]
struct Report {
    frames: usize,
    undecodable: Vec<(u32, u16)>,
    marker_errors: usize,
    gaps: usize,
    sources: BTreeSet<u32>,
    temporal: BTreeSet<u8>,
}

/// Decodes the consumer's stream from its start; reports on the frames that began in
/// `[from, to)` (leaving out the last 20 packets, still in flight).
fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    let stream = Stream::received(sim, client, ssrc, from, to);
    let mut packets: BTreeMap<u64, Packet> = BTreeMap::new();
    for &(seq, r) in &stream.packets {
        if r.payload.is_empty() {
            // Padding: a number that carries no packet of the stream.
            continue;
        }
        let p = parse(&r.payload).expect("a VP8 packet with layers");
        packets.insert(
            seq,
            Packet {
                seq,
                marker: r.marker,
                ..p
            },
        );
    }
    let mut report = Report {
        gaps: stream.gaps(),
        ..Report::default()
    };
    let (Some(&end), Some(start)) = (packets.keys().next_back(), stream.window_start) else {
        return report;
    };
    let horizon = end.saturating_sub(20);
    let list: Vec<Packet> = packets.values().copied().collect();
    let mut decoded: HashSet<(u32, u16)> = HashSet::new();
    let mut started = false;
    let mut i = 0;
    while i < list.len() {
        let p = list[i];
        let mut j = i;
        while j + 1 < list.len()
            && !list[j].marker
            && list[j + 1].seq == list[j].seq + 1
            && (list[j + 1].ssrc, list[j + 1].picture_id) == (p.ssrc, p.picture_id)
        {
            j += 1;
        }
        // The marker only on the frame's last packet.
        let frame = &list[i..=j];
        let in_window = p.seq >= start && p.seq < horizon;
        if in_window && frame.iter().rev().skip(1).any(|q| q.marker) {
            report.marker_errors += 1;
        }
        started |= p.reference.is_none() && p.start;
        if started {
            let complete = p.start && list[j].marker;
            let refs_ok = p.reference.is_none_or(|r| decoded.contains(&(p.ssrc, r)));
            if complete && refs_ok {
                decoded.insert((p.ssrc, p.picture_id));
            } else if in_window {
                report.undecodable.push((p.ssrc, p.picture_id));
            }
            if in_window {
                report.frames += 1;
                report.sources.insert(p.ssrc);
                report.temporal.insert(p.temporal);
            }
        }
        i = j + 1;
    }
    report
}

#[test]
fn vp8_temporal_layers_follow_the_preference_and_stay_decodable() {
    let mut sim = Sim::new(seed_from_env("vp8_temporal_layers"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_simulcast_temporal(alice, &LAYERS);
    let c = sim.consume(bob, producer, sim.device_caps(room), false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.sfu.set_consumer_preferred_layers(c.id, 1).unwrap();
    sim.sfu
        .set_consumer_preferred_temporal_layer(c.id, Some(0))
        .unwrap();
    let t0 = sim.now;
    // (spatial, temporal preference, the encoding and temporal layers then received).
    let steps: [(usize, Option<usize>, u32, &[u8]); 6] = [
        (1, Some(0), 7100, &[0]),
        (1, None, 7100, &[0, 1, 2]),
        (1, Some(1), 7100, &[0, 1]),
        (2, Some(1), 7200, &[0, 1]),
        (2, Some(0), 7200, &[0]),
        (0, Some(2), 7000, &[0, 1, 2]),
    ];
    for (spatial, temporal, source, layers) in steps {
        sim.sfu
            .set_consumer_preferred_layers(c.id, spatial)
            .unwrap();
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
        sim.run_for(Duration::from_secs(2));
        let from = sim.now;
        sim.run_for(Duration::from_secs(1));
        let r = check(&sim, bob, ssrc, from, sim.now);
        println!("preferred {spatial} {temporal:?}: {r:?}");
        assert_eq!(
            r.sources,
            BTreeSet::from([source]),
            "{spatial} {temporal:?}"
        );
        assert_eq!(
            r.temporal,
            layers.iter().copied().collect::<BTreeSet<u8>>(),
            "{spatial} {temporal:?}"
        );
    }
    temporal_down_and_up(&mut sim, c.id);
    // From the first second on: while the encodings start one by one the consumer may begin
    // a key frame of an encoding that is not its own and move on at the next one's.
    let r = check(&sim, bob, ssrc, t0 + Duration::from_secs(1), sim.now);
    println!(
        "whole run: {} frames, sources {:?}, layers {:?}",
        r.frames, r.sources, r.temporal
    );
    assert!(r.frames > 300, "{r:?}");
    assert!(r.undecodable.is_empty(), "undecodable: {:?}", r.undecodable);
    assert_eq!(r.marker_errors, 0);
    assert_eq!(r.gaps, 0);
    let stats = sim.sfu.consumer_stats(c.id).unwrap();
    assert_eq!(stats.current_temporal_layer, Some(2));
    assert_eq!(stats.current_layer, Some(0));
}
