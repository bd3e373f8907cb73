//! The loss-based controller of Google congestion control (draft-ietf-rmcat-gcc-02 section
//! 6): from the fraction of packets the feedback reports lost, at most once per
//! [`UPDATE_INTERVAL_US`] and over at least [`MIN_PACKETS`] packets,
//!
//! - below 2%: the estimate grows by 5%;
//! - above 10%: it shrinks to `1 - 0.5 * loss` of itself;
//! - in between: it holds.
//!
//! The estimate never stays above the delay-based one, so that when loss stops it climbs
//! from where the path was last known good rather than from a stale high.

/// Loss below this fraction lets the estimate grow.
const LOW_LOSS: f64 = 0.02;
/// Loss above this fraction makes it shrink.
const HIGH_LOSS: f64 = 0.10;
/// Growth per update at low loss.
const GROWTH: f64 = 1.05;
/// Fewest packets a loss fraction is computed over.
const MIN_PACKETS: u32 = 50;
/// Least time between two updates, in microseconds.
pub(crate) const UPDATE_INTERVAL_US: i64 = 100_000;

/// The loss-based estimate.
#[derive(Debug, Clone)]
pub(crate) struct LossBased {
    estimate: f64,
    received: u32,
    lost: u32,
    last_update_us: Option<i64>,
    last_fraction: f64,
}

impl LossBased {
    /// Starting at `initial` bits per second.
    pub(crate) fn new(initial: f64) -> Self {
        Self {
            estimate: initial,
            received: 0,
            lost: 0,
            last_update_us: None,
            last_fraction: 0.0,
        }
    }

    /// The estimate, bits per second.
    pub(crate) fn estimate(&self) -> f64 {
        self.estimate
    }

    /// The loss fraction of the latest update.
    #[cfg(test)]
    pub(crate) fn last_fraction(&self) -> f64 {
        self.last_fraction
    }

    /// Moves the estimate to `rate` (the application's limits changed).
    pub(crate) fn set_estimate(&mut self, rate: f64) {
        self.estimate = rate;
    }

    /// Counts what one feedback newly reported: packets received, packets lost, and packets
    /// reported lost before that arrived after all (they are taken back from the losses).
    pub(crate) fn on_reports(&mut self, received: u32, lost: u32, recovered: u32) {
        self.received = self.received.saturating_add(received);
        self.lost = self.lost.saturating_add(lost).saturating_sub(recovered);
    }

    /// Updates the estimate at `now_us` if enough was counted, capped by the delay-based
    /// estimate `ceiling` and kept within `bounds`.
    pub(crate) fn update(&mut self, now_us: i64, ceiling: f64, bounds: (f64, f64)) -> f64 {
        let total = self.received.saturating_add(self.lost);
        let due = self
            .last_update_us
            .is_none_or(|at| now_us - at >= UPDATE_INTERVAL_US);
        if total >= MIN_PACKETS && due {
            let fraction = f64::from(self.lost) / f64::from(total);
            if fraction < LOW_LOSS {
                self.estimate *= GROWTH;
            } else if fraction > HIGH_LOSS {
                self.estimate *= 1.0 - 0.5 * fraction;
            }
            self.last_fraction = fraction;
            self.received = 0;
            self.lost = 0;
            self.last_update_us = Some(now_us);
        }
        self.estimate = self
            .estimate
            .min(ceiling)
            .clamp(bounds.0, bounds.1.max(bounds.0));
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: (f64, f64) = (30_000.0, 1e12);

    fn run(loss_percent: u32, updates: i64) -> f64 {
        let mut l = LossBased::new(1_000_000.0);
        for i in 0..updates {
            l.on_reports(100 - loss_percent, loss_percent, 0);
            l.update(i * UPDATE_INTERVAL_US, 1e9, BOUNDS);
        }
        l.estimate()
    }

    #[test]
    fn low_loss_grows_moderate_holds_high_shrinks() {
        assert!(run(1, 10) > 1_500_000.0);
        assert_eq!(run(5, 10), 1_000_000.0);
        // 15% loss: 0.925 per update.
        let shrunk = run(15, 10);
        assert!((455_000.0..465_000.0).contains(&shrunk), "{shrunk}");
    }

    #[test]
    fn too_few_packets_or_too_soon_change_nothing() {
        let mut l = LossBased::new(1_000_000.0);
        l.on_reports(40, 9, 0);
        assert_eq!(l.update(0, 1e9, BOUNDS), 1_000_000.0);
        l.on_reports(0, 1, 0);
        assert!(l.update(0, 1e9, BOUNDS) < 1_000_000.0);
        l.on_reports(0, 100, 0);
        let after = l.update(50_000, 1e9, BOUNDS);
        assert_eq!(after, l.estimate());
        assert!(l.update(UPDATE_INTERVAL_US, 1e9, BOUNDS) < after);
    }

    #[test]
    fn recovered_packets_are_not_losses_and_the_ceiling_caps() {
        let mut l = LossBased::new(1_000_000.0);
        l.on_reports(80, 20, 0);
        l.on_reports(20, 0, 20);
        assert!(l.update(0, 1e9, BOUNDS) > 1_000_000.0);
        assert_eq!(l.update(UPDATE_INTERVAL_US, 700_000.0, BOUNDS), 700_000.0);
    }
}
