//! UDP through quinn-udp: batched receive with GRO and the destination address of each
//! datagram, batched send with GSO.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::rc::Rc;
use std::time::Duration;

use quinn_udp::{EcnCodepoint, RecvMeta, UdpSocketState, BATCH_SIZE};
use sfu_core::runtime::{gro_segments, gso_run, CounterCells};
use sfu_core::{Protocol, Transmit};
use smol::{future, Async, Timer};
use tracing::{debug, trace};

use crate::bind::canonical;
use crate::clock;
use crate::worker::Core;

/// Room for one receive: the largest UDP payload, or a GRO batch of datagrams.
const RECV_BUFFER: usize = 64 * 1024;
/// Receive batches handled per wake-up before other tasks get a turn (a flood cannot starve
/// the control channel or the timer).
const BATCHES_PER_TURN: usize = 16;
/// The socket buffer sizes the runtime asks for, each way.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// One UDP socket of a worker, shared by all its transports.
#[derive(Debug)]
pub(crate) struct UdpEndpoint {
    socket: Async<UdpSocket>,
    state: UdpSocketState,
    /// The address the socket is bound to (perhaps a wildcard).
    bound: SocketAddr,
    /// The concrete address transports announce.
    local: SocketAddr,
}

impl UdpEndpoint {
    /// Configures `socket` for quinn-udp (pktinfo, ECN, GRO) and registers it with the reactor.
    pub(crate) fn new(socket: UdpSocket, local: SocketAddr) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        // Room for bursts while the worker is busy or descheduled (a flood of garbage must not
        // push out good packets). The kernel caps this at net.core.[rw]mem_max.
        if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot raise the UDP receive buffer");
        }
        if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot raise the UDP send buffer");
        }
        let bound = socket.local_addr()?;
        Ok(Self {
            socket: Async::new(socket)?,
            state,
            bound,
            local,
        })
    }

    /// Whether datagrams from `source` leave through this socket.
    fn sends_from(&self, source: SocketAddr) -> bool {
        if source == self.local || source == self.bound {
            return true;
        }
        source.port() == self.bound.port()
            && self.bound.ip().is_unspecified()
            && (self.bound.is_ipv6() || source.is_ipv4())
    }

    /// The local address a datagram arrived at.
    fn destination(&self, meta: &RecvMeta) -> SocketAddr {
        match meta.dst_ip {
            Some(ip) if self.bound.ip().is_unspecified() => {
                SocketAddr::new(ip.to_canonical(), self.bound.port())
            }
            _ => self.local,
        }
    }
}

/// Reads datagrams from `endpoint` and feeds them to the core, until the worker stops.
pub(crate) async fn recv_task(core: Rc<RefCell<Core>>, endpoint: Rc<UdpEndpoint>) {
    let mut storage = vec![0u8; BATCH_SIZE * RECV_BUFFER];
    let mut meta = [RecvMeta::default(); BATCH_SIZE];
    loop {
        if endpoint.socket.readable().await.is_err() {
            core.borrow().counters().udp_recv_errors.inc();
            Timer::after(Duration::from_millis(1)).await;
            continue;
        }
        let mut turns = 0;
        loop {
            let received = {
                let mut chunks = storage.chunks_mut(RECV_BUFFER);
                // `storage` holds exactly BATCH_SIZE chunks, so `next` cannot run out.
                let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("a chunk")));
                endpoint
                    .state
                    .recv(endpoint.socket.get_ref().into(), &mut bufs, &mut meta)
            };
            // The receive time, taken right after the read; each datagram's own arrival comes
            // from its kernel timestamp when there is one.
            let now = clock::now();
            let wall = clock::wall_now();
            let count = match received {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    trace!(error = %e, "udp receive error");
                    core.borrow().counters().udp_recv_errors.inc();
                    break;
                }
            };
            {
                let mut core = core.borrow_mut();
                for (meta, buf) in meta[..count].iter().zip(storage.chunks(RECV_BUFFER)) {
                    let now =
                        sfu_core::runtime::kernel_arrival(now, wall, meta.timestamp).unwrap_or(now);
                    receive(&mut core, &endpoint, now, meta, &buf[..meta.len]);
                }
                core.flush();
            }
            turns += 1;
            if turns == BATCHES_PER_TURN {
                future::yield_now().await;
                turns = 0;
            }
        }
    }
}

/// Splits one receive buffer into its datagrams (GRO) and feeds each to the core.
fn receive(
    core: &mut Core,
    endpoint: &UdpEndpoint,
    now: std::time::Instant,
    meta: &RecvMeta,
    buf: &[u8],
) {
    let counters = core.counters();
    let segments = gro_segments(buf, meta.stride).count();
    counters.udp_datagrams_received.add(segments as u64);
    counters.udp_bytes_received.add(buf.len() as u64);
    if segments > 1 {
        counters.udp_gro_buffers.inc();
    }
    if meta.ecn == Some(EcnCodepoint::Ce) {
        counters.udp_ecn_ce.add(segments as u64);
    }
    let source = canonical(meta.addr);
    let destination = endpoint.destination(meta);
    for datagram in gro_segments(buf, meta.stride) {
        core.receive(now, Protocol::Udp, source, destination, datagram);
    }
}

/// Sends `pending` in order, merging runs of datagrams with one source, destination and size
/// (see [`gso_run`]) into GSO sends. Failures are counted and the datagrams dropped. The sent
/// transmits stay in `pending` for the caller to give their buffers back to the Sfu.
pub(crate) fn send_all(
    endpoints: &[Rc<UdpEndpoint>],
    pending: &[Transmit],
    scratch: &mut Vec<u8>,
    counters: &CounterCells,
) {
    let mut i = 0;
    while i < pending.len() {
        let first = &pending[i];
        let Some(endpoint) = endpoints.iter().find(|e| e.sends_from(first.source)) else {
            counters.udp_no_socket.inc();
            i += 1;
            continue;
        };
        let run = gso_run(&pending[i..], endpoint.state.max_gso_segments().max(1));
        let contents: &[u8] = if run == 1 {
            &first.contents
        } else {
            scratch.clear();
            for t in &pending[i..i + run] {
                scratch.extend_from_slice(&t.contents);
            }
            scratch
        };
        send(endpoint, first, contents, run, counters);
        i += run;
    }
}

/// Sends `contents`: `first`'s datagram, or `segments` datagrams of `first`'s size (the last may
/// be shorter) joined for one GSO send.
fn send(
    endpoint: &UdpEndpoint,
    first: &Transmit,
    contents: &[u8],
    segments: usize,
    counters: &CounterCells,
) {
    let (destination, source) = (first.destination, first.source);
    let v6 = endpoint.bound.is_ipv6();
    // A dual-stack IPv6 socket reaches IPv4 peers through IPv4-mapped addresses.
    let family = |ip: IpAddr| match ip {
        IpAddr::V4(v4) if v6 => IpAddr::V6(v4.to_ipv6_mapped()),
        ip => ip,
    };
    let transmit = quinn_udp::Transmit {
        destination: SocketAddr::new(family(destination.ip()), destination.port()),
        ecn: None,
        contents,
        segment_size: (segments > 1).then_some(first.contents.len()),
        // Only a wildcard socket needs to be told which address to send from.
        src_ip: endpoint
            .bound
            .ip()
            .is_unspecified()
            .then(|| family(source.ip())),
    };
    let n = segments as u64;
    match endpoint
        .state
        .try_send(endpoint.socket.get_ref().into(), &transmit)
    {
        Ok(()) => {
            counters.udp_datagrams_sent.add(n);
            counters.udp_bytes_sent.add(contents.len() as u64);
            if segments > 1 {
                counters.udp_gso_batches.inc();
            }
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            counters.udp_send_errors.add(n);
            counters.udp_send_would_block.add(n);
        }
        Err(e) => {
            trace!(error = %e, %destination, "udp send failed");
            counters.udp_send_errors.add(n);
        }
    }
}
