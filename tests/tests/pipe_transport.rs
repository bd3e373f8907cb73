//! Pipe transports and pipe to router: a producer in one router reaches WebRTC consumers in
//! another through a pipe pair, every simulcast encoding crossing with its numbers kept, with
//! and without SRTP and RTX on the pipe; what a pipe peer sends that nobody produced, or with
//! the wrong key, is dropped and counted; sender reports carry the publisher's NTP/RTP
//! mapping across the pipe.

mod common_peers;

use common_peers::{join, LAYERS};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use sfu_core::media::rtcp::{self, RtcpPacket};

use sfu_core::media::srtp::SrtpContext;
use sfu_core::ortc::{
    ConsumerType, MediaKind, PipeTransportOptions, SrtpCryptoSuite, TransportListenInfo,
};
use sfu_core::{ConsumeOptions, Error, PipedProducer};
use sfu_tests::client::SenderReportSeen;
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
        // Under loss, packets sent before the check's window (and their repairs) arrive inside
        // it, with what the pipe lost of them given up at a key frame, and the last ones sent
        // may still wait for their repair: only packets sent in the window are checked.
        let sent_at: HashMap<u16, std::time::Instant> = sim.sent[&source]
            .packets
            .iter()
            .map(|p| (p.seq as u16, p.at))
            .collect();
        let checked: Vec<_> = received[start..]
            .iter()
            .filter(|p| {
                pipe_loss == 0.0
                    || p.ssrc != s
                    || !verify_payload(&p.payload).is_some_and(|i| {
                        i.ssrc == source
                            && sent_at.get(&i.seq).is_some_and(|&at| at < warm || at > end)
                    })
            })
            .cloned()
            .collect();
        let d = delivery_of(&sim.sent, &checked, s, &[expect]);
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
        enable_sctp: false,
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

/// The payload octets of an RTP datagram in the clear (after header, CSRCs and extensions,
/// before padding).
fn payload_len(d: &[u8]) -> usize {
    let mut at = 12 + 4 * usize::from(d[0] & 0x0f);
    if d[0] & 0x10 != 0 {
        let words = u16::from_be_bytes(d[at + 2..at + 4].try_into().unwrap());
        at += 4 + 4 * usize::from(words);
    }
    let padding = if d[0] & 0x20 != 0 {
        usize::from(d[d.len() - 1])
    } else {
        0
    };
    d.len() - at - padding
}

/// A sender report's NTP/RTP pair moved into the source's timestamps: (NTP time, RTP time of
/// the source) given the consumer's constant (consumer - source) timestamp offset.
fn source_mapping(sr: &SenderReportSeen, offset: u32) -> (SystemTime, u32) {
    (sr.ntp_time, sr.rtp_time.wrapping_sub(offset))
}

/// Lip sync across a pipe: the pipe consumer's streams send sender reports that carry the
/// publisher's NTP/RTP mapping (and count what crossed the pipe), the pipe producer takes
/// them as its own, and a viewer in the second router gets reports that agree with the
/// publisher's, as a viewer in the publisher's router does.
#[test]
fn sender_reports_cross_the_pipe() {
    let mut sim = Sim::new(seed_from_env("pipe_sender_reports"));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let alice = join(&mut sim, ra, 0, Protocol::Udp);
    let simulcast = sim.produce_simulcast(alice.send, &LAYERS);
    let caps_a = sim.device_caps(ra);
    // Dave watches in alice's router: the reference.
    let dave = sim.add_transport(ra, Protocol::Udp);
    let da = sim.consume(dave, alice.audio, caps_a.clone(), false);
    let dv = sim.consume(dave, alice.video, caps_a, false);
    let pa = sim.pipe_to_router(alice.audio, rb, false, false);
    let pv = sim.pipe_to_router(alice.video, rb, false, false);
    let ps = sim.pipe_to_router(simulcast, rb, false, false);
    // A slow pipe: a mapping taken from when media crossed it would be 30 ms off.
    let a = sim.sfu.transport_stats(pv.local_transport).unwrap();
    let b = sim.sfu.transport_stats(pv.remote_transport).unwrap();
    let (a, b) = (
        a.selected_tuple.unwrap().local,
        b.selected_tuple.unwrap().local,
    );
    let slow = LinkConfig::ideal().with_latency(Duration::from_millis(30));
    sim.net.set_link(a, b, slow.clone());
    sim.net.set_link(b, a, slow);
    let bob = sim.add_transport(rb, Protocol::Udp);
    let caps_b = sim.device_caps(rb);
    let ba = sim.consume(bob, pa.pipe_producer, caps_b.clone(), false);
    let bv = sim.consume(bob, pv.pipe_producer, caps_b, false);
    sim.run_for(Duration::from_secs(16));

    // The viewers' reports, in the source's timestamps, against each other.
    let ssrc = |c: &sfu_core::Consumed| c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let offset = |client: usize, consumer: u32| {
        let p = sim.clients[client]
            .received
            .iter()
            .find(|p| p.ssrc == consumer)
            .expect("media");
        let info = verify_payload(&p.payload).unwrap();
        let source = sim.sent[&info.ssrc]
            .packets
            .iter()
            .find(|s| s.seq as u16 == info.seq)
            .unwrap();
        p.timestamp.wrapping_sub(source.timestamp)
    };
    let mut worst = Vec::new();
    for (reference, piped, rate) in [(&da, &ba, 48_000u32), (&dv, &bv, 90_000)] {
        let (rs, ps_) = (ssrc(reference), ssrc(piped));
        let (ro, po) = (offset(dave, rs), offset(bob, ps_));
        let refs: Vec<_> = sim.clients[dave]
            .sender_report_log
            .iter()
            .filter(|s| s.ssrc == rs)
            .map(|s| source_mapping(s, ro))
            .collect();
        let piped_srs: Vec<_> = sim.clients[bob]
            .sender_report_log
            .iter()
            .filter(|s| s.ssrc == ps_)
            .collect();
        assert!(
            piped_srs.len() >= 10 && refs.len() >= 10,
            "{} and {} reports in 16 s",
            piped_srs.len(),
            refs.len()
        );
        let mut max_error = 0i64;
        for sr in &piped_srs {
            let (ntp, rtp) = source_mapping(sr, po);
            // The reference report nearest in NTP time, moved to this one's NTP time.
            let (rntp, rrtp) = *refs
                .iter()
                .min_by_key(|(t, _)| {
                    t.duration_since(ntp)
                        .or_else(|_| ntp.duration_since(*t))
                        .unwrap()
                })
                .unwrap();
            let nanos = match ntp.duration_since(rntp) {
                Ok(d) => d.as_nanos() as i128,
                Err(e) => -(e.duration().as_nanos() as i128),
            };
            let want = rrtp.wrapping_add((nanos * i128::from(rate) / 1_000_000_000) as u32);
            let error = i64::from(rtp.wrapping_sub(want) as i32);
            max_error = max_error.max(error.abs());
        }
        worst.push((rate, max_error));
        // The links are exact and each hop carries the pair as it is, rounding the RTP time
        // to the nearest tick once: half a tick for each of the pipe's and the viewer's
        // reports, half for the reference's, under one for the comparison's truncation: two
        // ticks at most, where a mapping taken from when media crossed the 30 ms pipe would
        // be 1,440 (audio) or 2,700 (video) ticks off.
        assert!(
            max_error <= 2,
            "reports of the piped {rate} Hz stream place the source's RTP time {max_error} \
             ticks from the publisher's mapping"
        );
    }
    eprintln!("piped sender reports: worst (rate, ticks off the publisher's mapping) {worst:?}");

    // On the pipe's wire: each stream's reports count exactly what crossed before them.
    let pipe_ssrcs: Vec<u32> = [pa.pipe_consumer, pv.pipe_consumer, ps.pipe_consumer]
        .iter()
        .flat_map(|&c| {
            sim.sfu
                .consumer_parameters(c)
                .unwrap()
                .rtp_parameters
                .encodings
                .iter()
                .map(|e| e.ssrc.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(pipe_ssrcs.len(), 2 + LAYERS.len());
    let mut sent: HashMap<u32, (u32, u32)> = HashMap::new();
    let mut reports: HashMap<u32, usize> = HashMap::new();
    for (_, _, d) in &sim.pipe_wire {
        if !(200..=206).contains(&d[1]) {
            let ssrc = u32::from_be_bytes(d[8..12].try_into().unwrap());
            let counts = sent.entry(ssrc).or_default();
            counts.0 += 1;
            counts.1 += payload_len(d) as u32;
            continue;
        }
        for packet in rtcp::compound(d) {
            let Ok(RtcpPacket::SenderReport(sr)) = packet else {
                continue;
            };
            assert!(pipe_ssrcs.contains(&sr.ssrc()), "a report of {}", sr.ssrc());
            let counts = sent.get(&sr.ssrc()).copied().unwrap_or_default();
            assert_eq!(
                (sr.packet_count(), sr.octet_count()),
                counts,
                "the report of pipe stream {} counts what crossed before it",
                sr.ssrc()
            );
            *reports.entry(sr.ssrc()).or_default() += 1;
        }
    }
    for s in &pipe_ssrcs {
        assert!(
            reports.get(s).copied().unwrap_or(0) >= 10,
            "pipe stream {s}: {reports:?}"
        );
    }
}

/// A producer that sends no sender reports (a plain RTP endpoint): the pipe's reports wait
/// for its reports for 5 s, then speak the Sfu's clock, their RTP time the newest packet's
/// timestamp advanced by the time since it was sent.
#[test]
fn pipe_reports_on_the_sfus_clock_without_producer_reports() {
    let mut sim = Sim::new(seed_from_env("pipe_sfu_clock"));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let (ffmpeg, _) = sim.add_plain_transport(ra, None, |_| {});
    sim.connect_plain(ffmpeg, false).unwrap();
    let video = sim.plain_produce(ffmpeg, MediaKind::Video, 5000);
    let piped = sim.pipe_to_router(video, rb, false, false);
    sim.run_for(Duration::from_secs(9));
    let mut first_rtp = None;
    let mut last: Option<(std::time::Instant, u32)> = None;
    let (mut packets, mut octets) = (0u32, 0u32);
    let mut reports = 0;
    for (at, _, d) in &sim.pipe_wire {
        if !(200..=206).contains(&d[1]) {
            first_rtp.get_or_insert(*at);
            last = Some((*at, u32::from_be_bytes(d[4..8].try_into().unwrap())));
            packets += 1;
            octets += payload_len(d) as u32;
            continue;
        }
        for packet in rtcp::compound(d) {
            let Ok(RtcpPacket::SenderReport(sr)) = packet else {
                continue;
            };
            let first = first_rtp.expect("a report only after media");
            assert!(
                *at >= first + Duration::from_secs(5),
                "the first report waits 5 s for the producer's: {:?} after the first packet",
                *at - first
            );
            // Sent one pipe latency before it arrived, as the packets were: the newest
            // packet's timestamp advanced at 90 kHz by the time between the two.
            let (packet_at, ts) = last.unwrap();
            let ticks = ((*at - packet_at).as_nanos() * 90_000 / 1_000_000_000) as u32;
            let error = i64::from(sr.rtp_timestamp().wrapping_sub(ts.wrapping_add(ticks)) as i32);
            assert!(error.abs() <= 1, "RTP time {error} ticks off");
            assert_eq!((sr.packet_count(), sr.octet_count()), (packets, octets));
            reports += 1;
        }
    }
    assert!(reports >= 3, "{reports} reports");
    // The peer's producer takes them: its consumers' reports may speak its clock.
    let stats = sim.sfu.producer_stats(piped.pipe_producer).unwrap();
    assert!(stats.packets_received > 100, "{stats:?}");
}
