//! The demo's HTTP server and signaling WebSocket over a real socket: the page is served, bad
//! input on the socket is answered, a refused connection says why, and a closed socket removes
//! the peer from its room.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

mod common;

use common::{start_signaling, wait_until};
use serde_json::{json, Value};
use sfu_examples::demo::{serve, ServerOptions, Signaling};
use sfu_runtime_mio::WorkerHandle;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn start() -> (String, Signaling, WorkerHandle) {
    let (signaling, worker) = start_signaling();
    let web = std::env::temp_dir().join(format!("sfu-demo-ws-test-{}", std::process::id()));
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<title>sfu demo</title>").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let s = signaling.clone();
    thread::spawn(move || serve(listener, s, ServerOptions::new(web)));
    (addr, signaling, worker)
}

fn open(addr: &str, room: &str, peer: &str) -> Socket {
    let (ws, _) = tungstenite::connect(format!("ws://{addr}/ws?room={room}&peer={peer}")).unwrap();
    ws
}

fn next(ws: &mut Socket) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(_) => return Value::Null,
            _ => {}
        }
    }
}

fn request(ws: &mut Socket, text: String) -> Value {
    ws.send(Message::text(text)).unwrap();
    loop {
        let v = next(ws);
        if v.get("notification").is_none() {
            return v;
        }
    }
}

#[test]
fn serves_the_page() {
    let (addr, _, _) = start();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("<title>sfu demo</title>"));

    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /dist/bundle.js HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
    assert!(body.contains("npm run build"), "{body}");
}

#[test]
fn bad_input_is_answered_and_a_closed_socket_leaves_the_room() {
    let (addr, signaling, worker) = start();
    let mut a = open(&addr, "room", "a");
    let mut b = open(&addr, "room", "b");

    let r = request(&mut a, "{oops".into());
    assert_eq!(r["ok"], false);
    assert!(r["error"].as_str().unwrap().contains("malformed JSON"));
    let r = request(&mut a, json!({ "id": 1, "method": "nope" }).to_string());
    assert_eq!(r["id"], 1);
    assert!(r["error"].as_str().unwrap().contains("unknown method"));
    a.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert!(next(&mut a)["error"].as_str().unwrap().contains("binary"));

    // The same peer id again is refused with a reason, then closed.
    let mut dup = open(&addr, "room", "a");
    let refused = next(&mut dup);
    assert_eq!(refused["method"], "error");
    assert!(refused["data"]["error"]
        .as_str()
        .unwrap()
        .contains("already in room"));

    // a creates a transport and joins; b hears of it; then a's socket closes.
    let r = request(
        &mut a,
        json!({ "id": 2, "method": "createWebRtcTransport", "data": { "direction": "send" } })
            .to_string(),
    );
    assert_eq!(r["ok"], true, "{r}");
    let caps = request(
        &mut a,
        json!({ "id": 3, "method": "getRouterRtpCapabilities" }).to_string(),
    )["data"]
        .clone();
    for ws in [&mut a, &mut b] {
        let r = request(
            ws,
            json!({ "id": 4, "method": "join", "data": { "rtpCapabilities": caps } }).to_string(),
        );
        assert_eq!(r["ok"], true, "{r}");
    }
    assert_eq!(worker.load(), 1);
    a.close(None).unwrap();
    drop(a);
    loop {
        let n = next(&mut b);
        if n["method"] == "peerLeft" {
            assert_eq!(n["data"]["peerId"], "a");
            break;
        }
    }
    wait_until("a's transport to close", || worker.load() == 0);
    assert_eq!(signaling.peers("room"), vec!["b"]);

    // b is undisturbed.
    let r = request(
        &mut b,
        json!({ "id": 5, "method": "getRouterRtpCapabilities" }).to_string(),
    );
    assert_eq!(r["ok"], true);
    drop(b);
    wait_until("the room to close", || signaling.rooms().is_empty());
}
