//! Acceptance: a captured VP8 + Opus RTP session, replayed with its captured timing through a
//! client into the Sfu, arrives at a consumer byte for byte in payload.

mod common_peers;

use std::path::Path;
use std::time::Duration;

use sfu_core::ortc::MediaKind;
use sfu_tests::client::{Received, CLIENT_OPUS_PT, CLIENT_VP8_PT};
use sfu_tests::media::OutPacket;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::pcap::{read_udp_packets, rtp_streams};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Extends 16-bit sequence numbers across wraps.
struct Unwrap(Option<u64>);

impl Unwrap {
    fn next(&mut self, seq: u16) -> u64 {
        let ext = match self.0 {
            None => u64::from(seq),
            Some(prev) => {
                let base = prev & !0xffff;
                [base.wrapping_sub(0x1_0000), base, base + 0x1_0000]
                    .into_iter()
                    .map(|b| b.wrapping_add(u64::from(seq)))
                    .min_by_key(|c| c.abs_diff(prev))
                    .unwrap_or(prev)
            }
        };
        self.0 = Some(self.0.map_or(ext, |p| p.max(ext)));
        ext
    }
}

fn replay(path: &Path) {
    let captured = read_udp_packets(path).expect("capture loads");
    let streams = rtp_streams(&captured);
    // Audio-only captures still get a (silent) video producer, so the mids stay the same.
    let video_ssrc = streams
        .iter()
        .find(|(_, s)| s[0].rtp.payload_type == CLIENT_VP8_PT)
        .map_or(0x0bad_cafe, |(ssrc, _)| *ssrc);
    let audio_ssrc = *streams
        .iter()
        .find(|(_, s)| s[0].rtp.payload_type == CLIENT_OPUS_PT)
        .expect("Opus stream")
        .0;

    let mut sim = Sim::new(seed_from_env("pcap_replay"));
    let room = sim.create_router();
    let sender = sim.add_transport(room, Protocol::Udp);
    let receiver = sim.add_transport(room, Protocol::Udp);
    let video = sim.produce(sender, MediaKind::Video, video_ssrc);
    let audio = sim.produce(sender, MediaKind::Audio, audio_ssrc);
    // Replace the synthetic sources: this test sends the capture instead.
    for p in &mut sim.publications {
        p.muted = true;
    }
    let caps = sim.device_caps(room);
    let cv = sim.consume(receiver, video, caps.clone(), false);
    let ca = sim.consume(receiver, audio, caps, false);
    sim.run_for(Duration::from_millis(500)); // ICE + DTLS

    let start = sim.now;
    let mut unwrap_v = Unwrap(None);
    let mut unwrap_a = Unwrap(None);
    let mut sent = 0;
    for packet in &captured {
        let Some(rtp) = sfu_tests::pcap::parse_rtp(&packet.payload) else {
            continue;
        };
        let (mid, seq) = if rtp.ssrc == video_ssrc {
            ("0", unwrap_v.next(rtp.sequence_number))
        } else if rtp.ssrc == audio_ssrc {
            ("1", unwrap_a.next(rtp.sequence_number))
        } else {
            continue;
        };
        sim.run_until(start + packet.time);
        let now = sim.now;
        sim.clients[sender].send(
            now,
            mid,
            vec![OutPacket {
                seq,
                timestamp: rtp.timestamp,
                marker: rtp.marker,
                payload: rtp.payload(&packet.payload).to_vec(),
                audio_level: None,
            }],
        );
        sim.flush();
        sent += 1;
    }
    sim.run_for(Duration::from_secs(1));
    assert!(sent > 100);

    for (consumer, ssrc) in [(&cv, video_ssrc), (&ca, audio_ssrc)] {
        let Some(stream) = streams.get(&ssrc) else {
            continue;
        };
        let cssrc = consumer.parameters.rtp_parameters.encodings[0]
            .ssrc
            .unwrap();
        let got: Vec<&Received> = sim.clients[receiver]
            .received
            .iter()
            .filter(|p| p.ssrc == cssrc)
            .collect();
        eprintln!(
            "{}: captured {} packets, consumer received {}",
            consumer.parameters.kind.as_str(),
            stream.len(),
            got.len()
        );
        assert_eq!(got.len(), stream.len(), "every captured packet arrives");
        // In order and byte for byte, through one constant rewrite: sequence numbers and
        // timestamps move exactly as the capture's did, and the marker bit is kept.
        let (g0, e0) = (got[0], &stream[0].rtp);
        for (i, (g, e)) in got.iter().zip(stream).enumerate() {
            assert_eq!(g.payload, e.payload(), "payload {i} differs");
            assert_eq!(
                g.seq.wrapping_sub(g0.seq),
                e.rtp.sequence_number.wrapping_sub(e0.sequence_number),
                "sequence number of packet {i}"
            );
            assert_eq!(
                g.timestamp.wrapping_sub(g0.timestamp),
                e.rtp.timestamp.wrapping_sub(e0.timestamp),
                "timestamp of packet {i}"
            );
            assert_eq!(g.marker, e.rtp.marker, "marker bit of packet {i}");
        }
    }
}

#[test]
fn replayed_vp8_opus_capture_arrives_byte_for_byte() {
    replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/vp8-opus.pcap"));
}

#[test]
fn replayed_pcapng_capture_arrives_byte_for_byte() {
    replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/vp8-opus.pcapng"));
}

#[test]
fn replayed_linux_cooked_and_ipv6_captures_arrive_byte_for_byte() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    for name in [
        "opus-sll.pcap",
        "opus-sll2.pcap",
        "opus-ipv6.pcap",
        "opus-ipv6-rawip.pcap",
    ] {
        replay(&data.join(name));
    }
}
