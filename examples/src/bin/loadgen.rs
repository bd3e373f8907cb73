//! Load generator for the SFU: how many packets, consumers and joins one core carries.
//!
//! Starts the SFU in process (mio runtime, one worker) and simulated participants that speak
//! real ICE, DTLS and SRTP over loopback UDP (str0m clients from `sfu_tests::client`), following
//! mediasoup-client's ORTC flow: create a send and a receive transport, connect, produce audio
//! and video, consume everyone else paused and resume each consumer once it exists (audio
//! first). Clients share one DTLS certificate, as a browser keeps its own. The SFU worker and
//! the generator are pinned to different cores when there are two. Receivers read batches with
//! recvmmsg (and GRO) through quinn-udp and count packets from the clear RTP header; the delay
//! of every forwarded packet is found through the send-time table of its publisher (see
//! `sfu_examples::loadgen::engine` for the method); one receiver per room decrypts everything
//! and checks payloads byte for byte.
//!
//! Commands (release build; the headline is packets per SFU CPU-second because the machine is
//! shared and wall-clock rates are noisy):
//!
//! ```text
//! # smoke (a few seconds; the test suite runs the same in-process: examples/tests/loadgen_smoke.rs)
//! cargo run --release -p sfu-examples --bin loadgen -- --quick
//! # conference below saturation, and at it
//! cargo run --release -p sfu-examples --bin loadgen -- --workload conference --rooms 5 \
//!     --participants 10 --duration 10 --json target/loadgen/conference.json
//! cargo run --release -p sfu-examples --bin loadgen -- --rooms 7 --participants 10 --create 50
//! # broadcast, idle transports
//! cargo run --release -p sfu-examples --bin loadgen -- --workload broadcast --viewers 300
//! cargo run --release -p sfu-examples --bin loadgen -- --workload idle --idle 5000
//! # sweeps (participants 2..20 per room; 10..5,000 idle transports beside a room of 10), chart
//! cargo run --release -p sfu-examples --bin loadgen -- --rooms 3 --participants 10 --sweep \
//!     --json target/loadgen/sweep.json --chart target/loadgen/loadgen.png
//! # churn: 10,000 joins and leaves (RSS and the Sfu's table sizes before and after)
//! cargo run --release -p sfu-examples --bin loadgen -- --quick --churn 10000
//! # data channels: one data producer relayed to 1, 10 and 50 data consumers
//! cargo run --release -p sfu-examples --bin loadgen -- --quick --data 1,10,50
//! # replay a capture as every participant's media
//! cargo run --release -p sfu-examples --bin loadgen -- --pcap capture.pcap
//! # a broadcast over two workers (pipe to router) against the same on one worker
//! cargo run --release -p sfu-examples --bin loadgen -- --workload pipe --viewers 300
//! # ... with capacity searches (viewers raised 50 at a time until loss or delay)
//! cargo run --release -p sfu-examples --bin loadgen -- --workload pipe --viewers 300 \
//!     --search 50 --sweep-duration 4
//!
//! # profile the SFU worker while a run measures (its tid is printed as "SFU worker tid")
//! target/release/loadgen --rooms 3 --participants 10 --duration 10 &
//! perf record -F 1500 --call-graph dwarf,32768 -t <tid> -o perf.sfu.data -- sleep 4
//! # profile transport creation (the first phase of every run)
//! target/release/loadgen --quick --create 1500 &
//! perf record -F 1500 --call-graph dwarf,32768 -t <tid> -o perf.create.data -- sleep 3
//! # profile the core alone
//! cargo bench -p sfu-tests --bench forward --no-run
//! perf record -F 2000 --call-graph dwarf,16384 target/release/deps/forward-<hash> --bench \
//!     --profile-time 4 forward/10
//! ```
//!
//! Idle runs (`--workload idle`, and the idle sweep) measure a second window with media stopped
//! and the same transports connected, and report the marginal SFU CPU per forwarded packet:
//! what forwarding costs beyond the transports' own keepalive checks, RTCP and timers.
//!
//! The first phase of every run creates `--create` transports (server create call, client,
//! ICE, DTLS) and closes them again: it gives the setup cost per transport and RSS per
//! transport. Delay is measured per forwarded packet from the clear RTP header, with the
//! consumer socket's kernel receive timestamp; see `sfu_examples::loadgen::engine`.
//!
//! The pipe workload (`--workload pipe`) starts the SFU with two workers: the publisher on
//! worker 0, its audio and video piped to a router on worker 1
//! (`sfu_core::runtime::pipe`), the viewers alternating between the workers. It reports each
//! worker's thread CPU, the packets its viewers received, their delay and loss; then runs the
//! same broadcast on one worker and compares the SFU CPU per delivered packet. The capacity
//! of two cores against one is derived from that (each worker on a core of its own at its
//! measured CPU per viewer), not measured: on a two-core machine the generator needs a core.
//! `--sfu-cores 1` (default) pins both workers to the SFU's core and the generator to the
//! other; `--sfu-cores 2` gives each worker a core and leaves the generator unpinned.
//! `--search STEP` adds capacity searches (one worker; two workers on one core; two workers
//! on two cores): viewers raised by STEP until a step of `--sweep-duration` loses more than
//! 0.1% or its p99 delay passes 50 ms. So that the generator costs little beside the SFU, the
//! pipe workload measures delay on a sample of its viewers: the probe and every
//! `--measure-every`th viewer of each worker (16); the others only count every packet and
//! sequence gap from the clear header and are read in batches (loss is counted for every
//! viewer; `--measure-every 1` measures all of them fully).
//!
//! Flags: `--workload conference|broadcast|idle|pipe`, `--rooms R`, `--participants P`,
//! `--viewers N`, `--idle N`, `--create N` (transports created to measure setup rate and
//! memory), `--churn N` (joins and leaves, see `sfu_examples::loadgen::Churn`), `--data N,M,..`
//! (a data channel relayed to N, M, .. consumers, see `sfu_examples::loadgen::DataRelay`),
//! `--duration S`, `--warmup S`, `--pcap FILE`, `--quick`, `--sweep`, `--sweep-duration S`,
//! `--sfu-cores 1|2`, `--search STEP`, `--measure-every N`, `--json FILE`, `--chart FILE`,
//! `--no-pin`,
//! `--no-pacing` (the SFU without its pacer, to measure what pacing costs), `--no-bwe`
//! (consumers without transport-wide congestion control: no send-side estimate).

/// What `--help` prints.
#[cfg(target_os = "linux")]
const USAGE: &str = "\
usage: loadgen [flags]   (release build: cargo run --release -p sfu-examples --bin loadgen --)

The SFU (mio runtime) runs in process; simulated WebRTC clients (real ICE, DTLS, SRTP over
loopback UDP) publish and consume. The headline is packets per SFU CPU-second.

  --workload W        conference (default) | broadcast | idle | pipe
  --rooms R           conference rooms (5)
  --participants P    participants per conference room (10)
  --viewers N         broadcast and pipe viewers (200)
  --idle N            idle transports of the idle workload (2000)
  --create N          transports created and closed first: setup rate and memory (500)
  --churn N           joins and leaves after that (0)
  --data N,M,..       a data channel relayed to N, M, .. data consumers
  --duration S        measurement window, seconds (10)
  --warmup S          media before the window, seconds (2)
  --pcap FILE         replay a capture as the published media
  --quick             small sizes and short windows
  --sweep             participant and idle-transport sweeps (--chart FILE draws them)
  --sweep-duration S  window of each sweep point and capacity step, seconds (4)
  --json FILE         the whole report as JSON
  --no-pin            do not pin the SFU and the generator to different cores
  --no-pacing         run the SFU without its pacer (to measure what pacing costs)
  --no-bwe            consume without transport-wide-cc (no send-side estimate,
                      probing or feedback: with --no-pacing, what they all cost)

Pipe workload: two workers, the publisher on worker 0 piped to a
router on worker 1 (sfu_core::runtime::pipe), viewers alternating between them. Reported per
worker: thread CPU, packets its viewers received per CPU-second, delay, loss; then the same
viewers on one worker, the SFU CPU per delivered packet of both runs (the pipe's overhead)
and, derived from the measured CPU per viewer of each worker (not measured: the generator
needs a core of this machine), the viewers two cores carry against one.
  --sfu-cores 1|2     1 (default): both workers on the SFU's core, the generator on the
                      other; 2: a core per worker, the generator unpinned
  --search STEP       capacity searches: viewers raised by STEP until a step loses more than
                      0.1% or its p99 delay passes 50 ms (one worker; two workers on one
                      core; two on two cores)
  --measure-every N   on each worker, the probe and every Nth viewer measured fully (delay,
                      length match); the others only count packets and sequence gaps from
                      the clear RTP header, read in batches every 25 ms, so that the
                      generator costs little per packet (16; 1: all measured fully). Loss
                      is counted for every viewer.
";

#[cfg(target_os = "linux")]
fn main() {
    use std::path::PathBuf;
    use std::time::Duration;

    use sfu_examples::loadgen::{report, run, Options, Workload};

    fn usage(msg: &str) -> ! {
        eprintln!("loadgen: {msg}\n{USAGE}");
        std::process::exit(2)
    }

    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = if args.iter().any(|a| a == "--quick") {
        Options::quick()
    } else {
        Options::default()
    };
    let mut json: Option<PathBuf> = None;
    let mut chart: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        let num = |v: String| -> usize {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("bad number {v}")))
        };
        let secs = |v: String| -> Duration {
            Duration::from_secs_f64(
                v.parse()
                    .unwrap_or_else(|_| usage(&format!("bad seconds {v}"))),
            )
        };
        match a.as_str() {
            "--quick" => {}
            "--workload" => {
                opts.workload = match value().as_str() {
                    "conference" => Workload::Conference,
                    "broadcast" => Workload::Broadcast,
                    "idle" => Workload::Idle,
                    "pipe" => Workload::Pipe,
                    other => usage(&format!("unknown workload {other}")),
                }
            }
            "--rooms" => opts.rooms = num(value()),
            "--participants" => opts.participants = num(value()),
            "--viewers" => opts.viewers = num(value()),
            "--idle" => opts.idle = num(value()),
            "--create" => opts.create = num(value()),
            "--churn" => opts.churn = num(value()),
            "--data" => {
                opts.data = value()
                    .split(',')
                    .map(|n| {
                        n.parse()
                            .unwrap_or_else(|_| usage("--data takes counts: 1,10,50"))
                    })
                    .collect()
            }
            "--duration" => opts.duration = secs(value()),
            "--warmup" => opts.warmup = secs(value()),
            "--pcap" => opts.pcap = Some(PathBuf::from(value())),
            "--sweep" => opts.sweep = true,
            "--sweep-duration" => opts.sweep_duration = secs(value()),
            "--sfu-cores" => opts.sfu_cores = num(value()).clamp(1, 2),
            "--search" => opts.search_step = num(value()),
            "--measure-every" => opts.measure_every = num(value()).max(1),
            "--json" => json = Some(PathBuf::from(value())),
            "--chart" => chart = Some(PathBuf::from(value())),
            "--no-pin" => opts.pin = false,
            "--no-pacing" => opts.pacing = false,
            "--no-bwe" => opts.bwe = false,
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if chart.is_some() && !opts.sweep {
        eprintln!("loadgen: --chart draws the sweeps; adding --sweep");
        opts.sweep = true;
    }
    let r = match run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", report::table(&r));
    if let Some(path) = json {
        if let Err(e) = report::write_json(&r, &path) {
            eprintln!("loadgen: writing {}: {e}", path.display());
        }
    }
    if let Some(path) = chart {
        if let Err(e) = report::write_chart(&r, &path) {
            eprintln!("loadgen: drawing {}: {e}", path.display());
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("loadgen runs on Linux only (it reads /proc for per-thread CPU time)");
}
