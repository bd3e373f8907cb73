//! The smol runtime over real loopback sockets, beyond the shared suite (`tests/suite.rs`): a
//! dual-stack wildcard socket, shutdown, a garbage flood, a slow ICE-TCP reader.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{has_ipv6, Conference};
use sfu_core::{ListenInfo, WebRtcTransportOptions};
use sfu_runtime_smol::{ListenOptions, Runtime, RuntimeConfig};
use str0m::net::Protocol;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const MEDIA: Duration = Duration::from_secs(2);
const CONNECT: Duration = Duration::from_secs(5);

fn runtime(workers: usize, listen: Vec<ListenOptions>) -> Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = RuntimeConfig {
        workers,
        listen,
        ..RuntimeConfig::default()
    };
    Runtime::start(config).expect("runtime starts")
}

#[test]
fn dual_stack_wildcard_socket_serves_ipv4_peers() {
    if !has_ipv6() {
        eprintln!("no IPv6 here; skipped");
        return;
    }
    // One socket bound to [::] (dual stack). IPv4 peers arrive as IPv4-mapped addresses, which
    // the runtime turns back into IPv4, with the destination address from pktinfo; replies
    // leave from that address. The application names the concrete address to announce.
    let runtime = runtime(
        1,
        vec![ListenOptions::udp(IpAddr::V6(Ipv6Addr::UNSPECIFIED))],
    );
    let port = runtime.workers()[0].listen_infos()[0].local.port();
    let options = WebRtcTransportOptions {
        listen_infos: vec![ListenInfo {
            protocol: sfu_core::Protocol::Udp,
            local: SocketAddr::new(V4, port),
            announced_address: None,
        }],
        ..Default::default()
    };
    let mut conf = Conference::default();
    let room = conf.add_room(&runtime.workers()[0]);
    conf.join_with(room, Protocol::Udp, V4, options.clone());
    conf.join_with(room, Protocol::Udp, V4, options);
    conf.wait_connected(CONNECT);
    conf.publish_and_subscribe();
    conf.run_media(Duration::from_secs(1));
    conf.assert_no_loss();
    runtime.shutdown();
}

#[test]
fn shutdown_releases_sockets_and_fails_calls() {
    let runtime = runtime(2, vec![ListenOptions::udp(V4), ListenOptions::tcp(V4)]);
    let addrs: Vec<SocketAddr> = runtime
        .workers()
        .iter()
        .flat_map(|w| w.listen_infos().iter().map(|l| l.local))
        .collect();
    let handle = runtime.workers()[1].clone();
    runtime.shutdown();
    for addr in &addrs {
        if addrs.iter().filter(|a| a.port() == addr.port()).count() == 1 {
            UdpSocket::bind(addr).expect("the port is free again");
        }
    }
    let err = smol::block_on(handle.sfu_stats()).unwrap_err();
    assert_eq!(err, sfu_runtime_smol::RuntimeError::WorkerStopped(1));
}

/// What the flood sent.
#[derive(Debug, Default)]
struct Flood {
    datagrams: u64,
    bad_length: u64,
    truncated: u64,
    resets: u64,
}

/// Sends random datagrams and broken ICE-TCP streams at the worker until `stop` is set.
fn flood(udp: SocketAddr, tcp: SocketAddr, stop: &AtomicBool) -> Flood {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4571);
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind((V4, 0)).expect("flood socket"))
        .collect();
    let mut sent = Flood::default();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..40 {
            let len = rng.random_range(0..1400);
            let mut datagram = vec![0u8; len];
            rng.fill(&mut datagram[..]);
            let socket = &sockets[rng.random_range(0..sockets.len())];
            if socket.send_to(&datagram, udp).is_ok() {
                sent.datagrams += 1;
            }
        }
        round += 1;
        if round % 10 == 0 {
            let Ok(stream) = std::net::TcpStream::connect(tcp) else {
                continue;
            };
            let mut garbage = vec![0u8; rng.random_range(10..200)];
            rng.fill(&mut garbage[..]);
            let mut stream = stream;
            match (round / 10) % 3 {
                0 => {
                    // A length the server refuses (longer than any datagram).
                    let _ = stream.write_all(&[0xff, 0xff]);
                    let _ = stream.write_all(&garbage);
                    sent.bad_length += 1;
                }
                1 => {
                    // Well-framed garbage, then a frame cut short, then close.
                    let mut bytes = vec![0, garbage.len() as u8];
                    bytes.extend_from_slice(&garbage[..usize::from(bytes[1])]);
                    bytes.extend_from_slice(&[0x01, 0x00, 1, 2, 3]);
                    let _ = stream.write_all(&bytes);
                    sent.truncated += 1;
                }
                _ => {
                    // Garbage, then a reset.
                    let _ = stream.write_all(&[0, 3, 1, 2, 3]);
                    std::thread::sleep(Duration::from_millis(2));
                    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    sent.resets += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    sent
}

#[test]
fn garbage_flood_leaves_the_conference_alone_and_is_counted() {
    let runtime = runtime(1, vec![ListenOptions::udp(V4), ListenOptions::tcp(V4)]);
    let worker = runtime.workers()[0].clone();
    let udp = worker.listen_infos()[0].local;
    let tcp = worker.listen_infos()[1].local;
    let mut conf = Conference::default();
    let room = conf.add_room(&worker);
    conf.join(room, Protocol::Udp, V4);
    conf.join(room, Protocol::Udp, V4);
    conf.join(room, Protocol::Tcp, V4);
    conf.wait_connected(CONNECT);
    conf.publish_and_subscribe();
    let before = smol::block_on(worker.sfu_stats()).expect("stats");
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        let flooder = s.spawn(|| flood(udp, tcp, &stop));
        conf.run_media(MEDIA);
        stop.store(true, Ordering::Relaxed);
        flooder.join().expect("flood thread")
    });
    conf.run_for(Duration::from_millis(300));
    let sfu = smol::block_on(worker.sfu_stats()).expect("stats");
    let stats = worker.counters();
    eprintln!("flood {sent:?}\nsfu {sfu:?}\nruntime {stats:?}");
    conf.assert_no_loss();
    let dropped = |s: &sfu_core::SfuStats| {
        s.dropped_malformed
            + s.dropped_unknown_source
            + s.dropped_stun_unknown_ufrag
            + s.dropped_stun_unauthenticated
            + s.dropped_oversized
    };
    // A reset may beat its frame to the server, so only the truncated streams surely deliver one.
    let garbage_frames = sent.truncated;
    assert!(sent.datagrams > 1000, "the flood was too small: {sent:?}");
    assert!(
        dropped(&sfu) - dropped(&before) >= sent.datagrams + garbage_frames,
        "every garbage datagram is dropped and counted"
    );
    assert!(stats.tcp_dropped_malformed >= sent.bad_length + sent.truncated);
    assert!(sent.resets == 0 || stats.tcp_dropped_error > 0);
    assert_eq!(stats.udp_send_errors, 0);
    assert_eq!(stats.tcp_frames_dropped_queue_full, 0);
    runtime.shutdown();
}

#[test]
fn a_slow_tcp_reader_loses_its_own_frames_and_stalls_nobody() {
    let runtime = runtime(1, vec![ListenOptions::udp(V4), ListenOptions::tcp(V4)]);
    let worker = runtime.workers()[0].clone();
    let mut conf = Conference::default();
    let room = conf.add_room(&worker);
    conf.join(room, Protocol::Udp, V4);
    conf.join(room, Protocol::Udp, V4);
    let slow = conf.join(room, Protocol::Tcp, V4);
    conf.wait_connected(CONNECT);
    conf.publish_and_subscribe();
    // The TCP peer stops reading: its connection backs up, its queue fills, frames for it are
    // dropped and counted, and the others go on as if nothing happened.
    conf.peers[slow].frozen = true;
    conf.run_media(Duration::from_secs(4));
    let stats = worker.counters();
    eprintln!("runtime {stats:?}");
    conf.assert_no_loss();
    assert!(stats.tcp_frames_dropped_queue_full > 0, "{stats:?}");
    runtime.shutdown();
}
