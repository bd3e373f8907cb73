//! Checks on what a client received.

use crate::client::Received;
use crate::media::{verify_payload, PayloadInfo};

/// What one consumer's stream looked like at the receiver.
#[derive(Debug, Default, Clone)]
pub struct StreamReport {
    /// Packets received.
    pub packets: usize,
    /// Packets whose payload did not verify byte for byte.
    pub corrupt: usize,
    /// Source SSRCs seen in payloads (should be exactly the producer's).
    pub sources: Vec<u32>,
    /// Sequence numbers missing between the first and last received.
    pub gaps: usize,
    /// Packets that arrived out of order.
    pub out_of_order: usize,
    /// Duplicates.
    pub duplicates: usize,
    /// Whether the first packet started a key frame.
    pub first_is_key_frame: bool,
    /// The payloads' source sequence numbers, in arrival order.
    pub source_seqs: Vec<u16>,
}

/// Analyses the packets a client received on `ssrc` (a consumer's SSRC).
pub fn stream_report(received: &[Received], ssrc: u32) -> StreamReport {
    let mut r = StreamReport::default();
    let mut seqs: Vec<u64> = Vec::new();
    let mut last_ext: Option<u64> = None;
    for p in received.iter().filter(|p| p.ssrc == ssrc) {
        r.packets += 1;
        match verify_payload(&p.payload) {
            Some(PayloadInfo {
                ssrc,
                seq,
                key_frame,
            }) => {
                if r.packets == 1 {
                    r.first_is_key_frame = key_frame;
                }
                if !r.sources.contains(&ssrc) {
                    r.sources.push(ssrc);
                }
                r.source_seqs.push(seq);
            }
            None => r.corrupt += 1,
        }
        // Extend the 16-bit sequence number around the previous one.
        let ext = match last_ext {
            None => u64::from(p.seq) + 65_536,
            Some(prev) => {
                let base = prev & !0xffff;
                let candidates = [base.wrapping_sub(65_536), base, base + 65_536];
                candidates
                    .iter()
                    .map(|b| b + u64::from(p.seq))
                    .min_by_key(|c| c.abs_diff(prev))
                    .unwrap_or(prev)
            }
        };
        if let Some(prev) = last_ext {
            if ext < prev {
                r.out_of_order += 1;
            }
        }
        last_ext = Some(last_ext.map_or(ext, |p: u64| p.max(ext)));
        seqs.push(ext);
    }
    seqs.sort_unstable();
    let before = seqs.len();
    seqs.dedup();
    r.duplicates = before - seqs.len();
    if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
        r.gaps = (last - first + 1) as usize - seqs.len();
    }
    r
}
