//! The signaling WebSocket at `/ws?room=NAME&peer=ID`: the upgrade, then one task that waits
//! for whichever comes first, a message from the browser, a notification for its peer, or the
//! silence deadline. Nothing wakes it otherwise.

use std::io;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::WebSocketStream;
use serde_json::json;
use smol::future::FutureExt;
use smol::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use smol::stream::StreamExt;
use smol::Timer;
use tracing::{info, warn};

use super::http::{query_param, respond, Head};
use super::server::{now, timed, Shared};
use super::signaling::PeerSession;

/// Longest accepted signaling message.
const MAX_MESSAGE: usize = 256 * 1024;

/// Runs the signaling WebSocket on `stream`, whose request head was `head`, followed by
/// `rest`. Returns when the socket closes; an error says why it ended early.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: Head,
    rest: Vec<u8>,
    shared: &Shared,
) -> io::Result<()> {
    let idle = shared.options.idle_timeout;
    let Some(key) = head.websocket_key.filter(|_| head.upgrade_websocket) else {
        let text = b"/ws is the signaling WebSocket: connect with a WebSocket client";
        return timed(idle, respond(&mut stream, 400, "text/plain", &[], text)).await;
    };
    let accept = derive_accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    timed(idle, async {
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await
    })
    .await?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config)).await;

    let room = query_param(&head.query, "room").unwrap_or_default();
    let peer = query_param(&head.query, "peer").unwrap_or_default();
    let mut session = match shared.signaling.connect(&room, &peer) {
        Ok(s) => s,
        Err(error) => {
            warn!(room, peer, %error, "peer refused");
            let text =
                json!({ "notification": true, "method": "error", "data": { "error": error } });
            let refusal = async {
                ws.send(Message::text(text.to_string())).await?;
                ws.close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "refused".into(),
                }))
                .await
            };
            let _ = timed(idle, async { refusal.await.map_err(ws_io) }).await;
            return Ok(());
        }
    };
    info!(room, peer, "signaling connected");
    let result = run_session(&mut ws, &mut session, shared).await;
    drop(session);
    info!(room, peer, "signaling closed");
    result
}

/// What woke a session.
enum Wake {
    Browser(Option<Result<Message, tungstenite::Error>>),
    Notification(Option<String>),
    Silence,
}

async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    session: &mut PeerSession,
    shared: &Shared,
) -> io::Result<()> {
    let idle = shared.options.idle_timeout;
    // A ping after a third of the silence allowed: browsers answer on their own, so only a
    // browser that is gone (or a client that never finishes a frame) stays silent to the end.
    let ping_after = idle / 3;
    let mut heard = now();
    let mut pinged = false;
    loop {
        let deadline = heard + if pinged { idle } else { ping_after };
        let wake = async { Wake::Browser(ws.next().await) }
            .or(async { Wake::Notification(session.notifications().recv().await.ok()) })
            .or(async {
                Timer::at(deadline).await;
                Wake::Silence
            })
            .await;
        shared.stats.count_websocket_wakeup();
        match wake {
            Wake::Browser(Some(Ok(message))) => {
                heard = now();
                pinged = false;
                if let Some(reply) = reply_to(message, session) {
                    send(ws, Message::text(reply), idle).await?;
                }
            }
            Wake::Browser(None) => return Ok(()),
            Wake::Browser(Some(Err(e))) => return Err(ws_io(e)),
            Wake::Notification(Some(text)) => send(ws, Message::text(text), idle).await?,
            Wake::Notification(None) => return Ok(()),
            Wake::Silence if pinged => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the browser went silent",
                ))
            }
            Wake::Silence => {
                pinged = true;
                send(ws, Message::Ping(Default::default()), idle).await?;
            }
        }
    }
}

/// The reply to a message from the browser, if it needs one.
fn reply_to(message: Message, session: &mut PeerSession) -> Option<String> {
    match message {
        // The room logic runs here, on the server's thread: its calls into the runtime are
        // short channel round trips to the workers.
        Message::Text(text) => Some(session.handle_text(text.as_str())),
        Message::Binary(_) => Some(
            json!({ "id": null, "ok": false, "error": "binary messages are not understood; send JSON text" })
                .to_string(),
        ),
        // Pings are answered, pongs and closes handled by the WebSocket layer.
        _ => None,
    }
}

/// Sends one message; a browser that does not take it within `limit` is gone.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    message: Message,
    limit: Duration,
) -> io::Result<()> {
    timed(limit, async {
        match ws.send(message).await {
            // The browser closed: the next read ends the session.
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
            other => other.map_err(ws_io),
        }
    })
    .await
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
