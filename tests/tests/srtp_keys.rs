//! Each transport takes its SRTP keys out of its own DTLS handshake: once DTLS connects, its
//! stats name the negotiated crypto suite (AES-256-GCM, which the server prefers and str0m
//! clients offer), and not before.

use std::time::Duration;

use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn a_connected_transport_reports_its_srtp_crypto_suite() {
    let mut sim = Sim::new(seed_from_env("srtp_keys"));
    let router = sim.create_router();
    let udp = sim.add_transport(router, Protocol::Udp);
    let tcp = sim.add_transport(router, Protocol::Tcp);
    for client in [udp, tcp] {
        let stats = sim.sfu.transport_stats(sim.clients[client].id).unwrap();
        assert_eq!(stats.srtp_profile, None, "client {client} before DTLS");
    }

    sim.run_for(Duration::from_secs(2));

    for client in [udp, tcp] {
        assert!(
            sim.dtls_connected_at(client).is_some(),
            "client {client} never connected"
        );
        let stats = sim.sfu.transport_stats(sim.clients[client].id).unwrap();
        assert_eq!(
            stats.srtp_profile,
            Some("AEAD_AES_256_GCM"),
            "client {client}"
        );
    }
}
