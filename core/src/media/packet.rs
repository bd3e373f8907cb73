//! RTP packets: a checked view of the header, CSRCs, extension block and payload.

/// The length of an RTP packet's header (fixed part, CSRCs and extension block), or `None` when
/// the buffer is not long enough to hold the header it announces or is not RTP version 2.
pub fn header_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(buf[0] & 0x0f);
    if buf[0] & 0x10 != 0 {
        let words = buf.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= buf.len()).then_some(len)
}
