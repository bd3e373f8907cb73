//! HTTP/1.1 as the demo server speaks it: one request per connection, read as a head (no
//! bodies), answered with a file from the page directory, a short plain-text error, or the
//! upgrade to the signaling WebSocket.

use std::io;
use std::path::{Component, Path};

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest accepted HTTP request head.
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
pub(super) struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    pub websocket_key: Option<String>,
    pub upgrade_websocket: bool,
}

/// What reading a request head gave.
pub(super) enum Request {
    /// A whole head, and the bytes that followed it (the start of WebSocket frames).
    Head(Head, Vec<u8>),
    /// The client closed before sending a whole head.
    Closed,
    /// A head the server will not take: answer with this status and text, then close.
    Bad(u16, String),
}

/// Reads one request head from `stream`. Only I/O errors are errors; a bad head is a
/// [`Request::Bad`]. The caller bounds the time it may take.
pub(super) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Request::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some((head, len))) => return Ok(Request::Head(head, buf.split_off(len))),
            Ok(None) if buf.len() < MAX_HEAD => continue,
            Ok(None) => return Ok(Request::Bad(431, "request head too large".into())),
            Err(e) => return Ok(Request::Bad(400, format!("bad request: {e}"))),
        }
    }
}

/// The head at the start of `buf` and its length, or `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = req.parse(buf)? else {
        return Ok(None);
    };
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
    Ok(Some((head, len)))
}

/// Answers a request for a file: `GET` or `HEAD` of the page, its bundle or its sources.
pub(super) async fn serve_file<S: AsyncWrite + Unpin>(
    stream: &mut S,
    web_dir: &Path,
    head: &Head,
) -> io::Result<()> {
    if head.method != "GET" && head.method != "HEAD" {
        return respond(stream, 405, "text/plain", &[], b"method not allowed").await;
    }
    match static_file(web_dir, &head.path) {
        Some((body, content_type)) => {
            let body = if head.method == "HEAD" { Vec::new() } else { body };
            respond(stream, 200, content_type, &[], &body).await
        }
        None if head.path == "/dist/bundle.js" => respond(
            stream,
            404,
            "text/plain",
            &[],
            b"dist/bundle.js is missing: run `npm ci && npm run build` in examples/web (or use examples/run-demo)",
        )
        .await,
        None => respond(stream, 404, "text/plain", &[], b"not found").await,
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

/// Writes a whole response (the connection closes after it) with `extra` header lines.
pub(super) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
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
