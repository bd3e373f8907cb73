//! H264 simulcast with temporal layers in each encoding signalled by the dependency descriptor
//! (three encodings, `L1T3` each, as browsers send them; each encoding's key frames carry its
//! own structure, its template ids counted from its own offset), and AV1 the same way: a
//! consumer gets the encoding and the temporal layers inside it that it prefers, or that its
//! cap allows (the lowest encoding's temporal layers first, higher encodings at their full
//! frame rate), and every frame it receives, across switches between encodings, is
//! decodable, checked from the descriptors it receives (see [`sfu_tests::decodable`]), with
//! numbering without gaps and the marker on each picture's last packet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sfu_core::ortc::ConsumerType;
use sfu_core::{ProducerId, RouterId, WebRtcTransportOptions};
use sfu_tests::decodable::{
    self, active_targets_told, assert_clean, assert_decodable, PayloadFacts, Report,
};
use sfu_tests::layers::{consumer_ssrc, run_until, Stream};
use sfu_tests::media::{verify_av1_payload, verify_h264_payload};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The encodings: rid and SSRC. The SSRCs are far apart, so that the frame numbers of the
/// encodings (which start from them) never meet in a test's time.
const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 17000), ("r2", 27000)];

/// Each encoding's packets per frame, as a multiple of the single-encoding source's: at 30
/// frames a second about 300 kbit/s, 610 kbit/s and 1.22 Mbit/s.
const SCALE: [usize; 3] = [1, 2, 4];

/// The codec of the producer.
#[derive(Debug, Clone, Copy)]
enum Codec {
    H264,
    Av1,
}

/// A room with a simulcast producer of `codec` of [`LAYERS`] at the rates of [`SCALE`].
fn room(sim: &mut Sim, codec: Codec) -> (ProducerId, RouterId) {
    let room = match codec {
        Codec::H264 => sim.create_router(),
        // The router whose codecs include VP9 and AV1.
        Codec::Av1 => sim.create_router_with_vp9(),
    };
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = match codec {
        Codec::H264 => sim.produce_h264_simulcast(alice, &LAYERS),
        Codec::Av1 => sim.produce_av1_simulcast(alice, &LAYERS),
    };
    for p in &mut sim.publications {
        if p.producer == producer {
            let i = LAYERS
                .iter()
                .position(|(rid, _)| Some(*rid) == p.rid.as_deref())
                .expect("one of the layers");
            p.source.layered_scale = SCALE[i];
        }
    }
    (producer, room)
}

/// What payload `p` of `codec` says about itself, and its source SSRC (`None`: not what the
/// source wrote).
fn payload(codec: Codec, p: &[u8]) -> Option<(PayloadFacts, u32)> {
    match codec {
        Codec::H264 => verify_h264_payload(p).map(|i| {
            let key_frame = i.packet.starts_idr();
            (facts(i.spatial, i.temporal, key_frame), i.ssrc)
        }),
        Codec::Av1 => verify_av1_payload(p).map(|i| {
            let key_frame = p[0] & 0x08 != 0;
            (facts(i.spatial, i.temporal, key_frame), i.ssrc)
        }),
    }
}

fn facts(spatial: u8, temporal: u8, key_frame: bool) -> PayloadFacts {
    PayloadFacts {
        spatial,
        temporal,
        key_frame,
    }
}

/// What `client` received on `ssrc` from `from` to `to`, decoded from the descriptors, and
/// the encodings (source SSRCs) of the packets in the window.
fn check(
    sim: &Sim,
    codec: Codec,
    (client, ssrc): (usize, u32),
    from: Instant,
    to: Instant,
) -> (Report, BTreeSet<u32>) {
    let r = decodable::check(sim, client, ssrc, (from, to), |p| {
        payload(codec, p).map(|(f, _)| f)
    });
    let stream = Stream::received(sim, client, ssrc, from, to);
    let start = stream.window_start.unwrap_or(u64::MAX);
    let sources = stream
        .packets
        .iter()
        .filter(|(seq, p)| *seq >= start && !p.payload.is_empty())
        .filter_map(|(_, p)| payload(codec, &p.payload).map(|(_, ssrc)| ssrc))
        .collect();
    (r, sources)
}

#[test]
fn h264_simulcast_consumers_get_their_encoding_and_temporal_layers_decodable() {
    preferences(Codec::H264, "h264_simulcast_preferences");
}

#[test]
fn av1_simulcast_consumers_get_their_encoding_and_temporal_layers_decodable() {
    preferences(Codec::Av1, "av1_simulcast_preferences");
}

/// Consumers of a `codec` simulcast producer preferring (encoding, temporal layer) pairs get
/// exactly those, decodable, and are told their active decode targets.
fn preferences(codec: Codec, seed: &str) {
    let mut sim = Sim::new(seed_from_env(seed));
    let (producer, room) = room(&mut sim, codec);
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: 3_000_000,
        ..Default::default()
    };
    let caps = sim.device_caps(room);
    // (encoding, temporal layer) each consumer prefers.
    let prefs: [(usize, u8); 5] = [(0, 0), (0, 2), (1, 1), (2, 0), (2, 2)];
    let clients: Vec<usize> = prefs
        .iter()
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let consumers: Vec<_> = clients
        .iter()
        .map(|&c| sim.consume(c, producer, caps.clone(), false))
        .collect();
    for (c, &(encoding, temporal)) in consumers.iter().zip(&prefs) {
        assert_eq!(c.parameters.consumer_type, ConsumerType::Simulcast);
        sim.sfu
            .set_consumer_preferred_layers(c.id, encoding)
            .unwrap();
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, Some(usize::from(temporal)))
            .unwrap();
    }
    sim.run_for(Duration::from_secs(3));
    let from = sim.now;
    let secs = 6.0;
    sim.run_for(Duration::from_secs_f64(secs));
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");
    assert_eq!(stats.bitrate_per_temporal_layer.len(), 3, "{stats:?}");

    for (i, ((&client, c), &(encoding, temporal))) in
        clients.iter().zip(&consumers).zip(&prefs).enumerate()
    {
        let what = format!("consumer {i}: encoding {encoding}, temporal layer {temporal}");
        let ssrc = consumer_ssrc(c);
        let (r, sources) = check(&sim, codec, (client, ssrc), from, sim.now);
        assert_decodable(&what, &r);
        assert_eq!(sources, BTreeSet::from([LAYERS[encoding].1]), "{what}");
        assert_eq!(r.temporal, (0..=temporal).collect(), "{what}");
        // 30 frames a second: temporal layer 0 is one frame in four, 0 and 1 one in two.
        let expected = [7.5, 15.0, 30.0][usize::from(temporal)];
        let rate = r.decoded[0] as f64 / secs;
        println!("{what}: {rate} frames/s");
        assert!(
            (rate - expected).abs() <= expected * 0.1,
            "{what}: {rate} frames/s, not about {expected}"
        );
        let s = sim.sfu.consumer_stats(c.id).unwrap();
        assert_eq!(s.current_temporal_layer, Some(temporal), "{what}: {s:?}");
        // Below the top of its encoding a receiver was told last the decode targets it gets
        // (T0: target 0; T0 and T1: targets 0 and 1); at the top, if told anything, all.
        let told = active_targets_told(&sim, client, ssrc);
        match temporal {
            2 => assert!(matches!(told, None | Some(0b111)), "{what}: {told:?}"),
            t => assert_eq!(told, Some((0b10 << t) - 1), "{what}"),
        }
    }
}

/// One step of the cap walk: the cap, and the encoding and top temporal layer the consumer
/// then gets, at about how many frames a second.
struct Step {
    cap: u64,
    encoding: usize,
    temporal: u8,
    fps: f64,
}

#[test]
fn a_cap_walks_the_lowest_encodings_temporal_layers_then_the_encodings() {
    let mut sim = Sim::new(seed_from_env("h264_simulcast_cap"));
    let codec = Codec::H264;
    let (producer, room) = room(&mut sim, codec);
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
    let ssrc = consumer_ssrc(&c);
    let t0 = sim.now;
    // Encoding 0: temporal layer 0 about 130 kbit/s, 0 and 1 about 215 kbit/s, all of it
    // about 300 kbit/s (as measured, with headers); encoding 1 about 610 kbit/s, encoding 2
    // about 1.22 Mbit/s. A higher encoding comes at its full frame rate only.
    let steps = [
        (180_000, 0, 0, 7.5),
        (260_000, 0, 1, 15.0),
        (420_000, 0, 2, 30.0),
        (850_000, 1, 2, 30.0),
        (0, 2, 2, 30.0),
    ]
    .map(|(cap, encoding, temporal, fps)| Step {
        cap,
        encoding,
        temporal,
        fps,
    });
    for (n, step) in steps.iter().enumerate() {
        let what = format!("cap {}", step.cap);
        sim.sfu.set_max_outgoing_bitrate(bob_id, step.cap).unwrap();
        if n == 0 {
            sim.run_for(Duration::from_secs(4));
        }
        let want = (LAYERS[step.encoding].1, step.temporal);
        let took = run_until(&mut sim, Duration::from_secs(15), |sim| {
            let s = sim.sfu.consumer_stats(c.id).unwrap();
            let source = sim.clients[bob]
                .received
                .iter()
                .rev()
                .find(|p| p.ssrc == ssrc)
                .and_then(|p| verify_h264_payload(&p.payload))
                .map(|i| i.ssrc);
            s.current_temporal_layer == Some(want.1) && source == Some(want.0)
        });
        println!(
            "{what}: encoding {} T{} after {took:?}",
            step.encoding, want.1
        );
        assert!(
            took.is_some(),
            "{what}: never on encoding {} T{}",
            step.encoding,
            want.1
        );
        sim.run_for(Duration::from_secs(2));
        let from = sim.now;
        sim.run_for(Duration::from_secs(2));
        let (r, sources) = check(&sim, codec, (bob, ssrc), from, sim.now);
        let got = r.decoded[0] as f64 / 2.0;
        let measured = sim.sfu.producer_stats(producer).unwrap();
        println!(
            "{what}: sources {sources:?}, layers {:?}, {got} frames/s, estimate {}; \
             measured per encoding {:?}, per temporal layer {:?}",
            r.temporal,
            sim.sfu
                .transport_stats(bob_id)
                .unwrap()
                .available_outgoing_bitrate,
            measured.bitrate_per_encoding,
            measured.bitrate_per_temporal_layer
        );
        assert_eq!(sources, BTreeSet::from([want.0]), "{what}");
        assert_eq!(r.temporal, (0..=want.1).collect(), "{what}");
        assert!(
            (got - step.fps).abs() <= step.fps * 0.15,
            "{what}: {got} frames/s, not about {}",
            step.fps
        );
        let stats = sim.sfu.consumer_stats(c.id).unwrap();
        assert_eq!(stats.current_temporal_layer, Some(want.1), "{what}");
        assert_clean(&what, &r);
    }
    // The whole run, through every switch of temporal layer and of encoding, decodes: from
    // the first second on (while the encodings start one by one, the consumer may start one
    // and move on to the next one's key frame in the same batch of packets, as with VP8).
    let (r, sources) = check(
        &sim,
        codec,
        (bob, ssrc),
        t0 + Duration::from_secs(1),
        sim.now,
    );
    assert_eq!(sources.len(), 3, "{sources:?}");
    assert_decodable("whole run", &r);
    assert!(r.starts_at_key_frame);
}
