//! Statistics of one incoming RTP stream: RFC 3550 Appendix A.1 (sequence number validity,
//! extended sequence numbers), A.3 (expected, lost, fraction lost), A.8 (interarrival jitter)
//! and section 6.4.1 (LSR, DLSR).
//!
//! Differences from the appendix, on purpose:
//!
//! - No probation for a new source: the first packet is accepted at once (the SSRC was
//!   signalled and SRTP authenticated it). What remains of probation is A.1's rule for a very
//!   large jump: such a packet is [`Arrival::Stale`], and the stream accepts the jump only when
//!   the next packet counted follows it directly (two sequential packets: the sender
//!   restarted). Retransmissions never start or confirm a jump, so a burst of retransmitted
//!   packets older than the window cannot move the stream.
//! - Across such a restart the extended sequence number keeps increasing (the jump is counted
//!   forward modulo 2^16) instead of starting again, and the packets skipped over are not
//!   counted as expected, so cumulative loss goes on from where it was.
//! - A window of the last [`HISTORY`] sequence numbers remembers what arrived, so duplicates
//!   are told apart from late packets and counted once; the cumulative loss therefore never goes
//!   negative. A packet further behind than the window, or from before the first packet, is
//!   [`Arrival::Stale`] and not counted. The window is wider than A.1's `MAX_MISORDER` (100)
//!   so that retransmissions a few round trips old still count.
//! - Jitter is updated only by packets that advance the stream and are not retransmissions
//!   (a reordered or retransmitted packet's transit time says nothing about the network's
//!   jitter), as libwebrtc does.

use std::time::{Duration, Instant};

use super::ReportBlock;

/// How far ahead of the highest sequence number a packet may be and still be in order (A.1's
/// `MAX_DROPOUT`).
pub(crate) const MAX_DROPOUT: u16 = 3000;
/// How many sequence numbers back from the highest the stream remembers: a packet this far
/// behind or further is stale (A.1's `MAX_MISORDER`, widened for retransmissions).
const HISTORY: u64 = 2048;
/// Words of the arrival window.
const WORDS: usize = (HISTORY / 64) as usize;
/// RTP sequence numbers wrap at this value.
const SEQ_MOD: u32 = 1 << 16;

/// What one arriving packet is, relative to what the stream has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Newer than anything seen so far.
    New {
        /// Its extended sequence number.
        ext_seq: u64,
    },
    /// Older than the highest, not seen before: it fills a hole (e.g. a retransmission).
    Late {
        /// Its extended sequence number.
        ext_seq: u64,
    },
    /// Seen before.
    Duplicate,
    /// Too old to tell, or a jump the stream does not accept yet.
    Stale,
}

/// The receive side of one incoming RTP stream (one SSRC): statistics for receiver reports.
#[derive(Debug)]
pub(crate) struct RecvStream {
    ssrc: u32,
    clock_rate: u32,
    /// Sequence state, from the first packet on.
    seq: Option<SeqState>,
    /// Distinct packets counted (A.3's `received`).
    received: u64,
    /// `expected` at the previous report.
    expected_prior: u64,
    /// `received` at the previous report.
    received_prior: u64,
    /// Interarrival jitter times 16 (A.8's integer form); u64 so no timestamps can overflow it.
    jitter_q4: u64,
    /// The previous in-order packet's relative transit time, in RTP units.
    transit: Option<u32>,
    /// Arrival time that RTP-unit arrival times count from.
    epoch: Option<Instant>,
    /// The newest sender report: (NTP timestamp, RTP timestamp, when it arrived).
    sender_report: Option<(u64, u32, Instant)>,
}

/// Extended sequence numbers and the window of what arrived.
#[derive(Debug)]
struct SeqState {
    /// The extended highest sequence number.
    highest: u64,
    /// Where counting of expected packets starts (A.1's `base_seq`, extended): the first
    /// packet, moved forward over every jump the stream resynchronised across.
    base: u64,
    /// The lowest extended sequence number accepted: the first packet's, or the one a jump
    /// was accepted at.
    floor: u64,
    /// The sequence number that would confirm a large jump (A.1's `bad_seq`).
    bad_seq: Option<u16>,
    /// One bit per extended sequence number in `highest - HISTORY + 1 ..= highest`, indexed
    /// modulo `HISTORY`: set when that packet arrived.
    seen: [u64; WORDS],
}

impl RecvStream {
    /// A stream for `ssrc` whose RTP timestamps tick at `clock_rate` Hz (0 disables jitter).
    pub(crate) fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate,
            seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            transit: None,
            epoch: None,
            sender_report: None,
        }
    }

    /// Registers one packet (not for RTX packets: pass the de-encapsulated original's seq with
    /// `retransmission = true`, which updates loss but not jitter).
    pub(crate) fn on_packet(
        &mut self,
        seq: u16,
        rtp_ts: u32,
        arrival: Instant,
        retransmission: bool,
    ) -> Arrival {
        let Some(state) = &mut self.seq else {
            let ext = u64::from(seq);
            let mut state = SeqState {
                highest: ext,
                base: ext,
                floor: ext,
                bad_seq: None,
                seen: [0; WORDS],
            };
            state.mark(ext);
            self.seq = Some(state);
            return self.counted_new(ext, rtp_ts, arrival, retransmission);
        };
        let udelta = seq.wrapping_sub(state.highest as u16);
        if udelta == 0 {
            // The highest packet is always one that arrived.
            Arrival::Duplicate
        } else if udelta < MAX_DROPOUT {
            // In order, with a permissible gap (this also covers the wrap 65535 -> 0).
            let ext = state.highest + u64::from(udelta);
            state.advance(ext);
            state.bad_seq = None;
            self.counted_new(ext, rtp_ts, arrival, retransmission)
        } else if u32::from(udelta) > SEQ_MOD - HISTORY as u32 {
            // Behind the highest, within the window.
            let behind = u64::from(SEQ_MOD - u32::from(udelta));
            match state.highest.checked_sub(behind) {
                Some(ext) if ext >= state.floor => {
                    if state.is_seen(ext) {
                        Arrival::Duplicate
                    } else {
                        state.mark(ext);
                        state.bad_seq = None;
                        self.received += 1;
                        Arrival::Late { ext_seq: ext }
                    }
                }
                _ => Arrival::Stale,
            }
        } else if retransmission {
            // A retransmission never starts or confirms a jump: it is an old packet on its way.
            Arrival::Stale
        } else if state.bad_seq == Some(seq) {
            // A very large jump, confirmed by the packet right after it: the sender restarted.
            // Counted forward so extended numbers keep increasing; the numbers jumped over are
            // not expected.
            let ext = state.highest + u64::from(udelta);
            state.base += ext - state.highest - 1;
            state.floor = ext;
            state.bad_seq = None;
            state.seen = [0; WORDS];
            state.highest = ext;
            state.mark(ext);
            self.transit = None;
            self.counted_new(ext, rtp_ts, arrival, retransmission)
        } else {
            // A very large jump (or a packet far too old): accepted only if the next one
            // follows it.
            state.bad_seq = Some(seq.wrapping_add(1));
            Arrival::Stale
        }
    }

    /// Registers a sender report (RFC 3550 section 6.4.1) for this stream: its NTP timestamp,
    /// RTP timestamp, and when it arrived. The newest to arrive wins.
    pub(crate) fn on_sender_report(&mut self, ntp: u64, rtp_ts: u32, arrival: Instant) {
        self.sender_report = Some((ntp, rtp_ts, arrival));
    }

    /// The newest sender report's (ntp, rtp_ts, when it arrived): lets consumers' SRs map RTP
    /// time to the sender's NTP clock.
    pub(crate) fn sender_report_mapping(&self) -> Option<(u64, u32, Instant)> {
        self.sender_report
    }

    /// A report block for this stream as of `now` (fraction lost since the previous call,
    /// cumulative lost clamped to 24-bit signed, extended highest seq, jitter in RTP units,
    /// LSR, DLSR in 1/65536 s). Advances the "since last report" counters.
    pub(crate) fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let fraction_lost = if expected_interval > received_interval {
            let lost_interval = expected_interval - received_interval;
            ((lost_interval << 8) / expected_interval).min(255) as u8
        } else {
            0
        };
        let (last_sr, delay_since_last_sr) = match self.sender_report {
            Some((ntp, _, at)) => ((ntp >> 16) as u32, dlsr(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.packets_lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            // The low 32 bits: 16 bits of cycles over the sequence number, as RFC 3550 sends it.
            extended_highest_seq: self.extended_highest().unwrap_or(0) as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }

    /// Distinct packets received and counted (duplicates and stale packets are not).
    #[cfg(test)]
    pub(crate) fn packets_received(&self) -> u64 {
        self.received
    }

    /// Packets expected but not received since the stream began (never negative here, since
    /// duplicates are not counted).
    pub(crate) fn packets_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Packets expected and distinct packets received since the stream began (for scores).
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.expected(), self.received)
    }

    /// Interarrival jitter, in RTP timestamp units.
    pub(crate) fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4).min(u64::from(u32::MAX)) as u32
    }

    /// The extended highest sequence number, once a packet arrived.
    pub(crate) fn extended_highest(&self) -> Option<u64> {
        self.seq.as_ref().map(|s| s.highest)
    }

    /// Packets expected so far (A.3): from the base to the highest, less the jumps.
    fn expected(&self) -> u64 {
        self.seq.as_ref().map_or(0, |s| s.highest - s.base + 1)
    }

    /// Counts a packet that advanced the stream and updates the jitter with it.
    fn counted_new(&mut self, ext: u64, rtp_ts: u32, arrival: Instant, rtx: bool) -> Arrival {
        self.received += 1;
        if !rtx {
            self.update_jitter(rtp_ts, arrival);
        }
        Arrival::New { ext_seq: ext }
    }

    /// RFC 3550 A.8: J += (|D| - J) / 16, in integers scaled by 16.
    fn update_jitter(&mut self, rtp_ts: u32, arrival: Instant) {
        if self.clock_rate == 0 {
            return;
        }
        let epoch = *self.epoch.get_or_insert(arrival);
        let elapsed = arrival.saturating_duration_since(epoch).as_nanos();
        // Arrival time in RTP units, modulo 2^32 like the timestamps.
        let arrival_rtp = (elapsed * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival_rtp.wrapping_sub(rtp_ts);
        if let Some(prev) = self.transit {
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }
}

impl SeqState {
    /// Moves the highest forward to `ext`, forgetting what the window held for the numbers it
    /// now reuses, and marks `ext` as arrived.
    fn advance(&mut self, ext: u64) {
        let from = self.highest + 1;
        if ext - from + 1 >= HISTORY {
            self.seen = [0; WORDS];
        } else {
            let mut n = from;
            while n <= ext {
                let bit = (n % HISTORY) % 64;
                let len = (64 - bit).min(ext - n + 1);
                let mask = if len == 64 {
                    u64::MAX
                } else {
                    ((1u64 << len) - 1) << bit
                };
                self.seen[Self::word(n)] &= !mask;
                n += len;
            }
        }
        self.highest = ext;
        self.mark(ext);
    }

    fn mark(&mut self, ext: u64) {
        self.seen[Self::word(ext)] |= 1 << ((ext % HISTORY) % 64);
    }

    fn is_seen(&self, ext: u64) -> bool {
        self.seen[Self::word(ext)] & (1 << ((ext % HISTORY) % 64)) != 0
    }

    fn word(ext: u64) -> usize {
        ((ext % HISTORY) / 64) as usize
    }
}

/// A duration in 1/65536 s, saturating at `u32::MAX` (about 18 hours).
fn dlsr(d: Duration) -> u32 {
    let units = d
        .as_secs()
        .saturating_mul(65536)
        .saturating_add(u64::from(d.subsec_nanos()) * 65536 / 1_000_000_000);
    units.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed(s: &mut RecvStream, seq: u16, t: Instant) -> Arrival {
        s.on_packet(seq, 0, t, false)
    }

    #[test]
    fn wrap_keeps_extended_numbers_increasing() {
        let t = Instant::now();
        let mut s = RecvStream::new(7, 90_000);
        let got: Vec<_> = [65_533, 65_534, 65_535, 0, 1]
            .into_iter()
            .map(|q| feed(&mut s, q, t))
            .collect();
        let want: Vec<_> = (65_533..=65_537)
            .map(|ext_seq| Arrival::New { ext_seq })
            .collect();
        assert_eq!(got, want);
        // A packet from before the wrap, arriving after it, is late in the previous cycle.
        assert_eq!(feed(&mut s, 3, t), Arrival::New { ext_seq: 65_539 });
        assert_eq!(feed(&mut s, 2, t), Arrival::Late { ext_seq: 65_538 });
        assert_eq!(s.extended_highest(), Some(65_539));
        assert_eq!(s.report_block(t).extended_highest_seq, 0x0001_0003);
        assert_eq!(s.packets_lost(), 0);
    }

    #[test]
    fn classifies_duplicates_late_and_stale() {
        let t = Instant::now();
        let mut s = RecvStream::new(7, 90_000);
        assert_eq!(feed(&mut s, 10, t), Arrival::New { ext_seq: 10 });
        assert_eq!(feed(&mut s, 10, t), Arrival::Duplicate);
        assert_eq!(feed(&mut s, 13, t), Arrival::New { ext_seq: 13 });
        assert_eq!(feed(&mut s, 12, t), Arrival::Late { ext_seq: 12 });
        assert_eq!(feed(&mut s, 12, t), Arrival::Duplicate);
        assert_eq!(s.on_packet(11, 0, t, true), Arrival::Late { ext_seq: 11 });
        assert_eq!(feed(&mut s, 11, t), Arrival::Duplicate);
        // From before the first packet: not counted.
        assert_eq!(feed(&mut s, 9, t), Arrival::Stale);
        assert_eq!(s.packets_received(), 4);
        assert_eq!(s.packets_lost(), 0);
        // Move on by two window lengths; what is a whole window behind is stale, just inside
        // the window is late.
        let mut q = 13u16;
        for _ in 0..(2 * HISTORY / 2000) {
            q += 2000;
            assert!(matches!(feed(&mut s, q, t), Arrival::New { .. }));
        }
        assert_eq!(s.extended_highest(), Some(4013));
        assert_eq!(feed(&mut s, 4013 - 2048, t), Arrival::Stale);
        assert_eq!(
            feed(&mut s, 4013 - 2047, t),
            Arrival::Late { ext_seq: 1966 }
        );
        // The window forgot what it held a cycle of the window ago: 13 + 2048 is not a
        // duplicate of 13.
        assert_eq!(feed(&mut s, 2061, t), Arrival::Late { ext_seq: 2061 });
        assert_eq!(feed(&mut s, 2061, t), Arrival::Duplicate);
    }

    #[test]
    fn large_jump_needs_two_sequential_packets() {
        let t = Instant::now();
        let mut s = RecvStream::new(7, 90_000);
        feed(&mut s, 100, t);
        feed(&mut s, 101, t);
        assert_eq!(feed(&mut s, 40_000, t), Arrival::Stale);
        assert_eq!(feed(&mut s, 102, t), Arrival::New { ext_seq: 102 });
        // The packet in between broke the pair.
        assert_eq!(feed(&mut s, 40_001, t), Arrival::Stale);
        // Retransmissions neither start nor confirm a jump.
        assert_eq!(s.on_packet(40_002, 0, t, true), Arrival::Stale);
        assert_eq!(s.on_packet(40_003, 0, t, true), Arrival::Stale);
        assert_eq!(s.extended_highest(), Some(102));
        // Two sequential packets: the sender restarted; numbers keep increasing.
        assert_eq!(feed(&mut s, 40_004, t), Arrival::Stale);
        assert_eq!(feed(&mut s, 40_005, t), Arrival::New { ext_seq: 40_005 });
        assert_eq!(feed(&mut s, 40_006, t), Arrival::New { ext_seq: 40_006 });
        // The numbers jumped over are not lost, and the old numbering is gone.
        assert_eq!(s.packets_lost(), 0);
        assert_eq!(feed(&mut s, 40_004, t), Arrival::Stale);
        assert_eq!(feed(&mut s, 103, t), Arrival::Stale);
        assert_eq!(s.packets_received(), 5);
        // A jump backwards (a restart at a lower number) counts forward modulo 2^16.
        feed(&mut s, 500, t);
        assert_eq!(
            feed(&mut s, 501, t),
            Arrival::New {
                ext_seq: 65_536 + 501
            }
        );
        assert_eq!(s.packets_lost(), 0);
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        // 90 kHz, one packet per 20 ms of media (1800 units), arriving at 0, 30, 40 and 70 ms:
        // transit times 0, 900, 0, 900, so |D| = 900 three times. In A.8's integer form
        // (J scaled by 16): 0 + 900 - 0 = 900; 900 + 900 - 56 = 1744; 1744 + 900 - 109 =
        // 2535; 2535 / 16 = 158 (the floating-point form gives 158.4).
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = RecvStream::new(7, 90_000);
        s.on_packet(1, 0, t0, false);
        s.on_packet(2, 1800, t0 + ms(30), false);
        assert_eq!(s.jitter(), 900 >> 4);
        s.on_packet(5, 3600, t0 + ms(40), false);
        assert_eq!(s.jitter(), 1744 >> 4);
        // Neither a late packet nor a retransmission (late or new) moves the jitter.
        s.on_packet(3, 999_999, t0 + ms(45), true);
        s.on_packet(4, 999_999, t0 + ms(50), false);
        s.on_packet(7, 5400, t0 + ms(70), false);
        assert_eq!(s.jitter(), 158);
        assert_eq!(
            s.on_packet(8, 1, t0 + ms(75), true),
            Arrival::New { ext_seq: 8 }
        );
        assert_eq!(s.jitter(), 158);
        assert_eq!(s.report_block(t0 + ms(70)).jitter, 158);
        // Two more with |D| = 900, where A.8's rounding (+8) shows in the scaled value:
        // 2535 + 900 - 158 = 3277; 3277 + 900 - 205 = 3972.
        s.on_packet(9, 7200, t0 + ms(80), false);
        s.on_packet(10, 9000, t0 + ms(110), false);
        assert_eq!(s.jitter_q4, 3972);
        assert_eq!(s.jitter(), 248);
        // Without a clock rate there is no jitter.
        let mut s = RecvStream::new(7, 0);
        s.on_packet(1, 0, t0, false);
        s.on_packet(2, 5, t0 + ms(30), false);
        assert_eq!(s.jitter(), 0);
    }

    #[test]
    fn fraction_and_cumulative_loss() {
        let t = Instant::now();
        let mut s = RecvStream::new(0x1234, 90_000);
        let empty = s.report_block(t);
        assert_eq!((empty.fraction_lost, empty.cumulative_lost), (0, 0));
        assert_eq!(empty.extended_highest_seq, 0);
        // 0..=9 with 3, 4 and 7 lost: 3 of 10, 76/256.
        for q in [0, 1, 2, 5, 6, 8, 9] {
            feed(&mut s, q, t);
        }
        let rb = s.report_block(t);
        assert_eq!(rb.ssrc, 0x1234);
        assert_eq!(rb.fraction_lost, 76); // 3 * 256 / 10
        assert_eq!(rb.cumulative_lost, 3);
        assert_eq!(rb.extended_highest_seq, 9);
        // 3 and 4 arrive late, 10 and 11 new: more received than expected in this interval.
        for q in [3, 10, 4, 11] {
            feed(&mut s, q, t);
        }
        let rb = s.report_block(t);
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 1);
        assert_eq!(s.packets_lost(), 1);
        assert_eq!(s.packets_received(), 11);
        // 12..=21 with 15 lost and 12 duplicated: 1 of 10.
        for q in [12, 12, 13, 14, 16, 17, 18, 19, 20, 21] {
            feed(&mut s, q, t);
        }
        let rb = s.report_block(t);
        assert_eq!(rb.fraction_lost, 25); // 256 / 10
        assert_eq!(rb.cumulative_lost, 2);
        // Nothing since: nothing lost since.
        let rb = s.report_block(t);
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 2));
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let t = Instant::now();
        let mut s = RecvStream::new(1, 90_000);
        let mut q = 0u16;
        while s.packets_lost() <= 0x7f_ffff {
            feed(&mut s, q, t);
            q = q.wrapping_add(MAX_DROPOUT - 1);
        }
        let rb = s.report_block(t);
        assert_eq!(rb.cumulative_lost, 0x7f_ffff);
        assert_eq!(rb.fraction_lost, 255);
    }

    #[test]
    fn lsr_and_dlsr_from_sender_report() {
        let t = Instant::now();
        let mut s = RecvStream::new(1, 90_000);
        let rb = s.report_block(t);
        assert_eq!((rb.last_sr, rb.delay_since_last_sr), (0, 0));
        assert_eq!(s.sender_report_mapping(), None);
        let ntp = 0x1234_5678_9abc_def0;
        s.on_sender_report(ntp, 4242, t);
        assert_eq!(s.sender_report_mapping(), Some((ntp, 4242, t)));
        let rb = s.report_block(t + Duration::from_millis(1500));
        assert_eq!(rb.last_sr, 0x5678_9abc);
        assert_eq!(rb.delay_since_last_sr, 98_304);
        assert_eq!(
            s.report_block(t + Duration::from_millis(250))
                .delay_since_last_sr,
            16_384
        );
        // A clock that runs backwards gives 0; a huge delay saturates.
        assert_eq!(s.report_block(t).delay_since_last_sr, 0);
        assert_eq!(dlsr(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    proptest! {
        /// Against a model: packets around a moving highest, lost, reordered and duplicated
        /// within the window, are classified and counted exactly.
        #[test]
        fn matches_a_model(
            start in 0u64..65_536,
            ops in proptest::collection::vec((0u64..40, 0u64..(HISTORY - 1)), 1..400),
        ) {
            let t = Instant::now();
            let mut s = RecvStream::new(1, 90_000);
            let mut seen = std::collections::BTreeSet::new();
            let mut highest = start;
            prop_assert_eq!(feed(&mut s, start as u16, t), Arrival::New { ext_seq: start });
            seen.insert(start);
            for (step, back) in ops {
                // Mostly forward steps (a gap of up to 4), some packets from behind.
                let ext = if step < 30 {
                    highest + step % 5 + 1
                } else {
                    highest.saturating_sub(back).max(start)
                };
                let want = if ext > highest {
                    Arrival::New { ext_seq: ext }
                } else if seen.contains(&ext) {
                    Arrival::Duplicate
                } else {
                    Arrival::Late { ext_seq: ext }
                };
                prop_assert_eq!(feed(&mut s, ext as u16, t), want);
                seen.insert(ext);
                highest = highest.max(ext);
                prop_assert_eq!(s.packets_received(), seen.len() as u64);
                let lost = (highest - start + 1 - seen.len() as u64) as i64;
                prop_assert_eq!(s.packets_lost(), lost);
            }
        }

        /// Any sequence of numbers and timestamps: no panic, extended numbers agree with the
        /// sequence numbers, new ones increase, loss is never negative.
        #[test]
        fn arbitrary_input(
            pkts in proptest::collection::vec(
                (any::<u16>(), any::<u32>(), 0u64..100_000_000, any::<bool>()), 1..300),
        ) {
            let t0 = Instant::now();
            let mut s = RecvStream::new(1, 48_000);
            let mut last_new = None;
            for (seq, ts, ns, rtx) in pkts {
                let t = t0 + Duration::from_nanos(ns);
                match s.on_packet(seq, ts, t, rtx) {
                    Arrival::New { ext_seq } => {
                        prop_assert_eq!(ext_seq as u16, seq);
                        prop_assert!(last_new < Some(ext_seq));
                        last_new = Some(ext_seq);
                    }
                    Arrival::Late { ext_seq } => {
                        prop_assert_eq!(ext_seq as u16, seq);
                        prop_assert!(Some(ext_seq) < last_new);
                    }
                    Arrival::Duplicate | Arrival::Stale => {}
                }
                prop_assert!(s.packets_lost() >= 0);
                let rb = s.report_block(t);
                prop_assert!(rb.cumulative_lost >= 0);
            }
        }
    }
}
