//! Acceptance: an active speaker observer names the dominant speaker among three talkers who
//! take turns: it changes within 1.5 s of each turn and not during short interjections, and it
//! follows pause, resume, removal and close with typed errors for misuse.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{join, Peer};
use sfu_core::{ActiveSpeakerObserverOptions, Error, Event, ObserverId, ProducerId};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

const TALK: i8 = -25;
const QUIET: i8 = -90;

fn set_level(sim: &mut Sim, peer: &Peer, level: i8) {
    for p in &mut sim.publications {
        if p.producer == peer.audio {
            p.source.audio_level = Some(level);
        }
    }
}

/// The dominant speakers the observer named, with when.
fn dominants(sim: &Sim, observer: ObserverId) -> Vec<(Instant, ProducerId)> {
    sim.events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::ActiveSpeakerObserverDominantSpeaker {
                observer: o,
                producer,
            } if *o == observer => Some((*at, *producer)),
            _ => None,
        })
        .collect()
}

/// A router closes with its observers of both kinds.
#[test]
fn a_router_closes_with_its_observers() {
    let (mut sim, [a, _, _], observer) = room_of_three("active_speaker_router_close");
    let room = a.router;
    let levels = sim
        .sfu
        .create_audio_level_observer(room, Default::default())
        .expect("audio level observer");
    sim.sfu.close_router(room).expect("close");
    assert!(matches!(
        sim.sfu.close_active_speaker_observer(observer),
        Err(Error::UnknownObserver(_))
    ));
    assert!(matches!(
        sim.sfu.close_audio_level_observer(levels),
        Err(Error::UnknownObserver(_))
    ));
    assert_eq!(sim.sfu.footprint().observers, 0);
}

fn room_of_three(name: &str) -> (Sim, [Peer; 3], ObserverId) {
    let mut sim = Sim::new(seed_from_env(name));
    let room = sim.create_router();
    let peers = [0, 1, 2].map(|n| join(&mut sim, room, n, Protocol::Udp));
    let observer = sim
        .sfu
        .create_active_speaker_observer(room, ActiveSpeakerObserverOptions::default())
        .expect("observer");
    for p in &peers {
        set_level(&mut sim, p, QUIET);
        sim.sfu
            .active_speaker_observer_add_producer(observer, p.audio)
            .expect("add");
    }
    sim.run_for(Duration::from_millis(500)); // ICE + DTLS
    (sim, peers, observer)
}

#[test]
fn the_dominant_speaker_follows_turns_not_interjections() {
    let (mut sim, [a, b, c], observer) = room_of_three("active_speaker_turns");
    sim.run_for(Duration::from_secs(2));
    assert!(dominants(&sim, observer).is_empty(), "nobody spoke");

    // (talker, interjector) per 4-second turn; mid-turn the talker pauses for 400 ms while the
    // interjector speaks.
    let turns = [(&a, Some(&c)), (&b, Some(&c)), (&c, Some(&a)), (&a, None)];
    let mut turn_starts = Vec::new();
    for (talker, interjector) in turns {
        for p in [&a, &b, &c] {
            set_level(
                &mut sim,
                p,
                if p.send == talker.send { TALK } else { QUIET },
            );
        }
        turn_starts.push((sim.now, talker.audio));
        sim.run_for(Duration::from_millis(1800));
        if let Some(i) = interjector {
            // The talker pauses for breath and someone else gets a few words in.
            set_level(&mut sim, talker, QUIET);
            set_level(&mut sim, i, TALK);
            sim.run_for(Duration::from_millis(400));
            set_level(&mut sim, i, QUIET);
            set_level(&mut sim, talker, TALK);
        } else {
            sim.run_for(Duration::from_millis(400));
        }
        sim.run_for(Duration::from_millis(1800));
    }

    let got = dominants(&sim, observer);
    assert_eq!(
        got.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        turn_starts.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        "one change per turn, none for interjections: {got:?}"
    );
    for ((at, _), (start, _)) in got.iter().zip(&turn_starts) {
        let took = *at - *start;
        assert!(took <= Duration::from_millis(1500), "took {took:?}");
    }
}

#[test]
fn pause_removal_close_and_misuse() {
    let (mut sim, [a, b, _], observer) = room_of_three("active_speaker_api");
    set_level(&mut sim, &a, TALK);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(dominants(&sim, observer).last().map(|d| d.1), Some(a.audio));

    // Paused: B's turn goes unnoticed; resumed, it is seen.
    sim.sfu.pause_active_speaker_observer(observer).unwrap();
    set_level(&mut sim, &a, QUIET);
    set_level(&mut sim, &b, TALK);
    let paused = sim.now;
    sim.run_for(Duration::from_secs(3));
    assert!(dominants(&sim, observer).iter().all(|(at, _)| *at < paused));
    sim.sfu.resume_active_speaker_observer(observer).unwrap();
    sim.run_for(Duration::from_secs(2));
    assert_eq!(dominants(&sim, observer).last().map(|d| d.1), Some(b.audio));

    // The dominant speaker removed: the next talker takes over.
    sim.sfu
        .active_speaker_observer_remove_producer(observer, b.audio)
        .unwrap();
    set_level(&mut sim, &a, TALK);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(dominants(&sim, observer).last().map(|d| d.1), Some(a.audio));

    // Misuse: video, another kind's calls, unknown ids.
    assert!(matches!(
        sim.sfu
            .active_speaker_observer_add_producer(observer, a.video),
        Err(Error::NotAudio(_))
    ));
    assert!(matches!(
        sim.sfu.pause_audio_level_observer(observer),
        Err(Error::UnknownObserver(_))
    ));
    sim.sfu.close_active_speaker_observer(observer).unwrap();
    let closed = sim.now;
    sim.run_for(Duration::from_secs(2));
    assert!(dominants(&sim, observer)
        .iter()
        .all(|(at, _)| *at <= closed));
    assert!(matches!(
        sim.sfu.close_active_speaker_observer(observer),
        Err(Error::UnknownObserver(_))
    ));
}

#[test]
fn the_control_api_carries_active_speaker_calls() {
    use sfu_core::control::{Reply, Request};
    let mut sim = Sim::new(seed_from_env("active_speaker_control"));
    let room = sim.create_router();
    let a = join(&mut sim, room, 0, Protocol::Udp);
    let Ok(Reply::Observer(observer)) =
        sim.sfu
            .handle_request(Request::CreateActiveSpeakerObserver {
                router: room,
                options: ActiveSpeakerObserverOptions::default(),
            })
    else {
        panic!("no observer");
    };
    for request in [
        Request::ActiveSpeakerObserverAddProducer {
            observer,
            producer: a.audio,
        },
        Request::PauseActiveSpeakerObserver(observer),
        Request::ResumeActiveSpeakerObserver(observer),
    ] {
        assert_eq!(sim.sfu.handle_request(request), Ok(Reply::Done));
    }
    set_level(&mut sim, &a, TALK);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(dominants(&sim, observer).last().map(|d| d.1), Some(a.audio));
    for request in [
        Request::ActiveSpeakerObserverRemoveProducer {
            observer,
            producer: a.audio,
        },
        Request::CloseActiveSpeakerObserver(observer),
    ] {
        assert_eq!(sim.sfu.handle_request(request), Ok(Reply::Done));
    }
    assert!(sim
        .sfu
        .handle_request(Request::CloseActiveSpeakerObserver(observer))
        .is_err());
}
