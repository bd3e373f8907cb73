//! A worker without its way of waiting: the Sfu, its deadline, its ICE-TCP table, the control
//! calls, the drain loop with GSO batching, the event queue and the counters. Both runtimes run
//! exactly this; each only reads its sockets, waits, and lends the driver its UDP sockets for
//! sending ([`UdpSockets`]).
//!
//! The rules, the same on both runtimes:
//!
//! - every input (a batch of datagrams or frames, a call, a deadline) is followed by
//!   [`Driver::drain`], which sends what the Sfu made: each UDP transmit in one send (a run
//!   of datagrams the Sfu wrote back to back, `Transmit::segment_size`, through GSO; the Sfu
//!   makes runs up to [`gso_segments`] of the worker's sockets), TCP onto its connection's
//!   queue;
//! - a control call runs at the Sfu's own time (that of its latest input), never moving its
//!   clock: datagrams still waiting in the socket carry kernel arrival times from before the
//!   call, and a clock moved past them would make a burst seem to arrive at one instant to
//!   transport-wide congestion control (the sender's bandwidth probes then fail);
//! - a deadline is served only when due; one served on a wake by nothing but the timer counts
//!   in `timer_fires` with its lateness, one the timer woke for too early in `timer_early`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::addr::SocketAddrs;
use super::call::WorkerContext;
use super::tcp::{Close, ConnId, Opened, TcpTable, TCP_SWEEP_INTERVAL};
use super::{gro_segments, Command, CounterCells, RuntimeConfig, WorkerShared};
use crate::{Error, Event, Input, Output, Protocol, Sfu, Transmit, TransportId};

/// One UDP send, addressed as the socket wants it ([`SocketAddrs::send_addrs`]): a datagram,
/// or with `segment_size` several of that size (the last may be shorter) joined for GSO. The
/// fields are quinn-udp's `Transmit`'s.
#[derive(Debug, Clone, Copy)]
pub struct UdpSend<'a> {
    /// The peer.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: &'a [u8],
    /// The size of each datagram, when there are several.
    pub segment_size: Option<usize>,
    /// The local ip to send from, for a wildcard socket.
    pub src_ip: Option<IpAddr>,
}

/// What the driver needs of a runtime's UDP sockets to send: their addresses, and a send that
/// does not wait. Sockets are numbered from 0; the driver picks the first whose
/// [`SocketAddrs::sends_from`] the transmit's source.
pub trait UdpSockets {
    /// The addresses of socket `socket`; `None` past the last.
    fn addrs(&self, socket: usize) -> Option<SocketAddrs>;
    /// How many datagrams one send of socket `socket` may carry (GSO), at least 1.
    fn max_segments(&self, socket: usize) -> usize;
    /// Hands one send to socket `socket` without waiting.
    fn send(&mut self, socket: usize, send: &UdpSend<'_>) -> io::Result<()>;
    /// Opens a socket bound to `addr` exactly (a plain transport's), read like the others:
    /// its number and addresses. Unsupported unless the runtime says otherwise.
    fn open(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddrs)> {
        let _ = addr;
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Closes socket `socket`, one [`open`](Self::open) made.
    fn close(&mut self, socket: usize) {
        let _ = socket;
    }
}

/// How a runtime opens and closes the sockets of [`UdpSlots`]: binding, and registering with
/// its way of waiting.
pub trait UdpOpener {
    /// The runtime's socket.
    type Socket: UdpSocketSend;
    /// Binds `addr` exactly and registers the socket as number `slot`.
    fn open(&mut self, slot: usize, addr: SocketAddr) -> io::Result<Self::Socket>;
    /// Unregisters socket `slot` (it closes when dropped).
    fn close(&mut self, slot: usize, socket: Self::Socket);
}

/// A worker's UDP sockets in numbered slots: its listen sockets first, then those opened on
/// demand for plain transports (a closed one's slot is taken by the next). What both runtimes
/// lend the driver.
#[derive(Debug)]
pub struct UdpSlots<O: UdpOpener> {
    slots: Vec<Option<O::Socket>>,
    opener: O,
}

impl<O: UdpOpener> UdpSlots<O> {
    /// The listen sockets, numbered from 0, and how to open more.
    pub fn new(listen: Vec<O::Socket>, opener: O) -> Self {
        Self {
            slots: listen.into_iter().map(Some).collect(),
            opener,
        }
    }

    /// The number of slots (some may be empty).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The socket in slot `slot`.
    pub fn get(&self, slot: usize) -> Option<&O::Socket> {
        self.slots.get(slot)?.as_ref()
    }

    /// The socket in slot `slot`.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut O::Socket> {
        self.slots.get_mut(slot)?.as_mut()
    }

    /// The opener.
    pub fn opener(&mut self) -> &mut O {
        &mut self.opener
    }
}

impl<O: UdpOpener> UdpSockets for UdpSlots<O> {
    fn addrs(&self, socket: usize) -> Option<SocketAddrs> {
        match self.slots.get(socket)? {
            Some(s) => Some(s.addrs()),
            // An empty slot matches no source.
            None => Some(SocketAddrs {
                bound: UNROUTABLE,
                local: UNROUTABLE,
            }),
        }
    }

    fn max_segments(&self, socket: usize) -> usize {
        self.get(socket).map_or(1, |s| s.max_segments().max(1))
    }

    fn send(&mut self, socket: usize, send: &UdpSend<'_>) -> io::Result<()> {
        match self.get(socket) {
            Some(s) => s.try_send(send),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn open(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddrs)> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        let socket = self.opener.open(slot, addr)?;
        let addrs = socket.addrs();
        if slot == self.slots.len() {
            self.slots.push(Some(socket));
        } else {
            self.slots[slot] = Some(socket);
        }
        Ok((slot, addrs))
    }

    fn close(&mut self, socket: usize) {
        if let Some(s) = self.slots.get_mut(socket).and_then(Option::take) {
            self.opener.close(socket, s);
        }
    }
}

/// The address an empty slot shows: port 0 of the unspecified address, which no transmit
/// names as its source.
const UNROUTABLE: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// One UDP socket of a runtime, as the driver sends through it; a `Vec` of them is the
/// runtime's [`UdpSockets`].
pub trait UdpSocketSend {
    /// Its addresses.
    fn addrs(&self) -> SocketAddrs;
    /// How many datagrams one send may carry (GSO).
    fn max_segments(&self) -> usize;
    /// Hands one send to the socket without waiting.
    fn try_send(&self, send: &UdpSend<'_>) -> io::Result<()>;
}

impl<S: UdpSocketSend> UdpSockets for Vec<S> {
    fn addrs(&self, socket: usize) -> Option<SocketAddrs> {
        self.get(socket).map(S::addrs)
    }

    fn max_segments(&self, socket: usize) -> usize {
        self.get(socket).map_or(1, |s| s.max_segments().max(1))
    }

    fn send(&mut self, socket: usize, send: &UdpSend<'_>) -> io::Result<()> {
        match self.get(socket) {
            Some(s) => s.try_send(send),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

impl<S: UdpSocketSend + ?Sized> UdpSocketSend for std::rc::Rc<S> {
    fn addrs(&self) -> SocketAddrs {
        (**self).addrs()
    }

    fn max_segments(&self) -> usize {
        (**self).max_segments()
    }

    fn try_send(&self, send: &UdpSend<'_>) -> io::Result<()> {
        (**self).try_send(send)
    }
}

/// The same send as quinn-udp takes it (both runtimes send through quinn-udp).
#[cfg(feature = "quinn-udp")]
impl<'a> From<&UdpSend<'a>> for quinn_udp::Transmit<'a> {
    fn from(send: &UdpSend<'a>) -> Self {
        quinn_udp::Transmit {
            destination: send.destination,
            ecn: None,
            contents: send.contents,
            segment_size: send.segment_size,
            src_ip: send.src_ip,
        }
    }
}

/// How many datagrams one send may carry on every socket of `udp` (GSO): what the Sfu may put
/// in one [`Transmit`] ([`SfuConfig::gso_segments`](crate::SfuConfig::gso_segments)). Sockets
/// opened later take the same socket options, so the same figure.
pub fn gso_segments(udp: &impl UdpSockets) -> usize {
    (0..)
        .map_while(|i| udp.addrs(i).map(|_| udp.max_segments(i)))
        .min()
        .unwrap_or(1)
        .max(1)
}

/// The socket of `udp` that sends from `source`: a plain transport's own socket by its
/// address, else the first listen socket that sends from it.
fn socket_for(
    udp: &impl UdpSockets,
    opened: &HashMap<SocketAddr, usize>,
    source: SocketAddr,
) -> Option<(usize, SocketAddrs)> {
    if let Some(&slot) = opened.get(&source) {
        return Some((slot, udp.addrs(slot)?));
    }
    (0..)
        .map_while(|i| Some((i, udp.addrs(i)?)))
        .find(|(_, addrs)| addrs.sends_from(source))
}

/// Where a worker's events go: `false` when the queue is full (the event is dropped and
/// counted).
pub type EventSink = Box<dyn FnMut(usize, Event) -> bool + Send>;

/// One worker's Sfu and everything about it that does not wait.
pub struct Driver {
    index: usize,
    sfu: Sfu,
    deadline: Instant,
    shared: Arc<WorkerShared>,
    tcp: TcpTable,
    /// When ICE-TCP connections are next checked against their timeouts.
    tcp_sweep_at: Instant,
    events: EventSink,
    /// Where plain transports' sockets are opened when their listen info names no port.
    rtc_port_range: Option<(u16, u16)>,
    /// The sockets opened for each plain transport, closed with it.
    transport_sockets: HashMap<TransportId, Vec<SocketAddr>>,
    /// The slots of those sockets, by their local address.
    opened: HashMap<SocketAddr, usize>,
}

impl Driver {
    /// The driver of worker `index`: its Sfu made from `config` at `now`. Fails if the Sfu
    /// cannot be made.
    pub fn new(
        index: usize,
        config: &RuntimeConfig,
        now: Instant,
        shared: Arc<WorkerShared>,
        events: EventSink,
        gso_segments: usize,
    ) -> Result<Self, Error> {
        let mut sfu_config = config.worker_sfu_config(index);
        sfu_config.gso_segments = gso_segments.max(1);
        let sfu = Sfu::new(sfu_config, now)?;
        let max_frame = config.sfu.max_datagram_size;
        let mut driver = Self {
            index,
            sfu,
            deadline: now,
            shared,
            tcp: TcpTable::new(max_frame),
            tcp_sweep_at: now,
            events,
            rtc_port_range: config.rtc_port_range,
            transport_sockets: HashMap::new(),
            opened: HashMap::new(),
        };
        driver.drain(&mut NoSockets);
        Ok(driver)
    }

    /// The worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// When the worker must wake next: the Sfu's deadline, or the check of ICE-TCP
    /// connections' timeouts (see [`Driver::tcp_expire`]) while there are connections.
    pub fn deadline(&self) -> Instant {
        if self.tcp.is_empty() {
            self.deadline
        } else {
            self.deadline.min(self.tcp_sweep_at)
        }
    }

    /// The worker's live counters.
    pub fn counters(&self) -> &CounterCells {
        &self.shared.counters
    }

    /// The ICE-TCP connections: what each has to write ([`TcpTable::unsent`]).
    pub fn tcp(&mut self) -> &mut TcpTable {
        &mut self.tcp
    }

    /// A connection accepted at `now` on `local` from `peer`: see [`TcpTable::open`] (close
    /// the sockets of the connections it ended).
    pub fn tcp_open(
        &mut self,
        local: SocketAddr,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<Opened> {
        if self.tcp.is_empty() {
            self.tcp_sweep_at = now + TCP_SWEEP_INTERVAL;
        }
        self.tcp.open(local, peer, now, &self.shared.counters)
    }

    /// Closes the ICE-TCP connections past their timeouts at `now` (once per
    /// [`TCP_SWEEP_INTERVAL`]) and adds their ids to `ended`: close their sockets.
    pub fn tcp_expire(&mut self, now: Instant, ended: &mut Vec<ConnId>) {
        if now < self.tcp_sweep_at {
            return;
        }
        self.tcp_sweep_at = now + TCP_SWEEP_INTERVAL;
        self.tcp.expire(now, &self.shared.counters, ended);
    }

    /// Connection `id` ended: with `None` the peer closed its side ([`TcpTable::end_of_stream`]
    /// says whether cleanly), else for that reason. Counted once, however often it is reported.
    pub fn tcp_closed(&mut self, id: ConnId, close: Option<Close>) {
        let counters = &self.shared.counters;
        match close {
            None => {
                self.tcp.end_of_stream(id, counters);
            }
            Some(close) => self.tcp.close(id, close, counters),
        }
    }

    /// Carries out a command at the Sfu's own time and drains. `false` means the worker must
    /// stop.
    pub fn command(&mut self, command: Command, udp: &mut impl UdpSockets) -> bool {
        let Command::Call(call) = command else {
            return false;
        };
        self.shared.counters.requests.inc();
        let mut opened = Vec::new();
        let mut slots = Opening {
            udp,
            slots: &mut self.opened,
        };
        let mut worker = WorkerContext::new(
            &self.shared.listen_infos,
            &mut slots,
            self.rtc_port_range,
            &mut opened,
        );
        let answer = call(&mut self.sfu, &mut worker);
        for (transport, local) in opened {
            self.transport_sockets
                .entry(transport)
                .or_default()
                .push(local);
        }
        self.drain(udp);
        answer.send();
        true
    }

    /// The sockets open for plain transports (their local addresses).
    pub fn transport_sockets(&self) -> usize {
        self.opened.len()
    }

    /// Feeds one UDP receive buffer that arrived at `now` from `source` at `destination`: one
    /// datagram, or GRO's `stride`-sized segments. Drain after the batch.
    pub fn udp_received(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
        stride: usize,
        ecn_ce: bool,
    ) {
        let counters = &self.shared.counters;
        counters.udp_bytes_received.add(buf.len() as u64);
        if stride > 0 && buf.len() > stride {
            counters.udp_gro_buffers.inc();
        }
        let source = super::addr::canonical(source);
        for contents in gro_segments(buf, stride) {
            counters.udp_datagrams_received.inc();
            if ecn_ce {
                counters.udp_ecn_ce.inc();
            }
            self.sfu.handle_input(Input::Receive {
                now,
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            });
        }
    }

    /// Feeds bytes read at `now` from ICE-TCP connection `id`: every whole frame goes to the
    /// Sfu. Broken framing closes the connection (counted) and is returned: close its socket.
    /// Drain afterwards.
    pub fn tcp_received(&mut self, id: ConnId, now: Instant, bytes: &[u8]) -> Result<(), Close> {
        let sfu = &mut self.sfu;
        self.tcp.received(
            id,
            bytes,
            now,
            &self.shared.counters,
            |source, destination, contents| {
                sfu.handle_input(Input::Receive {
                    now,
                    proto: Protocol::Tcp,
                    source,
                    destination,
                    contents,
                });
            },
        )?;
        // A connection is trusted once a valid ICE binding request made its path known.
        if !self.tcp.is_authenticated(id) {
            if let Some((local, peer)) = self.tcp.pair(id) {
                if self.sfu.knows_path(Protocol::Tcp, local, peer) {
                    self.tcp.authenticate(id);
                }
            }
        }
        Ok(())
    }

    /// Serves the deadline if it is due at `now`, and drains. `timer_wake`: the worker woke for
    /// nothing but its timer, so the lateness is the timer's (counted in `timer_fires`), or the
    /// wake was early (`timer_early`).
    pub fn serve_deadline(&mut self, now: Instant, timer_wake: bool, udp: &mut impl UdpSockets) {
        let counters = &self.shared.counters;
        if now < self.deadline {
            // A wake for the ICE-TCP timeouts is not early.
            let for_tcp = !self.tcp.is_empty() && now >= self.tcp_sweep_at;
            if timer_wake && !for_tcp {
                counters.timer_early.inc();
            }
            return;
        }
        counters.deadlines_served.inc();
        if timer_wake {
            counters.record_timer_fire(now - self.deadline);
        }
        self.sfu.handle_input(Input::Timeout(now));
        self.drain(udp);
    }

    /// Polls the Sfu until it names its next deadline and sends everything it made: each UDP
    /// transmit at once, a run of datagrams the Sfu wrote back to back in one GSO send (so the
    /// first destinations' datagrams leave while the Sfu still makes the later ones), TCP
    /// frames onto their connection's queue (see [`TcpTable::take_dirty`]), events to the sink.
    pub fn drain(&mut self, udp: &mut impl UdpSockets) {
        loop {
            match self.sfu.poll_output() {
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    self.tcp.queue(&t, &self.shared.counters);
                    self.sfu.recycle(t.contents);
                }
                Output::Transmit(t) => {
                    send_udp(&self.shared.counters, udp, &self.opened, &t);
                    self.sfu.recycle(t.contents);
                }
                Output::Event(e) => {
                    if let Event::TransportClosed { transport } = &e {
                        for local in self.transport_sockets.remove(transport).unwrap_or_default() {
                            if let Some(slot) = self.opened.remove(&local) {
                                udp.close(slot);
                            }
                        }
                    }
                    if !(self.events)(self.index, e) {
                        self.shared.counters.events_dropped.inc();
                    }
                }
                Output::Timeout(at) => {
                    self.deadline = at;
                    self.shared.counters.record_sfu(&self.sfu);
                    return;
                }
            }
        }
    }
}

/// Sends one UDP transmit (a run of datagrams in one GSO send) from the socket of its source.
fn send_udp(
    counters: &CounterCells,
    udp: &mut impl UdpSockets,
    opened: &HashMap<SocketAddr, usize>,
    t: &Transmit,
) {
    let Some((socket, addrs)) = socket_for(udp, opened, t.source) else {
        counters.udp_no_socket.inc();
        return;
    };
    let (destination, src_ip) = addrs.send_addrs(t.source, t.destination);
    let send = UdpSend {
        destination,
        contents: &t.contents,
        segment_size: t.segment_size,
        src_ip,
    };
    let datagrams = t.datagrams().count();
    record_send(counters, &send, datagrams, udp.send(socket, &send));
}

/// Counts one UDP send of `n` datagrams.
fn record_send(counters: &CounterCells, send: &UdpSend<'_>, n: usize, result: io::Result<()>) {
    let n = n as u64;
    match result {
        Ok(()) => {
            counters.udp_datagrams_sent.add(n);
            counters.udp_bytes_sent.add(send.contents.len() as u64);
            if n > 1 {
                counters.udp_gso_batches.inc();
            }
        }
        Err(e) => {
            tracing::trace!(error = %e, to = %send.destination, "udp send dropped");
            counters.udp_send_errors.add(n);
            if e.kind() == io::ErrorKind::WouldBlock {
                counters.udp_send_would_block.add(n);
            }
        }
    }
}

/// The runtime's sockets while a call may open some: each one opened is noted by its local
/// address.
struct Opening<'a, U> {
    udp: &'a mut U,
    slots: &'a mut HashMap<SocketAddr, usize>,
}

impl<U: UdpSockets> UdpSockets for Opening<'_, U> {
    fn addrs(&self, socket: usize) -> Option<SocketAddrs> {
        self.udp.addrs(socket)
    }

    fn max_segments(&self, socket: usize) -> usize {
        self.udp.max_segments(socket)
    }

    fn send(&mut self, socket: usize, send: &UdpSend<'_>) -> io::Result<()> {
        self.udp.send(socket, send)
    }

    fn open(&mut self, addr: SocketAddr) -> io::Result<(usize, SocketAddrs)> {
        let (slot, addrs) = self.udp.open(addr)?;
        self.slots.insert(addrs.local, slot);
        Ok((slot, addrs))
    }

    fn close(&mut self, socket: usize) {
        self.slots.retain(|_, &mut slot| slot != socket);
        self.udp.close(socket);
    }
}

/// Before the worker runs: nothing can be sent yet.
struct NoSockets;

impl UdpSockets for NoSockets {
    fn addrs(&self, _: usize) -> Option<SocketAddrs> {
        None
    }

    fn max_segments(&self, _: usize) -> usize {
        1
    }

    fn send(&mut self, _: usize, _: &UdpSend<'_>) -> io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("index", &self.index)
            .field("deadline", &self.deadline)
            .field("tcp", &self.tcp.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::runtime::{call, Call};
    use crate::SfuConfig;

    fn driver(now: Instant) -> Driver {
        let config = RuntimeConfig {
            workers: 1,
            listen: Vec::new(),
            sfu: SfuConfig::with_seed(7),
            rtc_port_range: None,
        };
        let own = crate::ListenInfo {
            protocol: Protocol::Udp,
            local: "127.0.0.1:40000".parse().unwrap(),
            announced_address: None,
        };
        let shared = Arc::new(WorkerShared::new(vec![own]));
        Driver::new(0, &config, now, shared, Box::new(|_, _| true), 1).unwrap()
    }

    fn run<C: Call>(d: &mut Driver, c: C) -> Result<C::Output, Error> {
        let slot = Arc::new(Mutex::new(None));
        let back = slot.clone();
        let command = Command::call(c, move |r| *back.lock().unwrap() = Some(r));
        assert!(d.command(command, &mut NoSockets));
        let result = slot.lock().unwrap().take();
        result.expect("answered")
    }

    #[test]
    fn calls_leave_the_clock_where_the_inputs_put_it() {
        #[allow(clippy::disallowed_methods)] // A test's own clock.
        let t0 = Instant::now();
        let mut d = driver(t0);
        let idle = d.deadline();
        let router = run(
            &mut d,
            call::CreateRouter {
                options: Default::default(),
            },
        );
        // A datagram read after the call may have arrived before it: the clock did not move.
        assert_eq!(d.deadline(), idle);
        let options = Default::default();
        run(
            &mut d,
            call::CreateWebRtcTransport {
                router: router.unwrap(),
                options,
            },
        )
        .unwrap();
        assert_eq!(d.counters().requests.get(), 2);
        assert_eq!(d.counters().transports.get(), 1);
    }

    #[test]
    fn only_timer_wakes_count_as_timer_fires() {
        #[allow(clippy::disallowed_methods)] // A test's own clock.
        let t0 = Instant::now();
        let mut d = driver(t0);
        let deadline = d.deadline();
        // A wake before the deadline: not served; counted as early only on a timer wake.
        d.serve_deadline(deadline - Duration::from_millis(1), false, &mut NoSockets);
        d.serve_deadline(deadline - Duration::from_millis(1), true, &mut NoSockets);
        let c = d.counters().snapshot();
        assert_eq!(
            (c.deadlines_served, c.timer_early, c.timer_fires),
            (0, 1, 0)
        );
        // Served after other work: a deadline served, not a timer fire.
        d.serve_deadline(deadline, false, &mut NoSockets);
        let deadline = d.deadline();
        d.serve_deadline(deadline + Duration::from_micros(250), true, &mut NoSockets);
        let c = d.counters().snapshot();
        assert_eq!((c.deadlines_served, c.timer_fires), (2, 1));
        assert_eq!(c.timer_late_total_us, 250);
    }
}
