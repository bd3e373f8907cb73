//! The allocator: shares a transport's bandwidth estimate among its consumers and picks the
//! layers each video consumer may get: the simulcast encoding and the temporal layer inside
//! it, or for a VP9 SVC producer the spatial layer (a spatial layer costs what it and the
//! layers below it bring).
//!
//! Audio comes first: its bitrate is set aside. The rest goes to the video consumers by
//! priority (discrete water-filling: the consumer with the least bitrate per unit of priority
//! moves up one step while the next one fits; what one cannot use goes to the others), never
//! above a consumer's preferred layers and never below its lowest. A consumer's steps are its
//! encodings (or spatial layers), lowest first; when the encodings carry temporal layers
//! (VP8 with TID, or AV1 and H264 with the dependency descriptor), the lowest encoding's
//! temporal layers in turn, then each higher encoding at its full frame rate: encoding 0 at
//! temporal layer 0, 1 and 2, then encoding 1, and so on (mediasoup also walks the temporal
//! layers of higher encodings; here a tighter path lowers the resolution before the frame
//! rate, which it gives up only when the lowest encoding does not fit). A step's cost is its
//! measured bitrate: an encoding's, or what its temporal layers up to the step's bring.
//! A preferred temporal layer bounds the steps of every encoding.
//!
//! The estimate grows only slowly with what is sent, so it rarely says by itself that a
//! higher step would fit. A consumer moves down only when the estimate falls (a congestion
//! signal) or the application caps it, and moves up when the estimate says the next step
//! fits. To learn that, the transport probes ([`crate::media::bwe::probe`]): while a consumer
//! is below its top step, the allocator asks for what the next step would cost, and clusters
//! of padding on a consumer's RTX stream find out whether the path carries it; so does a
//! stream with layers inside it held to fewer temporal layers than it has (its lowest spatial
//! layer does not fit), for what its next temporal layer costs. A transport
//! that cannot probe (no video consumer with RTX and transport-wide sequence numbers) moves
//! up by a trial instead: after a quiet period one consumer is given the next step; if the
//! estimate falls while it holds, the trial failed and the wait before the next one doubles.
//! A move up that probing allowed counts much the same way: when the estimate falls within
//! [`TRIAL_HOLD`] of it (switching up costs a key frame, whose burst can be what congests a
//! path with little headroom), it failed, and from the second failure in a row the wait
//! before the next move up doubles, so that a path that cannot hold a step is not asked to
//! every few seconds (mediasoup keeps a consumer from moving up for 10 s after the estimate
//! moved it down).
//! Under the application's cap ([`Sfu::set_max_outgoing_bitrate`]) consumers get what fits
//! at once, with no trials, and probes go no higher than the cap: once the estimate has
//! been held down by a cap, only probes can find that a raised one fits.
//! Each run looks at the transport's own consumers only, and runs at most every [`INTERVAL`]
//! on feedback.

use std::time::{Duration, Instant};

use tracing::debug;

use crate::ids::{ConsumerId, TransportId};
use crate::ortc::MediaKind;

use super::{Sfu, MAX_LAYERS};
use crate::router::{Consumer, Producer, MAX_ENCODING_TEMPORAL_LAYERS, MAX_TEMPORAL_LAYERS};

/// The shortest time between two runs on feedback.
pub(crate) const INTERVAL: Duration = Duration::from_millis(250);
/// An estimate this much below the previous run's (per mille) is a congestion signal.
const DROP_PER_MILLE: u64 = 950;
/// The wait before a trial after congestion, at first and at most.
const BACKOFF_MIN: Duration = Duration::from_secs(3);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How long a trial must hold without congestion to count as a success.
const TRIAL_HOLD: Duration = Duration::from_secs(3);
/// What probing asks for on top of what the next encoding costs (per mille), so that the
/// encoding fits once the probe says the path carries it.
const PROBE_HEADROOM_PER_MILLE: u64 = 1200;
/// On congestion, the share of the estimate (per mille) that the consumers' encodings must fit
/// in: the rest drains the queue that the congestion left on the path.
const DRAIN_PER_MILLE: u64 = 900;
/// A trial starts only while the estimate exceeds what is sent by this share (per mille): the
/// link has carried all of it for a while. Lower values climb sooner after a recovery but try
/// more often while the link is still weak (each failed trial costs losses).
const TRIAL_HEADROOM_PER_MILLE: u64 = 1150;
/// The most steps a consumer can climb: every temporal layer of every encoding.
const MAX_STEPS: usize = MAX_LAYERS * MAX_ENCODING_TEMPORAL_LAYERS as usize;

/// A transport's allocation state.
#[derive(Debug, Clone)]
pub(crate) struct Allocation {
    /// When the allocator last ran.
    ran_at: Option<Instant>,
    /// The estimate it last saw.
    last_estimate: u64,
    /// The consumer moved up beyond what the estimate says fits, and since when.
    trial: Option<(ConsumerId, Instant)>,
    /// No trial, and no move up, before this.
    next_trial_at: Option<Instant>,
    backoff: Duration,
    /// When a consumer last moved up because the estimate (probed) said its next step fits;
    /// cleared once that held for [`TRIAL_HOLD`] or failed.
    raised_at: Option<Instant>,
    /// Whether the last such move up failed.
    raised_failed: bool,
    /// The consumer whose RTX stream carries probe padding (none: the transport cannot probe).
    pub(crate) prober: Option<ConsumerId>,
}

impl Default for Allocation {
    fn default() -> Self {
        Self {
            ran_at: None,
            last_estimate: 0,
            trial: None,
            next_trial_at: None,
            backoff: BACKOFF_MIN,
            raised_at: None,
            raised_failed: false,
            prober: None,
        }
    }
}

impl Allocation {
    /// Whether a move up at `since` has settled by `now`: it failed when the estimate
    /// `dropped` (with `double`, the wait before the next move up doubles), or it held for
    /// [`TRIAL_HOLD`] (the wait is back to its least).
    fn settled(&mut self, since: Instant, dropped: bool, now: Instant, double: bool) -> bool {
        if dropped {
            if double {
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
            true
        } else if now >= since + TRIAL_HOLD {
            self.backoff = BACKOFF_MIN;
            true
        } else {
            false
        }
    }

    /// Whether feedback at `now`, after which the estimate is `estimate`, should run the
    /// allocator: every [`INTERVAL`], and at once on congestion.
    pub(crate) fn due(&self, now: Instant, estimate: u64) -> bool {
        self.ran_at.is_none_or(|at| now >= at + INTERVAL)
            || estimate * 1000 < self.last_estimate.saturating_mul(DROP_PER_MILLE)
    }
}

/// One video consumer as the allocator sees it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: ConsumerId,
    priority: u64,
    /// The layers of each step, lowest first: the encoding (or spatial layer) and the highest
    /// temporal layer inside it (`None`: all of them).
    steps: [(usize, Option<u8>); MAX_STEPS],
    /// Measured bitrate of each step.
    rates: [u64; MAX_STEPS],
    /// The highest step it may get (its preferred layers, within the producer's).
    top: usize,
    /// Its current limit (`top` when none).
    target: usize,
    /// The step the estimate gives it.
    fit: usize,
    /// For spatial layers inside one stream: how many temporal layers it has (0: none to
    /// choose), and the share (per mille) of the stream that temporal layers up to each bring.
    temporal_layers: u8,
    temporal_shares: [u64; MAX_TEMPORAL_LAYERS],
}

impl Slot {
    /// A consumer's slot, its steps up to its preferred layers and what each costs now.
    fn new(id: ConsumerId, c: &Consumer, p: &Producer, now: Instant) -> Self {
        let mut s = Slot {
            id,
            priority: u64::from(c.priority.max(1)),
            steps: [(0, None); MAX_STEPS],
            rates: [0; MAX_STEPS],
            top: 0,
            target: 0,
            fit: 0,
            temporal_layers: 0,
            temporal_shares: [1000; MAX_TEMPORAL_LAYERS],
        };
        let mut n = 0;
        match (&p.svc, &c.layers) {
            // Spatial layers inside one stream: a layer costs its own and the ones below.
            (Some(svc), Some(_)) => {
                s.temporal_layers = svc.temporal_layers;
                s.temporal_shares = svc.temporal_bitrate.shares(now);
                let top = c
                    .preferred_layer
                    .min(usize::from(svc.spatial_layers).clamp(1, MAX_LAYERS) - 1);
                for i in 0..=top {
                    s.steps[n] = (i, None);
                    s.rates[n] = svc.bitrate_up_to(i, now);
                    n += 1;
                }
            }
            // Encodings, each with its temporal layers when they are measured.
            _ => {
                let top = c
                    .preferred_layer
                    .min(p.encodings.len().clamp(1, MAX_LAYERS) - 1);
                let layers = p
                    .encoding_temporal_layers
                    .clamp(1, MAX_ENCODING_TEMPORAL_LAYERS);
                let allowed = c
                    .preferred_temporal_layer
                    .map_or(layers, |t| t.saturating_add(1).min(layers));
                for (i, e) in p.encodings.iter().enumerate().take(top + 1) {
                    let rate = e.bitrate.bitrate(now);
                    match (e.temporal.as_deref(), c.layers) {
                        (Some(temporal), Some(_)) => {
                            let shares = temporal.shares(now);
                            // Frame rate is given up on the lowest encoding only: a higher
                            // encoding comes at its full (preferred) frame rate, so a tighter
                            // path lowers the resolution before the frame rate.
                            let first = if i == 0 { 0 } else { allowed - 1 };
                            for t in first..allowed {
                                s.steps[n] = (i, (t + 1 < layers).then_some(t));
                                s.rates[n] = rate * shares[usize::from(t)] / 1000;
                                n += 1;
                            }
                        }
                        _ => {
                            s.steps[n] = (i, None);
                            s.rates[n] = rate;
                            n += 1;
                        }
                    }
                }
            }
        }
        s.top = n.saturating_sub(1);
        // The current limit, as the step of the encoding and temporal layer it names.
        // (SVC: the temporal limit is not a step, see `allocate`.)
        let encoding = c.target_layer;
        let temporal = c.target_temporal_layer.filter(|_| s.temporal_layers == 0);
        s.target = match encoding {
            None if temporal.is_none() => s.top,
            _ => {
                let encoding = encoding.unwrap_or(usize::MAX);
                let temporal = temporal.unwrap_or(u8::MAX);
                s.steps[..=s.top]
                    .iter()
                    .rposition(|&(e, t)| e <= encoding && t.unwrap_or(u8::MAX) <= temporal)
                    .unwrap_or(0)
            }
        };
        s
    }
}

impl Sfu {
    /// Shares transport `tid`'s estimate among its consumers and sets each video consumer's
    /// target layers.
    pub(crate) fn allocate(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let estimate = t.bwe.estimate();
        let capped = t.bwe.max().is_some();
        let mut state = t.alloc.clone();
        let dropped = state.ran_at.is_some()
            && estimate * 1000 < state.last_estimate.saturating_mul(DROP_PER_MILLE);
        state.ran_at = Some(now);
        state.last_estimate = estimate;

        let mut slots: Vec<Slot> = Vec::with_capacity(t.consumers_by_mid.len());
        let mut audio = 0u64;
        state.prober = None;
        for cid in t.consumers_by_mid.values() {
            let Some(c) = self.consumers.get(cid) else {
                continue;
            };
            if !c.is_forwarding() || c.pipe.is_some() {
                continue;
            }
            let Some(p) = self.producers.get(&c.producer) else {
                continue;
            };
            if c.kind == MediaKind::Audio {
                audio += p.encodings.first().map_or(0, |e| e.bitrate.bitrate(now));
                continue;
            }
            let can_probe = c.rtx_payload_type.is_some()
                && c.send.rtx_ssrc().is_some()
                && c.transport_cc_extension.is_some();
            if can_probe && state.prober.is_none_or(|p| *cid < p) {
                state.prober = Some(*cid);
            }
            slots.push(Slot::new(*cid, c, p, now));
        }
        // The same order on every run, whatever the map's.
        slots.sort_by_key(|s| (std::cmp::Reverse(s.priority), s.id));
        // On congestion the path holds a queue: what fits is chosen strictly and with room
        // for the queue to drain.
        if dropped {
            let budget = estimate.saturating_mul(DRAIN_PER_MILLE) / 1000;
            water_fill(&mut slots, budget.saturating_sub(audio), false);
        } else {
            water_fill(&mut slots, estimate.saturating_sub(audio), true);
        }

        if state.prober.is_some() {
            state.trial = None;
        }
        // The trial in progress: failed on congestion, succeeded after holding.
        if state
            .trial
            .is_some_and(|(_, since)| state.settled(since, dropped, now, true))
        {
            state.trial = None;
        }
        // So with a move up the estimate allowed: a fall soon after it (the key frame that
        // switching up asks for, or the step's own bitrate, congested the path) is a failed
        // move up, and from the second in a row on the wait before the next one doubles, so
        // that a path that cannot hold a step is not asked to every few seconds (each attempt
        // costs the publisher a key frame), while a single failure right after a path
        // recovered costs no more than the usual wait.
        let double = state.raised_failed;
        if state
            .raised_at
            .is_some_and(|since| state.settled(since, dropped, now, double))
        {
            state.raised_failed = dropped;
            state.raised_at = None;
        }
        if dropped {
            state.next_trial_at = Some(now + state.backoff);
        }
        // Within the quiet period after congestion nothing moves up: the path's queue drains.
        let quiet = state.next_trial_at.is_none_or(|at| now >= at);
        for s in &mut slots {
            let on_trial = state.trial.is_some_and(|(id, _)| id == s.id);
            s.target = if on_trial {
                s.target
            } else if dropped || capped {
                s.fit
            } else if quiet {
                if s.fit > s.target {
                    state.raised_at = Some(now);
                }
                s.target.max(s.fit)
            } else {
                s.target
            };
        }
        // A new trial: one consumer below its top moves up one encoding.
        let sent: u64 = audio + slots.iter().map(|s| s.rates[s.target]).sum::<u64>();
        let headroom = estimate * 1000 >= sent.saturating_mul(TRIAL_HEADROOM_PER_MILLE);
        if state.trial.is_none() && quiet && headroom && !capped && state.prober.is_none() {
            if let Some(s) = slots.iter_mut().find(|s| s.target < s.top) {
                s.target += 1;
                state.trial = Some((s.id, now));
                state.next_trial_at = Some(now + TRIAL_HOLD);
                debug!(transport = %tid, consumer = %s.id, layer = s.target, "layer trial");
            }
        }
        // When even the lowest spatial layers do not fit, SVC streams with temporal layers
        // give up frame rate: each gets the temporal layers its share by priority pays for.
        let budget = estimate.saturating_sub(audio);
        let base: u64 = slots.iter().map(|s| s.rates[0]).sum();
        let priorities: u64 = slots.iter().map(|s| s.priority).sum::<u64>().max(1);
        // What would be sent if the first stream held to fewer temporal layers got one more.
        let mut next_frame_rate: Option<u64> = None;
        for s in &slots {
            // At its top step a consumer has no limit: its preferred layers rule, and a higher
            // preference takes effect at once.
            let (encoding, temporal) = s.steps[s.target];
            let up_to = |t: u8| s.rates[0] * s.temporal_shares[usize::from(t)] / 1000;
            let temporal = temporal.filter(|_| s.target < s.top).or_else(|| {
                let t = (budget < base && s.temporal_layers > 1)
                    .then(|| {
                        let share = budget * s.priority / priorities;
                        (0..s.temporal_layers)
                            .rev()
                            .find(|&t| up_to(t) <= share)
                            .unwrap_or(0)
                    })
                    .filter(|&t| t + 1 < s.temporal_layers)?;
                if next_frame_rate.is_none() {
                    let others = sent.saturating_sub(s.rates[s.target]);
                    next_frame_rate = Some(others + up_to(t + 1));
                }
                Some(t)
            });
            let target = (encoding < s.steps[s.top].0).then_some(encoding);
            if let Some(c) = self.consumers.get_mut(&s.id) {
                if c.target_layer != target || c.target_temporal_layer != temporal {
                    debug!(consumer = %s.id, ?target, ?temporal, estimate, "target layers");
                }
                c.target_layer = target;
                c.stats.target_layer = target;
                c.target_temporal_layer = temporal;
                c.stats.target_temporal_layer = temporal;
            }
        }
        // Probing toward the next step of the first consumer below its top, or else toward
        // the next temporal layer of the first stream held to fewer (the estimate, held down
        // by a cap or by congestion, would not rise by itself to what that layer costs).
        let goal = match slots.iter().find(|s| s.target < s.top) {
            Some(s) if state.prober.is_some() && quiet => {
                let cost = s.rates[s.target + 1].saturating_sub(s.rates[s.target]);
                (sent + cost).saturating_mul(PROBE_HEADROOM_PER_MILLE) / 1000
            }
            None if state.prober.is_some() && quiet => next_frame_rate.map_or(0, |rate| {
                rate.saturating_mul(PROBE_HEADROOM_PER_MILLE) / 1000
            }),
            _ => 0,
        };
        if let Some(t) = self.transports.get_mut(&tid) {
            t.alloc = state;
            t.bwe.want_probe(goal, sent, now);
            t.pacer.set_estimate(t.bwe.estimate());
        }
        self.schedule_pace(tid);
    }
}

/// Gives each slot the highest step its share of `budget` pays for (`fit`): starting from
/// the lowest steps, the slot with the least bitrate per unit of priority moves up one step
/// while that fits in what is left (a step that costs less than the one below it, the next
/// encoding's lowest temporal layer, always fits); a slot whose next step does not fit leaves
/// the rest to the others. With `hold`, steps up to a slot's current target cost a little
/// less, so that the choice does not swing with the measured bitrates.
fn water_fill(slots: &mut [Slot], budget: u64, hold: bool) {
    let mut left = budget;
    for s in slots.iter_mut() {
        s.fit = 0;
        left = left.saturating_sub(s.rates[0]);
    }
    let mut done = vec![false; slots.len()];
    loop {
        let next = slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| !done[i])
            .filter(|(_, s)| s.fit < s.top)
            // Least bitrate per unit of priority; ties to the earlier (higher priority).
            .min_by_key(|(i, s)| (s.rates[s.fit] * 1000 / s.priority, *i))
            .map(|(i, _)| i);
        let Some(i) = next else {
            break;
        };
        let s = &mut slots[i];
        let (from, to) = (s.rates[s.fit], s.rates[s.fit + 1]);
        if to <= from {
            // What it frees may pay for the next step of a slot that was done.
            left += from - to;
            s.fit += 1;
            done.fill(false);
            continue;
        }
        let cost = to - from;
        // A step already held is kept through the swings of measured bitrates (key frames):
        // it counts a sixth less.
        let cost = if hold && s.fit < s.target {
            cost - cost / 6
        } else {
            cost
        };
        if cost <= left {
            left -= cost;
            s.fit += 1;
        } else {
            done[i] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot with two encodings of three temporal layers: encoding 0 at about 60, 120 and
    /// 240 kbit/s, encoding 1 at 125, 250 and 500 kbit/s (layers up to each).
    fn slot(id: u64, priority: u64) -> Slot {
        let mut s = Slot {
            id: ConsumerId::from_raw(id),
            priority,
            steps: [(0, None); MAX_STEPS],
            rates: [0; MAX_STEPS],
            top: 5,
            target: 5,
            fit: 0,
            temporal_layers: 0,
            temporal_shares: [1000; MAX_TEMPORAL_LAYERS],
        };
        let layers = [(0, Some(0)), (0, Some(1)), (0, None)];
        let rates = [60_000, 120_000, 240_000, 125_000, 250_000, 500_000];
        for (i, rate) in rates.into_iter().enumerate() {
            s.steps[i] = (i / 3, layers[i % 3].1);
            s.rates[i] = rate;
        }
        s
    }

    fn fit(budget: u64) -> (usize, Option<u8>) {
        let mut slots = [slot(1, 1)];
        water_fill(&mut slots, budget, false);
        slots[0].steps[slots[0].fit]
    }

    #[test]
    fn steps_are_walked_encoding_by_encoding_and_temporal_layer_by_layer() {
        // Below the lowest step: it is all there is.
        assert_eq!(fit(30_000), (0, Some(0)));
        assert_eq!(fit(100_000), (0, Some(0)));
        // Encoding 1's lowest layer (125 kbit/s) would fit, but the walk stops at the first
        // step that does not: encoding 0 with all its layers (240 kbit/s).
        assert_eq!(fit(130_000), (0, Some(1)));
        // Encoding 0 whole fits: encoding 1 replaces it, as far as its layers fit.
        assert_eq!(fit(245_000), (1, Some(0)));
        assert_eq!(fit(300_000), (1, Some(1)));
        assert_eq!(fit(600_000), (1, None));
    }

    #[test]
    fn what_a_cheaper_step_frees_goes_to_the_others() {
        let fits = |budget| {
            let mut slots = [slot(1, 1), slot(2, 1)];
            water_fill(&mut slots, budget, false);
            slots.map(|s| s.steps[s.fit])
        };
        assert_eq!(fits(500_000), [(1, Some(1)), (1, Some(1))]);
        // Both reach encoding 0 at temporal layer 1 (120 kbit/s each) with 140 kbit/s left; the
        // first takes encoding 0 whole, the second cannot (20 kbit/s left). The first's move
        // to encoding 1 frees 115 kbit/s, which pays for the second's next steps too.
        assert_eq!(fits(380_000), [(1, Some(1)), (1, Some(0))]);
    }
}
