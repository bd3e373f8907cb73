//! How late async-io's timers wake up: raw, and inside a worker running a conference. Prints
//! the numbers (run with `--nocapture`). Asserts that timers fire when due: never early, as
//! many times as they were set, and late within bounds loose enough for a busy 2-core machine.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{now, Conference};
use sfu_runtime_smol::{ListenOptions, Runtime, RuntimeConfig};
use smol::Timer;
use str0m::net::Protocol;

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[test]
fn async_io_timer_lateness() {
    let waits = [250u64, 1_000, 3_000, 10_000];
    // Each wait is at an absolute target; a wake before it is early (a negative lateness).
    let (fires, early, mut lateness) = smol::block_on(async {
        let (mut fires, mut early, mut late) = (0, Vec::new(), Vec::new());
        for i in 0..400 {
            let wait = Duration::from_micros(waits[i % waits.len()]);
            let target = now() + wait;
            Timer::at(target).await;
            let woke = now();
            fires += 1;
            match woke.checked_duration_since(target) {
                Some(l) => late.push(l),
                None => early.push(target - woke),
            }
        }
        (fires, early, late)
    });
    assert_eq!(fires, 400, "every timer fired once");
    assert!(early.is_empty(), "timers fired early: {early:?}");
    lateness.sort_unstable();
    let (p50, p90, p99, max) = (
        percentile(&lateness, 50),
        percentile(&lateness, 90),
        percentile(&lateness, 99),
        *lateness.last().expect("samples"),
    );
    eprintln!("async-io Timer lateness over {} waits of 0.25-10 ms: p50 {p50:?} p90 {p90:?} p99 {p99:?} max {max:?}", lateness.len());
    assert!(
        p50 < Duration::from_millis(2),
        "timers are far too late: p50 {p50:?}"
    );
    assert!(
        p90 < Duration::from_millis(10),
        "timers are far too late: p90 {p90:?}"
    );
    assert!(
        max < Duration::from_millis(500),
        "a timer woke {max:?} late"
    );

    // A periodic timer: one tick per period, none before its instant (the n-th tick is due n
    // periods after the start), none lost, as long as each tick is taken before the next is due.
    let period = Duration::from_millis(5);
    let (ticks, early_ticks) = smol::block_on(async {
        let start = now();
        let mut timer = Timer::interval_at(start + period, period);
        let (mut ticks, mut early) = (0u32, 0u32);
        while let Some(at) = smol::stream::StreamExt::next(&mut timer).await {
            ticks += 1;
            if at < start + period * ticks || now() < start + period * ticks {
                early += 1;
            }
            if ticks == 100 {
                break;
            }
        }
        (ticks, early)
    });
    assert_eq!(
        (ticks, early_ticks),
        (100, 0),
        "periodic ticks (count, early)"
    );
}

#[test]
fn worker_timer_lateness_during_a_call() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(ip)],
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let mut conf = Conference::default();
    let room = conf.add_room(&runtime.workers()[0]);
    conf.join(room, Protocol::Udp, ip);
    conf.join(room, Protocol::Udp, ip);
    conf.wait_connected(Duration::from_secs(5));
    conf.publish_and_subscribe();
    let before = runtime.counters();
    conf.run_media(Duration::from_secs(2));
    let after = runtime.counters();
    let fires = after.timer_fires - before.timer_fires;
    let total = after.timer_late_total_us - before.timer_late_total_us;
    let early = after.timer_early - before.timer_early;
    let mean = total / fires.max(1);
    eprintln!(
        "worker timer: {fires} deadlines served in 2.5 s ({early} wakes for a deadline that had \
         moved later, not served), mean lateness {mean} us, max {} us (whole run)",
        after.timer_late_max_us
    );
    // The worker's timer wakes it for the Sfu's deadlines (while media flows: transport-wide
    // feedback every 100 ms, NACKs, reports every second, the DTLS/ICE stacks): deadlines
    // served, each counted with its lateness (a wake before the current deadline is not
    // served, so it cannot pass for an on-time one and pull the mean down).
    assert!(fires >= 10, "{fires} deadlines served in 2.5 s of a call");
    assert!(mean < 2_000, "mean lateness {mean} us");
    assert!(
        after.timer_late_max_us < 500_000,
        "a deadline was served {} us late",
        after.timer_late_max_us
    );
    runtime.shutdown();
}
