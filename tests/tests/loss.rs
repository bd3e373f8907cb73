//! Acceptance: under 5% loss on every link, NACK/RTX recovers lost video and audio loses about
//! what the links lose, measured against what each source sent.
//!
//! Three peers publish audio and video and consume each other. After a clean second (ICE, DTLS,
//! the first key frames), every link loses 5% for 10 s, then the links are clean again while the
//! last retransmissions land. Each consumer stream is checked with the delivery checker against
//! every packet its source sent inside the lossy window: a consumer whose stream stops, or that
//! drops packets and renumbers around them, misses packets the source sent and fails.

mod common_peers;

use std::time::{Duration, Instant};

use common_peers::{arrivals, room_of, sub_delivery, Sub};
use sfu_core::ortc::MediaKind;
use sfu_tests::delivery::{delivery, Delivery, Expect};
use sfu_tests::media::{AUDIO_INTERVAL, VIDEO_INTERVAL};
use sfu_tests::netsim::{seed_from_env, LinkConfig};
use sfu_tests::sim::Sim;

/// One-way latency of every link.
const LATENCY: Duration = Duration::from_millis(10);
/// Loss on every link during the window.
const LOSS: f64 = 0.05;
/// How long the links lose.
const WINDOW: Duration = Duration::from_secs(10);
/// A packet that took longer than this from its source to the receiver was lost on the way at
/// least once and retransmitted (an original crosses two links: 2 × `LATENCY`).
const RETRANSMITTED_AFTER: Duration = Duration::from_millis(25);

/// A conference of three peers whose links lost 5% for `WINDOW`: the sim, its consumers and the
/// lossy window.
fn lossy_conference(name: &str) -> (Sim, Vec<Sub>, Instant, Instant) {
    // Retransmissions are told apart by their delay, which a pacer spreading key frames would
    // blur: this conference runs without one.
    let seed = seed_from_env(name);
    let mut config = sfu_core::SfuConfig::with_seed(seed);
    config.pacing = false;
    let mut sim = Sim::with_config(seed, config);
    let (_, subs) = room_of(&mut sim, 3);
    // Let ICE and DTLS finish on clean links, then make every link lose 5%.
    sim.run_for(Duration::from_secs(1));
    let clean = LinkConfig::default().with_latency(LATENCY);
    sim.net.set_default_link(clean.clone().with_loss(LOSS));
    let from = sim.now;
    sim.run_for(WINDOW);
    let to = sim.now;
    // Stop losing, let the last retransmissions land.
    sim.net.set_default_link(clean);
    sim.run_for(Duration::from_millis(500));
    let net = sim.net.stats();
    assert!(net.lost > 0, "the links lost nothing: {net:?}");
    (sim, subs, from, to)
}

/// What `sub`'s receiver got of everything its source made in `[from, to]`.
fn window(sim: &Sim, sub: &Sub, from: Instant, to: Instant) -> Delivery {
    delivery(
        sim,
        sub.recv,
        sub.ssrc,
        &[Expect::between(sub.source_ssrc, from, to)],
    )
}

/// What must hold for any consumer stream on lossy links, whatever was lost: everything that
/// arrived is byte-equal, from its own source, once, in one run through a constant sequence
/// and timestamp mapping that starts at a key frame; and every packet that never arrived left a
/// gap (the SFU did not renumber around it).
fn assert_sound(sim: &Sim, sub: &Sub) -> Delivery {
    let d = sub_delivery(sim, sub, sim.start);
    let what = format!("{:?} consumer {}: {d:?}", sub.kind, sub.consumer);
    if let Err(e) = d.check_sound() {
        panic!("{:?} consumer {}: {e}", sub.kind, sub.consumer);
    }
    assert_eq!(d.runs, 1, "one run: {what}");
    assert_eq!(
        d.seq_gaps, d.missing,
        "every packet that did not arrive leaves a gap, nothing else does: {what}"
    );
    d
}

#[test]
fn nack_rtx_recovers_99_percent_of_lost_video_at_5_percent_loss() {
    let (sim, subs, from, to) = lossy_conference("loss_5_percent_video");
    // A source makes 30 frames a second of 4 packets (12 for a key frame).
    let nominal = (WINDOW.as_secs_f64() / VIDEO_INTERVAL.as_secs_f64()).round() as usize * 4;
    let (mut expected, mut missing, mut retransmitted) = (0usize, 0usize, 0usize);
    for sub in subs.iter().filter(|s| s.kind == MediaKind::Video) {
        let all = assert_sound(&sim, sub);
        assert!(all.first_is_key_frame, "starts at a key frame: {all:?}");
        let d = window(&sim, sub, from, to);
        // The window holds what the source made in 10 s: its frames, and a few key frames.
        assert!(
            d.expected >= nominal && d.expected <= nominal * 3 / 2,
            "consumer {}: {} packets expected in the window, the source makes {nominal}",
            sub.consumer,
            d.expected
        );
        assert!(
            d.missing * 100 <= d.expected,
            "consumer {}: {} of {} packets the source sent never arrived: {:?}",
            sub.consumer,
            d.missing,
            d.expected,
            d.missing_examples
        );
        expected += d.expected;
        missing += d.missing;
        retransmitted += arrivals(&sim, sub)
            .iter()
            .filter(|(sent, arrived)| {
                *sent >= from && *sent <= to && *arrived - *sent > RETRANSMITTED_AFTER
            })
            .count();
    }
    // Each packet crosses two lossy links, so about 9.75% are lost at least once.
    let lost_on_wire = retransmitted + missing;
    let lost_estimate = expected as f64 * (1.0 - (1.0 - LOSS) * (1.0 - LOSS));
    let recovered = retransmitted as f64 / lost_on_wire.max(1) as f64;
    let delivered = 1.0 - missing as f64 / expected as f64;
    eprintln!(
        "video: {expected} packets sent in the window, {} delivered ({:.3}%); lost on the wire \
         {lost_on_wire} (expected about {lost_estimate:.0}), {retransmitted} recovered by RTX \
         ({:.3}%), {missing} missing",
        expected - missing,
        delivered * 100.0,
        recovered * 100.0
    );
    assert!(
        (lost_on_wire as f64) > lost_estimate * 0.6 && (lost_on_wire as f64) < lost_estimate * 1.4,
        "the links lost {lost_on_wire} video packets, about {lost_estimate:.0} expected"
    );
    assert!(
        recovered >= 0.99,
        "recovered only {:.3}% of lost video ({retransmitted} of {lost_on_wire})",
        recovered * 100.0
    );
    assert!(
        delivered >= 0.99,
        "delivered only {:.3}%",
        delivered * 100.0
    );
}

#[test]
fn audio_at_5_percent_loss_loses_about_what_the_links_lose_and_nothing_else() {
    let (sim, subs, from, to) = lossy_conference("loss_5_percent_audio");
    let nominal = (WINDOW.as_secs_f64() / AUDIO_INTERVAL.as_secs_f64()).round() as usize;
    let (mut expected, mut missing) = (0usize, 0usize);
    for sub in subs.iter().filter(|s| s.kind == MediaKind::Audio) {
        let all = assert_sound(&sim, sub);
        let sent = sim.sent[&sub.source_ssrc].packets.len();
        assert!(all.received <= sent, "received {} of {sent}", all.received);
        // Audio is not retransmitted here: in order, and never later than the links make it.
        assert_eq!(all.out_of_order, 0, "audio out of order: {all:?}");
        let late = arrivals(&sim, sub)
            .iter()
            .filter(|(sent, arrived)| {
                *sent >= from && *sent <= to && *arrived - *sent > RETRANSMITTED_AFTER
            })
            .count();
        assert_eq!(late, 0, "audio packets arrived late (retransmitted?)");
        let d = window(&sim, sub, from, to);
        assert!(
            d.expected >= nominal - 1 && d.expected <= nominal + 1,
            "{} audio packets expected in the window, the source makes {nominal}",
            d.expected
        );
        // Per stream (500 packets, 9.75% lost on average, standard deviation 1.3%).
        assert!(
            d.missing * 100 <= d.expected * 15,
            "consumer {}: {} of {} audio packets missing",
            sub.consumer,
            d.missing,
            d.expected
        );
        expected += d.expected;
        missing += d.missing;
    }
    let delivered = 1.0 - missing as f64 / expected as f64;
    let two_links = (1.0 - LOSS) * (1.0 - LOSS);
    eprintln!(
        "audio: {expected} packets sent in the window, {} delivered ({:.3}%, two 5% links \
         deliver {:.2}%)",
        expected - missing,
        delivered * 100.0,
        two_links * 100.0
    );
    // All streams together: 3,000 packets, standard deviation about 0.7% (each uplink's loss
    // is shared by the source's two consumers).
    assert!(
        (0.875..=0.93).contains(&delivered),
        "delivered {:.3}% of audio, two 5% links deliver {:.2}%",
        delivered * 100.0,
        two_links * 100.0
    );
}
