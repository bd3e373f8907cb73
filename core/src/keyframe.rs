//! Telling a key frame from its first RTP packet, per codec, without decoding.
//!
//! Used to start or switch a consumer's stream at a point where the receiver can decode.

/// The video codecs whose key frames can be recognized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
    /// A codec whose payload is not inspected; every packet counts as a decodable start.
    Other,
}

impl VideoCodec {
    pub(crate) fn from_mime(mime: &str) -> Self {
        let sub = mime.rsplit('/').next().unwrap_or("");
        match sub.to_ascii_lowercase().as_str() {
            "vp8" => Self::Vp8,
            "vp9" => Self::Vp9,
            "h264" => Self::H264,
            "av1" => Self::Av1,
            _ => Self::Other,
        }
    }
}

/// Whether `payload` (the RTP payload) starts a key frame.
pub(crate) fn is_key_frame(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8(payload),
        VideoCodec::Vp9 => vp9(payload),
        VideoCodec::H264 => h264(payload),
        VideoCodec::Av1 => av1(payload),
        VideoCodec::Other => true,
    }
}

/// RFC 7741: the payload descriptor, then the VP8 payload header whose P bit is 0 on key
/// frames.
fn vp8(p: &[u8]) -> bool {
    crate::codec::vp8::parse(p).is_some_and(|d| d.key_frame)
}

/// RFC 9628: a frame that is not inter-picture predicted (P = 0), on the base spatial layer,
/// where it begins (B); the same in flexible and non-flexible mode.
fn vp9(p: &[u8]) -> bool {
    crate::codec::vp9::parse(p).is_some_and(|d| d.key_frame())
}

/// RFC 6184: an IDR slice or SPS, alone, aggregated (STAP-A) or at the start of a fragment (FU-A).
fn h264(p: &[u8]) -> bool {
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let Some(&nal) = p.get(i + 2) else {
                    return false;
                };
                if size > 0 && is_key(nal & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
}

/// AV1 RTP aggregation header: N marks the first packet of a coded video sequence.
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|h| h & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_key_and_delta() {
        // S=1, PID=0, no extension; payload header P=0 (key frame).
        assert!(vp8(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Same but P=1 (inter frame).
        assert!(!vp8(&[0x10, 0x01]));
        // Extended, picture id 15 bit, TL0PICIDX, TID.
        assert!(vp8(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x00]));
        assert!(!vp8(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x01]));
        // Not the start of a partition.
        assert!(!vp8(&[0x00, 0x00]));
        assert!(!vp8(&[]));
        assert!(!vp8(&[0x90]));
    }

    #[test]
    fn h264_kinds() {
        assert!(h264(&[0x65, 0x88])); // IDR
        assert!(h264(&[0x67, 0x42])); // SPS
        assert!(!h264(&[0x41, 0x9a])); // non-IDR slice
        assert!(h264(&[0x7c, 0x85, 0x00])); // FU-A start of IDR
        assert!(!h264(&[0x7c, 0x05, 0x00])); // FU-A middle of IDR
        assert!(h264(&[
            0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce
        ])); // STAP-A with SPS
        assert!(!h264(&[0x78, 0x00, 0x09])); // truncated STAP-A
    }

    #[test]
    fn vp9_and_av1() {
        assert!(vp9(&[0x08]));
        assert!(!vp9(&[0x48]));
        assert!(!vp9(&[0x00]));
        // Flexible mode with layer indices: key frame on SID 0; not on SID 1 (inter-layer).
        assert!(vp9(&[0xb8, 0x05, 0x00]));
        assert!(!vp9(&[0xb8, 0x05, 0x03]));
        // Non-flexible SVC: the base layer's P = 0 start is a key frame; an inter-picture
        // predicted one is not; a truncated descriptor is not.
        assert!(vp9(&[0xa8, 0x05, 0x00, 0x07]));
        assert!(!vp9(&[0xe8, 0x05, 0x00, 0x07]));
        assert!(!vp9(&[0xa8, 0x05, 0x00]));
        assert!(av1(&[0x08]));
        assert!(!av1(&[0x10]));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            for c in [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264, VideoCodec::Av1, VideoCodec::Other] {
                let _ = is_key_frame(c, &data);
            }
        }
    }
}
