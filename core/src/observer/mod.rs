//! RTP observers: objects of a router that watch some of its audio producers through the audio
//! level header extension (RFC 6464) their packets carry, and report by events. Two kinds, as
//! in mediasoup: audio level observers ([`audio_level`]: the loudest producers every interval)
//! and active speaker observers ([`active_speaker`]: the dominant speaker, when it changes).
//!
//! Each observed packet adds its level to the observer's state for its producer (no allocation,
//! no scan beyond the producer's own observers); a deadline per observer does the rest.

pub(crate) mod active_speaker;
pub(crate) mod audio_level;
mod dominant;

use std::time::Instant;

use crate::error::Error;
use crate::ids::{ObserverId, ProducerId, RouterId};
use crate::ortc::MediaKind;
use crate::sfu::{Sfu, TimerKey};
use active_speaker::ActiveSpeakerObserver;
use audio_level::AudioLevelObserver;

pub use active_speaker::ActiveSpeakerObserverOptions;
pub use audio_level::AudioLevelObserverOptions;

/// One observer of either kind.
#[derive(Debug)]
pub(crate) enum Observer {
    AudioLevel(AudioLevelObserver),
    ActiveSpeaker(ActiveSpeakerObserver),
}

/// Which kind an API call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObserverKind {
    AudioLevel,
    ActiveSpeaker,
}

impl Observer {
    fn kind(&self) -> ObserverKind {
        match self {
            Observer::AudioLevel(_) => ObserverKind::AudioLevel,
            Observer::ActiveSpeaker(_) => ObserverKind::ActiveSpeaker,
        }
    }

    fn router(&self) -> RouterId {
        match self {
            Observer::AudioLevel(o) => o.router,
            Observer::ActiveSpeaker(o) => o.router,
        }
    }

    /// Adds the level (dBov) of one packet of `producer`, arrived at `now`.
    pub(crate) fn add_level(&mut self, producer: ProducerId, level: i8, now: Instant) {
        match self {
            Observer::AudioLevel(o) => o.add_level(producer, level),
            Observer::ActiveSpeaker(o) => o.add_level(producer, level, now),
        }
    }

    fn producer_ids(&self) -> Vec<ProducerId> {
        match self {
            Observer::AudioLevel(o) => o.producers.iter().map(|(p, _)| *p).collect(),
            Observer::ActiveSpeaker(o) => o.producers.iter().map(|(p, _)| *p).collect(),
        }
    }

    fn add_producer(&mut self, producer: ProducerId) {
        match self {
            Observer::AudioLevel(o) => o.add_producer(producer),
            Observer::ActiveSpeaker(o) => o.add_producer(producer),
        }
    }

    fn remove_producer(&mut self, producer: ProducerId) {
        match self {
            Observer::AudioLevel(o) => o.remove_producer(producer),
            Observer::ActiveSpeaker(o) => o.remove_producer(producer),
        }
    }
}

impl Sfu {
    /// Registers a new observer in `router`, its first deadline at `first`.
    pub(crate) fn insert_observer(
        &mut self,
        router: RouterId,
        observer: Observer,
        first: Instant,
    ) -> Result<ObserverId, Error> {
        let id = ObserverId::from_raw(self.next_u64());
        let r = self
            .routers
            .get_mut(&router)
            .ok_or(Error::UnknownRouter(router))?;
        r.observers.push(id);
        self.observers.insert(id, observer);
        self.timers.schedule(TimerKey::Observer(id), first);
        Ok(id)
    }

    /// The observer `id`, if it is of `kind`.
    pub(crate) fn observer_mut(
        &mut self,
        id: ObserverId,
        kind: ObserverKind,
    ) -> Result<&mut Observer, Error> {
        self.observers
            .get_mut(&id)
            .filter(|o| o.kind() == kind)
            .ok_or(Error::UnknownObserver(id))
    }

    /// Closes an observer of `kind`.
    pub(crate) fn close_observer(
        &mut self,
        id: ObserverId,
        kind: ObserverKind,
    ) -> Result<(), Error> {
        self.observer_mut(id, kind)?;
        let Some(o) = self.observers.remove(&id) else {
            return Err(Error::UnknownObserver(id));
        };
        for pid in o.producer_ids() {
            if let Some(p) = self.producers.get_mut(&pid) {
                p.observers.retain(|&x| x != id);
            }
        }
        if let Some(r) = self.routers.get_mut(&o.router()) {
            r.observers.retain(|&x| x != id);
        }
        self.timers.cancel(TimerKey::Observer(id));
        Ok(())
    }

    /// Closes an observer of either kind (with its router).
    pub(crate) fn close_any_observer(&mut self, id: ObserverId) -> Result<(), Error> {
        let kind = self
            .observers
            .get(&id)
            .map(Observer::kind)
            .ok_or(Error::UnknownObserver(id))?;
        self.close_observer(id, kind)
    }

    /// Starts observing an audio producer of the observer's router. Adding one twice is a no-op.
    pub(crate) fn observe(
        &mut self,
        id: ObserverId,
        kind: ObserverKind,
        producer: ProducerId,
    ) -> Result<(), Error> {
        let router = self.observer_mut(id, kind)?.router();
        let p = self
            .producers
            .get_mut(&producer)
            .ok_or(Error::UnknownProducer(producer))?;
        if p.router != router {
            return Err(Error::WrongRouter(producer));
        }
        if p.kind != MediaKind::Audio {
            return Err(Error::NotAudio(producer));
        }
        if !p.observers.contains(&id) {
            p.observers.push(id);
            if let Some(o) = self.observers.get_mut(&id) {
                o.add_producer(producer);
            }
        }
        Ok(())
    }

    /// Stops observing a producer.
    pub(crate) fn unobserve(
        &mut self,
        id: ObserverId,
        kind: ObserverKind,
        producer: ProducerId,
    ) -> Result<(), Error> {
        self.observer_mut(id, kind)?.remove_producer(producer);
        let p = self
            .producers
            .get_mut(&producer)
            .ok_or(Error::UnknownProducer(producer))?;
        p.observers.retain(|&x| x != id);
        Ok(())
    }

    /// An observer's deadline.
    pub(crate) fn observer_timeout(&mut self, id: ObserverId) {
        match self.observers.get(&id).map(Observer::kind) {
            Some(ObserverKind::AudioLevel) => self.audio_level_report(id),
            Some(ObserverKind::ActiveSpeaker) => self.active_speaker_decision(id),
            None => {}
        }
    }

    /// Forgets a closing producer in the observers that watch it.
    pub(crate) fn unobserve_producer(&mut self, producer: ProducerId, observers: &[ObserverId]) {
        for oid in observers {
            if let Some(o) = self.observers.get_mut(oid) {
                o.remove_producer(producer);
            }
        }
    }
}
