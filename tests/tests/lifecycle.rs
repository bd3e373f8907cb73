//! Acceptance: late joiners, pause/resume/close as mediasoup documents them, and API misuse.

mod common_peers;

use std::time::Duration;

use common_peers::join;
use sfu_core::ortc::MediaKind;
use sfu_core::{ConsumerCloseReason, Error, Event, ProduceOptions};
use sfu_tests::check::stream_report;
use sfu_tests::client::h264_only_capabilities;
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn late_joiner_gets_a_key_frame_within_500ms() {
    let mut sim = Sim::new(seed_from_env("late_joiner"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    sim.run_for(Duration::from_secs(3));
    let bob_recv = sim.add_transport(room, Protocol::Udp);
    sim.run_for(Duration::from_millis(300)); // ICE + DTLS of the new transport
    let caps = sim.device_caps(room);
    let consumed = sim.consume(bob_recv, alice.video, caps, false);
    let asked_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let first = sim.clients[bob_recv]
        .received
        .iter()
        .find(|p| p.ssrc == ssrc)
        .expect("late joiner received video");
    let info = verify_payload(&first.payload).unwrap();
    assert!(info.key_frame, "the first packet must start a key frame");
    let waited = first.at - asked_at;
    eprintln!("late joiner: first key frame after {waited:?}");
    assert!(
        waited <= Duration::from_millis(500),
        "key frame took {waited:?}"
    );
}

fn received_between(
    sim: &Sim,
    client: usize,
    ssrc: u32,
    from: std::time::Instant,
    to: std::time::Instant,
) -> usize {
    sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= from && p.at < to)
        .count()
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

    sim.sfu.pause_consumer(video.id).unwrap();
    sim.sfu.pause_consumer(audio.id).unwrap();
    sim.flush();
    let paused_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    // In-flight packets (10 ms link) may land just after the pause; nothing after that.
    let quiet_from = paused_at + Duration::from_millis(50);
    assert_eq!(received_between(&sim, bob, vssrc, quiet_from, sim.now), 0);
    assert_eq!(received_between(&sim, bob, assrc, quiet_from, sim.now), 0);

    sim.sfu.resume_consumer(video.id).unwrap();
    sim.sfu.resume_consumer(audio.id).unwrap();
    sim.flush();
    let resumed_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert!(received_between(&sim, bob, vssrc, resumed_at, sim.now) > 100);
    assert!(received_between(&sim, bob, assrc, resumed_at, sim.now) > 80);
    // Continuity: the consumer's sequence numbers have no gap across the pause, and video
    // restarts at a key frame.
    for ssrc in [vssrc, assrc] {
        let r = stream_report(&sim.clients[bob].received, ssrc);
        assert_eq!(r.gaps, 0, "gap across pause/resume: {r:?}");
        assert_eq!(r.corrupt, 0);
        assert_eq!(r.duplicates, 0);
    }
    let after: Vec<_> = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == vssrc && p.at >= resumed_at)
        .collect();
    assert!(
        verify_payload(&after[0].payload).unwrap().key_frame,
        "resume must start at a key frame"
    );
    // Timestamps keep moving forward across the pause.
    let before_ts = sim.clients[bob]
        .received
        .iter()
        .rfind(|p| p.ssrc == vssrc && p.at < paused_at)
        .unwrap()
        .timestamp;
    let gap = after[0].timestamp.wrapping_sub(before_ts);
    assert!(
        gap > 90_000 && gap < 90_000 * 3,
        "timestamp jump {gap} should reflect the 2 s pause"
    );

    sim.sfu.close_consumer(video.id).unwrap();
    sim.flush();
    let closed_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        received_between(
            &sim,
            bob,
            vssrc,
            closed_at + Duration::from_millis(50),
            sim.now
        ),
        0
    );
    assert!(
        received_between(&sim, bob, assrc, closed_at, sim.now) > 30,
        "audio unaffected"
    );
    assert_eq!(
        sim.sfu.consumer_stats(video.id),
        Err(Error::UnknownConsumer(video.id))
    );
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
    let bssrc = b.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(1));

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
    assert_eq!(
        received_between(
            &sim,
            bob,
            bssrc,
            paused_at + Duration::from_millis(50),
            sim.now
        ),
        0
    );

    sim.sfu.resume_producer(alice.video).unwrap();
    sim.flush();
    let resumed_at = sim.now;
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| *e == Event::ConsumerProducerResumed { consumer: b.id }));
    sim.run_for(Duration::from_secs(1));
    assert!(received_between(&sim, bob, bssrc, resumed_at, sim.now) > 50);
    let r = stream_report(&sim.clients[bob].received, bssrc);
    assert_eq!(r.gaps, 0, "{r:?}");

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
    assert_eq!(
        received_between(
            &sim,
            bob,
            bssrc,
            closed_at + Duration::from_millis(50),
            sim.now
        ),
        0
    );
}

#[test]
fn transport_close_closes_its_producers_and_consumers() {
    let mut sim = Sim::new(seed_from_env("transport_close"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, alice.audio, caps, false);
    sim.run_for(Duration::from_secs(1));
    let alice_send = sim.clients[alice.send].id;
    sim.sfu.close_transport(alice_send).unwrap();
    sim.flush();
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
