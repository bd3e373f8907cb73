//! RFC 4571 framing for ICE-TCP: each datagram travels as a 16-bit big-endian length and the
//! bytes. Sans-IO, so both runtimes share it: feed whatever a read returned, take out whole
//! frames; prefix outgoing datagrams with [`frame_header`].

/// The largest frame a peer may announce that this decoder accepts. RFC 4571 allows 65535;
/// WebRTC never needs more than a few kilobytes, so a longer length is treated as an attack.
pub const MAX_FRAME: usize = 0xffff;

/// Reassembles frames from a TCP byte stream, across partial reads.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

/// A peer announced a frame longer than the decoder allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {0} bytes is longer than allowed")]
pub struct FrameTooLong(pub usize);

impl FrameDecoder {
    /// A decoder that rejects frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame: max_frame.min(MAX_FRAME),
        }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one is buffered. An error means the stream is broken and the
    /// connection should be dropped.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameTooLong> {
        let avail = &self.buf[self.start..];
        if avail.len() < 2 {
            self.compact();
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[0], avail[1]]));
        if len > self.max_frame {
            return Err(FrameTooLong(len));
        }
        if avail.len() < 2 + len {
            self.compact();
            return Ok(None);
        }
        let from = self.start + 2;
        self.start = from + len;
        Ok(Some(&self.buf[from..from + len]))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// The two-byte header for a datagram of `len` bytes, or `None` if it cannot be framed.
pub fn frame_header(len: usize) -> Option<[u8; 2]> {
    u16::try_from(len).ok().map(u16::to_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_across_partial_reads() {
        let mut stream = Vec::new();
        for payload in [&b"hello"[..], b"", b"world!"] {
            stream.extend_from_slice(&frame_header(payload.len()).unwrap());
            stream.extend_from_slice(payload);
        }
        let mut d = FrameDecoder::new(1500);
        let mut frames = Vec::new();
        for chunk in stream.chunks(3) {
            d.extend(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f.to_vec());
            }
        }
        assert_eq!(frames, vec![b"hello".to_vec(), vec![], b"world!".to_vec()]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn rejects_oversized_frames() {
        let mut d = FrameDecoder::new(1500);
        d.extend(&[0xff, 0xff, 1, 2, 3]);
        assert_eq!(d.next_frame(), Err(FrameTooLong(0xffff)));
        assert_eq!(frame_header(70_000), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_streams_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096), cut in 1usize..64) {
            let mut d = FrameDecoder::new(1500);
            for chunk in data.chunks(cut) {
                d.extend(chunk);
                while let Ok(Some(f)) = d.next_frame() {
                    proptest::prop_assert!(f.len() <= 1500);
                }
            }
        }
    }
}
