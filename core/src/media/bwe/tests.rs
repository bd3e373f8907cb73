//! The estimator against synthetic links: a sender pacing at the estimate through a FIFO
//! bottleneck of a given capacity, with the receiver's feedback built by the core's own
//! transport-cc recorder and parsed by its RTCP parser, as on the wire.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::*;
use crate::media::rtcp::{self, RtcpPacket};
use crate::media::twcc::TwccRecorder;

const PACKET: usize = 1200;
/// A probe padding packet on the wire.
const PROBE_PACKET: usize = 300;
const PROPAGATION_US: i64 = 25_000;
const TICK_US: i64 = 1_000;
const FEEDBACK_US: i64 = 100_000;

#[allow(clippy::disallowed_methods)] // Tests own the clock.
fn start() -> Instant {
    Instant::now()
}

/// A sender, a bottleneck and a receiver on a virtual clock.
struct Link {
    t0: Instant,
    now_us: i64,
    bwe: Bwe,
    recorder: TwccRecorder,
    seq: u16,
    next_send_us: i64,
    /// When the bottleneck finishes what it holds.
    free_at_us: i64,
    capacity_bps: u64,
    loss: f64,
    /// Sends at most this (the application's media), bits per second.
    app_limit_bps: u64,
    /// What the sender would like to send (probing toward it; 0: no probing).
    probe_goal: u64,
    in_flight: VecDeque<(u16, i64)>,
    feedback: VecDeque<(i64, Vec<u8>)>,
    next_feedback_us: i64,
    rng: rand_chacha::ChaCha8Rng,
}

impl Link {
    fn new(initial: u64, capacity_bps: u64) -> Self {
        Self {
            t0: start(),
            now_us: 0,
            bwe: Bwe::new(initial),
            recorder: TwccRecorder::new(),
            seq: 0,
            next_send_us: 0,
            free_at_us: 0,
            capacity_bps,
            loss: 0.0,
            app_limit_bps: u64::MAX,
            probe_goal: 0,
            in_flight: VecDeque::new(),
            feedback: VecDeque::new(),
            next_feedback_us: FEEDBACK_US,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(1),
        }
    }

    fn at(&self, us: i64) -> Instant {
        self.t0 + Duration::from_micros(us as u64)
    }

    /// Runs for `secs`, returning the estimate at every feedback.
    fn run(&mut self, secs: f64) -> Vec<(i64, u64)> {
        let end = self.now_us + (secs * 1e6) as i64;
        let mut estimates = Vec::new();
        while self.now_us < end {
            self.now_us += TICK_US;
            let now = self.now_us;
            while self.next_send_us <= now {
                self.send();
            }
            if self.probe_goal > 0 {
                let media = self.bwe.estimate().min(self.app_limit_bps);
                self.bwe.want_probe(self.probe_goal, media, self.at(now));
                while self.bwe.probe_due(self.at(now)) {
                    let seq = self.seq;
                    self.seq = self.seq.wrapping_add(1);
                    self.bwe.on_probe_sent(seq, PROBE_PACKET, self.at(now));
                    self.through_bottleneck(seq, PROBE_PACKET, now);
                }
            }
            while self.in_flight.front().is_some_and(|&(_, at)| at <= now) {
                if let Some((seq, at)) = self.in_flight.pop_front() {
                    self.recorder.record(seq, self.at(at));
                }
            }
            if now >= self.next_feedback_us {
                self.next_feedback_us += FEEDBACK_US;
                let mut buf = [0u8; 1200];
                let at = self.at(now);
                while let Some(len) = self.recorder.poll_feedback(at, 1, 2, &mut buf) {
                    self.feedback
                        .push_back((now + PROPAGATION_US, buf[..len].to_vec()));
                }
            }
            while self.feedback.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, bytes)) = self.feedback.pop_front() {
                    let at = self.at(now);
                    feed(&mut self.bwe, &bytes, at);
                    estimates.push((now, self.bwe.estimate()));
                }
            }
        }
        estimates
    }

    fn send(&mut self) {
        let sent = self.next_send_us;
        let rate = self.bwe.estimate().min(self.app_limit_bps).max(1) as f64;
        self.next_send_us += (PACKET as f64 * 8.0 / rate * 1e6) as i64;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.bwe.on_sent(seq, PACKET, self.at(sent), 0);
        self.through_bottleneck(seq, PACKET, sent);
    }

    fn through_bottleneck(&mut self, seq: u16, size: usize, sent: i64) {
        if self.rng.random_bool(self.loss) {
            return;
        }
        let begin = self.free_at_us.max(sent);
        if begin - sent > 1_000_000 {
            return; // A full queue drops at its tail.
        }
        let serialize = size as i64 * 8 * 1_000_000 / self.capacity_bps as i64;
        self.free_at_us = begin + serialize;
        self.in_flight
            .push_back((seq, self.free_at_us + PROPAGATION_US));
    }
}

fn feed(bwe: &mut Bwe, bytes: &[u8], now: Instant) {
    for packet in rtcp::compound(bytes) {
        if let Ok(RtcpPacket::TransportCc(fb)) = packet {
            bwe.on_feedback(&fb, now);
        }
    }
}

fn range(estimates: &[(i64, u64)], from_s: f64, to_s: f64) -> (u64, u64) {
    let (from, to) = ((from_s * 1e6) as i64, (to_s * 1e6) as i64);
    let picked: Vec<u64> = estimates
        .iter()
        .filter(|(at, _)| (from..to).contains(at))
        .map(|&(_, e)| e)
        .collect();
    assert!(!picked.is_empty());
    (
        *picked.iter().min().unwrap_or(&0),
        *picked.iter().max().unwrap_or(&0),
    )
}

#[test]
fn a_steady_link_is_estimated_near_its_capacity() {
    let mut link = Link::new(600_000, 2_000_000);
    let estimates = link.run(40.0);
    let (low, high) = range(&estimates, 30.0, 40.0);
    assert!(
        low > 1_400_000 && high < 2_600_000,
        "{low}..{high}: {:?}",
        &estimates[estimates.len() - 20..]
    );
    assert_eq!(link.bwe.counters.reports_ignored, 0);
    let acked = link.bwe.acked_bitrate().unwrap();
    assert!((1_300_000..2_100_000).contains(&acked), "{acked}");
}

#[test]
fn a_capacity_drop_is_followed_within_two_seconds_and_recovered() {
    let mut link = Link::new(600_000, 3_000_000);
    let before = link.run(40.0);
    let (low, _) = range(&before, 35.0, 40.0);
    assert!(low > 2_000_000, "{low}");
    link.capacity_bps = 600_000;
    let after = link.run(2.0);
    let last = after.last().map_or(0, |e| e.1);
    assert!(last < 600_000, "{:?}", after);
    let settled = link.run(10.0);
    let (low, high) = range(&settled, 45.0, 52.0);
    assert!(low > 250_000 && high < 750_000, "{low}..{high}");
    link.capacity_bps = 3_000_000;
    let recovered = link.run(30.0);
    let (low, _) = range(&recovered, 72.0, 82.0);
    assert!(low > 1_500_000, "{low}");
}

#[test]
fn moderate_loss_holds_the_estimate_and_heavy_loss_cuts_it() {
    let run = |loss: f64| {
        let mut link = Link::new(1_000_000, 50_000_000);
        link.loss = loss;
        link.run(20.0);
        (link.bwe.estimate(), link.bwe.loss_fraction())
    };
    let (clean, _) = run(0.0);
    let (moderate, moderate_loss) = run(0.05);
    let (heavy, heavy_loss) = run(0.15);
    assert!(clean > 3_000_000, "{clean}");
    assert!((0.02..0.10).contains(&moderate_loss), "{moderate_loss}");
    assert!(heavy_loss > 0.10, "{heavy_loss}");
    assert!(
        (700_000..1_600_000).contains(&moderate),
        "5% loss: {moderate}"
    );
    assert!(heavy < 400_000 && heavy < moderate / 2, "15% loss: {heavy}");
}

#[test]
fn remb_and_the_application_limits_bound_the_estimate() {
    let mut link = Link::new(600_000, 10_000_000);
    link.run(5.0);
    link.bwe.on_remb(400_000);
    assert_eq!(link.bwe.estimate(), 400_000);
    let estimates = link.run(10.0);
    assert!(estimates.iter().all(|&(_, e)| e <= 400_000));
    link.bwe.on_remb(100_000_000);

    link.bwe.set_max(Some(500_000));
    let estimates = link.run(10.0);
    assert!(estimates.iter().all(|&(_, e)| e <= 500_000));
    assert_eq!(link.bwe.estimate(), 500_000);
    link.bwe.set_max(None);
    let estimates = link.run(10.0);
    assert!(estimates.last().map_or(0, |e| e.1) > 700_000);

    // A minimum above what the link carries holds the estimate up.
    let mut link = Link::new(600_000, 300_000);
    link.bwe.set_min(1_000_000);
    assert_eq!(link.bwe.estimate(), 1_000_000);
    let estimates = link.run(10.0);
    assert!(estimates.iter().all(|&(_, e)| e >= 1_000_000));
    link.bwe.set_min(0);
    link.run(10.0);
    assert!(link.bwe.estimate() < 400_000, "{}", link.bwe.estimate());
}

#[test]
fn sequence_numbers_and_reference_times_wrap() {
    let mut link = Link::new(600_000, 2_000_000);
    link.seq = 65_000;
    // The receiver's reference time starts just before its 24-bit wrap.
    let mut plain = Link::new(600_000, 2_000_000);
    let wrapped = link.run(20.0);
    let straight = plain.run(20.0);
    assert_eq!(link.bwe.counters.reports_ignored, 0);
    assert_eq!(link.bwe.counters.feedbacks_ignored, 0);
    assert!(link.seq < 65_000, "the run crossed the wrap");
    assert_eq!(
        wrapped.iter().map(|e| e.1).collect::<Vec<_>>(),
        straight.iter().map(|e| e.1).collect::<Vec<_>>()
    );

    let mut bwe = Bwe::new(600_000);
    let t0 = start();
    for seq in 0..10u16 {
        bwe.on_sent(seq, 1000, t0, 0);
    }
    assert_eq!(bwe.unwrap_reference(0xFF_FFFE), 0xFF_FFFE);
    assert_eq!(bwe.unwrap_reference(1), 0x100_0001);
    assert_eq!(bwe.unwrap_reference(0xFF_FFFF), 0xFF_FFFF);
}

/// Builds a transport-cc packet with the given FCI fields.
fn transport_cc(base: u16, count: u16, reference: u32, rest: &[u8]) -> Vec<u8> {
    let mut fci = Vec::new();
    fci.extend_from_slice(&base.to_be_bytes());
    fci.extend_from_slice(&count.to_be_bytes());
    fci.extend_from_slice(&(reference << 8).to_be_bytes());
    fci.extend_from_slice(rest);
    while fci.len() % 4 != 0 {
        fci.push(0);
    }
    let len = 12 + fci.len();
    let mut out = vec![0u8; len];
    rtcp::write_feedback_header(&mut out, rtcp::FMT_TWCC, rtcp::PT_RTPFB, len, 1, 2);
    out[12..].copy_from_slice(&fci);
    out
}

#[test]
fn hostile_feedback_is_ignored_and_counted() {
    let t0 = start();
    let mut bwe = Bwe::new(600_000);
    // Before anything was sent.
    feed(&mut bwe, &transport_cc(0, 1, 0, &[0x20, 0x01, 4]), t0);
    assert_eq!(bwe.counters.feedbacks_ignored, 1);
    for seq in 100..110u16 {
        bwe.on_sent(seq, 1000, t0, 0);
    }
    // About packets never sent (8191 not received, in one run-length chunk).
    let unsent = transport_cc(200, 8191, 0, &[0x1f, 0xff]);
    feed(&mut bwe, &unsent, t0);
    assert_eq!(bwe.counters.feedbacks_ignored, 2);
    assert_eq!(bwe.counters.reports_ignored, 8191);
    // The largest count a packet can claim, starting on sent packets and running past them.
    let mut chunks = Vec::new();
    for _ in 0..8 {
        chunks.extend_from_slice(&[0x1f, 0xff]);
    }
    let huge = transport_cc(100, 8 * 8191, 0, &chunks);
    feed(&mut bwe, &huge, t0);
    assert_eq!(bwe.counters.reports_ignored, 8191 + 8 * 8191 - 10);
    assert_eq!(bwe.estimate(), 600_000);
    // A duplicate feedback of received packets: counted, not used twice.
    let two_received = transport_cc(100, 2, 0, &[0x20, 0x02, 4, 4]);
    feed(&mut bwe, &two_received, t0);
    let ignored = bwe.counters.reports_ignored;
    feed(&mut bwe, &two_received, t0);
    assert_eq!(bwe.counters.reports_ignored, ignored + 2);
    assert_eq!(bwe.counters.feedbacks_ignored, 3);

    // Random feedback never panics and keeps the estimate within its bounds.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    bwe.set_max(Some(5_000_000));
    let mut parsed = 0;
    for i in 0..20_000u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 700);
        bwe.on_sent(
            110u16.wrapping_add(i as u16),
            rng.random_range(0..1500),
            now,
            0,
        );
        let base = 100u16.wrapping_add(rng.random_range(0..(i as u16).max(1)));
        let count = rng.random_range(1..300u16);
        let rest: Vec<u8> = (0..rng.random_range(0..80)).map(|_| rng.random()).collect();
        let bytes = transport_cc(base, count, rng.random(), &rest);
        for packet in rtcp::compound(&bytes) {
            if let Ok(RtcpPacket::TransportCc(fb)) = packet {
                parsed += 1;
                bwe.on_feedback(&fb, now);
            }
        }
        assert!((FLOOR_BPS..=5_000_000).contains(&bwe.estimate()));
    }
    assert!(parsed > 1000, "{parsed}");
}

/// A sender limited to 500 kbit/s of media that would like 1.7 Mbit/s: on a 3 Mbit/s link
/// its probes raise the estimate to the goal within a second; on a 600 kbit/s link they raise
/// it to what the link carries, not above, and back off.
#[test]
fn probes_raise_the_estimate_only_when_the_link_carries_them() {
    let run = |capacity: u64| {
        let mut link = Link::new(300_000, capacity);
        link.app_limit_bps = 500_000;
        // Settle on the media alone.
        link.run(10.0);
        let before = link.bwe.estimate();
        link.probe_goal = 1_700_000;
        let estimates = link.run(1.0);
        let after_one = estimates.last().map_or(0, |e| e.1);
        let later = link.run(5.0);
        let peak = later.iter().map(|e| e.1).max().unwrap_or(0);
        (before, after_one, peak, link.bwe.probe_counters())
    };
    let (before, after, _, counters) = run(3_000_000);
    assert!(before < 800_000, "{before}");
    assert!(
        after >= 1_700_000,
        "carried: {before} -> {after}, {counters:?}"
    );
    assert!(counters.carried >= 1, "{counters:?}");

    let (before, after, peak, counters) = run(600_000);
    assert!(before < 700_000, "{before}");
    // A saturated cluster tells what the link carries: the estimate goes near 600 kbit/s,
    // not above; later it grows no further than an application-limited sender's estimate
    // may (1.5 times what was acknowledged).
    assert!(
        (500_000..=600_000).contains(&after) && peak < 800_000,
        "not carried: {before} -> {after}, peak {peak}, {counters:?}"
    );
    assert!(counters.failed >= 2, "{counters:?}");
    // Backing off: from 0.5 s doubling to 4 s, a handful of clusters in 6 s, not dozens.
    assert!(counters.clusters <= 6, "{counters:?}");
}

/// The estimator's view of probe clusters alone: synthetic feedback for a cluster that
/// arrives as it was sent raises the estimate to the cluster's rate (twice the estimate);
/// one whose arrivals are spread to half that rate (a bottleneck at the estimate) raises
/// nothing; one spread to 80% of it raises the estimate to 95% of its arrival rate.
#[test]
fn a_cluster_is_judged_by_its_arrival_rate() {
    let judge = |arrival_gap_us: i64| {
        let t0 = start();
        let at = |us: i64| t0 + Duration::from_micros(us as u64);
        let mut bwe = Bwe::new(500_000);
        // One media packet, so that the estimator has a clock.
        bwe.on_sent(0, 1200, at(0), 0);
        bwe.want_probe(2_000_000, 0, at(1_000));
        let mut seq = 1u16;
        let mut recorder = TwccRecorder::new();
        recorder.record(0, at(30_000));
        let mut sent_us = Vec::new();
        let mut now = 1_000;
        while let Some(next) = bwe.next_probe_at() {
            now = now.max((next - t0).as_micros() as i64);
            assert!(bwe.probe_due(at(now)));
            bwe.on_probe_sent(seq, 300, at(now));
            sent_us.push((seq, now));
            seq += 1;
            assert!(seq < 200, "the cluster never ends");
        }
        let cluster = sent_us.len();
        assert!(cluster >= 5, "{cluster}");
        let first_arrival = sent_us[0].1 + 30_000;
        for (i, &(seq, sent)) in sent_us.iter().enumerate() {
            let arrival = (sent + 30_000).max(first_arrival + i as i64 * arrival_gap_us);
            recorder.record(seq, at(arrival));
        }
        let mut buf = [0u8; 1200];
        let fb_at = at(now + 200_000);
        while let Some(len) = recorder.poll_feedback(fb_at, 1, 2, &mut buf) {
            feed(&mut bwe, &buf[..len], fb_at);
        }
        (bwe.estimate(), bwe.probe_counters())
    };
    // The first cluster goes at twice the estimate, 1 Mbit/s: 300 bytes every 2.4 ms.
    let (carried, counters) = judge(0);
    assert!(
        (900_000..=1_100_000).contains(&carried),
        "{carried} {counters:?}"
    );
    assert_eq!((counters.carried, counters.failed), (1, 0));
    // Arriving at 500 kbit/s: 4.8 ms apart. The path carries no more than the estimate.
    let (refused, counters) = judge(4_800);
    assert_eq!(refused, 500_000, "{counters:?}");
    assert_eq!((counters.carried, counters.failed), (0, 1));
    // Arriving at 800 kbit/s, 3 ms apart: not carried at 1 Mbit/s, but the path carries about
    // 800 kbit/s, and 95% of that raises the estimate.
    let (saturated, counters) = judge(3_000);
    assert!(
        (700_000..=800_000).contains(&saturated),
        "{saturated} {counters:?}"
    );
    assert_eq!((counters.carried, counters.failed), (0, 1));
}
