//! The demo's ffmpeg publishers against a real mio runtime on loopback, without ffmpeg: what
//! `publish_ffmpeg` answers, that only the pages of its room are told of it and may consume it,
//! its limits, and each way it closes (idle, on request, with its room); and the HTTP route.
//! Real ffmpeg into a real page is the end to end's ffmpeg run (examples/e2e).
#![allow(clippy::disallowed_methods)] // Test code owns its clock.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

mod common;
mod support;

use common::{start_signaling, start_signaling_with, wait_until};
use serde_json::{json, Value};
use sfu_examples::demo::{
    FfmpegPublisher, FfmpegRefusal, PeerSession, FFMPEG_AUDIO_SSRC, FFMPEG_OPUS_PT,
    FFMPEG_VIDEO_SSRC, FFMPEG_VP8_PT, MAX_FFMPEG_PER_ROOM, MAX_FFMPEG_TOTAL,
};
use support::{options, read_all, start};

fn call(session: &mut PeerSession, method: &str, data: Value) -> Value {
    let text = json!({ "id": 1, "method": method, "data": data }).to_string();
    let reply: Value = serde_json::from_str(&session.handle_text(&text)).unwrap();
    assert_eq!(reply["ok"], true, "{method}: {reply}");
    reply["data"].clone()
}

fn join(session: &mut PeerSession) -> Value {
    let caps = call(session, "getRouterRtpCapabilities", json!({}));
    call(session, "join", json!({ "rtpCapabilities": caps }))
}

/// The notifications waiting for `session` now (after `settle` for late ones), as
/// `(method, data)`.
fn drain(session: &PeerSession, settle: Duration) -> Vec<(String, Value)> {
    std::thread::sleep(settle);
    let mut out = Vec::new();
    while let Ok(text) = session.notifications().try_recv() {
        let v: Value = serde_json::from_str(&text).unwrap();
        out.push((v["method"].as_str().unwrap().to_owned(), v["data"].clone()));
    }
    out
}

/// Waits up to 5 s for notifications until `done` holds of all received so far.
fn wait_notifications(
    session: &PeerSession,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let until = Instant::now() + Duration::from_secs(5);
    let mut all = Vec::new();
    while !done(&all) {
        assert!(Instant::now() < until, "notifications so far: {all:?}");
        all.extend(drain(session, Duration::from_millis(20)));
    }
    all
}

fn count(list: &[(String, Value)], method: &str, peer: &str) -> usize {
    list.iter()
        .filter(|(m, d)| m == method && d["peerId"] == peer)
        .count()
}

/// A VP8 RTP packet as ffmpeg sends it (one small key frame partition).
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, FFMPEG_VP8_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&FFMPEG_VIDEO_SSRC.to_be_bytes());
    p.extend_from_slice(&[0x10, 0x00, 0x9d, 0x01, 0x2a, 0, 0, 0, 0, 0]);
    p
}

#[test]
fn a_publisher_is_announced_to_its_room_only_and_consumed_like_a_page() {
    let (signaling, _) = start_signaling();
    let mut alice = signaling.connect("one", "alice").unwrap();
    join(&mut alice);
    let mut carol = signaling.connect("two", "carol").unwrap();
    join(&mut carol);
    drain(&alice, Duration::ZERO);

    let p = signaling.publish_ffmpeg("one").expect("a publisher");
    assert_eq!((p.room.as_str(), p.peer_id.as_str()), ("one", "ffmpeg-1"));
    assert_eq!(p.host, "127.0.0.1");
    let ports = [
        p.video_port,
        p.video_rtcp_port,
        p.audio_port,
        p.audio_rtcp_port,
    ];
    assert!(ports.iter().all(|&x| x != 0), "{p:?}");
    let mut distinct = ports.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "four sockets: {p:?}");
    for needle in [
        format!(
            "rtp://127.0.0.1:{}?rtcpport={}",
            p.video_port, p.video_rtcp_port
        ),
        format!(
            "rtp://127.0.0.1:{}?rtcpport={}",
            p.audio_port, p.audio_rtcp_port
        ),
        format!("-ssrc {FFMPEG_VIDEO_SSRC} -payload_type {FFMPEG_VP8_PT}"),
        format!("-ssrc {FFMPEG_AUDIO_SSRC} -payload_type {FFMPEG_OPUS_PT}"),
        "-c:v libvpx".to_owned(),
        "-c:a libopus".to_owned(),
    ] {
        assert!(p.command.contains(&needle), "{needle} in {}", p.command);
    }
    assert!(p.command.starts_with("ffmpeg "), "{}", p.command);
    assert_eq!(signaling.peers("one"), vec!["alice", "ffmpeg-1"]);

    // Alice is told of a peer with a video and an audio producer; Carol, in another room, of
    // nothing.
    let seen = wait_notifications(&alice, |l| count(l, "newProducer", "ffmpeg-1") == 2);
    assert_eq!(count(&seen, "peerJoined", "ffmpeg-1"), 1, "{seen:?}");
    let mut kinds: Vec<&str> = seen
        .iter()
        .filter(|(m, _)| m == "newProducer")
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["audio", "video"]);
    assert_eq!(drain(&carol, Duration::from_millis(200)), vec![]);

    // Alice consumes both; Carol may not.
    call(
        &mut alice,
        "createWebRtcTransport",
        json!({ "direction": "recv" }),
    );
    for (_, d) in seen.iter().filter(|(m, _)| m == "newProducer") {
        let consumer = call(
            &mut alice,
            "consume",
            json!({ "producerId": d["producerId"] }),
        );
        assert_eq!(consumer["peerId"], "ffmpeg-1");
        assert_eq!(consumer["kind"], d["kind"]);
        call(
            &mut carol,
            "createWebRtcTransport",
            json!({ "direction": "recv" }),
        );
        let text =
            json!({ "id": 2, "method": "consume", "data": { "producerId": d["producerId"] } });
        let reply: Value = serde_json::from_str(&carol.handle_text(&text.to_string())).unwrap();
        assert_eq!(reply["ok"], false, "{reply}");
    }

    // A page that joins later finds the publisher in the join reply.
    let mut bob = signaling.connect("one", "bob").unwrap();
    let joined = join(&mut bob);
    assert!(
        joined["peers"]
            .as_array()
            .unwrap()
            .contains(&json!("ffmpeg-1")),
        "{joined}"
    );
    let theirs = joined["producers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["peerId"] == "ffmpeg-1")
        .count();
    assert_eq!(theirs, 2, "{joined}");
}

#[test]
fn publishers_are_limited_per_room_and_in_all_and_need_an_open_room() {
    let (signaling, _) = start_signaling();
    assert_eq!(
        signaling.publish_ffmpeg("nobody"),
        Err(FfmpegRefusal::NoRoom("nobody".into()))
    );
    assert!(signaling.rooms().is_empty(), "no room is made for it");

    let mut sessions = Vec::new();
    let rooms = MAX_FFMPEG_TOTAL.div_ceil(MAX_FFMPEG_PER_ROOM) + 1;
    for r in 0..rooms {
        sessions.push(signaling.connect(&format!("r{r}"), "page").unwrap());
    }
    for n in 1..=MAX_FFMPEG_PER_ROOM {
        let p = signaling.publish_ffmpeg("r0").unwrap();
        assert_eq!(p.peer_id, format!("ffmpeg-{n}"));
    }
    match signaling.publish_ffmpeg("r0") {
        Err(FfmpegRefusal::Limit(text)) => assert!(text.contains("room"), "{text}"),
        other => panic!("past the room's limit: {other:?}"),
    }
    let mut made = MAX_FFMPEG_PER_ROOM;
    'rooms: for r in 1..rooms {
        for _ in 0..MAX_FFMPEG_PER_ROOM {
            if made == MAX_FFMPEG_TOTAL {
                break 'rooms;
            }
            signaling.publish_ffmpeg(&format!("r{r}")).unwrap();
            made += 1;
        }
    }
    match signaling.publish_ffmpeg(&format!("r{}", rooms - 1)) {
        Err(FfmpegRefusal::Limit(text)) => assert!(text.contains("server"), "{text}"),
        other => panic!("past the server's limit: {other:?}"),
    }
    // Closing one makes room for another.
    signaling.close_ffmpeg("r0", "ffmpeg-1").unwrap();
    assert!(signaling.close_ffmpeg("r0", "ffmpeg-1").is_err());
    assert!(
        signaling.close_ffmpeg("r0", "page").is_err(),
        "a page is no publisher"
    );
    assert_eq!(signaling.publish_ffmpeg("r0").unwrap().peer_id, "ffmpeg-1");
}

#[test]
fn a_closed_publisher_leaves_its_room_and_the_last_page_closes_the_room() {
    let (signaling, worker) = start_signaling();
    let mut alice = signaling.connect("one", "alice").unwrap();
    join(&mut alice);
    let p = signaling.publish_ffmpeg("one").unwrap();
    wait_notifications(&alice, |l| count(l, "newProducer", "ffmpeg-1") == 2);
    signaling.close_ffmpeg("one", &p.peer_id).unwrap();
    wait_notifications(&alice, |l| {
        count(l, "producerClosed", "ffmpeg-1") == 2 && count(l, "peerLeft", "ffmpeg-1") == 1
    });
    assert_eq!(signaling.peers("one"), vec!["alice"]);
    assert_ports_free(&p);

    // A publisher does not keep its room open: the room closes with its last page, and the
    // publisher's sockets with it.
    let p = signaling.publish_ffmpeg("one").unwrap();
    let before = worker.load();
    drop(alice);
    assert!(signaling.rooms().is_empty(), "{:?}", signaling.rooms());
    assert!(matches!(
        signaling.publish_ffmpeg("one"),
        Err(FfmpegRefusal::NoRoom(_))
    ));
    wait_until("the room's transports to close", || worker.load() < before);
    assert_ports_free(&p);
}

/// Waits for the publisher's sockets to close: its ports can be bound again.
fn assert_ports_free(p: &FfmpegPublisher) {
    for port in [
        p.video_port,
        p.video_rtcp_port,
        p.audio_port,
        p.audio_rtcp_port,
    ] {
        wait_until("the publisher's sockets to close", || {
            UdpSocket::bind(("127.0.0.1", port)).is_ok()
        });
    }
}

#[test]
fn an_idle_publisher_is_closed_and_a_fed_one_is_kept() {
    let idle = Duration::from_millis(400);
    let (signaling, _) = start_signaling_with(|s| s.with_ffmpeg_idle_timeout(idle));
    let mut alice = signaling.connect("one", "alice").unwrap();
    join(&mut alice);
    let quiet = signaling.publish_ffmpeg("one").unwrap();
    let fed = signaling.publish_ffmpeg("one").unwrap();
    assert_eq!(
        (quiet.peer_id.as_str(), fed.peer_id.as_str()),
        ("ffmpeg-1", "ffmpeg-2")
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let until = Instant::now() + idle * 4;
    let mut seq = 0;
    while Instant::now() < until {
        seq += 1;
        socket
            .send_to(&rtp(seq), ("127.0.0.1", fed.video_port))
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(signaling.peers("one"), vec!["alice", "ffmpeg-2"]);
    let seen = drain(&alice, Duration::ZERO);
    assert_eq!(count(&seen, "peerLeft", "ffmpeg-1"), 1, "{seen:?}");
    assert_eq!(count(&seen, "producerClosed", "ffmpeg-1"), 2, "{seen:?}");
    assert_eq!(count(&seen, "peerLeft", "ffmpeg-2"), 0, "{seen:?}");
    // Once ffmpeg stops, the other goes too.
    wait_until("the stopped publisher to close", || {
        signaling.peers("one") == ["alice"]
    });
}

/// One HTTP request with `method`; the whole answer.
fn http(addr: &str, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    read_all(&mut s)
}

#[test]
fn the_http_route_makes_and_closes_publishers() {
    let server = start(options());
    let addr = server.addr.as_str();
    assert!(http(addr, "POST", "/rooms/one/ffmpeg").starts_with("HTTP/1.1 404"));
    let _alice = server.signaling.connect("one", "alice").unwrap();
    let answer = http(addr, "POST", "/rooms/one/ffmpeg");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("X-Peer-Id: ffmpeg-1\r\n"), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.starts_with("ffmpeg -re "), "{body}");
    assert!(body.contains("rtp://127.0.0.1:"), "{body}");
    assert_eq!(server.signaling.peers("one"), vec!["alice", "ffmpeg-1"]);
    for _ in 1..MAX_FFMPEG_PER_ROOM {
        assert!(http(addr, "POST", "/rooms/one/ffmpeg").starts_with("HTTP/1.1 200"));
    }
    assert!(http(addr, "POST", "/rooms/one/ffmpeg").starts_with("HTTP/1.1 429"));
    assert!(http(addr, "GET", "/rooms/one/ffmpeg").starts_with("HTTP/1.1 405"));
    assert!(http(addr, "POST", "/rooms/one/other").starts_with("HTTP/1.1 404"));
    let closed = http(addr, "DELETE", "/rooms/one/ffmpeg/ffmpeg-1");
    assert!(closed.starts_with("HTTP/1.1 200"), "{closed}");
    assert!(http(addr, "DELETE", "/rooms/one/ffmpeg/ffmpeg-1").starts_with("HTTP/1.1 404"));
    assert!(http(addr, "DELETE", "/rooms/one/ffmpeg/alice").starts_with("HTTP/1.1 404"));
    assert_eq!(server.signaling.peers("one"), vec!["alice", "ffmpeg-2"]);
}
