//! The acknowledged bitrate: what the feedback says reached the endpoint, per second, over
//! the last [`WINDOW_US`] of arrival time (the receiver's clock).
//!
//! Bytes are summed in [`BUCKETS`] buckets of fixed width by arrival time, in a fixed array;
//! a packet whose arrival falls before the window is left out.

/// Buckets in the ring.
const BUCKETS: usize = 24;
/// Width of one bucket, in microseconds.
const BUCKET_US: i64 = 25_000;
/// The window the rate is measured over, in microseconds (20 buckets).
pub(crate) const WINDOW_US: i64 = 500_000;
/// The shortest span of arrivals a rate is given for.
const MIN_SPAN_US: i64 = 100_000;

/// The acknowledged bitrate estimator.
#[derive(Debug, Clone)]
pub(crate) struct AckedBitrate {
    /// (bucket index, bytes), at `index % BUCKETS`.
    buckets: [(i64, u64); BUCKETS],
    /// The latest arrival seen.
    newest_us: Option<i64>,
    /// The first arrival since the estimator (re)started.
    first_us: i64,
}

impl Default for AckedBitrate {
    fn default() -> Self {
        Self {
            buckets: [(i64::MIN, 0); BUCKETS],
            newest_us: None,
            first_us: 0,
        }
    }
}

impl AckedBitrate {
    /// Counts `size` bytes that arrived at `arrival_us`.
    pub(crate) fn on_arrival(&mut self, arrival_us: i64, size: u16) {
        let newest = match self.newest_us {
            None => {
                self.first_us = arrival_us;
                arrival_us
            }
            Some(n) if arrival_us - n > 10 * WINDOW_US => {
                // A jump far ahead (a clock reset or a hostile report): start again.
                *self = Self::default();
                self.first_us = arrival_us;
                arrival_us
            }
            Some(n) => n.max(arrival_us),
        };
        self.newest_us = Some(newest);
        if arrival_us <= newest - WINDOW_US {
            return;
        }
        let index = arrival_us.div_euclid(BUCKET_US);
        let slot = &mut self.buckets[index.rem_euclid(BUCKETS as i64) as usize];
        if slot.0 != index {
            *slot = (index, 0);
        }
        slot.1 += u64::from(size);
    }

    /// The bitrate, bits per second, once arrivals span [`MIN_SPAN_US`].
    pub(crate) fn bitrate(&self) -> Option<f64> {
        let newest = self.newest_us?;
        let start = (newest - WINDOW_US).max(self.first_us);
        let span = newest - start;
        if span < MIN_SPAN_US {
            return None;
        }
        let first_bucket = start.div_euclid(BUCKET_US);
        let last_bucket = newest.div_euclid(BUCKET_US);
        let bytes: u64 = self
            .buckets
            .iter()
            .filter(|(index, _)| (first_bucket..=last_bucket).contains(index))
            .map(|(_, bytes)| bytes)
            .sum();
        // The buckets cover from the start of the first one to the end of the last.
        let covered = (last_bucket + 1 - first_bucket) * BUCKET_US;
        Some(bytes as f64 * 8.0 * 1e6 / covered.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_measures_its_rate() {
        let mut a = AckedBitrate::default();
        assert_eq!(a.bitrate(), None);
        // 1000 bytes every 10 ms: 800 kbit/s.
        for i in 0..200 {
            a.on_arrival(1_000_000 + i * 10_000, 1000);
        }
        let rate = a.bitrate().unwrap();
        assert!((760_000.0..840_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn old_arrivals_fall_out_and_a_jump_restarts() {
        let mut a = AckedBitrate::default();
        for i in 0..100 {
            a.on_arrival(i * 10_000, 1000);
        }
        // Half the rate for the last window.
        for i in 0..100 {
            a.on_arrival(1_000_000 + i * 20_000, 1000);
        }
        let rate = a.bitrate().unwrap();
        assert!((380_000.0..420_000.0).contains(&rate), "{rate}");
        // Late reports from before the window change nothing.
        a.on_arrival(0, 60_000);
        assert_eq!(a.bitrate().unwrap(), rate);
        a.on_arrival(1_000_000_000, 1000);
        assert_eq!(a.bitrate(), None);
    }
}
