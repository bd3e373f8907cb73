//! One TCP port for everything the browser needs: the page and its bundle over plain HTTP/1.1,
//! and the signaling WebSocket at `/ws?room=NAME&peer=ID`. One thread per connection.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::TryRecvError;
use std::thread;
use std::time::Duration;

use serde_json::json;
use tracing::{debug, info, warn};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::signaling::{PeerSession, Signaling};

/// Longest accepted HTTP request head.
const MAX_HEAD: usize = 16 * 1024;
/// Longest accepted signaling message.
const MAX_MESSAGE: usize = 256 * 1024;
/// How often a connection thread looks for notifications while waiting for the browser.
const POLL: Duration = Duration::from_millis(20);
/// Idle polls (nothing arrived) after which the server pings the browser (about 15 s).
const PING_AFTER_IDLE_POLLS: u32 = 750;
/// Idle polls after which a silent browser is considered gone (about 45 s): its peer leaves.
const GONE_AFTER_IDLE_POLLS: u32 = 2250;

/// Serves the page from `web_dir` and signaling from `signaling` on `listener`, forever.
pub fn serve(listener: TcpListener, signaling: Signaling, web_dir: PathBuf) -> io::Result<()> {
    loop {
        let (stream, remote) = match listener.accept() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let signaling = signaling.clone();
        let web_dir = web_dir.clone();
        thread::Builder::new()
            .name(format!("http-{remote}"))
            .spawn(move || {
                if let Err(e) = handle_connection(stream, &signaling, &web_dir) {
                    debug!(%remote, error = %e, "connection ended");
                }
            })?;
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    query: String,
    websocket_key: Option<String>,
    upgrade_websocket: bool,
}

fn read_head(stream: &mut TcpStream) -> io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::to_owned)
                };
                let upgrade_websocket =
                    header("upgrade").is_some_and(|u| u.to_ascii_lowercase().contains("websocket"));
                let head = Head {
                    method: req.method.unwrap_or("GET").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    websocket_key: header("sec-websocket-key"),
                    upgrade_websocket,
                };
                let rest = buf[len..].to_vec();
                return Ok(Some((head, rest)));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                respond(stream, 431, "text/plain", b"request head too large")?;
                return Ok(None);
            }
            Err(e) => {
                respond(
                    stream,
                    400,
                    "text/plain",
                    format!("bad request: {e}").as_bytes(),
                )?;
                return Ok(None);
            }
        }
    }
}

fn handle_connection(
    mut stream: TcpStream,
    signaling: &Signaling,
    web_dir: &Path,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let Some((head, rest)) = read_head(&mut stream)? else {
        return Ok(());
    };
    if head.path == "/ws" {
        return websocket(stream, head, rest, signaling);
    }
    if head.method != "GET" && head.method != "HEAD" {
        return respond(&mut stream, 405, "text/plain", b"method not allowed");
    }
    match static_file(web_dir, &head.path) {
        Some((body, content_type)) => {
            let body = if head.method == "HEAD" { Vec::new() } else { body };
            respond(&mut stream, 200, content_type, &body)
        }
        None if head.path == "/dist/bundle.js" => respond(
            &mut stream,
            404,
            "text/plain",
            b"dist/bundle.js is missing: run `npm ci && npm run build` in examples/web (or use examples/run-demo)",
        ),
        None => respond(&mut stream, 404, "text/plain", b"not found"),
    }
}

/// The file a request path names under `web_dir`, with its content type. `/` is
/// `index.html`; only `index.html`, `dist/…` and `src/…` are served, never a path with `..`.
fn static_file(web_dir: &Path, path: &str) -> Option<(Vec<u8>, &'static str)> {
    let relative = match path {
        "/" | "/index.html" => "index.html",
        p => p.strip_prefix('/')?,
    };
    let rel = Path::new(relative);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let top = rel.components().next()?.as_os_str().to_str()?;
    if !(relative == "index.html" || top == "dist" || top == "src") {
        return None;
    }
    let content_type = match rel.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("map") | Some("json") => "application/json",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/octet-stream",
    };
    let full = web_dir.join(rel);
    if !full.is_file() {
        return None;
    }
    std::fs::read(full).ok().map(|b| (b, content_type))
}

fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The value of `key` in a query string.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

fn websocket(
    mut stream: TcpStream,
    head: Head,
    rest: Vec<u8>,
    signaling: &Signaling,
) -> io::Result<()> {
    let Some(key) = head.websocket_key.filter(|_| head.upgrade_websocket) else {
        return respond(
            &mut stream,
            400,
            "text/plain",
            b"/ws is the signaling WebSocket: connect with a WebSocket client",
        );
    };
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes())?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = WebSocket::from_partially_read(stream, rest, Role::Server, Some(config));

    let room = query_param(&head.query, "room").unwrap_or_default();
    let peer = query_param(&head.query, "peer").unwrap_or_default();
    let mut session = match signaling.connect(&room, &peer) {
        Ok(s) => s,
        Err(error) => {
            warn!(room, peer, %error, "peer refused");
            let text =
                json!({ "notification": true, "method": "error", "data": { "error": error } });
            let _ = ws.send(Message::text(text.to_string()));
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "refused".into(),
            }));
            let _ = ws.flush();
            return Ok(());
        }
    };
    info!(room, peer, "signaling connected");
    let result = run_session(&mut ws, &mut session);
    drop(session);
    info!(room, peer, "signaling closed");
    result
}

fn run_session(ws: &mut WebSocket<TcpStream>, session: &mut PeerSession) -> io::Result<()> {
    // Counted in polls rather than read from a clock: browsers answer pings on their own, so a
    // socket silent for this long belongs to a browser that vanished without closing it.
    let mut idle_polls = 0u32;
    loop {
        let read = ws.read();
        if read.is_ok() {
            idle_polls = 0;
        }
        match read {
            Ok(Message::Text(text)) => {
                let reply = session.handle_text(text.as_str());
                ws.send(Message::text(reply)).map_err(ws_io)?;
            }
            Ok(Message::Binary(_)) => {
                let reply = json!({ "id": null, "ok": false, "error": "binary messages are not understood; send JSON text" });
                ws.send(Message::text(reply.to_string())).map_err(ws_io)?;
            }
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                return Ok(());
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                idle_polls += 1;
                if idle_polls == PING_AFTER_IDLE_POLLS {
                    ws.write(Message::Ping(Default::default())).map_err(ws_io)?;
                } else if idle_polls >= GONE_AFTER_IDLE_POLLS {
                    return Err(io::Error::new(
                        ErrorKind::TimedOut,
                        "the browser went silent",
                    ));
                }
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(())
            }
            Err(e) => return Err(ws_io(e)),
        }
        loop {
            match session.notifications().try_recv() {
                Ok(text) => ws.write(Message::text(text)).map_err(ws_io)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        match ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(ws_io(e)),
        }
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(
            query_param("room=a%20b&peer=x", "room").as_deref(),
            Some("a b")
        );
        assert_eq!(query_param("room=a&peer=x", "peer").as_deref(), Some("x"));
        assert_eq!(query_param("room=a", "peer"), None);
        assert_eq!(query_param("room=%zz%4", "room").as_deref(), Some("%zz%4"));
        assert_eq!(query_param("room=%", "room").as_deref(), Some("%"));
    }

    #[test]
    fn static_paths_stay_inside_the_web_directory() {
        let dir = std::env::temp_dir().join(format!("sfu-demo-web-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        std::fs::write(dir.join("dist/bundle.js"), "x").unwrap();
        std::fs::write(dir.join("package.json"), "{}").unwrap();
        assert_eq!(
            static_file(&dir, "/").unwrap().1,
            "text/html; charset=utf-8"
        );
        assert!(static_file(&dir, "/dist/bundle.js").is_some());
        assert!(static_file(&dir, "/package.json").is_none());
        assert!(static_file(&dir, "/dist/../package.json").is_none());
        assert!(static_file(&dir, "//etc/passwd").is_none());
        assert!(static_file(&dir, "/dist/missing.js").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
