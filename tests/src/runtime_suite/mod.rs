//! One body of runtime tests, run against both bundled runtimes over real loopback sockets, so
//! their behaviour cannot drift apart: each runtime's `tests/suite.rs` implements [`Runtime`]
//! for a marker type and expands [`runtime_suite!`](macro@crate::runtime_suite) with it.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

pub mod peers;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sfu_core::control::{Reply, Request};
use sfu_core::runtime::{call, Call, ListenOptions, RuntimeConfig, RuntimeCounters, RuntimeError};
use sfu_core::{
    ConsumeDataOptions, DirectTransportOptions, Event, ListenInfo, ProduceDataOptions,
    RouterOptions, SfuConfig, WebRtcTransportOptions,
};

/// What the suite needs of a runtime: start it, reach its workers, call them (blocking), stop.
pub trait Runtime: Sized {
    /// A worker's handle.
    type Handle: Clone + sfu_core::runtime::pipe::CallHandle;
    /// Starts the runtime.
    fn start(config: RuntimeConfig) -> std::io::Result<Self>;
    /// Its workers' handles, by index.
    fn handles(&self) -> Vec<Self::Handle>;
    /// The least loaded worker.
    fn least_loaded(&self) -> Self::Handle;
    /// Carries out a call on a worker, waiting for its result.
    fn call<C: Call>(handle: &Self::Handle, call: C) -> Result<C::Output, RuntimeError>;
    /// A worker's socket addresses.
    fn listen_infos(handle: &Self::Handle) -> Vec<ListenInfo>;
    /// A worker's counters.
    fn counters(handle: &Self::Handle) -> RuntimeCounters;
    /// The events that have arrived so far, each with its worker's index (taking them).
    fn events(&self) -> Vec<(usize, Event)>;
    /// Stops every worker.
    fn shutdown(self);
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn start<R: Runtime>(workers: usize, listen: Vec<ListenOptions>) -> R {
    R::start(RuntimeConfig {
        workers,
        listen,
        sfu: SfuConfig::with_seed(16),
        rtc_port_range: None,
    })
    .expect("runtime starts")
}

/// Waits until `done` holds for the worker's counters; fails (with them) after 10 s.
fn wait_for<R: Runtime>(
    handle: &R::Handle,
    what: &str,
    done: impl Fn(&RuntimeCounters) -> bool,
) -> RuntimeCounters {
    let start = Instant::now();
    loop {
        let c = R::counters(handle);
        if done(&c) {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{what}: {c:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Typed calls and plain requests reach the worker; a transport created without listen infos
/// gets the worker's own; the worker's load follows; calls after shutdown fail.
pub fn calls_typed_and_plain<R: Runtime>() {
    let runtime: R = start(
        2,
        vec![ListenOptions::udp(LOCALHOST), ListenOptions::tcp(LOCALHOST)],
    );
    let worker = runtime.least_loaded();
    let router = R::call(
        &worker,
        call::CreateRouter {
            options: RouterOptions::default(),
        },
    )
    .expect("router");
    let created = R::call(
        &worker,
        call::CreateWebRtcTransport {
            router,
            options: WebRtcTransportOptions::default(),
        },
    )
    .expect("transport");
    let offered: Vec<SocketAddr> = created
        .parameters
        .ice_candidates
        .iter()
        .map(|c| SocketAddr::new(c.address.parse().unwrap(), c.port))
        .collect();
    let own: Vec<SocketAddr> = R::listen_infos(&worker).iter().map(|l| l.local).collect();
    assert_eq!(offered, own, "the worker's own sockets are offered");
    assert_eq!(R::counters(&worker).transports, 1);
    assert_ne!(
        R::counters(&runtime.least_loaded()).transports,
        1,
        "the other worker is now the least loaded"
    );
    let reply = R::call(&worker, Request::CloseRouter(router)).expect("close");
    assert_eq!(reply, Reply::Done);
    let refused = R::call(&worker, call::CloseRouter { router });
    assert!(matches!(refused, Err(RuntimeError::Sfu(_))), "{refused:?}");
    assert_eq!(R::counters(&worker).requests, 4);
    runtime.shutdown();
    let stopped = R::call(&worker, call::SfuStats {});
    assert!(
        matches!(stopped, Err(RuntimeError::WorkerStopped(_))),
        "{stopped:?}"
    );
}

/// A wildcard bind is announced with a concrete address (the interface that routes outward, or
/// loopback), the same on every runtime.
pub fn wildcard_binds_announce_a_concrete_address<R: Runtime>() {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let runtime: R = start(1, vec![ListenOptions::udp(any), ListenOptions::tcp(any)]);
    let worker = &runtime.handles()[0];
    for info in R::listen_infos(worker) {
        assert!(info.local.is_ipv4(), "{info:?}");
        assert!(!info.local.ip().is_unspecified(), "{info:?}");
        assert_ne!(info.local.port(), 0, "{info:?}");
    }
    runtime.shutdown();
}

/// ICE-TCP: a stream that ends between frames is a clean close, one that ends inside a frame
/// or announces a frame longer than allowed is broken framing; each is counted once.
pub fn tcp_streams_end_cleanly_or_malformed<R: Runtime>() {
    let runtime: R = start(1, vec![ListenOptions::tcp(LOCALHOST)]);
    let worker = &runtime.handles()[0];
    let server = R::listen_infos(worker)[0].local;
    let cases: [(&[u8], &str); 3] = [
        (&[0, 3, 1, 2, 3], "clean"),
        (&[0, 10, 1, 2], "inside a frame"),
        (&[0xff, 0xff, 0], "too long"),
    ];
    for (bytes, _) in cases {
        let mut stream = TcpStream::connect(server).expect("connect");
        stream.write_all(bytes).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        // The server closes its side once it has judged the stream.
        let _ = stream.read(&mut [0; 16]);
    }
    let c = wait_for::<R>(worker, "three connections judged", |c| {
        c.tcp_connections_closed + c.tcp_dropped_malformed + c.tcp_dropped_error >= 3
    });
    assert_eq!(c.tcp_connections_accepted, 3, "{c:?}");
    assert_eq!(c.tcp_frames_received, 1, "{c:?}");
    assert_eq!(c.tcp_connections_closed, 1, "{c:?}");
    assert_eq!(c.tcp_dropped_malformed, 2, "{c:?}");
    assert_eq!(c.tcp_dropped_error, 0, "{c:?}");
    runtime.shutdown();
}

/// ICE-TCP: connections that carry no valid ICE binding, silent or sending frames, are closed
/// by the server after the handshake timeout, each counted once.
pub fn ice_tcp_connections_without_a_binding_time_out<R: Runtime>() {
    let runtime: R = start(1, vec![ListenOptions::tcp(LOCALHOST)]);
    let worker = &runtime.handles()[0];
    let server = R::listen_infos(worker)[0].local;
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(server).expect("connect"))
        .collect();
    let mut chatty = TcpStream::connect(server).expect("connect");
    chatty.write_all(&[0, 4, 0xde, 0xad, 0xbe, 0xef]).unwrap();
    let c = wait_for::<R>(worker, "connections timed out", |c| c.tcp_timeouts >= 4);
    assert_eq!(c.tcp_timeouts, 4, "{c:?}");
    assert_eq!(c.tcp_connections_accepted, 4, "{c:?}");
    assert_eq!(c.tcp_frames_received, 1, "{c:?}");
    // The server closed its side of each.
    for stream in silent.iter_mut().chain([&mut chatty]) {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 16];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)), "closed");
    }
    runtime.shutdown();
}

/// ICE-TCP: when `accept` fails (here: the process is out of file descriptors), the listener
/// rests instead of spinning, each failure is counted, and the waiting connections are
/// accepted once descriptors are free again. The descriptor limit is the whole process's, so
/// the test runs alone in a child process: the test binary again, with only this test.
pub fn accept_failures_back_off<R: Runtime>(test_name: &str) {
    const CHILD: &str = "SFU_SUITE_ACCEPT_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .expect("child runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let runtime: R = start(1, vec![ListenOptions::tcp(LOCALHOST)]);
    let worker = &runtime.handles()[0];
    let server = R::listen_infos(worker)[0].local;
    let clients: Vec<socket2::Socket> = (0..3)
        .map(|_| {
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket")
        })
        .collect();
    // No descriptor left for `accept`.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let open = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            // Fewer than are open (the count included the directory being read).
            current: Some(open.saturating_sub(2)),
            maximum: limit.maximum,
        },
    )
    .expect("lower the descriptor limit");
    for c in &clients {
        c.connect(&server.into()).expect("connect");
    }
    std::thread::sleep(Duration::from_secs(1));
    let c = R::counters(worker);
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("restore");
    assert!(c.tcp_accept_errors >= 1, "{c:?}");
    // A worker that retried at once would fail thousands of times a second.
    assert!(c.tcp_accept_errors <= 30, "accept spun: {c:?}");
    assert_eq!(c.tcp_connections_accepted, 0, "{c:?}");
    let c = wait_for::<R>(worker, "accepted after the pause", |c| {
        c.tcp_connections_accepted == 3
    });
    assert!(c.tcp_accept_errors <= 40, "{c:?}");
    drop(clients);
    runtime.shutdown();
}

/// UDP datagrams are counted one by one, and garbage is the core's to drop (the worker keeps
/// serving calls).
pub fn udp_datagrams_are_counted<R: Runtime>() {
    let runtime: R = start(1, vec![ListenOptions::udp(LOCALHOST)]);
    let worker = &runtime.handles()[0];
    let server = R::listen_infos(worker)[0].local;
    let client = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
    for len in [1, 100, 1200, 0] {
        client.send_to(&vec![0x55; len], server).unwrap();
    }
    let c = wait_for::<R>(worker, "four datagrams", |c| c.udp_datagrams_received >= 4);
    assert_eq!(c.udp_datagrams_received, 4, "{c:?}");
    assert_eq!(c.udp_bytes_received, 1301, "{c:?}");
    let stats = R::call(worker, call::SfuStats {}).expect("stats");
    assert!(format!("{stats:?}").len() > 2);
    runtime.shutdown();
}

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Serializes the conferences of one test binary: each drives its peers from one thread and
/// checks every packet, so they should not compete for the machine's cores with each other.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn conference_runtime<R: Runtime>(workers: usize) -> R {
    let listen = vec![
        ListenOptions::udp(LOCALHOST),
        ListenOptions::udp(V6),
        ListenOptions::tcp(LOCALHOST),
    ];
    start(workers, listen)
}

/// Two peers in one room over `path`: every consumer gets every packet of its source.
fn two_peers_on<R: Runtime>(runtime: R, path: peers::Path) {
    let _one_at_a_time = exclusive();
    let worker = runtime.least_loaded();
    let (router, caps) = peers::room::<R>(&worker);
    let mut peers = vec![
        peers::join::<R>(&worker, router, &caps, path, 1),
        peers::join::<R>(&worker, router, &caps, path, 2),
    ];
    peers::consume_all(&mut peers);
    peers::conference(&mut peers, Duration::from_secs(3));
    let c = R::counters(&worker);
    match path {
        peers::Path::Tcp => assert!(c.tcp_frames_received > 0 && c.tcp_frames_sent > 0),
        _ => assert!(c.udp_datagrams_received > 0 && c.udp_datagrams_sent > 0),
    }
    assert_eq!(c.udp_send_errors, 0, "{c:?}");
    assert_eq!(c.tcp_frames_dropped_queue_full, 0, "{c:?}");
    assert_eq!(c.transports, 2, "{c:?}");
    runtime.shutdown();
}

/// Two peers over UDP on IPv4.
pub fn two_peers_over_udp_ipv4<R: Runtime>() {
    two_peers_on(conference_runtime::<R>(1), peers::Path::UdpV4);
}

/// Two peers over UDP on IPv6.
pub fn two_peers_over_udp_ipv6<R: Runtime>() {
    two_peers_on(conference_runtime::<R>(1), peers::Path::UdpV6);
}

/// Two peers over ICE-TCP.
pub fn two_peers_over_ice_tcp<R: Runtime>() {
    two_peers_on(conference_runtime::<R>(1), peers::Path::Tcp);
}

/// Two peers through a wildcard UDP socket, reached at the address it announces.
pub fn two_peers_through_a_wildcard_socket<R: Runtime>() {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    two_peers_on(
        start::<R>(1, vec![ListenOptions::udp(any)]),
        peers::Path::UdpV4,
    );
}

/// Four rooms go to four workers (the least loaded each time); each worker relays its own room
/// and its events.
pub fn four_workers_with_rooms_spread_across_them<R: Runtime>() {
    let _one_at_a_time = exclusive();
    let runtime = conference_runtime::<R>(4);
    let paths = [
        peers::Path::UdpV4,
        peers::Path::UdpV6,
        peers::Path::Tcp,
        peers::Path::UdpV4,
    ];
    let mut all = Vec::new();
    for (r, path) in paths.into_iter().enumerate() {
        let worker = runtime.least_loaded();
        assert_eq!(
            R::counters(&worker).transports,
            0,
            "room {r} gets an idle worker"
        );
        let (router, caps) = peers::room::<R>(&worker);
        let n = r as u32 * 2;
        all.push(peers::join::<R>(&worker, router, &caps, path, n + 1));
        all.push(peers::join::<R>(&worker, router, &caps, path, n + 2));
    }
    for w in runtime.handles() {
        assert_eq!(R::counters(&w).transports, 2);
    }
    peers::consume_all(&mut all);
    peers::conference(&mut all, Duration::from_secs(3));
    for w in runtime.handles() {
        let c = R::counters(&w);
        assert!(
            c.udp_datagrams_received + c.tcp_frames_received > 100,
            "{c:?}"
        );
    }
    let mut seen = [false; 4];
    for (index, _) in runtime.events() {
        seen[index] = true;
    }
    assert_eq!(seen, [true; 4]);
    runtime.shutdown();
}

/// The application sends messages into a room through a worker's handle, on a direct
/// transport's data producer, and receives them through the runtime's events on another direct
/// transport's data consumer, in order and byte-equal.
pub fn direct_data_through_the_handle<R: Runtime>() {
    let runtime: R = start(1, vec![ListenOptions::udp(LOCALHOST)]);
    let worker = runtime.least_loaded();
    let router = R::call(
        &worker,
        call::CreateRouter {
            options: RouterOptions::default(),
        },
    )
    .expect("router");
    let direct = |w: &R::Handle| {
        R::call(
            w,
            call::CreateDirectTransport {
                router,
                options: DirectTransportOptions::default(),
            },
        )
        .expect("direct transport")
    };
    let (sender, receiver) = (direct(&worker), direct(&worker));
    let producer = R::call(
        &worker,
        call::ProduceData {
            transport: sender,
            options: ProduceDataOptions::direct("bot"),
        },
    )
    .expect("data producer");
    let consumer = R::call(
        &worker,
        call::ConsumeData {
            transport: receiver,
            options: ConsumeDataOptions::new(producer),
        },
    )
    .expect("data consumer")
    .id;
    let sent: Vec<(bool, Vec<u8>)> = (0..50u8)
        .map(|i| (i % 2 == 0, vec![i; usize::from(i) * 7]))
        .collect();
    for (binary, data) in &sent {
        R::call(
            &worker,
            call::SendData {
                data_producer: producer,
                binary: *binary,
                data: data.clone(),
            },
        )
        .expect("send");
    }
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < sent.len() && start.elapsed() < Duration::from_secs(10) {
        for (_, e) in runtime.events() {
            if let Event::DataConsumerMessage {
                data_consumer,
                binary,
                data,
            } = e
            {
                assert_eq!(data_consumer, consumer);
                got.push((binary, data));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, sent);
    let refused = R::call(
        &worker,
        call::SendData {
            data_producer: producer,
            binary: true,
            data: vec![0; 262_145],
        },
    );
    assert!(matches!(refused, Err(RuntimeError::Sfu(_))), "{refused:?}");
    runtime.shutdown();
}

/// Plain transports over loopback: each gets a socket the worker opens in the configured port
/// range (the RTCP one too without rtcpMux); RTP sent from a plain UDP socket is learned by
/// comedia and forwarded, byte for byte under the consumer's header, to the address another
/// plain transport was connected to; a stranger's datagrams are dropped and counted; closing a
/// transport (or its router) closes its sockets, so their ports bind again.
pub fn plain_transports_open_and_close_their_sockets<R: Runtime>() {
    use sfu_core::ortc::{
        MediaKind, PlainTransportConnectParameters, PlainTransportOptions, RtcpParameters,
        RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
        TransportListenInfo,
    };
    use sfu_core::{ConsumeOptions, ProduceOptions};
    use std::net::UdpSocket;

    // A range no other test uses, clear of the system's ephemeral ports.
    let base = 20_000 + (std::process::id() % 400) as u16 * 20;
    let runtime = R::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(LOCALHOST)],
        sfu: SfuConfig::with_seed(17),
        rtc_port_range: Some((base, base + 9)),
    })
    .expect("runtime starts");
    let worker = runtime.least_loaded();
    let router = R::call(
        &worker,
        call::CreateRouter {
            options: RouterOptions {
                media_codecs: vec![RtpCodecCapability::opus()],
            },
        },
    )
    .expect("router");
    let wildcard =
        PlainTransportOptions::new(TransportListenInfo::udp(Ipv4Addr::UNSPECIFIED.into()));
    let refused = R::call(
        &worker,
        call::CreatePlainTransport {
            router,
            options: wildcard,
        },
    );
    assert!(
        matches!(
            refused,
            Err(RuntimeError::Sfu(sfu_core::Error::InvalidListenInfo(_)))
        ),
        "{refused:?}"
    );
    let mut comedia = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    comedia.comedia = true;
    let publisher = R::call(
        &worker,
        call::CreatePlainTransport {
            router,
            options: comedia,
        },
    )
    .expect("plain transport");
    let port = publisher.parameters.tuple.local_port;
    assert!(
        (base..=base + 9).contains(&port),
        "port {port} in the range"
    );
    let mut separate = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    separate.rtcp_mux = false;
    let receiver = R::call(
        &worker,
        call::CreatePlainTransport {
            router,
            options: separate,
        },
    )
    .expect("plain transport");
    let rtcp_port = receiver
        .parameters
        .rtcp_tuple
        .as_ref()
        .expect("rtcp tuple")
        .local_port;
    let ports = [port, receiver.parameters.tuple.local_port, rtcp_port];
    for p in ports {
        assert!((base..=base + 9).contains(&p), "port {p} in the range");
        assert!(
            UdpSocket::bind((LOCALHOST, p)).is_err(),
            "port {p} is the worker's"
        );
    }
    let producer = R::call(
        &worker,
        call::Produce {
            transport: publisher.id,
            options: ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: RtpParameters {
                    mid: None,
                    codecs: vec![RtpCodecParameters {
                        mime_type: "audio/opus".into(),
                        payload_type: 111,
                        clock_rate: 48_000,
                        channels: Some(2),
                        parameters: Default::default(),
                        rtcp_feedback: vec![],
                    }],
                    header_extensions: vec![],
                    encodings: vec![RtpEncodingParameters {
                        ssrc: Some(4242),
                        ..Default::default()
                    }],
                    rtcp: RtcpParameters::default(),
                },
                paused: false,
            },
        },
    )
    .expect("produce");
    let caps = R::call(&worker, call::RouterRtpCapabilities { router }).expect("caps");
    let consumed = R::call(
        &worker,
        call::Consume {
            transport: receiver.id,
            options: ConsumeOptions {
                producer,
                rtp_capabilities: caps,
                paused: false,
            },
        },
    )
    .expect("consume");
    let sink = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let sink_rtcp = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    R::call(
        &worker,
        call::ConnectPlainTransport {
            transport: receiver.id,
            parameters: PlainTransportConnectParameters {
                ip: Some(LOCALHOST),
                port: Some(sink.local_addr().unwrap().port()),
                rtcp_port: Some(sink_rtcp.local_addr().unwrap().port()),
                srtp_parameters: None,
            },
        },
    )
    .expect("connect");
    // ffmpeg's part: plain RTP to the publisher's port.
    let source = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let pt = consumed.parameters.rtp_parameters.codecs[0].payload_type;
    for seq in 0..50u16 {
        let mut packet = vec![0x80, 111];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
        packet.extend_from_slice(&4242u32.to_be_bytes());
        packet.extend_from_slice(&[seq as u8; 40]);
        source.send_to(&packet, (LOCALHOST, port)).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = sink.recv_from(&mut buf).expect("the packet forwarded");
        // The consumer's header (with the header extensions it negotiated), then the payload.
        let header = if buf[0] & 0x10 != 0 {
            16 + 4 * usize::from(u16::from_be_bytes([buf[14], buf[15]]))
        } else {
            12
        };
        assert_eq!(buf[1] & 0x7f, pt);
        assert_eq!(buf[8..12], ssrc.to_be_bytes());
        assert_eq!(buf[header..n], [seq as u8; 40], "payload byte for byte");
    }
    // A stranger after comedia learned the source.
    let stranger = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    stranger
        .send_to(
            &[0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x92, 1],
            (LOCALHOST, port),
        )
        .unwrap();
    let start = Instant::now();
    loop {
        let stats = R::call(
            &worker,
            call::TransportStats {
                transport: publisher.id,
            },
        )
        .unwrap();
        if stats.dropped_foreign_source == 1 {
            assert_eq!(
                stats.selected_tuple.map(|t| t.remote),
                Some(source.local_addr().unwrap())
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closing closes the sockets (a runtime may let its reader go first): their ports bind
    // again.
    let freed = |p: u16| {
        let start = Instant::now();
        while UdpSocket::bind((LOCALHOST, p)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "port {p} not freed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    R::call(
        &worker,
        call::CloseTransport {
            transport: receiver.id,
        },
    )
    .expect("close");
    for p in &ports[1..] {
        freed(*p);
    }
    assert!(
        UdpSocket::bind((LOCALHOST, port)).is_err(),
        "port {port} still open"
    );
    R::call(&worker, call::CloseRouter { router }).expect("close router");
    freed(port);
    runtime.shutdown();
}

/// Pipe to router across two workers: a room whose publisher (a plain RTP sender) is on
/// worker 0 is piped, with SRTP on the pipe, to a router on worker 1 by the shared helper
/// (each worker opens its pipe's socket); a viewer on each worker receives every packet, byte
/// for byte.
pub fn pipe_to_router_across_workers<R: Runtime>() {
    use sfu_core::ortc::{
        MediaKind, PlainTransportConnectParameters, PlainTransportOptions, RtpCodecCapability,
        TransportListenInfo,
    };
    use sfu_core::runtime::pipe::{pipe_to_router, PipeEnd};
    use sfu_core::{ConsumeOptions, ProduceOptions};
    use std::net::UdpSocket;

    let runtime = start::<R>(2, vec![ListenOptions::udp(LOCALHOST)]);
    let workers = runtime.handles();
    let options = || RouterOptions {
        media_codecs: vec![RtpCodecCapability::opus()],
    };
    let router = |w: &R::Handle| R::call(w, call::CreateRouter { options: options() }).unwrap();
    let (ra, rb) = (router(&workers[0]), router(&workers[1]));
    let mut comedia = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    comedia.comedia = true;
    let publisher = R::call(
        &workers[0],
        call::CreatePlainTransport {
            router: ra,
            options: comedia,
        },
    )
    .expect("plain transport");
    let producer = R::call(
        &workers[0],
        call::Produce {
            transport: publisher.id,
            options: ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: plain_opus(4242),
                paused: false,
            },
        },
    )
    .expect("produce");
    let (_, piped) = pipe_to_router(
        PipeEnd {
            worker: &workers[0],
            router: ra,
        },
        PipeEnd {
            worker: &workers[1],
            router: rb,
        },
        producer,
        &TransportListenInfo::udp(LOCALHOST),
        false,
        true,
    )
    .expect("pipe to router");
    // A viewer on each worker: a plain transport connected to a local socket.
    let viewer = |w: &R::Handle, router, producer| {
        let sink = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = R::call(
            w,
            call::CreatePlainTransport {
                router,
                options: PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST)),
            },
        )
        .unwrap();
        let caps = R::call(w, call::RouterRtpCapabilities { router }).unwrap();
        R::call(
            w,
            call::Consume {
                transport: t.id,
                options: ConsumeOptions {
                    producer,
                    rtp_capabilities: caps,
                    paused: false,
                },
            },
        )
        .unwrap();
        R::call(
            w,
            call::ConnectPlainTransport {
                transport: t.id,
                parameters: PlainTransportConnectParameters {
                    ip: Some(LOCALHOST),
                    port: Some(sink.local_addr().unwrap().port()),
                    rtcp_port: None,
                    srtp_parameters: None,
                },
            },
        )
        .unwrap();
        sink
    };
    let sinks = [
        viewer(&workers[0], ra, producer),
        viewer(&workers[1], rb, piped.pipe_producer),
    ];
    let source = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let port = publisher.parameters.tuple.local_port;
    for seq in 0..50u16 {
        source
            .send_to(&opus_packet(4242, seq), (LOCALHOST, port))
            .unwrap();
        for (i, sink) in sinks.iter().enumerate() {
            let mut buf = [0u8; 1500];
            // RTCP may come first; media is what is counted.
            let n = loop {
                let (n, _) = sink.recv_from(&mut buf).expect("the packet forwarded");
                if !(200..=206).contains(&buf[1]) {
                    break n;
                }
            };
            let header = if buf[0] & 0x10 != 0 {
                16 + 4 * usize::from(u16::from_be_bytes([buf[14], buf[15]]))
            } else {
                12
            };
            assert_eq!(buf[header..n], [seq as u8; 40], "viewer {i}, packet {seq}");
        }
    }
    let stats = R::call(
        &workers[1],
        call::TransportStats {
            transport: piped.remote_transport,
        },
    )
    .unwrap();
    assert_eq!(stats.srtp_profile, Some("AEAD_AES_256_GCM"), "{stats:?}");
    assert_eq!(stats.rtp_dropped, 0, "{stats:?}");
    runtime.shutdown();
}

/// Pipe to router for a data producer across two workers, over loopback: a pipe pair with
/// SCTP (each worker opens its socket), the pipe data consumer on worker 0 and the pipe data
/// producer on worker 1; the application's messages on worker 0 reach a data consumer on
/// worker 1 byte-equal, typed and in order, empty ones included.
pub fn pipe_data_to_router_across_workers<R: Runtime>() {
    use sfu_core::ortc::{PipeTransportOptions, TransportListenInfo};
    use sfu_core::runtime::pipe::{connect_pipe_pair_with, pipe_data_producer, PipeEnd};
    use sfu_core::{ConsumeDataOptions, DirectTransportOptions, ProduceDataOptions, SctpState};

    let runtime = start::<R>(2, vec![ListenOptions::udp(LOCALHOST)]);
    let workers = runtime.handles();
    let router = |w: &R::Handle| {
        R::call(
            w,
            call::CreateRouter {
                options: RouterOptions::default(),
            },
        )
        .unwrap()
    };
    let (ra, rb) = (router(&workers[0]), router(&workers[1]));
    let direct = |w: &R::Handle, router| {
        R::call(
            w,
            call::CreateDirectTransport {
                router,
                options: DirectTransportOptions::default(),
            },
        )
        .expect("direct transport")
    };
    let (sender, receiver) = (direct(&workers[0], ra), direct(&workers[1], rb));
    let producer = R::call(
        &workers[0],
        call::ProduceData {
            transport: sender,
            options: ProduceDataOptions::direct("bot"),
        },
    )
    .expect("data producer");
    let options = PipeTransportOptions {
        enable_sctp: true,
        ..PipeTransportOptions::new(TransportListenInfo::udp(LOCALHOST))
    };
    let pair = connect_pipe_pair_with(
        PipeEnd {
            worker: &workers[0],
            router: ra,
        },
        PipeEnd {
            worker: &workers[1],
            router: rb,
        },
        &options,
    )
    .expect("pipe pair");
    assert!(pair.local.parameters.sctp_parameters.is_some());
    let piped = pipe_data_producer(&workers[0], &workers[1], &pair, producer).expect("piped");
    let consumer = R::call(
        &workers[1],
        call::ConsumeData {
            transport: receiver,
            options: ConsumeDataOptions::new(piped.pipe_data_producer),
        },
    )
    .expect("data consumer")
    .id;
    let start = Instant::now();
    let up = |w: &R::Handle, transport| {
        R::call(w, call::TransportStats { transport })
            .unwrap()
            .sctp_state
            == Some(SctpState::Connected)
    };
    while !(up(&workers[0], pair.local.id) && up(&workers[1], pair.remote.id)) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pipe SCTP not up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent: Vec<(bool, Vec<u8>)> = (0..60u8)
        .map(|i| (i % 2 == 0, vec![i; usize::from(i) * 101]))
        .collect();
    for (binary, data) in &sent {
        R::call(
            &workers[0],
            call::SendData {
                data_producer: producer,
                binary: *binary,
                data: data.clone(),
            },
        )
        .expect("send");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() && start.elapsed() < Duration::from_secs(20) {
        for (_, e) in runtime.events() {
            if let Event::DataConsumerMessage {
                data_consumer,
                binary,
                data,
            } = e
            {
                assert_eq!(data_consumer, consumer);
                got.push((binary, data));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(got, sent);
    runtime.shutdown();
}

/// Scores travel through the runtime's event channel: a producer on a direct transport that
/// the application feeds 50 packets a second reports `score` 10 through the handle's events,
/// as its stats say; trace events are enabled through the typed call and the plain request,
/// and a type the producer cannot trace is refused with the Sfu's typed error.
pub fn scores_and_traces_through_the_handle<R: Runtime>() {
    use sfu_core::ortc::{MediaKind, RtpCodecCapability};
    use sfu_core::{ProduceOptions, TraceEventType};

    let runtime: R = start(1, vec![ListenOptions::udp(LOCALHOST)]);
    let worker = runtime.least_loaded();
    let router = R::call(
        &worker,
        call::CreateRouter {
            options: RouterOptions {
                media_codecs: vec![RtpCodecCapability::opus()],
            },
        },
    )
    .expect("router");
    let transport = R::call(
        &worker,
        call::CreateDirectTransport {
            router,
            options: DirectTransportOptions::default(),
        },
    )
    .expect("direct transport");
    let producer = R::call(
        &worker,
        call::Produce {
            transport,
            options: ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: plain_opus(4321),
                paused: false,
            },
        },
    )
    .expect("producer");
    let refused = R::call(
        &worker,
        call::EnableProducerTraceEvent {
            producer,
            types: vec![TraceEventType::Bwe],
        },
    );
    assert!(
        matches!(
            refused,
            Err(RuntimeError::Sfu(
                sfu_core::Error::UnsupportedTraceEventType(TraceEventType::Bwe)
            ))
        ),
        "{refused:?}"
    );
    let start = Instant::now();
    let mut score = None;
    let mut seq = 0u16;
    while score.is_none() && start.elapsed() < Duration::from_secs(10) {
        R::call(
            &worker,
            call::SendRtp {
                producer,
                packet: opus_packet(4321, seq),
            },
        )
        .expect("send rtp");
        seq += 1;
        for (_, e) in runtime.events() {
            if let Event::ProducerScore {
                producer: p,
                scores,
            } = e
            {
                assert_eq!(p, producer);
                score = Some(scores);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let score = score.expect("a score event within 10 s");
    assert_eq!(score.len(), 1);
    assert_eq!((score[0].ssrc, score[0].score), (4321, 10), "{score:?}");
    assert_eq!(
        R::call(&worker, call::ProducerStats { producer })
            .expect("stats")
            .score,
        score
    );
    // The plain request form reaches the same call.
    let reply = R::call(
        &worker,
        Request::EnableProducerTraceEvent {
            producer,
            types: vec![TraceEventType::Keyframe, TraceEventType::Pli],
        },
    );
    assert_eq!(reply.map_err(|e| e.to_string()), Ok(Reply::Done));
    runtime.shutdown();
}

/// A plain sender's Opus producer parameters on `ssrc` (payload type 111, no mid).
pub fn plain_opus(ssrc: u32) -> sfu_core::ortc::RtpParameters {
    use sfu_core::ortc::{RtcpParameters, RtpCodecParameters, RtpEncodingParameters};
    sfu_core::ortc::RtpParameters {
        mid: None,
        codecs: vec![RtpCodecParameters {
            mime_type: "audio/opus".into(),
            payload_type: 111,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: Default::default(),
            rtcp_feedback: vec![],
        }],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: RtcpParameters::default(),
    }
}

/// Plain RTP packet `seq` of an Opus stream on `ssrc`: 40 bytes of payload, each `seq`.
pub fn opus_packet(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80, 111];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[seq as u8; 40]);
    packet
}

/// Expands the suite into `#[test]` functions for the runtime marker `$runtime` (a type that
/// implements [`Runtime`](crate::runtime_suite::Runtime)).
#[macro_export]
macro_rules! runtime_suite {
    ($runtime:ty) => {
        $crate::runtime_suite!(@tests $runtime;
            calls_typed_and_plain,
            wildcard_binds_announce_a_concrete_address,
            tcp_streams_end_cleanly_or_malformed,
            ice_tcp_connections_without_a_binding_time_out,
            udp_datagrams_are_counted,
            two_peers_over_udp_ipv4,
            two_peers_over_udp_ipv6,
            two_peers_over_ice_tcp,
            two_peers_through_a_wildcard_socket,
            four_workers_with_rooms_spread_across_them,
            direct_data_through_the_handle,
            plain_transports_open_and_close_their_sockets,
            pipe_to_router_across_workers,
            pipe_data_to_router_across_workers,
            scores_and_traces_through_the_handle,
        );
    };
    (@tests $runtime:ty; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::runtime_suite::$name::<$runtime>();
            }
        )*

        #[test]
        fn accept_failures_back_off() {
            $crate::runtime_suite::accept_failures_back_off::<$runtime>("accept_failures_back_off");
        }
    };
}
