//! A consumer's stream decoded from the dependency descriptors it received, as its receiver
//! would: each frame arrived whole (contiguous packets from the one that starts it to the one
//! that ends it) and every frame it refers to was decoded before it; the marker bit is on the
//! last packet of each picture alone, and the numbering has no gaps. The payload of every
//! packet is checked against what the synthetic source wrote (see [`crate::media`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use sfu_core::ortc::ext_uri::DEPENDENCY_DESCRIPTOR;

use crate::dd::Reader;
use crate::layers::{longest_gap, Stream};
use crate::sim::Sim;

/// What a payload says about itself, to compare with its descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadFacts {
    /// The frame's spatial layer.
    pub spatial: u8,
    /// The frame's temporal layer.
    pub temporal: u8,
    /// The packet starts a key frame (meaningful on a frame's first packet).
    pub key_frame: bool,
}

/// What a consumer's receiver made of its stream.
#[derive(Debug, Default)]
pub struct Report {
    /// Packets in the window.
    pub packets: usize,
    /// Frames that began in the window.
    pub frames: usize,
    /// Frames of each spatial layer decoded from the window's start (to the end, in flight
    /// or not).
    pub decoded: [usize; 3],
    /// Frames in the window that did not decode (frame number, spatial layer).
    pub undecodable: Vec<(u16, u8)>,
    /// Pictures (RTP timestamps) whose marker bit was not on their last packet alone.
    pub marker_errors: Vec<u32>,
    /// Breaks in the sequence numbers.
    pub gaps: usize,
    /// Packets whose descriptor was missing or did not read.
    pub bad_descriptors: usize,
    /// Packets whose payload is not what the source wrote, or whose layers, or whether it
    /// starts a key frame, are not what the descriptor says.
    pub corrupt: usize,
    pub spatial: BTreeSet<u8>,
    pub temporal: BTreeSet<u8>,
    /// Whether the first frame of the stream starts a coded video sequence.
    pub starts_at_key_frame: bool,
    /// The longest time between two pictures whose frames all decoded.
    pub longest_without_picture: Duration,
}

/// One frame's packets as received.
struct Frame {
    number: u16,
    spatial: u8,
    referred: Vec<u16>,
    key: bool,
    complete: bool,
    first_seq: u64,
}

/// Decodes what `client` received on `ssrc` from the start of its stream; reports on the
/// packets and frames from the first that arrived at or after `from` to `to` (frames in the
/// last 30 packets are left out: still in flight). `payload` reads what a payload says about
/// itself (`None`: not what the source wrote).
pub fn check(
    sim: &Sim,
    client: usize,
    ssrc: u32,
    (from, to): (Instant, Instant),
    payload: impl Fn(&[u8]) -> Option<PayloadFacts>,
) -> Report {
    let stream = Stream::received(sim, client, ssrc, from, to);
    let descriptors: HashMap<(u16, Instant), &[u8]> = sim.clients[client]
        .received_extensions
        .iter()
        .filter(|e| e.ssrc == ssrc)
        .filter_map(|e| Some(((e.seq, e.at), e.values.get(DEPENDENCY_DESCRIPTOR)?)))
        .collect();
    let mut r = Report {
        gaps: stream.gaps(),
        ..Report::default()
    };
    let (Some(start), Some(end)) = (stream.window_start, stream.end()) else {
        return r;
    };
    let horizon = end.saturating_sub(30);
    let in_window = |seq: u64| seq >= start && seq < horizon;
    let mut reader = Reader::default();
    let mut frames: Vec<Frame> = Vec::new();
    // The frames of each picture, and when its last packet arrived.
    let mut pictures: Vec<(u32, Vec<usize>, Instant, u64)> = Vec::new();
    let mut previous: Option<(u64, u16, bool)> = None;
    for (i, &(seq, p)) in stream.packets.iter().enumerate() {
        if p.payload.is_empty() {
            // Padding: a number that carries no packet of the stream.
            continue;
        }
        if seq >= start {
            r.packets += 1;
        }
        let frame = descriptors
            .get(&(p.seq, p.at))
            .and_then(|dd| reader.read(dd).ok());
        let Some(f) = frame else {
            r.bad_descriptors += 1;
            previous = None;
            continue;
        };
        let key = f.new_structure && f.start_of_frame && f.spatial == 0;
        let facts = payload(&p.payload);
        if facts.is_none_or(|x| {
            (x.spatial, x.temporal) != (f.spatial, f.temporal)
                || (f.start_of_frame && x.key_frame != key)
        }) {
            r.corrupt += 1;
        }
        if seq >= start {
            r.spatial.insert(f.spatial);
            r.temporal.insert(f.temporal);
        }
        // A frame continues while its number stays, its packets are contiguous and the one
        // before did not end it.
        let continues = previous.is_some_and(|(s, n, ended)| {
            n == f.frame_number && s + 1 == seq && !ended && !f.start_of_frame
        });
        if continues {
            if let Some(last) = frames.last_mut() {
                last.complete = last.complete || f.end_of_frame;
            }
        } else {
            frames.push(Frame {
                number: f.frame_number,
                spatial: f.spatial,
                referred: f.referred.clone(),
                key,
                complete: f.start_of_frame && f.end_of_frame,
                first_seq: seq,
            });
            if frames.len() == 1 {
                r.starts_at_key_frame = frames[0].key;
            }
            let index = frames.len() - 1;
            match pictures.last_mut() {
                Some(pic) if pic.0 == p.timestamp => pic.1.push(index),
                _ => pictures.push((p.timestamp, vec![index], p.at, seq)),
            }
        }
        if let Some(pic) = pictures.last_mut() {
            pic.2 = p.at;
        }
        previous = Some((seq, f.frame_number, f.end_of_frame));
        // The marker: on the last packet of each picture, nowhere else (padding carries no
        // picture).
        let next_timestamp = stream.packets[i + 1..]
            .iter()
            .find(|(_, n)| !n.payload.is_empty())
            .map(|(_, n)| n.timestamp);
        let last_of_picture = next_timestamp.is_some_and(|t| t != p.timestamp);
        if in_window(seq) && next_timestamp.is_some() && p.marker != last_of_picture {
            r.marker_errors.push(p.timestamp);
        }
    }
    // Decoding in order, from the first key frame.
    let mut decoded: HashSet<u16> = HashSet::new();
    let mut ok = vec![false; frames.len()];
    let mut started = false;
    for (k, f) in frames.iter().enumerate() {
        started |= f.key;
        if !started {
            continue;
        }
        ok[k] = f.complete && f.referred.iter().all(|n| decoded.contains(n));
        if ok[k] {
            decoded.insert(f.number);
        }
        if ok[k] && f.first_seq >= start {
            r.decoded[usize::from(f.spatial.min(2))] += 1;
        }
        if in_window(f.first_seq) {
            r.frames += 1;
            if !ok[k] {
                r.undecodable.push((f.number, f.spatial));
            }
        }
    }
    r.longest_without_picture = longest_gap(
        pictures
            .iter()
            .filter(|(_, fs, _, first)| in_window(*first) && fs.iter().all(|&k| ok[k]))
            .map(|&(_, _, at, _)| at),
    );
    r
}

/// The checks every consumer's stream passes.
pub fn assert_decodable(what: &str, r: &Report) {
    assert!(r.frames > 20, "{what}: too few frames: {r:?}");
    assert_clean(what, r);
}

/// The checks of [`assert_decodable`] for a window of any length (however few frames).
pub fn assert_clean(what: &str, r: &Report) {
    println!(
        "{what}: {} packets, {} frames (decoded per spatial layer {:?}), layers S{:?} T{:?}, \
         at most {:?} between whole pictures",
        r.packets, r.frames, r.decoded, r.spatial, r.temporal, r.longest_without_picture
    );
    assert!(
        r.undecodable.is_empty(),
        "{what}: undecodable frames (number, spatial layer): {:?}",
        r.undecodable
    );
    assert!(
        r.marker_errors.is_empty(),
        "{what}: pictures with a wrong marker: {:?}",
        r.marker_errors
    );
    assert_eq!(
        (r.gaps, r.bad_descriptors, r.corrupt),
        (0, 0, 0),
        "{what}: sequence gaps, bad descriptors, corrupt payloads"
    );
}

/// The active decode targets the descriptors `client` received on `ssrc` since the last
/// structure said last (`None`: none said any since).
pub fn active_targets_told(sim: &Sim, client: usize, ssrc: u32) -> Option<u32> {
    let mut reader = Reader::default();
    let mut told = None;
    for e in sim.clients[client]
        .received_extensions
        .iter()
        .filter(|e| e.ssrc == ssrc)
    {
        let Some(f) = e
            .values
            .get(DEPENDENCY_DESCRIPTOR)
            .and_then(|dd| reader.read(dd).ok())
        else {
            continue;
        };
        if f.new_structure {
            told = None;
        } else if f.active_decode_targets.is_some() {
            told = f.active_decode_targets;
        }
    }
    told
}
