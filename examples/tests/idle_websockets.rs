//! Idle signaling WebSockets cost the demo server nothing while they stay idle: no thread each
//! and no wake-ups. Alone in its test binary, so that the thread count is this test's. The CPU
//! used is printed, not asserted.

use std::thread;
use std::time::Duration;

mod common;
mod support;

use common::wait_until;
use sfu_examples::demo::ServerOptions;
use support::{open_ws, options, start};

/// This process's thread count.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// CPU time (clock ticks) used by a thread of this process, or by the whole process.
fn cpu_ticks(tid: Option<u32>) -> u64 {
    let path = match tid {
        Some(t) => format!("/proc/self/task/{t}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn idle_websockets_cost_no_wakeups_and_no_threads() {
    const SOCKETS: usize = 200;
    let server = start(ServerOptions {
        // Far off, so that no ping falls in the second watched.
        idle_timeout: Duration::from_secs(600),
        ..options()
    });
    let before = threads();
    let sockets: Vec<_> = (0..SOCKETS)
        .map(|i| open_ws(&server.addr, &format!("idle{}", i % 20), &format!("p{i}")))
        .collect();
    wait_until("every peer to join", || {
        (0..20)
            .map(|r| server.signaling.peers(&format!("idle{r}")).len())
            .sum::<usize>()
            == SOCKETS
    });
    let grown = threads() - before;

    let wakeups = server.stats.counts().websocket_wakeups;
    let (thread0, process0) = (cpu_ticks(Some(server.tid)), cpu_ticks(None));
    thread::sleep(Duration::from_secs(1));
    let (thread1, process1) = (cpu_ticks(Some(server.tid)), cpu_ticks(None));
    let woke = server.stats.counts().websocket_wakeups - wakeups;
    eprintln!(
        "{SOCKETS} idle WebSockets: {grown} more threads, {woke} wake-ups in a second; CPU in that \
         second: server thread {} ticks, whole process {} ticks (100 ticks = one core)",
        thread1 - thread0,
        process1 - process0
    );
    assert!(grown < 10, "{grown} threads for {SOCKETS} connections");
    assert_eq!(woke, 0, "idle WebSockets woke the server");
    assert_eq!(server.stats.counts().open, SOCKETS);
    drop(sockets);
    wait_until("every connection to close", || {
        server.stats.counts().open == 0
    });
}
