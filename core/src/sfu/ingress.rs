//! What arrives on a transport's media session: SRTP taken apart into producer packets, SRTCP
//! into reports, retransmission requests and key frame requests (the per-packet path).

use tracing::trace;

use crate::event::Event;
use crate::ids::{ConsumerId, Mid, ProducerId, Rid, TransportId};
use crate::io::Output;
use crate::keyframe::is_key_frame;
use crate::media::packet::{self, RtpPacket};
use crate::media::recv::{Arrival, NackGenerator, RecvStream, MAX_DROPOUT};
use crate::media::rtcp::{self, RtcpPacket};
use crate::media::session::{RxRole, RxSsrc, MAX_RX_SSRCS};
use crate::media::srtp::{self, RtpReplay, SrtpContext};
use crate::media::store::PacketStore;
use crate::ortc::MediaKind;
use crate::router::Producer;
use crate::trace::{RtpTraceInfo, TraceDirection, TraceEventType, TraceInfo};
use crate::transport::extensions::RxExtensions;
use crate::transport::Transport;

use super::quality::trace_event;
use super::{Sfu, MAX_LAYERS};

/// Slots in a video encoding's packet store: about 1.5 s of a 2.5 Mbit/s layer.
const STORE_SLOTS: usize = 512;

/// The largest packet a store keeps (a full-size datagram's plaintext).
const STORE_SLOT_SIZE: usize = 1500;

impl Sfu {
    /// An SRTP or SRTCP datagram on a transport with a validated path (or at a comedia plain
    /// transport that has yet to learn its remote). True when it was valid: authentic (with
    /// SRTP) and well-formed RTP or RTCP.
    pub(crate) fn media_in(&mut self, tid: TransportId, contents: &[u8]) -> bool {
        let mut buf = std::mem::take(&mut self.rx_buf);
        buf.clear();
        buf.extend_from_slice(contents);
        let valid = if rtcp::is_rtcp(&buf) {
            self.rtcp_in(tid, &mut buf)
        } else {
            self.rtp_in(tid, &mut buf)
        };
        self.rx_buf = buf;
        valid
    }

    /// Authenticates and decrypts an SRTP packet, learns its SSRC at the first one, and hands
    /// the producer packet on.
    fn rtp_in(&mut self, tid: TransportId, buf: &mut Vec<u8>) -> bool {
        let arrival = self.arrival;
        let Some(t) = self.transports.get_mut(&tid) else {
            return false;
        };
        let route = rx_route(t, &mut self.producers, buf);
        let (Some(route), Ok(pkt)) = (route, RtpPacket::parse(buf)) else {
            t.stats.rtp_dropped += 1;
            return false;
        };
        // Every authentic packet counts for congestion control, routed or not (the sender's
        // first packets race its `produce`): the feedback carries its own arrival time, not
        // the Sfu's clock, which may have moved past it while the batch waited.
        if let (Some(session), Some(seq)) = (
            t.media.as_mut(),
            t.rx_extensions
                .transport_cc
                .and_then(|id| pkt.extension(id))
                .and_then(packet::transport_wide_seq),
        ) {
            session.twcc.record(seq, arrival);
            let at = session.deadline();
            self.schedule_media(tid, at);
        }
        let Some((pid, layer, role)) = route else {
            if let Some(t) = self.transports.get_mut(&tid) {
                t.stats.rtp_dropped += 1;
            }
            return true;
        };
        match role {
            RxRole::Media => self.producer_packet(tid, pid, layer, &pkt, false),
            RxRole::Rtx => {
                // Back to the original packet in place: the header moves over the original
                // sequence number, then takes the encoding's SSRC and payload type.
                let Some(p) = self.producers.get(&pid) else {
                    return true;
                };
                let original = p
                    .rtx_payload_types
                    .iter()
                    .find(|(rtx, _)| *rtx == pkt.payload_type())
                    .map(|&(_, pt)| pt);
                let ssrc = p.encodings.get(layer).and_then(|e| e.ssrc);
                let osn = packet::rtx_original(pkt.payload())
                    .filter(|(_, payload)| !payload.is_empty())
                    .map(|(osn, _)| osn);
                let (Some(pt), Some(ssrc), Some(osn)) = (original, ssrc, osn) else {
                    // Padding-only probes, or retransmissions of a stream not seen yet.
                    if let Some(t) = self.transports.get_mut(&tid) {
                        t.stats.rtp_dropped += 1;
                    }
                    return true;
                };
                let header = pkt.header_len();
                buf.copy_within(0..header, 2);
                let original = &mut buf[2..];
                packet::set_ssrc(original, ssrc);
                packet::set_payload_type(original, pt);
                packet::set_sequence_number(original, osn);
                if let Ok(original) = RtpPacket::parse(&buf[2..]) {
                    self.producer_packet(tid, pid, layer, &original, true);
                }
            }
        }
        true
    }

    /// One packet of a producer encoding, in order or late: statistics,
    /// loss detection, the store for retransmissions, then forwarding.
    fn producer_packet(
        &mut self,
        tid: TransportId,
        pid: ProducerId,
        layer: usize,
        pkt: &RtpPacket<'_>,
        retransmission: bool,
    ) {
        let now = self.now;
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        let (clock_rate, kind, nack_enabled) = (p.clock_rate, p.kind, p.nack);
        let Some(e) = p.encodings.get_mut(layer) else {
            return;
        };
        let recv = e
            .recv
            .get_or_insert_with(|| RecvStream::new(pkt.ssrc(), clock_rate));
        let highest = recv.extended_highest();
        let ext_seq =
            match recv.on_packet(pkt.sequence_number(), pkt.timestamp(), now, retransmission) {
                Arrival::New { ext_seq } | Arrival::Late { ext_seq } => ext_seq,
                Arrival::Duplicate | Arrival::Stale => {
                    p.stats.packets_discarded += 1;
                    return;
                }
            };
        // A jump the stream accepted as a restart (RFC 3550 A.1): the consumers of this
        // encoding start a new run, so their endpoints see contiguous numbers (a jump of 2^15
        // or more would defeat their SRTP rollover estimate and end their stream for good).
        if highest.is_some_and(|h| ext_seq >= h + u64::from(MAX_DROPOUT)) {
            for cid in &p.consumers {
                if let Some(c) = self.consumers.get_mut(cid) {
                    if c.current_layer == Some(layer) {
                        c.rewriter.request_resync();
                    }
                }
            }
        }
        if retransmission {
            p.stats.packets_retransmitted += 1;
            e.retransmitted += 1;
        }
        let is_video = kind == MediaKind::Video;
        // The payload descriptor (or the dependency descriptor, where it carries the
        // layers, read with the encoding's own structure), read once for every consumer.
        let descriptor = match (p.video_codec, e.dd.as_mut()) {
            (Some(codec), Some(dd)) => p
                .extensions
                .dependency_descriptor
                .and_then(|id| pkt.extension(id))
                .and_then(|bytes| crate::codec::dd::parse(dd, bytes, codec, pkt.payload())),
            (codec, _) => codec.and_then(|codec| crate::codec::parse(codec, pkt.payload())),
        };
        let key_frame = match (p.video_codec, &descriptor) {
            (None, _) => true,
            (Some(_), Some(d)) => d.key_frame,
            (Some(codec), None) => is_key_frame(codec, pkt.payload()),
        };
        // What each layer brings, for the allocator: the spatial and temporal layers inside
        // the stream, or the temporal layers inside this encoding.
        if let Some(svc) = p.svc.as_deref_mut() {
            match &descriptor {
                Some(d) => svc.record((d.spatial, d.temporal), pkt.as_bytes().len(), now),
                None => p.stats.packets_bad_descriptor += 1,
            }
        } else if let Some(rates) = e.temporal.as_deref_mut() {
            match &descriptor {
                Some(d) => rates.record(d.temporal, pkt.as_bytes().len(), now),
                None => p.stats.packets_bad_descriptor += 1,
            }
        }
        if is_video && key_frame && p.trace.has(TraceEventType::Keyframe) {
            let times = (self.ntp_base.1, now);
            let info = TraceInfo::Stream { ssrc: pkt.ssrc() };
            let trace = trace_event(TraceEventType::Keyframe, TraceDirection::In, info, times);
            self.out.push_back(Output::Event(Event::ProducerTrace {
                producer: pid,
                trace,
            }));
        }
        if p.trace.has(TraceEventType::Rtp) {
            let info = RtpTraceInfo {
                payload_type: pkt.payload_type(),
                sequence_number: pkt.sequence_number(),
                timestamp: pkt.timestamp(),
                marker: pkt.marker(),
                ssrc: pkt.ssrc(),
                is_key_frame: is_video && key_frame,
                size: pkt.as_bytes().len(),
                payload_size: pkt.payload().len(),
            };
            let times = (self.ntp_base.1, now);
            let info = TraceInfo::Rtp(info);
            let trace = trace_event(TraceEventType::Rtp, TraceDirection::In, info, times);
            self.out.push_back(Output::Event(Event::ProducerTrace {
                producer: pid,
                trace,
            }));
        }
        let mut nack_due = None;
        let mut overflow = false;
        if is_video && nack_enabled {
            let nack = e.nack.get_or_insert_with(NackGenerator::new);
            overflow = nack.on_packet(ext_seq, key_frame, now);
            nack_due = nack.next_deadline(None);
            let store = e
                .store
                .get_or_insert_with(|| PacketStore::new(STORE_SLOTS, STORE_SLOT_SIZE));
            store.insert(ext_seq, now, pkt.as_bytes());
        }
        e.last_packet_at = Some(now);
        e.bitrate.record(now, pkt.as_bytes().len());
        p.stats.packets_received += 1;
        p.stats.bytes_received += pkt.payload().len() as u64;
        if let Some(n) = p.stats.packets_per_encoding.get_mut(layer) {
            *n += 1;
        }
        if !p.observers.is_empty() && !p.paused {
            if let Some((_, level)) = p
                .extensions
                .audio_level
                .and_then(|id| pkt.extension(id))
                .and_then(packet::audio_level)
            {
                let level = -(level.min(127) as i8);
                for oid in &p.observers {
                    if let Some(o) = self.observers.get_mut(oid) {
                        o.add_level(pid, level, now);
                    }
                }
            }
        }
        if let Some(at) = nack_due {
            if at <= now {
                self.send_nacks(tid, pid, layer);
            } else {
                self.schedule_media(tid, at);
            }
        }
        if overflow {
            self.request_key_frame(pid, layer);
        }
        if !pkt.payload().is_empty() {
            self.forward(pid, layer, pkt, ext_seq, (key_frame, descriptor));
        }
    }

    /// Decrypts and acts on an SRTCP compound packet from a transport's endpoint.
    fn rtcp_in(&mut self, tid: TransportId, buf: &mut Vec<u8>) -> bool {
        let Some(t) = self.transports.get_mut(&tid) else {
            return false;
        };
        let Some(session) = t.media.as_mut() else {
            t.stats.rtcp_dropped += 1;
            return false;
        };
        let Ok(len) = session.unprotect_rtcp(buf) else {
            t.stats.rtcp_dropped += 1;
            return false;
        };
        buf.truncate(len);
        for (index, item) in rtcp::compound(buf).enumerate() {
            let Ok(packet) = item else {
                if let Some(t) = self.transports.get_mut(&tid) {
                    t.stats.rtcp_dropped += 1;
                }
                return index > 0;
            };
            match packet {
                RtcpPacket::SenderReport(sr) => {
                    self.on_sender_report(tid, sr.ssrc(), sr.ntp_timestamp(), sr.rtp_timestamp());
                    for block in sr.report_blocks() {
                        self.on_report_block(tid, &block);
                    }
                }
                RtcpPacket::ReceiverReport(rr) => {
                    for block in rr.report_blocks() {
                        self.on_report_block(tid, &block);
                    }
                }
                RtcpPacket::Nack(nack) => {
                    self.on_nack(tid, nack.media_ssrc(), nack.sequence_numbers());
                }
                RtcpPacket::Pli(pli) => {
                    self.on_key_frame_request(tid, pli.media_ssrc, TraceEventType::Pli);
                }
                RtcpPacket::Fir(fir) => {
                    for (ssrc, _) in fir.entries() {
                        self.on_key_frame_request(tid, ssrc, TraceEventType::Fir);
                    }
                }
                // Bandwidth feedback about what this transport sends.
                RtcpPacket::TransportCc(feedback) => {
                    if let Some(t) = self.transports.get_mut(&tid) {
                        t.bwe.on_feedback(&feedback, self.now);
                        let trace = t.trace.has(TraceEventType::Bwe);
                        if t.alloc.due(self.now, t.bwe.estimate()) {
                            self.allocate(tid);
                        }
                        if trace {
                            self.trace_bwe(tid);
                        }
                    }
                }
                RtcpPacket::Remb(remb) => {
                    if let Some(t) = self.transports.get_mut(&tid) {
                        t.bwe.on_remb(remb.bitrate());
                    }
                }
                _ => {}
            }
        }
        true
    }

    fn on_sender_report(&mut self, tid: TransportId, ssrc: u32, ntp: u64, rtp_ts: u32) {
        let now = self.now;
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        let Some(rx) = t.media.as_ref().and_then(|s| s.rx_ssrcs.get(&ssrc)) else {
            return;
        };
        if rx.role != RxRole::Media {
            return;
        }
        let (pid, layer) = (rx.producer, rx.layer);
        if let Some(recv) = self
            .producers
            .get_mut(&pid)
            .and_then(|p| p.encodings.get_mut(layer))
            .and_then(|e| e.recv.as_mut())
        {
            recv.on_sender_report(ntp, rtp_ts, now);
        }
    }

    fn on_report_block(&mut self, tid: TransportId, block: &rtcp::ReportBlock) {
        let now = self.now;
        let Some(cid) = self.consumer_by_ssrc(tid, block.ssrc) else {
            return;
        };
        if let Some(c) = self.consumers.get_mut(&cid) {
            c.send.on_receiver_report(
                block.fraction_lost,
                block.cumulative_lost,
                block.last_sr,
                block.delay_since_last_sr,
                now,
            );
            c.send.on_report_position(block.extended_highest_seq);
            if let (Some(rtt), Some(t)) = (c.send.rtt(), self.transports.get_mut(&tid)) {
                t.bwe.set_rtt(rtt);
            }
        }
    }

    /// The consumer on a transport that sends with `ssrc`: what an endpoint's RTCP about a
    /// stream it receives is about.
    pub(crate) fn consumer_by_ssrc(&self, tid: TransportId, ssrc: u32) -> Option<ConsumerId> {
        self.transports
            .get(&tid)
            .and_then(|t| t.consumers_by_ssrc.get(&ssrc))
            .copied()
    }

    /// A PLI or FIR (`kind`) from a consumer's endpoint.
    fn on_key_frame_request(&mut self, tid: TransportId, ssrc: u32, kind: TraceEventType) {
        let Some(cid) = self.consumer_by_ssrc(tid, ssrc) else {
            return;
        };
        self.trace_consumer(cid, kind, TraceDirection::In);
        let Some(c) = self.consumers.get_mut(&cid) else {
            return;
        };
        c.stats.key_frame_requests_received += 1;
        let layer = match c.pipe.as_deref() {
            // A pipe peer asks for the encoding whose stream it names.
            Some(pipe) => match pipe.layer_of(ssrc) {
                Some(layer) => layer,
                None => return,
            },
            None => c.current_layer.unwrap_or(c.wanted_layer()),
        };
        let pid = c.producer;
        trace!(consumer = %cid, "key frame requested");
        self.request_key_frame(pid, layer);
    }
}

impl Sfu {
    /// Test support, not API: an SRTP context that protects as the endpoint of transport `id`
    /// does (its write key and salt), so integration tests can make authenticated SRTP and
    /// SRTCP the endpoint's own stack cannot send. `None` until the transport's DTLS has
    /// connected.
    #[doc(hidden)]
    pub fn test_only_endpoint_srtp_context(&self, id: TransportId) -> Option<SrtpContext> {
        let keys = self.transports.get(&id)?.webrtc()?.srtp_keys.as_ref()?;
        SrtpContext::new(keys.media_profile()?, keys.remote_key(), keys.remote_salt()).ok()
    }

    /// Test support, not API: an SRTP context that unprotects as the endpoint of transport
    /// `id` does (the Sfu's write key and salt), so integration tests can read the SRTCP the
    /// Sfu sends. `None` until the transport's DTLS has connected.
    #[doc(hidden)]
    pub fn test_only_endpoint_srtp_receive_context(&self, id: TransportId) -> Option<SrtpContext> {
        let keys = self.transports.get(&id)?.webrtc()?.srtp_keys.as_ref()?;
        SrtpContext::new(keys.media_profile()?, keys.local_key(), keys.local_salt()).ok()
    }
}

/// Finds where an SRTP packet goes and decrypts it in place (`buf` is truncated to the
/// plaintext): `None` when it does not authenticate, `Some(None)` when it does but no producer
/// of the transport takes it. An SSRC seen for the first time takes a place in the session
/// only once its packet authenticates and names a producer of the transport.
fn rx_route(
    t: &mut Transport,
    producers: &mut rustc_hash::FxHashMap<ProducerId, Producer>,
    buf: &mut Vec<u8>,
) -> Option<Option<(ProducerId, usize, RxRole)>> {
    let session = t.media.as_mut()?;
    let ssrc = srtp::rtp_ssrc(buf)?;
    if let Some(rx) = session.rx_ssrcs.get_mut(&ssrc) {
        let len = session.rx.unprotect_rtp(buf, &mut rx.replay).ok()?;
        buf.truncate(len);
        return Some(Some((rx.producer, rx.layer, rx.role)));
    }
    if session.rx_ssrcs.len() >= MAX_RX_SSRCS {
        return None;
    }
    let mut replay = RtpReplay::default();
    let len = session.rx.unprotect_rtp(buf, &mut replay).ok()?;
    buf.truncate(len);
    let route = match t.producer_ssrcs.get(&ssrc) {
        Some(&declared) => Some(declared),
        None => RtpPacket::parse(buf).ok().and_then(|pkt| {
            resolve_by_extensions(&t.producers_by_mid, &t.rx_extensions, producers, &pkt)
        }),
    };
    let Some((pid, layer, role)) = route else {
        return Some(None);
    };
    let Some(e) = producers
        .get_mut(&pid)
        .and_then(|p| p.encodings.get_mut(layer))
    else {
        return Some(None);
    };
    match role {
        RxRole::Media => {
            e.ssrc.get_or_insert(ssrc);
        }
        RxRole::Rtx => {
            e.rtx_ssrc.get_or_insert(ssrc);
        }
    }
    session.rx_ssrcs.insert(
        ssrc,
        RxSsrc {
            replay,
            producer: pid,
            layer,
            role,
        },
    );
    Some(Some((pid, layer, role)))
}

/// The producer encoding a packet of an undeclared SSRC belongs to, from its mid and rid (or
/// repaired rid) header extensions (RFC 8843, RFC 8852); a producer with a single encoding
/// declared without SSRC or rid is found by mid alone.
fn resolve_by_extensions(
    by_mid: &std::collections::HashMap<Mid, ProducerId>,
    ids: &RxExtensions,
    producers: &rustc_hash::FxHashMap<ProducerId, Producer>,
    pkt: &RtpPacket<'_>,
) -> Option<(ProducerId, usize, RxRole)> {
    let ext = |id: Option<u8>| id.and_then(|id| pkt.extension(id));
    let mid = ext(ids.mid).and_then(packet::rid)?;
    let pid = *by_mid.get(&Mid::new(mid)?)?;
    let p = producers.get(&pid)?;
    let is_rtx = p
        .rtx_payload_types
        .iter()
        .any(|&(rtx, _)| rtx == pkt.payload_type());
    let rid = if is_rtx {
        ext(ids.repaired_rid).or_else(|| ext(ids.rid))
    } else {
        ext(ids.rid)
    }
    .and_then(packet::rid);
    let layer = match rid {
        Some(rid) => {
            let rid = Rid::new(rid)?;
            p.encodings.iter().position(|e| e.rid == Some(rid))?
        }
        None if p.encodings.len() == 1 && p.encodings[0].rid.is_none() => 0,
        None => return None,
    };
    // An encoding whose SSRC is declared (or already learned) takes no other.
    let e = &p.encodings[layer];
    let known = if is_rtx { e.rtx_ssrc } else { e.ssrc };
    if known.is_some_and(|known| known != pkt.ssrc()) {
        return None;
    }
    if layer >= MAX_LAYERS {
        return None;
    }
    let role = if is_rtx { RxRole::Rtx } else { RxRole::Media };
    Some((pid, layer, role))
}
