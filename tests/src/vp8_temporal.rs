//! A consumer's VP8 stream with temporal layers ([`crate::media::Source::vp8_temporal`]) decoded
//! as its receiver would: frame by frame, from the payload descriptors (RFC 7741: TL0PICIDX,
//! TID, Y) and from the references the synthetic encoder wrote into each frame. Padding (a
//! number the SFU filled) carries no frame and is no gap.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Instant;

use crate::media::VP8_TEMPORAL_MAGIC;
use crate::sim::Sim;

/// One packet as the consumer's endpoint sees it.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub seq: u64,
    pub at: Instant,
    pub marker: bool,
    /// The descriptor's S bit: the first packet of a frame.
    pub start: bool,
    /// The encoding that made it (from the synthetic bitstream).
    pub source: u32,
    /// The sequence number its encoding gave it (from the synthetic bitstream).
    pub source_seq: u16,
    pub picture_id: u16,
    tl0_pic_idx: u8,
    pub temporal: u8,
    /// The descriptor's Y bit: the frame refers only to temporal layer 0.
    pub sync: bool,
    /// The picture the frame refers to (from the synthetic bitstream; `None`: a key frame).
    pub reference: Option<u16>,
}

/// Reads the VP8 payload descriptor (RFC 7741: X, I with a 15-bit picture id, L, T and K)
/// and the synthetic bitstream behind it, of a packet that arrived `at` with `marker`
/// (its sequence number left 0).
pub fn parse(p: &[u8], at: Instant, marker: bool) -> Option<Packet> {
    let start = *p.first()? & 0x10 != 0;
    if *p.first()? & 0x80 == 0 || *p.get(1)? != 0xe0 || *p.get(2)? & 0x80 == 0 {
        return None;
    }
    let i = if start { 7 } else { 6 };
    if *p.get(i)? != VP8_TEMPORAL_MAGIC {
        return None;
    }
    let r = u16::from_be_bytes([*p.get(i + 7)?, *p.get(i + 8)?]);
    Some(Packet {
        seq: 0,
        at,
        marker,
        start,
        source: u32::from_be_bytes(p.get(i + 1..i + 5)?.try_into().ok()?),
        source_seq: u16::from_be_bytes([*p.get(i + 5)?, *p.get(i + 6)?]),
        picture_id: u16::from_be_bytes([*p.get(2)? & 0x7f, *p.get(3)?]),
        tl0_pic_idx: *p.get(4)?,
        temporal: *p.get(5)? >> 6,
        sync: *p.get(5)? & 0x20 != 0,
        reference: (r != 0xffff).then_some(r),
    })
}

/// What the consumer's endpoint received, frame by frame.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames that began in the window.
    pub frames: usize,
    /// Frames in the window that could not be decoded: (source, picture id, why).
    pub undecodable: Vec<(u32, u16, &'static str)>,
    /// Sequence numbers missing in the window.
    pub gaps: usize,
    /// The encodings and temporal layers of the frames in the window.
    pub sources: BTreeSet<u32>,
    pub temporal: BTreeSet<u8>,
}

/// Decodes the consumer's stream (`ssrc` on `client`) from its start, and reports on the
/// frames that began in `[from, to)` (their last packets may arrive after `to`).
///
/// A frame decodes when all its packets arrived and what it refers to decoded: the picture
/// the synthetic encoder names, and by the descriptors, for temporal layer 0 the previous
/// layer 0 frame (TL0PICIDX one more than the last one), for a higher layer the layer 0 frame
/// of its TL0PICIDX, and for one without Y (it refers to a frame of its own or a lower layer
/// above 0) a frame above layer 0 and not above its own since that layer 0 frame.
pub fn check(sim: &Sim, client: usize, ssrc: u32, from: Instant, to: Instant) -> Report {
    let mut packets: BTreeMap<u64, Packet> = BTreeMap::new();
    let mut filled: HashSet<u64> = HashSet::new();
    let mut last: Option<u64> = None;
    for r in sim.clients[client]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc)
    {
        let seq = match last {
            None => u64::from(r.seq) + (1 << 20),
            Some(prev) => (prev as i64 + i64::from(r.seq.wrapping_sub(prev as u16) as i16)) as u64,
        };
        last = Some(last.map_or(seq, |l| l.max(seq)));
        if r.payload.is_empty() {
            // Padding: a number the SFU filled, of a packet it did not send.
            filled.insert(seq);
            continue;
        }
        let p = parse(&r.payload, r.at, r.marker).expect("a VP8 packet with temporal layers");
        packets.insert(seq, Packet { seq, ..p });
    }
    let mut report = Report::default();
    let list: Vec<Packet> = packets.values().copied().collect();
    let mut decoded: HashSet<(u32, u16)> = HashSet::new();
    // Per encoding: the TL0PICIDX of the last layer 0 frame decoded, and the highest layer
    // above 0 decoded since it.
    let mut base: HashMap<u32, (u8, u8)> = HashMap::new();
    let mut i = 0;
    while i < list.len() {
        let p = list[i];
        let in_window = p.at >= from && p.at < to;
        if in_window && i > 0 && (list[i - 1].seq + 1..p.seq).any(|n| !filled.contains(&n)) {
            report.gaps += 1;
        }
        let mut j = i;
        while j + 1 < list.len()
            && !list[j].marker
            && list[j + 1].seq == list[j].seq + 1
            && (list[j + 1].source, list[j + 1].picture_id) == (p.source, p.picture_id)
        {
            j += 1;
        }
        i = j + 1;
        let key = p.reference.is_none() && p.start;
        let why = if !(p.start && list[j].marker) {
            Some("incomplete")
        } else if key {
            None
        } else if !decoded.contains(&(p.source, p.reference.unwrap_or_default())) {
            Some("its reference was not decoded")
        } else {
            match (base.get(&p.source), p.temporal) {
                (None, _) => Some("no key frame before it"),
                (Some(&(tl0, _)), 0) if p.tl0_pic_idx != tl0.wrapping_add(1) => {
                    Some("a layer 0 frame is missing before it")
                }
                (Some(&(tl0, _)), t) if t > 0 && p.tl0_pic_idx != tl0 => {
                    Some("its layer 0 frame is missing")
                }
                (Some(&(_, above)), t) if t > 0 && !p.sync && !(1..=t).contains(&above) => {
                    Some("not a switching point, and the layer it refers to is missing")
                }
                _ => None,
            }
        };
        match why {
            None => {
                decoded.insert((p.source, p.picture_id));
                let entry = base.entry(p.source).or_insert((p.tl0_pic_idx, 0));
                if p.temporal == 0 {
                    *entry = (p.tl0_pic_idx, 0);
                } else {
                    entry.1 = entry.1.max(p.temporal);
                }
            }
            Some(why) if in_window => report.undecodable.push((p.source, p.picture_id, why)),
            Some(_) => {}
        }
        if in_window {
            report.frames += 1;
            report.sources.insert(p.source);
            report.temporal.insert(p.temporal);
        }
    }
    report
}
