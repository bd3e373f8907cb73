//! Data channels: data producers and data consumers over SCTP, relayed between peers of a
//! room, under loss, with unordered and partially reliable consumers, and hostile input.

use std::collections::HashSet;
use std::time::Duration;

use sfu_core::ortc::SctpStreamParameters;
use sfu_core::{
    ConsumeDataOptions, DataConsumerCloseReason, DataConsumerId, DataProducerId,
    DirectTransportOptions, Error, Event, ProduceDataOptions, SctpState, WebRtcTransportOptions,
};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

const LOSS: f64 = 0.05;

/// A message: binary (else text), and its bytes.
type Message = (bool, Vec<u8>);

/// Messages a client sends on a stream: (client, stream id, messages).
type Outbox = (usize, u16, Vec<Message>);

/// A simulation whose transports carry SCTP, with a send buffer of `send_buffer` bytes per
/// data consumer.
fn sctp_sim(name: &str, send_buffer: u32) -> Sim {
    let mut sim = Sim::new(seed_from_env(name));
    sim.transport_options = WebRtcTransportOptions {
        enable_sctp: true,
        sctp_send_buffer_size: send_buffer,
        ..Default::default()
    };
    sim
}

/// The `index`th message of `sender`: its type and bytes. Sizes run from 1 byte to 64 KiB;
/// the bytes say who sent it and which one it is, and fill the rest from both.
fn message(sender: u8, index: u32) -> Message {
    let binary = index % 2 == 1;
    let len = match index % 97 {
        0 => 65_536,
        1 => 1,
        n => 1 + ((index.wrapping_mul(2_654_435_761) >> 7) % (400 * n)) as usize % 4096,
    };
    let mut data = Vec::with_capacity(len);
    let head = format!("{sender}:{index}:");
    for (i, b) in head
        .bytes()
        .chain((0..).map(|i: u32| b'a' + ((i + index) % 26) as u8))
        .enumerate()
    {
        if i == len {
            break;
        }
        data.push(if binary && i >= head.len() {
            (i as u32 ^ index) as u8
        } else {
            b
        });
    }
    (binary, data)
}

/// Runs until every message of `queue` (client, stream, messages) was sent, writing while
/// each client's buffer has room, then for `settle` more.
fn send_all(sim: &mut Sim, queue: &mut [Outbox], settle: Duration) {
    let deadline = sim.now + Duration::from_secs(300);
    let mut next = vec![0usize; queue.len()];
    loop {
        let mut pending = false;
        for (q, (client, stream, msgs)) in queue.iter().enumerate() {
            let c = &mut sim.clients[*client];
            while next[q] < msgs.len() && c.buffered_amount(*stream) < 96 * 1024 {
                let (binary, data) = &msgs[next[q]];
                if !c.send_message(*stream, *binary, data) {
                    break;
                }
                next[q] += 1;
            }
            pending |= next[q] < msgs.len();
        }
        sim.flush();
        if !pending {
            break;
        }
        assert!(sim.now < deadline, "messages still unsent after 300 s");
        sim.run_for(Duration::from_millis(5));
    }
    sim.run_for(settle);
}

/// Runs until `done` holds, checking every 100 ms, for at most `max`.
fn run_until(sim: &mut Sim, max: Duration, done: impl Fn(&Sim) -> bool) {
    let deadline = sim.now + max;
    while !done(sim) && sim.now < deadline {
        sim.run_for(Duration::from_millis(100));
    }
}

/// What `client` received on `stream`: (binary, bytes) in arrival order.
fn received(sim: &Sim, client: usize, stream: u16) -> Vec<Message> {
    sim.clients[client]
        .messages
        .iter()
        .filter(|m| m.stream_id == stream)
        .map(|m| (m.binary, m.data.clone()))
        .collect()
}

/// Runs until every client's DTLS (and the server's SCTP, where enabled) is up.
fn connect_all(sim: &mut Sim) {
    for _ in 0..100 {
        sim.run_for(Duration::from_millis(100));
        let up = sim.clients.iter().all(|c| {
            let stats = sim.sfu.transport_stats(c.id).expect("stats");
            c.connected && stats.sctp_state.is_none_or(|s| s == SctpState::Connected)
        });
        if up {
            return;
        }
    }
    panic!("clients not connected after 10 s");
}

fn events(sim: &Sim) -> Vec<Event> {
    sim.events.iter().map(|(_, e)| e.clone()).collect()
}

#[test]
fn three_peers_relay_ordered_reliable_messages_over_loss_and_never_to_another_room() {
    let mut sim = sctp_sim("data_three_peers", 4 << 20);
    let room = sim.create_router();
    let other = sim.create_router();
    let peers: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let outsiders: Vec<usize> = (0..2)
        .map(|_| sim.add_transport(other, Protocol::Udp))
        .collect();
    connect_all(&mut sim);
    for (i, &c) in peers.iter().chain(&outsiders).enumerate() {
        let transport = sim.clients[c].id;
        let states: Vec<SctpState> = sim
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::SctpStateChange {
                    transport: t,
                    state,
                } if *t == transport => Some(*state),
                _ => None,
            })
            .collect();
        assert_eq!(
            states,
            [SctpState::Connecting, SctpState::Connected],
            "client {i}"
        );
    }

    // Each peer sends on stream 1; each consumes the two others.
    let producers: Vec<DataProducerId> = peers
        .iter()
        .map(|&c| sim.produce_data(c, SctpStreamParameters::reliable(1), "chat"))
        .collect();
    let outsider_producer =
        sim.produce_data(outsiders[0], SctpStreamParameters::reliable(1), "chat");
    // (receiver, sender index, stream id, data consumer)
    let mut subscriptions: Vec<(usize, usize, u16, DataConsumerId)> = Vec::new();
    for (r, &receiver) in peers.iter().enumerate() {
        for (s, &dp) in producers.iter().enumerate() {
            if s != r {
                let consumed = sim.consume_data(receiver, ConsumeDataOptions::new(dp));
                let p = &consumed.parameters;
                assert_eq!(p.label, "chat");
                assert_eq!(p.sctp_stream_parameters.ordered, Some(true));
                assert_ne!(
                    p.sctp_stream_parameters.stream_id, 1,
                    "the peer's own stream"
                );
                subscriptions.push((receiver, s, p.sctp_stream_parameters.stream_id, consumed.id));
            }
        }
    }
    let outsider_sub = sim.consume_data(outsiders[1], ConsumeDataOptions::new(outsider_producer));
    let outsider_stream = outsider_sub.parameters.sctp_stream_parameters.stream_id;
    sim.run_for(Duration::from_millis(500));
    for &c in peers.iter().chain(&outsiders) {
        let transport = sim.clients[c].id;
        assert!(
            events(&sim).contains(&Event::SctpStateChange {
                transport,
                state: SctpState::Connected
            }),
            "SCTP connected for client {c}"
        );
    }

    sim.net.set_default_link(
        LinkConfig::default()
            .with_latency(Duration::from_millis(10))
            .with_loss(LOSS),
    );
    const PER_SENDER: u32 = 700;
    let mut queue: Vec<Outbox> = peers
        .iter()
        .enumerate()
        .map(|(s, &c)| (c, 1, (0..PER_SENDER).map(|i| message(s as u8, i)).collect()))
        .collect();
    queue.push((outsiders[0], 1, (0..50).map(|i| message(9, i)).collect()));
    send_all(&mut sim, &mut queue, Duration::ZERO);
    // Reliable delivery may wait out SCTP's retransmission timeouts, which back off under
    // repeated loss: wait (in virtual time) until every subscription has all its messages.
    let expected: usize = subscriptions.len() * PER_SENDER as usize;
    run_until(&mut sim, Duration::from_secs(600), |sim| {
        subscriptions
            .iter()
            .map(|&(r, _, stream, _)| received(sim, r, stream).len())
            .sum::<usize>()
            == expected
    });
    sim.run_for(Duration::from_secs(2));

    for &(receiver, s, stream, dcid) in &subscriptions {
        let got = received(&sim, receiver, stream);
        let sent = &queue[s].2;
        assert_eq!(
            got.len(),
            sent.len(),
            "peer {receiver} from sender {s}: all arrive ({:?}, {:?}, first missing {:?})",
            sim.sfu.data_consumer_stats(dcid),
            sim.sfu.data_producer_stats(producers[s]),
            got.iter().zip(sent).position(|(g, w)| g != w),
        );
        for (i, (g, w)) in got.iter().zip(sent).enumerate() {
            assert!(
                g == w,
                "peer {receiver} from sender {s}: message {i} in order, byte-equal, typed"
            );
        }
        let stats = sim.sfu.data_consumer_stats(dcid).expect("stats");
        assert_eq!(stats.messages_sent, u64::from(PER_SENDER));
        assert_eq!(stats.messages_dropped, 0);
        let bytes: usize = sent.iter().map(|m| m.1.len()).sum();
        assert_eq!(stats.bytes_sent, bytes as u64);
    }
    for (s, &dp) in producers.iter().enumerate() {
        let stats = sim.sfu.data_producer_stats(dp).expect("stats");
        assert_eq!(
            stats.messages_received,
            u64::from(PER_SENDER),
            "producer {s}"
        );
        let bytes: usize = queue[s].2.iter().map(|m| m.1.len()).sum();
        assert_eq!(stats.bytes_received, bytes as u64);
    }
    // Nothing crossed rooms: the outsider got its room's messages only, and the peers nothing
    // of the outsider's.
    let outsider_got = received(&sim, outsiders[1], outsider_stream);
    assert_eq!(outsider_got, queue[3].2);
    assert_eq!(sim.clients[outsiders[1]].messages.len(), 50);
    for &p in &peers {
        assert_eq!(sim.clients[p].messages.len(), 2 * PER_SENDER as usize);
        assert!(sim.clients[p]
            .messages
            .iter()
            .all(|m| !m.data.starts_with(b"9:")));
    }
    assert!(sim.net.stats().lost > 0, "the links lost datagrams");
}

#[test]
fn unordered_and_partially_reliable_consumers_behave_as_configured() {
    let mut sim = sctp_sim("data_reliability", 4 << 20);
    let room = sim.create_router();
    let sender = sim.add_transport(room, Protocol::Udp);
    let unordered = sim.add_transport(room, Protocol::Udp);
    let partial = sim.add_transport(room, Protocol::Udp);
    connect_all(&mut sim);
    let dp = sim.produce_data(sender, SctpStreamParameters::reliable(3), "state");
    let u = sim.consume_data(
        unordered,
        ConsumeDataOptions {
            ordered: Some(false),
            ..ConsumeDataOptions::new(dp)
        },
    );
    let p = sim.consume_data(
        partial,
        ConsumeDataOptions {
            max_retransmits: Some(0),
            ..ConsumeDataOptions::new(dp)
        },
    );
    let up = u.parameters.sctp_stream_parameters;
    let pp = p.parameters.sctp_stream_parameters;
    assert_eq!((up.ordered, up.max_retransmits), (Some(false), None));
    assert_eq!((pp.ordered, pp.max_retransmits), (Some(false), Some(0)));
    sim.run_for(Duration::from_millis(500));
    // Loss only towards the consumers: the producer's own channel is reliable and ordered.
    let lossy = LinkConfig::default()
        .with_latency(Duration::from_millis(10))
        .with_loss(LOSS);
    for c in [unordered, partial] {
        let addr = sim.clients[c].local;
        sim.net.set_link(sim.server_udp, addr, lossy.clone());
    }
    // Distinct messages (the shortest ones still name their index), so each arrival says
    // which one it is.
    let sent: Vec<Message> = (0..600)
        .map(|i| {
            let (binary, data) = message(1, i);
            if data.len() < 8 {
                (binary, format!("1:{i}:").into_bytes())
            } else {
                (binary, data)
            }
        })
        .collect();
    let mut queue = vec![(sender, 3, sent.clone())];
    send_all(&mut sim, &mut queue, Duration::ZERO);
    run_until(&mut sim, Duration::from_secs(600), |sim| {
        received(sim, unordered, up.stream_id).len() == sent.len()
    });
    sim.run_for(Duration::from_secs(20));

    // Unordered but reliable: every message once, byte-equal, some out of order.
    let got = received(&sim, unordered, up.stream_id);
    assert_eq!(
        got.len(),
        sent.len(),
        "the unordered consumer gets every message"
    );
    let index = |m: &(bool, Vec<u8>)| sent.iter().position(|s| s == m).expect("a sent message");
    let order: Vec<usize> = got.iter().map(index).collect();
    assert_eq!(
        order.iter().collect::<HashSet<_>>().len(),
        sent.len(),
        "no duplicates"
    );
    let inversions = order.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(inversions > 0, "with loss, some messages overtake others");

    // Partially reliable (no retransmissions): some lost, none duplicated or corrupted.
    let got = received(&sim, partial, pp.stream_id);
    let order: Vec<usize> = got.iter().map(index).collect();
    assert_eq!(
        order.iter().collect::<HashSet<_>>().len(),
        got.len(),
        "no duplicates"
    );
    assert!(
        got.len() < sent.len(),
        "without retransmissions, loss costs messages ({})",
        got.len()
    );
    assert!(got.len() > sent.len() / 2, "most arrive ({})", got.len());
}

#[test]
fn bad_input_and_api_misuse_are_dropped_counted_or_refused() {
    let mut sim = sctp_sim("data_hostile", 4 << 20);
    sim.transport_options.max_sctp_message_size = 1024;
    let room = sim.create_router();
    let other = sim.create_router();
    let a = sim.add_transport(room, Protocol::Udp);
    let b = sim.add_transport(room, Protocol::Udp);
    let far = sim.add_transport(other, Protocol::Udp);
    sim.transport_options.enable_sctp = false;
    let plain = sim.add_transport(room, Protocol::Udp);
    connect_all(&mut sim);

    let dp = sim.produce_data(a, SctpStreamParameters::reliable(1), "x");
    let dc = sim.consume_data(b, ConsumeDataOptions::new(dp));
    let b_stream = dc.parameters.sctp_stream_parameters.stream_id;
    sim.run_for(Duration::from_millis(500));

    // Typed errors.
    let ta = sim.clients[a].id;
    let produce = |stream: SctpStreamParameters| ProduceDataOptions {
        sctp_stream_parameters: stream,
        label: String::new(),
        protocol: String::new(),
        paused: false,
    };
    assert_eq!(
        sim.sfu
            .produce_data(ta, produce(SctpStreamParameters::reliable(1))),
        Err(Error::StreamIdInUse(1))
    );
    assert_eq!(
        sim.sfu
            .produce_data(ta, produce(SctpStreamParameters::reliable(1024))),
        Err(Error::StreamIdOutOfRange {
            stream_id: 1024,
            streams: 1024
        })
    );
    let both = SctpStreamParameters {
        max_packet_life_time: Some(100),
        max_retransmits: Some(1),
        ..SctpStreamParameters::reliable(5)
    };
    assert!(matches!(
        sim.sfu.produce_data(ta, produce(both)),
        Err(Error::Ortc(_))
    ));
    let tplain = sim.clients[plain].id;
    assert_eq!(
        sim.sfu
            .produce_data(tplain, produce(SctpStreamParameters::reliable(1))),
        Err(Error::SctpNotEnabled(tplain))
    );
    assert_eq!(
        sim.sfu
            .consume_data(tplain, ConsumeDataOptions::new(dp))
            .map(|c| c.id),
        Err(Error::SctpNotEnabled(tplain))
    );
    let tfar = sim.clients[far].id;
    assert_eq!(
        sim.sfu
            .consume_data(tfar, ConsumeDataOptions::new(dp))
            .map(|c| c.id),
        Err(Error::DataProducerWrongRouter(dp))
    );
    let closed = sim
        .sfu
        .produce_data(ta, produce(SctpStreamParameters::reliable(7)))
        .expect("dp");
    sim.sfu.close_data_producer(closed).expect("close");
    assert_eq!(
        sim.sfu
            .consume_data(tfar, ConsumeDataOptions::new(closed))
            .map(|c| c.id),
        Err(Error::UnknownDataProducer(closed))
    );
    sim.flush();

    // A message over the maximum size is dropped and counted; the next one is relayed.
    assert!(sim.clients[a].send_message(1, true, &[7; 1025]));
    assert!(sim.clients[a].send_message(1, true, &[8; 1024]));
    // Data on the stream the client receives on, and on a stream nobody produced.
    sim.flush();
    sim.run_for(Duration::from_millis(300));
    assert!(sim.clients[b].send_message(b_stream, false, b"not yours"));
    sim.clients[a].open_data_channel(&SctpStreamParameters::reliable(9), "stray");
    sim.run_for(Duration::from_millis(300));
    assert!(sim.clients[a].send_message(9, false, b"nobody listens"));
    assert!(sim.clients[a].send_message(1, false, b"text"));
    // A channel opened in-band (DCEP) that nobody produced: closed, and counted.
    sim.run_for(Duration::from_millis(300));
    let before = sim.sfu.transport_stats(ta).expect("stats").data_dropped;
    sim.clients[a].open_in_band_channel("uninvited");
    sim.run_for(Duration::from_millis(500));
    let stray = sim.clients[a].in_band_stream().expect("an in-band stream");
    assert_eq!(
        sim.sfu.transport_stats(ta).expect("stats").data_dropped,
        before + 1,
        "the uninvited channel is counted"
    );
    assert!(
        !sim.clients[a].data_channel_open(stray),
        "and closed by the server"
    );
    // Data on a transport without SCTP.
    sim.clients[plain].start_sctp();
    connect_all(&mut sim);

    let got = received(&sim, b, b_stream);
    assert_eq!(
        got,
        vec![(true, vec![8; 1024]), (false, b"text".to_vec())],
        "only the messages within the limit, typed"
    );
    assert!(
        sim.clients[a].messages.is_empty(),
        "nothing reflected to the sender"
    );
    let producer = sim.sfu.data_producer_stats(dp).expect("stats");
    assert_eq!(producer.messages_received, 2);
    assert_eq!(producer.messages_dropped, 1);
    assert_eq!(sim.sfu.transport_stats(ta).expect("stats").data_dropped, 2);
    let tb = sim.clients[b].id;
    assert_eq!(sim.sfu.transport_stats(tb).expect("stats").data_dropped, 1);
    assert!(sim.sfu.transport_stats(tplain).expect("stats").data_dropped > 0);
    assert_eq!(
        sim.sfu.transport_stats(tplain).expect("stats").sctp_state,
        None
    );
    let dcs = sim.sfu.data_consumer_stats(dc.id).expect("stats");
    assert_eq!((dcs.messages_sent, dcs.messages_dropped), (2, 0));

    // A paused data producer drops what arrives (counted); a paused data consumer sends
    // nothing; both resume.
    sim.sfu.pause_data_producer(dp).expect("pause");
    sim.flush();
    assert!(events(&sim).contains(&Event::DataConsumerProducerPaused {
        data_consumer: dc.id
    }));
    assert!(sim.clients[a].send_message(1, false, b"while paused"));
    sim.run_for(Duration::from_millis(300));
    sim.sfu.resume_data_producer(dp).expect("resume");
    sim.sfu.pause_data_consumer(dc.id).expect("pause");
    assert!(sim.clients[a].send_message(1, false, b"consumer paused"));
    sim.run_for(Duration::from_millis(300));
    sim.sfu.resume_data_consumer(dc.id).expect("resume");
    assert!(sim.clients[a].send_message(1, false, b"resumed"));
    sim.run_for(Duration::from_millis(300));
    sim.flush();
    assert!(events(&sim).contains(&Event::DataConsumerProducerResumed {
        data_consumer: dc.id
    }));
    let got = received(&sim, b, b_stream);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], (false, b"resumed".to_vec()));
    let producer = sim.sfu.data_producer_stats(dp).expect("stats");
    assert_eq!(
        (producer.messages_received, producer.messages_dropped),
        (4, 2)
    );
    let dcs = sim.sfu.data_consumer_stats(dc.id).expect("stats");
    assert_eq!(dcs.messages_sent, 3);

    // SCTP garbage inside authentic DTLS: each corrupted packet is dropped and counted before
    // the SCTP stack, and the association carries on (the sender retransmits).
    assert_eq!(sim.sfu.transport_stats(ta).expect("stats").sctp_dropped, 0);
    sim.clients[a].garble.next(3);
    assert!(sim.clients[a].send_message(1, false, b"through garbage"));
    run_until(&mut sim, Duration::from_secs(60), |sim| {
        received(sim, b, b_stream).len() == 4
    });
    let got = received(&sim, b, b_stream);
    assert_eq!(got.get(3), Some(&(false, b"through garbage".to_vec())));
    let ta_stats = sim.sfu.transport_stats(ta).expect("stats");
    assert_eq!(ta_stats.sctp_dropped, 3);
    assert_eq!(ta_stats.sctp_state, Some(SctpState::Connected));

    // The data producer closes: its data consumer reports it.
    sim.sfu.close_data_producer(dp).expect("close");
    sim.flush();
    assert!(events(&sim).contains(&Event::DataConsumerClosed {
        data_consumer: dc.id,
        reason: DataConsumerCloseReason::DataProducerClosed
    }));
    assert_eq!(
        sim.sfu.data_consumer_stats(dc.id),
        Err(Error::UnknownDataConsumer(dc.id))
    );
}

#[test]
fn a_full_send_buffer_drops_and_counts_and_reports_its_amount_low() {
    let mut sim = sctp_sim("data_send_buffer", 8 * 1024);
    let room = sim.create_router();
    let a = sim.add_transport(room, Protocol::Udp);
    let b = sim.add_transport(room, Protocol::Udp);
    connect_all(&mut sim);
    let dp = sim.produce_data(a, SctpStreamParameters::reliable(1), "bulk");
    let dc = sim.consume_data(b, ConsumeDataOptions::new(dp));
    let stream = dc.parameters.sctp_stream_parameters.stream_id;
    sim.run_for(Duration::from_millis(500));
    sim.sfu
        .set_data_consumer_buffered_amount_low_threshold(dc.id, 1000)
        .expect("threshold");
    // A slow link towards b: the consumer's buffer fills.
    let addr = sim.clients[b].local;
    sim.net.set_link(
        sim.server_udp,
        addr,
        LinkConfig::default()
            .with_latency(Duration::from_millis(200))
            .with_bandwidth_bps(200_000),
    );
    for i in 0..40u8 {
        assert!(sim.clients[a].send_message(1, true, &[i; 1000]));
    }
    sim.run_for(Duration::from_millis(150));
    let buffered = sim
        .sfu
        .data_consumer_buffered_amount(dc.id)
        .expect("amount");
    assert!(buffered > 0 && buffered <= 8 * 1024, "buffered {buffered}");
    sim.run_for(Duration::from_secs(5));
    let stats = sim.sfu.data_consumer_stats(dc.id).expect("stats");
    assert!(stats.messages_dropped > 0, "past the limit messages drop");
    assert_eq!(stats.messages_sent + stats.messages_dropped, 40);
    let got = received(&sim, b, stream);
    assert_eq!(
        got.len() as u64,
        stats.messages_sent,
        "what was sent arrives"
    );
    assert!(events(&sim).iter().any(|e| matches!(
        e,
        Event::DataConsumerBufferedAmountLow { data_consumer, .. } if *data_consumer == dc.id
    )));

    // The consuming peer goes away: its association closes.
    let tb = sim.clients[b].id;
    sim.clients[b].close();
    sim.run_for(Duration::from_millis(500));
    assert!(events(&sim).contains(&Event::SctpStateChange {
        transport: tb,
        state: SctpState::Closed
    }));
    assert_eq!(
        sim.sfu.transport_stats(tb).expect("stats").sctp_state,
        Some(SctpState::Closed)
    );

    // Closing the transport closes its data producers and consumers.
    let ta = sim.clients[a].id;
    sim.sfu.close_transport(ta).expect("close");
    sim.flush();
    let all = events(&sim);
    assert!(all.contains(&Event::DataProducerClosed { data_producer: dp }));
    assert!(all.contains(&Event::DataConsumerClosed {
        data_consumer: dc.id,
        reason: DataConsumerCloseReason::DataProducerClosed
    }));
}

/// The messages `dc` handed the application, in order.
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

#[test]
fn direct_transports_send_messages_into_a_room_and_receive_its_messages() {
    let mut sim = sctp_sim("data_direct", 4 << 20);
    let room = sim.create_router();
    let other = sim.create_router();
    let peer = sim.add_transport(room, Protocol::Udp);
    let outsider = sim.add_transport(other, Protocol::Udp);
    connect_all(&mut sim);
    let direct = sim
        .sfu
        .create_direct_transport(room, DirectTransportOptions::default())
        .expect("direct transport");
    let other_direct = sim
        .sfu
        .create_direct_transport(other, DirectTransportOptions::default())
        .expect("direct transport");

    // The application → the peer.
    let app = sim
        .sfu
        .produce_data(direct, ProduceDataOptions::direct("bot"))
        .expect("direct data producer");
    let to_peer = sim.consume_data(peer, ConsumeDataOptions::new(app));
    assert_eq!(to_peer.parameters.label, "bot");
    let to_peer_stream = to_peer.parameters.sctp_stream_parameters.stream_id;
    // The peer → the application, and the outsider → the other room's application.
    let peer_dp = sim.produce_data(peer, SctpStreamParameters::reliable(1), "chat");
    let outsider_dp = sim.produce_data(outsider, SctpStreamParameters::reliable(1), "chat");
    let from_peer = sim
        .sfu
        .consume_data(direct, ConsumeDataOptions::new(peer_dp))
        .expect("direct data consumer")
        .id;
    let from_outsider = sim
        .sfu
        .consume_data(other_direct, ConsumeDataOptions::new(outsider_dp))
        .expect("direct data consumer")
        .id;
    assert_eq!(
        sim.sfu
            .consume_data(direct, ConsumeDataOptions::new(outsider_dp))
            .map(|_| ()),
        Err(Error::DataProducerWrongRouter(outsider_dp)),
    );
    // The application hears itself too, through a second direct transport's consumer.
    let echo = sim
        .sfu
        .create_direct_transport(room, DirectTransportOptions::default())
        .expect("direct transport");
    let echo_dc = sim
        .sfu
        .consume_data(echo, ConsumeDataOptions::new(app))
        .expect("direct data consumer")
        .id;
    sim.run_for(Duration::from_millis(300));

    let app_msgs: Vec<Message> = (0..300).map(|i| message(7, i)).collect();
    for (binary, data) in &app_msgs {
        sim.sfu.send_data(app, *binary, data).expect("send_data");
        sim.flush();
    }
    let peer_msgs: Vec<Message> = (0..300).map(|i| message(1, i)).collect();
    let mut queue: Vec<Outbox> = vec![
        (peer, 1, peer_msgs.clone()),
        (outsider, 1, (0..20).map(|i| message(9, i)).collect()),
    ];
    send_all(&mut sim, &mut queue, Duration::from_secs(2));

    assert_eq!(received(&sim, peer, to_peer_stream), app_msgs, "app → peer");
    assert_eq!(direct_received(&sim, echo_dc), app_msgs, "app → app");
    assert_eq!(direct_received(&sim, from_peer), peer_msgs, "peer → app");
    assert_eq!(
        direct_received(&sim, from_outsider),
        queue[1].2,
        "the other room's application hears its own room only"
    );
    let dp_stats = sim.sfu.data_producer_stats(app).expect("stats");
    assert_eq!(dp_stats.messages_received, app_msgs.len() as u64);
    let dc_stats = sim.sfu.data_consumer_stats(from_peer).expect("stats");
    assert_eq!(dc_stats.messages_sent, peer_msgs.len() as u64);
    assert_eq!(dc_stats.buffered_amount, 0);

    // Empty messages keep their type for the application.
    sim.sfu.send_data(app, true, b"").expect("empty binary");
    sim.sfu.send_data(app, false, b"").expect("empty text");
    sim.flush();
    let echoed = direct_received(&sim, echo_dc);
    assert_eq!(
        echoed[echoed.len() - 2..],
        [(true, vec![]), (false, vec![])]
    );

    // Misuse is refused with a typed error, and nothing else changes.
    assert_eq!(
        sim.sfu.send_data(peer_dp, false, b"x"),
        Err(Error::NotDirectDataProducer(peer_dp))
    );
    assert_eq!(
        sim.sfu.send_data(app, true, &vec![0; 262_145]),
        Err(Error::MessageTooLarge {
            size: 262_145,
            max: 262_144
        })
    );
    // A direct consumer with a smaller maximum drops (and counts) larger relayed messages.
    let small = sim
        .sfu
        .create_direct_transport(
            room,
            DirectTransportOptions {
                max_message_size: 10,
            },
        )
        .expect("direct transport");
    let small_dc = sim
        .sfu
        .consume_data(small, ConsumeDataOptions::new(app))
        .expect("direct data consumer")
        .id;
    sim.sfu.send_data(app, false, b"short").expect("send");
    sim.sfu
        .send_data(app, false, b"longer than ten")
        .expect("send");
    sim.flush();
    assert_eq!(
        direct_received(&sim, small_dc),
        [(false, b"short".to_vec())]
    );
    let small_stats = sim.sfu.data_consumer_stats(small_dc).expect("stats");
    assert_eq!(
        (small_stats.messages_sent, small_stats.messages_dropped),
        (1, 1)
    );
    // A paused direct data producer drops what the application sends, and counts it.
    sim.sfu.pause_data_producer(app).expect("pause");
    sim.sfu
        .send_data(app, false, b"while paused")
        .expect("send");
    sim.flush();
    assert!(!direct_received(&sim, echo_dc).contains(&(false, b"while paused".to_vec())));
    assert_eq!(
        sim.sfu
            .data_producer_stats(app)
            .expect("stats")
            .messages_dropped,
        1
    );

    // Closing the direct transport closes its data producer, whose consumers close too.
    sim.sfu.close_transport(direct).expect("close");
    sim.flush();
    let evs = events(&sim);
    assert!(evs.contains(&Event::DataProducerClosed { data_producer: app }));
    assert!(evs.contains(&Event::DataConsumerClosed {
        data_consumer: to_peer.id,
        reason: DataConsumerCloseReason::DataProducerClosed
    }));
    assert!(evs.contains(&Event::DataConsumerClosed {
        data_consumer: from_peer,
        reason: DataConsumerCloseReason::TransportClosed
    }));
    assert_eq!(
        sim.sfu.send_data(app, false, b"x"),
        Err(Error::UnknownDataProducer(app))
    );
}
