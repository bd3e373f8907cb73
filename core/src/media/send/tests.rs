#![allow(clippy::disallowed_methods)] // Tests take one real Instant as their origin.

use super::budget::{RETRANSMIT_BURST_BYTES, RETRANSMIT_SHARE_PERCENT};
use super::history::HISTORY_LEN;
use super::ntp::ntp_add;
use super::*;

const SSRC: u32 = 0x1111_2222;
const RTX_SSRC: u32 = 0x3333_4444;
/// 2026-ish in NTP seconds, with a fraction.
const NTP0: u64 = (3_980_000_000u64 << 32) | 0x4000_0000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn source(i: u64) -> SentPacket {
    SentPacket {
        layer: (i % 3) as u8,
        source_ext_seq: 1_000_000 + 2 * i,
        timestamp: (i as u32).wrapping_mul(3000),
        marker: i % 4 == 0,
        size: 1000 + (i % 100) as u16,
    }
}

/// Sends `count` packets with outgoing extended sequence numbers from `first`, one per 10 ms
/// from `t0`.
fn send(s: &mut SendStream, first: u64, count: u64, t0: Instant) {
    for i in 0..count {
        s.on_sent(first + i, source(first + i), 900, t0 + ms(10 * i));
    }
}

fn nack(s: &mut SendStream, seqs: &[u64], now: Instant) -> Vec<(u64, SentPacket)> {
    let mut out = [(0, source(0)); 64];
    let n = s.on_nack(seqs.iter().map(|&seq| seq as u16), now, &mut out);
    out[..n].to_vec()
}

/// A stream with a smoothed RTT of exactly `rtt` (one SR, one RR with DLSR 0).
fn with_rtt(s: &mut SendStream, rtt: Duration, at: Instant) {
    let sr = s.sender_report(at, None, 0, (NTP0, at)).unwrap();
    let got = s.on_receiver_report(0, 0, ntp_middle32(sr.ntp), 0, at + rtt);
    assert_eq!(got, Some(rtt));
}

#[test]
fn nack_maps_outgoing_seqs_across_the_16_bit_wrap() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, Some(RTX_SSRC), 90_000, 0);
    let first = 65_000;
    send(&mut s, first, 1000, t0);
    let now = t0 + ms(10_000);
    let wanted = [65_010, 65_535, 65_536, 65_541, 65_999];
    let got = nack(&mut s, &wanted, now);
    let expected: Vec<_> = wanted.iter().map(|&e| (e, source(e))).collect();
    assert_eq!(got, expected);
    assert_eq!(s.stats().nacks_received, 1);
    assert_eq!(s.stats().nacked_packets, 5);
    assert_eq!(s.stats().retransmissions_not_found, 0);
}

#[test]
fn unknown_and_overwritten_seqs_are_not_found() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 90_000, 0);
    assert!(nack(&mut s, &[1, 2], t0).is_empty(), "nothing sent yet");
    send(&mut s, 0, 2000, t0);
    let now = t0 + ms(30_000);
    // 100 was overwritten by 1124; 1999 + 5 was never sent; 975 is the oldest kept.
    let got = nack(&mut s, &[100, 2004, 975, 976, 974], now);
    assert_eq!(got, vec![(976, source(976))]);
    assert_eq!(s.stats().retransmissions_not_found, 2 + 4);
    assert_eq!(s.stats().nacked_packets, 2 + 5);
    assert_eq!(s.stats().nacks_received, 2);
}

#[test]
fn oldest_kept_is_exactly_one_ring_back() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 90_000, 0);
    send(&mut s, 0, 2000, t0);
    let got = nack(
        &mut s,
        &[2000 - HISTORY_LEN as u64, 1999 - HISTORY_LEN as u64],
        t0 + ms(30_000),
    );
    assert_eq!(got, vec![(976, source(976))]);
}

#[test]
fn a_packet_is_not_resent_within_an_rtt() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, Some(RTX_SSRC), 90_000, 0);
    send(&mut s, 0, 100, t0);
    let t = t0 + ms(1000);
    with_rtt(&mut s, ms(50), t);
    assert_eq!(nack(&mut s, &[7], t).len(), 1);
    assert!(nack(&mut s, &[7], t + ms(49)).is_empty());
    assert_eq!(s.stats().retransmissions_skipped_rtt, 1);
    // Another packet is not held back by the first one's resend.
    assert_eq!(nack(&mut s, &[8], t + ms(49)).len(), 1);
    assert_eq!(nack(&mut s, &[7], t + ms(50)), vec![(7, source(7))]);
    // Asked twice in one NACK: sent once.
    assert_eq!(nack(&mut s, &[9, 9], t + ms(60)).len(), 1);
}

#[test]
fn without_an_rtt_the_floor_applies() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 48_000, 0);
    send(&mut s, 0, 10, t0);
    let t = t0 + ms(200);
    assert_eq!(nack(&mut s, &[3], t).len(), 1);
    assert!(nack(&mut s, &[3], t + ms(9)).is_empty());
    assert_eq!(nack(&mut s, &[3], t + MIN_RESEND_INTERVAL).len(), 1);
}

#[test]
fn a_nack_storm_stays_within_the_budget() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, Some(RTX_SSRC), 90_000, 0);
    let packet = |i: u64| SentPacket {
        layer: 0,
        source_ext_seq: i,
        timestamp: 0,
        marker: false,
        size: 1000,
    };
    let mut out = vec![(0, packet(0)); HISTORY_LEN];
    let mut sent = 0u64;
    let mut resent = 0u64;
    // 10 s in 1 ms steps: a packet every 33 ms (30 a second), a NACK for every packet sent
    // so far every 20 ms, each granted retransmission sent at once.
    for tick in 0..10_000u64 {
        let now = t0 + ms(tick);
        if tick % 33 == 0 {
            s.on_sent(sent, packet(sent), 988, now);
            sent += 1;
        }
        if tick % 20 == 0 && sent > 0 {
            let n = s.on_nack((0..sent).map(|seq| seq as u16), now, &mut out);
            for _ in &out[..n] {
                s.on_retransmitted(1000, now);
                resent += 1000;
            }
        }
    }
    let sent_bytes = sent * 1000;
    assert_eq!(sent, 304);
    // At most the share of what was sent, plus the burst once per (at least 0.9 s) window.
    let limit = sent_bytes * RETRANSMIT_SHARE_PERCENT / 100 + 12 * RETRANSMIT_BURST_BYTES;
    assert!(
        resent <= limit,
        "{resent} retransmitted of {sent_bytes} sent (limit {limit})"
    );
    // The budget is used, not refused wholesale.
    assert!(
        resent >= sent_bytes * 40 / 100,
        "{resent} retransmitted of {sent_bytes} sent"
    );
    let stats = s.stats();
    assert_eq!(stats.bytes_retransmitted, resent);
    assert_eq!(stats.bytes_sent, sent_bytes);
    assert!(stats.retransmissions_refused_budget > 10_000, "{stats:?}");
}

#[test]
fn rtx_seqs_are_their_own_and_extend() {
    let mut s = SendStream::new(SSRC, Some(RTX_SSRC), 90_000, 65_534);
    assert_eq!(s.rtx_ssrc(), Some(RTX_SSRC));
    assert_eq!(s.ssrc(), SSRC);
    assert_eq!(
        [s.next_rtx_seq(), s.next_rtx_seq(), s.next_rtx_seq()],
        [65_534, 65_535, 65_536]
    );
}

#[test]
fn sender_report_rtp_time_follows_wall_time() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 90_000, 0);
    assert_eq!(
        s.sender_report(t0, None, 0, (NTP0, t0)),
        None,
        "no report before the first packet"
    );
    let packet = SentPacket {
        layer: 0,
        source_ext_seq: 5,
        timestamp: u32::MAX - 1000,
        marker: true,
        size: 1200,
    };
    s.on_sent(10, packet, 1100, t0 + ms(40));
    s.on_sent(
        11,
        SentPacket {
            timestamp: u32::MAX - 999,
            ..packet
        },
        1100,
        t0 + ms(50),
    );
    // A late packet (lower sequence number) does not move the mapping.
    s.on_sent(
        9,
        SentPacket {
            timestamp: 7,
            ..packet
        },
        1100,
        t0 + ms(60),
    );
    let sr = s.sender_report(t0 + ms(150), None, 0, (NTP0, t0)).unwrap();
    assert_eq!(sr.ssrc, SSRC);
    // 100 ms after the newest packet: 9,000 ticks later, across the wrap.
    assert_eq!(sr.rtp_ts, (u32::MAX - 999).wrapping_add(9_000));
    assert_eq!(sr.ntp, ntp_add(NTP0, ms(150)));
    assert_eq!((sr.packet_count, sr.octet_count), (3, 3300));
    let later = s.sender_report(t0 + ms(1150), None, 0, (NTP0, t0)).unwrap();
    assert_eq!(later.rtp_ts.wrapping_sub(sr.rtp_ts), 90_000);
    assert_eq!(later.ntp - sr.ntp, 1 << 32);
}

/// A sender whose audio (48 kHz) and video (90 kHz) are captured on one clock and whose sender
/// reports share one NTP clock; its packets and reports reach the SFU with different delays.
/// The consumers' reports, made at other times, must map a sample captured at one moment in
/// both streams to the same NTP time.
#[test]
fn producer_sender_reports_keep_lip_sync() {
    let t0 = Instant::now();
    let (audio_base, video_base) = (1_234_567u32, 4_000_000_000u32);
    let (audio_offset, video_offset) = (777_000u32, 3_000_000_000u32);
    let (audio_delay, video_delay) = (ms(30), ms(85));
    // Sender wall time w (seconds) reaches the SFU at t0 + w + delay.
    let at = |w: f64, delay: Duration| t0 + Duration::from_secs_f64(w) + delay;
    let audio_rtp = |w: f64| audio_base.wrapping_add((w * 48_000.0).round() as u32);
    let video_rtp = |w: f64| video_base.wrapping_add((w * 90_000.0).round() as u32);
    let ntp_of = |w: f64| ntp_add(NTP0, Duration::from_secs_f64(w));

    let mut audio = SendStream::new(1, None, 48_000, 0);
    let mut video = SendStream::new(2, None, 90_000, 0);
    let p = SentPacket {
        layer: 0,
        source_ext_seq: 1,
        timestamp: 0,
        marker: false,
        size: 100,
    };
    audio.on_sent(
        1,
        SentPacket {
            timestamp: audio_rtp(2.5).wrapping_add(audio_offset),
            ..p
        },
        80,
        at(2.5, audio_delay),
    );
    video.on_sent(
        1,
        SentPacket {
            timestamp: video_rtp(2.5).wrapping_add(video_offset),
            ..p
        },
        80,
        at(2.5, video_delay),
    );
    let audio_sr = (ntp_of(2.0), audio_rtp(2.0), at(2.0, audio_delay));
    let video_sr = (ntp_of(2.3), video_rtp(2.3), at(2.3, video_delay));

    let local_base = (NTP0 + (500 << 32), t0);
    let a = audio
        .sender_report(t0 + ms(2_700), Some(audio_sr), audio_offset, local_base)
        .unwrap();
    let v = video
        .sender_report(t0 + ms(3_110), Some(video_sr), video_offset, local_base)
        .unwrap();

    // The NTP time (in seconds) a report puts an outgoing RTP timestamp at.
    let when = |sr: &SenderReportData, rtp: u32, rate: f64| {
        sr.ntp as f64 / 4_294_967_296.0 + f64::from(rtp.wrapping_sub(sr.rtp_ts) as i32) / rate
    };
    for w in [2.6, 3.0, 4.25] {
        let audio_at = when(&a, audio_rtp(w).wrapping_add(audio_offset), 48_000.0);
        let video_at = when(&v, video_rtp(w).wrapping_add(video_offset), 90_000.0);
        assert!(
            (audio_at - video_at).abs() < 50e-6,
            "sample at {w} s: audio {audio_at}, video {video_at}"
        );
        let sender_at = ntp_of(w) as f64 / 4_294_967_296.0;
        assert!(
            (audio_at - sender_at).abs() < 50e-6,
            "audio {audio_at}, sender {sender_at}"
        );
    }

    // The local mapping alone cannot know the delays: the streams drift apart by their
    // difference, which is what the producer's reports fix.
    let a = audio
        .sender_report(t0 + ms(2_700), None, audio_offset, local_base)
        .unwrap();
    let v = video
        .sender_report(t0 + ms(3_110), None, video_offset, local_base)
        .unwrap();
    let audio_at = when(&a, audio_rtp(3.0).wrapping_add(audio_offset), 48_000.0);
    let video_at = when(&v, video_rtp(3.0).wrapping_add(video_offset), 90_000.0);
    assert!(
        ((video_at - audio_at) - 0.055).abs() < 50e-6,
        "audio {audio_at}, video {video_at}"
    );
}

#[test]
fn rtt_from_lsr_and_dlsr() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 90_000, 0);
    send(&mut s, 0, 1, t0);
    let sr_at = t0 + ms(1000);
    let sr = s.sender_report(sr_at, None, 0, (NTP0, t0)).unwrap();
    let lsr = ntp_middle32(sr.ntp);
    // By hand: the SR's NTP time is NTP0 + 1 s, so LSR = 0x4000 seconds bits... taken from
    // (3_980_000_000 + 1) mod 65536 = 0x2ED1 and the fraction 0x4000: 0x2ED1_4000.
    assert_eq!(lsr, (((3_980_000_001u64 & 0xffff) as u32) << 16) | 0x4000);
    // The receiver held it 100 ms (6,554 / 65,536 s); the RR arrives 150 ms after the SR.
    let rtt = s
        .on_receiver_report(12, 345, lsr, 6_554, sr_at + ms(150))
        .unwrap();
    let by_hand = Duration::from_nanos(150_000_000 - 6_554 * 1_000_000_000 / 65_536);
    assert!(
        rtt.abs_diff(by_hand) < Duration::from_micros(1),
        "{rtt:?} vs {by_hand:?}"
    );
    assert_eq!(s.rtt(), Some(rtt));
    let stats = s.stats();
    assert_eq!(
        (stats.fraction_lost, stats.packets_lost, stats.rtt),
        (12, 345, Some(rtt))
    );

    // A second sample is smoothed in at 1/8.
    let sr2_at = sr_at + ms(1000);
    let lsr2 = ntp_middle32(s.sender_report(sr2_at, None, 0, (NTP0, t0)).unwrap().ntp);
    let sample = s
        .on_receiver_report(0, 345, lsr2, 0, sr2_at + ms(90))
        .unwrap();
    assert_eq!(sample, ms(90));
    assert_eq!(s.rtt(), Some((rtt * 7 + ms(90)) / 8));
    // An older report, still remembered, also gives a sample.
    assert!(s
        .on_receiver_report(0, 345, lsr, 0, sr2_at + ms(100))
        .is_some());
}

#[test]
fn rr_without_a_known_lsr_gives_no_rtt() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, None, 90_000, 0);
    send(&mut s, 0, 1, t0);
    let lsr = ntp_middle32(s.sender_report(t0, None, 0, (NTP0, t0)).unwrap().ntp);
    assert_eq!(
        s.on_receiver_report(1, 2, lsr.wrapping_add(1), 0, t0 + ms(50)),
        None
    );
    assert_eq!(s.on_receiver_report(1, 2, 0, 0, t0 + ms(50)), None);
    assert_eq!(s.rtt(), None);
    assert_eq!((s.stats().fraction_lost, s.stats().packets_lost), (1, 2));
    // Forgotten after REPORTS_KEPT newer reports.
    for i in 1..=REPORTS_KEPT as u64 {
        s.sender_report(t0 + ms(1000 * i), None, 0, (NTP0, t0));
    }
    assert_eq!(s.on_receiver_report(0, 0, lsr, 0, t0 + ms(20_000)), None);
    // A DLSR longer than the time since the report gives zero, not a negative RTT.
    let lsr = ntp_middle32(
        s.sender_report(t0 + ms(30_000), None, 0, (NTP0, t0))
            .unwrap()
            .ntp,
    );
    assert_eq!(
        s.on_receiver_report(0, 0, lsr, 65_536, t0 + ms(30_010)),
        Some(Duration::ZERO)
    );
    // LSR 0 means "no report received", even when a report's middle 32 bits were zero.
    let at = t0 + ms(31_000);
    let sr = s
        .sender_report(at, None, 0, (0x1234_0000_0000_5678, at))
        .unwrap();
    assert_eq!(ntp_middle32(sr.ntp), 0);
    assert_eq!(s.on_receiver_report(0, 0, 0, 0, at + ms(40)), None);
}

#[test]
fn memory_stays_small() {
    let t0 = Instant::now();
    let mut s = SendStream::new(SSRC, Some(RTX_SSRC), 90_000, 0);
    assert!(
        size_of::<SendStream>() < 1024,
        "{} bytes",
        size_of::<SendStream>()
    );
    assert_eq!(s.heap_bytes(), 0, "an idle stream allocates nothing");
    s.sender_report(t0, None, 0, (NTP0, t0));
    assert_eq!(nack(&mut s, &[1], t0).len(), 0);
    assert_eq!(s.heap_bytes(), 0);
    send(&mut s, 0, 1, t0);
    assert_eq!(s.heap_bytes(), HISTORY_LEN * 16);
    send(&mut s, 1, 10_000, t0);
    nack(&mut s, &(0..64).collect::<Vec<_>>(), t0 + ms(200_000));
    assert!(s.heap_bytes() <= 16 * 1024, "{} bytes", s.heap_bytes());
}
