//! AV1 with the dependency descriptor (`L1T3`): a consumer below the producer's top layers is
//! told which decode targets are active for it. Each of its descriptors without a structure
//! carries the bitmask of the decode targets within its layers (`T0` and `T0+T1` for a consumer
//! at temporal layer 1), on first sends, paced sends and retransmissions alike, while a
//! consumer at the top gets the publisher's descriptors byte for byte; both still get every
//! frame's references.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR;
use sfu_tests::dd::{Descriptor, Reader};
use sfu_tests::media::av1_l1t3_structure;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// The source's decode targets: T0, T0+T1, all.
const ALL_TARGETS: u8 = 0b111;

/// One received packet's descriptor, next to what the publisher sent for that packet.
struct Seen {
    at: Instant,
    got: Vec<u8>,
    sent: Vec<u8>,
    temporal: u8,
}

/// What `client` received on `ssrc`: each packet's descriptor and the one its publisher sent
/// (rebuilt from the packet's mandatory fields, with the structure on the first packet of a
/// key frame); checks on the way that every frame received whole refers only to frames
/// received whole.
fn received(sim: &Sim, client: usize, ssrc: u32) -> Vec<Seen> {
    let c = &sim.clients[client];
    let structure = av1_l1t3_structure();
    let mut reader = Reader::default();
    let mut seen = Vec::new();
    let (mut frames, mut references) = (BTreeSet::new(), Vec::new());
    // Padding (an empty payload) fills a number and carries no frame.
    for p in c
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && !p.payload.is_empty())
    {
        let got = c
            .received_extensions
            .iter()
            .find(|e| e.ssrc == ssrc && e.seq == p.seq)
            .and_then(|e| e.values.get(DEPENDENCY_DESCRIPTOR))
            .unwrap_or_else(|| panic!("packet {} without a descriptor", p.seq));
        let f = reader
            .read(got)
            .unwrap_or_else(|e| panic!("packet {}: {e:?}", p.seq));
        let mut sent = Descriptor::new(
            f.start_of_frame,
            f.end_of_frame,
            f.template_id,
            f.frame_number,
        );
        if f.new_structure {
            sent.structure = Some(structure.clone());
        }
        if f.end_of_frame {
            frames.insert(f.frame_number);
            references.extend(f.referred.iter().map(|&r| (f.frame_number, r)));
        }
        seen.push(Seen {
            at: p.at,
            got: got.to_vec(),
            sent: sent.write(&structure),
            temporal: f.temporal,
        });
    }
    assert!(frames.len() > 30, "{} frames", frames.len());
    for (frame, referred) in references {
        assert!(
            frames.contains(&referred),
            "frame {frame}: {referred} missing"
        );
    }
    seen
}

/// The descriptor a receiver of decode targets `mask` gets for `sent`: the mandatory fields,
/// then only the active decode targets flag and the bitmask; a structure goes as it came.
fn told(sent: &[u8], mask: u8) -> Vec<u8> {
    if sent.len() > 3 {
        return sent.to_vec();
    }
    vec![sent[0], sent[1], sent[2], 0b0100_0000 | mask]
}

#[test]
fn consumers_below_the_top_are_told_their_decode_targets() {
    let mut sim = Sim::new(seed_from_env("av1_active_targets"));
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_av1_l1t3(alice, 4400);
    let caps = sim.device_caps(room);
    let (top, low) = (
        sim.add_transport(room, Protocol::Udp),
        sim.add_transport(room, Protocol::Udp),
    );
    let top_consumer = sim.consume(top, producer, caps.clone(), false);
    let low_consumer = sim.consume(low, producer, caps, false);
    sim.sfu
        .set_consumer_preferred_temporal_layer(low_consumer.id, Some(1))
        .unwrap();
    sim.run_for(Duration::from_secs(3));
    // The top consumer may start below the top while the bandwidth estimate settles; from the
    // next key frame on, its receiver has never been told less than all decode targets.
    let top_stats = sim.sfu.consumer_stats(top_consumer.id).unwrap();
    assert_eq!(top_stats.current_temporal_layer, Some(2), "{top_stats:?}");
    let low_stats = sim.sfu.consumer_stats(low_consumer.id).unwrap();
    assert_eq!(low_stats.current_temporal_layer, Some(1), "{low_stats:?}");
    sim.publications[0].source.request_key_frame();
    let key_asked = sim.now;
    // Loss towards the lower consumer: its retransmissions say the same.
    let lossy = LinkConfig::default().with_loss(0.05);
    sim.net
        .set_link(sim.server_udp, sim.clients[low].local, lossy);
    sim.run_for(Duration::from_secs(3));
    sim.net.set_link(
        sim.server_udp,
        sim.clients[low].local,
        LinkConfig::default(),
    );
    sim.run_for(Duration::from_secs(1));
    let stats = sim.sfu.consumer_stats(low_consumer.id).unwrap();
    assert!(stats.packets_retransmitted > 0, "{stats:?}");

    let ssrc = |c: &sfu_core::Consumed| c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
    let top_seen = received(&sim, top, ssrc(&top_consumer));
    let key = top_seen
        .iter()
        .position(|s| s.at > key_asked && s.sent.len() > 3)
        .expect("the key frame asked for");
    for s in &top_seen[..key] {
        let told_any = [0b001, 0b011, ALL_TARGETS].map(|m| told(&s.sent, m));
        assert!(s.got == s.sent || told_any.contains(&s.got), "{:?}", s.got);
    }
    assert!(top_seen.len() - key > 100, "{}", top_seen.len() - key);
    for s in &top_seen[key..] {
        assert_eq!(
            s.got, s.sent,
            "the top consumer gets the publisher's descriptors"
        );
    }
    let low_seen = received(&sim, low, ssrc(&low_consumer));
    let layers: BTreeSet<u8> = low_seen.iter().map(|s| s.temporal).collect();
    assert_eq!(layers, BTreeSet::from([0, 1]));
    assert!(low_seen.iter().any(|s| s.sent.len() > 3), "a key frame");
    // While the estimate settles the allocator may hold it at temporal layer 0 (told T0 only);
    // from then on it is at temporal layer 1, told T0 and T0+T1.
    for s in low_seen.iter().filter(|s| s.at < key_asked) {
        let told_any = [0b001, 0b011].map(|m| told(&s.sent, m));
        assert!(told_any.contains(&s.got), "{:?}", s.got);
    }
    for s in low_seen.iter().filter(|s| s.at >= key_asked) {
        assert_eq!(s.got, told(&s.sent, 0b011), "at {:?}", s.at - sim.start);
    }

    // Up to the top: from the first frame of temporal layer 2 on, every descriptor says all
    // the decode targets again (the receiver keeps the last bitmask it was told).
    sim.sfu
        .set_consumer_preferred_temporal_layer(low_consumer.id, None)
        .unwrap();
    let up = sim.now;
    sim.run_for(Duration::from_secs(2));
    let after: Vec<Seen> = received(&sim, low, ssrc(&low_consumer))
        .into_iter()
        .filter(|s| s.at >= up)
        .collect();
    let first_t2 = after
        .iter()
        .position(|s| s.temporal == 2)
        .expect("temporal layer 2 after the preference went up");
    // Until a structure resets the receiver's bitmask (the next key frame, if any).
    let mut reset = false;
    for s in &after[first_t2..] {
        reset |= s.sent.len() > 3;
        let want = if reset {
            s.sent.clone()
        } else {
            told(&s.sent, ALL_TARGETS)
        };
        assert_eq!(s.got, want);
    }
}
