//! Delay distributions in constant memory: 10 µs buckets up to one second, so a run of any
//! length records every packet without growing.

/// Bucket width, microseconds.
const STEP_US: u32 = 10;
/// Buckets; delays from one second on share the last one (the maximum is kept exactly).
const BUCKETS: usize = 100_000;

/// A histogram of delays in microseconds.
#[derive(Debug, Clone)]
pub struct Delays {
    counts: Vec<u64>,
    samples: u64,
    max: u32,
}

impl Default for Delays {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            samples: 0,
            max: 0,
        }
    }
}

impl Delays {
    /// Records one delay.
    pub fn push(&mut self, us: u32) {
        let i = ((us / STEP_US) as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.samples += 1;
        self.max = self.max.max(us);
    }

    /// How many delays were recorded.
    pub fn len(&self) -> usize {
        self.samples as usize
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// The largest delay recorded.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The `q` quantile (0..=1), to the bucket's lower edge (10 µs resolution).
    pub fn quantile(&self, q: f64) -> u32 {
        if self.samples == 0 {
            return 0;
        }
        let rank = ((self.samples - 1) as f64 * q).round() as u64;
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen > rank {
                return (i as u32 * STEP_US).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_sorted_samples_to_the_bucket() {
        let mut d = Delays::default();
        for us in 0..1000u32 {
            d.push(us * 7);
        }
        assert_eq!(d.len(), 1000);
        assert_eq!(d.max(), 6993);
        assert!((d.quantile(0.5) as i64 - 3500).abs() <= 10);
        assert!((d.quantile(0.99) as i64 - 6930).abs() <= 10);
        d.push(5_000_000);
        assert_eq!(d.max(), 5_000_000);
        assert_eq!(Delays::default().quantile(0.5), 0);
    }
}
