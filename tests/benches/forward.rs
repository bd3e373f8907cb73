//! The core alone, in process, no sockets: the cost of one received RTP packet forwarded to 1,
//! 10 and 50 consumers (SRTP decrypt once, rewrite and encrypt per consumer), draining after
//! every packet (`forward/N`) and after batches of 16 received packets as the runtimes do
//! under load (`forward_batch16/N`).
//!
//! The publisher's SRTP datagrams are made ahead of time by a real client; the measured loop
//! only calls `handle_input` and drains `poll_output`. Run: `cargo bench -p sfu-tests`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu_core::ortc::{MediaKind, Protocol};
use sfu_core::{Input, Output};
use sfu_tests::media::Source;
use sfu_tests::sim::{Sim, SERVER_UDP};

struct Setup {
    sim: Sim,
    publisher: usize,
    source: Source,
    pool: Vec<Vec<u8>>,
    next: usize,
    now: Instant,
}

impl Setup {
    fn new(fan_out: usize) -> Self {
        let mut sim = Sim::new(1);
        let room = sim.create_router();
        let publisher = sim.add_transport(room, str0m::net::Protocol::Udp);
        let producer = sim.produce(publisher, MediaKind::Video, 4000);
        let caps = sim.device_caps(room);
        for _ in 0..fan_out {
            let viewer = sim.add_transport(room, str0m::net::Protocol::Udp);
            sim.consume(viewer, producer, caps.clone(), false);
        }
        sim.run_for(Duration::from_secs(1));
        for p in &mut sim.publications {
            p.muted = true;
        }
        let source = Source::video(4000, sim.now);
        let now = sim.now;
        Self {
            sim,
            publisher,
            source,
            pool: Vec::new(),
            next: 0,
            now,
        }
    }

    /// The next publisher datagram, making more when the pool runs out (not timed).
    fn refill(&mut self, want: usize) {
        if self.pool.len() - self.next >= want {
            return;
        }
        self.pool.drain(..self.next);
        self.next = 0;
        while self.pool.len() < want {
            let at = self.source.next_at();
            let packets = self.source.poll(at);
            let mut sent = self.sim.capture_sent(self.publisher, "0", packets);
            sent.retain(|d| d.len() > 12 && !(64..96).contains(&(d[1] & 0x7f)));
            self.pool.extend(sent);
        }
    }

    /// Feeds `n` datagrams, draining after every `batch` of them.
    fn feed(&mut self, n: usize, batch: usize) -> Duration {
        self.refill(n);
        let source = self.sim.clients[self.publisher].local;
        let sfu = &mut self.sim.sfu;
        #[allow(clippy::disallowed_methods)] // The benchmark owns the clock.
        let started = Instant::now();
        for chunk in self.pool[self.next..self.next + n].chunks(batch) {
            for d in chunk {
                self.now += Duration::from_micros(2);
                sfu.handle_input(Input::Receive {
                    now: self.now,
                    proto: Protocol::Udp,
                    source,
                    destination: SERVER_UDP,
                    contents: d,
                });
            }
            while !matches!(sfu.poll_output(), Output::Timeout(_)) {}
        }
        let elapsed = started.elapsed();
        self.next += n;
        elapsed
    }
}

fn forward(c: &mut Criterion) {
    for (name, batch) in [("forward", 1), ("forward_batch16", 16)] {
        bench_group(c, name, batch);
    }
}

fn bench_group(c: &mut Criterion, name: &str, batch: usize) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for fan_out in [1usize, 10, 50] {
        let mut setup = Setup::new(fan_out);
        // Elements are forwarded packets: one received packet makes `fan_out` of them.
        group.throughput(Throughput::Elements(fan_out as u64));
        group.bench_with_input(BenchmarkId::from_parameter(fan_out), &fan_out, |b, _| {
            b.iter_custom(|iters| setup.feed(iters as usize, batch));
        });
        let sent: u64 = (0..setup.sim.clients.len())
            .filter_map(|i| setup.sim.sfu.transport_stats(setup.sim.clients[i].id).ok())
            .map(|t| t.datagrams_sent)
            .sum();
        assert!(sent > 0, "the benchmark forwarded nothing");
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
