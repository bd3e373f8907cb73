//! # sfu-runtime-mio
//!
//! Runs [`sfu_core`] on real sockets: one worker thread per core, each with its own
//! [`Sfu`](sfu_core::Sfu), its own [`mio::Poll`] and its own sockets (one UDP socket per UDP
//! listen entry and one passive ICE-TCP listener per TCP entry, shared by every transport of the
//! worker, as in mediasoup's `WebRtcServer`). The application talks to a worker through a
//! cloneable [`WorkerHandle`] from any thread, and reads [`Event`](sfu_core::Event)s from
//! [`Runtime::events`].
//!
//! ```no_run
//! use sfu_runtime_mio::{Runtime, RuntimeConfig};
//! use sfu_core::{RouterOptions, WebRtcTransportOptions};
//!
//! let runtime = Runtime::start(RuntimeConfig::default())?;
//! let worker = runtime.least_loaded();
//! let router = worker.create_router(RouterOptions { media_codecs: vec![] })?;
//! // Empty listen infos: the worker offers its own sockets' addresses.
//! let transport = worker.create_webrtc_transport(router, WebRtcTransportOptions::default())?;
//! println!("{:?}", transport.parameters);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## What a worker does
//!
//! - **UDP** goes through `quinn-udp`: batched receive (`recvmmsg`, GRO buffers split by their
//!   stride), the local destination address of each datagram (pktinfo), ECN (counted), and GSO
//!   when consecutive transmits share a destination and a size. The receive time is read right
//!   after each read returns. IPv4-mapped IPv6 addresses are canonicalized to IPv4.
//! - **ICE-TCP** is passive: RFC 4571 framing ([`sfu_core::framing`]) both ways, partial reads
//!   and writes, a bounded outgoing queue per connection ([`TCP_QUEUE_LIMIT`]; a frame that does
//!   not fit is dropped and counted). A frame longer than the Sfu's maximum datagram size, a
//!   stream that ends inside a frame, a reset or any other read or write error drops the
//!   connection and is counted; a new connection from the same address pair replaces the old.
//! - **What a worker does with its input** (the drain after every batch, control calls at the
//!   Sfu's own time, deadlines, GSO batching, GRO splitting, the ICE-TCP table, events and
//!   counters) is [`sfu_core::runtime::Driver`], shared with the smol runtime; this crate is
//!   how a worker waits, with mio.
//! - **Socket buffers**: each UDP socket asks for 4 MiB of receive and send buffer (capped by
//!   the kernel's `rmem_max`/`wmem_max`), so a burst or a flood waits in the kernel rather than
//!   being dropped while the worker is busy.
//! - **Send errors** (a full socket buffer, `ENOBUFS`, unreachable) drop the packet and are
//!   counted in [`RuntimeCounters`]; nothing stops a worker but [`Runtime::shutdown`].
//! - **Timers**: mio's `epoll` backend has millisecond granularity (it rounds a timeout up to
//!   the next millisecond), so waiting with `poll(deadline - now)` fires a deadline on average
//!   about 0.65 ms late (measured: 620–680 µs mean over 200 sub-millisecond deadlines). A worker
//!   instead asks mio for the whole milliseconds before the deadline and waits out the
//!   sub-millisecond rest on a timerfd registered with the same poll, which brings the mean to
//!   the kernel's timer slack plus scheduling (measured: 40–80 µs mean) while the sockets are
//!   still watched: a datagram that arrives in that rest is served at once. (Sleeping the rest
//!   with `nanosleep` instead, the fallback where there is no timerfd, left the sockets waiting;
//!   with deadlines about a millisecond apart in a busy room that cost a third of the median
//!   forwarding delay.) Deadlines are never served early. The lateness of deadlines served on a
//!   timer wake is recorded in
//!   [`RuntimeCounters`] (`timer_fires`, `timer_late_total_us`, `timer_late_max_us`).
//!
//! ## Addresses
//!
//! The core needs the concrete address each datagram arrived at. A listen entry with a
//! concrete ip binds that ip and is known by it. A listen entry with an unspecified ip
//! (`0.0.0.0` or `::`) binds the wildcard and is announced with the address of the interface
//! that routes outward (loopback if none does); each datagram reaches the core with its real
//! destination (pktinfo), and replies leave from the address the core names. An IPv6 wildcard
//! is dual stack: IPv4 peers are seen as IPv4. To serve another interface of a wildcard socket,
//! create transports with explicit `listen_infos` naming it (with the worker's port). See
//! [`sfu_core::runtime::addr`]; the smol runtime does the same.
//!
//! With several workers, a fixed `port` is the port of worker 0 and worker `i` binds
//! `port + i`; a `port_range` gives every worker the first free port of the range.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod handle;
mod net;
mod tcp;
mod udp;
mod worker;

use std::io;
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;

use sfu_core::runtime::Workers;

pub use handle::WorkerHandle;
pub use sfu_core::runtime::{
    ListenOptions, RuntimeConfig, RuntimeCounters, RuntimeError, EVENT_QUEUE_LIMIT, TCP_QUEUE_LIMIT,
};
pub use sfu_core::Protocol;

/// Running workers. Dropping it shuts them down.
#[derive(Debug)]
pub struct Runtime {
    workers: Workers<WorkerHandle>,
    threads: Vec<JoinHandle<()>>,
    events: Receiver<(usize, sfu_core::Event)>,
}

impl Runtime {
    /// Binds every worker's sockets and starts the worker threads. Fails if a socket cannot be
    /// bound or a worker's Sfu cannot be created; then nothing keeps running.
    pub fn start(config: RuntimeConfig) -> io::Result<Runtime> {
        if config.workers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one worker is needed",
            ));
        }
        let (events_tx, events) = mpsc::sync_channel(EVENT_QUEUE_LIMIT);
        let mut prepared = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            prepared.push(worker::Worker::new(index, &config, events_tx.clone())?);
        }
        let mut runtime = Runtime {
            workers: Workers::default(),
            threads: Vec::with_capacity(prepared.len()),
            events,
        };
        for (worker, handle) in prepared {
            let name = format!("sfu-mio-{}", handle.index());
            let shared = worker.shared();
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker.run())?;
            runtime.workers.push(handle, shared);
            runtime.threads.push(thread);
        }
        tracing::info!(workers = config.workers, "mio runtime started");
        Ok(runtime)
    }

    /// Events from every worker, tagged with the worker's index. At most
    /// [`EVENT_QUEUE_LIMIT`] wait here; beyond that they are dropped and counted
    /// ([`RuntimeCounters::events_dropped`]).
    pub fn events(&self) -> &Receiver<(usize, sfu_core::Event)> {
        &self.events
    }

    /// Stops every worker, closes their sockets and joins their threads. Handles still held
    /// elsewhere then answer [`RuntimeError::WorkerStopped`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in self.workers.workers() {
            w.request_shutdown();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

sfu_core::runtime_common!(Runtime, WorkerHandle);

// A handle crosses threads (checked when compiling).
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<WorkerHandle>();
};
