//! Acceptance: late joiners, pause/resume/close as mediasoup documents them, and API misuse.
//!
//! Timing claims are exact: the simulated links have a fixed latency and no jitter, so a key
//! frame request the server sends at the instant of an API call reaches the publisher exactly one
//! link latency later, and what the publisher sends reaches a receiver a known time after that.
//! Media is checked with the delivery checker against what each source sent.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{connected, join, key_frame_requests, one_way, SETTLE};
use sfu_core::ortc::MediaKind;
use sfu_core::{ConsumerCloseReason, Error, Event, ProduceOptions, ProducerId, SfuConfig};
use sfu_tests::client::h264_only_capabilities;
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::{verify_payload, VIDEO_INTERVAL};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Leeway on exact arrival times (the simulation is exact; this only absorbs rounding).
const SLACK: Duration = Duration::from_millis(2);

/// Asserts that a key frame request for `producer` left the server at `at` (the instant of an
/// API call: within the same poll), so it reached the publishing client `publisher` exactly one
/// link latency later. No request may have left in the throttle interval before `at` (the test
/// must not set up a throttled request). Returns when it reached the publisher.
#[track_caller]
fn assert_key_frame_request_at_once(
    sim: &Sim,
    producer: ProducerId,
    publisher: usize,
    at: Instant,
    what: &str,
) -> Instant {
    let interval = SfuConfig::default().key_frame_request_interval;
    let expected = at + one_way(sim, publisher);
    let times = key_frame_requests(sim, producer);
    let earlier: Vec<_> = times
        .iter()
        .filter(|&&t| t < expected && t + interval > expected)
        .map(|&t| t - sim.start)
        .collect();
    assert!(
        earlier.is_empty(),
        "test set-up: a request reached the publisher within the throttle interval before \
         {what}: {earlier:?}"
    );
    let first = times.iter().find(|&&t| t >= expected - interval);
    assert_eq!(
        first.map(|&t| t - sim.start),
        Some(expected - sim.start),
        "the key frame request for {what} (at {:?}) must leave the server at once and reach the \
         publisher one link latency later; requests reached it at {:?}",
        at - sim.start,
        times.iter().map(|&t| t - sim.start).collect::<Vec<_>>()
    );
    expected
}

/// Packets `client` received on `ssrc` strictly after `after`.
fn received_after(sim: &Sim, client: usize, ssrc: u32, after: Instant) -> usize {
    sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at > after)
        .count()
}

/// How many packets the source sent inside an expected window.
fn sent_in(sim: &Sim, e: &Expect) -> usize {
    sim.sent[&e.source]
        .packets
        .iter()
        .filter(|p| p.sent && p.at >= e.from && p.at <= e.to)
        .count()
}

/// The first instant after which a packet the publisher makes reaches the server after `t`:
/// what a source makes from then on must be forwarded once the server acts at `t`.
fn reaching_server_after(t: Instant, up: Duration) -> Instant {
    t - up + Duration::from_nanos(1)
}

#[test]
fn late_joiner_gets_a_key_frame_one_round_trip_after_consuming() {
    let mut sim = Sim::new(seed_from_env("late_joiner"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    sim.run_for(Duration::from_secs(3));
    let bob = sim.add_transport(room, Protocol::Udp);
    sim.run_for(Duration::from_millis(300)); // ICE + DTLS of the new transport
    assert!(
        sim.dtls_connected_at(bob).is_some_and(|t| t <= sim.now),
        "bob's transport is connected before he consumes"
    );
    let caps = sim.device_caps(room);
    let consumed = sim.consume(bob, alice.video, caps, false);
    let asked_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let (up, down) = (one_way(&sim, alice.send), one_way(&sim, bob));

    // The request leaves the server within the consume call's poll...
    let reached =
        assert_key_frame_request_at_once(&sim, alice.video, alice.send, asked_at, "consume");
    // ...the source answers in its next frame slot...
    let key = sim.sent[&alice.video_ssrc]
        .packets
        .iter()
        .find(|p| p.at >= reached && p.key_frame)
        .expect("the source made a key frame");
    assert!(key.at - reached <= VIDEO_INTERVAL);
    // ...and that key frame is the first thing bob gets: one way to the server, one to bob.
    let first = sim.clients[bob]
        .received
        .iter()
        .find(|p| p.ssrc == ssrc)
        .expect("late joiner received video");
    let info = verify_payload(&first.payload).unwrap();
    assert!(info.key_frame, "the first packet must start a key frame");
    assert_eq!(
        u64::from(info.seq),
        key.seq & 0xffff,
        "the first packet is the key frame the request asked for"
    );
    let waited = first.at - asked_at;
    let bound = up + VIDEO_INTERVAL + up + down + SLACK;
    eprintln!("late joiner: first key frame after {waited:?} (bound {bound:?})");
    assert!(
        waited <= bound,
        "key frame took {waited:?}; one round trip to the publisher, its next frame slot and \
         the way to the joiner make {bound:?}"
    );
    // From that key frame on, everything arrived, in one run.
    let expect = Expect::from_first_key_frame(&sim, alice.video_ssrc, asked_at, sim.now - SETTLE);
    let d = delivery(&sim, bob, ssrc, &[expect]);
    d.assert_clean(100);
    assert!(d.first_is_key_frame);
    assert_eq!(d.runs, 1, "{d:?}");
    // The packets that reached the server between the consume call and the key frame waited
    // for it (they are counted), and none of them reached bob.
    let waiting = sim.sent[&alice.video_ssrc]
        .packets
        .iter()
        .filter(|p| p.at + up >= asked_at && p.at < key.at)
        .count() as u64;
    let stats = sim.sfu.consumer_stats(consumed.id).unwrap();
    assert_eq!(stats.packets_waiting_for_key_frame, waiting, "{stats:?}");
}

#[test]
fn consumer_pause_resume_keeps_continuity_and_close_stops() {
    let mut sim = Sim::new(seed_from_env("consumer_pause"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let video = sim.consume(bob, alice.video, caps.clone(), false);
    let audio = sim.consume(bob, alice.audio, caps, false);
    let vssrc = video.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let assrc = audio.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(2));
    let (up, down) = (one_way(&sim, alice.send), one_way(&sim, bob));
    let up_at = connected(&sim, &[alice.send, bob]);

    sim.sfu.pause_consumer(video.id).unwrap();
    sim.sfu.pause_consumer(audio.id).unwrap();
    sim.flush();
    let paused_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    // What the server wrote before the pause is in flight for one link latency; nothing after.
    assert_eq!(received_after(&sim, bob, vssrc, paused_at + down), 0);
    assert_eq!(received_after(&sim, bob, assrc, paused_at + down), 0);

    sim.sfu.resume_consumer(video.id).unwrap();
    sim.sfu.resume_consumer(audio.id).unwrap();
    sim.flush();
    let resumed_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert_key_frame_request_at_once(&sim, alice.video, alice.send, resumed_at, "resume");
    let waiting = sim
        .sfu
        .consumer_stats(video.id)
        .unwrap()
        .packets_waiting_for_key_frame;

    sim.sfu.close_consumer(video.id).unwrap();
    sim.flush();
    let closed_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(received_after(&sim, bob, vssrc, closed_at + down), 0);
    assert_eq!(
        sim.sfu.consumer_stats(video.id),
        Err(Error::UnknownConsumer(video.id))
    );

    // Video: every packet that reached the server before the pause, and every packet from the
    // first key frame after the resume until the close: two runs, contiguous sequence numbers
    // across the pause, the second starting at that key frame, timestamps moved on by the pause.
    let windows = [
        Expect::from_first_key_frame(&sim, alice.video_ssrc, up_at, paused_at - up),
        Expect::from_first_key_frame(&sim, alice.video_ssrc, resumed_at, closed_at - up),
    ];
    for w in &windows {
        assert!(sent_in(&sim, w) > 150, "window too short: {w:?}");
    }
    let d = delivery(&sim, bob, vssrc, &windows);
    d.assert_clean(300);
    assert_eq!(d.runs, 2, "one run before the pause, one after: {d:?}");
    // The delta frames that reached the server between the resume and that key frame waited
    // for it, and are counted.
    let key_frame_at = windows[1].from;
    let waited = sim.sent[&alice.video_ssrc]
        .packets
        .iter()
        .filter(|p| p.at + up >= resumed_at && p.at < key_frame_at)
        .count() as u64;
    assert!(
        waited > 0,
        "the key frame took a round trip: delta frames came first"
    );
    assert_eq!(
        waiting, waited,
        "packets counted as waiting for the key frame"
    );
    // Audio: the same, from the first packet to reach the server after the resume, and on
    // after the video consumer closed.
    let windows = [
        Expect::from_first_key_frame(&sim, alice.audio_ssrc, up_at, paused_at - up),
        Expect::between(
            alice.audio_ssrc,
            reaching_server_after(resumed_at, up),
            sim.now - SETTLE,
        ),
    ];
    for w in &windows {
        assert!(sent_in(&sim, w) > 60, "window too short: {w:?}");
    }
    let d = delivery(&sim, bob, assrc, &windows);
    d.assert_clean(150);
    assert_eq!(d.runs, 2, "one run before the pause, one after: {d:?}");
}

#[test]
fn producer_pause_resume_close_reach_consumers() {
    let mut sim = Sim::new(seed_from_env("producer_pause"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let carol = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let b = sim.consume(bob, alice.video, caps.clone(), false);
    let c = sim.consume(carol, alice.video, caps, false);
    let viewers = [
        (bob, b.parameters.rtp_parameters.encodings[0].ssrc.unwrap()),
        (
            carol,
            c.parameters.rtp_parameters.encodings[0].ssrc.unwrap(),
        ),
    ];
    sim.run_for(Duration::from_secs(1));
    let up = one_way(&sim, alice.send);

    sim.sfu.pause_producer(alice.video).unwrap();
    sim.flush();
    assert!(sim.sfu.producer_paused(alice.video).unwrap());
    let paused_at = sim.now;
    for id in [b.id, c.id] {
        assert!(sim
            .events
            .iter()
            .any(|(_, e)| *e == Event::ConsumerProducerPaused { consumer: id }));
    }
    sim.run_for(Duration::from_secs(1));
    for (client, ssrc) in viewers {
        let down = one_way(&sim, client);
        assert_eq!(received_after(&sim, client, ssrc, paused_at + down), 0);
    }

    sim.sfu.resume_producer(alice.video).unwrap();
    sim.flush();
    let resumed_at = sim.now;
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| *e == Event::ConsumerProducerResumed { consumer: b.id }));
    sim.run_for(Duration::from_secs(1));
    assert_key_frame_request_at_once(&sim, alice.video, alice.send, resumed_at, "producer resume");

    sim.sfu.close_producer(alice.video).unwrap();
    sim.flush();
    for id in [b.id, c.id] {
        assert!(sim.events.iter().any(|(_, e)| *e
            == Event::ConsumerClosed {
                consumer: id,
                reason: ConsumerCloseReason::ProducerClosed
            }));
        assert_eq!(sim.sfu.consumer_stats(id), Err(Error::UnknownConsumer(id)));
    }
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::ProducerClosed {
            producer: alice.video
        }));
    let closed_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    for (client, ssrc) in viewers {
        let down = one_way(&sim, client);
        assert_eq!(received_after(&sim, client, ssrc, closed_at + down), 0);
        // Everything that reached the server before the pause, and from the first key frame
        // after the resume until the close: two runs, continuous across the pause.
        let windows = [
            Expect::from_first_key_frame(
                &sim,
                alice.video_ssrc,
                connected(&sim, &[alice.send, client]),
                paused_at - up,
            ),
            Expect::from_first_key_frame(&sim, alice.video_ssrc, resumed_at, closed_at - up),
        ];
        for w in &windows {
            assert!(sent_in(&sim, w) > 60, "window too short: {w:?}");
        }
        let d = delivery(&sim, client, ssrc, &windows);
        d.assert_clean(150);
        assert_eq!(d.runs, 2, "one run before the pause, one after: {d:?}");
    }
}

#[test]
fn transport_close_closes_its_producers_and_consumers() {
    let mut sim = Sim::new(seed_from_env("transport_close"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, alice.audio, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(1));
    let alice_send = sim.clients[alice.send].id;
    sim.sfu.close_transport(alice_send).unwrap();
    sim.flush();
    let closed_at = sim.now;
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::TransportClosed {
            transport: alice_send
        }));
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::ProducerClosed {
            producer: alice.audio
        }));
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::ConsumerClosed {
            consumer: c.id,
            reason: ConsumerCloseReason::ProducerClosed
        }));
    assert_eq!(
        sim.sfu.transport_stats(alice_send).unwrap_err(),
        Error::UnknownTransport(alice_send)
    );
    // Producing on a closed transport is a typed error.
    let params = sim.clients[alice.send].prepare_produce(MediaKind::Audio, 4242);
    let err = sim
        .sfu
        .produce(
            alice_send,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: params,
                paused: false,
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::UnknownTransport(alice_send));
    // The rest keeps running.
    sim.run_for(Duration::from_millis(500));
    assert!(sim.sfu.transport_stats(sim.clients[bob].id).is_ok());
    // Bob got every packet that reached the server before the close, in one run, and nothing
    // after what was in flight.
    let (up, down) = (one_way(&sim, alice.send), one_way(&sim, bob));
    assert_eq!(received_after(&sim, bob, ssrc, closed_at + down), 0);
    let expect = Expect::from_first_key_frame(
        &sim,
        alice.audio_ssrc,
        connected(&sim, &[alice.send, bob]),
        closed_at - up,
    );
    let d = delivery(&sim, bob, ssrc, &[expect]);
    d.assert_clean(30);
    assert_eq!(d.runs, 1, "{d:?}");
}

#[test]
fn api_misuse_returns_typed_errors() {
    let mut sim = Sim::new(seed_from_env("api_misuse"));
    let room = sim.create_router();
    let other_room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let stranger = sim.add_transport(other_room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);

    // A device that only decodes H264 cannot consume VP8.
    assert_eq!(
        sim.sfu.can_consume(alice.video, &h264_only_capabilities()),
        Ok(false)
    );
    let err = sim
        .sfu
        .consume(
            sim.clients[bob].id,
            sfu_core::ConsumeOptions {
                producer: alice.video,
                rtp_capabilities: h264_only_capabilities(),
                paused: false,
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::CannotConsume(alice.video));
    // Consuming across routers.
    let caps = sim.device_caps(other_room);
    let err = sim
        .sfu
        .consume(
            sim.clients[stranger].id,
            sfu_core::ConsumeOptions {
                producer: alice.video,
                rtp_capabilities: caps,
                paused: false,
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::WrongRouter(alice.video));
    // Unknown ids.
    let bogus: sfu_core::ConsumerId = "00000000000000aa".parse().unwrap();
    assert_eq!(
        sim.sfu.pause_consumer(bogus),
        Err(Error::UnknownConsumer(bogus))
    );
    assert_eq!(
        sim.sfu.close_consumer(bogus),
        Err(Error::UnknownConsumer(bogus))
    );
    let bogus_p: sfu_core::ProducerId = "00000000000000bb".parse().unwrap();
    assert_eq!(
        sim.sfu.pause_producer(bogus_p),
        Err(Error::UnknownProducer(bogus_p))
    );
    let bogus_r: sfu_core::RouterId = "00000000000000cc".parse().unwrap();
    assert!(matches!(
        sim.sfu.router_rtp_capabilities(bogus_r),
        Err(Error::UnknownRouter(_))
    ));
    // A second connect.
    let dtls = sim.clients[bob].dtls_parameters();
    assert_eq!(
        sim.sfu.connect_webrtc_transport(sim.clients[bob].id, &dtls),
        Err(Error::AlreadyConnected(sim.clients[bob].id))
    );
    // Reusing a mid on the same transport.
    let mut params = sim.clients[alice.send].prepare_produce(MediaKind::Audio, 9000);
    params.mid = Some("0".into());
    let err = sim
        .sfu
        .produce(
            sim.clients[alice.send].id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: params,
                paused: false,
            },
        )
        .unwrap_err();
    assert_eq!(err, Error::MidInUse("0".into()));
    // Parameters that cannot be valid.
    let mut params = sim.clients[alice.send].prepare_produce(MediaKind::Audio, 9100);
    params.encodings.clear();
    assert!(matches!(
        sim.sfu.produce(
            sim.clients[alice.send].id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: params,
                paused: false
            }
        ),
        Err(Error::Ortc(_))
    ));
    // Nothing above disturbed the running media.
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.sfu
            .producer_stats(alice.video)
            .unwrap()
            .packets_received
            > 50
    );
}

#[test]
fn producers_without_cname_get_the_transports() {
    let mut sim = Sim::new(seed_from_env("cname"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let tid = sim.clients[alice].id;
    let mut audio = sim.clients[alice].prepare_produce(MediaKind::Audio, 100);
    audio.rtcp.cname = Some("alice-cname".into());
    let a = sim
        .sfu
        .produce(
            tid,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: audio,
                paused: false,
            },
        )
        .unwrap();
    // Browsers send an empty cname with rid simulcast.
    let mut video = sim.clients[alice].prepare_produce(MediaKind::Video, 200);
    video.rtcp.cname = Some(String::new());
    let v = sim
        .sfu
        .produce(
            tid,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters: video,
                paused: false,
            },
        )
        .unwrap();
    let caps = sim.device_caps(room);
    let ca = sim.consume(bob, a, caps.clone(), false);
    let cv = sim.consume(bob, v, caps, false);
    assert_eq!(
        ca.parameters.rtp_parameters.rtcp.cname.as_deref(),
        Some("alice-cname")
    );
    assert_eq!(
        cv.parameters.rtp_parameters.rtcp.cname.as_deref(),
        Some("alice-cname")
    );

    // A transport whose producers never named one gets a made-up, non-empty cname.
    let carol = sim.add_transport(room, Protocol::Udp);
    let mut params = sim.clients[carol].prepare_produce(MediaKind::Audio, 300);
    params.rtcp.cname = None;
    let p = sim
        .sfu
        .produce(
            sim.clients[carol].id,
            ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: params,
                paused: false,
            },
        )
        .unwrap();
    let c = sim.consume(bob, p, sim.device_caps(room), false);
    assert!(c
        .parameters
        .rtp_parameters
        .rtcp
        .cname
        .is_some_and(|c| !c.is_empty()));
}
