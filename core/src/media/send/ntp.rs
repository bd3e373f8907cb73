//! NTP timestamps and RTP clock arithmetic for sender reports.
//!
//! An NTP timestamp is a 64-bit fixed-point number of seconds: the integer part in the high
//! 32 bits and the fraction in the low 32 bits (RFC 3550 section 4). Sender and receiver
//! reports carry its middle 32 bits (LSR, RFC 3550 section 6.4.1).

use std::time::{Duration, Instant};

/// Nanoseconds in one second.
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// `ntp` advanced by `d` (wrapping, as NTP time does in 2036).
pub(crate) fn ntp_add(ntp: u64, d: Duration) -> u64 {
    ntp.wrapping_add(ntp_from_duration(d))
}

/// `ntp` moved back by `d` (wrapping).
pub(crate) fn ntp_sub(ntp: u64, d: Duration) -> u64 {
    ntp.wrapping_sub(ntp_from_duration(d))
}

/// The middle 32 bits of an NTP timestamp (16 bits of seconds, 16 bits of fraction), the form
/// sender reports are referred to by in receiver reports (RFC 3550 section 6.4.1, LSR).
pub(crate) fn ntp_middle32(ntp: u64) -> u32 {
    // The shift leaves 48 bits; the cast keeps the low 32 of them, as intended.
    (ntp >> 16) as u32
}

/// The NTP time at `at`, given that `base.0` is the NTP time at `base.1`.
pub(crate) fn ntp_at(base: (u64, Instant), at: Instant) -> u64 {
    let (ntp, base_at) = base;
    if at >= base_at {
        ntp_add(ntp, at - base_at)
    } else {
        ntp_sub(ntp, base_at - at)
    }
}

/// A duration in NTP fixed point (rounded to the nearest 2^-32 s; wraps past 2^32 s).
fn ntp_from_duration(d: Duration) -> u64 {
    let fixed = ((d.as_nanos() << 32) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    // Keeping the low 64 bits is the NTP wrap.
    fixed as u64
}

/// A duration given in units of 1/65536 s (the DLSR field of a report block, RFC 3550
/// section 6.4.1).
pub(crate) fn duration_from_ntp_short(units: u32) -> Duration {
    let nanos = (u128::from(units) * NANOS_PER_SEC) >> 16;
    // At most 65536 s in nanoseconds: fits in u64.
    Duration::from_nanos(nanos as u64)
}

/// `ts` moved from the instant `from` to the instant `to` at `clock_rate` ticks per second
/// (rounded to the nearest tick; backwards if `to` is before `from`; wrapping as RTP
/// timestamps do).
pub(crate) fn rtp_at(ts: u32, clock_rate: u32, from: Instant, to: Instant) -> u32 {
    if to >= from {
        ts.wrapping_add(rtp_ticks(to - from, clock_rate))
    } else {
        ts.wrapping_sub(rtp_ticks(from - to, clock_rate))
    }
}

/// How many ticks of a `clock_rate` clock fit in `d` (rounded, modulo 2^32).
fn rtp_ticks(d: Duration, clock_rate: u32) -> u32 {
    let ticks = (d.as_nanos() * u128::from(clock_rate) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    // Keeping the low 32 bits is the RTP timestamp wrap.
    ticks as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_add_carries_fraction_into_seconds() {
        let half = 1u64 << 31;
        assert_eq!(
            ntp_add(5 << 32, Duration::from_millis(500)),
            (5 << 32) + half
        );
        assert_eq!(
            ntp_add((5 << 32) + half, Duration::from_millis(500)),
            6 << 32
        );
        assert_eq!(ntp_add(0, Duration::from_secs(3)), 3 << 32);
        // One microsecond is 4294.967296 units: rounds to 4295.
        assert_eq!(ntp_add(0, Duration::from_micros(1)), 4295);
        assert_eq!(
            ntp_sub(
                ntp_add(77 << 32, Duration::from_millis(1234)),
                Duration::from_millis(1234)
            ),
            77 << 32
        );
    }

    #[test]
    fn ntp_wraps() {
        assert_eq!(
            ntp_add(u64::MAX - (1 << 32) + 1, Duration::from_secs(2)),
            1 << 32
        );
    }

    #[test]
    fn middle32_is_16_bits_of_seconds_and_16_of_fraction() {
        let ntp = 0x1234_5678_9abc_def0u64;
        assert_eq!(ntp_middle32(ntp), 0x5678_9abc);
    }

    #[test]
    fn ntp_short_durations() {
        assert_eq!(duration_from_ntp_short(65536), Duration::from_secs(1));
        assert_eq!(duration_from_ntp_short(32768), Duration::from_millis(500));
        assert_eq!(duration_from_ntp_short(1), Duration::from_nanos(15_258));
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn rtp_moves_both_ways_at_the_clock_rate() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(rtp_at(1000, 48_000, t0, t1), 1000 + 960);
        assert_eq!(rtp_at(1000, 90_000, t1, t0), 1000u32.wrapping_sub(1800));
        assert_eq!(rtp_at(u32::MAX, 90_000, t0, t1), 1799);
        let base = (10u64 << 32, t1);
        assert_eq!(
            ntp_at(base, t0),
            ntp_sub(10 << 32, Duration::from_millis(20))
        );
        assert_eq!(ntp_at(base, t1 + Duration::from_secs(1)), 11 << 32);
    }
}
