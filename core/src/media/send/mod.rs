//! The send side of one consumer's outgoing RTP stream: what was sent (for retransmission on
//! NACK, RFC 4585 section 6.2.1, over an RTX stream, RFC 4588), sender reports with an NTP/RTP
//! mapping (RFC 3550 section 6.4.1), round-trip time from receiver reports and the stream's
//! statistics.
//!
//! Pure logic: time comes in as [`Instant`]s, nothing is sent from here and nothing is
//! allocated per packet. The packets themselves are not kept: the producer side stores the
//! received packets by the producer's extended sequence number, and this stream maps each
//! outgoing sequence number back to the source packet ([`SentPacket`]) so that a NACK is
//! answered by re-sending the stored packet rewritten again. The ring of the last
//! [`HISTORY_LEN`] packets is allocated on the first packet (16 KiB); before that a stream
//! costs its own size only.
//!
//! Retransmissions are limited twice: a packet is not resent again within one RTT (at least
//! [`MIN_RESEND_INTERVAL`]), and retransmitted bytes over the last second may not exceed
//! [`RETRANSMIT_SHARE_PERCENT`] percent of the bytes sent over the last second plus
//! [`RETRANSMIT_BURST_BYTES`].

mod budget;
mod history;
pub(crate) mod ntp;

use std::time::{Duration, Instant};

use budget::{ms_since, Budget};
use history::{History, Lookup};

pub(crate) use ntp::ntp_middle32;

/// A packet is not retransmitted again sooner than this, whatever the RTT.
pub(crate) const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(10);
/// How many sender reports are remembered to match receiver reports' LSR against.
const REPORTS_KEPT: usize = 8;

/// The `source_ext_seq` of a padding packet that filled its number (it has no source packet;
/// sending it again sends padding again).
pub(crate) const PADDING_SOURCE: u64 = (1 << 48) - 1;

/// Where an outgoing packet came from: the producer encoding (layer index) and the source's
/// extended sequence number, plus what was written (the outgoing timestamp and marker) so a
/// retransmission can be rewritten identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SentPacket {
    /// The producer encoding (layer index) the packet came from.
    pub(crate) layer: u8,
    /// The producer's extended sequence number of the source packet (below 2^48, or the
    /// packet cannot be retransmitted).
    pub(crate) source_ext_seq: u64,
    /// The outgoing RTP timestamp.
    pub(crate) timestamp: u32,
    /// The outgoing marker bit.
    pub(crate) marker: bool,
    /// The size of the outgoing RTP packet in bytes (header and payload): what the bytes sent
    /// and the retransmission budget count.
    pub(crate) size: u16,
}

/// The contents of a sender report for one stream (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SenderReportData {
    /// The stream's SSRC.
    pub(crate) ssrc: u32,
    /// The NTP timestamp (64-bit fixed point).
    pub(crate) ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub(crate) rtp_ts: u32,
    /// Packets sent since the start (modulo 2^32), retransmissions not included.
    pub(crate) packet_count: u32,
    /// Payload octets sent since the start (modulo 2^32), retransmissions not included.
    pub(crate) octet_count: u32,
}

/// Counters of one send stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendStats {
    /// Packets sent (retransmissions not included).
    pub(crate) packets_sent: u64,
    /// Bytes of the packets sent ([`SentPacket::size`]).
    pub(crate) bytes_sent: u64,
    /// Packets retransmitted.
    pub(crate) packets_retransmitted: u64,
    /// Bytes retransmitted.
    pub(crate) bytes_retransmitted: u64,
    /// NACK messages received.
    pub(crate) nacks_received: u64,
    /// Sequence numbers asked for by NACKs.
    pub(crate) nacked_packets: u64,
    /// Asked-for packets not retransmitted because the budget was spent.
    pub(crate) retransmissions_refused_budget: u64,
    /// Asked-for packets that were unknown or no longer remembered.
    pub(crate) retransmissions_not_found: u64,
    /// Asked-for packets not retransmitted because they were resent less than an RTT ago.
    pub(crate) retransmissions_skipped_rtt: u64,
    /// The fraction lost of the latest receiver report (out of 256).
    pub(crate) fraction_lost: u8,
    /// The cumulative number of packets lost of the latest receiver report.
    pub(crate) packets_lost: i32,
    /// The smoothed round-trip time.
    pub(crate) rtt: Option<Duration>,
}

/// The timestamp and send time of the newest packet.
#[derive(Debug, Clone, Copy)]
struct LastSent {
    out_ext_seq: u64,
    timestamp: u32,
    at: Instant,
}

/// The send side of one consumer's outgoing RTP stream (see the module documentation).
#[derive(Debug)]
pub(crate) struct SendStream {
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    clock_rate: u32,
    next_rtx_seq: u64,
    history: History,
    budget: Budget,
    /// The origin of the millisecond clocks of `history` and `budget`: the first instant seen.
    epoch: Option<Instant>,
    last_sent: Option<LastSent>,
    /// Payload octets sent, for sender reports (wraps, RFC 3550 section 6.4.1).
    octet_count: u32,
    /// The middle 32 bits of the NTP time of recent sender reports and when they were made.
    reports: [Option<(u32, Instant)>; REPORTS_KEPT],
    next_report: usize,
    stats: SendStats,
    /// Sequence numbers the stream skipped and has not filled (packets lost before the Sfu,
    /// which the endpoint counts as lost too).
    holes: u64,
    /// The latest receiver report's extended highest sequence number, and `holes` then.
    report_position: Option<(u32, u64)>,
    /// The first packet's extended sequence number.
    first_sent: Option<u64>,
}

impl SendStream {
    /// A stream with SSRC `ssrc`, retransmitting on `rtx_ssrc` (RFC 4588) if given, whose RTP
    /// clock runs at `clock_rate` Hz; the RTX stream's sequence numbers start at
    /// `initial_rtx_seq`.
    pub(crate) fn new(
        ssrc: u32,
        rtx_ssrc: Option<u32>,
        clock_rate: u32,
        initial_rtx_seq: u16,
    ) -> Self {
        SendStream {
            ssrc,
            rtx_ssrc,
            clock_rate,
            next_rtx_seq: u64::from(initial_rtx_seq),
            history: History::default(),
            budget: Budget::default(),
            epoch: None,
            last_sent: None,
            octet_count: 0,
            reports: [None; REPORTS_KEPT],
            next_report: 0,
            stats: SendStats::default(),
            holes: 0,
            report_position: None,
            first_sent: None,
        }
    }

    /// Records a packet just sent with outgoing extended sequence number `out_ext_seq` (keeps
    /// the last [`HISTORY_LEN`] in a ring of fixed slots). `payload_len` is the RTP payload's
    /// length, for the sender report's octet count.
    pub(crate) fn on_sent(
        &mut self,
        out_ext_seq: u64,
        packet: SentPacket,
        payload_len: usize,
        now: Instant,
    ) {
        let epoch = *self.epoch.get_or_insert(now);
        self.history.insert(out_ext_seq, &packet);
        self.first_sent.get_or_insert(out_ext_seq);
        match self.last_sent {
            Some(last) if out_ext_seq > last.out_ext_seq + 1 => {
                self.holes += out_ext_seq - last.out_ext_seq - 1;
            }
            Some(last) if out_ext_seq < last.out_ext_seq => {
                self.holes = self.holes.saturating_sub(1);
            }
            _ => {}
        }
        if self
            .last_sent
            .is_none_or(|last| out_ext_seq >= last.out_ext_seq)
        {
            self.last_sent = Some(LastSent {
                out_ext_seq,
                timestamp: packet.timestamp,
                at: now,
            });
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += u64::from(packet.size);
        // The octet count wraps modulo 2^32 (RFC 3550 section 6.4.1).
        self.octet_count = self.octet_count.wrapping_add(payload_len as u32);
        self.budget
            .on_sent(usize::from(packet.size), ms_since(epoch, now));
    }

    /// The RTP timestamp of the newest packet sent.
    pub(crate) fn last_timestamp(&self) -> Option<u32> {
        self.last_sent.map(|l| l.timestamp)
    }

    /// A NACK for these outgoing sequence numbers (16-bit, as received). Writes into `out` the
    /// ones to retransmit now: still in the ring, not retransmitted within the last RTT (at
    /// least [`MIN_RESEND_INTERVAL`]), within the retransmission budget. Returns how many were
    /// written. Each entry gives the outgoing extended sequence number and the [`SentPacket`].
    ///
    /// The written packets count as retransmitted now for the RTT rule; their bytes count
    /// toward the budget when the caller reports them with [`SendStream::on_retransmitted`].
    /// Sequence numbers after `out` is full are left unread.
    pub(crate) fn on_nack(
        &mut self,
        seqs: impl Iterator<Item = u16>,
        now: Instant,
        out: &mut [(u64, SentPacket)],
    ) -> usize {
        self.stats.nacks_received += 1;
        let now_ms = self.epoch.map_or(0, |epoch| ms_since(epoch, now));
        // The history keeps milliseconds modulo 2^21; the truncation keeps what it needs.
        let now_ms32 = now_ms as u32;
        let min_interval = self.resend_interval_ms();
        let mut available = self.budget.available(now_ms);
        let mut written = 0;
        for seq in seqs {
            let Some(entry) = out.get_mut(written) else {
                break;
            };
            self.stats.nacked_packets += 1;
            match self.history.lookup(seq, now_ms32, min_interval) {
                Lookup::NotFound => self.stats.retransmissions_not_found += 1,
                Lookup::ResentRecently => self.stats.retransmissions_skipped_rtt += 1,
                Lookup::Found(_, packet) if u64::from(packet.size) > available => {
                    self.stats.retransmissions_refused_budget += 1;
                }
                Lookup::Found(ext, packet) => {
                    available -= u64::from(packet.size);
                    self.history.mark_resent(ext, now_ms32);
                    *entry = (ext, packet);
                    written += 1;
                }
            }
        }
        written
    }

    /// The next RTX sequence number (RFC 4588: the RTX stream has its own sequence numbers),
    /// extended; each call returns the next.
    pub(crate) fn next_rtx_seq(&mut self) -> u64 {
        let seq = self.next_rtx_seq;
        self.next_rtx_seq += 1;
        seq
    }

    /// Counts a retransmission of `bytes` bytes toward the budget and the statistics.
    pub(crate) fn on_retransmitted(&mut self, bytes: usize, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        self.budget.on_resent(bytes, ms_since(epoch, now));
        self.stats.packets_retransmitted += 1;
        self.stats.bytes_retransmitted += bytes as u64;
    }

    /// A sender report for this stream as of `now`, or `None` before the first packet.
    ///
    /// With `producer_sr` = `Some((ntp, source_rtp_ts, arrived_at))` from the producer's latest
    /// sender report and `ts_offset` the consumer's current (outgoing - source) timestamp
    /// offset, the report keeps the producer's NTP/RTP mapping, so that receivers can
    /// synchronise streams from one sender (lip sync): both NTP and RTP time are advanced by
    /// `now - arrived_at`. Without it, the RTP time is the newest packet's timestamp advanced
    /// by the wall time since it was sent, and the NTP time comes from `ntp_base` (an NTP time
    /// and the instant it stands for).
    ///
    /// Remembers the report for the RTT computation of [`SendStream::on_receiver_report`].
    pub(crate) fn sender_report(
        &mut self,
        now: Instant,
        producer_sr: Option<(u64, u32, Instant)>,
        ts_offset: u32,
        ntp_base: (u64, Instant),
    ) -> Option<SenderReportData> {
        let last = self.last_sent?;
        let (ntp, rtp_ts) = match producer_sr {
            Some((ntp, source_ts, arrived_at)) => (
                ntp::ntp_at((ntp, arrived_at), now),
                ntp::rtp_at(
                    source_ts.wrapping_add(ts_offset),
                    self.clock_rate,
                    arrived_at,
                    now,
                ),
            ),
            None => (
                ntp::ntp_at(ntp_base, now),
                ntp::rtp_at(last.timestamp, self.clock_rate, last.at, now),
            ),
        };
        self.remember_report(ntp, now);
        Some(SenderReportData {
            ssrc: self.ssrc,
            ntp,
            rtp_ts,
            // The packet count wraps modulo 2^32 (RFC 3550 section 6.4.1).
            packet_count: self.stats.packets_sent as u32,
            octet_count: self.octet_count,
        })
    }

    /// Remembers a sender report of NTP time `ntp` sent at `now` on this stream or on another
    /// stream of the same consumer (a pipe consumer's encodings), for the RTT computation of
    /// [`SendStream::on_receiver_report`].
    pub(crate) fn remember_report(&mut self, ntp: u64, now: Instant) {
        self.reports[self.next_report] = Some((ntp_middle32(ntp), now));
        self.next_report = (self.next_report + 1) % REPORTS_KEPT;
    }

    /// A receiver report block about this stream. Keeps the fraction lost and the cumulative
    /// number lost, and computes the RTT from LSR and DLSR (RFC 3550 section 6.4.1): the time
    /// since the sender report named by `last_sr` was made, less `delay_since_last_sr` (in
    /// units of 1/65536 s; zero if that delay is longer). Blocks with LSR 0 or an LSR that
    /// names none of the last reports give no RTT. Returns the RTT computed, if any.
    pub(crate) fn on_receiver_report(
        &mut self,
        fraction_lost: u8,
        cumulative_lost: i32,
        last_sr: u32,
        delay_since_last_sr: u32,
        now: Instant,
    ) -> Option<Duration> {
        self.stats.fraction_lost = fraction_lost;
        self.stats.packets_lost = cumulative_lost;
        if last_sr == 0 {
            return None;
        }
        let (_, sent_at) = self
            .reports
            .iter()
            .flatten()
            .filter(|(lsr, _)| *lsr == last_sr)
            .max_by_key(|(_, at)| *at)?;
        let rtt = now
            .saturating_duration_since(*sent_at)
            .saturating_sub(ntp::duration_from_ntp_short(delay_since_last_sr));
        // Smoothed as TCP does (RFC 6298): 7/8 of the old value, 1/8 of the new sample.
        self.stats.rtt = Some(self.stats.rtt.map_or(rtt, |srtt| (srtt * 7 + rtt) / 8));
        Some(rtt)
    }

    /// Notes where a receiver report about this stream stood: its extended highest sequence
    /// number (with the sequence numbers skipped so far, which the endpoint counts as lost
    /// but were never sent: lost before the Sfu).
    pub(crate) fn on_report_position(&mut self, extended_highest_seq: u32) {
        self.report_position = Some((extended_highest_seq, self.holes));
    }

    /// The latest receiver report's extended highest sequence number and the sequence numbers
    /// skipped by then (see [`on_report_position`](Self::on_report_position)).
    pub(crate) fn report_position(&self) -> Option<(u32, u64)> {
        self.report_position
    }

    /// The first packet's sequence number as a receiver report's extended highest sequence
    /// number counts it (the cycles start at 0).
    pub(crate) fn first_sent_seq(&self) -> Option<u32> {
        self.first_sent.map(|s| s as u32)
    }

    /// The smoothed round-trip time, once a receiver report gave one.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.stats.rtt
    }

    /// The stream's counters.
    pub(crate) fn stats(&self) -> SendStats {
        self.stats
    }

    /// The stream's SSRC.
    #[cfg(test)]
    pub(crate) fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTX stream's SSRC, if retransmissions go on their own stream.
    pub(crate) fn rtx_ssrc(&self) -> Option<u32> {
        self.rtx_ssrc
    }

    /// Bytes this stream holds on the heap (the ring, once the first packet was sent).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.history.heap_bytes()
    }

    /// The time within which a packet is not resent again, in whole milliseconds (rounded up).
    fn resend_interval_ms(&self) -> u32 {
        let interval = self.stats.rtt.unwrap_or_default().max(MIN_RESEND_INTERVAL);
        u32::try_from(interval.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests;
