//! The demo's HTTP server: one thread runs a smol executor with one task per connection, so an
//! idle connection costs a socket and a little memory, never a thread or a wake-up.
//!
//! Every connection has a deadline for its whole request (the TLS handshake and the request
//! head together), a bound on each write, and, once it is the signaling WebSocket, a limit on
//! how long the browser may stay silent. Past [`ServerOptions::max_connections`] a new
//! connection is answered `503 Service Unavailable` and closed. A connection that fails or
//! panics ends alone; an `accept` that fails (say, out of file descriptors) is retried after a
//! pause instead of at once.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_rustls::TlsAcceptor;
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::{Async, LocalExecutor, Timer};
use tracing::{debug, warn};

use super::http::{read_head, respond, serve_file, Head, Request};
use super::signaling::{FfmpegRefusal, Signaling};
use super::tls::TlsIdentity;
use super::websocket;

/// Connections served at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default time for a whole request (TLS handshake and head).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a signaling WebSocket may stay silent (it is pinged after a third of it).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Refusals (503 answers) in progress at once; connections past that are closed unanswered.
const MAX_REFUSING: usize = 64;
/// The longest a refusal may take.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// The pause after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the demo's HTTP server behaves.
#[derive(Clone)]
pub struct ServerOptions {
    /// The directory with `index.html` and `dist/bundle.js`.
    pub web_dir: PathBuf,
    /// Serve HTTPS (and WSS) with this identity instead of plain HTTP.
    pub tls: Option<TlsIdentity>,
    /// Connections served at once; more are refused with a 503.
    pub max_connections: usize,
    /// Time for a whole request: the TLS handshake and the request head together.
    pub request_timeout: Duration,
    /// Time a signaling WebSocket may stay silent; also the bound on any one write.
    pub idle_timeout: Duration,
}

impl ServerOptions {
    /// Plain HTTP from `web_dir` with the default limits.
    pub fn new(web_dir: PathBuf) -> Self {
        Self {
            web_dir,
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The server's counters, readable from any thread while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    open: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    accept_failures: AtomicU64,
    websocket_wakeups: AtomicU64,
}

/// A snapshot of [`ServerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounts {
    /// Connections being served now (refusals not included).
    pub open: usize,
    /// Connections accepted, refused ones included.
    pub accepted: u64,
    /// Connections refused because `max_connections` were open.
    pub refused: u64,
    /// Connections closed by a timeout: request, write or WebSocket silence.
    pub timed_out: u64,
    /// Connections that ended with an error (bad request, reset, TLS failure, panic).
    pub failed: u64,
    /// Failed `accept` calls.
    pub accept_failures: u64,
    /// Times a signaling WebSocket task woke up (a message, a notification or a deadline).
    pub websocket_wakeups: u64,
}

impl ServerStats {
    /// The counters now.
    pub fn counts(&self) -> ServerCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerCounts {
            open: self.open.load(Ordering::Relaxed),
            accepted: get(&self.accepted),
            refused: get(&self.refused),
            timed_out: get(&self.timed_out),
            failed: get(&self.failed),
            accept_failures: get(&self.accept_failures),
            websocket_wakeups: get(&self.websocket_wakeups),
        }
    }

    pub(super) fn count_websocket_wakeup(&self) {
        self.websocket_wakeups.fetch_add(1, Ordering::Relaxed);
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The page, its bundle and the signaling WebSocket on one listening socket.
pub struct HttpServer {
    listener: TcpListener,
    signaling: Signaling,
    options: ServerOptions,
    stats: Arc<ServerStats>,
}

impl HttpServer {
    /// A server for `listener`; nothing happens until [`HttpServer::run`].
    pub fn new(listener: TcpListener, signaling: Signaling, options: ServerOptions) -> Self {
        Self {
            listener,
            signaling,
            options,
            stats: Arc::default(),
        }
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// Serves on the calling thread, forever. Fails only if the listener cannot be registered
    /// with the event loop.
    pub fn run(self) -> io::Result<()> {
        let listener = Async::new(self.listener)?;
        let shared = Rc::new(Shared {
            acceptor: self
                .options
                .tls
                .as_ref()
                .map(|t| TlsAcceptor::from(t.config.clone())),
            signaling: self.signaling,
            options: self.options,
            stats: self.stats,
            refusing: AtomicUsize::new(0),
        });
        let executor = LocalExecutor::new();
        smol::block_on(executor.run(accept_loop(&executor, listener, shared)))
    }
}

/// Serves `listener` with `options` on the calling thread, forever (see [`HttpServer`]).
pub fn serve(
    listener: TcpListener,
    signaling: Signaling,
    options: ServerOptions,
) -> io::Result<()> {
    HttpServer::new(listener, signaling, options).run()
}

/// What every connection task reads.
pub(super) struct Shared {
    pub(super) signaling: Signaling,
    pub(super) options: ServerOptions,
    pub(super) stats: Arc<ServerStats>,
    acceptor: Option<TlsAcceptor>,
    refusing: AtomicUsize,
}

/// The server's clock, for deadlines.
pub(super) fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // The server owns its clock; the core is not here.
    Instant::now()
}

/// `work`, or a `TimedOut` error once `limit` has passed.
pub(super) async fn timed<T>(
    limit: Duration,
    work: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    until(now() + limit, work).await
}

/// `work`, or a `TimedOut` error at `deadline`.
async fn until<T>(deadline: Instant, work: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    work.or(async {
        Timer::at(deadline).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
    })
    .await
}

async fn accept_loop(
    executor: &LocalExecutor<'_>,
    listener: Async<TcpListener>,
    shared: Rc<Shared>,
) -> io::Result<()> {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                ServerStats::count(&shared.stats.accept_failures);
                warn!(error = %e, "accept failed; pausing");
                Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        ServerStats::count(&shared.stats.accepted);
        if shared.stats.open.load(Ordering::Relaxed) >= shared.options.max_connections {
            ServerStats::count(&shared.stats.refused);
            if shared.refusing.load(Ordering::Relaxed) < MAX_REFUSING {
                executor.spawn(refuse(shared.clone(), stream)).detach();
            }
            debug!(%remote, "connection refused: at the connection limit");
            continue;
        }
        executor
            .spawn(connection(shared.clone(), stream, remote))
            .detach();
    }
}

/// Holds one count of a gauge while it lives, so that a task that ends, even by a panic,
/// gives its place back.
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(shared: Rc<Shared>, tcp: Async<TcpStream>, remote: SocketAddr) {
    let _open = Held::new(&shared.stats.open);
    // A panic in this connection's work (the room logic included) ends this connection only.
    let result = AssertUnwindSafe(serve_connection(&shared, tcp))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the connection's task panicked")));
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            ServerStats::count(&shared.stats.timed_out);
            debug!(%remote, error = %e, "connection timed out");
        }
        Err(e) => {
            ServerStats::count(&shared.stats.failed);
            debug!(%remote, error = %e, "connection failed");
        }
    }
}

/// Takes a connection from accept to its end: the TLS handshake on the HTTPS port, then one
/// request and its answer (or the WebSocket session).
async fn serve_connection(shared: &Shared, tcp: Async<TcpStream>) -> io::Result<()> {
    let _ = tcp.get_ref().set_nodelay(true);
    let deadline = now() + shared.options.request_timeout;
    let Some(acceptor) = &shared.acceptor else {
        return exchange(tcp, shared, deadline).await;
    };
    match until(deadline, first_byte(&tcp)).await? {
        Some(TLS_HANDSHAKE) => {
            let tls = until(deadline, acceptor.accept(tcp)).await?;
            exchange(tls, shared, deadline).await
        }
        Some(_) => plain_on_https(tcp, deadline).await,
        None => Ok(()),
    }
}

/// The first byte of a TLS handshake record; plain HTTP starts with a letter.
const TLS_HANDSHAKE: u8 = 0x16;

/// The first byte a client sends, left unread (`None`: it closed without sending any).
async fn first_byte(tcp: &Async<TcpStream>) -> io::Result<Option<u8>> {
    let mut first = [0u8; 1];
    let n = tcp.peek(&mut first).await?;
    Ok((n == 1).then_some(first[0]))
}

/// One request on an accepted (and, for HTTPS, decrypted) stream, and its answer: a file, an
/// error, or the signaling WebSocket until it closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: &Shared,
    deadline: Instant,
) -> io::Result<()> {
    let options = &shared.options;
    let request = match until(deadline, read_head(&mut stream)).await {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            let text = format!(
                "the request did not arrive within {} s",
                options.request_timeout.as_secs_f32()
            );
            let answer = respond(&mut stream, 408, "text/plain", &[], text.as_bytes());
            let _ = timed(REFUSAL_TIME, answer).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    match request {
        Request::Closed => Ok(()),
        Request::Bad(status, text) => {
            let answer = respond(&mut stream, status, "text/plain", &[], text.as_bytes());
            timed(options.idle_timeout, answer).await?;
            Err(io::Error::new(io::ErrorKind::InvalidData, text))
        }
        Request::Head(head, rest) if head.path == "/ws" => {
            websocket::serve(stream, head, rest, shared).await
        }
        Request::Head(head, _) if head.path.starts_with("/rooms/") => {
            timed(options.idle_timeout, async {
                rooms_route(&mut stream, &shared.signaling, &head).await?;
                stream.close().await
            })
            .await
        }
        Request::Head(head, _) => {
            timed(options.idle_timeout, async {
                serve_file(&mut stream, &options.web_dir, &head).await?;
                stream.close().await
            })
            .await
        }
    }
}

/// Answers `/rooms/…`: `POST /rooms/ROOM/ffmpeg` makes an ffmpeg publisher in an open room
/// and answers the ffmpeg command line that feeds it (its peer id in `X-Peer-Id`);
/// `DELETE /rooms/ROOM/ffmpeg/PEER` closes one.
async fn rooms_route<S: AsyncWrite + Unpin>(
    stream: &mut S,
    signaling: &Signaling,
    head: &Head,
) -> io::Result<()> {
    let parts: Vec<&str> = head.path.split('/').skip(2).collect();
    let text = |s: &str| format!("{s}\n").into_bytes();
    match (head.method.as_str(), parts.as_slice()) {
        ("POST", [room, "ffmpeg"]) => match signaling.publish_ffmpeg(room) {
            Ok(p) => {
                let extra = [("X-Peer-Id", p.peer_id.as_str())];
                respond(stream, 200, "text/plain", &extra, &text(&p.command)).await
            }
            Err(e) => {
                let status = match e {
                    FfmpegRefusal::NoRoom(_) => 404,
                    FfmpegRefusal::Limit(_) => 429,
                    FfmpegRefusal::Failed(_) => 500,
                };
                respond(stream, status, "text/plain", &[], &text(&e.to_string())).await
            }
        },
        ("DELETE", [room, "ffmpeg", peer]) => match signaling.close_ffmpeg(room, peer) {
            Ok(()) => respond(stream, 200, "text/plain", &[], b"closed\n").await,
            Err(e) => respond(stream, 404, "text/plain", &[], &text(&e)).await,
        },
        (_, [_, "ffmpeg"]) | (_, [_, "ffmpeg", _]) => {
            let allow = [("Allow", "POST, DELETE")];
            respond(stream, 405, "text/plain", &allow, b"method not allowed\n").await
        }
        _ => respond(stream, 404, "text/plain", &[], b"not found\n").await,
    }
}

/// Tells a plain HTTP client on the HTTPS port to use HTTPS.
async fn plain_on_https(mut tcp: Async<TcpStream>, deadline: Instant) -> io::Result<()> {
    let text = b"this server speaks HTTPS: open the page with https://";
    until(deadline, async {
        read_head(&mut tcp).await?;
        respond(&mut tcp, 400, "text/plain", &[], text).await?;
        tcp.close().await
    })
    .await?;
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "plain HTTP on the HTTPS port",
    ))
}

/// Answers a connection past the limit with a 503 and closes it.
async fn refuse(shared: Rc<Shared>, tcp: Async<TcpStream>) {
    let _refusing = Held::new(&shared.refusing);
    let text = format!(
        "the demo server is serving its limit of {} connections; try again shortly",
        shared.options.max_connections
    );
    let limit = shared.options.request_timeout.min(REFUSAL_TIME);
    let _ = timed(limit, async {
        match &shared.acceptor {
            None => answer_refusal(tcp, &text).await,
            Some(acceptor) => answer_refusal(acceptor.accept(tcp).await?, &text).await,
        }
    })
    .await;
}

async fn answer_refusal<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    text: &str,
) -> io::Result<()> {
    let extra = [("Retry-After", "5")];
    respond(&mut stream, 503, "text/plain", &extra, text.as_bytes()).await?;
    stream.close().await?;
    // Read what the client sent, so that closing does not reset the connection before the
    // client has read the answer.
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
