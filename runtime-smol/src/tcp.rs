//! ICE-TCP: a passive listener per TCP listen entry, RFC 4571 framing both ways, and a bounded
//! write queue per connection so that a slow reader cannot stall the worker.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use sfu_core::framing::{frame_header, FrameDecoder};
use sfu_core::runtime::CounterCells;
use sfu_core::{Protocol, Transmit};
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::{Async, Timer};
use tracing::{debug, trace};

use crate::bind::canonical;
use crate::clock;
use crate::worker::{Core, Spawn};

/// Connections one worker holds at most; more are refused and counted.
const MAX_CONNECTIONS: usize = 4096;
/// Bytes a connection may have queued for writing; frames beyond are dropped and counted.
const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// The kernel send buffer of a connection. Media that waits is stale, so this is kept small
/// (with [`MAX_QUEUED_BYTES`] it bounds how far a slow reader falls behind) yet above the
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
}

impl TcpAcceptor {
    /// Registers `listener` with the reactor.
    pub(crate) fn new(listener: TcpListener) -> io::Result<Self> {
        Ok(Self {
            listener: Async::new(listener)?,
        })
    }
}

/// A connection's key: (local address, peer address), as the core names them in transmits.
type Key = (SocketAddr, SocketAddr);

/// The open connections of a worker, by key, with what waits to be written to each.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    outboxes: HashMap<Key, Rc<Outbox>>,
}

/// Frames waiting to be written to one connection.
#[derive(Debug)]
struct Outbox {
    frames: RefCell<VecDeque<Vec<u8>>>,
    bytes: Cell<usize>,
    wake: Sender<()>,
    woken: Receiver<()>,
}

impl Connections {
    /// Queues a frame for its connection; drops and counts it if there is no such connection or
    /// its queue is full.
    pub(crate) fn send(&mut self, transmit: Transmit, counters: &CounterCells) {
        let Some(outbox) = self.outboxes.get(&(transmit.source, transmit.destination)) else {
            counters.tcp_frames_dropped_no_connection.inc();
            return;
        };
        let len = transmit.contents.len() + 2;
        if frame_header(transmit.contents.len()).is_none()
            || outbox.bytes.get() + len > MAX_QUEUED_BYTES
        {
            counters.tcp_frames_dropped_queue_full.inc();
            return;
        }
        outbox.bytes.set(outbox.bytes.get() + len);
        outbox.frames.borrow_mut().push_back(transmit.contents);
        counters.tcp_frames_sent.inc();
        // Full means a wake-up is already pending.
        let _ = outbox.wake.try_send(());
    }
}

/// Accepts connections until the worker stops, handing each to the executor as a task.
pub(crate) async fn accept_task(
    core: Rc<RefCell<Core>>,
    acceptor: TcpAcceptor,
    spawner: Sender<Spawn>,
) {
    loop {
        let (stream, _) = match acceptor.listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, for example: wait a little rather than spin.
                debug!(error = %e, "tcp accept failed");
                core.borrow().counters().tcp_accept_errors.inc();
                Timer::after(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some((key, outbox)) = register(&core, &stream) else {
            continue;
        };
        let task = connection(core.clone(), stream, key, outbox);
        if spawner.send(Box::pin(task)).await.is_err() {
            return;
        }
    }
}

/// Adds an accepted connection to the core's table, or refuses it.
fn register(core: &Rc<RefCell<Core>>, stream: &Async<TcpStream>) -> Option<(Key, Rc<Outbox>)> {
    let mut core = core.borrow_mut();
    let counters = core.counters();
    let addrs = stream.get_ref().local_addr().and_then(|local| {
        let peer = stream.get_ref().peer_addr()?;
        Ok((canonical(local), canonical(peer)))
    });
    let key = match addrs {
        Ok(key) if core.tcp.outboxes.len() < MAX_CONNECTIONS => key,
        _ => {
            counters.tcp_connections_refused.inc();
            return None;
        }
    };
    counters.tcp_connections_accepted.inc();
    let _ = stream.get_ref().set_nodelay(true);
    let _ = socket2::SockRef::from(stream.get_ref()).set_send_buffer_size(SEND_BUFFER);
    let (wake, woken) = channel::bounded(1);
    let outbox = Rc::new(Outbox {
        frames: RefCell::new(VecDeque::new()),
        bytes: Cell::new(0),
        wake,
        woken,
    });
    trace!(local = %key.0, peer = %key.1, "tcp connection");
    core.tcp.outboxes.insert(key, outbox.clone());
    Some((key, outbox))
}

/// How a connection ended.
#[derive(Debug, Clone, Copy)]
enum End {
    Closed,
    ReadError,
    Framing,
    WriteError,
}

/// Reads and writes one connection until either side ends it, then forgets it.
async fn connection(
    core: Rc<RefCell<Core>>,
    stream: Async<TcpStream>,
    key: Key,
    outbox: Rc<Outbox>,
) {
    let end = read_frames(&core, &stream, key)
        .or(write_frames(&outbox, &stream))
        .await;
    let mut core = core.borrow_mut();
    core.tcp.outboxes.remove(&key);
    let counters = core.counters();
    match end {
        End::Closed => counters.tcp_connections_closed.inc(),
        End::Framing => counters.tcp_dropped_malformed.inc(),
        End::ReadError | End::WriteError => counters.tcp_dropped_error.inc(),
    }
    debug!(peer = %key.1, ?end, "tcp connection closed");
}

/// Feeds every whole frame the peer sends to the core.
async fn read_frames(core: &Rc<RefCell<Core>>, stream: &Async<TcpStream>, key: Key) -> End {
    let (local, peer) = key;
    let mut decoder = FrameDecoder::new(core.borrow().max_datagram_size());
    let mut buf = vec![0u8; READ_BUFFER];
    let mut reader = stream;
    loop {
        let n = match reader.read(&mut buf).await {
            // A frame cut short by the end of the stream is broken framing too.
            Ok(0) if decoder.buffered() > 0 => return End::Framing,
            Ok(0) => return End::Closed,
            Ok(n) => n,
            Err(_) => return End::ReadError,
        };
        // The receive time, taken right after the read.
        let now = clock::now();
        decoder.extend(&buf[..n]);
        let mut core = core.borrow_mut();
        let end = loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    core.counters().tcp_frames_received.inc();
                    core.receive(now, Protocol::Tcp, peer, local, frame);
                }
                Ok(None) => break None,
                Err(_) => break Some(End::Framing),
            }
        };
        core.flush();
        if let Some(end) = end {
            return end;
        }
    }
}

/// Writes queued frames, several per write, with their RFC 4571 headers.
async fn write_frames(outbox: &Outbox, stream: &Async<TcpStream>) -> End {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    let mut writer = stream;
    loop {
        batch.clear();
        {
            let mut frames = outbox.frames.borrow_mut();
            while let Some(frame) = frames.front() {
                if !batch.is_empty() && batch.len() + frame.len() + 2 > WRITE_BATCH {
                    break;
                }
                if let Some(header) = frame_header(frame.len()) {
                    batch.extend_from_slice(&header);
                    batch.extend_from_slice(frame);
                }
                outbox.bytes.set(outbox.bytes.get() - frame.len() - 2);
                frames.pop_front();
            }
        }
        if batch.is_empty() {
            // The sender half lives in the outbox, so this only waits.
            let _ = outbox.woken.recv().await;
            continue;
        }
        if writer.write_all(&batch).await.is_err() {
            return End::WriteError;
        }
    }
}
