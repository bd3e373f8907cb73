//! Bandwidth estimation for what a transport sends, from the transport-wide congestion control
//! feedback its endpoint returns (Google congestion control, draft-ietf-rmcat-gcc-02, on the
//! sender's side).
//!
//! - [`history`]: every packet sent with a transport-wide sequence number: size, send time.
//! - feedback ([`Bwe::on_feedback`]): each reported packet matched to what was sent, its
//!   arrival put on one timeline; duplicates, unsent and forgotten packets ignored and counted.
//! - [`delay`] and [`trendline`]: packet groups, their delay variations, the trend of the
//!   queueing delay and the over-use detector; [`aimd`]: the rate controller it drives.
//! - [`loss`]: the loss-based controller; [`acked`]: the acknowledged bitrate.
//! - [`probe`]: clusters of padding above the estimate, and what their feedback says the
//!   path carried (it raises the estimate, so that a consumer can move up a layer).
//!
//! The estimate is the smaller of the delay-based and loss-based ones, no higher than the
//! endpoint's REMB or the application's maximum, no lower than the application's minimum.
//! Nothing here allocates after the history's ring, at the first packet sent.

pub(crate) mod acked;
pub(crate) mod aimd;
pub(crate) mod delay;
pub(crate) mod history;
pub(crate) mod loss;
pub(crate) mod probe;
pub(crate) mod trendline;

#[cfg(test)]
mod tests;

use std::time::Instant;

use crate::media::rtcp::TransportCc;
use acked::AckedBitrate;
use aimd::Aimd;
use delay::DelayBased;
use history::{Lookup, Reported, SendHistory};
use loss::LossBased;
use probe::{Outcome, Prober};
use trendline::Usage;

/// The estimate before any feedback when the application gives none (mediasoup's default
/// `initialAvailableOutgoingBitrate`).
pub const DEFAULT_INITIAL_BITRATE: u64 = 600_000;

/// The estimator never goes below this, whatever the feedback says.
const FLOOR_BPS: u64 = 30_000;

/// Counters of the feedback an estimator was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BweCounters {
    /// Transport-cc feedback packets taken.
    pub(crate) feedbacks: u64,
    /// Feedback packets that changed nothing: nothing sent yet, or every report ignored.
    pub(crate) feedbacks_ignored: u64,
    /// Reports ignored: about packets never sent, forgotten (older than the history), or
    /// already reported received.
    pub(crate) reports_ignored: u64,
}

/// One transport's bandwidth estimator.
#[derive(Debug)]
pub(crate) struct Bwe {
    history: SendHistory,
    delay: DelayBased,
    aimd: Aimd,
    loss: LossBased,
    acked: AckedBitrate,
    /// The local clock's zero: the first packet sent.
    base: Option<Instant>,
    /// The unwrapped reference time of the latest feedback (64 ms units).
    reference: Option<i64>,
    remb: Option<u64>,
    min: u64,
    max: Option<u64>,
    estimate: u64,
    prober: Prober,
    pub(crate) counters: BweCounters,
}

impl Bwe {
    /// An estimator starting at `initial` bits per second.
    pub(crate) fn new(initial: u64) -> Self {
        let initial = initial.max(FLOOR_BPS);
        Self {
            history: SendHistory::default(),
            delay: DelayBased::default(),
            aimd: Aimd::new(initial as f64),
            loss: LossBased::new(initial as f64),
            acked: AckedBitrate::default(),
            base: None,
            reference: None,
            remb: None,
            min: 0,
            max: None,
            estimate: initial,
            prober: Prober::default(),
            counters: BweCounters::default(),
        }
    }

    /// The available bitrate, bits per second.
    pub(crate) fn estimate(&self) -> u64 {
        self.estimate
    }

    /// The acknowledged bitrate, bits per second, when feedback has said enough.
    #[cfg(test)]
    pub(crate) fn acked_bitrate(&self) -> Option<u64> {
        self.acked.bitrate().map(|b| b as u64)
    }

    /// The application's maximum (`None`: no limit).
    pub(crate) fn max(&self) -> Option<u64> {
        self.max
    }

    /// The application's minimum (0: none).
    pub(crate) fn min(&self) -> u64 {
        self.min
    }

    /// Sets the application's maximum (`None`: no limit).
    pub(crate) fn set_max(&mut self, max: Option<u64>) {
        self.max = max;
        self.apply_bounds();
    }

    /// Sets the application's minimum (0: none).
    pub(crate) fn set_min(&mut self, min: u64) {
        self.min = min;
        self.apply_bounds();
    }

    /// The endpoint's receiver estimated maximum bitrate: an upper bound from now on.
    pub(crate) fn on_remb(&mut self, bitrate: u64) {
        self.remb = Some(bitrate);
        self.apply_bounds();
    }

    /// The round-trip time to the endpoint, when measured.
    pub(crate) fn set_rtt(&mut self, rtt: std::time::Duration) {
        self.aimd.set_rtt_ms(rtt.as_secs_f64() * 1000.0);
    }

    /// Records a packet sent at `now` with transport-wide sequence number `seq`, `size` bytes
    /// on the wire; `flags` from [`history`] ([`history::FLAG_RTX`]).
    pub(crate) fn on_sent(&mut self, seq: u16, size: usize, now: Instant, flags: u8) {
        let sent_us = self.local_us(now);
        self.history.on_sent(seq, size, sent_us, flags);
    }

    /// The allocator would like to send `goal` bits per second (0: nothing more) while it
    /// sends `media`: starts a probe cluster when one is due (see [`probe`]). Nothing is
    /// probed before the first packet was sent.
    pub(crate) fn want_probe(&mut self, goal: u64, media: u64, now: Instant) {
        if self.base.is_none() {
            return;
        }
        let now_us = self.local_us(now);
        // A cluster whose feedback never came.
        if let Some(outcome) = self.prober.poll_outcome(None, now_us) {
            self.apply_probe(outcome, now_us);
        }
        // Not into a queue the detector sees growing.
        let goal = if self.delay.usage() == Usage::Overuse {
            0
        } else {
            goal
        };
        let upper = self.bounds().1 as u64;
        self.prober.want(goal, media, self.estimate, upper, now_us);
    }

    /// Whether a probe padding packet is due at `now`.
    pub(crate) fn probe_due(&mut self, now: Instant) -> bool {
        self.base.is_some() && {
            let now_us = self.local_us(now);
            self.prober.due(now_us)
        }
    }

    /// When the next probe padding packet is due.
    pub(crate) fn next_probe_at(&self) -> Option<Instant> {
        let base = self.base?;
        let us = self.prober.next_send_us()?;
        Some(base + std::time::Duration::from_micros(us.max(0) as u64))
    }

    /// Records a probe padding packet sent at `now` (as [`on_sent`](Self::on_sent)).
    pub(crate) fn on_probe_sent(&mut self, seq: u16, size: usize, now: Instant) {
        let sent_us = self.local_us(now);
        let ext = self
            .history
            .on_sent(seq, size, sent_us, history::FLAG_PROBE);
        self.prober.on_padding_sent(ext, sent_us);
    }

    /// The probe cluster due cannot be sent: it is given up (and probing rests).
    pub(crate) fn abandon_probe(&mut self, now: Instant) {
        let now_us = self.local_us(now);
        self.prober.abandon(now_us);
    }

    /// What probing did so far.
    pub(crate) fn probe_counters(&self) -> probe::ProbeCounters {
        self.prober.counters
    }

    /// Takes one transport-cc feedback packet from the endpoint, received at `now`.
    pub(crate) fn on_feedback(&mut self, feedback: &TransportCc<'_>, now: Instant) {
        self.counters.feedbacks += 1;
        let now_us = self.local_us(now);
        if self.history.highest().is_none() {
            self.counters.feedbacks_ignored += 1;
            return;
        }
        let reference = self.unwrap_reference(feedback.reference_time());
        let reference_us = reference.saturating_mul(64_000);
        let total = u64::from(feedback.packet_status_count());
        let (mut seen, mut received, mut lost, mut recovered) = (0u64, 0u32, 0u32, 0u32);
        let mut worst: Option<Usage> = None;
        let mut highest_reported = None;
        for (seq, offset) in feedback.packets() {
            seen += 1;
            let Some(ext) = self.history.unwrap(seq) else {
                break;
            };
            let record = match self.history.get_mut(ext, now_us) {
                Lookup::Found(record) => record,
                Lookup::Forgotten => {
                    self.counters.reports_ignored += 1;
                    continue;
                }
                Lookup::Unsent => {
                    // Sequence numbers only grow from here: the rest are unsent too.
                    self.counters.reports_ignored += total.saturating_sub(seen) + 1;
                    break;
                }
            };
            highest_reported = Some(ext);
            if self.prober.watches(ext) {
                let arrival = offset.map(|o| reference_us.saturating_add(o));
                self.prober
                    .on_report(ext, record.sent_us, record.size, arrival);
            }
            match (offset, record.reported) {
                (None, Reported::No) => {
                    record.reported = Reported::Lost;
                    lost += 1;
                }
                (None, _) => {}
                (Some(_), Reported::Received) => self.counters.reports_ignored += 1,
                (Some(offset), before) => {
                    if before == Reported::Lost {
                        recovered += 1;
                    }
                    record.reported = Reported::Received;
                    received += 1;
                    let arrival_us = reference_us.saturating_add(offset);
                    self.acked.on_arrival(arrival_us, record.size);
                    if let Some(usage) = self.delay.on_packet(record.sent_us, arrival_us) {
                        worst = Some(match (worst, usage) {
                            (Some(Usage::Overuse), _) | (_, Usage::Overuse) => Usage::Overuse,
                            _ => usage,
                        });
                    }
                }
            }
        }
        if received == 0 && lost == 0 {
            self.counters.feedbacks_ignored += 1;
            return;
        }
        let bounds = self.bounds();
        let acked = self.acked.bitrate();
        if received > 0 {
            let usage = worst.unwrap_or_else(|| self.delay.usage());
            self.aimd.update(usage, acked, now_us, bounds);
        }
        self.loss.on_reports(received, lost, recovered);
        self.loss.update(now_us, self.aimd.rate(), bounds);
        self.estimate = self.combined();
        if let Some(outcome) = self.prober.poll_outcome(highest_reported, now_us) {
            self.apply_probe(outcome, now_us);
        }
    }

    /// A probe cluster's outcome: a rate the path carried raises the estimate to it, unless
    /// the delay detector sees over-use (then the cluster failed after all).
    fn apply_probe(&mut self, outcome: Outcome, now_us: i64) {
        let (Outcome::Carried(rate) | Outcome::Saturated(rate)) = outcome else {
            return;
        };
        if self.delay.usage() == Usage::Overuse {
            self.prober.fail_on_overuse(outcome, now_us);
            return;
        }
        if rate > self.estimate as f64 {
            let (lower, upper) = self.bounds();
            let rate = rate.clamp(lower, upper);
            self.aimd.set_rate(self.aimd.rate().max(rate));
            self.loss.set_estimate(self.loss.estimate().max(rate));
            self.estimate = self.combined();
        }
    }

    /// The loss fraction of the latest loss-based update.
    #[cfg(test)]
    pub(crate) fn loss_fraction(&self) -> f64 {
        self.loss.last_fraction()
    }

    /// Microseconds since the first packet sent.
    fn local_us(&mut self, now: Instant) -> i64 {
        let base = *self.base.get_or_insert(now);
        i64::try_from(now.saturating_duration_since(base).as_micros()).unwrap_or(i64::MAX / 2)
    }

    /// The 24-bit reference time unwrapped against the previous feedback's.
    fn unwrap_reference(&mut self, raw: u32) -> i64 {
        const SPAN: i64 = 1 << 24;
        let raw = i64::from(raw & 0xFF_FFFF);
        let unwrapped = match self.reference {
            None => raw,
            Some(last) => {
                let mut diff = (raw - last.rem_euclid(SPAN)).rem_euclid(SPAN);
                if diff >= SPAN / 2 {
                    diff -= SPAN;
                }
                last + diff
            }
        };
        self.reference = Some(unwrapped);
        unwrapped
    }

    /// What the estimate may be: at least the floor and the application's minimum, at most
    /// the application's maximum and the endpoint's REMB (the minimum wins a conflict).
    fn bounds(&self) -> (f64, f64) {
        let lower = self.min.max(FLOOR_BPS);
        let upper = match (self.max, self.remb) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => u64::MAX,
        };
        (lower as f64, upper.max(lower) as f64)
    }

    fn combined(&self) -> u64 {
        let (lower, upper) = self.bounds();
        let rate = self.aimd.rate().min(self.loss.estimate());
        rate.clamp(lower, upper) as u64
    }

    fn apply_bounds(&mut self) {
        let (lower, upper) = self.bounds();
        self.aimd.set_rate(self.aimd.rate().clamp(lower, upper));
        self.loss
            .set_estimate(self.loss.estimate().clamp(lower, upper));
        self.estimate = self.combined();
    }
}
