//! Acceptance: audio level observers report the loudest producers from the levels their
//! packets carry, go silent once, follow pause/resume and producer/router close, and refuse
//! misuse with typed errors.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{join, Peer};
use sfu_core::{AudioLevelObserverOptions, AudioLevelVolume, Error, Event, ObserverId};
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Sets the level a peer's microphone sends (`None`: packets without the extension).
fn set_level(sim: &mut Sim, peer: &Peer, level: Option<i8>) {
    for p in &mut sim.publications {
        if p.producer == peer.audio {
            p.source.audio_level = level;
        }
    }
}

/// The observer's reports since `from`: `Some(volumes)` for volumes, `None` for silence.
fn reports(sim: &Sim, observer: ObserverId, from: Instant) -> Vec<Option<Vec<AudioLevelVolume>>> {
    sim.events
        .iter()
        .filter(|(at, _)| *at >= from)
        .filter_map(|(_, e)| match e {
            Event::AudioLevelObserverVolumes {
                observer: o,
                volumes,
            } if *o == observer => Some(Some(volumes.clone())),
            Event::AudioLevelObserverSilence { observer: o } if *o == observer => Some(None),
            _ => None,
        })
        .collect()
}

fn room_of_three(name: &str) -> (Sim, sfu_core::RouterId, [Peer; 3]) {
    let mut sim = Sim::new(seed_from_env(name));
    let room = sim.create_router();
    let peers = [0, 1, 2].map(|n| join(&mut sim, room, n, Protocol::Udp));
    sim.run_for(Duration::from_millis(500)); // ICE + DTLS
    (sim, room, peers)
}

/// Consumers get every packet of an observed producer with the level it was sent with, while
/// the observer reports it.
#[test]
fn consumers_receive_every_packet_with_its_level() {
    let (mut sim, room, [a, b, _]) = room_of_three("audio_level_forwarded");
    let caps = sim.device_caps(room);
    let consumed = sim.consume(b.recv, a.audio, caps, false);
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let observer = sim
        .sfu
        .create_audio_level_observer(room, AudioLevelObserverOptions::default())
        .unwrap();
    sim.sfu
        .audio_level_observer_add_producer(observer, a.audio)
        .unwrap();
    let start = sim.now;
    for level in [-20, -45, -127, -60] {
        set_level(&mut sim, &a, Some(level));
        sim.run_for(Duration::from_millis(500));
    }
    set_level(&mut sim, &a, None);
    sim.run_for(Duration::from_millis(500));
    let expect = Expect::between(a.audio_ssrc, start, sim.now - Duration::from_millis(200));
    let d = delivery(&sim, b.recv, ssrc, &[expect]);
    d.assert_clean(100);
    let levels: Vec<Option<i8>> = sim.clients[b.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= start)
        .map(|p| p.audio_level)
        .collect();
    for level in [Some(-20), Some(-45), Some(-127), Some(-60), None] {
        assert!(levels.contains(&level), "{level:?} reached the consumer");
    }
    assert!(!reports(&sim, observer, start).is_empty());
}

#[test]
fn reports_the_loudest_producers_then_silence_once() {
    let (mut sim, room, [a, b, c]) = room_of_three("audio_level_loudest");
    let observer = sim
        .sfu
        .create_audio_level_observer(
            room,
            AudioLevelObserverOptions {
                max_entries: 2,
                threshold: -70,
                interval: Duration::from_millis(500),
            },
        )
        .unwrap();
    for p in [&a, &b, &c] {
        sim.sfu
            .audio_level_observer_add_producer(observer, p.audio)
            .unwrap();
    }
    set_level(&mut sim, &a, Some(-40));
    set_level(&mut sim, &b, Some(-25));
    set_level(&mut sim, &c, Some(-90)); // below the threshold
    let start = sim.now;
    sim.run_for(Duration::from_millis(2100));
    let got = reports(&sim, observer, start);
    assert_eq!(got.len(), 4, "one report per 500 ms interval: {got:?}");
    let expected = vec![
        AudioLevelVolume {
            producer: b.audio,
            volume: -25,
        },
        AudioLevelVolume {
            producer: a.audio,
            volume: -40,
        },
    ];
    for r in &got {
        assert_eq!(r.as_ref(), Some(&expected), "loudest first, c left out");
    }

    // Everyone goes quiet: one silence report, then nothing while it lasts.
    for p in [&a, &b, &c] {
        set_level(&mut sim, p, Some(-127));
    }
    let quiet = sim.now;
    sim.run_for(Duration::from_millis(2100));
    let got = reports(&sim, observer, quiet);
    assert_eq!(got, vec![None], "silence is reported once: {got:?}");

    // Sound again, then the loud producer closes: the rest carry on without it.
    set_level(&mut sim, &a, Some(-30));
    set_level(&mut sim, &b, Some(-60));
    let again = sim.now;
    sim.run_for(Duration::from_millis(1100));
    let got = reports(&sim, observer, again);
    assert!(!got.is_empty());
    assert!(got
        .iter()
        .all(|r| r.as_ref().is_some_and(|v| v[0].producer == a.audio)));
    sim.sfu.close_producer(a.audio).unwrap();
    let closed = sim.now;
    sim.run_for(Duration::from_millis(1100));
    let got = reports(&sim, observer, closed);
    assert!(!got.is_empty());
    for r in &got {
        let v = r.as_ref().expect("b is still loud enough");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].producer, b.audio);
        assert_eq!(v[0].volume, -60);
    }
}

#[test]
fn packets_without_levels_paused_producers_and_paused_observers_report_nothing() {
    let (mut sim, room, [a, b, _]) = room_of_three("audio_level_quiet");
    let observer = sim
        .sfu
        .create_audio_level_observer(room, AudioLevelObserverOptions::default())
        .unwrap();
    sim.sfu
        .audio_level_observer_add_producer(observer, a.audio)
        .unwrap();
    // No extension in a's packets; b is loud but not observed.
    set_level(&mut sim, &b, Some(-10));
    let start = sim.now;
    sim.run_for(Duration::from_millis(2500));
    assert!(reports(&sim, observer, start).is_empty());

    // Loud and observed: reported; producer paused: its packets no longer count.
    set_level(&mut sim, &a, Some(-20));
    let loud = sim.now;
    sim.run_for(Duration::from_millis(2100));
    assert!(!reports(&sim, observer, loud).is_empty());
    sim.sfu.pause_producer(a.audio).unwrap();
    let pause = sim.now;
    sim.run_for(Duration::from_millis(2100));
    // At most the interval that straddles the pause still has sound; then silence, once.
    let got = reports(&sim, observer, pause);
    assert_eq!(got.last(), Some(&None), "{got:?}");
    assert!(got.len() <= 2 && got[..got.len() - 1].iter().all(Option::is_some));
    let paused = sim.now;
    sim.run_for(Duration::from_millis(2100));
    assert_eq!(
        reports(&sim, observer, paused),
        vec![],
        "nothing while paused"
    );
    sim.sfu.resume_producer(a.audio).unwrap();

    // Observer paused after sound: silence once at the pause, then nothing; resumed: reports.
    sim.run_for(Duration::from_millis(2100));
    let before_pause = sim.now;
    sim.sfu.pause_audio_level_observer(observer).unwrap();
    sim.flush();
    sim.run_for(Duration::from_millis(3000));
    assert_eq!(reports(&sim, observer, before_pause), vec![None]);
    sim.sfu.resume_audio_level_observer(observer).unwrap();
    let resumed = sim.now;
    sim.run_for(Duration::from_millis(2100));
    let got = reports(&sim, observer, resumed);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.is_some()));

    // Removed: reports stop (one silence).
    sim.sfu
        .audio_level_observer_remove_producer(observer, a.audio)
        .unwrap();
    let removed = sim.now;
    sim.run_for(Duration::from_millis(3100));
    assert_eq!(reports(&sim, observer, removed), vec![None]);
}

#[test]
fn misuse_is_refused_and_closing_the_router_closes_the_observer() {
    let (mut sim, room, [a, _, _]) = room_of_three("audio_level_misuse");
    let other_room = sim.create_router();
    let bad = |max_entries, threshold| AudioLevelObserverOptions {
        max_entries,
        threshold,
        ..Default::default()
    };
    assert!(matches!(
        sim.sfu.create_audio_level_observer(room, bad(0, -80)),
        Err(Error::InvalidObserverOptions(_))
    ));
    assert!(matches!(
        sim.sfu.create_audio_level_observer(room, bad(1, 5)),
        Err(Error::InvalidObserverOptions(_))
    ));
    let observer = sim
        .sfu
        .create_audio_level_observer(room, AudioLevelObserverOptions::default())
        .unwrap();
    assert_eq!(
        sim.sfu.audio_level_observer_add_producer(observer, a.video),
        Err(Error::NotAudio(a.video))
    );
    let elsewhere = sim
        .sfu
        .create_audio_level_observer(other_room, AudioLevelObserverOptions::default())
        .unwrap();
    assert_eq!(
        sim.sfu
            .audio_level_observer_add_producer(elsewhere, a.audio),
        Err(Error::WrongRouter(a.audio))
    );
    sim.sfu
        .audio_level_observer_add_producer(observer, a.audio)
        .unwrap();
    sim.sfu
        .audio_level_observer_add_producer(observer, a.audio)
        .unwrap(); // twice is fine
    sim.sfu.close_router(room).unwrap();
    assert_eq!(
        sim.sfu.pause_audio_level_observer(observer),
        Err(Error::UnknownObserver(observer))
    );
    assert_eq!(
        sim.sfu.close_audio_level_observer(observer),
        Err(Error::UnknownObserver(observer))
    );
    sim.sfu.close_audio_level_observer(elsewhere).unwrap();
}

#[test]
fn the_control_api_carries_observer_calls() {
    use sfu_core::control::{Reply, Request};
    let (mut sim, room, [a, _, _]) = room_of_three("audio_level_control");
    let Ok(Reply::Observer(observer)) = sim.sfu.handle_request(Request::CreateAudioLevelObserver {
        router: room,
        options: AudioLevelObserverOptions {
            interval: Duration::from_millis(100), // clamped to 250 ms
            ..Default::default()
        },
    }) else {
        panic!("no observer");
    };
    for request in [
        Request::AudioLevelObserverAddProducer {
            observer,
            producer: a.audio,
        },
        Request::PauseAudioLevelObserver(observer),
        Request::ResumeAudioLevelObserver(observer),
    ] {
        assert_eq!(sim.sfu.handle_request(request), Ok(Reply::Done));
    }
    set_level(&mut sim, &a, Some(-33));
    let start = sim.now;
    sim.run_for(Duration::from_millis(1010));
    let got = reports(&sim, observer, start);
    assert_eq!(got.len(), 4, "every 250 ms: {got:?}");
    assert_eq!(
        sim.sfu
            .handle_request(Request::AudioLevelObserverRemoveProducer {
                observer,
                producer: a.audio
            }),
        Ok(Reply::Done)
    );
    assert_eq!(
        sim.sfu
            .handle_request(Request::CloseAudioLevelObserver(observer)),
        Ok(Reply::Done)
    );
    assert_eq!(
        sim.sfu
            .handle_request(Request::CloseAudioLevelObserver(observer)),
        Err(Error::UnknownObserver(observer))
    );
}
