//! Real ffmpeg through plain transports on the mio runtime, over loopback: ffmpeg publishes
//! VP8 and Opus RTP (plain, and SRTP with AES_CM_128_HMAC_SHA1_80) into comedia plain
//! transports; a WebRTC peer receives it, and ffmpeg records consumers on plain transports
//! from an SDP written from their parameters, which ffprobe then counts; consumers that join in
//! the middle of a real encoder's group of pictures start at its next key frame.
//!
//! Needs `ffmpeg` and `ffprobe` (Debian's `ffmpeg` package; `bash tests/run` installs it).
//! Without them each test says so on stderr and passes, unless `CI` is set, when it fails.
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sfu_core::ortc::{
    MediaKind, ParameterValue, PlainTransportConnectParameters, PlainTransportOptions,
    RtcpParameters, RtpCodecCapability, RtpCodecParameters, RtpEncodingParameters, RtpParameters,
    SrtpCryptoSuite, SrtpParameters, TransportListenInfo,
};
use sfu_core::runtime::{ListenOptions, RuntimeConfig};
use sfu_core::{ConsumeOptions, Consumed, Event, PlainTransportCreated, ProduceOptions};
use sfu_core::{ProducerId, RouterId, RouterOptions, SfuConfig, TransportId};
use sfu_runtime_mio::{Runtime, WorkerHandle};
use sfu_tests::runtime_suite::peers::{self, Path as PeerPath};

mod common;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const VIDEO_SSRC: u32 = 22_222_222;
const AUDIO_SSRC: u32 = 11_111_111;
const VP8_PT: u8 = 96;
const OPUS_PT: u8 = 111;
/// Seconds of media ffmpeg sends.
const SECONDS: u32 = 4;
/// The key ffmpeg sends SRTP with: 16 bytes of master key, 14 of salt.
const FFMPEG_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e";

/// Whether ffmpeg and ffprobe are here; without them a test is skipped (loudly), or fails in
/// CI.
fn have_ffmpeg(test: &str) -> bool {
    let found = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ffmpeg and ffprobe are required in CI (apt-get install ffmpeg)"
        );
        eprintln!("SKIPPED {test}: ffmpeg or ffprobe is not installed (apt-get install ffmpeg)");
    }
    found
}

fn start() -> (Runtime, WorkerHandle) {
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        listen: vec![ListenOptions::udp(LOCALHOST)],
        sfu: SfuConfig::with_seed(21),
        rtc_port_range: None,
    })
    .expect("runtime");
    let worker = runtime.least_loaded();
    (runtime, worker)
}

/// A comedia plain transport (SRTP with `srtp`) for one of ffmpeg's streams, and its producer.
fn ffmpeg_input(
    worker: &WorkerHandle,
    router: RouterId,
    kind: MediaKind,
    srtp: bool,
) -> (PlainTransportCreated, ProducerId) {
    // As mediasoup's ffmpeg examples do: ffmpeg sends RTCP from a port of its own.
    let mut options = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    options.comedia = true;
    options.rtcp_mux = false;
    options.enable_srtp = srtp;
    let created = worker
        .create_plain_transport(router, options)
        .expect("plain transport");
    if srtp {
        let parameters = PlainTransportConnectParameters {
            srtp_parameters: Some(SrtpParameters {
                crypto_suite: SrtpCryptoSuite::AesCm128HmacSha1_80,
                key_base64: FFMPEG_KEY.into(),
            }),
            ..Default::default()
        };
        worker
            .connect_plain_transport(created.id, parameters)
            .expect("connect");
    }
    let (mime, pt, clock_rate, channels, ssrc) = match kind {
        MediaKind::Video => ("video/VP8", VP8_PT, 90_000, None, VIDEO_SSRC),
        MediaKind::Audio => ("audio/opus", OPUS_PT, 48_000, Some(2), AUDIO_SSRC),
    };
    let codec = RtpCodecParameters {
        mime_type: mime.into(),
        payload_type: pt,
        clock_rate,
        channels,
        parameters: Default::default(),
        rtcp_feedback: vec![],
    };
    let producer = produce_on(worker, created.id, kind, codec, ssrc);
    (created, producer)
}

/// A producer of `codec` on `ssrc` (no mid: ffmpeg's streams are told apart by ssrc).
fn produce_on(
    worker: &WorkerHandle,
    transport: TransportId,
    kind: MediaKind,
    codec: RtpCodecParameters,
    ssrc: u32,
) -> ProducerId {
    let rtp_parameters = RtpParameters {
        mid: None,
        codecs: vec![codec],
        header_extensions: vec![],
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        }],
        rtcp: RtcpParameters {
            cname: Some("ffmpeg".into()),
            ..Default::default()
        },
    };
    worker
        .produce(
            transport,
            ProduceOptions {
                kind,
                rtp_parameters,
                paused: false,
            },
        )
        .expect("produce")
}

/// ffmpeg sending a test pattern (VP8, a key frame a second) and a tone (Opus) for
/// [`SECONDS`], paced in real time, to the two transports (SRTP with `srtp`).
fn ffmpeg_send(video: &PlainTransportCreated, audio: &PlainTransportCreated, srtp: bool) -> Child {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"]);
    let seconds = SECONDS.to_string();
    cmd.args([
        "-t",
        &seconds,
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=30",
    ]);
    cmd.args([
        "-t",
        &seconds,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ]);
    let scheme = if srtp { "srtp" } else { "rtp" };
    let srtp_args = [
        "-srtp_out_suite",
        "AES_CM_128_HMAC_SHA1_80",
        "-srtp_out_params",
        FFMPEG_KEY,
    ];
    for (map, t, codec, ssrc, pt) in [
        ("0:v", video, "video", VIDEO_SSRC, VP8_PT),
        ("1:a", audio, "audio", AUDIO_SSRC, OPUS_PT),
    ] {
        let port = t.parameters.tuple.local_port;
        let rtcp = t
            .parameters
            .rtcp_tuple
            .as_ref()
            .map_or(port, |r| r.local_port);
        cmd.args(["-map", map]);
        if codec == "video" {
            cmd.args(["-c:v", "libvpx", "-deadline", "realtime", "-g", "30"]);
            cmd.args(["-b:v", "300k", "-auto-alt-ref", "0"]);
        } else {
            cmd.args(["-c:a", "libopus", "-ac", "2", "-b:a", "64k"]);
        }
        cmd.args(["-ssrc", &ssrc.to_string(), "-payload_type", &pt.to_string()]);
        if srtp {
            cmd.args(srtp_args);
        }
        cmd.args(["-f", "rtp"]);
        cmd.arg(format!(
            "{scheme}://127.0.0.1:{port}?rtcpport={rtcp}&pkt_size=1200"
        ));
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg starts")
}

/// Waits for `child` to end (killing it after `limit`), doing `work` meanwhile.
fn wait_with(child: &mut Child, limit: Duration, mut work: impl FnMut()) -> bool {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        work();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn ffmpeg_publishes_through_comedia_to_a_webrtc_consumer() {
    if !have_ffmpeg("ffmpeg_publishes_through_comedia_to_a_webrtc_consumer") {
        return;
    }
    let _serial = peers::exclusive();
    let (runtime, worker) = start();
    let (router, caps) = peers::room::<common::Mio>(&worker);
    let (video_in, video) = ffmpeg_input(&worker, router, MediaKind::Video, false);
    let (audio_in, audio) = ffmpeg_input(&worker, router, MediaKind::Audio, false);
    let mut peer = peers::join::<common::Mio>(&worker, router, &caps, PeerPath::UdpV4, 1);
    let mut consumers = Vec::new();
    for producer in [video, audio] {
        let consumed = worker
            .consume(
                peer.client.id,
                ConsumeOptions {
                    producer,
                    rtp_capabilities: caps.clone(),
                    paused: false,
                },
            )
            .expect("consume");
        peer.client.accept_consumer(&consumed.parameters);
        consumers.push(consumed);
    }
    let mut peers = [peer];
    peers::connect_all(&mut peers, Duration::from_secs(5));
    let mut ffmpeg = ffmpeg_send(&video_in, &audio_in, false);
    let limit = Duration::from_secs(u64::from(SECONDS) + 10);
    let ok = wait_with(&mut ffmpeg, limit, || {
        peers::run_for(&mut peers, Duration::from_millis(5))
    });
    assert!(ok, "ffmpeg failed");
    peers::run_for(&mut peers, Duration::from_millis(300));
    let received = |c: &Consumed| {
        let ssrc = c.parameters.rtp_parameters.encodings[0].ssrc.unwrap();
        let pt = c.parameters.rtp_parameters.codecs[0].payload_type;
        let packets: Vec<_> = peers[0]
            .client
            .received
            .iter()
            .filter(|r| r.ssrc == ssrc)
            .collect();
        assert!(packets.iter().all(|r| r.payload_type == pt));
        packets
    };
    // Video: VP8 frames (marker bits end them) from the first key frame on; ffmpeg makes 30
    // a second and a key frame every 30.
    let video_packets = received(&consumers[0]);
    let frames = video_packets.iter().filter(|r| r.marker).count();
    assert!(
        frames as u32 >= 30 * (SECONDS - 2),
        "{frames} video frames reached the WebRTC consumer"
    );
    // VP8 payload descriptor (RFC 7741): the first packet starts a partition (S bit) of a key
    // frame (P bit clear in the VP8 header).
    let first = &video_packets[0].payload;
    let descriptor = 1 + usize::from(first[0] & 0x80 != 0) * {
        let x = first[1];
        1 + usize::from(x & 0x80 != 0) * (1 + usize::from(first[2] & 0x80 != 0))
            + usize::from(x & 0x40 != 0)
            + usize::from(x & 0x30 != 0)
    };
    assert!(first[0] & 0x10 != 0, "starts a VP8 partition");
    assert_eq!(
        first[descriptor] & 1,
        0,
        "the first frame forwarded is a key frame"
    );
    // Audio: a 20 ms Opus packet each.
    let audio_packets = received(&consumers[1]).len() as u32;
    assert!(
        audio_packets >= 50 * (SECONDS - 1),
        "{audio_packets} audio packets reached the WebRTC consumer"
    );
    // comedia learned ffmpeg's address, once per transport.
    let tuples: Vec<_> = runtime
        .events()
        .try_iter()
        .filter(|(_, e)| matches!(e, Event::Tuple { .. }))
        .collect();
    assert_eq!(tuples.len(), 2, "{tuples:?}");
    for t in [&video_in, &audio_in] {
        let stats = worker.transport_stats(t.id).unwrap();
        assert_eq!(stats.rtp_dropped, 0, "{stats:?}");
    }
    runtime.shutdown();
}

/// Two UDP ports `p` and `p + 1` free on loopback, for an ffmpeg RTP input (RTP and RTCP).
fn free_port_pair() -> u16 {
    loop {
        let probe = UdpSocket::bind((LOCALHOST, 0)).unwrap();
        let port = probe.local_addr().unwrap().port();
        if port % 2 == 0 && port < 65_000 && UdpSocket::bind((LOCALHOST, port + 1)).is_ok() {
            return port;
        }
    }
}

/// The SDP ffmpeg records from: one m-line per consumer, from its RTP parameters (payload
/// type, codec, clock rate, channels), with its SRTP key when the transport has one.
fn sdp(streams: &[(u16, &Consumed, Option<&SrtpParameters>)]) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=sfu consumer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n",
    );
    for (port, consumed, srtp) in streams {
        let params = &consumed.parameters.rtp_parameters;
        let codec = &params.codecs[0];
        let (kind, name) = codec.mime_type.split_once('/').unwrap();
        let profile = if srtp.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        sdp += &format!("m={kind} {port} {profile} {}\r\n", codec.payload_type);
        let channels = codec.channels.map(|c| format!("/{c}")).unwrap_or_default();
        sdp += &format!(
            "a=rtpmap:{} {name}/{}{channels}\r\n",
            codec.payload_type, codec.clock_rate
        );
        if !codec.parameters.is_empty() {
            let fmtp: Vec<String> = codec
                .parameters
                .iter()
                .map(|(k, v)| format!("{k}={}", parameter_text(v)))
                .collect();
            sdp += &format!("a=fmtp:{} {}\r\n", codec.payload_type, fmtp.join(";"));
        }
        sdp += "a=rtcp-mux\r\na=recvonly\r\n";
        if let Some(srtp) = srtp {
            let suite = srtp.crypto_suite.profile().name();
            sdp += &format!("a=crypto:1 {suite} inline:{}\r\n", srtp.key_base64);
        }
    }
    sdp
}

fn parameter_text(v: &ParameterValue) -> String {
    match v {
        ParameterValue::Number(n) => n.to_string(),
        ParameterValue::Float(f) => f.to_string(),
        ParameterValue::String(s) => s.clone(),
    }
}

/// ffprobe's count of frames (video) or packets (audio) of each stream of `file`:
/// (codec name, count).
fn probe(file: &Path) -> Vec<(String, u64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-count_packets"])
        .args([
            "-show_entries",
            "stream=codec_name,codec_type,nb_read_frames,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            // codec_name, codec_type, nb_read_frames, nb_read_packets
            let count = if f[1] == "video" { f[2] } else { f[3] };
            (f[0].to_string(), count.trim().parse().unwrap_or(0))
        })
        .collect()
}

/// ffmpeg publishes into comedia plain transports; consumers on two plain transports (one per
/// stream) are connected to ffmpeg recording from an SDP written from their parameters;
/// ffprobe counts what it recorded.
fn record_through_plain_transports(test: &str, srtp: bool) {
    if !have_ffmpeg(test) {
        return;
    }
    let _serial = peers::exclusive();
    let (runtime, worker) = start();
    let (router, caps) = peers::room::<common::Mio>(&worker);
    let (video_in, video) = ffmpeg_input(&worker, router, MediaKind::Video, srtp);
    let (audio_in, audio) = ffmpeg_input(&worker, router, MediaKind::Audio, srtp);
    let dir = std::env::temp_dir().join(format!("sfu-ffmpeg-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut outputs = Vec::new();
    for producer in [video, audio] {
        let mut options = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
        options.enable_srtp = srtp;
        let out = worker
            .create_plain_transport(router, options)
            .expect("plain transport");
        let consumed = worker
            .consume(
                out.id,
                ConsumeOptions {
                    producer,
                    rtp_capabilities: caps.clone(),
                    paused: false,
                },
            )
            .expect("consume");
        outputs.push((out, consumed, free_port_pair()));
    }
    let streams: Vec<_> = outputs
        .iter()
        .map(|(out, consumed, port)| (*port, consumed, out.parameters.srtp_parameters.as_ref()))
        .collect();
    let sdp_path = dir.join("consumer.sdp");
    std::fs::write(&sdp_path, sdp(&streams)).unwrap();
    let recording: PathBuf = dir.join("recording.mkv");
    let mut recorder = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-protocol_whitelist",
            "file,udp,rtp,srtp",
            "-analyzeduration",
            "1M",
        ])
        .args(["-probesize", "1M", "-i"])
        .arg(&sdp_path)
        .args(["-c", "copy", "-t", &(SECONDS - 1).to_string()])
        .arg(&recording)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg records");
    // The recorder's sockets are open before the transports send to them.
    std::thread::sleep(Duration::from_millis(500));
    for (out, _, port) in &outputs {
        let parameters = PlainTransportConnectParameters {
            ip: Some(LOCALHOST),
            port: Some(*port),
            rtcp_port: None,
            srtp_parameters: srtp.then(|| SrtpParameters {
                crypto_suite: SrtpCryptoSuite::AesCm128HmacSha1_80,
                key_base64: FFMPEG_KEY.into(),
            }),
        };
        worker
            .connect_plain_transport(out.id, parameters)
            .expect("connect");
    }
    let mut sender = ffmpeg_send(&video_in, &audio_in, srtp);
    let limit = Duration::from_secs(u64::from(SECONDS) + 15);
    assert!(wait_with(&mut sender, limit, || {}), "ffmpeg sender failed");
    let recorded = wait_with(&mut recorder, Duration::from_secs(10), || {});
    for (t, what) in [(&video_in, "video in"), (&audio_in, "audio in")] {
        let stats = worker.transport_stats(t.id).unwrap();
        assert_eq!(stats.rtp_dropped, 0, "{what}: {stats:?}");
    }
    for (out, consumed, _) in &outputs {
        let stats = worker.consumer_stats(consumed.id).unwrap();
        assert!(stats.packets_sent > 0, "{:?}: {stats:?}", out.id);
    }
    assert!(recorded, "the recorder failed");
    let counts = probe(&recording);
    let count = |codec: &str| {
        counts
            .iter()
            .find(|(c, _)| c == codec)
            .map_or(0, |&(_, n)| n)
    };
    // The recorder keeps SECONDS - 1 seconds from the first key frame on: 30 frames and 50
    // Opus packets a second, all of them but for a tenth of slack.
    let video_frames = count("vp8");
    let audio_packets = count("opus");
    eprintln!("{test}: recorded {video_frames} VP8 frames, {audio_packets} Opus packets");
    let seconds = u64::from(SECONDS - 1);
    assert!(
        video_frames >= 27 * seconds,
        "{video_frames} video frames recorded: {counts:?}"
    );
    assert!(
        audio_packets >= 45 * seconds,
        "{audio_packets} audio packets recorded: {counts:?}"
    );
    runtime.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ffmpeg_records_consumers_on_plain_transports() {
    record_through_plain_transports("plain_rtp", false);
}

#[test]
fn ffmpeg_records_consumers_on_plain_transports_with_srtp() {
    record_through_plain_transports("srtp", true);
}

/// A real encoder's video published through a comedia plain transport and consumed by a plain
/// transport after the stream's first key frame (in the middle of a group of pictures): the
/// consumer must hold its packets until the encoder's next key frame (ffmpeg ignores key frame
/// requests), so what ffmpeg records from it starts with a key frame and decodes without a
/// missing reference. Checks the key frame detection against real H264 (SPS and PPS in STAP-A,
/// IDR slices in FU-A).
fn late_consumer_starts_at_a_key_frame(
    test: &str,
    codec: RtpCodecCapability,
    encoder: &[&str],
    probe_name: &str,
) {
    if !have_ffmpeg(test) {
        return;
    }
    let _serial = peers::exclusive();
    let (runtime, worker) = start();
    let options = RouterOptions {
        media_codecs: vec![RtpCodecCapability::opus(), codec.clone()],
    };
    let router = worker.create_router(options).expect("router");
    let caps = worker.router_rtp_capabilities(router).expect("caps");
    let mut options = PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST));
    options.comedia = true;
    let input = worker
        .create_plain_transport(router, options)
        .expect("plain transport");
    let pt = VP8_PT;
    let parameters = RtpCodecParameters {
        mime_type: codec.mime_type.clone(),
        payload_type: pt,
        clock_rate: 90_000,
        channels: None,
        parameters: codec.parameters.clone(),
        rtcp_feedback: vec![],
    };
    let producer = produce_on(&worker, input.id, MediaKind::Video, parameters, VIDEO_SSRC);

    // ffmpeg: a key frame every 2 s for 6 s, paced in real time.
    let seconds = 6;
    let port = input.parameters.tuple.local_port;
    let mut sender = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-t", &seconds.to_string(), "-f", "lavfi", "-i"])
        .args(["testsrc=size=320x240:rate=30", "-pix_fmt", "yuv420p"])
        .args(encoder)
        .args(["-g", "60", "-keyint_min", "60", "-b:v", "300k"])
        .args([
            "-ssrc",
            &VIDEO_SSRC.to_string(),
            "-payload_type",
            &pt.to_string(),
        ])
        .args(["-strict", "experimental", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}?pkt_size=1200"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg starts");
    let started = Instant::now();
    // The consumer and its recorder, about 0.7 s into the first group of pictures.
    std::thread::sleep(Duration::from_millis(700));
    let output = worker
        .create_plain_transport(
            router,
            PlainTransportOptions::new(TransportListenInfo::udp(LOCALHOST)),
        )
        .expect("plain transport");
    let consumed = worker
        .consume(
            output.id,
            ConsumeOptions {
                producer,
                rtp_capabilities: caps,
                paused: false,
            },
        )
        .expect("consume");
    let record_port = free_port_pair();
    let dir = std::env::temp_dir().join(format!("sfu-ffmpeg-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdp_path = dir.join("consumer.sdp");
    std::fs::write(&sdp_path, sdp(&[(record_port, &consumed, None)])).unwrap();
    let recording = dir.join("recording.mkv");
    let mut recorder = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args([
            "-protocol_whitelist",
            "file,udp,rtp",
            "-analyzeduration",
            "1M",
        ])
        .args(["-probesize", "1M", "-i"])
        .arg(&sdp_path)
        .args(["-c", "copy", "-t", "3"])
        .arg(&recording)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ffmpeg records");
    std::thread::sleep(Duration::from_millis(400));
    let parameters = PlainTransportConnectParameters {
        ip: Some(LOCALHOST),
        port: Some(record_port),
        ..Default::default()
    };
    worker
        .connect_plain_transport(output.id, parameters)
        .expect("connect");
    let connected_after = started.elapsed();
    let limit = Duration::from_secs(seconds + 15);
    assert!(wait_with(&mut sender, limit, || {}), "ffmpeg sender failed");
    let recorded = wait_with(&mut recorder, Duration::from_secs(10), || {});
    let input_stats = worker.transport_stats(input.id).unwrap();
    assert_eq!(input_stats.rtp_dropped, 0, "{input_stats:?}");
    let stats = worker.consumer_stats(consumed.id).unwrap();
    eprintln!("{test}: consumer connected {connected_after:?} after ffmpeg started; {stats:?}");
    // It did start in the middle of a group of pictures: packets were held back.
    assert!(
        stats.packets_waiting_for_key_frame > 0,
        "the consumer never waited for a key frame: {stats:?}"
    );
    assert!(recorded, "the recorder failed");

    // Decode what was recorded: the first frame is a key frame, nothing refers to a frame the
    // recording lacks (the decoder would say so), and about 3 s of frames arrived.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_frames"])
        .args([
            "-show_entries",
            "frame=key_frame,pict_type",
            "-of",
            "csv=p=0",
        ])
        .arg(&recording)
        .output()
        .expect("ffprobe runs");
    let frames: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let errors = String::from_utf8_lossy(&out.stderr).to_string();
    let keys = frames.iter().filter(|f| f.starts_with('1')).count();
    eprintln!(
        "{test}: {} frames decoded ({probe_name}), {keys} key frames, first {:?}; decoder said {:?}",
        frames.len(),
        frames.first(),
        errors
    );
    assert!(out.status.success(), "ffprobe: {out:?}");
    assert!(
        frames.first().is_some_and(|f| f.starts_with("1,I")),
        "the recording starts with {:?}, not a key frame",
        frames.first()
    );
    assert!(errors.trim().is_empty(), "the decoder reported: {errors}");
    assert!(frames.len() >= 75, "{} frames decoded", frames.len());
    let codecs = probe(&recording);
    assert_eq!(
        codecs.first().map(|c| c.0.as_str()),
        Some(probe_name),
        "{codecs:?}"
    );
    runtime.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn late_consumers_of_ffmpeg_h264_start_at_a_key_frame() {
    let mut h264 = RtpCodecCapability::new(MediaKind::Video, "video/H264", 90_000, None);
    h264.parameters = [
        ("packetization-mode".to_string(), ParameterValue::Number(1)),
        (
            "profile-level-id".to_string(),
            ParameterValue::String("42e01f".into()),
        ),
    ]
    .into_iter()
    .collect();
    let encoder = [
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-bf",
        "0",
        "-sc_threshold",
        "0",
    ];
    late_consumer_starts_at_a_key_frame("h264", h264, &encoder, "h264");
}
