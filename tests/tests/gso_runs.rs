//! Runs for GSO: with `SfuConfig::gso_segments` above 1 the Sfu writes each consumer
//! transport's equal-size datagrams back to back into one transmit (`segment_size` set). What
//! the receivers get is exactly what they get with one datagram per transmit.

mod common_peers;

use std::time::Duration;

use common_peers::{room_of, sub_delivery, Sub};
use sfu_core::SfuConfig;
use sfu_tests::media::verify_payload;
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;

fn conference(seed: u64, gso_segments: usize) -> (Sim, Vec<Sub>) {
    let mut config = SfuConfig::with_seed(seed);
    config.gso_segments = gso_segments;
    // The comparison is of how datagrams are written, packet for packet and instant for
    // instant; the pacer's timing is left out of it.
    config.pacing = false;
    let mut sim = Sim::with_config(seed, config);
    let (_, subs) = room_of(&mut sim, 4);
    sim.run_for(Duration::from_secs(3));
    (sim, subs)
}

/// What each client received: payload (which names its source and sequence number), marker,
/// and when, in order of arrival. (Consumer SSRCs and sequence offsets are random.)
fn received(sim: &Sim) -> Vec<Vec<(Vec<u8>, bool, Duration)>> {
    sim.clients
        .iter()
        .map(|c| {
            let mut got: Vec<_> = c
                .received
                .iter()
                .map(|r| (r.payload.clone(), r.marker, r.at - sim.start))
                .collect();
            // Packets of different sources arriving at one instant may come in either order.
            got.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
            got
        })
        .collect()
}

#[test]
fn runs_for_gso_deliver_exactly_what_single_datagrams_deliver() {
    let seed = seed_from_env("gso_runs");
    let (single, _) = conference(seed, 1);
    let (runs, subs) = conference(seed, 16);
    for sub in &subs {
        sub_delivery(&runs, sub, runs.start)
            .check(if sub.kind == sfu_core::ortc::MediaKind::Audio {
                100
            } else {
                200
            })
            .unwrap_or_else(|e| panic!("{sub:?}: {e}"));
    }
    let (a, b) = (received(&single), received(&runs));
    for (client, (a, b)) in a.iter().zip(&b).enumerate() {
        let first_difference = a.iter().zip(b).position(|(a, b)| a != b);
        assert!(
            first_difference.is_none() && a.len() == b.len(),
            "client {client} receives other packets with runs: {} against {} packets, first \
             difference at {first_difference:?}: {:?} against {:?}",
            b.len(),
            a.len(),
            first_difference.map(|i| (verify_payload(&b[i].0), b[i].2)),
            first_difference.map(|i| (verify_payload(&a[i].0), a[i].2)),
        );
    }
    // Video frames of several equal-size packets went out as runs.
    let datagrams: u64 = subs
        .iter()
        .map(|s| runs.sfu.consumer_stats(s.consumer).unwrap().packets_sent)
        .sum();
    assert!(
        runs.transmits * 10 < single.transmits * 9,
        "transmits with runs {} against {} without, for {datagrams} forwarded packets",
        runs.transmits,
        single.transmits
    );
}
