//! The allocator: a consumer transport's bandwidth estimate picks each simulcast consumer's
//! layer, and is shared among its video consumers by priority.

mod common_peers;

use common_peers::LAYERS;

use std::time::{Duration, Instant};

use sfu_core::{ConsumerId, ProducerId, WebRtcTransportOptions};
use sfu_tests::layers::{
    self, link_step, loss_and_rate, queueing, run_until, set_capacity_toward, MAX_FRAME_GAP,
};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Packets per frame of each layer (1000-byte packets, 30 frames a second): about 250 kbit/s,
/// 500 kbit/s and 1.45 Mbit/s.
const PACKETS_PER_FRAME: [usize; 3] = [1, 2, 6];

/// A simulcast producer with the three layers' bitrates on `client`.
fn simulcast(sim: &mut Sim, client: usize) -> ProducerId {
    let producer = sim.produce_simulcast(client, &LAYERS);
    for p in &mut sim.publications {
        if p.producer == producer {
            let i = LAYERS
                .iter()
                .position(|(rid, _)| Some(*rid) == p.rid.as_deref())
                .unwrap();
            p.source.packets_per_frame = PACKETS_PER_FRAME[i];
        }
    }
    producer
}

/// The layer (source SSRC) of the last packet `client` received on `ssrc` by now.
fn source_now(sim: &Sim, client: usize, ssrc: u32) -> Option<u32> {
    sim.clients[client]
        .received
        .iter()
        .rev()
        .find(|p| p.ssrc == ssrc)
        .and_then(|p| verify_payload(&p.payload))
        .map(|i| i.ssrc)
}

/// The consumer's stream is decodable throughout: the first packet after every layer switch
/// starts a key frame, and no stretch from `from` on goes without media longer than
/// [`MAX_FRAME_GAP`]. Returns the number of switches and the longest stretch.
fn check_decodable(sim: &Sim, client: usize, ssrc: u32, from: Instant) -> (usize, Duration) {
    let got: Vec<_> = sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= from)
        .collect();
    let mut switches = 0;
    let mut longest = Duration::ZERO;
    let mut previous: Option<(u32, Instant)> = None;
    for p in &got {
        let info = verify_payload(&p.payload).expect("an intact payload");
        if let Some((source, at)) = previous {
            if source != info.ssrc {
                switches += 1;
                assert!(
                    info.key_frame,
                    "the switch from layer {source} to {} at {:?} starts without a key frame",
                    info.ssrc,
                    p.at - from
                );
            }
            longest = longest.max(p.at - at);
        }
        previous = Some((info.ssrc, p.at));
    }
    assert!(
        longest <= MAX_FRAME_GAP,
        "{longest:?} without a frame (at most {MAX_FRAME_GAP:?})"
    );
    (switches, longest)
}

/// Prints what happened toward the consumer in `[from, now)` (with `TIMELINE` set).
fn timeline(sim: &Sim, client: usize, ssrc: u32, from: Instant, origin: Instant) {
    let layer = format!("{:?}", source_now(sim, client, ssrc));
    layers::timeline(sim, client, &layer, from, origin);
}

/// The link toward the consumer steps 3 Mbit/s -> 600 kbit/s -> 3 Mbit/s: within 2 s of the
/// drop the consumer is on a layer that fits, with loss under 2% and queueing delay under
/// 200 ms from then on; within 10 s of the recovery, probing has found the room and the
/// consumer is back on the top layer; the stream stays decodable throughout.
#[test]
fn a_consumer_behind_a_weak_link_moves_down_a_layer_and_back_up() {
    let mut sim = Sim::new(seed_from_env("allocation_capacity_steps"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = simulcast(&mut sim, alice);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, sim.device_caps(room), false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    assert!(
        c.parameters.rtp_parameters.encodings[0].rtx.is_some(),
        "the consumer negotiated RTX, which carries the probes"
    );
    // The top layer fits; the link drops to 600 kbit/s: within 2 s the consumer is on a
    // layer that fits; the link recovers: it climbs back to the top layer, which holds 3 s.
    let step = link_step(
        &mut sim,
        bob,
        ssrc,
        |sim| source_now(sim, bob, ssrc) == Some(7200),
        Duration::from_secs(3),
        |sim, before, origin| timeline(sim, bob, ssrc, before, origin),
    );
    // What the publisher sends (all its layers, whatever the consumer gets).
    let rates = sim
        .sfu
        .producer_stats(producer)
        .unwrap()
        .bitrate_per_encoding;
    println!("measured layer bitrates: {rates:?}");
    assert!(rates[0] < 400_000 && rates[1] < 600_000 && rates[2] > 1_200_000);
    // Only the lower layers: probes, not trials, ask whether the top one fits.
    let late: Vec<u32> = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= step.settled && p.at < step.recovered_at)
        .filter_map(|p| verify_payload(&p.payload).map(|i| i.ssrc))
        .collect();
    let top = late.iter().filter(|&&s| s == 7200).count() as f64 / late.len() as f64;
    println!("share of top-layer packets after the drop: {top:.3}");
    assert_eq!(top, 0.0);
    let (server, bob_addr) = (sim.server_udp, sim.clients[bob].local);
    let (loss, _) = loss_and_rate(&sim, bob, ssrc, step.recovered_at, sim.now);
    let (delay, queue_drops) = queueing(&sim, server, bob_addr, step.recovered_at, sim.now);
    println!("after the recovery: loss {loss:.4}, queueing delay at most {delay:?}, {queue_drops} dropped by the queue");
    assert!(loss < 0.02, "loss {loss}");
    assert!(delay < Duration::from_millis(200), "{delay:?}");
    let stats = sim.sfu.transport_stats(sim.clients[bob].id).unwrap();
    println!(
        "probe clusters in all: {} sent ({} packets), {} carried, {} failed",
        stats.probe_clusters,
        stats.probe_packets,
        stats.probe_clusters_carried,
        stats.probe_clusters_failed
    );
    assert!(stats.probe_clusters_carried >= 1);
    let (switches, longest) = check_decodable(&sim, bob, ssrc, step.start + Duration::from_secs(8));
    println!("{switches} layer switches, at most {longest:?} without media");
    assert!(switches >= 2, "{switches}");
}

/// Two video consumers on one transport with priorities 2 and 1 under an 800 kbit/s cap: the
/// first gets the middle layer, the second the lowest (what is left does not pay for more),
/// and what arrives follows about 2:1.
#[test]
fn two_consumers_share_a_capped_transport_by_priority() {
    let mut sim = Sim::new(seed_from_env("allocation_priorities"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let carol = sim.add_transport(room, Protocol::Udp);
    let first = simulcast(&mut sim, alice);
    let second = simulcast(&mut sim, carol);
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: 800_000,
        ..Default::default()
    };
    let bob = sim.add_transport(room, Protocol::Udp);
    let bob_id = sim.clients[bob].id;
    sim.sfu.set_max_outgoing_bitrate(bob_id, 800_000).unwrap();
    let caps = sim.device_caps(room);
    let high = sim.consume(bob, first, caps.clone(), false);
    let low = sim.consume(bob, second, caps, false);
    let reply = sim
        .sfu
        .handle_request(sfu_core::control::Request::SetConsumerPriority {
            consumer: high.id,
            priority: 2,
        });
    assert!(reply.is_ok(), "{reply:?}");
    sim.run_for(Duration::from_secs(8));
    let from = sim.now;
    sim.run_for(Duration::from_secs(4));
    let layer = |sim: &Sim, id: ConsumerId| sim.sfu.consumer_stats(id).unwrap().current_layer;
    let ssrc = |c: &sfu_core::Consumed| c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let (_, high_rate) = loss_and_rate(&sim, bob, ssrc(&high), from, sim.now);
    let (_, low_rate) = loss_and_rate(&sim, bob, ssrc(&low), from, sim.now);
    println!("priority 2: {high_rate} bit/s, priority 1: {low_rate} bit/s");
    assert_eq!(layer(&sim, high.id), Some(1));
    assert_eq!(layer(&sim, low.id), Some(0));
    let ratio = high_rate as f64 / low_rate as f64;
    assert!((1.6..=2.6).contains(&ratio), "{ratio}");
    assert_eq!(
        sim.sfu.consumer_stats(high.id).unwrap().priority,
        2,
        "the priority is in the stats"
    );
    // The other way round: the layers swap.
    sim.sfu.set_consumer_priority(high.id, 1).unwrap();
    sim.sfu.set_consumer_priority(low.id, 3).unwrap();
    sim.run_for(Duration::from_secs(4));
    assert_eq!(layer(&sim, high.id), Some(0));
    assert_eq!(layer(&sim, low.id), Some(1));
}

/// A consumer that did not negotiate RTX has no stream for probe padding: its transport
/// falls back to trials of the next encoding, and it still moves down and back up.
#[test]
fn a_consumer_without_rtx_moves_by_trials() {
    let mut sim = Sim::new(seed_from_env("allocation_without_rtx"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = simulcast(&mut sim, alice);
    let bob = sim.add_transport(room, Protocol::Udp);
    let mut caps = sim.device_caps(room);
    caps.codecs.retain(|c| !c.mime_type.ends_with("/rtx"));
    let c = sim.consume(bob, producer, caps, false);
    assert!(c.parameters.rtp_parameters.encodings[0].rtx.is_none());
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    set_capacity_toward(&mut sim, bob, 3_000_000);
    sim.run_for(Duration::from_secs(8));
    let started = sim.now;
    assert_eq!(source_now(&sim, bob, ssrc), Some(7200));
    set_capacity_toward(&mut sim, bob, 600_000);
    sim.run_for(Duration::from_secs(10));
    let stats = sim.sfu.transport_stats(sim.clients[bob].id).unwrap();
    assert_eq!(stats.probe_clusters, 0, "nothing to probe on");
    set_capacity_toward(&mut sim, bob, 3_000_000);
    let back = run_until(&mut sim, Duration::from_secs(30), |sim| {
        source_now(sim, bob, ssrc) == Some(7200)
    });
    let back = back.expect("back on the top layer within 30 s");
    println!("without RTX: back on the top layer {back:?} after the recovery");
    let (switches, longest) = check_decodable(&sim, bob, ssrc, started);
    println!("{switches} layer switches, at most {longest:?} without media");
    assert!(switches >= 2, "{switches}");
}
