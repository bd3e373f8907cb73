//! Tests of the virtual network in `sfu_tests::netsim`.
//!
//! The randomized tests take their seed from `seed_from_env`, which prints it; replay a failure
//! with `SFU_SIM_SEED=<seed> cargo test -p sfu-tests --test harness_netsim <name>`. Their
//! tolerances are several standard deviations wide.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sfu_tests::netsim::{
    seed_from_env, Datagram, LinkConfig, NetStats, Network, Proto, DEFAULT_LATENCY, SEED_ENV_VAR,
};

/// The one real instant of a test; the simulation only adds durations to it.
// The workspace bans Instant::now so that simulated code takes time from its caller; the test
// needs one arbitrary starting point, and nothing depends on its value.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, host), port))
}

const A: u16 = 1000;
const B: u16 = 2000;

/// A datagram from host 1 to host 2 whose first four bytes are `n`, `size` bytes long.
fn numbered(n: u32, size: usize) -> Datagram {
    let mut contents = vec![0; size.max(4)];
    contents[..4].copy_from_slice(&n.to_be_bytes());
    Datagram {
        proto: Proto::Udp,
        source: addr(1, A),
        destination: addr(2, B),
        contents,
    }
}

fn number(d: &Datagram) -> u32 {
    u32::from_be_bytes(d.contents[..4].try_into().expect("four bytes"))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sends `count` numbered datagrams of `size` bytes, one every `interval` from `start`, and
/// returns every delivery (collected well after the last send) with its arrival time.
fn run(
    net: &mut Network,
    start: Instant,
    count: u32,
    size: usize,
    interval: Duration,
) -> Vec<(Instant, Datagram)> {
    let mut now = start;
    for n in 0..count {
        net.send(now, numbered(n, size));
        now += interval;
    }
    net.deliver_due(now + Duration::from_secs(3600))
}

fn assert_accounting(stats: NetStats) {
    assert_eq!(
        stats.sent + stats.duplicated,
        stats.delivered + stats.lost + stats.dropped_queue,
        "{stats:?}"
    );
}

#[test]
fn loss_rate_is_close_to_configured() {
    let mut net = Network::new(seed_from_env("loss_rate_is_close_to_configured"));
    net.set_default_link(LinkConfig::default().with_loss(0.1));
    let delivered = run(&mut net, t0(), 100_000, 100, ms(1));
    let stats = net.stats();
    assert_eq!(stats.sent, 100_000);
    assert_eq!(stats.delivered, delivered.len() as u64);
    assert_accounting(stats);
    // Standard deviation of the rate: sqrt(0.1 * 0.9 / 100000) ~ 0.00095.
    let rate = stats.lost as f64 / stats.sent as f64;
    assert!((rate - 0.1).abs() < 0.005, "loss rate {rate}");
    // Loss does not reorder.
    assert!(delivered
        .windows(2)
        .all(|w| number(&w[0].1) < number(&w[1].1)));
}

#[test]
fn latency_is_applied_and_links_take_precedence() {
    let start = t0();
    let mut net = Network::new(1);
    // Default: 20 ms.
    net.send(start, numbered(0, 10));
    assert_eq!(net.next_delivery(), Some(start + ms(20)));
    assert!(net.deliver_due(start + ms(19)).is_empty());
    let got = net.deliver_due(start + ms(20));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, start + ms(20));
    assert_eq!(got[0].1, numbered(0, 10));
    assert_eq!(net.next_delivery(), None);

    // A host link of the destination applies to both directions...
    let mut net = Network::new(1);
    net.set_host_link(addr(2, B), LinkConfig::default().with_latency(ms(50)));
    let mut other = numbered(1, 10);
    other.source = addr(3, A);
    net.send(start, other);
    let mut back = numbered(2, 10);
    std::mem::swap(&mut back.source, &mut back.destination);
    net.send(start, back);
    // ...but a pair link overrides it, in one direction only.
    net.set_link(
        addr(1, A),
        addr(2, B),
        LinkConfig::default().with_latency(ms(5)),
    );
    assert_eq!(net.link_config(addr(1, A), addr(2, B)).latency, ms(5));
    assert_eq!(net.link_config(addr(2, B), addr(1, A)).latency, ms(50));
    assert_eq!(net.link_config(addr(3, A), addr(4, B)).latency, ms(20));
    net.send(start, numbered(3, 10));
    let got: Vec<_> = net
        .deliver_due(start + ms(100))
        .into_iter()
        .map(|(at, d)| (at - start, number(&d)))
        .collect();
    assert_eq!(got, vec![(ms(5), 3), (ms(50), 1), (ms(50), 2)]);

    net.remove_link(addr(1, A), addr(2, B));
    net.remove_host_link(addr(2, B));
    assert_eq!(net.link_config(addr(1, A), addr(2, B)).latency, ms(20));

    // A flow stays in order when its link gets faster: the datagram sent on the fast link
    // waits for the one before it.
    let later = start + ms(200);
    net.send(later, numbered(4, 10));
    net.set_default_link(LinkConfig::default().with_latency(ms(1)));
    net.send(later + ms(1), numbered(5, 10));
    let got: Vec<_> = net
        .deliver_due(later + ms(100))
        .into_iter()
        .map(|(at, d)| (at - later, number(&d)))
        .collect();
    assert_eq!(got, vec![(ms(20), 4), (ms(20), 5)]);
}

#[test]
fn ties_are_delivered_in_send_order_and_poll_sees_new_sends() {
    let start = t0();
    let mut net = Network::new(7);
    net.set_default_link(LinkConfig::ideal());
    for n in 0..5 {
        net.send(start, numbered(n, 10));
    }
    assert_eq!(net.in_flight(), 5);
    let mut seen = Vec::new();
    while let Some((at, d)) = net.poll_due(start) {
        assert_eq!(at, start);
        let n = number(&d);
        seen.push(n);
        // A zero-latency reply is due at once and delivered in the same loop.
        if n < 3 {
            net.send(start, numbered(100 + n, 10));
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4, 100, 101, 102]);
    assert_eq!(net.stats().delivered, 8);
}

#[test]
fn jitter_stays_in_bounds_without_reordering() {
    let seed = seed_from_env("jitter_stays_in_bounds_without_reordering");
    let link = LinkConfig::default()
        .with_latency(ms(30))
        .with_jitter(ms(10));
    // Dense (1 ms apart, closer than the jitter) and sparse (50 ms apart) traffic.
    for interval in [ms(1), ms(50)] {
        let mut net = Network::new(seed);
        net.set_default_link(link.clone());
        let start = t0();
        let delivered = run(&mut net, start, 5_000, 100, interval);
        assert_eq!(delivered.len(), 5_000);
        let mut delays = Vec::new();
        for (i, (at, d)) in delivered.iter().enumerate() {
            assert_eq!(number(d), i as u32, "jitter must not reorder");
            let delay = *at - (start + interval * number(d));
            assert!(delay >= ms(20) && delay <= ms(40), "delay {delay:?}");
            delays.push(delay.as_secs_f64() * 1000.0);
        }
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        if interval == ms(50) {
            // Independent and uniform in [20, 40] ms: mean 30, every 2 ms bucket used.
            assert!((mean - 30.0).abs() < 0.5, "mean delay {mean} ms");
            let mut buckets = [0; 10];
            for d in &delays {
                buckets[(((d - 20.0) / 2.0) as usize).min(9)] += 1;
            }
            assert!(buckets.iter().all(|&n| n > 350), "{buckets:?}");
        } else {
            // Keeping order pushes dense traffic towards the upper bound.
            assert!(mean > 30.0, "mean delay {mean} ms");
        }
    }
}

#[test]
fn reorder_actually_reorders() {
    let mut net = Network::new(seed_from_env("reorder_actually_reorders"));
    net.set_default_link(LinkConfig::default().with_reorder(0.1));
    let start = t0();
    let delivered = run(&mut net, start, 10_000, 100, ms(1));
    let stats = net.stats();
    assert_eq!(delivered.len(), 10_000, "reordering loses nothing");
    assert_accounting(stats);
    let rate = stats.reordered as f64 / 10_000.0;
    assert!((rate - 0.1).abs() < 0.015, "reorder rate {rate}");
    // Reordered copies are the ones delayed beyond the link's latency (no jitter here), by at
    // least 10 ms more. A packet is late if one sent after it arrived before it: only reordered
    // packets are late, and a reordered packet is overtaken whenever a packet sent less than
    // 10 ms after it was not reordered (so all but, at most, a few at the end of the run).
    let sent_at = |n: u32| start + ms(u64::from(n));
    let slow: Vec<bool> = {
        let mut slow = vec![false; 10_000];
        for (at, d) in &delivered {
            let n = number(d);
            slow[n as usize] = *at - sent_at(n) > DEFAULT_LATENCY;
        }
        slow
    };
    assert_eq!(slow.iter().filter(|&&s| s).count() as u64, stats.reordered);
    let mut highest = None;
    let mut late = vec![false; 10_000];
    for (_, d) in &delivered {
        let n = number(d);
        if highest.is_some_and(|h| n < h) {
            late[n as usize] = true;
        } else {
            highest = Some(n);
        }
    }
    for n in 0..10_000usize {
        assert!(
            !late[n] || slow[n],
            "packet {n} was late without being reordered"
        );
        let overtaker = (n + 1..(n + 10).min(10_000)).any(|m| !slow[m]);
        assert!(
            !slow[n] || !overtaker || late[n],
            "packet {n} was reordered but not late"
        );
    }
    assert!(late.iter().filter(|&&l| l).count() as u64 > stats.reordered * 9 / 10);
    let mut numbers: Vec<u32> = delivered.iter().map(|(_, d)| number(d)).collect();
    numbers.sort_unstable();
    assert!(numbers.iter().copied().eq(0..10_000));
}

#[test]
fn duplicates_are_delivered_twice() {
    let mut net = Network::new(seed_from_env("duplicates_are_delivered_twice"));
    net.set_default_link(LinkConfig::default().with_duplicate(0.2));
    let delivered = run(&mut net, t0(), 20_000, 100, ms(1));
    let stats = net.stats();
    assert_accounting(stats);
    assert_eq!(delivered.len() as u64, 20_000 + stats.duplicated);
    let rate = stats.duplicated as f64 / 20_000.0;
    assert!((rate - 0.2).abs() < 0.015, "duplicate rate {rate}");
    let mut counts = vec![0_u32; 20_000];
    for (_, d) in &delivered {
        counts[number(d) as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c == 1 || c == 2));
}

#[test]
fn bandwidth_cap_limits_throughput_and_queue_delay() {
    const BPS: u64 = 1_000_000;
    const LIMIT: usize = 10_000;
    let mut net = Network::new(seed_from_env("bandwidth_cap_limits_throughput"));
    net.set_default_link(
        LinkConfig::default()
            .with_bandwidth_bps(BPS)
            .with_queue_limit_bytes(LIMIT),
    );
    // 1000 bytes of contents + 28 of headers = 8224 bits = 8.224 ms at 1 Mbit/s; offer twice
    // that for 4 s.
    let serialization = Duration::from_micros(8_224);
    let interval = Duration::from_micros(4_112);
    let start = t0();
    let delivered = run(&mut net, start, 1_000, 1_000, interval);
    let stats = net.stats();
    assert_accounting(stats);
    assert!(
        stats.dropped_queue > 400 && stats.dropped_queue < 600,
        "{stats:?}"
    );
    for w in delivered.windows(2) {
        assert!(w[1].0 - w[0].0 >= serialization, "faster than the link");
        assert!(number(&w[0].1) < number(&w[1].1));
    }
    // Throughput over the run matches the cap.
    let span = delivered[delivered.len() - 1].0 - delivered[0].0;
    let bits = (delivered.len() as u64 - 1) * 8_224;
    let bps = bits as f64 / span.as_secs_f64();
    assert!(
        (bps - BPS as f64).abs() < BPS as f64 * 0.01,
        "throughput {bps}"
    );
    // Delay never exceeds latency + a full queue + one serialization.
    let max_queue = Duration::from_secs_f64(LIMIT as f64 * 8.0 / BPS as f64);
    for (at, d) in &delivered {
        let sent = start + interval * number(d);
        assert!(*at - sent <= ms(20) + max_queue + serialization);
    }
}

#[test]
fn queue_limit_tail_drops_a_burst() {
    let start = t0();
    let mut net = Network::new(3);
    // 972 + 28 = 1000 bytes on the wire, 8 ms each at 1 Mbit/s.
    net.set_default_link(
        LinkConfig::default()
            .with_latency(ms(10))
            .with_bandwidth_bps(1_000_000)
            .with_queue_limit_bytes(5_000),
    );
    for n in 0..20 {
        net.send(start, numbered(n, 972));
    }
    assert_eq!(net.stats().dropped_queue, 15);
    // The queue drains: after 16 ms two have left and two more fit.
    net.send(start + ms(16), numbered(20, 972));
    net.send(start + ms(16), numbered(21, 972));
    net.send(start + ms(16), numbered(22, 972));
    assert_eq!(net.stats().dropped_queue, 16);
    let got: Vec<_> = net
        .deliver_due(start + Duration::from_secs(1))
        .into_iter()
        .map(|(at, d)| (at - start, number(&d)))
        .collect();
    let expected: Vec<_> = [0, 1, 2, 3, 4, 20, 21]
        .into_iter()
        .zip(1..)
        .map(|(n, k)| (ms(10 + 8 * k), n))
        .collect();
    assert_eq!(got, expected);

    // Zero bandwidth drops everything.
    let mut net = Network::new(3);
    net.set_default_link(LinkConfig::default().with_bandwidth_bps(0));
    net.send(start, numbered(0, 10));
    assert_eq!(net.stats().dropped_queue, 1);
    assert_eq!(net.next_delivery(), None);
}

#[test]
fn host_link_queue_is_shared_by_all_flows_of_the_host() {
    let start = t0();
    let mut net = Network::new(5);
    let sfu = addr(9, 443);
    net.set_host_link(
        sfu,
        LinkConfig::ideal()
            .with_bandwidth_bps(800_000)
            .with_queue_limit_bytes(100_000),
    );
    // 972 + 28 bytes = 10 ms at 800 kbit/s; three receivers share the SFU's uplink.
    for n in 0..3_u8 {
        let d = Datagram {
            proto: Proto::Udp,
            source: sfu,
            destination: addr(n + 1, B),
            contents: vec![n; 972],
        };
        net.send(start, d);
    }
    let times: Vec<_> = net
        .deliver_due(start + ms(100))
        .into_iter()
        .map(|(at, _)| at - start)
        .collect();
    assert_eq!(times, vec![ms(10), ms(20), ms(30)]);
}

#[test]
fn tcp_is_reliable_and_in_order() {
    let mut net = Network::new(seed_from_env("tcp_is_reliable_and_in_order"));
    net.set_default_link(
        LinkConfig::default()
            .with_loss(0.3)
            .with_reorder(0.3)
            .with_duplicate(0.3)
            .with_jitter(ms(5)),
    );
    let start = t0();
    for n in 0..2_000 {
        let mut d = numbered(n, 100);
        d.proto = Proto::Tcp;
        net.send(start + ms(u64::from(n)), d);
    }
    let delivered = net.deliver_due(start + Duration::from_secs(3600));
    let numbers: Vec<u32> = delivered.iter().map(|(_, d)| number(d)).collect();
    assert!(numbers.iter().copied().eq(0..2_000));
    let stats = net.stats();
    assert_eq!(
        (stats.lost, stats.duplicated, stats.reordered),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(
        stats.retransmitted > 400 && stats.retransmitted < 800,
        "{stats:?}"
    );
}

fn impaired() -> LinkConfig {
    LinkConfig::default()
        .with_latency(ms(40))
        .with_jitter(ms(15))
        .with_loss(0.05)
        .with_reorder(0.05)
        .with_duplicate(0.02)
        .with_bandwidth_bps(2_000_000)
        .with_queue_limit_bytes(20_000)
}

#[test]
fn equal_seeds_give_equal_runs() {
    let seed = seed_from_env("equal_seeds_give_equal_runs");
    let one_run = |seed| {
        let mut net = Network::new(seed);
        net.set_default_link(impaired());
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 9));
        net.set_host_link(v6, impaired().with_loss(0.2));
        let start = t0();
        let mut log = Vec::new();
        for n in 0..5_000_u32 {
            let now = start + Duration::from_micros(700) * n;
            let mut d = numbered(n, 200 + (n as usize * 37) % 1000);
            if n % 3 == 0 {
                d.destination = v6;
            }
            net.send(now, d);
            log.extend(
                net.deliver_due(now)
                    .into_iter()
                    .map(|(at, d)| (at - start, d)),
            );
        }
        log.extend(
            net.deliver_due(start + Duration::from_secs(3600))
                .into_iter()
                .map(|(at, d)| (at - start, d)),
        );
        (log, net.stats())
    };
    let (log_a, stats_a) = one_run(seed);
    let (log_b, stats_b) = one_run(seed);
    assert_eq!(stats_a, stats_b);
    assert!(log_a == log_b, "same seed, different deliveries");
    assert_accounting(stats_a);
    assert!(stats_a.lost > 0 && stats_a.reordered > 0 && stats_a.duplicated > 0);
    let (log_c, _) = one_run(seed.wrapping_add(1));
    assert!(log_a != log_c, "different seeds should differ");
}

/// Run by `seed_from_env_honours_the_variable` in a child process (this same test binary) with
/// `SFU_SEED_PROBE` set: prints what `seed_from_env` returned. Without the variable, does
/// nothing.
#[test]
fn seed_probe() {
    if std::env::var_os("SFU_SEED_PROBE").is_some() {
        println!("probe seed {}", seed_from_env("seed_probe"));
    }
}

/// Runs `seed_probe` in a child process with `SFU_SIM_SEED` set to `value` (or unset): whether
/// it succeeded, its stdout and its stderr.
fn probe(value: Option<&str>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["seed_probe", "--exact", "--nocapture", "--test-threads=1"])
        .env("SFU_SEED_PROBE", "1");
    match value {
        Some(v) => cmd.env(SEED_ENV_VAR, v),
        None => cmd.env_remove(SEED_ENV_VAR),
    };
    let out = cmd.output().expect("run the test binary");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The seed `seed_probe` printed.
fn probed_seed(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.split_once("probe seed ").map(|(_, seed)| seed))
        .unwrap_or_else(|| panic!("no seed printed: {stdout}"))
        .parse()
        .expect("a u64")
}

#[test]
fn seed_from_env_honours_the_variable() {
    // A set variable is the seed, surrounding whitespace ignored, and the seed is printed for
    // replay.
    for (value, seed) in [
        ("12345", 12_345),
        (" 42\n", 42),
        ("0", 0),
        ("18446744073709551615", u64::MAX),
    ] {
        let (ok, stdout, stderr) = probe(Some(value));
        assert!(ok, "{value:?}: {stderr}");
        assert_eq!(probed_seed(&stdout), seed, "{value:?}");
        assert!(
            stderr.contains(&format!("seed_probe: {SEED_ENV_VAR}={seed}")),
            "{value:?}: {stderr}"
        );
    }
    // A variable that is no decimal u64 is an error, not silently another seed.
    for value in ["abc", "-1", "18446744073709551616", "0x10", ""] {
        let (ok, stdout, stderr) = probe(Some(value));
        assert!(!ok, "{value:?} was accepted: {stdout}");
        assert!(
            stderr.contains("is not a decimal u64"),
            "{value:?}: {stderr}"
        );
    }
    // Unset: a fresh seed each run, printed.
    let seeds: Vec<u64> = (0..3)
        .map(|_| {
            let (ok, stdout, stderr) = probe(None);
            assert!(ok, "{stderr}");
            let seed = probed_seed(&stdout);
            assert!(
                stderr.contains(&format!("seed_probe: {SEED_ENV_VAR}={seed}")),
                "{stderr}"
            );
            seed
        })
        .collect();
    assert!(
        seeds[0] != seeds[1] && seeds[1] != seeds[2] && seeds[0] != seeds[2],
        "fresh seeds repeat: {seeds:?}"
    );
}

fn arb_link() -> impl Strategy<Value = LinkConfig> {
    (
        0_u64..100,
        0_u64..50,
        0.0..=1.0_f64,
        0.0..=1.0_f64,
        0.0..=1.0_f64,
        prop::option::of(0_u64..10_000_000),
        0_usize..50_000,
    )
        .prop_map(
            |(latency, jitter, loss, reorder, duplicate, bandwidth, limit)| LinkConfig {
                latency: ms(latency),
                jitter: ms(jitter),
                loss,
                reorder,
                duplicate,
                bandwidth_bps: bandwidth,
                queue_limit_bytes: limit,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the link, every datagram is accounted for, deliveries come out in time order,
    /// and nothing arrives before it was sent.
    #[test]
    fn any_link_accounts_for_every_datagram(
        cfg in arb_link(),
        seed in any::<u64>(),
        sends in prop::collection::vec((0_u64..5_000, 0_usize..1_500, any::<bool>()), 1..200),
    ) {
        let start = t0();
        let mut net = Network::new(seed);
        net.set_default_link(cfg);
        let mut now = start;
        let mut out = Vec::new();
        for (i, (gap_us, size, tcp)) in sends.iter().enumerate() {
            now += Duration::from_micros(*gap_us);
            let mut d = numbered(i as u32, *size);
            d.proto = if *tcp { Proto::Tcp } else { Proto::Udp };
            net.send(now, d);
            out.extend(net.deliver_due(now));
        }
        out.extend(net.deliver_due(now + Duration::from_secs(3600)));
        prop_assert_eq!(net.next_delivery(), None);
        let stats = net.stats();
        prop_assert_eq!(stats.sent, sends.len() as u64);
        prop_assert_eq!(
            stats.sent + stats.duplicated,
            stats.delivered + stats.lost + stats.dropped_queue
        );
        prop_assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
        prop_assert_eq!(out.len() as u64, stats.delivered);
    }
}
