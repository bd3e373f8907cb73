//! The retransmission budget: retransmitted bytes over the last second may not exceed
//! [`RETRANSMIT_SHARE_PERCENT`] of the bytes sent over the last second plus
//! [`RETRANSMIT_BURST_BYTES`], so a receiver that NACKs everything cannot make a stream cost
//! much more than itself.
//!
//! Both sums are kept in [`BUCKETS`] buckets of [`BUCKET_MS`] milliseconds (a sliding window
//! of one second with 100 ms steps), with no allocation.

use std::time::Instant;

/// The share of the bytes sent in the last second that retransmissions may use, in percent.
pub(crate) const RETRANSMIT_SHARE_PERCENT: u64 = 50;
/// Bytes that may always be retransmitted within a second, on top of the share (so that a
/// stream that just started, or a low-rate audio stream, can repair a loss or two).
pub(crate) const RETRANSMIT_BURST_BYTES: u64 = 2_400;
/// The width of one bucket of the window.
const BUCKET_MS: u64 = 100;
/// The number of buckets in the one-second window.
const BUCKETS: usize = 10;

/// Bytes sent and retransmitted over the last second.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Bytes sent, per bucket.
    sent: [u32; BUCKETS],
    /// Bytes retransmitted, per bucket.
    resent: [u32; BUCKETS],
    /// The absolute number (milliseconds since the epoch / [`BUCKET_MS`]) of the newest bucket.
    newest: u64,
}

impl Budget {
    /// Counts `bytes` sent at `ms` milliseconds since the stream's epoch.
    pub(crate) fn on_sent(&mut self, bytes: usize, ms: u64) {
        let i = self.advance(ms);
        self.sent[i] = self.sent[i].saturating_add(saturate(bytes));
    }

    /// Counts `bytes` retransmitted at `ms` milliseconds since the stream's epoch.
    pub(crate) fn on_resent(&mut self, bytes: usize, ms: u64) {
        let i = self.advance(ms);
        self.resent[i] = self.resent[i].saturating_add(saturate(bytes));
    }

    /// How many more bytes may be retransmitted at `ms` milliseconds since the epoch.
    pub(crate) fn available(&mut self, ms: u64) -> u64 {
        self.advance(ms);
        let sent: u64 = self.sent.iter().map(|&b| u64::from(b)).sum();
        let resent: u64 = self.resent.iter().map(|&b| u64::from(b)).sum();
        (sent * RETRANSMIT_SHARE_PERCENT / 100 + RETRANSMIT_BURST_BYTES).saturating_sub(resent)
    }

    /// Moves the window so that its newest bucket holds `ms` (a time before the newest bucket
    /// counts in the newest) and returns that bucket's index.
    fn advance(&mut self, ms: u64) -> usize {
        let bucket = ms / BUCKET_MS;
        if bucket > self.newest {
            let stale = (bucket - self.newest).min(BUCKETS as u64);
            for b in bucket + 1 - stale..=bucket {
                let i = slot(b);
                self.sent[i] = 0;
                self.resent[i] = 0;
            }
            self.newest = bucket;
        }
        slot(self.newest)
    }
}

/// Milliseconds from `epoch` to `now` (zero if `now` is earlier).
pub(crate) fn ms_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// The bucket index of an absolute bucket number.
fn slot(bucket: u64) -> usize {
    // The remainder is below BUCKETS.
    (bucket % BUCKETS as u64) as usize
}

fn saturate(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_of_last_second_plus_burst() {
        let mut b = Budget::default();
        assert_eq!(b.available(0), RETRANSMIT_BURST_BYTES);
        for ms in (0..1000).step_by(50) {
            b.on_sent(1000, ms);
        }
        assert_eq!(b.available(999), 10_000 + RETRANSMIT_BURST_BYTES);
        b.on_resent(4000, 999);
        assert_eq!(b.available(999), 6_000 + RETRANSMIT_BURST_BYTES);
        // 100 ms later the first bucket (2,000 bytes sent) has left the window.
        assert_eq!(b.available(1000), 5_000 + RETRANSMIT_BURST_BYTES);
        // At 1.899 s only the bucket of 0.9 s is left: 2,000 bytes sent, 4,000 resent.
        assert_eq!(b.available(1899), 0);
        b.on_sent(0, 1899);
        assert_eq!(b.available(1900), RETRANSMIT_BURST_BYTES);
        assert_eq!(b.available(50_000), RETRANSMIT_BURST_BYTES);
    }

    #[test]
    fn more_resent_than_allowed_leaves_nothing() {
        let mut b = Budget::default();
        b.on_resent(10_000, 5);
        assert_eq!(b.available(5), 0);
    }
}
