//! The VP9 RTP payload descriptor (RFC 9628, section 4.2).
//!
//! ```text
//! |I|P|L|F|B|E|V|Z|   I: picture id; P: inter-picture predicted; L: layer indices;
//!                     F: flexible mode; B/E: begins/ends a frame; V: scalability structure;
//!                     Z: not a reference for the upper spatial layer
//! |M| PICTURE ID  |   (if I; a second byte when M)
//! |TID|U| SID |D|     (if L) temporal layer, switching up point, spatial layer, inter-layer
//! |  TL0PICIDX    |   (if L and not F)
//! | P_DIFF      |N|   (if P and F; up to 3, N: another follows)
//! | SS            |   (if V)
//! ```
//!
//! A key frame (a point where decoding can start) is a frame with P = 0 on the base spatial
//! layer, in the packet where it begins (B).

use super::{Descriptor, Reader};

/// Reference differences a flexible-mode frame may list.
pub(crate) const MAX_P_DIFFS: usize = 3;

/// Spatial layers a scalability structure may describe.
pub(crate) const MAX_SPATIAL: usize = 8;

/// A parsed VP9 payload descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Vp9Descriptor {
    /// I, P, L, F, B, E, V, Z.
    pub(crate) flags: u8,
    pub(crate) picture_id: Option<u16>,
    pub(crate) temporal: u8,
    pub(crate) switch_up: bool,
    pub(crate) spatial: u8,
    pub(crate) inter_layer: bool,
    pub(crate) tl0_pic_idx: Option<u8>,
    /// Flexible mode: the picture id differences of the references (first `n_p_diffs`).
    pub(crate) p_diffs: [u8; MAX_P_DIFFS],
    pub(crate) n_p_diffs: u8,
    /// The scalability structure, when the packet carries one (V).
    pub(crate) ss: Option<ScalabilityStructure>,
    /// Where the packet begins a frame: whether the frame's own uncompressed header says it
    /// is a key frame (`None`: no header readable there).
    pub(crate) header_key_frame: Option<bool>,
}

/// The scalability structure (SS): the spatial layers' resolutions and, optionally, the
/// picture group's temporal pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScalabilityStructure {
    /// Number of spatial layers (N_S + 1).
    pub(crate) spatial_layers: u8,
    /// Width and height of each spatial layer, when given (Y).
    pub(crate) resolutions: Option<[(u16, u16); MAX_SPATIAL]>,
    /// Pictures in the picture group (N_G), when given (G).
    pub(crate) group_size: u8,
}

const I: u8 = 0x80;
const P: u8 = 0x40;
const L: u8 = 0x20;
const F: u8 = 0x10;
const B: u8 = 0x08;
const E: u8 = 0x04;
const V: u8 = 0x02;

/// Parses a VP9 payload descriptor; `None` when it is truncated or malformed.
pub(crate) fn parse(payload: &[u8]) -> Option<Vp9Descriptor> {
    let mut r = Reader::new(payload);
    let flags = r.u8()?;
    let mut d = Vp9Descriptor {
        flags,
        ..Vp9Descriptor::default()
    };
    if flags & I != 0 {
        d.picture_id = Some(r.picture_id()?);
    }
    if flags & L != 0 {
        let l = r.u8()?;
        d.temporal = l >> 5;
        d.switch_up = l & 0x10 != 0;
        d.spatial = (l >> 1) & 0x07;
        d.inter_layer = l & 0x01 != 0;
        if flags & F == 0 {
            d.tl0_pic_idx = Some(r.u8()?);
        }
    }
    if flags & F != 0 && flags & P != 0 {
        loop {
            let diff = r.u8()?;
            let slot = d.p_diffs.get_mut(usize::from(d.n_p_diffs))?;
            *slot = diff >> 1;
            d.n_p_diffs += 1;
            if diff & 0x01 == 0 {
                break;
            }
        }
    }
    if flags & V != 0 {
        d.ss = Some(scalability_structure(&mut r)?);
    }
    if flags & B != 0 {
        d.header_key_frame = r.u8().and_then(header_key_frame);
    }
    Some(d)
}

/// What the first byte of a VP9 frame's uncompressed header says: `Some(true)` for a key
/// frame, `Some(false)` for an inter frame or a repeated frame (show_existing_frame), `None`
/// when the byte does not start a frame header (its frame marker is not 2).
fn header_key_frame(b: u8) -> Option<bool> {
    if b >> 6 != 2 {
        return None;
    }
    let profile = (b >> 5 & 1) | (b >> 4 & 1) << 1;
    // Profile 3 has a reserved bit before show_existing_frame.
    let rest = if profile == 3 { b << 5 } else { b << 4 };
    let show_existing = rest & 0x80 != 0;
    let inter = rest & 0x40 != 0;
    Some(!show_existing && !inter)
}

fn scalability_structure(r: &mut Reader<'_>) -> Option<ScalabilityStructure> {
    let b = r.u8()?;
    let n_s = usize::from(b >> 5) + 1;
    let mut ss = ScalabilityStructure {
        spatial_layers: n_s as u8,
        ..ScalabilityStructure::default()
    };
    if b & 0x10 != 0 {
        let mut res = [(0u16, 0u16); MAX_SPATIAL];
        for slot in res.iter_mut().take(n_s) {
            *slot = (r.u16()?, r.u16()?);
        }
        ss.resolutions = Some(res);
    }
    if b & 0x08 != 0 {
        ss.group_size = r.u8()?;
        for _ in 0..ss.group_size {
            let g = r.u8()?;
            let refs = usize::from((g >> 2) & 0x03);
            r.skip(refs)?;
        }
    }
    Some(ss)
}

impl Vp9Descriptor {
    /// Whether the frame is predicted from earlier pictures (P).
    pub(crate) fn inter_picture(&self) -> bool {
        self.flags & P != 0
    }

    /// Whether the packet begins a frame (B).
    pub(crate) fn begins_frame(&self) -> bool {
        self.flags & B != 0
    }

    /// Whether the packet ends a frame (E).
    pub(crate) fn ends_frame(&self) -> bool {
        self.flags & E != 0
    }

    /// Flexible mode (F): references are listed as picture id differences.
    #[cfg(test)]
    pub(crate) fn flexible(&self) -> bool {
        self.flags & F != 0
    }

    /// Whether the packet starts a key frame: not inter-picture predicted, on the base
    /// spatial layer, where the frame begins, and not an inter frame by its own header (some
    /// packetizers, ffmpeg's among them, never set P).
    pub(crate) fn key_frame(&self) -> bool {
        !self.inter_picture()
            && self.begins_frame()
            && self.spatial == 0
            && !self.inter_layer
            && self.header_key_frame != Some(false)
    }

    /// The codec-neutral view.
    pub(crate) fn descriptor(&self) -> Descriptor {
        Descriptor {
            has_layers: self.flags & L != 0,
            spatial: self.spatial,
            temporal: self.temporal,
            switch_up: self.switch_up,
            switch_up_to: 0,
            begins_frame: self.begins_frame(),
            ends_frame: self.ends_frame(),
            inter_picture: self.inter_picture(),
            inter_layer: self.inter_layer,
            key_frame: self.key_frame(),
            picture_id: self.picture_id,
            tl0_pic_idx: self.tl0_pic_idx,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unusual_byte_groupings)] // Binary literals grouped by descriptor field.
pub(crate) mod tests {
    use super::*;

    /// A key frame's first packet with picture id 0x0102 (15 bits), L (TID 0, U, SID 0),
    /// TL0PICIDX 9, and an SS of three spatial layers with resolutions and a 4-picture group.
    pub(crate) fn key_frame_with_ss() -> Vec<u8> {
        let mut v = vec![I | L | B | V, 0x81, 0x02, 0b000_1_000_0, 9];
        v.push(0b010_1_1_000); // N_S = 2, Y, G
        for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
            v.extend_from_slice(&w.to_be_bytes());
            v.extend_from_slice(&h.to_be_bytes());
        }
        v.push(4); // N_G
                   // TID 0 R 1 (P_DIFF 4); TID 2 U R 1 (1); TID 1 U R 1 (2); TID 2 U R 1 (1).
        for (tid, u, diff) in [(0u8, 0u8, 4u8), (2, 1, 1), (1, 1, 2), (2, 1, 1)] {
            v.push(tid << 5 | u << 4 | 1 << 2);
            v.push(diff);
        }
        v.push(0x82); // the frame header: marker 2, profile 0, key frame, shown
        v
    }

    #[test]
    fn the_frame_header_vetoes_inter_frames_without_p() {
        // B (and E), no P: a key frame only if its header says so.
        assert!(parse(&[B | E, 0x82, 0x49]).unwrap().key_frame());
        assert!(
            !parse(&[B | E, 0x86, 0x00]).unwrap().key_frame(),
            "inter frame"
        );
        assert!(
            !parse(&[B | E, 0x88]).unwrap().key_frame(),
            "show_existing_frame"
        );
        // Profile 1 and profile 3 (a reserved bit first).
        assert!(parse(&[B, 0b10_1_0_0_0_1_0]).unwrap().key_frame());
        assert!(!parse(&[B, 0b10_1_0_0_1_1_0]).unwrap().key_frame());
        assert!(parse(&[B, 0b10_1_1_0_0_0_1]).unwrap().key_frame());
        assert!(!parse(&[B, 0b10_1_1_0_0_1_0]).unwrap().key_frame());
        // No header there (not a frame marker, or no byte): the descriptor alone decides.
        assert!(parse(&[B, 0x49]).unwrap().key_frame());
        assert!(parse(&[B]).unwrap().key_frame());
        assert!(!parse(&[P | B, 0x82]).unwrap().key_frame());
    }

    #[test]
    fn key_frame_with_scalability_structure() {
        let d = parse(&key_frame_with_ss()).unwrap();
        assert_eq!(d.picture_id, Some(0x0102));
        assert_eq!((d.temporal, d.spatial), (0, 0));
        assert!(d.switch_up && !d.inter_layer);
        assert_eq!(d.tl0_pic_idx, Some(9));
        assert!(d.key_frame());
        let ss = d.ss.unwrap();
        assert_eq!(ss.spatial_layers, 3);
        assert_eq!(ss.resolutions.unwrap()[2], (1280, 720));
        assert_eq!(ss.group_size, 4);
    }

    #[test]
    fn upper_spatial_layer_of_a_key_picture_is_not_a_key_frame() {
        // SID 1 with D: P = 0 but it needs the base layer of its picture.
        let d = parse(&[I | L | B | E, 0x05, 0b000_0_001_1, 9]).unwrap();
        assert_eq!(d.spatial, 1);
        assert!(d.inter_layer && !d.inter_picture());
        assert!(!d.key_frame());
        // A delta frame on the base layer.
        let d = parse(&[I | P | L | B, 0x05, 0b010_1_000_0, 9]).unwrap();
        assert!(!d.key_frame());
        assert_eq!(d.temporal, 2);
        // Not the first packet of the frame.
        let d = parse(&[I | L | E, 0x05, 0, 9]).unwrap();
        assert!(!d.key_frame());
        // No layer indices: a single-layer stream's key frame.
        assert!(parse(&[B]).unwrap().key_frame());
    }

    #[test]
    fn flexible_mode() {
        // F, P: layer indices without TL0PICIDX, then two P_DIFFs (3 with N, then 1).
        let d = parse(&[
            I | P | L | F | B,
            0x07,
            0b001_0_000_0,
            3 << 1 | 1,
            1 << 1,
            0xaa,
        ])
        .unwrap();
        assert!(d.flexible());
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!(d.temporal, 1);
        assert_eq!(&d.p_diffs[..usize::from(d.n_p_diffs)], &[3, 1]);
        assert!(!d.key_frame());
        // A flexible-mode key frame: P = 0, so no P_DIFF.
        let d = parse(&[I | L | F | B, 0x07, 0]).unwrap();
        assert!(d.key_frame());
        // More than three P_DIFFs is malformed.
        assert_eq!(parse(&[P | F, 3, 3, 3, 2]), None);
    }

    #[test]
    fn truncated_descriptors_do_not_parse() {
        let full = key_frame_with_ss();
        // Everything up to the end of the SS is required.
        for cut in 0..full.len() - 1 {
            assert_eq!(parse(&full[..cut]), None, "cut at {cut}");
        }
        assert!(parse(&full[..full.len() - 1]).is_some());
        assert_eq!(parse(&[I | P | L | F, 0x07, 0, 3 << 1 | 1]), None);
    }
}
