//! Direct transports (mediasoup's `DirectTransport`): the application hands producers RTP
//! packets and receives its consumers' RTP and the transport's RTCP as events.

use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::ortc::MediaKind;
use sfu_core::{ConsumerId, DirectTransportOptions, Error, Event, TransportId};
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::plain::{parse_rtp, pli, rtp, PlainReceived};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The RTP packets the application received for `consumer`, parsed.
fn consumer_rtp(sim: &Sim, consumer: ConsumerId) -> Vec<PlainReceived> {
    let nowhere = SocketAddr::from(([0, 0, 0, 0], 0));
    sim.events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::DirectConsumerRtp {
                consumer: c,
                packet,
            } if *c == consumer => Some(parse_rtp(packet, *at, nowhere).expect("RTP")),
            _ => None,
        })
        .collect()
}

/// The RTCP compounds the application received from `transport`.
fn transport_rtcp(sim: &Sim, transport: TransportId) -> Vec<Vec<u8>> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DirectTransportRtcp {
                transport: t,
                packet,
            } if *t == transport => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_application_produces_to_webrtc_consumers_and_consumes_webrtc_producers() {
    let mut sim = Sim::new(seed_from_env("direct_rtp"));
    let room = sim.create_router();
    let direct = sim
        .sfu
        .create_direct_transport(room, DirectTransportOptions::default())
        .expect("direct transport");

    // The application → a WebRTC peer.
    let app_video = sim.direct_produce(direct, MediaKind::Video, 1111);
    let app_audio = sim.direct_produce(direct, MediaKind::Audio, 2222);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let v = sim.consume(bob, app_video, caps.clone(), false);
    let a = sim.consume(bob, app_audio, caps.clone(), false);

    // A WebRTC peer → the application.
    let alice = sim.add_transport(room, Protocol::Udp);
    let alice_video = sim.produce(alice, MediaKind::Video, 3333);
    let alice_audio = sim.produce(alice, MediaKind::Audio, 4444);
    let to_app_video = sim
        .sfu
        .consume(
            direct,
            sfu_core::ConsumeOptions {
                producer: alice_video,
                rtp_capabilities: caps.clone(),
                paused: false,
            },
        )
        .expect("direct consumer");
    let to_app_audio = sim
        .sfu
        .consume(
            direct,
            sfu_core::ConsumeOptions {
                producer: alice_audio,
                rtp_capabilities: caps,
                paused: false,
            },
        )
        .expect("direct consumer");
    sim.flush();
    sim.run_for(Duration::from_millis(500));
    let start = sim.now;
    sim.run_for(Duration::from_secs(3));
    let end = sim.now - Duration::from_millis(100);

    // Every packet the application handed in reached the WebRTC consumer, checked against
    // the source.
    let vssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let assrc = a.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let up = sim.dtls_connected_at(bob).unwrap();
    let from_key = Expect::from_first_key_frame(&sim, 1111, up, end);
    delivery(&sim, bob, vssrc, &[from_key]).assert_clean(300);
    delivery(&sim, bob, assrc, &[Expect::between(2222, start, end)]).assert_clean(140);

    // Every packet of the WebRTC producer reached the application: byte-equal payloads of the
    // source, on the consumer's SSRC and payload type, with sequence numbers that never skip.
    for (consumed, source, min) in [(&to_app_video, 3333, 300), (&to_app_audio, 4444, 140)] {
        let rtp = &consumed.parameters.rtp_parameters;
        let ssrc = rtp.encodings[0].ssrc.unwrap();
        let pt = rtp.codecs[0].payload_type;
        let got = consumer_rtp(&sim, consumed.id);
        assert!(got.len() >= min, "{} packets of {source}", got.len());
        for (i, r) in got.iter().enumerate() {
            assert_eq!(
                (r.ssrc, r.payload_type),
                (ssrc, pt),
                "packet {i} of {source}"
            );
            let info = verify_payload(&r.payload).expect("a payload the source made");
            assert_eq!(info.ssrc, source);
            if i > 0 {
                assert_eq!(
                    r.seq,
                    got[i - 1].seq.wrapping_add(1),
                    "packet {i} of {source}"
                );
            }
        }
        // Nothing the source sent from `start` on is missing.
        let seqs: std::collections::HashSet<u16> = got
            .iter()
            .filter_map(|r| verify_payload(&r.payload).map(|p| p.seq))
            .collect();
        let log = sim.sent.get(&source).expect("sent");
        let expected: Vec<u16> = log
            .packets
            .iter()
            .filter(|p| p.at >= start && p.at <= end)
            .map(|p| p.seq as u16)
            .collect();
        assert!(expected.len() >= min, "{} sent by {source}", expected.len());
        let missing = expected.iter().filter(|s| !seqs.contains(s)).count();
        assert_eq!(missing, 0, "packets of {source} missing");
    }

    // RTCP: the application hears sender reports for its consumers and receiver reports for
    // its producers, and its PLI reaches the WebRTC publisher.
    let rtcp = transport_rtcp(&sim, direct);
    let has = |pt: u8| rtcp.iter().any(|c| c.len() > 1 && c[1] == pt);
    assert!(has(200), "a sender report");
    assert!(rtcp.iter().flatten().count() > 0);
    let sent_before = sim.sfu.producer_stats(alice_video).unwrap();
    let video_ssrc = to_app_video.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    sim.sfu
        .send_rtcp(direct, &pli(1, video_ssrc))
        .expect("PLI from the application");
    // Requests to a producer are throttled (one a second by default): it may wait that long.
    sim.run_for(Duration::from_millis(1500));
    let consumer = sim.sfu.consumer_stats(to_app_video.id).unwrap();
    assert_eq!(consumer.key_frame_requests_received, 1);
    assert!(
        sim.sfu
            .producer_stats(alice_video)
            .unwrap()
            .key_frame_requests_sent
            > sent_before.key_frame_requests_sent,
        "the application's PLI went on to the publisher"
    );

    // Misuse is refused with a typed error.
    let packet = rtp(9999, 101, &sim_packet());
    assert!(matches!(
        sim.sfu.send_rtp(app_video, &packet),
        Err(Error::InvalidRtpPacket { .. })
    ));
    assert!(matches!(
        sim.sfu.send_rtp(app_video, &[0x80, 96, 0]),
        Err(Error::InvalidRtpPacket { .. })
    ));
    assert_eq!(
        sim.sfu
            .send_rtp(alice_video, &rtp(3333, 101, &sim_packet())),
        Err(Error::NotDirectProducer(alice_video))
    );
    let bob_id = sim.clients[bob].id;
    assert_eq!(
        sim.sfu.send_rtcp(bob_id, &pli(1, 2)),
        Err(Error::NotDirect(bob_id))
    );
    assert_eq!(
        sim.sfu.send_rtcp(direct, b"garbage garbage"),
        Err(Error::InvalidRtcpPacket(direct))
    );

    // Closing the direct transport closes its producers (their consumers close too).
    sim.sfu.close_transport(direct).expect("close");
    sim.flush();
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::ProducerClosed {
            producer: app_video
        }));
}

/// A payload-carrying packet to misuse the API with.
fn sim_packet() -> sfu_tests::media::OutPacket {
    sfu_tests::media::OutPacket {
        seq: 1,
        timestamp: 1,
        marker: false,
        payload: vec![1, 2, 3],
        audio_level: None,
    }
}
