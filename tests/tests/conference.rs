//! Acceptance: rooms of peers publishing and consuming each other through the Sfu.

mod common_peers;

use std::time::Duration;

use common_peers::{allowed_sources, consume_all, join, sub_delivery, Sub};
use sfu_core::ortc::MediaKind;
use sfu_core::Event;
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

fn assert_clean_stream(sim: &Sim, sub: &Sub, min_packets: usize) {
    let d = sub_delivery(sim, sub, sim.start);
    if let Err(e) = d.check(min_packets) {
        eprintln!("producer {:?}", sim.sfu.producer_stats(sub.producer));
        eprintln!("consumer {:?}", sim.sfu.consumer_stats(sub.consumer));
        eprintln!(
            "recv transport {:?}",
            sim.sfu.transport_stats(sim.clients[sub.recv].id)
        );
        eprintln!("sfu {:?}", sim.sfu.stats());
        eprintln!("net {:?}", sim.net.stats());
        panic!("{:?} consumer {}: {e}", sub.kind, sub.consumer);
    }
    assert_eq!(d.runs, 1, "one continuous run: {d:?}");
    // The consumer's counters agree with what its receiver got (nothing is lost on these links).
    let stats = sim.sfu.consumer_stats(sub.consumer).unwrap();
    let got: Vec<_> = sim.clients[sub.recv]
        .received
        .iter()
        .filter(|p| p.ssrc == sub.ssrc)
        .collect();
    assert_eq!(stats.packets_sent, got.len() as u64, "packets counted");
    let bytes: usize = got.iter().map(|p| p.payload.len()).sum();
    assert_eq!(stats.bytes_sent, bytes as u64, "payload bytes counted");
    if sub.kind == MediaKind::Video {
        assert!(d.first_is_key_frame, "video must start with a key frame");
    }
}

#[test]
fn two_rooms_three_peers_each_forward_everything_and_nothing_crosses() {
    let seed = seed_from_env("two_rooms");
    let mut sim = Sim::new(seed);
    let room_a = sim.create_router();
    let room_b = sim.create_router();
    let mut peers = Vec::new();
    for n in 0..3 {
        peers.push(join(&mut sim, room_a, n, Protocol::Udp));
    }
    for n in 3..6 {
        peers.push(join(&mut sim, room_b, n, Protocol::Udp));
    }
    let subs = consume_all(&mut sim, &peers);
    assert_eq!(subs.len(), 2 * 3 * 2 * 2);
    sim.run_for(Duration::from_secs(5));

    for sub in &subs {
        let min = if sub.kind == MediaKind::Audio {
            200
        } else {
            400
        };
        assert_clean_stream(&sim, sub, min);
    }
    // Nothing crosses rooms: every packet a receive transport got came from a producer it
    // consumes, which is always in its own room.
    let allowed = allowed_sources(&subs);
    for (recv, sources) in &allowed {
        for p in &sim.clients[*recv].received {
            let info = verify_payload(&p.payload).expect("verifiable payload");
            assert!(sources.contains(&info.ssrc), "packet from another room");
        }
    }
    // Every send transport reached ICE connected and DTLS connected.
    let connected = sim
        .events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                Event::DtlsStateChange {
                    state: sfu_core::DtlsState::Connected,
                    ..
                }
            )
        })
        .count();
    assert_eq!(connected, 12);
    // Payload types were rewritten to the router's, whatever the producer used.
    let caps = sim.sfu.router_rtp_capabilities(room_a).unwrap().clone();
    for sub in subs.iter().filter(|s| s.kind == MediaKind::Video) {
        let pt = sim.clients[sub.recv]
            .received
            .iter()
            .find(|p| p.ssrc == sub.ssrc)
            .unwrap()
            .payload_type;
        let vp8 = caps
            .codecs
            .iter()
            .find(|c| c.mime_type == "video/VP8")
            .unwrap();
        assert_eq!(Some(pt), vp8.preferred_payload_type);
    }
}

/// Producers count every packet and payload byte their sources sent (the links lose nothing).
#[test]
fn producer_counters_match_what_the_sources_sent() {
    let mut sim = Sim::new(seed_from_env("producer_counters"));
    let (peers, _) = common_peers::room_of(&mut sim, 2);
    sim.run_for(Duration::from_secs(2));
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.run_for(Duration::from_millis(300));
    for peer in &peers {
        for (producer, ssrc) in [(peer.audio, peer.audio_ssrc), (peer.video, peer.video_ssrc)] {
            let sent: Vec<_> = sim.sent[&ssrc].packets.iter().filter(|p| p.sent).collect();
            let stats = sim.sfu.producer_stats(producer).unwrap();
            assert_eq!(stats.packets_received, sent.len() as u64, "{ssrc}: packets");
            let bytes: usize = sent.iter().map(|p| p.size).sum();
            assert_eq!(stats.bytes_received, bytes as u64, "{ssrc}: payload bytes");
            assert_eq!(stats.packets_per_encoding, [sent.len() as u64], "{ssrc}");
        }
    }
}

#[test]
fn conference_over_ice_tcp() {
    let seed = seed_from_env("conference_tcp");
    let mut sim = Sim::new(seed);
    let room = sim.create_router();
    let peers: Vec<_> = (0..2)
        .map(|n| join(&mut sim, room, n, Protocol::Tcp))
        .collect();
    let tuple = all_to_all_for_3_s(&mut sim, &peers);
    assert_eq!(tuple.proto, sfu_core::Protocol::Tcp);
}

#[test]
fn conference_over_ipv6() {
    let seed = seed_from_env("conference_ipv6");
    let mut sim = Sim::new_ipv6(seed);
    let room = sim.create_router();
    let mut peers: Vec<_> = (0..2)
        .map(|n| join(&mut sim, room, n, Protocol::Udp))
        .collect();
    peers.push(join(&mut sim, room, 2, Protocol::Tcp));
    let tuple = all_to_all_for_3_s(&mut sim, &peers);
    assert!(tuple.remote.is_ipv6() && tuple.local.is_ipv6());
}

#[test]
fn forwarding_adds_no_delay() {
    let seed = seed_from_env("no_delay");
    let mut sim = Sim::new(seed);
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    let recv = sim.add_transport(room, Protocol::Udp);
    let produced_at = sim.now;
    let producer = sim.produce(send, MediaKind::Audio, 3000);
    let caps = sim.device_caps(room);
    let c = sim.consume(recv, producer, caps, false);
    let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    sim.run_for(Duration::from_secs(2));
    let first_seq = sfu_tests::media::initial_sequence(3000);
    let mut delays = Vec::new();
    for p in sim.clients[recv].received.iter().filter(|p| p.ssrc == ssrc) {
        let info = verify_payload(&p.payload).unwrap();
        let generated =
            produced_at + sfu_tests::media::AUDIO_INTERVAL * u32::from(info.seq - first_seq as u16);
        // Packets queued by the client before ICE and DTLS finished leave late; skip them.
        if generated >= produced_at + Duration::from_millis(500) {
            delays.push(p.at - generated);
        }
    }
    assert!(delays.len() > 50);
    // Two 10 ms links; the server adds nothing on the virtual clock.
    let max = delays.iter().max().unwrap();
    let min = delays.iter().min().unwrap();
    assert_eq!(*min, Duration::from_millis(20), "{delays:?}");
    assert_eq!(*max, Duration::from_millis(20), "{delays:?}");
}

/// A received packet leaves for its consumers within the same `handle_input` call: nothing
/// waits for a later deadline (the virtual clock alone would not show such a wait).
#[test]
fn forwarded_packets_leave_within_the_receive_call() {
    let mut sim = Sim::new(seed_from_env("same_call"));
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce(send, MediaKind::Audio, 3000);
    let caps = sim.device_caps(room);
    let viewers: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    for &v in &viewers {
        sim.consume(v, producer, caps.clone(), false);
    }
    sim.run_for(Duration::from_secs(1));
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.run_for(Duration::from_millis(100));
    let mut checked = 0;
    for _ in 0..20 {
        // Take the next packets of the (muted) publication itself, so sequence numbers go on.
        let at = sim.publications[0].source.next_at();
        sim.now = sim.now.max(at);
        let packets = sim.take_source_packets(0, at);
        let datagrams = sim.capture_sent(send, "0", packets);
        for d in datagrams
            .iter()
            .filter(|d| d[0] >= 0x80 && !(64..96).contains(&(d[1] & 0x7f)))
        {
            sim.sfu.handle_input(sfu_core::Input::Receive {
                now: sim.now,
                proto: sfu_core::Protocol::Udp,
                source: sim.clients[send].local,
                destination: sim.server_udp,
                contents: d,
            });
            let to_viewers = drain_transmits_to(&mut sim, &viewers).len();
            assert!(
                to_viewers >= viewers.len(),
                "only {to_viewers} datagrams left for 3 consumers"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
}

/// A runtime may feed a whole receive batch before polling: every forwarded packet still
/// leaves, and each consumer transport's datagrams come out one after another (ready for one
/// GSO send); media never wakes a transport's WebRTC stack.
#[test]
fn a_batch_of_inputs_is_sent_grouped_by_destination() {
    let mut sim = Sim::new(seed_from_env("batch"));
    let room = sim.create_router();
    let senders: Vec<usize> = (0..2)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let producers: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, &s)| sim.produce(s, MediaKind::Audio, 5000 + i as u32))
        .collect();
    let caps = sim.device_caps(room);
    let viewers: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let mut consumer_ssrcs = Vec::new();
    for &v in &viewers {
        for (i, &p) in producers.iter().enumerate() {
            let c = sim.consume(v, p, caps.clone(), false);
            let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
            consumer_ssrcs.push((v, 5000 + i as u32, ssrc));
        }
    }
    sim.run_for(Duration::from_secs(1));
    for p in &mut sim.publications {
        p.muted = true;
    }
    sim.run_for(Duration::from_millis(100));
    let batch_from = sim.now;

    // Five packets of each publication, interleaved, fed without polling in between.
    let mut batch = Vec::new();
    for _ in 0..5 {
        for (i, &s) in senders.iter().enumerate() {
            let at = sim.publications[i].source.next_at();
            sim.now = sim.now.max(at);
            let packets = sim.take_source_packets(i, at);
            for d in sim.capture_sent(s, "0", packets) {
                if d[0] >= 0x80 && !(64..96).contains(&(d[1] & 0x7f)) {
                    batch.push((sim.clients[s].local, d));
                }
            }
        }
    }
    assert_eq!(batch.len(), 10);
    let polls = sim.sfu.stats().transport_polls;
    for (source, d) in &batch {
        sim.sfu.handle_input(sfu_core::Input::Receive {
            now: sim.now,
            proto: sfu_core::Protocol::Udp,
            source: *source,
            destination: sim.server_udp,
            contents: d,
        });
    }
    let first = loop {
        match sim.sfu.poll_output() {
            sfu_core::Output::Transmit(t)
                if viewers
                    .iter()
                    .any(|&v| sim.clients[v].local == t.destination) =>
            {
                break t;
            }
            sfu_core::Output::Transmit(_) | sfu_core::Output::Event(_) => {}
            sfu_core::Output::Timeout(_) => panic!("nothing forwarded"),
        }
    };
    let mut to_viewers = vec![first];
    to_viewers.extend(drain_transmits_to(&mut sim, &viewers));
    let destinations: Vec<_> = to_viewers.iter().map(|t| t.destination).collect();
    // Media never goes through the transports' WebRTC stacks (ICE and DTLS only).
    assert_eq!(sim.sfu.stats().transport_polls, polls);
    assert_eq!(to_viewers.len(), 10 * viewers.len(), "{destinations:?}");
    let mut runs = destinations.clone();
    runs.dedup();
    assert_eq!(
        runs.len(),
        viewers.len(),
        "destinations interleaved: {destinations:?}"
    );

    // They are the right packets: every consumer gets its five, in order, byte for byte.
    for t in to_viewers {
        sim.net.send(
            sim.now,
            sfu_tests::netsim::Datagram {
                proto: sfu_tests::netsim::Proto::Udp,
                source: t.source,
                destination: t.destination,
                contents: t.contents,
            },
        );
    }
    sim.run_for(Duration::from_millis(50));
    for &(v, source, ssrc) in &consumer_ssrcs {
        let d = delivery(
            &sim,
            v,
            ssrc,
            &[Expect::between(source, batch_from, sim.now)],
        );
        d.assert_clean(5);
        assert_eq!(d.expected, 5, "{d:?}");
    }
}

/// Polls the Sfu until its deadline and returns the datagrams it sent to `clients`, in order.
fn drain_transmits_to(sim: &mut Sim, clients: &[usize]) -> Vec<sfu_core::Transmit> {
    let mut out = Vec::new();
    loop {
        match sim.sfu.poll_output() {
            sfu_core::Output::Transmit(t) => {
                if clients
                    .iter()
                    .any(|&c| sim.clients[c].local == t.destination)
                {
                    out.push(t);
                }
            }
            sfu_core::Output::Event(_) => {}
            sfu_core::Output::Timeout(_) => break,
        }
    }
    out
}

/// Everyone consumes everyone for 3 s; every stream arrives clean. Returns the tuple the first
/// peer's send transport selected.
fn all_to_all_for_3_s(sim: &mut Sim, peers: &[common_peers::Peer]) -> sfu_core::TransportTuple {
    let subs = consume_all(sim, peers);
    sim.run_for(Duration::from_secs(3));
    for sub in &subs {
        assert_clean_stream(sim, sub, 100);
    }
    sim.sfu
        .transport_stats(sim.clients[peers[0].send].id)
        .unwrap()
        .selected_tuple
        .unwrap()
}
