//! Acceptance: NACK/RTX recovers lost video packets on lossy links.

mod common_peers;

use std::time::Duration;

use common_peers::{consume_all, join};
use sfu_core::ortc::MediaKind;
use sfu_tests::check::stream_report;
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

#[test]
fn nack_rtx_recovers_99_percent_of_lost_video_at_5_percent_loss() {
    let seed = seed_from_env("loss_5_percent");
    let mut sim = Sim::new(seed);
    let room = sim.create_router();
    let peers: Vec<_> = (0..3)
        .map(|n| join(&mut sim, room, n, Protocol::Udp))
        .collect();
    let subs = consume_all(&mut sim, &peers);
    // Let ICE and DTLS finish on clean links, then make every link lose 5%.
    sim.run_for(Duration::from_secs(1));
    sim.net.set_default_link(
        LinkConfig::default()
            .with_latency(Duration::from_millis(10))
            .with_loss(0.05),
    );
    let window_start = sim.now;
    sim.run_for(Duration::from_secs(10));
    // Stop losing, let the last retransmissions land.
    sim.net
        .set_default_link(LinkConfig::default().with_latency(Duration::from_millis(10)));
    sim.run_for(Duration::from_millis(500));

    let mut sent_total = 0usize;
    let mut missing_total = 0usize;
    for sub in subs.iter().filter(|s| s.kind == MediaKind::Video) {
        let received: Vec<_> = sim.clients[sub.recv]
            .received
            .iter()
            .filter(|p| p.at >= window_start)
            .cloned()
            .collect();
        let r = stream_report(&received, sub.ssrc);
        assert_eq!(r.corrupt, 0);
        assert_eq!(r.sources, vec![sub.source_ssrc]);
        let mut seqs = r.source_seqs.clone();
        seqs.sort_unstable();
        seqs.dedup();
        let (first, last) = (seqs[0], *seqs.last().unwrap());
        let span = usize::from(last.wrapping_sub(first)) + 1;
        sent_total += span;
        missing_total += span - seqs.len();
    }
    // Each packet crosses two lossy links, so about 9.75% are lost at least once.
    let lost_estimate = sent_total as f64 * (1.0 - 0.95f64 * 0.95);
    let recovered = 1.0 - missing_total as f64 / lost_estimate;
    eprintln!(
        "video packets: {sent_total}, missing after recovery: {missing_total}, \
         lost on the wire (expected): {lost_estimate:.0}, recovered: {:.3}%",
        recovered * 100.0
    );
    let net = sim.net.stats();
    assert!(net.lost > 0, "the links lost nothing: {net:?}");
    assert!(
        recovered >= 0.99,
        "recovered only {:.3}% of lost video",
        recovered * 100.0
    );
}
