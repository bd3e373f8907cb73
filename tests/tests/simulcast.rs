//! Simulcast: a producer sending three encodings by rid; consumers get one layer, switch layers
//! at key frames with continuous sequence numbers, and fall back when a layer stops.

mod common_peers;

use std::time::Duration;

use sfu_core::ortc::ConsumerType;
use sfu_tests::check::stream_report;
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 7100), ("r2", 7200)];

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
    sim.sfu.set_consumer_preferred_layers(c.id, 2).unwrap();
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

    // Through all the switches the consumer's stream stayed continuous.
    let r = stream_report(&sim.clients[bob].received, ssrc);
    assert_eq!(r.gaps, 0, "{r:?}");
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.corrupt, 0);
}
