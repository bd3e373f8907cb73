//! Acceptance: random garbage datagrams and random API calls mixed into a running conference
//! never panic the Sfu and never disturb the valid media flows.

mod common_peers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common_peers::{consume_all, join, sub_delivery, Sub};
use proptest::prelude::*;
use sfu_core::media::rtcp::write_pli;
use sfu_core::ortc::SctpStreamParameters;
use sfu_core::ortc::{MediaKind, Protocol as P, RtpParameters};
use sfu_core::{
    AudioLevelObserverOptions, ConsumeDataOptions, ConsumeOptions, DataConsumerId, DataProducerId,
    DirectTransportOptions, Error, ProduceDataOptions, ProduceOptions, RouterId, SctpState,
    SfuConfig, SfuStats,
};
use sfu_tests::delivery::{delivery, Expect};
use sfu_tests::forge::{endpoint_srtp, is_srtp, srtcp, stranger_counter, Counted};
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
    /// An RTCP-shaped datagram from a validated peer's own address (fails SRTCP
    /// authentication).
    ForgedSrtcp { client: usize, bytes: Vec<u8> },
    /// SRTCP that authenticates (made with the keys the server holds for the peer's transport)
    /// whose compound is a PLI then a receiver report whose length field runs past the end
    /// (`words`), or a header cut after `cut % 4` bytes (when that is not 0).
    LyingSrtcp {
        client: usize,
        sender: u32,
        words: u16,
        cut: u8,
    },
    /// A frame of a publication, captured from its client and delivered, then every one of its
    /// SRTP datagrams again (replays).
    ReplayedSrtp { publication: usize },
    /// A datagram whose first byte says DTLS (20-63) but that is no well-formed DTLS 1.2 record,
    /// from a validated peer's own address.
    DtlsGarbage {
        client: usize,
        first: u8,
        bytes: Vec<u8>,
        how: u8,
    },
    /// A STUN-looking datagram (first byte 0-3, 20+ bytes) that is no STUN message, from a
    /// validated peer's own address.
    StunNoise { client: usize, bytes: Vec<u8> },
    /// Longer than any datagram the Sfu accepts.
    Oversized { len: usize },
    /// Calls with ids that name nothing.
    UnknownIds { raw: u64 },
    /// Produce with parameters parsed from a valid produce request's JSON text with random
    /// byte edits (most still parse).
    BogusProduce { edits: Vec<(usize, u8, u8)> },
    /// An extra transport that consumes, pauses, resumes and closes.
    ExtraConsumer { pause: bool, close: bool },
    /// An audio level observer with random options, put through random calls.
    Observer {
        max_entries: u16,
        threshold: i8,
        interval_ms: u64,
        calls: Vec<u8>,
    },
    /// A valid data channel message from the first peer, relayed to the second.
    DataMessage { len: usize, binary: bool },
    /// A message over the transports' maximum message size (dropped and counted).
    DataOversized { extra: usize },
    /// A message on a pre-negotiated SCTP stream no data producer uses.
    DataStray { stream: u16, len: usize },
    /// The next `n` SCTP packets a base client sends are corrupted inside authentic DTLS.
    SctpGarbage { client: usize, n: u32 },
    /// Data calls: a data producer with random stream parameters, ids that name nothing,
    /// a direct transport that sends and receives, then closes.
    DataApi {
        stream: u16,
        ordered: Option<bool>,
        life: Option<u16>,
        retransmits: Option<u16>,
        raw: u64,
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
        (0usize..4, proptest::collection::vec(any::<u8>(), 12..200))
            .prop_map(|(client, bytes)| Action::ForgedSrtcp { client, bytes }),
        (0usize..4, any::<u32>(), 2u16.., any::<u8>()).prop_map(|(client, sender, words, cut)| {
            Action::LyingSrtcp {
                client,
                sender,
                words,
                cut,
            }
        }),
        (0usize..4).prop_map(|publication| Action::ReplayedSrtp { publication }),
        (0usize..4, 20u8..64, bytes.clone(), 0u8..6).prop_map(|(client, first, bytes, how)| {
            Action::DtlsGarbage {
                client,
                first,
                bytes,
                how,
            }
        }),
        (0usize..4, proptest::collection::vec(any::<u8>(), 20..120))
            .prop_map(|(client, bytes)| Action::StunNoise { client, bytes }),
        bytes
            .clone()
            .prop_map(|bytes| Action::StrangerDtls { bytes }),
        (2001usize..70_000).prop_map(|len| Action::Oversized { len }),
        any::<u64>().prop_map(|raw| Action::UnknownIds { raw }),
        proptest::collection::vec((any::<usize>(), 0u8..4, any::<u8>()), 0..4)
            .prop_map(|edits| Action::BogusProduce { edits }),
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
        (1usize..=MAX_MESSAGE, any::<bool>())
            .prop_map(|(len, binary)| Action::DataMessage { len, binary }),
        (1usize..=MAX_MESSAGE).prop_map(|extra| Action::DataOversized { extra }),
        (2u16..1024, 1usize..300).prop_map(|(stream, len)| Action::DataStray { stream, len }),
        (0usize..4, 1u32..4).prop_map(|(client, n)| Action::SctpGarbage { client, n }),
        (
            0u16..1100,
            any::<Option<bool>>(),
            any::<Option<u16>>(),
            any::<Option<u16>>(),
            any::<u64>()
        )
            .prop_map(
                |(stream, ordered, life, retransmits, raw)| Action::DataApi {
                    stream,
                    ordered,
                    life,
                    retransmits,
                    raw
                }
            ),
        (1u64..300).prop_map(|ms| Action::Run { ms }),
    ]
}

/// A forged binding request whose MESSAGE-INTEGRITY is `tail` (padded with 7s).
fn stun_binding_request(username: &str, tail: &[u8]) -> Vec<u8> {
    let mut mac = [7u8; 20];
    for (m, t) in mac.iter_mut().zip(tail) {
        *m = *t;
    }
    sfu_tests::forge::binding_request(username, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], mac)
}

/// The counters injected datagrams may move: the Sfu's, and those of the base clients'
/// transports (datagrams received, RTP dropped, stack errors, DTLS dropped, RTCP dropped).
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    sfu: SfuStats,
    transports: Vec<[u64; 5]>,
}

/// The base clients: the two peers' send and receive transports, validated by ICE before any
/// action runs.
const BASE: usize = 4;

fn counts(sim: &Sim) -> Counts {
    Counts {
        sfu: sim.sfu.stats(),
        transports: (0..BASE)
            .map(|i| {
                let t = sim.sfu.transport_stats(sim.clients[i].id).unwrap();
                [
                    t.datagrams_received,
                    t.rtp_dropped,
                    t.rtc_errors,
                    t.dtls_dropped,
                    t.rtcp_dropped,
                ]
            })
            .collect(),
    }
}

/// Injects one datagram and checks that exactly `counter` counted it, and nothing else.
/// `routed` names the base client whose transport the demux hands it to.
fn inject_counted(
    sim: &mut Sim,
    proto: P,
    from: SocketAddr,
    bytes: &[u8],
    counter: Counted,
    routed: Option<usize>,
) {
    let before = counts(sim);
    sim.inject(proto, from, bytes);
    let after = counts(sim);
    let mut expected = before.clone();
    expected.sfu.transport_polls = after.sfu.transport_polls;
    expected.sfu.datagrams_received += 1;
    if let Some(c) = routed {
        expected.transports[c][0] += 1;
    }
    let s = &mut expected.sfu;
    match counter {
        Counted::Oversized => s.dropped_oversized += 1,
        Counted::Malformed => s.dropped_malformed += 1,
        Counted::UnknownSource => s.dropped_unknown_source += 1,
        Counted::StunUnknownUfrag => s.dropped_stun_unknown_ufrag += 1,
        Counted::StunUnauthenticated => s.dropped_stun_unauthenticated += 1,
        Counted::RtpDropped(c) => expected.transports[c][1] += 1,
        Counted::DtlsDropped(c) => expected.transports[c][3] += 1,
        Counted::RtcpDropped(c) => expected.transports[c][4] += 1,
    }
    assert_eq!(
        after,
        expected,
        "{} bytes from {from} ({:02x?}...) must be counted in {counter:?} only",
        bytes.len(),
        &bytes[..bytes.len().min(16)]
    );
}

/// A valid produce request (mediasoup-client's shape) for VP8 on a fresh mid and SSRC.
const PRODUCE_JSON: &str = r#"{"mid":"7","codecs":[{"mimeType":"video/VP8","payloadType":101,"clockRate":90000,"parameters":{},"rtcpFeedback":[{"type":"nack","parameter":""},{"type":"nack","parameter":"pli"},{"type":"ccm","parameter":"fir"}]}],"headerExtensions":[{"uri":"urn:ietf:params:rtp-hdrext:sdes:mid","id":4,"encrypt":false,"parameters":{}}],"encodings":[{"ssrc":77777}],"rtcp":{"cname":"chaos","reducedSize":true}}"#;

/// `PRODUCE_JSON` with byte edits at `(position, kind, byte)`: replace with a printable
/// character, insert one, delete one, or replace a digit with another digit.
fn edited_produce(edits: &[(usize, u8, u8)]) -> String {
    let mut text = PRODUCE_JSON.as_bytes().to_vec();
    for &(pos, kind, byte) in edits {
        let printable = b' ' + byte % 95;
        let i = pos % text.len();
        match kind {
            0 => text[i] = printable,
            1 => text.insert(i, printable),
            2 => {
                text.remove(i);
            }
            _ => {
                let digits: Vec<usize> = (0..text.len())
                    .filter(|&j| text[j].is_ascii_digit())
                    .collect();
                if !digits.is_empty() {
                    text[digits[pos % digits.len()]] = b'0' + byte % 10;
                }
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The largest data channel message the base transports take.
const MAX_MESSAGE: usize = 1024;

/// The data relay the chaos must leave whole: the first peer's data producer on stream 1
/// (client 0), consumed on the second peer's receive transport (client 3).
struct DataFlow {
    producer: DataProducerId,
    consumer: DataConsumerId,
    /// The stream the consumer's messages arrive on at client 3.
    stream: u16,
    /// The valid messages sent, in order.
    sent: Vec<(bool, Vec<u8>)>,
    /// The messages over the maximum size sent.
    oversized: u64,
}

impl DataFlow {
    fn new(sim: &mut Sim) -> Self {
        let producer = sim.produce_data(0, SctpStreamParameters::reliable(1), "chaos");
        let consumed = sim.consume_data(3, ConsumeDataOptions::new(producer));
        Self {
            producer,
            consumer: consumed.id,
            stream: consumed.parameters.sctp_stream_parameters.stream_id,
            sent: Vec::new(),
            oversized: 0,
        }
    }

    /// The messages client 3 received on the relay's stream.
    fn received(&self, sim: &Sim) -> Vec<(bool, Vec<u8>)> {
        sim.clients[3]
            .messages
            .iter()
            .filter(|m| m.stream_id == self.stream)
            .map(|m| (m.binary, m.data.clone()))
            .collect()
    }
}

/// Data calls on the base transports and a direct transport: each returns what it should, and
/// leaves nothing behind.
fn data_api(
    sim: &mut Sim,
    data: &DataFlow,
    stream: SctpStreamParameters,
    raw: u64,
    room: RouterId,
) {
    let t = sim.clients[0].id;
    let options = ProduceDataOptions {
        sctp_stream_parameters: stream,
        label: "x".into(),
        protocol: String::new(),
        paused: false,
    };
    match sim.sfu.produce_data(t, options) {
        Ok(dp) => {
            assert!(
                stream.stream_id < 1024 && stream.stream_id != 1,
                "{stream:?}"
            );
            sim.sfu.close_data_producer(dp).unwrap();
        }
        Err(Error::StreamIdInUse(1)) => assert_eq!(stream.stream_id, 1),
        Err(Error::StreamIdOutOfRange { stream_id, .. }) => assert!(stream_id >= 1024),
        Err(Error::Ortc(_)) => {}
        Err(e) => panic!("unexpected error for {stream:?}: {e}"),
    }
    let text = format!("{raw:016x}");
    let unknown_dp: DataProducerId = text.parse().unwrap();
    let unknown_dc: DataConsumerId = text.parse().unwrap();
    assert_eq!(
        sim.sfu
            .consume_data(t, ConsumeDataOptions::new(unknown_dp))
            .map(|c| c.id),
        Err(Error::UnknownDataProducer(unknown_dp))
    );
    assert!(sim.sfu.close_data_consumer(unknown_dc).is_err());
    assert!(sim.sfu.send_data(unknown_dp, true, b"x").is_err());
    assert_eq!(
        sim.sfu.send_data(data.producer, true, b"x"),
        Err(Error::NotDirectDataProducer(data.producer))
    );
    // A direct transport hears the relay, and sends on its own data producer, which no one
    // consumes; then it closes.
    let direct = sim
        .sfu
        .create_direct_transport(room, DirectTransportOptions::default())
        .unwrap();
    sim.sfu
        .consume_data(direct, ConsumeDataOptions::new(data.producer))
        .unwrap();
    let own = sim
        .sfu
        .produce_data(direct, ProduceDataOptions::direct("bot"))
        .unwrap();
    sim.sfu.send_data(own, false, text.as_bytes()).unwrap();
    sim.sfu.close_transport(direct).unwrap();
    sim.flush();
}

fn apply(
    sim: &mut Sim,
    subs: &[Sub],
    ufrags: &[String],
    action: &Action,
    extra: &mut Vec<usize>,
    data: &mut DataFlow,
) {
    let stranger =
        |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 9, 9)), port.max(1));
    match action {
        Action::Garbage { bytes, port, tcp } => {
            let proto = if *tcp { P::Tcp } else { P::Udp };
            let counter = stranger_counter(bytes, SfuConfig::default().max_datagram_size);
            inject_counted(sim, proto, stranger(*port), bytes, counter, None);
        }
        Action::ForgedStun { client, tail } => {
            // The server's ufrag of a base transport, a made-up client ufrag and integrity:
            // from a stranger, the integrity check fails; from the client's validated path,
            // the client ufrag differs from the one learned (and the integrity fails).
            let c = client % BASE;
            let msg = stun_binding_request(&format!("{}:evil", ufrags[c]), tail);
            let s = Counted::StunUnauthenticated;
            inject_counted(sim, P::Udp, stranger(4000), &msg, s, None);
            let from = sim.clients[c].local;
            inject_counted(sim, P::Udp, from, &msg, s, Some(c));
        }
        Action::ForgedRtp { client, bytes } => {
            let c = client % BASE;
            let mut b = bytes.clone();
            b[0] = 0x80;
            b[1] &= 0x7f;
            if (64..96).contains(&b[1]) {
                b[1] = 96;
            }
            let from = sim.clients[c].local;
            inject_counted(sim, P::Udp, from, &b, Counted::RtpDropped(c), Some(c));
        }
        Action::ForgedSrtcp { client, bytes } => {
            let c = client % BASE;
            let mut b = bytes.clone();
            b[0] = 0x80 | (b[0] & 0x1f);
            b[1] = 200 + b[1] % 7;
            let from = sim.clients[c].local;
            inject_counted(sim, P::Udp, from, &b, Counted::RtcpDropped(c), Some(c));
        }
        Action::LyingSrtcp {
            client,
            sender,
            words,
            cut,
        } => {
            let c = client % BASE;
            let mut plain = [0u8; 12];
            let n = write_pli(&mut plain, *sender, 0).expect("pli");
            let mut rtcp = plain[..n].to_vec();
            if cut % 4 != 0 {
                rtcp.extend_from_slice(&plain[..usize::from(cut % 4)]);
            } else {
                rtcp.extend_from_slice(&[0x80, 201]);
                rtcp.extend_from_slice(&words.to_be_bytes());
                rtcp.extend_from_slice(&sender.to_be_bytes());
            }
            let mut ctx = endpoint_srtp(sim, c);
            let datagram = srtcp(&mut ctx, &rtcp);
            let from = sim.clients[c].local;
            inject_counted(
                sim,
                P::Udp,
                from,
                &datagram,
                Counted::RtcpDropped(c),
                Some(c),
            );
        }
        Action::ReplayedSrtp { publication } => {
            let i = publication % sim.publications.len();
            let due = sim.publications[i].source.next_at();
            sim.run_until(due.max(sim.now + Duration::from_micros(1)) - Duration::from_micros(1));
            let packets = sim.take_source_packets(i, due.max(sim.now));
            let (c, mid) = (sim.publications[i].client, sim.publications[i].mid.clone());
            let datagrams = sim.capture_sent(c, &mid, packets);
            let from = sim.clients[c].local;
            for d in &datagrams {
                sim.inject(P::Udp, from, d);
            }
            for d in datagrams.iter().filter(|d| is_srtp(d)) {
                inject_counted(sim, P::Udp, from, d, Counted::RtpDropped(c), Some(c));
            }
        }
        Action::StrangerDtls { bytes } => {
            let mut b = bytes.clone();
            b.insert(0, 22);
            inject_counted(
                sim,
                P::Udp,
                stranger(5000),
                &b,
                Counted::UnknownSource,
                None,
            );
        }
        Action::DtlsGarbage {
            client,
            first,
            bytes,
            how,
        } => {
            let c = client % BASE;
            let b = sfu_tests::forge::malformed_dtls(*first, bytes, *how);
            let from = sim.clients[c].local;
            inject_counted(sim, P::Udp, from, &b, Counted::DtlsDropped(c), Some(c));
        }
        Action::StunNoise { client, bytes } => {
            // STUN's first byte, but no magic cookie: it does not parse.
            let c = client % BASE;
            let mut b = bytes.clone();
            b[0] %= 4;
            if b[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                b[4] = 0;
            }
            let from = sim.clients[c].local;
            inject_counted(sim, P::Udp, from, &b, Counted::Malformed, Some(c));
        }
        Action::Oversized { len } => {
            let from = sim.clients[0].local;
            inject_counted(
                sim,
                P::Udp,
                from,
                &vec![0x80; *len],
                Counted::Oversized,
                None,
            );
        }
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
        Action::BogusProduce { edits } => {
            if let Ok(params) = serde_json::from_str::<RtpParameters>(&edited_produce(edits)) {
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
        Action::DataMessage { len, binary } => {
            let n = data.sent.len();
            let message: Vec<u8> = (0..*len).map(|i| (i + n) as u8).collect();
            assert!(sim.clients[0].send_message(1, *binary, &message));
            data.sent.push((*binary, message));
            sim.flush();
        }
        Action::DataOversized { extra } => {
            assert!(sim.clients[0].send_message(1, true, &vec![0xee; MAX_MESSAGE + extra]));
            data.oversized += 1;
            sim.flush();
        }
        Action::DataStray { stream, len } => {
            let c = &mut sim.clients[0];
            c.open_data_channel(&SctpStreamParameters::reliable(*stream), "stray");
            c.send_message(*stream, false, &vec![b's'; *len]);
            sim.flush();
        }
        Action::SctpGarbage { client, n } => {
            sim.clients[client % BASE].garble.next(*n);
        }
        Action::DataApi {
            stream,
            ordered,
            life,
            retransmits,
            raw,
        } => {
            let stream = SctpStreamParameters {
                stream_id: *stream,
                ordered: *ordered,
                max_packet_life_time: *life,
                max_retransmits: *retransmits,
            };
            data_api(sim, data, stream, *raw, subs[0].router);
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
        sim.transport_options.enable_sctp = true;
        sim.transport_options.max_sctp_message_size = MAX_MESSAGE as u32;
        let room = sim.create_router();
        let peers: Vec<_> = (0..2).map(|n| join(&mut sim, room, n, Protocol::Udp)).collect();
        let subs = consume_all(&mut sim, &peers);
        let ufrags: Vec<String> = (0..sim.clients.len()).map(|i| sim.clients[i].server_ufrag.clone()).collect();
        sim.run_for(Duration::from_secs(1));
        let mut data = DataFlow::new(&mut sim);
        sim.run_for(Duration::from_millis(500));
        let mut extra = Vec::new();
        for a in &actions {
            apply(&mut sim, &subs, &ufrags, a, &mut extra, &mut data);
        }
        sim.run_for(Duration::from_millis(1500));
        // Corrupted SCTP packets are retransmitted after SCTP's timeouts, which back off.
        let deadline = sim.now + Duration::from_secs(30);
        let settled = |sim: &Sim| {
            let dropped = sim.sfu.data_producer_stats(data.producer).unwrap().messages_dropped;
            data.received(sim).len() == data.sent.len() && dropped == data.oversized
        };
        while !settled(&sim) && sim.now < deadline {
            sim.run_for(Duration::from_millis(100));
        }

        // Every valid message arrived once, in order, byte-equal; the oversized ones and the
        // corrupted SCTP packets were dropped and counted, each once.
        prop_assert!(data.received(&sim) == data.sent, "relayed messages differ from those sent");
        let dc = sim.sfu.data_consumer_stats(data.consumer).unwrap();
        prop_assert_eq!(dc.messages_sent, data.sent.len() as u64);
        prop_assert_eq!(dc.messages_dropped, 0);
        let dp = sim.sfu.data_producer_stats(data.producer).unwrap();
        prop_assert_eq!(dp.messages_dropped, data.oversized);
        prop_assert_eq!(sim.sfu.transport_stats(sim.clients[0].id).unwrap().data_dropped, data.oversized);
        for c in 0..BASE {
            let stats = sim.sfu.transport_stats(sim.clients[c].id).unwrap();
            prop_assert_eq!(stats.sctp_dropped, u64::from(sim.clients[c].garble.corrupted()), "client {}", c);
            prop_assert_eq!(stats.sctp_state, Some(SctpState::Connected), "client {}", c);
        }

        // Every source packet from the first decodable start after both transports connected
        // until SETTLE ago reached its consumer exactly once, byte-equal, in order, on
        // contiguous sequence numbers: a packet the chaos made the Sfu drop shows as missing.
        let run = sim.now - sim.start;
        for sub in &subs {
            let d = sub_delivery(&sim, sub, sim.start);
            // At least the last second's worth: audio 50 and video 120 packets a second.
            let per_second = if sub.kind == MediaKind::Audio { 50 } else { 120 };
            if let Err(e) = d.check(per_second) {
                return Err(TestCaseError::fail(format!("{:?} consumer after {run:?}: {e}", sub.kind)));
            }
            prop_assert_eq!(d.runs, 1, "one continuous run: {:?}", d);
            prop_assert_eq!(d.sources.clone(), vec![sub.source_ssrc]);
            // The last second on its own: the flow did not stop after the chaos.
            let to = sim.now - common_peers::SETTLE;
            let window = Expect::between(sub.source_ssrc, to - Duration::from_secs(1), to);
            let last = delivery(&sim, sub.recv, sub.ssrc, &[window]);
            if let Err(e) = last.check(per_second * 9 / 10) {
                return Err(TestCaseError::fail(format!("{:?} consumer, last second: {e}", sub.kind)));
            }
        }
    }
}
