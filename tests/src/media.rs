//! Synthetic media: Opus-like audio and VP8-like video whose payloads say where they came from,
//! so a receiver can check every byte it gets.
//!
//! Each payload embeds the source SSRC and source sequence number after a codec header; the rest
//! of the bytes are a function of those two numbers. [`verify_payload`] regenerates the payload
//! from what it embeds and compares all bytes.

use std::time::{Duration, Instant};

/// Audio: one 20 ms packet.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Video: 30 frames per second.
pub const VIDEO_INTERVAL: Duration = Duration::from_micros(33_333);
/// Bytes per video packet.
pub const VIDEO_PACKET_SIZE: usize = 1000;

/// One RTP packet to send.
#[derive(Debug, Clone)]
pub struct OutPacket {
    /// Sequence number (extended).
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit (last packet of a video frame).
    pub marker: bool,
    /// The payload.
    pub payload: Vec<u8>,
    /// The audio level to send in the header extension (dBov, −127 to 0), if any.
    pub audio_level: Option<i8>,
}

/// Generates a stream's packets.
#[derive(Debug)]
pub struct Source {
    /// The SSRC embedded in payloads.
    pub ssrc: u32,
    video: bool,
    seq: u64,
    timestamp: u32,
    next_at: Instant,
    frames: u64,
    key_frame_requested: bool,
    /// Send a key frame every this many frames (besides requested ones).
    pub key_frame_every: u64,
    /// Packets per delta frame (key frames get three times as many, unless
    /// `key_frame_packets` says otherwise).
    pub packets_per_frame: usize,
    /// Packets per key frame, when not three times `packets_per_frame`.
    pub key_frame_packets: Option<usize>,
    /// Audio: the level each packet carries in its audio level header extension (dBov).
    pub audio_level: Option<i8>,
    /// VP9 SVC instead of VP8-like frames (see [`Source::vp9_svc`]).
    svc: Option<Vp9Svc>,
    /// VP9 SVC: how many spatial layers are sent (the top ones stop below
    /// [`SVC_SPATIAL_LAYERS`], as a browser does when its own estimate falls).
    pub svc_layers_sent: usize,
    /// VP8 with temporal layers instead (see [`Source::vp8_temporal`]).
    vp8_temporal: Option<Vp9Svc>,
    /// AV1 with three temporal layers and dependency descriptors (see [`Source::av1_l1t3`]):
    /// the frame number of the next frame.
    av1_frame_number: Option<u16>,
}

/// The state of a synthetic VP9 `L3T3_KEY` encoder.
#[derive(Debug, Clone)]
struct Vp9Svc {
    picture_id: u16,
    tl0_pic_idx: u8,
    /// Pictures since the last key picture.
    since_key: u64,
}

/// Spatial layers of [`Source::vp9_svc`].
pub const SVC_SPATIAL_LAYERS: usize = 3;
/// Packets per delta frame of each spatial layer of [`Source::vp9_svc`] (key frames: three
/// times as many).
pub const SVC_PACKETS: [usize; SVC_SPATIAL_LAYERS] = [1, 2, 6];
/// Payload bytes per packet of each spatial layer: at 30 pictures a second about 150 kbit/s,
/// 500 kbit/s and 1.5 Mbit/s.
pub const SVC_PACKET_SIZE: [usize; SVC_SPATIAL_LAYERS] = [625, 1040, 1040];
/// The temporal layer of each picture of the group after a key picture.
pub const SVC_TEMPORAL_PATTERN: [u8; 4] = [0, 2, 1, 2];
/// Marks the synthetic bitstream after a VP9 payload descriptor (not a VP9 frame marker: the
/// synthetic frames carry no frame header for the SFU to read).
pub const SVC_MAGIC: u8 = 0x59;
/// Marks the synthetic bitstream after a VP8 payload descriptor and header byte.
pub const VP8_TEMPORAL_MAGIC: u8 = 0x98;
/// Marks the synthetic bitstream after an AV1 aggregation header.
pub const AV1_MAGIC: u8 = 0xa1;

/// The templates of [`Source::av1_l1t3`]'s dependency structure: (temporal layer, decode
/// target indications for its three decode targets (T0, T0+T1, all; 0 not present,
/// 1 discardable, 2 switch, 3 required), how many frames back it refers (0: none), the chain's
/// previous frame, that far back). Template 0 is the key frame's; the others follow the
/// pattern [`SVC_TEMPORAL_PATTERN`] 0, 2, 1, 2.
pub const AV1_L1T3_TEMPLATES: [(u8, [u8; 3], u16, u8); 5] = [
    (0, [2, 2, 2], 0, 0),
    (0, [2, 2, 2], 4, 4),
    (1, [0, 1, 3], 2, 2),
    (2, [0, 0, 1], 1, 1),
    (2, [0, 0, 1], 1, 3),
];

/// Writes bits high to low (the dependency descriptor's order).
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    fn f(&mut self, n: u32, v: u64) {
        for i in (0..n).rev() {
            if self.len % 8 == 0 {
                self.bytes.push(0);
            }
            if v >> i & 1 == 1 {
                *self.bytes.last_mut().expect("a byte") |= 0x80 >> (self.len % 8);
            }
            self.len += 1;
        }
    }
}

/// The dependency descriptor of one packet of [`Source::av1_l1t3`]: template `template` of
/// [`AV1_L1T3_TEMPLATES`], with the structure when `structure`.
pub fn av1_l1t3_descriptor(
    start: bool,
    end: bool,
    template: usize,
    frame_number: u16,
    structure: bool,
) -> Vec<u8> {
    let mut b = Bits::default();
    b.f(1, u64::from(start));
    b.f(1, u64::from(end));
    b.f(6, template as u64);
    b.f(16, u64::from(frame_number));
    if structure {
        // Structure present; no active targets, custom dtis, fdiffs or chains.
        b.f(5, 0b1_0000);
        b.f(6, 0); // template id offset
        b.f(5, 2); // three decode targets
        for w in AV1_L1T3_TEMPLATES.windows(2) {
            b.f(2, u64::from(w[1].0 != w[0].0)); // same layer, or temporal + 1
        }
        b.f(2, 3);
        for t in &AV1_L1T3_TEMPLATES {
            for &d in &t.1 {
                b.f(2, u64::from(d));
            }
        }
        for t in &AV1_L1T3_TEMPLATES {
            if t.2 > 0 {
                b.f(1, 1);
                b.f(4, u64::from(t.2 - 1));
            }
            b.f(1, 0);
        }
        // One chain (ns(4) of 1 is "01"); every target protected by it (ns(1): no bits).
        b.f(2, 1);
        for t in &AV1_L1T3_TEMPLATES {
            b.f(4, u64::from(t.3));
        }
        b.f(1, 0); // no resolutions
    }
    b.bytes
}

impl Source {
    /// An audio source starting at `start`.
    pub fn audio(ssrc: u32, start: Instant) -> Self {
        Self::new(ssrc, false, start)
    }

    /// A video source starting at `start` (about 1 Mbit/s with the defaults).
    pub fn video(ssrc: u32, start: Instant) -> Self {
        Self::new(ssrc, true, start)
    }

    fn new(ssrc: u32, video: bool, start: Instant) -> Self {
        Self {
            ssrc,
            video,
            seq: initial_sequence(ssrc),
            timestamp: ssrc.wrapping_mul(7),
            next_at: start,
            frames: 0,
            key_frame_requested: true,
            key_frame_every: 300,
            packets_per_frame: 4,
            key_frame_packets: None,
            audio_level: None,
            svc: None,
            svc_layers_sent: SVC_SPATIAL_LAYERS,
            vp8_temporal: None,
            av1_frame_number: None,
        }
    }

    /// A VP8 source with three temporal layers in the pattern [`SVC_TEMPORAL_PATTERN`]
    /// (`L1T3`), starting at `start`: RFC 7741 descriptors with a 15-bit picture id,
    /// TL0PICIDX, TID and the layer sync bit (Y: the frame refers only to temporal layer 0).
    /// After the descriptor and the VP8 payload header byte (on a frame's first packet) each
    /// payload carries [`VP8_TEMPORAL_MAGIC`], the SSRC and sequence number, and the picture id
    /// the frame refers to (`0xFFFF` on key frames).
    pub fn vp8_temporal(ssrc: u32, start: Instant) -> Self {
        let mut s = Self::new(ssrc, true, start);
        s.vp8_temporal = Some(Vp9Svc {
            picture_id: (ssrc % 0x7000) as u16,
            tl0_pic_idx: 0,
            since_key: 0,
        });
        s
    }

    /// A VP9 `L3T3_KEY` source starting at `start`: three spatial layers (about 150 kbit/s,
    /// 500 kbit/s and 1.5 Mbit/s, see [`SVC_PACKETS`]) and three temporal layers in the
    /// pattern [`SVC_TEMPORAL_PATTERN`], with RFC 9628 payload descriptors in non-flexible
    /// mode (picture id, layer indices, TL0PICIDX, switching-up points, the scalability
    /// structure on key pictures). Key pictures predict each spatial layer from the one below;
    /// delta pictures predict only within their spatial layer, from the picture the temporal
    /// pattern names. After the descriptor each payload carries [`SVC_MAGIC`], the SSRC and
    /// sequence number, and the picture id of the frame's temporal reference (`0xFFFF`:
    /// none), the truth a receiver checks decodability against.
    pub fn vp9_svc(ssrc: u32, start: Instant) -> Self {
        let mut s = Self::new(ssrc, true, start);
        s.svc = Some(Vp9Svc {
            picture_id: (ssrc % 0x7000) as u16,
            tl0_pic_idx: 0,
            since_key: 0,
        });
        s
    }

    /// An AV1 source with three temporal layers in the pattern [`SVC_TEMPORAL_PATTERN`]
    /// (`L1T3`) starting at `start`, each packet carrying a dependency descriptor (the AV1 RTP
    /// payload format's Appendix A; key frames carry the [`AV1_L1T3_TEMPLATES`] structure).
    /// The descriptor travels at the front of the payload, as one length byte and its bytes,
    /// where the simulation client takes it off and sends it as the header extension (see
    /// `Client::send`). After it each payload has an aggregation header (N set on a key frame's
    /// first packet), [`AV1_MAGIC`], the SSRC and sequence number.
    pub fn av1_l1t3(ssrc: u32, start: Instant) -> Self {
        let mut s = Self::new(ssrc, true, start);
        s.av1_frame_number = Some((ssrc % 50_000) as u16);
        s
    }

    /// Skips `by` sequence numbers: the next packet is numbered `by` more than it would have
    /// been (a sender that restarted its numbering on the same SSRC).
    pub fn jump_sequence(&mut self, by: u64) {
        self.seq += by;
    }

    /// When the next frame is due.
    pub fn next_at(&self) -> Instant {
        self.next_at
    }

    /// The next frame will be a key frame.
    pub fn request_key_frame(&mut self) {
        self.key_frame_requested = true;
    }

    /// Whether this is a video source.
    pub fn is_video(&self) -> bool {
        self.video
    }

    /// The RTP clock rate of its timestamps.
    pub fn clock_rate(&self) -> u32 {
        clock_rate(self.video)
    }

    /// The packets of every frame due by `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<OutPacket> {
        let mut out = Vec::new();
        while self.next_at <= now {
            if self.video {
                self.video_frame(&mut out);
                self.next_at += VIDEO_INTERVAL;
                self.timestamp = self.timestamp.wrapping_add(3000);
            } else {
                let seq = self.next_seq();
                out.push(OutPacket {
                    seq,
                    timestamp: self.timestamp,
                    marker: false,
                    payload: audio_payload(self.ssrc, seq as u16),
                    audio_level: self.audio_level,
                });
                self.next_at += AUDIO_INTERVAL;
                self.timestamp = self.timestamp.wrapping_add(960);
            }
        }
        out
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    fn video_frame(&mut self, out: &mut Vec<OutPacket>) {
        let key = self.key_frame_requested || self.frames % self.key_frame_every == 0;
        self.key_frame_requested = false;
        self.frames += 1;
        if self.svc.is_some() {
            self.svc_picture(key, out);
            return;
        }
        if self.vp8_temporal.is_some() {
            self.vp8_temporal_picture(key, out);
            return;
        }
        if self.av1_frame_number.is_some() {
            self.av1_frame(key, out);
            return;
        }
        let n = if key {
            self.key_frame_packets.unwrap_or(self.packets_per_frame * 3)
        } else {
            self.packets_per_frame
        };
        for i in 0..n {
            let seq = self.next_seq();
            out.push(OutPacket {
                seq,
                timestamp: self.timestamp,
                marker: i + 1 == n,
                payload: video_payload(self.ssrc, seq as u16, i == 0, key),
                audio_level: None,
            });
        }
    }
}

impl Source {
    fn av1_frame(&mut self, key: bool, out: &mut Vec<OutPacket>) {
        let Some(number) = self.av1_frame_number else {
            return;
        };
        self.av1_frame_number = Some(number.wrapping_add(1));
        let pos = if key {
            0
        } else {
            ((self.frames - 1) % 4) as usize
        };
        if key {
            // The group restarts at a key frame.
            self.frames = 1;
        }
        let temporal = SVC_TEMPORAL_PATTERN[pos];
        let template = if key { 0 } else { [1, 3, 2, 4][pos] };
        let n = if key { 6 } else { [3, 1, 2, 1][pos] };
        for i in 0..n {
            let seq = self.next_seq();
            let (start, end) = (i == 0, i + 1 == n);
            let dd = av1_l1t3_descriptor(start, end, template, number, key && start);
            let mut p = Vec::with_capacity(800);
            p.push(dd.len() as u8);
            p.extend_from_slice(&dd);
            // Aggregation header: Z (continues a fragment), Y (continues in the next), N.
            p.push(u8::from(!start) << 7 | u8::from(!end) << 6 | u8::from(key && start) << 3);
            p.push(AV1_MAGIC);
            p.extend_from_slice(&self.ssrc.to_be_bytes());
            p.extend_from_slice(&(seq as u16).to_be_bytes());
            p.push(temporal);
            fill(&mut p, self.ssrc, seq as u16, 700);
            out.push(OutPacket {
                seq,
                timestamp: self.timestamp,
                marker: end,
                payload: p,
                audio_level: None,
            });
        }
    }

    fn vp8_temporal_picture(&mut self, key: bool, out: &mut Vec<OutPacket>) {
        let Some(mut st) = self.vp8_temporal.take() else {
            return;
        };
        if key {
            st.since_key = 0;
        }
        let pos = (st.since_key % 4) as usize;
        let temporal = SVC_TEMPORAL_PATTERN[pos];
        if temporal == 0 {
            st.tl0_pic_idx = st.tl0_pic_idx.wrapping_add(1);
        }
        let back = [4u16, 1, 2, 1][pos];
        let reference = (!key).then(|| st.picture_id.wrapping_sub(back) & 0x7fff);
        // Layer sync: the frame refers only to temporal layer 0.
        let sync = temporal > 0 && pos != 3;
        let n = self.packets_per_frame * if key { 3 } else { 1 };
        for i in 0..n {
            let seq = self.next_seq();
            let mut p = Vec::with_capacity(VIDEO_PACKET_SIZE);
            p.push(0x80 | if i == 0 { 0x10 } else { 0 });
            p.push(0xe0);
            p.extend_from_slice(&(0x8000 | st.picture_id).to_be_bytes());
            p.push(st.tl0_pic_idx);
            p.push(temporal << 6 | u8::from(sync) << 5);
            if i == 0 {
                p.push(if key { 0x00 } else { 0x01 });
            }
            p.push(VP8_TEMPORAL_MAGIC);
            p.extend_from_slice(&self.ssrc.to_be_bytes());
            p.extend_from_slice(&(seq as u16).to_be_bytes());
            p.extend_from_slice(&reference.unwrap_or(0xffff).to_be_bytes());
            fill(&mut p, self.ssrc, seq as u16, VIDEO_PACKET_SIZE);
            out.push(OutPacket {
                seq,
                timestamp: self.timestamp,
                marker: i + 1 == n,
                payload: p,
                audio_level: None,
            });
        }
        st.picture_id = st.picture_id.wrapping_add(1) & 0x7fff;
        st.since_key += 1;
        self.vp8_temporal = Some(st);
    }

    fn svc_picture(&mut self, key: bool, out: &mut Vec<OutPacket>) {
        let Some(mut svc) = self.svc.take() else {
            return;
        };
        if key {
            svc.since_key = 0;
        }
        let pos = (svc.since_key % 4) as usize;
        let temporal = SVC_TEMPORAL_PATTERN[pos];
        if temporal == 0 {
            svc.tl0_pic_idx = svc.tl0_pic_idx.wrapping_add(1);
        }
        // The temporal reference: pattern 0,2,1,2 refers to the previous TID 0, the TID 0
        // before, the TID 0 two back, the TID 1 before.
        let back = [4u16, 1, 2, 1][pos];
        let reference = (!key).then(|| svc.picture_id.wrapping_sub(back) & 0x7fff);
        let layers = self.svc_layers_sent.clamp(1, SVC_SPATIAL_LAYERS);
        for sid in 0..layers {
            let n = SVC_PACKETS[sid] * if key { 3 } else { 1 };
            for i in 0..n {
                let seq = self.next_seq();
                let begins = i == 0;
                let ends = i + 1 == n;
                let mut p = Vec::with_capacity(SVC_PACKET_SIZE[sid] + 40);
                let ss = key && sid == 0 && begins;
                p.push(
                    0xa0 | u8::from(!key) << 6
                        | u8::from(begins) << 3
                        | u8::from(ends) << 2
                        | u8::from(ss) << 1,
                );
                p.extend_from_slice(&(0x8000 | svc.picture_id).to_be_bytes());
                let switch_up = temporal > 0;
                let inter_layer = key && sid > 0;
                p.push(
                    temporal << 5
                        | u8::from(switch_up) << 4
                        | (sid as u8) << 1
                        | u8::from(inter_layer),
                );
                p.push(svc.tl0_pic_idx);
                if ss {
                    p.push(((SVC_SPATIAL_LAYERS as u8 - 1) << 5) | 0x18);
                    for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
                        p.extend_from_slice(&w.to_be_bytes());
                        p.extend_from_slice(&h.to_be_bytes());
                    }
                    p.push(4);
                    for (t, diff) in [(0u8, 4u8), (2, 1), (1, 2), (2, 1)] {
                        p.push(t << 5 | u8::from(t > 0) << 4 | 1 << 2);
                        p.push(diff);
                    }
                }
                p.push(SVC_MAGIC);
                p.extend_from_slice(&self.ssrc.to_be_bytes());
                p.extend_from_slice(&(seq as u16).to_be_bytes());
                p.extend_from_slice(&reference.unwrap_or(0xffff).to_be_bytes());
                fill(&mut p, self.ssrc, seq as u16, SVC_PACKET_SIZE[sid]);
                out.push(OutPacket {
                    seq,
                    timestamp: self.timestamp,
                    marker: ends && sid + 1 == layers,
                    payload: p,
                    audio_level: None,
                });
            }
        }
        svc.picture_id = svc.picture_id.wrapping_add(1) & 0x7fff;
        svc.since_key += 1;
        self.svc = Some(svc);
    }
}

/// The RTP clock rate of a [`Source`]'s timestamps: 90 kHz for video, 48 kHz (Opus) for audio.
pub fn clock_rate(video: bool) -> u32 {
    if video {
        90_000
    } else {
        48_000
    }
}

/// The sequence number a [`Source`] with this SSRC starts at.
pub fn initial_sequence(ssrc: u32) -> u64 {
    u64::from(ssrc % 20_000) + 1
}

/// An audio payload: a 1-byte marker (0xA0), then SSRC and sequence number, then filler.
pub fn audio_payload(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(120);
    p.push(0xA0);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    fill(&mut p, ssrc, seq, 120);
    p
}

/// A VP8-like payload: a VP8 payload descriptor (S bit on the first packet of a frame), a VP8
/// payload header byte (P = 0 on key frames), SSRC and sequence number, then filler.
pub fn video_payload(ssrc: u32, seq: u16, first: bool, key: bool) -> Vec<u8> {
    let mut p = Vec::with_capacity(VIDEO_PACKET_SIZE);
    p.push(if first { 0x10 } else { 0x00 });
    p.push(if key { 0x00 } else { 0x01 });
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    fill(&mut p, ssrc, seq, VIDEO_PACKET_SIZE);
    p
}

fn fill(p: &mut Vec<u8>, ssrc: u32, seq: u16, len: usize) {
    let mut x = ssrc ^ (u32::from(seq) << 16) ^ 0x9e37_79b9;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p.push(x as u8);
    }
}

/// What a received payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The source SSRC.
    pub ssrc: u32,
    /// The source sequence number.
    pub seq: u16,
    /// Video key frame start.
    pub key_frame: bool,
}

/// Regenerates the payload from the ids it embeds and compares every byte. `None` when the
/// payload is not one [`Source`] made or was altered.
pub fn verify_payload(p: &[u8]) -> Option<PayloadInfo> {
    match p.first()? {
        0xA0 => {
            let ssrc = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
            let seq = u16::from_be_bytes(p.get(5..7)?.try_into().ok()?);
            (audio_payload(ssrc, seq) == p).then_some(PayloadInfo {
                ssrc,
                seq,
                key_frame: false,
            })
        }
        0x10 | 0x00 => {
            let first = p[0] == 0x10;
            let key = *p.get(1)? == 0x00;
            let ssrc = u32::from_be_bytes(p.get(2..6)?.try_into().ok()?);
            let seq = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?);
            (video_payload(ssrc, seq, first, key) == p).then_some(PayloadInfo {
                ssrc,
                seq,
                key_frame: first && key,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // Tests own the clock.
mod tests {
    use super::*;

    #[test]
    fn payloads_verify_and_detect_tampering() {
        let t0 = Instant::now();
        let mut v = Source::video(77, t0);
        let pkts = v.poll(t0);
        assert_eq!(
            pkts.len(),
            12,
            "the first frame is a key frame of 3x4 packets"
        );
        let info = verify_payload(&pkts[0].payload).unwrap();
        assert!(info.key_frame);
        assert_eq!(info.ssrc, 77);
        let mut bad = pkts[1].payload.clone();
        bad[500] ^= 1;
        assert_eq!(verify_payload(&bad), None);
        let mut a = Source::audio(5, t0);
        let pkts = a.poll(t0 + Duration::from_millis(100));
        assert_eq!(pkts.len(), 6);
        assert!(verify_payload(&pkts[3].payload).is_some());
    }
}
