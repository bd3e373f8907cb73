//! What leaves through a transport's media session: forwarded packets, retransmissions, and
//! the RTCP the transport sends (reports, NACKs, key frame requests, transport-wide feedback).

use std::collections::VecDeque;
use std::time::Instant;

use tracing::trace;

use crate::codec::Descriptor;
use crate::event::Event;
use crate::ids::{ConsumerId, ProducerId, TransportId};
use crate::io::Output;
use crate::keyframe::is_key_frame;
use crate::layers::Verdict;
use crate::media::bwe::history::FLAG_RTX;
use crate::media::bwe::probe::PADDING_BYTES;
use crate::media::dd::write::MAX_LEN;
use crate::media::pacer::{Class, Polled, Taken};
use crate::media::packet::{self, OutHeader, RtpPacket};
use crate::media::rtcp;
use crate::media::send::{SenderReportData, SentPacket, PADDING_SOURCE};
use crate::ortc::MediaKind;
use crate::router::{Consumer, Producer, ReportClock};
use crate::trace::{RtpTraceInfo, TraceDirection, TraceEventType, TraceInfo};
use crate::transport::outbox::Buffers;
use crate::transport::Transport;

use super::active_targets::{self, DescriptorBuf};
use super::quality::{report_layers, set_current_layer, trace_event, trace_sent};
use super::{Sfu, TimerKey, MAX_LAYERS};

/// A consumer's video packet waiting in its transport's pacer: where to find it again (the
/// producer's packet store) and how it was rewritten.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paced {
    consumer: ConsumerId,
    layer: u8,
    source_ext_seq: u64,
    /// The consumer's extended sequence number for it.
    seq: u64,
    timestamp: u32,
    marker: bool,
    /// Its temporal layer (of an enhancement layer packet; zero otherwise), and whether it
    /// begins a picture (whose end is the packet with the marker bit).
    temporal: u8,
    begins_picture: bool,
    /// Whether it was dropped and stands for the padding packet that fills its number.
    fill: bool,
}

impl Paced {
    /// What stands for a dropped packet in its place in the queue: the padding packet that
    /// fills its number.
    fn as_fill(self) -> Self {
        Self { fill: true, ..self }
    }
}

/// What a queued fill counts for against the pacing budget: a padding packet's size on the
/// wire, about.
const FILL_WIRE_BYTES: usize = 64;

/// A header extension element: its id and value.
type Extension<'a> = (u8, &'a [u8]);

/// Room for what a forwarded packet's header may grow by (its mid and transport-wide sequence
/// number, a switch to two-byte extensions) and the SRTP tag.
const HEADROOM: usize = 96;

/// The largest compound RTCP datagram the Sfu sends (before SRTCP).
const RTCP_MTU: usize = 1100;

/// How long a consumer's first sender report waits for one from its producer.
const FIRST_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Retransmissions answered for one NACK at most.
const MAX_RESENDS_PER_NACK: usize = 64;

/// Sequence numbers asked for in one NACK packet at most.
const MAX_NACKED: usize = 128;

impl Sfu {
    /// Sends one producer packet to every consumer that should get it (`key_frame`: whether
    /// it starts one; `descriptor`: its payload descriptor, when read).
    pub(crate) fn forward(
        &mut self,
        pid: ProducerId,
        layer: usize,
        pkt: &RtpPacket<'_>,
        ext_seq: u64,
        (key_frame, descriptor): (bool, Option<Descriptor>),
    ) {
        let now = self.now;
        let sent_at = abs_send_time(self.ntp_base, now);
        let Some(p) = self.producers.get(&pid) else {
            return;
        };
        if p.paused || p.consumers.is_empty() {
            return;
        }
        let is_video = p.kind == MediaKind::Video;
        // Video waits in a pacer only when its producer keeps the packet to send it later.
        let pacing =
            self.config.pacing && p.encodings.get(layer).is_some_and(|e| e.store.is_some());
        let simulcast = p.encodings.len() > 1;
        // The highest spatial layer inside the stream that is being sent.
        let spatial_top = p.svc.as_ref().map_or(0, |s| s.highest_active(now));
        self.scratch_consumers.clear();
        self.scratch_consumers.extend_from_slice(&p.consumers);
        self.scratch_key_frames.clear();
        self.scratch_unsent.clear();
        // The layer each preference resolves to, computed once per packet.
        let layers = p.encodings.len().clamp(1, MAX_LAYERS);
        let mut best = [0usize; MAX_LAYERS];
        let mut dd_buf: DescriptorBuf = [0; MAX_LEN];
        if simulcast {
            for (pref, slot) in best.iter_mut().enumerate().take(layers) {
                *slot = p.best_layer(pref, now);
            }
        }
        for i in 0..self.scratch_consumers.len() {
            let cid = self.scratch_consumers[i];
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            if !c.is_forwarding() {
                continue;
            }
            if let Some(pipe) = c.pipe.as_deref_mut() {
                // Every encoding, on its own stream, numbered as the producer received it.
                let Some(&ssrc) = pipe.ssrcs.get(layer) else {
                    continue;
                };
                let index = pipe.index(layer, ext_seq);
                let header = OutHeader {
                    payload_type: c.payload_type,
                    sequence_number: ext_seq as u16,
                    timestamp: pkt.timestamp(),
                    ssrc,
                    marker: pkt.marker(),
                };
                let Some(ct) = self.transports.get_mut(&c.transport) else {
                    continue;
                };
                let ctid = c.transport;
                if write_media(
                    ct,
                    c,
                    pkt,
                    header,
                    (index, None, None),
                    (sent_at, now),
                    &mut self.buffers,
                ) {
                    count_sent(c, pkt.payload().len(), now);
                    if let Some(pipe) = c.pipe.as_deref_mut() {
                        pipe.on_sent(layer, pkt.payload().len(), pkt.timestamp(), now);
                    }
                    queue_flush_of(ct, ctid, &mut self.flush_queue);
                }
                continue;
            }
            // Which encoding this consumer should get, and whether this packet may start it.
            let target = best[c.wanted_layer().min(layers - 1)];
            if c.current_layer != Some(target) {
                if layer != target {
                    if c.current_layer != Some(layer) {
                        continue;
                    }
                    // Keep forwarding the current layer until the target has a key frame.
                    if !self.scratch_key_frames.contains(&(pid, target)) {
                        self.scratch_key_frames.push((pid, target));
                    }
                } else if key_frame || !is_video {
                    set_current_layer(c, cid, Some(target), &mut self.out);
                    c.rewriter.request_resync();
                } else {
                    c.stats.packets_waiting_for_key_frame += 1;
                    if !self.scratch_key_frames.contains(&(pid, target)) {
                        self.scratch_key_frames.push((pid, target));
                    }
                    continue;
                }
            }
            if c.current_layer != Some(layer) {
                continue;
            }
            if c.rewriter.needs_resync() && is_video && !key_frame {
                c.stats.packets_waiting_for_key_frame += 1;
                if !self.scratch_key_frames.contains(&(pid, layer)) {
                    self.scratch_key_frames.push((pid, layer));
                }
                continue;
            }
            let mut marker = pkt.marker();
            let wanted = (
                c.wanted_layer().min(usize::from(spatial_top)) as u8,
                c.preferred_temporal_layer
                    .unwrap_or(u8::MAX)
                    .min(c.target_temporal_layer.unwrap_or(u8::MAX)),
            );
            if let Some(f) = c.layers.as_mut() {
                // Layers inside the stream: keep or drop by the payload descriptor.
                f.set_target(wanted.0, wanted.1);
                let late = c.rewriter.is_late(ext_seq);
                let verdict = f.on_packet(descriptor.as_ref(), marker, late, key_frame);
                let current = f.current();
                let gap_in_dropped_frame = f.gap_in_dropped_frame();
                if f.wants_key_frame() && !self.scratch_key_frames.contains(&(pid, layer)) {
                    self.scratch_key_frames.push((pid, layer));
                }
                c.stats.current_spatial_layer = current.map(|(s, _)| s);
                c.stats.current_temporal_layer = current.map(|(_, t)| t);
                report_layers(c, cid, &mut self.out);
                match verdict {
                    Verdict::Forward { marker: m } => marker = m,
                    Verdict::Drop => {
                        let unused = if gap_in_dropped_frame {
                            c.rewriter.drop_through(ext_seq);
                            None
                        } else {
                            c.rewriter.drop_packet(ext_seq)
                        };
                        c.stats.packets_dropped_for_layers += 1;
                        // A late packet's number was kept for it: padding fills it, so the
                        // receiver does not ask for it in vain.
                        if let Some(seq) = unused {
                            self.fill_number(cid, seq, (sent_at, now), false);
                        }
                        continue;
                    }
                }
            }
            let Some((seq, ts)) = c
                .rewriter
                .rewrite(ext_seq, pkt.timestamp(), now, c.clock_rate)
            else {
                continue;
            };
            let header = OutHeader {
                payload_type: c.payload_type,
                sequence_number: seq as u16,
                timestamp: ts,
                ssrc: c.ssrc,
                marker,
            };
            let sent = SentPacket {
                layer: layer as u8,
                source_ext_seq: ext_seq,
                timestamp: ts,
                marker,
                size: pkt.as_bytes().len().min(usize::from(u16::MAX)) as u16,
            };
            let Some(ct) = self.transports.get_mut(&c.transport) else {
                continue;
            };
            let ctid = c.transport;
            // Temporal layers above the lowest of a stream whose layers the consumer selects
            // (inside one stream, or inside a simulcast encoding) are enhancement: they leave
            // after base layers and are dropped when stale, or when a base layer packet of the
            // stream would otherwise overtake them (see `settle_enhancement`).
            let (class, temporal) = match descriptor.as_ref() {
                Some(d) if d.temporal > 0 && c.layers.is_some() => (Class::Enhancement, d.temporal),
                _ if is_video => (Class::Base, 0),
                _ => (Class::Audio, 0),
            };
            let begins_picture = descriptor
                .as_ref()
                .is_none_or(|d| d.begins_frame && d.spatial == 0);
            if pacing && ct.paced && class == Class::Base && c.layers.is_some() {
                settle_enhancement(ct, (cid, &mut *c));
            }
            if pacing && ct.paced && !ct.pacer.send_now(usize::from(sent.size), class, now) {
                let item = Paced {
                    consumer: cid,
                    layer: layer as u8,
                    source_ext_seq: ext_seq,
                    seq,
                    timestamp: ts,
                    marker,
                    temporal,
                    begins_picture,
                    fill: false,
                };
                if hold(
                    ct,
                    ctid,
                    item,
                    usize::from(sent.size),
                    class,
                    now,
                    &mut self.timers,
                ) {
                    // Recorded for retransmission when it leaves (a held packet dropped
                    // before that was never sent).
                    c.first_sent_at.get_or_insert(now);
                } else if class != Class::Enhancement
                    || !drop_enhancement(ct, Some(&mut *c), item, now)
                {
                    // Its number is taken: padding fills it. (A refused enhancement packet
                    // is dropped as a stale one is.)
                    self.scratch_unsent.push((cid, seq));
                }
                continue;
            }
            let dd = self
                .producers
                .get(&pid)
                .and_then(|p| active_targets::rewrite((p, layer), c, pkt, &mut dd_buf))
                .map(|(id, n)| (id, &dd_buf[..n]));
            if write_media(
                ct,
                c,
                pkt,
                header,
                (seq, None, dd),
                (sent_at, now),
                &mut self.buffers,
            ) {
                count_sent(c, pkt.payload().len(), now);
                c.send.on_sent(seq, sent, pkt.payload().len(), now);
                if class == Class::Enhancement {
                    c.enhancement_picture_open = !marker;
                }
                queue_flush_of(ct, ctid, &mut self.flush_queue);
                let sizes = (&header, pkt.as_bytes().len(), pkt.payload().len());
                let times = (self.ntp_base.1, now);
                trace_sent(c, cid, sizes, || key_frame, times, &mut self.out);
            } else if c.first_sent_at.is_none() {
                // Not started after all (its transport cannot send yet): it starts at a key
                // frame once it can, not in the middle of this one's group of pictures.
                if let Some(f) = c.layers.as_mut() {
                    f.reset();
                }
                set_current_layer(c, cid, None, &mut self.out);
            }
        }
        for i in 0..self.scratch_key_frames.len() {
            let (pid, layer) = self.scratch_key_frames[i];
            self.request_key_frame(pid, layer);
        }
        self.fill_unsent((sent_at, now));
    }

    /// Fills with padding the numbers in `scratch_unsent` (consumers' packets numbered but
    /// not sent), so that receivers do not ask for them.
    fn fill_unsent(&mut self, times: ([u8; 3], Instant)) {
        for i in 0..self.scratch_unsent.len() {
            let (cid, seq) = self.scratch_unsent[i];
            self.fill_number(cid, seq, times, false);
        }
        self.scratch_unsent.clear();
    }

    /// A consumer's endpoint asks for packets again.
    pub(crate) fn on_nack(&mut self, tid: TransportId, ssrc: u32, seqs: impl Iterator<Item = u16>) {
        let now = self.now;
        let Some(cid) = self.consumer_by_ssrc(tid, ssrc) else {
            return;
        };
        self.trace_consumer(cid, TraceEventType::Nack, TraceDirection::In);
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        if c.pipe.is_some() {
            self.pipe_nack(cid, ssrc, seqs);
            return;
        }
        let mut found = [(0u64, SentPacket::default()); MAX_RESENDS_PER_NACK];
        let n = c.send.on_nack(seqs, now, &mut found);
        for &(out_seq, sent) in &found[..n] {
            self.retransmit(cid, out_seq, sent);
        }
    }

    /// Sends one packet again to a consumer: the producer's stored packet, rewritten as it was
    /// the first time, on the consumer's RTX stream when it has one.
    fn retransmit(&mut self, cid: ConsumerId, out_seq: u64, sent: SentPacket) {
        let now = self.now;
        let sent_at = abs_send_time(self.ntp_base, now);
        if sent.source_ext_seq == PADDING_SOURCE {
            self.fill_number(cid, out_seq, (sent_at, now), true);
            return;
        }
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        let Some(p) = self.producers.get(&c.producer) else {
            return;
        };
        let Some(stored) = p
            .encodings
            .get(usize::from(sent.layer))
            .and_then(|e| e.store.as_ref())
            .and_then(|s| s.get(sent.source_ext_seq))
            .map(|(_, bytes)| bytes)
        else {
            return;
        };
        let Ok(pkt) = RtpPacket::parse(stored) else {
            return;
        };
        // A packet of layers above the ones the consumer gets now (it moved down since) would
        // only load the path that made it move down: the receiver cannot use it any more.
        if let Some((spatial, temporal)) = c.layers.as_ref().and_then(|f| f.current()) {
            if packet_layers(p, usize::from(sent.layer), &pkt)
                .is_some_and(|(s, t)| s > spatial || t > temporal)
            {
                c.stats.retransmissions_of_dropped_layers += 1;
                return;
            }
        }
        let Some(ct) = self.transports.get_mut(&c.transport) else {
            return;
        };
        let ctid = c.transport;
        let (header, ext_seq, osn) = match (c.rtx_payload_type, c.send.rtx_ssrc()) {
            (Some(pt), Some(rtx_ssrc)) => {
                let rtx_seq = c.send.next_rtx_seq();
                (
                    OutHeader {
                        payload_type: pt,
                        sequence_number: rtx_seq as u16,
                        timestamp: sent.timestamp,
                        ssrc: rtx_ssrc,
                        marker: sent.marker,
                    },
                    rtx_seq,
                    Some(out_seq as u16),
                )
            }
            _ => (
                OutHeader {
                    payload_type: c.payload_type,
                    sequence_number: out_seq as u16,
                    timestamp: sent.timestamp,
                    ssrc: c.ssrc,
                    marker: sent.marker,
                },
                out_seq,
                None,
            ),
        };
        if self.config.pacing && ct.paced {
            ct.pacer
                .send_now(usize::from(sent.size), Class::Control, now);
        }
        let mut dd_buf: DescriptorBuf = [0; MAX_LEN];
        let layer = usize::from(sent.layer);
        let dd = active_targets::rewrite((p, layer), c, &pkt, &mut dd_buf)
            .map(|(id, n)| (id, &dd_buf[..n]));
        if write_media(
            ct,
            c,
            &pkt,
            header,
            (ext_seq, osn, dd),
            (sent_at, now),
            &mut self.buffers,
        ) {
            let osn_len = if osn.is_some() { 2 } else { 0 };
            c.send
                .on_retransmitted(usize::from(sent.size) + osn_len, now);
            queue_flush_of(ct, ctid, &mut self.flush_queue);
        }
    }

    /// A pipe peer asks for packets of one encoding again: the producer's stored packets, on
    /// the encoding's RTX stream (a pipe without RTX answers nothing).
    fn pipe_nack(&mut self, cid: ConsumerId, ssrc: u32, seqs: impl Iterator<Item = u16>) {
        let now = self.now;
        let sent_at = abs_send_time(self.ntp_base, now);
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        let (Some(pipe), Some(rtx_pt)) = (c.pipe.as_deref(), c.rtx_payload_type) else {
            return;
        };
        let Some(layer) = pipe.ssrcs.iter().position(|&s| s == ssrc) else {
            return;
        };
        let Some(&rtx_ssrc) = pipe.rtx_ssrcs.get(layer) else {
            return;
        };
        let Some(e) = self
            .producers
            .get(&c.producer)
            .and_then(|p| p.encodings.get(layer))
        else {
            return;
        };
        let (Some(store), Some(highest)) = (
            e.store.as_ref(),
            e.recv.as_ref().and_then(|r| r.extended_highest()),
        ) else {
            return;
        };
        let Some(ct) = self.transports.get_mut(&c.transport) else {
            return;
        };
        let ctid = c.transport;
        let mut queued = false;
        for seq in seqs.take(MAX_RESENDS_PER_NACK) {
            c.stats.nacked_packets += 1;
            let ext_seq = nearest_extended(highest, seq);
            let Some(pkt) = store
                .get(ext_seq)
                .and_then(|(_, bytes)| RtpPacket::parse(bytes).ok())
            else {
                c.stats.retransmissions_not_found += 1;
                continue;
            };
            let Some(pipe) = c.pipe.as_deref_mut() else {
                return;
            };
            let Some(rtx_seq) = pipe.rtx_seqs.get_mut(layer) else {
                return;
            };
            let header = OutHeader {
                payload_type: rtx_pt,
                sequence_number: *rtx_seq as u16,
                timestamp: pkt.timestamp(),
                ssrc: rtx_ssrc,
                marker: pkt.marker(),
            };
            let index = *rtx_seq;
            *rtx_seq += 1;
            if write_media(
                ct,
                c,
                &pkt,
                header,
                (index, Some(seq), None),
                (sent_at, now),
                &mut self.buffers,
            ) {
                c.stats.packets_retransmitted += 1;
                queued = true;
            }
        }
        if queued {
            queue_flush_of(ct, ctid, &mut self.flush_queue);
        }
    }

    /// Asks a producer's endpoint for what its encoding lost.
    pub(crate) fn send_nacks(&mut self, tid: TransportId, pid: ProducerId, layer: usize) {
        let now = self.now;
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let Some(e) = p.encodings.get_mut(layer) else {
            return;
        };
        let (Some(ssrc), Some(nack)) = (e.ssrc, e.nack.as_mut()) else {
            return;
        };
        let mut seqs = [0u16; MAX_NACKED];
        let n = nack.poll(now, None, &mut seqs);
        let next = nack.next_deadline(None);
        if n > 0 {
            let Some(t) = self.transports.get_mut(&tid) else {
                return;
            };
            let Some(session) = t.media.as_ref() else {
                return;
            };
            let mut buf = [0u8; RTCP_MTU];
            if let Ok(len) = rtcp::write_nack(&mut buf, session.rtcp_ssrc, ssrc, &seqs[..n]) {
                if send_rtcp(t, &mut buf[..], len) {
                    self.trace_producer(pid, TraceEventType::Nack, TraceDirection::Out, ssrc);
                }
                self.queue_flush(tid);
            }
        }
        if let Some(at) = next {
            self.schedule_media(tid, at);
        }
    }

    /// Sends a PLI (or FIR, when the codec has no PLI feedback) for a producer encoding.
    /// False when nothing could be sent (no keys yet, or the encoding's SSRC is unknown).
    pub(crate) fn send_key_frame_request(&mut self, pid: ProducerId, layer: usize) -> bool {
        let Some(p) = self.producers.get_mut(&pid) else {
            return false;
        };
        let tid = p.transport;
        let Some(ssrc) = p.encodings.get(layer).and_then(|e| e.ssrc) else {
            return false;
        };
        let Some(t) = self.transports.get_mut(&tid) else {
            return false;
        };
        let Some(session) = t.media.as_ref() else {
            return false;
        };
        let mut buf = [0u8; 128];
        let (written, kind) = if p.pli {
            (
                rtcp::write_pli(&mut buf, session.rtcp_ssrc, ssrc),
                TraceEventType::Pli,
            )
        } else {
            p.fir_seq = p.fir_seq.wrapping_add(1);
            (
                rtcp::write_fir(&mut buf, session.rtcp_ssrc, ssrc, p.fir_seq),
                TraceEventType::Fir,
            )
        };
        let Ok(len) = written else {
            return false;
        };
        let sent = send_rtcp(t, &mut buf[..], len);
        self.queue_flush(tid);
        if sent {
            self.trace_producer(pid, kind, TraceDirection::Out, ssrc);
        }
        sent
    }

    /// The media session's timer: NACKs due, transport-wide feedback, reports.
    pub(crate) fn media_timeout(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        t.media_timer_at = None;
        if t.media.is_none() {
            return;
        }
        // NACKs: the transport's own producers, nothing else.
        let producers: Vec<ProducerId> = t.producers_by_mid.values().copied().collect();
        for pid in &producers {
            let layers = self.producers.get(pid).map_or(0, |p| p.encodings.len());
            for layer in 0..layers {
                let due = self
                    .producers
                    .get(pid)
                    .and_then(|p| p.encodings.get(layer))
                    .and_then(|e| e.nack.as_ref())
                    .and_then(|n| n.next_deadline(None))
                    .is_some_and(|at| at <= now);
                if due {
                    self.send_nacks(tid, *pid, layer);
                }
            }
        }
        self.send_transport_feedback(tid);
        let report = self
            .transports
            .get(&tid)
            .and_then(|t| t.media.as_ref())
            .is_some_and(|s| s.next_report_at <= now);
        if report {
            self.send_reports(tid, &producers);
            self.update_scores(tid, &producers);
        }
        // A transport with nothing to report on sleeps until a producer or consumer comes.
        let next = self
            .transports
            .get(&tid)
            .filter(|t| !t.producers_by_mid.is_empty() || !t.consumers_by_mid.is_empty())
            .and_then(|t| t.media.as_ref())
            .map(|s| s.deadline());
        if let Some(at) = next {
            self.schedule_media(tid, at.max(now + std::time::Duration::from_millis(1)));
        }
    }

    /// The pacing timer: the paced video and the probe padding due, then the next deadline.
    pub(crate) fn pace_timeout(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        t.pace_timer_at = None;
        self.send_paced(tid);
        self.send_probes(tid);
        self.schedule_pace(tid);
    }

    /// Sets the pacing timer for the next paced packet or probe padding, if any.
    pub(crate) fn schedule_pace(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let next = match (t.pacer.next_at(now), t.bwe.next_probe_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(at) = next {
            // Never at `now` again: what was due has just been served.
            let at = at.max(now + std::time::Duration::from_micros(100));
            schedule_pace_of(t, tid, at, &mut self.timers);
        }
    }

    /// Sends the video the transport's pacer lets out now: each packet found again in its
    /// producer's store and written as it was rewritten when it was queued.
    fn send_paced(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if t.pacer.is_empty() {
            return;
        }
        let sent_at = abs_send_time(self.ntp_base, now);
        t.pacer.set_estimate(t.bwe.estimate());
        let mut queued = false;
        let mut dd_buf: DescriptorBuf = [0; MAX_LEN];
        self.scratch_unsent.clear();
        while let Some(polled) = t.pacer.poll(now) {
            let (item, stale) = match polled {
                Polled::Send(item) => (item, false),
                Polled::Stale(item) => {
                    // The rest of a picture whose start was sent goes all the same: the
                    // receiver gets whole pictures.
                    let c = self.consumers.get_mut(&item.consumer);
                    let continues = !item.begins_picture
                        && c.as_ref().is_some_and(|c| c.enhancement_picture_open);
                    if !continues {
                        t.pacer.count_stale();
                        if !drop_enhancement(t, c, item, now) {
                            self.scratch_unsent.push((item.consumer, item.seq));
                        }
                        continue;
                    }
                    (item, true)
                }
            };
            if item.fill {
                if let Some(c) = self.consumers.get_mut(&item.consumer) {
                    queued |= write_fill(t, c, item.seq, (sent_at, now), &mut self.buffers);
                }
                continue;
            }
            let Some(c) = self
                .consumers
                .get_mut(&item.consumer)
                .filter(|c| c.is_forwarding())
            else {
                continue;
            };
            let layer = usize::from(item.layer);
            let Some((p, pkt)) = self.producers.get(&c.producer).and_then(|p| {
                let e = p.encodings.get(layer)?;
                let (_, bytes) = e.store.as_ref()?.get(item.source_ext_seq)?;
                Some((p, RtpPacket::parse(bytes).ok()?))
            }) else {
                t.pacer.counters.lost += 1;
                self.scratch_unsent.push((item.consumer, item.seq));
                continue;
            };
            if stale {
                t.pacer.charge(pkt.as_bytes().len(), now);
            }
            let header = OutHeader {
                payload_type: c.payload_type,
                sequence_number: item.seq as u16,
                timestamp: item.timestamp,
                ssrc: c.ssrc,
                marker: item.marker,
            };
            let dd = active_targets::rewrite((p, layer), c, &pkt, &mut dd_buf)
                .map(|(id, n)| (id, &dd_buf[..n]));
            if write_media(
                t,
                c,
                &pkt,
                header,
                (item.seq, None, dd),
                (sent_at, now),
                &mut self.buffers,
            ) {
                count_sent(c, pkt.payload().len(), now);
                let sent = SentPacket {
                    layer: item.layer,
                    source_ext_seq: item.source_ext_seq,
                    timestamp: item.timestamp,
                    marker: item.marker,
                    size: pkt.as_bytes().len().min(usize::from(u16::MAX)) as u16,
                };
                c.send.on_sent(item.seq, sent, pkt.payload().len(), now);
                if item.temporal > 0 {
                    c.enhancement_picture_open = !item.marker;
                }
                queued = true;
                let sizes = (&header, pkt.as_bytes().len(), pkt.payload().len());
                let key_frame = || {
                    p.video_codec
                        .is_some_and(|v| is_key_frame(v, pkt.payload()))
                };
                let times = (self.ntp_base.1, now);
                trace_sent(c, item.consumer, sizes, key_frame, times, &mut self.out);
            }
        }
        if queued {
            queue_flush_of(t, tid, &mut self.flush_queue);
        }
        self.fill_unsent((sent_at, now));
    }

    /// Sends the probe padding due: padding-only packets on the RTX stream of the consumer
    /// the allocator chose, each with a transport-wide sequence number.
    fn send_probes(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if !t.bwe.probe_due(now) {
            return;
        }
        let sent_at = abs_send_time(self.ntp_base, now);
        let Some(c) = t.alloc.prober.and_then(|cid| self.consumers.get_mut(&cid)) else {
            t.bwe.abandon_probe(now);
            return;
        };
        let mut queued = false;
        while t.bwe.probe_due(now) {
            let Some((header, size)) =
                write_padding(t, c, Padding::Probe, (sent_at, now), &mut self.buffers)
            else {
                t.bwe.abandon_probe(now);
                break;
            };
            queued = true;
            if t.trace.has(TraceEventType::Probation) {
                let info = RtpTraceInfo {
                    payload_type: header.payload_type,
                    sequence_number: header.sequence_number,
                    timestamp: header.timestamp,
                    marker: false,
                    ssrc: header.ssrc,
                    is_key_frame: false,
                    size,
                    payload_size: 0,
                };
                let trace = trace_event(
                    TraceEventType::Probation,
                    TraceDirection::Out,
                    TraceInfo::Rtp(info),
                    (self.ntp_base.1, now),
                );
                self.out.push_back(Output::Event(Event::TransportTrace {
                    transport: tid,
                    trace,
                }));
            }
        }
        if queued {
            queue_flush_of(t, tid, &mut self.flush_queue);
        }
    }

    /// Fills consumer `cid`'s number `seq` with a padding packet (see [`Padding::Fill`]),
    /// remembered so that a NACK for it sends padding again (`again`: this is that).
    fn fill_number(&mut self, cid: ConsumerId, seq: u64, times: ([u8; 3], Instant), again: bool) {
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        let tid = c.transport;
        let Some(ct) = self.transports.get_mut(&tid) else {
            return;
        };
        let written = if again {
            write_padding(ct, c, Padding::Fill(seq), times, &mut self.buffers).is_some()
        } else {
            write_fill(ct, c, seq, times, &mut self.buffers)
        };
        if written {
            queue_flush_of(ct, tid, &mut self.flush_queue);
        }
    }

    fn send_transport_feedback(&mut self, tid: TransportId) {
        let now = self.now;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let mut sent = false;
        while let Some(session) = t.media.as_mut() {
            if session.twcc.next_feedback_at().is_none_or(|at| at > now) {
                break;
            }
            let media_ssrc = session.rx_ssrcs.keys().next().copied().unwrap_or(0);
            let mut buf = [0u8; RTCP_MTU];
            let Some(len) =
                session
                    .twcc
                    .poll_feedback(now, session.rtcp_ssrc, media_ssrc, &mut buf)
            else {
                break;
            };
            sent |= send_rtcp(t, &mut buf[..], len);
        }
        if sent {
            self.queue_flush(tid);
        }
    }

    /// Sender reports for the transport's consumers, receiver reports for its producers.
    fn send_reports(&mut self, tid: TransportId, producers: &[ProducerId]) {
        let now = self.now;
        let ntp_base = self.ntp_base;
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let Some(session) = t.media.as_mut() else {
            return;
        };
        session.next_report_at = now + crate::media::session::REPORT_INTERVAL;
        let rtcp_ssrc = session.rtcp_ssrc;
        let cname = t.cname.clone().unwrap_or_default();
        let mut buf = [0u8; RTCP_MTU + 64];
        let mut len = 0;
        // Sender reports, each followed by the SDES that names its stream's cname.
        let consumers: Vec<ConsumerId> = t.consumers_by_mid.values().copied().collect();
        for cid in consumers {
            let Some(c) = self.consumers.get_mut(&cid) else {
                continue;
            };
            let stream_cname = c
                .parameters
                .rtp_parameters
                .rtcp
                .cname
                .clone()
                .unwrap_or_else(|| cname.clone());
            if c.pipe.is_some() {
                if let Some(p) = self.producers.get(&c.producer) {
                    let out = (&mut buf[..], &mut len);
                    pipe_sender_reports(c, p, (now, ntp_base), t, out, &stream_cname);
                }
                continue;
            }
            let producer_sr = self
                .producers
                .get(&c.producer)
                .and_then(|p| p.encodings.get(c.current_layer.unwrap_or(0)))
                .and_then(|e| e.recv.as_ref())
                .and_then(|r| r.sender_report_mapping());
            let Some(clock) = report_clock(c, producer_sr.is_some(), now) else {
                continue;
            };
            let producer_sr = match clock {
                ReportClock::Producer => match producer_sr {
                    Some(sr) => Some(sr),
                    None => continue,
                },
                ReportClock::Sfu => None,
            };
            let Some(sr) = c
                .send
                .sender_report(now, producer_sr, c.rewriter.ts_offset(), ntp_base)
            else {
                continue;
            };
            c.report_clock = Some(clock);
            write_sender_report(t, (&mut buf, &mut len), &sr, &stream_cname);
        }
        // Receiver reports: one block per producer encoding with statistics.
        let mut blocks = Vec::new();
        for pid in producers {
            let Some(p) = self.producers.get_mut(pid) else {
                continue;
            };
            for e in &mut p.encodings {
                if let Some(recv) = e.recv.as_mut() {
                    blocks.push(recv.report_block(now));
                }
            }
        }
        for chunk in blocks.chunks(31) {
            if len + 8 + 24 * chunk.len() > RTCP_MTU {
                flush_rtcp(t, &mut buf, &mut len);
            }
            if let Ok(n) = rtcp::write_receiver_report(&mut buf[len..], rtcp_ssrc, chunk) {
                len += n;
            }
        }
        flush_rtcp(t, &mut buf, &mut len);
        self.queue_flush(tid);
    }

    /// A producer or consumer was added to a transport: its media session reports on it.
    pub(crate) fn wake_media(&mut self, tid: TransportId) {
        let at = self
            .transports
            .get(&tid)
            .and_then(|t| t.media.as_ref())
            .map(|s| s.deadline());
        if let Some(at) = at {
            self.schedule_media(tid, at.max(self.now));
        }
    }

    /// Wakes a transport's media session at `at` unless it is already due sooner.
    pub(crate) fn schedule_media(&mut self, tid: TransportId, at: Instant) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        if t.media_timer_at.is_some_and(|current| current <= at) {
            return;
        }
        t.media_timer_at = Some(at);
        self.timers.schedule(TimerKey::Media(tid), at);
    }

    /// Puts a transport with datagrams waiting on the flush queue.
    pub(crate) fn queue_flush(&mut self, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            if !t.outbox.is_empty() || !t.rtcp_out.is_empty() {
                queue_flush_of(t, tid, &mut self.flush_queue);
            }
        }
    }
}

/// The clock consumer `c`'s sender reports speak as of `now`, given whether its producer has
/// sent reports; `None` while the first report waits (a few seconds at most) for the
/// producer's own, so that every report of the stream speaks the producer's clock.
fn report_clock(c: &Consumer, producer_reports: bool, now: Instant) -> Option<ReportClock> {
    match (c.report_clock, producer_reports) {
        (Some(clock), _) => Some(clock),
        (None, true) => Some(ReportClock::Producer),
        (None, false) => match c.first_sent_at {
            Some(at) if now >= at + FIRST_REPORT_WAIT => Some(ReportClock::Sfu),
            _ => None,
        },
    }
}

/// Sender reports for each stream of pipe consumer `c` that has sent, in the producer's clock
/// (each encoding's own sender reports: the pipe keeps the producer's timestamps) or, for a
/// producer that sends none, the Sfu's; written into the transport's compound `buf[..len]`.
fn pipe_sender_reports(
    c: &mut Consumer,
    p: &Producer,
    (now, ntp_base): (Instant, (u64, Instant)),
    t: &mut Transport,
    (buf, len): (&mut [u8], &mut usize),
    cname: &str,
) {
    let Some(pipe) = c.pipe.as_deref() else {
        return;
    };
    let mapping = |layer: usize| {
        p.encodings
            .get(layer)
            .and_then(|e| e.recv.as_ref())
            .and_then(|r| r.sender_report_mapping())
    };
    let producer_reports = (0..pipe.ssrcs.len()).any(|layer| mapping(layer).is_some());
    let Some(clock) = report_clock(c, producer_reports, now) else {
        return;
    };
    for layer in 0..pipe.ssrcs.len() {
        let producer_sr = match clock {
            ReportClock::Producer => match mapping(layer) {
                Some(sr) => Some(sr),
                None => continue,
            },
            ReportClock::Sfu => None,
        };
        let Some(sr) = pipe.sender_report(layer, now, producer_sr, c.clock_rate, ntp_base) else {
            continue;
        };
        c.report_clock = Some(clock);
        // Receiver reports name any of the streams' reports: the consumer's RTT.
        c.send.remember_report(sr.ntp, now);
        write_sender_report(t, (&mut *buf, &mut *len), &sr, cname);
    }
}

/// Appends a sender report and the SDES naming its stream's `cname` to the compound
/// `buf[..len]`, sending what is there first when they would not fit.
fn write_sender_report(
    t: &mut Transport,
    (buf, len): (&mut [u8], &mut usize),
    sr: &SenderReportData,
    cname: &str,
) {
    if *len + 28 + 16 + cname.len() + 8 > RTCP_MTU {
        flush_rtcp(t, buf, len);
    }
    if let Ok(n) = rtcp::write_sender_report(
        &mut buf[*len..],
        sr.ssrc,
        sr.ntp,
        sr.rtp_ts,
        sr.packet_count,
        sr.octet_count,
        &[],
    ) {
        *len += n;
    }
    if let Ok(n) = rtcp::write_sdes_cname(&mut buf[*len..], sr.ssrc, cname) {
        *len += n;
    }
}

/// The extended sequence number nearest `highest` whose low 16 bits are `seq`.
fn nearest_extended(highest: u64, seq: u16) -> u64 {
    let candidate = (highest & !0xFFFF) | u64::from(seq);
    if candidate > highest + 0x8000 {
        candidate.saturating_sub(0x1_0000)
    } else if candidate + 0x8000 < highest {
        candidate + 0x1_0000
    } else {
        candidate
    }
}

/// `at` as abs-send-time: NTP seconds in 6.18 fixed point, 24 bits (wrapping every 64 s).
fn abs_send_time(ntp_base: (u64, Instant), at: Instant) -> [u8; 3] {
    let ntp = crate::media::send::ntp::ntp_at(ntp_base, at);
    let [_, a, b, c] = (((ntp >> 14) & 0xFF_FFFF) as u32).to_be_bytes();
    [a, b, c]
}

/// Counts a packet forwarded to consumer `c` (`payload` bytes).
fn count_sent(c: &mut crate::router::Consumer, payload: usize, now: Instant) {
    c.stats.packets_sent += 1;
    c.stats.bytes_sent += payload as u64;
    c.first_sent_at.get_or_insert(now);
}

/// Drops an enhancement packet of transport `t`'s pacer that will not be sent (stale, or
/// refused by a full queue): its consumer `c`'s layer filter stops its layer and those above
/// until a switching-up point (frames that come may refer to it), and the consumer's packets
/// of those layers still queued are dropped too (queued frames may). Each dropped packet's
/// number is filled with padding, queued with the base layers so that the consumer's stream
/// stays in order. False when the first padding found the base queue full (the caller fills
/// that number at once).
fn drop_enhancement(
    t: &mut Transport,
    c: Option<&mut Consumer>,
    item: Paced,
    now: Instant,
) -> bool {
    let cid = item.consumer;
    if let Some(f) = c.and_then(|c| c.layers.as_mut()) {
        f.cut(item.temporal);
    }
    let queued = t
        .pacer
        .push(item.as_fill(), FILL_WIRE_BYTES, Class::Base, now)
        .is_ok();
    t.pacer.take_enhancement(
        |q| q.consumer == cid && q.temporal >= item.temporal,
        |q| Taken::Replace(q.as_fill(), FILL_WIRE_BYTES),
    );
    queued
}

/// Before a base layer packet of consumer `c` (`cid`) is sent or queued on transport `t`:
/// the consumer's enhancement packets still queued would leave after it, out of order. The
/// rest of a picture whose start was sent joins the base layers (the receiver gets whole
/// pictures); the others are dropped, as a newer base layer picture is ready and they would
/// hold it back, and padding that fills their numbers joins the base layers in their place.
/// The layer filter stops the temporal layers dropped until a switching-up point.
fn settle_enhancement(t: &mut Transport, (cid, c): (ConsumerId, &mut Consumer)) {
    if !t.pacer.has_enhancement() {
        return;
    }
    let mut open = c.enhancement_picture_open;
    let mut lowest: Option<u8> = None;
    t.pacer.take_enhancement(
        |q| q.consumer == cid,
        |q| {
            if open && !q.begins_picture {
                open = !q.marker;
                return Taken::Promote;
            }
            open = false;
            lowest = Some(lowest.map_or(q.temporal, |l| l.min(q.temporal)));
            Taken::Replace(q.as_fill(), FILL_WIRE_BYTES)
        },
    );
    if let (Some(temporal), Some(f)) = (lowest, c.layers.as_mut()) {
        f.cut(temporal);
    }
}

/// Fills consumer `c`'s number `seq` with a padding packet (see [`Padding::Fill`]),
/// remembered so that a NACK for it sends padding again. False when it could not be sent.
fn write_fill(
    ct: &mut Transport,
    c: &mut Consumer,
    seq: u64,
    times: ([u8; 3], Instant),
    buffers: &mut Buffers,
) -> bool {
    if write_padding(ct, c, Padding::Fill(seq), times, buffers).is_none() {
        return false;
    }
    c.stats.numbers_filled += 1;
    let sent = SentPacket {
        source_ext_seq: PADDING_SOURCE,
        timestamp: c.send.last_timestamp().unwrap_or(0),
        ..SentPacket::default()
    };
    c.send.on_sent(seq, sent, 0, times.1);
    true
}

/// Queues a consumer's video packet in its transport's pacer and sets the pacing timer. False
/// when the transport cannot send yet or the pacer's queue is full (counted there).
fn hold(
    ct: &mut Transport,
    tid: TransportId,
    item: Paced,
    size: usize,
    class: Class,
    now: Instant,
    timers: &mut crate::timers::Timers<TimerKey>,
) -> bool {
    if !ct.has_path() || ct.media.is_none() {
        return false;
    }
    ct.pacer.set_estimate(ct.bwe.estimate());
    if ct.pacer.push(item, size, class, now).is_err() {
        return false;
    }
    if let Some(at) = ct.pacer.next_at(now) {
        schedule_pace_of(ct, tid, at, timers);
    }
    true
}

/// Wakes transport `tid`'s pacing at `at` unless it is already due sooner.
fn schedule_pace_of(
    t: &mut Transport,
    tid: TransportId,
    at: Instant,
    timers: &mut crate::timers::Timers<TimerKey>,
) {
    if t.pace_timer_at.is_some_and(|current| current <= at) {
        return;
    }
    t.pace_timer_at = Some(at);
    timers.schedule(TimerKey::Pace(tid), at);
}

/// Puts transport `tid` (`t`), which has datagrams waiting, on the flush queue once.
fn queue_flush_of(t: &mut Transport, tid: TransportId, queue: &mut VecDeque<TransportId>) {
    if !std::mem::replace(&mut t.flush_pending, true) {
        queue.push_back(tid);
    }
}

/// Writes, protects and queues one RTP packet for a consumer (with the packet's extended
/// sequence number, its original sequence number when it goes out on RTX, and the dependency
/// descriptor it gets in place of the source's, if any) at `now`, with `now` as
/// abs-send-time; a packet stamped with a transport-wide sequence number goes into the
/// transport's send history. False when the transport cannot send yet (no keys or no path) or
/// the packet does not fit.
fn write_media(
    ct: &mut Transport,
    c: &crate::router::Consumer,
    pkt: &RtpPacket<'_>,
    header: OutHeader,
    (ext_seq, rtx_osn, descriptor): (u64, Option<u16>, Option<Extension<'_>>),
    (sent_at, now): ([u8; 3], Instant),
    buffers: &mut Buffers,
) -> bool {
    let sent = c
        .transport_cc_extension
        .map(|_| Sent::Media(if rtx_osn.is_some() { FLAG_RTX } else { 0 }));
    let room = pkt.as_bytes().len() + HEADROOM;
    let written = queue_rtp(ct, room, ext_seq, sent, (now, buffers), |out, tw| {
        let (own, n_own) = own_extensions(c, tw, &sent_at);
        let mut extra: [Extension<'_>; 4] = [(0, &[]); 4];
        let mut n_extra = 0;
        for e in descriptor.into_iter().chain(own[..n_own].iter().copied()) {
            extra[n_extra] = e;
            n_extra += 1;
        }
        packet::write_forwarded(out, pkt, header, &c.extensions, &extra[..n_extra], rtx_osn).ok()
    });
    written.is_some()
}

/// How a packet counts in the estimate's send history.
#[derive(Debug, Clone, Copy)]
enum Sent {
    /// Media, a retransmission ([`FLAG_RTX`]) or a filled number.
    Media(u8),
    /// Probe padding.
    Probe,
}

/// Writes one RTP packet into transport `ct`'s outbox with `write` (given at most `room`
/// bytes and the transport-wide sequence number it carries), protects it (`ext_seq`, the
/// packet's extended sequence number, gives the rollover counter), records it for the
/// estimate (`sent`, when the consumer has transport-wide sequence numbers) and queues it:
/// its RTP and its protected length, or nothing queued when there is no path or writing or
/// protecting failed.
fn queue_rtp(
    ct: &mut Transport,
    room: usize,
    ext_seq: u64,
    sent: Option<Sent>,
    (now, buffers): (Instant, &mut Buffers),
    write: impl FnOnce(&mut [u8], &[u8; 2]) -> Option<usize>,
) -> Option<(usize, usize)> {
    if !ct.has_path() {
        return None;
    }
    let session = ct.media.as_mut()?;
    let tw = session.tw_seq.to_be_bytes();
    let out = ct.outbox.reserve(room, buffers);
    let Some(rtp_len) = write(out, &tw) else {
        ct.outbox.abandon(buffers);
        return None;
    };
    let Ok(len) = session.tx.protect_rtp(out, rtp_len, (ext_seq >> 16) as u32) else {
        trace!("SRTP protect failed");
        ct.outbox.abandon(buffers);
        return None;
    };
    match sent {
        Some(Sent::Media(flags)) => ct.bwe.on_sent(session.next_tw_seq(), len, now, flags),
        Some(Sent::Probe) => ct.bwe.on_probe_sent(session.next_tw_seq(), len, now),
        None => {}
    }
    ct.outbox.commit(len, buffers);
    ct.stats.datagrams_sent += 1;
    ct.stats.bytes_sent += len as u64;
    Some((rtp_len, len))
}

/// The spatial and temporal layer of the stored packet `pkt` of producer `p`'s encoding
/// `layer`, from its payload descriptor (or its dependency descriptor's template, in the
/// encoding's current structure, where that carries the layers).
fn packet_layers(p: &Producer, layer: usize, pkt: &RtpPacket<'_>) -> Option<(u8, u8)> {
    match p.encodings.get(layer).and_then(|e| e.dd.as_ref()) {
        Some(dd) => {
            let bytes = pkt.extension(p.extensions.dependency_descriptor?)?;
            dd.structure()?.frame_layers(bytes)
        }
        None => crate::codec::parse(p.video_codec?, pkt.payload())
            .filter(|d| d.has_layers)
            .map(|d| (d.spatial, d.temporal)),
    }
}

/// The header extensions the SFU writes itself on a consumer's packets: its mid, the
/// transport-wide sequence number `tw` and the absolute send time `sent_at`, where negotiated.
fn own_extensions<'a>(
    c: &'a crate::router::Consumer,
    tw: &'a [u8; 2],
    sent_at: &'a [u8; 3],
) -> ([(u8, &'a [u8]); 3], usize) {
    let mut extra: [(u8, &[u8]); 3] = [(0, &[]), (0, &[]), (0, &[])];
    let mut n = 0;
    for (id, value) in [
        (c.mid_extension, c.mid.as_str().as_bytes()),
        (c.transport_cc_extension, &tw[..]),
        (c.abs_send_time_extension, &sent_at[..]),
    ] {
        if let Some(id) = id {
            extra[n] = (id, value);
            n += 1;
        }
    }
    (extra, n)
}

/// Padding bytes of a packet that fills an unused number.
const FILL_PADDING_BYTES: usize = 4;

/// What a padding packet is for.
#[derive(Debug, Clone, Copy)]
enum Padding {
    /// A probe, on the consumer's RTX stream, recorded as probe padding (it needs an RTX
    /// stream and transport-wide sequence numbers).
    Probe,
    /// Fills this (extended) number of the consumer's own stream, kept for a late packet it
    /// does not get.
    Fill(u64),
}

/// Writes, protects and queues one padding packet for consumer `c` (see [`Padding`]), stamped
/// with the transport-wide sequence number where negotiated: its header and its size before
/// SRTP. `None` when it cannot (a probe without RTX stream or transport-wide sequence numbers,
/// no keys or no path).
fn write_padding(
    ct: &mut Transport,
    c: &mut crate::router::Consumer,
    kind: Padding,
    (sent_at, now): ([u8; 3], Instant),
    buffers: &mut Buffers,
) -> Option<(OutHeader, usize)> {
    if !ct.has_path() || ct.media.is_none() {
        return None;
    }
    let (payload_type, ssrc, seq) = match kind {
        Padding::Probe => {
            let (Some(pt), Some(ssrc), Some(_)) = (
                c.rtx_payload_type,
                c.send.rtx_ssrc(),
                c.transport_cc_extension,
            ) else {
                return None;
            };
            (pt, ssrc, c.send.next_rtx_seq())
        }
        Padding::Fill(seq) => (c.payload_type, c.ssrc, seq),
    };
    let header = OutHeader {
        payload_type,
        sequence_number: seq as u16,
        timestamp: c.send.last_timestamp().unwrap_or(0),
        ssrc,
        marker: false,
    };
    // A probe fills the path; a filled number only needs to exist.
    let (padding, sent) = match kind {
        Padding::Probe => (PADDING_BYTES, Sent::Probe),
        Padding::Fill(_) => (FILL_PADDING_BYTES, Sent::Media(0)),
    };
    let sent = c.transport_cc_extension.map(|_| sent);
    let c = &*c;
    let (rtp_len, _) = queue_rtp(
        ct,
        padding + HEADROOM,
        seq,
        sent,
        (now, buffers),
        |out, tw| {
            let (extra, n_extra) = own_extensions(c, tw, &sent_at);
            packet::write_padding(out, header, &extra[..n_extra], padding).ok()
        },
    )?;
    Some((header, rtp_len))
}

/// Protects one compound RTCP packet (`buf[..len]`, with room after it) and queues it: with
/// the media, or for the separate RTCP path when RTCP is not muxed.
fn send_rtcp(t: &mut Transport, buf: &mut [u8], len: usize) -> bool {
    if !t.has_rtcp_path() {
        return false;
    }
    let Some(session) = t.media.as_mut() else {
        return false;
    };
    let mut out = Vec::with_capacity(len + 32);
    out.extend_from_slice(&buf[..len]);
    out.resize(len + session.tx.rtcp_overhead(), 0);
    let Ok(len) = session.tx.protect_rtcp(&mut out, len) else {
        return false;
    };
    out.truncate(len);
    t.stats.datagrams_sent += 1;
    t.stats.bytes_sent += len as u64;
    if t.rtcp_separate {
        t.rtcp_out.push(out);
    } else {
        t.outbox.push(out);
    }
    true
}

fn flush_rtcp(t: &mut Transport, buf: &mut [u8], len: &mut usize) {
    if *len > 0 {
        send_rtcp(t, buf, *len);
        *len = 0;
    }
}
