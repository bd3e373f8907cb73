//! Acceptance: garbage datagrams and broken ICE-TCP connections aimed at a worker while a
//! conference runs on it. The conference loses nothing, and every piece of garbage is counted
//! exactly once, in the one counter its bytes and its source call for.
//!
//! The flood goes out in bursts far smaller than the socket's receive buffer, and the attacker
//! waits until the worker has counted a burst before it sends the next: the kernel has no reason
//! to drop any of it, so no drop is excused.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Mio;
use sfu_core::{DtlsState, Protocol, SfuConfig, SfuStats, TransportId, TransportStats};
use sfu_runtime_mio::{ListenOptions, Runtime, RuntimeConfig, RuntimeCounters, WorkerHandle};
use sfu_tests::forge::{stranger_counter, Counted};
use sfu_tests::runtime_suite::peers::{
    conference, consume_all, join, kernel_udp_rcvbuf_errors, room, Path,
};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Garbage datagrams per burst from a stranger's address (at most ~2.3 KB each: a burst is a
/// small fraction of any socket receive buffer).
const STRANGER_BURST: usize = 24;
/// Garbage datagrams per burst from the UDP peer's own, validated address.
const PEER_BURST: usize = 6;
/// How long the worker may take to count one burst.
const COUNT_LIMIT: Duration = Duration::from_secs(2);
/// STUN's magic cookie (RFC 5389).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

macro_rules! drops {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// The counters that garbage moves and a clean conference leaves alone.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        struct Drops {
            $($(#[doc = $doc])* $name: u64,)*
        }

        impl Drops {
            /// Counted by counter, what grew since `before`.
            fn since(&self, before: &Drops) -> Drops {
                Drops { $($name: self.$name.wrapping_sub(before.$name),)* }
            }

            /// Whether every counter has reached `want`'s value.
            fn covers(&self, want: &Drops) -> bool {
                true $(&& self.$name >= want.$name)*
            }

            /// The counters that differ from `want`, named.
            fn diff(&self, want: &Drops) -> Vec<String> {
                let mut d = Vec::new();
                $(if self.$name != want.$name {
                    d.push(format!(
                        "{}: counted {}, expected {}",
                        stringify!($name),
                        self.$name,
                        want.$name
                    ));
                })*
                d
            }
        }
    };
}

drops! {
    /// `SfuStats`.
    oversized,
    malformed,
    unknown_source,
    stun_unknown_ufrag,
    stun_unauthenticated,
    too_many_tuples,
    /// The UDP peer's transport (`TransportStats`).
    udp_peer_rtp_dropped,
    udp_peer_rtcp_dropped,
    udp_peer_dtls_dropped,
    udp_peer_rtc_errors,
    /// The TCP peer's transport.
    tcp_peer_rtp_dropped,
    tcp_peer_rtcp_dropped,
    tcp_peer_dtls_dropped,
    tcp_peer_rtc_errors,
    /// `RuntimeCounters`.
    udp_recv_errors,
    tcp_connections_accepted,
    tcp_connections_refused,
    tcp_accept_errors,
    tcp_connections_closed,
    tcp_dropped_malformed,
    tcp_dropped_error,
}

/// A snapshot of the worker's counters: the runtime's, the Sfu's, and the two peers'
/// transports' (UDP peer first).
#[derive(Debug, Clone)]
struct Counts {
    runtime: RuntimeCounters,
    sfu: SfuStats,
    transports: [TransportStats; 2],
}

fn counts(worker: &WorkerHandle, transports: [TransportId; 2]) -> Counts {
    let stats = |t| worker.transport_stats(t).expect("transport stats");
    Counts {
        runtime: worker.counters(),
        sfu: worker.sfu_stats().expect("sfu stats"),
        transports: [stats(transports[0]), stats(transports[1])],
    }
}

impl Counts {
    fn drops(&self) -> Drops {
        let (r, s, [u, t]) = (&self.runtime, &self.sfu, &self.transports);
        Drops {
            oversized: s.dropped_oversized,
            malformed: s.dropped_malformed,
            unknown_source: s.dropped_unknown_source,
            stun_unknown_ufrag: s.dropped_stun_unknown_ufrag,
            stun_unauthenticated: s.dropped_stun_unauthenticated,
            too_many_tuples: s.dropped_too_many_tuples,
            udp_peer_rtp_dropped: u.rtp_dropped,
            udp_peer_rtcp_dropped: u.rtcp_dropped,
            udp_peer_dtls_dropped: u.dtls_dropped,
            udp_peer_rtc_errors: u.rtc_errors,
            tcp_peer_rtp_dropped: t.rtp_dropped,
            tcp_peer_rtcp_dropped: t.rtcp_dropped,
            tcp_peer_dtls_dropped: t.dtls_dropped,
            tcp_peer_rtc_errors: t.rtc_errors,
            udp_recv_errors: r.udp_recv_errors,
            tcp_connections_accepted: r.tcp_connections_accepted,
            tcp_connections_refused: r.tcp_connections_refused,
            tcp_accept_errors: r.tcp_accept_errors,
            tcp_connections_closed: r.tcp_connections_closed,
            tcp_dropped_malformed: r.tcp_dropped_malformed,
            tcp_dropped_error: r.tcp_dropped_error,
        }
    }

    /// Datagrams the transports received (routed to them by the demux).
    fn routed(&self) -> u64 {
        self.transports.iter().map(|t| t.datagrams_received).sum()
    }
}

/// What the attacker did, and where each piece of it must have been counted.
#[derive(Debug, Default)]
struct Attack {
    /// The counters' expected growth.
    expected: Drops,
    /// Garbage datagrams sent from a stranger's address.
    stranger_datagrams: u64,
    /// Garbage datagrams sent from the UDP peer's validated address.
    peer_datagrams: u64,
    /// Well-framed garbage over ICE-TCP.
    tcp_frames: u64,
    /// Of all that garbage, how much the demux hands to a transport.
    routed: u64,
    bursts: u64,
}

impl Attack {
    fn expect(&mut self, counter: Counted, routed: bool) {
        let e = &mut self.expected;
        match counter {
            Counted::Oversized => e.oversized += 1,
            Counted::Malformed => e.malformed += 1,
            Counted::UnknownSource => e.unknown_source += 1,
            Counted::StunUnknownUfrag => e.stun_unknown_ufrag += 1,
            Counted::StunUnauthenticated => e.stun_unauthenticated += 1,
            // The one validated peer this test sends from.
            Counted::RtpDropped(_) => e.udp_peer_rtp_dropped += 1,
            Counted::RtcpDropped(_) => e.udp_peer_rtcp_dropped += 1,
            Counted::DtlsDropped(_) => e.udp_peer_dtls_dropped += 1,
        }
        if routed {
            self.routed += 1;
        }
    }

    fn garbage(&self) -> u64 {
        self.stranger_datagrams + self.peer_datagrams + self.tcp_frames
    }
}

/// A cheap deterministic byte stream.
fn noise(state: &mut u64) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 24) as u8
}

fn noise_bytes(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len).map(|_| noise(state)).collect()
}

/// `len` random bytes whose first byte falls in each range of RFC 7983 in turn (STUN, DTLS,
/// RTP/RTCP, anything), with no STUN magic cookie (so never a STUN message).
fn garbage_of_len(state: &mut u64, len: usize) -> Vec<u8> {
    let mut b = noise_bytes(state, len);
    if let Some(first) = b.first_mut() {
        *first = match noise(state) % 4 {
            0 => *first % 4,
            1 => 20 + *first % 44,
            2 => 128 + *first % 64,
            _ => *first,
        };
    }
    if b.len() >= 8 && b[4..8] == MAGIC_COOKIE {
        b[4] = 0;
    }
    b
}

/// Garbage of a length around each boundary the Sfu looks at: empty, the RTP (12) and STUN (20)
/// header sizes, ordinary sizes, and longer than `max` (the largest datagram accepted).
fn garbage(state: &mut u64, max: usize) -> Vec<u8> {
    let len = match noise(state) % 8 {
        0 => max + 1 + usize::from(noise(state)),
        1 => usize::from(noise(state) % 25),
        n => usize::from(n) * 150 + usize::from(noise(state)),
    };
    garbage_of_len(state, len)
}

/// A STUN binding request naming `username`, with a made-up MESSAGE-INTEGRITY.
fn forged_binding_request(username: &str, state: &mut u64) -> Vec<u8> {
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&noise_bytes(state, 12));
    let mut mac = [0u8; 20];
    mac.copy_from_slice(&noise_bytes(state, 20));
    sfu_tests::forge::binding_request(username, transaction, mac)
}

/// A datagram whose first byte says DTLS (20-63) that is, by construction, not a sequence of
/// well-formed DTLS 1.2 records (RFC 6347 §4.1), in one of six ways (see the chaos test).
fn malformed_dtls(state: &mut u64) -> Vec<u8> {
    let first = 20 + noise(state) % 44;
    let len = usize::from(noise(state));
    let bytes = noise_bytes(state, len);
    sfu_tests::forge::malformed_dtls(first, &bytes, noise(state) % 6)
}

/// The `i`th kind of garbage from the UDP peer's validated address (server ufrag `ufrag`), and
/// where it must be counted: (bytes, counter, whether the demux routes it to the transport).
fn peer_garbage(state: &mut u64, i: usize, ufrag: &str) -> (Vec<u8>, Counted, bool) {
    let max = SfuConfig::default().max_datagram_size;
    match i % 6 {
        // RTP-shaped (not RTCP), fails SRTP authentication.
        0 => {
            let len = 12 + usize::from(noise(state) % 190);
            let mut b = noise_bytes(state, len);
            b[0] = 0x80;
            b[1] &= 0x7f;
            if (64..96).contains(&b[1]) {
                b[1] = 96;
            }
            (b, Counted::RtpDropped(0), true)
        }
        1 => (malformed_dtls(state), Counted::DtlsDropped(0), true),
        // STUN's first byte and length, but no magic cookie: it does not parse.
        2 => {
            let len = 20 + usize::from(noise(state) % 100);
            let mut b = noise_bytes(state, len);
            b[0] %= 4;
            if b[4..8] == MAGIC_COOKIE {
                b[4] = 0;
            }
            (b, Counted::Malformed, true)
        }
        // The transport's own ufrag, a client ufrag it never learned, a forged integrity.
        3 => {
            let msg = forged_binding_request(&format!("{ufrag}:evil"), state);
            (msg, Counted::StunUnauthenticated, true)
        }
        4 => {
            let len = max + 1 + usize::from(noise(state));
            (vec![0x80; len], Counted::Oversized, false)
        }
        // A first byte no protocol of RFC 7983 has.
        _ => {
            let len = 1 + usize::from(noise(state));
            let mut b = noise_bytes(state, len);
            b[0] = if b[0] < 128 {
                64 + b[0] % 64
            } else {
                192 + b[0] % 64
            };
            (b, Counted::Malformed, false)
        }
    }
}

/// What the attacker works with.
struct Target {
    worker: WorkerHandle,
    udp: SocketAddr,
    tcp: SocketAddr,
    /// The UDP peer's socket (a clone), its server ufrag, and the peers' transports.
    peer_socket: UdpSocket,
    peer_ufrag: String,
    transports: [TransportId; 2],
    /// The counters before the attack, and the kernel's count of UDP receive buffer drops.
    before: Drops,
    rcvbuf_before: Option<u64>,
}

impl Target {
    /// Waits until the worker has counted everything `attack` sent, or fails after
    /// `COUNT_LIMIT`.
    fn wait_counted(&self, attack: &Attack) -> Result<(), String> {
        let until = Instant::now() + COUNT_LIMIT;
        loop {
            let now = counts(&self.worker, self.transports);
            let got = now.drops().since(&self.before);
            if got.covers(&attack.expected) {
                return Ok(());
            }
            if Instant::now() > until {
                let kernel = match (self.rcvbuf_before, kernel_udp_rcvbuf_errors()) {
                    (Some(a), Some(b)) => (b - a).to_string(),
                    _ => "an unknown number of".to_owned(),
                };
                return Err(format!(
                    "burst {}: not counted within {COUNT_LIMIT:?}: {}\n\
                     (the kernel dropped {kernel} UDP datagrams for a full receive buffer \
                     since the attack began: if any, a burst outgrew the buffer; if none, \
                     the worker lost garbage uncounted or counted it in the wrong place)\n\
                     {attack:?}\nruntime {:?}\nsfu {:?}",
                    attack.bursts,
                    got.diff(&attack.expected).join("; "),
                    now.runtime,
                    now.sfu,
                ));
            }
            thread::sleep(Duration::from_micros(200));
        }
    }
}

fn attack(target: &Target, stop: &AtomicBool) -> Result<Attack, String> {
    let max = SfuConfig::default().max_datagram_size;
    let mut a = Attack::default();
    let socket = UdpSocket::bind((V4, 0)).unwrap();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut peer_validated = false;
    while !stop.load(Ordering::Relaxed) {
        // Garbage of every first byte and size from a stranger, and a binding request naming
        // a real transport's ufrag with a forged integrity.
        for i in 0..STRANGER_BURST {
            let (bytes, counter) = if i == 0 {
                let msg =
                    forged_binding_request(&format!("{}:evil", target.peer_ufrag), &mut state);
                (msg, Counted::StunUnauthenticated)
            } else {
                let bytes = garbage(&mut state, max);
                let counter = stranger_counter(&bytes, SfuConfig::default().max_datagram_size);
                (bytes, counter)
            };
            if socket.send_to(&bytes, target.udp).is_ok() {
                a.stranger_datagrams += 1;
                a.expect(counter, false);
            }
        }
        // Garbage from the UDP peer's own address, once ICE validated it and DTLS is up.
        if !peer_validated {
            peer_validated = target
                .worker
                .transport_stats(target.transports[0])
                .is_ok_and(|s| s.dtls_state == DtlsState::Connected);
        }
        if peer_validated {
            for i in 0..PEER_BURST {
                let (bytes, counter, routed) = peer_garbage(&mut state, i, &target.peer_ufrag);
                if target.peer_socket.send_to(&bytes, target.udp).is_ok() {
                    a.peer_datagrams += 1;
                    a.expect(counter, routed);
                }
            }
        }
        // Every few bursts, broken ICE-TCP connections.
        if a.bursts % 10 == 0 {
            // A frame longer than any datagram: broken framing.
            let mut s = TcpStream::connect(target.tcp).map_err(|e| format!("connect: {e}"))?;
            s.write_all(&[0xff, 0xff, 1, 2, 3, 4]).unwrap();
            drop(s);
            a.expected.tcp_connections_accepted += 1;
            a.expected.tcp_dropped_malformed += 1;
            // Well-framed garbage (an empty frame among it), half a frame the worker must
            // hold, then a close inside that frame: broken framing.
            let mut s = TcpStream::connect(target.tcp).map_err(|e| format!("connect: {e}"))?;
            let mut bytes = Vec::new();
            for i in 0..5 {
                let len = if i == 0 {
                    0
                } else {
                    1 + usize::from(noise(&mut state))
                };
                let frame = garbage_of_len(&mut state, len);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
                bytes.extend_from_slice(&frame);
                a.tcp_frames += 1;
                a.expect(
                    stranger_counter(&frame, SfuConfig::default().max_datagram_size),
                    false,
                );
            }
            bytes.extend_from_slice(&[0, 50, 1, 2]);
            s.write_all(&bytes).unwrap();
            drop(s);
            a.expected.tcp_connections_accepted += 1;
            a.expected.tcp_dropped_malformed += 1;
            // A reset: linger zero, then close.
            let s = TcpStream::connect(target.tcp).map_err(|e| format!("connect: {e}"))?;
            (&s).write_all(&[0, 10, 1]).unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            a.expected.tcp_connections_accepted += 1;
            a.expected.tcp_dropped_error += 1;
        }
        a.bursts += 1;
        target.wait_counted(&a)?;
        thread::sleep(Duration::from_millis(2));
    }
    Ok(a)
}

/// A snapshot taken while no datagram is in flight: the same twice in a row.
fn settled(worker: &WorkerHandle, transports: [TransportId; 2]) -> Counts {
    let until = Instant::now() + Duration::from_secs(2);
    let mut last = counts(worker, transports);
    loop {
        thread::sleep(Duration::from_millis(20));
        let now = counts(worker, transports);
        let inbound = |c: &Counts| {
            let r = &c.runtime;
            (
                (r.udp_datagrams_received, r.tcp_frames_received),
                (c.sfu.datagrams_received, c.routed(), c.drops()),
            )
        };
        let same = inbound(&now) == inbound(&last);
        if same {
            return now;
        }
        assert!(Instant::now() < until, "the worker never settled");
        last = now;
    }
}

#[test]
fn garbage_and_broken_tcp_do_not_disturb_a_conference_and_are_counted() {
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(V4), ListenOptions::tcp(V4)],
        sfu: SfuConfig::with_seed(9),
        rtc_port_range: None,
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
    let (router, caps) = room::<Mio>(&worker);
    let mut peers = vec![
        join::<Mio>(&worker, router, &caps, Path::UdpV4, 1),
        join::<Mio>(&worker, router, &caps, Path::Tcp, 2),
    ];
    consume_all(&mut peers);
    let transports = [peers[0].client.id, peers[1].client.id];

    // The TCP peer's connection is in the baseline; nothing else moves until the peers pump.
    let until = Instant::now() + Duration::from_secs(2);
    while worker.counters().tcp_connections_accepted < 1 {
        assert!(Instant::now() < until, "the TCP peer was never accepted");
        thread::sleep(Duration::from_millis(1));
    }
    let before = settled(&worker, transports);
    let rcvbuf_before = kernel_udp_rcvbuf_errors();
    let target = Target {
        worker: worker.clone(),
        udp,
        tcp,
        peer_socket: peers[0].udp_socket().expect("udp peer"),
        peer_ufrag: peers[0].client.server_ufrag.clone(),
        transports,
        before: before.drops(),
        rcvbuf_before,
    };
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        thread::spawn(move || attack(&target, &stop))
    };
    // The conference checks that every consumer got every packet of its source.
    conference(&mut peers, Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let attack = attacker.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    let attack_time = started.elapsed();
    // The peers no longer send: whatever the worker still had in flight it finishes with.
    let after = settled(&worker, transports);
    let rcvbuf_after = kernel_udp_rcvbuf_errors();
    println!(
        "attack {attack:?} in {attack_time:?}\nruntime {:?}\nsfu {:?}\n\
         kernel udp receive buffer errors {rcvbuf_before:?} -> {rcvbuf_after:?}",
        after.runtime, after.sfu,
    );

    assert!(attack.stranger_datagrams > 1_000, "{attack:?}");
    assert!(attack.peer_datagrams > 100, "{attack:?}");
    assert!(attack.tcp_frames > 0, "{attack:?}");
    // Each piece of garbage in exactly its counter, and the conference in none of them.
    let got = after.drops().since(&before.drops());
    assert!(
        got == attack.expected,
        "garbage counted wrong: {}",
        got.diff(&attack.expected).join("; ")
    );
    // Every datagram the worker read reached the Sfu ...
    let (r0, r1) = (&before.runtime, &after.runtime);
    let read = (r1.udp_datagrams_received - r0.udp_datagrams_received)
        + (r1.tcp_frames_received - r0.tcp_frames_received);
    let took = after.sfu.datagrams_received - before.sfu.datagrams_received;
    assert_eq!(read, took, "datagrams read vs. handed to the Sfu");
    // ... and each one the Sfu took was either garbage it dropped before any transport, or
    // reached a transport.
    let routed = after.routed() - before.routed();
    assert_eq!(
        took,
        routed + attack.garbage() - attack.routed,
        "datagrams the Sfu took vs. routed to transports plus unroutable garbage"
    );
}
