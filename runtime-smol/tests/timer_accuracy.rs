//! How late async-io's timers wake up: raw, and inside a worker running a conference. Prints
//! the numbers (run with `--nocapture`); asserts only loose bounds, since the machine may be
//! busy.

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
    let mut lateness = smol::block_on(async {
        let mut out = Vec::new();
        for i in 0..400 {
            let wait = Duration::from_micros(waits[i % waits.len()]);
            let target = now() + wait;
            Timer::at(target).await;
            out.push(now().saturating_duration_since(target));
        }
        out
    });
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
    eprintln!(
        "worker timer: {fires} wake-ups in 2.5 s, mean lateness {} us, max {} us (whole run)",
        total / fires.max(1),
        after.timer_late_max_us
    );
    assert!(fires > 0);
    runtime.shutdown();
}
