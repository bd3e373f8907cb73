//! H264 with temporal layers signalled by the dependency descriptor (`L1T3`, as browsers send
//! them): consumers get the temporal layers they prefer, or that their cap allows, and every
//! frame they receive is decodable, checked from the descriptors they receive (see
//! [`sfu_tests::decodable`]); key frames are IDR pictures told from the payload. A producer
//! without the descriptor is one layer, forwarded whole.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR;
use sfu_core::ortc::ConsumerType;
use sfu_core::{ProducerId, RouterId, WebRtcTransportOptions};
use sfu_tests::decodable::{
    self, active_targets_told, assert_clean, assert_decodable, PayloadFacts, Report,
};
use sfu_tests::layers::{consumer_ssrc, run_until, Stream};
use sfu_tests::media::{verify_h264_payload, H264Packet};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// What `client` received on `ssrc` from `from` to `to`, decoded from the descriptors.
fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    decodable::check(sim, client, ssrc, (from, to), |p| {
        verify_h264_payload(p).map(|i| PayloadFacts {
            spatial: i.spatial,
            temporal: i.temporal,
            key_frame: i.packet.starts_idr(),
        })
    })
}

/// A room with an H264 `L1T3` producer, with or without the dependency descriptor.
fn room(sim: &mut Sim, descriptor: bool) -> (ProducerId, RouterId) {
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    (sim.produce_h264_l1t3(alice, 4600, descriptor), room)
}

/// Frames decoded per second from `r`, over `secs` seconds.
fn fps(r: &Report, secs: f64) -> f64 {
    r.decoded[0] as f64 / secs
}

#[test]
fn h264_consumers_get_their_temporal_layers_decodable() {
    let mut sim = Sim::new(seed_from_env("h264_temporal_layers"));
    let (producer, room) = room(&mut sim, true);
    let caps = sim.device_caps(room);
    let clients: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let consumers: Vec<_> = clients
        .iter()
        .map(|&c| sim.consume(c, producer, caps.clone(), false))
        .collect();
    for (c, temporal) in consumers.iter().zip([Some(2), Some(1), Some(0)]) {
        assert_eq!(c.parameters.consumer_type, ConsumerType::Svc);
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
    }
    let t0 = sim.now;
    let secs = 5.0;
    sim.run_for(Duration::from_secs_f64(secs));
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");

    // 30 frames a second: temporal layer 0 is one frame in four, 0 and 1 one in two.
    let expected = [30.0, 15.0, 7.5];
    for (i, (client, c)) in clients.iter().zip(&consumers).enumerate() {
        let r = check(&sim, *client, consumer_ssrc(c), t0, sim.now);
        assert_decodable(&format!("temporal layer {}", 2 - i), &r);
        let want: BTreeSet<u8> = (0..=[2u8, 1, 0][i]).collect();
        assert_eq!(r.temporal, want, "consumer {i}");
        assert!(
            r.starts_at_key_frame,
            "consumer {i} starts at the key frame"
        );
        let rate = fps(&r, secs);
        println!("temporal layer {}: {rate} frames/s", 2 - i);
        // The allocator may hold back the top temporal layer for a moment while the estimate
        // settles.
        let tolerance = if i == 0 { 0.1 } else { 0.05 };
        assert!(
            (rate - expected[i]).abs() <= expected[i] * tolerance,
            "consumer {i}: {rate} frames/s, not about {}",
            expected[i]
        );
        let s = sim.sfu.consumer_stats(c.id).unwrap();
        assert_eq!(s.current_temporal_layer, Some([2, 1, 0][i]), "{s:?}");
    }
    // The receivers below the top were told last the decode targets they get (T0: target 0;
    // T0 and T1: targets 0 and 1); the one at the top, if told anything, every target.
    let told: Vec<Option<u32>> = clients
        .iter()
        .zip(&consumers)
        .map(|(&client, c)| active_targets_told(&sim, client, consumer_ssrc(c)))
        .collect();
    assert!(matches!(told[0], None | Some(0b111)), "{told:?}");
    assert_eq!(told[1..], [Some(0b011), Some(0b001)]);
}

#[test]
fn h264_temporal_switching_mid_stream_stays_decodable() {
    let mut sim = Sim::new(seed_from_env("h264_temporal_switching"));
    let (producer, room) = room(&mut sim, true);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = consumer_ssrc(&c);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(2));
    for (temporal, want, rate) in [
        (Some(0), 0u8, 7.5),
        (Some(2), 2, 30.0),
        (Some(1), 1, 15.0),
        (Some(0), 0, 7.5),
        (None, 2, 30.0),
        (Some(1), 1, 15.0),
        (Some(2), 2, 30.0),
    ] {
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
        sim.run_for(Duration::from_secs(1));
        let from = sim.now;
        sim.run_for(Duration::from_secs(2));
        let r = check(&sim, bob, ssrc, from, sim.now);
        let got = fps(&r, 2.0);
        println!(
            "preferred {temporal:?}: layers {:?}, {got} frames/s",
            r.temporal
        );
        assert_eq!(r.temporal, (0..=want).collect(), "preferred {temporal:?}");
        assert!(
            (got - rate).abs() <= rate * 0.15,
            "preferred {temporal:?}: {got} frames/s, not about {rate}"
        );
        assert_clean(&format!("preferred {temporal:?}"), &r);
    }
    // Temporal layer 0 and back up to the top, at each phase of the temporal pattern.
    for phase in 0..12 {
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, Some(0))
            .unwrap();
        sim.run_for(Duration::from_millis(500 + 11 * phase));
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, None)
            .unwrap();
        sim.run_for(Duration::from_millis(500));
    }
    let r = check(&sim, bob, ssrc, t0, sim.now);
    assert_decodable("switching", &r);
    assert!(r.starts_at_key_frame);
}

#[test]
fn a_cap_lowers_the_h264_frame_rate_and_lifting_it_brings_the_layers_back() {
    let mut sim = Sim::new(seed_from_env("h264_temporal_cap"));
    let (producer, room) = room(&mut sim, true);
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: 300_000,
        ..Default::default()
    };
    let bob = sim.add_transport(room, Protocol::Udp);
    let bob_id = sim.clients[bob].id;
    let c = sim.consume(bob, producer, sim.device_caps(room), false);
    let ssrc = consumer_ssrc(&c);
    let t0 = sim.now;
    // The stream: temporal layer 0 about 135 kbit/s, 0 and 1 about 225 kbit/s, all of it
    // about 315 kbit/s (with headers). A raised cap, or none, brings the layers back (the
    // transport probes for what the next temporal layer costs).
    for (n, (cap, want, rate)) in [
        (180_000, 0u8, 7.5),
        (300_000, 1, 15.0),
        (0, 2, 30.0),
        (160_000, 0, 7.5),
        (0, 2, 30.0),
    ]
    .into_iter()
    .enumerate()
    {
        sim.sfu.set_max_outgoing_bitrate(bob_id, cap).unwrap();
        if n == 0 {
            sim.run_for(Duration::from_secs(4));
        }
        let took = run_until(&mut sim, Duration::from_secs(10), |sim| {
            let s = sim.sfu.consumer_stats(c.id).unwrap();
            s.current_temporal_layer == Some(want)
        });
        println!("cap {cap}: temporal layer {want} after {took:?}");
        assert!(took.is_some(), "cap {cap}: never on temporal layer {want}");
        sim.run_for(Duration::from_secs(2));
        let from = sim.now;
        sim.run_for(Duration::from_secs(2));
        let r = check(&sim, bob, ssrc, from, sim.now);
        let stats = sim.sfu.consumer_stats(c.id).unwrap();
        let got = fps(&r, 2.0);
        println!(
            "cap {cap}: layers {:?}, {got} frames/s, estimate {}",
            r.temporal,
            sim.sfu
                .transport_stats(bob_id)
                .unwrap()
                .available_outgoing_bitrate
        );
        assert_eq!(r.temporal, (0..=want).collect(), "cap {cap}");
        assert!(
            (got - rate).abs() <= rate * 0.15,
            "cap {cap}: {got} frames/s, not about {rate}"
        );
        assert_eq!(stats.current_temporal_layer, Some(want), "cap {cap}");
        assert_clean(&format!("cap {cap}"), &r);
    }
    let r = check(&sim, bob, ssrc, t0, sim.now);
    assert_decodable("whole run", &r);
}

#[test]
fn h264_without_the_descriptor_is_one_layer_forwarded_whole() {
    let mut sim = Sim::new(seed_from_env("h264_without_descriptor"));
    let (producer, room) = room(&mut sim, false);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    assert_eq!(c.parameters.consumer_type, ConsumerType::Simple);
    // A preference for temporal layer 0 means nothing to a stream of one layer.
    sim.sfu
        .set_consumer_preferred_temporal_layer(c.id, Some(0))
        .unwrap();
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(4));
    let ssrc = consumer_ssrc(&c);
    let stream = Stream::received(&sim, bob, ssrc, t0, sim.now);
    assert_eq!(stream.gaps(), 0);
    let infos: Vec<_> = stream
        .packets
        .iter()
        .map(|(_, p)| verify_h264_payload(&p.payload).expect("an intact H264 payload"))
        .collect();
    assert!(
        infos.first().is_some_and(|i| i.packet == H264Packet::StapA),
        "starts at the IDR picture"
    );
    // Every packet the source sent from the first on, in order, markers as sent.
    for w in infos.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "source packets skipped");
    }
    let temporal: BTreeSet<u8> = infos.iter().map(|i| i.temporal).collect();
    assert_eq!(temporal, BTreeSet::from([0, 1, 2]));
    // The marker on the last packet of each frame alone.
    for w in stream.packets.windows(2) {
        let (a, b) = (w[0].1, w[1].1);
        assert_eq!(a.marker, a.timestamp != b.timestamp, "marker of {}", a.seq);
    }
    let frames = stream.packets.iter().filter(|(_, p)| p.marker).count();
    println!("{} packets, {frames} frames", infos.len());
    assert!(frames.abs_diff(120) <= 3, "{frames} frames in 4 s");
    let received_descriptors = sim.clients[bob]
        .received_extensions
        .iter()
        .filter(|e| e.ssrc == ssrc && e.values.get(DEPENDENCY_DESCRIPTOR).is_some())
        .count();
    assert_eq!(received_descriptors, 0);
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");
}
