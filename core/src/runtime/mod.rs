//! What the bundled runtimes (`sfu-runtime-mio` and `sfu-runtime-smol`) share, written once:
//! how a runtime is configured ([`RuntimeConfig`], [`ListenOptions`]), the typed control calls
//! a handle ferries to its worker ([`Call`], [`Command`], the handles' methods from
//! [`worker_handle_methods!`](crate::worker_handle_methods)), the worker itself without its way
//! of waiting ([`Driver`]: the drain loop, GSO batching, GRO splitting, the ICE-TCP table and
//! framing, deadlines, events), the addresses its sockets show ([`addr`]), what its workers
//! count ([`RuntimeCounters`], kept live in [`CounterCells`]), what a worker shares with its
//! handles ([`WorkerShared`]), and how a call through a handle fails ([`RuntimeError`]).
//!
//! Nothing here does I/O, reads a clock or starts a thread; a runtime is only how it waits,
//! its sockets, its threads and its timers.
//!
//! ## Sockets opened on demand
//!
//! A plain transport has a UDP socket of its own. Its create call
//! ([`call::CreatePlainTransport`], or the [`Request`](crate::control::Request)) opens it
//! before the Sfu makes the transport ([`WorkerContext::create_plain_transport`]): on the
//! listen info's port, else the first free one of its port range, else of
//! [`RuntimeConfig::rtc_port_range`] ([`addr::bind_first`]), so the reply names the port. The
//! runtime's sockets sit in numbered slots ([`UdpSlots`]; a runtime writes only how it binds
//! and registers one, [`UdpOpener`]), the driver sends each transport's datagrams through its
//! own socket (found by its address, not by a scan), and when the Sfu reports the transport
//! closed ([`Event::TransportClosed`](crate::Event::TransportClosed), also when its router
//! closes) the driver closes its sockets.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, ListenInfo, Protocol, Sfu, SfuConfig};

pub mod addr;
pub mod call;
mod driver;
pub mod pipe;
pub mod tcp;

pub use call::WorkerContext;
pub use call::{Call, Command};
pub use driver::{
    gso_segments, Driver, EventSink, UdpOpener, UdpSend, UdpSlots, UdpSocketSend, UdpSockets,
};
pub use tcp::{ConnId, TcpTable, MAX_TCP_CONNECTIONS, TCP_QUEUE_LIMIT};

/// How many events may wait for the application before new ones are dropped and counted
/// ([`RuntimeCounters::events_dropped`]).
pub const EVENT_QUEUE_LIMIT: usize = 16_384;

/// One address every worker listens on, like mediasoup's `TransportListenInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// UDP, or TCP (a passive ICE-TCP listener).
    pub protocol: Protocol,
    /// The ip to bind. An unspecified ip (`0.0.0.0`, `::`) binds the wildcard; each runtime's
    /// documentation says which local address the core then sees.
    pub ip: IpAddr,
    /// The address (ip or host name) to signal to peers instead of the local one (a public
    /// address behind NAT, for example).
    pub announced_address: Option<String>,
    /// The port; `0` lets the system choose. A fixed port is worker 0's, and worker `i` binds
    /// `port + i`, since every worker owns its sockets.
    pub port: u16,
    /// If set, each worker binds the first free port of this inclusive range (and `port` is
    /// ignored).
    pub port_range: Option<(u16, u16)>,
}

impl ListenOptions {
    /// `protocol` on `ip`, any port, nothing announced.
    pub fn new(protocol: Protocol, ip: IpAddr) -> Self {
        Self {
            protocol,
            ip,
            announced_address: None,
            port: 0,
            port_range: None,
        }
    }

    /// UDP on `ip`, any port.
    pub fn udp(ip: IpAddr) -> Self {
        Self::new(Protocol::Udp, ip)
    }

    /// Passive ICE-TCP on `ip`, any port.
    pub fn tcp(ip: IpAddr) -> Self {
        Self::new(Protocol::Tcp, ip)
    }

    /// With a fixed port (worker `i` binds `port + i`).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// With a port range (inclusive): each worker binds the first free port in it.
    pub fn with_port_range(mut self, low: u16, high: u16) -> Self {
        self.port_range = Some((low, high));
        self
    }

    /// With an address to signal to peers instead of the local one.
    pub fn with_announced_address(mut self, address: impl Into<String>) -> Self {
        self.announced_address = Some(address.into());
        self
    }

    /// The ports worker `worker` tries, in order, binding the first that is free: the whole
    /// `port_range`, or `port + worker`, or `0` (any) when no port is set. Fails on an empty
    /// range, a range starting at 0, or a fixed port that leaves no port for this worker.
    pub fn worker_ports(&self, worker: usize) -> io::Result<RangeInclusive<u16>> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        match self.port_range {
            Some((low, high)) if low <= high && low != 0 => Ok(low..=high),
            Some(range) => Err(invalid(format!("bad port range {range:?}"))),
            None if self.port == 0 => Ok(0..=0),
            None => {
                let port = u16::try_from(usize::from(self.port) + worker)
                    .map_err(|_| invalid(format!("no port left for worker {worker}")))?;
                Ok(port..=port)
            }
        }
    }
}

/// How to start a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads, each with one [`Sfu`] and its own sockets. Default: one per core (the
    /// available parallelism).
    pub workers: usize,
    /// The sockets every worker opens: one UDP socket per UDP entry and one TCP listener per
    /// TCP entry, shared by all the worker's transports. Default: UDP and TCP on 127.0.0.1,
    /// any port.
    pub listen: Vec<ListenOptions>,
    /// The configuration of each worker's Sfu. A seed, if set, is varied per worker so
    /// workers never draw the same ids (see [`RuntimeConfig::worker_sfu_config`]).
    pub sfu: SfuConfig,
    /// The inclusive range of ports a worker opens a plain transport's socket in when its
    /// listen info names neither a port nor a range (mediasoup's `rtcMinPort`/`rtcMaxPort`).
    /// Default `None`: any port the system gives.
    pub rtc_port_range: Option<(u16, u16)>,
}

impl RuntimeConfig {
    /// The Sfu configuration of worker `worker`: [`RuntimeConfig::sfu`] with a fixed seed `s`
    /// turned into `s + worker`, so workers never draw the same ids.
    pub fn worker_sfu_config(&self, worker: usize) -> SfuConfig {
        let mut config = self.sfu.clone();
        config.seed = config.seed.map(|s| s.wrapping_add(worker as u64));
        config
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            listen: vec![ListenOptions::udp(loopback), ListenOptions::tcp(loopback)],
            sfu: SfuConfig::default(),
            rtc_port_range: None,
        }
    }
}

/// A control call through a worker handle failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The Sfu refused the call; nothing changed.
    #[error(transparent)]
    Sfu(#[from] Error),
    /// The worker has stopped (the runtime shut down, or the worker panicked).
    #[error("worker {0} has stopped")]
    WorkerStopped(usize),
}

/// One live counter: an atomic the worker bumps and handles read.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Raises a maximum to `value` (if it is larger).
    pub fn raise_to(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What a worker's sockets, timers and channels did: a snapshot of its counters (or
        /// the sum over workers, see [`RuntimeCounters::merge`]).
        ///
        /// Everything a runtime drops is counted here; the core's own drops are in
        /// [`SfuStats`](crate::SfuStats). A counter a runtime has no use for stays zero.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RuntimeCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The live counters of one worker, shared between the worker and its handles.
        #[derive(Debug, Default)]
        pub struct CounterCells {
            $($(#[doc = $doc])* pub $name: Counter,)*
        }

        impl CounterCells {
            /// A snapshot of every counter.
            pub fn snapshot(&self) -> RuntimeCounters {
                RuntimeCounters { $($name: self.$name.get(),)* }
            }
        }

        impl RuntimeCounters {
            /// Adds another worker's counters (maxima take the larger value).
            pub fn merge(&mut self, other: &RuntimeCounters) {
                $(self.$name = merge_field(stringify!($name), self.$name, other.$name);)*
            }
        }
    };
}

counters! {
    /// Routers alive on the worker (a gauge).
    routers,
    /// WebRTC transports alive on the worker (a gauge; the worker's load).
    transports,
    /// Control requests carried out.
    requests,
    /// Events dropped because the event channel was full (nobody reads the runtime's events).
    events_dropped,
    /// UDP datagrams received (GRO segments counted one by one).
    udp_datagrams_received,
    /// UDP bytes received.
    udp_bytes_received,
    /// Receive buffers that held more than one datagram (GRO).
    udp_gro_buffers,
    /// UDP datagrams that arrived marked ECN-CE (congestion experienced).
    udp_ecn_ce,
    /// UDP reads that failed with something other than "would block".
    udp_recv_errors,
    /// UDP datagrams handed to the kernel (each GSO segment counted).
    udp_datagrams_sent,
    /// UDP bytes handed to the kernel.
    udp_bytes_sent,
    /// Sends that carried several datagrams in one call (GSO).
    udp_gso_batches,
    /// UDP datagrams dropped because the send failed (full buffer, `ENOBUFS`, unreachable, ...).
    udp_send_errors,
    /// Of `udp_send_errors`, those where the socket's send buffer was full.
    udp_send_would_block,
    /// Transmits naming a local UDP address this worker has no socket for.
    udp_no_socket,
    /// ICE-TCP connections accepted.
    tcp_connections_accepted,
    /// ICE-TCP connections refused because the worker holds its maximum.
    tcp_connections_refused,
    /// ICE-TCP connections the peer closed cleanly.
    tcp_connections_closed,
    /// ICE-TCP connections dropped because the peer broke RFC 4571 framing (a frame longer
    /// than allowed).
    tcp_dropped_malformed,
    /// ICE-TCP connections dropped because reading or writing failed (a reset, for example).
    tcp_dropped_error,
    /// ICE-TCP connections closed by a timeout: no valid ICE binding within
    /// [`tcp::TCP_HANDSHAKE_TIMEOUT`], or no frame for [`tcp::TCP_IDLE_TIMEOUT`] after one.
    tcp_timeouts,
    /// ICE-TCP connections without a valid ICE binding closed to make room for a new one when
    /// the worker held its maximum.
    tcp_evicted,
    /// Errors from `accept` (each pauses accepting on that listener for a moment, so running
    /// out of file descriptors cannot make the worker spin).
    tcp_accept_errors,
    /// RFC 4571 frames received.
    tcp_frames_received,
    /// RFC 4571 frames queued for sending.
    tcp_frames_sent,
    /// Frames dropped because the connection's outgoing queue was full (a slow reader).
    tcp_frames_dropped_queue_full,
    /// Frames for a peer address with no open connection.
    tcp_frames_dropped_no_connection,
    /// Deadlines of the Sfu the worker served.
    deadlines_served,
    /// Deadlines served when the worker woke for nothing else (so their lateness is the
    /// timer's error plus the time until the worker's thread ran, not time spent on other
    /// work).
    timer_fires,
    /// Sum of how late those deadlines were served, in microseconds.
    timer_late_total_us,
    /// The latest one of those deadlines was served, in microseconds.
    timer_late_max_us,
    /// Timer wakes that came before the current deadline (for instance one that moved later
    /// while the timer waited for the earlier one): not served, the timer waits again.
    timer_early,
}

fn merge_field(name: &str, a: u64, b: u64) -> u64 {
    if name.ends_with("_max_us") {
        a.max(b)
    } else {
        a.saturating_add(b)
    }
}

impl RuntimeCounters {
    /// The mean lateness of deadlines served on a timer wake, in microseconds.
    pub fn timer_late_mean_us(&self) -> u64 {
        self.timer_late_total_us
            .checked_div(self.timer_fires)
            .unwrap_or(0)
    }
}

impl CounterCells {
    /// Records the routers and transports alive in the worker's Sfu. Call it after each
    /// drain, so the gauges follow every change.
    pub fn record_sfu(&self, sfu: &Sfu) {
        let (routers, transports, _, _) = sfu.counts();
        self.routers.set(routers as u64);
        self.transports.set(transports as u64);
    }

    /// Records a deadline served on a timer wake, `late` past it.
    pub fn record_timer_fire(&self, late: Duration) {
        let late = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        self.timer_fires.inc();
        self.timer_late_total_us.add(late);
        self.timer_late_max_us.raise_to(late);
    }

    /// The worker's load, what a runtime's `least_loaded` compares: the transports alive in
    /// its Sfu.
    pub fn load(&self) -> usize {
        usize::try_from(self.transports.get()).unwrap_or(usize::MAX)
    }
}

/// What a worker shares with its handles: its live counters and the addresses of its sockets.
#[derive(Debug, Default)]
pub struct WorkerShared {
    /// The worker's live counters.
    pub counters: CounterCells,
    /// The concrete addresses of the worker's sockets, offered to transports created with
    /// empty listen infos.
    pub listen_infos: Vec<ListenInfo>,
}

impl WorkerShared {
    /// Fresh counters for a worker whose sockets have these addresses.
    pub fn new(listen_infos: Vec<ListenInfo>) -> Self {
        Self {
            counters: CounterCells::default(),
            listen_infos,
        }
    }
}

// What the handles share crosses threads (checked when compiling).
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<RuntimeError>();
    is_send_sync::<RuntimeCounters>();
    is_send_sync::<WorkerShared>();
    is_send_sync::<RuntimeConfig>();
};

/// The most bytes one GSO send carries (what the Sfu puts in one run of datagrams).
pub const GSO_MAX_BYTES: usize = 64_000;

/// When a datagram arrived, from its kernel receive timestamp (`SO_TIMESTAMPNS`, time since
/// the Unix epoch on the wall clock, as quinn-udp's `RecvMeta::timestamp` gives it), given the
/// monotonic `now` and the wall clock `wall` read together after the read: `now` less the
/// datagram's age. `None` without a timestamp or when the age is negative or over a second (a
/// wall clock step). Datagrams read in one batch arrived apart, and transport-wide congestion
/// control feedback reports each one's arrival to its sender, whose bandwidth probes fail if
/// a burst seems to arrive at one instant.
pub fn kernel_arrival(
    now: std::time::Instant,
    wall: std::time::SystemTime,
    kernel: Option<std::time::Duration>,
) -> Option<std::time::Instant> {
    let since_epoch = wall.duration_since(std::time::UNIX_EPOCH).ok()?;
    let age = since_epoch.checked_sub(kernel?)?;
    if age > std::time::Duration::from_secs(1) {
        return None;
    }
    now.checked_sub(age)
}

/// The datagrams of one receive buffer: `stride`-sized segments when the kernel coalesced
/// several (GRO reports their size as `stride`; 0 means one datagram), else the buffer itself.
/// An empty datagram is one datagram too, so it is counted and dropped like any other.
pub fn gro_segments(buf: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let stride = if stride == 0 { buf.len() } else { stride };
    let empty = buf.is_empty().then_some(buf);
    buf.chunks(stride.max(1)).chain(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_timestamp_becomes_the_arrival_instant() {
        #[allow(clippy::disallowed_methods)] // A test's own clock.
        let now = std::time::Instant::now();
        let epoch_secs = Duration::from_secs(1_000_000);
        let wall = std::time::UNIX_EPOCH + epoch_secs;
        let ms = Duration::from_millis;
        assert_eq!(
            kernel_arrival(now, wall, Some(epoch_secs - ms(30))),
            Some(now - ms(30))
        );
        assert_eq!(kernel_arrival(now, wall, Some(epoch_secs)), Some(now));
        // No timestamp, one from the future, or one older than a second: not trusted.
        assert_eq!(kernel_arrival(now, wall, None), None);
        assert_eq!(kernel_arrival(now, wall, Some(epoch_secs + ms(5))), None);
        assert_eq!(
            kernel_arrival(now, wall, Some(epoch_secs - ms(1_500))),
            None
        );
    }

    #[test]
    fn merge_adds_and_keeps_maxima() {
        let a = CounterCells::default();
        a.udp_datagrams_received.add(3);
        a.record_timer_fire(Duration::from_micros(50));
        let b = CounterCells::default();
        b.udp_datagrams_received.add(4);
        b.record_timer_fire(Duration::from_micros(30));
        let mut total = a.snapshot();
        total.merge(&b.snapshot());
        assert_eq!(total.udp_datagrams_received, 7);
        assert_eq!(total.timer_fires, 2);
        assert_eq!(total.timer_late_total_us, 80);
        assert_eq!(total.timer_late_max_us, 50);
        assert_eq!(total.timer_late_mean_us(), 40);
    }

    #[test]
    fn listen_options_builder() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let o = ListenOptions::tcp(ip)
            .with_port(4000)
            .with_port_range(5000, 5010)
            .with_announced_address("203.0.113.7");
        assert_eq!(o.protocol, Protocol::Tcp);
        assert_eq!(o.port, 4000);
        assert_eq!(o.port_range, Some((5000, 5010)));
        assert_eq!(o.announced_address.as_deref(), Some("203.0.113.7"));
        assert_eq!(o.worker_ports(3).unwrap(), 5000..=5010);
        let fixed = ListenOptions::udp(ip).with_port(65_534);
        assert_eq!(fixed.worker_ports(1).unwrap(), 65_535..=65_535);
        assert!(fixed.worker_ports(2).is_err());
        assert_eq!(ListenOptions::udp(ip).worker_ports(7).unwrap(), 0..=0);
        assert!(ListenOptions::udp(ip)
            .with_port_range(10, 9)
            .worker_ports(0)
            .is_err());
    }

    #[test]
    fn gro_segments_split_coalesced_buffers_and_keep_empty_datagrams() {
        let buf: Vec<u8> = (0..10).collect();
        let split: Vec<&[u8]> = gro_segments(&buf, 4).collect();
        assert_eq!(split, [&buf[..4], &buf[4..8], &buf[8..]]);
        assert_eq!(gro_segments(&buf, 0).collect::<Vec<_>>(), [&buf[..]]);
        assert_eq!(gro_segments(&buf, 10).count(), 1);
        assert_eq!(gro_segments(&[], 0).collect::<Vec<_>>(), [&[] as &[u8]]);
        assert_eq!(gro_segments(&[], 1200).count(), 1);
    }
}

/// The handles of a runtime's workers, with what a runtime answers about them as a whole. Both
/// runtimes dereference to it, so `runtime.least_loaded()` is the same call on each.
#[derive(Debug)]
pub struct Workers<H> {
    handles: Vec<H>,
    shared: Vec<std::sync::Arc<WorkerShared>>,
}

impl<H> Default for Workers<H> {
    fn default() -> Self {
        Self {
            handles: Vec::new(),
            shared: Vec::new(),
        }
    }
}

impl<H: Clone> Workers<H> {
    /// Adds the next worker's handle and what it shares with its worker.
    pub fn push(&mut self, handle: H, shared: std::sync::Arc<WorkerShared>) {
        self.handles.push(handle);
        self.shared.push(shared);
    }

    /// Handles to every worker, by index.
    pub fn workers(&self) -> &[H] {
        &self.handles
    }

    /// The handle of worker `index`.
    pub fn worker(&self, index: usize) -> Option<&H> {
        self.handles.get(index)
    }

    /// The worker with the fewest transports (the first of those tied).
    ///
    /// # Panics
    ///
    /// With no workers; a started runtime always has one.
    pub fn least_loaded(&self) -> H {
        let loads = self.shared.iter().map(|s| s.counters.load());
        let (index, _) = loads
            .enumerate()
            .min_by_key(|&(_, load)| load)
            .expect("a runtime has at least one worker");
        self.handles[index].clone()
    }

    /// The counters of all workers together.
    pub fn counters(&self) -> RuntimeCounters {
        let mut total = RuntimeCounters::default();
        for s in &self.shared {
            total.merge(&s.counters.snapshot());
        }
        total
    }
}
