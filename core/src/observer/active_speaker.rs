//! Active speaker observers (mediasoup's `ActiveSpeakerObserver`): the dominant speaker among a
//! router's chosen audio producers, by Volfin and Cohen's dominant speaker identification (see
//! [`super::dominant`]), reported by [`Event::ActiveSpeakerObserverDominantSpeaker`] each time
//! it changes. Unlike the loudest producer of an interval, the dominant speaker does not
//! change for a cough or a short interjection.

use std::time::{Duration, Instant};

use tracing::info;

use super::dominant::{self, Speaker};
use super::{Observer, ObserverKind};
use crate::error::Error;
use crate::event::Event;
use crate::ids::{ObserverId, ProducerId, RouterId};
use crate::io::Output;
use crate::sfu::{Sfu, TimerKey};

/// The shortest and longest decision interval; others are clamped to these.
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Options of [`Sfu::create_active_speaker_observer`] (mediasoup's
/// `ActiveSpeakerObserverOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveSpeakerObserverOptions {
    /// How often the dominant speaker is decided; clamped to 100 ms – 5 s.
    pub interval: Duration,
}

impl Default for ActiveSpeakerObserverOptions {
    /// mediasoup's default: every 300 ms.
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(300),
        }
    }
}

/// One observer's state.
#[derive(Debug)]
pub(crate) struct ActiveSpeakerObserver {
    pub(super) router: RouterId,
    interval: Duration,
    paused: bool,
    /// Frame numbers count from here.
    epoch: Instant,
    /// The observed producers and their recent speech activity.
    pub(super) producers: Vec<(ProducerId, Speaker)>,
    dominant: Option<ProducerId>,
    next_decision: Instant,
}

impl ActiveSpeakerObserver {
    pub(super) fn add_producer(&mut self, producer: ProducerId) {
        self.producers.push((producer, Speaker::new()));
    }

    pub(super) fn remove_producer(&mut self, producer: ProducerId) {
        self.producers.retain(|(x, _)| *x != producer);
        if self.dominant == Some(producer) {
            self.dominant = None;
        }
    }

    pub(super) fn add_level(&mut self, producer: ProducerId, level: i8, now: Instant) {
        if self.paused {
            return;
        }
        let (frame, period) = dominant::frame_of(self.epoch, now);
        if let Some((_, s)) = self.producers.iter_mut().find(|(p, _)| *p == producer) {
            s.add_level(frame, period, level);
        }
    }

    /// Decides the dominant speaker at `now`; `Some` when it changed.
    fn decide(&mut self, now: Instant) -> Option<ProducerId> {
        let (frame, _) = dominant::frame_of(self.epoch, now);
        // The frame in progress is not over: judge up to the last whole one.
        let frame = frame.saturating_sub(1);
        for (_, s) in &mut self.producers {
            s.advance(frame);
        }
        let scores: Vec<(ProducerId, [f64; 3])> = self
            .producers
            .iter()
            .map(|(p, s)| (*p, s.scores()))
            .collect();
        let current = self
            .dominant
            .and_then(|d| scores.iter().find(|(p, _)| *p == d).map(|(_, s)| *s));
        let best = scores
            .iter()
            .filter(|(p, _)| Some(*p) != self.dominant)
            .filter_map(|(p, s)| {
                dominant::challenge(s, &current.unwrap_or(dominant::SILENT)).map(|c| (*p, c))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p);
        if best.is_some() {
            self.dominant = best;
        }
        best
    }
}

impl Sfu {
    /// Creates an active speaker observer in a router (mediasoup's
    /// `router.createActiveSpeakerObserver()`). It reports nothing until producers are added
    /// and one of them speaks.
    pub fn create_active_speaker_observer(
        &mut self,
        router: RouterId,
        options: ActiveSpeakerObserverOptions,
    ) -> Result<ObserverId, Error> {
        let interval = options.interval.clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
        let next_decision = self.now + interval;
        let observer = Observer::ActiveSpeaker(ActiveSpeakerObserver {
            router,
            interval,
            paused: false,
            epoch: self.now,
            producers: Vec::new(),
            dominant: None,
            next_decision,
        });
        let id = self.insert_observer(router, observer, next_decision)?;
        info!(observer = %id, router = %router, "active speaker observer created");
        Ok(id)
    }

    /// Closes an active speaker observer.
    pub fn close_active_speaker_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        self.close_observer(observer, ObserverKind::ActiveSpeaker)?;
        info!(observer = %observer, "active speaker observer closed");
        Ok(())
    }

    /// Starts observing an audio producer of the observer's router. Adding one twice is a no-op.
    pub fn active_speaker_observer_add_producer(
        &mut self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), Error> {
        self.observe(observer, ObserverKind::ActiveSpeaker, producer)
    }

    /// Stops observing a producer (if it was the dominant speaker, there is none until another
    /// one speaks).
    pub fn active_speaker_observer_remove_producer(
        &mut self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), Error> {
        self.unobserve(observer, ObserverKind::ActiveSpeaker, producer)
    }

    /// Pauses an observer: it ignores levels and decides nothing until resumed.
    pub fn pause_active_speaker_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        let Observer::ActiveSpeaker(o) =
            self.observer_mut(observer, ObserverKind::ActiveSpeaker)?
        else {
            return Err(Error::UnknownObserver(observer));
        };
        o.paused = true;
        self.timers.cancel(TimerKey::Observer(observer));
        Ok(())
    }

    /// Resumes a paused observer; it decides again one interval from now.
    pub fn resume_active_speaker_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        let now = self.now;
        let Observer::ActiveSpeaker(o) =
            self.observer_mut(observer, ObserverKind::ActiveSpeaker)?
        else {
            return Err(Error::UnknownObserver(observer));
        };
        if !o.paused {
            return Ok(());
        }
        o.paused = false;
        o.next_decision = now + o.interval;
        let at = o.next_decision;
        self.timers.schedule(TimerKey::Observer(observer), at);
        Ok(())
    }

    /// An observer's decision time: report a new dominant speaker, schedule the next decision.
    pub(crate) fn active_speaker_decision(&mut self, observer: ObserverId) {
        let now = self.now;
        let Some(Observer::ActiveSpeaker(o)) = self.observers.get_mut(&observer) else {
            return;
        };
        if o.paused {
            return;
        }
        if let Some(producer) = o.decide(now) {
            self.out
                .push_back(Output::Event(Event::ActiveSpeakerObserverDominantSpeaker {
                    observer,
                    producer,
                }));
        }
        o.next_decision += o.interval;
        if o.next_decision <= now {
            o.next_decision = now + o.interval;
        }
        self.timers
            .schedule(TimerKey::Observer(observer), o.next_decision);
    }
}
