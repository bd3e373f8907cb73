//! A pacer for one transport: a leaky bucket that lets packets out at a multiple of the
//! bandwidth estimate (or of what it has been sending, when that is more: it spreads bursts,
//! it does not throttle the media; the allocator adapts that), so that a key frame's burst is
//! spread rather than dumped on the path's queue.
//!
//! Packets wait in four queues by [`Class`], served in strict priority: audio, then RTCP and
//! retransmissions, then video base layers, then enhancement layers. Audio and RTCP or
//! retransmissions are never held for the budget (they are small and late audio is lost
//! audio); what they send still counts against it, so video makes room for them. Video leaves
//! when the bucket has drained what went before it.
//!
//! Queueing delay is bounded, by a different means for each video class. When the base
//! layers' backlog could not drain within [`PacerConfig::max_delay`] at the pacing rate, the
//! rate rises to drain it: base layers are what every receiver needs. Enhancement layers are
//! not given that rise: they leave after the base layers, and one that has waited
//! [`PacerConfig::enhancement_max_delay`] is stale and is handed back to the caller
//! ([`Polled::Stale`]), which drops it or, to finish a picture whose start was sent, sends it.
//! The caller takes the packets of a stream out of the enhancement queue
//! ([`Pacer::take_enhancement`]) when they must not follow: those that may refer to a stale
//! one, or those that its next base layer packet would otherwise overtake. So a burst of base
//! layers (a key frame) delays other streams' enhancement layers a little, drops them when it
//! would delay them long, and never delays a base layer longer than the maximum.
//!
//! A packet that finds nothing queued before it and the bucket within its burst allowance
//! leaves at once ([`Pacer::send_now`]): a pacer that keeps up costs a little arithmetic per
//! packet and no timer. The queues start empty and grow to at most [`PacerConfig::capacity`]
//! packets each (then never allocate again): a packet that finds its queue full is refused
//! and counted. An empty pacer has no deadline, so an idle transport costs nothing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a packet is, highest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Audio.
    Audio = 0,
    /// RTCP and retransmissions.
    Control = 1,
    /// Video of a base (lowest) spatial or temporal layer.
    Base = 2,
    /// Video of an enhancement layer.
    Enhancement = 3,
}

const CLASSES: usize = 4;

/// The window over which the sending rate is measured.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// The bucket lets video run this far ahead of the pacing rate (at least `burst_bytes`), and
/// a wake-up sends about half of it: packets leave in short bursts, not one per wake-up.
const BURST_WINDOW: Duration = Duration::from_millis(5);

/// How a pacer paces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacerConfig {
    /// The pacing rate is this multiple of the estimate.
    pub(crate) multiplier: f64,
    /// The longest a base layer packet should wait.
    pub(crate) max_delay: Duration,
    /// The longest an enhancement layer packet waits before it is dropped.
    pub(crate) enhancement_max_delay: Duration,
    /// The most packets each queue holds.
    pub(crate) capacity: usize,
    /// How far ahead of its budget the bucket lets video go (a burst allowance), in bytes.
    pub(crate) burst_bytes: u32,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            multiplier: 2.5,
            max_delay: Duration::from_millis(250),
            enhancement_max_delay: Duration::from_millis(100),
            capacity: 512,
            burst_bytes: 1500,
        }
    }
}

/// Counters of what the pacer did not send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PacerCounters {
    /// Packets refused because their queue was full.
    pub(crate) refused: u64,
    /// Enhancement packets dropped after waiting too long.
    pub(crate) dropped_stale: u64,
    /// Enhancement packets dropped with a stale one (frames that may refer to it), or taken
    /// out of the queue in place of their stream's base layer packets.
    pub(crate) dropped_dependent: u64,
    /// Packets that could not be sent when their turn came (their source was gone).
    pub(crate) lost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Queued<T> {
    item: T,
    size: u32,
    at: Instant,
}

/// What [`Pacer::poll`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Polled<T> {
    /// A packet to send now.
    Send(T),
    /// An enhancement packet that waited too long. The caller drops it
    /// ([`Pacer::count_stale`]), or sends it all the same when it continues a picture whose
    /// start was sent, so that the receiver does not get part of a picture
    /// ([`Pacer::charge`]).
    Stale(T),
}

/// What becomes of an enhancement packet [`Pacer::take_enhancement`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken<T> {
    /// It joins the base layers.
    Promote,
    /// It is dropped, and this item of that many bytes joins the base layers in its place
    /// (what keeps its place in its stream: a padding packet with its number).
    Replace(T, usize),
}

/// The pacer, over items of type `T` (what the caller needs to send a packet later).
#[derive(Debug)]
pub(crate) struct Pacer<T> {
    config: PacerConfig,
    queues: [VecDeque<Queued<T>>; CLASSES],
    /// Bytes queued in the base and the enhancement queues.
    base_bytes: u64,
    enhancement_bytes: u64,
    /// The pacing rate, bits per second.
    rate_bps: f64,
    /// The estimate it follows, bits per second.
    estimate_bps: f64,
    /// Bytes let out since `window_start`, and the rate measured over the last full window
    /// (bits per second): the pacer paces bursts, it does not hold the media below what it
    /// has been sending (the allocator adapts that).
    window_bytes: u64,
    window_start: Option<Instant>,
    sent_bps: f64,
    /// Bytes sent ahead of the budget: the bucket's level (never below zero).
    debt: f64,
    /// When `debt` was last drained.
    drained_at: Option<Instant>,
    pub(crate) counters: PacerCounters,
}

impl<T: Copy> Pacer<T> {
    /// A pacer for a bandwidth estimate of `estimate_bps`.
    pub(crate) fn new(config: PacerConfig, estimate_bps: u64) -> Self {
        Self {
            config,
            queues: [
                VecDeque::new(),
                VecDeque::new(),
                VecDeque::new(),
                VecDeque::new(),
            ],
            base_bytes: 0,
            enhancement_bytes: 0,
            rate_bps: (estimate_bps as f64 * config.multiplier).max(1.0),
            estimate_bps: estimate_bps as f64,
            window_bytes: 0,
            window_start: None,
            sent_bps: 0.0,
            debt: 0.0,
            drained_at: None,
            counters: PacerCounters::default(),
        }
    }

    /// Follows a new bandwidth estimate.
    pub(crate) fn set_estimate(&mut self, estimate_bps: u64) {
        self.estimate_bps = estimate_bps as f64;
        self.update_rate();
    }

    /// The pacing rate: the multiple of the larger of the estimate and what was sent.
    fn update_rate(&mut self) {
        self.rate_bps = (self.estimate_bps.max(self.sent_bps) * self.config.multiplier).max(1.0);
    }

    /// Counts `size` bytes let out at `now` toward the measured sending rate.
    fn count(&mut self, size: u32, now: Instant) {
        self.window_bytes += u64::from(size);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            self.sent_bps = self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64();
            self.window_bytes = 0;
            self.window_start = Some(now);
            self.update_rate();
        }
    }

    /// Whether a packet of `size` bytes and `class` may leave at `now` without waiting:
    /// audio and control always may; video when nothing of its class or above is queued and
    /// the bucket is within its burst allowance. A packet that may is counted as sent.
    pub(crate) fn send_now(&mut self, size: usize, class: Class, now: Instant) -> bool {
        let video_waiting = match class {
            Class::Audio | Class::Control => false,
            Class::Base => !self.queues[Class::Base as usize].is_empty(),
            Class::Enhancement => self.base_bytes + self.enhancement_bytes > 0,
        };
        if video_waiting {
            return false;
        }
        self.drain(now);
        if matches!(class, Class::Base | Class::Enhancement) && self.debt > self.allowance() {
            return false;
        }
        self.debt += size as f64;
        self.count(u32::try_from(size).unwrap_or(u32::MAX), now);
        true
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// Queues a packet of `size` bytes; gives it back when its queue is full.
    pub(crate) fn push(
        &mut self,
        item: T,
        size: usize,
        class: Class,
        now: Instant,
    ) -> Result<(), T> {
        let queue = &mut self.queues[class as usize];
        if queue.len() >= self.config.capacity {
            self.counters.refused += 1;
            return Err(item);
        }
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        queue.push_back(Queued {
            item,
            size,
            at: now,
        });
        match class {
            Class::Base => self.base_bytes += u64::from(size),
            Class::Enhancement => self.enhancement_bytes += u64::from(size),
            Class::Audio | Class::Control => {}
        }
        Ok(())
    }

    /// The next packet that may leave at `now`, or the next stale enhancement packet; `None`
    /// when neither.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Polled<T>> {
        self.drain(now);
        if let Some(item) = self.pop_stale(now) {
            return Some(Polled::Stale(item));
        }
        for class in [Class::Audio, Class::Control] {
            if let Some(q) = self.queues[class as usize].pop_front() {
                self.debt += f64::from(q.size);
                self.count(q.size, now);
                return Some(Polled::Send(q.item));
            }
        }
        if self.debt > self.allowance() {
            return None;
        }
        for class in [Class::Base, Class::Enhancement] {
            if let Some(q) = self.queues[class as usize].pop_front() {
                match class {
                    Class::Base => self.base_bytes -= u64::from(q.size),
                    _ => self.enhancement_bytes -= u64::from(q.size),
                }
                self.debt += f64::from(q.size);
                self.count(q.size, now);
                return Some(Polled::Send(q.item));
            }
        }
        None
    }

    /// Whether enhancement packets are queued.
    pub(crate) fn has_enhancement(&self) -> bool {
        !self.queues[Class::Enhancement as usize].is_empty()
    }

    /// Takes the queued enhancement packets `pick` selects out of their queue, oldest first,
    /// and hands each to `decide`: each joins the base queue's tail in its order, itself
    /// ([`Taken::Promote`]) or replaced ([`Taken::Replace`]: counted as dropped). Scans the
    /// enhancement queue (at most [`PacerConfig::capacity`] packets, without allocating): the
    /// caller calls it on a drop, and for a layered stream's base layer packet only while
    /// enhancement packets are queued, which lasts no longer than their maximum delay.
    pub(crate) fn take_enhancement(
        &mut self,
        mut pick: impl FnMut(&T) -> bool,
        mut decide: impl FnMut(T) -> Taken<T>,
    ) {
        let mut queue = std::mem::take(&mut self.queues[Class::Enhancement as usize]);
        for _ in 0..queue.len() {
            let Some(q) = queue.pop_front() else {
                break;
            };
            if !pick(&q.item) {
                queue.push_back(q);
                continue;
            }
            self.enhancement_bytes -= u64::from(q.size);
            let q = match decide(q.item) {
                Taken::Promote => q,
                Taken::Replace(item, size) => {
                    self.counters.dropped_dependent += 1;
                    Queued {
                        item,
                        size: u32::try_from(size).unwrap_or(u32::MAX),
                        at: q.at,
                    }
                }
            };
            self.base_bytes += u64::from(q.size);
            self.queues[Class::Base as usize].push_back(q);
        }
        self.queues[Class::Enhancement as usize] = queue;
    }
    /// When [`poll`](Self::poll) next has something: `now` when a packet may leave now,
    /// `None` when nothing is queued.
    pub(crate) fn next_at(&self, now: Instant) -> Option<Instant> {
        if self.queues[..2].iter().any(|q| !q.is_empty()) {
            return Some(now);
        }
        if self.is_empty() {
            return None;
        }
        let level = self.level_at(now);
        // Wake when half the allowance is free, to send a burst of about that much.
        let over = level - f64::from(self.config.burst_bytes).max(self.allowance() / 2.0);
        if over <= 0.0 {
            return Some(now);
        }
        let wait = Duration::from_secs_f64(over * 8.0 / self.effective_rate(now));
        let mut at = now + wait.max(Duration::from_micros(100));
        // A stale enhancement packet is handed back when it is stale, not when it would
        // have left.
        if let Some(q) = self.queues[Class::Enhancement as usize].front() {
            at = at.min((q.at + self.config.enhancement_max_delay).max(now));
        }
        Some(at)
    }

    /// Packets queued, all classes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// How far ahead of the pacing rate video may go, in bytes.
    fn allowance(&self) -> f64 {
        f64::from(self.config.burst_bytes).max(self.rate_bps * BURST_WINDOW.as_secs_f64() / 8.0)
    }

    /// The pacing rate, raised when the base layers' backlog could not otherwise drain within
    /// the maximum delay of its oldest packet.
    fn effective_rate(&self, now: Instant) -> f64 {
        let Some(oldest) = self.queues[Class::Base as usize].front() else {
            return self.rate_bps;
        };
        let waited = now.saturating_duration_since(oldest.at);
        let left = self
            .config
            .max_delay
            .saturating_sub(waited)
            .max(Duration::from_millis(10));
        let needed = self.base_bytes as f64 * 8.0 / left.as_secs_f64();
        self.rate_bps.max(needed)
    }

    fn level_at(&self, now: Instant) -> f64 {
        let elapsed = self
            .drained_at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        (self.debt - elapsed * self.effective_rate(now) / 8.0).max(0.0)
    }

    fn drain(&mut self, now: Instant) {
        self.debt = self.level_at(now);
        self.drained_at = Some(now);
    }

    fn pop_stale(&mut self, now: Instant) -> Option<T> {
        let queue = &mut self.queues[Class::Enhancement as usize];
        let front = queue.front()?;
        if now.saturating_duration_since(front.at) < self.config.enhancement_max_delay {
            return None;
        }
        let q = queue.pop_front()?;
        self.enhancement_bytes -= u64::from(q.size);
        Some(q.item)
    }

    /// Counts a stale packet ([`Polled::Stale`]) dropped.
    pub(crate) fn count_stale(&mut self) {
        self.counters.dropped_stale += 1;
    }

    /// Counts a stale packet ([`Polled::Stale`]) of `size` bytes sent all the same, against
    /// the budget.
    pub(crate) fn charge(&mut self, size: usize, now: Instant) {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.debt += f64::from(size);
        self.count(size, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)] // Tests own the clock.
    fn start() -> Instant {
        Instant::now()
    }

    /// Serves the pacer at each of its deadlines until `end`: (time sent, item).
    fn serve(p: &mut Pacer<u32>, mut now: Instant, end: Instant) -> Vec<(Instant, u32)> {
        let mut out = Vec::new();
        let mut steps = 0;
        while let Some(at) = p.next_at(now) {
            steps += 1;
            assert!(steps < 100_000, "the pacer's deadlines make no progress");
            now = at.max(now);
            if now > end {
                break;
            }
            while let Some(polled) = p.poll(now) {
                if let Polled::Send(item) = polled {
                    out.push((now, item));
                }
            }
        }
        out
    }

    #[test]
    fn a_key_frame_is_spread_at_the_pacing_rate() {
        let t0 = start();
        // 1 Mbit/s estimate: 2.5 Mbit/s pacing, a 1200-byte packet every 3.84 ms.
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 1_000_000);
        for i in 0..60 {
            p.push(i, 1200, Class::Base, t0).unwrap();
        }
        let sent = serve(&mut p, t0, t0 + Duration::from_secs(1));
        assert_eq!(
            sent.iter().map(|s| s.1).collect::<Vec<_>>(),
            (0..60).collect::<Vec<_>>()
        );
        let span = sent[59].0 - sent[0].0;
        // 59 gaps of 3.84 ms, less the burst allowance: about 225 ms.
        assert!(
            (Duration::from_millis(210)..Duration::from_millis(235)).contains(&span),
            "{span:?}"
        );
        // The first two go at once (the burst allowance); then one every 3.84 ms.
        assert_eq!(sent[1].0, t0);
        for w in sent[1..].windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!(
                (Duration::from_micros(2_800)..Duration::from_micros(4_000)).contains(&gap),
                "{gap:?}"
            );
        }
        assert_eq!(p.next_at(t0 + span), None, "nothing queued, no deadline");
    }

    #[test]
    fn audio_never_waits_behind_video() {
        let t0 = start();
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 500_000);
        for i in 0..60 {
            p.push(i, 1200, Class::Base, t0).unwrap();
        }
        let mut now = t0;
        let mut audio_waits = Vec::new();
        let mut next_audio = t0;
        let mut audio_id = 1000;
        let end = t0 + Duration::from_millis(500);
        let mut steps = 0;
        while now < end {
            steps += 1;
            assert!(steps < 100_000, "the pacer's deadlines make no progress");
            if now >= next_audio {
                p.push(audio_id, 100, Class::Audio, now).unwrap();
                audio_id += 1;
                next_audio += Duration::from_millis(20);
            }
            let at = p.next_at(now).unwrap_or(next_audio).min(next_audio);
            now = at.max(now);
            while let Some(Polled::Send(item)) = p.poll(now) {
                if item >= 1000 {
                    let queued = t0 + Duration::from_millis(20 * u64::from(item - 1000));
                    audio_waits.push(now - queued);
                }
            }
        }
        assert!(audio_waits.len() >= 24);
        assert!(
            audio_waits.iter().all(|w| *w <= Duration::from_millis(5)),
            "{audio_waits:?}"
        );
    }

    #[test]
    fn priorities_stale_enhancements_and_a_full_queue() {
        let t0 = start();
        let config = PacerConfig {
            capacity: 4,
            ..PacerConfig::default()
        };
        let mut p = Pacer::<u32>::new(config, 100_000);
        for (i, class) in [
            Class::Enhancement,
            Class::Base,
            Class::Control,
            Class::Audio,
        ]
        .into_iter()
        .enumerate()
        {
            p.push(i as u32, 1200, class, t0).unwrap();
        }
        // Audio and control go at once; then base, before enhancement.
        assert_eq!(p.poll(t0), Some(Polled::Send(3)));
        assert_eq!(p.poll(t0), Some(Polled::Send(2)));
        assert_eq!(p.poll(t0), None, "over the budget: video waits");
        let sent = serve(&mut p, t0, t0 + Duration::from_secs(2));
        assert_eq!(sent.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 0]);

        for i in 0..4 {
            p.push(10 + i, 1200, Class::Enhancement, t0).unwrap();
        }
        assert_eq!(p.push(99, 1200, Class::Enhancement, t0), Err(99));
        assert_eq!(p.counters.refused, 1);
        // Long after: stale, handed back as dropped rather than sent, oldest first.
        let later = t0 + Duration::from_secs(1);
        for i in 0..4 {
            assert_eq!(p.poll(later), Some(Polled::Stale(10 + i)));
            p.count_stale();
        }
        assert_eq!(p.poll(later), None);
        assert_eq!(p.counters.dropped_stale, 4);
        assert_eq!(p.len(), 0);
        assert!(
            p.send_now(1200, Class::Enhancement, later),
            "nothing queued any more: an enhancement packet may leave at once"
        );
        // A stale packet sent all the same counts against the budget.
        p.charge(100_000, later);
        assert!(!p.send_now(1200, Class::Base, later));
    }

    #[test]
    fn a_base_layer_backlog_drains_within_the_maximum_delay() {
        let t0 = start();
        // 100 kbit/s estimate: 250 kbit/s pacing would take 2.3 s for 60 packets. As many
        // enhancement packets wait behind them: the rate does not rise for those.
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 100_000);
        for i in 0..60 {
            p.push(i, 1200, Class::Base, t0).unwrap();
            p.push(100 + i, 1200, Class::Enhancement, t0).unwrap();
        }
        let sent = serve(&mut p, t0, t0 + Duration::from_secs(5));
        assert_eq!(sent.len(), 60, "the enhancement packets went stale");
        let last = sent[59].0 - t0;
        assert!(
            (Duration::from_millis(230)..=Duration::from_millis(300)).contains(&last),
            "{last:?}"
        );
        // Evenly: by the time the enhancement packets went stale (100 ms), about 100/250 of
        // the base layers had left.
        let early = sent
            .iter()
            .filter(|s| s.0 < t0 + Duration::from_millis(100))
            .count();
        assert!(
            (20..=30).contains(&early),
            "{early} left in the first 100 ms"
        );
        assert!(p.is_empty());
    }

    #[test]
    fn packets_leave_at_once_while_the_pacer_keeps_up() {
        let t0 = start();
        // 1 Mbit/s: 2.5 Mbit/s pacing, 1200 bytes drain in 3.84 ms.
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 1_000_000);
        assert!(p.send_now(1200, Class::Base, t0));
        assert!(
            p.send_now(1200, Class::Base, t0),
            "within the burst allowance"
        );
        assert!(!p.send_now(1200, Class::Base, t0), "over it: video waits");
        assert!(p.send_now(100, Class::Audio, t0), "audio never waits");
        p.push(1, 1200, Class::Enhancement, t0).unwrap();
        let later = t0 + Duration::from_millis(20);
        assert!(
            !p.send_now(1200, Class::Enhancement, later),
            "an enhancement packet does not overtake a queued one"
        );
        assert!(p.send_now(1200, Class::Base, later), "a base packet may");
        assert!(!p.is_empty());
        assert_eq!(
            p.poll(later + Duration::from_millis(10)),
            Some(Polled::Send(1))
        );
        assert!(p.is_empty());
        assert_eq!(p.next_at(later), None);
        let much_later = later + Duration::from_millis(100);
        assert!(
            p.send_now(1200, Class::Enhancement, much_later),
            "nothing queued any more: an enhancement packet may leave at once"
        );
    }

    #[test]
    fn the_rate_follows_the_estimate_or_what_was_sent_when_that_is_more() {
        let t0 = start();
        // Raised from 100 kbit/s to 1 Mbit/s: 60 packets leave at 2.5 Mbit/s, over about
        // 225 ms (at 250 kbit/s they would take the 250 ms the maximum delay allows).
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 100_000);
        p.set_estimate(1_000_000);
        for i in 0..60 {
            p.push(i, 1200, Class::Base, t0).unwrap();
        }
        let sent = serve(&mut p, t0, t0 + Duration::from_secs(1));
        let span = sent[59].0 - sent[0].0;
        assert!(
            (Duration::from_millis(210)..Duration::from_millis(235)).contains(&span),
            "{span:?}"
        );

        // 1,200 bytes of audio a millisecond sent at 10 Mbit/s: over the first 500 ms, 9.6
        // Mbit/s. The estimate falls to 100 kbit/s, but the rate stays 2.5 times what was sent:
        // 60 packets leave over about 24 ms.
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 10_000_000);
        for ms in 0..=500 {
            assert!(p.send_now(1200, Class::Audio, t0 + Duration::from_millis(ms)));
        }
        p.set_estimate(100_000);
        let t1 = t0 + Duration::from_millis(500);
        for i in 0..60 {
            p.push(i, 1200, Class::Base, t1).unwrap();
        }
        let sent = serve(&mut p, t1, t1 + Duration::from_secs(1));
        assert_eq!(sent.len(), 60);
        let span = sent[59].0 - t1;
        assert!(
            (Duration::from_millis(15)..Duration::from_millis(40)).contains(&span),
            "{span:?}"
        );
        // At that rate the burst allowance (5 ms of it) is 15 kB: a dozen packets at once.
        let at_once = sent.iter().filter(|s| s.0 == t1).count();
        assert!((10..=14).contains(&at_once), "{at_once} at once");
    }

    /// A key frame's burst of base layer (100 packets, 384 ms at a 2.5 Mbit/s pacing rate)
    /// with another stream's enhancement and base layers arriving behind it every 10 ms.
    #[test]
    fn a_base_burst_goes_first_and_stale_enhancement_is_dropped_not_delayed() {
        let t0 = start();
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 1_000_000);
        for i in 0..100 {
            p.push(i, 1200, Class::Base, t0).unwrap();
        }
        // Items 1000.. are enhancement, 2000.. base, one of each every 10 ms for 400 ms.
        let (mut now, end) = (t0, t0 + Duration::from_secs(2));
        let mut next_arrival = t0;
        let mut arrivals = 0u32;
        let mut sent = Vec::new();
        let mut stale = Vec::new();
        let mut steps = 0;
        while now < end {
            steps += 1;
            assert!(steps < 100_000, "the pacer's deadlines make no progress");
            if arrivals < 40 && now >= next_arrival {
                p.push(1000 + arrivals, 1200, Class::Enhancement, now)
                    .unwrap();
                p.push(2000 + arrivals, 1200, Class::Base, now).unwrap();
                arrivals += 1;
                next_arrival += Duration::from_millis(10);
            }
            let wake = if arrivals < 40 { next_arrival } else { end };
            now = p.next_at(now).unwrap_or(wake).min(wake).max(now);
            while let Some(polled) = p.poll(now) {
                match polled {
                    Polled::Send(item) => sent.push((now, item)),
                    Polled::Stale(item) => {
                        p.count_stale();
                        stale.push((now, item));
                    }
                }
            }
        }
        let queued_at = |item: u32| t0 + Duration::from_millis(10 * u64::from(item % 1000));
        // Every base packet left within the maximum delay (the rate rose for them), in order.
        let base: Vec<_> = sent.iter().filter(|s| s.1 < 1000 || s.1 >= 2000).collect();
        assert_eq!(base.len(), 140);
        assert!(base.windows(2).all(|w| w[0].1 < w[1].1));
        for (at, item) in &base {
            let queued = if *item < 1000 { t0 } else { queued_at(*item) };
            assert!(*at - queued <= Duration::from_millis(250), "{item}");
        }
        // Enhancement waited for them: what left had waited less than its own maximum, the
        // rest was handed back as stale at its maximum, not later.
        let enhancement: Vec<_> = sent
            .iter()
            .filter(|s| (1000..2000).contains(&s.1))
            .collect();
        assert_eq!(enhancement.len() + stale.len(), 40);
        assert!(stale.len() >= 10, "{} stale", stale.len());
        for (at, item) in enhancement.iter().copied().chain(&stale) {
            let waited = *at - queued_at(*item);
            assert!(
                waited <= Duration::from_millis(101),
                "{item} waited {waited:?}"
            );
        }
        assert_eq!(p.counters.dropped_stale, stale.len() as u64);
        // Base first: no enhancement packet left while a base packet was waiting.
        for (at, _) in &enhancement {
            let waiting = base.iter().any(|(left, item)| {
                let queued = if *item < 1000 { t0 } else { queued_at(*item) };
                queued < *at && *left > *at
            });
            assert!(!waiting, "an enhancement packet left at {:?}", *at - t0);
        }
    }

    #[test]
    fn enhancement_packets_taken_are_dropped_or_join_the_base_layers() {
        let t0 = start();
        let mut p = Pacer::<u32>::new(PacerConfig::default(), 1_000_000);
        for i in 0..10 {
            p.push(i, 1200, Class::Base, t0).unwrap();
            p.push(100 + i, 1200, Class::Enhancement, t0).unwrap();
        }
        assert!(p.has_enhancement());
        let mut taken = Vec::new();
        // The even ones: 100 and 102 join the base layers, the others are replaced by 1000+.
        p.take_enhancement(
            |item| item % 2 == 0,
            |item| {
                taken.push(item);
                if item < 104 {
                    Taken::Promote
                } else {
                    Taken::Replace(item + 900, 50)
                }
            },
        );
        assert_eq!(
            taken,
            [100, 102, 104, 106, 108],
            "only enhancement, in order"
        );
        assert_eq!(p.counters.dropped_dependent, 3);
        let sent = serve(&mut p, t0, t0 + Duration::from_millis(90));
        let items: Vec<u32> = sent.iter().map(|s| s.1).collect();
        assert_eq!(
            items,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 102, 1004, 1006, 1008, 101, 103, 105, 107, 109]
        );
        assert!(p.is_empty() && !p.has_enhancement());
        let later = t0 + Duration::from_millis(200);
        assert!(
            p.send_now(1200, Class::Enhancement, later),
            "nothing queued any more: an enhancement packet may leave at once"
        );
        assert_eq!(p.next_at(t0 + Duration::from_millis(90)), None);
    }
}
