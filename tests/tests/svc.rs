//! VP9 SVC (`L3T3_KEY`): consumers get the spatial and temporal layers they prefer (or the
//! bandwidth allows), and every frame they receive is decodable, checked from the payload
//! descriptors and the references the synthetic encoder wrote into each frame.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use sfu_core::ortc::ConsumerType;
use sfu_core::{ConsumerId, ProducerId};
use sfu_tests::layers::{
    consumer_ssrc as ssrc_of, link_step, loss_and_rate, run_watching, set_capacity_toward,
    temporal_down_and_up, Stream,
};
use sfu_tests::media::SVC_MAGIC;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// What one received packet says about itself.
#[derive(Debug, Clone, Copy)]
struct Packet {
    /// The consumer's sequence number, extended.
    seq: u64,
    marker: bool,
    picture_id: u16,
    spatial: u8,
    temporal: u8,
    /// Begins / ends its layer frame.
    begins: bool,
    ends: bool,
    /// Refers to the spatial layer below in the same picture.
    inter_layer: bool,
    /// The picture its layer frame refers to in its own spatial layer (none: intra).
    reference: Option<u16>,
}

/// Reads the VP9 descriptor (RFC 9628) and the synthetic bitstream behind it (sequence number
/// and marker left for the caller).
fn parse(payload: &[u8]) -> Option<Packet> {
    let f = *payload.first()?;
    let mut i = 1;
    let mut picture_id = 0;
    if f & 0x80 != 0 {
        let b = *payload.get(i)?;
        if b & 0x80 != 0 {
            picture_id = u16::from_be_bytes([b & 0x7f, *payload.get(i + 1)?]);
            i += 2;
        } else {
            picture_id = u16::from(b);
            i += 1;
        }
    }
    let (mut temporal, mut spatial, mut inter_layer) = (0, 0, false);
    if f & 0x20 != 0 {
        let l = *payload.get(i)?;
        temporal = l >> 5;
        spatial = (l >> 1) & 7;
        inter_layer = l & 1 != 0;
        i += if f & 0x10 == 0 { 2 } else { 1 };
    }
    if f & 0x02 != 0 {
        let b = *payload.get(i)?;
        i += 1;
        if b & 0x10 != 0 {
            i += 4 * (usize::from(b >> 5) + 1);
        }
        if b & 0x08 != 0 {
            let groups = *payload.get(i)?;
            i += 1;
            for _ in 0..groups {
                let g = *payload.get(i)?;
                i += 1 + usize::from((g >> 2) & 3);
            }
        }
    }
    if *payload.get(i)? != SVC_MAGIC {
        return None;
    }
    let r = u16::from_be_bytes([*payload.get(i + 7)?, *payload.get(i + 8)?]);
    Some(Packet {
        seq: 0,
        marker: false,
        picture_id,
        spatial,
        temporal,
        begins: f & 0x08 != 0,
        ends: f & 0x04 != 0,
        inter_layer,
        reference: (r != 0xffff).then_some(r),
    })
}

/// What a consumer's stream looked like.
#[derive(Debug, Default)]
struct Report {
    packets: usize,
    frames: usize,
    undecodable: Vec<(u16, u8)>,
    marker_errors: Vec<u16>,
    /// Places where numbers are missing (not received, not filled with padding).
    gaps: usize,
    /// Numbers received as padding.
    filled: usize,
    spatial: BTreeSet<u8>,
    temporal: BTreeSet<u8>,
}

/// Checks the packets `client` received on `ssrc` in `[from, to)`, decoding from the start of
/// the stream: sequence numbers contiguous, every layer frame complete and its references (in
/// its own layer and, for inter-layer frames, the layer below) received before it, the marker
/// bit on the last packet of each picture and nowhere else. Frames in the last 30 packets
/// are left out (still in flight).
fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    let stream = Stream::received(sim, client, ssrc, from, to);
    let mut packets: BTreeMap<u64, Packet> = BTreeMap::new();
    for &(seq, r) in &stream.packets {
        if r.payload.is_empty() {
            // Padding: a number that carries no packet of the stream.
            continue;
        }
        let Some(p) = parse(&r.payload) else {
            panic!("a packet without a VP9 descriptor: {:?}", &r.payload[..8]);
        };
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
        filled: stream.filled(),
        ..Report::default()
    };
    let (Some(&end), Some(start)) = (packets.keys().next_back(), stream.window_start) else {
        return report;
    };
    let horizon = end.saturating_sub(30);
    let list: Vec<Packet> = packets.values().copied().collect();
    report.packets = packets.range(start..).count();
    // Layer frames in order of their first packet; each starts with B and ends with E.
    let mut decoded: HashSet<(u16, u8)> = HashSet::new();
    let mut started = false;
    let mut i = 0;
    while i < list.len() {
        let p = list[i];
        let in_window = p.seq >= start && p.seq < horizon;
        if p.seq >= start {
            report.spatial.insert(p.spatial);
            report.temporal.insert(p.temporal);
        }
        let mut j = i;
        while j + 1 < list.len()
            && !list[j].ends
            && list[j + 1].seq == list[j].seq + 1
            && (list[j + 1].picture_id, list[j + 1].spatial) == (p.picture_id, p.spatial)
            && !list[j + 1].begins
        {
            j += 1;
        }
        let complete = p.begins && list[j].ends;
        let key = p.reference.is_none() && !p.inter_layer;
        // The check starts at the first key frame in the window.
        started |= key && p.spatial == 0;
        if started {
            let refs_ok = p
                .reference
                .is_none_or(|r| decoded.contains(&(r, p.spatial)));
            let below_ok = !p.inter_layer || decoded.contains(&(p.picture_id, p.spatial - 1));
            if complete && refs_ok && below_ok {
                decoded.insert((p.picture_id, p.spatial));
            } else if in_window {
                report.undecodable.push((p.picture_id, p.spatial));
            }
            if in_window {
                report.frames += 1;
            }
        }
        i = j + 1;
    }
    // The marker: on the last packet of each picture only.
    let mut pictures: BTreeMap<u64, Vec<Packet>> = BTreeMap::new();
    let mut current: Option<(u16, u64)> = None;
    for p in &list {
        let key = match current {
            Some((pid, first)) if pid == p.picture_id => first,
            _ => p.seq,
        };
        current = Some((p.picture_id, key));
        pictures.entry(key).or_default().push(*p);
    }
    for (first, ps) in &pictures {
        if *first >= horizon || *first < start || !started {
            continue;
        }
        let n = ps.len();
        let ok = ps.iter().enumerate().all(|(k, p)| p.marker == (k + 1 == n));
        if !ok {
            report.marker_errors.push(ps[0].picture_id);
        }
    }
    report
}

fn assert_decodable(what: &str, r: &Report) {
    println!(
        "{what}: {} packets, {} frames, layers S{:?} T{:?}",
        r.packets, r.frames, r.spatial, r.temporal
    );
    assert!(r.frames > 20, "{what}: too few frames: {r:?}");
    assert!(
        r.undecodable.is_empty(),
        "{what}: undecodable frames (picture, spatial layer): {:?}",
        r.undecodable
    );
    assert!(
        r.marker_errors.is_empty(),
        "{what}: pictures with a wrong marker: {:?}",
        r.marker_errors
    );
    assert_eq!(r.gaps, 0, "{what}: sequence number gaps");
}

fn svc_room(sim: &mut Sim) -> (ProducerId, sfu_core::RouterId) {
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    (sim.produce_vp9_svc(alice, 3300), room)
}

#[test]
fn svc_consumers_get_their_layers_decodable() {
    let mut sim = Sim::new(seed_from_env("svc_layers"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let (full, low, slow) = (
        sim.add_transport(room, Protocol::Udp),
        sim.add_transport(room, Protocol::Udp),
        sim.add_transport(room, Protocol::Udp),
    );
    let c_full = sim.consume(full, producer, caps.clone(), false);
    assert_eq!(c_full.parameters.consumer_type, ConsumerType::Svc);
    let c_low = sim.consume(low, producer, caps.clone(), false);
    sim.sfu.set_consumer_preferred_layers(c_low.id, 0).unwrap();
    let c_slow = sim.consume(slow, producer, caps, false);
    // Through the control API, as a runtime's handle sends it.
    let reply = sim.sfu.handle_request(
        sfu_core::control::Request::SetConsumerPreferredTemporalLayer {
            consumer: c_slow.id,
            temporal_layer: Some(0),
        },
    );
    assert!(reply.is_ok(), "{reply:?}");
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(6));
    let rates = sim
        .sfu
        .producer_stats(producer)
        .unwrap()
        .bitrate_per_spatial_layer;
    println!("spatial layer bitrates: {rates:?}");
    assert_eq!(rates.len(), 3);
    assert!(rates[0] < 300_000 && rates[1] < 700_000 && rates[2] > 1_200_000);

    let r = check(&sim, full, ssrc_of(&c_full), t0, sim.now);
    assert_decodable("full", &r);
    assert_eq!(r.spatial, BTreeSet::from([0, 1, 2]));
    assert_eq!(r.temporal, BTreeSet::from([0, 1, 2]));
    let r = check(&sim, low, ssrc_of(&c_low), t0, sim.now);
    assert_decodable("spatial 0", &r);
    assert_eq!(r.spatial, BTreeSet::from([0]));
    assert_eq!(r.temporal, BTreeSet::from([0, 1, 2]));
    let r = check(&sim, slow, ssrc_of(&c_slow), t0, sim.now);
    assert_decodable("temporal 0", &r);
    assert_eq!(r.spatial, BTreeSet::from([0, 1, 2]));
    assert_eq!(r.temporal, BTreeSet::from([0]));
    let stats = sim.sfu.consumer_stats(c_slow.id).unwrap();
    assert_eq!(
        (stats.current_spatial_layer, stats.current_temporal_layer),
        (Some(2), Some(0))
    );
    assert!(stats.packets_dropped_for_layers > 0);
    let stats = sim.sfu.consumer_stats(c_low.id).unwrap();
    assert_eq!(
        (stats.current_spatial_layer, stats.current_temporal_layer),
        (Some(0), Some(2))
    );
}

/// The layers received in `[from, to)`.
fn layers(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> (u8, u8) {
    let r = check(sim, client, ssrc, from, to);
    (
        r.spatial.last().copied().unwrap_or(0),
        r.temporal.last().copied().unwrap_or(0),
    )
}

#[test]
fn switching_preferred_layers_mid_stream_stays_decodable() {
    let mut sim = Sim::new(seed_from_env("svc_switching"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = ssrc_of(&c);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(3));
    let steps: [(usize, Option<usize>, (u8, u8)); 7] = [
        (0, None, (0, 2)),
        (0, Some(0), (0, 0)),
        (0, None, (0, 2)),
        (1, Some(1), (1, 1)),
        (2, Some(2), (2, 2)),
        (1, Some(0), (1, 0)),
        (2, None, (2, 2)),
    ];
    for (spatial, temporal, want) in steps {
        sim.sfu
            .set_consumer_preferred_layers(c.id, spatial)
            .unwrap();
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
        // A spatial layer up waits for a key frame (asked for, at most one a second).
        sim.run_for(Duration::from_secs(2));
        let from = sim.now;
        sim.run_for(Duration::from_secs(1));
        assert_eq!(
            layers(&sim, bob, ssrc, from, sim.now),
            want,
            "preferred {spatial} {temporal:?}"
        );
    }
    temporal_down_and_up(&mut sim, c.id);
    let r = check(&sim, bob, ssrc, t0, sim.now);
    assert_decodable("switching", &r);
}

#[test]
fn svc_consumer_behind_a_weak_link_moves_to_a_layer_that_fits() {
    let mut sim = Sim::new(seed_from_env("svc_allocation"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = ssrc_of(&c);
    let spatial =
        |sim: &Sim, id: ConsumerId| sim.sfu.consumer_stats(id).unwrap().current_spatial_layer;
    let step = link_step(
        &mut sim,
        bob,
        ssrc,
        |sim| spatial(sim, c.id) == Some(2),
        Duration::ZERO,
        |_, _, _| {},
    );
    let (top, _) = layers(&sim, bob, ssrc, step.settled, step.recovered_at);
    assert!(top < 2, "the top spatial layer after the drop");
    let r = check(&sim, bob, ssrc, step.settled, step.recovered_at);
    println!("after the drop: {r:?}");
    assert!(
        r.undecodable.is_empty(),
        "undecodable frames after the drop: {:?}",
        r.undecodable
    );
    sim.run_for(Duration::from_secs(2));
    let r = check(&sim, bob, ssrc, step.recovered_at + step.back, sim.now);
    assert_decodable("after the recovery", &r);

    // With little headroom the key picture that switching up asks for congests the path and
    // the estimate moves the consumer down again; it then waits longer before each new
    // attempt (each costs the publisher a key picture) instead of trying every few seconds.
    let mut ups = Vec::new();
    let mut on_top = spatial(&sim, c.id) == Some(2);
    run_watching(
        &mut sim,
        Duration::from_secs(30),
        |_| false,
        |sim, at| {
            let top = spatial(sim, c.id) == Some(2);
            if top && !on_top {
                ups.push(at);
            }
            on_top = top;
        },
    );
    let waits: Vec<Duration> = ups.windows(2).map(|w| w[1] - w[0]).collect();
    println!("moved up again after {waits:?}");
    assert!(ups.len() <= 4, "moved up {} times in 30 s", ups.len());
    assert!(
        waits
            .windows(2)
            .all(|w| w[1] + Duration::from_millis(500) >= w[0]),
        "the waits shrank: {waits:?}"
    );
}

/// The publisher stops its top spatial layer and later sends it again: the consumer moves down
/// without asking for key frames it cannot get, stays decodable, and climbs back at the key
/// frame it asks for once the layer is back.
#[test]
fn a_spatial_layer_the_publisher_stops_is_not_waited_for() {
    let mut sim = Sim::new(seed_from_env("svc_layer_stops"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = ssrc_of(&c);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(3));
    let publication = sim
        .publications
        .iter()
        .position(|p| p.producer == producer)
        .unwrap();
    sim.publications[publication].source.svc_layers_sent = 2;
    sim.run_for(Duration::from_secs(2));
    let requests_before = sim.publications[publication].key_frame_requests;
    let from = sim.now;
    sim.run_for(Duration::from_secs(4));
    let requests = sim.publications[publication].key_frame_requests - requests_before;
    assert_eq!(requests, 0, "key frames asked for a layer not sent");
    assert_eq!(layers(&sim, bob, ssrc, from, sim.now).0, 1);
    let stats = sim.sfu.consumer_stats(c.id).unwrap();
    assert_eq!(stats.current_spatial_layer, Some(1));

    sim.publications[publication].source.svc_layers_sent = 3;
    let back_from = sim.now;
    sim.run_for(Duration::from_secs(2));
    let stats = sim.sfu.consumer_stats(c.id).unwrap();
    assert_eq!(
        stats.current_spatial_layer,
        Some(2),
        "back up at a key frame"
    );
    let from = sim.now;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(layers(&sim, bob, ssrc, from, sim.now).0, 2);
    let requests = sim.publications[publication].key_frame_requests;
    println!(
        "key frame requests in all: {requests}; back after {:?}",
        from - back_from
    );
    let r = check(&sim, bob, ssrc, t0, sim.now);
    assert_decodable("layer stops", &r);
}

/// Behind a link narrower than the lowest spatial layer, the consumer keeps spatial layer 0
/// and gives up temporal layers until what it gets fits; what it gets stays decodable.
#[test]
fn below_the_lowest_spatial_layer_the_frame_rate_goes_down() {
    let mut sim = Sim::new(seed_from_env("svc_temporal_allocation"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = ssrc_of(&c);
    set_capacity_toward(&mut sim, bob, 3_000_000);
    sim.run_for(Duration::from_secs(5));
    set_capacity_toward(&mut sim, bob, 100_000);
    for _ in 0..10 {
        sim.run_for(Duration::from_secs(1));
        let t = sim.sfu.transport_stats(sim.clients[bob].id).unwrap();
        let st = sim.sfu.consumer_stats(c.id).unwrap();
        println!(
            "estimate {:?}, S{:?} T{:?} target S{:?} T{:?}",
            t.available_outgoing_bitrate,
            st.current_spatial_layer,
            st.current_temporal_layer,
            st.target_layer,
            st.target_temporal_layer
        );
    }
    let stats = sim.sfu.consumer_stats(c.id).unwrap();
    println!(
        "layers S{:?} T{:?}, temporal target {:?}",
        stats.current_spatial_layer, stats.current_temporal_layer, stats.target_temporal_layer
    );
    assert_eq!(stats.current_spatial_layer, Some(0));
    assert!(
        stats.current_temporal_layer.is_some_and(|t| t < 2),
        "{stats:?}"
    );
    let from = sim.now;
    sim.run_for(Duration::from_secs(4));
    let (loss, rate) = loss_and_rate(&sim, bob, ssrc, from, sim.now);
    println!("loss {loss:.3}, {rate} bit/s received");
    assert!(rate < 100_000, "{rate}");
    let r = check(&sim, bob, ssrc, from, sim.now);
    println!("{r:?}");
    assert!(r.temporal.iter().all(|&t| t < 2), "{:?}", r.temporal);
    assert!(r.undecodable.is_empty(), "{:?}", r.undecodable);
}

/// Losses on both sides (the publisher's packets repaired by retransmission arrive late, the
/// consumer's endpoint asks again for what it lost): a consumer of spatial layer 0, for which
/// most packets are dropped, never gets two packets under one number, and every frame it gets
/// decodes. Where a packet it does not get was lost on the way in and could not be placed (at
/// a frame's edge) before its repair came, its number is filled with padding: no number stays
/// missing.
#[test]
fn svc_with_losses_on_both_sides_numbers_and_repairs_consistently() {
    let mut sim = Sim::new(seed_from_env("svc_losses"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    sim.sfu.set_consumer_preferred_layers(c.id, 0).unwrap();
    sim.sfu
        .set_consumer_preferred_temporal_layer(c.id, Some(1))
        .unwrap();
    let ssrc = ssrc_of(&c);
    sim.run_for(Duration::from_secs(2));
    sim.net.set_default_link(
        LinkConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_loss(0.05),
    );
    let from = sim.now;
    sim.run_for(Duration::from_secs(8));
    sim.net
        .set_default_link(LinkConfig::default().with_latency(Duration::from_millis(20)));
    sim.run_for(Duration::from_secs(2));
    // Every number carries one packet: its copies (retransmissions) have the same bytes.
    let mut by_seq: BTreeMap<u16, &[u8]> = BTreeMap::new();
    for p in sim.clients[bob].received.iter().filter(|p| p.ssrc == ssrc) {
        if let Some(prev) = by_seq.insert(p.seq, &p.payload) {
            assert_eq!(prev, &p.payload[..], "number {} carried two packets", p.seq);
        }
    }
    let r = check(&sim, bob, ssrc, from, sim.now);
    println!("{r:?}");
    assert_eq!(r.spatial, BTreeSet::from([0]));
    assert!(r.temporal.iter().all(|&t| t <= 1));
    assert!(r.frames > 100, "{r:?}");
    assert!(r.undecodable.is_empty(), "{:?}", r.undecodable);
    // A number stays missing only for a packet the SFU never got (the publisher's link lost
    // it and its retransmissions): whether it was of the consumer's layers nobody can tell.
    let lost = sim.sfu.producer_stats(producer).unwrap().packets_lost;
    assert!(
        r.gaps as i64 <= lost,
        "numbers left missing: {r:?}, {lost} packets never received from the publisher"
    );
    let stats = sim.sfu.consumer_stats(c.id).unwrap();
    assert!(
        r.filled > 0 && stats.numbers_filled >= r.filled as u64,
        "{stats:?}"
    );
}
