//! Which missing packets of one incoming stream to ask for again with generic NACK (RFC 4585
//! section 6.2.1), in the manner of mediasoup's NackGenerator.
//!
//! - A gap in the extended sequence numbers becomes missing entries, NACKed at the first poll
//!   after the gap is seen (no waiting for reordering to settle: a packet reordered by a few
//!   places is NACKed once needlessly, and the sender's retransmission is then a duplicate).
//! - An entry is NACKed again once per round trip (the caller's RTT, at least [`MIN_RTT`],
//!   [`DEFAULT_RTT`] when unknown), at most [`MAX_NACK_RETRIES`] times; one round trip after
//!   the last NACK it is given up.
//! - A packet that arrives late removes its entry (recovered). A key frame's packet removes
//!   every entry older than it, since a decoder resynchronises on the key frame.
//! - Bounds: at most [`MAX_NACK_PACKETS`] entries (a gap that would exceed it clears the table
//!   and asks the caller to request a key frame instead); entries more than
//!   [`MAX_PACKET_AGE`] sequence numbers behind the newest are dropped. There is no separate
//!   time bound: an entry lives at most `(MAX_NACK_RETRIES + 1)` round trips.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most missing packets tracked at once (mediasoup's `MaxNackPackets`).
pub(crate) const MAX_NACK_PACKETS: usize = 1000;
/// Entries further than this behind the newest sequence number are dropped (mediasoup's
/// `MaxPacketAge`).
pub(crate) const MAX_PACKET_AGE: u64 = 10_000;
/// How many times one packet is NACKed before it is given up (mediasoup's `MaxNackRetries`).
pub(crate) const MAX_NACK_RETRIES: u8 = 10;
/// The spacing of retries when the caller knows no round-trip time.
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// The shortest spacing of retries, whatever the round-trip time.
pub(crate) const MIN_RTT: Duration = Duration::from_millis(20);

/// Asks the sender to retransmit what is missing (RFC 4585 generic NACK), as mediasoup does:
/// retries spaced by the RTT, given up after a bound.
#[derive(Debug)]
pub(crate) struct NackGenerator {
    /// Missing packets, in increasing sequence order (gaps are only ever added above the
    /// newest), never more than `MAX_NACK_PACKETS`.
    table: VecDeque<Missing>,
    /// The newest extended sequence number fed.
    newest: Option<u64>,
    nacks_sent: u64,
    recovered: u64,
    given_up: u64,
}

/// One missing packet.
#[derive(Debug, Clone, Copy)]
struct Missing {
    ext_seq: u64,
    /// When the gap was seen (`retries == 0`), else when it was last NACKed.
    at: Instant,
    /// Times NACKed so far.
    retries: u8,
}

impl NackGenerator {
    /// A generator with its table of `MAX_NACK_PACKETS` entries allocated.
    pub(crate) fn new() -> Self {
        Self {
            table: VecDeque::with_capacity(MAX_NACK_PACKETS),
            newest: None,
            nacks_sent: 0,
            recovered: 0,
            given_up: 0,
        }
    }

    /// Feed every packet's extended seq (new or late). Gaps become missing entries; a late
    /// packet removes its entry. `key_frame`: entries older than a key frame's packet are
    /// dropped, including a gap right before it (so the caller should flag the first packet
    /// of a key frame, or a missing earlier packet of the same frame is not asked for).
    /// Returns true when the table overflowed (too many missing: it was cleared, and the
    /// caller should request a key frame instead).
    pub(crate) fn on_packet(&mut self, ext_seq: u64, key_frame: bool, now: Instant) -> bool {
        let Some(newest) = self.newest else {
            self.newest = Some(ext_seq);
            return false;
        };
        if ext_seq > newest {
            self.newest = Some(ext_seq);
            self.drop_older_than(ext_seq.saturating_sub(MAX_PACKET_AGE));
            if key_frame {
                self.drop_older_than(ext_seq);
                return false;
            }
            let gap = ext_seq - newest - 1;
            if gap > (MAX_NACK_PACKETS - self.table.len()) as u64 {
                self.given_up += self.table.len() as u64;
                self.table.clear();
                return true;
            }
            self.table
                .extend((newest + 1..ext_seq).map(|ext_seq| Missing {
                    ext_seq,
                    at: now,
                    retries: 0,
                }));
        } else if ext_seq < newest {
            if let Ok(i) = self.table.binary_search_by_key(&ext_seq, |m| m.ext_seq) {
                self.table.remove(i);
                self.recovered += 1;
            }
            if key_frame {
                self.drop_older_than(ext_seq);
            }
        }
        false
    }

    /// Writes into `out` the sequence numbers (u16) to NACK now, oldest first: entries never
    /// NACKed, and entries NACKed at least one RTT ago (`rtt` at least `MIN_RTT`,
    /// `DEFAULT_RTT` when `None`). An entry already NACKed `MAX_NACK_RETRIES` times is given
    /// up one RTT after its last NACK. Returns how many were written (at most `out.len()`; the
    /// rest wait for the next call).
    pub(crate) fn poll(&mut self, now: Instant, rtt: Option<Duration>, out: &mut [u16]) -> usize {
        let rtt = effective_rtt(rtt);
        let mut written = 0;
        let mut given_up = 0;
        self.table.retain_mut(|m| {
            let due = m.retries == 0 || now.saturating_duration_since(m.at) >= rtt;
            if !due {
                return true;
            }
            if m.retries >= MAX_NACK_RETRIES {
                given_up += 1;
                return false;
            }
            if let Some(slot) = out.get_mut(written) {
                *slot = m.ext_seq as u16;
                written += 1;
                m.retries += 1;
                m.at = now;
            }
            true
        });
        self.given_up += given_up;
        self.nacks_sent += written as u64;
        written
    }

    /// When poll has something to send next, or an entry to give up (None when nothing is
    /// missing). An entry never NACKed is due from when its gap was seen.
    pub(crate) fn next_deadline(&self, rtt: Option<Duration>) -> Option<Instant> {
        let rtt = effective_rtt(rtt);
        self.table
            .iter()
            .filter_map(|m| {
                if m.retries == 0 {
                    Some(m.at)
                } else {
                    m.at.checked_add(rtt)
                }
            })
            .min()
    }

    /// Packets missing and still being asked for.
    #[cfg(test)]
    pub(crate) fn missing(&self) -> usize {
        self.table.len()
    }

    /// Sequence numbers written by `poll` (each retry counts).
    pub(crate) fn nacks_sent(&self) -> u64 {
        self.nacks_sent
    }

    /// Missing packets that arrived later.
    pub(crate) fn recovered(&self) -> u64 {
        self.recovered
    }

    /// Missing packets removed without arriving: retries exhausted, too old, older than a key
    /// frame, or cleared when the table overflowed.
    pub(crate) fn given_up(&self) -> u64 {
        self.given_up
    }

    /// Drops (gives up) every entry older than `ext_seq`.
    fn drop_older_than(&mut self, ext_seq: u64) {
        let n = self.table.partition_point(|m| m.ext_seq < ext_seq);
        self.table.drain(..n);
        self.given_up += n as u64;
    }
}

/// The retry spacing for a caller's RTT.
fn effective_rtt(rtt: Option<Duration>) -> Duration {
    rtt.unwrap_or(DEFAULT_RTT).max(MIN_RTT)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn poll(n: &mut NackGenerator, now: Instant, rtt: Option<Duration>) -> Vec<u16> {
        let mut out = [0u16; 64];
        let k = n.poll(now, rtt, &mut out);
        out[..k].to_vec()
    }

    #[test]
    fn gap_is_nacked_once_per_rtt_then_given_up() {
        let t0 = Instant::now();
        let rtt = Some(50 * MS);
        let mut n = NackGenerator::new();
        assert_eq!(n.next_deadline(rtt), None);
        assert!(!n.on_packet(0, false, t0));
        assert!(!n.on_packet(2, false, t0));
        assert_eq!(n.missing(), 1);
        assert_eq!(n.next_deadline(rtt), Some(t0));
        let mut last = t0;
        for i in 0..u32::from(MAX_NACK_RETRIES) {
            let due = t0 + 50 * MS * i;
            assert_eq!(n.next_deadline(rtt), Some(if i == 0 { t0 } else { due }));
            if i > 0 {
                assert_eq!(poll(&mut n, due - MS, rtt), Vec::<u16>::new());
            }
            assert_eq!(poll(&mut n, due, rtt), vec![1]);
            assert_eq!(poll(&mut n, due, rtt), Vec::<u16>::new());
            last = due;
        }
        assert_eq!(n.nacks_sent(), 10);
        // One RTT after the tenth NACK the entry is given up, without an eleventh.
        assert_eq!(n.next_deadline(rtt), Some(last + 50 * MS));
        assert_eq!(poll(&mut n, last + 49 * MS, rtt), Vec::<u16>::new());
        assert_eq!(n.missing(), 1);
        assert_eq!(poll(&mut n, last + 50 * MS, rtt), Vec::<u16>::new());
        assert_eq!((n.missing(), n.given_up(), n.nacks_sent()), (0, 1, 10));
        assert_eq!(n.next_deadline(rtt), None);
    }

    #[test]
    fn rtt_floor_and_default() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        n.on_packet(2, false, t0);
        assert_eq!(poll(&mut n, t0, None), vec![1]);
        assert_eq!(n.next_deadline(None), Some(t0 + 100 * MS));
        assert_eq!(n.next_deadline(Some(MS)), Some(t0 + 20 * MS));
        assert_eq!(n.next_deadline(Some(300 * MS)), Some(t0 + 300 * MS));
        assert_eq!(poll(&mut n, t0 + 19 * MS, Some(MS)), Vec::<u16>::new());
        assert_eq!(poll(&mut n, t0 + 20 * MS, Some(MS)), vec![1]);
        // An RTT too long to add to an instant never comes due, and does not panic.
        assert_eq!(n.next_deadline(Some(Duration::MAX)), None);
        assert_eq!(
            poll(&mut n, t0 + 1000 * MS, Some(Duration::MAX)),
            Vec::<u16>::new()
        );
    }

    #[test]
    fn late_packet_recovers_its_entry() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        n.on_packet(3, false, t0);
        assert_eq!(poll(&mut n, t0, None), vec![1, 2]);
        n.on_packet(2, false, t0 + 10 * MS);
        // A duplicate or a late packet that was never missing changes nothing.
        n.on_packet(2, false, t0 + 10 * MS);
        n.on_packet(3, false, t0 + 10 * MS);
        n.on_packet(0, false, t0 + 10 * MS);
        assert_eq!((n.missing(), n.recovered(), n.given_up()), (1, 1, 0));
        assert_eq!(poll(&mut n, t0 + 100 * MS, None), vec![1]);
    }

    #[test]
    fn key_frame_drops_older_entries() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        n.on_packet(10, false, t0);
        assert_eq!(n.missing(), 9);
        // A late key frame packet: 1..=4 dropped, 5 recovered, 6..=9 still missing.
        n.on_packet(5, true, t0);
        assert_eq!((n.missing(), n.recovered(), n.given_up()), (4, 1, 4));
        assert_eq!(poll(&mut n, t0, None), vec![6, 7, 8, 9]);
        // A new key frame packet after a gap: nothing older is asked for.
        n.on_packet(20, true, t0);
        assert_eq!((n.missing(), n.given_up()), (0, 8));
        assert_eq!(n.next_deadline(None), None);
        // Gaps after it are tracked again.
        n.on_packet(22, false, t0);
        assert_eq!(poll(&mut n, t0, None), vec![21]);
    }

    #[test]
    fn overflow_clears_the_table() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        // Exactly the bound fits.
        assert!(!n.on_packet(MAX_NACK_PACKETS as u64 + 1, false, t0));
        assert_eq!(n.missing(), MAX_NACK_PACKETS);
        // One more does not: cleared, and the caller asks for a key frame.
        assert!(n.on_packet(MAX_NACK_PACKETS as u64 + 3, false, t0));
        assert_eq!((n.missing(), n.given_up()), (0, MAX_NACK_PACKETS as u64));
        // A single gap larger than the bound.
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        assert!(n.on_packet(MAX_NACK_PACKETS as u64 + 2, false, t0));
        assert_eq!((n.missing(), n.given_up()), (0, 0));
        // Tracking resumes from the newest.
        n.on_packet(MAX_NACK_PACKETS as u64 + 4, false, t0);
        assert_eq!(poll(&mut n, t0, None), vec![MAX_NACK_PACKETS as u16 + 3]);
    }

    #[test]
    fn entries_too_far_behind_are_dropped() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(0, false, t0);
        n.on_packet(2, false, t0);
        for ext in 3..=MAX_PACKET_AGE + 1 {
            n.on_packet(ext, false, t0);
        }
        assert_eq!(n.missing(), 1);
        n.on_packet(MAX_PACKET_AGE + 2, false, t0);
        assert_eq!((n.missing(), n.given_up()), (0, 1));
    }

    #[test]
    fn poll_writes_at_most_out_len() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(100, false, t0);
        n.on_packet(106, false, t0 + MS);
        let mut out = [0u16; 2];
        let now = t0 + 5 * MS;
        assert_eq!(n.poll(now, None, &mut out), 2);
        assert_eq!(out, [101, 102]);
        // The rest are still due (from when the gap was seen).
        assert_eq!(n.next_deadline(None), Some(t0 + MS));
        assert_eq!(n.poll(now, None, &mut out), 2);
        assert_eq!(out, [103, 104]);
        assert_eq!(n.poll(now, None, &mut out), 1);
        assert_eq!(out[0], 105);
        assert_eq!(n.poll(now, None, &mut []), 0);
        assert_eq!(n.nacks_sent(), 5);
        assert_eq!(n.next_deadline(None), Some(now + DEFAULT_RTT));
    }

    #[test]
    fn sequence_numbers_wrap_in_the_output() {
        let t0 = Instant::now();
        let mut n = NackGenerator::new();
        n.on_packet(65_534, false, t0);
        n.on_packet(65_538, false, t0);
        assert_eq!(poll(&mut n, t0, None), vec![65_535, 0, 1]);
    }

    proptest! {
        /// Arbitrary extended numbers (in any order), key frames, clocks and output sizes: no
        /// panic, the table stays bounded, poll stays within `out`, every entry is accounted
        /// for, and next_deadline says exactly when poll has work.
        #[test]
        fn bounded_and_consistent(
            rtt_ms in proptest::option::of(0u64..300),
            ops in proptest::collection::vec(
                (0u64..30_000, any::<bool>(), 0u64..200, 0usize..40, 0u8..10), 1..300),
        ) {
            let t0 = Instant::now();
            let rtt = rtt_ms.map(Duration::from_millis);
            let mut n = NackGenerator::new();
            let mut now = t0;
            let mut out = [0u16; 40];
            let capacity = n.table.capacity();
            for (ext, key, advance_ms, out_len, kind) in ops {
                now += Duration::from_millis(advance_ms);
                // Mostly an increasing stream with small gaps, sometimes anything.
                let ext = if kind < 7 { n.newest.unwrap_or(0) + ext % 8 } else { ext };
                n.on_packet(ext, key && kind == 0, now);
                prop_assert!(n.missing() <= MAX_NACK_PACKETS);
                prop_assert!(capacity >= MAX_NACK_PACKETS);
                prop_assert_eq!(n.table.capacity(), capacity);
                let sorted = n.table.iter().zip(n.table.iter().skip(1)).all(|(a, b)| a.ext_seq < b.ext_seq);
                prop_assert!(sorted);
                let deadline = n.next_deadline(rtt);
                let (missing, given_up) = (n.missing(), n.given_up());
                let written = n.poll(now, rtt, &mut out[..out_len]);
                prop_assert!(written <= out_len);
                match deadline {
                    Some(d) if d <= now => prop_assert!(
                        written > 0 || n.given_up() > given_up || out_len == 0),
                    _ => prop_assert_eq!((written, n.missing()), (0, missing)),
                }
                for w in &out[..written] {
                    prop_assert!(n.table.iter().any(|m| m.ext_seq as u16 == *w));
                }
            }
        }

        /// Random sequence numbers through a receive stream into the generator: bounded.
        #[test]
        fn random_sequence_numbers_stay_bounded(
            pkts in proptest::collection::vec((any::<u16>(), 0u64..50, any::<bool>()), 1..500),
        ) {
            let t0 = Instant::now();
            let mut s = super::super::RecvStream::new(1, 90_000);
            let mut n = NackGenerator::new();
            let mut now = t0;
            let mut out = [0u16; 16];
            for (seq, advance_ms, key) in pkts {
                now += Duration::from_millis(advance_ms);
                use super::super::Arrival::{Late, New};
                if let New { ext_seq } | Late { ext_seq } = s.on_packet(seq, 0, now, false) {
                    n.on_packet(ext_seq, key, now);
                }
                prop_assert!(n.missing() <= MAX_NACK_PACKETS);
                prop_assert!(n.poll(now, None, &mut out) <= out.len());
            }
        }
    }
}
