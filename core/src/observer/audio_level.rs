//! Audio level observers (mediasoup's `AudioLevelObserver`): every interval, the loudest of a
//! router's chosen audio producers, from the audio level header extension (RFC 6464,
//! `urn:ietf:params:rtp-hdrext:ssrc-audio-level`) their packets carry. The application uses it
//! to show who is speaking, or to pick which video to forward.
//!
//! Each observed packet adds its level to its producer's running sum; a deadline per observer
//! turns the sums into an [`Event::AudioLevelObserverVolumes`] or, once after sound, an
//! [`Event::AudioLevelObserverSilence`].

use std::time::{Duration, Instant};

use tracing::info;

use super::{Observer, ObserverKind};
use crate::error::Error;
use crate::event::{AudioLevelVolume, Event};
use crate::ids::{ObserverId, ProducerId, RouterId};
use crate::io::Output;
use crate::sfu::{Sfu, TimerKey};

/// The shortest and longest reporting interval; others are clamped to these (as mediasoup does).
const INTERVAL_RANGE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(5));

/// Options of [`Sfu::create_audio_level_observer`] (mediasoup's `AudioLevelObserverOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioLevelObserverOptions {
    /// At most this many producers per report, loudest first. At least 1.
    pub max_entries: u16,
    /// Producers averaging below this level (dBov, −127 to 0) are left out.
    pub threshold: i8,
    /// How often to report; clamped to 250 ms – 5 s.
    pub interval: Duration,
}

impl Default for AudioLevelObserverOptions {
    /// mediasoup's defaults: 1 entry, −80 dBov, every second.
    fn default() -> Self {
        Self {
            max_entries: 1,
            threshold: -80,
            interval: Duration::from_secs(1),
        }
    }
}

/// One observer's state.
#[derive(Debug)]
pub(crate) struct AudioLevelObserver {
    pub(super) router: RouterId,
    options: AudioLevelObserverOptions,
    paused: bool,
    /// The observed producers and the levels they sent in the current interval.
    pub(super) producers: Vec<(ProducerId, LevelSum)>,
    /// The last report was silence (or there was none yet).
    silent: bool,
    next_report: Instant,
}

/// Levels of one interval, as positive magnitudes (−dBov).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LevelSum {
    sum: u64,
    count: u64,
}

impl AudioLevelObserver {
    pub(super) fn add_producer(&mut self, producer: ProducerId) {
        self.producers.push((producer, LevelSum::default()));
    }

    pub(super) fn remove_producer(&mut self, producer: ProducerId) {
        self.producers.retain(|(x, _)| *x != producer);
    }

    /// Adds the level (dBov) of one packet of `producer`.
    pub(crate) fn add_level(&mut self, producer: ProducerId, level: i8) {
        if self.paused {
            return;
        }
        if let Some((_, s)) = self.producers.iter_mut().find(|(p, _)| *p == producer) {
            s.sum += u64::from(level.unsigned_abs().min(127));
            s.count += 1;
        }
    }

    /// The interval's report: the loudest producers at or above the threshold, loudest first.
    /// Clears the sums.
    fn take_report(&mut self) -> Vec<AudioLevelVolume> {
        let mut volumes: Vec<AudioLevelVolume> = self
            .producers
            .iter_mut()
            .filter_map(|(producer, s)| {
                let s = std::mem::take(s);
                if s.count == 0 {
                    return None;
                }
                // The mean magnitude rounded to the nearest dB, as a (negative) dBov level.
                let magnitude = (s.sum + s.count / 2) / s.count;
                let volume = -(magnitude.min(127) as i8);
                (volume >= self.options.threshold).then_some(AudioLevelVolume {
                    producer: *producer,
                    volume,
                })
            })
            .collect();
        volumes.sort_by_key(|v| std::cmp::Reverse(v.volume));
        volumes.truncate(usize::from(self.options.max_entries));
        volumes
    }

    fn clear(&mut self) {
        for (_, s) in &mut self.producers {
            *s = LevelSum::default();
        }
    }
}

impl Sfu {
    /// Creates an audio level observer in a router (mediasoup's
    /// `router.createAudioLevelObserver()`). It reports nothing until producers are added.
    pub fn create_audio_level_observer(
        &mut self,
        router: RouterId,
        mut options: AudioLevelObserverOptions,
    ) -> Result<ObserverId, Error> {
        if options.max_entries == 0 {
            return Err(Error::InvalidObserverOptions(
                "max_entries must be at least 1".into(),
            ));
        }
        if options.threshold > 0 || options.threshold < -127 {
            return Err(Error::InvalidObserverOptions(format!(
                "threshold {} is not a level from -127 to 0 dBov",
                options.threshold
            )));
        }
        options.interval = options.interval.clamp(INTERVAL_RANGE.0, INTERVAL_RANGE.1);
        let next_report = self.now + options.interval;
        let observer = Observer::AudioLevel(AudioLevelObserver {
            router,
            options,
            paused: false,
            producers: Vec::new(),
            silent: true,
            next_report,
        });
        let id = self.insert_observer(router, observer, next_report)?;
        info!(observer = %id, router = %router, "audio level observer created");
        Ok(id)
    }

    /// Closes an audio level observer.
    pub fn close_audio_level_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        self.close_observer(observer, ObserverKind::AudioLevel)?;
        info!(observer = %observer, "audio level observer closed");
        Ok(())
    }

    /// Starts observing an audio producer of the observer's router. Adding one twice is a no-op.
    pub fn audio_level_observer_add_producer(
        &mut self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), Error> {
        self.observe(observer, ObserverKind::AudioLevel, producer)
    }

    /// Stops observing a producer.
    pub fn audio_level_observer_remove_producer(
        &mut self,
        observer: ObserverId,
        producer: ProducerId,
    ) -> Result<(), Error> {
        self.unobserve(observer, ObserverKind::AudioLevel, producer)
    }

    /// Pauses an observer: it forgets the current interval, reports silence if the last report
    /// was not, and reports nothing more until resumed.
    pub fn pause_audio_level_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        let Observer::AudioLevel(o) = self.observer_mut(observer, ObserverKind::AudioLevel)? else {
            return Err(Error::UnknownObserver(observer));
        };
        if o.paused {
            return Ok(());
        }
        o.paused = true;
        o.clear();
        if !std::mem::replace(&mut o.silent, true) {
            self.out
                .push_back(Output::Event(Event::AudioLevelObserverSilence { observer }));
        }
        self.timers.cancel(TimerKey::Observer(observer));
        Ok(())
    }

    /// Resumes a paused observer; its next report comes one interval from now.
    pub fn resume_audio_level_observer(&mut self, observer: ObserverId) -> Result<(), Error> {
        let now = self.now;
        let Observer::AudioLevel(o) = self.observer_mut(observer, ObserverKind::AudioLevel)? else {
            return Err(Error::UnknownObserver(observer));
        };
        if !o.paused {
            return Ok(());
        }
        o.paused = false;
        o.next_report = now + o.options.interval;
        let at = o.next_report;
        self.timers.schedule(TimerKey::Observer(observer), at);
        Ok(())
    }

    /// An observer's interval ended: report, and schedule the next one.
    pub(crate) fn audio_level_report(&mut self, observer: ObserverId) {
        let now = self.now;
        let Some(Observer::AudioLevel(o)) = self.observers.get_mut(&observer) else {
            return;
        };
        if o.paused {
            return;
        }
        let volumes = o.take_report();
        if !volumes.is_empty() {
            o.silent = false;
            self.out
                .push_back(Output::Event(Event::AudioLevelObserverVolumes {
                    observer,
                    volumes,
                }));
        } else if !std::mem::replace(&mut o.silent, true) {
            self.out
                .push_back(Output::Event(Event::AudioLevelObserverSilence { observer }));
        }
        // Keep the cadence; after a long gap (no input for a while) restart from now.
        o.next_report += o.options.interval;
        if o.next_report <= now {
            o.next_report = now + o.options.interval;
        }
        self.timers
            .schedule(TimerKey::Observer(observer), o.next_report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observer(max_entries: u16, threshold: i8) -> AudioLevelObserver {
        #[allow(clippy::disallowed_methods)] // Tests own the clock.
        let now = Instant::now();
        AudioLevelObserver {
            router: RouterId::from_raw(1),
            options: AudioLevelObserverOptions {
                max_entries,
                threshold,
                interval: Duration::from_secs(1),
            },
            paused: false,
            producers: (1..=3)
                .map(|i| (ProducerId::from_raw(i), LevelSum::default()))
                .collect(),
            silent: true,
            next_report: now,
        }
    }

    #[test]
    fn reports_the_loudest_above_the_threshold_loudest_first() {
        let mut o = observer(2, -70);
        let (a, b, c) = (
            ProducerId::from_raw(1),
            ProducerId::from_raw(2),
            ProducerId::from_raw(3),
        );
        for level in [-30, -41] {
            o.add_level(a, level); // mean 35.5 → −36
        }
        o.add_level(b, -20);
        o.add_level(c, -90); // below the threshold
        o.add_level(ProducerId::from_raw(9), -1); // not observed
        let report = o.take_report();
        assert_eq!(
            report,
            vec![
                AudioLevelVolume {
                    producer: b,
                    volume: -20
                },
                AudioLevelVolume {
                    producer: a,
                    volume: -36
                },
            ]
        );
        assert!(o.take_report().is_empty(), "sums start over each interval");
    }

    #[test]
    fn max_entries_truncates_and_paused_ignores() {
        let mut o = observer(1, -127);
        o.add_level(ProducerId::from_raw(1), -50);
        o.add_level(ProducerId::from_raw(2), -60);
        let report = o.take_report();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].producer, ProducerId::from_raw(1));
        o.paused = true;
        o.add_level(ProducerId::from_raw(1), -10);
        assert!(o.take_report().is_empty());
    }
}
