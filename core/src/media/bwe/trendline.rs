//! The delay trend and the over-use detector of Google congestion control
//! (draft-ietf-rmcat-gcc-02 sections 5.3 and 5.4, with the trend of the one-way delay taken as
//! the slope of a linear regression instead of a Kalman filter's estimate).
//!
//! Each group of packets gives a delay variation `d`: how much longer the group took to
//! arrive after the previous one than it took to be sent after it. The variations are summed
//! into the accumulated queueing delay, smoothed exponentially; the slope of that smoothed
//! delay over arrival time, across the last [`WINDOW`] groups, is the trend. A rising queue
//! gives a positive slope. The trend, scaled, is compared with a threshold that adapts to it,
//! so that the detector is neither starved by a competing loss-based flow nor tripped by
//! jitter.

/// Groups in the regression window.
pub(crate) const WINDOW: usize = 20;
/// Weight of the previous smoothed delay.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before it is compared with the threshold.
const GAIN: f64 = 4.0;
/// The trend is scaled by the number of deltas seen, up to this many.
const MAX_DELTAS: f64 = 60.0;
/// The threshold's start, in milliseconds.
const INITIAL_THRESHOLD_MS: f64 = 12.5;
/// The threshold's bounds, in milliseconds.
const THRESHOLD_BOUNDS: (f64, f64) = (6.0, 600.0);
/// How fast the threshold follows a trend above it (per ms).
const K_UP: f64 = 0.0087;
/// How fast the threshold follows a trend below it (per ms).
const K_DOWN: f64 = 0.039;
/// A trend further than this above the threshold is a spike: the threshold is not moved.
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
/// Longest time step the threshold adapts over, in milliseconds.
const MAX_ADAPT_STEP_MS: f64 = 100.0;
/// How long the trend must stay above the threshold before over-use is signalled (ms).
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the detector concludes about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// Queues are neither growing nor draining.
    Normal,
    /// Queues are growing: the sender is above the path's capacity.
    Overuse,
    /// Queues are draining.
    Underuse,
}

/// The trendline estimator with its over-use detector.
#[derive(Debug, Clone)]
pub(crate) struct Trendline {
    /// (arrival ms since the first group, smoothed delay ms), oldest first from `head`.
    points: [(f64, f64); WINDOW],
    len: usize,
    head: usize,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: f64,
    threshold_ms: f64,
    last_adapt_ms: Option<f64>,
    prev_trend: f64,
    time_over_ms: f64,
    overuse_count: u32,
    usage: Usage,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            points: [(0.0, 0.0); WINDOW],
            len: 0,
            head: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_adapt_ms: None,
            prev_trend: 0.0,
            time_over_ms: -1.0,
            overuse_count: 0,
            usage: Usage::Normal,
        }
    }
}

impl Trendline {
    /// Takes one group's delay variation `delay_ms` (inter-arrival minus inter-departure),
    /// the time between its departure and the previous group's, and its arrival time (ms on
    /// the receiver's clock); returns the detector's verdict.
    pub(crate) fn update(&mut self, delay_ms: f64, send_delta_ms: f64, arrival_ms: f64) -> Usage {
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.deltas = (self.deltas + 1.0).min(MAX_DELTAS);
        self.accumulated_ms += delay_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let point = (arrival_ms - first, self.smoothed_ms);
        if self.len < WINDOW {
            self.points[(self.head + self.len) % WINDOW] = point;
            self.len += 1;
        } else {
            self.points[self.head] = point;
            self.head = (self.head + 1) % WINDOW;
        }
        let trend = if self.len == WINDOW {
            self.slope().unwrap_or(self.prev_trend)
        } else {
            self.prev_trend
        };
        self.detect(trend, send_delta_ms, arrival_ms);
        self.usage
    }

    /// The current verdict.
    pub(crate) fn usage(&self) -> Usage {
        self.usage
    }

    /// The current threshold, in milliseconds.
    #[cfg(test)]
    pub(crate) fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// The least-squares slope of the points in the window.
    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let (sx, sy) = self
            .points
            .iter()
            .take(self.len)
            .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = self
            .points
            .iter()
            .take(self.len)
            .fold((0.0, 0.0), |(num, den), &(x, y)| {
                (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
            });
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        let modified = self.deltas * trend * GAIN;
        if modified > self.threshold_ms {
            if self.time_over_ms < 0.0 {
                // Start the timer at half a step: the over-use began somewhere in it.
                self.time_over_ms = send_delta_ms / 2.0;
            } else {
                self.time_over_ms += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.time_over_ms > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.prev_trend
            {
                self.time_over_ms = 0.0;
                self.overuse_count = 0;
                self.usage = Usage::Overuse;
            }
        } else if modified < -self.threshold_ms {
            self.time_over_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Underuse;
        } else {
            self.time_over_ms = -1.0;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(modified, now_ms);
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_adapt_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold_ms + MAX_ADAPT_OFFSET_MS {
            // A spike (a route change, a burst of cross traffic): leave the threshold.
            self.last_adapt_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let step = (now_ms - last).clamp(0.0, MAX_ADAPT_STEP_MS);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * step;
        self.threshold_ms = self
            .threshold_ms
            .clamp(THRESHOLD_BOUNDS.0, THRESHOLD_BOUNDS.1);
        self.last_adapt_ms = Some(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` groups 5 ms apart whose delay grows by `growth_ms` each.
    fn feed(t: &mut Trendline, start_ms: f64, n: usize, growth_ms: f64) -> Vec<Usage> {
        (0..n)
            .map(|i| t.update(growth_ms, 5.0, start_ms + i as f64 * 5.0))
            .collect()
    }

    #[test]
    fn a_steady_path_is_normal() {
        let mut t = Trendline::default();
        let usages = feed(&mut t, 0.0, 200, 0.0);
        assert!(usages.iter().all(|u| *u == Usage::Normal));
        // The threshold settles toward its floor when nothing happens.
        assert!(t.threshold_ms() < INITIAL_THRESHOLD_MS);
    }

    #[test]
    fn a_growing_queue_is_overuse_and_a_draining_one_underuse() {
        let mut t = Trendline::default();
        feed(&mut t, 0.0, 40, 0.0);
        // 1 ms more delay every 5 ms group: the queue grows at 20% of the send rate.
        let usages = feed(&mut t, 200.0, 30, 1.0);
        assert!(usages.contains(&Usage::Overuse), "{usages:?}");
        let usages = feed(&mut t, 350.0, 30, -1.0);
        assert!(usages.contains(&Usage::Underuse), "{usages:?}");
    }

    #[test]
    fn jitter_without_a_trend_is_not_overuse() {
        let mut t = Trendline::default();
        let usages: Vec<Usage> = (0..400)
            .map(|i| {
                let jitter = if i % 2 == 0 { 3.0 } else { -3.0 };
                t.update(jitter, 5.0, i as f64 * 5.0)
            })
            .collect();
        assert!(!usages.contains(&Usage::Overuse));
    }
}
