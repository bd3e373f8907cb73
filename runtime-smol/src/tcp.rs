//! ICE-TCP sockets: a passive listener per TCP listen entry and a task per connection. Which
//! connection is which, the framing and the queues are the driver's
//! ([`sfu_core::runtime::TcpTable`]); a connection's task only reads, writes and waits.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use sfu_core::runtime::addr::canonical;
use sfu_core::runtime::tcp::Close;
use sfu_core::runtime::ConnId;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer};
use tracing::debug;

use crate::clock;
use crate::worker::{Core, Spawn};

/// The kernel send buffer of a connection. Media that waits is stale, so this is kept small
/// (with the driver's queue limit it bounds how far a slow reader falls behind) yet above the
/// bandwidth-delay product of a few Mbit/s at 100 ms.
const SEND_BUFFER: usize = 128 * 1024;
/// Bytes gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;
/// Bytes read at once.
const READ_BUFFER: usize = 16 * 1024;

/// A listening socket of a worker.
#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    listener: Async<TcpListener>,
    /// The address the core knows it by.
    local: SocketAddr,
}

impl TcpAcceptor {
    /// Registers `listener` with the reactor.
    pub(crate) fn new(listener: TcpListener, local: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            listener: Async::new(listener)?,
            local,
        })
    }
}

/// How long accepting rests after `accept` failed (out of file descriptors, say), so the worker
/// does not spin on a connection it cannot take.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until the worker stops, handing each to the executor as a task.
pub(crate) async fn accept_task(
    core: Rc<RefCell<Core>>,
    acceptor: TcpAcceptor,
    spawner: Sender<Spawn>,
) {
    loop {
        let (stream, peer) = match acceptor.listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, for example: wait a little rather than spin.
                debug!(error = %e, "tcp accept failed");
                core.borrow().driver.counters().tcp_accept_errors.inc();
                Timer::after(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some((id, woken)) = core.borrow_mut().open(acceptor.local, canonical(peer)) else {
            continue;
        };
        let _ = stream.get_ref().set_nodelay(true);
        let _ = socket2::SockRef::from(stream.get_ref()).set_send_buffer_size(SEND_BUFFER);
        let task = connection(core.clone(), stream, id, woken);
        if spawner.send(Box::pin(task)).await.is_err() {
            return;
        }
    }
}

/// Reads and writes one connection until either side ends it (or a newer connection from the
/// same address pair replaces it), then closes it in the driver, which counts why.
async fn connection(
    core: Rc<RefCell<Core>>,
    stream: Async<TcpStream>,
    id: ConnId,
    woken: Receiver<()>,
) {
    let end = read_frames(&core, &stream, id)
        .or(write_frames(&core, &stream, id, woken))
        .await;
    core.borrow_mut().closed(id, end);
}

/// Feeds what the peer sends to the driver; how the connection ended (`None`: the peer closed
/// its side).
async fn read_frames(
    core: &Rc<RefCell<Core>>,
    stream: &Async<TcpStream>,
    id: ConnId,
) -> Option<Close> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut reader = stream;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) => return None,
            Ok(n) => n,
            Err(_) => return Some(Close::Error),
        };
        // The receive time, taken right after the read.
        let now = clock::now();
        let mut core = core.borrow_mut();
        let result = core.driver.tcp_received(id, now, &buf[..n]);
        core.flush();
        if let Err(close) = result {
            return Some(close);
        }
    }
}

/// Writes what the driver queued for `id`, several frames per write, until the connection is
/// closed or replaced (its wake channel closes).
async fn write_frames(
    core: &Rc<RefCell<Core>>,
    stream: &Async<TcpStream>,
    id: ConnId,
    woken: Receiver<()>,
) -> Option<Close> {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut writer = stream;
    loop {
        batch.clear();
        {
            let mut core = core.borrow_mut();
            let tcp = core.driver.tcp();
            // Gone: closed by its reader, or replaced.
            let Some(unsent) = tcp.unsent(id) else {
                return Some(Close::Error);
            };
            let n = unsent.len().min(WRITE_BATCH);
            batch.extend_from_slice(&unsent[..n]);
            tcp.sent(id, n);
        }
        if batch.is_empty() {
            // Closed when the connection is replaced or the worker stops.
            if woken.recv().await.is_err() {
                return Some(Close::Error);
            }
            continue;
        }
        if writer.write_all(&batch).await.is_err() {
            return Some(Close::Error);
        }
    }
}
