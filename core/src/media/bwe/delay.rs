//! Packet groups and their delay variations (draft-ietf-rmcat-gcc-02 sections 5.2 and 5.3),
//! fed to the [`Trendline`].
//!
//! Packets sent within [`BURST_US`] of a group's first packet belong to that group, as does a
//! packet that arrives within [`BURST_US`] of the group's last one and sooner than its send
//! time would have it (it was queued behind the group). When a group is complete, its delay
//! variation against the previous group is inter-arrival minus inter-departure, taken between
//! the groups' last packets.

use super::trendline::{Trendline, Usage};

/// The burst interval, in microseconds.
pub(crate) const BURST_US: i64 = 5_000;
/// An arrival gap (or delay variation) larger than this resets the detector: the receiver's
/// clock jumped or the path changed.
const RESET_US: i64 = 3_000_000;

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: i64,
    last_send_us: i64,
    last_arrival_us: i64,
}

/// The delay-based detector: groups in, the detector's verdict out.
#[derive(Debug, Clone, Default)]
pub(crate) struct DelayBased {
    current: Option<Group>,
    previous: Option<Group>,
    trendline: Trendline,
    /// Groups whose delay variation was not used (reordered between groups).
    pub(crate) skipped_groups: u64,
    /// Times the detector was reset by a jump.
    pub(crate) resets: u64,
}

impl DelayBased {
    /// Takes one received packet (send time on the local clock, arrival on the receiver's,
    /// both in microseconds), in send order; returns the verdict when it completed a group.
    pub(crate) fn on_packet(&mut self, send_us: i64, arrival_us: i64) -> Option<Usage> {
        let Some(current) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send_us: send_us,
                last_send_us: send_us,
                last_arrival_us: arrival_us,
            });
            return None;
        };
        if send_us < current.first_send_us {
            return None; // Sent before the group: reported out of order.
        }
        let in_burst = {
            let arrival_delta = arrival_us - current.last_arrival_us;
            let send_delta = send_us - current.last_send_us;
            (0..BURST_US).contains(&arrival_delta) && arrival_delta - send_delta < 0
        };
        if send_us - current.first_send_us <= BURST_US || in_burst {
            current.last_send_us = current.last_send_us.max(send_us);
            current.last_arrival_us = current.last_arrival_us.max(arrival_us);
            return None;
        }
        let done = *current;
        self.current = Some(Group {
            first_send_us: send_us,
            last_send_us: send_us,
            last_arrival_us: arrival_us,
        });
        let previous = self.previous.replace(done)?;
        let send_delta = done.last_send_us - previous.last_send_us;
        let arrival_delta = done.last_arrival_us - previous.last_arrival_us;
        if arrival_delta > RESET_US || (arrival_delta - send_delta).abs() > RESET_US {
            self.trendline = Trendline::default();
            self.resets += 1;
            return None;
        }
        if arrival_delta < 0 {
            self.skipped_groups += 1;
            return None;
        }
        let delay_ms = (arrival_delta - send_delta) as f64 / 1000.0;
        Some(self.trendline.update(
            delay_ms,
            send_delta as f64 / 1000.0,
            done.last_arrival_us as f64 / 1000.0,
        ))
    }

    /// The detector's current verdict.
    pub(crate) fn usage(&self) -> Usage {
        self.trendline.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_within_a_burst_form_one_group() {
        let mut d = DelayBased::default();
        // Groups of three packets 1 ms apart, every 20 ms, arriving with constant delay.
        let mut verdicts = 0;
        for g in 0..10i64 {
            for p in 0..3i64 {
                let send = g * 20_000 + p * 1_000;
                if d.on_packet(send, send + 50_000).is_some() {
                    verdicts += 1;
                }
            }
        }
        // The first group has no predecessor and the last is not complete.
        assert_eq!(verdicts, 8);
    }

    #[test]
    fn a_packet_queued_behind_the_group_joins_it() {
        let mut d = DelayBased::default();
        d.on_packet(0, 100_000);
        // Sent 10 ms later but arriving 1 ms after the first: it waited in a queue.
        assert_eq!(d.on_packet(10_000, 101_000), None);
        assert_eq!(d.current.unwrap().last_send_us, 10_000);
    }

    #[test]
    fn reordered_groups_are_skipped_and_jumps_reset() {
        let mut d = DelayBased::default();
        d.on_packet(0, 100_000);
        d.on_packet(10_000, 110_000);
        // The third group arrives before the second.
        d.on_packet(20_000, 105_000);
        d.on_packet(30_000, 130_000);
        assert_eq!(d.skipped_groups, 1);
        d.on_packet(40_000, 10_000_000);
        d.on_packet(50_000, 10_010_000);
        assert_eq!(d.resets, 1);
    }
}
