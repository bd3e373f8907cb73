//! # sfu-runtime-smol
//!
//! Runs [`sfu_core`] on real sockets with [smol](https://docs.rs/smol): N worker threads (one
//! per core by default), each a smol `LocalExecutor` with one `Sfu` and its own sockets,
//! controlled from any thread through a cloneable [`WorkerHandle`].
//!
//! ```no_run
//! use sfu_runtime_smol::{Runtime, RuntimeConfig};
//! # fn codecs() -> Vec<sfu_core::ortc::RtpCodecCapability> { vec![] }
//!
//! let runtime = Runtime::start(RuntimeConfig::default())?;
//! smol::block_on(async {
//!     let worker = runtime.least_loaded();
//!     let router = worker
//!         .create_router(sfu_core::RouterOptions { media_codecs: codecs() })
//!         .await?;
//!     // Empty listen infos: the transport is reachable on all of the worker's sockets.
//!     let transport = worker
//!         .create_webrtc_transport(router, Default::default())
//!         .await?;
//!     // Signal `transport.parameters` to the client, then `connect`, `produce`, `consume`.
//!     while let Ok((worker, event)) = runtime.events().recv().await {
//!         println!("worker {worker}: {event:?}");
//!     }
//!     Ok::<_, sfu_runtime_smol::RuntimeError>(())
//! })?;
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Workers and sockets
//!
//! Each worker opens one UDP socket per UDP [`ListenOptions`] entry and one TCP listener per TCP
//! entry, and all its transports share them (mediasoup's `WebRtcServer`): the core tells
//! transports apart by ICE username and 5-tuple. A request to create a WebRTC transport with
//! empty `listen_infos` gets the worker's socket addresses. The application picks the worker
//! for each router; [`least_loaded`](sfu_core::runtime::Workers::least_loaded) helps. A room spread over workers is joined with
//! pipe transports, as in mediasoup.
//!
//! The core needs concrete local addresses (an arriving datagram's destination must equal a
//! candidate's address). A socket bound to a concrete address announces it; a socket bound to
//! a wildcard announces the address of the interface that routes outward (or loopback) and
//! reports each datagram's real destination address (pktinfo) to the core; to serve other
//! interfaces of a wildcard socket, create transports with explicit `listen_infos` naming
//! them (with the worker's port). IPv4-mapped IPv6 addresses are turned into IPv4 ones, so the
//! core sees the address the peer really used. See [`sfu_core::runtime::addr`]; the mio
//! runtime does the same.
//!
//! What a worker does with its input (the drain after every batch, control calls at the
//! Sfu's own time, deadlines, GSO batching, GRO splitting, the ICE-TCP table, events and
//! counters) is [`sfu_core::runtime::Driver`], shared with the mio runtime; this crate is how a
//! worker waits, with smol.
//!
//! UDP sockets ask for 4 MiB buffers each way (capped by `net.core.rmem_max`/`wmem_max`), so a
//! burst or a flood of garbage does not push good packets out while the worker is busy.
//!
//! ## UDP
//!
//! Through quinn-udp: batched receive (`recvmmsg`) with GRO segments split by their stride, the
//! destination address and ECN bits of each datagram, the receive time taken right after the
//! read; on the way out, consecutive datagrams with the same source, destination and size
//! leave in one GSO send. A full send buffer or a failed send drops the datagram and counts it
//! ([`RuntimeCounters`]); the worker keeps running.
//!
//! ## ICE-TCP
//!
//! Passive: the worker accepts connections and frames datagrams with RFC 4571 both ways
//! ([`sfu_core::framing`]), across partial reads and writes. Each connection has a bounded write
//! queue; when a slow reader lets it fill, further frames are dropped and counted. Broken
//! framing (a frame too long, or a stream that ends inside one) or a reset drops the connection
//! and counts it; a new connection from the same address pair replaces the old one.
//!
//! ## Timers
//!
//! Each worker sleeps on one async-io [`Timer`](smol::Timer) set to the core's next deadline.
//! async-io hands the nearest timer to the `polling` crate, which on Linux arms a `timerfd`, so
//! the wait is not rounded to milliseconds as a plain `epoll_wait` timeout would be. Measured
//! on a busy 2-core machine (`tests/timer_accuracy.rs`): lateness p50 about 50 µs, p90 about
//! 120 µs, p99 about 1 ms; the worse tail is the scheduler. Each worker counts its wake-ups and
//! their lateness ([`RuntimeCounters::timer_late_mean_us`]).
//!
//! ## Control and events
//!
//! A [`WorkerHandle`] sends [`Request`](sfu_core::control::Request)s to its worker over a
//! channel and awaits the [`Reply`](sfu_core::control::Reply) (or blocks, with
//! [`WorkerHandle::call_blocking`]); typed methods wrap the common calls. Events come back on
//! [`Runtime::events`], tagged with the worker's index.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bind;
mod clock;
mod handle;
mod tcp;
mod udp;
mod worker;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use sfu_core::runtime::{Driver, WorkerShared, Workers};
use sfu_core::Event;
use smol::channel::{self, Receiver, Sender, TrySendError};
use tracing::info;

pub use handle::WorkerHandle;
pub use sfu_core::runtime::{
    ListenOptions, RuntimeConfig, RuntimeCounters, RuntimeError, EVENT_QUEUE_LIMIT, TCP_QUEUE_LIMIT,
};

/// Events waiting for the application at most; more are dropped and counted (the same limit as
/// the mio runtime's).
pub const EVENT_CAPACITY: usize = EVENT_QUEUE_LIMIT;
/// Requests waiting for one worker at most; callers wait when it is full.
const REQUEST_CAPACITY: usize = 1024;

/// Running workers. Dropping it (or [`shutdown`](Runtime::shutdown)) stops every worker and
/// releases every socket and thread.
#[derive(Debug)]
pub struct Runtime {
    workers: Workers<WorkerHandle>,
    threads: Vec<(Sender<()>, JoinHandle<()>)>,
    events: Receiver<(usize, Event)>,
}

impl Runtime {
    /// Binds every worker's sockets and starts the workers. Fails if a socket cannot be bound
    /// or a worker's `Sfu` cannot be made; workers already started are stopped again.
    pub fn start(config: RuntimeConfig) -> io::Result<Runtime> {
        if config.workers == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no workers"));
        }
        let (events_tx, events) = channel::bounded(EVENT_CAPACITY);
        let mut runtime = Runtime {
            workers: Workers::default(),
            threads: Vec::new(),
            events,
        };
        for index in 0..config.workers {
            runtime.start_worker(&config, index, events_tx.clone())?;
        }
        info!(workers = config.workers, "runtime started");
        Ok(runtime)
    }

    fn start_worker(
        &mut self,
        config: &RuntimeConfig,
        index: usize,
        events: Sender<(usize, Event)>,
    ) -> io::Result<()> {
        let bound = bind::bind_all(&config.listen, index)?;
        let udp = bound
            .udp
            .into_iter()
            .map(|(socket, addrs)| udp::UdpEndpoint::new(socket, addrs))
            .collect::<io::Result<Vec<_>>>()?;
        let tcp = bound
            .tcp
            .into_iter()
            .map(|(listener, local)| tcp::TcpAcceptor::new(listener, local))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(WorkerShared::new(bound.listen_infos));
        let sink = Box::new(move |index, event| {
            !matches!(events.try_send((index, event)), Err(TrySendError::Full(_)))
        });
        let gso = sfu_core::runtime::gso_segments(&udp);
        let driver = Driver::new(index, config, clock::now(), shared.clone(), sink, gso)
            .map_err(io::Error::other)?;
        let (requests_tx, requests) = channel::bounded(REQUEST_CAPACITY);
        let (stop_tx, stop) = channel::bounded(1);
        let setup = worker::WorkerSetup {
            driver,
            udp,
            tcp,
            requests,
            stop,
        };
        let thread = std::thread::Builder::new()
            .name(format!("sfu-smol-{index}"))
            .spawn(move || worker::run(setup))?;
        self.threads.push((stop_tx, thread));
        let handle = WorkerHandle::new(index, requests_tx, shared.clone());
        self.workers.push(handle, shared);
        Ok(())
    }

    /// Events from every worker, tagged with the worker's index. Usable as a `Stream`. Read
    /// them: when [`EVENT_CAPACITY`] are waiting, further events are dropped and counted.
    pub fn events(&self) -> Receiver<(usize, Event)> {
        self.events.clone()
    }

    /// Stops every worker and waits for its thread; sockets are closed when this returns.
    /// Calls already on their way fail with [`RuntimeError::WorkerStopped`].
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let threads = std::mem::take(&mut self.threads);
        for (stop, _) in &threads {
            stop.close();
        }
        let current = std::thread::current().id();
        for (_, thread) in threads {
            // A worker cannot wait for itself (the runtime dropped from inside a worker).
            if thread.thread().id() != current {
                let _ = thread.join();
            }
        }
    }
}

sfu_core::runtime_common!(Runtime, WorkerHandle);

// Handles and the runtime cross threads (checked when compiling).
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<WorkerHandle>();
    is_send_sync::<Runtime>();
};
