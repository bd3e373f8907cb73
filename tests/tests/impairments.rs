//! Acceptance: what the SFU delivers through the network's impairments other than random loss
//! (burst loss, reordering, duplication, jitter), across pause/resume and simulcast layer
//! switches on links that reorder, and with late and duplicated retransmissions.
//!
//! Every consumer stream is checked with the delivery checker against what its source sent.
//! Where the links towards the receivers are clean (no loss, no reordering), two more things are
//! checked that the receiver alone cannot see, because its RTP stack silently drops a sequence
//! number it already has: the SFU sent each consumer sequence number once (the consumer's
//! `packets_sent` equals what the receiver accepted), and after a resync it sent nothing numbered
//! before the resync (in arrival order, which is then the SFU's send order).

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{room_of, sub_delivery, Peer, Sub, LAYERS};
use sfu_core::ortc::MediaKind;
use sfu_core::ProducerId;
use sfu_tests::delivery::{delivery, extend, Delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

const LATENCY: Duration = Duration::from_millis(10);

fn clean() -> LinkConfig {
    LinkConfig::default().with_latency(LATENCY)
}

/// Two peers in a room consuming each other, on clean links, up and running.
fn two_peers(name: &str) -> (Sim, Vec<Peer>, Vec<Sub>) {
    let mut sim = Sim::new(seed_from_env(name));
    let (peers, subs) = room_of(&mut sim, 2);
    sim.run_for(Duration::from_millis(500));
    (sim, peers, subs)
}

/// Stops every source and lets what is in flight land, so that what the SFU sent can be
/// compared with what the receivers got.
fn stop_sources_and_drain(sim: &mut Sim) {
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.net.set_default_link(clean());
    sim.run_for(Duration::from_millis(500));
}

/// The minimum number of packets a stream of `kind` must have had to deliver in `secs`.
fn min_packets(kind: MediaKind, secs: f64) -> usize {
    // Audio: 50 packets a second; video: 30 frames of 4 packets.
    let per_second = if kind == MediaKind::Audio {
        50.0
    } else {
        120.0
    };
    (per_second * secs * 0.9) as usize
}

/// How long the windows of `expect` last together, in seconds.
fn secs(expect: &[Expect]) -> f64 {
    expect
        .iter()
        .map(|e| e.to.saturating_duration_since(e.from).as_secs_f64())
        .sum()
}

/// Panics with the consumer's and network's counters if `result` is an error.
#[track_caller]
fn ok_or_panic(sim: &Sim, sub: &Sub, result: Result<(), String>) {
    if let Err(e) = result {
        eprintln!("consumer {:?}", sim.sfu.consumer_stats(sub.consumer));
        eprintln!("net {:?}", sim.net.stats());
        panic!("{:?} consumer {}: {e}", sub.kind, sub.consumer);
    }
}

/// The SFU sent each of the consumer's sequence numbers once, and every one arrived: what the
/// SFU counts as sent equals what the receiver accepted (its RTP stack drops a number it already
/// has, so a packet sent twice under one number is seen only here). Needs a lossless path to
/// the receiver and nothing in flight.
#[track_caller]
fn assert_sent_once(sim: &Sim, sub: &Sub, d: &Delivery) {
    let sent = sim.sfu.consumer_stats(sub.consumer).unwrap().packets_sent;
    assert_eq!(
        sent, d.received as u64,
        "{:?} consumer {}: the SFU sent {sent} packets, the receiver accepted {} distinct \
         sequence numbers",
        sub.kind, sub.consumer, d.received
    );
}

/// Packets the SFU sent, after a run had started, numbered below that run's first packet: that
/// is, forwarded after a resync although they belong before it (or to the run before). Arrival
/// order is the SFU's send order only on an in-order path to the receiver.
fn stale_after_resync(sim: &Sim, sub: &Sub, sources: &[u32]) -> usize {
    let mut stale = 0;
    let mut last: Option<u64> = None;
    let mut max: Option<u64> = None;
    let mut run: Option<(u32, i64)> = None;
    let mut floor = 0u64;
    for p in sim.clients[sub.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == sub.ssrc)
    {
        let cseq = extend(last, p.seq);
        last = Some(cseq);
        let Some(info) = verify_payload(&p.payload) else {
            continue;
        };
        let Some(log) = sim
            .sent
            .get(&info.ssrc)
            .filter(|_| sources.contains(&info.ssrc))
        else {
            continue;
        };
        let first = log.packets[0].seq as u16;
        let index = i64::from(info.seq.wrapping_sub(first));
        let key = (info.ssrc, cseq as i64 - index);
        if run != Some(key) && max.is_none_or(|m| cseq > m) {
            // The first packet (in send order) of a new run.
            run = Some(key);
            floor = cseq;
        } else if cseq < floor {
            stale += 1;
        }
        max = Some(max.map_or(cseq, |m| m.max(cseq)));
    }
    stale
}

/// Packets of `source` sent in `[from, to]` that the receiver got.
fn received_sent_between(sim: &Sim, sub: &Sub, source: u32, from: Instant, to: Instant) -> usize {
    let log = &sim.sent[&source];
    let first = log.packets[0].seq as u16;
    sim.clients[sub.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == sub.ssrc)
        .filter_map(|p| verify_payload(&p.payload))
        .filter(|i| i.ssrc == source)
        .filter_map(|i| log.packets.get(usize::from(i.seq.wrapping_sub(first))))
        .filter(|s| s.at >= from && s.at <= to)
        .count()
}

/// What must hold of every stream whatever happened ([`Delivery::check_sound`]).
#[track_caller]
fn assert_sound(sub: &Sub, d: &Delivery) {
    if let Err(e) = d.check_sound() {
        panic!("{:?} consumer {}: {e}", sub.kind, sub.consumer);
    }
}

#[test]
fn duplicated_datagrams_are_never_delivered_twice() {
    let (mut sim, peers, subs) = two_peers("impair_duplicate");
    sim.net.set_default_link(clean().with_duplicate(0.2));
    sim.run_for(Duration::from_secs(3));
    stop_sources_and_drain(&mut sim);
    let net = sim.net.stats();
    assert!(net.duplicated > 100, "the links duplicated little: {net:?}");
    for sub in &subs {
        let d = sub_delivery(&sim, sub, sim.start);
        // Duplication does not reorder: everything arrives once, in order, in one run.
        ok_or_panic(&sim, sub, d.check(min_packets(sub.kind, 3.0)));
        assert_eq!(d.runs, 1, "{d:?}");
        assert_sent_once(&sim, sub, &d);
        // The SFU forwarded each source packet once: it dropped the copies.
        let made = sim.sent[&sub.source_ssrc].packets.len() as u64;
        let got = sim
            .sfu
            .producer_stats(sub.producer)
            .unwrap()
            .packets_received;
        assert!(
            got <= made,
            "producer received {got}, its source made {made}"
        );
    }
    for p in &peers {
        let t = sim.sfu.transport_stats(sim.clients[p.send].id).unwrap();
        assert!(t.rtp_dropped > 0, "no duplicate was dropped: {t:?}");
    }
}

#[test]
fn reordered_datagrams_are_forwarded_through_one_constant_mapping() {
    let (mut sim, _, subs) = two_peers("impair_reorder");
    sim.net.set_default_link(clean().with_reorder(0.05));
    sim.run_for(Duration::from_secs(3));
    stop_sources_and_drain(&mut sim);
    let net = sim.net.stats();
    assert!(net.reordered > 50, "the links reordered little: {net:?}");
    let mut out_of_order = 0;
    for sub in &subs {
        let d = sub_delivery(&sim, sub, sim.start);
        // Everything arrives, once; reordered input is forwarded as it comes, each packet with
        // the sequence number and timestamp of the one constant mapping (one run, no gaps).
        ok_or_panic(&sim, sub, d.check_reordered(min_packets(sub.kind, 3.0)));
        assert_eq!(d.runs, 1, "{d:?}");
        out_of_order += d.out_of_order;
    }
    assert!(out_of_order > 0, "no reordering reached a receiver");
}

#[test]
fn jitter_loses_nothing_and_keeps_order() {
    let (mut sim, _, subs) = two_peers("impair_jitter");
    sim.net.set_default_link(
        LinkConfig::default()
            .with_latency(Duration::from_millis(40))
            .with_jitter(Duration::from_millis(30)),
    );
    sim.run_for(Duration::from_secs(3));
    stop_sources_and_drain(&mut sim);
    for sub in &subs {
        let d = sub_delivery(&sim, sub, sim.start);
        ok_or_panic(&sim, sub, d.check(min_packets(sub.kind, 3.0)));
        assert_eq!(d.runs, 1, "{d:?}");
        assert_sent_once(&sim, sub, &d);
    }
}

#[test]
fn loss_bursts_within_the_retransmission_horizon_are_recovered() {
    let mut sim = Sim::new(seed_from_env("impair_bursts"));
    let (peers, subs) = room_of(&mut sim, 3);
    sim.run_for(Duration::from_secs(1));
    // Peer 0's uplink and peer 1's downlink each go dark a few times for 60 to 100 ms: at
    // 120 video packets a second, 7 to 12 packets (more in a key frame) in a row.
    let server = sim.server_udp;
    let up = (sim.clients[peers[0].send].local, server);
    let down = (server, sim.clients[peers[1].recv].local);
    let dark = clean().with_loss(1.0);
    let mut bursts = Vec::new();
    for (i, ms) in [60u64, 100, 80, 90, 70, 100].into_iter().enumerate() {
        sim.run_for(Duration::from_millis(400));
        let (from, to) = if i % 2 == 0 { up } else { down };
        sim.net.set_link(from, to, dark.clone());
        let start = sim.now;
        sim.run_for(Duration::from_millis(ms));
        sim.net.remove_link(from, to);
        bursts.push((i % 2 == 0, start, sim.now));
    }
    sim.run_for(Duration::from_millis(500));
    let lost = sim.net.stats().lost;
    let (mut video_missing, mut audio_missing) = (0, 0);
    for sub in &subs {
        let d = sub_delivery(&sim, sub, sim.start);
        let hit = bursts.iter().any(|&(uplink, _, _)| {
            if uplink {
                sub.send == peers[0].send
            } else {
                sub.recv == peers[1].recv
            }
        });
        assert_sound(sub, &d);
        assert_eq!(d.runs, 1, "{d:?}");
        if sub.kind == MediaKind::Video {
            // Every burst was NACKed and retransmitted: everything arrived.
            ok_or_panic(&sim, sub, d.check_reordered(min_packets(sub.kind, 3.5)));
            video_missing += d.missing;
        } else {
            // Audio is not retransmitted: what a burst took is missing, and leaves a gap.
            assert_eq!(d.seq_gaps, d.missing, "{d:?}");
            assert_eq!(d.out_of_order, 0, "{d:?}");
            assert!(d.expected >= min_packets(sub.kind, 3.5), "{d:?}");
            if hit {
                assert!(d.missing >= 6, "a burst took audio packets: {d:?}");
            } else {
                assert_eq!(d.missing, 0, "{d:?}");
            }
            audio_missing += d.missing;
        }
    }
    eprintln!(
        "bursts: {lost} datagrams lost, video missing {video_missing}, audio missing \
         {audio_missing}"
    );
}

/// Pauses or resumes a peer's audio and video, at the consumer or at the producer.
fn set_paused(sim: &mut Sim, subs: &[&Sub], producers: &[ProducerId], at_producer: bool, p: bool) {
    for (sub, producer) in subs.iter().zip(producers) {
        match (at_producer, p) {
            (false, true) => sim.sfu.pause_consumer(sub.consumer).unwrap(),
            (false, false) => sim.sfu.resume_consumer(sub.consumer).unwrap(),
            (true, true) => sim.sfu.pause_producer(*producer).unwrap(),
            (true, false) => sim.sfu.resume_producer(*producer).unwrap(),
        }
    }
    sim.flush();
}

/// Alice's uplink is `uplink`; bob's consumers of alice are paused and resumed (at the consumer,
/// then at the producer, alternately) `cycles` times. Returns the sim, bob's consumers of alice
/// and the forwarding periods (resumed, paused).
fn pause_resume_through(
    name: &str,
    uplink: LinkConfig,
    cycles: usize,
) -> (Sim, Vec<Sub>, Vec<(Instant, Instant)>) {
    let (mut sim, peers, subs) = two_peers(name);
    let alice = &peers[0];
    sim.net
        .set_link(sim.clients[alice.send].local, sim.server_udp, uplink);
    let ours: Vec<&Sub> = subs.iter().filter(|s| s.send == alice.send).collect();
    let producers = [ours[0].producer, ours[1].producer];
    let mut periods = Vec::new();
    let mut resumed = sim.start;
    for i in 0..cycles {
        sim.run_for(Duration::from_millis(1000));
        set_paused(&mut sim, &ours, &producers, i % 2 == 1, true);
        periods.push((resumed, sim.now));
        sim.run_for(Duration::from_millis(300 + 50 * i as u64));
        set_paused(&mut sim, &ours, &producers, i % 2 == 1, false);
        resumed = sim.now;
    }
    sim.run_for(Duration::from_millis(1000));
    periods.push((resumed, sim.now));
    stop_sources_and_drain(&mut sim);
    let ours = ours.into_iter().cloned().collect();
    (sim, ours, periods)
}

/// The windows a consumer must deliver whole after its resyncs, each `(source, after, until)`:
/// what the source sent from the first decodable start at or after `after` (a key frame for
/// video) to `until`, except, for video, what the source sent within `hold` of that key frame;
/// and how many runs lost some of those.
///
/// The SFU resyncs a video consumer at the first packet of a key frame. On a link that reorders
/// or loses, the packets after it may reach the SFU before that first packet does (when it is
/// held back, or lost and retransmitted): the SFU, still waiting for a key frame, drops them, and
/// cannot retransmit them when the receiver asks for the gap (it never sent them). mediasoup does
/// the same. So a run's first `hold` (the longest the first packet can be late) may arrive
/// incomplete; everything after it, and the key frame's first packet (a run starts there), must
/// arrive.
fn after_key_frames(
    sim: &Sim,
    sub: &Sub,
    windows: &[(u32, Instant, Instant)],
    hold: Duration,
) -> (Vec<Expect>, usize) {
    let mut partial = 0;
    let mut expect = Vec::new();
    for &(source, after, until) in windows {
        let start = Expect::from_first_key_frame(sim, source, after, until);
        if sim.sent[&source].clock_rate == 90_000 {
            let held = Expect::between(source, start.from, start.from + hold);
            if delivery(sim, sub.recv, sub.ssrc, &[held]).missing > 0 {
                partial += 1;
            }
            expect.push(Expect::between(
                source,
                start.from + hold + Duration::from_nanos(1),
                until,
            ));
        } else {
            expect.push(start);
        }
    }
    (expect, partial)
}

/// Checks bob's consumers of alice after [`pause_resume_through`]: one run per forwarding
/// period, in source order, each at a key frame; everything the source sent well inside a period
/// arrived; nothing it sent well inside a pause did; nothing sent twice or across a resync.
fn check_pause_resume(sim: &Sim, ours: &[Sub], periods: &[(Instant, Instant)], margin: Duration) {
    // Packets are late by at most `margin`.
    for sub in ours {
        // Well inside: from the first decodable start after the resume (for audio plus the time
        // a reordered packet may still be in flight), to the pause (minus the same).
        let windows: Vec<(u32, Instant, Instant)> = periods
            .iter()
            .enumerate()
            .map(|(i, &(resumed, paused))| {
                let after = if i == 0 {
                    let up = sim.dtls_connected_at(sub.send).unwrap();
                    up.max(sim.dtls_connected_at(sub.recv).unwrap())
                } else if sub.kind == MediaKind::Audio {
                    resumed + margin
                } else {
                    resumed
                };
                (sub.source_ssrc, after, paused - margin)
            })
            .collect();
        let (expect, partial) = after_key_frames(sim, sub, &windows, margin);
        if sub.kind == MediaKind::Video {
            let runs = periods.len();
            eprintln!("video: {partial} of {runs} runs lost packets that overtook their key frame");
        }
        // About one run in ten, on these links.
        assert!(
            partial < periods.len(),
            "every run lost packets before its key frame"
        );
        let d = delivery(sim, sub.recv, sub.ssrc, &expect);
        assert_sound(sub, &d);
        assert_eq!(d.runs, periods.len(), "one run per period: {d:?}");
        assert!(d.first_is_key_frame || sub.kind == MediaKind::Audio);
        assert!(d.expected >= min_packets(sub.kind, secs(&expect)), "{d:?}");
        assert_eq!(
            d.missing, 0,
            "{:?} consumer {}: {d:?}",
            sub.kind, sub.consumer
        );
        assert_sent_once(sim, sub, &d);
        assert_eq!(
            stale_after_resync(sim, sub, &[sub.source_ssrc]),
            0,
            "{:?} consumer {}: forwarded from before a resync after it",
            sub.kind,
            sub.consumer
        );
        for w in periods.windows(2) {
            let (paused, resumed) = (w[0].1, w[1].0);
            let leaked =
                received_sent_between(sim, sub, sub.source_ssrc, paused + margin, resumed - margin);
            assert_eq!(leaked, 0, "{:?} forwarded while paused", sub.kind);
        }
    }
}

#[test]
fn reordered_input_across_pause_and_resume_stays_in_source_order() {
    // Reordered packets are held back 20 to 60 ms on a 40 ms link.
    let uplink = LinkConfig::default()
        .with_latency(Duration::from_millis(40))
        .with_reorder(0.15);
    let (sim, ours, periods) = pause_resume_through("impair_reorder_pause", uplink, 4);
    let net = sim.net.stats();
    assert!(net.reordered > 50, "{net:?}");
    check_pause_resume(&sim, &ours, &periods, Duration::from_millis(150));
}

#[test]
fn late_and_duplicated_retransmissions_are_never_forwarded_twice_nor_across_a_resync() {
    // Alice's uplink loses, duplicates and holds packets back 30 to 90 ms on a 60 ms link: the
    // SFU NACKs a packet that is only late, and its retransmission arrives after it; copies of
    // packets and of retransmissions arrive twice; packets from before a resume arrive after it.
    let uplink = LinkConfig::default()
        .with_latency(Duration::from_millis(60))
        .with_loss(0.02)
        .with_reorder(0.1)
        .with_duplicate(0.2);
    let (sim, ours, periods) = pause_resume_through("impair_late_rtx", uplink, 4);
    let net = sim.net.stats();
    assert!(
        net.reordered > 50 && net.duplicated > 50 && net.lost > 10,
        "{net:?}"
    );
    // Audio is not retransmitted: check its soundness, and video fully.
    for sub in ours.iter().filter(|s| s.kind == MediaKind::Audio) {
        let d = sub_delivery(&sim, sub, sim.start);
        assert_sound(sub, &d);
        assert_eq!(d.runs, periods.len(), "one run per period: {d:?}");
        assert_sent_once(&sim, sub, &d);
        assert_eq!(stale_after_resync(&sim, sub, &[sub.source_ssrc]), 0);
    }
    let video: Vec<Sub> = ours
        .into_iter()
        .filter(|s| s.kind == MediaKind::Video)
        .collect();
    check_pause_resume(&sim, &video, &periods, Duration::from_millis(250));
    let t = sim
        .sfu
        .transport_stats(sim.clients[video[0].send].id)
        .unwrap();
    assert!(
        t.rtp_dropped > 0,
        "no duplicate or late copy was dropped: {t:?}"
    );
}

#[test]
fn reordered_input_across_simulcast_layer_switches_stays_in_source_order() {
    let mut sim = Sim::new(seed_from_env("impair_reorder_simulcast"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_simulcast(alice, &LAYERS);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, producer, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.net.set_link(
        sim.clients[alice].local,
        sim.server_udp,
        LinkConfig::default()
            .with_latency(Duration::from_millis(40))
            .with_reorder(0.15),
    );
    sim.run_for(Duration::from_millis(1500));
    let targets = [0usize, 2, 1, 2, 0, 1, 0, 2];
    let mut switches = Vec::new();
    for &layer in &targets {
        sim.sfu.set_consumer_preferred_layers(c.id, layer).unwrap();
        sim.flush();
        switches.push((LAYERS[layer].1, sim.now));
        sim.run_for(Duration::from_millis(600));
    }
    let end = sim.now;
    stop_sources_and_drain(&mut sim);
    let sub = Sub {
        router: room,
        send: alice,
        recv: bob,
        producer,
        source_ssrc: LAYERS[2].1,
        kind: MediaKind::Video,
        consumer: c.id,
        ssrc,
    };
    // After each switch, the target layer from its first key frame until the next switch is
    // asked for (minus the time a reordered packet of it may still be in flight, which is
    // dropped once the next layer took over).
    let margin = Duration::from_millis(150);
    let windows: Vec<(u32, Instant, Instant)> = switches
        .iter()
        .enumerate()
        .map(|(i, &(source, at))| {
            (
                source,
                at,
                switches.get(i + 1).map_or(end, |s| s.1) - margin,
            )
        })
        .collect();
    let (mut expect, partial) = after_key_frames(&sim, &sub, &windows, margin);
    eprintln!(
        "simulcast: {partial} of {} runs lost packets that overtook their key frame",
        switches.len()
    );
    assert!(
        partial < switches.len(),
        "every run lost packets before its key frame"
    );
    // Before the first switch: whatever layer the consumer started on.
    for (_, source) in LAYERS {
        expect.push(Expect::between(source, end + Duration::from_secs(60), end));
    }
    let d = delivery(&sim, bob, ssrc, &expect);
    assert_sound(&sub, &d);
    assert!(d.expected >= min_packets(sub.kind, secs(&expect)), "{d:?}");
    assert_eq!(d.missing, 0, "{d:?}");
    assert_sent_once(&sim, &sub, &d);
    let sources: Vec<u32> = LAYERS.iter().map(|l| l.1).collect();
    assert_eq!(stale_after_resync(&sim, &sub, &sources), 0);
    let runs = &d.run_sources;
    let wanted: Vec<u32> = switches.iter().map(|s| s.0).collect();
    assert!(
        runs.ends_with(&wanted),
        "runs {runs:?} end with the layers asked for {wanted:?}"
    );
}
