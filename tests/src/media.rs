//! Synthetic media: Opus-like audio and VP8-like video whose payloads say where they came from,
//! so a receiver can check every byte it gets.
//!
//! Each payload embeds the source SSRC and source sequence number after a codec header; the rest
//! of the bytes are a function of those two numbers. [`verify_payload`] regenerates the payload
//! from what it embeds and compares all bytes.

use std::time::{Duration, Instant};

use crate::dd::{Descriptor, Structure, Template};

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
    /// AV1 with dependency descriptors (see [`Source::av1_l1t3`], [`Source::av1_l3t3_key`]),
    /// or H264 laid out the same way (see [`Source::h264_l1t3`]).
    av1: Option<Av1>,
    /// AV1 or H264 of one spatial layer: each frame has this many times the packets of
    /// [`Source::av1_l1t3`]'s (1: its own; a simulcast encoding of a higher resolution more).
    pub layered_scale: usize,
    /// The time between two video frames ([`VIDEO_INTERVAL`]: 30 a second).
    pub video_interval: Duration,
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
/// Marks the synthetic bitstream inside an H264 slice (after its NAL unit header, or the FU-A
/// indicator and header).
pub const H264_MAGIC: u8 = 0x64;

/// The dependency structure of [`Source::av1_l1t3`] (`L1T3`): see [`av1_ksvc_structure`].
pub fn av1_l1t3_structure() -> Structure {
    av1_ksvc_structure(1)
}

/// The dependency structure of [`Source::av1_l3t3_key`] (`L3T3_KEY`): see
/// [`av1_ksvc_structure`].
pub fn av1_l3t3_key_structure() -> Structure {
    av1_ksvc_structure(SVC_SPATIAL_LAYERS)
}

/// The dependency structure of an AV1 source with `spatial` spatial layers (K-SVC: an upper
/// spatial layer refers to the one below only in key pictures) and three temporal layers in
/// the pattern [`SVC_TEMPORAL_PATTERN`] 0, 2, 1, 2.
///
/// A picture has one frame per spatial layer, numbered in order. Each spatial layer has five
/// templates, [`av1_template`] names them: its key frame (spatial layer 0: no reference; above:
/// the key frame of the layer below), a temporal layer 0 frame (refers to the layer's previous
/// temporal layer 0 frame, four pictures back), temporal layer 1 (two pictures back) and
/// temporal layer 2 after temporal layer 0 and after temporal layer 1 (one picture back).
/// Decode target `3 * s + t` is spatial layer `s` with temporal layers up to `t`: a layer's
/// frames are only in its own targets, its key frame is a switching point for them (spatial
/// layer 0's for every target) and required by the targets above; a temporal layer 0 frame is
/// a switching point for its layer's targets, temporal layer 1 is discardable for `t = 1` and
/// required for `t = 2`, temporal layer 2 is discardable. Chain `s` (protecting spatial layer
/// `s`'s targets) runs through the key frames of layers 0 to `s` and layer `s`'s temporal layer
/// 0 frames.
pub fn av1_ksvc_structure(spatial: usize) -> Structure {
    let n = spatial.clamp(1, 4);
    let targets = 3 * n;
    let mut templates = Vec::new();
    for s in 0..n {
        let dtis = |own: &str, above: char| -> String {
            (0..n)
                .map(|l| match l.cmp(&s) {
                    std::cmp::Ordering::Less => "---".to_string(),
                    std::cmp::Ordering::Equal => own.to_string(),
                    std::cmp::Ordering::Greater => above.to_string().repeat(3),
                })
                .collect()
        };
        // How far back chain `c`'s previous frame is from layer `s`'s frame of a picture
        // `pos` pictures after a temporal layer 0 picture.
        let chains = |pos: usize| -> Vec<u8> {
            (0..n)
                .map(|c| match (pos, c < s) {
                    (0, true) => s - c,
                    (0, false) => 4 * n + s - c,
                    _ => n * pos + s - c,
                })
                .map(|d| d as u8)
                .collect()
        };
        let key_chains: Vec<u8> = (0..n)
            .map(|c| (s - c.min(s.saturating_sub(1))) as u8)
            .collect();
        let (key_dtis, key_refs) = if s == 0 {
            ("S".repeat(targets), vec![])
        } else {
            (dtis("SSS", 'R'), vec![1])
        };
        let key_chains = if s == 0 { vec![0; n] } else { key_chains };
        let step = n as u16;
        let s8 = s as u8;
        templates.push(Template::new(s8, 0, &key_dtis, &key_refs, &key_chains));
        templates.push(Template::new(
            s8,
            0,
            &dtis("SSS", '-'),
            &[4 * step],
            &chains(0),
        ));
        templates.push(Template::new(
            s8,
            1,
            &dtis("-DR", '-'),
            &[2 * step],
            &chains(2),
        ));
        templates.push(Template::new(s8, 2, &dtis("--D", '-'), &[step], &chains(1)));
        templates.push(Template::new(s8, 2, &dtis("--D", '-'), &[step], &chains(3)));
    }
    Structure {
        template_id_offset: 0,
        decode_targets: targets as u8,
        templates,
        chains: n as u8,
        protected_by: (0..targets).map(|dt| (dt / 3) as u8).collect(),
        resolutions: (n > 1).then(|| SVC_RESOLUTIONS[..n].to_vec()),
    }
}

/// The template id of spatial layer `spatial`'s frame in [`av1_ksvc_structure`]: its key frame,
/// or the frame `pos` pictures after a temporal layer 0 picture (0 to 3).
pub fn av1_template(spatial: usize, key: bool, pos: usize) -> u8 {
    let within = if key { 0 } else { [1, 3, 2, 4][pos % 4] };
    (5 * spatial + within) as u8
}

/// The render resolution of each spatial layer of the SVC sources.
pub const SVC_RESOLUTIONS: [(u16, u16); SVC_SPATIAL_LAYERS] = [(320, 180), (640, 360), (1280, 720)];

/// The codec of a source whose frames follow a dependency structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayeredCodec {
    Av1,
    /// H264, with or without the dependency descriptor.
    H264 {
        descriptor: bool,
    },
}

/// The state of a synthetic AV1 (or H264) encoder.
#[derive(Debug, Clone)]
struct Av1 {
    codec: LayeredCodec,
    structure: Structure,
    spatial_layers: usize,
    /// The next frame's number.
    frame_number: u16,
    /// Pictures since the last key picture.
    since_key: u64,
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
            av1: None,
            layered_scale: 1,
            video_interval: VIDEO_INTERVAL,
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
    /// payload format's Appendix A, written by [`crate::dd`]; key frames carry the
    /// [`av1_l1t3_structure`]). The descriptor travels at the front of the payload, as one
    /// length byte and its bytes, where the simulation client takes it off and sends it as the
    /// header extension (see `Client::send`). After it each payload is an [`av1_payload`]:
    /// an aggregation header (N set on a key frame's first packet), [`AV1_MAGIC`], the SSRC and
    /// sequence number, the frame's layers and filler ([`verify_av1_payload`] checks it).
    pub fn av1_l1t3(ssrc: u32, start: Instant) -> Self {
        Self::av1(ssrc, start, av1_l1t3_structure(), 1)
    }

    /// An H264 source with three temporal layers (`L1T3`) starting at `start`: the frames,
    /// packet counts and dependency descriptors of [`Source::av1_l1t3`] (the descriptor in
    /// front of the payload when `descriptor`, else none), each payload an [`h264_payload`]:
    /// a key frame is an IDR picture, its first packet a STAP-A of SPS, PPS and an IDR slice
    /// and the rest FU-A fragments of a second IDR slice; a delta frame of one packet is a
    /// single non-IDR slice, of more packets FU-A fragments of one.
    pub fn h264_l1t3(ssrc: u32, start: Instant, descriptor: bool) -> Self {
        let mut s = Self::av1(ssrc, start, av1_l1t3_structure(), 1);
        if let Some(a) = s.av1.as_mut() {
            a.codec = LayeredCodec::H264 { descriptor };
        }
        s
    }

    /// Offsets the template ids of its structure by `offset` (modulo 64): the ids its
    /// descriptors carry name no template of a structure at another offset, as the encodings
    /// of one simulcast publisher each count from their own.
    pub fn set_template_id_offset(&mut self, offset: u8) {
        if let Some(a) = self.av1.as_mut() {
            a.structure.template_id_offset = offset % 64;
        }
    }

    /// An AV1 `L3T3_KEY` source starting at `start`: three spatial layers of the bitrates of
    /// [`Source::vp9_svc`] (see [`SVC_PACKETS`]), three temporal layers in the pattern
    /// [`SVC_TEMPORAL_PATTERN`], K-SVC (upper spatial layers refer to lower ones only in key
    /// pictures), with the dependency descriptor of [`av1_l3t3_key_structure`] on every packet
    /// (one chain per spatial layer, nine decode targets). The payloads are laid out as
    /// [`Source::av1_l1t3`]'s.
    pub fn av1_l3t3_key(ssrc: u32, start: Instant) -> Self {
        Self::av1(ssrc, start, av1_l3t3_key_structure(), SVC_SPATIAL_LAYERS)
    }

    fn av1(ssrc: u32, start: Instant, structure: Structure, spatial_layers: usize) -> Self {
        let mut s = Self::new(ssrc, true, start);
        s.av1 = Some(Av1 {
            codec: LayeredCodec::Av1,
            structure,
            spatial_layers,
            frame_number: (ssrc % 50_000) as u16,
            since_key: 0,
        });
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
                self.next_at += self.video_interval;
                // 90 kHz ticks, rounded: 3000 at 30 frames a second.
                let ticks = (self.video_interval.as_micros() * 9 + 50) / 100;
                self.timestamp = self
                    .timestamp
                    .wrapping_add(u32::try_from(ticks).unwrap_or(u32::MAX));
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
        if self.av1.is_some() {
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
        let Some(mut av1) = self.av1.take() else {
            return;
        };
        if key {
            av1.since_key = 0;
        }
        let pos = (av1.since_key % 4) as usize;
        let temporal = SVC_TEMPORAL_PATTERN[pos];
        let single = av1.spatial_layers == 1;
        for sid in 0..av1.spatial_layers {
            let template = (av1_template(sid, key, pos) + av1.structure.template_id_offset) % 64;
            let (n, size) = match (single, key) {
                (true, true) => (6 * self.layered_scale, 700),
                (true, false) => ([3, 1, 2, 1][pos] * self.layered_scale, 700),
                (false, _) => (
                    SVC_PACKETS[sid] * if key { 3 } else { 1 },
                    SVC_PACKET_SIZE[sid],
                ),
            };
            for i in 0..n {
                let seq = self.next_seq();
                let (start, end) = (i == 0, i + 1 == n);
                let mut dd = Descriptor::new(start, end, template, av1.frame_number);
                let new_sequence = key && sid == 0 && start;
                if new_sequence {
                    dd.structure = Some(av1.structure.clone());
                }
                let dd = dd.write(&av1.structure);
                let layers = (sid as u8, temporal);
                let body = match av1.codec {
                    LayeredCodec::Av1 => av1_payload(
                        self.ssrc,
                        seq as u16,
                        (start, end, new_sequence),
                        layers,
                        size,
                    ),
                    LayeredCodec::H264 { .. } => {
                        let part = match (key, n, i) {
                            (true, _, 0) => H264Packet::StapA,
                            (_, 1, _) => H264Packet::Single { idr: key },
                            _ => H264Packet::FuA {
                                idr: key,
                                start: i == usize::from(key),
                                end,
                            },
                        };
                        h264_payload(self.ssrc, seq as u16, part, layers, size)
                    }
                };
                let mut p = Vec::with_capacity(1 + dd.len() + body.len());
                if av1.codec != (LayeredCodec::H264 { descriptor: false }) {
                    p.push(dd.len() as u8);
                    p.extend_from_slice(&dd);
                }
                p.extend_from_slice(&body);
                out.push(OutPacket {
                    seq,
                    timestamp: self.timestamp,
                    marker: end && sid + 1 == av1.spatial_layers,
                    payload: p,
                    audio_level: None,
                });
            }
            av1.frame_number = av1.frame_number.wrapping_add(1);
        }
        av1.since_key += 1;
        self.av1 = Some(av1);
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

/// An AV1 payload of `len` bytes (as it leaves the client, without the descriptor in front):
/// an aggregation header (Z: continues a frame, Y: continues in the next packet, N: starts a
/// coded video sequence, from `(start, end, new_sequence)`), [`AV1_MAGIC`], SSRC and sequence
/// number, the frame's spatial and temporal layer, then filler.
pub fn av1_payload(
    ssrc: u32,
    seq: u16,
    (start, end, new_sequence): (bool, bool, bool),
    (spatial, temporal): (u8, u8),
    len: usize,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    p.push(u8::from(!start) << 7 | u8::from(!end) << 6 | u8::from(new_sequence) << 3);
    p.push(AV1_MAGIC);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.push(spatial);
    p.push(temporal);
    fill(&mut p, ssrc, seq, len);
    p
}

/// How an [`h264_payload`] carries its piece of a frame (RFC 6184 packetization mode 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Packet {
    /// A single NAL unit: an IDR slice (`idr`) or a non-IDR slice.
    Single {
        /// An IDR slice.
        idr: bool,
    },
    /// A STAP-A of an SPS, a PPS and an IDR slice.
    StapA,
    /// A fragment (FU-A) of an IDR or a non-IDR slice.
    FuA {
        /// Of an IDR slice.
        idr: bool,
        /// The first fragment.
        start: bool,
        /// The last fragment.
        end: bool,
    },
}

impl H264Packet {
    /// Whether the packet starts an IDR picture as a receiver tells it (RFC 6184: an IDR
    /// slice or a parameter set, alone, aggregated, or in a first fragment).
    pub fn starts_idr(self) -> bool {
        match self {
            Self::Single { idr } => idr,
            Self::StapA => true,
            Self::FuA { idr, start, .. } => idr && start,
        }
    }
}

/// The SPS and PPS of [`H264Packet::StapA`] (constrained baseline, level 3.1).
const H264_PARAMETER_SETS: [[u8; 4]; 2] = [[0x67, 0x42, 0xe0, 0x1f], [0x68, 0xce, 0x3c, 0x80]];

/// An H264 payload of `len` bytes (at least 24) laid out as `part` says, the slice it carries
/// being [`H264_MAGIC`], SSRC and sequence number, the frame's spatial and temporal layer,
/// then filler.
pub fn h264_payload(
    ssrc: u32,
    seq: u16,
    part: H264Packet,
    (spatial, temporal): (u8, u8),
    len: usize,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    match part {
        H264Packet::Single { idr } => p.push(if idr { 0x65 } else { 0x41 }),
        H264Packet::StapA => {
            p.push(0x78);
            for nal in H264_PARAMETER_SETS {
                p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
                p.extend_from_slice(&nal);
            }
            let slice = len.saturating_sub(p.len() + 2).max(9);
            p.extend_from_slice(&(slice as u16).to_be_bytes());
            p.push(0x65);
        }
        H264Packet::FuA { idr, start, end } => {
            p.push(if idr { 0x7c } else { 0x5c });
            p.push(u8::from(start) << 7 | u8::from(end) << 6 | if idr { 5 } else { 1 });
        }
    }
    p.push(H264_MAGIC);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.push(spatial);
    p.push(temporal);
    fill(&mut p, ssrc, seq, len);
    p
}

/// What an intact [`h264_payload`] says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264PayloadInfo {
    /// How it was packetized.
    pub packet: H264Packet,
    /// The source SSRC.
    pub ssrc: u32,
    /// The source sequence number.
    pub seq: u16,
    /// The frame's spatial layer.
    pub spatial: u8,
    /// The frame's temporal layer.
    pub temporal: u8,
}

/// Regenerates an [`h264_payload`] from what it embeds and compares every byte. `None` when
/// it is not one or was altered.
pub fn verify_h264_payload(p: &[u8]) -> Option<H264PayloadInfo> {
    let (packet, at) = match *p.first()? & 0x1f {
        1 => (H264Packet::Single { idr: false }, 1),
        5 => (H264Packet::Single { idr: true }, 1),
        24 => (H264Packet::StapA, 1 + 2 * (2 + 4) + 3),
        28 => {
            let fu = *p.get(1)?;
            let packet = H264Packet::FuA {
                idr: fu & 0x1f == 5,
                start: fu & 0x80 != 0,
                end: fu & 0x40 != 0,
            };
            (packet, 2)
        }
        _ => return None,
    };
    if *p.get(at)? != H264_MAGIC {
        return None;
    }
    let ssrc = u32::from_be_bytes(p.get(at + 1..at + 5)?.try_into().ok()?);
    let seq = u16::from_be_bytes(p.get(at + 5..at + 7)?.try_into().ok()?);
    let (spatial, temporal) = (*p.get(at + 7)?, *p.get(at + 8)?);
    let info = H264PayloadInfo {
        packet,
        ssrc,
        seq,
        spatial,
        temporal,
    };
    (h264_payload(ssrc, seq, packet, (spatial, temporal), p.len()) == p).then_some(info)
}

/// What an intact [`av1_payload`] says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Av1PayloadInfo {
    /// The source SSRC.
    pub ssrc: u32,
    /// The source sequence number.
    pub seq: u16,
    /// The frame's spatial layer.
    pub spatial: u8,
    /// The frame's temporal layer.
    pub temporal: u8,
}

/// Regenerates an [`av1_payload`] from what it embeds and compares every byte. `None` when
/// it is not one or was altered.
pub fn verify_av1_payload(p: &[u8]) -> Option<Av1PayloadInfo> {
    if *p.get(1)? != AV1_MAGIC {
        return None;
    }
    let ssrc = u32::from_be_bytes(p.get(2..6)?.try_into().ok()?);
    let seq = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?);
    let (spatial, temporal) = (*p.get(8)?, *p.get(9)?);
    let a = p[0];
    let flags = (a & 0x80 == 0, a & 0x40 == 0, a & 0x08 != 0);
    (av1_payload(ssrc, seq, flags, (spatial, temporal), p.len()) == p).then_some(Av1PayloadInfo {
        ssrc,
        seq,
        spatial,
        temporal,
    })
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

    /// The AV1 sources' descriptors, read back as a receiver of every packet reads them:
    /// each frame refers only to earlier frames of its own spatial layer (in a key picture, to
    /// the layer below), every frame it refers to is in each decode target it belongs to, and
    /// each chain difference names the chain's previous frame (key frames of the layers up to
    /// the chain's, and the chain's own temporal layer 0 frames).
    #[test]
    fn av1_descriptors_describe_the_frames_sent() {
        let t0 = Instant::now();
        for (mut source, layers) in [
            (Source::av1_l1t3(4400, t0), 1usize),
            (Source::av1_l3t3_key(5500, t0), 3),
        ] {
            let mut reader = crate::dd::Reader::default();
            // Frame number -> (spatial, temporal, the decode targets it is in).
            let mut frames: std::collections::HashMap<u16, (u8, u8, Vec<bool>)> =
                Default::default();
            let mut chain_last: Vec<Option<u16>> = vec![None; layers];
            let mut packets = source.poll(t0 + Duration::from_secs(2));
            source.request_key_frame();
            packets.extend(source.poll(t0 + Duration::from_secs(3)));
            assert!(packets.len() > 100);
            for p in &packets {
                let len = usize::from(p.payload[0]);
                assert!(len < 100, "a descriptor of {len} bytes");
                let f = reader.read(&p.payload[1..=len]).unwrap();
                let s = reader.structure().unwrap();
                assert_eq!(usize::from(s.decode_targets), 3 * layers);
                let info = verify_av1_payload(&p.payload[1 + len..]).unwrap();
                assert_eq!((info.spatial, info.temporal), (f.spatial, f.temporal));
                if !f.start_of_frame {
                    continue;
                }
                let key = f.new_structure
                    || f.referred
                        .iter()
                        .any(|r| frames.get(r).is_some_and(|x| x.0 != f.spatial));
                let used: Vec<bool> = f
                    .dtis
                    .iter()
                    .map(|&d| d != crate::dd::Dti::NotPresent)
                    .collect();
                for r in &f.referred {
                    let (rs, rt, ref rused) = frames[r];
                    assert!(rt <= f.temporal, "frame {} refers up", f.frame_number);
                    assert!(rs == f.spatial || (key && rs + 1 == f.spatial));
                    for (dt, &u) in used.iter().enumerate() {
                        assert!(
                            !u || rused[dt],
                            "frame {} in target {dt}, {r} not",
                            f.frame_number
                        );
                    }
                }
                for (c, last) in chain_last.iter_mut().enumerate() {
                    let d = f.chain_fdiffs[c];
                    let previous = (d != 0).then(|| f.frame_number.wrapping_sub(u16::from(d)));
                    if f.new_structure {
                        assert_eq!(previous, None);
                    } else {
                        assert_eq!(previous, *last, "frame {} chain {c}", f.frame_number);
                    }
                    let in_chain = (key && usize::from(f.spatial) <= c)
                        || (usize::from(f.spatial) == c && f.temporal == 0);
                    if in_chain {
                        *last = Some(f.frame_number);
                    }
                }
                frames.insert(f.frame_number, (f.spatial, f.temporal, used));
            }
        }
    }

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
