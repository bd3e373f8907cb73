//! Video payload descriptors: what the first bytes of a VP8 or VP9 RTP payload (for AV1, and
//! H264 with layers, the dependency descriptor header extension) say about the frame a packet
//! belongs to (its layers, where it starts and ends, whether it is a key frame).
//!
//! Each incoming packet is parsed once at ingress into a [`Descriptor`], a small `Copy` value
//! the forwarding code reads for every consumer. Network input is hostile: a truncated or
//! malformed descriptor parses to `None`, and the packet is then neither a key frame nor a
//! switching point.

pub(crate) mod dd;
pub(crate) mod vp8;
pub(crate) mod vp9;

use crate::keyframe::VideoCodec;

/// What a packet's payload descriptor says about its frame, in codec-neutral terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// Whether the descriptor carried layer indices (temporal, and spatial for VP9).
    pub(crate) has_layers: bool,
    /// The spatial layer (VP9 SID; 0 without layer indices).
    pub(crate) spatial: u8,
    /// The temporal layer (TID; 0 without layer indices).
    pub(crate) temporal: u8,
    /// A switching-up point: from here a receiver of the lower temporal layers may add this
    /// frame's temporal layer (VP9 U, VP8 Y).
    pub(crate) switch_up: bool,
    /// Dependency descriptor: the frame is a switch indication for decode targets of its
    /// spatial layer up to this temporal layer, so a receiver that gets the frame may go up to it from here (0:
    /// none; VP8 and VP9 say it per layer with `switch_up` instead).
    pub(crate) switch_up_to: u8,
    /// The packet begins a frame (VP9 B; VP8 S in partition 0).
    pub(crate) begins_frame: bool,
    /// The packet ends a frame (VP9 E); VP8 does not say (the marker bit does).
    pub(crate) ends_frame: bool,
    /// The frame is predicted from earlier pictures (VP9 P; VP8 inter frames).
    pub(crate) inter_picture: bool,
    /// The frame depends on the lower spatial layer of the same picture (VP9 D).
    pub(crate) inter_layer: bool,
    /// The packet starts a key frame: a receiver can start decoding here.
    pub(crate) key_frame: bool,
    /// The picture id (7 or 15 bits), if present.
    pub(crate) picture_id: Option<u16>,
    /// The index of the last picture of temporal layer 0, if present.
    pub(crate) tl0_pic_idx: Option<u8>,
}

/// Parses `payload`'s descriptor for `codec`. `None` for codecs without one this module reads
/// and for a truncated or malformed descriptor.
pub(crate) fn parse(codec: VideoCodec, payload: &[u8]) -> Option<Descriptor> {
    match codec {
        VideoCodec::Vp8 => vp8::parse(payload),
        VideoCodec::Vp9 => vp9::parse(payload).map(|d| d.descriptor()),
        _ => None,
    }
}

/// A cursor over untrusted bytes: every read is checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }

    /// A picture id: 7 bits, or 15 when the first bit (M) is set.
    pub(crate) fn picture_id(&mut self) -> Option<u16> {
        let b = self.u8()?;
        if b & 0x80 != 0 {
            Some(u16::from(b & 0x7f) << 8 | u16::from(self.u8()?))
        } else {
            Some(u16::from(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let _ = parse(VideoCodec::Vp8, &data);
            let _ = parse(VideoCodec::Vp9, &data);
            let _ = vp9::parse(&data);
        }

        #[test]
        fn truncations_of_a_full_vp9_descriptor_never_panic(cut in 0usize..64) {
            let full = vp9::tests::key_frame_with_ss();
            let _ = parse(VideoCodec::Vp9, &full[..cut.min(full.len())]);
        }
    }
}
