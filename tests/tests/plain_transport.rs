//! Plain transports (mediasoup's `PlainTransport`) in the simulation: plain RTP and SDES-SRTP
//! endpoints publishing into rooms and receiving consumers, comedia, separate RTCP ports,
//! every SRTP suite, and what strangers and wrong keys get.

use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::ortc::{MediaKind, SrtpCryptoSuite};
use sfu_core::{Error, Event, TransportTuple};
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::plain::{nack, pli, rtp};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

fn tuple_events(sim: &Sim) -> Vec<(bool, TransportTuple)> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Tuple { tuple, .. } => Some((false, *tuple)),
            Event::RtcpTuple { tuple, .. } => Some((true, *tuple)),
            _ => None,
        })
        .collect()
}

/// Packets a plain endpoint received on `ssrc` whose payload is byte for byte one `source`
/// made.
fn verified(sim: &Sim, i: usize, ssrc: u32, source: u32) -> usize {
    sim.plain[i]
        .received
        .iter()
        .filter(|r| r.ssrc == ssrc)
        .filter(|r| verify_payload(&r.payload).is_some_and(|p| p.ssrc == source))
        .count()
}

#[test]
fn rtp_through_comedia_reaches_a_webrtc_consumer() {
    let mut sim = Sim::new(seed_from_env("plain_comedia_in"));
    let room = sim.create_router();
    let (ffmpeg, created) = sim.add_plain_transport(room, None, |o| o.comedia = true);
    assert_eq!(created.parameters.tuple.local_port, 41_000);
    assert!(created.parameters.srtp_parameters.is_none());
    let video = sim.plain_produce(ffmpeg, MediaKind::Video, 1111);
    let audio = sim.plain_produce(ffmpeg, MediaKind::Audio, 2222);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let v = sim.consume(bob, video, caps.clone(), false);
    let a = sim.consume(bob, audio, caps, false);
    // Once the WebRTC consumer's transport is up, everything reaches it.
    sim.run_for(Duration::from_millis(500));
    let start = sim.now;
    sim.run_for(Duration::from_secs(3));
    // The remote was learned from the first packet, once.
    let local = sim.plain[ffmpeg].local;
    let tuples = tuple_events(&sim);
    assert_eq!(tuples.len(), 1, "{tuples:?}");
    assert_eq!(tuples[0].1.remote, local);
    assert_eq!(tuples[0].1.local, sim.plain[ffmpeg].server);
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert_eq!(stats.selected_tuple, Some(tuples[0].1));
    assert_eq!((stats.rtp_dropped, stats.dropped_foreign_source), (0, 0));
    // Every packet reached the WebRTC consumer, checked against the source.
    let end = sim.now - Duration::from_millis(100);
    let vssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let assr = a.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    // Video from the key frame the consumer asked for once its transport was up.
    let up = sim.dtls_connected_at(bob).unwrap();
    let from_key = Expect::from_first_key_frame(&sim, 1111, up, end);
    delivery(&sim, bob, vssrc, &[from_key]).assert_clean(300);
    delivery(&sim, bob, assr, &[Expect::between(2222, start, end)]).assert_clean(140);
}

#[test]
fn a_consumer_on_a_plain_transport_gets_rtp_and_rtcp_at_the_connected_address() {
    for rtcp_mux in [true, false] {
        let mut sim = Sim::new(seed_from_env("plain_consumer"));
        let room = sim.create_router();
        let alice = sim.add_transport(room, Protocol::Udp);
        let video = sim.produce(alice, MediaKind::Video, 1111);
        let audio = sim.produce(alice, MediaKind::Audio, 2222);
        let (rec, created) = sim.add_plain_transport(room, None, |o| o.rtcp_mux = rtcp_mux);
        assert_eq!(created.parameters.rtcp_tuple.is_some(), !rtcp_mux);
        let caps = sim.device_caps(room);
        let v = sim.plain_consume(rec, video, caps.clone());
        let a = sim.plain_consume(rec, audio, caps);
        // Nothing goes out before connect tells where.
        sim.run_for(Duration::from_millis(500));
        assert!(sim.plain[rec].received.is_empty() && sim.plain[rec].rtcp.is_empty());
        sim.connect_plain(rec, false).unwrap();
        assert_eq!(
            sim.connect_plain(rec, false),
            Err(Error::AlreadyConnected(created.id))
        );
        let tuples = tuple_events(&sim);
        assert_eq!(tuples.len(), if rtcp_mux { 1 } else { 2 }, "{tuples:?}");
        sim.run_for(Duration::from_secs(6));
        let c = &sim.plain[rec];
        let vssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
        let assr = a.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
        // Media at the RTP address, each payload byte for byte what the source made.
        assert!(verified(&sim, rec, vssrc, 1111) > 700, "video");
        assert!(verified(&sim, rec, assr, 2222) > 280, "audio");
        assert!(c.received.iter().all(|r| r.local == c.local));
        assert_eq!(c.undecryptable, 0);
        // Sender reports for both consumers, at the RTCP address.
        let rtcp_at = c.rtcp_local.unwrap_or(c.local);
        assert!(c.rtcp.iter().all(|r| r.local == rtcp_at));
        let reported = |ssrc: u32| {
            c.rtcp.iter().any(|r| {
                r.packets
                    .iter()
                    .any(|(pt, _, b)| *pt == 200 && b[4..8] == ssrc.to_be_bytes())
            })
        };
        assert!(reported(vssrc) && reported(assr), "sender reports");

        // A NACK is answered on the consumer's RTX stream; a PLI reaches the publisher.
        let rtx = v.parameters.rtp_parameters.encodings[0]
            .rtx
            .as_ref()
            .expect("rtx negotiated")
            .ssrc;
        let asked = c.received.iter().rev().find(|r| r.ssrc == vssrc).unwrap();
        let (asked_seq, asked_payload) = (asked.seq, asked.payload.clone());
        let before = sim
            .publications
            .iter()
            .map(|p| p.key_frame_requests)
            .sum::<u64>();
        sim.plain[rec].send_rtcp(&nack(0x5151, vssrc, &[asked_seq]));
        sim.run_for(Duration::from_millis(100));
        let resent = sim.plain[rec]
            .received
            .iter()
            .find(|r| r.ssrc == rtx)
            .expect("a retransmission on the RTX SSRC");
        assert_eq!(resent.payload[..2], asked_seq.to_be_bytes(), "its OSN");
        assert_eq!(resent.payload[2..], asked_payload[..]);
        sim.plain[rec].send_rtcp(&pli(0x5151, vssrc));
        sim.run_for(Duration::from_secs(2));
        let after = sim
            .publications
            .iter()
            .map(|p| p.key_frame_requests)
            .sum::<u64>();
        assert!(after > before, "the PLI became a key frame request");
        let stats = sim.sfu.consumer_stats(v.id).unwrap();
        assert_eq!(stats.key_frame_requests_received, 1);
        assert_eq!(stats.packets_retransmitted, 1);
    }
}

#[test]
fn srtp_both_ways_with_every_suite() {
    for suite in SrtpCryptoSuite::ALL {
        let mut sim = Sim::new(seed_from_env("plain_srtp"));
        let room = sim.create_router();
        // The publisher sends with another suite than the transport's own when it can: each
        // direction has its own.
        let theirs = if suite == SrtpCryptoSuite::AeadAes256Gcm {
            SrtpCryptoSuite::AesCm128HmacSha1_80
        } else {
            suite
        };
        let (publisher, created) = sim.add_plain_transport(room, Some(theirs), |o| {
            o.comedia = true;
            o.enable_srtp = true;
            o.srtp_crypto_suite = suite;
        });
        let keys = created.parameters.srtp_parameters.clone().expect("keys");
        assert_eq!(keys.crypto_suite, suite);
        let video = sim.plain_produce(publisher, MediaKind::Video, 1111);
        // Before connect gives the publisher's keys nothing authenticates: dropped, counted,
        // and comedia learns nothing.
        sim.run_for(Duration::from_millis(300));
        let early = sim.sfu.transport_stats(created.id).unwrap();
        assert!(early.rtp_dropped > 5, "{suite:?}: {early:?}");
        assert!(tuple_events(&sim).is_empty());
        sim.connect_plain(publisher, true).unwrap();
        let (receiver, _) = sim.add_plain_transport(room, Some(suite), |o| {
            o.enable_srtp = true;
            o.srtp_crypto_suite = suite;
        });
        let caps = sim.device_caps(room);
        let v = sim.plain_consume(receiver, video, caps);
        sim.connect_plain(receiver, false).unwrap();
        let from = sim.now;
        // Long enough for sender reports (they wait up to 5 s for the producer's own).
        sim.run_for(Duration::from_secs(6));
        let vssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
        let got = verified(&sim, receiver, vssrc, 1111);
        let sent = sim.sent[&1111]
            .packets
            .iter()
            .filter(|p| p.at > from + Duration::from_millis(100))
            .count();
        assert!(got >= sent, "{suite:?}: {got} of {sent}");
        assert_eq!(sim.plain[receiver].undecryptable, 0, "{suite:?}");
        assert!(!sim.plain[receiver].rtcp.is_empty(), "{suite:?}: SRTCP");
        let stats = sim.sfu.transport_stats(created.id).unwrap();
        assert_eq!(stats.rtp_dropped, early.rtp_dropped, "{suite:?}");
    }
}

#[test]
fn srtp_with_a_wrong_key_is_dropped_and_counted() {
    let mut sim = Sim::new(seed_from_env("plain_wrong_key"));
    let room = sim.create_router();
    let (publisher, created) = sim.add_plain_transport(room, None, |o| {
        o.comedia = true;
        o.enable_srtp = true;
    });
    let video = sim.plain_produce(publisher, MediaKind::Video, 1111);
    // The transport is told another key than the one the publisher sends with.
    let mut wrong = sim.plain[publisher].srtp_parameters.clone().unwrap();
    let mut key = data_encoding::BASE64
        .decode(wrong.key_base64.as_bytes())
        .unwrap();
    key[0] ^= 1;
    wrong.key_base64 = data_encoding::BASE64.encode(&key);
    let bad = sfu_core::ortc::PlainTransportConnectParameters {
        srtp_parameters: Some(sfu_core::ortc::SrtpParameters {
            key_base64: "not base64!".into(),
            ..wrong.clone()
        }),
        ..Default::default()
    };
    assert!(matches!(
        sim.sfu.connect_plain_transport(created.id, &bad),
        Err(Error::InvalidSrtpParameters(_))
    ));
    let params = sfu_core::ortc::PlainTransportConnectParameters {
        srtp_parameters: Some(wrong),
        ..Default::default()
    };
    sim.sfu
        .connect_plain_transport(created.id, &params)
        .unwrap();
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    sim.consume(bob, video, caps, false);
    sim.run_for(Duration::from_secs(2));
    let sent = &sim.sent[&1111].packets;
    let arrived = sent
        .iter()
        .filter(|p| p.at + Duration::from_millis(15) <= sim.now)
        .count() as u64;
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert!(
        (arrived..=sent.len() as u64).contains(&stats.rtp_dropped),
        "every packet dropped and counted: {} of {arrived}",
        stats.rtp_dropped
    );
    assert_eq!(stats.selected_tuple, None, "comedia learned nothing");
    assert!(tuple_events(&sim).is_empty());
    assert_eq!(sim.sfu.producer_stats(video).unwrap().packets_received, 0);
    assert!(sim.clients[bob].received.is_empty());
}

#[test]
fn strangers_after_comedia_are_dropped_and_counted() {
    let mut sim = Sim::new(seed_from_env("plain_stranger"));
    let room = sim.create_router();
    let (publisher, created) = sim.add_plain_transport(room, None, |o| o.comedia = true);
    let video = sim.plain_produce(publisher, MediaKind::Video, 1111);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let v = sim.consume(bob, video, caps, false);
    let start = sim.now;
    sim.run_for(Duration::from_secs(1));
    let server = sim.plain[publisher].server;
    let learned = sim.sfu.transport_stats(created.id).unwrap().selected_tuple;
    assert_eq!(learned.map(|t| t.remote), Some(sim.plain[publisher].local));
    let received = sim.sfu.producer_stats(video).unwrap().packets_received;
    // A stranger sends valid-looking RTP on the producer's SSRC, with sequence numbers the
    // stream would take, and garbage.
    let stranger: SocketAddr = "127.0.9.9:6000".parse().unwrap();
    let mut source = sfu_tests::media::Source::video(1111, sim.now);
    source.jump_sequence(10_000);
    let packets = source.poll(sim.now);
    for p in &packets {
        sim.inject_at(stranger, server, &rtp(1111, 96, p));
    }
    sim.inject_at(stranger, server, &[0xde; 40]);
    sim.run_for(Duration::from_secs(1));
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert_eq!(stats.dropped_foreign_source, packets.len() as u64);
    assert_eq!(
        sim.sfu.stats().dropped_malformed,
        1,
        "garbage, before any transport"
    );
    assert_eq!(stats.selected_tuple, learned, "the remote stays");
    assert_eq!(stats.rtp_dropped, 0);
    let now_received = sim.sfu.producer_stats(video).unwrap().packets_received;
    let sent = &sim.sent[&1111].packets;
    let arrived = sent
        .iter()
        .filter(|p| p.at + Duration::from_millis(15) <= sim.now)
        .count() as u64;
    assert!(
        (arrived..=sent.len() as u64).contains(&now_received),
        "only the publisher's packets, all of them: {now_received} of {arrived}"
    );
    assert!(now_received > received);
    assert_eq!(tuple_events(&sim).len(), 1);
    let vssrc = v.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let end = sim.now - Duration::from_millis(100);
    let up = sim.dtls_connected_at(bob).unwrap().max(start);
    let from_key = Expect::from_first_key_frame(&sim, 1111, up, end);
    delivery(&sim, bob, vssrc, &[from_key]).assert_clean(100);
}

#[test]
fn plain_transport_api_errors_and_close() {
    let mut sim = Sim::new(seed_from_env("plain_api"));
    let room = sim.create_router();
    let (rec, created) = sim.add_plain_transport(room, None, |_| {});
    // Without comedia connect needs an address; the address is the transport's alone.
    assert!(matches!(
        sim.sfu
            .connect_plain_transport(created.id, &Default::default()),
        Err(Error::InvalidConnectParameters(_))
    ));
    let taken = sfu_core::ortc::PlainTransportOptions::new(
        sfu_core::ortc::TransportListenInfo::at(sim.plain[rec].server),
    );
    assert!(matches!(
        sim.sfu.create_plain_transport(room, taken),
        Err(Error::InvalidListenInfo(_))
    ));
    let any_port = sfu_core::ortc::PlainTransportOptions::new(
        sfu_core::ortc::TransportListenInfo::udp("127.0.0.1".parse().unwrap()),
    );
    assert!(matches!(
        sim.sfu.create_plain_transport(room, any_port),
        Err(Error::InvalidListenInfo(_))
    ));
    let dtls = sfu_core::ortc::DtlsParameters {
        role: None,
        fingerprints: vec![],
    };
    assert_eq!(
        sim.sfu.connect_webrtc_transport(created.id, &dtls),
        Err(Error::NotWebRtc(created.id))
    );
    sim.connect_plain(rec, false).unwrap();
    let before = sim.sfu.footprint();
    assert_eq!((before.local_addresses, before.paths), (1, 1));
    sim.sfu.close_transport(created.id).unwrap();
    let after = sim.sfu.footprint();
    assert_eq!((after.local_addresses, after.paths), (0, 0));
    // Its address is free again, and datagrams to it reach no one.
    sim.inject_at(sim.plain[rec].local, sim.plain[rec].server, &[0x80; 20]);
    assert_eq!(sim.sfu.stats().dropped_unknown_source, 1);
}

#[test]
fn on_a_muxed_socket_comedia_learns_from_rtp_not_from_rtcp_that_comes_first() {
    let mut sim = Sim::new(seed_from_env("plain_rtcp_first"));
    let room = sim.create_router();
    let (publisher, created) = sim.add_plain_transport(room, None, |o| o.comedia = true);
    let server = sim.plain[publisher].server;
    // A sender report from the publisher's RTCP port (as ffmpeg sends it, before its RTP).
    let rtcp_port = SocketAddr::new(sim.plain[publisher].local.ip(), 5005);
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&1111u32.to_be_bytes());
    sr.extend_from_slice(&[0; 20]);
    sim.inject_at(rtcp_port, server, &sr);
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert_eq!(
        stats.selected_tuple, None,
        "RTCP teaches nothing on a muxed socket"
    );
    assert_eq!((stats.rtcp_dropped, stats.dropped_foreign_source), (0, 0));
    sim.plain_produce(publisher, MediaKind::Audio, 1111);
    sim.run_for(Duration::from_millis(200));
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert_eq!(
        stats.selected_tuple.map(|t| t.remote),
        Some(sim.plain[publisher].local),
        "the first RTP packet's sender is the remote"
    );
    // Its RTCP port is a stranger now.
    sim.inject_at(rtcp_port, server, &sr);
    let stats = sim.sfu.transport_stats(created.id).unwrap();
    assert_eq!(stats.dropped_foreign_source, 1);
}
