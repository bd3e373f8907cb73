//! The server's DTLS role: a transport created with `dtls_role: Client` announces it, is the
//! DTLS client of a client that takes the DTLS server role (as mediasoup-client does), carries
//! media both ways and takes the SRTP profile the DTLS server chose; a client that asks for the
//! announced role too is refused with a typed error and may connect again with the right one.

mod common_peers;

use std::time::Duration;

use common_peers::{consume_all, join, sub_delivery};
use sfu_core::ortc::DtlsRole;
use sfu_core::{Error, WebRtcTransportOptions};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn a_transport_as_dtls_client_carries_media_both_ways() {
    let mut sim = Sim::new(seed_from_env("dtls_role_client"));
    sim.dtls_role = DtlsRole::Client;
    let room = sim.create_router();
    let peers = [
        join(&mut sim, room, 0, Protocol::Udp),
        join(&mut sim, room, 1, Protocol::Tcp),
    ];
    let subs = consume_all(&mut sim, &peers);
    sim.run_for(Duration::from_secs(3));

    for (i, client) in sim.clients.iter().enumerate() {
        assert!(!client.dtls_active, "client {i} is the DTLS server");
        assert!(sim.dtls_connected_at(i).is_some(), "client {i} connected");
        // The DTLS server picks the profile; a str0m (dimpl) server prefers AES-256-GCM from
        // the profiles the server offers as DTLS client.
        let stats = sim.sfu.transport_stats(client.id).unwrap();
        assert_eq!(stats.srtp_profile, Some("AEAD_AES_256_GCM"), "client {i}");
    }
    assert_eq!(
        subs.len(),
        4,
        "each peer consumes the other's audio and video"
    );
    for sub in &subs {
        let d = sub_delivery(&sim, sub, sim.start);
        if let Err(e) = d.check(20) {
            panic!(
                "{:?} from client {} to {}: {e}",
                sub.kind, sub.send, sub.recv
            );
        }
    }
}

#[test]
fn the_announced_dtls_role_is_in_the_transport_parameters() {
    let mut sim = Sim::new(seed_from_env("dtls_role_announced"));
    let room = sim.create_router();
    for role in [DtlsRole::Auto, DtlsRole::Client, DtlsRole::Server] {
        let created = sim
            .sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: sim.listen_infos(),
                    dtls_role: role,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(created.parameters.dtls_parameters.role, Some(role));
    }
}

#[test]
fn a_client_contradicting_the_announced_role_is_refused() {
    let mut sim = Sim::new(seed_from_env("dtls_role_conflict"));
    let room = sim.create_router();
    for (announced, wrong, right) in [
        (DtlsRole::Client, DtlsRole::Client, DtlsRole::Server),
        (DtlsRole::Server, DtlsRole::Server, DtlsRole::Client),
    ] {
        let created = sim
            .sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: sim.listen_infos(),
                    dtls_role: announced,
                    ..Default::default()
                },
            )
            .unwrap();
        let mut dtls = created.parameters.dtls_parameters.clone();
        dtls.role = Some(wrong);
        assert_eq!(
            sim.sfu.connect_webrtc_transport(created.id, &dtls),
            Err(Error::DtlsRoleConflict {
                announced,
                remote: wrong
            })
        );
        // Nothing changed: the client may connect with the role it should take.
        dtls.role = Some(right);
        sim.sfu
            .connect_webrtc_transport(created.id, &dtls)
            .expect("the opposite role connects");
        // A client that leaves the choice to the server is fine too.
        let again = sim
            .sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: sim.listen_infos(),
                    dtls_role: announced,
                    ..Default::default()
                },
            )
            .unwrap();
        dtls.role = Some(DtlsRole::Auto);
        sim.sfu
            .connect_webrtc_transport(again.id, &dtls)
            .expect("auto connects");
    }
}
