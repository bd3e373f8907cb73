//! One worker: an OS thread running a smol `LocalExecutor` with the shared driver and its own
//! sockets.
//!
//! The worker's tasks share the [`Core`] through an `Rc<RefCell<_>>` and borrow it only between
//! awaits: one task per UDP socket, one per TCP listener, one per TCP connection, one for
//! control calls and one for the Sfu's deadline. Every input is followed by [`Core::flush`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use sfu_core::runtime::tcp::Close;
use sfu_core::runtime::{Command, ConnId, Driver, UdpSlots};
use smol::channel::{self, Receiver, Sender};
use smol::future::{self, FutureExt};
use smol::{LocalExecutor, Timer};
use tracing::info;

use crate::clock;
use crate::tcp::{self, TcpAcceptor};
use crate::udp::{self, Opener, Slot, UdpEndpoint};

/// Everything a worker thread starts with.
pub(crate) struct WorkerSetup {
    pub(crate) driver: Driver,
    pub(crate) udp: Vec<UdpEndpoint>,
    pub(crate) tcp: Vec<TcpAcceptor>,
    pub(crate) requests: Receiver<Command>,
    pub(crate) stop: Receiver<()>,
}

/// A future a task hands to the worker's executor to spawn (a new TCP connection).
pub(crate) type Spawn = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The worker thread's body: runs until the stop channel closes, then drops every task and
/// socket.
pub(crate) fn run(setup: WorkerSetup) {
    let index = setup.driver.index();
    let executor = LocalExecutor::new();
    smol::block_on(executor.run(serve(&executor, setup)));
    // Dropping the executor cancels every task, which drops the core and the sockets.
    drop(executor);
    info!(worker = index, "worker stopped");
}

async fn serve(executor: &LocalExecutor<'_>, setup: WorkerSetup) {
    let WorkerSetup {
        driver,
        udp,
        tcp,
        requests,
        stop,
    } = setup;
    let index = driver.index();
    let (timer_changed, timer_wait) = channel::bounded(1);
    let (spawner, spawned) = channel::unbounded::<Spawn>();
    let udp: Vec<Rc<UdpEndpoint>> = udp.into_iter().map(Rc::new).collect();
    let slots = udp
        .iter()
        .map(|endpoint| Slot {
            endpoint: endpoint.clone(),
            _stop: None,
        })
        .collect();
    let opener_spawner = spawner.clone();
    let core = Rc::new_cyclic(|weak| {
        RefCell::new(Core {
            deadline: driver.deadline(),
            driver,
            udp: UdpSlots::new(
                slots,
                Opener {
                    core: weak.clone(),
                    spawner: opener_spawner,
                },
            ),
            writers: HashMap::new(),
            dirty: Vec::new(),
            timer_changed,
        })
    });
    for endpoint in udp {
        executor
            .spawn(udp::recv_task(core.clone(), endpoint, None))
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

/// Carries out control calls, one at a time, between datagrams.
async fn control_task(core: Rc<RefCell<Core>>, requests: Receiver<Command>) {
    while let Ok(command) = requests.recv().await {
        {
            let mut core = core.borrow_mut();
            let Core { driver, udp, .. } = &mut *core;
            driver.command(command, udp);
            core.flush();
        }
        future::yield_now().await;
    }
}

/// Sleeps until the Sfu's deadline (or until the deadline changes) and serves it.
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
            let mut core = core.borrow_mut();
            let Core { driver, udp, .. } = &mut *core;
            // Woken by nothing but the timer: its own task.
            let now = clock::now();
            driver.serve_deadline(now, true, udp);
            core.expire_tcp(now);
            core.flush();
        }
    }
}

/// The worker's state: the driver, its UDP sockets' send sides, and how to wake the tasks that
/// write ICE-TCP connections and wait for the deadline.
pub(crate) struct Core {
    pub(crate) driver: Driver,
    /// The listen sockets, then plain transports' own.
    udp: UdpSlots<Opener>,
    /// Wakes each connection's writer; dropping one ends its connection.
    writers: HashMap<ConnId, Sender<()>>,
    dirty: Vec<ConnId>,
    /// The deadline the timer task waits for.
    deadline: Instant,
    timer_changed: Sender<()>,
}

impl Core {
    /// Drains the driver (sending what the Sfu made), wakes the writers of connections with
    /// new frames, and the timer task if the deadline moved.
    pub(crate) fn flush(&mut self) {
        self.driver.drain(&mut self.udp);
        self.driver.tcp().take_dirty(&mut self.dirty);
        for id in self.dirty.drain(..) {
            if let Some(wake) = self.writers.get(&id) {
                // Full means a wake-up is already pending.
                let _ = wake.try_send(());
            }
        }
        if self.driver.deadline() != self.deadline {
            self.deadline = self.driver.deadline();
            // Full means the timer task has not looked yet; it will see the new deadline.
            let _ = self.timer_changed.try_send(());
        }
    }

    /// Opens a connection in the driver: its id and the channel that wakes its writer. A
    /// connection it replaces loses its writer's channel, which ends it.
    pub(crate) fn open(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
    ) -> Option<(ConnId, Receiver<()>)> {
        let opened = self.driver.tcp_open(local, peer, clock::now())?;
        for ended in opened.ended.into_iter().flatten() {
            self.writers.remove(&ended);
        }
        let (wake, woken) = channel::bounded(1);
        self.writers.insert(opened.id, wake);
        Some((opened.id, woken))
    }

    /// Ends the ICE-TCP connections past their timeouts (see `Driver::tcp_expire`): their
    /// writers' channels go, which ends their tasks.
    pub(crate) fn expire_tcp(&mut self, now: Instant) {
        let mut ended = Vec::new();
        self.driver.tcp_expire(now, &mut ended);
        for id in ended {
            self.writers.remove(&id);
        }
    }

    /// Connection `id` ended (`None`: the peer closed its side). Only its own state goes.
    pub(crate) fn closed(&mut self, id: ConnId, close: Option<Close>) {
        self.driver.tcp_closed(id, close);
        self.writers.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sfu_core::runtime::{RuntimeConfig, WorkerShared};
    use sfu_core::SfuConfig;
    use smol::channel::TryRecvError;

    use super::*;

    #[test]
    fn a_replaced_connection_ending_later_leaves_its_successor_alone() {
        let config = RuntimeConfig {
            workers: 1,
            listen: Vec::new(),
            sfu: SfuConfig::with_seed(1),
            rtc_port_range: None,
        };
        let shared = Arc::new(WorkerShared::new(Vec::new()));
        let sink = Box::new(|_, _| true);
        let driver = Driver::new(0, &config, clock::now(), shared, sink, 1).unwrap();
        let (timer_changed, _timer_wait) = channel::bounded(1);
        let mut core = Core {
            deadline: driver.deadline(),
            driver,
            udp: UdpSlots::new(
                Vec::new(),
                Opener {
                    core: std::rc::Weak::new(),
                    spawner: channel::unbounded().0,
                },
            ),
            writers: HashMap::new(),
            dirty: Vec::new(),
            timer_changed,
        };
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let (old, old_woken) = core.open(local, peer).unwrap();
        // The same address pair again: the old connection is told to end (its wake channel
        // closes), and its task reports the end later, after the new one is in place.
        let (new, new_woken) = core.open(local, peer).unwrap();
        assert_eq!(old_woken.try_recv(), Err(TryRecvError::Closed));
        core.closed(old, Some(Close::Error));
        core.closed(old, None);
        assert!(core.writers.contains_key(&new));
        assert_eq!(core.driver.tcp().unsent(new), Some(&[][..]));
        assert_eq!(new_woken.try_recv(), Err(TryRecvError::Empty));
        let counters = core.driver.counters().snapshot();
        assert_eq!(counters.tcp_connections_accepted, 2);
        assert_eq!(counters.tcp_dropped_error, 1);
        assert_eq!(counters.tcp_connections_closed, 0);
    }
}
