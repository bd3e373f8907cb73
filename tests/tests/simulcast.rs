//! Simulcast: a producer sending three encodings by rid; consumers get one layer, switch layers
//! at key frames with continuous sequence numbers, and fall back when a layer stops.

mod common_peers;

use common_peers::LAYERS;

use std::time::Duration;

use sfu_core::ortc::ConsumerType;
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// How long an encoding may be silent before the SFU treats it as stopped (the core's rule).
const ENCODING_ACTIVE: Duration = Duration::from_millis(1000);

#[test]
fn simulcast_layers_select_switch_and_fall_back() {
    let mut sim = Sim::new(seed_from_env("simulcast"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_simulcast(alice, &LAYERS);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, producer, caps, false);
    assert_eq!(c.parameters.consumer_type, ConsumerType::Simulcast);
    assert_eq!(c.parameters.rtp_parameters.encodings.len(), 1);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(2));

    let sources = |sim: &Sim, from| -> Vec<u32> {
        let mut v: Vec<u32> = sim.clients[bob]
            .received
            .iter()
            .filter(|p| p.ssrc == ssrc && p.at >= from)
            .filter_map(|p| verify_payload(&p.payload).map(|i| i.ssrc))
            .collect();
        v.dedup();
        v
    };
    // The highest layer by default.
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert!(
        stats.packets_per_encoding.iter().all(|&n| n > 50),
        "all layers arrive: {stats:?}"
    );
    let settled = sim.now - Duration::from_secs(1);
    assert_eq!(sources(&sim, settled), vec![7200]);

    // Prefer the lowest layer: the switch happens at a key frame of that layer.
    sim.sfu.set_consumer_preferred_layers(c.id, 0).unwrap();
    sim.flush();
    let switch_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    let after = sources(&sim, switch_at);
    assert_eq!(after.last(), Some(&7000), "switched to r0: {after:?}");
    let first_r0 = sim.clients[bob]
        .received
        .iter()
        .find(|p| {
            p.ssrc == ssrc && p.at >= switch_at && verify_payload(&p.payload).unwrap().ssrc == 7000
        })
        .unwrap();
    assert!(
        verify_payload(&first_r0.payload).unwrap().key_frame,
        "the switch starts at a key frame"
    );

    // Back to the top, then the top layer stops (the browser drops it): fall back to r1.
    // A preference above the top layer means the top layer.
    sim.sfu.set_consumer_preferred_layers(c.id, 7).unwrap();
    sim.flush();
    let back_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    for p in &mut sim.publications {
        if p.rid.as_deref() == Some("r2") {
            p.muted = true;
        }
    }
    let stopped_at = sim.now;
    sim.run_for(Duration::from_secs(3));
    let late = sources(&sim, stopped_at + Duration::from_millis(1500));
    assert_eq!(late, vec![7100], "fell back to r1: {late:?}");

    // Through all the switches the consumer's stream stayed continuous, and every layer's
    // packets arrived for as long as that layer was the one to forward: r2 from its first key
    // frame until the switch was asked for (the switch waits for r0's key frame), r0 from the
    // key frame the switch asked for until the switch back, r2 again until it stopped, then r1
    // from the key frame asked for once r2 counted as stopped.
    let end = sim.now - Duration::from_millis(200);
    // A switch is seamless: the old layer keeps coming until the new one's key frame, made
    // after the switch was asked for (the layers share the publisher's link, so they arrive in
    // the order they were made). The top layer's first packets may predate the connection.
    let just_before = |e: Expect| e.from - Duration::from_nanos(1);
    let r0_starts = Expect::from_first_key_frame(&sim, 7000, switch_at, back_at);
    let r2_again = Expect::from_first_key_frame(&sim, 7200, back_at, stopped_at);
    let expect = [
        Expect::from_first_received(&sim, bob, ssrc, 7200, just_before(r0_starts)),
        Expect::between(7000, r0_starts.from, just_before(r2_again)),
        r2_again,
        Expect::from_first_key_frame(&sim, 7100, stopped_at + ENCODING_ACTIVE, end),
    ];
    let d = delivery(&sim, bob, ssrc, &expect);
    d.assert_clean(600);
    // Before r2's first packets arrive the consumer may start on a lower layer that is already
    // active, and move up at the next key frame.
    let runs = &d.run_sources;
    assert!(
        runs.ends_with(&[7200, 7000, 7200, 7100])
            && runs[..runs.len() - 4].iter().all(|&s| s < 7200),
        "r2, r0, r2, r1 after the start: {runs:?}"
    );
}

/// A producer may declare as many encodings as consumers can be given, each of them
/// forwardable; one more is refused with a typed error.
#[test]
fn every_encoding_a_producer_may_declare_can_be_forwarded() {
    let max = sfu_core::ortc::MAX_ENCODINGS;
    let mut sim = Sim::new(seed_from_env("simulcast_max_encodings"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let rids: Vec<String> = (0..=max).map(|i| format!("r{i}")).collect();
    let layers = |base: u32, n: usize| -> Vec<(&str, u32)> {
        rids.iter()
            .take(n)
            .enumerate()
            .map(|(i, rid)| (rid.as_str(), base + 10 * i as u32))
            .collect()
    };
    let too_many = layers(9500, max + 1);
    let rtp_parameters = sim.clients[alice].prepare_produce_simulcast(&too_many);
    let refused = sim.sfu.produce(
        sim.clients[alice].id,
        sfu_core::ProduceOptions {
            kind: sfu_core::ortc::MediaKind::Video,
            rtp_parameters,
            paused: false,
        },
    );
    assert!(
        matches!(refused, Err(sfu_core::Error::Ortc(_))),
        "{} encodings: {refused:?}",
        max + 1
    );
    let allowed = layers(9000, max);
    let producer = sim.produce_simulcast(alice, &allowed);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(2));
    // Lower layers may come first while the top one starts; from its first packet on, the top
    // layer arrives whole.
    let top = allowed[max - 1].1;
    let end = sim.now - Duration::from_millis(200);
    let expect: Vec<Expect> = allowed
        .iter()
        .map(|&(_, source)| match source == top {
            true => Expect::from_first_received(&sim, bob, ssrc, top, end),
            false => Expect::between(source, end, sim.start),
        })
        .collect();
    let d = delivery(&sim, bob, ssrc, &expect);
    d.assert_clean(100);
    assert_eq!(
        d.run_sources.last(),
        Some(&top),
        "the top of {max} layers: {d:?}"
    );
}
