//! The VP8 RTP payload descriptor (RFC 7741, section 4.2).
//!
//! ```text
//! |X|R|N|S|R| PID |   X: extensions follow; S: start of a partition; PID: partition index
//! |I|L|T|K| RSV   |   (if X) I: picture id; L: TL0PICIDX; T: TID/Y; K: KEYIDX
//! |M| PictureID   |   (if I; a second byte when M)
//! |  TL0PICIDX    |   (if L)
//! |TID|Y| KEYIDX  |   (if T or K)
//! ```
//!
//! The VP8 payload header follows on the first packet of a frame; its lowest bit (P) is 0 on
//! key frames.

use super::{Descriptor, Reader};

/// Parses a VP8 payload descriptor; `None` when it is truncated.
pub(crate) fn parse(payload: &[u8]) -> Option<Descriptor> {
    let mut r = Reader::new(payload);
    let b0 = r.u8()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut d = Descriptor {
        begins_frame: start,
        ..Descriptor::default()
    };
    if b0 & 0x80 != 0 {
        let x = r.u8()?;
        if x & 0x80 != 0 {
            d.picture_id = Some(r.picture_id()?);
        }
        if x & 0x40 != 0 {
            d.tl0_pic_idx = Some(r.u8()?);
        }
        if x & 0x30 != 0 {
            let t = r.u8()?;
            if x & 0x20 != 0 {
                d.has_layers = true;
                d.temporal = t >> 6;
                d.switch_up = t & 0x20 != 0;
            }
        }
    }
    if start {
        // The payload header's P bit: 0 on key frames.
        let header = r.u8()?;
        d.inter_picture = header & 0x01 != 0;
        d.key_frame = !d.inter_picture;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_key_frame_start() {
        let d = parse(&[0x10, 0x00, 0x9d]).unwrap();
        assert!(d.key_frame && d.begins_frame && !d.has_layers);
        let d = parse(&[0x10, 0x01]).unwrap();
        assert!(!d.key_frame && d.inter_picture);
        // A later partition does not start the frame.
        let d = parse(&[0x11, 0x00]).unwrap();
        assert!(!d.begins_frame && !d.key_frame);
    }

    #[test]
    fn extended_fields() {
        // X; I L T; 15-bit picture id 0x1234; TL0PICIDX 7; TID 2, Y; then an inter frame.
        let d = parse(&[0x90, 0xe0, 0x92, 0x34, 0x07, 0xa0, 0x01]).unwrap();
        assert_eq!(d.picture_id, Some(0x1234));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert!(d.has_layers);
        assert_eq!(d.temporal, 2);
        assert!(d.switch_up);
        assert!(!d.key_frame);
        // 7-bit picture id, TID 0 without Y, key frame.
        let d = parse(&[0x90, 0xa0, 0x05, 0x00, 0x00]).unwrap();
        assert_eq!(d.picture_id, Some(5));
        assert_eq!(d.temporal, 0);
        assert!(!d.switch_up && d.key_frame);
        // K alone: the byte is there but carries no temporal layer.
        let d = parse(&[0x80, 0x10, 0xff]).unwrap();
        assert!(!d.has_layers && d.temporal == 0);
    }

    #[test]
    fn truncated() {
        let full = [0x90, 0xe0, 0x92, 0x34, 0x07, 0xa0, 0x01];
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), None, "cut at {cut}");
        }
    }
}
