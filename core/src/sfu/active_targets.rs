//! Streams whose layers the dependency descriptor carries (AV1, H264): the active decode
//! targets a consumer's receiver is told. A consumer that gets only some
//! of a stream's layers gets each descriptor without a structure written again with the decode
//! targets within its layers (and active at the producer) as the active ones, so that its
//! receiver does not wait for frames it will never get; a descriptor with a structure (a key
//! frame) goes as it came, and makes every decode target active again.

use crate::media::dd::write::{carries_structure, with_active_targets, MAX_LEN};
use crate::media::packet::RtpPacket;
use crate::router::{Consumer, Producer};

/// Room for a descriptor written again (the longest a header extension carries).
pub(crate) type DescriptorBuf = [u8; MAX_LEN];

/// The dependency descriptor consumer `c` gets with `pkt` of producer `p`'s encoding `layer`
/// in place of the producer's, written into `buf`: its extension id and length. `None` when the packet goes as
/// it came: layers not from the descriptor, no descriptor negotiated on either side, a descriptor with a structure,
/// or a consumer at the producer's top layers whose receiver was never told otherwise since
/// the last structure.
pub(crate) fn rewrite(
    (p, layer): (&Producer, usize),
    c: &mut Consumer,
    pkt: &RtpPacket<'_>,
    buf: &mut DescriptorBuf,
) -> Option<(u8, usize)> {
    let source_id = p.extensions.dependency_descriptor?;
    let id = c.extensions.get(source_id)?;
    let (spatial, temporal) = c.layers.as_ref()?.current()?;
    let parser = p.encodings.get(layer)?.dd.as_ref()?;
    let structure = parser.structure()?;
    let src = pkt.extension(source_id)?;
    if carries_structure(src) {
        c.descriptor_rewritten = false;
        return None;
    }
    let active = parser.active_decode_targets();
    let mask = structure.targets_within(spatial, temporal) & active;
    if mask == active && !c.descriptor_rewritten {
        return None;
    }
    let len = with_active_targets(src, structure.decode_targets(), mask, buf).ok()?;
    c.descriptor_rewritten = true;
    Some((id, len))
}
