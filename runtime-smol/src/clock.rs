//! The runtime's one clock.

use std::time::Instant;

/// The current time: the receive time of datagrams and the time of deadlines and requests.
///
/// The workspace bans `Instant::now` because the core takes time from its caller; the runtime
/// is that caller, and this is the only place it reads the clock.
#[allow(clippy::disallowed_methods)] // The runtime owns the clock; everything else asks here.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// The wall clock (the time base of kernel receive timestamps).
#[allow(clippy::disallowed_methods)] // The runtime owns the clock; everything else asks here.
pub(crate) fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}
