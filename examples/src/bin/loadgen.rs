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
//! Flags: `--workload conference|broadcast|idle`, `--rooms R`, `--participants P`,
//! `--viewers N`, `--idle N`, `--create N` (transports created to measure setup rate and
//! memory), `--churn N` (joins and leaves, see `sfu_examples::loadgen::Churn`), `--data N,M,..`
//! (a data channel relayed to N, M, .. consumers, see `sfu_examples::loadgen::DataRelay`),
//! `--duration S`, `--warmup S`, `--pcap FILE`, `--quick`, `--sweep`, `--json FILE`,
//! `--chart FILE`, `--no-pin`.

#[cfg(target_os = "linux")]
fn main() {
    use std::path::PathBuf;
    use std::time::Duration;

    use sfu_examples::loadgen::{report, run, Options, Workload};

    fn usage(msg: &str) -> ! {
        eprintln!("loadgen: {msg}\nsee the doc comment of examples/src/bin/loadgen.rs");
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
            "--json" => json = Some(PathBuf::from(value())),
            "--chart" => chart = Some(PathBuf::from(value())),
            "--no-pin" => opts.pin = false,
            "-h" | "--help" => usage("usage"),
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
