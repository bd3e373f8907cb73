//! The dependency descriptor header extension in the codec-neutral view: the layers of a
//! stream whose payload does not say them (AV1, and H264 as browsers send temporal layers).
//!
//! The descriptor's template structure arrives on the first packet of each coded video
//! sequence (a key frame); later packets name one of its templates. A key frame is the start
//! of a spatial layer 0 frame that the codec's payload says is one (H264: an IDR slice or a
//! parameter set) or, for a codec whose payload does not say (AV1), that carries a new
//! structure. A switching-up point is a frame that
//! is a switch indication for a decode target of its own temporal layer (from there that target
//! decodes); a frame that is a switch indication for a target of its own spatial layer needs no
//! earlier picture of that layer, and a frame that is a switch indication for decode targets of
//! higher temporal layers lets a receiver that gets it go up to them.

use super::Descriptor;
use crate::keyframe::{is_key_frame, VideoCodec};
use crate::media::dd::{Dti, FrameInfo, Parser, Structure};

/// Parses one packet's dependency descriptor `bytes` with the stream's `parser`; `codec` and
/// `payload` are the packet's, read only at the start of a frame to tell a key frame. `None`
/// when the descriptor does not parse (see [`Parser::parse`]): no structure yet, an unknown
/// template, garbage.
pub(crate) fn parse(
    parser: &mut Parser,
    bytes: &[u8],
    codec: VideoCodec,
    payload: &[u8],
) -> Option<Descriptor> {
    let frame = parser.parse(bytes).ok()?;
    let structure = parser.structure()?;
    let key_frame = frame.start_of_frame
        && frame.spatial_id == 0
        && match codec {
            VideoCodec::H264 | VideoCodec::Vp8 | VideoCodec::Vp9 => is_key_frame(codec, payload),
            VideoCodec::Av1 | VideoCodec::Other => frame.new_structure,
        };
    Some(descriptor(&frame, structure, key_frame))
}

fn descriptor(f: &FrameInfo, s: &Structure, key_frame: bool) -> Descriptor {
    // One pass over the decode targets the frame is a switch indication for: one of its own
    // temporal layer (a switching-up point), one of its own spatial layer (it needs no earlier
    // picture of that layer), and the highest temporal layer among the latter.
    let (mut own_temporal, mut own_spatial, mut switch_up_to) = (false, false, 0);
    for dt in 0..s.decode_targets() {
        if f.dti(dt) != Dti::Switch {
            continue;
        }
        let Some((sid, tid)) = s.target_layers(dt) else {
            continue;
        };
        own_temporal |= tid == f.temporal_id;
        if sid == f.spatial_id {
            own_spatial = true;
            switch_up_to = switch_up_to.max(tid);
        }
    }
    Descriptor {
        has_layers: true,
        spatial: f.spatial_id,
        temporal: f.temporal_id,
        switch_up: key_frame || own_temporal,
        switch_up_to,
        begins_frame: f.start_of_frame,
        ends_frame: f.end_of_frame,
        inter_picture: !(key_frame || own_spatial),
        inter_layer: refers_to_layer_below(f),
        key_frame,
        picture_id: Some(f.frame_number),
        tl0_pic_idx: None,
    }
}

/// Whether frame `f` refers to a lower spatial layer of its own picture. The frames of a
/// picture are numbered one after the other from its lowest spatial layer up, so the frames
/// below spatial layer `s` in the same picture are at most `s` frames back.
fn refers_to_layer_below(f: &FrameInfo) -> bool {
    let below = u16::from(f.spatial_id);
    f.referred()
        .any(|r| (1..=below).contains(&f.frame_number.wrapping_sub(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key frame (template 0, frame 100) carrying an L1T3 structure: templates S0T0 key
    /// (no references), S0T0 (refers 4 back), S0T1 (2 back), S0T2 (1 back); decode targets
    /// T0, T0+T1 and all, their indications S S S / S S S / - D R / - - D; one chain.
    const KEY_WITH_STRUCTURE: [u8; 14] = [
        0xC0, 0x00, 0x64, 0x80, 0x02, 0x17, 0xAA, 0xA1, 0xC1, 0x4D, 0x14, 0x08, 0x21, 0x08,
    ];

    fn av1(parser: &mut Parser, bytes: &[u8]) -> Option<Descriptor> {
        parse(parser, bytes, VideoCodec::Av1, &[])
    }

    #[test]
    fn frames_in_the_codec_neutral_view() {
        let mut p = Parser::default();
        let Some(key) = av1(&mut p, &KEY_WITH_STRUCTURE) else {
            panic!("structure refused");
        };
        assert!(key.key_frame && key.begins_frame && key.ends_frame && key.switch_up);
        assert!(!key.inter_picture);
        assert_eq!((key.spatial, key.temporal), (0, 0));
        // Template 3 (T2), frame 101, start only.
        let t2 = av1(&mut p, &[0x83, 0x00, 0x65]).unwrap();
        assert!(!t2.key_frame && t2.begins_frame && !t2.ends_frame);
        assert_eq!(t2.temporal, 2);
        assert!(!t2.switch_up, "a discardable frame is no switching point");
        assert_eq!(t2.picture_id, Some(101));
        assert!(av1(&mut p, &[0x80]).is_none(), "truncated");
        assert!(
            av1(&mut p, &[0x85, 0x00, 0x65]).is_none(),
            "unknown template"
        );
        // Template 2 (T1): a switching point for the T0+T1 target? No: discardable there.
        let t1 = av1(&mut p, &[0xC2, 0x00, 0x66]).unwrap();
        assert_eq!(t1.temporal, 1);
        assert!(!t1.switch_up && t1.inter_picture);
        assert_eq!(t1.switch_up_to, 0);
        // Template 1 (T0): a switch indication for every target.
        let t0 = av1(&mut p, &[0xC1, 0x00, 0x68]).unwrap();
        assert!(t0.switch_up && !t0.key_frame && !t0.inter_picture);
        assert_eq!(
            t0.switch_up_to, 2,
            "a switch point for every target up to T2"
        );
        assert!(
            av1(&mut Parser::default(), &[0x83, 0x00, 0x65]).is_none(),
            "no structure"
        );
        // The layers of a stored packet, from its template id alone.
        let s = p.structure().unwrap();
        assert_eq!(s.frame_layers(&[0x83, 0x00, 0x65]), Some((0, 2)));
        assert_eq!(s.frame_layers(&[0xC2]), Some((0, 1)));
        assert_eq!(
            s.frame_layers(&[0x85, 0x00, 0x65]),
            None,
            "unknown template"
        );
        assert_eq!(s.frame_layers(&[]), None);
    }

    #[test]
    fn inter_layer_means_a_reference_to_the_layer_below_in_the_picture() {
        use crate::media::dd::tests::{l3t1, write, Packet};
        let desc = l3t1(0);
        let mut p = Parser::default();
        let mut frame = |template_id: u8, frame_number: u16, fdiffs: Option<Vec<u16>>| {
            let bytes = write(&Packet {
                start: true,
                end: true,
                template_id,
                frame_number,
                structure: (frame_number == 10).then_some(&desc),
                fdiffs,
                ..Packet::default()
            });
            av1(&mut p, &bytes).unwrap().inter_layer
        };
        // A key picture: S0 refers to nothing, S1 and S2 to the layer below.
        assert!(!frame(0, 10, None), "the key frame refers to nothing");
        assert!(frame(2, 11, None), "S1 predicted from S0 of its picture");
        assert!(frame(4, 12, None), "S2 predicted from S1 of its picture");
        // A delta picture: S0 refers to its own layer, S1 and S2 to theirs and the one below.
        assert!(!frame(1, 13, None), "S0 refers to the S0 before");
        assert!(frame(3, 14, None));
        assert!(frame(5, 15, None));
        // Overridden references: to its own layer only, or to nothing at all.
        assert!(!frame(3, 17, Some(vec![3])), "S1 refers to the S1 before");
        assert!(!frame(5, 18, Some(vec![])), "S2 refers to nothing");
    }

    #[test]
    fn h264_key_frames_come_from_the_payload_and_layers_from_the_descriptor() {
        let mut p = Parser::default();
        let h264 = |p: &mut Parser, bytes: &[u8], payload: &[u8]| {
            parse(p, bytes, VideoCodec::H264, payload).unwrap()
        };
        // The structure on an IDR frame's first packet: a STAP-A with SPS and PPS.
        let stap_a = [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce];
        let key = h264(&mut p, &KEY_WITH_STRUCTURE, &stap_a);
        assert!(key.key_frame && key.switch_up && !key.inter_picture);
        // The same structure again on a frame that is not an IDR (a non-IDR slice, the middle
        // of an IDR's fragments): no key frame, whatever the descriptor carries.
        assert!(!h264(&mut p, &KEY_WITH_STRUCTURE, &[0x41, 0x9a]).key_frame);
        assert!(!h264(&mut p, &KEY_WITH_STRUCTURE, &[0x7c, 0x05, 0x00]).key_frame);
        // An IDR alone or starting its fragments, at the start of a T0 frame (template 1).
        for idr in [&[0x65, 0x88][..], &[0x7c, 0x85, 0x00]] {
            let d = h264(&mut p, &[0xC1, 0x00, 0x68], idr);
            assert!(d.key_frame && d.switch_up && !d.inter_picture, "{idr:?}");
        }
        // An IDR fragment that does not start the frame starts no key frame.
        assert!(!h264(&mut p, &[0x41, 0x00, 0x68], &[0x7c, 0x85, 0x00]).key_frame);
        // Layers and switching points from the descriptor: a T2 frame (template 3).
        let t2 = h264(&mut p, &[0x83, 0x00, 0x69], &[0x41, 0x9a]);
        assert!(!t2.key_frame && !t2.switch_up && t2.begins_frame && !t2.ends_frame);
        assert_eq!((t2.spatial, t2.temporal, t2.picture_id), (0, 2, Some(0x69)));
        // AV1 takes the key frame from the structure, whatever the payload.
        assert!(av1(&mut p, &KEY_WITH_STRUCTURE).unwrap().key_frame);
        assert!(!av1(&mut p, &[0xC1, 0x00, 0x6a]).unwrap().key_frame);
    }
}
