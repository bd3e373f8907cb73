//! Scores, `layerschange` and trace events (mediasoup's meaning), on the virtual clock: loss on
//! the publisher's link lowers its producer's score and its consumers' producer score, loss on
//! a viewer's link only that viewer's consumer score; a simulcast consumer reports the layers
//! it forwards; traces come only when enabled, with the right type and direction.

mod common_peers;

use common_peers::LAYERS;

use std::time::{Duration, Instant};

use sfu_core::control::{Reply, Request};
use sfu_core::ortc::MediaKind;
use sfu_core::{
    ConsumerId, ConsumerLayers, Error, Event, ProducerId, ProducerScore, RtpTraceInfo,
    TraceDirection, TraceEvent, TraceEventType, TraceInfo, TransportId,
};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// A publisher (audio 1111, video 2222) and a viewer consuming both, after `warm_up`.
struct Call {
    sim: Sim,
    alice: usize,
    bob: usize,
    audio: ProducerId,
    video: ProducerId,
    audio_consumer: ConsumerId,
    video_consumer: ConsumerId,
}

fn call(name: &str) -> Call {
    let mut sim = Sim::new(seed_from_env(name));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let audio = sim.produce(alice, MediaKind::Audio, 1111);
    let video = sim.produce(alice, MediaKind::Video, 2222);
    let caps = sim.device_caps(room);
    let audio_consumer = sim.consume(bob, audio, caps.clone(), false).id;
    let video_consumer = sim.consume(bob, video, caps, false).id;
    Call {
        sim,
        alice,
        bob,
        audio,
        video,
        audio_consumer,
        video_consumer,
    }
}

fn producer_score(sim: &Sim, producer: ProducerId) -> u8 {
    let scores = sim.sfu.producer_stats(producer).unwrap().score;
    assert_eq!(scores.len(), 1, "{scores:?}");
    scores[0].score
}

/// The last score event of `producer`, if any.
fn last_producer_score_event(sim: &Sim, producer: ProducerId) -> Option<Vec<ProducerScore>> {
    sim.events.iter().rev().find_map(|(_, e)| match e {
        Event::ProducerScore {
            producer: p,
            scores,
        } if *p == producer => Some(scores.clone()),
        _ => None,
    })
}

#[test]
fn clean_links_score_ten() {
    let Call {
        mut sim,
        audio,
        video,
        audio_consumer,
        video_consumer,
        ..
    } = call("scores_clean");
    sim.run_for(Duration::from_secs(8));
    for (producer, ssrc) in [(audio, 1111), (video, 2222)] {
        let expected = vec![ProducerScore {
            encoding_idx: 0,
            ssrc,
            rid: None,
            score: 10,
        }];
        assert_eq!(sim.sfu.producer_stats(producer).unwrap().score, expected);
        // Reported once, when the score first moved from 0 to 10.
        assert_eq!(last_producer_score_event(&sim, producer), Some(expected));
        let events = sim
            .events
            .iter()
            .filter(
                |(_, e)| matches!(e, Event::ProducerScore { producer: p, .. } if *p == producer),
            )
            .count();
        assert_eq!(events, 1);
    }
    for consumer in [audio_consumer, video_consumer] {
        let score = sim.sfu.consumer_stats(consumer).unwrap().score;
        assert_eq!(
            (score.score, score.producer_score, score.producer_scores),
            (10, 10, vec![10]),
            "{consumer}"
        );
        let reported = sim.events.iter().rev().find_map(|(_, e)| match e {
            Event::ConsumerScore { consumer: c, score } if *c == consumer => Some(score.clone()),
            _ => None,
        });
        assert_eq!(reported.map(|s| s.producer_score), Some(10));
    }
    // mediasoup's JSON shapes.
    let json = serde_json::to_value(sim.sfu.consumer_stats(video_consumer).unwrap().score).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"score": 10, "producerScore": 10, "producerScores": [10]})
    );
}

#[test]
fn loss_on_the_publisher_link_lowers_the_producer_scores() {
    let Call {
        mut sim,
        alice,
        audio,
        video,
        audio_consumer,
        video_consumer,
        ..
    } = call("scores_publisher_loss");
    sim.run_for(Duration::from_secs(2));
    let link = LinkConfig::default().with_loss(0.10);
    sim.net.set_host_link(sim.clients[alice].local, link);
    sim.run_for(Duration::from_secs(10));
    // Audio has no retransmissions: 10% lost costs about 5 points (1 to 8 over seeds, the
    // loss being random). Video's losses are repaired by NACK and RTX, which costs less, but
    // costs.
    let (audio_score, video_score) = (producer_score(&sim, audio), producer_score(&sim, video));
    assert!((1..=8).contains(&audio_score), "audio {audio_score}");
    assert!((5..=9).contains(&video_score), "video {video_score}");
    assert!(video_score >= audio_score, "{video_score} vs {audio_score}");
    assert!(last_producer_score_event(&sim, audio).is_some_and(|s| s[0].score == audio_score));
    // The viewer's consumers carry the producer's score; their own stays high: the viewer's
    // link is clean, and packets lost before the Sfu are not the viewer's loss (video's
    // repairs upstream come late, so the viewer may ask for a few of them again).
    for (consumer, expected, own) in [
        (audio_consumer, audio_score, 10..=10),
        (video_consumer, video_score, 9..=10),
    ] {
        let score = sim.sfu.consumer_stats(consumer).unwrap().score;
        assert_eq!(score.producer_score, expected, "{score:?}");
        assert_eq!(score.producer_scores, vec![expected]);
        assert!(own.contains(&score.score), "{score:?}");
    }
}

#[test]
fn loss_on_the_viewer_link_lowers_only_its_consumer_score() {
    let Call {
        mut sim,
        bob,
        audio,
        video,
        audio_consumer,
        video_consumer,
        ..
    } = call("scores_viewer_loss");
    sim.run_for(Duration::from_secs(2));
    let link = LinkConfig::default().with_loss(0.10);
    sim.net.set_host_link(sim.clients[bob].local, link);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(producer_score(&sim, audio), 10);
    assert_eq!(producer_score(&sim, video), 10);
    // Video's losses are repaired on the viewer's NACKs, which costs. (Audio's stay lost and
    // lower its score as soon as a receiver report says so, but the simulated viewer sends
    // audio reports only every few seconds, and some are lost: not checked here.)
    let audio_score = sim.sfu.consumer_stats(audio_consumer).unwrap().score;
    let video_score = sim.sfu.consumer_stats(video_consumer).unwrap().score;
    for score in [&audio_score, &video_score] {
        assert_eq!(
            (score.producer_score, &score.producer_scores[..]),
            (10, &[10][..]),
            "{score:?}"
        );
    }
    assert!((5..=9).contains(&video_score.score), "{video_score:?}");
}

/// Every layers change of `consumer` reported since `since`.
fn layer_events(sim: &Sim, consumer: ConsumerId, since: Instant) -> Vec<Option<ConsumerLayers>> {
    sim.events
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, e)| match e {
            Event::ConsumerLayersChange {
                consumer: c,
                layers,
            } if *c == consumer => Some(*layers),
            _ => None,
        })
        .collect()
}

fn spatial(layer: u8) -> Option<ConsumerLayers> {
    Some(ConsumerLayers {
        spatial_layer: layer,
        temporal_layer: 0,
    })
}

#[test]
fn layerschange_follows_the_forwarded_layer() {
    let mut sim = Sim::new(seed_from_env("scores_layerschange"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_simulcast(alice, &LAYERS);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, producer, caps.clone(), false).id;
    // A single-stream consumer has no layers to report.
    let audio = sim.produce(alice, MediaKind::Audio, 1111);
    let plain = sim.consume(bob, audio, caps, false).id;
    let start = sim.now;
    sim.run_for(Duration::from_secs(3));
    let events = layer_events(&sim, c, start);
    assert_eq!(events.last(), Some(&spatial(2)), "{events:?}");
    assert_eq!(layer_events(&sim, plain, start), vec![]);
    // Every event is a change.
    assert!(events.windows(2).all(|w| w[0] != w[1]), "{events:?}");

    sim.sfu.set_consumer_preferred_layers(c, 0).unwrap();
    sim.flush();
    let switch_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert_eq!(layer_events(&sim, c, switch_at), vec![spatial(0)]);

    sim.sfu.pause_consumer(c).unwrap();
    sim.flush();
    let paused_at = sim.now;
    assert_eq!(layer_events(&sim, c, paused_at), vec![None]);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(layer_events(&sim, c, paused_at), vec![None]);

    sim.sfu.resume_consumer(c).unwrap();
    sim.flush();
    let resumed_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert_eq!(layer_events(&sim, c, resumed_at), vec![spatial(0)]);

    sim.sfu.pause_producer(producer).unwrap();
    sim.flush();
    let producer_paused_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    assert_eq!(layer_events(&sim, c, producer_paused_at), vec![None]);
    assert_eq!(sim.sfu.consumer_stats(c).unwrap().current_layer, None);
    sim.sfu.resume_producer(producer).unwrap();
    sim.flush();
    let producer_resumed_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert_eq!(layer_events(&sim, c, producer_resumed_at), vec![spatial(0)]);
    assert_eq!(
        serde_json::to_value(spatial(0)).unwrap(),
        serde_json::json!({"spatialLayer": 0, "temporalLayer": 0})
    );
}

/// The producer, consumer and transport traces since `since`.
#[derive(Default, Debug)]
struct Traces {
    producer: Vec<TraceEvent>,
    consumer: Vec<TraceEvent>,
    transport: Vec<TraceEvent>,
}

#[test]
fn layerschange_reports_an_svc_consumers_spatial_and_temporal_layers() {
    let mut sim = Sim::new(seed_from_env("scores_layerschange_svc"));
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_vp9_svc(alice, 3300);
    let caps = sim.device_caps(room);
    let bob = sim.add_transport(room, Protocol::Udp);
    let c = sim.consume(bob, producer, caps, false);
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(3));
    let layers = |s: u8, t: u8| {
        Some(ConsumerLayers {
            spatial_layer: s,
            temporal_layer: t,
        })
    };
    // It starts where the allocator puts it while the layers' bitrates are measured, then
    // reaches the top.
    let first = layer_events(&sim, c.id, t0);
    assert!(first.iter().all(Option::is_some), "{first:?}");
    assert_eq!(first.last(), Some(&layers(2, 2)), "{first:?}");
    let t1 = sim.now;
    sim.sfu.set_consumer_preferred_layers(c.id, 1).unwrap();
    sim.sfu
        .set_consumer_preferred_temporal_layer(c.id, Some(0))
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    let lowered = layer_events(&sim, c.id, t1);
    assert_eq!(lowered.last(), Some(&layers(1, 0)), "{lowered:?}");
    assert!(lowered.len() <= 2, "down at the next picture: {lowered:?}");
    let t2 = sim.now;
    sim.sfu.pause_consumer(c.id).unwrap();
    sim.run_for(Duration::from_millis(500));
    assert_eq!(layer_events(&sim, c.id, t2), [None]);
}

fn traces(sim: &Sim, since: Instant) -> Traces {
    let mut t = Traces::default();
    for (at, e) in &sim.events {
        if *at < since {
            continue;
        }
        match e {
            Event::ProducerTrace { trace, .. } => t.producer.push((**trace).clone()),
            Event::ConsumerTrace { trace, .. } => t.consumer.push((**trace).clone()),
            Event::TransportTrace { trace, .. } => t.transport.push((**trace).clone()),
            _ => {}
        }
    }
    t
}

fn count(traces: &[TraceEvent], kind: TraceEventType, direction: TraceDirection) -> usize {
    traces
        .iter()
        .filter(|t| t.kind == kind && t.direction == direction)
        .count()
}

#[test]
fn traces_come_only_when_enabled() {
    let Call {
        mut sim,
        alice,
        bob,
        video,
        video_consumer,
        ..
    } = call("scores_traces");
    let bob_transport: TransportId = sim.clients[bob].id;
    let consumer_ssrc = sim
        .sfu
        .consumer_parameters(video_consumer)
        .unwrap()
        .rtp_parameters
        .encodings[0]
        .ssrc
        .unwrap();
    let start = sim.now;
    sim.run_for(Duration::from_secs(2));
    // Nothing by default, not even for the first key frame.
    let none = traces(&sim, start);
    assert!(
        none.producer.is_empty() && none.consumer.is_empty() && none.transport.is_empty(),
        "{none:?}"
    );

    // Typed errors for types an object cannot trace and for unknown objects.
    assert_eq!(
        sim.sfu
            .enable_transport_trace_event(bob_transport, &[TraceEventType::Pli]),
        Err(Error::UnsupportedTraceEventType(TraceEventType::Pli))
    );
    assert_eq!(
        sim.sfu
            .enable_consumer_trace_event(video_consumer, &[TraceEventType::Probation]),
        Err(Error::UnsupportedTraceEventType(TraceEventType::Probation))
    );
    assert_eq!(
        sim.sfu
            .enable_producer_trace_event(video, &[TraceEventType::Bwe]),
        Err(Error::UnsupportedTraceEventType(TraceEventType::Bwe))
    );
    let media = [
        TraceEventType::Keyframe,
        TraceEventType::Nack,
        TraceEventType::Pli,
        TraceEventType::Fir,
    ];
    sim.sfu.enable_producer_trace_event(video, &media).unwrap();
    sim.sfu
        .enable_consumer_trace_event(video_consumer, &media)
        .unwrap();
    // The control API's shape: mediasoup's `enableTraceEvent({ types: ["bwe"] })`.
    let types: Vec<TraceEventType> = serde_json::from_str(r#"["bwe"]"#).unwrap();
    let reply = sim.sfu.handle_request(Request::EnableTransportTraceEvent {
        transport: bob_transport,
        types,
    });
    assert_eq!(reply, Ok(Reply::Done));

    // The viewer asks for a key frame: a PLI in on the consumer, out on the producer, then
    // the key frame in on the producer and out on the consumer.
    sim.clients[bob].request_key_frame(sim.now, consumer_ssrc);
    let asked_at = sim.now;
    sim.run_for(Duration::from_millis(500));
    let t = traces(&sim, asked_at);
    assert_eq!(
        count(&t.consumer, TraceEventType::Pli, TraceDirection::In),
        1,
        "{t:?}"
    );
    assert_eq!(
        count(&t.producer, TraceEventType::Pli, TraceDirection::Out),
        1,
        "{t:?}"
    );
    assert!(count(&t.producer, TraceEventType::Keyframe, TraceDirection::In) > 0);
    assert!(count(&t.consumer, TraceEventType::Keyframe, TraceDirection::Out) > 0);
    assert_eq!(
        count(&t.producer, TraceEventType::Nack, TraceDirection::Out),
        0
    );
    let pli_in = t
        .consumer
        .iter()
        .find(|t| t.kind == TraceEventType::Pli)
        .unwrap();
    assert_eq!(
        pli_in.info,
        TraceInfo::Stream {
            ssrc: consumer_ssrc
        }
    );
    let pli_out = t
        .producer
        .iter()
        .find(|t| t.kind == TraceEventType::Pli)
        .unwrap();
    assert_eq!(pli_out.info, TraceInfo::Stream { ssrc: 2222 });
    assert!(pli_out.timestamp >= pli_in.timestamp);
    assert_eq!(
        serde_json::to_value(pli_out).unwrap()["type"],
        serde_json::json!("pli")
    );

    // Loss on the publisher's link: NACKs out to it.
    sim.net.set_host_link(
        sim.clients[alice].local,
        LinkConfig::default().with_loss(0.05),
    );
    let lossy_at = sim.now;
    sim.run_for(Duration::from_secs(2));
    let t = traces(&sim, lossy_at);
    assert!(count(&t.producer, TraceEventType::Nack, TraceDirection::Out) > 0);
    assert!(t
        .producer
        .iter()
        .all(|t| t.info == TraceInfo::Stream { ssrc: 2222 }));

    // The estimate, on every transport-wide feedback: the transport's available bitrate.
    let bwe: Vec<_> = t
        .transport
        .iter()
        .filter(|t| t.kind == TraceEventType::Bwe)
        .collect();
    assert!(bwe.len() >= 10, "{} bwe traces in 2 s", bwe.len());
    assert!(bwe.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let Some(TraceInfo::Bwe(last)) = bwe.last().map(|t| t.info.clone()) else {
        panic!("bwe info");
    };
    let stats = sim.sfu.transport_stats(bob_transport).unwrap();
    assert_eq!(last.available_bitrate, stats.available_outgoing_bitrate);
    assert!(
        last.desired_bitrate > 0 && last.effective_desired_bitrate > 0,
        "{last:?}"
    );
    assert!(last.start_bitrate > 0);

    // Off again: nothing more.
    sim.sfu.enable_producer_trace_event(video, &[]).unwrap();
    sim.sfu
        .enable_consumer_trace_event(video_consumer, &[])
        .unwrap();
    sim.sfu
        .enable_transport_trace_event(bob_transport, &[])
        .unwrap();
    sim.clients[bob].request_key_frame(sim.now, consumer_ssrc);
    let off_at = sim.now;
    sim.run_for(Duration::from_secs(1));
    let t = traces(&sim, off_at);
    assert!(
        t.producer.is_empty() && t.consumer.is_empty() && t.transport.is_empty(),
        "{t:?}"
    );
    // Unknown objects.
    sim.sfu.close_consumer(video_consumer).unwrap();
    assert_eq!(
        sim.sfu.enable_consumer_trace_event(video_consumer, &media),
        Err(Error::UnknownConsumer(video_consumer))
    );
}

/// The `rtp` details of `traces` of `kind`.
fn rtp_infos(traces: &[TraceEvent], kind: TraceEventType) -> Vec<RtpTraceInfo> {
    traces
        .iter()
        .filter(|t| t.kind == kind)
        .filter_map(|t| match t.info {
            TraceInfo::Rtp(info) => Some(info),
            _ => None,
        })
        .collect()
}

/// `rtp` traces name every packet a producer received and a consumer sent, as sent; a
/// transport whose consumer is below its top layer after a cap is lifted probes, and
/// `probation` names each probe padding packet on the consumer's RTX stream.
#[test]
fn rtp_and_probation_traces_name_every_packet() {
    let mut sim = Sim::new(seed_from_env("scores_rtp_traces"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    // About 250 kbit/s, 500 kbit/s and 1.45 Mbit/s.
    let producer = sim.produce_simulcast(alice, &LAYERS);
    for (p, packets) in sim.publications.iter_mut().zip([1, 2, 6]) {
        p.source.packets_per_frame = packets;
    }
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, producer, caps, false);
    let bob_transport: TransportId = sim.clients[bob].id;
    sim.sfu
        .enable_producer_trace_event(producer, &[TraceEventType::Rtp])
        .unwrap();
    sim.sfu
        .enable_consumer_trace_event(c.id, &[TraceEventType::Rtp])
        .unwrap();
    sim.sfu
        .enable_transport_trace_event(bob_transport, &[TraceEventType::Probation])
        .unwrap();
    // Capped below the top layer, then lifted: the estimate has to climb, by probing.
    sim.sfu
        .set_max_outgoing_bitrate(bob_transport, 600_000)
        .unwrap();
    let start = sim.now;
    sim.run_for(Duration::from_secs(4));
    sim.sfu.set_max_outgoing_bitrate(bob_transport, 0).unwrap();
    sim.run_for(Duration::from_secs(6));
    let t = traces(&sim, start);

    // The producer: one `rtp` trace in per packet received, key frames marked.
    let received = sim.sfu.producer_stats(producer).unwrap().packets_received;
    let produced = rtp_infos(&t.producer, TraceEventType::Rtp);
    assert!(t.producer.iter().all(|e| e.direction == TraceDirection::In));
    assert_eq!(produced.len() as u64, received);
    assert!(produced.iter().any(|i| i.is_key_frame));
    assert!(produced.iter().all(|i| i.size > i.payload_size));

    // The consumer: one trace out per packet its endpoint got, with its number and size.
    let params = sim
        .sfu
        .consumer_parameters(c.id)
        .unwrap()
        .rtp_parameters
        .clone();
    let ssrc = params.encodings[0].ssrc.unwrap();
    let sent = rtp_infos(&t.consumer, TraceEventType::Rtp);
    assert!(t
        .consumer
        .iter()
        .all(|e| e.direction == TraceDirection::Out));
    assert!(sent.iter().all(|i| i.ssrc == ssrc));
    let got: Vec<(u16, usize)> = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= start)
        .map(|p| (p.seq, p.payload.len()))
        .collect();
    let traced: Vec<(u16, usize)> = sent
        .iter()
        .map(|i| (i.sequence_number, i.payload_size))
        .collect();
    assert!(got.len() > 300, "{}", got.len());
    assert_eq!(&traced[..got.len()], &got[..], "in flight at the end aside");
    assert!(sent[0].is_key_frame, "the consumer starts at a key frame");

    // Probation: each probe padding packet, on the consumer's RTX stream, numbered in turn.
    let stats = sim.sfu.transport_stats(bob_transport).unwrap();
    let probes = rtp_infos(&t.transport, TraceEventType::Probation);
    println!("{} probe packets, {stats:?}", probes.len());
    assert!(stats.probe_packets > 0);
    assert_eq!(probes.len() as u64, stats.probe_packets);
    let rtx = params.encodings[0].rtx.as_ref().unwrap().ssrc;
    assert!(probes.iter().all(|i| i.ssrc == rtx && i.payload_size == 0));
    assert!(probes
        .windows(2)
        .all(|w| w[1].sequence_number == w[0].sequence_number.wrapping_add(1)));
}
