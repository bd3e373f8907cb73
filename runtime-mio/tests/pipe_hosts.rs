//! Pipe to router across hosts: two runtimes in separate processes on loopback. This test
//! process is host A (a plain RTP publisher's room); it runs itself again as host B
//! (`host_b`, which does nothing unless the parent asks), and the two exchange what the
//! application would signal between hosts, as JSON lines: each pipe transport's connect
//! parameters, then the pipe consumer's parameters, which host B produces with. A viewer on
//! host B receives every packet the publisher sent to host A, byte for byte, through an SRTP
//! pipe.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

use std::io::{BufRead, BufReader, Lines, Write};
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use sfu_core::ortc::{
    ConsumerParameters, DataConsumerParameters, MediaKind, PipeTransportConnectParameters,
    PipeTransportOptions, PlainTransportConnectParameters, PlainTransportOptions,
    RtpCodecCapability, TransportListenInfo,
};
use sfu_core::runtime::{call, ListenOptions, RuntimeConfig};
use sfu_core::{
    ConsumeDataOptions, ConsumeOptions, DirectTransportOptions, Event, PipeTransportCreated,
    ProduceDataOptions, ProduceOptions, RouterOptions, SctpState, SfuConfig,
};
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

/// Host A's pipe transport, made with `options` and connected to the pipe of host B, which
/// runs `test` in a process of its own.
fn pipe_to_host_b(
    worker: &WorkerHandle,
    router: sfu_core::RouterId,
    options: PipeTransportOptions,
    test: &str,
) -> (PipeTransportCreated, HostB) {
    let pipe = worker
        .call(call::CreatePipeTransport { router, options })
        .expect("pipe transport");
    let mut b = HostB::start(test);
    let peer: PipeTransportConnectParameters = serde_json::from_str(&b.hear()).unwrap();
    worker
        .call(call::ConnectPipeTransport {
            transport: pipe.id,
            parameters: peer,
        })
        .expect("connect");
    (pipe, b)
}

/// Writes one line for host A (host B's side of the signaling).
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "PIPE {line}").unwrap();
    out.flush().unwrap();
}

/// Host B as host A sees it: this test binary run again as `test` in a process of its own,
/// spoken to through its standard input and output.
struct HostB {
    child: Child,
    to_b: Option<ChildStdin>,
    from_b: Lines<BufReader<ChildStdout>>,
}

impl HostB {
    fn start(test: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(HOST_B, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("host B starts");
        let to_b = child.stdin.take();
        let from_b = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            to_b,
            from_b,
        }
    }

    /// Host B's next line.
    fn hear(&mut self) -> String {
        loop {
            let line = self.from_b.next().expect("host B speaks").unwrap();
            // The test harness may have begun the line ("test host_b ... ").
            if let Some(at) = line.find("PIPE ") {
                return line[at + 5..].to_owned();
            }
        }
    }

    fn tell(&mut self, line: String) {
        let to_b = self.to_b.as_mut().expect("host B listens");
        writeln!(to_b, "{line}").unwrap();
        to_b.flush().unwrap();
    }

    /// Closes host B's input and waits for it: it must have passed.
    fn finish(mut self) {
        drop(self.to_b.take());
        assert!(self.child.wait().unwrap().success(), "host B passed");
    }
}

/// Host B's pipe transport: made with `options`, its connect parameters told to host A, and
/// connected to host A's pipe with the parameters `next` reads.
fn connect_to_host_a(
    worker: &WorkerHandle,
    router: sfu_core::RouterId,
    options: PipeTransportOptions,
    next: &mut impl FnMut() -> String,
) -> PipeTransportCreated {
    let pipe = worker
        .call(call::CreatePipeTransport { router, options })
        .expect("pipe transport");
    say(serde_json::to_string(&pipe.connect_parameters().unwrap()).unwrap());
    let peer: PipeTransportConnectParameters = serde_json::from_str(&next()).unwrap();
    worker
        .call(call::ConnectPipeTransport {
            transport: pipe.id,
            parameters: peer,
        })
        .expect("connect");
    pipe
}

/// Host B's part, run by the parent in a process of its own.
#[test]
fn host_b() {
    if std::env::var_os(HOST_B).is_none() {
        return;
    }
    let (runtime, worker, router) = runtime();
    let mut lines = std::io::stdin().lock().lines();
    let mut next = || lines.next().expect("a line from host A").unwrap();
    let pipe = connect_to_host_a(&worker, router, pipe_options(), &mut next);
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
    let (pipe, mut b) = pipe_to_host_b(&worker, router, pipe_options(), "host_b");
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
    b.tell(serde_json::to_string(&pipe.connect_parameters().unwrap()).unwrap());
    b.tell(serde_json::to_string(&consumed.parameters).unwrap());
    let sink = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    b.tell(sink.local_addr().unwrap().port().to_string());
    assert_eq!(b.hear(), "ready");

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
    b.tell("done".into());
    let (dropped, profile): (u64, Option<String>) = serde_json::from_str(&b.hear()).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(profile.as_deref(), Some("AEAD_AES_256_GCM"));
    b.finish();
    runtime.shutdown();
}

/// Messages host A's data producer sends at once: text and binary, 0 to 10 KB, 195 KB in
/// all (within the pipe data consumer's 256 KiB send buffer).
fn messages() -> Vec<(bool, Vec<u8>)> {
    (0..40u8)
        .map(|i| (i % 2 == 1, vec![i; usize::from(i) * 250]))
        .collect()
}

fn sctp_pipe_options() -> PipeTransportOptions {
    PipeTransportOptions {
        enable_sctp: true,
        ..PipeTransportOptions::new(TransportListenInfo::udp(LOCALHOST))
    }
}

/// Waits until `transport`'s SCTP association is up.
fn sctp_up(worker: &WorkerHandle, transport: sfu_core::TransportId) {
    let start = Instant::now();
    while worker
        .call(call::TransportStats { transport })
        .unwrap()
        .sctp_state
        != Some(SctpState::Connected)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pipe SCTP not up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Host B's part of the data pipe, run by the parent in a process of its own.
#[test]
fn host_b_data() {
    if std::env::var_os(HOST_B).is_none() {
        return;
    }
    let (runtime, worker, router) = runtime();
    let mut lines = std::io::stdin().lock().lines();
    let mut next = || lines.next().expect("a line from host A").unwrap();
    let pipe = connect_to_host_a(&worker, router, sctp_pipe_options(), &mut next);
    // What the pipe data consumer on host A says, produced with on this side.
    let consumer: DataConsumerParameters = serde_json::from_str(&next()).unwrap();
    let piped = worker
        .call(call::ProduceData {
            transport: pipe.id,
            options: ProduceDataOptions {
                sctp_stream_parameters: consumer.sctp_stream_parameters,
                label: consumer.label,
                protocol: consumer.protocol,
                paused: false,
            },
        })
        .expect("pipe data producer");
    let viewer = worker
        .call(call::CreateDirectTransport {
            router,
            options: DirectTransportOptions::default(),
        })
        .unwrap();
    let data_consumer = worker
        .call(call::ConsumeData {
            transport: viewer,
            options: ConsumeDataOptions::new(piped),
        })
        .unwrap()
        .id;
    sctp_up(&worker, pipe.id);
    say("ready".into());
    let want = messages().len();
    let mut got: Vec<(bool, Vec<u8>)> = Vec::new();
    let start = Instant::now();
    while got.len() < want && start.elapsed() < Duration::from_secs(20) {
        while let Ok((_, e)) = runtime.events().try_recv() {
            if let Event::DataConsumerMessage {
                data_consumer: id,
                binary,
                data,
            } = e
            {
                assert_eq!(id, data_consumer);
                got.push((binary, data));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    say(serde_json::to_string(&got).unwrap());
    let _ = next();
    runtime.shutdown();
}

/// A data producer on host A reaches a data consumer on host B through an SCTP pipe between
/// the two processes: every message, in order, with its type.
#[test]
fn a_data_producer_piped_to_another_process() {
    let (runtime, worker, router) = runtime();
    let sender = worker
        .call(call::CreateDirectTransport {
            router,
            options: DirectTransportOptions::default(),
        })
        .unwrap();
    let producer = worker
        .call(call::ProduceData {
            transport: sender,
            options: ProduceDataOptions::direct("chat"),
        })
        .unwrap();
    let (pipe, mut b) = pipe_to_host_b(&worker, router, sctp_pipe_options(), "host_b_data");
    let consumed = worker
        .call(call::ConsumeData {
            transport: pipe.id,
            options: ConsumeDataOptions::new(producer),
        })
        .expect("pipe data consumer");
    b.tell(serde_json::to_string(&pipe.connect_parameters().unwrap()).unwrap());
    b.tell(serde_json::to_string(&consumed.parameters).unwrap());
    sctp_up(&worker, pipe.id);
    assert_eq!(b.hear(), "ready");
    let sent = messages();
    for (binary, data) in &sent {
        worker
            .call(call::SendData {
                data_producer: producer,
                binary: *binary,
                data: data.clone(),
            })
            .expect("send");
    }
    let got: Vec<(bool, Vec<u8>)> = serde_json::from_str(&b.hear()).unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "messages changed on the way");
    b.tell("done".into());
    b.finish();
    runtime.shutdown();
}
