//! Pipe to router across hosts: two runtimes in separate processes on loopback. This test
//! process is host A (a plain RTP publisher's room); it runs itself again as host B
//! (`host_b`, which does nothing unless the parent asks), and the two exchange what the
//! application would signal between hosts, as JSON lines: each pipe transport's connect
//! parameters, then the pipe consumer's parameters, which host B produces with. A viewer on
//! host B receives every packet the publisher sent to host A, byte for byte, through an SRTP
//! pipe.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use sfu_core::ortc::{
    ConsumerParameters, MediaKind, PipeTransportConnectParameters, PipeTransportOptions,
    PlainTransportConnectParameters, PlainTransportOptions, RtpCodecCapability,
    TransportListenInfo,
};
use sfu_core::runtime::{call, ListenOptions, RuntimeConfig};
use sfu_core::{ConsumeOptions, ProduceOptions, RouterOptions, SfuConfig};
use sfu_runtime_mio::{Runtime, WorkerHandle};
use sfu_tests::runtime_suite::{opus_packet, plain_opus};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Set in host B's environment.
const HOST_B: &str = "SFU_PIPE_HOST_B";

fn runtime() -> (Runtime, WorkerHandle, sfu_core::RouterId) {
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(LOCALHOST)],
        sfu: SfuConfig::with_seed(3),
        rtc_port_range: None,
    })
    .expect("runtime starts");
    let worker = runtime.workers()[0].clone();
    let router = worker
        .call(call::CreateRouter {
            options: RouterOptions {
                media_codecs: vec![RtpCodecCapability::opus()],
            },
        })
        .expect("router");
    (runtime, worker, router)
}

fn pipe_options() -> PipeTransportOptions {
    PipeTransportOptions {
        enable_srtp: true,
        ..PipeTransportOptions::new(TransportListenInfo::udp(LOCALHOST))
    }
}

/// Host B's part, run by the parent in a process of its own.
#[test]
fn host_b() {
    if std::env::var_os(HOST_B).is_none() {
        return;
    }
    let (runtime, worker, router) = runtime();
    let pipe = worker
        .call(call::CreatePipeTransport {
            router,
            options: pipe_options(),
        })
        .expect("pipe transport");
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "PIPE {line}").unwrap();
        out.flush().unwrap();
    };
    say(serde_json::to_string(&pipe.connect_parameters().unwrap()).unwrap());
    let mut lines = std::io::stdin().lock().lines();
    let mut next = || lines.next().expect("a line from host A").unwrap();
    let peer: PipeTransportConnectParameters = serde_json::from_str(&next()).unwrap();
    worker
        .call(call::ConnectPipeTransport {
            transport: pipe.id,
            parameters: peer,
        })
        .expect("connect");
    let consumer: ConsumerParameters = serde_json::from_str(&next()).unwrap();
    let producer = worker
        .call(call::Produce {
            transport: pipe.id,
            options: ProduceOptions {
                kind: consumer.kind,
                rtp_parameters: consumer.rtp_parameters,
                paused: consumer.producer_paused,
            },
        })
        .expect("pipe producer");
    let sink_port: u16 = next().parse().unwrap();
    let viewer = worker
        .call(call::CreatePlainTransport {
            router,
            options: PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST)),
        })
        .unwrap();
    let caps = worker.call(call::RouterRtpCapabilities { router }).unwrap();
    worker
        .call(call::Consume {
            transport: viewer.id,
            options: ConsumeOptions {
                producer,
                rtp_capabilities: caps,
                paused: false,
            },
        })
        .unwrap();
    worker
        .call(call::ConnectPlainTransport {
            transport: viewer.id,
            parameters: PlainTransportConnectParameters {
                ip: Some(LOCALHOST),
                port: Some(sink_port),
                rtcp_port: None,
                srtp_parameters: None,
            },
        })
        .unwrap();
    say("ready".into());
    // Until host A is done.
    let _ = next();
    let stats = worker
        .call(call::TransportStats { transport: pipe.id })
        .unwrap();
    say(serde_json::to_string(&(stats.rtp_dropped, stats.srtp_profile)).unwrap());
    runtime.shutdown();
}

#[test]
fn a_room_piped_to_another_process() {
    let (runtime, worker, router) = runtime();
    let mut comedia = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    comedia.comedia = true;
    let publisher = worker
        .call(call::CreatePlainTransport {
            router,
            options: comedia,
        })
        .unwrap();
    let producer = worker
        .call(call::Produce {
            transport: publisher.id,
            options: ProduceOptions {
                kind: MediaKind::Audio,
                rtp_parameters: plain_opus(4242),
                paused: false,
            },
        })
        .unwrap();
    let pipe = worker
        .call(call::CreatePipeTransport {
            router,
            options: pipe_options(),
        })
        .expect("pipe transport");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["host_b", "--exact", "--nocapture", "--test-threads=1"])
        .env(HOST_B, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("host B starts");
    let mut to_b = child.stdin.take().unwrap();
    let mut from_b = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut hear = || loop {
        let line = from_b.next().expect("host B speaks").unwrap();
        // The test harness may have begun the line ("test host_b ... ").
        if let Some(at) = line.find("PIPE ") {
            return line[at + 5..].to_owned();
        }
    };
    let mut tell = |line: String| {
        writeln!(to_b, "{line}").unwrap();
        to_b.flush().unwrap();
    };

    let peer: PipeTransportConnectParameters = serde_json::from_str(&hear()).unwrap();
    worker
        .call(call::ConnectPipeTransport {
            transport: pipe.id,
            parameters: peer,
        })
        .expect("connect");
    let consumed = worker
        .call(call::Consume {
            transport: pipe.id,
            options: ConsumeOptions {
                producer,
                rtp_capabilities: Default::default(),
                paused: false,
            },
        })
        .expect("pipe consumer");
    tell(serde_json::to_string(&pipe.connect_parameters().unwrap()).unwrap());
    tell(serde_json::to_string(&consumed.parameters).unwrap());
    let sink = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tell(sink.local_addr().unwrap().port().to_string());
    assert_eq!(hear(), "ready");

    let source = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let port = publisher.parameters.tuple.local_port;
    for seq in 0..50u16 {
        source
            .send_to(&opus_packet(4242, seq), (LOCALHOST, port))
            .unwrap();
        let mut buf = [0u8; 1500];
        let n = loop {
            let (n, _) = sink.recv_from(&mut buf).expect("the packet crossed");
            if !(200..=206).contains(&buf[1]) {
                break n;
            }
        };
        let header = if buf[0] & 0x10 != 0 {
            16 + 4 * usize::from(u16::from_be_bytes([buf[14], buf[15]]))
        } else {
            12
        };
        assert_eq!(buf[header..n], [seq as u8; 40], "packet {seq}");
    }
    tell("done".into());
    let (dropped, profile): (u64, Option<String>) = serde_json::from_str(&hear()).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(profile.as_deref(), Some("AEAD_AES_256_GCM"));
    drop(to_b);
    assert!(child.wait().unwrap().success(), "host B passed");
    runtime.shutdown();
}
