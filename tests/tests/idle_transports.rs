//! The cost of forwarding a packet does not grow with idle transports: no datagram walks all
//! transports. Measured as work (transport polls per received datagram), which is exact and
//! repeatable; wall-clock time is printed for information only.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{consume_all, join};
use sfu_core::WebRtcTransportOptions;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Runs a two-peer conference beside `idle` idle transports; returns (transport polls per
/// datagram the server received, wall time per datagram, packets forwarded).
fn run(idle: usize) -> (f64, Duration, u64) {
    let mut sim = Sim::new(42);
    let room = sim.create_router();
    create_unconnected(&mut sim, room, idle);
    sim.flush();
    let peers: Vec<_> = (0..2)
        .map(|n| join(&mut sim, room, n, Protocol::Udp))
        .collect();
    let subs = consume_all(&mut sim, &peers);
    sim.run_for(Duration::from_secs(1));
    let (r0, p0) = (sim.server_receives, sim.server_receive_polls);
    #[allow(clippy::disallowed_methods)] // Wall time, printed only.
    let started = Instant::now();
    sim.run_for(Duration::from_secs(2));
    let wall = started.elapsed();
    let receives = sim.server_receives - r0;
    let polls = sim.server_receive_polls - p0;
    let forwarded: u64 = subs
        .iter()
        .map(|s| sim.sfu.consumer_stats(s.consumer).unwrap().packets_sent)
        .sum();
    (
        polls as f64 / receives as f64,
        wall / receives as u32,
        forwarded,
    )
}

#[test]
fn forwarding_cost_is_flat_with_1000_idle_transports() {
    let (polls_0, wall_0, fwd_0) = run(0);
    let (polls_1000, wall_1000, fwd_1000) = run(1000);
    eprintln!(
        "per received datagram: {polls_0:.3} polls / {wall_0:?} wall with 0 idle transports, \
         {polls_1000:.3} polls / {wall_1000:?} wall with 1000 (wall time is informational)"
    );
    assert!(
        fwd_0 > 500 && fwd_1000 > 500,
        "media flowed: {fwd_0} {fwd_1000}"
    );
    assert!(
        (polls_1000 - polls_0).abs() / polls_0 < 0.02,
        "work per datagram grew with idle transports: {polls_0} -> {polls_1000}"
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
                },
            )
            .unwrap();
    }
}
