//! Starting the demo's HTTP server on loopback and talking to it, for the tests of the server.
#![allow(dead_code)] // Each test binary uses its part.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use serde_json::{json, Value};
use sfu_examples::demo::{HttpServer, ServerOptions, ServerStats, Signaling};
use sfu_runtime_mio::WorkerHandle;
use tungstenite::{Message, WebSocket};

use crate::common::start_signaling;

/// A running server.
pub struct Server {
    pub addr: String,
    pub stats: Arc<ServerStats>,
    pub signaling: Signaling,
    _worker: WorkerHandle,
    /// The server thread's id in /proc.
    pub tid: u32,
}

/// Starts a server on loopback with `options` (its `web_dir` is replaced by a small page).
pub fn start(mut options: ServerOptions) -> Server {
    let (signaling, worker) = start_signaling();
    let web = std::env::temp_dir().join(format!("sfu-demo-http-test-{}", std::process::id()));
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("index.html"), "<title>sfu demo</title>").unwrap();
    options.web_dir = web;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = HttpServer::new(listener, signaling.clone(), options);
    let stats = server.stats();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        tx.send(thread_id()).unwrap();
        server.run()
    });
    let tid = rx.recv().unwrap();
    Server {
        addr,
        stats,
        signaling,
        _worker: worker,
        tid,
    }
}

/// The default options (the page directory is set by [`start`]).
pub fn options() -> ServerOptions {
    ServerOptions::new(Default::default())
}

/// One plain HTTP request; the whole answer (the server closes after it).
pub fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    read_all(&mut s)
}

pub fn read_all(s: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the answer still leaves the answer read.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn open_ws(
    addr: &str,
    room: &str,
    peer: &str,
) -> WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{addr}/ws?room={room}&peer={peer}");
    tungstenite::connect(url).unwrap().0
}

/// Sends a request on a signaling socket and returns its reply, skipping notifications.
pub fn request<S: Read + Write>(ws: &mut WebSocket<S>, id: u32, method: &str) -> Value {
    ws.send(Message::text(
        json!({ "id": id, "method": method }).to_string(),
    ))
    .unwrap();
    loop {
        if let Message::Text(t) = ws.read().unwrap() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v.get("notification").is_none() {
                return v;
            }
        }
    }
}

/// A WebSocket upgrade written by hand, for clients that then misbehave.
pub fn raw_upgrade(addr: &str, room: &str, peer: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /ws?room={room}&peer={peer} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the upgrade is answered");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// The calling thread's id.
pub fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}
