//! A bitrate over the last second, kept in fixed buckets: recording a packet adds to one
//! counter and never allocates.

use std::time::Instant;

/// Buckets in the window.
const BUCKETS: usize = 10;
/// Milliseconds per bucket (the window is `BUCKETS * BUCKET_MS`).
const BUCKET_MS: u64 = 100;

/// Bytes seen over a sliding one-second window.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitrateMeter {
    /// The first packet's time: bucket 0 starts there.
    base: Option<Instant>,
    /// The bucket of the latest packet.
    slot: u64,
    bytes: [u32; BUCKETS],
}

impl BitrateMeter {
    /// Counts `bytes` seen at `now`.
    pub(crate) fn record(&mut self, now: Instant, bytes: usize) {
        let slot = self.slot_at(now);
        if slot > self.slot {
            // Empty the buckets skipped since the latest packet (all of them after a pause).
            let gap = (slot - self.slot).min(BUCKETS as u64);
            for i in 0..gap {
                self.bytes[((slot - i) % BUCKETS as u64) as usize] = 0;
            }
            self.slot = slot;
        }
        let b = &mut self.bytes[(self.slot % BUCKETS as u64) as usize];
        *b = b.saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
    }

    /// Bits per second over the last second (over the time since the first packet, if less).
    pub(crate) fn bitrate(&self, now: Instant) -> u64 {
        let Some(base) = self.base else {
            return 0;
        };
        let now_ms = now.saturating_duration_since(base).as_millis() as u64;
        let now_slot = now_ms / BUCKET_MS;
        let oldest = now_slot
            .saturating_sub(BUCKETS as u64 - 1)
            .max(self.slot.saturating_sub(BUCKETS as u64 - 1));
        if oldest > self.slot {
            return 0;
        }
        let bytes: u64 = (oldest..=self.slot)
            .map(|s| u64::from(self.bytes[(s % BUCKETS as u64) as usize]))
            .sum();
        let window_ms = (now_ms - now_slot.saturating_sub(BUCKETS as u64 - 1) * BUCKET_MS).max(1);
        bytes * 8 * 1000 / window_ms
    }

    fn slot_at(&mut self, now: Instant) -> u64 {
        let base = *self.base.get_or_insert(now);
        now.saturating_duration_since(base).as_millis() as u64 / BUCKET_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::disallowed_methods)] // The test owns the clock: one real origin.
    fn a_steady_stream_measures_its_rate_and_silence_empties_the_window() {
        let start = Instant::now();
        let mut m = BitrateMeter::default();
        // 1000 bytes every 10 ms: 800 kbit/s, for three seconds.
        for i in 0..300 {
            m.record(start + Duration::from_millis(10 * i), 1000);
        }
        let at = start + Duration::from_millis(2995);
        let rate = m.bitrate(at);
        assert!((760_000..=840_000).contains(&rate), "{rate}");
        // Half a second of silence halves it; more than a second empties it.
        let half = m.bitrate(at + Duration::from_millis(500));
        assert!((360_000..=440_000).contains(&half), "{half}");
        assert_eq!(m.bitrate(at + Duration::from_millis(1100)), 0);
        // Recording again after a long pause does not count the old buckets.
        m.record(at + Duration::from_secs(5), 1000);
        assert!(
            m.bitrate(at + Duration::from_secs(5)) <= 10_000,
            "one packet"
        );
    }
}
