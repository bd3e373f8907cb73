//! The pacer in a WebRTC transport's send path: a key frame's burst leaves toward the consumer
//! spread at the pacing rate (2.5 times the estimate), and audio sent meanwhile never waits
//! behind it.

use std::time::{Duration, Instant};

use sfu_core::ortc::MediaKind;
use sfu_core::{SfuConfig, WebRtcTransportOptions};
use sfu_tests::media::{initial_sequence, verify_payload};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
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
