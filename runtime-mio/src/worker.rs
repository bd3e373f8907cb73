//! One worker thread: the shared driver, a mio poll, the worker's sockets, and the loop that
//! waits for them.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use sfu_core::runtime::{Command, Driver, UdpSlots, WorkerShared};
use sfu_core::{Event, ListenInfo, Protocol};

use crate::clock;
use crate::handle::WorkerHandle;
use crate::net;
use crate::tcp::{TcpSide, LISTENER_BASE};
use crate::udp::{Opener, UdpEndpoint};
use crate::RuntimeConfig;

const WAKER: Token = Token(0);
const ALARM: Token = Token(1);
/// UDP sockets' tokens start here.
const UDP_BASE: usize = 2;
/// Batches read from one UDP socket before the worker turns to other work.
const UDP_BATCHES: usize = 16;

/// A worker, built on the starting thread (so socket errors surface from `Runtime::start`)
/// and then moved to its own.
pub(crate) struct Worker {
    poll: Poll,
    commands: Receiver<Command>,
    driver: Driver,
    /// The listen sockets, then plain transports' own.
    udp: UdpSlots<Opener>,
    /// UDP sockets that may still have data (mio is edge-triggered).
    udp_ready: Vec<bool>,
    tcp: TcpSide,
    /// Wakes the poll for sub-millisecond deadlines; without it the worker sleeps them out.
    alarm: Option<clock::Alarm>,
    shared: Arc<WorkerShared>,
}

impl Worker {
    /// Binds worker `index`'s sockets and creates its driver.
    pub(crate) fn new(
        index: usize,
        config: &RuntimeConfig,
        events: SyncSender<(usize, Event)>,
    ) -> io::Result<(Worker, WorkerHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let alarm = clock::Alarm::new(poll.registry(), ALARM)
            .inspect_err(|e| tracing::warn!(error = %e, "no timerfd: sub-millisecond waits sleep"))
            .ok();
        let mut udp = Vec::new();
        let mut tcp = TcpSide::new();
        let mut listen_infos = Vec::new();
        for options in &config.listen {
            let bound = net::bind(options, index)?;
            listen_infos.push(ListenInfo {
                protocol: options.protocol,
                local: bound.addrs.local,
                announced_address: options.announced_address.clone(),
            });
            match options.protocol {
                Protocol::Udp => {
                    if UDP_BASE + udp.len() >= LISTENER_BASE {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "too many UDP listen entries",
                        ));
                    }
                    let mut endpoint = UdpEndpoint::new(bound, config.sfu.max_datagram_size)?;
                    poll.registry().register(
                        &mut endpoint.socket,
                        Token(UDP_BASE + udp.len()),
                        Interest::READABLE,
                    )?;
                    udp.push(endpoint);
                }
                Protocol::Tcp => tcp.add_listener(bound, poll.registry())?,
            }
        }
        let shared = Arc::new(WorkerShared::new(listen_infos));
        let sink = Box::new(move |index, event| {
            !matches!(events.try_send((index, event)), Err(TrySendError::Full(_)))
        });
        let opener = Opener {
            registry: poll.registry().try_clone()?,
            max_datagram: config.sfu.max_datagram_size,
            token_base: UDP_BASE,
            max_slots: LISTENER_BASE - UDP_BASE,
        };
        let udp = UdpSlots::new(udp, opener);
        let gso = sfu_core::runtime::gso_segments(&udp);
        let driver = Driver::new(index, config, clock::now(), shared.clone(), sink, gso)
            .map_err(io::Error::other)?;
        let (commands_tx, commands) = mpsc::channel();
        let handle = WorkerHandle::new(index, commands_tx, waker, shared.clone());
        let worker = Worker {
            poll,
            commands,
            driver,
            udp_ready: vec![false; udp.len()],
            udp,
            tcp,
            alarm,
            shared,
        };
        Ok((worker, handle))
    }

    /// What the worker shares with its handles.
    pub(crate) fn shared(&self) -> Arc<WorkerShared> {
        self.shared.clone()
    }

    /// The loop: wait for I/O, a command or the deadline; serve them; send what the Sfu made.
    pub(crate) fn run(mut self) {
        let _span = tracing::info_span!("worker", index = self.driver.index()).entered();
        let mut events = Events::with_capacity(1024);
        loop {
            let io_pending = self.io_pending();
            let timeout = if io_pending {
                Duration::ZERO
            } else {
                self.wait_timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKER {
                    continue; // Commands are looked at every round.
                }
                if token == ALARM {
                    if let Some(alarm) = &mut self.alarm {
                        alarm.fired();
                    }
                    continue;
                }
                if TcpSide::owns(token) {
                    let readable =
                        event.is_readable() || event.is_read_closed() || event.is_error();
                    self.tcp.on_event(token, readable, event.is_writable());
                } else if let Some(slot) = token.0.checked_sub(UDP_BASE) {
                    // A socket opened since the last round takes its place here.
                    if slot >= self.udp_ready.len() {
                        self.udp_ready.resize(slot + 1, false);
                    }
                    self.udp_ready[slot] = true;
                }
            }
            // Woken by nothing but the clock: the lateness is the timer's, not a busy worker's.
            let timer_wake = !io_pending && events.iter().all(|e| e.token() == ALARM);
            if !self.serve_commands() || !self.read_udp() {
                break;
            }
            self.tcp.service(self.poll.registry(), &mut self.driver);
            self.driver.drain(&mut self.udp);
            self.serve_deadline(timer_wake);
            self.tcp
                .housekeeping(clock::now(), self.poll.registry(), &mut self.driver);
            self.tcp.flush(self.poll.registry(), &mut self.driver);
        }
        tracing::info!("worker stopped");
    }

    /// How long to wait for I/O: the whole milliseconds before the deadline, then the rest on
    /// the alarm (see `clock`).
    fn wait_timeout(&mut self) -> Duration {
        let now = clock::now();
        let deadline = self.driver.deadline();
        let deadline = self.tcp.retry_at().map_or(deadline, |at| at.min(deadline));
        let timeout = clock::poll_timeout(now, deadline);
        if timeout.is_zero() && deadline > now {
            if let Some(alarm) = &mut self.alarm {
                match alarm.set(now, deadline) {
                    // The alarm ends the wait at the deadline; this only bounds it.
                    Ok(()) => return clock::SLEEP_BELOW,
                    Err(e) => {
                        tracing::warn!(error = %e, "timerfd failed: sub-millisecond waits sleep");
                        self.alarm = None;
                    }
                }
            }
        }
        timeout
    }

    fn io_pending(&self) -> bool {
        self.udp_ready.iter().any(|&r| r) || self.tcp.pending()
    }

    /// Carries out queued commands. Returns false when the worker must stop.
    fn serve_commands(&mut self) -> bool {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            };
            if !self.driver.command(command, &mut self.udp) {
                return false;
            }
        }
    }

    /// Reads and feeds UDP batches, serving control calls between them (a call waits for at
    /// most one batch, not for a flood to end). Returns false when the worker must stop.
    fn read_udp(&mut self) -> bool {
        for i in 0..self.udp_ready.len() {
            if !self.udp_ready[i] {
                continue;
            }
            let mut more = true;
            for _ in 0..UDP_BATCHES {
                let driver = &mut self.driver;
                // A socket closed by a call since it became ready has nothing to read.
                let Some(socket) = self.udp.get_mut(i) else {
                    more = false;
                    break;
                };
                more = socket.read(1, &self.shared.counters, |d| d.feed(driver));
                // Send after every batch, so replies do not wait for a flood to end.
                self.driver.drain(&mut self.udp);
                self.tcp.flush(self.poll.registry(), &mut self.driver);
                if !self.serve_commands() {
                    return false;
                }
                if !more {
                    break;
                }
            }
            self.udp_ready[i] = more;
        }
        true
    }

    /// Serves the Sfu's deadline if it is due (without an alarm, sleeping out a sub-millisecond
    /// rest first when no I/O waits; see `clock`).
    fn serve_deadline(&mut self, timer_wake: bool) {
        let now = if self.io_pending() || self.alarm.is_some() {
            clock::now()
        } else {
            clock::sleep_rest(self.driver.deadline())
        };
        // A wake for a resting TCP listener is not the Sfu's timer.
        let timer_wake = timer_wake && self.tcp.retry_at().is_none_or(|at| at > now);
        self.driver.serve_deadline(now, timer_wake, &mut self.udp);
    }
}
