//! The delay-based rate controller of Google congestion control (draft-ietf-rmcat-gcc-02
//! section 5.5): a state machine driven by the over-use detector.
//!
//! - over-use: decrease to [`BETA`] times the acknowledged bitrate, at most once per response
//!   time (a round trip plus 100 ms), then hold;
//! - normal: increase, multiplicatively (8% a second) while far from the bitrate where
//!   over-use was last seen, additively (half a packet per response time) near it; never
//!   beyond 1.5 times the acknowledged bitrate plus 10 kbit/s;
//! - under-use: hold, letting the queues drain.

use super::trendline::Usage;

/// The fraction of the acknowledged bitrate a decrease goes to.
pub(crate) const BETA: f64 = 0.85;
/// Multiplicative increase per second.
const INCREASE_PER_SECOND: f64 = 1.08;
/// Bits of the packet size the additive increase assumes.
const PACKET_BITS: f64 = 1200.0 * 8.0;
/// Weight of a new sample in the average bitrate at over-use.
const AVG_WEIGHT: f64 = 0.05;
/// Bounds of the normalized variance of the bitrate at over-use (kbit/s).
const VAR_BOUNDS: (f64, f64) = (0.4, 2.5);
/// Longest time step an increase covers, in microseconds.
const MAX_STEP_US: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

/// The rate controller.
#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    rate: f64,
    state: State,
    last_update_us: Option<i64>,
    last_decrease_us: Option<i64>,
    /// The average acknowledged bitrate at over-use, in kbit/s, and its normalized variance.
    avg_max_kbps: Option<f64>,
    var_max: f64,
    rtt_ms: f64,
}

impl Aimd {
    /// A controller starting at `initial` bits per second.
    pub(crate) fn new(initial: f64) -> Self {
        Self {
            rate: initial,
            state: State::Hold,
            last_update_us: None,
            last_decrease_us: None,
            avg_max_kbps: None,
            var_max: VAR_BOUNDS.0,
            rtt_ms: 100.0,
        }
    }

    /// The current rate, bits per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Moves the rate to `rate` (the application's limits changed).
    pub(crate) fn set_rate(&mut self, rate: f64) {
        self.rate = rate;
    }

    /// The round-trip time to the endpoint, when known.
    pub(crate) fn set_rtt_ms(&mut self, rtt_ms: f64) {
        self.rtt_ms = rtt_ms.clamp(1.0, 10_000.0);
    }

    /// Acts on the detector's verdict at `now_us` (local clock) with the acknowledged bitrate,
    /// when known; returns the new rate, kept within `bounds`.
    pub(crate) fn update(
        &mut self,
        usage: Usage,
        acked: Option<f64>,
        now_us: i64,
        bounds: (f64, f64),
    ) -> f64 {
        self.state = match (usage, self.state) {
            (Usage::Overuse, _) => State::Decrease,
            (Usage::Underuse, _) => State::Hold,
            (Usage::Normal, State::Hold | State::Increase) => State::Increase,
            (Usage::Normal, State::Decrease) => State::Hold,
        };
        let step = self
            .last_update_us
            .map_or(0, |last| (now_us - last).clamp(0, MAX_STEP_US));
        match self.state {
            State::Hold => {}
            State::Increase => self.increase(acked, step),
            State::Decrease => self.decrease(acked, now_us),
        }
        self.rate = self.rate.clamp(bounds.0, bounds.1.max(bounds.0));
        self.last_update_us = Some(now_us);
        self.rate
    }

    fn response_ms(&self) -> f64 {
        self.rtt_ms + 100.0
    }

    fn increase(&mut self, acked: Option<f64>, step_us: i64) {
        let step_s = step_us as f64 / 1e6;
        if let (Some(acked), Some(avg)) = (acked, self.avg_max_kbps) {
            if acked / 1000.0 > avg + 3.0 * self.std_max_kbps(avg) {
                // Well above where over-use was seen: that knowledge is stale.
                self.avg_max_kbps = None;
            }
        }
        let near = match (acked, self.avg_max_kbps) {
            (Some(acked), Some(avg)) => {
                (acked / 1000.0 - avg).abs() <= 3.0 * self.std_max_kbps(avg)
            }
            _ => false,
        };
        let grown = if near {
            let per_second = 0.5 * PACKET_BITS * 1000.0 / self.response_ms();
            self.rate + per_second.max(1000.0) * step_s
        } else {
            let factor = INCREASE_PER_SECOND.powf(step_s);
            (self.rate * factor).max(self.rate + 1000.0 * step_s)
        };
        self.rate = match acked {
            Some(acked) => {
                let limit = 1.5 * acked + 10_000.0;
                if grown > limit {
                    self.rate.max(limit).min(grown)
                } else {
                    grown
                }
            }
            None => grown,
        };
    }

    fn decrease(&mut self, acked: Option<f64>, now_us: i64) {
        let response_us = (self.response_ms() * 1000.0) as i64;
        if self
            .last_decrease_us
            .is_some_and(|at| now_us - at < response_us)
        {
            self.state = State::Hold;
            return;
        }
        let target = acked.map_or(self.rate * BETA, |a| a * BETA);
        self.rate = self.rate.min(target);
        if let Some(acked) = acked {
            self.observe_max(acked / 1000.0);
        }
        self.last_decrease_us = Some(now_us);
        self.state = State::Hold;
    }

    fn observe_max(&mut self, kbps: f64) {
        let avg = match self.avg_max_kbps {
            Some(avg) if (kbps - avg).abs() <= 3.0 * self.std_max_kbps(avg) => {
                (1.0 - AVG_WEIGHT) * avg + AVG_WEIGHT * kbps
            }
            _ => kbps,
        };
        let norm = avg.max(1.0);
        self.var_max = ((1.0 - AVG_WEIGHT) * self.var_max
            + AVG_WEIGHT * (avg - kbps) * (avg - kbps) / norm)
            .clamp(VAR_BOUNDS.0, VAR_BOUNDS.1);
        self.avg_max_kbps = Some(avg);
    }

    fn std_max_kbps(&self, avg: f64) -> f64 {
        (self.var_max * avg.max(1.0)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: (f64, f64) = (30_000.0, 1e12);

    #[test]
    fn normal_increases_about_8_percent_a_second_when_far_from_convergence() {
        let mut a = Aimd::new(1_000_000.0);
        for i in 0..=10 {
            a.update(Usage::Normal, None, i * 100_000, BOUNDS);
        }
        let rate = a.rate();
        assert!((1_070_000.0..1_090_000.0).contains(&rate), "{rate}");
    }

    #[test]
    fn overuse_decreases_to_beta_times_acked_once_per_response_time() {
        let mut a = Aimd::new(3_000_000.0);
        a.update(Usage::Normal, Some(2_000_000.0), 0, BOUNDS);
        let rate = a.update(Usage::Overuse, Some(2_000_000.0), 100_000, BOUNDS);
        assert_eq!(rate, 2_000_000.0 * BETA);
        // Again within the response time: held.
        let rate = a.update(Usage::Overuse, Some(1_000_000.0), 150_000, BOUNDS);
        assert_eq!(rate, 2_000_000.0 * BETA);
        let rate = a.update(Usage::Overuse, Some(1_000_000.0), 400_000, BOUNDS);
        assert_eq!(rate, 1_000_000.0 * BETA);
    }

    #[test]
    fn increase_is_additive_near_the_last_overuse_and_capped_by_acked() {
        let mut a = Aimd::new(1_000_000.0);
        a.update(Usage::Overuse, Some(1_000_000.0), 0, BOUNDS);
        let start = a.rate();
        for i in 1..=10 {
            a.update(Usage::Normal, Some(990_000.0), i * 100_000, BOUNDS);
        }
        // Half a 1200-byte packet per 200 ms: 24 kbit/s in a second.
        let grown = a.rate() - start;
        assert!((20_000.0..30_000.0).contains(&grown), "{grown}");

        let mut a = Aimd::new(1_000_000.0);
        for i in 0..100 {
            a.update(Usage::Normal, Some(200_000.0), i * 100_000, BOUNDS);
        }
        assert!(a.rate() <= 1_000_000.0);
        let mut a = Aimd::new(100_000.0);
        for i in 0..100 {
            a.update(Usage::Normal, Some(100_000.0), i * 100_000, BOUNDS);
        }
        assert_eq!(a.rate(), 160_000.0);
    }
}
