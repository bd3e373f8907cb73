//! Probing: short clusters of padding sent above the estimate, to learn whether the path
//! carries a higher bitrate before a consumer is moved up to it.
//!
//! The allocator says what it would like to send ([`Prober::want`]). While that is above the
//! estimate and no cluster is under way, a cluster starts at twice the estimate (at most the
//! goal and [`MAX_PROBE_BPS`]): [`CLUSTER_US`] of padding packets spaced at that rate, at least
//! [`MIN_CLUSTER_PACKETS`] of them. The cluster is the range of transport-wide sequence numbers
//! from its first padding packet to its last, media included. When feedback has reported the
//! whole range, the result is the smaller of the rate it was sent at and the rate it arrived
//! at; the link carried it when the arrival rate is at least [`CARRIED_RATIO`] of the send
//! rate, with few packets lost. A carried result above the estimate raises it (unless the
//! delay detector sees over-use), and the next cluster may start at once, at twice the new
//! estimate, toward the goal. A cluster that arrived slower than that, with few packets lost,
//! saturated the path: what arrived is what the path carries, and [`SATURATED_SHARE`] of its
//! arrival rate raises the estimate if it is higher. That, and a cluster that lost many
//! packets (or whose feedback never came), counts as not carried, and the next one waits,
//! from [`BACKOFF_MIN_US`] doubling to [`BACKOFF_MAX_US`].
//!
//! Nothing here runs per media packet unless a cluster waits for its feedback, and then only
//! a range check; a transport whose consumers have all they want never probes.

/// Padding bytes in one probe packet (an RTP packet's padding count is one octet).
pub(crate) const PADDING_BYTES: usize = 255;
/// How long a cluster lasts, in microseconds.
pub(crate) const CLUSTER_US: i64 = 15_000;
/// The fewest padding packets in a cluster.
pub(crate) const MIN_CLUSTER_PACKETS: u32 = 5;
/// The most a cluster is sent at, bits per second.
pub(crate) const MAX_PROBE_BPS: u64 = 10_000_000;
/// A cluster is sent at this multiple of the estimate (at most the goal).
const STEP: u64 = 2;
/// The share of a saturated cluster's arrival rate taken as what the path carries (the
/// cluster itself filled the bottleneck's queue a little).
pub(crate) const SATURATED_SHARE: f64 = 0.95;
/// The share of the send rate the arrival rate must reach for the link to have carried it.
pub(crate) const CARRIED_RATIO: f64 = 0.9;
/// The share of a cluster's packets that must be reported received for a result.
const MIN_RECEIVED_RATIO: f64 = 0.8;
/// The wait after a cluster the link did not carry, at first and at most (microseconds).
pub(crate) const BACKOFF_MIN_US: i64 = 500_000;
pub(crate) const BACKOFF_MAX_US: i64 = 4_000_000;
/// A cluster whose feedback has not come this long after it was sent failed.
const RESULT_TIMEOUT_US: i64 = 1_000_000;
/// The wire size the pacing of a cluster assumes for one padding packet (with its header,
/// extensions and SRTP tag).
const PACKET_WIRE_BYTES: u64 = PADDING_BYTES as u64 + 50;

/// Counters of the probing done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProbeCounters {
    /// Clusters sent.
    pub(crate) clusters: u64,
    /// Padding packets sent.
    pub(crate) packets: u64,
    /// Clusters the link carried.
    pub(crate) carried: u64,
    /// Clusters it did not carry (or whose feedback never came).
    pub(crate) failed: u64,
}

/// What feedback said about a cluster so far.
#[derive(Debug, Clone, Copy, Default)]
struct Arrivals {
    /// Packets of the range reported received, and their bytes.
    received: u32,
    bytes: u64,
    /// Reported lost (and not received since).
    lost: u32,
    /// Send times (local clock) of the first and last received packet, and the last one's size.
    first_send_us: Option<i64>,
    last_send_us: i64,
    last_send_size: u64,
    /// Arrival times (receiver's clock) of the earliest and latest, and the earliest's size.
    first_arrival_us: Option<i64>,
    first_arrival_size: u64,
    last_arrival_us: i64,
}

/// One cluster: being sent, then waiting for its feedback.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    /// The padding's share of the rate it aims at, bits per second.
    padding_bps: u64,
    /// When it started and how many padding packets it sends.
    start_us: i64,
    packets: u32,
    sent: u32,
    /// Its range of extended transport-wide sequence numbers (`last` once it is sent).
    first_ext: Option<u64>,
    last_ext: Option<u64>,
    /// When its last packet left.
    done_us: Option<i64>,
    arrivals: Arrivals,
}

/// The outcome of a cluster whose feedback is complete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// The link carried this rate, bits per second.
    Carried(f64),
    /// The cluster filled the path: it carries about this rate, bits per second, and no more.
    Saturated(f64),
    /// It did not carry the cluster, and says nothing of its rate.
    Failed,
}

/// One transport's prober.
#[derive(Debug, Default)]
pub(crate) struct Prober {
    /// What the allocator would like to send (0: nothing above what it has).
    goal: u64,
    cluster: Option<Cluster>,
    backoff_us: i64,
    next_allowed_us: i64,
    pub(crate) counters: ProbeCounters,
}

impl Prober {
    /// The allocator would like to send `goal` bits per second (0: it has what it wants)
    /// while it sends `media` bits per second; with an estimate of `estimate` and an upper
    /// bound `upper`, at `now_us`. Starts a cluster when one is due: padding on top of the
    /// media up to the cluster's rate (at least a quarter of that rate).
    pub(crate) fn want(&mut self, goal: u64, media: u64, estimate: u64, upper: u64, now_us: i64) {
        self.goal = goal.min(upper).min(MAX_PROBE_BPS);
        if self.cluster.is_none() && self.goal > estimate && now_us >= self.next_allowed_us {
            let rate = estimate.saturating_mul(STEP).min(self.goal);
            let padding = rate.saturating_sub(media).max(rate / 4);
            let bytes = padding.saturating_mul(CLUSTER_US as u64) / 8_000_000;
            let packets = (bytes / PACKET_WIRE_BYTES).max(u64::from(MIN_CLUSTER_PACKETS));
            self.cluster = Some(Cluster {
                padding_bps: padding,
                start_us: now_us,
                packets: u32::try_from(packets).unwrap_or(u32::MAX),
                sent: 0,
                first_ext: None,
                last_ext: None,
                done_us: None,
                arrivals: Arrivals::default(),
            });
            self.counters.clusters += 1;
        }
    }

    /// When the next padding packet is due (local clock), if a cluster is being sent.
    pub(crate) fn next_send_us(&self) -> Option<i64> {
        let c = self.cluster.as_ref().filter(|c| c.sent < c.packets)?;
        let interval = PACKET_WIRE_BYTES as i64 * 8_000_000 / c.padding_bps.max(1) as i64;
        Some(c.start_us + i64::from(c.sent) * interval)
    }

    /// Whether a padding packet is due at `now_us`.
    pub(crate) fn due(&self, now_us: i64) -> bool {
        self.next_send_us().is_some_and(|at| at <= now_us)
    }

    /// A padding packet left at `now_us` with extended transport-wide sequence number `ext`.
    pub(crate) fn on_padding_sent(&mut self, ext: u64, now_us: i64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.first_ext.get_or_insert(ext);
        c.sent += 1;
        self.counters.packets += 1;
        if c.sent >= c.packets {
            c.last_ext = Some(ext);
            c.done_us = Some(now_us);
        }
    }

    /// The cluster cannot be sent (no stream to send it on): it is dropped without a result.
    pub(crate) fn abandon(&mut self, now_us: i64) {
        if self.cluster.take().is_some() {
            self.next_allowed_us = now_us + BACKOFF_MAX_US;
        }
    }

    /// Whether feedback about packet `ext` concerns a cluster: cheap enough per report.
    pub(crate) fn watches(&self, ext: u64) -> bool {
        self.cluster
            .as_ref()
            .and_then(|c| c.first_ext)
            .is_some_and(|first| ext >= first)
    }

    /// Feedback reported packet `ext` (sent at `send_us`, `size` bytes) received at
    /// `arrival_us` (`None`: lost).
    pub(crate) fn on_report(&mut self, ext: u64, send_us: i64, size: u16, arrival_us: Option<i64>) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if c.first_ext.is_none_or(|f| ext < f) || c.last_ext.is_some_and(|l| ext > l) {
            return;
        }
        let a = &mut c.arrivals;
        let size = u64::from(size);
        let Some(arrival) = arrival_us else {
            a.lost += 1;
            return;
        };
        a.received += 1;
        a.bytes += size;
        if a.first_send_us.is_none_or(|f| send_us < f) {
            a.first_send_us = Some(send_us);
        }
        if send_us >= a.last_send_us {
            a.last_send_us = send_us;
            a.last_send_size = size;
        }
        if a.first_arrival_us.is_none_or(|f| arrival < f) {
            a.first_arrival_us = Some(arrival);
            a.first_arrival_size = size;
        }
        a.last_arrival_us = a.last_arrival_us.max(arrival);
    }

    /// After a feedback whose reports reached `highest_ext`: the cluster's outcome when its
    /// feedback is complete (or overdue at `now_us`). A failure sets the back-off; the cluster
    /// is done either way.
    pub(crate) fn poll_outcome(
        &mut self,
        highest_ext: Option<u64>,
        now_us: i64,
    ) -> Option<Outcome> {
        let c = self.cluster.as_ref()?;
        let (Some(first), Some(last), Some(done)) = (c.first_ext, c.last_ext, c.done_us) else {
            return None;
        };
        let complete = highest_ext.is_some_and(|h| h >= last);
        if !complete && now_us < done + RESULT_TIMEOUT_US {
            return None;
        }
        let span = (last - first + 1) as f64;
        let outcome = match rates(&c.arrivals) {
            Some(_) if f64::from(c.arrivals.received) < MIN_RECEIVED_RATIO * span => {
                Outcome::Failed
            }
            Some((sent, arrived)) if arrived >= CARRIED_RATIO * sent => {
                Outcome::Carried(sent.min(arrived))
            }
            Some((_, arrived)) => Outcome::Saturated(SATURATED_SHARE * arrived),
            None => Outcome::Failed,
        };
        self.cluster = None;
        match outcome {
            Outcome::Carried(_) => {
                self.counters.carried += 1;
                self.backoff_us = 0;
                self.next_allowed_us = now_us;
            }
            Outcome::Saturated(_) | Outcome::Failed => {
                self.counters.failed += 1;
                self.backoff_us = (self.backoff_us * 2).clamp(BACKOFF_MIN_US, BACKOFF_MAX_US);
                self.next_allowed_us = now_us + self.backoff_us;
            }
        }
        Some(outcome)
    }

    /// A cluster the delay detector saw over-use in counts as failed, whatever its rates.
    pub(crate) fn fail_on_overuse(&mut self, outcome: Outcome, now_us: i64) -> Outcome {
        if let Outcome::Carried(_) = outcome {
            self.counters.carried -= 1;
            self.counters.failed += 1;
            self.backoff_us = BACKOFF_MIN_US;
            self.next_allowed_us = now_us + self.backoff_us;
        }
        Outcome::Failed
    }
}

/// The (send, arrival) rates of a cluster's received packets, bits per second: each over its
/// span, the send rate without the last packet sent, the arrival rate without the first
/// arrived (each span holds one packet less than its ends).
fn rates(a: &Arrivals) -> Option<(f64, f64)> {
    let first_send = a.first_send_us?;
    let first_arrival = a.first_arrival_us?;
    let send_span = a.last_send_us - first_send;
    let arrival_span = a.last_arrival_us - first_arrival;
    if a.received < MIN_CLUSTER_PACKETS || send_span <= 0 {
        return None;
    }
    let sent = (a.bytes - a.last_send_size) as f64 * 8e6 / send_span as f64;
    // Everything arriving at once (a coarse receiver clock) is as fast as it was sent.
    let arrived = if arrival_span <= 0 {
        sent
    } else {
        (a.bytes - a.first_arrival_size) as f64 * 8e6 / arrival_span as f64
    };
    Some((sent, arrived))
}
