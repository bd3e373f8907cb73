//! What a worker counts about its sockets: atomics the worker bumps, snapshots handles read.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A snapshot of one worker's socket counters (see [`WorkerHandle::counters`]).
        ///
        /// [`WorkerHandle::counters`]: crate::WorkerHandle::counters
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RuntimeCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The live counters of one worker.
        #[derive(Debug, Default)]
        pub(crate) struct Cells {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Cells {
            pub(crate) fn snapshot(&self) -> RuntimeCounters {
                RuntimeCounters {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// UDP datagrams read (GRO segments counted one by one).
    udp_datagrams_received,
    /// UDP datagrams sent (each GSO segment counted).
    udp_datagrams_sent,
    /// Sends that carried more than one datagram through GSO.
    udp_gso_batches,
    /// UDP datagrams dropped because the send failed (full buffer, `ENOBUFS`, unreachable, ...).
    udp_send_errors,
    /// UDP reads that failed with something other than "would block".
    udp_recv_errors,
    /// UDP datagrams that arrived marked ECN-CE (congestion experienced).
    udp_ecn_ce,
    /// Transmits naming a local UDP address this worker has no socket for.
    udp_no_socket,
    /// ICE-TCP connections accepted.
    tcp_connections_accepted,
    /// ICE-TCP connections refused because the worker holds its maximum.
    tcp_connections_refused,
    /// ICE-TCP connections the peer closed cleanly.
    tcp_connections_closed,
    /// ICE-TCP connections dropped for broken framing (a frame longer than allowed).
    tcp_dropped_malformed,
    /// ICE-TCP connections dropped for a read or write error (such as a reset).
    tcp_dropped_error,
    /// RFC 4571 frames received.
    tcp_frames_received,
    /// RFC 4571 frames queued for sending.
    tcp_frames_sent,
    /// Frames dropped because the connection's outgoing queue was full.
    tcp_frames_dropped_queue_full,
    /// Frames for a peer address with no open connection.
    tcp_frames_dropped_no_connection,
    /// Events dropped because the application did not read them.
    events_dropped,
    /// Deadlines of the Sfu the worker served.
    deadlines_served,
    /// Deadlines served when the worker woke for nothing else (so their lateness is the
    /// timer's error, not time spent on other work).
    timer_fires,
    /// Sum of how late those deadlines were served, in microseconds.
    timer_late_total_us,
    /// The latest one of those deadlines was served, in microseconds.
    timer_late_max_us,
}

impl Cells {
    /// Adds `n` to a counter.
    pub(crate) fn add(cell: &AtomicU64, n: u64) {
        cell.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    pub(crate) fn bump(cell: &AtomicU64) {
        Self::add(cell, 1);
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
