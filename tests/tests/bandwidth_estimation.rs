//! The bandwidth estimate of a consumer transport, from the transport-cc feedback of a str0m
//! client behind a simulated bottleneck: it follows a capacity drop, and the application's
//! limits and the initial value bound it.

use std::time::Duration;

use sfu_core::control::{Reply, Request};
use sfu_core::ortc::MediaKind;
use sfu_core::{Error, WebRtcTransportOptions};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The estimates of transport `client` every 100 ms for `secs` seconds.
fn watch(sim: &mut Sim, client: usize, secs: u64) -> Vec<u64> {
    let id = sim.clients[client].id;
    (0..secs * 10)
        .map(|_| {
            sim.run_for(Duration::from_millis(100));
            sim.sfu
                .transport_stats(id)
                .expect("stats")
                .available_outgoing_bitrate
        })
        .collect()
}

#[test]
fn a_consumer_behind_a_600_kbit_link_is_estimated_below_it() {
    let mut sim = Sim::new(seed_from_env("bwe_capacity_drop"));
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    // About 1 Mbit/s of video.
    let video = sim.produce(alice, MediaKind::Video, 1111);
    let bob = sim.add_transport(room, Protocol::Udp);
    sim.consume(bob, video, sim.device_caps(room), false);
    let toward_bob = |bps| {
        LinkConfig::default()
            .with_latency(Duration::from_millis(20))
            .with_bandwidth_bps(bps)
    };
    let bob_addr = sim.clients[bob].local;
    let server = sim.server_udp;
    sim.net.set_link(server, bob_addr, toward_bob(3_000_000));
    let id = sim.clients[bob].id;
    assert_eq!(
        sim.sfu
            .transport_stats(id)
            .unwrap()
            .available_outgoing_bitrate,
        600_000
    );

    // A link with room: the estimate rises above the initial 600 kbit/s and what is sent.
    let roomy = watch(&mut sim, bob, 15);
    let settled = &roomy[100..];
    assert!(
        settled.iter().all(|&e| (900_000..2_000_000).contains(&e)),
        "{settled:?}"
    );

    // The capacity drops under what the producer sends: within 2 s the estimate is below it.
    sim.net.set_link(server, bob_addr, toward_bob(600_000));
    let dropped = watch(&mut sim, bob, 5);
    assert!(
        dropped[..20].iter().any(|&e| e < 600_000),
        "{:?}",
        &dropped[..20]
    );
    assert!(dropped[20..].iter().all(|&e| e < 600_000), "{dropped:?}");
    let stats = sim.sfu.transport_stats(id).unwrap();
    assert_eq!(
        stats.feedback_ignored, 0,
        "every report matched a packet sent"
    );
}

#[test]
fn the_initial_estimate_and_the_limits_bound_it() {
    let mut sim = Sim::new(seed_from_env("bwe_limits"));
    sim.transport_options = WebRtcTransportOptions {
        initial_available_outgoing_bitrate: 300_000,
        ..Default::default()
    };
    let room = sim.create_router();
    let alice = sim.add_transport(room, Protocol::Udp);
    let video = sim.produce(alice, MediaKind::Video, 1111);
    let bob = sim.add_transport(room, Protocol::Udp);
    sim.consume(bob, video, sim.device_caps(room), false);
    let id = sim.clients[bob].id;
    assert_eq!(
        sim.sfu
            .transport_stats(id)
            .unwrap()
            .available_outgoing_bitrate,
        300_000
    );
    // Through the control requests, as a runtime ferries them.
    let reply = sim.sfu.handle_request(Request::SetMaxOutgoingBitrate {
        transport: id,
        bitrate: 400_000,
    });
    assert!(matches!(reply, Ok(Reply::Done)), "{reply:?}");
    let capped = watch(&mut sim, bob, 5);
    assert!(capped.iter().all(|&e| e <= 400_000), "{capped:?}");
    assert_eq!(capped.last(), Some(&400_000));
    assert!(matches!(
        sim.sfu.set_min_outgoing_bitrate(id, 500_000),
        Err(Error::BitrateLimitConflict {
            min: 500_000,
            max: 400_000
        })
    ));
    sim.sfu.set_max_outgoing_bitrate(id, 0).unwrap();
    let free = watch(&mut sim, bob, 5);
    // Back to growing, 8% a second (media's bitrate is well above).
    assert!(free.last().is_some_and(|&e| e > 500_000), "{free:?}");
    // A floor above a crushed link holds the estimate up.
    sim.sfu.set_min_outgoing_bitrate(id, 2_000_000).unwrap();
    let bob_addr = sim.clients[bob].local;
    let server = sim.server_udp;
    sim.net.set_link(
        server,
        bob_addr,
        LinkConfig::default().with_bandwidth_bps(200_000),
    );
    let floored = watch(&mut sim, bob, 5);
    assert!(floored.iter().all(|&e| e >= 2_000_000), "{floored:?}");
    assert!(
        sim.sfu.transport_stats(id).unwrap().datagrams_sent > 0,
        "media still flows"
    );
    sim.sfu.close_transport(sim.clients[alice].id).unwrap();
    let closed = sim.clients[alice].id;
    assert!(matches!(
        sim.sfu.set_min_outgoing_bitrate(closed, 1),
        Err(Error::UnknownTransport(t)) if t == closed
    ));
}
