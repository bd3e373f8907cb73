//! AV1 with the dependency descriptor, `L1T3` and `L3T3_KEY`: consumers get the spatial and
//! temporal layers they prefer (or their link allows), and every frame they receive is
//! decodable, checked from the dependency descriptors they receive: each frame arrived whole
//! (contiguous packets from the one that starts it to the one that ends it) and every frame it
//! refers to was decoded before it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sfu_core::ConsumerId;
use sfu_tests::decodable::{self, assert_decodable, PayloadFacts, Report};
use sfu_tests::layers::{
    consumer_ssrc, link_step, loss_and_rate, queueing, run_until_held, temporal_down_and_up,
    timeline, MAX_FRAME_GAP,
};
use sfu_tests::media::verify_av1_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// What `client` received on `ssrc` from `from` to `to`, decoded from the descriptors.
fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    decodable::check(sim, client, ssrc, (from, to), |p| {
        verify_av1_payload(p).map(|i| PayloadFacts {
            spatial: i.spatial,
            temporal: i.temporal,
            key_frame: p[0] & 0x08 != 0,
        })
    })
}

fn layers_now(sim: &Sim, id: ConsumerId) -> (Option<u8>, Option<u8>) {
    let s = sim.sfu.consumer_stats(id).unwrap();
    (s.current_spatial_layer, s.current_temporal_layer)
}

#[test]
fn av1_consumers_get_their_temporal_layers_decodable() {
    let mut sim = Sim::new(seed_from_env("av1_layers"));
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_av1_l1t3(alice, 4400);
    let caps = sim.device_caps(room);
    let clients: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let consumers: Vec<_> = clients
        .iter()
        .map(|&c| sim.consume(c, producer, caps.clone(), false))
        .collect();
    for (c, temporal) in consumers.iter().zip([None, Some(1), Some(0)]) {
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
    }
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(5));
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");

    let mut counts = Vec::new();
    for (i, (client, c)) in clients.iter().zip(&consumers).enumerate() {
        let r = check(&sim, *client, consumer_ssrc(c), t0, sim.now);
        assert_decodable(&format!("consumer {i}"), &r);
        let want: BTreeSet<u8> = (0..=[2u8, 1, 0][i]).collect();
        assert_eq!(r.temporal, want, "consumer {i}");
        assert!(
            r.starts_at_key_frame,
            "consumer {i} starts at the key frame"
        );
        counts.push(r.decoded[0]);
        let s = sim.sfu.consumer_stats(c.id).unwrap();
        assert_eq!(s.current_temporal_layer, Some([2, 1, 0][i]), "{s:?}");
    }
    // 30 frames a second for about 5 s: consumer 0 all of them (the allocator may hold back its top temporal layer for a moment while the
    // estimate settles), consumer 1 half (T0 and T1 are one of four each), consumer 2 a
    // quarter.
    println!("decoded frames: {counts:?}");
    let sent = 150;
    assert!(counts[0] >= sent * 9 / 10, "{counts:?}");
    assert!(counts[1].abs_diff(sent / 2) <= 4, "{counts:?}");
    assert!(counts[2].abs_diff(sent / 4) <= 3, "{counts:?}");

    // Up again mid-stream: the T0-only consumer climbs at the next switching points and stays
    // decodable.
    sim.sfu
        .set_consumer_preferred_temporal_layer(consumers[2].id, None)
        .unwrap();
    let t1 = sim.now;
    sim.run_for(Duration::from_secs(2));
    let r = check(&sim, clients[2], consumer_ssrc(&consumers[2]), t1, sim.now);
    assert!(r.temporal.contains(&2), "{:?}", r.temporal);
    assert_decodable("after climbing", &r);
}

/// A room with an AV1 `L3T3_KEY` producer.
fn svc_room(sim: &mut Sim) -> (sfu_core::ProducerId, sfu_core::RouterId) {
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    (sim.produce_av1_l3t3_key(alice, 5500), room)
}

#[test]
fn av1_svc_consumers_get_their_spatial_layers_decodable() {
    let mut sim = Sim::new(seed_from_env("av1_svc_layers"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let clients: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let consumers: Vec<_> = clients
        .iter()
        .map(|&c| sim.consume(c, producer, caps.clone(), false))
        .collect();
    for (spatial, c) in consumers.iter().enumerate() {
        sim.sfu
            .set_consumer_preferred_layers(c.id, spatial)
            .unwrap();
    }
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(6));
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");
    let rates = stats.bitrate_per_spatial_layer;
    println!("spatial layer bitrates: {rates:?}");
    assert_eq!(rates.len(), 3);
    assert!(rates[0] < 300_000 && rates[1] < 700_000 && rates[2] > 1_200_000);
    for (spatial, (client, c)) in clients.iter().zip(&consumers).enumerate() {
        let r = check(&sim, *client, consumer_ssrc(c), t0, sim.now);
        assert_decodable(&format!("preferred spatial layer {spatial}"), &r);
        assert!(r.starts_at_key_frame);
        let want: BTreeSet<u8> = (0..=spatial as u8).collect();
        assert_eq!(r.spatial, want, "spatial layer {spatial}");
        assert_eq!(r.temporal, BTreeSet::from([0, 1, 2]));
        // Every picture of the preferred layer decodes: about 30 a second (the allocator may
        // hold back the top temporal layer for a moment while the estimate settles).
        assert!(r.decoded[spatial] >= 150, "{:?}", r.decoded);
        assert_eq!(layers_now(&sim, c.id), (Some(spatial as u8), Some(2)));
    }
}

#[test]
fn av1_svc_switching_preferred_layers_mid_stream_stays_decodable() {
    let mut sim = Sim::new(seed_from_env("av1_svc_switching"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = consumer_ssrc(&c);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(3));
    let steps: [(usize, Option<usize>, u8, u8); 7] = [
        (0, None, 0, 2),
        (0, Some(0), 0, 0),
        (1, Some(1), 1, 1),
        (2, Some(2), 2, 2),
        (1, Some(0), 1, 0),
        (0, None, 0, 2),
        (2, None, 2, 2),
    ];
    for (spatial, temporal, want_s, want_t) in steps {
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
        let r = check(&sim, bob, ssrc, from, sim.now);
        let top = (
            r.spatial.last().copied().unwrap_or(0),
            r.temporal.last().copied().unwrap_or(0),
        );
        assert_eq!(top, (want_s, want_t), "preferred {spatial} {temporal:?}");
    }
    temporal_down_and_up(&mut sim, c.id);
    let r = check(&sim, bob, ssrc, t0, sim.now);
    assert_decodable("switching", &r);
}

/// The link toward the consumer steps 3 Mbit/s -> 600 kbit/s -> 3 Mbit/s: within 2 s of the
/// drop the consumer is on a spatial layer that fits, with loss under 2% from then on; 6 s
/// later the link recovers, and within 10 s the consumer is back on the top spatial layer;
/// every frame it gets before the drop and from 2 s after it decodes, and from then on it
/// never goes longer than a key frame request without a whole picture; the queueing delay
/// stays under 200 ms from 2 s after the drop (retransmissions of layers the consumer has
/// left are not sent). The time until the top layer holds for 3 s after the recovery, and the
/// figures of the whole run are printed (`--nocapture`; `TIMELINE=1` prints the estimate,
/// layers and queue every 100 ms).
#[test]
fn av1_svc_consumer_behind_a_weak_link_moves_down_and_back_up() {
    let mut sim = Sim::new(seed_from_env("av1_svc_allocation"));
    let (producer, room) = svc_room(&mut sim);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = consumer_ssrc(&c);
    let spatial = |sim: &Sim| layers_now(sim, c.id).0;
    let step = link_step(
        &mut sim,
        bob,
        ssrc,
        |sim| spatial(sim) == Some(2),
        Duration::ZERO,
        |sim, before, origin| {
            let st = sim.sfu.consumer_stats(c.id).unwrap();
            let layers = format!(
                "{:?} rtx {} pli {}",
                layers_now(sim, c.id),
                st.packets_retransmitted,
                st.key_frame_requests_received
            );
            timeline(sim, bob, &layers, before, origin);
        },
    );
    let (t0, dropped_at, settled) = (step.start, step.dropped_at, step.settled);
    let r = check(&sim, bob, ssrc, settled, step.recovered_at);
    assert_decodable("after the drop", &r);
    assert!(r.spatial.iter().all(|&s| s < 2), "{:?}", r.spatial);

    // From when on the top layer holds for 3 s, if it does within 20 s more.
    let (recovered_at, back) = (step.recovered_at, step.back);
    let since_recovery = sim.now - recovered_at;
    let held = run_until_held(
        &mut sim,
        Duration::from_secs(20),
        Duration::from_secs(3),
        |sim| spatial(sim) == Some(2),
    )
    .map(|d| since_recovery + d);
    println!("the top layer held for 3 s from {held:?} after the recovery");
    let r = check(&sim, bob, ssrc, recovered_at + back, sim.now);
    assert_decodable("after the recovery", &r);
    let (server, bob_addr) = (sim.server_udp, sim.clients[bob].local);
    let (loss, _) = loss_and_rate(&sim, bob, ssrc, recovered_at, sim.now);
    let (delay, queue_drops) = queueing(&sim, server, bob_addr, recovered_at, sim.now);
    println!(
        "after the recovery: loss {loss:.4}, queueing delay at most {delay:?}, {queue_drops} \
         dropped by the queue"
    );

    // Before the drop, and from 2 s after it to the end (through the recovery): decodable,
    // and never longer than a key frame request without a whole picture. Between the two the
    // link's queue drops what does not fit until the consumer has moved down: the figures of
    // the whole run are printed.
    let r = check(&sim, bob, ssrc, t0, dropped_at);
    assert_decodable("before the drop", &r);
    let r = check(&sim, bob, ssrc, settled, sim.now);
    assert_decodable("from 2 s after the drop on", &r);
    assert!(
        r.longest_without_picture <= MAX_FRAME_GAP,
        "{:?} without a whole picture (at most {MAX_FRAME_GAP:?})",
        r.longest_without_picture
    );
    let r = check(&sim, bob, ssrc, t0, sim.now);
    println!(
        "the whole run: {} frames, {} not decodable, at most {:?} between whole pictures",
        r.frames,
        r.undecodable.len(),
        r.longest_without_picture
    );
    let requests = sim
        .publications
        .iter()
        .find(|p| p.producer == producer)
        .map_or(0, |p| p.key_frame_requests);
    println!("key frame requests in all: {requests}");
}
