//! Pipe transports and pipe to router: a producer in one router reaches WebRTC consumers in
//! another through a pipe pair, every simulcast encoding crossing with its numbers kept, with
//! and without SRTP and RTX on the pipe; what a pipe peer sends that nobody produced, or with
//! the wrong key, is dropped and counted.

mod common_peers;

use common_peers::LAYERS;

use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::media::srtp::SrtpContext;
use sfu_core::ortc::{
    ConsumerType, MediaKind, PipeTransportOptions, SrtpCryptoSuite, TransportListenInfo,
};
use sfu_core::{ConsumeOptions, Error, PipedProducer};
use sfu_tests::delivery::{delivery_of, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::plain::rtp;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

const AUDIO_SSRC: u32 = 1111;

/// Router A: alice publishes simulcast video and audio. Both are piped to router B, where bob
/// (top layer) and carol (lowest layer) watch. Every packet reaches them; every encoding
/// crosses the pipe.
fn room_over_a_pipe(name: &str, rtx: bool, srtp: bool, pipe_loss: f64) {
    let mut sim = Sim::new(seed_from_env(name));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let alice = sim.add_transport(ra, Protocol::Udp);
    let video = sim.produce_simulcast(alice, &LAYERS);
    let audio = sim.produce(alice, MediaKind::Audio, AUDIO_SSRC);
    let pv = sim.pipe_to_router(video, rb, rtx, srtp);
    let pa = sim.pipe_to_router(audio, rb, rtx, srtp);
    assert_eq!(
        (pv.local_transport, pv.remote_transport),
        (pa.local_transport, pa.remote_transport),
        "one pipe pair per pair of routers"
    );
    if pipe_loss > 0.0 {
        let a = sim.sfu.transport_stats(pv.local_transport).unwrap();
        let b = sim.sfu.transport_stats(pv.remote_transport).unwrap();
        let (a, b) = (
            a.selected_tuple.unwrap().local,
            b.selected_tuple.unwrap().local,
        );
        sim.net
            .set_link(a, b, LinkConfig::ideal().with_loss(pipe_loss));
    }
    let pipe = sim
        .sfu
        .consumer_parameters(pv.pipe_consumer)
        .unwrap()
        .clone();
    assert_eq!(pipe.consumer_type, ConsumerType::Pipe);
    assert_eq!(pipe.rtp_parameters.encodings.len(), LAYERS.len());
    for e in &pipe.rtp_parameters.encodings {
        assert!(e.ssrc.is_some() && e.rid.is_none());
        assert_eq!(e.rtx.is_some(), rtx, "RTX streams only with enableRtx");
    }
    assert_eq!(
        pipe.rtp_parameters.codecs.iter().any(|c| c.is_rtx()),
        rtx,
        "RTX codec only with enableRtx"
    );

    let bob = sim.add_transport(rb, Protocol::Udp);
    let carol = sim.add_transport(rb, Protocol::Udp);
    let caps = sim.device_caps(rb);
    let bv = sim.consume(bob, pv.pipe_producer, caps.clone(), false);
    let ba = sim.consume(bob, pa.pipe_producer, caps.clone(), false);
    let cv = sim.consume(carol, pv.pipe_producer, caps, false);
    assert_eq!(bv.parameters.consumer_type, ConsumerType::Simulcast);
    sim.sfu.set_consumer_preferred_layers(cv.id, 0).unwrap();
    sim.flush();
    let warm = sim.now + Duration::from_millis(1500);
    sim.run_for(Duration::from_secs(4));

    let stats = sim.sfu.producer_stats(pv.pipe_producer).unwrap();
    assert!(
        stats.packets_per_encoding.iter().all(|&n| n > 100),
        "every encoding crosses the pipe: {stats:?}"
    );
    let end = sim.now - Duration::from_millis(300);
    let ssrc = |c: &sfu_core::Consumed| c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    for (client, consumed, source, min) in [
        (bob, &bv, 7200, 150),
        (carol, &cv, 7000, 150),
        (bob, &ba, AUDIO_SSRC, 100),
    ] {
        let s = ssrc(consumed);
        let expect = if pipe_loss > 0.0 {
            // A packet lost on the pipe just before a key frame is given up (the receiver
            // resynchronises on the key frame): once the key frames the joins asked for are
            // past, every packet must arrive.
            Expect::between(source, warm, end)
        } else {
            Expect::from_first_received(&sim, client, s, source, end)
        };
        // A simulcast consumer may start on a lower encoding, already active, and move up at
        // its target's first key frame: the check starts there.
        let received = &sim.clients[client].received;
        let start = received
            .iter()
            .position(|p| {
                p.ssrc == s
                    && (pipe_loss == 0.0 || p.at >= warm)
                    && verify_payload(&p.payload).is_some_and(|i| i.ssrc == source)
            })
            .unwrap_or(received.len());
        let d = delivery_of(&sim.sent, &received[start..], s, &[expect]);
        let verdict = if pipe_loss > 0.0 && source == AUDIO_SSRC {
            // Audio has no retransmissions: what the pipe lost stays lost.
            d.check_sound()
        } else if pipe_loss > 0.0 {
            // Repairs arrive after the packets that follow them; the slice of what was
            // received starts mid-run, so no key frame is asked of its first packet.
            let clean = d.missing == 0
                && d.corrupt == 0
                && d.foreign == 0
                && d.duplicates == 0
                && d.seq_gaps == 0
                && d.expected >= min;
            if clean {
                Ok(())
            } else {
                Err(format!("{d:?}"))
            }
        } else {
            d.check(min)
        };
        if let Err(e) = verdict {
            panic!("source {source} at client {client}: {e}");
        }
    }
    let consumer = sim.sfu.consumer_stats(pv.pipe_consumer).unwrap();
    assert!(consumer.packets_sent > 300, "{consumer:?}");
    if pipe_loss > 0.0 {
        assert!(
            consumer.packets_retransmitted > 0,
            "the pipe peer's NACKs are answered on RTX: {consumer:?}"
        );
    }
    let a = sim.sfu.transport_stats(pv.local_transport).unwrap();
    let b = sim.sfu.transport_stats(pv.remote_transport).unwrap();
    assert_eq!(a.srtp_profile.is_some(), srtp, "{a:?}");
    assert_eq!((a.rtp_dropped, b.rtp_dropped), (0, 0), "{a:?} {b:?}");
}

#[test]
fn pipe_to_router_carries_every_layer_in_the_clear() {
    room_over_a_pipe("pipe_clear", false, false, 0.0);
}

#[test]
fn pipe_to_router_carries_every_layer_with_srtp_and_rtx() {
    room_over_a_pipe("pipe_srtp_rtx", true, true, 0.0);
}

#[test]
fn pipe_losses_are_repaired_with_rtx() {
    room_over_a_pipe("pipe_rtx_loss", true, false, 0.03);
}

/// The pipe's wire carries a plain producer's stream with the sequence numbers and
/// timestamps the producer received, on the pipe consumer's SSRC.
#[test]
fn pipe_keeps_sequence_numbers_and_timestamps() {
    let mut sim = Sim::new(seed_from_env("pipe_numbers"));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let (ffmpeg, _) = sim.add_plain_transport(ra, None, |_| {});
    sim.connect_plain(ffmpeg, false).unwrap();
    let video = sim.plain_produce(ffmpeg, MediaKind::Video, 5000);
    let piped = sim.pipe_to_router(video, rb, false, false);
    let pipe_ssrc = sim
        .sfu
        .consumer_parameters(piped.pipe_consumer)
        .unwrap()
        .rtp_parameters
        .encodings[0]
        .ssrc
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    let log = &sim.sent[&5000];
    let mut checked = 0;
    for (_, _, d) in &sim.pipe_wire {
        if (200..=206).contains(&d[1]) {
            continue; // RTCP
        }
        let ssrc = u32::from_be_bytes(d[8..12].try_into().unwrap());
        assert_eq!(ssrc, pipe_ssrc);
        let seq = u16::from_be_bytes(d[2..4].try_into().unwrap());
        let ts = u32::from_be_bytes(d[4..8].try_into().unwrap());
        let mut at = 12 + 4 * usize::from(d[0] & 0x0f);
        if d[0] & 0x10 != 0 {
            let words = u16::from_be_bytes(d[at + 2..at + 4].try_into().unwrap());
            at += 4 + 4 * usize::from(words);
        }
        let info = verify_payload(&d[at..]).expect("the payload crosses unchanged");
        assert_eq!((info.ssrc, info.seq), (5000, seq), "sequence number kept");
        let sent = log.packets.iter().find(|p| p.seq as u16 == seq).unwrap();
        assert_eq!(sent.timestamp, ts, "timestamp kept");
        checked += 1;
    }
    assert!(checked > 100, "{checked} packets crossed");
}

/// Two pipe transports connected by hand, in the clear or with SRTP.
fn pipe_pair(sim: &mut Sim, srtp: bool) -> (PipedProducer, SocketAddr, SocketAddr) {
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let alice = sim.add_transport(ra, Protocol::Udp);
    let video = sim.produce(alice, MediaKind::Video, 9000);
    let piped = sim.pipe_to_router(video, rb, false, srtp);
    let tuple = sim
        .sfu
        .transport_stats(piped.remote_transport)
        .unwrap()
        .selected_tuple
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    (piped, tuple.remote, tuple.local)
}

#[test]
fn streams_nobody_produced_are_dropped_and_counted() {
    let mut sim = Sim::new(seed_from_env("pipe_strangers"));
    let (piped, peer, local) = pipe_pair(&mut sim, false);
    let before = sim.sfu.transport_stats(piped.remote_transport).unwrap();
    let produced = sim.sfu.producer_stats(piped.pipe_producer).unwrap();
    assert!(produced.packets_received > 20, "{produced:?}");
    let packet = sfu_tests::media::OutPacket {
        seq: 7,
        timestamp: 1,
        marker: false,
        payload: vec![1; 100],
        audio_level: None,
    };
    for ssrc in [424_242, 515_151, 606_060] {
        sim.inject_at(peer, local, &rtp(ssrc, 101, &packet));
    }
    let after = sim.sfu.transport_stats(piped.remote_transport).unwrap();
    assert_eq!(after.rtp_dropped, before.rtp_dropped + 3, "{after:?}");
    // From an address other than the peer's: dropped before anything reads it.
    let stranger: SocketAddr = "127.0.0.9:5000".parse().unwrap();
    sim.inject_at(stranger, local, &rtp(424_242, 101, &packet));
    let last = sim.sfu.transport_stats(piped.remote_transport).unwrap();
    assert_eq!(
        last.dropped_foreign_source,
        after.dropped_foreign_source + 1
    );
    assert_eq!(sim.sfu.footprint().producers, 2, "nothing was made of them");
}

#[test]
fn srtp_with_a_wrong_key_is_dropped_and_counted() {
    let mut sim = Sim::new(seed_from_env("pipe_wrong_key"));
    let (piped, peer, local) = pipe_pair(&mut sim, true);
    let pipe_ssrc = sim
        .sfu
        .consumer_parameters(piped.pipe_consumer)
        .unwrap()
        .rtp_parameters
        .encodings[0]
        .ssrc
        .unwrap();
    let suite = SrtpCryptoSuite::AeadAes256Gcm;
    let profile = suite.profile();
    let key = vec![0x5a; profile.master_key_len()];
    let salt = vec![0xa5; profile.master_salt_len()];
    let ctx = SrtpContext::new(profile, &key, &salt).unwrap();
    let before = sim.sfu.transport_stats(piped.remote_transport).unwrap();
    let received = sim
        .sfu
        .producer_stats(piped.pipe_producer)
        .unwrap()
        .packets_received;
    // Stop alice's source so that the producer's count moves only if a forged packet passed.
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.run_for(Duration::from_millis(200));
    let received = received.max(
        sim.sfu
            .producer_stats(piped.pipe_producer)
            .unwrap()
            .packets_received,
    );
    let before_dropped = sim
        .sfu
        .transport_stats(piped.remote_transport)
        .unwrap()
        .rtp_dropped;
    for seq in 60_000..60_005u64 {
        let packet = sfu_tests::media::OutPacket {
            seq,
            timestamp: 1,
            marker: false,
            payload: vec![1; 100],
            audio_level: None,
        };
        let mut buf = rtp(pipe_ssrc, 101, &packet);
        let len = buf.len();
        buf.resize(len + 16, 0);
        let n = ctx.protect_rtp(&mut buf, len, 0).unwrap();
        buf.truncate(n);
        sim.inject_at(peer, local, &buf);
    }
    let after = sim.sfu.transport_stats(piped.remote_transport).unwrap();
    assert_eq!(
        after.rtp_dropped,
        before_dropped + 5,
        "{before:?} {after:?}"
    );
    let now = sim
        .sfu
        .producer_stats(piped.pipe_producer)
        .unwrap()
        .packets_received;
    assert_eq!(now, received, "no forged packet reached the producer");
}

#[test]
fn pipe_transport_api_misuse_is_refused() {
    let mut sim = Sim::new(seed_from_env("pipe_misuse"));
    let ra = sim.create_router();
    let addr: SocketAddr = "127.0.0.1:44000".parse().unwrap();
    let sctp = PipeTransportOptions {
        enable_sctp: true,
        ..PipeTransportOptions::new(TransportListenInfo::at(addr))
    };
    assert!(matches!(
        sim.sfu.create_pipe_transport(ra, sctp),
        Err(Error::PipeSctpUnsupported)
    ));
    let created = sim
        .sfu
        .create_pipe_transport(ra, PipeTransportOptions::new(TransportListenInfo::at(addr)))
        .unwrap();
    assert!(created.parameters.srtp_parameters.is_none());
    let connect = created.connect_parameters().unwrap();
    assert!(matches!(
        sim.sfu
            .connect_plain_transport(created.id, &Default::default()),
        Err(Error::NotPlain(_))
    ));
    sim.sfu
        .connect_pipe_transport(created.id, &connect)
        .unwrap();
    assert!(matches!(
        sim.sfu.connect_pipe_transport(created.id, &connect),
        Err(Error::AlreadyConnected(_))
    ));
    let alice = sim.add_transport(ra, Protocol::Udp);
    let audio = sim.produce(alice, MediaKind::Audio, AUDIO_SSRC);
    let alice_id = sim.clients[alice].id;
    assert!(matches!(
        sim.sfu.connect_pipe_transport(alice_id, &connect),
        Err(Error::NotPipe(_))
    ));
    let same = sim.sfu.pipe_to_router(sfu_core::PipeToRouterOptions {
        producer: audio,
        router: ra,
        listen_info: TransportListenInfo::at("127.0.0.1:44002".parse().unwrap()),
        remote_listen_info: TransportListenInfo::at("127.0.0.1:44003".parse().unwrap()),
        enable_rtx: false,
        enable_srtp: false,
    });
    assert!(matches!(same, Err(Error::PipeToSameRouter)));
    // A pipe consumer takes no capabilities: it carries the producer as the router has it.
    let consumed = sim
        .sfu
        .consume(
            created.id,
            ConsumeOptions {
                producer: audio,
                rtp_capabilities: Default::default(),
                paused: false,
            },
        )
        .unwrap();
    assert_eq!(consumed.parameters.consumer_type, ConsumerType::Pipe);
}
