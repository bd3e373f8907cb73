//! Data channels over pipe transports: a data producer in one router reaches data consumers
//! in another through a pipe pair with SCTP (raw SCTP datagrams on the pipe), messages
//! byte-equal, typed and in order, over a lossy pipe; unordered and partially reliable
//! parameters cross the pipe and act there; what a pipe peer sends that nobody produced, or
//! that is not intact SCTP, is dropped and counted; oversize messages are refused; the pipe's
//! `sctpParameters` appear only with SCTP.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::ortc::{PipeTransportOptions, SctpStreamParameters, TransportListenInfo};
use sfu_core::{
    ConsumeDataOptions, DataConsumerId, DirectTransportOptions, Error, Event, ProduceDataOptions,
    SctpState, TransportId, WebRtcTransportOptions,
};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// A message: binary (else text), and its bytes.
type Message = (bool, Vec<u8>);

/// A simulation whose WebRTC transports carry SCTP.
fn sctp_sim(name: &str) -> Sim {
    let mut sim = Sim::new(seed_from_env(name));
    sim.transport_options = WebRtcTransportOptions {
        enable_sctp: true,
        sctp_send_buffer_size: 4 << 20,
        ..Default::default()
    };
    sim
}

/// The `index`th message: text or binary in turn, 1 byte to 64 KiB, naming its index.
fn message(index: u32) -> Message {
    let binary = index % 2 == 1;
    let len = match index % 37 {
        0 => 65_536,
        1 => 1,
        n => 8 + (index.wrapping_mul(2_654_435_761) >> 9) as usize % (300 * n as usize),
    };
    let head = format!("{index}:");
    let mut data: Vec<u8> = head.bytes().collect();
    data.truncate(len);
    while data.len() < len {
        let i = data.len() as u32;
        data.push(if binary {
            (i ^ index.wrapping_mul(31)) as u8
        } else {
            b'a' + ((i + index) % 26) as u8
        });
    }
    (binary, data)
}

/// Runs until every client's DTLS and SCTP are up.
fn connect_all(sim: &mut Sim) {
    for _ in 0..100 {
        sim.run_for(Duration::from_millis(100));
        let up = sim.clients.iter().all(|c| {
            let stats = sim.sfu.transport_stats(c.id).expect("stats");
            c.connected && stats.sctp_state == Some(SctpState::Connected)
        });
        if up {
            return;
        }
    }
    panic!("clients not connected after 10 s");
}

/// Runs until both pipe transports' associations are up.
fn pipe_connected(sim: &mut Sim, pipes: [TransportId; 2]) {
    for _ in 0..100 {
        let up = pipes.iter().all(|&t| {
            sim.sfu.transport_stats(t).expect("stats").sctp_state == Some(SctpState::Connected)
        });
        if up {
            return;
        }
        sim.run_for(Duration::from_millis(100));
    }
    panic!(
        "the pipe's SCTP association is not up after 10 s: {:?} {:?} wire {:?}",
        sim.sfu.transport_stats(pipes[0]),
        sim.sfu.transport_stats(pipes[1]),
        sim.pipe_wire
            .iter()
            .map(|(_, a, d)| (a.port(), d.len(), d.get(..16).map(|h| h.to_vec())))
            .take(10)
            .collect::<Vec<_>>()
    );
}

/// The SCTP state changes the application heard for a transport.
fn sctp_states(sim: &Sim, transport: TransportId) -> Vec<SctpState> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::SctpStateChange {
                transport: t,
                state,
            } if *t == transport => Some(*state),
            _ => None,
        })
        .collect()
}

/// What `client` received on `stream`, in arrival order.
fn received(sim: &Sim, client: usize, stream: u16) -> Vec<Message> {
    sim.clients[client]
        .messages
        .iter()
        .filter(|m| m.stream_id == stream)
        .map(|m| (m.binary, m.data.clone()))
        .collect()
}

/// The messages a direct transport's data consumer handed the application, in order.
fn direct_received(sim: &Sim, dc: DataConsumerId) -> Vec<Message> {
    sim.events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::DataConsumerMessage {
                data_consumer,
                binary,
                data,
            } if *data_consumer == dc => Some((*binary, data.clone())),
            _ => None,
        })
        .collect()
}

/// Sends `messages` from `client` on `stream`, keeping its buffered amount and the pipe data
/// consumer's (which drops what would pass its send buffer) low, then runs until `done`
/// holds (at most 600 s of virtual time).
fn send_and_wait(
    sim: &mut Sim,
    client: usize,
    stream: u16,
    pipe: DataConsumerId,
    messages: &[Message],
    done: impl Fn(&Sim) -> bool,
) {
    let mut next = 0;
    while next < messages.len() {
        let pipe_buffered = sim.sfu.data_consumer_buffered_amount(pipe).unwrap();
        let c = &mut sim.clients[client];
        while next < messages.len()
            && c.buffered_amount(stream) < 32 * 1024
            && pipe_buffered < 96 * 1024
        {
            let (binary, data) = &messages[next];
            if !c.send_message(stream, *binary, data) {
                break;
            }
            next += 1;
        }
        sim.flush();
        sim.run_for(Duration::from_millis(5));
    }
    let deadline = sim.now + Duration::from_secs(600);
    while !done(sim) && sim.now < deadline {
        sim.run_for(Duration::from_millis(100));
    }
}

/// Datagrams on the pipe that are SCTP packets (port 5000 both ways).
fn sctp_on_the_wire(sim: &Sim) -> usize {
    sim.pipe_wire
        .iter()
        .filter(|(_, _, d)| d.len() >= 16 && d[..4] == [0x13, 0x88, 0x13, 0x88])
        .count()
}

/// Router A: alice sends text and binary messages on a reliable ordered channel. It is piped
/// to router B (the pipe losing 5% of its datagrams), where bob consumes it: every message
/// arrives byte-equal, typed and in order, carried as raw SCTP on the pipe.
/// The local addresses of the two ends of a pipe pair (the pipe's link runs between them).
fn pipe_addresses(sim: &Sim, pipes: [TransportId; 2]) -> (SocketAddr, SocketAddr) {
    let local = |t| {
        sim.sfu
            .transport_stats(t)
            .unwrap()
            .selected_tuple
            .unwrap()
            .local
    };
    (local(pipes[0]), local(pipes[1]))
}

#[test]
fn pipe_to_router_relays_a_data_producer_in_order_byte_equal_over_loss() {
    let mut sim = sctp_sim("pipe_data_ordered");
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let alice = sim.add_transport(ra, Protocol::Udp);
    let bob = sim.add_transport(rb, Protocol::Udp);
    connect_all(&mut sim);
    let dp = sim.produce_data(alice, SctpStreamParameters::reliable(1), "chat");
    let piped = sim.pipe_data_to_router(dp, rb);
    let pipes = [piped.local_transport, piped.remote_transport];
    pipe_connected(&mut sim, pipes);
    for t in pipes {
        assert_eq!(
            sctp_states(&sim, t),
            [SctpState::Connecting, SctpState::Connected]
        );
    }
    // The pipe data producer reads the stream the pipe data consumer sends on, with the same
    // parameters, label and protocol.
    let pipe_stream = sim
        .sfu
        .data_consumer_sctp_stream_parameters(piped.pipe_data_consumer)
        .unwrap();
    assert_eq!(
        sim.sfu
            .data_producer_sctp_stream_parameters(piped.pipe_data_producer)
            .unwrap(),
        pipe_stream
    );
    assert!(pipe_stream.is_ordered());
    // Piping it again reuses the pair.
    let again = sim.pipe_data_to_router(dp, rb);
    assert_eq!(
        (again.local_transport, again.remote_transport),
        (piped.local_transport, piped.remote_transport)
    );
    sim.sfu
        .close_data_consumer(again.pipe_data_consumer)
        .unwrap();
    sim.sfu
        .close_data_producer(again.pipe_data_producer)
        .unwrap();

    let consumed = sim.consume_data(bob, ConsumeDataOptions::new(piped.pipe_data_producer));
    assert_eq!(consumed.parameters.label, "chat");
    let bob_stream = consumed.parameters.sctp_stream_parameters.stream_id;
    sim.run_for(Duration::from_millis(500));
    let (a, b) = pipe_addresses(&sim, pipes);
    let lossy = LinkConfig::default()
        .with_latency(Duration::from_millis(5))
        .with_loss(0.05);
    sim.net.set_link(a, b, lossy.clone());
    sim.net.set_link(b, a, lossy);
    let wire_before = sctp_on_the_wire(&sim);

    let sent: Vec<Message> = (0..400).map(message).collect();
    send_and_wait(&mut sim, alice, 1, piped.pipe_data_consumer, &sent, |sim| {
        received(sim, bob, bob_stream).len() >= sent.len()
    });
    let got = received(&sim, bob, bob_stream);
    assert_eq!(got.len(), sent.len(), "every message crosses the pipe");
    for (i, (g, w)) in got.iter().zip(&sent).enumerate() {
        assert!(g == w, "message {i}: in order, byte-equal, typed");
    }
    assert!(
        sctp_on_the_wire(&sim) > wire_before + 400,
        "raw SCTP datagrams carry the messages on the pipe"
    );
    assert!(sim.net.stats().lost > 0, "the pipe lost datagrams");
    let pipe_consumer = sim
        .sfu
        .data_consumer_stats(piped.pipe_data_consumer)
        .unwrap();
    assert_eq!(pipe_consumer.messages_sent, sent.len() as u64);
    assert_eq!(pipe_consumer.messages_dropped, 0);
    let pipe_producer = sim
        .sfu
        .data_producer_stats(piped.pipe_data_producer)
        .unwrap();
    assert_eq!(pipe_producer.messages_received, sent.len() as u64);
    let bytes: usize = sent.iter().map(|m| m.1.len()).sum();
    assert_eq!(pipe_producer.bytes_received, bytes as u64);
    for t in pipes {
        let stats = sim.sfu.transport_stats(t).unwrap();
        assert_eq!(
            (
                stats.data_dropped,
                stats.sctp_dropped,
                stats.messages_unknown_stream
            ),
            (0, 0, 0)
        );
    }
}

/// Empty messages and both types cross a pipe with their PPIDs: from a direct transport's
/// data producer in router A to a direct transport's data consumer in router B.
#[test]
fn empty_text_and_binary_messages_keep_their_type_across_the_pipe() {
    let mut sim = Sim::new(seed_from_env("pipe_data_ppid"));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let da = sim
        .sfu
        .create_direct_transport(ra, DirectTransportOptions::default())
        .unwrap();
    let db = sim
        .sfu
        .create_direct_transport(rb, DirectTransportOptions::default())
        .unwrap();
    let dp = sim
        .sfu
        .produce_data(da, ProduceDataOptions::direct("bot"))
        .unwrap();
    let piped = sim.pipe_data_to_router(dp, rb);
    pipe_connected(&mut sim, [piped.local_transport, piped.remote_transport]);
    let dc = sim
        .sfu
        .consume_data(db, ConsumeDataOptions::new(piped.pipe_data_producer))
        .unwrap()
        .id;
    let sent: Vec<Message> = vec![
        (false, Vec::new()),
        (true, Vec::new()),
        (false, b"text".to_vec()),
        (true, vec![0, 1, 2, 255]),
        (true, Vec::new()),
        (false, vec![b'x'; 3000]),
    ];
    for (binary, data) in &sent {
        sim.sfu.send_data(dp, *binary, data).unwrap();
        sim.flush();
    }
    sim.run_for(Duration::from_secs(1));
    assert_eq!(direct_received(&sim, dc), sent);
}

/// A data producer whose channel is unordered without retransmissions: the pipe data
/// consumer, the pipe data producer and the far consumer keep those parameters, and across a
/// lossy pipe some messages are lost (none duplicated or corrupted).
#[test]
fn unordered_partially_reliable_parameters_cross_the_pipe() {
    let mut sim = sctp_sim("pipe_data_partial");
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let alice = sim.add_transport(ra, Protocol::Udp);
    let bob = sim.add_transport(rb, Protocol::Udp);
    connect_all(&mut sim);
    let params = SctpStreamParameters {
        stream_id: 2,
        ordered: Some(false),
        max_packet_life_time: None,
        max_retransmits: Some(0),
    };
    let dp = sim.produce_data(alice, params, "state");
    let piped = sim.pipe_data_to_router(dp, rb);
    let pipes = [piped.local_transport, piped.remote_transport];
    pipe_connected(&mut sim, pipes);
    let on_pipe = sim
        .sfu
        .data_consumer_sctp_stream_parameters(piped.pipe_data_consumer)
        .unwrap();
    assert_eq!(
        (
            on_pipe.ordered,
            on_pipe.max_retransmits,
            on_pipe.max_packet_life_time
        ),
        (Some(false), Some(0), None)
    );
    let far = sim
        .sfu
        .data_producer_sctp_stream_parameters(piped.pipe_data_producer)
        .unwrap();
    assert_eq!(far, on_pipe);
    let consumed = sim.consume_data(bob, ConsumeDataOptions::new(piped.pipe_data_producer));
    let p = consumed.parameters.sctp_stream_parameters;
    assert_eq!((p.ordered, p.max_retransmits), (Some(false), Some(0)));
    // A timed channel keeps its lifetime too.
    let timed = sim.produce_data(
        alice,
        SctpStreamParameters {
            stream_id: 4,
            ordered: None,
            max_packet_life_time: Some(150),
            max_retransmits: None,
        },
        "timed",
    );
    let timed_pipe = sim.pipe_data_to_router(timed, rb);
    let t = sim
        .sfu
        .data_producer_sctp_stream_parameters(timed_pipe.pipe_data_producer)
        .unwrap();
    assert_eq!(
        (t.is_ordered(), t.max_packet_life_time, t.max_retransmits),
        (false, Some(150), None)
    );
    sim.run_for(Duration::from_millis(500));

    let (a, b) = pipe_addresses(&sim, pipes);
    sim.net.set_link(
        a,
        b,
        LinkConfig::default()
            .with_latency(Duration::from_millis(5))
            .with_loss(0.1),
    );
    let sent: Vec<Message> = (0..500)
        .map(|i| {
            (
                i % 2 == 1,
                format!("{i}:{}", "z".repeat(i as usize % 700)).into_bytes(),
            )
        })
        .collect();
    send_and_wait(&mut sim, alice, 2, piped.pipe_data_consumer, &sent, |_| {
        false
    });
    let got = received(&sim, bob, p.stream_id);
    let index = |m: &Message| sent.iter().position(|s| s == m).expect("a sent message");
    let order: Vec<usize> = got.iter().map(index).collect();
    assert_eq!(
        order.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );
    assert!(
        got.len() < sent.len(),
        "without retransmissions, the pipe's loss costs messages ({})",
        got.len()
    );
    assert!(got.len() > sent.len() / 2, "most arrive ({})", got.len());
}

/// The CRC-32C (Castagnoli) of `data`, as SCTP checks it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet (ports 5000) with `chunks` after the common header, its checksum right or
/// wrong.
fn sctp_packet(tag: u32, chunks: &[u8], intact: bool) -> Vec<u8> {
    let mut p = vec![0x13, 0x88, 0x13, 0x88];
    p.extend_from_slice(&tag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(chunks);
    let crc = crc32c(&p) ^ u32::from(!intact);
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    p
}

/// Garbage on the pipe never reaches a data consumer and is counted: non-SCTP, non-RTP
/// datagrams; SCTP with a broken checksum; SCTP from a stranger; well-checksummed SCTP of
/// random chunks. A pipe peer that sends on a stream nobody produced has its messages dropped
/// and counted. A message over the pipe's maximum size is refused and counted, never sent.
/// Through all of it the pipe keeps relaying; closing one side closes the other's association.
#[test]
fn garbage_unknown_streams_and_oversize_messages_are_dropped_and_counted() {
    let mut sim = Sim::new(seed_from_env("pipe_data_hostile"));
    let (ra, rb) = (sim.create_router(), sim.create_router());
    let options = PipeTransportOptions {
        enable_sctp: true,
        max_sctp_message_size: 2000,
        ..PipeTransportOptions::new(TransportListenInfo::at("127.0.0.1:1".parse().unwrap()))
    };
    let (pa, pb) = sim.add_pipe_pair(ra, rb, &options);
    pipe_connected(&mut sim, [pa.id, pb.id]);
    let da = sim
        .sfu
        .create_direct_transport(ra, DirectTransportOptions::default())
        .unwrap();
    let db = sim
        .sfu
        .create_direct_transport(rb, DirectTransportOptions::default())
        .unwrap();
    let dp = sim
        .sfu
        .produce_data(da, ProduceDataOptions::direct("bot"))
        .unwrap();
    // A pipe data consumer whose stream the peer has no data producer for.
    let stray = sim
        .sfu
        .consume_data(pa.id, ConsumeDataOptions::new(dp))
        .unwrap();
    // And one the peer produces with, consumed there by the application.
    let piped = sim
        .sfu
        .consume_data(pa.id, ConsumeDataOptions::new(dp))
        .unwrap();
    let far = sim
        .sfu
        .produce_data(pb.id, sfu_core::pipe_produce_data_options(&piped))
        .unwrap();
    let dc = sim
        .sfu
        .consume_data(db, ConsumeDataOptions::new(far))
        .unwrap()
        .id;
    sim.flush();
    sim.run_for(Duration::from_millis(200));

    let send = |sim: &mut Sim, n: u32| {
        for i in 0..n {
            sim.sfu
                .send_data(dp, false, format!("m{i}").as_bytes())
                .unwrap();
            sim.flush();
        }
        sim.run_for(Duration::from_millis(500));
    };
    send(&mut sim, 10);
    let b_stats = sim.sfu.transport_stats(pb.id).unwrap();
    assert_eq!(
        b_stats.messages_unknown_stream, 10,
        "the stray stream's messages"
    );
    assert_eq!(b_stats.data_dropped, 10);
    assert_eq!(direct_received(&sim, dc).len(), 10);
    assert_eq!(
        sim.sfu.data_consumer_stats(stray.id).unwrap().messages_sent,
        10
    );

    // Oversize: refused at the pipe data consumers, never on the wire.
    let wire = sim.pipe_wire.len();
    sim.sfu.send_data(dp, true, &vec![7u8; 2001]).unwrap();
    sim.flush();
    sim.run_for(Duration::from_millis(300));
    let pipe_dc = sim.sfu.data_consumer_stats(piped.id).unwrap();
    assert_eq!(pipe_dc.messages_dropped, 1, "over maxSctpMessageSize");
    assert!(
        sim.pipe_wire[wire..].iter().all(|(_, _, d)| d.len() < 2001),
        "nothing oversize crossed"
    );
    // Exactly the limit passes.
    sim.sfu.send_data(dp, true, &vec![7u8; 2000]).unwrap();
    sim.flush();
    sim.run_for(Duration::from_millis(300));
    assert_eq!(direct_received(&sim, dc).last().unwrap().1.len(), 2000);

    // Garbage, from the peer's address and from a stranger.
    let (a_addr, b_addr) = (
        sim.sfu
            .transport_stats(pa.id)
            .unwrap()
            .selected_tuple
            .unwrap()
            .local,
        sim.sfu
            .transport_stats(pb.id)
            .unwrap()
            .selected_tuple
            .unwrap()
            .local,
    );
    let before_b = sim.sfu.transport_stats(pb.id).unwrap();
    let before_sfu = sim.sfu.stats();
    let data_chunk = [
        0u8, 3, 0, 20, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 0, 51, b'f', b'a', b'k', b'e',
    ];
    sim.inject_at(a_addr, b_addr, &sctp_packet(0, &data_chunk, false));
    sim.inject_at(
        a_addr,
        b_addr,
        &sctp_packet(0xdead_beef, &[1, 0, 0, 4], false),
    );
    sim.inject_at(a_addr, b_addr, &[0x13, 0x88, 0x13, 0x88, 0, 0]);
    sim.inject_at(a_addr, b_addr, &[0x42; 100]);
    sim.inject_at(a_addr, b_addr, &[]);
    let stranger = "127.0.0.1:50999".parse().unwrap();
    sim.inject_at(stranger, b_addr, &sctp_packet(0, &data_chunk, true));
    // Intact SCTP of random chunks (the wrong verification tag, or none).
    let mut seed = 0x1234_5678u32;
    for i in 0..300 {
        let len = 4 + (i % 60);
        let chunks: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect();
        let tag = if i % 3 == 0 { 0 } else { seed };
        sim.inject_at(a_addr, b_addr, &sctp_packet(tag, &chunks, true));
    }
    sim.flush();
    let after_b = sim.sfu.transport_stats(pb.id).unwrap();
    let after_sfu = sim.sfu.stats();
    assert_eq!(
        after_b.sctp_dropped - before_b.sctp_dropped,
        2,
        "broken checksums"
    );
    assert_eq!(
        after_sfu.dropped_malformed - before_sfu.dropped_malformed,
        4,
        "too short for SCTP, not SCTP nor RTP, empty, SCTP from a stranger"
    );
    assert_eq!(
        direct_received(&sim, dc).len(),
        11,
        "nothing forged arrived"
    );

    // The pipe still relays.
    send(&mut sim, 5);
    let got = direct_received(&sim, dc);
    assert_eq!(got.len(), 16);
    assert_eq!(got[15], (false, b"m4".to_vec()));
    assert_eq!(
        sim.sfu
            .transport_stats(pb.id)
            .unwrap()
            .messages_unknown_stream,
        16
    );
    let stray = sim.sfu.data_consumer_stats(stray.id).unwrap();
    assert_eq!((stray.messages_sent, stray.messages_dropped), (16, 1));

    // Closing one side shuts the association down: the other side hears of it.
    sim.sfu.close_transport(pa.id).unwrap();
    sim.flush();
    sim.run_for(Duration::from_millis(500));
    assert_eq!(
        sctp_states(&sim, pb.id),
        [
            SctpState::Connecting,
            SctpState::Connected,
            SctpState::Closed
        ]
    );
}

/// `sctpParameters` is in a pipe transport's creation response with SCTP, absent without; the
/// options take mediasoup's names.
#[test]
fn pipe_transport_json_has_sctp_parameters_only_with_sctp() {
    let mut sim = Sim::new(seed_from_env("pipe_data_json"));
    let ra = sim.create_router();
    let options: PipeTransportOptions = serde_json::from_str(
        r#"{"listenInfo":{"protocol":"udp","ip":"127.0.0.1","port":44100},"enableSctp":true,
            "numSctpStreams":{"OS":300,"MIS":200},"maxSctpMessageSize":100000,
            "sctpSendBufferSize":50000}"#,
    )
    .unwrap();
    assert_eq!(options.sctp_send_buffer_size, 50_000);
    let with = sim.sfu.create_pipe_transport(ra, options).unwrap();
    let json = serde_json::to_value(&with.parameters).unwrap();
    assert_eq!(
        json["sctpParameters"],
        serde_json::json!({"port": 5000, "OS": 300, "MIS": 200, "maxMessageSize": 100000})
    );
    let stats = sim.sfu.transport_stats(with.id).unwrap();
    assert_eq!(stats.sctp_state, Some(SctpState::New));

    let defaults: PipeTransportOptions = serde_json::from_str(
        r#"{"listenInfo":{"protocol":"udp","ip":"127.0.0.1","port":44101},"enableSctp":true}"#,
    )
    .unwrap();
    let with = sim.sfu.create_pipe_transport(ra, defaults).unwrap();
    assert_eq!(
        serde_json::to_value(&with.parameters).unwrap()["sctpParameters"],
        serde_json::json!({"port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144})
    );

    let without = sim
        .sfu
        .create_pipe_transport(
            ra,
            PipeTransportOptions::new(TransportListenInfo::at("127.0.0.1:44102".parse().unwrap())),
        )
        .unwrap();
    let json = serde_json::to_value(&without.parameters).unwrap();
    assert!(json.get("sctpParameters").is_none(), "{json}");
    assert_eq!(
        sim.sfu.transport_stats(without.id).unwrap().sctp_state,
        None
    );
    // Without SCTP, no data producers or consumers.
    let direct = sim
        .sfu
        .create_direct_transport(ra, DirectTransportOptions::default())
        .unwrap();
    let dp = sim
        .sfu
        .produce_data(direct, ProduceDataOptions::direct("x"))
        .unwrap();
    assert!(matches!(
        sim.sfu
            .consume_data(without.id, ConsumeDataOptions::new(dp)),
        Err(Error::SctpNotEnabled(_))
    ));
    assert!(matches!(
        sim.sfu.produce_data(
            without.id,
            ProduceDataOptions {
                sctp_stream_parameters: SctpStreamParameters::reliable(1),
                label: String::new(),
                protocol: String::new(),
                paused: false,
            }
        ),
        Err(Error::SctpNotEnabled(_))
    ));
}
