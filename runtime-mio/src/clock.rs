//! The runtime's clock, and how a worker waits for a deadline with mio.
//!
//! mio's `epoll` backend takes a timeout in whole milliseconds and rounds a sub-millisecond
//! remainder up, so waiting for a deadline with `poll(deadline - now)` wakes up to a millisecond
//! (plus the kernel's timer slack) late. A worker instead polls for the whole milliseconds
//! before the deadline ([`poll_timeout`]), which wakes at most about a millisecond early, and
//! then sleeps the rest with `nanosleep` ([`sleep_rest`]), whose error is the timer slack
//! (50 µs by default on Linux). While it sleeps that rest (under a millisecond) the sockets wait;
//! that is the price of sub-millisecond deadlines with a millisecond poll.

use std::time::{Duration, Instant};

/// Below this, a worker sleeps instead of polling.
pub(crate) const SLEEP_BELOW: Duration = Duration::from_millis(1);

/// Now. The only place the runtime reads the clock: the core takes time from its caller, and
/// this is that caller.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// How long to poll for I/O before `deadline`: the whole milliseconds left, so mio's rounding
/// never makes the wait overshoot the deadline.
pub(crate) fn poll_timeout(now: Instant, deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(now);
    Duration::from_millis(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

/// Sleeps until `deadline` if it is less than [`SLEEP_BELOW`] away, and returns the time after.
pub(crate) fn sleep_rest(deadline: Instant) -> Instant {
    let now = now();
    let left = deadline.saturating_duration_since(now);
    if left.is_zero() || left >= SLEEP_BELOW {
        return now;
    }
    std::thread::sleep(left);
    self::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// Lateness of `samples` deadlines at assorted sub-millisecond offsets, in microseconds:
    /// (mean, max).
    fn measure(samples: u32, mut wait: impl FnMut(&mut Poll, &mut Events, Instant)) -> (u64, u64) {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let (mut total, mut max) = (0u64, 0u64);
        for i in 0..samples {
            let deadline = now() + Duration::from_micros(1_000 + u64::from(i * 137 % 2_000));
            wait(&mut poll, &mut events, deadline);
            let late = now().saturating_duration_since(deadline).as_micros() as u64;
            total += late;
            max = max.max(late);
        }
        (total / u64::from(samples), max)
    }

    /// Not an assertion on the machine's timers: prints what a worker gains (run with
    /// `--nocapture`). The precise wait must never be early, and on average no later than the
    /// naive one plus the slack of a loaded machine.
    #[test]
    fn sub_millisecond_deadlines_fire_closer_than_mio_alone() {
        let naive = measure(200, |poll, events, deadline| {
            while now() < deadline {
                let left = deadline.saturating_duration_since(now());
                poll.poll(events, Some(left)).unwrap();
            }
        });
        let precise = measure(200, |poll, events, deadline| {
            while now() < deadline {
                poll.poll(events, Some(poll_timeout(now(), deadline)))
                    .unwrap();
                sleep_rest(deadline);
            }
        });
        println!(
            "timer lateness over 200 deadlines: mio alone mean {} us max {} us; \
             ms poll + nanosleep mean {} us max {} us",
            naive.0, naive.1, precise.0, precise.1
        );
        assert!(precise.0 <= naive.0 + 200, "{precise:?} vs {naive:?}");
    }

    #[test]
    fn poll_timeout_rounds_down_to_whole_milliseconds() {
        let t = now();
        assert_eq!(
            poll_timeout(t, t + Duration::from_micros(2_900)),
            Duration::from_millis(2)
        );
        assert_eq!(
            poll_timeout(t, t + Duration::from_micros(900)),
            Duration::ZERO
        );
        assert_eq!(poll_timeout(t + Duration::from_secs(1), t), Duration::ZERO);
    }
}
