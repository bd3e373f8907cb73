//! A deterministic virtual network for the discrete-event simulation.
//!
//! The [`Network`] never reads a clock: every call takes the current simulated time as an
//! [`Instant`] supplied by the caller (the harness starts from one `Instant` and only ever adds
//! durations to it). All randomness comes from a [`ChaCha8Rng`] seeded from the seed given to
//! [`Network::new`], so the same seed and the same sequence of calls give the same deliveries,
//! bit for bit. Use [`seed_from_env`] to pick the seed so that a failing run can be replayed.
//!
//! # Model
//!
//! Every datagram travels over one *link*, chosen by [`Network::link_config`]: a link set for
//! the exact `(from, to)` pair, else a host link of the source, else a host link of the
//! destination, else the default link. Each link is a one-way pipe with this state and order of
//! effects:
//!
//! 1. **Loss**: with probability [`LinkConfig::loss`] the datagram disappears.
//! 2. **Duplication**: with probability [`LinkConfig::duplicate`] a second copy is sent; each
//!    copy then goes through the following steps on its own.
//! 3. **Bandwidth**: with [`LinkConfig::bandwidth_bps`] set, the link is a FIFO serialization
//!    queue. A copy waits until the copies before it are serialized and then takes
//!    `wire size * 8 / bandwidth` to serialize; the wire size is the contents plus 28 bytes
//!    (IPv4 and UDP or TCP headers, counted alike for simplicity) or 48 bytes for IPv6. If the
//!    bytes still queued or being serialized plus this copy exceed
//!    [`LinkConfig::queue_limit_bytes`], the copy is tail-dropped.
//! 4. **Propagation**: the copy arrives [`LinkConfig::latency`] after it was serialized, plus a
//!    uniform random offset in `[-jitter, +jitter]` (never below zero). Jitter does not reorder:
//!    an arrival is never earlier than the previous in-order arrival of the same flow (same
//!    source, destination and [`Proto`]), even if the flow's link changed in between.
//! 5. **Reordering**: with probability [`LinkConfig::reorder`] the copy gets an extra delay,
//!    uniform in `[base / 2, base * 3 / 2]` where `base = max(latency, 20 ms)`, and is exempt
//!    from the in-order rule, so the datagrams sent on the link after it (within that extra
//!    delay) overtake it.
//!
//! [`Proto::Tcp`] datagrams stand for the messages of a TCP connection, which TCP delivers
//! reliably and in order, so they are never lost, duplicated, reordered or tail-dropped: a
//! "lost" TCP datagram is instead delivered after an extra retransmission delay of
//! `max(200 ms, 3 * latency)` (counted in [`NetStats::retransmitted`]), holding back the
//! datagrams of its flow behind it, and a TCP datagram is queued even beyond the queue limit
//! (TCP's flow control would have held it in the sender instead).
//!
//! Datagrams come out of [`Network::deliver_due`] or [`Network::poll_due`] in arrival-time
//! order; datagrams with equal arrival times come out in the order they were sent.
//!
//! [`Network::watch`] records, for one direction between two addresses, when each datagram
//! was sent, how long it waited in the serialization queue and when it left it: the
//! queueing delay a sender causes and the spacing of its departures.
//!
//! The queue state is kept per pair for pair links and for the default link,
//! and per host and direction for host links, so a host link models the host's access link:
//! all traffic leaving the host shares one uplink queue and all traffic reaching it shares one
//! downlink queue.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The environment variable [`seed_from_env`] reads: a decimal `u64`.
pub const SEED_ENV_VAR: &str = "SFU_SIM_SEED";

/// The queue limit of [`LinkConfig::default`], in bytes.
pub const DEFAULT_QUEUE_LIMIT_BYTES: usize = 64 * 1024;

/// The one-way latency of [`LinkConfig::default`].
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(20);

/// The smallest base of the extra delay given to a reordered datagram (see the module docs).
const MIN_REORDER_BASE: Duration = Duration::from_millis(20);

/// The smallest retransmission delay of a "lost" TCP datagram (Linux's minimum RTO).
const MIN_TCP_RTO: Duration = Duration::from_millis(200);

/// Header bytes counted on top of the contents for the bandwidth cap, for IPv4 and IPv6.
const IPV4_OVERHEAD: usize = 28;
const IPV6_OVERHEAD: usize = 48;

/// The impairments of one direction of a link. See the [module docs](self) for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// The one-way propagation delay.
    pub latency: Duration,
    /// The largest random deviation from `latency`, in either direction (uniform).
    pub jitter: Duration,
    /// The probability, `0.0..=1.0`, that a datagram is lost.
    pub loss: f64,
    /// The probability, `0.0..=1.0`, that a datagram is held back so later ones overtake it.
    pub reorder: f64,
    /// The probability, `0.0..=1.0`, that a datagram is delivered twice.
    pub duplicate: f64,
    /// The link's capacity in bits per second, or `None` for no cap. `Some(0)` drops everything
    /// (counted in [`NetStats::dropped_queue`]).
    pub bandwidth_bps: Option<u64>,
    /// With a bandwidth cap, the most bytes that may be queued or being serialized; a datagram
    /// that would exceed it is tail-dropped. Unused without a cap.
    pub queue_limit_bytes: usize,
}

impl Default for LinkConfig {
    /// 20 ms latency, no jitter, loss, reordering or duplication, no bandwidth cap, and a queue
    /// limit of [`DEFAULT_QUEUE_LIMIT_BYTES`] for when a cap is set.
    fn default() -> Self {
        Self {
            latency: DEFAULT_LATENCY,
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            bandwidth_bps: None,
            queue_limit_bytes: DEFAULT_QUEUE_LIMIT_BYTES,
        }
    }
}

impl LinkConfig {
    /// A perfect link: zero latency and no impairments at all.
    #[must_use]
    pub fn ideal() -> Self {
        Self {
            latency: Duration::ZERO,
            ..Self::default()
        }
    }

    /// Returns the config with `latency` as the one-way delay.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Returns the config with `jitter` as the largest deviation from the latency.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Returns the config with loss probability `loss` (`0.0..=1.0`).
    #[must_use]
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// Returns the config with reordering probability `reorder` (`0.0..=1.0`).
    #[must_use]
    pub fn with_reorder(mut self, reorder: f64) -> Self {
        self.reorder = reorder;
        self
    }

    /// Returns the config with duplication probability `duplicate` (`0.0..=1.0`).
    #[must_use]
    pub fn with_duplicate(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }

    /// Returns the config capped at `bps` bits per second.
    #[must_use]
    pub fn with_bandwidth_bps(mut self, bps: u64) -> Self {
        self.bandwidth_bps = Some(bps);
        self
    }

    /// Returns the config with a queue limit of `bytes` (used only with a bandwidth cap).
    #[must_use]
    pub fn with_queue_limit_bytes(mut self, bytes: usize) -> Self {
        self.queue_limit_bytes = bytes;
        self
    }
}

/// The transport protocol of a [`Datagram`]. The network treats both alike (a TCP "datagram" is
/// one framed message, as with ICE-TCP); the harness uses it to hand the datagram to the right
/// socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP (one framed message per datagram).
    Tcp,
}

/// One packet in flight through the [`Network`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The transport protocol.
    pub proto: Proto,
    /// The sender's address.
    pub source: SocketAddr,
    /// The receiver's address.
    pub destination: SocketAddr,
    /// The payload.
    pub contents: Vec<u8>,
}

/// Counters of what the [`Network`] did, from [`Network::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams passed to [`Network::send`].
    pub sent: u64,
    /// Datagrams (including duplicates) handed out by [`Network::deliver_due`] or
    /// [`Network::poll_due`].
    pub delivered: u64,
    /// Datagrams dropped by random loss.
    pub lost: u64,
    /// Datagrams that were sent twice (each counts once here).
    pub duplicated: u64,
    /// Copies that got the reordering delay (whether or not anything overtook them).
    pub reordered: u64,
    /// Copies tail-dropped at a full queue (or on a link with zero bandwidth).
    pub dropped_queue: u64,
    /// TCP datagrams that were "lost" and therefore delivered after a retransmission delay.
    pub retransmitted: u64,
}

/// One datagram's passage through a link, recorded for a watched pair ([`Network::watch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    /// When it was sent.
    pub sent: Instant,
    /// How long it waited behind the datagrams queued before it (zero without a bandwidth
    /// cap).
    pub queued: Duration,
    /// When its serialization finished (when it was sent, without a bandwidth cap).
    pub departed: Instant,
    /// Its size on the wire, in bytes.
    pub size: usize,
    /// Whether it was tail-dropped at a full queue.
    pub dropped: bool,
}

/// Which queue a datagram uses: a pair link, or a host's uplink or downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LinkKey {
    Pair(SocketAddr, SocketAddr),
    HostOut(SocketAddr),
    HostIn(SocketAddr),
}

/// The mutable state of one link.
#[derive(Debug, Default)]
struct LinkState {
    /// When the serializer finishes the last queued datagram.
    busy_until: Option<Instant>,
    /// Queued or serializing datagrams: (serialization finished, wire size).
    in_queue: VecDeque<(Instant, usize)>,
    /// The sum of the sizes in `in_queue`.
    queued_bytes: usize,
}

impl LinkState {
    /// Forgets the datagrams whose serialization finished by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(done, size)) = self.in_queue.front() {
            if done > now {
                break;
            }
            self.in_queue.pop_front();
            self.queued_bytes = self.queued_bytes.saturating_sub(size);
        }
    }
}

/// A datagram scheduled for delivery; ordered by (time, seq) only.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    datagram: Datagram,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A deterministic virtual network. See the [module docs](self) for the model.
#[derive(Debug)]
pub struct Network {
    rng: ChaCha8Rng,
    default_link: LinkConfig,
    links: BTreeMap<(SocketAddr, SocketAddr), LinkConfig>,
    host_links: BTreeMap<SocketAddr, LinkConfig>,
    states: BTreeMap<LinkKey, LinkState>,
    /// The latest in-order arrival scheduled per flow.
    last_arrival: BTreeMap<(SocketAddr, SocketAddr, Proto), Instant>,
    in_flight: BinaryHeap<Scheduled>,
    next_seq: u64,
    stats: NetStats,
    /// The pairs whose departures are recorded, with what was recorded.
    watched: BTreeMap<(SocketAddr, SocketAddr), Vec<Departure>>,
}

impl Network {
    /// A network whose randomness is derived from `seed`, with [`LinkConfig::default`] as the
    /// default link.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            default_link: LinkConfig::default(),
            links: BTreeMap::new(),
            host_links: BTreeMap::new(),
            states: BTreeMap::new(),
            last_arrival: BTreeMap::new(),
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            stats: NetStats::default(),
            watched: BTreeMap::new(),
        }
    }

    /// Records from now on every datagram sent from `from` to `to` ([`Network::departures`]).
    pub fn watch(&mut self, from: SocketAddr, to: SocketAddr) {
        self.watched.entry((from, to)).or_default();
    }

    /// What was recorded for a pair given to [`Network::watch`], in send order.
    #[must_use]
    pub fn departures(&self, from: SocketAddr, to: SocketAddr) -> &[Departure] {
        self.watched.get(&(from, to)).map_or(&[], Vec::as_slice)
    }

    /// Sets the link for datagrams from `from` to `to` (one direction only). It takes
    /// precedence over host links and the default link.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, cfg: LinkConfig) {
        self.links.insert((from, to), cfg);
    }

    /// Removes the link set by [`Network::set_link`] for `from` to `to`, if any.
    pub fn remove_link(&mut self, from: SocketAddr, to: SocketAddr) {
        self.links.remove(&(from, to));
    }

    /// Sets the link used between pairs that have neither a pair link nor a host link.
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
    }

    /// Sets the access link of host `addr`: it applies to every datagram from or to `addr`
    /// that has no pair link. When both ends have a host link, the source's is used.
    pub fn set_host_link(&mut self, addr: SocketAddr, cfg: LinkConfig) {
        self.host_links.insert(addr, cfg);
    }

    /// Removes the host link set by [`Network::set_host_link`] for `addr`, if any.
    pub fn remove_host_link(&mut self, addr: SocketAddr) {
        self.host_links.remove(&addr);
    }

    /// The link config that a datagram from `from` to `to` would use now.
    #[must_use]
    pub fn link_config(&self, from: SocketAddr, to: SocketAddr) -> &LinkConfig {
        self.resolve(from, to).1
    }

    fn resolve(&self, from: SocketAddr, to: SocketAddr) -> (LinkKey, &LinkConfig) {
        if let Some(cfg) = self.links.get(&(from, to)) {
            (LinkKey::Pair(from, to), cfg)
        } else if let Some(cfg) = self.host_links.get(&from) {
            (LinkKey::HostOut(from), cfg)
        } else if let Some(cfg) = self.host_links.get(&to) {
            (LinkKey::HostIn(to), cfg)
        } else {
            (LinkKey::Pair(from, to), &self.default_link)
        }
    }

    /// Sends `d` at time `now`: applies the impairments of its link and schedules zero, one or
    /// two deliveries.
    pub fn send(&mut self, now: Instant, d: Datagram) {
        self.stats.sent += 1;
        let (key, cfg) = self.resolve(d.source, d.destination);
        let cfg = cfg.clone();
        let reliable = d.proto == Proto::Tcp;
        let mut retransmission = Duration::ZERO;
        if chance(&mut self.rng, cfg.loss) {
            if !reliable {
                self.stats.lost += 1;
                return;
            }
            self.stats.retransmitted += 1;
            retransmission = MIN_TCP_RTO.max(cfg.latency.saturating_mul(3));
        }
        if !reliable && chance(&mut self.rng, cfg.duplicate) {
            self.stats.duplicated += 1;
            self.transmit(now, key, &cfg, d.clone(), Duration::ZERO);
        }
        self.transmit(now, key, &cfg, d, retransmission);
    }

    /// Queues, delays and schedules one copy of a datagram; `extra` is added to its delay.
    fn transmit(
        &mut self,
        now: Instant,
        key: LinkKey,
        cfg: &LinkConfig,
        d: Datagram,
        extra: Duration,
    ) {
        let reliable = d.proto == Proto::Tcp;
        let state = self.states.entry(key).or_default();

        // Serialization queue.
        let record = self.watched.get_mut(&(d.source, d.destination));
        let departure = match cfg.bandwidth_bps {
            None => {
                if let Some(log) = record {
                    log.push(Departure {
                        sent: now,
                        queued: Duration::ZERO,
                        departed: now,
                        size: wire_size(&d),
                        dropped: false,
                    });
                }
                now
            }
            Some(bps) => {
                state.expire(now);
                let size = wire_size(&d);
                let fits = state
                    .queued_bytes
                    .checked_add(size)
                    .is_some_and(|total| reliable || total <= cfg.queue_limit_bytes);
                let start = state.busy_until.map_or(now, |busy| busy.max(now));
                let done = serialization_time(size, bps).and_then(|t| start.checked_add(t));
                let accepted = done.filter(|_| fits);
                if let Some(log) = record {
                    log.push(Departure {
                        sent: now,
                        queued: start.saturating_duration_since(now),
                        departed: accepted.unwrap_or(now),
                        size,
                        dropped: accepted.is_none(),
                    });
                }
                match accepted {
                    Some(done) => {
                        state.busy_until = Some(done);
                        state.in_queue.push_back((done, size));
                        state.queued_bytes += size;
                        done
                    }
                    None => {
                        self.stats.dropped_queue += 1;
                        return;
                    }
                }
            }
        };

        // Propagation, jitter and reordering.
        let mut delay = cfg.latency.saturating_add(extra);
        let jitter = duration_nanos(cfg.jitter);
        if jitter > 0 {
            let offset = self.rng.random_range(0..=jitter.saturating_mul(2));
            delay = Duration::from_nanos(
                duration_nanos(delay)
                    .saturating_add(offset)
                    .saturating_sub(jitter),
            );
        }
        let reordered = !reliable && chance(&mut self.rng, cfg.reorder);
        if reordered {
            let base = duration_nanos(cfg.latency.max(MIN_REORDER_BASE));
            let extra = self
                .rng
                .random_range(base / 2..=base.saturating_add(base / 2));
            delay = delay.saturating_add(Duration::from_nanos(extra));
            self.stats.reordered += 1;
        }
        let Some(mut arrival) = departure.checked_add(delay) else {
            // Not representable: it would never arrive within the simulation anyway.
            self.stats.lost += 1;
            return;
        };
        if !reordered {
            let flow = (d.source, d.destination, d.proto);
            if let Some(&last) = self.last_arrival.get(&flow) {
                arrival = arrival.max(last);
            }
            self.last_arrival.insert(flow, arrival);
        }

        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Scheduled {
            at: arrival,
            seq,
            datagram: d,
        });
    }

    /// The earliest scheduled arrival, or `None` if nothing is in flight.
    #[must_use]
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.peek().map(|s| s.at)
    }

    /// The number of datagrams in flight.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Removes and returns the earliest datagram due at or before `now`, with its arrival time.
    ///
    /// Calling this in a loop, and sending in between, lets datagrams sent over zero-latency
    /// links during the loop be delivered in the same loop.
    pub fn poll_due(&mut self, now: Instant) -> Option<(Instant, Datagram)> {
        if self.in_flight.peek()?.at > now {
            return None;
        }
        let s = self.in_flight.pop()?;
        self.stats.delivered += 1;
        Some((s.at, s.datagram))
    }

    /// Removes and returns every datagram due at or before `now`, in arrival-time order (ties
    /// in send order), each with its arrival time.
    pub fn deliver_due(&mut self, now: Instant) -> Vec<(Instant, Datagram)> {
        let mut due = Vec::new();
        while let Some(item) = self.poll_due(now) {
            due.push(item);
        }
        due
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> NetStats {
        self.stats
    }
}

/// True with probability `p`; draws from the RNG only for `0 < p < 1`, so a link without an
/// impairment does not shift the random stream. NaN counts as zero.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p.is_nan() || p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.random::<f64>() < p
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The bytes a datagram occupies on the wire, for the bandwidth cap.
fn wire_size(d: &Datagram) -> usize {
    let overhead = if d.destination.is_ipv4() {
        IPV4_OVERHEAD
    } else {
        IPV6_OVERHEAD
    };
    d.contents.len().saturating_add(overhead)
}

/// How long `bytes` take to serialize at `bps`, or `None` for a zero bandwidth.
fn serialization_time(bytes: usize, bps: u64) -> Option<Duration> {
    if bps == 0 {
        return None;
    }
    let bits = u128::try_from(bytes).ok()?.checked_mul(8)?;
    let nanos = bits.checked_mul(1_000_000_000)?.div_ceil(u128::from(bps));
    Some(Duration::from_nanos(u64::try_from(nanos).ok()?))
}

/// The simulation seed for `test_name`: the decimal value of the `SFU_SIM_SEED` environment
/// variable if it is set, else one derived from the wall clock, the process id and the test
/// name. Always prints `"{test_name}: SFU_SIM_SEED={seed}"` to stderr, so that a failing run can
/// be replayed with `SFU_SIM_SEED=<seed> cargo test <test_name>`.
///
/// # Panics
///
/// If `SFU_SIM_SEED` is set but is not a decimal `u64` (silently ignoring a seed that was
/// meant to replay a failure would be worse).
pub fn seed_from_env(test_name: &str) -> u64 {
    let seed = match std::env::var(SEED_ENV_VAR) {
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(seed) => seed,
            Err(e) => panic!("{test_name}: {SEED_ENV_VAR}={value:?} is not a decimal u64: {e}"),
        },
        Err(_) => fresh_seed(test_name),
    };
    eprintln!("{test_name}: {SEED_ENV_VAR}={seed}");
    seed
}

/// A seed that differs from run to run (and between tests started at the same moment).
// The workspace bans SystemTime::now so that the core takes time from its caller; here a
// wall-clock value is exactly what is wanted: a fresh seed per run, printed for replay. It is
// never used as simulated time.
#[allow(clippy::disallowed_methods)]
fn fresh_seed(test_name: &str) -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, duration_nanos);
    // FNV-1a over the test name.
    let name = test_name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    splitmix64(clock ^ splitmix64(name ^ u64::from(std::process::id())))
}

/// The SplitMix64 finalizer: a bijective mix of all 64 bits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
