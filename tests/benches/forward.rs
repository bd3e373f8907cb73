//! The core alone, in process, no sockets: the cost of one received RTP packet forwarded to 1,
//! 10 and 50 consumers (SRTP decrypt once, rewrite and encrypt per consumer), draining after
//! every packet (`forward/N`) and after batches of 16 received packets as the runtimes do
//! under load (`forward_batch16/N`); and a conference room of 10 (`room/10`, `room_batch16/10`):
//! every participant publishes audio and video and consumes the other 18 streams, so each
//! receive transport carries 18 send streams, and packets arrive from all publishers in time
//! order. Throughput is in forwarded packets. `room_idle_batch16/N` is that room beside N
//! connected idle transports (no media): the per-packet path must not grow with them.
//! `room_batch16_runs/10` is the room with datagrams written back to back in runs for GSO. Their
//! timers are not served in the measured loop (no `Input::Timeout` is fed), so what it measures
//! is forwarding alone, not the idle transports' own upkeep.
//!
//! The publishers' SRTP datagrams are made ahead of time by real clients; the measured loop
//! only calls `handle_input` and drains `poll_output`, giving each sent datagram's buffer back
//! with `Sfu::recycle` as the runtimes do. After each case, the heap allocations of a further
//! 2,000 received packets are counted (a counting global allocator) and printed per forwarded
//! packet. Run: `cargo bench -p sfu-tests`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu_core::ortc::{MediaKind, Protocol};
use sfu_core::{DtlsState, Input, Output, SfuConfig};
use sfu_tests::media::Source;
use sfu_tests::sim::{Sim, SERVER_UDP};

/// A stream to publish: the client transport, its mid, the generator.
struct Feed {
    client: usize,
    mid: String,
    source: Source,
}

struct Setup {
    sim: Sim,
    feeds: Vec<Feed>,
    /// Publisher datagrams ahead of time: (client, datagram).
    pool: Vec<(usize, Vec<u8>)>,
    next: usize,
    /// Datagrams fed so far.
    fed: u64,
    now: Instant,
}

impl Setup {
    /// One video producer, `fan_out` consumers on their own transports.
    fn fan_out(fan_out: usize) -> Self {
        let mut sim = Sim::new(1);
        let room = sim.create_router();
        let publisher = sim.add_transport(room, str0m::net::Protocol::Udp);
        let producer = sim.produce(publisher, MediaKind::Video, 4000);
        let caps = sim.device_caps(room);
        for _ in 0..fan_out {
            let viewer = sim.add_transport(room, str0m::net::Protocol::Udp);
            sim.consume(viewer, producer, caps.clone(), false);
        }
        Self::ready(sim)
    }

    /// A room of `participants`, each publishing audio and video on a send transport and
    /// consuming everyone else's on a receive transport; up to `gso_segments` datagrams per
    /// transmit.
    fn room(participants: u32, idle: usize, gso_segments: usize) -> Self {
        let mut config = SfuConfig::with_seed(1);
        config.gso_segments = gso_segments;
        // `SFU_BENCH_PACING=0` measures without the pacer.
        config.pacing = std::env::var("SFU_BENCH_PACING").map_or(true, |v| v != "0");
        let mut sim = Sim::with_config(1, config);
        let room = sim.create_router();
        let caps = sim.device_caps(room);
        let mut producers = Vec::new();
        let mut receivers = Vec::new();
        for k in 0..participants {
            let send = sim.add_transport(room, str0m::net::Protocol::Udp);
            let ssrc = 10_000 + k * 10;
            producers.push(sim.produce(send, MediaKind::Audio, ssrc));
            producers.push(sim.produce(send, MediaKind::Video, ssrc + 2));
            receivers.push(sim.add_transport(room, str0m::net::Protocol::Udp));
        }
        for (k, &recv) in receivers.iter().enumerate() {
            for (j, &producer) in producers.iter().enumerate() {
                if j / 2 != k {
                    sim.consume(recv, producer, caps.clone(), false);
                }
            }
        }
        for _ in 0..idle {
            sim.add_transport(room, str0m::net::Protocol::Udp);
        }
        Self::ready(sim)
    }

    /// Connects everything, then takes the publications over from the simulation.
    fn ready(mut sim: Sim) -> Self {
        sim.run_for(Duration::from_secs(1));
        for c in &sim.clients {
            let stats = sim.sfu.transport_stats(c.id).expect("transport");
            assert_eq!(
                stats.dtls_state,
                DtlsState::Connected,
                "every transport connects"
            );
        }
        let now = sim.now;
        let mut feeds = Vec::new();
        for p in &mut sim.publications {
            // The bench sends from here on; the source keeps its sequence numbers going.
            p.muted = true;
            let source = std::mem::replace(&mut p.source, Source::audio(0, now));
            feeds.push(Feed {
                client: p.client,
                mid: p.mid.clone(),
                source,
            });
        }
        Self {
            sim,
            feeds,
            pool: Vec::new(),
            next: 0,
            fed: 0,
            now,
        }
    }

    /// Makes publisher datagrams until `want` are waiting, the earliest stream first (not timed).
    fn refill(&mut self, want: usize) {
        if self.pool.len() - self.next >= want {
            return;
        }
        self.pool.drain(..self.next);
        self.next = 0;
        while self.pool.len() < want {
            let Some(feed) = self.feeds.iter_mut().min_by_key(|f| f.source.next_at()) else {
                return;
            };
            let at = feed.source.next_at();
            let packets = feed.source.poll(at);
            let (client, mid) = (feed.client, feed.mid.clone());
            let mut sent = self.sim.capture_sent(client, &mid, packets);
            sent.retain(|d| d.len() > 12 && !(64..96).contains(&(d[1] & 0x7f)));
            self.pool.extend(sent.into_iter().map(|d| (client, d)));
        }
    }

    /// Feeds `n` datagrams, draining after every `batch` of them.
    fn feed(&mut self, n: usize, batch: usize) -> Duration {
        self.refill(n);
        let clients = &self.sim.clients;
        let sfu = &mut self.sim.sfu;
        #[allow(clippy::disallowed_methods)] // The benchmark owns the clock.
        let started = Instant::now();
        for chunk in self.pool[self.next..self.next + n].chunks(batch) {
            for (client, d) in chunk {
                self.now += Duration::from_micros(2);
                sfu.handle_input(Input::Receive {
                    now: self.now,
                    proto: Protocol::Udp,
                    source: clients[*client].local,
                    destination: SERVER_UDP,
                    contents: d,
                });
            }
            // As the runtimes do, the sent datagrams' buffers go back to the Sfu.
            loop {
                match sfu.poll_output() {
                    Output::Transmit(t) => sfu.recycle(t.contents),
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
        }
        let elapsed = started.elapsed();
        self.next += n;
        self.fed += n as u64;
        elapsed
    }

    /// Datagrams the Sfu has sent, over all transports.
    fn datagrams_sent(&self) -> u64 {
        let sim = &self.sim;
        sim.clients
            .iter()
            .filter_map(|c| sim.sfu.transport_stats(c.id).ok())
            .map(|t| t.datagrams_sent)
            .sum()
    }
}

/// What the Sfu forwards in a benchmark case.
#[derive(Clone, Copy)]
enum Shape {
    /// One video producer to this many consumers.
    FanOut(usize),
    /// A conference room of this many participants.
    Room(u32),
    /// A room of [`IDLE_ROOM`] beside this many connected idle transports.
    RoomIdle(usize),
    /// A conference room of this many participants, datagrams written in runs for GSO
    /// (`SfuConfig::gso_segments` 16).
    RoomRuns(u32),
}

/// Received packets over which heap allocations are counted after each case.
const ALLOCATION_SAMPLE: usize = 2_000;

/// Participants of the room beside the idle transports.
const IDLE_ROOM: u32 = 10;

impl Shape {
    fn param(self) -> u64 {
        match self {
            Shape::FanOut(n) => n as u64,
            Shape::Room(n) | Shape::RoomRuns(n) => u64::from(n),
            Shape::RoomIdle(n) => n as u64,
        }
    }

    /// Forwarded packets per received packet.
    fn per_packet(self) -> u64 {
        match self {
            Shape::FanOut(n) => n as u64,
            Shape::Room(n) | Shape::RoomRuns(n) => u64::from(n) - 1,
            Shape::RoomIdle(_) => u64::from(IDLE_ROOM) - 1,
        }
    }

    fn setup(self) -> Setup {
        match self {
            Shape::FanOut(n) => Setup::fan_out(n),
            Shape::Room(n) => Setup::room(n, 0, 1),
            Shape::RoomIdle(n) => Setup::room(IDLE_ROOM, n, 1),
            Shape::RoomRuns(n) => Setup::room(n, 0, 16),
        }
    }
}

/// Heap memory the Sfu holds per idle consumer (created paused, nothing sent): the bytes
/// still allocated after creating 200 of them on one connected transport, per consumer.
fn idle_consumer_memory() {
    let mut sim = Sim::new(1);
    let room = sim.create_router();
    let publisher = sim.add_transport(room, str0m::net::Protocol::Udp);
    let producer = sim.produce(publisher, MediaKind::Video, 4000);
    let viewer = sim.add_transport(room, str0m::net::Protocol::Udp);
    let caps = sim.device_caps(room);
    sim.run_for(Duration::from_secs(1));
    let transport = sim.clients[viewer].id;
    const N: usize = 200;
    let mut consumers = Vec::with_capacity(N);
    let info = allocation_counter::measure(|| {
        for _ in 0..N {
            let options = sfu_core::ConsumeOptions {
                producer,
                rtp_capabilities: caps.clone(),
                paused: true,
            };
            consumers.push(sim.sfu.consume(transport, options).expect("consume").id);
        }
    });
    let caps_bytes = allocation_counter::measure(|| {
        std::hint::black_box(caps.clone());
    });
    // The capabilities cloned for each call are dropped by then; what stays is the Sfu's.
    let per = info.bytes_current as f64 / N as f64;
    eprintln!(
        "idle consumer: {per:.0} heap bytes held per consumer ({N} paused consumers on one \
         transport; a capabilities clone is {} bytes, freed)",
        caps_bytes.bytes_total
    );
}

fn forward(c: &mut Criterion) {
    idle_consumer_memory();
    let fan_outs = [1, 10, 50].map(Shape::FanOut);
    bench_group(c, "forward", 1, &fan_outs);
    bench_group(c, "forward_batch16", 16, &fan_outs);
    bench_group(c, "room", 1, &[Shape::Room(10)]);
    bench_group(c, "room_batch16", 16, &[Shape::Room(10)]);
    bench_group(c, "room_batch16_runs", 16, &[Shape::RoomRuns(10)]);
    let idle = [10, 1_000, 5_000].map(Shape::RoomIdle);
    bench_group(c, "room_idle_batch16", 16, &idle);
}

fn bench_group(c: &mut Criterion, name: &str, batch: usize, shapes: &[Shape]) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for &shape in shapes {
        let (param, per_packet) = (shape.param(), shape.per_packet());
        // Set up only when the filter selects this case: large setups are slow.
        let mut setup: Option<(Setup, u64)> = None;
        group.throughput(Throughput::Elements(per_packet));
        group.bench_with_input(BenchmarkId::from_parameter(param), &param, |b, _| {
            let (setup, _) = setup.get_or_insert_with(|| {
                let setup = shape.setup();
                let before = setup.datagrams_sent();
                (setup, before)
            });
            b.iter_custom(|iters| setup.feed(iters as usize, batch));
        });
        // Heap allocations in steady state, counted over a further run (not timed).
        if let Some((setup, _)) = &mut setup {
            setup.refill(ALLOCATION_SAMPLE);
            let sent_before = setup.datagrams_sent();
            let info = allocation_counter::measure(|| {
                setup.feed(ALLOCATION_SAMPLE, batch);
            });
            let forwarded = setup.datagrams_sent() - sent_before;
            let control = allocation_counter::measure(|| {
                std::hint::black_box(Vec::<u8>::with_capacity(64));
            });
            assert_eq!(control.count_total, 1, "the allocation counter counts");
            eprintln!(
                "{name}/{param}: {} heap allocations for {forwarded} datagrams sent \
                 ({:.4} per forwarded packet)",
                info.count_total,
                info.count_total as f64 / forwarded.max(1) as f64
            );
        }
        // Every fed packet went to every consumer of its producer (RTCP only adds to this).
        if let Some((setup, before)) = setup {
            let sent = setup.datagrams_sent() - before;
            assert!(
                sent >= setup.fed * per_packet,
                "{name}/{param}: {sent} datagrams sent for {} fed",
                setup.fed
            );
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
