//! Acceptance: two peers exchange audio and video through the mio runtime over real loopback
//! sockets (UDP on IPv4 and IPv6, ICE-TCP) with no loss; rooms spread over four workers.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::{conference, consume_all, join, room, Path};
use sfu_core::SfuConfig;
use sfu_runtime_mio::{ListenOptions, Runtime, RuntimeConfig};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

fn runtime(workers: usize, seed: u64) -> Runtime {
    Runtime::start(RuntimeConfig {
        workers,
        listen: vec![
            ListenOptions::udp(V4),
            ListenOptions::udp(V6),
            ListenOptions::tcp(V4),
        ],
        sfu: SfuConfig::with_seed(seed),
    })
    .expect("runtime")
}

fn two_peers(path: Path, seed: u64) {
    two_peers_on(runtime(1, seed), path);
}

fn two_peers_on(runtime: Runtime, path: Path) {
    let _one_at_a_time = common::exclusive();
    let worker = runtime.least_loaded();
    let (router, caps) = room(&worker);
    let mut peers = vec![
        join(&worker, router, &caps, path, 1),
        join(&worker, router, &caps, path, 2),
    ];
    consume_all(&mut peers);
    conference(&mut peers, Duration::from_secs(3));
    let counters = worker.counters();
    println!(
        "{path:?}: {counters:?}; deadlines served {} late mean {} us, max {} us",
        counters.timer_fires,
        counters.timer_late_mean_us(),
        counters.timer_late_max_us
    );
    match path {
        Path::Tcp => assert!(counters.tcp_frames_received > 0 && counters.tcp_frames_sent > 0),
        _ => assert!(counters.udp_datagrams_received > 0 && counters.udp_datagrams_sent > 0),
    }
    assert_eq!(counters.udp_send_errors, 0);
    assert_eq!(counters.tcp_frames_dropped_queue_full, 0);
    runtime.shutdown();
    // The handle outlives the runtime and says so.
    assert!(matches!(
        worker.sfu_stats(),
        Err(sfu_runtime_mio::RuntimeError::WorkerStopped(0))
    ));
}

#[test]
fn two_peers_over_udp_ipv4() {
    two_peers(Path::UdpV4, 1);
}

#[test]
fn two_peers_over_udp_ipv6() {
    two_peers(Path::UdpV6, 2);
}

#[test]
fn two_peers_over_ice_tcp() {
    two_peers(Path::Tcp, 3);
}

#[test]
fn two_peers_through_wildcard_sockets() {
    // Bound to 0.0.0.0 and ::, signaled with the interface that routes outward (or loopback).
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![
            ListenOptions::udp(Ipv4Addr::UNSPECIFIED.into()),
            ListenOptions::tcp(Ipv6Addr::UNSPECIFIED.into()),
        ],
        sfu: SfuConfig::with_seed(5),
    })
    .expect("runtime");
    let infos = runtime.workers()[0].listen_infos();
    assert!(infos[0].local.is_ipv4() && !infos[0].local.ip().is_unspecified());
    assert!(infos[1].local.is_ipv6() && !infos[1].local.ip().is_unspecified());
    two_peers_on(runtime, Path::UdpV4);
}

#[test]
fn four_workers_with_rooms_spread_across_them() {
    let _one_at_a_time = common::exclusive();
    let runtime = runtime(4, 4);
    let paths = [Path::UdpV4, Path::UdpV6, Path::Tcp, Path::UdpV4];
    let mut peers = Vec::new();
    for (r, path) in paths.into_iter().enumerate() {
        // Each room goes to the least loaded worker, so the four rooms land on four workers.
        let worker = runtime.least_loaded();
        assert_eq!(worker.load(), 0, "room {r} should get an idle worker");
        let (router, caps) = room(&worker);
        let n = r as u32 * 2;
        peers.push(join(&worker, router, &caps, path, n + 1));
        peers.push(join(&worker, router, &caps, path, n + 2));
    }
    for w in runtime.workers() {
        assert_eq!(w.load(), 2, "worker {} load", w.index());
    }
    consume_all(&mut peers);
    conference(&mut peers, Duration::from_secs(3));
    // Each worker relayed its own room and nothing else.
    for w in runtime.workers() {
        let c = w.counters();
        assert!(
            c.udp_datagrams_received + c.tcp_frames_received > 100,
            "worker {} idle: {c:?}",
            w.index()
        );
    }
    // Events came from every worker.
    let mut seen = [false; 4];
    while let Ok((index, _event)) = runtime.events().try_recv() {
        seen[index] = true;
    }
    assert_eq!(seen, [true; 4]);
}
