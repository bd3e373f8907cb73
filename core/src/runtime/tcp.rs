//! A worker's ICE-TCP connections without their sockets: which connection carries which
//! (local, peer) pair, RFC 4571 framing both ways, and a bounded outgoing queue per connection.
//!
//! The runtime owns the streams, keyed by the [`ConnId`] that [`TcpTable::open`] hands out; it
//! passes what it reads to [`Driver::tcp_received`](super::Driver::tcp_received), writes what
//! [`TcpTable::unsent`] holds and reports it with [`TcpTable::sent`]. Ids are never reused, so
//! a connection that was replaced (the same address pair again) or closed cannot touch its
//! successor's state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::CounterCells;
use crate::framing::{frame_header, FrameDecoder};
use crate::Transmit;

/// Outgoing bytes an ICE-TCP connection may have queued; a frame that would exceed it is
/// dropped and counted (a slow reader cannot make the worker buffer without bound).
pub const TCP_QUEUE_LIMIT: usize = 256 * 1024;

/// Connections one worker holds at most. When it holds this many, a new connection replaces
/// the oldest one without a valid ICE binding, and is refused (counted) when every one has.
pub const MAX_TCP_CONNECTIONS: usize = 4_096;

/// A connection that has not carried a valid ICE binding (the Sfu learned its path) this long
/// after it was accepted is closed: an outsider's idle connections cannot pile up.
pub const TCP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection with a valid ICE binding that carries no frame for this long is closed
/// (browsers check ICE consent every few seconds).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often connections are checked against the timeouts.
pub const TCP_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// One ICE-TCP connection of a worker. Never reused within a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id as a number (for a poll token, say).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The peer closed its side between frames.
    Eof,
    /// The peer broke the framing: a frame longer than allowed, or the stream ended inside a
    /// frame.
    Malformed,
    /// A read or write failed (a reset, ...), or a newer connection took its address pair.
    Error,
}

#[derive(Debug)]
struct Conn {
    local: SocketAddr,
    peer: SocketAddr,
    decoder: FrameDecoder,
    /// Framed bytes to write; `out[sent..]` is still to go.
    out: Vec<u8>,
    sent: usize,
    /// Listed in `dirty` already.
    dirty: bool,
    opened: Instant,
    /// When the last frame arrived.
    last_frame: Instant,
    /// The Sfu learned the connection's path from a valid ICE binding request.
    authenticated: bool,
}

/// A connection [`TcpTable::open`] made, and the connections it ended (their sockets are to be
/// closed): the one it replaced on the same address pair, and the one it evicted from a full
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The new connection.
    pub id: ConnId,
    /// Connections ended to make way for it.
    pub ended: [Option<ConnId>; 2],
}

/// The ICE-TCP connections of one worker.
#[derive(Debug)]
pub struct TcpTable {
    conns: HashMap<ConnId, Conn>,
    by_pair: HashMap<(SocketAddr, SocketAddr), ConnId>,
    next: u64,
    max_frame: usize,
    /// Connections with newly queued bytes.
    dirty: Vec<ConnId>,
}

impl TcpTable {
    /// No connections; frames longer than `max_frame` break a connection.
    pub fn new(max_frame: usize) -> Self {
        Self {
            conns: HashMap::new(),
            by_pair: HashMap::new(),
            next: 0,
            max_frame,
            dirty: Vec::new(),
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A connection accepted at `now` on `local` from `peer`. A connection that had the same
    /// pair is dead: it is forgotten and counted. When the worker holds
    /// [`MAX_TCP_CONNECTIONS`], the oldest connection without a valid ICE binding makes room
    /// (counted in `tcp_evicted`); `None` (counted) when every one has a binding. The ended
    /// connections come back in [`Opened::ended`] so their sockets can be closed.
    pub fn open(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
        now: Instant,
        counters: &CounterCells,
    ) -> Option<Opened> {
        let mut evicted = None;
        if self.conns.len() >= MAX_TCP_CONNECTIONS {
            let oldest = self
                .conns
                .iter()
                .filter(|(_, c)| !c.authenticated)
                .min_by_key(|(id, _)| **id)
                .map(|(id, _)| *id);
            let Some(oldest) = oldest else {
                counters.tcp_connections_refused.inc();
                return None;
            };
            self.forget(oldest);
            counters.tcp_evicted.inc();
            evicted = Some(oldest);
        }
        let id = ConnId(self.next);
        self.next += 1;
        counters.tcp_connections_accepted.inc();
        let old = self.by_pair.insert((local, peer), id);
        if let Some(old) = old {
            self.close(old, Close::Error, counters);
            self.by_pair.insert((local, peer), id);
        }
        let conn = Conn {
            local,
            peer,
            decoder: FrameDecoder::new(self.max_frame),
            out: Vec::new(),
            sent: 0,
            dirty: false,
            opened: now,
            last_frame: now,
            authenticated: false,
        };
        self.conns.insert(id, conn);
        tracing::debug!(%peer, %local, "ice-tcp connection accepted");
        Some(Opened {
            id,
            ended: [old, evicted],
        })
    }

    /// Connection `id` carried a valid ICE binding: it is kept until idle, and never evicted.
    pub fn authenticate(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.authenticated = true;
        }
    }

    /// Whether `id` carried a valid ICE binding.
    pub fn is_authenticated(&self, id: ConnId) -> bool {
        self.conns.get(&id).is_some_and(|c| c.authenticated)
    }

    /// The (local, peer) pair of `id`.
    pub fn pair(&self, id: ConnId) -> Option<(SocketAddr, SocketAddr)> {
        self.conns.get(&id).map(|c| (c.local, c.peer))
    }

    /// Closes the connections past their timeout at `now` (counted in `tcp_timeouts`) and adds
    /// their ids to `ended`, so their sockets can be closed.
    pub fn expire(&mut self, now: Instant, counters: &CounterCells, ended: &mut Vec<ConnId>) {
        let first = ended.len();
        ended.extend(self.conns.iter().filter_map(|(id, c)| {
            let expired = if c.authenticated {
                now.saturating_duration_since(c.last_frame) >= TCP_IDLE_TIMEOUT
            } else {
                now.saturating_duration_since(c.opened) >= TCP_HANDSHAKE_TIMEOUT
            };
            expired.then_some(*id)
        }));
        for &id in &ended[first..] {
            self.forget(id);
            counters.tcp_timeouts.inc();
            tracing::debug!(?id, "ice-tcp connection timed out");
        }
    }

    /// Removes `id` from the tables (uncounted).
    fn forget(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if self.by_pair.get(&(conn.local, conn.peer)) == Some(&id) {
            self.by_pair.remove(&(conn.local, conn.peer));
        }
        Some(conn)
    }

    /// Whether `id` is open.
    pub fn contains(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// Feeds bytes read from `id`, handing each whole frame to `frame` with the connection's
    /// peer and local address. Broken framing closes the connection (counted) and is returned.
    pub fn received(
        &mut self,
        id: ConnId,
        bytes: &[u8],
        now: Instant,
        counters: &CounterCells,
        mut frame: impl FnMut(SocketAddr, SocketAddr, &[u8]),
    ) -> Result<(), Close> {
        let Some(conn) = self.conns.get_mut(&id) else {
            return Err(Close::Error);
        };
        conn.decoder.extend(bytes);
        loop {
            match conn.decoder.next_frame() {
                Ok(Some(contents)) => {
                    counters.tcp_frames_received.inc();
                    conn.last_frame = now;
                    frame(conn.peer, conn.local, contents);
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::debug!(error = %e, peer = %conn.peer, "broken ice-tcp framing");
                    self.close(id, Close::Malformed, counters);
                    return Err(Close::Malformed);
                }
            }
        }
    }

    /// The peer closed its side of `id`: a clean close between frames, broken framing inside
    /// one. Closes the connection and returns which it was.
    pub fn end_of_stream(&mut self, id: ConnId, counters: &CounterCells) -> Close {
        let inside_a_frame = self
            .conns
            .get(&id)
            .is_some_and(|c| c.decoder.buffered() > 0);
        let close = if inside_a_frame {
            Close::Malformed
        } else {
            Close::Eof
        };
        self.close(id, close, counters);
        close
    }

    /// Forgets `id` and counts why; nothing if it is already gone (a replaced connection's
    /// socket failing later counts nothing and touches nothing of its successor).
    pub fn close(&mut self, id: ConnId, close: Close, counters: &CounterCells) {
        let Some(conn) = self.forget(id) else {
            return;
        };
        let counter = match close {
            Close::Eof => &counters.tcp_connections_closed,
            Close::Malformed => &counters.tcp_dropped_malformed,
            Close::Error => &counters.tcp_dropped_error,
        };
        counter.inc();
        tracing::debug!(peer = %conn.peer, ?close, "ice-tcp connection closed");
    }

    /// Frames `t` onto the queue of the connection to its destination. Drops and counts it when
    /// there is no such connection or the queue would pass [`TCP_QUEUE_LIMIT`].
    pub fn queue(&mut self, t: &Transmit, counters: &CounterCells) {
        for datagram in t.datagrams() {
            self.queue_frame((t.source, t.destination), datagram, counters);
        }
    }

    /// Frames one datagram onto the connection of `pair`.
    fn queue_frame(
        &mut self,
        pair: (SocketAddr, SocketAddr),
        datagram: &[u8],
        counters: &CounterCells,
    ) {
        let id = self.by_pair.get(&pair);
        let (Some(conn), Some(header)) = (
            id.and_then(|id| self.conns.get_mut(id)),
            frame_header(datagram.len()),
        ) else {
            counters.tcp_frames_dropped_no_connection.inc();
            return;
        };
        if conn.out.len() - conn.sent + 2 + datagram.len() > TCP_QUEUE_LIMIT {
            counters.tcp_frames_dropped_queue_full.inc();
            return;
        }
        if conn.sent > 0 && conn.sent * 2 >= conn.out.len() {
            conn.out.drain(..conn.sent);
            conn.sent = 0;
        }
        conn.out.extend_from_slice(&header);
        conn.out.extend_from_slice(datagram);
        counters.tcp_frames_sent.inc();
        if !conn.dirty {
            conn.dirty = true;
            // `id` is some: the connection was found through it.
            self.dirty.extend(id.copied());
        }
    }

    /// Moves the connections with newly queued bytes into `into` (write them out).
    pub fn take_dirty(&mut self, into: &mut Vec<ConnId>) {
        for id in self.dirty.drain(..) {
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.dirty = false;
                into.push(id);
            }
        }
    }

    /// The bytes `id` still has to write (`None` if it is closed).
    pub fn unsent(&self, id: ConnId) -> Option<&[u8]> {
        self.conns.get(&id).map(|c| &c.out[c.sent..])
    }

    /// `n` bytes of [`TcpTable::unsent`] were written.
    pub fn sent(&mut self, id: ConnId, n: usize) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.sent = (conn.sent + n).min(conn.out.len());
        if conn.sent == conn.out.len() {
            conn.out.clear();
            conn.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn now() -> Instant {
        #[allow(clippy::disallowed_methods)] // Tests own the clock.
        Instant::now()
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new([127, 0, 0, 1].into(), port)
    }

    fn frame(to: SocketAddr, len: usize) -> Transmit {
        Transmit {
            proto: Protocol::Tcp,
            source: addr(1),
            destination: to,
            contents: vec![7; len],
            segment_size: None,
        }
    }

    #[test]
    fn a_repeated_pair_replaces_the_old_connection_and_the_old_cannot_touch_the_new() {
        let c = CounterCells::default();
        let mut table = TcpTable::new(1500);
        let old = table.open(addr(1), addr(2), now(), &c).unwrap();
        assert_eq!(old.ended, [None, None]);
        let (old, new) = (old.id, table.open(addr(1), addr(2), now(), &c).unwrap());
        assert_eq!(new.ended, [Some(old), None]);
        let new = new.id;
        assert_eq!(c.tcp_dropped_error.get(), 1);
        // The old connection's socket ends later: nothing of the new one goes with it.
        table.close(old, Close::Error, &c);
        assert_eq!(table.end_of_stream(old, &c), Close::Eof);
        assert_eq!(c.tcp_dropped_error.get(), 1);
        table.queue(&frame(addr(2), 10), &c);
        assert_eq!(table.unsent(new).map(<[u8]>::len), Some(12));
        assert_eq!(c.tcp_frames_dropped_no_connection.get(), 0);
        let mut dirty = Vec::new();
        table.take_dirty(&mut dirty);
        assert_eq!(dirty, [new]);
    }

    #[test]
    fn frames_in_and_out_and_a_bounded_queue() {
        let c = CounterCells::default();
        let mut table = TcpTable::new(1500);
        let id = table.open(addr(1), addr(2), now(), &c).unwrap().id;
        let mut got = Vec::new();
        table
            .received(id, &[0, 3, 1, 2], now(), &c, |_, _, f| got.push(f.to_vec()))
            .unwrap();
        table
            .received(id, &[3, 0, 0], now(), &c, |p, l, f| {
                assert_eq!((p, l), (addr(2), addr(1)));
                got.push(f.to_vec())
            })
            .unwrap();
        assert_eq!(got, [vec![1, 2, 3], vec![]]);
        while c.tcp_frames_dropped_queue_full.get() == 0 {
            table.queue(&frame(addr(2), 1000), &c);
        }
        let unsent = table.unsent(id).unwrap().len();
        assert!(unsent <= TCP_QUEUE_LIMIT && unsent > TCP_QUEUE_LIMIT - 1002);
        table.sent(id, unsent);
        assert_eq!(table.unsent(id), Some(&[][..]));
        table.queue(&frame(addr(9), 10), &c);
        assert_eq!(c.tcp_frames_dropped_no_connection.get(), 1);
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_malformed_and_between_frames_clean() {
        let c = CounterCells::default();
        let mut table = TcpTable::new(1500);
        let a = table.open(addr(1), addr(2), now(), &c).unwrap().id;
        let b = table.open(addr(1), addr(3), now(), &c).unwrap().id;
        table
            .received(a, &[0, 5, 1], now(), &c, |_, _, _| {})
            .unwrap();
        assert_eq!(table.end_of_stream(a, &c), Close::Malformed);
        table
            .received(b, &[0, 1, 1], now(), &c, |_, _, _| {})
            .unwrap();
        assert_eq!(table.end_of_stream(b, &c), Close::Eof);
        assert_eq!(c.tcp_dropped_malformed.get(), 1);
        assert_eq!(c.tcp_connections_closed.get(), 1);
        let d = table.open(addr(1), addr(4), now(), &c).unwrap().id;
        assert_eq!(
            table.received(d, &[0xff, 0xff], now(), &c, |_, _, _| {}),
            Err(Close::Malformed)
        );
        assert!(table.is_empty());
    }

    #[test]
    fn silent_connections_time_out_and_bound_ones_only_when_idle() {
        #[allow(clippy::disallowed_methods)] // Tests own the clock.
        let t0 = Instant::now();
        let c = CounterCells::default();
        let mut table = TcpTable::new(1500);
        let silent = table.open(addr(1), addr(2), t0, &c).unwrap().id;
        let bound = table.open(addr(1), addr(3), t0, &c).unwrap().id;
        table.authenticate(bound);
        let mut ended = Vec::new();
        table.expire(
            t0 + TCP_HANDSHAKE_TIMEOUT - Duration::from_millis(1),
            &c,
            &mut ended,
        );
        assert!(ended.is_empty());
        table.expire(t0 + TCP_HANDSHAKE_TIMEOUT, &c, &mut ended);
        assert_eq!(ended, [silent]);
        // A frame keeps the bound connection alive; silence for the idle timeout ends it.
        let later = t0 + TCP_IDLE_TIMEOUT - Duration::from_secs(1);
        table
            .received(bound, &[0, 1, 9], later, &c, |_, _, _| {})
            .unwrap();
        table.expire(t0 + TCP_IDLE_TIMEOUT, &c, &mut ended);
        assert_eq!(ended, [silent]);
        table.expire(later + TCP_IDLE_TIMEOUT, &c, &mut ended);
        assert_eq!(ended, [silent, bound]);
        assert_eq!(c.tcp_timeouts.get(), 2);
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_unbound_connection_never_a_bound_one() {
        #[allow(clippy::disallowed_methods)] // Tests own the clock.
        let now = Instant::now();
        let c = CounterCells::default();
        let mut table = TcpTable::new(1500);
        let peer = |i: usize| SocketAddr::new([10, 0, (i >> 8) as u8, i as u8].into(), 9);
        let ids: Vec<ConnId> = (0..MAX_TCP_CONNECTIONS)
            .map(|i| table.open(addr(1), peer(i), now, &c).unwrap().id)
            .collect();
        // The first two carried a binding; the third is the oldest without one.
        table.authenticate(ids[0]);
        table.authenticate(ids[1]);
        let opened = table.open(addr(1), addr(7), now, &c).unwrap();
        assert_eq!(opened.ended, [None, Some(ids[2])]);
        assert_eq!(c.tcp_evicted.get(), 1);
        assert!(table.contains(ids[0]) && table.contains(ids[1]) && !table.contains(ids[2]));
        // Only bound connections left: a new one is refused.
        for &id in &ids[3..] {
            table.authenticate(id);
        }
        table.authenticate(opened.id);
        assert_eq!(table.open(addr(1), addr(8), now, &c), None);
        assert_eq!(c.tcp_connections_refused.get(), 1);
        assert_eq!(table.len(), MAX_TCP_CONNECTIONS);
    }
}
