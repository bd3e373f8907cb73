//! Per-consumer rewriting of sequence numbers and timestamps.
//!
//! A consumer's stream must look continuous to its receiver even though the packets it carries
//! may stop (pause), restart (resume) or come from another source stream (a simulcast layer
//! switch). The rewriter maps the incoming (extended) sequence numbers and timestamps through
//! offsets that change only at such a resync point: right after it, the next packet gets the
//! next sequence number and a timestamp advanced by the wall-clock time that passed.
//! Reordered or retransmitted packets from before the resync are dropped; those after it keep
//! their order through the constant offset.

use std::time::Instant;

/// Rewrites one consumer's RTP sequence numbers and timestamps.
#[derive(Debug, Clone)]
pub(crate) struct Rewriter {
    seq_offset: u64,
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
        let out_seq = in_seq.wrapping_add(self.seq_offset);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_out_seq || self.last_out_at.is_none() {
            self.last_out_seq = out_seq;
            self.last_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
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
