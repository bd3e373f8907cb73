//! The allocator and VP8 temporal layers inside simulcast encodings (`L1T3` each, as Chromium
//! sends): under a cap below the lowest encoding's full rate but above its lower temporal
//! layers, a consumer gets the lowest encoding at a lower frame rate rather than more than
//! the cap; higher encodings come at their full frame rate (resolution goes before frame
//! rate); raising the cap brings back the higher layers. Every frame received is
//! decodable, checked from the payload descriptors (TL0PICIDX, TID, Y) and from the
//! references the synthetic encoder wrote into each frame.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sfu_core::{ConsumerId, ConsumerLayers, Event, ProducerId, WebRtcTransportOptions};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use sfu_tests::vp8_temporal::check;
use str0m::net::Protocol;

/// The encodings: rid and SSRC (the SSRC is what payloads name as their source).
const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 7100), ("r2", 7200)];

/// Packets per frame of each encoding (1000-byte packets, 30 frames a second): about
/// 250 kbit/s, 500 kbit/s and 1.45 Mbit/s. The temporal pattern 0, 2, 1, 2 gives each
/// encoding's temporal layer 0 a quarter of its rate, layers 0 and 1 half of it.
const PACKETS_PER_FRAME: [usize; 3] = [1, 2, 6];

/// The layers the last `layerschange` of `consumer` reported.
fn reported_layers(sim: &Sim, consumer: ConsumerId) -> Option<ConsumerLayers> {
    sim.events
        .iter()
        .rev()
        .find_map(|(_, e)| match e {
            Event::ConsumerLayersChange {
                consumer: c,
                layers,
            } if *c == consumer => Some(*layers),
            _ => None,
        })
        .flatten()
}

/// A simulcast producer on `client` whose encodings carry three VP8 temporal layers, at the
/// rates of [`PACKETS_PER_FRAME`].
fn simulcast_temporal(sim: &mut Sim, client: usize) -> ProducerId {
    let producer = sim.produce_simulcast_temporal(client, &LAYERS);
    for p in &mut sim.publications {
        if p.producer == producer {
            let i = LAYERS
                .iter()
                .position(|(rid, _)| Some(*rid) == p.rid.as_deref())
                .expect("one of the layers");
            p.source.packets_per_frame = PACKETS_PER_FRAME[i];
        }
    }
    producer
}

/// One step of the scenario: the cap, and what the consumer then gets (encoding and
/// temporal layers) and at about how many frames a second.
struct Step {
    cap: u64,
    source: u32,
    temporal: &'static [u8],
    fps: f64,
}

#[test]
fn a_cap_below_the_lowest_encoding_lowers_its_frame_rate_and_raising_it_brings_layers_back() {
    let mut sim = Sim::new(seed_from_env("simulcast_temporal_allocation"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = simulcast_temporal(&mut sim, alice);
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: 300_000,
        ..Default::default()
    };
    let bob = sim.add_transport(room, Protocol::Udp);
    let bob_id = sim.clients[bob].id;
    let (server, bob_addr) = (sim.server_udp, sim.clients[bob].local);
    sim.net.set_link(
        server,
        bob_addr,
        LinkConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_bandwidth_bps(5_000_000),
    );
    let c = sim.consume(bob, producer, sim.device_caps(room), false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let t0 = sim.now;

    // Encoding 0: temporal layer 0 about 60 kbit/s, 0 and 1 about 120 kbit/s, all of it
    // about 245 kbit/s (with headers); encoding 1 about 490 kbit/s. A higher encoding comes
    // at its full frame rate only: at 330 kbit/s encoding 0 at 30 frames a second, not
    // encoding 1 at 15.
    let steps = [
        Step {
            cap: 180_000,
            source: 7000,
            temporal: &[0, 1],
            fps: 15.0,
        },
        Step {
            cap: 90_000,
            source: 7000,
            temporal: &[0],
            fps: 7.5,
        },
        Step {
            cap: 330_000,
            source: 7000,
            temporal: &[0, 1, 2],
            fps: 30.0,
        },
        Step {
            cap: 650_000,
            source: 7100,
            temporal: &[0, 1, 2],
            fps: 30.0,
        },
        Step {
            cap: 0,
            source: 7200,
            temporal: &[0, 1, 2],
            fps: 30.0,
        },
    ];
    for (n, step) in steps.iter().enumerate() {
        sim.sfu.set_max_outgoing_bitrate(bob_id, step.cap).unwrap();
        sim.run_for(Duration::from_secs(if n == 0 { 8 } else { 6 }));
        let from = sim.now;
        sim.run_for(Duration::from_secs(2));
        let to = sim.now;
        // The frames begun by `to` complete.
        sim.run_for(Duration::from_millis(200));
        let r = check(&sim, bob, ssrc, from, to);
        let rates = sim
            .sfu
            .producer_stats(producer)
            .unwrap()
            .bitrate_per_temporal_layer;
        let stats = sim.sfu.consumer_stats(c.id).unwrap();
        let estimate = sim
            .sfu
            .transport_stats(bob_id)
            .unwrap()
            .available_outgoing_bitrate;
        let fps = r.frames as f64 / 2.0;
        println!(
            "cap {}: estimate {estimate}, layers {:?}/{:?}, {fps} frames/s, {} undecodable, \
             {} gaps; measured per temporal layer {rates:?}",
            step.cap,
            r.sources,
            r.temporal,
            r.undecodable.len(),
            r.gaps
        );
        assert_eq!(r.sources, BTreeSet::from([step.source]), "cap {}", step.cap);
        assert_eq!(
            r.temporal,
            step.temporal.iter().copied().collect::<BTreeSet<u8>>(),
            "cap {}",
            step.cap
        );
        assert!(
            (fps - step.fps).abs() <= step.fps * 0.15,
            "cap {}: {fps} frames a second, not about {}",
            step.cap,
            step.fps
        );
        assert!(r.undecodable.is_empty(), "{:?}", r.undecodable);
        assert_eq!(r.gaps, 0);
        let top = *step.temporal.last().unwrap();
        assert_eq!(stats.current_temporal_layer, Some(top));
        assert_eq!(
            reported_layers(&sim, c.id),
            Some(ConsumerLayers {
                spatial_layer: (step.source - 7000) as u8 / 100,
                temporal_layer: top,
            }),
            "layerschange says what is sent"
        );
    }
    // Each layerschange says what is then sent: none is overtaken by another at once (an
    // encoding's first packet changes the temporal layer too, and is reported once). From the
    // first second on: while the encodings start one by one, the consumer may start one and
    // move on to the next one's key frame in the same batch of packets.
    let times: Vec<Instant> = sim
        .events
        .iter()
        .filter(|(at, _)| *at >= t0 + Duration::from_secs(1))
        .filter(
            |(_, e)| matches!(e, Event::ConsumerLayersChange { consumer, .. } if *consumer == c.id),
        )
        .map(|(at, _)| *at)
        .collect();
    println!("{} layerschange events", times.len());
    assert!(times.len() >= steps.len() - 1, "{times:?}");
    assert!(
        times.windows(2).all(|w| w[0] != w[1]),
        "two layerschange events at once: {times:?}"
    );
    // The measurements behind the choices: each encoding's temporal layers in the pattern's
    // proportions (layer 0 a quarter, layer 1 a quarter, layer 2 half).
    let rates = sim
        .sfu
        .producer_stats(producer)
        .unwrap()
        .bitrate_per_temporal_layer;
    assert_eq!(rates.len(), 3);
    for layers in &rates {
        let total: u64 = layers.iter().sum();
        assert!(layers[0] * 5 > total && layers[0] * 3 < total, "{layers:?}");
        assert!(layers[2] * 5 > total * 2, "{layers:?}");
    }
    // The whole run decodes, from the first key frame of the consumer's first encoding on.
    let r = check(
        &sim,
        bob,
        ssrc,
        t0 + Duration::from_secs(1),
        sim.now - Duration::from_millis(200),
    );
    println!(
        "whole run: {} frames, sources {:?}, layers {:?}",
        r.frames, r.sources, r.temporal
    );
    assert!(r.undecodable.is_empty(), "undecodable: {:?}", r.undecodable);
    assert_eq!(r.gaps, 0);
}
