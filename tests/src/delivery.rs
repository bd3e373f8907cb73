//! The delivery checker: maps every source packet to what a consumer received.
//!
//! Every payload a [`Source`](crate::media::Source) makes names its source SSRC and sequence
//! number, and the simulation logs every packet each source made ([`Sim::sent`]). So for one
//! consumer stream the checker knows, for each packet received, which source packet it was, and
//! for each source packet that should have arrived, whether it did. It then checks what an SFU
//! owes a receiver:
//!
//! - every source packet sent inside an expected window arrived, exactly once, byte-equal;
//! - nothing arrived from a source the consumer does not carry;
//! - the consumer's sequence numbers are contiguous, and map to the source's through a constant
//!   offset within a run (a run ends only where the SFU may resync: pause/resume, layer switch);
//! - within a run, timestamps move exactly as the source's did; across runs they move forward
//!   by about the time that passed;
//! - the marker bit and the audio level header extension are the source's; every video run
//!   starts at a key frame;
//! - packets arrive in order (reordering is reported, for tests on links that reorder).
//!
//! Sequence numbers are compared after extension to 64 bits, so wraps are handled.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::client::Received;
use crate::media::verify_payload;
use crate::sim::{SentLog, Sim};

/// A window of a source's packets that must all reach the consumer.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// The source SSRC.
    pub source: u32,
    /// Packets the source sent at or after this instant...
    pub from: Instant,
    /// ...and at or before this one must arrive.
    pub to: Instant,
}

impl Expect {
    /// Every packet `source` sent in `[from, to]`.
    pub fn between(source: u32, from: Instant, to: Instant) -> Self {
        Self { source, from, to }
    }

    /// Every packet `source` sent in `[start, to]`, where `start` is the first decodable start
    /// at or after `after`: for video the first key frame the source made then, for audio the
    /// first packet. A video consumer can only start at a key frame, so this is where its
    /// receiver's stream must begin at the latest.
    pub fn from_first_key_frame(sim: &Sim, source: u32, after: Instant, to: Instant) -> Self {
        let log = sim.sent.get(&source);
        let start = log
            .and_then(|log| {
                let video = log.clock_rate == 90_000;
                log.packets
                    .iter()
                    .find(|p| p.at >= after && p.sent && (!video || p.key_frame))
                    .map(|p| p.at)
            })
            .unwrap_or(to + Duration::from_nanos(1));
        Self::between(source, start, to)
    }

    /// Every packet `source` sent from the first one `client` received of it on
    /// `consumer_ssrc`, to `to`. For a stream whose start a test cannot pin by time: a key frame
    /// made before the transports were up is sent, and forwarded, once they are.
    pub fn from_first_received(
        sim: &Sim,
        client: usize,
        consumer_ssrc: u32,
        source: u32,
        to: Instant,
    ) -> Self {
        let start = sim.sent.get(&source).and_then(|log| {
            sim.clients[client]
                .received
                .iter()
                .filter(|p| p.ssrc == consumer_ssrc)
                .filter_map(|p| verify_payload(&p.payload))
                .find(|info| info.ssrc == source)
                .and_then(|info| locate(log, info.seq, None))
                .map(|i| log.packets[i].at)
        });
        Self::between(source, start.unwrap_or(to + Duration::from_nanos(1)), to)
    }
}

/// What one consumer stream looked like against its sources.
#[derive(Debug, Default, Clone)]
pub struct Delivery {
    /// Packets received on the consumer's SSRC.
    pub received: usize,
    /// Source packets that had to arrive (inside the expected windows).
    pub expected: usize,
    /// Of those, how many never arrived.
    pub missing: usize,
    /// The first few missing ones, as (source SSRC, source sequence number).
    pub missing_examples: Vec<(u32, u64)>,
    /// Payloads that did not verify byte for byte, or name a packet no source made.
    pub corrupt: usize,
    /// Packets from a source this consumer does not carry.
    pub foreign: usize,
    /// Source packets that arrived more than once.
    pub duplicates: usize,
    /// Two different source packets sent with the same consumer sequence number.
    pub seq_reused: usize,
    /// Consumer sequence numbers never seen between the lowest and highest received.
    pub seq_gaps: usize,
    /// Packets that arrived after one with a higher consumer sequence number.
    pub out_of_order: usize,
    /// Runs: stretches where consumer and source sequence numbers move together. A run
    /// ends where the source changes or its sequence number jumps by more than the consumer's.
    pub runs: usize,
    /// Runs of one source whose source packets come before the previous run's (the SFU sent an
    /// older packet with a newer sequence number).
    pub order_errors: usize,
    /// Timestamps that do not follow the source's within a run, or that do not move forward by
    /// about the elapsed time across runs.
    pub ts_errors: usize,
    /// Packets whose marker bit differs from the source's.
    pub marker_errors: usize,
    /// Packets whose header extension values (audio level, voice activity) differ from the
    /// source's.
    pub extension_errors: usize,
    /// Video runs that do not start with a key frame.
    pub runs_not_at_key_frame: usize,
    /// Whether the first packet (in consumer order) starts a key frame.
    pub first_is_key_frame: bool,
    /// Source SSRCs seen, in order of first arrival.
    pub sources: Vec<u32>,
    /// The source of each run, in consumer sequence order.
    pub run_sources: Vec<u32>,
    /// Per source: the source sequence numbers received, in arrival order.
    pub source_seqs: HashMap<u32, Vec<u64>>,
}

/// One received packet, identified.
#[derive(Debug, Clone, Copy)]
struct Hit {
    source: u32,
    /// Index into the source's log.
    index: usize,
    /// Extended consumer sequence number.
    cseq: u64,
    timestamp: u32,
}

/// Checks what `client` received on `consumer_ssrc` against the sources named in `expect`.
pub fn delivery(sim: &Sim, client: usize, consumer_ssrc: u32, expect: &[Expect]) -> Delivery {
    delivery_of(
        &sim.sent,
        &sim.clients[client].received,
        consumer_ssrc,
        expect,
    )
}

/// [`delivery`] on explicit inputs: the sources' logs and the packets a client received.
pub fn delivery_of(
    sent: &HashMap<u32, SentLog>,
    received: &[Received],
    consumer_ssrc: u32,
    expect: &[Expect],
) -> Delivery {
    let allowed: HashSet<u32> = expect.iter().map(|e| e.source).collect();
    let mut d = Delivery::default();
    let mut hits: Vec<Hit> = Vec::new();
    let mut seen: HashSet<(u32, usize)> = HashSet::new();
    let mut last_index: HashMap<u32, usize> = HashMap::new();
    let mut last_cseq: Option<u64> = None;
    let mut max_cseq: Option<u64> = None;
    for p in received.iter().filter(|p| p.ssrc == consumer_ssrc) {
        d.received += 1;
        let cseq = extend(last_cseq, p.seq);
        last_cseq = Some(cseq);
        if max_cseq.is_some_and(|m| cseq < m) {
            d.out_of_order += 1;
        }
        max_cseq = Some(max_cseq.map_or(cseq, |m| m.max(cseq)));
        let Some(info) = verify_payload(&p.payload) else {
            d.corrupt += 1;
            continue;
        };
        if !allowed.contains(&info.ssrc) {
            d.foreign += 1;
            continue;
        }
        let Some(log) = sent.get(&info.ssrc) else {
            d.corrupt += 1;
            continue;
        };
        let Some(index) = locate(log, info.seq, last_index.get(&info.ssrc).copied()) else {
            d.corrupt += 1;
            continue;
        };
        last_index.insert(info.ssrc, index);
        if !d.sources.contains(&info.ssrc) {
            d.sources.push(info.ssrc);
        }
        d.source_seqs
            .entry(info.ssrc)
            .or_default()
            .push(log.packets[index].seq);
        if !seen.insert((info.ssrc, index)) {
            d.duplicates += 1;
            continue;
        }
        if p.marker != log.packets[index].marker {
            d.marker_errors += 1;
        }
        // A source with a level says voice is active unless it is silent (-127 dBov).
        let level = log.packets[index].audio_level;
        if p.audio_level != level || p.voice_activity != level.map(|l| l > -127) {
            d.extension_errors += 1;
        }
        hits.push(Hit {
            source: info.ssrc,
            index,
            cseq,
            timestamp: p.timestamp,
        });
    }
    check_runs(sent, &mut hits, &mut d);
    for e in expect {
        let Some(log) = sent.get(&e.source) else {
            continue;
        };
        for (i, s) in log.packets.iter().enumerate() {
            if s.sent && s.at >= e.from && s.at <= e.to {
                d.expected += 1;
                if !seen.contains(&(e.source, i)) {
                    d.missing += 1;
                    if d.missing_examples.len() < 8 {
                        d.missing_examples.push((e.source, s.seq));
                    }
                }
            }
        }
    }
    d
}

/// Walks the hits in consumer sequence order: gaps, runs, timestamps, key frame starts.
fn check_runs(sent: &HashMap<u32, SentLog>, hits: &mut [Hit], d: &mut Delivery) {
    hits.sort_by_key(|h| h.cseq);
    let packet = |h: &Hit| &sent[&h.source].packets[h.index];
    let video = |h: &Hit| sent[&h.source].clock_rate == 90_000;
    if let Some(first) = hits.first() {
        d.runs = 1;
        d.run_sources.push(first.source);
        d.first_is_key_frame = packet(first).key_frame;
        if video(first) && !packet(first).key_frame {
            d.runs_not_at_key_frame += 1;
        }
    }
    for w in hits.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.cseq == a.cseq {
            d.seq_reused += 1;
            continue;
        }
        let step = b.cseq - a.cseq;
        let (pa, pb) = (packet(a), packet(b));
        let same_run = a.source == b.source && b.index as u64 == a.index as u64 + step;
        let consumer_ticks = b.timestamp.wrapping_sub(a.timestamp);
        if same_run {
            // Inside a run the consumer's numbering follows the source's: a gap is a gap only
            // where the source sent something (a muted source skips numbers it never sent).
            let between = &sent[&a.source].packets[a.index + 1..b.index];
            d.seq_gaps += between.iter().filter(|p| p.sent).count();
            if consumer_ticks != pb.timestamp.wrapping_sub(pa.timestamp) {
                d.ts_errors += 1;
            }
            continue;
        }
        d.seq_gaps += (step - 1) as usize;
        d.runs += 1;
        d.run_sources.push(b.source);
        if a.source == b.source && b.index <= a.index {
            d.order_errors += 1;
        }
        if video(b) && !pb.key_frame {
            d.runs_not_at_key_frame += 1;
        }
        // Across a resync the timestamp moves on by about the time that passed between the two
        // packets (within 200 ms: links add delay and jitter), and never backwards.
        let rate = u64::from(sent[&b.source].clock_rate);
        let elapsed = pb.at.saturating_duration_since(pa.at);
        let expected = (elapsed.as_micros() as u64 * rate / 1_000_000) as i64;
        let got = consumer_ticks as i32 as i64;
        if got <= 0 || (got - expected).unsigned_abs() > rate / 5 {
            d.ts_errors += 1;
        }
    }
}

/// One line per non-zero count.
fn problems_in(counts: &[(usize, &'static str)]) -> Vec<String> {
    counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
}

/// The index in `log` of the packet with 16-bit sequence number `seq`: the candidate nearest to
/// `near` (the last packet located for this source), or the first one.
pub fn locate(log: &SentLog, seq: u16, near: Option<usize>) -> Option<usize> {
    let first = log.packets.first()?.seq;
    let offset = usize::from(seq.wrapping_sub(first as u16));
    let candidates = (offset..log.packets.len()).step_by(65_536);
    match near {
        None => candidates.take(1).next(),
        Some(n) => candidates.min_by_key(|&c| c.abs_diff(n)),
    }
}

/// Extends a 16-bit sequence number to the 64-bit value nearest the previous one.
pub fn extend(previous: Option<u64>, seq: u16) -> u64 {
    let Some(prev) = previous else {
        return u64::from(seq) + 65_536;
    };
    let base = prev & !0xffff;
    [base.wrapping_sub(65_536), base, base + 65_536]
        .iter()
        .map(|b| b.wrapping_add(u64::from(seq)))
        .min_by_key(|c| c.abs_diff(prev))
        .unwrap_or(prev)
}

impl Delivery {
    /// Everything expected arrived exactly once, in order, byte-equal, from the right sources,
    /// on contiguous sequence numbers with consistent timestamps, starting at key frames; at
    /// least `min_expected` packets were expected (so an empty window cannot pass).
    pub fn check(&self, min_expected: usize) -> Result<(), String> {
        self.check_with(min_expected, false)
    }

    /// As [`check`](Self::check), but arrival order may differ from sequence order (for links
    /// that reorder, and retransmissions that arrive late).
    pub fn check_reordered(&self, min_expected: usize) -> Result<(), String> {
        self.check_with(min_expected, true)
    }

    /// What must hold whatever the network did, missing packets aside: nothing corrupt or
    /// foreign, nothing twice, no sequence number reused, runs in source order with consistent
    /// timestamps, marker bits and header extensions, each starting at a key frame.
    pub fn check_sound(&self) -> Result<(), String> {
        self.verdict(problems_in(&self.sound_counts()))
    }

    fn sound_counts(&self) -> [(usize, &'static str); 9] {
        [
            (self.corrupt, "corrupt"),
            (self.foreign, "from a source it does not carry"),
            (self.duplicates, "duplicated"),
            (self.seq_reused, "sequence numbers reused"),
            (self.order_errors, "runs out of source order"),
            (self.ts_errors, "timestamp errors"),
            (self.marker_errors, "marker bit errors"),
            (self.extension_errors, "header extension values changed"),
            (
                self.runs_not_at_key_frame,
                "runs not starting at a key frame",
            ),
        ]
    }

    fn verdict(&self, problems: Vec<String>) -> Result<(), String> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {self:?}", problems.join(", ")))
        }
    }

    fn check_with(&self, min_expected: usize, reorder_ok: bool) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.expected < min_expected {
            problems.push(format!(
                "only {} packets expected (at least {min_expected})",
                self.expected
            ));
        }
        problems.extend(problems_in(&[
            (self.missing, "missing"),
            (self.seq_gaps, "sequence gaps"),
        ]));
        problems.extend(problems_in(&self.sound_counts()));
        if !reorder_ok && self.out_of_order > 0 {
            problems.push(format!("{} out of order", self.out_of_order));
        }
        self.verdict(problems)
    }

    /// Panics with the problems [`check`](Self::check) finds.
    #[track_caller]
    pub fn assert_clean(&self, min_expected: usize) {
        if let Err(e) = self.check(min_expected) {
            panic!("{e}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;
    use crate::media::Source;

    /// A source's log and what a perfect SFU delivers of it (consumer seq/ts offsets applied).
    fn setup(frames: usize) -> (HashMap<u32, SentLog>, Vec<Received>, Instant) {
        let t0 = Instant::now();
        let mut src = Source::video(42, t0);
        let mut log = SentLog::new(90_000);
        let mut received = Vec::new();
        let mut at = t0;
        for _ in 0..frames {
            let packets = src.poll(at);
            log.record(&packets, at, true);
            for p in packets {
                received.push(Received {
                    at,
                    ssrc: 9,
                    seq: (p.seq as u16).wrapping_add(1000),
                    timestamp: p.timestamp.wrapping_add(5),
                    payload_type: 100,
                    marker: p.marker,
                    audio_level: None,
                    voice_activity: None,
                    abs_send_time: None,
                    payload: p.payload,
                });
            }
            at += crate::media::VIDEO_INTERVAL;
        }
        (HashMap::from([(42, log)]), received, t0)
    }

    #[test]
    fn a_perfect_stream_is_clean() {
        let (sent, received, t0) = setup(30);
        let d = delivery_of(
            &sent,
            &received,
            9,
            &[Expect::between(42, t0, t0 + Duration::from_secs(2))],
        );
        d.assert_clean(100);
        assert_eq!(d.runs, 1);
        assert_eq!(d.received, 12 + 29 * 4);
    }

    #[test]
    fn a_dropped_source_packet_renumbered_away_is_caught() {
        let (sent, mut received, t0) = setup(30);
        received.remove(50);
        for p in &mut received[50..] {
            p.seq = p.seq.wrapping_sub(1);
        }
        let d = delivery_of(
            &sent,
            &received,
            9,
            &[Expect::between(42, t0, t0 + Duration::from_secs(2))],
        );
        assert_eq!(d.missing, 1);
        assert_eq!(d.seq_gaps, 0, "renumbered: no gap on the consumer side");
        assert!(d.check(1).is_err());
    }

    #[test]
    fn timestamps_duplicates_markers_reordering_and_foreign_sources_are_caught() {
        let (sent, received, t0) = setup(30);
        let expect = [Expect::between(42, t0, t0 + Duration::from_secs(2))];
        let mut r = received.clone();
        r[20].timestamp += 1;
        assert_eq!(delivery_of(&sent, &r, 9, &expect).ts_errors, 2);
        let mut r = received.clone();
        r.push(r[10].clone());
        assert_eq!(delivery_of(&sent, &r, 9, &expect).duplicates, 1);
        let mut r = received.clone();
        r[3].marker = !r[3].marker;
        assert_eq!(delivery_of(&sent, &r, 9, &expect).marker_errors, 1);
        let mut r = received.clone();
        r.swap(5, 6);
        let d = delivery_of(&sent, &r, 9, &expect);
        assert_eq!(d.out_of_order, 1);
        assert!(d.check(1).is_err());
        d.check_reordered(1).unwrap();
        let d = delivery_of(&sent, &received, 9, &[Expect::between(7, t0, t0)]);
        assert_eq!(d.foreign, received.len());
        // A stream that starts mid-frame does not start at a key frame.
        let d = delivery_of(&sent, &received[1..], 9, &expect);
        assert_eq!(d.runs_not_at_key_frame, 1);
        assert_eq!(d.missing, 1);
    }

    #[test]
    fn gaps_count_only_what_the_source_sent() {
        let (mut sent, received, t0) = setup(30);
        let expect = [Expect::between(42, t0, t0 + Duration::from_secs(2))];
        // Lost on the way, numbering kept: a gap, and a missing packet.
        let mut r = received.clone();
        r.remove(40);
        let d = delivery_of(&sent, &r, 9, &expect);
        assert_eq!((d.seq_gaps, d.missing, d.runs), (1, 1, 1));
        // Never sent (a muted source): neither.
        sent.get_mut(&42).unwrap().packets[40].sent = false;
        let d = delivery_of(&sent, &r, 9, &expect);
        d.assert_clean(100);
    }

    #[test]
    fn an_empty_window_does_not_pass() {
        let (sent, _, t0) = setup(30);
        let d = delivery_of(&sent, &[], 9, &[Expect::between(42, t0, t0)]);
        assert!(d.check(1).is_err(), "nothing received, one packet expected");
        let d = delivery_of(&sent, &[], 9, &[]);
        assert!(d.check(1).is_err(), "nothing expected");
    }

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        assert_eq!(extend(Some(65_536 + 65_535), 0), 2 * 65_536);
        assert_eq!(extend(Some(2 * 65_536), 65_535), 65_536 + 65_535);
    }
}
