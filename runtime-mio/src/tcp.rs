//! A worker's passive ICE-TCP side: listeners and connections, RFC 4571 framing both ways,
//! partial reads and writes, a bounded outgoing queue per connection.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use sfu_core::framing::{frame_header, FrameDecoder};
use sfu_core::Transmit;

use crate::clock;
use crate::net::{canonical_addr, Bound};
use crate::TCP_QUEUE_LIMIT;
use sfu_core::runtime::CounterCells;

/// Tokens of listeners start here (UDP sockets sit below).
pub(crate) const LISTENER_BASE: usize = 1 << 10;
/// Tokens of connections start here.
const CONN_BASE: usize = 1 << 20;
/// Connections one worker holds at most; more are accepted and closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 4_096;
/// Reads (or accepts) per socket before the worker turns to other work.
const BUDGET: usize = 16;

/// A frame that arrived, as the core wants it.
pub(crate) struct Frame<'a> {
    pub(crate) now: Instant,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) contents: &'a [u8],
}

#[derive(Debug)]
struct Listener {
    listener: TcpListener,
    /// The address the core knows it by.
    local: SocketAddr,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    decoder: FrameDecoder,
    /// Framed bytes to write; `out[sent..]` is still to go.
    out: Vec<u8>,
    sent: usize,
}

/// Why a connection ends.
enum Close {
    /// The peer closed its side.
    Eof,
    /// A frame longer than allowed.
    Malformed,
    /// A read or write error (a reset, ...).
    Error,
}

/// All ICE-TCP state of a worker.
#[derive(Debug)]
pub(crate) struct TcpSide {
    listeners: Vec<Listener>,
    conns: HashMap<Token, Conn>,
    by_tuple: HashMap<(SocketAddr, SocketAddr), Token>,
    next_token: usize,
    max_frame: usize,
    scratch: Vec<u8>,
    /// Listeners and connections that may have more to read (mio is edge-triggered).
    ready: HashSet<Token>,
    /// Connections with bytes to write.
    dirty: HashSet<Token>,
}

impl TcpSide {
    pub(crate) fn new(max_frame: usize) -> Self {
        Self {
            listeners: Vec::new(),
            conns: HashMap::new(),
            by_tuple: HashMap::new(),
            next_token: CONN_BASE,
            max_frame,
            scratch: vec![0; 64 * 1024],
            ready: HashSet::new(),
            dirty: HashSet::new(),
        }
    }

    /// Adds a listening socket; returns its token.
    pub(crate) fn add_listener(&mut self, bound: Bound, registry: &Registry) -> io::Result<()> {
        let token = Token(LISTENER_BASE + self.listeners.len());
        let mut listener = TcpListener::from_std(bound.socket.into());
        registry.register(&mut listener, token, Interest::READABLE)?;
        self.listeners.push(Listener {
            listener,
            local: bound.local,
        });
        Ok(())
    }

    /// Whether `token` is one of ours.
    pub(crate) fn owns(token: Token) -> bool {
        token.0 >= LISTENER_BASE
    }

    /// Records readiness from a poll event.
    pub(crate) fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if readable {
            self.ready.insert(token);
        }
        if writable && self.conns.contains_key(&token) {
            self.dirty.insert(token);
        }
    }

    /// Whether some socket may still have data to read.
    pub(crate) fn pending(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Accepts and reads what the ready sockets have, within a budget each, handing every
    /// frame to `feed`.
    pub(crate) fn service(
        &mut self,
        registry: &Registry,
        counters: &CounterCells,
        mut feed: impl FnMut(Frame<'_>),
    ) {
        let ready: Vec<Token> = self.ready.drain().collect();
        for token in ready {
            let more = if token.0 < CONN_BASE {
                self.accept(token.0 - LISTENER_BASE, registry, counters)
            } else {
                self.read(token, registry, counters, &mut feed)
            };
            if more {
                self.ready.insert(token);
            }
        }
    }

    /// Queues `t` on the connection to its destination. Drops and counts when there is no
    /// such connection or its queue is full.
    pub(crate) fn queue(&mut self, t: &Transmit, counters: &CounterCells) {
        let Some(&token) = self.by_tuple.get(&(t.source, t.destination)) else {
            counters.tcp_frames_dropped_no_connection.inc();
            return;
        };
        let (Some(conn), Some(header)) =
            (self.conns.get_mut(&token), frame_header(t.contents.len()))
        else {
            counters.tcp_frames_dropped_no_connection.inc();
            return;
        };
        if conn.out.len() - conn.sent + 2 + t.contents.len() > TCP_QUEUE_LIMIT {
            counters.tcp_frames_dropped_queue_full.inc();
            return;
        }
        if conn.sent > 0 && conn.sent * 2 >= conn.out.len() {
            conn.out.drain(..conn.sent);
            conn.sent = 0;
        }
        conn.out.extend_from_slice(&header);
        conn.out.extend_from_slice(&t.contents);
        counters.tcp_frames_sent.inc();
        self.dirty.insert(token);
    }

    /// Writes what the connections have queued, as far as their sockets take it.
    pub(crate) fn flush(&mut self, registry: &Registry, counters: &CounterCells) {
        let dirty: Vec<Token> = self.dirty.drain().collect();
        for token in dirty {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            if let Err(close) = conn.write() {
                self.close(token, close, registry, counters);
            }
        }
    }

    fn accept(&mut self, index: usize, registry: &Registry, counters: &CounterCells) -> bool {
        for _ in 0..BUDGET {
            let Some(listener) = self.listeners.get(index) else {
                return false;
            };
            let local = listener.local;
            let (mut stream, peer) = match listener.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept failed");
                    counters.tcp_accept_errors.inc();
                    continue;
                }
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                counters.tcp_connections_refused.inc();
                continue;
            }
            let token = Token(self.next_token);
            self.next_token = self.next_token.checked_add(1).unwrap_or(CONN_BASE);
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                tracing::debug!(error = %e, "tcp register failed");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let peer = canonical_addr(peer);
            tracing::debug!(%peer, %local, "ice-tcp connection accepted");
            counters.tcp_connections_accepted.inc();
            if let Some(old) = self.by_tuple.insert((local, peer), token) {
                // The same peer address again: the old connection is dead.
                self.close(old, Close::Error, registry, counters);
                self.by_tuple.insert((local, peer), token);
            }
            self.conns.insert(
                token,
                Conn {
                    stream,
                    local,
                    peer,
                    decoder: FrameDecoder::new(self.max_frame),
                    out: Vec::new(),
                    sent: 0,
                },
            );
            // Whatever arrived before registration is reported by the first poll.
        }
        true
    }

    fn read(
        &mut self,
        token: Token,
        registry: &Registry,
        counters: &CounterCells,
        feed: &mut impl FnMut(Frame<'_>),
    ) -> bool {
        let Some(conn) = self.conns.get_mut(&token) else {
            return false;
        };
        let outcome = conn.read(&mut self.scratch, counters, feed);
        match outcome {
            Ok(more) => more,
            Err(close) => {
                self.close(token, close, registry, counters);
                false
            }
        }
    }

    fn close(&mut self, token: Token, close: Close, registry: &Registry, counters: &CounterCells) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        if self.by_tuple.get(&(conn.local, conn.peer)) == Some(&token) {
            self.by_tuple.remove(&(conn.local, conn.peer));
        }
        self.ready.remove(&token);
        self.dirty.remove(&token);
        let _ = registry.deregister(&mut conn.stream);
        let counter = match close {
            Close::Eof => &counters.tcp_connections_closed,
            Close::Malformed => &counters.tcp_dropped_malformed,
            Close::Error => &counters.tcp_dropped_error,
        };
        counter.inc();
        tracing::debug!(peer = %conn.peer, "ice-tcp connection closed");
    }
}

impl Conn {
    /// Reads within the budget; `Ok(true)` if there may be more.
    fn read(
        &mut self,
        scratch: &mut [u8],
        counters: &CounterCells,
        feed: &mut impl FnMut(Frame<'_>),
    ) -> Result<bool, Close> {
        for _ in 0..BUDGET {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Err(Close::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, peer = %self.peer, "ice-tcp read failed");
                    return Err(Close::Error);
                }
            };
            let now = clock::now();
            self.decoder.extend(&scratch[..n]);
            loop {
                match self.decoder.next_frame() {
                    Ok(Some(contents)) => {
                        counters.tcp_frames_received.inc();
                        feed(Frame {
                            now,
                            source: self.peer,
                            destination: self.local,
                            contents,
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, peer = %self.peer, "broken ice-tcp framing");
                        return Err(Close::Malformed);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Writes queued bytes until done or the socket is full.
    fn write(&mut self) -> Result<(), Close> {
        while self.sent < self.out.len() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(0) => return Err(Close::Error),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, peer = %self.peer, "ice-tcp write failed");
                    return Err(Close::Error);
                }
            }
        }
        self.out.clear();
        self.sent = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use mio::Poll;
    use sfu_core::Protocol;

    use super::*;
    use crate::{net, ListenOptions};

    #[test]
    fn a_slow_reader_fills_its_queue_then_frames_are_dropped_and_counted() {
        let poll = Poll::new().unwrap();
        let bound = net::bind(&ListenOptions::tcp(IpAddr::V4(Ipv4Addr::LOCALHOST)), 0).unwrap();
        let local = bound.local;
        let mut tcp = TcpSide::new(1500);
        tcp.add_listener(bound, poll.registry()).unwrap();
        let counters = CounterCells::default();
        let mut client = std::net::TcpStream::connect(local).unwrap();
        let peer = client.local_addr().unwrap();
        for _ in 0..100 {
            tcp.on_event(Token(LISTENER_BASE), true, false);
            tcp.service(poll.registry(), &counters, |_| {});
            if counters.tcp_connections_accepted.get() > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(tcp.conns.len(), 1);

        // The client never reads: kernel buffers fill, then the worker's queue, then drops.
        let t = Transmit {
            proto: Protocol::Tcp,
            source: local,
            destination: peer,
            contents: vec![7; 1000],
        };
        let mut queued = 0;
        while counters.tcp_frames_dropped_queue_full.get() == 0 {
            assert!(queued < 100_000, "the queue never filled");
            tcp.queue(&t, &counters);
            tcp.flush(poll.registry(), &counters);
            queued += 1;
        }
        let conn = tcp.conns.values().next().unwrap();
        assert!(conn.out.len() - conn.sent <= TCP_QUEUE_LIMIT);
        assert!(conn.out.len() - conn.sent > TCP_QUEUE_LIMIT - 1002);

        // The connection is intact and what it sent is well framed.
        let mut frame = [0u8; 1002];
        client.read_exact(&mut frame).unwrap();
        assert_eq!(&frame[..3], &[3, 232, 7]);

        // A transmit for a peer without a connection is dropped and counted.
        let stranger = Transmit {
            destination: "127.0.0.1:9".parse().unwrap(),
            ..t
        };
        tcp.queue(&stranger, &counters);
        assert_eq!(counters.tcp_frames_dropped_no_connection.get(), 1);
    }
}
