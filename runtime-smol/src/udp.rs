//! UDP through quinn-udp: batched receive with GRO and the destination address of each
//! datagram into buffers allocated once per socket; GSO sends for the driver.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::UdpSocket;
use std::rc::Rc;
use std::time::Duration;

use quinn_udp::{EcnCodepoint, RecvMeta, UdpSocketState, BATCH_SIZE};
use sfu_core::runtime::addr::SocketAddrs;
use sfu_core::runtime::{kernel_arrival, UdpOpener, UdpSend, UdpSocketSend};
use smol::future::FutureExt;
use smol::{future, Async, Timer};
use tracing::{debug, trace};

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
    addrs: SocketAddrs,
}

impl UdpEndpoint {
    /// Configures `socket` for quinn-udp (pktinfo, ECN, GRO) and registers it with the reactor.
    pub(crate) fn new(socket: UdpSocket, addrs: SocketAddrs) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        // Room for bursts while the worker is busy or descheduled (a flood of garbage must not
        // push out good packets). The kernel caps this at net.core.[rw]mem_max.
        if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot raise the UDP receive buffer");
        }
        if let Err(e) = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER) {
            debug!(error = %e, "cannot raise the UDP send buffer");
        }
        Ok(Self {
            socket: Async::new(socket)?,
            state,
            addrs,
        })
    }
}

/// A socket in the worker's slots: its endpoint, and for a plain transport's own the channel
/// whose end stops its receive task (which then drops the socket).
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) endpoint: Rc<UdpEndpoint>,
    pub(crate) _stop: Option<smol::channel::Sender<()>>,
}

impl UdpSocketSend for Slot {
    fn addrs(&self) -> SocketAddrs {
        self.endpoint.addrs
    }

    fn max_segments(&self) -> usize {
        self.endpoint.max_segments()
    }

    fn try_send(&self, send: &UdpSend<'_>) -> io::Result<()> {
        self.endpoint.try_send(send)
    }
}

/// Opens a worker's plain transports' sockets: bound, with a receive task spawned on the
/// worker's executor.
pub(crate) struct Opener {
    pub(crate) core: std::rc::Weak<RefCell<Core>>,
    pub(crate) spawner: smol::channel::Sender<crate::worker::Spawn>,
}

impl UdpOpener for Opener {
    type Socket = Slot;

    fn open(&mut self, _slot: usize, addr: std::net::SocketAddr) -> io::Result<Slot> {
        let core = self
            .core
            .upgrade()
            .ok_or_else(|| io::Error::other("the worker is stopping"))?;
        let socket = UdpSocket::bind(addr)?;
        let bound = socket.local_addr()?;
        let addrs = SocketAddrs {
            bound,
            local: sfu_core::runtime::addr::canonical(bound),
        };
        let endpoint = Rc::new(UdpEndpoint::new(socket, addrs)?);
        let (stop, stopped) = smol::channel::bounded(1);
        self.spawner
            .try_send(Box::pin(recv_task(core, endpoint.clone(), Some(stopped))))
            .map_err(|_| io::Error::other("the worker is stopping"))?;
        Ok(Slot {
            endpoint,
            _stop: Some(stop),
        })
    }

    fn close(&mut self, _slot: usize, socket: Slot) {
        // Its receive task ends when the stop channel closes, and drops the socket.
        drop(socket);
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
        self.state
            .try_send(self.socket.get_ref().into(), &send.into())
    }
}

/// Reads datagrams from `endpoint` and feeds them to the core, until the worker stops (or,
/// with `stop`, until that channel closes: the socket closed).
pub(crate) async fn recv_task(
    core: Rc<RefCell<Core>>,
    endpoint: Rc<UdpEndpoint>,
    stop: Option<smol::channel::Receiver<()>>,
) {
    let mut storage = vec![0u8; BATCH_SIZE * RECV_BUFFER];
    let mut meta = [RecvMeta::default(); BATCH_SIZE];
    loop {
        let readable = async { Some(endpoint.socket.readable().await) };
        let stopped = async {
            match &stop {
                Some(stop) => {
                    let _ = stop.recv().await;
                    None
                }
                None => future::pending().await,
            }
        };
        let Some(readable) = readable.or(stopped).await else {
            return;
        };
        if readable.is_err() {
            core.borrow().driver.counters().udp_recv_errors.inc();
            Timer::after(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..BATCHES_PER_TURN {
            let received = {
                let mut chunks = storage.chunks_mut(RECV_BUFFER);
                // `storage` holds exactly BATCH_SIZE chunks.
                let mut bufs: [IoSliceMut<'_>; BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
                let socket = endpoint.socket.get_ref();
                endpoint.state.recv(socket.into(), &mut bufs, &mut meta)
            };
            // The receive time, taken right after the read; each datagram's own arrival comes
            // from its kernel timestamp when there is one.
            let (now, wall) = (clock::now(), clock::wall_now());
            let count = match received {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    trace!(error = %e, "udp receive error");
                    core.borrow().driver.counters().udp_recv_errors.inc();
                    break;
                }
            };
            let mut core = core.borrow_mut();
            for (meta, buf) in meta[..count].iter().zip(storage.chunks(RECV_BUFFER)) {
                let now = kernel_arrival(now, wall, meta.timestamp).unwrap_or(now);
                core.driver.udp_received(
                    now,
                    meta.addr,
                    endpoint.addrs.destination(meta.dst_ip),
                    &buf[..meta.len],
                    meta.stride,
                    meta.ecn == Some(EcnCodepoint::Ce),
                );
            }
            core.flush();
        }
        future::yield_now().await;
    }
}
