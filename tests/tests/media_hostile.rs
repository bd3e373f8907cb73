//! Hostile input to the media plane from participants whose paths ICE validated: replayed and
//! forged SRTP, a publisher whose sequence numbers jump by 2^15 or more, SRTCP compounds with
//! truncated or lying length fields, a consumer that asks for every packet again forever, and
//! SRTP before DTLS has connected. Each is dropped and counted where the stats say, and
//! disturbs nobody else: the other consumers' streams stay clean by the delivery checker, and
//! the other transports' counters stay as they were.
//!
//! What the clients' own stack never sends (SRTCP with lying lengths, endless NACKs, SRTP with
//! chosen headers) is made with the keys the server holds for the client's transport
//! ([`endpoint_srtp`]) and injected from the client's own address.

mod common_peers;

use std::collections::HashSet;
use std::time::Duration;

use common_peers::{room_of, sub_delivery, Peer, Sub, SETTLE};
use sfu_core::media::rtcp::{write_nack, write_pli};
use sfu_core::ortc::Protocol as P;
use sfu_core::{ConsumerStats, DtlsState, ProducerStats, TransportStats};
use sfu_tests::forge::{endpoint_srtp, is_srtp, rtp_packet, srtcp};
use sfu_tests::media::{verify_payload, VIDEO_PACKET_SIZE};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;

/// Publication index of peer `n`'s video (peers publish audio, then video).
fn video_of(n: usize) -> usize {
    2 * n + 1
}

/// Every client transport's stats.
fn transport_stats(sim: &Sim) -> Vec<TransportStats> {
    sim.clients
        .iter()
        .map(|c| sim.sfu.transport_stats(c.id).expect("transport"))
        .collect()
}

/// A producer's counters (its measured bitrates left out: they move with the clock alone).
fn producer(sim: &Sim, peer: &Peer) -> ProducerStats {
    let mut stats = sim.sfu.producer_stats(peer.video).expect("producer");
    stats.bitrate_per_encoding.clear();
    stats
}

fn consumer(sim: &Sim, sub: &Sub) -> ConsumerStats {
    sim.sfu.consumer_stats(sub.consumer).expect("consumer")
}

/// Asserts that only transport `changed`'s stats differ between `before` and `after`, and
/// returns its (before, after).
#[track_caller]
fn only_changed(
    before: &[TransportStats],
    after: &[TransportStats],
    changed: usize,
) -> (TransportStats, TransportStats) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        if i != changed {
            assert_eq!(
                (b.rtp_dropped, b.rtcp_dropped, b.rtc_errors, b.dtls_dropped),
                (a.rtp_dropped, a.rtcp_dropped, a.rtc_errors, a.dtls_dropped),
                "transport {i}'s drop counters moved"
            );
        }
    }
    (before[changed].clone(), after[changed].clone())
}

/// Runs until just before publication `i`'s next frame, has its client make that frame and
/// returns the datagrams the client wrote (its SRTP, and whatever else it had to send),
/// undelivered.
fn capture_frame(sim: &mut Sim, i: usize) -> Vec<Vec<u8>> {
    let due = sim.publications[i].source.next_at();
    sim.run_until(due - Duration::from_micros(1));
    let packets = sim.take_source_packets(i, due);
    assert!(!packets.is_empty(), "a frame was due");
    let (client, mid) = (sim.publications[i].client, sim.publications[i].mid.clone());
    sim.capture_sent(client, &mid, packets)
}

/// Sends datagrams to the server from client `client`'s own (validated) address.
fn inject_from(sim: &mut Sim, client: usize, datagrams: &[Vec<u8>]) {
    let from = sim.clients[client].local;
    for d in datagrams {
        sim.inject(P::Udp, from, d);
    }
}

/// Every consumer stream but those `skip` names is clean from its start to the end of the run.
fn assert_clean_but(sim: &Sim, subs: &[Sub], skip: impl Fn(&Sub) -> bool) {
    for sub in subs.iter().filter(|s| !skip(s)) {
        let d = sub_delivery(sim, sub, sim.start);
        if let Err(e) = d.check(50) {
            panic!(
                "{:?} consumer {} of source {}: {e}",
                sub.kind, sub.consumer, sub.source_ssrc
            );
        }
        assert_eq!(d.runs, 1, "consumer {}: one run: {d:?}", sub.consumer);
    }
}

/// A room of three peers publishing audio and video, everyone consuming everyone, after a
/// second of clean media.
fn conference(name: &str) -> (Sim, Vec<Peer>, Vec<Sub>) {
    let mut sim = Sim::new(seed_from_env(name));
    let (peers, subs) = room_of(&mut sim, 3);
    sim.run_for(Duration::from_secs(1));
    (sim, peers, subs)
}

/// The consumers of peer 0's video.
fn video_subs<'a>(subs: &'a [Sub], peers: &[Peer]) -> Vec<&'a Sub> {
    subs.iter()
        .filter(|s| s.producer == peers[0].video)
        .collect()
}

/// A replayed SRTP packet fails the SRTP replay check (RFC 3711 section 3.3.2) before it
/// reaches the stream: it counts in the transport's `rtp_dropped`, never in the producer's
/// `packets_discarded` (which is for packets that passed SRTP: retransmissions of packets
/// already received, or too old to place), and is forwarded once only. A packet replayed long
/// after (behind the replay window) is dropped the same way.
#[test]
fn replayed_srtp_is_dropped_as_rtp_and_forwarded_once() {
    let (mut sim, peers, subs) = conference("media_hostile_replay");
    let publisher = peers[0].send;
    let frame = capture_frame(&mut sim, video_of(0));
    let rtp: Vec<Vec<u8>> = frame.iter().filter(|d| is_srtp(d)).cloned().collect();
    assert!(!rtp.is_empty(), "the frame went out as SRTP");
    let n = rtp.len() as u64;

    let (t0, p0) = (transport_stats(&sim), producer(&sim, &peers[0]));
    inject_from(&mut sim, publisher, &frame);
    let (t1, p1) = (transport_stats(&sim), producer(&sim, &peers[0]));
    let (b, a) = only_changed(&t0, &t1, publisher);
    assert_eq!(a.rtp_dropped, b.rtp_dropped, "the originals are accepted");
    assert_eq!(p1.packets_received, p0.packets_received + n);

    // The same datagrams again, at once.
    inject_from(&mut sim, publisher, &rtp);
    let (t2, p2) = (transport_stats(&sim), producer(&sim, &peers[0]));
    let (b, a) = only_changed(&t1, &t2, publisher);
    assert_eq!(a.rtp_dropped, b.rtp_dropped + n, "each replay is counted");
    assert_eq!(p2.packets_received, p1.packets_received, "{p2:?}");
    assert_eq!(p2.packets_discarded, p1.packets_discarded, "{p2:?}");

    // And again two seconds later, far behind the replay window.
    sim.run_for(Duration::from_secs(2));
    let (t3, p3) = (transport_stats(&sim), producer(&sim, &peers[0]));
    inject_from(&mut sim, publisher, &rtp);
    let (t4, p4) = (transport_stats(&sim), producer(&sim, &peers[0]));
    let (b, a) = only_changed(&t3, &t4, publisher);
    assert_eq!(
        a.rtp_dropped,
        b.rtp_dropped + n,
        "each old replay is counted"
    );
    assert_eq!(p4.packets_received, p3.packets_received, "{p4:?}");
    assert_eq!(p4.packets_discarded, p3.packets_discarded, "{p4:?}");

    sim.run_for(Duration::from_millis(500));
    // Nothing twice, nothing missing, for everyone (the replayed stream included).
    assert_clean_but(&sim, &subs, |_| false);
}

/// SRTP with a flipped bit in its authentication tag, payload or header, or another stream's
/// SSRC, fails authentication: counted in `rtp_dropped`, nothing forwarded, and the genuine
/// packets sent after the forgeries are still accepted (a forgery moves no SRTP state).
#[test]
fn forged_srtp_is_dropped_and_forwards_nothing() {
    let (mut sim, peers, subs) = conference("media_hostile_forged");
    let publisher = peers[0].send;
    let frame = capture_frame(&mut sim, video_of(0));
    let rtp: Vec<Vec<u8>> = frame.iter().filter(|d| is_srtp(d)).cloned().collect();
    let real = &rtp[0];
    let last = real.len() - 1;
    let flip = |at: usize, mask: u8| {
        let mut d = real.clone();
        d[at] ^= mask;
        d
    };
    let mut forged = vec![
        flip(last, 0x01),           // the tag
        flip(last - 8, 0x80),       // the tag
        flip(real.len() / 2, 0x04), // the payload
        flip(40, 0x01),             // the payload, near its start
        flip(4, 0x80),              // the timestamp
        flip(3, 0x01),              // the sequence number
        flip(1, 0x80),              // the marker bit
    ];
    // Another stream's SSRC (the publisher's audio), and one no producer declared.
    let mut other = real.clone();
    other[8..12].copy_from_slice(&(1000u32).to_be_bytes());
    forged.push(other);
    let mut unknown = real.clone();
    unknown[8..12].copy_from_slice(&0x0bad_0bad_u32.to_be_bytes());
    forged.push(unknown);

    let sent_before: Vec<u64> = video_subs(&subs, &peers)
        .iter()
        .map(|s| consumer(&sim, s).packets_sent)
        .collect();
    let (t0, p0) = (transport_stats(&sim), producer(&sim, &peers[0]));
    inject_from(&mut sim, publisher, &forged);
    let (t1, p1) = (transport_stats(&sim), producer(&sim, &peers[0]));
    let (b, a) = only_changed(&t0, &t1, publisher);
    assert_eq!(a.rtp_dropped, b.rtp_dropped + forged.len() as u64);
    assert_eq!(p1, p0, "a forgery reaches no producer");
    let sent_after: Vec<u64> = video_subs(&subs, &peers)
        .iter()
        .map(|s| consumer(&sim, s).packets_sent)
        .collect();
    assert_eq!(sent_after, sent_before, "nothing forwarded");

    // The genuine datagrams after the forgeries: all accepted.
    inject_from(&mut sim, publisher, &frame);
    let (t2, p2) = (transport_stats(&sim), producer(&sim, &peers[0]));
    let (b, a) = only_changed(&t1, &t2, publisher);
    assert_eq!(a.rtp_dropped, b.rtp_dropped);
    assert_eq!(p2.packets_received, p1.packets_received + rtp.len() as u64);

    sim.run_for(Duration::from_secs(1));
    assert_clean_but(&sim, &subs, |_| false);
}

/// A publisher whose sequence numbers jump forward by 40,000 (2^15 or more: RFC 3711's rollover
/// estimate reads it as a packet from long ago), twice (from the lower half of the number
/// space, where the estimate is a rollover counter of -1, then from the upper half into the
/// next rollover), recovers each time: the SRTP receiver tries a packet its estimate puts
/// behind the replay window one rollover later, the receive stream takes the jump as a restart
/// at the second sequential packet (RFC 3550 A.1; the first is discarded), and the consumers
/// start a new run at the next key frame on contiguous sequence numbers. Before, every packet
/// after the jump failed SRTP and the stream was dead for good.
#[test]
fn a_sequence_jump_of_40000_recovers() {
    let (mut sim, peers, subs) = conference("media_hostile_jump");
    let publisher = peers[0].send;
    let source = sim.publications[video_of(0)].source.ssrc;
    let t0 = transport_stats(&sim);
    let p0 = producer(&sim, &peers[0]);
    let mut jumps = Vec::new();
    for _ in 0..2 {
        jumps.push(sim.now);
        sim.publications[video_of(0)].source.jump_sequence(40_000);
        sim.run_for(Duration::from_millis(1500));
    }
    let end = sim.now - SETTLE;

    let t1 = transport_stats(&sim);
    let (b, a) = only_changed(&t0, &t1, publisher);
    assert_eq!(
        a.rtp_dropped, b.rtp_dropped,
        "SRTP accepts the jumped packets"
    );
    let p1 = producer(&sim, &peers[0]);
    assert_eq!(
        p1.packets_discarded,
        p0.packets_discarded + 2,
        "only the first packet after each jump waits for confirmation: {p1:?}"
    );

    // What the source made after each jump, by 16-bit sequence number (unique here), from
    // 200 ms on (a key frame request's round trip) until the next jump or SETTLE ago.
    let log = &sim.sent[&source];
    let mut must_arrive = HashSet::new();
    for (i, &at) in jumps.iter().enumerate() {
        let until = jumps.get(i + 1).copied().unwrap_or(end);
        let window: Vec<u16> = log
            .packets
            .iter()
            .filter(|p| p.at >= at + Duration::from_millis(200) && p.at < until)
            .map(|p| p.seq as u16)
            .collect();
        assert!(
            window.len() > 100,
            "{} packets after jump {i}",
            window.len()
        );
        must_arrive.extend(window);
    }
    for sub in video_subs(&subs, &peers) {
        let got: Vec<_> = sim.clients[sub.recv]
            .received
            .iter()
            .filter(|r| r.ssrc == sub.ssrc)
            .collect();
        let mut seen = HashSet::new();
        for w in got.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "consumer {}: contiguous sequence numbers across the jumps",
                sub.consumer
            );
        }
        for r in &got {
            let info = verify_payload(&r.payload).expect("a payload the source made");
            assert_eq!(info.ssrc, source);
            assert!(
                seen.insert(info.seq),
                "consumer {} got {} twice",
                sub.consumer,
                info.seq
            );
        }
        let missing = must_arrive.iter().filter(|s| !seen.contains(s)).count();
        assert_eq!(
            missing,
            0,
            "consumer {}: {missing} of {} packets made after the jumps never arrived: {:?}",
            sub.consumer,
            must_arrive.len(),
            consumer(&sim, sub)
        );
    }
    // Everyone else is untouched.
    assert_clean_but(&sim, &subs, |s| s.producer == peers[0].video);
}

/// A compound RTCP datagram, SRTCP-protected with the endpoint's keys, of `parts` in order.
fn compound(ctx: &mut sfu_core::media::srtp::SrtpContext, parts: &[Vec<u8>]) -> Vec<u8> {
    srtcp(ctx, &parts.concat())
}

fn pli(sender: u32, media: u32) -> Vec<u8> {
    let mut b = [0u8; 64];
    let n = write_pli(&mut b, sender, media).expect("pli");
    b[..n].to_vec()
}

/// An RTCP header: version 2, `count`, packet type `pt`, length field `words`, then `body`.
fn rtcp_raw(count: u8, pt: u8, words: u16, body: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80 | count, pt];
    b.extend_from_slice(&words.to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// SRTCP that authenticates but whose compound is broken: a length field that runs past the
/// end, a truncated header, a packet too short for its type, a length that cuts a packet
/// short, a version other than 2. Each datagram counts once in the transport's
/// `rtcp_dropped`; the packets before the broken one are acted on (here, PLIs: the consumer's
/// `key_frame_requests_received`), nothing after it; nothing else moves, and a good compound
/// afterwards is taken as usual.
#[test]
fn srtcp_with_lying_lengths_is_dropped_after_what_precedes_it() {
    let (mut sim, peers, subs) = conference("media_hostile_rtcp");
    let sub = video_subs(&subs, &peers)[0].clone();
    let rx = sub.recv;
    let mut ctx = endpoint_srtp(&sim, rx);
    let me = 0x0bad_1234;
    let good = pli(me, sub.ssrc);
    let ssrc = me.to_be_bytes();
    let cases: Vec<(&str, Vec<Vec<u8>>, u64)> = vec![
        (
            "receiver report claiming 7 words, holding 1",
            vec![good.clone(), rtcp_raw(0, 201, 7, &ssrc)],
            1,
        ),
        (
            "a header cut after 3 bytes",
            vec![good.clone(), good.clone(), good[..3].to_vec()],
            2,
        ),
        (
            "a NACK with no room for its media SSRC",
            vec![good.clone(), rtcp_raw(1, 205, 1, &ssrc)],
            1,
        ),
        (
            "a NACK with no room for its media SSRC, then a PLI",
            vec![rtcp_raw(1, 205, 1, &ssrc), good.clone()],
            0,
        ),
        (
            "a PLI whose length says 8 bytes, its media SSRC taken for the next header",
            vec![rtcp_raw(1, 206, 1, &ssrc), sub.ssrc.to_be_bytes().to_vec()],
            0,
        ),
        (
            "a length field of 65535 words",
            vec![good.clone(), rtcp_raw(0, 201, 0xffff, &ssrc)],
            1,
        ),
        (
            "version 0 after two PLIs",
            vec![good.clone(), good.clone(), {
                let mut b = good.clone();
                b[0] &= 0x3f;
                b
            }],
            2,
        ),
        (
            "a sender report one word short of its sender info",
            vec![good.clone(), rtcp_raw(0, 200, 5, &[0; 20])],
            1,
        ),
    ];
    for (what, parts, acted) in cases {
        let datagram = compound(&mut ctx, &parts);
        let (t0, c0) = (transport_stats(&sim), consumer(&sim, &sub));
        inject_from(&mut sim, rx, &[datagram]);
        let (t1, c1) = (transport_stats(&sim), consumer(&sim, &sub));
        let (b, a) = only_changed(&t0, &t1, rx);
        assert_eq!(a.rtcp_dropped, b.rtcp_dropped + 1, "{what}: counted once");
        assert_eq!(a.rtp_dropped, b.rtp_dropped, "{what}");
        assert_eq!(
            c1.key_frame_requests_received,
            c0.key_frame_requests_received + acted,
            "{what}: the packets before the broken one are acted on"
        );
        sim.run_for(Duration::from_millis(100));
    }
    // A good compound after all that.
    let (t0, c0) = (transport_stats(&sim), consumer(&sim, &sub));
    let datagram = compound(&mut ctx, std::slice::from_ref(&good));
    inject_from(&mut sim, rx, &[datagram]);
    let (t1, c1) = (transport_stats(&sim), consumer(&sim, &sub));
    let (b, a) = only_changed(&t0, &t1, rx);
    assert_eq!(a.rtcp_dropped, b.rtcp_dropped);
    assert_eq!(
        c1.key_frame_requests_received,
        c0.key_frame_requests_received + 1
    );
    sim.run_for(Duration::from_secs(1));
    assert_clean_but(&sim, &subs, |_| false);
}

/// How long the NACK storm lasts.
const STORM: Duration = Duration::from_secs(10);

/// A consumer whose endpoint NACKs the last 100 sequence numbers it received every 20 ms for
/// 10 s gets retransmissions within the send stream's budget (retransmitted bytes over any
/// second at most 50% of the bytes sent plus a 2,400-byte burst, summed over the seconds the
/// storm meets), the rest are refused and counted, and every other consumer's stream stays
/// clean.
#[test]
fn a_consumer_that_nacks_everything_gets_bounded_retransmissions() {
    let (mut sim, peers, subs) = conference("media_hostile_nack_storm");
    let sub = video_subs(&subs, &peers)[0].clone();
    let rx = sub.recv;
    let mut ctx = endpoint_srtp(&sim, rx);
    let c0 = consumer(&sim, &sub);
    let t0 = transport_stats(&sim);
    let start = sim.now;
    let mut nacks = 0u64;
    while sim.now < start + STORM {
        sim.run_for(Duration::from_millis(20));
        let Some(last) = sim.clients[rx]
            .received
            .iter()
            .rev()
            .find(|r| r.ssrc == sub.ssrc)
            .map(|r| r.seq)
        else {
            continue;
        };
        let seqs: Vec<u16> = (0..100u16).map(|i| last.wrapping_sub(99 - i)).collect();
        let mut b = [0u8; 256];
        let n = write_nack(&mut b, 0x0bad_4e4b, sub.ssrc, &seqs).expect("nack");
        let datagram = srtcp(&mut ctx, &b[..n]);
        inject_from(&mut sim, rx, &[datagram]);
        nacks += 1;
    }
    let c1 = consumer(&sim, &sub);
    let t1 = transport_stats(&sim);
    let (b, a) = only_changed(&t0, &t1, rx);
    assert_eq!(a.rtcp_dropped, b.rtcp_dropped, "the NACKs are well-formed");

    let asked = c1.nacked_packets - c0.nacked_packets;
    let resent = c1.packets_retransmitted - c0.packets_retransmitted;
    let refused = c1.retransmissions_refused - c0.retransmissions_refused;
    let sent_bytes = c1.bytes_sent - c0.bytes_sent;
    // Each retransmission carries a whole video packet (at least its payload).
    let resent_bytes = resent * VIDEO_PACKET_SIZE as u64;
    // The budget holds over every one-second window (of 100 ms buckets); the storm's ten
    // seconds meet twelve of them at most (one straddling its start, one its end), each
    // allowing half of about a second's forwarded bytes plus the burst.
    let windows = STORM.as_secs() + 2;
    let per_second = sent_bytes / STORM.as_secs();
    let bound = windows * (per_second / 2 + 2_400);
    eprintln!(
        "{nacks} NACKs asked for {asked} packets: {resent} resent ({resent_bytes} bytes, bound \
         {bound}), {refused} refused; {sent_bytes} bytes forwarded"
    );
    assert!(asked >= nacks * 90, "the NACKs were heard: {c1:?}");
    assert!(resent > 0, "some retransmissions are allowed: {c1:?}");
    assert!(refused > 0, "the budget refused some: {c1:?}");
    assert!(
        resent_bytes <= bound,
        "{resent_bytes} bytes retransmitted over {STORM:?}, the budget allows {bound}: {c1:?}"
    );
    sim.run_for(Duration::from_millis(300));
    // The storming consumer's own stream has the retransmissions in it (duplicates); everyone
    // else's is clean.
    assert_clean_but(&sim, &subs, |s| s.consumer == sub.consumer);
}

/// SRTP- and SRTCP-looking datagrams on a validated path before DTLS has connected (there are
/// no keys yet) are dropped and counted in `rtp_dropped` and `rtcp_dropped`; media flows
/// normally once DTLS connects.
#[test]
fn srtp_before_dtls_is_dropped_and_media_flows_after() {
    let mut sim = Sim::new(seed_from_env("media_hostile_early"));
    let (peers, subs) = room_of(&mut sim, 3);
    let publisher = peers[0].send;
    let id = sim.clients[publisher].id;
    let deadline = sim.now + Duration::from_secs(2);
    loop {
        let s = sim.sfu.transport_stats(id).expect("transport");
        if s.selected_tuple.is_some() {
            assert_ne!(s.dtls_state, DtlsState::Connected, "DTLS came first");
            break;
        }
        assert!(sim.now < deadline, "ICE never validated a path");
        sim.run_for(Duration::from_micros(500));
    }
    let video_ssrc = 5000; // peer 0's video RTP SSRC (see common_peers).
    let mut datagrams: Vec<Vec<u8>> = (0..5u16)
        .map(|i| rtp_packet(96, 100 + i, 9000, video_ssrc, &[0x5a; 160]))
        .collect();
    let rtcp_like = [
        rtcp_raw(0, 201, 1, &0x0bad_0001u32.to_be_bytes())
            .into_iter()
            .chain([0u8; 20])
            .collect::<Vec<u8>>(),
        pli(0x0bad_0002, 1),
    ];
    datagrams.extend(rtcp_like.iter().cloned());
    let t0 = transport_stats(&sim);
    let sfu0 = sim.sfu.stats();
    inject_from(&mut sim, publisher, &datagrams);
    let t1 = transport_stats(&sim);
    let (b, a) = only_changed(&t0, &t1, publisher);
    assert_ne!(a.dtls_state, DtlsState::Connected);
    assert_eq!(a.rtp_dropped, b.rtp_dropped + 5, "{a:?}");
    assert_eq!(a.rtcp_dropped, b.rtcp_dropped + 2, "{a:?}");
    let sfu1 = sim.sfu.stats();
    assert_eq!(
        sfu1.dropped_unknown_source, sfu0.dropped_unknown_source,
        "the path was validated"
    );

    sim.run_for(Duration::from_secs(3));
    assert!(sim.dtls_connected_at(publisher).is_some());
    assert_clean_but(&sim, &subs, |_| false);
}
