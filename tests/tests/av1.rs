//! AV1 with the dependency descriptor (`L1T3`): consumers get the temporal layers they prefer,
//! and every frame they receive is decodable, checked from the dependency descriptors they
//! receive (each frame's referred frames were all forwarded) against the templates the
//! synthetic encoder sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR;
use sfu_tests::media::{AV1_L1T3_TEMPLATES, AV1_MAGIC};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// What a consumer's receiver saw, from its packets and their descriptors.
#[derive(Debug, Default)]
struct Report {
    /// Frame number → temporal layer, for every frame received whole.
    frames: BTreeMap<u16, u8>,
    /// Frames whose referred frame was not forwarded.
    undecodable: Vec<(u16, u16)>,
    temporal: BTreeSet<u8>,
    /// The first frame's template (0: the key frame's).
    first_template: Option<u8>,
    gaps: usize,
    /// Packets whose payload (after the SFU) is not what the source wrote.
    corrupt: usize,
    /// Frames whose last packet lacked the marker bit.
    unmarked: usize,
}

fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant) -> Report {
    let c = &sim.clients[client];
    let mut r = Report::default();
    let descriptors: BTreeMap<u16, &[u8]> = c
        .received_extensions
        .iter()
        .filter(|e| e.ssrc == ssrc && e.at >= from)
        .filter_map(|e| Some((e.seq, e.values.get(DEPENDENCY_DESCRIPTOR)?)))
        .collect();
    let mut last_seq: Option<u16> = None;
    for p in c.received.iter().filter(|p| p.ssrc == ssrc && p.at >= from) {
        if let Some(l) = last_seq {
            if p.seq != l.wrapping_add(1) {
                r.gaps += 1;
            }
        }
        last_seq = Some(p.seq);
        let Some(dd) = descriptors.get(&p.seq) else {
            r.corrupt += 1;
            continue;
        };
        // The mandatory fields: start, end, template id, frame number.
        let end = dd[0] & 0x40 != 0;
        let template = dd[0] & 0x3f;
        let number = u16::from_be_bytes([dd[1], dd[2]]);
        let (temporal, _, fdiff, _) = AV1_L1T3_TEMPLATES[usize::from(template)];
        if p.payload.get(1) != Some(&AV1_MAGIC) || p.payload.get(8) != Some(&temporal) {
            r.corrupt += 1;
        }
        r.first_template.get_or_insert(template);
        r.temporal.insert(temporal);
        if end {
            if !p.marker {
                r.unmarked += 1;
            }
            if fdiff > 0 {
                let referred = number.wrapping_sub(fdiff);
                if !r.frames.contains_key(&referred) {
                    r.undecodable.push((number, referred));
                }
            }
            r.frames.insert(number, temporal);
        }
    }
    r
}

fn ssrc_of(c: &sfu_core::Consumed) -> u32 {
    c.parameters.rtp_parameters.encodings[0].ssrc.unwrap()
}

#[test]
fn av1_consumers_get_their_temporal_layers_decodable() {
    let mut sim = Sim::new(seed_from_env("av1_layers"));
    let room = sim.create_router_with_vp9();
    let alice = sim.add_transport(room, Protocol::Udp);
    let producer = sim.produce_av1_l1t3(alice, 4400);
    let caps = sim.device_caps(room);
    let clients: Vec<usize> = (0..3)
        .map(|_| sim.add_transport(room, Protocol::Udp))
        .collect();
    let consumers: Vec<_> = clients
        .iter()
        .map(|&c| sim.consume(c, producer, caps.clone(), false))
        .collect();
    for (c, temporal) in consumers.iter().zip([None, Some(1), Some(0)]) {
        sim.sfu
            .set_consumer_preferred_temporal_layer(c.id, temporal)
            .unwrap();
    }
    let t0 = sim.now;
    sim.run_for(Duration::from_secs(5));
    let stats = sim.sfu.producer_stats(producer).unwrap();
    assert_eq!(stats.packets_bad_descriptor, 0, "{stats:?}");

    let mut counts = Vec::new();
    for (i, (client, c)) in clients.iter().zip(&consumers).enumerate() {
        let r = check(&sim, *client, ssrc_of(c), t0);
        let want: BTreeSet<u8> = (0..=[2u8, 1, 0][i]).collect();
        println!(
            "consumer {i}: {} frames, layers {:?}, first template {:?}",
            r.frames.len(),
            r.temporal,
            r.first_template
        );
        assert_eq!(r.temporal, want, "consumer {i}");
        assert!(
            r.undecodable.is_empty(),
            "consumer {i}: {:?}",
            r.undecodable
        );
        assert_eq!(
            r.first_template,
            Some(0),
            "consumer {i} starts at the key frame"
        );
        assert_eq!((r.gaps, r.corrupt, r.unmarked), (0, 0, 0), "consumer {i}");
        counts.push(r.frames.len());
        let s = sim.sfu.consumer_stats(c.id).unwrap();
        assert_eq!(s.current_temporal_layer, Some([2, 1, 0][i]), "{s:?}");
    }
    // 30 frames a second for about 5 s: consumer 0 all of them (the allocator may hold back
    // its top temporal layer for a moment while the estimate settles), consumer 1 half (T0 and
    // T1 are one of four each), consumer 2 a quarter.
    let sent = 150;
    assert!(counts[0] >= sent * 9 / 10, "{counts:?}");
    assert!(counts[1].abs_diff(sent / 2) <= 4, "{counts:?}");
    assert!(counts[2].abs_diff(sent / 4) <= 3, "{counts:?}");

    // Up again mid-stream: the T0-only consumer climbs at the next switching points and stays
    // decodable.
    sim.sfu
        .set_consumer_preferred_temporal_layer(consumers[2].id, None)
        .unwrap();
    let t1 = sim.now;
    sim.run_for(Duration::from_secs(2));
    let r = check(&sim, clients[2], ssrc_of(&consumers[2]), t1);
    assert!(r.temporal.contains(&2), "{:?}", r.temporal);
    let late: Vec<_> = r
        .undecodable
        .iter()
        .filter(|(n, _)| r.frames.keys().next().is_some_and(|first| n != first))
        .collect();
    assert!(late.is_empty(), "after climbing: {late:?}");
}
