//! The pacer in a WebRTC transport's send path: a key frame's burst leaves toward the consumer
//! spread at the pacing rate (2.5 times the estimate), and audio sent meanwhile never waits
//! behind it. Temporal enhancement layers of another stream on the transport wait behind that
//! burst, and are dropped rather than delayed long: whole frames, their numbers filled, and
//! the frames that refer to them held back, so that what arrives still decodes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sfu_core::ortc::MediaKind;
use sfu_core::{SfuConfig, WebRtcTransportOptions};
use sfu_tests::client::Received;
use sfu_tests::decodable::{self, assert_clean, PayloadFacts};
use sfu_tests::layers::{consumer_ssrc, Stream};
use sfu_tests::media::{initial_sequence, verify_av1_payload, verify_payload, VIDEO_INTERVAL};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use sfu_tests::vp8_temporal;
use str0m::net::Protocol;

/// Video packets in the key frame.
const KEY_FRAME_PACKETS: usize = 60;
/// The consumer transport's estimate (its maximum outgoing bitrate holds it there).
const ESTIMATE: u64 = 1_000_000;
/// The pacing rate: 2.5 times the estimate.
const PACING_BPS: f64 = 2.5 * ESTIMATE as f64;

/// What leaving the SFU toward the consumer looked like around a key frame.
struct Burst {
    /// When each of the key frame's datagrams left, and its wire size.
    departures: Vec<(Instant, usize)>,
    /// How much later than the earliest each audio packet received during the burst arrived,
    /// against its send time at the publisher.
    audio_delays: Vec<Duration>,
    pacer_dropped: u64,
    video_received: usize,
}

fn key_frame_burst(pacing: bool) -> Burst {
    let mut config = SfuConfig::with_seed(seed_from_env("pacing_key_frame"));
    config.pacing = pacing;
    let mut sim = Sim::with_config(7, config);
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let video = sim.produce(alice, MediaKind::Video, 1111);
    let audio = sim.produce(alice, MediaKind::Audio, 2222);
    for p in &mut sim.publications {
        if p.producer == video {
            p.source.packets_per_frame = 2;
            p.source.key_frame_packets = Some(KEY_FRAME_PACKETS);
            p.source.key_frame_every = 100_000;
        }
    }
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: ESTIMATE,
        ..Default::default()
    };
    let bob = sim.add_transport(room, Protocol::Udp);
    let bob_id = sim.clients[bob].id;
    sim.sfu.set_max_outgoing_bitrate(bob_id, ESTIMATE).unwrap();
    let caps = sim.device_caps(room);
    let v = sim.consume(bob, video, caps.clone(), false);
    let a = sim.consume(bob, audio, caps, false);
    let video_ssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let audio_ssrc = a.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let (server, bob_addr) = (sim.server_udp, sim.clients[bob].local);
    sim.net.watch(server, bob_addr);
    sim.run_for(Duration::from_secs(3));
    let estimate = sim
        .sfu
        .transport_stats(bob_id)
        .unwrap()
        .available_outgoing_bitrate;
    assert_eq!(estimate, ESTIMATE);

    // A key frame of 60 packets, all sent by the publisher at once.
    let asked = sim.now;
    for p in &mut sim.publications {
        if p.producer == video {
            p.source.request_key_frame();
        }
    }
    sim.run_for(Duration::from_secs(1));
    let stats = sim.sfu.transport_stats(bob_id).unwrap();
    // The key frame's packets (their payloads say so) arrived one link latency after they
    // left: those are its departures.
    let arrivals: Vec<Instant> = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == video_ssrc && p.at >= asked)
        .filter(|p| verify_payload(&p.payload).is_some() && p.payload[1] == 0)
        .map(|p| p.at)
        .collect();
    let latency = sim.net.link_config(server, bob_addr).latency;
    let departures: Vec<(Instant, usize)> = sim
        .net
        .departures(server, bob_addr)
        .iter()
        .filter(|d| d.sent >= asked && d.size > 900)
        .filter(|d| arrivals.contains(&(d.departed + latency)))
        .map(|d| (d.sent, d.size))
        .collect();
    assert_eq!(departures.len(), KEY_FRAME_PACKETS);
    let (first, last) = (departures[0].0, departures[KEY_FRAME_PACKETS - 1].0);

    // Audio: each packet's arrival against its send time (one every 20 ms from the first).
    let initial = initial_sequence(2222) as u16;
    // (arrival, arrival less the time since the first was sent): the latter is the same for
    // every packet that did not wait.
    let offsets: Vec<(Instant, Instant)> = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == audio_ssrc)
        .filter_map(|p| {
            let info = verify_payload(&p.payload)?;
            let sent = Duration::from_millis(20 * u64::from(info.seq.wrapping_sub(initial)));
            Some((p.at, p.at.checked_sub(sent)?))
        })
        .collect();
    let base = offsets.iter().map(|o| o.1).min().unwrap();
    let audio_delays = offsets
        .iter()
        .filter(|(at, _)| *at >= first && *at <= last + Duration::from_millis(300))
        .map(|(_, offset)| *offset - base)
        .collect();
    let video_received = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == video_ssrc && p.at >= asked)
        .filter(|p| verify_payload(&p.payload).is_some())
        .count();
    Burst {
        departures,
        audio_delays,
        pacer_dropped: stats.pacer_dropped + stats.pacer_refused,
        video_received,
    }
}

#[test]
fn a_key_frame_leaves_at_the_pacing_rate_and_audio_does_not_wait() {
    let burst = key_frame_burst(true);
    let (first, last) = (burst.departures[0].0, burst.departures.last().unwrap().0);
    let span = last - first;
    // Every datagram but the first left within the span.
    let bytes: usize = burst.departures[1..].iter().map(|d| d.1).sum();
    let rate = bytes as f64 * 8.0 / span.as_secs_f64();
    println!(
        "key frame of {KEY_FRAME_PACKETS} packets left over {span:?}: {rate:.0} bit/s (pacing at {PACING_BPS:.0})"
    );
    assert!(
        (0.85 * PACING_BPS..=1.2 * PACING_BPS).contains(&rate),
        "{rate} bit/s over {span:?}"
    );
    // Evenly: no gap much longer than one packet's time at the pacing rate.
    let per_packet = Duration::from_secs_f64(1100.0 * 8.0 / PACING_BPS);
    let longest = burst
        .departures
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap();
    assert!(longest <= per_packet * 2, "{longest:?}");
    println!(
        "audio during the burst: {} packets, delays {:?}",
        burst.audio_delays.len(),
        burst.audio_delays
    );
    // One every 20 ms from the burst's start to 300 ms after its end: none lost.
    assert!(
        burst.audio_delays.len() >= 23,
        "{}",
        burst.audio_delays.len()
    );
    assert!(
        burst
            .audio_delays
            .iter()
            .all(|d| *d <= Duration::from_millis(5)),
        "{:?}",
        burst.audio_delays
    );
    assert_eq!(burst.pacer_dropped, 0);
    assert!(
        burst.video_received >= KEY_FRAME_PACKETS,
        "{}",
        burst.video_received
    );
}

/// Without pacing the same key frame leaves as one burst: what the test above measures is the
/// pacer's doing.
#[test]
fn without_pacing_the_key_frame_leaves_at_once() {
    let burst = key_frame_burst(false);
    let span = burst.departures.last().unwrap().0 - burst.departures[0].0;
    println!("key frame without pacing left over {span:?}");
    assert!(span < Duration::from_millis(5), "{span:?}");
}

const LAYERED_SSRC: u32 = 4700;
const BIG_SSRC: u32 = 1111;
/// Packets in each of the other stream's key frames (about 250 KB: a large key frame).
const BIG_KEY_FRAME_PACKETS: usize = 250;

/// Packets in the other stream's `k`th key frame in the window: 180 to 320, so that its burst
/// ends at other points of the layered stream's frames.
fn key_frame_packets(k: u64) -> usize {
    180 + 10 * k as usize
}
/// The consumer transport's estimate, held by its maximum outgoing bitrate: room for both
/// streams, so that the allocator leaves the layered one all its layers.
const CAP: u64 = 4_000_000;
/// Key frames of the other stream.
const BURSTS: u64 = 16;

/// How long each packet of `client`'s stream `ssrc` (from `publisher`'s source `source`)
/// received from `from` on waited in the SFU, with its temporal layer and whether it starts a
/// picture (`read` tells both and the source's sequence number from a packet): when it left
/// toward the client (found by its arrival, one link latency after it left the link) less
/// when its source made it and the publisher's link latency.
fn waits(
    sim: &Sim,
    (publisher, source): (usize, u32),
    (client, ssrc): (usize, u32),
    from: Instant,
    read: impl Fn(&Received) -> Option<(u8, bool, u16)>,
) -> Vec<(u8, bool, Duration)> {
    let (server, addr) = (sim.server_udp, sim.clients[client].local);
    let latency = sim.net.link_config(server, addr).latency;
    let uplink = sim
        .net
        .link_config(sim.clients[publisher].local, server)
        .latency;
    let made: HashMap<u16, Instant> = sim.sent[&source]
        .packets
        .iter()
        .map(|p| (p.seq as u16, p.at))
        .collect();
    let left: HashMap<Instant, Instant> = sim
        .net
        .departures(server, addr)
        .iter()
        .map(|d| (d.departed + latency, d.sent))
        .collect();
    sim.clients[client]
        .received
        .iter()
        .filter(|r| r.ssrc == ssrc && r.at >= from)
        .filter_map(|r| {
            let (temporal, starts, seq) = read(r)?;
            let made = *made.get(&seq)?;
            let left = *left.get(&r.at)?;
            Some((
                temporal,
                starts,
                left.saturating_duration_since(made + uplink),
            ))
        })
        .collect()
}

/// An AV1 payload's temporal layer, whether it starts a picture (the aggregation header's Z
/// bit clear: it does not continue a frame; spatial layer 0) and its source sequence number.
fn read_av1(r: &Received) -> Option<(u8, bool, u16)> {
    let info = verify_av1_payload(&r.payload)?;
    let starts = r.payload[0] & 0x80 == 0 && info.spatial == 0;
    Some((info.temporal, starts, info.seq))
}

/// A VP8 payload's temporal layer, whether it starts a picture and its source sequence
/// number (of the top encoding's packets only).
fn read_vp8(r: &Received) -> Option<(u8, bool, u16)> {
    let info = vp8_temporal::parse(&r.payload, r.at, r.marker)?;
    if info.source != LAYERED_SSRC {
        return None;
    }
    Some((info.temporal, info.start, info.source_seq))
}

/// One transport carries an AV1 `L1T3` stream at 30 frames a second (its temporal layers
/// selected by the SFU) and another stream whose key frames are 180 to 330 packets. Each of
/// those key frames is a burst of base layer that takes the pacer up to 250 ms: the layered
/// stream's enhancement packets queued behind it would wait as long. They are dropped
/// instead, most when a newer picture of its base layer is ready.
#[test]
fn a_key_frame_burst_goes_first_and_stale_enhancement_layers_are_dropped_whole() {
    enhancement_beside_key_frame_bursts(Layered::Av1, VIDEO_INTERVAL);
}

/// The same with three spatial layers (AV1 `L3T3_KEY`): pictures of the enhancement layers
/// are dropped or sent whole, every spatial layer's frame of them, marker bit included.
#[test]
fn spatial_layers_of_a_dropped_picture_go_with_it() {
    enhancement_beside_key_frame_bursts(Layered::Av1Spatial, VIDEO_INTERVAL);
}

/// The same at 15 frames a second: its base layer pictures are 267 ms apart, so enhancement
/// packets that wait behind a burst go stale (100 ms) first.
#[test]
fn at_a_lower_frame_rate_stale_enhancement_layers_are_dropped_whole() {
    enhancement_beside_key_frame_bursts(Layered::Av1, VIDEO_INTERVAL * 2);
}

/// VP8 simulcast with temporal layers in each encoding (as Chromium sends it): frames above
/// layer 0 that are not switching points refer to earlier ones of their layer, so the layers
/// dropped wait for a switching point (the Y bit).
#[test]
fn simulcast_temporal_layers_are_dropped_whole_and_come_back_at_switching_points() {
    enhancement_beside_key_frame_bursts(Layered::Vp8Simulcast, VIDEO_INTERVAL);
}

/// At 7.5 frames a second a frame that refers to a stale one comes after it was dropped: it
/// is held back too, until the layer's next switching-up point.
#[test]
fn frames_that_come_after_a_stale_one_and_refer_to_it_are_held_back() {
    enhancement_beside_key_frame_bursts(Layered::Av1, VIDEO_INTERVAL * 4);
}

/// The layered stream of these tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layered {
    /// AV1 `L1T3` with the dependency descriptor.
    Av1,
    /// AV1 `L3T3_KEY`.
    Av1Spatial,
    /// VP8 simulcast, `L1T3` in each of three encodings; the consumer gets the top one.
    Vp8Simulcast,
}

/// The simulcast encodings: rid and SSRC, the top one [`LAYERED_SSRC`].
const VP8_ENCODINGS: [(&str, u32); 3] = [("r0", 4500), ("r1", 4600), ("r2", LAYERED_SSRC)];

/// The scenario of these tests: the `layered` stream at one frame every `interval`.
fn enhancement_beside_key_frame_bursts(layered: Layered, interval: Duration) {
    let mut sim = Sim::new(seed_from_env("pacing_enhancement"));
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = match layered {
        Layered::Av1 => sim.produce_av1_l1t3(alice, LAYERED_SSRC),
        Layered::Av1Spatial => sim.produce_av1_l3t3_key(alice, LAYERED_SSRC),
        Layered::Vp8Simulcast => sim.produce_simulcast_temporal(alice, &VP8_ENCODINGS),
    };
    let big = sim.produce(alice, MediaKind::Video, BIG_SSRC);
    for p in &mut sim.publications {
        if p.producer == big {
            p.source.packets_per_frame = 1;
            p.source.key_frame_packets = Some(BIG_KEY_FRAME_PACKETS);
            p.source.key_frame_every = 100_000;
        } else {
            // AV1 frames of 5 to 30 packets (about 1.3 Mbit/s at 30 frames a second), VP8
            // ones of 1, 2 and 6 packets in the three encodings.
            p.source.layered_scale = 5;
            p.source.packets_per_frame = match p.source.ssrc {
                4500 => 1,
                4600 => 2,
                _ => 6,
            };
            p.source.video_interval = interval;
        }
    }
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: CAP,
        ..Default::default()
    };
    let bob = sim.add_transport(room, Protocol::Udp);
    let bob_id = sim.clients[bob].id;
    sim.sfu.set_max_outgoing_bitrate(bob_id, CAP).unwrap();
    let caps = sim.device_caps(room);
    let l = sim.consume(bob, producer, caps.clone(), false);
    let b = sim.consume(bob, big, caps, false);
    let (ssrc, big_ssrc) = (consumer_ssrc(&l), consumer_ssrc(&b));
    let (server, bob_addr) = (sim.server_udp, sim.clients[bob].local);
    sim.net.watch(server, bob_addr);
    sim.run_for(Duration::from_secs(3));
    let before = sim.sfu.transport_stats(bob_id).unwrap();
    let filled_before = sim.sfu.consumer_stats(l.id).unwrap().numbers_filled;
    let from = sim.now;
    // Large key frames about 2 s apart, each at another point of the layered stream's
    // temporal pattern (four frames, 133 ms).
    for k in 0..BURSTS {
        for p in &mut sim.publications {
            if p.producer == big {
                p.source.key_frame_packets = Some(key_frame_packets(k));
                p.source.request_key_frame();
            }
        }
        sim.run_for(Duration::from_millis(1_000 + 11 * k));
    }
    let to = sim.now;
    let stats = sim.sfu.transport_stats(bob_id).unwrap();
    let dropped = stats.pacer_dropped_enhancement - before.pacer_dropped_enhancement;
    let filled = sim.sfu.consumer_stats(l.id).unwrap().numbers_filled - filled_before;
    let layered_stats = sim.sfu.consumer_stats(l.id).unwrap();
    println!(
        "pacer dropped {dropped} enhancement packets, {filled} numbers filled, \
         layers now {:?}/{:?}",
        layered_stats.current_spatial_layer, layered_stats.current_temporal_layer
    );
    assert!(
        dropped >= BURSTS,
        "the enhancement layers were not dropped: {dropped}"
    );
    // (A start-up burst may fill the base queue: two key frames at once.)
    assert_eq!(stats.pacer_refused, before.pacer_refused);
    // Each dropped packet's number was filled with padding.
    assert!(
        filled >= dropped,
        "{filled} numbers filled for {dropped} dropped"
    );

    // What the layered stream's receiver got decodes: whole frames whose references all
    // arrived, no sequence gaps (padding filled them), markers right.
    let what = "layered stream beside key frame bursts";
    if layered == Layered::Vp8Simulcast {
        let r = vp8_temporal::check(&sim, bob, ssrc, from, to);
        println!("{what}: {r:?}");
        assert!(r.undecodable.is_empty(), "{:?}", r.undecodable);
        assert_eq!(r.gaps, 0);
        assert!(r.frames > 100 && r.temporal.contains(&2), "{r:?}");
        // The allocator may move it to the middle encoding while the bursts count.
        assert!(r.sources.contains(&LAYERED_SSRC), "{r:?}");
    } else {
        let r = decodable::check(&sim, bob, ssrc, (from, to), |p| {
            verify_av1_payload(p).map(|i| PayloadFacts {
                spatial: i.spatial,
                temporal: i.temporal,
                key_frame: p[0] & 0x08 != 0,
            })
        });
        assert_clean(what, &r);
        assert!(r.frames > 100 && r.temporal.contains(&2), "{r:?}");
    }
    // In order: a packet is never sent after one its stream numbered after it (a receiver's
    // replay window is no larger than 128 numbers).
    let mut highest: Option<u16> = None;
    let mut out_of_order = 0;
    for r in sim.clients[bob]
        .received
        .iter()
        .filter(|r| r.ssrc == ssrc && r.at >= from)
    {
        match highest {
            Some(h) if (r.seq.wrapping_sub(h) as i16) < 0 => out_of_order += 1,
            _ => highest = Some(r.seq),
        }
    }
    assert_eq!(out_of_order, 0, "packets received out of order");
    let padding = Stream::received(&sim, bob, ssrc, from, to).filled();
    assert!(
        padding as u64 >= dropped,
        "{padding} numbers filled, {dropped} dropped"
    );
    // The dropped layers come back once the burst is gone.
    assert_eq!(layered_stats.current_temporal_layer, Some(2));

    // Bounded waits: a picture of the enhancement layers started within their 100 ms (the rest
    // of a picture whose start went out follows it, as base layers do), the base layer's within
    // the 250 ms every base layer packet gets.
    let read = match layered {
        Layered::Vp8Simulcast => read_vp8,
        _ => read_av1,
    };
    let waited = waits(&sim, (alice, LAYERED_SSRC), (bob, ssrc), from, read);
    let longest = |keep: &dyn Fn(u8, bool) -> bool| {
        waited
            .iter()
            .filter(|(t, starts, _)| keep(*t, *starts))
            .map(|(_, _, w)| *w)
            .max()
            .unwrap()
    };
    let base_wait = longest(&|t, _| t == 0);
    let start_wait = longest(&|t, starts| t > 0 && starts);
    let enhancement_wait = longest(&|t, _| t > 0);
    println!(
        "longest wait in the SFU: base {base_wait:?}, enhancement picture start {start_wait:?}, \
         any enhancement {enhancement_wait:?}"
    );
    assert!(base_wait <= Duration::from_millis(260), "{base_wait:?}");
    assert!(
        base_wait >= Duration::from_millis(100),
        "the bursts did not hold the base layer: {base_wait:?}"
    );
    assert!(start_wait <= Duration::from_millis(101), "{start_wait:?}");
    assert!(
        enhancement_wait <= Duration::from_millis(260),
        "{enhancement_wait:?}"
    );

    // The key frames themselves all arrived: base layers are never dropped.
    let big_received = Stream::received(&sim, bob, big_ssrc, from, to);
    assert_eq!(big_received.gaps(), 0);
    let received: std::collections::HashSet<u16> = big_received
        .packets
        .iter()
        .filter_map(|(_, p)| Some(verify_payload(&p.payload)?.seq))
        .collect();
    let made: Vec<u16> = sim.sent[&BIG_SSRC]
        .packets
        .iter()
        .filter(|p| p.at >= from && p.at + Duration::from_millis(500) < to)
        .map(|p| p.seq as u16)
        .collect();
    assert!(
        made.len() > (0..BURSTS).map(key_frame_packets).sum(),
        "{} made",
        made.len()
    );
    let missing = made.iter().filter(|s| !received.contains(s)).count();
    assert_eq!(missing, 0, "of the other stream's {} packets", made.len());
}
