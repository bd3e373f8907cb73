//! The load generator: how many packets, consumers and joins one SFU core carries.
//!
//! [`run`] starts the SFU in process (the mio runtime, one worker; two for the pipe workload),
//! pins the worker thread and the generator to different cores where there are two, builds the
//! workload out of real WebRTC client transports ([`engine`]) and measures. See `src/bin/loadgen.rs` for the
//! command line and [`engine`] for how delay and loss are measured without decrypting.
#![allow(clippy::disallowed_methods)] // The generator owns its clock.

pub mod engine;
pub mod hist;
pub mod report;
pub mod sys;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use sfu_core::ortc::{MediaKind, RtpCapabilities};
use sfu_core::{ConsumerId, RouterId, RouterOptions, SfuConfig};
use sfu_runtime_mio::{ListenOptions, Runtime, RuntimeConfig, RuntimeCounters};

use engine::{Capture, Engine, Role, Totals};
use wire::Security;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Which workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// R rooms of P participants, each publishing audio and video and consuming everyone else.
    Conference,
    /// One publisher, N viewers.
    Broadcast,
    /// Thousands of connected transports without media beside a small active conference.
    Idle,
    /// One publisher on worker 0 and N viewers, half of them on worker 1 behind a pipe to
    /// router; then the same N viewers on one worker, for comparison (see [`PipeComparison`]).
    Pipe,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workload.
    pub workload: Workload,
    /// Conference rooms.
    pub rooms: usize,
    /// Participants per conference room.
    pub participants: usize,
    /// Broadcast viewers.
    pub viewers: usize,
    /// Idle transports (idle workload).
    pub idle: usize,
    /// Transports created (and closed again) to measure the creation rate and memory.
    pub create: usize,
    /// Joins and leaves of the churn phase (0: none): see [`Churn`].
    pub churn: usize,
    /// Data consumers of each data relay phase (none: no such phase): see [`DataRelay`].
    pub data: Vec<usize>,
    /// Measurement window.
    pub duration: Duration,
    /// Media before the window opens.
    pub warmup: Duration,
    /// Replay this capture as the published media.
    pub pcap: Option<PathBuf>,
    /// Pin the SFU worker and the generator to different cores.
    pub pin: bool,
    /// Pace consumers' video (`SfuConfig::pacing`; on by default).
    pub pacing: bool,
    /// Consumers negotiate transport-wide congestion control, so the SFU estimates their
    /// bandwidth (on by default; off, it sends no transport-wide sequence numbers and gets no
    /// feedback).
    pub bwe: bool,
    /// Pipe workload: the cores the SFU's workers are pinned to (1: both workers share the
    /// SFU's core, the generator has the other; 2: one core each, the generator unpinned).
    pub sfu_cores: usize,
    /// Pipe workload: a capacity search after the comparison, raising viewers by this many
    /// at a time (0: none); see [`Capacity`].
    pub search_step: usize,
    /// Pipe workload: on each worker, every this many viewers one is measured fully (delay,
    /// length match) besides the probe; the others are only counted ([`Role::Count`]: every
    /// packet and gap, no delay). 1 measures every viewer fully.
    pub measure_every: usize,
    /// Run the sweeps.
    pub sweep: bool,
    /// Sweep points: participants per room.
    pub sweep_participants: Vec<usize>,
    /// Sweep points: idle transports.
    pub sweep_idle: Vec<usize>,
    /// Measurement window of each sweep point.
    pub sweep_duration: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workload: Workload::Conference,
            rooms: 5,
            participants: 10,
            viewers: 200,
            idle: 2000,
            create: 500,
            churn: 0,
            data: Vec::new(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            pcap: None,
            pin: true,
            pacing: true,
            bwe: true,
            sfu_cores: 1,
            search_step: 0,
            measure_every: 16,
            sweep: false,
            sweep_participants: vec![2, 3, 4, 6, 8, 10, 14, 20],
            sweep_idle: vec![10, 100, 500, 1000, 2500, 5000],
            sweep_duration: Duration::from_secs(4),
        }
    }
}

impl Options {
    /// A few seconds in all: one small room, a short window, small sweeps.
    pub fn quick() -> Self {
        Self {
            rooms: 1,
            participants: 4,
            viewers: 20,
            idle: 100,
            create: 40,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            sweep_participants: vec![2, 4, 6],
            sweep_idle: vec![10, 100],
            sweep_duration: Duration::from_secs(1),
            ..Self::default()
        }
    }
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// Load average when the run started.
    pub loadavg_start: String,
    /// ... and ended.
    pub loadavg_end: String,
    /// (SFU worker core, generator core), when pinned.
    pub pinned: Option<(usize, usize)>,
    /// How busy each CPU was (other processes) just before the run, by CPU number.
    pub busy_before: Vec<(usize, f64)>,
}

/// One measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Measurement {
    /// Wall time of the window, seconds.
    pub wall_s: f64,
    /// RTP packets publishers sent per second (the offered load).
    pub offered_pps: f64,
    /// RTP packets consumers received in the window (retransmissions included).
    pub forwarded: u64,
    /// ... per second.
    pub forwarded_pps: f64,
    /// Of which retransmissions.
    pub rtx: u64,
    /// SFU worker thread CPU time in the window (schedstat), seconds.
    pub sfu_cpu_s: f64,
    /// ... of it user time (10 ms ticks).
    pub sfu_user_s: f64,
    /// ... of it system time (10 ms ticks).
    pub sfu_system_s: f64,
    /// SFU CPU / wall.
    pub sfu_util: f64,
    /// Forwarded packets per SFU CPU-second: the headline.
    pub pkts_per_sfu_cpu_s: f64,
    /// Microseconds of SFU CPU per forwarded packet.
    pub sfu_us_per_pkt: f64,
    /// Generator thread CPU time, seconds.
    pub gen_cpu_s: f64,
    /// Generator CPU / wall.
    pub gen_util: f64,
    /// Microseconds of generator CPU per forwarded packet.
    pub gen_us_per_pkt: f64,
    /// Whole process CPU (SFU + generator + the rest), seconds.
    pub process_cpu_s: f64,
    /// Packets with a measured delay.
    pub delay_samples: usize,
    /// Packets received by viewers that only count ([`Role::Count`]): no delay looked for.
    pub count_only: u64,
    /// Received packets whose send time was not found.
    pub delay_unmatched: u64,
    /// Added forwarding delay (publisher send to consumer receive), microseconds.
    pub delay_p50_us: u32,
    /// p99.
    pub delay_p99_us: u32,
    /// Max.
    pub delay_max_us: u32,
    /// Delay as the generator saw it (adds its own scheduling), p50, microseconds.
    pub app_delay_p50_us: u32,
    /// ... p99.
    pub app_delay_p99_us: u32,
    /// Packets lost over the whole run (gaps and tails), after the final drain.
    pub lost: u64,
    /// Packets expected over the whole run.
    pub expected: u64,
    /// lost / expected.
    pub loss_ratio: f64,
    /// Consumers whose producer sent but that received nothing.
    pub silent_consumers: u64,
    /// Datagrams the kernel dropped for full UDP receive buffers (machine-wide) in the window.
    pub kernel_rcvbuf_drops: u64,
    /// The SFU's UDP send errors in the window.
    pub sfu_send_errors: u64,
    /// UDP datagrams the SFU sent in the window (RTP, RTCP, STUN).
    pub sfu_datagrams_sent: u64,
    /// Of those sends, how many were GSO calls carrying more than one datagram.
    pub sfu_gso_batches: u64,
    /// UDP datagrams the SFU received in the window.
    pub sfu_datagrams_received: u64,
    /// Deadlines (timer work of all transports) the SFU worker served in the window.
    pub sfu_deadlines_served: u64,
    /// Times the SFU worker thread was preempted (involuntary context switches) in the window:
    /// other processes taking its core.
    pub sfu_preempted: u64,
    /// ... and the generator thread.
    pub gen_preempted: u64,
    /// Mean lateness of the SFU's timer wakes in the window, microseconds.
    pub sfu_timer_late_mean_us: u64,
    /// SFU worker utilisation with the same transports and media stopped (keepalives, RTCP,
    /// timers), measured after the window; idle workloads only.
    pub quiet_sfu_util: Option<f64>,
    /// Microseconds of SFU CPU per forwarded packet beyond that quiet cost:
    /// `(sfu_cpu_s - quiet_sfu_util * wall_s) / forwarded`. What forwarding itself costs,
    /// whatever else the transports do.
    pub marginal_us_per_pkt: Option<f64>,
    /// Which side limits the rate.
    pub verdict: String,
    /// With several SFU workers: each worker's share (the totals above add them up).
    pub per_worker: Vec<WorkerShare>,
}

/// One SFU worker's part of a measurement window with several workers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerShare {
    /// The worker's index.
    pub worker: usize,
    /// Viewers (receive transports) on it.
    pub viewers: usize,
    /// Its thread's CPU time in the window (schedstat), seconds.
    pub cpu_s: f64,
    /// CPU / wall.
    pub util: f64,
    /// RTP packets its viewers received in the window.
    pub forwarded: u64,
    /// Of those, packets per CPU-second of this worker.
    pub pkts_per_cpu_s: f64,
    /// Microseconds of this worker's CPU per packet its viewers received (the pipe's cost
    /// included: sending on worker 0, receiving on worker 1).
    pub us_per_pkt: f64,
    /// Added delay of its viewers' packets (publisher send to viewer socket), p50, µs.
    pub delay_p50_us: u32,
    /// ... p99.
    pub delay_p99_us: u32,
    /// Packets its viewers lost over the whole run.
    pub lost: u64,
    /// Packets its viewers expected over the whole run.
    pub expected: u64,
}

/// The pipe workload: a broadcast spread over two workers by pipe to router, against the
/// same broadcast on one worker.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PipeComparison {
    /// Viewers in both runs.
    pub viewers: usize,
    /// The cores the two workers were pinned to (see [`Options::sfu_cores`]).
    pub sfu_cores: usize,
    /// The one-worker run (the two-worker run is [`Report::run`]).
    pub one_worker: Measurement,
    /// RTP packets the pipe carried in the two-worker window (the pipe consumers' count).
    pub pipe_packets: u64,
    /// Total SFU CPU per delivered packet: one worker, µs.
    pub one_us_per_pkt: f64,
    /// ... two workers (both threads' CPU over both workers' viewers), µs.
    pub two_us_per_pkt: f64,
    /// What spreading the room costs: `two_us_per_pkt / one_us_per_pkt - 1`.
    pub pipe_overhead: f64,
    /// Derived, not measured: the viewers one fully used core would carry at the one-worker
    /// run's CPU per viewer (`viewers / util`).
    pub derived_one_core_viewers: f64,
    /// Derived, not measured: the viewers two cores would carry, each worker on its own core
    /// at its measured CPU per viewer (`Σ viewers_i / util_i`). Fixed costs (the publisher's
    /// ingest, the pipe) are spread per viewer, so both figures are conservative.
    pub derived_two_core_viewers: f64,
    /// `derived_two_core_viewers / derived_one_core_viewers` (the target is 1.8 or more).
    pub derived_ratio: f64,
    /// The capacity searches, when asked for.
    pub capacity: Vec<Capacity>,
}

/// A capacity search: viewers raised step by step (half on each worker, or all on one) until
/// loss or delay crosses its limit ([`CAPACITY_LOSS`], [`CAPACITY_P99_US`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Capacity {
    /// SFU workers.
    pub workers: usize,
    /// The cores they were pinned to.
    pub sfu_cores: usize,
    /// Each step: (viewers, loss ratio, delay p99 µs, SFU utilisation summed over workers,
    /// generator utilisation, generator µs per received packet).
    pub steps: Vec<(usize, f64, u32, f64, f64, f64)>,
    /// The most viewers of a step within both limits.
    pub viewers: usize,
    /// What stopped it: "loss", "delay", or "limit" (the largest step asked for passed).
    pub stopped_by: String,
}

/// A capacity step fails when its viewers lose more than this share of packets.
pub const CAPACITY_LOSS: f64 = 0.001;

/// ... or when their p99 delay exceeds this, microseconds.
pub const CAPACITY_P99_US: u32 = 50_000;

/// Join times, milliseconds, for receive transports created while media already flowed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Joins {
    /// Samples.
    pub samples: usize,
    /// Transport created → ICE and DTLS connected at the client, p50.
    pub connected_p50_ms: f64,
    /// ... p99.
    pub connected_p99_ms: f64,
    /// Transport created → first audio packet at the new consumer, p50.
    pub first_audio_p50_ms: f64,
    /// ... p99.
    pub first_audio_p99_ms: f64,
    /// Transport created → first video packet, p50.
    pub first_video_p50_ms: f64,
    /// ... p99.
    pub first_video_p99_ms: f64,
}

/// Transport creation: rate and memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Creation {
    /// Transports created, connected (ICE + DTLS) and measured.
    pub transports: usize,
    /// Wall time from the first create call to the last DTLS connected, seconds.
    pub wall_s: f64,
    /// Transports per wall second (the generator's client DTLS is in this too).
    pub per_wall_s: f64,
    /// SFU CPU for the create calls alone, microseconds per transport.
    pub sfu_create_us: f64,
    /// SFU CPU for create + ICE + DTLS, microseconds per transport.
    pub sfu_setup_us: f64,
    /// Transports the SFU sets up per CPU-second (create + ICE + DTLS): per core.
    pub per_sfu_cpu_s: f64,
    /// Generator CPU per transport (client side of ICE and DTLS), microseconds.
    pub gen_setup_us: f64,
    /// Process RSS growth per created, not yet connected transport (server side only).
    pub rss_per_created_transport: i64,
    /// Process RSS growth per connected transport (server and client side together).
    pub rss_per_connected_transport: i64,
}

/// Joins and leaves in a room where media flows: each join is a send transport publishing
/// audio and video and a receive transport consuming the room's publisher, both connected
/// (ICE, DTLS) and carrying media for a moment, then closed. Done in batches of
/// [`CHURN_BATCH`] joins.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Churn {
    /// Joins (each: 2 transports, 2 producers, 2 consumers).
    pub joins: usize,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// SFU CPU per join (create, ICE, DTLS, produce, consume, media, close), microseconds.
    pub sfu_us_per_join: f64,
    /// Process RSS before the first join, after the first tenth (warm: allocator pools and
    /// tables at their working size) and after the last, bytes. The process holds the
    /// generator's clients too; it drops each one with its transport.
    pub rss_start: u64,
    /// See `rss_start`.
    pub rss_warm: u64,
    /// See `rss_start`.
    pub rss_end: u64,
    /// RSS growth per join after the warm point, bytes.
    pub rss_per_join_after_warm: f64,
    /// Of which the generator's own bookkeeping of closed joins, bytes per join.
    pub generator_per_join: usize,
    /// The Sfu's table sizes before the first join and a second after the last, from the
    /// worker (transports, producers, consumers, paths, ufrags, timers, timer entries).
    pub footprint_start: [usize; 7],
    /// See `footprint_start`.
    pub footprint_end: [usize; 7],
}

/// One data channel relayed to data consumers: a publisher sends [`DATA_RATE`] binary
/// messages of [`DATA_SIZE`] bytes per second on an ordered, reliable channel (its data
/// producer); each consumer's transport receives them on its own channel. All transports are
/// WebRTC with SCTP over loopback.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataRelay {
    /// Data consumers.
    pub consumers: usize,
    /// Measurement window, seconds.
    pub wall_s: f64,
    /// Messages the publisher sent in the window.
    pub sent: u64,
    /// Messages the publisher's channel refused (full buffer).
    pub refused: u64,
    /// Messages the consumers received: those sent in the window, waited for up to 10 s after
    /// it (the SFU's CPU is counted over the window only).
    pub relayed: u64,
    /// Messages relayed per SFU CPU-second.
    pub per_sfu_cpu_s: f64,
    /// SFU CPU per relayed message, microseconds.
    pub sfu_us_per_message: f64,
    /// Share of a core the SFU worker used.
    pub sfu_util: f64,
}

/// Messages per second the data relay's publisher sends.
pub const DATA_RATE: u32 = 1_000;

/// Bytes per data relay message.
pub const DATA_SIZE: usize = 100;

/// Joins per churn batch: created together, connected, closed together.
pub const CHURN_BATCH: usize = 20;

/// One sweep point.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// Participants per room, or idle transports.
    pub x: usize,
    /// The measurement.
    pub m: Measurement,
}

/// The sweeps.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// One room of x participants.
    pub participants: Vec<Point>,
    /// A room of 10 beside x idle transports.
    pub idle: Vec<Point>,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The workload.
    pub workload: Workload,
    /// Its size in words.
    pub description: String,
    /// The main measurement.
    pub run: Measurement,
    /// Join times.
    pub joins: Joins,
    /// Creation rate and memory.
    pub creation: Creation,
    /// The idle workload's transports (kept connected through the run).
    pub idle_creation: Option<Creation>,
    /// The churn phase, when asked for.
    pub churn: Option<Churn>,
    /// The data relay phases, when asked for.
    pub data: Vec<DataRelay>,
    /// RSS growth per consumer over the conference's setup and warm-up (includes its share
    /// of transports, client state and RTX caches).
    pub rss_per_consumer: i64,
    /// Consumers.
    pub consumers: usize,
    /// What DTLS negotiated.
    pub security: Option<Security>,
    /// Whole-run counts and checks.
    pub totals: Totals,
    /// The sweeps.
    pub sweep: Option<Sweep>,
    /// The pipe workload's comparison with one worker.
    pub pipe: Option<PipeComparison>,
}

/// A broadcast room over one or two workers (see [`Harness::broadcast_room`]).
struct BroadcastRoom {
    /// The room's router on each worker.
    routers: Vec<(RouterId, RtpCapabilities)>,
    /// The publisher's audio and video publications.
    pubs: [usize; 2],
    /// On each worker, the producers of the audio and video (worker 1's: the pipe's).
    producers: Vec<[sfu_core::ProducerId; 2]>,
    /// The pipe consumers on worker 0 (none with one worker).
    pipe_consumers: Vec<ConsumerId>,
    /// Viewers so far.
    viewers: usize,
    /// See [`Options::measure_every`].
    measure_every: usize,
}

struct Harness {
    runtime: Runtime,
    engine: Engine,
    sfu_tid: Option<u32>,
    /// Every worker's thread, by worker index (`sfu_tid` is the first).
    sfu_tids: Vec<u32>,
    gen_tid: Option<u32>,
    pinned: Option<(usize, usize)>,
    /// Endpoints of idle transports kept connected, oldest first.
    idle_eps: Vec<usize>,
}

fn start(opts: &Options) -> Result<Harness, Error> {
    start_workers(opts, 1)
}

/// Starts the SFU with `workers` workers (all pinned to the SFU's core, or with
/// [`Options::sfu_cores`] 2 one core each) and a generator driving them.
fn start_workers(opts: &Options, workers: usize) -> Result<Harness, Error> {
    // The cores this process may use, as first seen (later this thread is pinned to one).
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    let mut cores = CORES
        .get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
        .clone();
    let pin = opts.pin && cores.len() >= 2;
    if pin {
        // The SFU gets the core other processes use least, the generator the next one.
        let busy = sys::cpu_busy(Duration::from_millis(300));
        let load = |id: usize| busy.iter().find(|b| b.0 == id).map_or(0.0, |b| b.1);
        cores.sort_by(|a, b| load(a.id).total_cmp(&load(b.id)));
    }
    // A new thread inherits its creator's affinity: pin this thread to the SFU's core while the
    // runtime starts its worker, then move it to the generator's core.
    if pin {
        core_affinity::set_for_current(cores[0]);
    }
    // Runs in one process (tests) start one at a time, so that the worker threads found by
    // name below are this runtime's.
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let before = sys::thread_ids();
    let mut sfu = SfuConfig::with_seed(7);
    sfu.pacing = opts.pacing;
    let runtime = Runtime::start(RuntimeConfig {
        workers,
        listen: vec![ListenOptions::udp(IpAddr::V4(Ipv4Addr::LOCALHOST))],
        sfu,
        rtc_port_range: None,
    })?;
    if pin {
        core_affinity::set_for_current(cores[1]);
    }
    // The workers name themselves once they run: look for them for up to a second.
    let mut sfu_tids = Vec::new();
    for _ in 0..200 {
        sfu_tids = (0..workers)
            .filter_map(|i| {
                let name = format!("sfu-mio-{i}");
                sys::thread_ids().into_iter().find(|t| {
                    !before.contains(t) && sys::thread_name(*t).is_some_and(|n| n == name)
                })
            })
            .collect();
        if sfu_tids.len() == workers {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if sfu_tids.len() != workers {
        return Err("could not find the SFU worker threads in /proc/self/task".into());
    }
    if pin && workers > 1 && opts.sfu_cores > 1 {
        // One core each; the generator may run anywhere.
        for (i, tid) in sfu_tids.iter().enumerate() {
            sys::pin_thread(*tid, cores[i % cores.len()].id)?;
        }
        let all: Vec<usize> = cores.iter().map(|c| c.id).collect();
        if let Some(gen) = sys::current_tid() {
            sys::pin_thread_to(gen, &all)?;
        }
    }
    let handles = runtime.workers().to_vec();
    let mut engine = Engine::with_workers(handles)?;
    engine.bwe = opts.bwe;
    Ok(Harness {
        runtime,
        engine,
        sfu_tid: sfu_tids.first().copied(),
        sfu_tids,
        gen_tid: sys::current_tid(),
        pinned: pin.then(|| (cores[0].id, cores[1].id)),
        idle_eps: Vec::new(),
    })
}

#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    sfu: sys::CpuTimes,
    /// The first two workers' threads (the second is zero with one worker).
    workers: [sys::CpuTimes; 2],
    gen: sys::CpuTimes,
    process: sys::CpuTimes,
    counters: RuntimeCounters,
    rcvbuf: u64,
    sfu_preempted: u64,
    gen_preempted: u64,
}

impl Harness {
    fn snapshot(&self) -> Snapshot {
        let cpu = |t: Option<u32>| t.and_then(sys::thread_cpu).unwrap_or_default();
        let mut workers = [sys::CpuTimes::default(); 2];
        for (slot, tid) in workers.iter_mut().zip(&self.sfu_tids) {
            *slot = cpu(Some(*tid));
        }
        Snapshot {
            at: Instant::now(),
            sfu: workers
                .iter()
                .fold(sys::CpuTimes::default(), |a, b| a.plus(b)),
            workers,
            gen: cpu(self.gen_tid),
            process: sys::process_cpu().unwrap_or_default(),
            counters: self.engine.worker.counters(),
            rcvbuf: sys::udp_rcvbuf_errors(),
            sfu_preempted: self.sfu_tid.map_or(0, sys::thread_preemptions),
            gen_preempted: self.gen_tid.map_or(0, sys::thread_preemptions),
        }
    }

    fn room(&self) -> Result<(RouterId, RtpCapabilities), Error> {
        self.room_on(0)
    }

    /// A room on worker `worker`.
    fn room_on(&self, worker: usize) -> Result<(RouterId, RtpCapabilities), Error> {
        let worker = &self.engine.workers[worker];
        let router = worker.create_router(RouterOptions {
            media_codecs: sfu_tests::sim::media_codecs(),
        })?;
        Ok((router, worker.router_rtp_capabilities(router)?))
    }

    /// Creates and connects `n` transports without media; closes them again unless `keep`.
    fn create_idle(&mut self, n: usize, keep: bool) -> Result<Creation, Error> {
        let (router, caps) = self.room()?;
        let rss0 = sys::rss_bytes() as i64;
        let s0 = self.snapshot();
        let mut created = Vec::with_capacity(n);
        for _ in 0..n {
            let at = Instant::now();
            created.push((at, self.engine.create_transport(router)?));
        }
        let s1 = self.snapshot();
        let rss1 = sys::rss_bytes() as i64;
        let mut eps = Vec::with_capacity(n);
        for chunk in created.chunks(250) {
            for (at, c) in chunk {
                eps.push(self.engine.attach(c, &caps, Role::Idle, *at)?);
            }
            if !self.engine.run_until_connected(Duration::from_secs(60))? {
                return Err("idle transports did not connect within 60 s".into());
            }
        }
        let s2 = self.snapshot();
        let rss2 = sys::rss_bytes() as i64;
        if keep {
            self.idle_eps.extend(eps);
        } else {
            for e in eps {
                self.engine.close(e)?;
            }
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        let sfu_setup = s2.sfu.since(&s0.sfu).on_cpu;
        Ok(Creation {
            transports: n,
            wall_s: (s2.at - s0.at).as_secs_f64(),
            per_wall_s: n as f64 / (s2.at - s0.at).as_secs_f64(),
            sfu_create_us: per(s1.sfu.since(&s0.sfu).on_cpu),
            sfu_setup_us: per(sfu_setup),
            per_sfu_cpu_s: n as f64 / sfu_setup.as_secs_f64().max(1e-9),
            gen_setup_us: per(s2.gen.since(&s0.gen).on_cpu),
            rss_per_created_transport: (rss1 - rss0) / n.max(1) as i64,
            rss_per_connected_transport: (rss2 - rss0) / n.max(1) as i64,
        })
    }

    /// The Sfu's table sizes, as [`Churn`] reports them.
    fn footprint(&self) -> Result<[usize; 7], Error> {
        let f = self.engine.worker.footprint()?;
        Ok([
            f.transports,
            f.producers,
            f.consumers,
            f.paths,
            f.ufrags,
            f.timers,
            f.timer_entries,
        ])
    }

    /// `joins` joins and leaves in a room of one publisher (see [`Churn`]).
    fn churn(&mut self, joins: usize, captures: &Captures) -> Result<Churn, Error> {
        let (router, caps) = self.room()?;
        let engine = &mut self.engine;
        let host = engine.add_endpoint(router, &caps, Role::Send)?;
        let a = engine.produce(
            host,
            MediaKind::Audio,
            800_001,
            captures.audio(),
            Duration::ZERO,
        )?;
        let v = engine.produce(
            host,
            MediaKind::Video,
            800_003,
            captures.video(),
            Duration::ZERO,
        )?;
        if !engine.run_until_connected(Duration::from_secs(10))? {
            return Err("the churn room's publisher did not connect".into());
        }
        engine.run_until(Instant::now() + Duration::from_millis(500))?;
        let footprint_start = self.footprint()?;
        let rss_start = sys::rss_bytes();
        let s0 = self.snapshot();
        let mut rss_warm = rss_start;
        let warm_at = (joins / 10).max(1);
        let mut done = 0;
        let mut ssrc = 2_000_000u32;
        while done < joins {
            let batch = CHURN_BATCH.min(joins - done);
            let engine = &mut self.engine;
            let mut eps = Vec::with_capacity(2 * batch);
            for _ in 0..batch {
                let send = engine.add_endpoint(router, &caps, Role::Send)?;
                engine.produce(
                    send,
                    MediaKind::Audio,
                    ssrc,
                    captures.audio(),
                    Duration::ZERO,
                )?;
                engine.produce(
                    send,
                    MediaKind::Video,
                    ssrc + 2,
                    captures.video(),
                    Duration::ZERO,
                )?;
                ssrc += 10;
                let recv = engine.add_endpoint(router, &caps, Role::Recv { probe: false })?;
                for p in [a, v] {
                    let c = engine.consume(recv, p, &caps)?;
                    engine.worker.resume_consumer(c)?;
                }
                engine.pump()?;
                eps.extend([send, recv]);
            }
            if !engine.run_until_connected(Duration::from_secs(30))? {
                return Err("churn transports did not connect within 30 s".into());
            }
            engine.run_until(Instant::now() + Duration::from_millis(50))?;
            for e in eps {
                engine.close(e)?;
            }
            let before = done;
            done += batch;
            if before < warm_at && done >= warm_at {
                rss_warm = sys::rss_bytes();
            }
            if done % 1000 < batch {
                eprintln!(
                    "loadgen: churn, {done} joins, RSS {} MB",
                    sys::rss_bytes() >> 20
                );
            }
        }
        let s1 = self.snapshot();
        let rss_end = sys::rss_bytes();
        self.engine
            .run_until(Instant::now() + Duration::from_secs(1))?;
        let footprint_end = self.footprint()?;
        let sfu = s1.sfu.since(&s0.sfu).on_cpu;
        Ok(Churn {
            joins,
            wall_s: (s1.at - s0.at).as_secs_f64(),
            sfu_us_per_join: sfu.as_secs_f64() * 1e6 / joins.max(1) as f64,
            rss_start,
            rss_warm,
            rss_end,
            rss_per_join_after_warm: (rss_end as f64 - rss_warm as f64)
                / (joins - warm_at).max(1) as f64,
            generator_per_join: Engine::retained_per_join(),
            footprint_start,
            footprint_end,
        })
    }

    /// One data producer relayed to `consumers` data consumers for `duration` (see
    /// [`DataRelay`]); every transport is closed afterwards.
    fn data_relay(&mut self, consumers: usize, duration: Duration) -> Result<DataRelay, Error> {
        use sfu_core::ortc::SctpStreamParameters;
        use sfu_core::{ConsumeDataOptions, ProduceDataOptions};
        self.engine.sctp = true;
        let (router, caps) = self.room()?;
        let engine = &mut self.engine;
        let send = engine.add_endpoint(router, &caps, Role::Idle)?;
        let params = SctpStreamParameters {
            stream_id: 0,
            ordered: Some(true),
            max_packet_life_time: None,
            max_retransmits: None,
        };
        let producer = engine.worker.produce_data(
            engine.eps[send].transport,
            ProduceDataOptions {
                sctp_stream_parameters: params,
                label: "load".into(),
                protocol: String::new(),
                paused: false,
            },
        )?;
        engine.open_data_channel(send, &params)?;
        let mut receivers = Vec::with_capacity(consumers);
        for _ in 0..consumers {
            let recv = engine.add_endpoint(router, &caps, Role::Idle)?;
            let consumed = engine.worker.consume_data(
                engine.eps[recv].transport,
                ConsumeDataOptions::new(producer),
            )?;
            let stream = consumed.parameters.sctp_stream_parameters;
            engine.open_data_channel(recv, &stream)?;
            receivers.push((recv, stream.stream_id));
            engine.pump()?;
        }
        let open_by = Instant::now() + Duration::from_secs(30);
        loop {
            let open = engine.data_channel_open(send, 0)
                && receivers
                    .iter()
                    .all(|&(e, stream)| engine.data_channel_open(e, stream));
            if open {
                break;
            }
            if Instant::now() >= open_by {
                return Err("data channels did not open within 30 s".into());
            }
            engine.run_until(Instant::now() + Duration::from_millis(5))?;
        }
        engine.messages_received = 0;
        engine.data_source = Some(engine::DataSource {
            ep: send,
            stream: 0,
            message: vec![0x5a; DATA_SIZE],
            interval: Duration::from_secs(1) / DATA_RATE,
            next: Instant::now(),
            sent: 0,
            refused: 0,
        });
        let s0 = self.snapshot();
        self.engine.run_until(s0.at + duration)?;
        let s1 = self.snapshot();
        let source = self.engine.data_source.take();
        // What is still on its way arrives (within 10 s).
        let expected = source.as_ref().map_or(0, |d| d.sent) * consumers as u64;
        let drain_by = Instant::now() + Duration::from_secs(10);
        while self.engine.messages_received < expected && Instant::now() < drain_by {
            self.engine
                .run_until(Instant::now() + Duration::from_millis(10))?;
        }
        let relayed = self.engine.messages_received;
        for e in std::iter::once(send).chain(receivers.iter().map(|r| r.0)) {
            self.engine.close(e)?;
        }
        self.engine.sctp = false;
        let sfu = s1.sfu.since(&s0.sfu).on_cpu.as_secs_f64();
        let wall = (s1.at - s0.at).as_secs_f64();
        Ok(DataRelay {
            consumers,
            wall_s: wall,
            sent: source.as_ref().map_or(0, |d| d.sent),
            refused: source.as_ref().map_or(0, |d| d.refused),
            relayed,
            per_sfu_cpu_s: relayed as f64 / sfu.max(1e-9),
            sfu_us_per_message: sfu * 1e6 / relayed.max(1) as f64,
            sfu_util: sfu / wall,
        })
    }

    /// `rooms` rooms of `participants`, joining one after another while media flows.
    fn conference(
        &mut self,
        rooms: usize,
        participants: usize,
        captures: &Captures,
    ) -> Result<(), Error> {
        let mut n = 0u32;
        for _ in 0..rooms {
            let (router, caps) = self.room()?;
            let mut members: Vec<(usize, [usize; 2])> = Vec::new();
            for k in 0..participants {
                n += 1;
                let engine = &mut self.engine;
                let send = engine.add_endpoint(router, &caps, Role::Send)?;
                let stagger = Duration::from_micros(u64::from(n) * 7_919 % 33_000);
                let ssrc = 1_000_000 + n * 10;
                let a = engine.produce(send, MediaKind::Audio, ssrc, captures.audio(), stagger)?;
                let v =
                    engine.produce(send, MediaKind::Video, ssrc + 2, captures.video(), stagger)?;
                let recv = engine.add_endpoint(router, &caps, Role::Recv { probe: k == 0 })?;
                engine.eps[recv].join_sample = k > 0;
                // Clients keep running between the blocking control calls (`pump`), as a
                // browser connects while its signaling server is still consuming. Each
                // consumer is resumed as soon as it exists (the client has accepted it), the
                // members' audio first.
                for kind in [0, 1] {
                    for (_, pubs) in &members {
                        let c = engine.consume(recv, pubs[kind], &caps)?;
                        engine.pump()?;
                        engine.worker.resume_consumer(c)?;
                        engine.pump()?;
                    }
                }
                for (other_recv, _) in &members {
                    for p in [a, v] {
                        let c = engine.consume(*other_recv, p, &caps)?;
                        engine.worker.resume_consumer(c)?;
                        engine.pump()?;
                    }
                }
                members.push((recv, [a, v]));
                engine.run_until(Instant::now() + Duration::from_millis(20))?;
            }
        }
        if !self.engine.run_until_connected(Duration::from_secs(30))? {
            return Err("conference transports did not connect within 30 s".into());
        }
        Ok(())
    }

    fn broadcast(&mut self, viewers: usize, captures: &Captures) -> Result<(), Error> {
        let (router, caps) = self.room()?;
        let engine = &mut self.engine;
        let send = engine.add_endpoint(router, &caps, Role::Send)?;
        let [a, v] = captures.publish(engine, send)?;
        engine.run_until_connected(Duration::from_secs(10))?;
        engine.run_until(Instant::now() + Duration::from_millis(200))?;
        for k in 0..viewers {
            let recv = engine.add_endpoint(router, &caps, Role::Recv { probe: k == 0 })?;
            engine.eps[recv].join_sample = true;
            let ca = engine.consume(recv, a, &caps)?;
            engine.pump()?;
            let cv = engine.consume(recv, v, &caps)?;
            engine.pump()?;
            engine.worker.resume_consumer(ca)?;
            engine.pump()?;
            engine.worker.resume_consumer(cv)?;
            engine.run_until(Instant::now() + Duration::from_millis(5))?;
        }
        if !engine.run_until_connected(Duration::from_secs(30))? {
            return Err("viewers did not connect within 30 s".into());
        }
        Ok(())
    }

    /// The pipe workload's room: a publisher on worker 0 and, with two workers, its audio
    /// and video piped to a router on worker 1 (one pipe pair, [`sfu_core::runtime::pipe`]).
    /// Viewers come with [`Self::add_viewers`].
    fn broadcast_room(
        &mut self,
        captures: &Captures,
        measure_every: usize,
    ) -> Result<BroadcastRoom, Error> {
        use sfu_core::ortc::TransportListenInfo;
        use sfu_core::runtime::pipe::{connect_pipe_pair, pipe_producer, PipeEnd};
        let mut routers = vec![self.room_on(0)?];
        if self.engine.workers.len() > 1 {
            routers.push(self.room_on(1)?);
        }
        let engine = &mut self.engine;
        let (ra, caps_a) = routers[0].clone();
        let send = engine.add_endpoint_on(0, ra, &caps_a, Role::Send)?;
        let [a, v] = captures.publish(engine, send)?;
        let mut producers = vec![[engine.pubs[a].producer, engine.pubs[v].producer]];
        let mut pipe_consumers = Vec::new();
        if let Some((rb, _)) = routers.get(1) {
            let (w0, w1) = (&engine.workers[0], &engine.workers[1]);
            let pair = connect_pipe_pair(
                PipeEnd {
                    worker: w0,
                    router: ra,
                },
                PipeEnd {
                    worker: w1,
                    router: *rb,
                },
                &TransportListenInfo::udp(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                false,
                false,
            )?;
            let mut far = [producers[0][0]; 2];
            for (slot, p) in far.iter_mut().zip([a, v]) {
                let piped = pipe_producer(w0, w1, &pair, engine.pubs[p].producer)?;
                pipe_consumers.push(piped.pipe_consumer);
                *slot = piped.pipe_producer;
            }
            producers.push(far);
        }
        engine.run_until_connected(Duration::from_secs(10))?;
        engine.run_until(Instant::now() + Duration::from_millis(200))?;
        Ok(BroadcastRoom {
            routers,
            pubs: [a, v],
            producers,
            pipe_consumers,
            viewers: 0,
            measure_every,
        })
    }

    /// `n` more viewers of `room`, alternating between its workers (worker 0 first): the
    /// first two are probes, and on each worker one in [`Options::measure_every`] is measured
    /// fully, the others only counted.
    fn add_viewers(&mut self, room: &mut BroadcastRoom, n: usize) -> Result<(), Error> {
        let engine = &mut self.engine;
        for _ in 0..n {
            let k = room.viewers;
            room.viewers += 1;
            let worker = k % room.routers.len();
            let role = if k < 2 || (k / room.routers.len()) % room.measure_every.max(1) == 0 {
                Role::Recv { probe: k < 2 }
            } else {
                Role::Count
            };
            let (router, caps) = &room.routers[worker];
            let recv = engine.add_endpoint_on(worker, *router, caps, role)?;
            engine.eps[recv].join_sample = true;
            let mut consumers = [None; 2];
            for (i, slot) in consumers.iter_mut().enumerate() {
                let (p, producer) = (room.pubs[i], room.producers[worker][i]);
                *slot = Some(engine.consume_as(recv, p, producer, caps)?);
                engine.pump()?;
            }
            for c in consumers.into_iter().flatten() {
                engine.workers[worker].resume_consumer(c)?;
                engine.pump()?;
            }
            engine.run_until(Instant::now() + Duration::from_millis(5))?;
        }
        if !engine.run_until_connected(Duration::from_secs(30))? {
            return Err("viewers did not connect within 30 s".into());
        }
        Ok(())
    }

    /// RTP packets the pipe consumers (on worker 0) have sent so far.
    fn pipe_packets(&self, consumers: &[ConsumerId]) -> u64 {
        consumers
            .iter()
            .filter_map(|c| self.engine.workers[0].consumer_stats(*c).ok())
            .map(|s| s.packets_sent)
            .sum()
    }

    /// Warms up, measures a window, and returns it (loss is filled in by [`Self::finish`]).
    fn measure(&mut self, warmup: Duration, duration: Duration) -> Result<Measurement, Error> {
        self.engine.run_until(Instant::now() + warmup)?;
        self.engine.win = engine::Window {
            on: true,
            ..Default::default()
        };
        let s0 = self.snapshot();
        self.engine.run_until(s0.at + duration)?;
        self.engine.win.on = false;
        let s1 = self.snapshot();
        let wall = (s1.at - s0.at).as_secs_f64();
        let per_worker = self.worker_shares(&s0, &s1);
        let win = &mut self.engine.win;
        let sfu = s1.sfu.since(&s0.sfu);
        let gen = s1.gen.since(&s0.gen);
        let fwd = win.forwarded as f64;
        let pct = |q: f64| win.delays.quantile(q);
        let sfu_util = sfu.on_cpu.as_secs_f64() / wall;
        let gen_util = gen.on_cpu.as_secs_f64() / wall;
        let kernel_drops = s1.rcvbuf.saturating_sub(s0.rcvbuf);
        let verdict = if gen_util > 0.85 {
            "generator-bound (its core is busy): compare SFU µs per packet at equal offered load"
        } else if sfu_util > 0.85 || kernel_drops > 0 {
            "SFU-bound: its worker core is saturated (queueing delay, drops)"
        } else {
            "neither side saturated: the offered load is below capacity; compare µs per packet"
        };
        Ok(Measurement {
            wall_s: wall,
            offered_pps: win.sent as f64 / wall,
            forwarded: win.forwarded,
            forwarded_pps: fwd / wall,
            rtx: win.rtx,
            sfu_cpu_s: sfu.on_cpu.as_secs_f64(),
            sfu_user_s: sfu.user.as_secs_f64(),
            sfu_system_s: sfu.system.as_secs_f64(),
            sfu_util,
            pkts_per_sfu_cpu_s: fwd / sfu.on_cpu.as_secs_f64().max(1e-9),
            sfu_us_per_pkt: sfu.on_cpu.as_secs_f64() * 1e6 / fwd.max(1.0),
            gen_cpu_s: gen.on_cpu.as_secs_f64(),
            gen_util,
            gen_us_per_pkt: gen.on_cpu.as_secs_f64() * 1e6 / fwd.max(1.0),
            process_cpu_s: s1.process.since(&s0.process).on_cpu.as_secs_f64(),
            delay_samples: win.delays.len(),
            count_only: win.count_only,
            delay_unmatched: win.unmatched,
            delay_p50_us: pct(0.5),
            delay_p99_us: pct(0.99),
            delay_max_us: win.delays.max(),
            app_delay_p50_us: win.app_delays.quantile(0.5),
            app_delay_p99_us: win.app_delays.quantile(0.99),
            kernel_rcvbuf_drops: kernel_drops,
            sfu_send_errors: s1
                .counters
                .udp_send_errors
                .saturating_sub(s0.counters.udp_send_errors),
            sfu_datagrams_sent: s1.counters.udp_datagrams_sent - s0.counters.udp_datagrams_sent,
            sfu_gso_batches: s1.counters.udp_gso_batches - s0.counters.udp_gso_batches,
            sfu_datagrams_received: s1.counters.udp_datagrams_received
                - s0.counters.udp_datagrams_received,
            sfu_deadlines_served: s1.counters.deadlines_served - s0.counters.deadlines_served,
            sfu_preempted: s1.sfu_preempted.saturating_sub(s0.sfu_preempted),
            gen_preempted: s1.gen_preempted.saturating_sub(s0.gen_preempted),
            sfu_timer_late_mean_us: (s1.counters.timer_late_total_us
                - s0.counters.timer_late_total_us)
                .checked_div(s1.counters.timer_fires - s0.counters.timer_fires)
                .unwrap_or(0),
            verdict: verdict.into(),
            per_worker,
            ..Default::default()
        })
    }

    /// With several workers, each one's part of the window between `s0` and `s1` (loss is
    /// filled in by [`Self::finish`]).
    fn worker_shares(&self, s0: &Snapshot, s1: &Snapshot) -> Vec<WorkerShare> {
        if self.sfu_tids.len() < 2 {
            return Vec::new();
        }
        let wall = (s1.at - s0.at).as_secs_f64();
        (0..2)
            .map(|i| {
                let cpu = s1.workers[i].since(&s0.workers[i]).on_cpu.as_secs_f64();
                let w = &self.engine.win.by_worker[i];
                let viewers = self
                    .engine
                    .eps
                    .iter()
                    .filter(|e| e.worker == i && e.role.consumes())
                    .count();
                WorkerShare {
                    worker: i,
                    viewers,
                    cpu_s: cpu,
                    util: cpu / wall,
                    forwarded: w.forwarded,
                    pkts_per_cpu_s: w.forwarded as f64 / cpu.max(1e-9),
                    us_per_pkt: cpu * 1e6 / (w.forwarded as f64).max(1.0),
                    delay_p50_us: w.delays.quantile(0.5),
                    delay_p99_us: w.delays.quantile(0.99),
                    lost: 0,
                    expected: 0,
                }
            })
            .collect()
    }

    /// Closes idle transports (the newest first) until `n` are left.
    fn close_idle_down_to(&mut self, n: usize) -> Result<(), Error> {
        while self.idle_eps.len() > n {
            if let Some(e) = self.idle_eps.pop() {
                self.engine.close(e)?;
            }
        }
        Ok(())
    }

    /// With media stopped: the SFU worker's utilisation over `duration` (what the transports
    /// cost without forwarding), recorded in `m` with the marginal cost per forwarded packet.
    fn quiet(&mut self, m: &mut Measurement, duration: Duration) -> Result<(), Error> {
        // Let closes and the end of media settle first.
        self.engine
            .run_until(Instant::now() + Duration::from_millis(300))?;
        let s0 = self.snapshot();
        self.engine.run_until(s0.at + duration)?;
        let s1 = self.snapshot();
        let util = s1.sfu.since(&s0.sfu).on_cpu.as_secs_f64() / (s1.at - s0.at).as_secs_f64();
        m.quiet_sfu_util = Some(util);
        m.marginal_us_per_pkt =
            Some((m.sfu_cpu_s - util * m.wall_s).max(0.0) * 1e6 / m.forwarded.max(1) as f64);
        Ok(())
    }

    /// Stops media, lets what is in flight arrive, and fills in the loss.
    fn finish(&mut self, m: &mut Measurement) -> Result<(), Error> {
        self.engine.stop_media();
        self.engine
            .run_until(Instant::now() + Duration::from_millis(600))?;
        let (lost, expected, silent) = self.engine.loss();
        for share in &mut m.per_worker {
            (share.lost, share.expected, _) = self.engine.loss_on(share.worker);
        }
        m.lost = lost;
        m.expected = expected;
        m.loss_ratio = lost as f64 / expected.max(1) as f64;
        m.silent_consumers = silent;
        Ok(())
    }

    fn joins(&self) -> Joins {
        let ms = |v: &mut Vec<f64>, q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let mut connected = Vec::new();
        let mut audio = Vec::new();
        let mut video = Vec::new();
        for e in self.engine.eps.iter().filter(|e| e.join_sample) {
            let since = |t: Option<Instant>| t.map(|t| (t - e.created).as_secs_f64() * 1e3);
            connected.extend(since(e.connected));
            audio.extend(since(e.first_audio));
            video.extend(since(e.first_video));
        }
        Joins {
            samples: audio.len(),
            connected_p50_ms: ms(&mut connected, 0.5),
            connected_p99_ms: ms(&mut connected, 0.99),
            first_audio_p50_ms: ms(&mut audio, 0.5),
            first_audio_p99_ms: ms(&mut audio, 0.99),
            first_video_p50_ms: ms(&mut video, 0.5),
            first_video_p99_ms: ms(&mut video, 0.99),
        }
    }
}

/// The captured streams to replay, if any.
#[derive(Default)]
struct Captures {
    audio: Option<Arc<Capture>>,
    video: Option<Arc<Capture>>,
}

impl Captures {
    /// The broadcast's publisher on endpoint `send`: its audio and video publications (from
    /// the captures, or synthetic).
    fn publish(&self, engine: &mut Engine, send: usize) -> Result<[usize; 2], Error> {
        let a = engine.produce(
            send,
            MediaKind::Audio,
            900_001,
            self.audio(),
            Duration::ZERO,
        )?;
        let v = engine.produce(
            send,
            MediaKind::Video,
            900_003,
            self.video(),
            Duration::ZERO,
        )?;
        Ok([a, v])
    }

    fn load(path: &std::path::Path) -> Result<Self, Error> {
        let packets = sfu_tests::pcap::read_udp_packets(path)?;
        let streams = sfu_tests::pcap::rtp_streams(&packets);
        let mut by_size: Vec<(f64, Capture)> = streams
            .values()
            .filter(|s| s.len() >= 10)
            .map(|s| {
                let t0 = s[0].packet.time;
                let ts0 = s[0].rtp.timestamp;
                let packets: Vec<_> = s
                    .iter()
                    .map(|p| {
                        (
                            p.packet.time.saturating_sub(t0),
                            p.rtp.marker,
                            p.rtp.timestamp.wrapping_sub(ts0),
                            p.payload().to_vec(),
                        )
                    })
                    .collect();
                let mean =
                    packets.iter().map(|p| p.3.len()).sum::<usize>() as f64 / packets.len() as f64;
                let span =
                    packets.last().map_or(Duration::ZERO, |p| p.0) + Duration::from_millis(20);
                (mean, Capture { packets, span })
            })
            .collect();
        by_size.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut c = Captures::default();
        match by_size.len() {
            0 => return Err("the capture holds no RTP stream of 10 packets or more".into()),
            1 => c.video = by_size.pop().map(|s| Arc::new(s.1)),
            _ => {
                c.video = by_size.pop().map(|s| Arc::new(s.1));
                c.audio = Some(Arc::new(by_size.remove(0).1));
            }
        }
        Ok(c)
    }

    fn audio(&self) -> Option<Arc<Capture>> {
        self.audio.clone()
    }

    fn video(&self) -> Option<Arc<Capture>> {
        self.video.clone()
    }
}

/// Runs the workload (and the sweeps if asked) and reports. Progress goes to stderr.
pub fn run(opts: &Options) -> Result<Report, Error> {
    let loadavg_start = sys::loadavg();
    let busy_before = sys::cpu_busy(Duration::from_millis(500));
    // Before any pinning narrows this thread's affinity.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let captures = match &opts.pcap {
        Some(p) => Captures::load(p)?,
        None => Captures::default(),
    };
    let pipe = opts.workload == Workload::Pipe;
    let mut h = start_workers(opts, if pipe { 2 } else { 1 })?;
    eprintln!(
        "loadgen: SFU worker tid {:?} (every worker's: {:?}), generator tid {:?}, pinned {:?}",
        h.sfu_tid, h.sfu_tids, h.gen_tid, h.pinned
    );
    eprintln!("loadgen: creation test, {} transports", opts.create);
    let creation = h.create_idle(opts.create, false)?;
    let churn = if opts.churn > 0 {
        eprintln!("loadgen: churn, {} joins and leaves", opts.churn);
        Some(h.churn(opts.churn, &captures)?)
    } else {
        None
    };
    let mut data = Vec::new();
    for &consumers in &opts.data {
        eprintln!("loadgen: data relay to {consumers} data consumers");
        data.push(h.data_relay(consumers, opts.duration)?);
    }
    let mut idle_creation = None;
    if opts.workload == Workload::Idle {
        eprintln!("loadgen: {} idle transports", opts.idle);
        idle_creation = Some(h.create_idle(opts.idle, true)?);
    }
    let rss_before = sys::rss_bytes() as i64;
    let mut pipe_consumers = Vec::new();
    let description = match opts.workload {
        Workload::Conference => {
            eprintln!(
                "loadgen: conference, {} rooms x {} participants",
                opts.rooms, opts.participants
            );
            h.conference(opts.rooms, opts.participants, &captures)?;
            format!(
                "conference: {} rooms x {} participants (audio 50 pkt/s + video ~1 Mbit/s each)",
                opts.rooms, opts.participants
            )
        }
        Workload::Broadcast => {
            eprintln!("loadgen: broadcast, {} viewers", opts.viewers);
            h.broadcast(opts.viewers, &captures)?;
            format!("broadcast: 1 publisher, {} viewers", opts.viewers)
        }
        Workload::Pipe => {
            eprintln!(
                "loadgen: broadcast over two workers (pipe to router), {} viewers",
                opts.viewers
            );
            let mut room = h.broadcast_room(&captures, opts.measure_every)?;
            h.add_viewers(&mut room, opts.viewers)?;
            pipe_consumers = room.pipe_consumers;
            format!(
                "pipe: 1 publisher on worker 0 piped to a router on worker 1, {} viewers split \
                 between the workers ({} SFU core(s)); then the same on one worker",
                opts.viewers, opts.sfu_cores
            )
        }
        Workload::Idle => {
            h.conference(1, IDLE_SWEEP_ROOM, &captures)?;
            format!(
                "idle: {} connected idle transports beside 1 room x {IDLE_SWEEP_ROOM} participants",
                opts.idle
            )
        }
    };
    let description = match &opts.pcap {
        Some(p) => {
            eprintln!("loadgen: replaying {}", p.display());
            format!(
                "{description}; media replayed from {} (payloads padded by up to 31 bytes to \
                 tag lengths)",
                p.display()
            )
        }
        None => description,
    };
    eprintln!("loadgen: measuring {:?}", opts.duration);
    h.engine.run_until(Instant::now() + opts.warmup)?;
    let pipe_before = h.pipe_packets(&pipe_consumers);
    let mut run = h.measure(Duration::ZERO, opts.duration)?;
    let pipe_packets = h.pipe_packets(&pipe_consumers) - pipe_before;
    let consumers = h.engine.consumers();
    let rss_per_consumer = (sys::rss_bytes() as i64 - rss_before) / consumers.max(1) as i64;
    h.finish(&mut run)?;
    if opts.workload == Workload::Idle {
        eprintln!("loadgen: measuring the same transports without media");
        h.quiet(&mut run, opts.duration)?;
    }
    let joins = h.joins();
    let security = h.engine.security.clone();
    let totals = h.engine.totals.clone();
    let machine_pinned = h.pinned;
    h.runtime.shutdown();
    let pipe = if pipe {
        Some(pipe_comparison(opts, &captures, &run, pipe_packets)?)
    } else {
        None
    };
    let sweep = if opts.sweep {
        Some(sweep(opts, &captures)?)
    } else {
        None
    };
    Ok(Report {
        machine: Machine {
            cpus,
            cpu_model: sys::cpu_model(),
            loadavg_start,
            loadavg_end: sys::loadavg(),
            pinned: machine_pinned,
            busy_before,
        },
        workload: opts.workload,
        description,
        run,
        joins,
        creation,
        idle_creation,
        churn,
        data,
        rss_per_consumer,
        consumers,
        security,
        totals,
        sweep,
        pipe,
    })
}

/// The pipe workload's second half: the same broadcast on one worker, what the pipe costs,
/// the derived capacity ratio, and the capacity searches when asked for.
fn pipe_comparison(
    opts: &Options,
    captures: &Captures,
    two: &Measurement,
    pipe_packets: u64,
) -> Result<PipeComparison, Error> {
    eprintln!("loadgen: the same broadcast on one worker");
    let mut h = start_workers(opts, 1)?;
    let mut room = h.broadcast_room(captures, opts.measure_every)?;
    h.add_viewers(&mut room, opts.viewers)?;
    let mut one = h.measure(opts.warmup, opts.duration)?;
    h.finish(&mut one)?;
    h.runtime.shutdown();
    let derived_one = opts.viewers as f64 / one.sfu_util.max(1e-9);
    let derived_two: f64 = two
        .per_worker
        .iter()
        .map(|w| w.viewers as f64 / w.util.max(1e-9))
        .sum();
    let mut capacity = Vec::new();
    if opts.search_step > 0 {
        capacity.push(capacity_search(opts, captures, 1, 1)?);
        capacity.push(capacity_search(opts, captures, 2, 1)?);
        capacity.push(capacity_search(opts, captures, 2, 2)?);
    }
    Ok(PipeComparison {
        viewers: opts.viewers,
        sfu_cores: opts.sfu_cores,
        pipe_packets,
        one_us_per_pkt: one.sfu_us_per_pkt,
        two_us_per_pkt: two.sfu_us_per_pkt,
        pipe_overhead: two.sfu_us_per_pkt / one.sfu_us_per_pkt.max(1e-9) - 1.0,
        derived_one_core_viewers: derived_one,
        derived_two_core_viewers: derived_two,
        derived_ratio: derived_two / derived_one.max(1e-9),
        one_worker: one,
        capacity,
    })
}

/// Raises the viewers of a broadcast on `workers` workers pinned to `sfu_cores` cores by
/// [`Options::search_step`] until a step loses more than [`CAPACITY_LOSS`] of its packets or
/// its p99 delay passes [`CAPACITY_P99_US`] (or [`Options::viewers`] × 4 passed).
fn capacity_search(
    opts: &Options,
    captures: &Captures,
    workers: usize,
    sfu_cores: usize,
) -> Result<Capacity, Error> {
    let opts = Options {
        sfu_cores,
        ..opts.clone()
    };
    let mut h = start_workers(&opts, workers)?;
    let mut room = h.broadcast_room(captures, opts.measure_every)?;
    let mut out = Capacity {
        workers,
        sfu_cores,
        stopped_by: "limit".into(),
        ..Capacity::default()
    };
    let limit = opts.viewers.max(opts.search_step) * 4;
    while room.viewers + opts.search_step <= limit {
        h.add_viewers(&mut room, opts.search_step)?;
        eprintln!(
            "loadgen: capacity search, {workers} worker(s) on {sfu_cores} core(s), {} viewers",
            room.viewers
        );
        h.engine.run_until(Instant::now() + opts.warmup)?;
        let (r0, g0) = h.engine.received_and_gaps();
        let m = h.measure(Duration::ZERO, opts.sweep_duration)?;
        // Late packets of the window fill their gaps back in.
        h.engine
            .run_until(Instant::now() + Duration::from_millis(300))?;
        let (r1, g1) = h.engine.received_and_gaps();
        let received = r1.saturating_sub(r0);
        let gaps = (g1 - g0).max(0) as u64;
        let loss = gaps as f64 / (received + gaps).max(1) as f64;
        out.steps.push((
            room.viewers,
            loss,
            m.delay_p99_us,
            m.sfu_util,
            m.gen_util,
            m.gen_us_per_pkt,
        ));
        if loss > CAPACITY_LOSS {
            out.stopped_by = "loss".into();
            break;
        }
        if m.delay_p99_us > CAPACITY_P99_US {
            out.stopped_by = "delay".into();
            break;
        }
        out.viewers = room.viewers;
    }
    h.runtime.shutdown();
    Ok(out)
}

/// Participants of the active room beside the idle transports in the idle workload and sweep
/// (about 15,000 forwarded packets per second).
const IDLE_SWEEP_ROOM: usize = 10;

fn sweep(opts: &Options, captures: &Captures) -> Result<Sweep, Error> {
    let mut out = Sweep::default();
    for &p in &opts.sweep_participants {
        eprintln!("loadgen: sweep, 1 room x {p} participants");
        let mut h = start(opts)?;
        h.conference(1, p, captures)?;
        let mut m = h.measure(opts.warmup, opts.sweep_duration)?;
        h.finish(&mut m)?;
        h.runtime.shutdown();
        out.participants.push(Point { x: p, m });
    }
    let mut h = start(opts)?;
    h.conference(1, IDLE_SWEEP_ROOM, captures)?;
    let mut idle = 0;
    for &n in &opts.sweep_idle {
        eprintln!("loadgen: sweep, {n} idle transports beside 1 room x {IDLE_SWEEP_ROOM}");
        // Media keeps flowing while the idle transports are added.
        if n > idle {
            h.create_idle(n - idle, true)?;
            idle = n;
        }
        let m = h.measure(opts.warmup, opts.sweep_duration)?;
        out.idle.push(Point { x: n, m });
    }
    if let Some(last) = out.idle.last_mut() {
        h.finish(&mut last.m)?;
    }
    // Media is stopped for good: measure each point's quiet cost, closing transports on the
    // way down.
    for point in out.idle.iter_mut().rev() {
        eprintln!("loadgen: sweep, {} idle transports, no media", point.x);
        h.close_idle_down_to(point.x)?;
        h.quiet(&mut point.m, opts.sweep_duration)?;
    }
    h.runtime.shutdown();
    Ok(out)
}
