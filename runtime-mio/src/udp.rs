//! A worker's UDP socket, through quinn-udp: batched reads with GRO, pktinfo, ECN and kernel
//! receive timestamps; GSO sends.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use quinn_udp::{EcnCodepoint, RecvMeta, UdpSocketState};
use sfu_core::Transmit;

use crate::clock;
use crate::net::{canonical, canonical_addr, Bound};
use sfu_core::runtime::CounterCells;

/// The socket buffers a worker asks for (the kernel caps them at `net.core.rmem_max` and
/// `wmem_max`): deep enough to absorb a burst while the worker is busy.
pub(crate) const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// One UDP socket of a worker.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    pub(crate) socket: mio::net::UdpSocket,
    state: UdpSocketState,
    /// The address the core knows this socket by.
    pub(crate) local: SocketAddr,
    wildcard: bool,
    /// Receive slots, `slot` bytes each.
    buf: Vec<u8>,
    slot: usize,
    meta: Vec<RecvMeta>,
    /// Where consecutive datagrams are joined for one GSO send.
    gso_buf: Vec<u8>,
}

/// A datagram read from the socket, as the core wants it.
pub(crate) struct Datagram<'a> {
    pub(crate) now: Instant,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) contents: &'a [u8],
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
            (
                quinn_udp::BATCH_SIZE.min(32),
                (max_datagram + 1).clamp(2_048, 65_536),
            )
        };
        Ok(Self {
            socket,
            state,
            local: bound.local,
            wildcard: bound.wildcard,
            buf: vec![0; slots * slot],
            slot,
            meta: vec![RecvMeta::default(); slots],
            gso_buf: Vec::with_capacity(sfu_core::runtime::GSO_MAX_BYTES),
        })
    }

    /// How many datagrams one send may carry.
    pub(crate) fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Reads at most `batches` batches and hands every datagram to `feed`. Returns whether the
    /// socket may still have data (mio is edge-triggered: then read again before polling).
    pub(crate) fn read(
        &mut self,
        batches: usize,
        counters: &CounterCells,
        mut feed: impl FnMut(Datagram<'_>),
    ) -> bool {
        for _ in 0..batches {
            let result = {
                let mut slices: Vec<IoSliceMut<'_>> = self
                    .buf
                    .chunks_mut(self.slot)
                    .map(IoSliceMut::new)
                    .collect();
                self.state
                    .recv((&self.socket).into(), &mut slices, &mut self.meta)
            };
            let count = match result {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::trace!(error = %e, local = %self.local, "udp read error");
                    counters.udp_recv_errors.inc();
                    continue;
                }
            };
            let now = clock::now();
            let wall = clock::wall_now();
            for (i, meta) in self.meta.iter().take(count).enumerate() {
                // Datagrams read together arrived apart: each takes its kernel arrival time
                // (transport-wide congestion control feedback reports it to the sender).
                let now =
                    sfu_core::runtime::kernel_arrival(now, wall, meta.timestamp).unwrap_or(now);
                let start = i * self.slot;
                let bytes = &self.buf[start..start + meta.len.min(self.slot)];
                let source = canonical_addr(meta.addr);
                let destination = self.destination(meta.dst_ip);
                counters.udp_bytes_received.add(bytes.len() as u64);
                if meta.stride > 0 && bytes.len() > meta.stride {
                    counters.udp_gro_buffers.inc();
                }
                for contents in sfu_core::runtime::gro_segments(bytes, meta.stride) {
                    counters.udp_datagrams_received.inc();
                    if meta.ecn == Some(EcnCodepoint::Ce) {
                        counters.udp_ecn_ce.inc();
                    }
                    feed(Datagram {
                        now,
                        source,
                        destination,
                        contents,
                    });
                }
            }
        }
        true
    }

    /// The local address a datagram arrived at, as the core knows it.
    fn destination(&self, dst_ip: Option<IpAddr>) -> SocketAddr {
        match dst_ip {
            Some(ip) if !self.wildcard => SocketAddr::new(canonical(ip), self.local.port()),
            _ => self.local,
        }
    }

    /// Sends `run`, datagrams of one source and destination where all but the last have the
    /// same size (see [`sfu_core::runtime::gso_run`]), in one send when there are several.
    /// Errors drop and count.
    pub(crate) fn send(&mut self, run: &[Transmit], counters: &CounterCells) {
        let Some(first) = run.first() else {
            return;
        };
        let (contents, segment_size) = if run.len() == 1 {
            (&first.contents[..], None)
        } else {
            self.gso_buf.clear();
            for t in run {
                self.gso_buf.extend_from_slice(&t.contents);
            }
            (&self.gso_buf[..], Some(first.contents.len()))
        };
        let transmit = quinn_udp::Transmit {
            destination: first.destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        let n = run.len() as u64;
        match self.state.try_send((&self.socket).into(), &transmit) {
            Ok(()) => {
                counters.udp_datagrams_sent.add(n);
                counters.udp_bytes_sent.add(contents.len() as u64);
                if n > 1 {
                    counters.udp_gso_batches.inc();
                }
            }
            Err(e) => {
                tracing::trace!(error = %e, to = %first.destination, "udp send dropped");
                counters.udp_send_errors.add(n);
                if e.kind() == io::ErrorKind::WouldBlock {
                    counters.udp_send_would_block.add(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sfu_core::Protocol;

    fn t(dest: u16, len: usize) -> Transmit {
        Transmit {
            proto: Protocol::Udp,
            source: "127.0.0.1:1000".parse().unwrap(),
            destination: SocketAddr::new([127, 0, 0, 1].into(), dest),
            contents: vec![0; len],
        }
    }

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
        sender.send_to(&[1], endpoint.local).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        sender.send_to(&[2, 2], endpoint.local).unwrap();
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

    #[test]
    fn send_errors_drop_and_count() {
        let options = crate::ListenOptions::udp([127, 0, 0, 1].into());
        let mut endpoint = UdpEndpoint::new(crate::net::bind(&options, 0).unwrap(), 1500).unwrap();
        let counters = CounterCells::default();
        // An IPv4 socket cannot send to an IPv6 address.
        let unreachable = Transmit {
            destination: "[::1]:9".parse().unwrap(),
            ..t(1, 100)
        };
        endpoint.send(&[unreachable], &counters);
        let c = counters.snapshot();
        assert_eq!((c.udp_send_errors, c.udp_datagrams_sent), (1, 0));
        endpoint.send(&[t(9, 100), t(9, 100)], &counters);
        let c = counters.snapshot();
        assert_eq!(c.udp_datagrams_sent, 2);
    }
}
