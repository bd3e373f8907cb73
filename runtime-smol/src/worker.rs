//! One worker: an OS thread running a smol `LocalExecutor` with one `Sfu` and its own sockets.
//!
//! The worker's tasks share the [`Core`] through an `Rc<RefCell<_>>` and borrow it only between
//! awaits: one task per UDP socket, one per TCP listener, one per TCP connection, one for
//! control requests and one for the core's deadline. Every call into the `Sfu` is followed by a
//! full drain; UDP transmits are queued during the drain and sent together afterwards, so that
//! consecutive datagrams to one destination can leave in one GSO call.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use sfu_core::control::{Reply, Request};
use sfu_core::runtime::{same_path, CounterCells, WorkerShared};
use sfu_core::{Event, Input, Output, Protocol, Sfu, Transmit};
use smol::channel::{Receiver, Sender};
use smol::future::{self, FutureExt};
use smol::{LocalExecutor, Timer};
use tracing::{debug, info};

use crate::clock;
use crate::handle::Command;
use crate::tcp::{self, Connections, TcpAcceptor};
use crate::udp::{self, UdpEndpoint};

/// Everything a worker thread starts with.
pub(crate) struct WorkerSetup {
    pub(crate) index: usize,
    pub(crate) sfu: Sfu,
    /// The core's `max_datagram_size`: also the longest TCP frame accepted.
    pub(crate) max_datagram: usize,
    pub(crate) udp: Vec<UdpEndpoint>,
    pub(crate) tcp: Vec<TcpAcceptor>,
    pub(crate) requests: Receiver<Command>,
    pub(crate) stop: Receiver<()>,
    pub(crate) events: Sender<(usize, Event)>,
    pub(crate) shared: Arc<WorkerShared>,
}

/// A future a task hands to the worker's executor to spawn (a new TCP connection).
pub(crate) type Spawn = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The worker thread's body: runs until the stop channel closes, then drops every task and
/// socket.
pub(crate) fn run(setup: WorkerSetup) {
    let index = setup.index;
    let executor = LocalExecutor::new();
    smol::block_on(executor.run(serve(&executor, setup)));
    // Dropping the executor cancels every task, which drops the core and the sockets.
    drop(executor);
    info!(worker = index, "worker stopped");
}

async fn serve(executor: &LocalExecutor<'_>, setup: WorkerSetup) {
    let WorkerSetup {
        index,
        sfu,
        max_datagram,
        udp,
        tcp,
        requests,
        stop,
        events,
        shared,
    } = setup;
    let (timer_changed, timer_wait) = smol::channel::bounded(1);
    let (spawner, spawned) = smol::channel::unbounded::<Spawn>();
    let udp: Vec<Rc<UdpEndpoint>> = udp.into_iter().map(Rc::new).collect();
    let core = Rc::new(RefCell::new(Core {
        index,
        deadline: clock::now(),
        sfu,
        max_datagram,
        udp: udp.clone(),
        tcp: Connections::default(),
        pending: Vec::new(),
        scratch: Vec::new(),
        events,
        shared,
        timer_changed,
    }));
    for endpoint in udp {
        executor
            .spawn(udp::recv_task(core.clone(), endpoint))
            .detach();
    }
    for acceptor in tcp {
        executor
            .spawn(tcp::accept_task(core.clone(), acceptor, spawner.clone()))
            .detach();
    }
    executor
        .spawn(control_task(core.clone(), requests))
        .detach();
    executor
        .spawn(timer_task(core.clone(), timer_wait))
        .detach();
    drop(core);
    info!(worker = index, "worker running");
    let spawn_loop = async {
        while let Ok(task) = spawned.recv().await {
            executor.spawn(task).detach();
        }
    };
    // The stop channel has no messages: it closes when the runtime shuts down.
    let stopped = async {
        let _ = stop.recv().await;
    };
    stopped.or(spawn_loop).await;
}

/// Carries out control requests, one at a time, between datagrams.
async fn control_task(core: Rc<RefCell<Core>>, requests: Receiver<Command>) {
    while let Ok(Command { request, reply }) = requests.recv().await {
        let result = core.borrow_mut().request(clock::now(), request);
        // The caller may have given up waiting; nothing to do then.
        let _ = reply.try_send(result);
        future::yield_now().await;
    }
}

/// Sleeps until the core's deadline (or until the deadline changes) and wakes the core.
async fn timer_task(core: Rc<RefCell<Core>>, changed: Receiver<()>) {
    let mut timer = Timer::never();
    loop {
        let deadline = core.borrow().deadline;
        timer.set_at(deadline);
        let fired = async {
            (&mut timer).await;
            true
        }
        .or(async {
            // Closed only when the core is gone, and the core outlives this task.
            let _ = changed.recv().await;
            false
        })
        .await;
        if fired {
            core.borrow_mut().timeout(clock::now());
        }
    }
}

/// The worker's state: the Sfu, its sockets' send sides, and what drains produce.
pub(crate) struct Core {
    index: usize,
    sfu: Sfu,
    max_datagram: usize,
    udp: Vec<Rc<UdpEndpoint>>,
    pub(crate) tcp: Connections,
    /// UDP transmits of the current drain, sent by [`Core::flush`].
    pending: Vec<Transmit>,
    /// Where GSO batches are assembled.
    scratch: Vec<u8>,
    events: Sender<(usize, Event)>,
    shared: Arc<WorkerShared>,
    /// The core's next deadline.
    deadline: Instant,
    timer_changed: Sender<()>,
}

impl Core {
    pub(crate) fn counters(&self) -> &CounterCells {
        &self.shared.counters
    }

    pub(crate) fn max_datagram_size(&self) -> usize {
        self.max_datagram
    }

    /// Feeds one datagram (a UDP datagram or a TCP frame) of a batch. Call [`Core::flush`]
    /// after the batch: the Sfu then sends what the batch forwarded, grouped by destination.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.sfu.handle_input(Input::Receive {
            now,
            proto,
            source,
            destination,
            contents,
        });
    }

    /// Drains the Sfu and sends the UDP transmits queued since the last flush.
    pub(crate) fn flush(&mut self) {
        self.drain();
        if !self.pending.is_empty() {
            udp::send_all(
                &self.udp,
                &self.pending,
                &mut self.scratch,
                &self.shared.counters,
            );
            self.recycle();
        }
    }

    /// Gives the buffers of sent datagrams back to the Sfu.
    fn recycle(&mut self) {
        for t in self.pending.drain(..) {
            self.sfu.recycle(t.contents);
        }
    }

    fn timeout(&mut self, now: Instant) {
        let counters = &self.shared.counters;
        if now < self.deadline {
            // A wake for a deadline that has since moved later: nothing is due yet, and the timer
            // task waits again for the new one.
            counters.timer_early.inc();
            return;
        }
        counters.deadlines_served.inc();
        counters.record_timer_fire(now.saturating_duration_since(self.deadline));
        self.sfu.handle_input(Input::Timeout(now));
        self.flush();
    }

    fn request(&mut self, now: Instant, request: Request) -> Result<Reply, sfu_core::Error> {
        // Bring the core's clock up to date first (a deadline-free Timeout fires nothing early).
        self.sfu.handle_input(Input::Timeout(now));
        self.drain();
        debug!(worker = self.index, ?request, "request");
        let result = self.shared.serve(&mut self.sfu, request);
        self.flush();
        result
    }

    /// Polls the Sfu until it returns its deadline: TCP frames go to their connection's queue,
    /// UDP datagrams to `pending`, events to the application. A datagram for a new destination
    /// first sends the finished run before it, so the first destinations' datagrams leave while
    /// the Sfu is still making the later ones.
    fn drain(&mut self) {
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(t) => match t.proto {
                    Protocol::Udp => {
                        if self.pending.last().is_some_and(|last| !same_path(last, &t)) {
                            udp::send_all(
                                &self.udp,
                                &self.pending,
                                &mut self.scratch,
                                &self.shared.counters,
                            );
                            self.recycle();
                        }
                        self.pending.push(t);
                    }
                    Protocol::Tcp => self.tcp.send(t, &self.shared.counters),
                },
                Output::Event(e) => self.emit(e),
                Output::Timeout(at) => {
                    self.shared.counters.record_sfu(&self.sfu);
                    if at != self.deadline {
                        self.deadline = at;
                        // Full means the timer task has not looked yet; it will see `at`.
                        let _ = self.timer_changed.try_send(());
                    }
                    return;
                }
            }
        }
    }

    fn emit(&mut self, event: Event) {
        if self.events.try_send((self.index, event)).is_err() {
            self.shared.counters.events_dropped.inc();
        }
    }
}
