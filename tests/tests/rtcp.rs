//! RTCP behaviour: key frame requests are merged and throttled, sender reports reach
//! consumers, and ICE restarts keep media flowing.

mod common_peers;

use std::time::Duration;

use common_peers::join;
use sfu_tests::check::stream_report;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn consumer_plis_become_one_throttled_key_frame_request() {
    let mut sim = Sim::new(seed_from_env("pli_throttle"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let caps = sim.device_caps(room);
    let mut viewers = Vec::new();
    for _ in 0..4 {
        let v = sim.add_transport(room, Protocol::Udp);
        let c = sim.consume(v, alice.video, caps.clone(), false);
        viewers.push((
            v,
            c.parameters.rtp_parameters.encodings[0].ssrc.unwrap(),
            c.id,
        ));
    }
    sim.run_for(Duration::from_secs(2));
    let before = video_requests(&sim, alice.video);
    // All four viewers send a PLI at the same instant, and again 50 ms later.
    for round in 0..2 {
        for &(v, ssrc, _) in &viewers {
            let now = sim.now;
            sim.clients[v].request_key_frame(now, ssrc);
        }
        sim.flush();
        if round == 0 {
            sim.run_for(Duration::from_millis(50));
        }
    }
    sim.run_for(Duration::from_secs(1));
    let got = video_requests(&sim, alice.video) - before;
    let received: u64 = viewers
        .iter()
        .map(|(_, _, c)| {
            sim.sfu
                .consumer_stats(*c)
                .unwrap()
                .key_frame_requests_received
        })
        .sum();
    eprintln!("viewers sent 8 PLIs; the server saw {received}; the publisher got {got} requests");
    assert_eq!(received, 8, "every PLI reached the server");
    // One request right away, one merged request when the 200 ms interval ends.
    assert!(
        (1..=2).contains(&got),
        "publisher got {got} key frame requests"
    );
}

fn video_requests(sim: &Sim, producer: sfu_core::ProducerId) -> u64 {
    sim.publications
        .iter()
        .filter(|p| p.producer == producer)
        .map(|p| p.key_frame_requests)
        .sum()
}

#[test]
fn consumers_get_sender_reports() {
    let mut sim = Sim::new(seed_from_env("sender_reports"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    sim.consume(bob, alice.audio, caps.clone(), false);
    sim.consume(bob, alice.video, caps, false);
    sim.run_for(Duration::from_secs(6));
    assert!(
        sim.clients[bob].sender_reports >= 2,
        "SRs: {}",
        sim.clients[bob].sender_reports
    );
    // The publisher gets the server's receiver reports' counterpart: its own SRs are read.
    assert!(sim.clients[alice.send].sender_reports == 0);
}

#[test]
fn ice_restart_keeps_media_flowing() {
    let mut sim = Sim::new(seed_from_env("ice_restart"));
    let room = sim.create_router();
    let alice = join(&mut sim, room, 0, Protocol::Udp);
    let bob = sim.add_transport(room, Protocol::Udp);
    let caps = sim.device_caps(room);
    let c = sim.consume(bob, alice.audio, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(1));
    for client in [alice.send, bob] {
        let id = sim.clients[client].id;
        let ice = sim.sfu.restart_ice(id).unwrap();
        assert_ne!(ice.username_fragment, sim.clients[client].server_ufrag);
        let now = sim.now;
        sim.clients[client].restart_ice(now, &ice);
        sim.flush();
    }
    let restarted = sim.now;
    // Long enough for ICE consent to expire had the restart failed.
    sim.run_for(Duration::from_secs(12));
    let late = restarted + Duration::from_secs(10);
    let after = sim.clients[bob]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at > late)
        .count();
    assert!(after > 80, "audio after ICE restart: {after}");
    for client in [alice.send, bob] {
        let states = &sim.clients[client].ice_states;
        assert_ne!(
            states.last(),
            Some(&str0m::IceConnectionState::Disconnected),
            "{states:?}"
        );
    }
    assert_eq!(sim.sfu.stats().dropped_stun_unauthenticated, 0);
    assert_eq!(sim.sfu.stats().dropped_stun_unknown_ufrag, 0);
    let r = stream_report(&sim.clients[bob].received, ssrc);
    assert_eq!(r.corrupt, 0);
}
