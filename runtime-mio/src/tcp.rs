//! A worker's passive ICE-TCP sockets: listeners and connection streams on the worker's poll.
//! Which connection is which, the framing and the queues are the driver's
//! ([`sfu_core::runtime::TcpTable`]).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use sfu_core::runtime::addr::canonical;
use sfu_core::runtime::tcp::Close;
use sfu_core::runtime::{ConnId, Driver};

use crate::clock;
use crate::net::Bound;

/// Tokens of listeners start here (UDP sockets sit below).
pub(crate) const LISTENER_BASE: usize = 1 << 10;
/// Tokens of connections start here.
const CONN_BASE: usize = 1 << 20;
/// Reads (or accepts) per socket before the worker turns to other work.
const BUDGET: usize = 16;
/// The kernel send buffer of a connection. Media that waits is stale, so this is kept small
/// (with the driver's queue limit it bounds how far a slow reader falls behind) yet above the
/// bandwidth-delay product of a few Mbit/s at 100 ms.
const SEND_BUFFER: usize = 128 * 1024;
/// How long a listener rests after `accept` failed (out of file descriptors, say), so the
/// worker does not spin on a connection it cannot take.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct Listener {
    listener: TcpListener,
    /// The address the core knows it by.
    local: SocketAddr,
    /// `accept` failed: the listener is tried again then.
    retry_at: Option<Instant>,
}

/// The ICE-TCP sockets of a worker.
#[derive(Debug)]
pub(crate) struct TcpSide {
    listeners: Vec<Listener>,
    streams: HashMap<Token, (ConnId, TcpStream)>,
    tokens: HashMap<ConnId, Token>,
    next_token: usize,
    scratch: Vec<u8>,
    /// Listeners and connections that may have more to read (mio is edge-triggered).
    ready: HashSet<Token>,
    /// Connections with bytes to write.
    dirty: Vec<ConnId>,
}

impl TcpSide {
    pub(crate) fn new() -> Self {
        Self {
            listeners: Vec::new(),
            streams: HashMap::new(),
            tokens: HashMap::new(),
            next_token: CONN_BASE,
            scratch: vec![0; 64 * 1024],
            ready: HashSet::new(),
            dirty: Vec::new(),
        }
    }

    /// Adds a listening socket.
    pub(crate) fn add_listener(&mut self, bound: Bound, registry: &Registry) -> io::Result<()> {
        let token = Token(LISTENER_BASE + self.listeners.len());
        let mut listener = TcpListener::from_std(bound.socket.into());
        registry.register(&mut listener, token, Interest::READABLE)?;
        self.listeners.push(Listener {
            listener,
            local: bound.addrs.local,
            retry_at: None,
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
        if let (true, Some((id, _))) = (writable, self.streams.get(&token)) {
            self.dirty.push(*id);
        }
    }

    /// Whether some socket may still have data to read.
    pub(crate) fn pending(&self) -> bool {
        !self.ready.is_empty()
    }

    /// When a resting listener is to be tried again (see [`ACCEPT_BACKOFF`]).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.listeners.iter().filter_map(|l| l.retry_at).min()
    }

    /// Ends the connections past their timeouts (see [`Driver::tcp_expire`]) and tries resting
    /// listeners again once their pause is over.
    pub(crate) fn housekeeping(&mut self, now: Instant, registry: &Registry, driver: &mut Driver) {
        let mut ended = Vec::new();
        driver.tcp_expire(now, &mut ended);
        for id in ended {
            self.close(id, Some(Close::Error), registry, driver);
        }
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.retry_at.is_some_and(|at| at <= now) {
                l.retry_at = None;
                self.ready.insert(Token(LISTENER_BASE + i));
            }
        }
    }

    /// Accepts and reads what the ready sockets have, within a budget each, into the driver.
    pub(crate) fn service(&mut self, registry: &Registry, driver: &mut Driver) {
        let ready: Vec<Token> = self.ready.drain().collect();
        for token in ready {
            let more = if token.0 < CONN_BASE {
                self.accept(token.0 - LISTENER_BASE, registry, driver)
            } else {
                self.read(token, registry, driver)
            };
            if more {
                self.ready.insert(token);
            }
        }
    }

    /// Writes what the driver queued, as far as the sockets take it.
    pub(crate) fn flush(&mut self, registry: &Registry, driver: &mut Driver) {
        driver.tcp().take_dirty(&mut self.dirty);
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            if let Err(close) = self.write(id, driver) {
                self.close(id, Some(close), registry, driver);
            }
        }
        self.dirty = dirty;
    }

    fn accept(&mut self, index: usize, registry: &Registry, driver: &mut Driver) -> bool {
        for _ in 0..BUDGET {
            let Some(listener) = self.listeners.get_mut(index) else {
                return false;
            };
            if listener.retry_at.is_some() {
                return false;
            }
            let local = listener.local;
            let (mut stream, peer) = match listener.listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Rest rather than spin; `housekeeping` tries the listener again.
                    tracing::debug!(error = %e, "tcp accept failed");
                    driver.counters().tcp_accept_errors.inc();
                    listener.retry_at = Some(clock::now() + ACCEPT_BACKOFF);
                    return false;
                }
            };
            let Some(opened) = driver.tcp_open(local, canonical(peer), clock::now()) else {
                continue;
            };
            let id = opened.id;
            for ended in opened.ended.into_iter().flatten() {
                self.close(ended, None, registry, driver);
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            if let Err(e) =
                registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                tracing::debug!(error = %e, "tcp register failed");
                driver.tcp_closed(id, Some(Close::Error));
                continue;
            }
            let _ = stream.set_nodelay(true);
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
            self.streams.insert(token, (id, stream));
            self.tokens.insert(id, token);
            // Whatever arrived before registration is reported by the first poll.
        }
        true
    }

    /// Reads within the budget; true if there may be more.
    fn read(&mut self, token: Token, registry: &Registry, driver: &mut Driver) -> bool {
        let Some((id, stream)) = self.streams.get_mut(&token) else {
            return false;
        };
        let id = *id;
        let mut end = None;
        for _ in 0..BUDGET {
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    end = Some(None);
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "ice-tcp read failed");
                    end = Some(Some(Close::Error));
                    break;
                }
            };
            if let Err(close) = driver.tcp_received(id, clock::now(), &self.scratch[..n]) {
                end = Some(Some(close));
                break;
            }
        }
        match end {
            Some(close) => {
                self.close(id, close, registry, driver);
                false
            }
            None => true,
        }
    }

    /// Writes `id`'s queued bytes until done or the socket is full.
    fn write(&mut self, id: ConnId, driver: &mut Driver) -> Result<(), Close> {
        let Some((_, stream)) = self.tokens.get(&id).and_then(|t| self.streams.get_mut(t)) else {
            return Ok(());
        };
        loop {
            let Some(unsent) = driver.tcp().unsent(id).filter(|u| !u.is_empty()) else {
                return Ok(());
            };
            match stream.write(unsent) {
                Ok(0) => return Err(Close::Error),
                Ok(n) => driver.tcp().sent(id, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "ice-tcp write failed");
                    return Err(Close::Error);
                }
            }
        }
    }

    /// Closes `id`'s socket; the driver counts why (`None`: the peer closed its side).
    fn close(
        &mut self,
        id: ConnId,
        close: Option<Close>,
        registry: &Registry,
        driver: &mut Driver,
    ) {
        driver.tcp_closed(id, close);
        let Some(token) = self.tokens.remove(&id) else {
            return;
        };
        self.ready.remove(&token);
        if let Some((_, mut stream)) = self.streams.remove(&token) {
            let _ = registry.deregister(&mut stream);
        }
    }
}
