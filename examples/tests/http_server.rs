//! The demo's HTTP server under hostile and idle clients, over real loopback sockets: a
//! connection cap answered with a 503, the whole-request timeout against a slow client, the
//! silence limit on the WebSocket, idle WebSockets that cost no wake-ups and no threads,
//! failing connections that leave everyone else served, and HTTPS with a self-signed
//! certificate. Timeouts are made small here; no test asserts on how long anything took.

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

mod common;
mod support;

use common::wait_until;
use futures_rustls::rustls;
use rustls::pki_types::ServerName;
use sfu_examples::demo::{ServerOptions, TlsIdentity};
use support::{get, open_ws, options, raw_upgrade, read_all, request, start};
use tungstenite::Message;

#[test]
fn connections_past_the_cap_get_a_503_and_are_served_again_once_others_close() {
    let server = start(ServerOptions {
        max_connections: 3,
        ..options()
    });
    let addr = &server.addr;
    let mut held: Vec<_> = (0..3)
        .map(|i| open_ws(addr, "cap", &format!("p{i}")))
        .collect();
    wait_until("three open connections", || server.stats.counts().open == 3);

    let refused = get(addr, "/");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After"), "{refused}");
    assert!(refused.contains("limit of 3 connections"), "{refused}");
    assert_eq!(server.stats.counts().refused, 1);
    // The held connections are not disturbed by the refusal.
    assert_eq!(
        request(&mut held[0], 1, "getRouterRtpCapabilities")["ok"],
        true
    );

    held.pop().unwrap().close(None).unwrap();
    wait_until("a place to free up", || server.stats.counts().open == 2);
    let served = get(addr, "/");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert_eq!(server.stats.counts().refused, 1);
}

#[test]
fn a_slow_request_is_closed_by_the_whole_request_timeout() {
    let server = start(ServerOptions {
        request_timeout: Duration::from_millis(500),
        ..options()
    });
    // One byte every 50 ms: each read is quick, the whole request never is. A per-read timeout
    // would keep this connection forever.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let request = format!("GET / HTTP/1.1\r\nX-Slow: {}\r\n\r\n", "a".repeat(200));
    let mut closed = false;
    for byte in request.as_bytes() {
        if s.write_all(&[*byte]).is_err() || server.stats.counts().timed_out == 1 {
            closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "the server never timed the slow request out");
    let answer = read_all(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    wait_until("the connection to close", || {
        server.stats.counts().open == 0
    });
    assert!(get(&server.addr, "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_silent_or_dripping_websocket_is_closed_and_its_peer_leaves() {
    let server = start(ServerOptions {
        idle_timeout: Duration::from_millis(900),
        ..options()
    });
    // One client says nothing; the other drips a frame that never completes.
    let _silent = raw_upgrade(&server.addr, "quiet", "silent");
    let mut drip = raw_upgrade(&server.addr, "quiet", "drip");
    wait_until("both peers to join", || {
        server.signaling.peers("quiet").len() == 2
    });
    drip.write_all(&[0x81, 0xfe, 0x10, 0x00, 1, 2, 3, 4])
        .unwrap();
    for _ in 0..400 {
        if server.stats.counts().timed_out == 2 {
            break;
        }
        if drip.write_all(b"x").is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    wait_until("both to be timed out", || {
        server.stats.counts().timed_out == 2
    });
    wait_until("the room to empty", || server.signaling.rooms().is_empty());
    // A live client that answers the pings stays, past twice the silence allowed.
    let mut live = open_ws(&server.addr, "quiet", "live");
    let tungstenite::stream::MaybeTlsStream::Plain(tcp) = live.get_mut() else {
        unreachable!("ws:// is plain TCP")
    };
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pings = 0;
    for _ in 0..18 {
        match live.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("the live client was dropped: {e}"),
        }
    }
    assert!(pings > 0, "the server pings a silent browser");
    assert_eq!(
        request(&mut live, 1, "getRouterRtpCapabilities")["ok"],
        true
    );
    assert_eq!(server.signaling.peers("quiet"), vec!["live"]);
}

#[test]
fn failing_connections_leave_the_server_serving() {
    let server = start(options());
    let addr = &server.addr;
    let mut bystander = open_ws(addr, "room", "bystander");

    // Garbage, an oversized head, a head cut off by a close, a protocol error on the
    // WebSocket (an unmasked client frame) and a socket reset mid-frame.
    let garbage = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"\x00\x01\x02 nonsense\r\n\r\n").unwrap();
        read_all(&mut s)
    };
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let oversized = {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!("GET / HTTP/1.1\r\nX-Big: {}", "b".repeat(20_000));
        let _ = s.write_all(head.as_bytes());
        read_all(&mut s)
    };
    assert!(oversized.starts_with("HTTP/1.1 431"), "{oversized}");
    TcpStream::connect(addr)
        .unwrap()
        .write_all(b"GET / HT")
        .unwrap();
    let mut unmasked = raw_upgrade(addr, "room", "unmasked");
    unmasked.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let _ = read_all(&mut unmasked);
    let mut cut = raw_upgrade(addr, "room", "cut");
    cut.write_all(&[0x81, 0x85, 1, 2, 3]).unwrap();
    drop(cut);

    wait_until("the failures to be counted", || {
        server.stats.counts().failed >= 3 && server.signaling.peers("room") == ["bystander"]
    });
    assert!(get(addr, "/").starts_with("HTTP/1.1 200"));
    assert_eq!(
        request(&mut bystander, 1, "getRouterRtpCapabilities")["ok"],
        true
    );
}

/// A TLS client that trusts exactly `identity`'s certificate, for the name `localhost`.
fn tls_client(
    identity: &TlsIdentity,
    addr: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.certificate.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(connection, TcpStream::connect(addr).unwrap())
}

#[test]
fn https_serves_the_page_and_the_websocket_with_a_self_signed_certificate() {
    let identity = TlsIdentity::self_signed(&["localhost".to_owned()]).unwrap();
    let server = start(ServerOptions {
        tls: Some(identity.clone()),
        ..options()
    });
    let addr = &server.addr;

    let mut page = tls_client(&identity, addr);
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let answer = read_all(&mut page);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("<title>sfu demo</title>"));

    let stream = tls_client(&identity, addr);
    let url = "wss://localhost/ws?room=secure&peer=a";
    let (mut ws, _) = tungstenite::client(url, stream).unwrap();
    assert_eq!(request(&mut ws, 1, "getRouterRtpCapabilities")["ok"], true);

    // Plain HTTP on the HTTPS port is told what to do; a broken handshake fails alone.
    let plain = get(addr, "/");
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    assert!(plain.contains("https://"), "{plain}");
    let mut broken = TcpStream::connect(addr).unwrap();
    broken
        .write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
        .unwrap();
    let _ = read_all(&mut broken);
    wait_until("the failures to be counted", || {
        server.stats.counts().failed == 2
    });
    assert_eq!(request(&mut ws, 2, "getRouterRtpCapabilities")["ok"], true);
}
