//! The bandwidth estimator's cost per packet: recording a packet sent, and taking the
//! transport-cc feedback that reports it (feedback every 128 packets, about what a 1,000 packet/s
//! stream gets every 100 ms). The feedback packets are built ahead of time by the core's own
//! recorder; the measured loop only records sends and parses and applies feedback.
//!
//! Run: `cargo bench -p sfu-core --features fuzzing --bench bwe`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sfu_core::fuzzing::{BandwidthEstimator, TwccRecorder};

/// Packets per feedback.
const PER_FEEDBACK: usize = 128;
/// A whole cycle of transport-wide sequence numbers.
const CYCLE: usize = 1 << 16;

fn estimator(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // The benchmark owns its clock.
    let t0 = Instant::now();
    let at = |i: usize| t0 + Duration::from_micros(i as u64 * 1_000);
    // Feedback for every packet of a cycle, each arriving 20 ms after it was sent.
    let mut recorder = TwccRecorder::default();
    let mut feedbacks = Vec::new();
    let mut buf = [0u8; 1200];
    for i in 0..CYCLE {
        recorder.record(i as u16, at(i) + Duration::from_millis(20));
        if (i + 1) % PER_FEEDBACK == 0 {
            while let Some(len) = recorder.poll_feedback(at(i), 1, 2, &mut buf) {
                feedbacks.push(buf[..len].to_vec());
            }
        }
    }
    let mut group = c.benchmark_group("bwe");
    group.throughput(Throughput::Elements(1));
    let mut bwe = BandwidthEstimator::new(600_000);
    let mut i = 0usize;
    group.bench_function("on_sent", |b| {
        b.iter(|| {
            bwe.on_sent(i as u16, 1200, at(i));
            i += 1;
        })
    });
    group.throughput(Throughput::Elements(PER_FEEDBACK as u64));
    let mut bwe = BandwidthEstimator::new(600_000);
    let mut i = 0usize;
    let mut f = 0usize;
    group.bench_function("sent_and_feedback_per_128", |b| {
        b.iter(|| {
            for _ in 0..PER_FEEDBACK {
                bwe.on_sent(i as u16, 1200, at(i));
                i += 1;
            }
            bwe.on_rtcp(
                &feedbacks[f % feedbacks.len()],
                at(i) + Duration::from_millis(40),
            );
            f += 1;
            black_box(bwe.estimate())
        })
    });
    group.finish();
    // The feedback was matched and used: the estimate moved.
    assert_ne!(bwe.estimate(), 600_000);
}

criterion_group!(benches, estimator);
criterion_main!(benches);
