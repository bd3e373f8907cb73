//! Acceptance: a panic while one transport is served closes that transport, with its events,
//! and leaves the Sfu and every other transport running (a test-only hook forces the panic).

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::room_of;
use sfu_core::{ConsumerCloseReason, Event};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;

#[test]
fn a_panic_closes_only_the_transport_being_served() {
    let mut sim = Sim::new(seed_from_env("fault_isolation"));
    let (peers, subs) = room_of(&mut sim, 3);
    sim.run_for(Duration::from_secs(2));

    let failing = sim.clients[peers[0].send].id;
    sim.sfu.test_only_panic_on_next_datagram(failing);
    let failed_at = sim.now;
    sim.run_for(Duration::from_secs(3));

    assert_eq!(sim.sfu.stats().transport_panics, 1);
    let closed: Vec<_> = sim
        .events
        .iter()
        .filter(|(at, e)| *at >= failed_at && matches!(e, Event::TransportClosed { .. }))
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert!(matches!(closed[0].1, Event::TransportClosed { transport } if transport == failing));
    assert!(sim.sfu.transport_stats(failing).is_err(), "it is gone");
    // Its producers closed, so did their consumers on the other peers.
    for s in subs.iter().filter(|s| s.send == peers[0].send) {
        assert!(
            sim.events.iter().any(|(_, e)| matches!(e,
                Event::ConsumerClosed { consumer, reason: ConsumerCloseReason::ProducerClosed }
                    if *consumer == s.consumer)),
            "consumer {:?} of the failed transport's producer closed",
            s.consumer
        );
    }

    // Everything else keeps flowing: each remaining peer receives the other's media.
    let late: Instant = sim.now;
    sim.run_for(Duration::from_secs(2));
    for s in subs.iter().filter(|s| s.send != peers[0].send) {
        let got = sim.clients[s.recv]
            .received
            .iter()
            .filter(|p| p.ssrc == s.ssrc && p.at > late)
            .count();
        assert!(
            got > 20,
            "{:?} consumer got {got} packets after the panic",
            s.kind
        );
    }
}
