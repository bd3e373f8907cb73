//! Counters a worker keeps about its sockets, timers and channels.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// What a worker's sockets, timers and channels did: a snapshot of its counters (or the
        /// sum over workers, from [`Runtime::counters`](crate::Runtime::counters)).
        ///
        /// Everything dropped is counted here; the core's own drops are in
        /// [`SfuStats`](sfu_core::SfuStats).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct RuntimeCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// The live counters, shared between a worker and its handles.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> RuntimeCounters {
                RuntimeCounters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        impl RuntimeCounters {
            /// Adds another worker's counters (maxima take the larger value).
            pub fn merge(&mut self, other: &RuntimeCounters) {
                $(self.$name = merge_field(stringify!($name), self.$name, other.$name);)*
            }
        }
    };
}

counters! {
    /// Routers alive on the worker.
    routers,
    /// WebRTC transports alive on the worker.
    transports,
    /// Control requests carried out.
    requests,
    /// Events dropped because the event channel was full (nobody reads `Runtime::events`).
    events_dropped,
    /// UDP datagrams received (GRO segments counted one by one).
    udp_datagrams_received,
    /// UDP bytes received.
    udp_bytes_received,
    /// Receive buffers that held more than one datagram (GRO).
    udp_gro_buffers,
    /// Datagrams that arrived marked ECN-CE (congestion experienced).
    udp_ecn_ce,
    /// Errors from a UDP receive other than "would block".
    udp_recv_errors,
    /// UDP datagrams handed to the kernel.
    udp_datagrams_sent,
    /// UDP bytes handed to the kernel.
    udp_bytes_sent,
    /// Sends that carried several datagrams in one call (GSO).
    udp_gso_batches,
    /// Datagrams dropped because the send failed (full buffer, `ENOBUFS`, unreachable, ...).
    udp_send_errors,
    /// Of `udp_send_errors`, those where the socket's send buffer was full.
    udp_send_would_block,
    /// Datagrams the core asked to send from an address no socket of this worker has.
    udp_no_socket,
    /// ICE-TCP connections accepted.
    tcp_connections_accepted,
    /// ICE-TCP connections refused because the worker holds its maximum.
    tcp_connections_refused,
    /// ICE-TCP connections the peer closed cleanly.
    tcp_connections_closed,
    /// Connections dropped because the peer broke RFC 4571 framing.
    tcp_dropped_malformed,
    /// Connections dropped because reading or writing failed (a reset, for example).
    tcp_dropped_error,
    /// Errors from `accept`.
    tcp_accept_errors,
    /// Frames received over ICE-TCP.
    tcp_frames_received,
    /// Frames queued for sending over ICE-TCP.
    tcp_frames_sent,
    /// Frames dropped because the connection's write queue was full (a slow reader).
    tcp_frames_dropped_queue_full,
    /// Frames the core asked to send to a peer with no open connection.
    tcp_frames_dropped_no_connection,
    /// Times the worker's timer fired (it wakes for nothing else, so its lateness is the
    /// timer's error plus the time until the worker's thread ran).
    timer_fires,
    /// Sum of how late the timer fired past the core's deadline, in microseconds.
    timer_late_total_us,
    /// The latest the timer fired past a deadline, in microseconds.
    timer_late_max_us,
}

impl RuntimeCounters {
    /// The mean lateness of the timer's wake-ups, in microseconds.
    pub fn timer_late_mean_us(&self) -> u64 {
        self.timer_late_total_us / self.timer_fires.max(1)
    }
}

fn merge_field(name: &str, a: u64, b: u64) -> u64 {
    if name.ends_with("_max_us") {
        a.max(b)
    } else {
        a.saturating_add(b)
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64) {
    add(counter, 1);
}

/// Subtracts one from a gauge, never below zero.
pub(crate) fn dec(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

/// Raises a maximum.
pub(crate) fn max(counter: &AtomicU64, value: u64) {
    counter.fetch_max(value, Ordering::Relaxed);
}
