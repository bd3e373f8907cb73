//! The allocator and VP8 temporal layers inside simulcast encodings (`L1T3` each, as Chromium
//! sends): under a cap below the lowest encoding's full rate but above its lower temporal
//! layers, a consumer gets the lowest encoding at a lower frame rate rather than more than
//! the cap; higher encodings come at their full frame rate (resolution goes before frame
//! rate); raising the cap brings back the higher layers. Every frame received is
//! decodable, checked from the payload descriptors (TL0PICIDX, TID, Y) and from the
//! references the synthetic encoder wrote into each frame.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use sfu_core::{ConsumerId, ConsumerLayers, Event, ProducerId, WebRtcTransportOptions};
use sfu_tests::media::VP8_TEMPORAL_MAGIC;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The encodings: rid and SSRC (the SSRC is what payloads name as their source).
const LAYERS: [(&str, u32); 3] = [("r0", 7000), ("r1", 7100), ("r2", 7200)];

/// Packets per frame of each encoding (1000-byte packets, 30 frames a second): about
/// 250 kbit/s, 500 kbit/s and 1.45 Mbit/s. The temporal pattern 0, 2, 1, 2 gives each
/// encoding's temporal layer 0 a quarter of its rate, layers 0 and 1 half of it.
const PACKETS_PER_FRAME: [usize; 3] = [1, 2, 6];

/// One packet as the consumer's endpoint sees it.
#[derive(Debug, Clone, Copy)]
struct Packet {
    seq: u64,
    at: Instant,
    marker: bool,
    /// The descriptor's S bit: the first packet of a frame.
    start: bool,
    /// The encoding that made it (from the synthetic bitstream).
    source: u32,
    picture_id: u16,
    tl0_pic_idx: u8,
    temporal: u8,
    /// The descriptor's Y bit: the frame refers only to temporal layer 0.
    sync: bool,
    /// The picture the frame refers to (from the synthetic bitstream; `None`: a key frame).
    reference: Option<u16>,
}

/// Reads the VP8 payload descriptor (RFC 7741: X, I with a 15-bit picture id, L, T and K)
/// and the synthetic bitstream behind it, of a packet that arrived `at` with `marker`
/// (its sequence number left 0).
fn parse(p: &[u8], at: Instant, marker: bool) -> Option<Packet> {
    let start = *p.first()? & 0x10 != 0;
    if *p.first()? & 0x80 == 0 || *p.get(1)? != 0xe0 || *p.get(2)? & 0x80 == 0 {
        return None;
    }
    let i = if start { 7 } else { 6 };
    if *p.get(i)? != VP8_TEMPORAL_MAGIC {
        return None;
    }
    let r = u16::from_be_bytes([*p.get(i + 7)?, *p.get(i + 8)?]);
    Some(Packet {
        seq: 0,
        at,
        marker,
        start,
        source: u32::from_be_bytes(p.get(i + 1..i + 5)?.try_into().ok()?),
        picture_id: u16::from_be_bytes([*p.get(2)? & 0x7f, *p.get(3)?]),
        tl0_pic_idx: *p.get(4)?,
        temporal: *p.get(5)? >> 6,
        sync: *p.get(5)? & 0x20 != 0,
        reference: (r != 0xffff).then_some(r),
    })
}

/// What the consumer's endpoint received, frame by frame.
#[derive(Debug, Default)]
struct Report {
    /// Frames that began in the window.
    frames: usize,
    /// Frames in the window that could not be decoded: (source, picture id, why).
    undecodable: Vec<(u32, u16, &'static str)>,
    /// Sequence numbers missing in the window.
    gaps: usize,
    /// The encodings and temporal layers of the frames in the window.
    sources: BTreeSet<u32>,
    temporal: BTreeSet<u8>,
}

/// Decodes the consumer's stream (`ssrc` on `client`) from its start, and reports on the
/// frames that began in `[from, to)` (their last packets may arrive after `to`).
///
/// A frame decodes when all its packets arrived and what it refers to decoded: the picture
/// the synthetic encoder names, and by the descriptors, for temporal layer 0 the previous
/// layer 0 frame (TL0PICIDX one more than the last one), for a higher layer the layer 0 frame
/// of its TL0PICIDX, and for one without Y (it refers to a frame of its own or a lower layer
/// above 0) a frame above layer 0 and not above its own since that layer 0 frame.
fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    let mut packets: BTreeMap<u64, Packet> = BTreeMap::new();
    let mut last: Option<u64> = None;
    for r in sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc)
    {
        let seq = match last {
            None => u64::from(r.seq) + (1 << 20),
            Some(prev) => (prev as i64 + i64::from(r.seq.wrapping_sub(prev as u16) as i16)) as u64,
        };
        last = Some(last.map_or(seq, |l| l.max(seq)));
        let p = parse(&r.payload, r.at, r.marker).expect("a VP8 packet with temporal layers");
        packets.insert(seq, Packet { seq, ..p });
    }
    let mut report = Report::default();
    let list: Vec<Packet> = packets.values().copied().collect();
    let mut decoded: HashSet<(u32, u16)> = HashSet::new();
    // Per encoding: the TL0PICIDX of the last layer 0 frame decoded, and the highest layer
    // above 0 decoded since it.
    let mut base: HashMap<u32, (u8, u8)> = HashMap::new();
    let mut i = 0;
    while i < list.len() {
        let p = list[i];
        let in_window = p.at >= from && p.at < to;
        if in_window && i > 0 && p.seq != list[i - 1].seq + 1 {
            report.gaps += 1;
        }
        let mut j = i;
        while j + 1 < list.len()
            && !list[j].marker
            && list[j + 1].seq == list[j].seq + 1
            && (list[j + 1].source, list[j + 1].picture_id) == (p.source, p.picture_id)
        {
            j += 1;
        }
        i = j + 1;
        let key = p.reference.is_none() && p.start;
        let why = if !(p.start && list[j].marker) {
            Some("incomplete")
        } else if key {
            None
        } else if !decoded.contains(&(p.source, p.reference.unwrap_or_default())) {
            Some("its reference was not decoded")
        } else {
            match (base.get(&p.source), p.temporal) {
                (None, _) => Some("no key frame before it"),
                (Some(&(tl0, _)), 0) if p.tl0_pic_idx != tl0.wrapping_add(1) => {
                    Some("a layer 0 frame is missing before it")
                }
                (Some(&(tl0, _)), t) if t > 0 && p.tl0_pic_idx != tl0 => {
                    Some("its layer 0 frame is missing")
                }
                (Some(&(_, above)), t) if t > 0 && !p.sync && !(1..=t).contains(&above) => {
                    Some("not a switching point, and the layer it refers to is missing")
                }
                _ => None,
            }
        };
        match why {
            None => {
                decoded.insert((p.source, p.picture_id));
                let entry = base.entry(p.source).or_insert((p.tl0_pic_idx, 0));
                if p.temporal == 0 {
                    *entry = (p.tl0_pic_idx, 0);
                } else {
                    entry.1 = entry.1.max(p.temporal);
                }
            }
            Some(why) if in_window => report.undecodable.push((p.source, p.picture_id, why)),
            Some(_) => {}
        }
        if in_window {
            report.frames += 1;
            report.sources.insert(p.source);
            report.temporal.insert(p.temporal);
        }
    }
    report
}

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
