//! One worker thread: an Sfu, a mio poll, the worker's sockets, and the loop that joins them.

use std::io;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use sfu_core::runtime::{gso_run, same_path, WorkerShared};
use sfu_core::{Event, Input, ListenInfo, Output, Protocol, Sfu, Transmit};

use crate::clock;
use crate::handle::{Command, WorkerHandle};
use crate::net;
use crate::tcp::{TcpSide, LISTENER_BASE};
use crate::udp::UdpEndpoint;
use crate::RuntimeConfig;

const WAKER: Token = Token(0);
const ALARM: Token = Token(1);
/// UDP sockets' tokens start here.
const UDP_BASE: usize = 2;
/// Batches read from one UDP socket before the worker turns to other work.
const UDP_BATCHES: usize = 16;

/// The Sfu and what it produced but the worker has not sent yet.
struct Core {
    index: usize,
    sfu: Sfu,
    deadline: Instant,
    out: Vec<Transmit>,
    /// Buffers of sent datagrams, given back to the Sfu for reuse after each drain.
    spare: Vec<Vec<u8>>,
    events: SyncSender<(usize, Event)>,
    shared: Arc<WorkerShared>,
}

impl Core {
    /// Feeds one datagram of a batch; [`Core::drain`] after the batch sends what it forwarded,
    /// grouped by destination.
    fn feed(&mut self, input: Input<'_>) {
        self.sfu.handle_input(input);
    }

    /// Polls the Sfu until its deadline. Datagrams gather in `out`; whenever one starts a new
    /// destination, `send` gets the finished run (and may send and clear it), so the first
    /// destinations' datagrams leave while the Sfu is still making the later ones.
    fn drain(&mut self, mut send: impl FnMut(&mut Vec<Transmit>, &mut Vec<Vec<u8>>)) {
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(t) => {
                    if self.out.last().is_some_and(|last| !same_path(last, &t)) {
                        send(&mut self.out, &mut self.spare);
                    }
                    self.out.push(t);
                }
                Output::Event(e) => match self.events.try_send((self.index, e)) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(_)) => {
                        self.shared.counters.events_dropped.inc();
                    }
                },
                Output::Timeout(at) => {
                    self.deadline = at;
                    self.shared.counters.record_sfu(&self.sfu);
                    self.recycle();
                    return;
                }
            }
        }
    }
}

impl Core {
    /// Gives the buffers of sent datagrams back to the Sfu.
    fn recycle(&mut self) {
        for buffer in self.spare.drain(..) {
            self.sfu.recycle(buffer);
        }
    }
}

/// A worker, built on the starting thread (so socket errors surface from `Runtime::start`)
/// and then moved to its own.
pub(crate) struct Worker {
    index: usize,
    poll: Poll,
    commands: Receiver<Command>,
    core: Core,
    udp: Vec<UdpEndpoint>,
    /// UDP sockets that may still have data (mio is edge-triggered).
    udp_ready: Vec<bool>,
    tcp: TcpSide,
    /// Wakes the poll for sub-millisecond deadlines; without it the worker sleeps them out.
    alarm: Option<clock::Alarm>,
    shared: Arc<WorkerShared>,
}

impl Worker {
    /// Binds worker `index`'s sockets and creates its Sfu.
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
        let mut tcp = TcpSide::new(config.sfu.max_datagram_size);
        let mut udp_infos = Vec::new();
        let mut tcp_infos = Vec::new();
        for options in &config.listen {
            let bound = net::bind(options, index)?;
            let info = ListenInfo {
                protocol: options.protocol,
                local: bound.local,
                announced_address: options.announced_address.clone(),
            };
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
                    udp_infos.push(info);
                }
                Protocol::Tcp => {
                    tcp.add_listener(bound, poll.registry())?;
                    tcp_infos.push(info);
                }
            }
        }
        udp_infos.extend(tcp_infos);
        let shared = Arc::new(WorkerShared::new(udp_infos));
        let now = clock::now();
        let sfu = Sfu::new(config.worker_sfu_config(index), now).map_err(io::Error::other)?;
        let (commands_tx, commands) = mpsc::channel();
        let mut core = Core {
            index,
            sfu,
            deadline: now,
            out: Vec::new(),
            spare: Vec::new(),
            events,
            shared: shared.clone(),
        };
        // Nothing is sent before the worker runs; its first flush sends what this made.
        core.drain(|_, _| {});
        let handle = WorkerHandle::new(index, commands_tx, waker, shared.clone());
        let worker = Worker {
            index,
            poll,
            commands,
            core,
            udp_ready: vec![false; udp.len()],
            udp,
            tcp,
            alarm,
            shared,
        };
        Ok((worker, handle))
    }

    /// The loop: wait for I/O, a command or the deadline; serve them; send what the Sfu made.
    pub(crate) fn run(mut self) {
        let _span = tracing::info_span!("worker", index = self.index).entered();
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
                } else if let Some(ready) = self.udp_ready.get_mut(token.0 - UDP_BASE) {
                    *ready = true;
                }
            }
            // Woken by nothing but the clock: the lateness is the timer's, not a busy worker's.
            let timer_wake = !io_pending && events.iter().all(|e| e.token() == ALARM);
            if !self.serve_commands() {
                break;
            }
            if !self.read_udp() {
                break;
            }
            self.read_tcp();
            self.serve_deadline(timer_wake);
            self.flush();
        }
        tracing::info!("worker stopped");
    }

    /// How long to wait for I/O: the whole milliseconds before the deadline, then the rest on
    /// the alarm (see `clock`).
    fn wait_timeout(&mut self) -> Duration {
        let now = clock::now();
        let deadline = self.core.deadline;
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
            match self.commands.try_recv() {
                Ok(Command::Call(request, reply)) => {
                    let result = self.shared.serve(&mut self.core.sfu, request);
                    self.drain();
                    // The caller may have given up waiting; nothing to do then.
                    let _ = reply.send(result);
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// Reads and feeds UDP batches, serving control calls between them (a call waits for at
    /// most one batch, not for a flood to end). Returns false when the worker must stop.
    fn read_udp(&mut self) -> bool {
        for i in 0..self.udp.len() {
            if !self.udp_ready[i] {
                continue;
            }
            let mut more = true;
            for _ in 0..UDP_BATCHES {
                let core = &mut self.core;
                more = self.udp[i].read(1, &self.shared.counters, |d| {
                    core.feed(Input::Receive {
                        now: d.now,
                        proto: Protocol::Udp,
                        source: d.source,
                        destination: d.destination,
                        contents: d.contents,
                    });
                });
                // Send after every batch, so replies do not wait for a flood to end.
                self.drain();
                self.flush();
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

    fn read_tcp(&mut self) {
        let core = &mut self.core;
        self.tcp
            .service(self.poll.registry(), &self.shared.counters, |f| {
                core.feed(Input::Receive {
                    now: f.now,
                    proto: Protocol::Tcp,
                    source: f.source,
                    destination: f.destination,
                    contents: f.contents,
                });
            });
        self.drain();
    }

    /// Serves the Sfu's deadline if it is due (without an alarm, sleeping out a sub-millisecond
    /// rest first when no I/O waits; see `clock`). After a `timer_wake`, records how late it was
    /// served.
    fn serve_deadline(&mut self, timer_wake: bool) {
        let deadline = self.core.deadline;
        let now = if self.io_pending() || self.alarm.is_some() {
            clock::now()
        } else {
            clock::sleep_rest(deadline)
        };
        let counters = &self.shared.counters;
        if now < deadline {
            // A timer wake for a deadline that has since moved later: nothing is due yet.
            if timer_wake {
                counters.timer_early.inc();
            }
            return;
        }
        counters.deadlines_served.inc();
        if timer_wake {
            counters.record_timer_fire(now - deadline);
        }
        self.core.sfu.handle_input(Input::Timeout(now));
        self.drain();
    }

    /// Drains the Sfu, sending each destination's datagrams as soon as the next one's begin.
    fn drain(&mut self) {
        let Worker {
            core,
            udp,
            tcp,
            shared,
            ..
        } = self;
        core.drain(|out, spare| send(udp, tcp, &shared.counters, out, spare));
    }

    /// Sends everything the Sfu produced and not yet sent, and writes out TCP queues.
    fn flush(&mut self) {
        send(
            &mut self.udp,
            &mut self.tcp,
            &self.shared.counters,
            &mut self.core.out,
            &mut self.core.spare,
        );
        self.core.recycle();
        self.tcp.flush(self.poll.registry(), &self.shared.counters);
    }
}

/// Sends and clears `out`: UDP with GSO where consecutive datagrams allow it, TCP onto its
/// connection's queue.
fn send(
    udp: &mut [UdpEndpoint],
    tcp: &mut TcpSide,
    counters: &sfu_core::runtime::CounterCells,
    out: &mut Vec<Transmit>,
    spare: &mut Vec<Vec<u8>>,
) {
    let mut i = 0;
    while i < out.len() {
        let t = &out[i];
        match t.proto {
            Protocol::Tcp => {
                tcp.queue(t, counters);
                i += 1;
            }
            Protocol::Udp => match udp.iter_mut().find(|u| u.local == t.source) {
                Some(endpoint) => {
                    let n = gso_run(&out[i..], endpoint.max_segments());
                    endpoint.send(&out[i..i + n], counters);
                    i += n;
                }
                None => {
                    counters.udp_no_socket.inc();
                    i += 1;
                }
            },
        }
    }
    spare.extend(out.drain(..).map(|t| t.contents));
}
