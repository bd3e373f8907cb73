//! A worker's UDP sockets, through quinn-udp: batched reads with GRO, pktinfo, ECN and kernel
//! receive timestamps into buffers allocated once; GSO sends for the driver.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::time::Instant;

use quinn_udp::{EcnCodepoint, RecvMeta, UdpSocketState, BATCH_SIZE};
use sfu_core::runtime::addr::SocketAddrs;
use sfu_core::runtime::{kernel_arrival, CounterCells, Driver, UdpOpener, UdpSend, UdpSocketSend};

use crate::clock;
use crate::net::Bound;

/// The socket buffers a worker asks for (the kernel caps them at `net.core.rmem_max` and
/// `wmem_max`): deep enough to absorb a burst while the worker is busy.
pub(crate) const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// One receive buffer: a datagram, or GRO's `stride`-sized datagrams.
pub(crate) struct Received<'a> {
    pub(crate) now: Instant,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) contents: &'a [u8],
    pub(crate) stride: usize,
    pub(crate) ecn_ce: bool,
}

impl Received<'_> {
    /// Feeds it to the driver.
    pub(crate) fn feed(self, driver: &mut Driver) {
        driver.udp_received(
            self.now,
            self.source,
            self.destination,
            self.contents,
            self.stride,
            self.ecn_ce,
        );
    }
}

/// One UDP socket of a worker.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    pub(crate) socket: mio::net::UdpSocket,
    state: UdpSocketState,
    addrs: SocketAddrs,
    /// Receive slots, `slot` bytes each, `slots` of them.
    buf: Vec<u8>,
    slot: usize,
    slots: usize,
    meta: [RecvMeta; BATCH_SIZE],
}

impl UdpEndpoint {
    /// Wraps a bound socket. Datagrams longer than `max_datagram` are still read whole enough
    /// for the Sfu to see them as too long.
    pub(crate) fn new(bound: Bound, max_datagram: usize) -> io::Result<Self> {
        let socket = mio::net::UdpSocket::from_std(bound.socket.into());
        let state = UdpSocketState::new((&socket).into())?;
        // Best effort: a smaller buffer still works, it only absorbs shorter bursts.
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
        // With GRO a slot receives many datagrams at once, up to 64 KiB.
        let (slots, slot) = if state.gro_segments() > 1 {
            (8, 65_536)
        } else {
            (BATCH_SIZE.min(32), (max_datagram + 1).clamp(2_048, 65_536))
        };
        Ok(Self {
            socket,
            state,
            addrs: bound.addrs,
            buf: vec![0; slots * slot],
            slot,
            slots: slots.min(BATCH_SIZE),
            meta: [RecvMeta::default(); BATCH_SIZE],
        })
    }

    /// Reads at most `batches` batches, handing each receive buffer to `feed`. Returns whether
    /// the socket may still have data (mio is edge-triggered: then read again before polling).
    /// Allocates nothing.
    pub(crate) fn read(
        &mut self,
        batches: usize,
        counters: &CounterCells,
        mut feed: impl FnMut(Received<'_>),
    ) -> bool {
        for _ in 0..batches {
            let result = {
                let mut chunks = self.buf.chunks_mut(self.slot);
                // Slots past `slots` stay empty and are not handed to the kernel.
                let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                self.state.recv(
                    (&self.socket).into(),
                    &mut slices[..self.slots],
                    &mut self.meta[..self.slots],
                )
            };
            let count = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::trace!(error = %e, local = %self.addrs.local, "udp read error");
                    counters.udp_recv_errors.inc();
                    continue;
                }
            };
            let (now, wall) = (clock::now(), clock::wall_now());
            for (meta, slot) in self.meta[..count].iter().zip(self.buf.chunks(self.slot)) {
                // Datagrams read together arrived apart: each takes its kernel arrival time.
                let now = kernel_arrival(now, wall, meta.timestamp).unwrap_or(now);
                feed(Received {
                    now,
                    source: meta.addr,
                    destination: self.addrs.destination(meta.dst_ip),
                    contents: &slot[..meta.len.min(self.slot)],
                    stride: meta.stride,
                    ecn_ce: meta.ecn == Some(EcnCodepoint::Ce),
                });
            }
        }
        true
    }

    /// The address the core knows this socket by.
    #[cfg(test)]
    pub(crate) fn local(&self) -> SocketAddr {
        self.addrs.local
    }
}

/// Opens a worker's plain transports' sockets: bound, registered with the worker's poll under
/// their slot's token.
#[derive(Debug)]
pub(crate) struct Opener {
    pub(crate) registry: mio::Registry,
    pub(crate) max_datagram: usize,
    /// The token of slot 0.
    pub(crate) token_base: usize,
    /// The most slots (tokens past them belong to others).
    pub(crate) max_slots: usize,
}

impl UdpOpener for Opener {
    type Socket = UdpEndpoint;

    fn open(&mut self, slot: usize, addr: SocketAddr) -> io::Result<UdpEndpoint> {
        if slot >= self.max_slots {
            return Err(io::Error::other("the worker holds its most UDP sockets"));
        }
        let options = crate::ListenOptions::udp(addr.ip()).with_port(addr.port());
        let mut endpoint = UdpEndpoint::new(crate::net::bind(&options, 0)?, self.max_datagram)?;
        self.registry.register(
            &mut endpoint.socket,
            mio::Token(self.token_base + slot),
            mio::Interest::READABLE,
        )?;
        Ok(endpoint)
    }

    fn close(&mut self, _slot: usize, mut socket: UdpEndpoint) {
        // Dropping the socket closes it; deregistering first keeps the poll's set exact.
        let _ = self.registry.deregister(&mut socket.socket);
    }
}

impl UdpSocketSend for UdpEndpoint {
    fn addrs(&self) -> SocketAddrs {
        self.addrs
    }

    fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn try_send(&self, send: &UdpSend<'_>) -> io::Result<()> {
        self.state.try_send((&self.socket).into(), &send.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_read_together_keep_their_arrival_times() {
        let options = crate::ListenOptions::udp([127, 0, 0, 1].into());
        let mut endpoint = UdpEndpoint::new(crate::net::bind(&options, 0).unwrap(), 1500).unwrap();
        let counters = CounterCells::default();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The kernel turns receive timestamping on for the system a moment after the first
        // socket asks (deferred work); datagrams queued before that carry their read time.
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Two datagrams 30 ms apart, read in one batch afterwards. The second is the larger,
        // so GRO cannot coalesce them into one buffer with one timestamp (it may when the
        // loopback's delivery is deferred on a loaded machine and the sizes allow it).
        sender.send_to(&[1], endpoint.local()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        sender.send_to(&[2, 2], endpoint.local()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        let mut arrivals = Vec::new();
        endpoint.read(1, &counters, |d| {
            arrivals.push((d.contents.to_vec(), d.now))
        });
        assert_eq!(arrivals.len(), 2, "one batch holds both");
        let apart = arrivals[1].1.duration_since(arrivals[0].1);
        assert!(
            apart >= std::time::Duration::from_millis(25),
            "arrivals {apart:?} apart, sent 30 ms apart"
        );
    }
}
