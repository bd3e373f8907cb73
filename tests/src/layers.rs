//! What the layer tests share (simulcast, VP8 temporal layers, VP9 SVC, AV1): a consumer's
//! received stream in sequence order, the link toward a consumer whose capacity steps, the
//! clock run in steps until a condition holds, and the measurements taken on what arrived
//! (loss and rate, queueing delay, the longest time without a decodable frame).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::client::Received;
use crate::delivery::extend;
use crate::netsim::LinkConfig;
use crate::sim::Sim;

/// The longest a consumer may go without a decodable frame: a key frame request's round trip
/// (the request to the publisher, its next frame, the way to the consumer) with room to spare.
pub const MAX_FRAME_GAP: Duration = Duration::from_millis(250);

/// How often the stepping helpers look at the simulation.
pub const STEP: Duration = Duration::from_millis(100);

/// The consumer's SSRC (its only encoding's).
pub fn consumer_ssrc(c: &sfu_core::Consumed) -> u32 {
    c.parameters.rtp_parameters.encodings[0]
        .ssrc
        .expect("a consumer's encoding has an SSRC")
}

/// One consumer stream as received: its packets by extended sequence number.
#[derive(Debug)]
pub struct Stream<'a> {
    /// Every packet that arrived before the end of the window, in sequence order (a number
    /// that arrived twice: the later copy), with its extended sequence number.
    pub packets: Vec<(u64, &'a Received)>,
    /// The extended sequence number of the first packet that arrived in the window.
    pub window_start: Option<u64>,
}

impl<'a> Stream<'a> {
    /// What `client` received on `ssrc` before `to`; the window starts with the first packet
    /// that arrived at or after `from` (the packets before it stay, for decoding from the
    /// start of the stream).
    pub fn received(sim: &'a Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Self {
        let mut by_seq = std::collections::BTreeMap::new();
        let mut highest: Option<u64> = None;
        let mut window_start = None;
        for r in sim.clients[client]
            .received
            .iter()
            .filter(|p| p.ssrc == ssrc && p.at < to)
        {
            let seq = extend(highest, r.seq);
            highest = Some(highest.map_or(seq, |h| h.max(seq)));
            if r.at >= from && window_start.is_none() {
                window_start = Some(seq);
            }
            by_seq.insert(seq, r);
        }
        Self {
            packets: by_seq.into_iter().collect(),
            window_start,
        }
    }

    /// The highest extended sequence number received.
    pub fn end(&self) -> Option<u64> {
        self.packets.last().map(|&(s, _)| s)
    }

    /// Numbers received as padding (an empty payload) from the window's start on: the SFU
    /// fills a number it kept for a packet the consumer turned out not to get.
    pub fn filled(&self) -> usize {
        let Some(start) = self.window_start else {
            return 0;
        };
        self.packets
            .iter()
            .filter(|(s, r)| *s >= start && r.payload.is_empty())
            .count()
    }

    /// Breaks in the sequence numbers from the window's start on (a number received after
    /// one that is not one less; padding counts as received).
    pub fn gaps(&self) -> usize {
        let Some(start) = self.window_start else {
            return 0;
        };
        self.packets
            .windows(2)
            .filter(|w| w[1].0 >= start && w[1].0 != w[0].0 + 1)
            .count()
    }
}

/// A link toward a consumer: 20 ms of latency and `bps` of capacity.
pub fn link(bps: u64) -> LinkConfig {
    LinkConfig::default()
        .with_latency(Duration::from_millis(20))
        .with_bandwidth_bps(bps)
}

/// Sets the capacity of the link from the server (UDP) to `client` to `bps` ([`link`]).
pub fn set_capacity_toward(sim: &mut Sim, client: usize, bps: u64) {
    let (server, addr) = (sim.server_udp, sim.clients[client].local);
    sim.net.set_link(server, addr, link(bps));
}

/// Runs the simulation for up to `limit` in steps of [`STEP`] and stops after the first step
/// after which `reached` holds: how long that took, `None` if it never did.
pub fn run_until(
    sim: &mut Sim,
    limit: Duration,
    mut reached: impl FnMut(&Sim) -> bool,
) -> Option<Duration> {
    let start = sim.now;
    while sim.now - start < limit {
        sim.run_for(STEP);
        if reached(sim) {
            return Some(sim.now - start);
        }
    }
    None
}

/// Runs the simulation for all of `total` in steps of [`STEP`], calling `each` after every
/// step with the instant the step began: how long it took until `reached` first held.
pub fn run_watching(
    sim: &mut Sim,
    total: Duration,
    mut reached: impl FnMut(&Sim) -> bool,
    mut each: impl FnMut(&Sim, Instant),
) -> Option<Duration> {
    let start = sim.now;
    let mut first = None;
    while sim.now - start < total {
        let before = sim.now;
        sim.run_for(STEP);
        if first.is_none() && reached(sim) {
            first = Some(sim.now - start);
        }
        each(sim, before);
    }
    first
}

/// Runs the simulation for up to `limit` in steps of [`STEP`] until `reached` has held at
/// every step for `hold`: how long after the start it began to hold, `None` if it never held
/// that long.
pub fn run_until_held(
    sim: &mut Sim,
    limit: Duration,
    hold: Duration,
    mut reached: impl FnMut(&Sim) -> bool,
) -> Option<Duration> {
    let start = sim.now;
    let mut since = None;
    while sim.now - start < limit {
        sim.run_for(STEP);
        if reached(sim) {
            let s = *since.get_or_insert(sim.now);
            if sim.now - s >= hold {
                return Some(s - start);
            }
        } else {
            since = None;
        }
    }
    None
}

/// The fraction of the consumer's packets (by its sequence numbers) sent in `[from, to)` that
/// never arrived, and the bits per second that did.
pub fn loss_and_rate(
    sim: &Sim,
    client: usize,
    ssrc: u32,
    from: Instant,
    to: Instant,
) -> (f64, u64) {
    let got: Vec<_> = sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= from && p.at < to)
        .collect();
    let (Some(first), Some(last)) = (got.first(), got.last()) else {
        return (1.0, 0);
    };
    let mut seqs: Vec<u16> = got.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let span = u64::from(last.seq.wrapping_sub(first.seq)) + 1;
    let loss = 1.0 - (seqs.len() as f64 / span as f64).min(1.0);
    let bytes: usize = got.iter().map(|p| p.payload.len() + 12).sum();
    let secs = to.saturating_duration_since(from).as_secs_f64();
    (loss, (bytes as f64 * 8.0 / secs) as u64)
}

/// The longest a datagram from `from_addr` to `to_addr` sent in `[from, to)` waited in the
/// link's queue, and how many the queue dropped (the pair must be watched:
/// `Network::watch`).
pub fn queueing(
    sim: &Sim,
    from_addr: SocketAddr,
    to_addr: SocketAddr,
    from: Instant,
    to: Instant,
) -> (Duration, usize) {
    let departures: Vec<_> = sim
        .net
        .departures(from_addr, to_addr)
        .iter()
        .filter(|d| d.sent >= from && d.sent < to)
        .collect();
    assert!(!departures.is_empty(), "no datagrams watched");
    let worst = departures
        .iter()
        .map(|d| d.queued)
        .max()
        .unwrap_or_default();
    let dropped = departures.iter().filter(|d| d.dropped).count();
    (worst, dropped)
}

/// The longest time between two consecutive instants of `times` (in order).
pub fn longest_gap(times: impl IntoIterator<Item = Instant>) -> Duration {
    let mut longest = Duration::ZERO;
    let mut previous: Option<Instant> = None;
    for t in times {
        if let Some(p) = previous {
            longest = longest.max(t.saturating_duration_since(p));
        }
        previous = Some(t);
    }
    longest
}

/// With `TIMELINE` set in the environment, prints what happened toward `client` in
/// `[from, now)`: the transport's estimate, the consumer's layer as `layer` names it, the
/// worst queueing delay and the drops of the link's queue, and the probe clusters so far.
/// `origin` is the instant the printed times count from.
pub fn timeline(sim: &Sim, client: usize, layer: &str, from: Instant, origin: Instant) {
    if std::env::var_os("TIMELINE").is_none() {
        return;
    }
    let Ok(stats) = sim.sfu.transport_stats(sim.clients[client].id) else {
        return;
    };
    let (server, addr) = (sim.server_udp, sim.clients[client].local);
    let deps: Vec<_> = sim
        .net
        .departures(server, addr)
        .iter()
        .filter(|d| d.sent >= from && d.sent < sim.now)
        .collect();
    let worst = deps.iter().map(|d| d.queued).max().unwrap_or_default();
    let dropped = deps.iter().filter(|d| d.dropped).count();
    println!(
        "{:>6.1}s est {:>8} layer {layer} queue {:>4}ms dropped {:>3} probes {}/{}/{}",
        (sim.now - origin).as_secs_f64(),
        stats.available_outgoing_bitrate,
        worst.as_millis(),
        dropped,
        stats.probe_clusters,
        stats.probe_clusters_carried,
        stats.probe_clusters_failed
    );
}

/// The instants and durations of a link step run ([`link_step`]).
#[derive(Debug, Clone, Copy)]
pub struct LinkStep {
    /// When the run began (8 s at 3 Mbit/s before the drop).
    pub start: Instant,
    /// When the link dropped to 600 kbit/s, and 2 s after (from then on it must fit).
    pub dropped_at: Instant,
    pub settled: Instant,
    /// How long after the drop the consumer left its top layer.
    pub moved: Duration,
    /// When the link was back at 3 Mbit/s, and how long after that the consumer was back on
    /// its top layer (held there for the run's `hold`).
    pub recovered_at: Instant,
    pub back: Duration,
}

/// The link toward one consumer steps 3 Mbit/s → 600 kbit/s (for 6 s) → 3 Mbit/s, and the
/// figures every layer scheme must meet are asserted: on its top layer before the drop
/// (`on_top`); off it within 2 s of the drop; from 2 s after the drop to the recovery less
/// than 2% of the consumer's packets (`ssrc`) lost, less than 600 kbit/s received and less
/// than 200 ms of queueing delay; back on the top layer within 10 s of the recovery, where it
/// must stay for `hold` to count. `each` is called after every [`STEP`] with the instant the
/// step began and the instant the current phase began (for [`timeline`]). What the stream
/// must be (decodable, which layers) the caller checks on the returned instants.
pub fn link_step(
    sim: &mut Sim,
    client: usize,
    ssrc: u32,
    on_top: impl Fn(&Sim) -> bool,
    hold: Duration,
    mut each: impl FnMut(&Sim, Instant, Instant),
) -> LinkStep {
    let (server, addr) = (sim.server_udp, sim.clients[client].local);
    sim.net.watch(server, addr);
    set_capacity_toward(sim, client, 3_000_000);
    let start = sim.now;
    sim.run_for(Duration::from_secs(8));
    assert!(on_top(sim), "the top layer fits");

    set_capacity_toward(sim, client, 600_000);
    let dropped_at = sim.now;
    let moved = run_watching(
        sim,
        Duration::from_secs(6),
        |sim| !on_top(sim),
        |sim, before| each(sim, before, dropped_at),
    );
    let moved = moved.expect("moved down a layer");
    println!("down after {moved:?}");
    assert!(moved <= Duration::from_secs(2), "{moved:?}");
    let settled = dropped_at + Duration::from_secs(2);
    let (loss, rate) = loss_and_rate(sim, client, ssrc, settled, sim.now);
    let (delay, queue_drops) = queueing(sim, server, addr, settled, sim.now);
    println!(
        "after the drop: loss {loss:.4}, {rate} bit/s received, queueing delay at most \
         {delay:?}, {queue_drops} dropped by the queue"
    );
    assert!(loss < 0.02, "loss {loss}");
    assert!(rate < 600_000, "{rate}");
    assert!(
        delay < Duration::from_millis(200),
        "queueing delay {delay:?}"
    );

    set_capacity_toward(sim, client, 3_000_000);
    let recovered_at = sim.now;
    let back = run_until_held(sim, Duration::from_secs(30), hold, |sim| {
        each(sim, sim.now - STEP, recovered_at);
        on_top(sim)
    });
    let back = back.expect("back on the top layer within 30 s");
    println!("back on the top layer {back:?} after the recovery");
    assert!(back <= Duration::from_secs(10), "{back:?}");
    LinkStep {
        start,
        dropped_at,
        settled,
        moved,
        recovered_at,
        back,
    }
}

/// Takes consumer `id` to temporal layer 0 and back up to its top, twelve times, each time
/// at a later phase of a temporal pattern (500 ms plus 11 ms more each time): only switching
/// points whose references were all sent may add a layer back.
pub fn temporal_down_and_up(sim: &mut Sim, id: sfu_core::ConsumerId) {
    for phase in 0..12 {
        sim.sfu
            .set_consumer_preferred_temporal_layer(id, Some(0))
            .unwrap();
        sim.run_for(Duration::from_millis(500 + 11 * phase));
        sim.sfu
            .set_consumer_preferred_temporal_layer(id, None)
            .unwrap();
        sim.run_for(Duration::from_millis(500));
    }
}
