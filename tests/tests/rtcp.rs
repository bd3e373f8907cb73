//! RTCP behaviour: key frame requests are merged and throttled, sender reports reach consumers
//! and agree with the media they describe, and ICE restarts keep media flowing.
//!
//! Timing claims are exact: the simulated links have a fixed latency and no jitter.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{connected, join, key_frame_requests, one_way, SETTLE};
use sfu_core::media::rtcp::{self, RtcpPacket};
use sfu_core::media::srtp::RtcpReplay;
use sfu_core::ortc::MediaKind;
use sfu_core::{Input, Output, SfuConfig};
use sfu_tests::client::Received;
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn consumer_plis_become_one_throttled_key_frame_request() {
    let mut sim = Sim::new(seed_from_env("pli_throttle"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let caps = sim.device_caps(room);
    let mut viewers = Vec::new();
    for _ in 0..4 {
        let v = sim.add_transport(room, Protocol::Udp);
        let c = sim.consume(v, alice.video, caps.clone(), false);
        viewers.push((
            v,
            c.parameters.rtp_parameters.encodings[0].ssrc.unwrap(),
            c.id,
        ));
    }
    sim.run_for(Duration::from_secs(2));
    let interval = SfuConfig::default().key_frame_request_interval;
    let before = key_frame_requests(&sim, alice.video);
    assert!(
        before.last().is_some_and(|&t| t + interval < sim.now),
        "test set-up: the last request was long enough ago not to throttle the next"
    );
    // All four viewers send a PLI at the same instant, and again 50 ms later (inside the
    // throttle interval that the first one starts).
    let t0 = sim.now;
    for round in 0..2 {
        for &(v, ssrc, _) in &viewers {
            let now = sim.now;
            sim.clients[v].request_key_frame(now, ssrc);
        }
        sim.flush();
        if round == 0 {
            sim.run_for(Duration::from_millis(50));
        }
    }
    sim.run_for(Duration::from_secs(1));
    let received: u64 = viewers
        .iter()
        .map(|(_, _, c)| {
            sim.sfu
                .consumer_stats(*c)
                .unwrap()
                .key_frame_requests_received
        })
        .sum();
    assert_eq!(received, 8, "every PLI reached the server");
    // The first PLIs reach the server one viewer link after t0; the request they cause goes out
    // at once and reaches the publisher one publisher link later. Every other PLI arrives
    // inside the interval and is merged into one request sent exactly when the interval ends.
    // Nothing else asks for a key frame.
    let pli_at = t0 + one_way(&sim, viewers[0].0);
    let first = pli_at + one_way(&sim, alice.send);
    let got: Vec<Duration> = key_frame_requests(&sim, alice.video)[before.len()..]
        .iter()
        .map(|&t| t - t0)
        .collect();
    eprintln!("viewers sent 8 PLIs at +0 and +50 ms; requests reached the publisher at {got:?}");
    assert_eq!(
        got,
        [first - t0, first - t0 + interval],
        "one request at once, one merged request exactly one interval ({interval:?}) later, \
         none in between or after"
    );
    // The producer counts every request it sent, and the publisher got each one.
    let sent = sim
        .sfu
        .producer_stats(alice.video)
        .unwrap()
        .key_frame_requests_sent;
    assert_eq!(
        sent,
        key_frame_requests(&sim, alice.video).len() as u64,
        "requests the producer counted vs requests the publisher got"
    );
    // Each viewer keeps receiving everything, from a key frame, in one run.
    for &(v, ssrc, _) in &viewers {
        let from = connected(&sim, &[alice.send, v]);
        let expect = Expect::from_first_key_frame(&sim, alice.video_ssrc, from, sim.now - SETTLE);
        let d = delivery(&sim, v, ssrc, &[expect]);
        d.assert_clean(300);
        assert_eq!(d.runs, 1, "{d:?}");
    }
}

/// A consumer created paused asks for no key frame, not even when its transport connects; its
/// resume asks for one at once.
#[test]
fn paused_consumers_ask_for_no_key_frame_until_resumed() {
    let mut sim = Sim::new(seed_from_env("paused_no_key_frame"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    sim.run_for(Duration::from_secs(1));
    let before = key_frame_requests(&sim, alice.video).len();
    // A new viewer whose transport connects with a paused video consumer (and an audio one).
    let viewer = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let c = sim.consume(viewer, alice.video, caps.clone(), true);
    sim.consume(viewer, alice.audio, caps, false);
    sim.run_for(Duration::from_secs(1));
    assert!(sim.dtls_connected_at(viewer).is_some(), "viewer connected");
    assert_eq!(
        key_frame_requests(&sim, alice.video).len(),
        before,
        "a paused consumer asked for a key frame"
    );
    sim.sfu.resume_consumer(c.id).unwrap();
    sim.flush();
    let resumed = sim.now;
    sim.run_for(Duration::from_millis(500));
    let first = key_frame_requests(&sim, alice.video)[before..]
        .first()
        .copied();
    assert_eq!(
        first,
        Some(resumed + one_way(&sim, alice.send)),
        "a request at once on resume"
    );
}

/// Leeway on exact times (the simulation is exact; this only absorbs rounding).
const SLACK: Duration = Duration::from_millis(2);

/// The source packet a received packet carries: when the source made it.
fn made_at(sim: &Sim, p: &Received) -> Instant {
    let info = verify_payload(&p.payload).expect("payload verifies");
    sim.sent[&info.ssrc]
        .packets
        .iter()
        .rev()
        .find(|s| s.seq as u16 == info.seq && s.at <= p.at)
        .expect("a packet the source made")
        .at
}

/// Signed duration `b - a` in microseconds.
fn micros_between(a: Instant, b: Instant) -> i64 {
    if b >= a {
        (b - a).as_micros() as i64
    } else {
        -((a - b).as_micros() as i64)
    }
}

#[test]
fn sender_reports_agree_with_the_media() {
    let mut sim = Sim::new(seed_from_env("sender_reports"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let audio = sim.consume(bob, alice.audio, caps.clone(), false);
    let video = sim.consume(bob, alice.video, caps, false);
    sim.run_for(Duration::from_secs(16));
    let (up, down) = (one_way(&sim, alice.send), one_way(&sim, bob));
    // The publisher receives no sender reports from the server (it only sends media).
    assert_eq!(sim.clients[alice.send].sender_reports, 0);

    // For each report, how long after the media it names was captured the report places it
    // on the wallclock: one value per stream, and the same for audio and video (lip sync).
    let mut latencies: Vec<(u32, i64)> = Vec::new();
    for (consumed, source, rate, min_reports) in [
        (&audio, alice.audio_ssrc, 48_000u32, 3),
        (&video, alice.video_ssrc, 90_000, 12),
    ] {
        let ssrc = consumed.parameters.rtp_parameters.encodings[0]
            .ssrc
            .unwrap();
        let srs: Vec<_> = sim.clients[bob]
            .sender_report_log
            .iter()
            .filter(|s| s.ssrc == ssrc)
            .collect();
        // str0m's intervals: 5 s for audio, 1 s for video.
        assert!(
            srs.len() >= min_reports,
            "{} SRs for {ssrc} (rate {rate}) in 16 s",
            srs.len()
        );
        let media: Vec<&Received> = sim.clients[bob]
            .received
            .iter()
            .filter(|p| p.ssrc == ssrc)
            .collect();
        // The media itself: every packet, one run.
        let from = connected(&sim, &[alice.send, bob]);
        let d = delivery(
            &sim,
            bob,
            ssrc,
            &[Expect::from_first_key_frame(
                &sim,
                source,
                from,
                sim.now - SETTLE,
            )],
        );
        d.assert_clean(300);
        assert_eq!(d.runs, 1, "{d:?}");

        // Consecutive reports: RTP time moves as NTP time does, at the clock rate (within 1 ms
        // of ticks), and NTP time as the reports' departures did (they share one exact link).
        for w in srs.windows(2) {
            let (a, b) = (w[0], w[1]);
            let dntp = b.ntp_time.duration_since(a.ntp_time).expect("NTP moves on");
            let drtp = i64::from(b.rtp_time.wrapping_sub(a.rtp_time) as i32);
            let want = (dntp.as_nanos() as i64) * i64::from(rate) / 1_000_000_000;
            assert!(
                (drtp - want).abs() <= i64::from(rate) / 1000,
                "SRs of {ssrc}: RTP time moved {drtp} ticks in {dntp:?} of NTP time ({want} \
                 at {rate} Hz)"
            );
            let skew = micros_between(a.at + dntp, b.at).abs();
            assert!(
                skew <= SLACK.as_micros() as i64,
                "SRs of {ssrc}: NTP time moved {dntp:?} between reports that arrived {:?} apart",
                b.at - a.at
            );
        }
        for sr in &srs {
            // Place the report's RTP time through the media packet that arrived nearest to it
            // (its consumer timestamp, and when the source made it): the capture instant it
            // names.
            let p = media
                .iter()
                .min_by_key(|p| {
                    if p.at >= sr.at {
                        p.at - sr.at
                    } else {
                        sr.at - p.at
                    }
                })
                .expect("media");
            let offset = i64::from(sr.rtp_time.wrapping_sub(p.timestamp) as i32);
            let offset_nanos = offset * 1_000_000_000 / i64::from(rate);
            let made = made_at(&sim, p);
            let captured = if offset_nanos >= 0 {
                made + Duration::from_nanos(offset_nanos as u64)
            } else {
                made - Duration::from_nanos((-offset_nanos) as u64)
            };
            // The report left the server one link latency before it arrived, and says that RTP
            // time was "now" then. Media with that RTP time was captured at `captured` and
            // reached the server one publisher link later; a server may map RTP time to either
            // (capture time from the publisher's reports, or arrival time), nothing else.
            let sent = sr.at - down;
            let latency = micros_between(captured, sent);
            let (lo, hi) = (-(SLACK.as_micros() as i64), (up + SLACK).as_micros() as i64);
            assert!(
                (lo..=hi).contains(&latency),
                "SR of {ssrc} at {:?} says RTP {} at its departure; the media (timestamp {} \
                 made at {:?}) puts that RTP time {latency} us before then, outside \
                 [{lo}, {hi}] us (capture .. arrival at the server)",
                sr.at - sim.start,
                sr.rtp_time,
                p.timestamp,
                made - sim.start
            );
            latencies.push((ssrc, latency));
            // Packets counted: everything sent on the stream before the report, i.e. what
            // arrived before it (one exact link, no loss, no reordering), give or take what was
            // sent in the same instant.
            let before = media.iter().filter(|p| p.at < sr.at).count() as u32;
            let upto = media.iter().filter(|p| p.at <= sr.at).count() as u32;
            assert!(
                (before..=upto).contains(&sr.packet_count),
                "SR of {ssrc} at {:?} counts {} packets; {before} arrived before it, {upto} by \
                 then",
                sr.at - sim.start,
                sr.packet_count
            );
        }
    }
    let (min, max) = (
        latencies.iter().map(|l| l.1).min().unwrap(),
        latencies.iter().map(|l| l.1).max().unwrap(),
    );
    eprintln!("sender reports: media placed {min}..{max} us after capture");
    assert!(
        max - min <= SLACK.as_micros() as i64,
        "audio and video reports must place media on one wallclock (lip sync): {latencies:?}"
    );
}

#[test]
fn ice_restart_keeps_media_flowing() {
    let mut sim = Sim::new(seed_from_env("ice_restart"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, alice.audio, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(1));
    for client in [alice.send, bob] {
        let id = sim.clients[client].id;
        let ice = sim.sfu.restart_ice(id).unwrap();
        assert_ne!(ice.username_fragment, sim.clients[client].server_ufrag);
        let now = sim.now;
        sim.clients[client].restart_ice(now, &ice);
        sim.flush();
    }
    let restarted = sim.now;
    // Long enough for ICE consent to expire had the restart failed.
    sim.run_for(Duration::from_secs(12));
    for client in [alice.send, bob] {
        let states = &sim.clients[client].ice_states;
        assert_ne!(
            states.last(),
            Some(&str0m::IceConnectionState::Disconnected),
            "{states:?}"
        );
    }
    // Every packet arrived, before, during and after the restart (past when consent would have
    // expired), in one run: the restart changed nothing the receiver can see.
    let from = connected(&sim, &[alice.send, bob]);
    let expect = Expect::from_first_key_frame(&sim, alice.audio_ssrc, from, sim.now - SETTLE);
    assert!(expect.from < restarted && expect.to > restarted + Duration::from_secs(10));
    let d = delivery(&sim, bob, ssrc, &[expect]);
    d.assert_clean(600);
    assert_eq!(d.runs, 1, "{d:?}");
    assert_eq!(sim.sfu.stats().dropped_stun_unauthenticated, 0);
    assert_eq!(sim.sfu.stats().dropped_stun_unknown_ufrag, 0);
}

/// A runtime reads datagrams in batches and gives each its kernel arrival time, which is often
/// before the Sfu's clock (a timer or an earlier batch moved it on). Transport-wide feedback
/// reports each datagram's own arrival: a sender's delay-based estimate reads a batch stamped
/// all at once as a queue building up and cuts its rate.
#[test]
fn transport_cc_feedback_reports_each_datagrams_own_arrival() {
    let mut sim = Sim::new(seed_from_env("twcc_arrivals"));
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    sim.produce(send, MediaKind::Video, 5000);
    sim.run_for(Duration::from_secs(1));
    for p in &mut sim.publications {
        p.muted = true;
    }
    // Past every feedback still due for what was sent so far.
    sim.run_for(Duration::from_millis(300));
    let mut batch = Vec::new();
    while batch.len() < 8 {
        let at = sim.publications[0].source.next_at();
        sim.now = sim.now.max(at);
        let packets = sim.take_source_packets(0, at);
        batch.extend(media_datagrams(&mut sim, send, "0", packets));
    }
    batch.truncate(8);
    let arrivals = feedback_for_batch(&mut sim, send, &batch);
    assert_eq!(
        arrivals.len(),
        batch.len(),
        "every packet of the batch is reported"
    );
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (4_750..=5_250).contains(&gap),
            "arrivals reported {gap} µs apart, sent 5 ms apart: {arrivals:?}"
        );
    }
}

/// A browser sends a new track's first packets while its `produce` request is still on its
/// way: they count for congestion control (the sender learns they arrived) although no
/// producer takes them yet.
#[test]
fn transport_cc_feedback_covers_packets_that_race_their_produce() {
    let mut sim = Sim::new(seed_from_env("twcc_unrouted"));
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    sim.produce(send, MediaKind::Audio, 1000);
    sim.run_for(Duration::from_secs(1));
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.run_for(Duration::from_millis(300));
    // Video the client sends on a new mid the Sfu has no producer for.
    let params = sim.clients[send].prepare_produce(MediaKind::Video, 5000);
    let mid = params.mid.clone().expect("mid");
    let mut source = sfu_tests::media::Source::video(5000, sim.now);
    let mut batch = Vec::new();
    while batch.len() < 6 {
        let at = source.next_at();
        sim.now = sim.now.max(at);
        let packets = source.poll(at);
        batch.extend(media_datagrams(&mut sim, send, &mid, packets));
    }
    let dropped = sim
        .sfu
        .transport_stats(sim.clients[send].id)
        .unwrap()
        .rtp_dropped;
    let arrivals = feedback_for_batch(&mut sim, send, &batch);
    assert_eq!(
        arrivals.len(),
        batch.len(),
        "every authentic packet is reported"
    );
    let stats = sim.sfu.transport_stats(sim.clients[send].id).unwrap();
    assert_eq!(
        stats.rtp_dropped - dropped,
        batch.len() as u64,
        "and none of them is forwarded"
    );
}

/// The SRTP datagrams client `client` writes for `packets` on `mid`.
fn media_datagrams(
    sim: &mut Sim,
    client: usize,
    mid: &str,
    packets: Vec<sfu_tests::media::OutPacket>,
) -> Vec<Vec<u8>> {
    sim.capture_sent(client, mid, packets)
        .into_iter()
        .filter(|d| sfu_tests::forge::is_srtp(d))
        .collect()
}

/// Feeds `batch` (datagrams from `client`) to the Sfu as arrived 5 ms apart but read 50 ms
/// later, after the Sfu's clock moved on, lets its feedback fall due, and returns the arrival
/// times the transport-cc feedback to `client` reports, in microseconds on its clock.
fn feedback_for_batch(sim: &mut Sim, client: usize, batch: &[Vec<u8>]) -> Vec<i64> {
    let (source, server) = (sim.clients[client].local, sim.server_udp);
    let t0 = sim.now;
    sim.sfu
        .handle_input(Input::Timeout(t0 + Duration::from_millis(50)));
    for (i, d) in batch.iter().enumerate() {
        sim.sfu.handle_input(Input::Receive {
            now: t0 + Duration::from_millis(5) * i as u32,
            proto: sfu_core::Protocol::Udp,
            source,
            destination: server,
            contents: d,
        });
    }
    sim.sfu
        .handle_input(Input::Timeout(t0 + Duration::from_millis(400)));
    let ctx = sim
        .sfu
        .test_only_endpoint_srtp_receive_context(sim.clients[client].id)
        .expect("connected");
    let mut arrivals = Vec::new();
    loop {
        match sim.sfu.poll_output() {
            Output::Transmit(t) if t.destination == source && rtcp::is_rtcp(&t.contents) => {
                let mut buf = t.contents.clone();
                let mut replay = RtcpReplay::default();
                let len = ctx.unprotect_rtcp(&mut buf, &mut replay).expect("SRTCP");
                for p in rtcp::compound(&buf[..len]).flatten() {
                    if let RtcpPacket::TransportCc(cc) = p {
                        let reference = i64::from(cc.reference_time()) * 64_000;
                        arrivals.extend(cc.packets().filter_map(|(_, at)| Some(reference + at?)));
                    }
                }
            }
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    arrivals
}
