//! Acceptance: ICE consent (RFC 7675) and NAT rebinding.
//!
//! - A client that stops sending binding requests loses its consent: after the consent timeout
//!   (30 s by default) its transport reports ICE disconnected, then closes with its consumers,
//!   while a client that keeps checking stays.
//! - A client whose NAT mapping changes mid-call keeps receiving and sending: its next binding
//!   request, from the new address, nominates the new path.

mod common_peers;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common_peers::{join, Peer};
use sfu_core::{Consumed, ConsumerCloseReason, Event, IceState, TransportId};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Packets of consumer SSRC `ssrc` client `client` received after `from`.
fn received_since(sim: &Sim, client: usize, ssrc: u32, from: Instant) -> usize {
    sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at > from)
        .count()
}

/// When each event about `transport` that `pick` selects happened.
fn times(sim: &Sim, pick: impl Fn(&Event) -> bool) -> Vec<Instant> {
    sim.events
        .iter()
        .filter(|(_, e)| pick(e))
        .map(|(at, _)| *at)
        .collect()
}

fn is_closed(e: &Event, transport: TransportId) -> bool {
    matches!(e, Event::TransportClosed { transport: t } if *t == transport)
}

/// Two peers; B receives A's video, which flows for 2 s.
fn a_watches_b(name: &str) -> (Sim, Peer, Peer, Consumed) {
    let mut sim = Sim::new(seed_from_env(name));
    let room = sim.create_router();
    let a = join(&mut sim, room, 0, Protocol::Udp);
    let b = join(&mut sim, room, 1, Protocol::Udp);
    let caps = sim.device_caps(room);
    let consumed = sim.consume(b.recv, a.video, caps, false);
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    sim.run_for(Duration::from_secs(2));
    assert!(received_since(&sim, b.recv, ssrc, sim.start) > 20);
    (sim, a, b, consumed)
}

#[test]
fn a_client_that_stops_checking_loses_its_transport() {
    let (mut sim, a, b, consumed) = a_watches_b("ice_consent");

    // B's receive transport goes silent: no more binding requests (nor RTCP).
    let (gone, stays) = (sim.clients[b.recv].id, sim.clients[a.send].id);
    let silenced_at = sim.now;
    sim.silence(b.recv);
    sim.run_for(Duration::from_secs(45));

    let closed = times(&sim, |e| is_closed(e, gone));
    assert_eq!(closed.len(), 1, "closed once");
    let after = closed[0] - silenced_at;
    // Its last binding request left at most a keepalive interval before the silence.
    assert!(
        after >= Duration::from_secs(25) && after <= Duration::from_secs(31),
        "closed {after:?} after the silence"
    );
    let disconnected = times(&sim, |e| {
        matches!(e, Event::IceStateChange { transport, state: IceState::Disconnected }
            if *transport == gone)
    });
    assert!(
        disconnected.first().is_some_and(|&at| at <= closed[0]),
        "disconnected before it closed: {disconnected:?}"
    );
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::ConsumerClosed { consumer, reason: ConsumerCloseReason::TransportClosed }
            if *consumer == consumed.id)));
    assert!(
        sim.sfu.transport_stats(gone).is_err(),
        "the transport is gone"
    );

    // The publisher kept checking: still open, and its producer still receives.
    assert!(times(&sim, |e| is_closed(e, stays)).is_empty());
    let before = sim.sfu.producer_stats(a.video).unwrap().packets_received;
    sim.run_for(Duration::from_secs(1));
    assert!(sim.sfu.producer_stats(a.video).unwrap().packets_received > before + 20);
}

#[test]
fn media_follows_a_client_whose_nat_mapping_changes() {
    let (mut sim, a, b, consumed) = a_watches_b("nat_rebinding");
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();

    // Both the publisher's and the subscriber's NAT mappings change.
    let new_recv: SocketAddr = "127.0.200.1:41000".parse().unwrap();
    let new_send: SocketAddr = "127.0.200.2:42000".parse().unwrap();
    sim.rebind(b.recv, new_recv);
    sim.rebind(a.send, new_send);
    let rebound_at = sim.now;
    let received_before = sim.sfu.producer_stats(a.video).unwrap().packets_received;
    sim.run_for(Duration::from_secs(10));

    // The subscriber's transport now sends on the new path, and media reaches it there.
    let b_transport = sim.clients[b.recv].id;
    assert!(
        sim.events.iter().any(|(at, e)| *at > rebound_at
            && matches!(e, Event::IceSelectedTupleChange { transport, tuple }
                if *transport == b_transport && tuple.remote == new_recv)),
        "no switch to {new_recv}"
    );
    let late = sim.now - Duration::from_secs(3);
    assert!(
        received_since(&sim, b.recv, ssrc, late) > 50,
        "the subscriber gets media on its new path"
    );
    // The publisher's media from its new address reaches the producer.
    let stats = sim.sfu.producer_stats(a.video).unwrap();
    assert!(
        stats.packets_received > received_before + 100,
        "the producer receives from the new path"
    );
    let a_transport = sim.clients[a.send].id;
    assert!(
        times(&sim, |e| is_closed(e, a_transport)
            || is_closed(e, b_transport))
        .is_empty(),
        "nothing closed"
    );

    // A mapping that keeps moving, past the number of paths a transport keeps: each new path
    // replaces an old one, and media follows the last.
    for port in 43_000..43_012 {
        let public = SocketAddr::new("127.0.200.1".parse().unwrap(), port);
        sim.rebind(b.recv, public);
        sim.run_for(Duration::from_secs(4));
    }
    let last = sim.now - Duration::from_secs(2);
    assert!(
        received_since(&sim, b.recv, ssrc, last) > 30,
        "media follows the twelfth path"
    );
    assert_eq!(sim.sfu.stats().dropped_too_many_tuples, 0);
}
