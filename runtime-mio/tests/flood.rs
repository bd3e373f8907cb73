//! Acceptance: garbage datagrams and broken ICE-TCP connections aimed at a worker while a
//! conference runs on it. The conference loses nothing; every drop is counted.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{conference, consume_all, join, room, sfu_drops, Path};
use sfu_core::{Protocol, SfuConfig};
use sfu_runtime_mio::{ListenOptions, Runtime, RuntimeConfig};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// What the attacker did.
#[derive(Debug, Default)]
struct Attack {
    datagrams: u64,
    malformed_connections: u64,
    garbage_frames: u64,
    resets: u64,
}

/// A cheap deterministic byte stream.
fn noise(state: &mut u64) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 24) as u8
}

fn attack(udp: SocketAddr, tcp: SocketAddr, stop: &AtomicBool) -> Attack {
    let oversized = SfuConfig::default().max_datagram_size + 100;
    let mut a = Attack::default();
    let socket = UdpSocket::bind((V4, 0)).unwrap();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Garbage datagrams of every first byte (STUN-, DTLS- and RTP-looking) and size, some
        // longer than the Sfu accepts.
        for _ in 0..50 {
            let len = match noise(&mut state) % 8 {
                0 => oversized,
                n => 1 + usize::from(n) * 150,
            };
            let bytes: Vec<u8> = (0..len).map(|_| noise(&mut state)).collect();
            if socket.send_to(&bytes, udp).is_ok() {
                a.datagrams += 1;
            }
        }
        // Every few rounds, broken ICE-TCP connections.
        if round % 10 == 0 {
            // A frame longer than any datagram: broken framing.
            if let Ok(mut s) = TcpStream::connect(tcp) {
                let _ = s.write_all(&[0xff, 0xff, 1, 2, 3, 4]);
                a.malformed_connections += 1;
            }
            // Well-framed garbage, then a clean close.
            if let Ok(mut s) = TcpStream::connect(tcp) {
                let mut bytes = Vec::new();
                for _ in 0..5 {
                    bytes.extend_from_slice(&[0, 100]);
                    bytes.extend((0..100).map(|_| noise(&mut state)));
                }
                // Half a frame at the end: a partial read the worker must hold.
                bytes.extend_from_slice(&[0, 50, 1, 2]);
                if s.write_all(&bytes).is_ok() {
                    a.garbage_frames += 5;
                }
            }
            // A reset: linger zero, then close.
            if let Ok(mut s) = TcpStream::connect(tcp) {
                let _ = s.write_all(&[0, 10, 1]);
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                drop(s);
                a.resets += 1;
            }
        }
        round += 1;
        thread::sleep(Duration::from_millis(5));
    }
    a
}

#[test]
fn garbage_and_broken_tcp_do_not_disturb_a_conference_and_are_counted() {
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(V4), ListenOptions::tcp(V4)],
        sfu: SfuConfig::with_seed(9),
    })
    .expect("runtime");
    let worker = runtime.least_loaded();
    let addr = |proto| {
        worker
            .listen_infos()
            .iter()
            .find(|i| i.protocol == proto)
            .map(|i| i.local)
            .expect("listen info")
    };
    let (udp, tcp) = (addr(Protocol::Udp), addr(Protocol::Tcp));
    let (router, caps) = room(&worker);
    let mut peers = vec![
        join(&worker, router, &caps, Path::UdpV4, 1),
        join(&worker, router, &caps, Path::Tcp, 2),
    ];
    consume_all(&mut peers);

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        thread::spawn(move || attack(udp, tcp, &stop))
    };
    conference(&mut peers, Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let attack = attacker.join().unwrap();
    // Let the worker finish with what is in flight.
    common::run_for(&mut peers, Duration::from_millis(300));

    let counters = worker.counters();
    let stats = worker.sfu_stats().unwrap();
    println!("attack {attack:?}\nruntime {counters:?}\nsfu {stats:?}");
    assert!(attack.datagrams > 1_000, "{attack:?}");
    // Every garbage datagram and frame the worker read was dropped by the Sfu and counted.
    // (The kernel may drop some of the flood before the worker reads it.)
    assert!(
        sfu_drops(&stats) >= attack.datagrams / 2 + attack.garbage_frames,
        "drops {} for {attack:?}",
        sfu_drops(&stats)
    );
    assert!(stats.dropped_oversized > 0);
    assert_eq!(
        counters.tcp_dropped_malformed, attack.malformed_connections,
        "broken framing drops the connection"
    );
    assert!(
        counters.tcp_dropped_error + counters.tcp_connections_closed >= attack.resets,
        "{counters:?}"
    );
    assert!(counters.tcp_dropped_error > 0, "resets are counted");
    assert!(counters.tcp_connections_accepted >= 1 + attack.malformed_connections + attack.resets);
}
