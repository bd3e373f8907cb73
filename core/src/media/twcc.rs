//! Transport-wide congestion control, receive side: records the transport-wide sequence number
//! and arrival time of every RTP packet a transport receives and turns them into transport-cc
//! feedback packets (draft-holmer-rmcat-transport-wide-cc-extensions-01 section 3.1), so the
//! remote sender can estimate its upload.
//!
//! Memory is fixed at construction: a ring of the last [`RING`] extended sequence numbers. A
//! packet older than the ring is ignored; a jump forward past the ring forgets the older ones.

use std::time::{Duration, Instant};

use super::rtcp::{put_u32, write_feedback_header, FEEDBACK_HEADER_LEN, FMT_TWCC, PT_RTPFB};

/// How many sequence numbers the recorder remembers (a power of two).
pub(crate) const RING: usize = 1024;
/// Feedback interval while packets are pending.
const INTERVAL: Duration = Duration::from_millis(100);
/// With more pending packets than this, feedback is due at once.
const PENDING_AT_ONCE: usize = 100;
/// Marks a ring slot whose packet has not arrived.
const NOT_RECEIVED: u64 = u64::MAX;
/// Microseconds per receive delta tick (draft section 3.1.5).
const TICK_US: u64 = 250;
/// Delta ticks per reference time unit (64 ms).
const TICKS_PER_REFERENCE: i64 = 64_000 / TICK_US as i64;
/// Longest run a run-length chunk holds (13 bits).
const MAX_RUN: usize = 0x1fff;
/// Status symbol: not received.
const LOST: u8 = 0;
/// Status symbol: received, with a one-byte delta (0 to 63.75 ms).
const SMALL: u8 = 1;
/// Status symbol: received, with a two-byte signed delta.
const LARGE: u8 = 2;

/// Records arrivals of one transport and builds transport-cc feedback for them.
#[derive(Debug)]
pub(crate) struct TwccRecorder {
    /// Arrival of extended sequence number `e`, in microseconds after `base`, at `e % RING`;
    /// valid for `e` in `max_ext + 1 - RING ..= max_ext`.
    arrivals: Box<[u64]>,
    /// Delta ticks of the feedback being built (reused; `None` when not received).
    deltas: Vec<Option<i16>>,
    /// Packet status chunks of the feedback being built (reused).
    chunks: Vec<u16>,
    /// The first arrival: arrival times are measured from it.
    base: Option<Instant>,
    /// Highest extended sequence number recorded.
    max_ext: u64,
    /// The first extended sequence number the next feedback reports.
    next_report: u64,
    /// Received packets in `next_report..=max_ext`.
    pending: usize,
    /// Feedback packet count of the next feedback.
    feedback_count: u8,
    /// When feedback was last built.
    last_feedback: Option<Instant>,
    /// Arrival of the latest packet recorded.
    last_arrival: Option<Instant>,
}

impl TwccRecorder {
    /// A recorder with its ring allocated and nothing recorded.
    pub(crate) fn new() -> Self {
        Self {
            arrivals: vec![NOT_RECEIVED; RING].into_boxed_slice(),
            deltas: Vec::with_capacity(RING),
            chunks: Vec::with_capacity(RING),
            base: None,
            max_ext: 0,
            next_report: 0,
            pending: 0,
            feedback_count: 0,
            last_feedback: None,
            last_arrival: None,
        }
    }

    /// Records the arrival of the packet with transport-wide sequence number `seq`.
    /// Duplicates keep their first arrival; packets older than the ring are ignored.
    pub(crate) fn record(&mut self, seq: u16, arrival: Instant) {
        let first = self.base.is_none();
        let base = *self.base.get_or_insert(arrival);
        let at_us = u64::try_from(arrival.saturating_duration_since(base).as_micros())
            .unwrap_or(NOT_RECEIVED - 1);
        self.last_arrival = Some(arrival);
        if first {
            // The first packet: start one cycle up so that reordered earlier packets unwrap
            // to smaller extended numbers rather than below zero.
            let ext = (1 << 16) | u64::from(seq);
            self.max_ext = ext;
            self.next_report = ext;
            self.store(ext, at_us);
            return;
        }
        let diff = i64::from(seq.wrapping_sub(self.max_ext as u16) as i16);
        let Some(ext) = self.max_ext.checked_add_signed(diff) else {
            return;
        };
        if ext > self.max_ext {
            self.advance(ext);
        } else if ext + RING as u64 <= self.max_ext {
            return; // Older than the ring.
        } else if self.arrivals[slot(ext)] != NOT_RECEIVED {
            return; // Duplicate.
        } else if ext < self.next_report {
            // A late packet in a range already reported: report again from it.
            self.pending += self.received_in(ext, self.next_report);
            self.next_report = ext;
        }
        self.store(ext, at_us);
    }

    /// Received packets not yet covered by feedback.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// When the next feedback is due: 100 ms after the previous one (or after the first
    /// packet) while packets are pending, at once (the latest arrival, which is not after
    /// `now`) when more than 100 are pending, `None` when nothing is pending.
    pub(crate) fn next_feedback_at(&self) -> Option<Instant> {
        if self.pending == 0 {
            return None;
        }
        let last_arrival = self.last_arrival?;
        if self.pending > PENDING_AT_ONCE {
            return Some(last_arrival);
        }
        self.last_feedback.or(self.base)?.checked_add(INTERVAL)
    }

    /// Builds one transport-cc feedback packet into `out` covering the packets received since
    /// the last feedback, as many as fit (the rest go in the next call), and returns its
    /// length; `None` when nothing is pending or `out` cannot hold a single status.
    pub(crate) fn poll_feedback(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Option<usize> {
        if self.pending == 0 {
            return None;
        }
        let start = self.next_report;
        let reference = self.fill_deltas(start);
        let (count, fci_len) = self.encode_chunks(out.len().checked_sub(FEEDBACK_HEADER_LEN)?);
        if count == 0 {
            return None;
        }
        let len = FEEDBACK_HEADER_LEN + fci_len.next_multiple_of(4);
        let out = out.get_mut(..len)?;
        write_feedback_header(out, FMT_TWCC, PT_RTPFB, len, sender_ssrc, media_ssrc);
        let fci = &mut out[FEEDBACK_HEADER_LEN..];
        fci[..2].copy_from_slice(&(start as u16).to_be_bytes());
        fci[2..4].copy_from_slice(&(count as u16).to_be_bytes());
        put_u32(fci, 4, (reference << 8) | u32::from(self.feedback_count));
        let mut at = 8;
        for chunk in &self.chunks {
            fci[at..at + 2].copy_from_slice(&chunk.to_be_bytes());
            at += 2;
        }
        for delta in self.deltas[..count].iter().flatten() {
            if let Ok(small) = u8::try_from(*delta) {
                fci[at] = small;
                at += 1;
            } else {
                fci[at..at + 2].copy_from_slice(&delta.to_be_bytes());
                at += 2;
            }
        }
        fci[at..].fill(0);
        if at < fci.len() {
            // Padding to the 32-bit boundary, counted in its last octet (RFC 3550 6.4.1).
            out[0] |= 0x20;
            out[len - 1] = (len - FEEDBACK_HEADER_LEN - at) as u8;
        }
        let reported = self.received_in(start, start + count as u64);
        self.pending -= reported;
        self.next_report = start + count as u64;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.last_feedback = Some(now);
        Some(len)
    }

    /// Moves the newest extended sequence number up to `ext`, forgetting the slots that fall
    /// out of the ring.
    fn advance(&mut self, ext: u64) {
        let ring = RING as u64;
        if ext - self.max_ext >= ring {
            // Everything held falls out of the ring.
            self.arrivals.fill(NOT_RECEIVED);
            self.pending = 0;
        } else {
            // Each new sequence number takes the slot of the one a ring's length before it.
            for new in self.max_ext + 1..ext {
                let s = slot(new);
                if self.arrivals[s] != NOT_RECEIVED && new - ring >= self.next_report {
                    self.pending -= 1;
                }
                self.arrivals[s] = NOT_RECEIVED;
            }
            let s = slot(ext);
            if self.arrivals[s] != NOT_RECEIVED && ext - ring >= self.next_report {
                self.pending -= 1;
            }
            self.arrivals[s] = NOT_RECEIVED;
        }
        self.max_ext = ext;
        self.next_report = self.next_report.max(ext + 1 - ring);
    }

    /// Stores an arrival for a sequence number inside the ring and not yet received.
    fn store(&mut self, ext: u64, at_us: u64) {
        self.arrivals[slot(ext)] = at_us;
        if ext >= self.next_report {
            self.pending += 1;
        }
    }

    /// Received packets among the extended sequence numbers `from..to` (inside the ring).
    fn received_in(&self, from: u64, to: u64) -> usize {
        (from..to)
            .filter(|&e| self.arrivals[slot(e)] != NOT_RECEIVED)
            .count()
    }

    /// Fills `deltas` with the receive deltas of `start..=max_ext`, in ticks, each from the
    /// previous received packet (the first from the reference time), stopping before a delta
    /// that does not fit 16 bits. Returns the reference time (24 bits, 64 ms units).
    fn fill_deltas(&mut self, start: u64) -> u32 {
        self.deltas.clear();
        let first_us = (start..=self.max_ext)
            .map(|e| self.arrivals[slot(e)])
            .find(|&a| a != NOT_RECEIVED)
            .unwrap_or(0);
        let reference = (first_us / TICK_US) as i64 / TICKS_PER_REFERENCE;
        let mut previous = reference * TICKS_PER_REFERENCE;
        for e in start..=self.max_ext {
            let at = self.arrivals[slot(e)];
            if at == NOT_RECEIVED {
                self.deltas.push(None);
                continue;
            }
            let tick = (at / TICK_US) as i64;
            let Ok(delta) = i16::try_from(tick - previous) else {
                break;
            };
            previous = tick;
            self.deltas.push(Some(delta));
        }
        (reference & 0xff_ffff) as u32
    }

    /// Encodes the statuses in `deltas` into `chunks`, as many as fit in `room` bytes of FCI
    /// (padding included). Returns how many statuses were encoded and the FCI length without
    /// padding.
    fn encode_chunks(&mut self, room: usize) -> (usize, usize) {
        self.chunks.clear();
        let symbols = &self.deltas;
        let mut done = 0;
        let mut used = 8; // Base sequence, status count, reference time, feedback count.
        while done < symbols.len() {
            let rest = &symbols[done..];
            let (mut chunk, mut n) = next_chunk(rest);
            let mut cost = 2 + delta_bytes(&rest[..n]);
            if (used + cost).next_multiple_of(4) > room {
                // Keep the part of the chunk that fits, if any, and stop after it.
                while n > 0 && (used + cost).next_multiple_of(4) > room {
                    n -= 1;
                    cost -= usize::from(symbol(rest[n]));
                }
                if n == 0 {
                    break;
                }
                chunk = shorten(chunk, n);
                self.chunks.push(chunk);
                return (done + n, used + cost);
            }
            self.chunks.push(chunk);
            used += cost;
            done += n;
        }
        (done, used)
    }
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new()
    }
}

/// The ring slot of an extended sequence number.
fn slot(ext: u64) -> usize {
    (ext % RING as u64) as usize
}

/// The status symbol of a packet.
fn symbol(delta: Option<i16>) -> u8 {
    match delta {
        None => LOST,
        Some(0..=255) => SMALL,
        Some(_) => LARGE,
    }
}

/// Bytes of receive deltas the statuses call for.
fn delta_bytes(statuses: &[Option<i16>]) -> usize {
    statuses.iter().map(|&d| usize::from(symbol(d))).sum()
}

/// The next packet status chunk for `statuses` (not empty) and how many statuses it covers
/// (draft section 3.1.3 and 3.1.4). A run of 14 or more identical symbols, or a run that ends
/// the list, becomes a run length chunk; otherwise 14 statuses without a large delta become a
/// one-bit vector, a run of 7 or more a run length chunk, and anything else a two-bit vector
/// of up to 7. Symbols past the end of a short vector are 0 (not received), so a decoder that
/// reads the whole vector finds no extra deltas.
fn next_chunk(statuses: &[Option<i16>]) -> (u16, usize) {
    let first = symbol(statuses[0]);
    let run = statuses
        .iter()
        .take(MAX_RUN)
        .take_while(|&&d| symbol(d) == first)
        .count();
    let run_chunk = ((first as u16) << 13) | run as u16;
    if run >= 14 || run == statuses.len() {
        return (run_chunk, run);
    }
    let one_bit = statuses.len().min(14);
    if statuses[..one_bit].iter().all(|&d| symbol(d) != LARGE) {
        let mut chunk = 0x8000u16;
        for (i, &d) in statuses[..one_bit].iter().enumerate() {
            chunk |= u16::from(symbol(d)) << (13 - i);
        }
        return (chunk, one_bit);
    }
    if run >= 7 {
        return (run_chunk, run);
    }
    let two_bit = statuses.len().min(7);
    let mut chunk = 0xc000u16;
    for (i, &d) in statuses[..two_bit].iter().enumerate() {
        chunk |= u16::from(symbol(d)) << (12 - 2 * i);
    }
    (chunk, two_bit)
}

/// A chunk cut down to its first `n` statuses (those after become "not received" in a vector).
fn shorten(chunk: u16, n: usize) -> u16 {
    if chunk & 0x8000 == 0 {
        (chunk & 0xe000) | n as u16
    } else if chunk & 0x4000 == 0 {
        let keep = !((1u16 << (14 - n)) - 1);
        0x8000 | (chunk & 0x3fff & keep)
    } else {
        let keep = !((1u16 << (14 - 2 * n)) - 1);
        0xc000 | (chunk & 0x3fff & keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtcp::{compound, RtcpPacket};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use str0m::rtp::rtcp::Rtcp;

    /// A reported packet: sequence number and, if received, arrival in microseconds after the
    /// recorder's base (reference time plus offset).
    type Report = (u16, Option<i64>);

    /// Parses one feedback packet: its feedback count and reports.
    fn parse(packet: &[u8]) -> (u8, Vec<Report>) {
        let mut packets = compound(packet);
        let Some(Ok(RtcpPacket::TransportCc(cc))) = packets.next() else {
            panic!("not transport-cc");
        };
        assert!(packets.next().is_none());
        assert_eq!((cc.sender_ssrc(), cc.media_ssrc()), (1, 2));
        let reference = i64::from(cc.reference_time()) * 64_000;
        let reports: Vec<_> = cc
            .packets()
            .map(|(seq, at)| (seq, at.map(|at| reference + at)))
            .collect();
        assert_eq!(reports.first().map(|r| r.0), Some(cc.base_sequence()));
        (cc.feedback_count(), reports)
    }

    /// The same packet through str0m's parser: reports with arrivals relative to `zero`.
    fn parse_str0m(packet: &[u8]) -> Vec<Report> {
        let pad = if packet[0] & 0x20 != 0 {
            usize::from(packet[packet.len() - 1])
        } else {
            0
        };
        let Ok(Rtcp::Twcc(twcc)) = Rtcp::try_from(&packet[..packet.len() - pad]) else {
            panic!("str0m: not transport-cc");
        };
        assert_eq!((*twcc.sender_ssrc, *twcc.ssrc), (1, 2));
        let zero = start();
        // Extend from the base sequence itself, one cycle up, so nothing unwraps below zero.
        let extend_from = (1u64 << 16) + u64::from(twcc.base_seq);
        twcc.into_iter(zero, extend_from.into())
            .map(|(seq, _, at)| {
                let at = at.map(|at| at.duration_since(zero).as_micros() as i64);
                (*seq as u16, at)
            })
            .collect()
    }

    /// Drains every pending feedback (with a buffer of `size` bytes) and returns the packets.
    fn drain(rec: &mut TwccRecorder, now: Instant, size: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        while let Some(len) = rec.poll_feedback(now, 1, 2, &mut buf) {
            assert_eq!(len % 4, 0);
            out.push(buf[..len].to_vec());
            assert!(out.len() < 10_000, "feedback never runs out");
        }
        out
    }

    /// Checks reports against the arrivals recorded (µs after the base), within one tick.
    fn check_against(reports: &[Report], arrivals: &BTreeMap<u16, i64>) {
        for &(seq, at) in reports {
            match (at, arrivals.get(&seq)) {
                (None, None) => {}
                (Some(at), Some(&want)) => {
                    assert!(
                        want - at >= 0 && want - at < 250,
                        "seq {seq}: {at} vs {want}"
                    );
                }
                other => panic!("seq {seq}: reported {other:?}"),
            }
        }
    }

    #[allow(clippy::disallowed_methods)] // Tests own the clock.
    fn start() -> Instant {
        Instant::now()
    }

    #[test]
    fn in_order_packets_come_back_with_their_arrivals() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        let mut arrivals = BTreeMap::new();
        for i in 0..20u16 {
            let at = 1_000 + i64::from(i) * 5_130;
            rec.record(100 + i, t0 + Duration::from_micros(at as u64));
            arrivals.insert(100 + i, at - 1_000);
        }
        assert_eq!(rec.pending(), 20);
        let packets = drain(&mut rec, t0 + Duration::from_millis(100), 1500);
        assert_eq!(packets.len(), 1);
        assert_eq!(rec.pending(), 0);
        let (count, reports) = parse(&packets[0]);
        assert_eq!(count, 0);
        assert_eq!(
            reports.iter().map(|r| r.0).collect::<Vec<_>>(),
            (100..120).collect::<Vec<_>>()
        );
        check_against(&reports, &arrivals);

        // str0m reads the same statuses and the same arrival spacing.
        let theirs = parse_str0m(&packets[0]);
        assert_eq!(theirs.len(), reports.len());
        for (t, o) in theirs.iter().zip(&reports) {
            assert_eq!(t.0, o.0);
            assert_eq!(t.1.is_some(), o.1.is_some());
            assert_eq!(
                t.1.unwrap() - theirs[0].1.unwrap(),
                o.1.unwrap() - reports[0].1.unwrap()
            );
        }
    }

    #[test]
    fn loss_reordering_and_duplicates() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        let mut arrivals = BTreeMap::new();
        // 3 and 7..=9 lost, 5 arrives after 6, 11 after 12 (a negative delta), 2 twice.
        let order = [0u16, 1, 2, 4, 6, 5, 10, 12, 11, 2, 13];
        for (i, &seq) in order.iter().enumerate() {
            let at = i as i64 * 20_000 + 333;
            rec.record(seq, t0 + Duration::from_micros(at as u64));
            // Arrivals are measured from the first one recorded.
            arrivals.entry(seq).or_insert(at - 333);
        }
        assert_eq!(rec.pending(), 10);
        let packets = drain(&mut rec, t0, 1500);
        assert_eq!(packets.len(), 1);
        let (_, reports) = parse(&packets[0]);
        assert_eq!(reports.len(), 14);
        check_against(&reports, &arrivals);
        let lost: Vec<u16> = reports
            .iter()
            .filter(|r| r.1.is_none())
            .map(|r| r.0)
            .collect();
        assert_eq!(lost, [3, 7, 8, 9]);

        let theirs = parse_str0m(&packets[0]);
        assert_eq!(
            theirs
                .iter()
                .map(|r| (r.0, r.1.is_some()))
                .collect::<Vec<_>>(),
            reports
                .iter()
                .map(|r| (r.0, r.1.is_some()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        let mut arrivals = BTreeMap::new();
        for (i, seq) in (65_530u16..=65_535).chain(0..6).enumerate() {
            if seq == 1 {
                continue;
            }
            let at = i as i64 * 1_000;
            rec.record(seq, t0 + Duration::from_micros(at as u64));
            arrivals.insert(seq, at);
        }
        let packets = drain(&mut rec, t0, 1500);
        let (_, reports) = parse(&packets[0]);
        let seqs: Vec<u16> = reports.iter().map(|r| r.0).collect();
        assert_eq!(seqs, (65_530u16..=65_535).chain(0..6).collect::<Vec<_>>());
        check_against(&reports, &arrivals);
        assert_eq!(reports[7], (1, None));
    }

    #[test]
    fn feedback_count_increments_and_wraps() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        for i in 0..300u16 {
            rec.record(i, t0 + Duration::from_millis(u64::from(i)));
            let packets = drain(&mut rec, t0 + Duration::from_millis(u64::from(i)), 1500);
            assert_eq!(packets.len(), 1);
            let (count, reports) = parse(&packets[0]);
            assert_eq!(count, i as u8);
            assert_eq!(reports.len(), 1);
            assert_eq!(reports[0].0, i);
        }
    }

    #[test]
    fn a_late_packet_is_reported_again() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        rec.record(10, t0);
        rec.record(12, t0 + Duration::from_millis(1));
        let (_, first) = parse(&drain(&mut rec, t0, 1500)[0]);
        assert_eq!(
            first.iter().map(|r| r.1.is_some()).collect::<Vec<_>>(),
            [true, false, true]
        );
        rec.record(11, t0 + Duration::from_millis(2));
        assert_eq!(rec.pending(), 2);
        let (_, second) = parse(&drain(&mut rec, t0, 1500)[0]);
        assert_eq!(second.iter().map(|r| r.0).collect::<Vec<_>>(), [11, 12]);
        assert!(second.iter().all(|r| r.1.is_some()));
        // A duplicate of a reported packet, and one older than the ring, add nothing.
        rec.record(12, t0);
        rec.record(12u16.wrapping_sub(RING as u16), t0);
        assert_eq!(rec.pending(), 0);
        assert_eq!(rec.poll_feedback(t0, 1, 2, &mut [0; 1500]), None);
    }

    #[test]
    fn a_small_buffer_spreads_feedback_over_several_packets() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        let mut arrivals = BTreeMap::new();
        let mut at = 0i64;
        for seq in 0..600u16 {
            // Every fifth lost; spacing alternating small and large deltas.
            at += if seq % 3 == 0 { 70_000 } else { 1_000 };
            if seq % 5 != 4 {
                rec.record(seq, t0 + Duration::from_micros(at as u64));
                arrivals.insert(seq, at - 70_000);
            }
        }
        let packets = drain(&mut rec, t0, 100);
        assert!(packets.len() > 5, "{}", packets.len());
        let mut seqs = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            assert!(packet.len() <= 100);
            let (count, reports) = parse(packet);
            assert_eq!(usize::from(count), i);
            check_against(&reports, &arrivals);
            seqs.extend(reports.iter().map(|r| r.0));
            assert_eq!(parse_str0m(packet).len(), reports.len());
        }
        // 599 is lost, and a feedback ends at the newest packet received.
        assert_eq!(seqs, (0..599).collect::<Vec<u16>>());
        assert_eq!(rec.pending(), 0);
        // Too small for even one status.
        rec.record(600, t0 + Duration::from_secs(1));
        assert_eq!(rec.poll_feedback(t0, 1, 2, &mut [0; 22]), None);
        assert!(rec.poll_feedback(t0, 1, 2, &mut [0; 24]).is_some());
    }

    #[test]
    fn a_gap_too_long_for_a_delta_starts_a_new_feedback() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        rec.record(1, t0);
        rec.record(2, t0 + Duration::from_secs(9));
        rec.record(3, t0 + Duration::from_secs(9) + Duration::from_millis(3));
        let packets = drain(&mut rec, t0, 1500);
        assert_eq!(packets.len(), 2);
        let (_, first) = parse(&packets[0]);
        let (_, second) = parse(&packets[1]);
        assert_eq!(first, [(1, Some(0))]);
        assert_eq!(second, [(2, Some(9_000_000)), (3, Some(9_003_000))]);
    }

    #[test]
    fn feedback_is_due_every_100_ms_or_at_once_when_many_are_pending() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        assert_eq!(rec.next_feedback_at(), None);
        rec.record(0, t0);
        assert_eq!(rec.next_feedback_at(), Some(t0 + INTERVAL));
        let t1 = t0 + Duration::from_millis(100);
        drain(&mut rec, t1, 1500);
        assert_eq!(rec.next_feedback_at(), None);
        let t2 = t1 + Duration::from_millis(5);
        rec.record(1, t2);
        assert_eq!(rec.next_feedback_at(), Some(t1 + INTERVAL));
        for seq in 2..=100 {
            rec.record(seq, t2);
        }
        assert_eq!(rec.pending(), 100);
        assert_eq!(rec.next_feedback_at(), Some(t1 + INTERVAL));
        let t3 = t2 + Duration::from_millis(1);
        rec.record(101, t3);
        assert_eq!(rec.next_feedback_at(), Some(t3));
    }

    #[test]
    fn a_jump_past_the_ring_forgets_the_older_packets() {
        let t0 = start();
        let mut rec = TwccRecorder::new();
        for seq in 0..10 {
            rec.record(seq, t0);
        }
        rec.record(5_000, t0 + Duration::from_millis(1));
        assert_eq!(rec.pending(), 1);
        let packets = drain(&mut rec, t0, 1500);
        let (_, reports) = parse(&packets[0]);
        // The ring's worth before the newest: all lost, then the newest.
        assert_eq!(reports.len(), RING);
        assert_eq!(reports[0].0, 5_000 - RING as u16 + 1);
        assert!(reports[..RING - 1].iter().all(|r| r.1.is_none()));
        assert_eq!(reports[RING - 1].0, 5_000);

        // A jump shorter than the ring forgets only the packets it pushes out.
        let mut rec = TwccRecorder::new();
        for seq in 0..10 {
            rec.record(seq, t0);
        }
        rec.record(1_030, t0);
        assert_eq!(rec.pending(), 4);
        let (_, reports) = parse(&drain(&mut rec, t0, 1500)[0]);
        assert_eq!(reports.first().map(|r| r.0), Some(1_030 + 1 - RING as u16));
        let received: Vec<u16> = reports
            .iter()
            .filter(|r| r.1.is_some())
            .map(|r| r.0)
            .collect();
        assert_eq!(received, [7, 8, 9, 1_030]);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_random_sequence_numbers() {
        use rand::{Rng, SeedableRng};
        let t0 = start();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut rec = TwccRecorder::new();
        let capacities = (rec.deltas.capacity(), rec.chunks.capacity());
        let mut buf = [0u8; 1200];
        for i in 0..200_000u64 {
            rec.record(rng.random(), t0 + Duration::from_micros(i * 10));
            assert!(rec.pending() <= RING);
            if i % 997 == 0 {
                if let Some(len) = rec.poll_feedback(t0, 1, 2, &mut buf) {
                    let (_, reports) = parse(&buf[..len]);
                    assert!(!reports.is_empty() && reports.len() <= RING);
                }
            }
        }
        assert_eq!(rec.arrivals.len(), RING);
        assert_eq!((rec.deltas.capacity(), rec.chunks.capacity()), capacities);
    }

    proptest! {
        #[test]
        fn feedback_matches_what_was_recorded(
            first in any::<u16>(),
            steps in proptest::collection::vec(
                (
                    0u16..600,
                    prop_oneof![4 => 0u64..30_000, 1 => 0u64..10_000_000],
                    any::<bool>(),
                    prop::bool::weighted(0.05),
                ),
                1..400,
            ),
            size in 40usize..1500,
        ) {
            let t0 = start();
            let mut rec = TwccRecorder::new();
            let mut arrivals = BTreeMap::new();
            let mut received = std::collections::BTreeSet::new();
            let mut feedbacks = 0usize;
            let mut at = 0u64;
            let mut first_at = None;
            let mut check = |rec: &mut TwccRecorder, arrivals: &BTreeMap<u16, i64>| {
                for packet in drain(rec, t0, size) {
                    let (count, reports) = parse(&packet);
                    assert_eq!(usize::from(count), feedbacks % 256);
                    feedbacks += 1;
                    // Checked against what had arrived when the feedback was built.
                    check_against(&reports, arrivals);
                    received.extend(reports.iter().filter(|r| r.1.is_some()).map(|r| r.0));
                    assert_eq!(parse_str0m(&packet).len(), reports.len());
                }
            };
            for &(offset, gap, keep, poll) in &steps {
                at += gap;
                if keep {
                    let seq = first.wrapping_add(offset);
                    rec.record(seq, t0 + Duration::from_micros(at));
                    // Arrivals are measured from the first one recorded.
                    let first_at = *first_at.get_or_insert(at);
                    arrivals.entry(seq).or_insert((at - first_at) as i64);
                }
                if poll {
                    check(&mut rec, &arrivals);
                }
            }
            check(&mut rec, &arrivals);
            prop_assert_eq!(rec.pending(), 0);
            prop_assert_eq!(received.len(), arrivals.len());
        }
    }
}
