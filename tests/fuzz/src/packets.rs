//! Targets for the parsers that take bytes alone: RTP, RTCP, SRTP, RFC 4571 framing, the
//! demultiplexer's classification and the transport-cc feedback builder.
//!
//! Each checks what the parser promises beyond "no panic": a parsed RTP packet's parts add up
//! and survive the forwarding rewrite, SRTP round trips and refuses replays, the frame decoder
//! agrees with a direct reading of the stream, feedback reports only what was recorded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sfu_core::framing::{FrameDecoder, FrameTooLong};
use sfu_core::fuzzing::{self, DatagramKind};
use sfu_core::media::packet::{self, ExtensionIdMap, OutHeader, RtpPacket};
use sfu_core::media::rtcp::{self, RtcpPacket};
use sfu_core::media::srtp::{RtcpReplay, RtpReplay, SrtpContext, SrtpError, SrtpProfile};

/// One RTP packet: the checked view, its accessors, and the forwarding rewrite of it.
pub fn rtp(data: &[u8]) {
    let header_len = packet::header_len(data);
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    assert_eq!(header_len, Some(p.header_len()));
    assert_eq!(
        p.header_len() + p.payload().len() + p.padding_len(),
        data.len()
    );
    assert_eq!(p.csrcs().count(), p.csrc_count());
    for (id, value) in p.extensions() {
        assert!(p.extension(id).is_some());
        let _ = packet::audio_level(value);
        let _ = packet::transport_wide_seq(value);
        let _ = packet::rid(value);
        let _ = packet::video_orientation(value);
    }
    let _ = packet::rtx_original(p.payload());

    // Forward it as a consumer would: ids remapped (one dropped), a transport-wide sequence
    // number added, maybe as RTX.
    let mut map = ExtensionIdMap::identity();
    map.set(data[data.len() - 1] & 0x0f, 0);
    let header = OutHeader {
        payload_type: p.payload_type() ^ 1,
        sequence_number: p.sequence_number().wrapping_add(1),
        timestamp: p.timestamp().wrapping_add(90),
        ssrc: !p.ssrc(),
        marker: !p.marker(),
    };
    let twcc = 0x1234u16.to_be_bytes();
    let extra: [(u8, &[u8]); 1] = [(5, &twcc)];
    let rtx = (data[0] & 1 == 1).then_some(p.sequence_number());
    let mut out = vec![0u8; data.len() + 2048];
    let len = packet::write_forwarded(&mut out, &p, header, &map, &extra, rtx)
        .expect("a parsed packet is always forwardable into a large enough buffer");
    let q = RtpPacket::parse(&out[..len]).expect("a forwarded packet parses");
    assert_eq!(q.sequence_number(), header.sequence_number);
    assert_eq!(q.ssrc(), header.ssrc);
    assert_eq!(q.marker(), header.marker);
    assert_eq!(q.payload_type(), header.payload_type & 0x7f);
    assert_eq!(q.extension(5), Some(&twcc[..]));
    let payload = match rtx {
        Some(osn) => {
            let (seq, rest) = packet::rtx_original(q.payload()).expect("RTX carries its OSN");
            assert_eq!(seq, osn);
            rest
        }
        None => q.payload(),
    };
    assert_eq!(payload, p.payload());
}

/// A compound RTCP datagram: every packet and every accessor.
pub fn rtcp(data: &[u8]) {
    let _ = rtcp::is_rtcp(data);
    let _ = sfu_core::media::srtp::rtcp_sender_ssrc(data);
    for item in rtcp::compound(data).take(64) {
        let Ok(p) = item else { continue };
        match p {
            RtcpPacket::SenderReport(sr) => {
                let _ = (sr.ssrc(), sr.ntp_timestamp(), sr.rtp_timestamp());
                let _ = (sr.packet_count(), sr.octet_count());
                assert!(sr.report_blocks().count() <= 31);
            }
            RtcpPacket::ReceiverReport(rr) => {
                let _ = rr.ssrc();
                assert!(rr.report_blocks().count() <= 31);
            }
            RtcpPacket::Nack(n) => {
                let _ = (n.sender_ssrc(), n.media_ssrc());
                assert!(n.sequence_numbers().count() <= 17 * data.len() / 4);
            }
            RtcpPacket::Fir(f) => {
                let _ = (f.sender_ssrc(), f.entries().count());
            }
            RtcpPacket::Remb(r) => {
                let _ = (r.sender_ssrc(), r.bitrate(), r.ssrcs().count());
            }
            RtcpPacket::TransportCc(t) => {
                let _ = (t.sender_ssrc(), t.media_ssrc(), t.feedback_count());
                let _ = t.reference_time();
                let count = t.packets().count();
                assert_eq!(count, usize::from(t.packet_status_count()));
                let mut seq = t.base_sequence();
                for (s, _) in t.packets() {
                    assert_eq!(s, seq);
                    seq = seq.wrapping_add(1);
                }
            }
            RtcpPacket::Bye(b) => {
                let _ = b.ssrcs().count();
            }
            _ => {}
        }
    }
}

/// SRTP and SRTCP: unprotecting arbitrary bytes, and protect/unprotect round trips.
///
/// `data[0]` picks the profile and the mode; the rest is the packet.
pub fn srtp(data: &[u8]) {
    let Some((&select, body)) = data.split_first() else {
        return;
    };
    let profile = SrtpProfile::ALL[usize::from(select & 3)];
    let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8).map(|b| !b).collect();
    let ctx = SrtpContext::new(profile, &key, &salt).expect("key lengths of the profile");
    let mut mine = SrtpContext::new(profile, &key, &salt).expect("key lengths of the profile");
    let mut buf = body.to_vec();
    match (select >> 2) & 3 {
        0 => {
            let mut replay = RtpReplay::default();
            if let Ok(len) = ctx.unprotect_rtp(&mut buf, &mut replay) {
                assert!(len <= body.len());
            }
        }
        1 => {
            let mut replay = RtcpReplay::default();
            if let Ok(len) = ctx.unprotect_rtcp(&mut buf, &mut replay) {
                assert!(len <= body.len());
            }
        }
        2 => {
            let roc = u32::from(select >> 4);
            buf.resize(body.len() + profile.rtp_overhead(), 0);
            let Ok(len) = mine.protect_rtp(&mut buf, body.len(), roc) else {
                return;
            };
            buf.truncate(len);
            let mut replay = RtpReplay::default();
            let mut twice = buf.clone();
            match ctx.unprotect_rtp(&mut buf, &mut replay) {
                // A fresh receiver guesses ROC 0 (or one more, across a wrap).
                Ok(plain) => assert_eq!(&buf[..plain], body),
                Err(e) => assert!(roc != 0, "round trip failed: {e:?}"),
            }
            if replay.extended_highest().is_some() {
                assert!(matches!(
                    ctx.unprotect_rtp(&mut twice, &mut replay),
                    Err(SrtpError::Replayed)
                ));
            }
        }
        _ => {
            buf.resize(body.len() + profile.rtcp_overhead(), 0);
            let Ok(len) = mine.protect_rtcp(&mut buf, body.len()) else {
                return;
            };
            buf.truncate(len);
            let mut replay = RtcpReplay::default();
            let mut twice = buf.clone();
            let plain = ctx
                .unprotect_rtcp(&mut buf, &mut replay)
                .expect("SRTCP round trip");
            assert_eq!(&buf[..plain], body);
            assert!(matches!(
                ctx.unprotect_rtcp(&mut twice, &mut replay),
                Err(SrtpError::Replayed)
            ));
        }
    }
}

/// RFC 4571 framing: the stream cut into reads of a size from `data[0]`, against a direct
/// reading of the whole stream.
pub fn framing(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let max = 1500;
    let cut = usize::from(cut % 64) + 1;
    let mut decoder = FrameDecoder::new(max);
    let mut frames = Vec::new();
    let mut error = None;
    'reads: for chunk in stream.chunks(cut) {
        decoder.extend(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'reads;
                }
            }
        }
    }
    let (expected, expected_error) = read_frames(stream, max);
    assert_eq!(frames, expected);
    assert_eq!(error, expected_error);
    if error.is_none() {
        let consumed: usize = frames.iter().map(|f| f.len() + 2).sum();
        assert_eq!(decoder.buffered(), stream.len() - consumed);
    }
}

/// The frames of a whole stream, read directly, and the error that ends it.
fn read_frames(mut stream: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<FrameTooLong>) {
    let mut frames = Vec::new();
    while let [hi, lo, rest @ ..] = stream {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if len > max {
            return (frames, Some(FrameTooLong(len)));
        }
        let Some(frame) = rest.get(..len) else { break };
        frames.push(frame.to_vec());
        stream = &rest[len..];
    }
    (frames, None)
}

/// The demultiplexer's view of a datagram: RFC 7983 class (and SCTP over UDP), DTLS record
/// check, STUN username.
pub fn demux(data: &[u8]) {
    let kind = fuzzing::classify(data);
    match kind {
        DatagramKind::Stun => assert!(data.len() >= 20 && data[0] <= 3),
        DatagramKind::Dtls => assert!((20..=63).contains(&data[0])),
        DatagramKind::RtpOrRtcp => assert!(data.len() >= 12 && (128..=191).contains(&data[0])),
        DatagramKind::Sctp => assert!(data.len() >= 16 && data[..4] == [0x13, 0x88, 0x13, 0x88]),
        DatagramKind::Unknown => {}
    }
    if fuzzing::is_dtls12_records(data) {
        assert_eq!(kind, DatagramKind::Dtls);
    }
    // str0m's STUN parser ignores the two top bits of the message type, which RFC 5389 says
    // are zero (and RFC 7983 uses to tell STUN apart); the Sfu classifies first, so such a
    // datagram never reaches it.
    if fuzzing::binding_request_ufrags(data).is_some() && data[0] & 0xc0 == 0 {
        assert_eq!(kind, DatagramKind::Stun);
    }
}

/// Transport-cc feedback built from arbitrary arrivals: each 4-byte record is a sequence number
/// and a time step (the top bit of the step asks for feedback first). Every packet a feedback
/// reports as received was recorded.
pub fn twcc(data: &[u8]) {
    #[allow(clippy::disallowed_methods)] // Only an origin: the recorder is given durations.
    let start = Instant::now();
    let mut now = start;
    let mut recorder = fuzzing::TwccRecorder::default();
    let mut recorded = HashSet::new();
    let mut out = [0u8; 1200];
    let mut check =
        |recorder: &mut fuzzing::TwccRecorder, now: Instant, recorded: &HashSet<u16>| {
            while let Some(len) = recorder.poll_feedback(now, 1, 2, &mut out) {
                let mut packets = rtcp::compound(&out[..len]);
                let Some(Ok(RtcpPacket::TransportCc(fb))) = packets.next() else {
                    panic!("feedback that does not parse: {:?}", &out[..len]);
                };
                for (seq, arrival) in fb.packets() {
                    assert!(
                        arrival.is_none() || recorded.contains(&seq),
                        "{seq} never arrived"
                    );
                }
            }
        };
    for record in data.chunks_exact(4) {
        let seq = u16::from_be_bytes([record[0], record[1]]);
        let step = u16::from_be_bytes([record[2], record[3]]);
        if step & 0x8000 != 0 {
            check(&mut recorder, now, &recorded);
        }
        now += Duration::from_micros(u64::from(step & 0x7fff) * 8);
        recorder.record(seq, now);
        recorded.insert(seq);
        let _ = recorder.next_feedback_at();
    }
    check(&mut recorder, now, &recorded);
}
