//! Dominant speaker identification after Volfin and Cohen, "Dominant Speaker Identification for
//! Multipoint Videoconferencing" (IEEE, 2012), on the audio levels RTP packets carry.
//!
//! Each speaker's speech activity is scored on three time scales. Every 20 ms frame gets an
//! *immediate* activity: how many of `N1` bands its level rises above the speaker's noise floor
//! (the audio level header extension carries one level, so the bands are steps of the
//! level's distance above the floor). A *medium* block of `N2` frames counts the frames whose
//! immediate activity passes a threshold, and the *long* window of `N3` medium blocks counts the
//! blocks that pass theirs. Each count `v` out of `n` gets the likelihood score of the paper's
//! model: a binomial probability of speech against an exponential one of non-speech,
//! `ln C(n, v) + v ln p + (n − v) ln(1 − p) − ln λ + λ v`.
//!
//! At each decision (every 300 ms by default) a challenger replaces the dominant speaker only
//! when it beats it on all three scales at once (log score ratios above `C1`, `C2` and `C3`):
//! the long window keeps a short interjection from taking over, the immediate and medium ones
//! make a real change of speaker win within about a second.

use std::time::{Duration, Instant};

/// Bands of a frame's immediate activity.
const N1: u32 = 13;
/// Frames in a medium block.
const N2: u32 = 5;
/// Medium blocks in the long window.
const N3: u32 = 10;
/// The length of a frame.
pub(crate) const FRAME: Duration = Duration::from_millis(20);
/// Frames kept: the long window.
const FRAMES: usize = (N2 * N3) as usize;
/// A frame is active above this many bands, a medium block above this many active frames.
const FRAME_THRESHOLD: u32 = N1 / 2 - 1;
const BLOCK_THRESHOLD: u32 = N2 - 1;
/// Decision thresholds on the log score ratios: immediate, medium, long.
const C1: f64 = 3.0;
const C2: f64 = 2.0;
const C3: f64 = 0.0;
/// The exponential model's rates for non-speech, per scale.
const LAMBDA: [f64; 3] = [0.78, 24.0, 47.0];
/// Scores never go below this, so their ratios stay finite.
const MIN_SCORE: f64 = 1e-10;
/// The scores of a speaker who has said nothing: what a first speaker must beat.
pub(crate) const SILENT: [f64; 3] = [MIN_SCORE; 3];
/// The level (0 silent to 127 loudest, 127 − dBov magnitude) range that spans all `N1` bands
/// above the noise floor: 40 dB.
const BAND_SPAN: u32 = 40;
/// The noise floor is the quietest level of the last two periods of this length ...
const FLOOR_PERIOD: Duration = Duration::from_secs(5);
/// ... but never above this level (−60 dBov), so a speaker who never pauses is still heard.
const MAX_FLOOR: u8 = 127 - 60;

/// One speaker's recent activity.
#[derive(Debug, Clone)]
pub(crate) struct Speaker {
    /// Immediate activity (bands) of the last [`FRAMES`] frames; index = frame number mod
    /// [`FRAMES`].
    frames: [u8; FRAMES],
    /// The frame number of the newest entry in `frames`.
    newest: Option<u64>,
    /// The quietest level of the current and of the previous floor period.
    floor: (u8, u8),
    floor_period: u64,
}

impl Speaker {
    pub(crate) fn new() -> Self {
        Self {
            frames: [0; FRAMES],
            newest: None,
            floor: (MAX_FLOOR, MAX_FLOOR),
            floor_period: 0,
        }
    }

    /// The level (dBov, −127 to 0) of a packet of frame `frame`, in period `period` of the
    /// noise floor.
    pub(crate) fn add_level(&mut self, frame: u64, period: u64, dbov: i8) {
        let level = 127 - dbov.unsigned_abs().min(127);
        self.roll_floor(period);
        self.floor.0 = self.floor.0.min(level);
        let floor = self.floor.0.min(self.floor.1);
        let above = u32::from(level.saturating_sub(floor));
        let bands = (above * N1 / BAND_SPAN).min(N1) as u8;
        self.advance(frame);
        let slot = &mut self.frames[(frame % FRAMES as u64) as usize];
        *slot = (*slot).max(bands);
    }

    fn roll_floor(&mut self, period: u64) {
        if period > self.floor_period {
            // The previous period's minimum is kept one more period; an idle gap forgets both.
            self.floor = if period == self.floor_period + 1 {
                (MAX_FLOOR, self.floor.0)
            } else {
                (MAX_FLOOR, MAX_FLOOR)
            };
            self.floor_period = period;
        }
    }

    /// Makes `frame` the newest, with silence in the frames skipped since the last one.
    pub(crate) fn advance(&mut self, frame: u64) {
        let from = match self.newest {
            Some(newest) if frame <= newest => return,
            Some(newest) => newest + 1,
            None => frame,
        };
        for f in from.max(frame.saturating_sub(FRAMES as u64 - 1))..=frame {
            self.frames[(f % FRAMES as u64) as usize] = 0;
        }
        self.newest = Some(frame);
    }

    /// The activity counts (immediate, medium, long) up to the newest frame.
    fn counts(&self) -> [u32; 3] {
        let Some(newest) = self.newest else {
            return [0; 3];
        };
        let frame = |age: u64| -> u32 {
            newest
                .checked_sub(age)
                .map_or(0, |f| u32::from(self.frames[(f % FRAMES as u64) as usize]))
        };
        let block_active = |block: u64| -> u32 {
            (0..u64::from(N2))
                .filter(|i| frame(block * u64::from(N2) + i) > FRAME_THRESHOLD)
                .count() as u32
        };
        let immediate = frame(0);
        let medium = block_active(0);
        let long = (0..u64::from(N3))
            .filter(|&b| block_active(b) > BLOCK_THRESHOLD)
            .count() as u32;
        [immediate, medium, long]
    }

    /// The speech activity scores on the three scales.
    pub(crate) fn scores(&self) -> [f64; 3] {
        let counts = self.counts();
        let sizes = [N1, N2, N3];
        std::array::from_fn(|i| score(counts[i], sizes[i], LAMBDA[i]))
    }
}

/// The likelihood score of `v` active units out of `n`: binomial speech (p = 1/2) against
/// exponential non-speech of rate `lambda`.
fn score(v: u32, n: u32, lambda: f64) -> f64 {
    let p: f64 = 0.5;
    let (v, n) = (f64::from(v), f64::from(n));
    let s = ln_binomial(n, v) + v * p.ln() + (n - v) * (1.0 - p).ln() - lambda.ln() + lambda * v;
    s.max(MIN_SCORE)
}

/// ln C(n, k) for small whole numbers.
fn ln_binomial(n: f64, k: f64) -> f64 {
    let ln_factorial = |x: f64| (2..=x as u32).map(|i| f64::from(i).ln()).sum::<f64>();
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// Whether `challenger` takes over from `dominant`: its log score ratio on each scale passes
/// that scale's threshold. Returns the medium ratio (to rank several challengers).
pub(crate) fn challenge(challenger: &[f64; 3], dominant: &[f64; 3]) -> Option<f64> {
    let ratio = |i: usize| (challenger[i] / dominant[i]).ln();
    let (c1, c2, c3) = (ratio(0), ratio(1), ratio(2));
    (c1 > C1 && c2 > C2 && c3 > C3).then_some(c2)
}

/// The frame number and noise floor period of `at`, counted from `epoch`.
pub(crate) fn frame_of(epoch: Instant, at: Instant) -> (u64, u64) {
    let since = at.saturating_duration_since(epoch);
    (
        (since.as_micros() / FRAME.as_micros()) as u64,
        (since.as_micros() / FLOOR_PERIOD.as_micros()) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A speaker fed one level per frame: `talk` dBov for frames in `loud`, −90 otherwise.
    fn fed(frames: std::ops::Range<u64>, loud: std::ops::Range<u64>) -> Speaker {
        let mut s = Speaker::new();
        for f in frames {
            let level = if loud.contains(&f) { -25 } else { -90 };
            s.add_level(f, f / 250, level);
        }
        s
    }

    #[test]
    fn scores_grow_with_activity_on_every_scale() {
        let quiet = fed(0..200, 0..0).scores();
        let talking = fed(0..200, 0..200).scores();
        for i in 0..3 {
            assert!(
                talking[i] > quiet[i] * 10.0,
                "{i}: {talking:?} vs {quiet:?}"
            );
        }
        assert_eq!(quiet, [MIN_SCORE; 3]);
    }

    #[test]
    fn a_talker_takes_over_from_a_silent_dominant_but_not_during_an_interjection() {
        // The dominant talked for 4 s; the challenger says something for 300 ms at the end.
        let dominant = fed(0..200, 0..200).scores();
        let interjection = fed(0..200, 185..200).scores();
        assert_eq!(challenge(&interjection, &dominant), None);
        // The dominant stopped a second ago; the challenger has talked since.
        let stopped = fed(0..200, 0..150).scores();
        let talking = fed(0..200, 150..200).scores();
        assert!(challenge(&talking, &stopped).is_some());
        assert_eq!(challenge(&stopped, &talking), None);
    }

    #[test]
    fn frames_without_packets_are_silence() {
        let mut s = fed(0..100, 0..100);
        s.advance(100 + FRAMES as u64);
        assert_eq!(s.counts(), [0, 0, 0]);
        let mut s = fed(0..100, 0..100);
        s.advance(100 + 10);
        let [immediate, medium, long] = s.counts();
        assert_eq!((immediate, medium), (0, 0));
        assert!((7..=8).contains(&long), "{long}");
    }

    #[test]
    fn the_noise_floor_follows_the_quietest_recent_level() {
        // Steady -50 dBov noise, then speech at -30 dBov: only the speech counts as active.
        let mut s = Speaker::new();
        for f in 0..300 {
            let level = if f >= 250 { -30 } else { -50 };
            s.add_level(f, f / 250, level);
            if f == 249 {
                assert_eq!(s.counts()[1..], [0, 0], "noise is not speech");
            }
        }
        assert!(s.counts()[2] >= 9, "{:?}", s.counts());
    }
}
