//! Acceptance: 10,000 joins and leaves on one Sfu (transport, connect, produce, consume, an
//! observed producer, close) leave every table of the Sfu as it found them, while a resident
//! peer's media keeps flowing. Fifty of the joins are whole clients (ICE, DTLS, media both
//! ways); the rest go through the API only.

mod common_peers;

use std::time::Duration;

use common_peers::join;
use sfu_core::ortc::{DtlsParameters, MediaKind, RtpParameters};
use sfu_core::{
    AudioLevelObserverOptions, ConsumeOptions, Footprint, ProduceOptions, WebRtcTransportOptions,
};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The resident set size of this process, in KiB (Linux), for the report.
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

fn audio_parameters(ssrc: u32) -> RtpParameters {
    serde_json::from_value(serde_json::json!({
        "mid": "0",
        "codecs": [{ "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000,
                     "channels": 2, "parameters": {}, "rtcpFeedback": [] }],
        "headerExtensions": [
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4 },
            { "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1 }
        ],
        "encodings": [{ "ssrc": ssrc }],
        "rtcp": { "cname": "churn" }
    }))
    .expect("parameters")
}

fn dtls_client() -> DtlsParameters {
    let value = vec!["AB"; 32].join(":");
    serde_json::from_value(serde_json::json!({
        "role": "client",
        "fingerprints": [{ "algorithm": "sha-256", "value": value }]
    }))
    .expect("DTLS parameters")
}

/// The footprint with what only grows or is reused bounded: stale heap entries, spare buffers.
fn tables(mut f: Footprint) -> Footprint {
    f.timer_entries = 0;
    f.spare_buffers = 0;
    f
}

#[test]
fn ten_thousand_joins_and_leaves_leave_nothing_behind() {
    let mut sim = Sim::new(seed_from_env("churn"));
    let room = sim.create_router();
    let resident = join(&mut sim, room, 0, Protocol::Udp);
    let observer = sim
        .sfu
        .create_audio_level_observer(room, AudioLevelObserverOptions::default())
        .expect("observer");
    sim.sfu
        .audio_level_observer_add_producer(observer, resident.audio)
        .expect("observe");
    sim.run_for(Duration::from_secs(1));
    sim.flush();
    let before = sim.sfu.footprint();

    // Whole clients: join, consume the resident and be consumed, exchange media, leave.
    let caps = sim.device_caps(room);
    for n in 1..=50 {
        let p = join(&mut sim, room, n, Protocol::Udp);
        sim.consume(p.recv, resident.video, caps.clone(), false);
        let back = sim.consume(resident.recv, p.audio, caps.clone(), false);
        sim.run_for(Duration::from_millis(300));
        let ssrc = back.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
        assert!(
            sim.clients[resident.recv]
                .received
                .iter()
                .any(|r| r.ssrc == ssrc),
            "the resident heard peer {n}"
        );
        for client in [p.send, p.recv] {
            let id = sim.clients[client].id;
            sim.sfu.close_transport(id).expect("close");
        }
        sim.flush();
    }

    // API-only joins: the same objects, without a client behind them. (The harness's event log
    // is emptied as it goes, so the process's memory shows the Sfu's.)
    let listen_infos = sim.listen_infos();
    let mut rss = Vec::new();
    for n in 0..9_950u32 {
        if n % 2_000 == 0 {
            sim.events.clear();
            rss.extend(rss_kib());
        }
        let created = sim
            .sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: listen_infos.clone(),
                    ..Default::default()
                },
            )
            .expect("transport");
        let t = created.id;
        sim.sfu
            .connect_webrtc_transport(t, &dtls_client())
            .expect("connect");
        let producer = sim
            .sfu
            .produce(
                t,
                ProduceOptions {
                    kind: MediaKind::Audio,
                    rtp_parameters: audio_parameters(0x4000_0000 + n),
                    paused: false,
                },
            )
            .expect("produce");
        sim.sfu
            .audio_level_observer_add_producer(observer, producer)
            .expect("observe");
        sim.sfu
            .consume(
                t,
                ConsumeOptions {
                    producer: resident.audio,
                    rtp_capabilities: caps.clone(),
                    paused: false,
                },
            )
            .expect("consume");
        sim.sfu.close_transport(t).expect("close");
        if n % 100 == 0 {
            sim.flush();
        }
    }
    // Deadlines of what closed pass; the resident's media goes on.
    sim.run_for(Duration::from_secs(2));
    sim.flush();
    let after = sim.sfu.footprint();
    assert_eq!(
        tables(after),
        tables(before),
        "before {before:#?}, after {after:#?}"
    );
    assert!(
        after.timer_entries <= 4 * after.timers + 64,
        "stale deadlines are dropped: {after:?}"
    );
    let got = sim
        .sfu
        .producer_stats(resident.video)
        .unwrap()
        .packets_received;
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.sfu
            .producer_stats(resident.video)
            .unwrap()
            .packets_received
            > got + 20
    );
    eprintln!("churn: RSS every 2,000 API joins (KiB): {rss:?}");
}
