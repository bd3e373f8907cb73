//! Smoke test of the load generator: the quick conference runs in process over real loopback
//! sockets (ICE, DTLS, SRTP) and forwards media without loss. Behaviour only, never timings.
#![cfg(target_os = "linux")]

use sfu_examples::loadgen::{run, Options, Workload};

#[test]
fn quick_conference_forwards_everything_it_is_given() {
    let opts = Options {
        workload: Workload::Conference,
        // Leave the test harness's threads where the scheduler puts them.
        pin: false,
        create: 10,
        churn: 40,
        data: vec![3],
        ..Options::quick()
    };
    let r = run(&opts).expect("the quick conference runs");
    println!("{}", sfu_examples::loadgen::report::table(&r));
    assert!(r.run.forwarded > 0, "nothing forwarded: {:?}", r.run);
    assert!(
        r.run.sfu_cpu_s > 0.0,
        "the SFU worker's CPU time was not found"
    );
    assert_eq!(r.run.lost, 0, "loss on loopback at low load: {:?}", r.run);
    assert_eq!(r.run.silent_consumers, 0);
    assert!(r.run.expected > 0);
    // One receiver decrypted everything it got; every payload was intact, and the header-only
    // matching of forwarded packets to sent ones agreed with what the payloads say.
    assert!(r.totals.probe_verified > 0);
    assert_eq!(r.totals.probe_corrupt, 0);
    assert_eq!(r.totals.probe_match_disagreed, 0);
    assert!(r.joins.samples > 0);
    assert!(r.creation.transports == 10);
    // The churn phase's joins connected (or it fails) and left the Sfu's tables as they were
    // (timer entries excepted: cancelled deadlines leave the heap lazily).
    let churn = r.churn.expect("the churn phase ran");
    assert_eq!(churn.joins, 40);
    assert_eq!(churn.footprint_start[..6], churn.footprint_end[..6]);
    // Every message the data channel's publisher sent reached each of its 3 data consumers.
    let data = &r.data[0];
    assert!(data.sent > 0);
    assert_eq!(data.relayed, data.sent * 3, "{data:?}");
    let security = r.security.expect("the DTLS ServerHello was seen");
    assert!(security.srtp_profile.is_some());
}

/// The pipe workload, small: a broadcast whose viewers alternate between two workers joined
/// by pipe to router; the viewers on both receive every packet (nothing lost, every payload
/// the probes decrypted intact; of the six, the four beyond the probes only count packets
/// and gaps, read in batches), each worker's CPU is found, and the same room runs on one
/// worker for comparison.
#[test]
fn quick_pipe_broadcast_reaches_viewers_on_both_workers() {
    let opts = Options {
        workload: Workload::Pipe,
        pin: false,
        create: 0,
        viewers: 6,
        ..Options::quick()
    };
    let r = run(&opts).expect("the quick pipe broadcast runs");
    println!("{}", sfu_examples::loadgen::report::table(&r));
    assert_eq!(r.run.per_worker.len(), 2, "{:?}", r.run);
    for w in &r.run.per_worker {
        assert_eq!(w.viewers, 3, "{w:?}");
        assert!(w.forwarded > 0 && w.cpu_s > 0.0, "{w:?}");
        assert!(w.expected > 0, "{w:?}");
        assert_eq!(w.lost, 0, "loss on loopback at low load: {w:?}");
    }
    assert_eq!(r.run.lost, 0, "{:?}", r.run);
    assert_eq!(r.run.silent_consumers, 0);
    // Viewers past the probes only count (one in 16 per worker is measured fully): their
    // packets are part of what was received and checked for loss above.
    assert!(
        r.run.count_only > 0 && r.run.count_only < r.run.forwarded,
        "{:?}",
        r.run
    );
    assert!(r.totals.probe_verified > 0);
    assert_eq!(r.totals.probe_corrupt, 0);
    assert_eq!(r.totals.probe_match_disagreed, 0);
    let pipe = r.pipe.expect("the comparison ran");
    assert!(pipe.pipe_packets > 0, "{pipe:?}");
    assert!(pipe.one_worker.forwarded > 0 && pipe.one_worker.per_worker.is_empty());
    assert_eq!(pipe.one_worker.lost, 0, "{:?}", pipe.one_worker);
    assert!(pipe.derived_ratio > 0.0);
}
