//! Per-consumer rewriting of sequence numbers and timestamps.
//!
//! A consumer's stream must look continuous to its receiver even though the packets it carries
//! may stop (pause), restart (resume) or come from another source stream (a simulcast layer
//! switch). The rewriter maps the incoming (extended) sequence numbers and timestamps through
//! offsets that change only at such a resync point: right after it, the next packet gets the
//! next sequence number and a timestamp advanced by the wall-clock time that passed.
//! Reordered or retransmitted packets from before the resync are dropped; those after it keep
//! their order through the constant offset.
//!
//! Inside a run the forwarding code may also drop packets a consumer does not get (layers
//! above its target): [`Rewriter::drop_packet`] takes such a packet's sequence number out, so
//! the packets kept stay contiguous. Only a drop of the newest packet so far moves the offset;
//! the last [`DROP_WINDOW`] of those are remembered, so a packet that arrives late (reordered,
//! or repaired by a retransmission) is numbered as it would have been in order. A late packet
//! that is dropped leaves the number it would have had unused: [`Rewriter::drop_packet`]
//! returns it, and the forwarding code fills it with a padding packet so the receiver does not
//! ask for it in vain; it is never given to another packet's data.

use std::time::Instant;

/// How many incoming sequence numbers back a late packet is still numbered; older ones are
/// dropped.
pub(crate) const DROP_WINDOW: u64 = 128;

/// Rewrites one consumer's RTP sequence numbers and timestamps.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    seq_offset: u64,
    /// The highest incoming sequence number of the run, forwarded or dropped.
    highest_in: u64,
    /// Bit `k` set: incoming packet `highest_in - k` was dropped in order (and so moved the
    /// offset by one).
    dropped: u128,
    ts_offset: u32,
    /// Packets older than this incoming sequence number predate the last resync.
    base_in_seq: u64,
    /// The next packet starts a new run (first packet, after resume or a layer switch).
    resync: bool,
    /// Highest outgoing sequence number so far; the first run starts after it.
    last_out_seq: u64,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
}

impl Rewriter {
    /// A rewriter whose first packet gets `initial_seq`. Keep `initial_seq` below 2^15 so the
    /// receiver's rollover counter starts at zero.
    pub(crate) fn new(initial_seq: u16) -> Self {
        Self {
            seq_offset: 0,
            highest_in: 0,
            dropped: 0,
            ts_offset: 0,
            base_in_seq: 0,
            resync: true,
            last_out_seq: u64::from(initial_seq).wrapping_sub(1),
            last_out_ts: 0,
            last_out_at: None,
        }
    }

    /// Makes the next packet start a new run.
    pub(crate) fn request_resync(&mut self) {
        self.resync = true;
    }

    /// Whether the next packet starts a new run (and so must be a decodable start for video).
    pub(crate) fn needs_resync(&self) -> bool {
        self.resync
    }

    /// The current (outgoing - incoming) timestamp offset.
    pub(crate) fn ts_offset(&self) -> u32 {
        self.ts_offset
    }

    /// Maps one packet. Returns the outgoing (extended sequence number, timestamp), or `None`
    /// when the packet predates the current run.
    pub(crate) fn rewrite(
        &mut self,
        in_seq: u64,
        in_ts: u32,
        now: Instant,
        clock_rate: u32,
    ) -> Option<(u64, u32)> {
        if self.resync {
            self.resync = false;
            self.base_in_seq = in_seq;
            self.highest_in = in_seq;
            self.dropped = 0;
            self.seq_offset = self.last_out_seq.wrapping_add(1).wrapping_sub(in_seq);
            self.ts_offset = match self.last_out_at {
                // First run: keep the source's timestamps.
                None => 0,
                Some(at) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks = (elapsed.as_micros() as u64 * u64::from(clock_rate) / 1_000_000)
                        .max(1) as u32;
                    self.last_out_ts.wrapping_add(ticks).wrapping_sub(in_ts)
                }
            };
        } else if in_seq < self.base_in_seq {
            return None;
        }
        let out_seq = if in_seq > self.highest_in {
            self.advance(in_seq, false);
            in_seq.wrapping_add(self.seq_offset)
        } else {
            self.late_number(in_seq)?
        };
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_out_seq || self.last_out_at.is_none() {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }

    /// Whether `in_seq` is older than the newest packet of the current run (reordered or
    /// retransmitted): such a packet must not move a consumer's layer state.
    pub(crate) fn is_late(&self, in_seq: u64) -> bool {
        !self.resync && in_seq <= self.highest_in
    }

    /// The outgoing number a late packet `in_seq` (at most the newest) would have had in
    /// order: `None` when it is too old to place, predates the run, or was counted dropped
    /// (its number was given up then).
    fn late_number(&self, in_seq: u64) -> Option<u64> {
        if in_seq < self.base_in_seq {
            return None;
        }
        let behind = self.highest_in - in_seq;
        if behind >= DROP_WINDOW || self.dropped & (1u128 << behind) != 0 {
            return None;
        }
        // Drops between this packet and the newest moved the offset after its turn.
        let later_drops = (self.dropped & ((1u128 << behind) - 1)).count_ones();
        Some(
            in_seq
                .wrapping_add(self.seq_offset)
                .wrapping_add(u64::from(later_drops)),
        )
    }

    /// The consumer does not get incoming packet `in_seq`: the packets after it close up.
    ///
    /// A late packet (older than the newest) was already given a number when the packets
    /// after it were sent: that number stays unused, and is returned so the caller can fill
    /// it (a padding packet tells the receiver nothing is missing there). `None` otherwise.
    pub(crate) fn drop_packet(&mut self, in_seq: u64) -> Option<u64> {
        if self.resync {
            // Before the run starts nothing is numbered.
            return None;
        }
        if in_seq <= self.highest_in {
            return self.late_number(in_seq);
        }
        self.advance(in_seq, true);
        self.seq_offset = self.seq_offset.wrapping_sub(1);
        None
    }

    /// The consumer does not get incoming packet `in_seq`, nor any packet missing between the
    /// newest one and it (they belong to a frame it does not get): all of them close up.
    pub(crate) fn drop_through(&mut self, in_seq: u64) {
        if self.resync || in_seq <= self.highest_in {
            return;
        }
        let missing = in_seq - self.highest_in - 1;
        if missing >= DROP_WINDOW {
            self.drop_packet(in_seq);
            return;
        }
        for seq in self.highest_in + 1..=in_seq {
            self.advance(seq, true);
            self.seq_offset = self.seq_offset.wrapping_sub(1);
        }
    }

    fn advance(&mut self, in_seq: u64, dropped: bool) {
        let by = in_seq - self.highest_in;
        self.dropped = if by >= 128 { 0 } else { self.dropped << by };
        self.dropped |= u128::from(dropped);
        self.highest_in = in_seq;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_resync() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(1000);
        assert_eq!(r.rewrite(50_000, 9000, t0, 90_000), Some((1000, 9000)));
        assert_eq!(r.rewrite(50_001, 12_000, t0, 90_000), Some((1001, 12_000)));
        // Reordered packet inside the run keeps its place.
        assert_eq!(r.rewrite(50_003, 18_000, t0, 90_000), Some((1003, 18_000)));
        assert_eq!(r.rewrite(50_002, 15_000, t0, 90_000), Some((1002, 15_000)));
        // Pause for one second, resume from another source stream.
        r.request_resync();
        let t1 = t0 + Duration::from_secs(1);
        let (seq, ts) = r.rewrite(7, 100, t1, 90_000).unwrap();
        assert_eq!(seq, 1004);
        assert_eq!(ts, 18_000 + 90_000);
        // A stale packet from before the resync is dropped.
        assert_eq!(r.rewrite(6, 50, t1, 90_000), None);
        assert_eq!(
            r.rewrite(8, 3100, t1, 90_000),
            Some((1005, 18_000 + 90_000 + 3000))
        );
    }

    #[test]
    fn drops_close_up_and_late_packets_keep_their_numbers() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(100);
        assert_eq!(r.rewrite(10, 0, t0, 90_000).map(|x| x.0), Some(100));
        r.drop_packet(11);
        r.drop_packet(12);
        assert_eq!(r.rewrite(13, 0, t0, 90_000).map(|x| x.0), Some(101));
        // 15 arrives before 14: 14 is a hole for now.
        assert_eq!(r.rewrite(15, 0, t0, 90_000).map(|x| x.0), Some(103));
        r.drop_packet(16);
        assert_eq!(r.rewrite(17, 0, t0, 90_000).map(|x| x.0), Some(104));
        // 14 comes late and is kept: it fills its hole, whatever was dropped after it.
        assert!(r.is_late(14));
        assert_eq!(r.rewrite(14, 0, t0, 90_000).map(|x| x.0), Some(102));
        // A late dropped packet changes nothing; it was counted dropped, so no number is left.
        assert_eq!(r.drop_packet(12), None);
        assert_eq!(r.rewrite(18, 0, t0, 90_000).map(|x| x.0), Some(105));
        // Too far back to know: dropped.
        assert_eq!(r.rewrite(300, 0, t0, 90_000).map(|x| x.0), Some(387));
        assert_eq!(r.rewrite(300 - DROP_WINDOW, 0, t0, 90_000), None);
        // A resync forgets the drops.
        r.request_resync();
        r.drop_packet(40);
        assert_eq!(r.rewrite(41, 0, t0, 90_000).map(|x| x.0), Some(388));
    }

    #[test]
    fn packets_missing_inside_a_dropped_frame_close_up_too() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0);
        assert_eq!(r.rewrite(0, 0, t0, 90_000).map(|x| x.0), Some(0));
        r.drop_packet(1);
        // 2 and 3 are missing; 4 continues the frame 1 was dropped from.
        r.drop_through(4);
        assert_eq!(r.rewrite(5, 0, t0, 90_000).map(|x| x.0), Some(1));
        // 2 arrives late (repaired) and is dropped: nothing changes.
        r.drop_packet(2);
        assert_eq!(r.rewrite(6, 0, t0, 90_000).map(|x| x.0), Some(2));
        // Counted dropped, 3 is never numbered, even if asked to be kept (it would take
        // another packet's number).
        assert_eq!(r.rewrite(3, 0, t0, 90_000), None);
    }

    #[test]
    fn a_late_packet_between_drops_does_not_collide() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0);
        assert_eq!(r.rewrite(0, 0, t0, 90_000).map(|x| x.0), Some(0));
        // 1 is missing, 2 dropped, 3 kept, 4 dropped, 5 kept; then 1 arrives.
        r.drop_packet(2);
        let three = r.rewrite(3, 0, t0, 90_000).unwrap().0;
        r.drop_packet(4);
        let five = r.rewrite(5, 0, t0, 90_000).unwrap().0;
        let one = r.rewrite(1, 0, t0, 90_000).unwrap().0;
        assert_eq!((one, three, five), (1, 2, 3));
    }

    #[test]
    fn a_late_dropped_packet_hands_back_the_number_it_kept() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(0);
        assert_eq!(r.rewrite(0, 0, t0, 90_000).map(|x| x.0), Some(0));
        // 1 is missing at the edge of a frame (2 starts a kept frame), 3 is dropped, 4 kept.
        assert_eq!(r.rewrite(2, 0, t0, 90_000).map(|x| x.0), Some(2));
        assert_eq!(r.drop_packet(3), None, "in order: the numbers close up");
        assert_eq!(r.rewrite(4, 0, t0, 90_000).map(|x| x.0), Some(3));
        // 1 comes repaired and belongs to a frame the consumer does not get: number 1 was kept
        // for it and is handed back, once the run knows it will not carry data.
        assert_eq!(r.drop_packet(1), Some(1));
        assert_eq!(r.rewrite(5, 0, t0, 90_000).map(|x| x.0), Some(4));
        // Too far back, and before the run: nothing to hand back.
        assert_eq!(r.rewrite(300, 0, t0, 90_000).map(|x| x.0), Some(299));
        assert_eq!(r.drop_packet(300 - DROP_WINDOW), None);
        r.request_resync();
        assert_eq!(r.drop_packet(6), None);
    }

    proptest::proptest! {
        #[test]
        fn output_is_gapless_for_in_order_input_with_drops(
            start in 0u64..1_000_000,
            packets in proptest::collection::vec((proptest::bool::ANY, 0u8..20), 1..400),
        ) {
            let t0 = Instant::now();
            let mut r = Rewriter::new(0);
            let mut expected = 0u64;
            for (i, (keep, resync)) in packets.into_iter().enumerate() {
                let seq = start + i as u64;
                if resync == 0 {
                    r.request_resync();
                }
                if keep {
                    let (out, _) = r.rewrite(seq, 0, t0, 90_000).unwrap();
                    proptest::prop_assert_eq!(out, expected);
                    expected += 1;
                } else {
                    r.drop_packet(seq);
                }
            }
        }

        #[test]
        fn reordered_input_never_reuses_a_number(
            keep in proptest::collection::vec(proptest::bool::ANY, 2..200),
            swaps in proptest::collection::vec((0usize..200, 1usize..4), 0..40),
        ) {
            // Each packet's fate is fixed; the arrival order is shuffled locally.
            let mut order: Vec<usize> = (0..keep.len()).collect();
            for (at, by) in swaps {
                let (a, b) = (at % order.len(), (at + by) % order.len());
                order.swap(a, b);
            }
            let t0 = Instant::now();
            let mut r = Rewriter::new(0);
            let mut seen = std::collections::HashMap::new();
            for &i in &order {
                let seq = 1000 + i as u64;
                if keep[i] {
                    if let Some((out, _)) = r.rewrite(seq, 0, t0, 90_000) {
                        if let Some(other) = seen.insert(out, seq) {
                            proptest::prop_assert!(false, "{out} given to {other} and {seq}");
                        }
                    }
                } else if i % 3 == 0 {
                    // As for a packet continuing a dropped frame: the missing ones go too.
                    r.drop_through(seq);
                } else {
                    r.drop_packet(seq);
                }
            }
            // Numbers follow the incoming order among the packets numbered.
            let mut pairs: Vec<(u64, u64)> = seen.into_iter().map(|(o, i)| (i, o)).collect();
            pairs.sort_unstable();
            proptest::prop_assert!(pairs.windows(2).all(|w| w[0].1 < w[1].1));
        }
    }

    proptest::proptest! {
        #[test]
        fn output_sequence_is_gapless_for_in_order_input(
            start in 0u64..1_000_000,
            runs in proptest::collection::vec((1u64..50, 0u64..100_000), 1..10),
        ) {
            let t0 = Instant::now();
            let mut r = Rewriter::new(0);
            let mut expected = 0u64;
            let mut src = start;
            for (len, jump) in runs {
                src += jump;
                r.request_resync();
                for i in 0..len {
                    let (seq, _) = r.rewrite(src + i, 0, t0, 90_000).unwrap();
                    proptest::prop_assert_eq!(seq, expected);
                    expected += 1;
                }
                src += len;
            }
        }
    }
}
