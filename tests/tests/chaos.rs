//! Acceptance: random garbage datagrams and random API calls mixed into a running conference
//! never panic the Sfu and never disturb the valid media flows.

mod common_peers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common_peers::{consume_all, join, Sub};
use proptest::prelude::*;
use sfu_core::ortc::{MediaKind, Protocol as P, RtpParameters};
use sfu_core::{AudioLevelObserverOptions, ConsumeOptions, ProduceOptions};
use sfu_tests::check::stream_report;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[derive(Debug, Clone)]
enum Action {
    /// Random bytes from a random address.
    Garbage {
        bytes: Vec<u8>,
        port: u16,
        tcp: bool,
    },
    /// A STUN binding request naming a real transport's ufrag, with a forged integrity.
    ForgedStun { client: usize, tail: Vec<u8> },
    /// An RTP-shaped datagram from a validated peer's own address (fails SRTP authentication).
    ForgedRtp { client: usize, bytes: Vec<u8> },
    /// A DTLS-shaped datagram from an address ICE never validated.
    StrangerDtls { bytes: Vec<u8> },
    /// Longer than any datagram the Sfu accepts.
    Oversized { len: usize },
    /// Calls with ids that name nothing.
    UnknownIds { raw: u64 },
    /// Produce with parameters parsed from random JSON-ish text.
    BogusProduce { json: String },
    /// An extra transport that consumes, pauses, resumes and closes.
    ExtraConsumer { pause: bool, close: bool },
    /// An audio level observer with random options, put through random calls.
    Observer {
        max_entries: u16,
        threshold: i8,
        interval_ms: u64,
        calls: Vec<u8>,
    },
    /// Let time pass.
    Run { ms: u64 },
}

fn action() -> impl Strategy<Value = Action> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (bytes.clone(), any::<u16>(), any::<bool>())
            .prop_map(|(bytes, port, tcp)| Action::Garbage { bytes, port, tcp }),
        (0usize..4, proptest::collection::vec(any::<u8>(), 0..60))
            .prop_map(|(client, tail)| Action::ForgedStun { client, tail }),
        (0usize..4, proptest::collection::vec(any::<u8>(), 12..200))
            .prop_map(|(client, bytes)| Action::ForgedRtp { client, bytes }),
        bytes
            .clone()
            .prop_map(|bytes| Action::StrangerDtls { bytes }),
        (2001usize..70_000).prop_map(|len| Action::Oversized { len }),
        any::<u64>().prop_map(|raw| Action::UnknownIds { raw }),
        "[ -~]{0,120}".prop_map(|json| Action::BogusProduce { json }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(pause, close)| Action::ExtraConsumer { pause, close }),
        (
            0u16..4,
            any::<i8>(),
            0u64..10_000,
            proptest::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(
                |(max_entries, threshold, interval_ms, calls)| Action::Observer {
                    max_entries,
                    threshold,
                    interval_ms,
                    calls
                }
            ),
        (1u64..300).prop_map(|ms| Action::Run { ms }),
    ]
}

fn stun_binding_request(username: &str, tail: &[u8]) -> Vec<u8> {
    // Header: binding request, length, magic cookie, transaction id.
    let mut attrs = Vec::new();
    let user = username.as_bytes();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    // MESSAGE-INTEGRITY with made-up bytes.
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    let mut mac = [0u8; 20];
    for (m, t) in mac.iter_mut().zip(tail.iter().chain(std::iter::repeat(&7))) {
        *m = *t;
    }
    attrs.extend_from_slice(&mac);
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    msg.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    msg.extend_from_slice(&attrs);
    msg
}

fn apply(sim: &mut Sim, subs: &[Sub], ufrags: &[String], action: &Action, extra: &mut Vec<usize>) {
    let stranger =
        |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9)), port.max(1));
    match action {
        Action::Garbage { bytes, port, tcp } => {
            sim.inject(if *tcp { P::Tcp } else { P::Udp }, stranger(*port), bytes);
        }
        Action::ForgedStun { client, tail } => {
            let c = client % sim.clients.len();
            let msg = stun_binding_request(&format!("{}:evil", ufrags[c % ufrags.len()]), tail);
            sim.inject(P::Udp, stranger(4000), &msg);
            let from = sim.clients[c].local;
            sim.inject(P::Udp, from, &msg);
        }
        Action::ForgedRtp { client, bytes } => {
            let c = client % sim.clients.len();
            let mut b = bytes.clone();
            b[0] = 0x80;
            b[1] &= 0x7f;
            if (64..96).contains(&b[1]) {
                b[1] = 96;
            }
            let from = sim.clients[c].local;
            sim.inject(P::Udp, from, &b);
        }
        Action::StrangerDtls { bytes } => {
            let mut b = bytes.clone();
            b.insert(0, 22);
            sim.inject(P::Udp, stranger(5000), &b);
        }
        Action::Oversized { len } => sim.inject(P::Udp, sim.clients[0].local, &vec![0x80; *len]),
        Action::UnknownIds { raw } => {
            let text = format!("{raw:016x}");
            let c: sfu_core::ConsumerId = text.parse().unwrap();
            let p: sfu_core::ProducerId = text.parse().unwrap();
            let t: sfu_core::TransportId = text.parse().unwrap();
            assert!(sim.sfu.pause_consumer(c).is_err());
            assert!(sim.sfu.resume_producer(p).is_err());
            assert!(sim.sfu.close_transport(t).is_err());
            assert!(sim.sfu.consumer_stats(c).is_err());
            let o: sfu_core::ObserverId = text.parse().unwrap();
            assert!(sim.sfu.pause_audio_level_observer(o).is_err());
            assert!(sim.sfu.audio_level_observer_add_producer(o, p).is_err());
        }
        Action::Observer {
            max_entries,
            threshold,
            interval_ms,
            calls,
        } => {
            let options = AudioLevelObserverOptions {
                max_entries: *max_entries,
                threshold: *threshold,
                interval: Duration::from_millis(*interval_ms),
            };
            let valid = *max_entries > 0 && *threshold <= 0 && *threshold >= -127;
            match sim.sfu.create_audio_level_observer(subs[0].router, options) {
                Ok(o) => {
                    assert!(valid, "options accepted: {max_entries} {threshold}");
                    for call in calls {
                        let sub = &subs[usize::from(*call) % subs.len()];
                        let _ = match call % 5 {
                            0 | 1 => sim.sfu.audio_level_observer_add_producer(o, sub.producer),
                            2 => sim
                                .sfu
                                .audio_level_observer_remove_producer(o, sub.producer),
                            3 => sim.sfu.pause_audio_level_observer(o),
                            _ => sim.sfu.resume_audio_level_observer(o),
                        };
                    }
                    if calls.len() % 2 == 1 {
                        sim.sfu.close_audio_level_observer(o).unwrap();
                    }
                }
                Err(e) => assert!(!valid, "valid options refused: {e}"),
            }
            sim.flush();
        }
        Action::BogusProduce { json } => {
            if let Ok(params) = serde_json::from_str::<RtpParameters>(json) {
                let t = sim.clients[0].id;
                let _ = sim.sfu.produce(
                    t,
                    ProduceOptions {
                        kind: MediaKind::Video,
                        rtp_parameters: params,
                        paused: false,
                    },
                );
            }
            sim.flush();
        }
        Action::ExtraConsumer { pause, close } => {
            let router = sim.sfu.transport_stats(sim.clients[0].id).map(|_| ()).ok();
            if router.is_some() {
                let room = subs[0].router;
                let idx = sim.add_transport(room, Protocol::Udp);
                extra.push(idx);
                let caps = sim.device_caps(room);
                let tid = sim.clients[idx].id;
                if let Ok(c) = sim.sfu.consume(
                    tid,
                    ConsumeOptions {
                        producer: subs[0].producer,
                        rtp_capabilities: caps,
                        paused: false,
                    },
                ) {
                    if *pause {
                        sim.sfu.pause_consumer(c.id).unwrap();
                        sim.sfu.resume_consumer(c.id).unwrap();
                    }
                    if *close {
                        sim.sfu.close_consumer(c.id).unwrap();
                    }
                }
                if *close {
                    sim.sfu.close_transport(tid).unwrap();
                }
                sim.flush();
            }
        }
        Action::Run { ms } => sim.run_for(Duration::from_millis(*ms)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn garbage_and_api_chaos_leave_valid_media_flowing(
        seed in any::<u64>(),
        actions in proptest::collection::vec(action(), 1..40),
    ) {
        let mut sim = Sim::new(seed);
        let room = sim.create_router();
        let peers: Vec<_> = (0..2).map(|n| join(&mut sim, room, n, Protocol::Udp)).collect();
        let subs = consume_all(&mut sim, &peers);
        let ufrags: Vec<String> = (0..sim.clients.len()).map(|i| sim.clients[i].server_ufrag.clone()).collect();
        sim.run_for(Duration::from_secs(1));
        let mut extra = Vec::new();
        for a in &actions {
            apply(&mut sim, &subs, &ufrags, a, &mut extra);
        }
        let check_from = sim.now;
        sim.run_for(Duration::from_millis(1500));

        for sub in &subs {
            let recent = sim.clients[sub.recv].received.iter().filter(|p| p.ssrc == sub.ssrc && p.at >= check_from + Duration::from_millis(500)).count();
            let min = if sub.kind == MediaKind::Audio { 40 } else { 80 };
            prop_assert!(recent >= min, "{:?} flow stalled: {} packets in the last second", sub.kind, recent);
            let r = stream_report(&sim.clients[sub.recv].received, sub.ssrc);
            prop_assert_eq!(r.corrupt, 0);
            prop_assert_eq!(r.gaps, 0, "{:?}", r);
            prop_assert_eq!(r.sources.clone(), vec![sub.source_ssrc]);
        }
        // Everything injected was counted somewhere.
        let s = sim.sfu.stats();
        let injected = actions.iter().filter(|a| !matches!(a, Action::Run { .. } | Action::UnknownIds { .. } | Action::BogusProduce { .. } | Action::ExtraConsumer { .. } | Action::Observer { .. })).count();
        let dropped = s.dropped_oversized + s.dropped_malformed + s.dropped_unknown_source
            + s.dropped_stun_unknown_ufrag + s.dropped_stun_unauthenticated;
        let rtp_dropped: u64 = (0..sim.clients.len()).filter_map(|i| sim.sfu.transport_stats(sim.clients[i].id).ok()).map(|t| t.rtp_dropped + t.rtc_errors).sum();
        prop_assert!(dropped + rtp_dropped >= injected as u64, "dropped {} + {} < injected {}", dropped, rtp_dropped, injected);
    }
}
