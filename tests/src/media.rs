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
        }
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
