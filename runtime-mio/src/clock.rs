//! The runtime's clock, and how a worker waits for a deadline with mio.
//!
//! mio's `epoll` backend takes a timeout in whole milliseconds and rounds a sub-millisecond
//! remainder up, so waiting for a deadline with `poll(deadline - now)` wakes up to a millisecond
//! (plus the kernel's timer slack) late. A worker instead polls for the whole milliseconds
//! before the deadline ([`poll_timeout`]), which wakes at most about a millisecond early, and
//! waits out the rest on an [`Alarm`]: a timerfd that the same poll watches, so datagrams that
//! arrive in that rest are served at once. Where there is no timerfd, the worker sleeps the rest
//! with `nanosleep` ([`sleep_rest`]) and the sockets wait until it wakes.

use std::io;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

/// Below this, a worker waits on its alarm (or sleeps) instead of a millisecond poll.
pub(crate) const SLEEP_BELOW: Duration = Duration::from_millis(1);

/// Now. The only place the runtime reads the clock: the core takes time from its caller, and
/// this is that caller.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// The wall clock (the time base of kernel receive timestamps).
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
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

/// A one-shot timer with nanosecond resolution that a mio poll watches (a timerfd on the
/// monotonic clock, which [`Instant`] also reads).
#[derive(Debug)]
pub(crate) struct Alarm {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
    /// The deadline it is set for, until it fires or is set again.
    armed: Option<Instant>,
}

#[cfg(target_os = "linux")]
impl Alarm {
    /// A new alarm, not set, registered with `registry` under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        use std::os::fd::AsRawFd;
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        Ok(Self { fd, armed: None })
    }

    /// Makes the alarm go off at `deadline` (right away if it has passed), unless it is already
    /// set for exactly then.
    pub(crate) fn set(&mut self, now: Instant, deadline: Instant) -> io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        if self.armed == Some(deadline) {
            return Ok(());
        }
        // Zero would disarm the timer; a nanosecond fires it at once.
        let left = deadline
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: left.subsec_nanos().into(),
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec)?;
        self.armed = Some(deadline);
        Ok(())
    }

    /// Called when the poll reports the alarm: it is no longer set, and its readiness is reset.
    pub(crate) fn fired(&mut self) {
        self.armed = None;
        // The expiration count; nothing to read (EAGAIN) is fine too.
        let _ = rustix::io::read(&self.fd, &mut [0u8; 8]);
    }
}

#[cfg(not(target_os = "linux"))]
impl Alarm {
    /// Not available here: the worker sleeps sub-millisecond rests instead.
    pub(crate) fn new(_registry: &Registry, _token: Token) -> io::Result<Self> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn set(&mut self, _now: Instant, _deadline: Instant) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(crate) fn fired(&mut self) {
        self.armed = None;
    }
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

    /// A measurement, not a test of behaviour (a loaded machine makes any wait late): prints
    /// what a worker gains over mio's millisecond timeouts. Run with
    /// `cargo test -p sfu-runtime-mio --lib -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement of the machine's timers: run with --ignored --nocapture"]
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
        let mut alarm = None;
        let on_alarm = measure(200, |poll, events, deadline| {
            let alarm = alarm.get_or_insert_with(|| Alarm::new(poll.registry(), Token(1)).ok());
            while now() < deadline {
                let mut timeout = poll_timeout(now(), deadline);
                if timeout.is_zero() {
                    match alarm {
                        Some(alarm) => {
                            alarm.set(now(), deadline).unwrap();
                            timeout = SLEEP_BELOW;
                        }
                        None => {
                            sleep_rest(deadline);
                            continue;
                        }
                    }
                }
                poll.poll(events, Some(timeout)).unwrap();
                if let Some(alarm) = alarm {
                    if events.iter().any(|e| e.token() == Token(1)) {
                        alarm.fired();
                    }
                }
            }
        });
        println!(
            "timer lateness over 200 deadlines: mio alone mean {} us max {} us; \
             ms poll + nanosleep mean {} us max {} us; ms poll + alarm mean {} us max {} us",
            naive.0, naive.1, precise.0, precise.1, on_alarm.0, on_alarm.1
        );
        assert!(precise.0 <= naive.0 + 200, "{precise:?} vs {naive:?}");
        assert!(on_alarm.0 <= naive.0 + 200, "{on_alarm:?} vs {naive:?}");
    }

    /// Waiting on the alarm still serves the sockets: a datagram ends the wait long before the
    /// deadline, and the alarm then goes off at the deadline, not before.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_ends_a_wait_on_the_alarm() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut alarm = Alarm::new(poll.registry(), Token(1)).unwrap();
        let mut socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        poll.registry()
            .register(&mut socket, Token(2), Interest::READABLE)
            .unwrap();
        let to = socket.local_addr().unwrap();
        let start = now();
        let deadline = start + Duration::from_millis(400);
        alarm.set(start, deadline).unwrap();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.send_to(b"x", to).unwrap();
        });
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        assert_eq!(
            tokens,
            [Token(2)],
            "the datagram, not the alarm, ends the wait"
        );
        assert!(now() < deadline);
        sender.join().unwrap();

        // Set again for the same deadline: nothing changes; it goes off then.
        alarm.set(now(), deadline).unwrap();
        loop {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            if events.iter().any(|e| e.token() == Token(1)) {
                break;
            }
        }
        alarm.fired();
        assert!(now() >= deadline, "the alarm went off early");
        assert!(now() < deadline + Duration::from_secs(2));
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
