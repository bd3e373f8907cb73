//! The cost of forwarding a packet does not grow with idle transports: no datagram walks all
//! transports. Measured as work (transport polls per received datagram), which is exact and
//! repeatable; wall-clock time is printed for information only.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{consume_all, join};
use sfu_core::WebRtcTransportOptions;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Idle transports are created this far apart, so that no two share a deadline (and none
/// shares one with the media: not a divisor of the 20 ms audio or 33.3 ms video intervals).
const STAGGER: Duration = Duration::from_micros(1_730);

/// How many idle transports the big run has (and how many creation slots every run waits).
const IDLE: usize = 1000;

/// What a run cost.
#[derive(Debug, Clone, Copy)]
struct Work {
    /// Transport polls over the whole run: on datagrams, on deadlines, and in `poll_output`
    /// when consumer transports are flushed.
    polls: u64,
    /// Datagrams the server received.
    receives: u64,
    /// Packets forwarded to consumers.
    forwarded: u64,
    /// Virtual time from each idle transport's creation to the end of the run.
    idle_lifetimes: Duration,
}

/// One scenario on one timeline: a router; with `conference`, two peers publishing audio and
/// video and consuming each other; one second of media; then `idle` idle transports created
/// one every `STAGGER` (the run waits `IDLE` such slots whatever `idle` is), then four more
/// seconds, in which every idle transport's stack is due once (about three seconds after it
/// was connected). Every run with the same arguments does exactly the same thing.
fn run(conference: bool, idle: usize) -> Work {
    let mut sim = Sim::new(42);
    let room = sim.create_router();
    let subs = if conference {
        let peers: Vec<_> = (0..2)
            .map(|n| join(&mut sim, room, n, Protocol::Udp))
            .collect();
        consume_all(&mut sim, &peers)
    } else {
        Vec::new()
    };
    sim.run_for(Duration::from_secs(1));
    let mut created = Vec::new();
    for slot in 0..IDLE {
        // The Sfu's clock is the last instant it was given: bring it to now, so that a
        // transport is created at the same instant whether or not media kept the Sfu busy.
        sim.sfu.handle_input(sfu_core::Input::Timeout(sim.now));
        if slot < idle {
            create_silent(&mut sim, room);
            created.push(sim.now);
        }
        sim.run_for(STAGGER);
    }
    sim.run_for(Duration::from_secs(4));
    Work {
        polls: sim.sfu.stats().transport_polls,
        receives: sim.server_receives,
        forwarded: subs
            .iter()
            .map(|s| sim.sfu.consumer_stats(s.consumer).unwrap().packets_sent)
            .sum(),
        idle_lifetimes: created.iter().map(|&t| sim.now - t).sum(),
    }
}

/// All transport work is counted, not only what datagrams cause: polls over whole runs, on
/// datagrams, deadlines and output flushes. A conference beside 1000 idle transports costs
/// exactly what the conference alone costs plus what the idle transports alone cost: no
/// datagram, deadline or flush of one transport polls another. The idle transports' deadlines
/// are staggered, so waking all transports whenever one is due would cost ~1000 times more, not
/// the same.
#[test]
fn forwarding_cost_is_flat_with_1000_idle_transports() {
    #[allow(clippy::disallowed_methods)] // Wall time, printed only.
    let started = Instant::now();
    let alone = run(true, 0);
    let wall_alone = started.elapsed();
    let idle = run(false, IDLE);
    #[allow(clippy::disallowed_methods)] // Wall time, printed only.
    let started = Instant::now();
    let both = run(true, IDLE);
    let wall_both = started.elapsed();
    eprintln!(
        "transport polls: conference {} ({} datagrams, {wall_alone:?} wall), {IDLE} idle \
         transports {}, both {} ({} datagrams, {wall_both:?} wall; wall time is informational)",
        alone.polls, alone.receives, idle.polls, both.polls, both.receives
    );
    assert!(
        alone.forwarded > 1_000 && both.forwarded == alone.forwarded,
        "media flowed the same: {} {}",
        alone.forwarded,
        both.forwarded
    );
    assert_eq!(both.receives, alone.receives, "the same conference");
    assert_eq!(
        both.polls,
        alone.polls + idle.polls,
        "transport work is not additive: idle transports cost more beside a conference"
    );
    // An idle transport is polled when created and when connected, and then when its stack is
    // due: at least once in the run (so the staggered deadlines were served), at most once a
    // second of its life.
    let lifetimes = idle.idle_lifetimes.as_secs();
    let (least, most) = (3 * IDLE as u64, 2 * IDLE as u64 + lifetimes);
    assert!(
        (least..=most).contains(&idle.polls),
        "{IDLE} idle transports living {:?} in all: {} polls, expected {least} to {most}",
        idle.idle_lifetimes,
        idle.polls
    );
}

/// Transports that were created but never connected sleep: a runtime that serves each deadline
/// sees time move on, instead of being asked again and again for the same instant.
#[test]
fn unconnected_transports_do_not_spin() {
    let mut sim = Sim::new(7);
    let room = sim.create_router();
    create_unconnected(&mut sim, room, 100);
    let mut last = sim.now;
    let before = sim.sfu.stats().transport_polls;
    for _ in 0..50 {
        let deadline = loop {
            if let sfu_core::Output::Timeout(at) = sim.sfu.poll_output() {
                break at;
            }
        };
        assert!(deadline > last, "the same deadline came back");
        last = deadline;
        sim.sfu.handle_input(sfu_core::Input::Timeout(deadline));
    }
    let polls = sim.sfu.stats().transport_polls - before;
    eprintln!(
        "100 idle transports, 50 deadlines served: {polls} polls, {:?} of time",
        last - sim.now
    );
    assert!(polls <= 50 * 100, "{polls} polls");
}

/// Creates `n` WebRTC transports in `room` that no client ever connects.
fn create_unconnected(sim: &mut Sim, room: sfu_core::RouterId, n: usize) {
    for _ in 0..n {
        sim.sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: sim.listen_infos(),
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

/// Creates a WebRTC transport in `room` and connects it (the DTLS parameters name the server's
/// own certificate, the client role) for a client that never sends anything: a transport whose
/// stack has deadlines (it is due about every three seconds) and no traffic.
fn create_silent(sim: &mut Sim, room: sfu_core::RouterId) {
    let created = sim
        .sfu
        .create_webrtc_transport(
            room,
            WebRtcTransportOptions {
                listen_infos: sim.listen_infos(),
                ..Default::default()
            },
        )
        .unwrap();
    let mut dtls = created.parameters.dtls_parameters.clone();
    dtls.role = Some(sfu_core::ortc::DtlsRole::Client);
    sim.sfu.connect_webrtc_transport(created.id, &dtls).unwrap();
}
