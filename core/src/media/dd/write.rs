//! Writing a descriptor again with other active decode targets: what a forwarder that sends a
//! receiver only some of a stream's layers tells it, so that the receiver does not wait for
//! frames of decode targets it will never get.
//!
//! The descriptor is copied bit for bit (its mandatory fields, its structure when it carries
//! one, and the custom decode target indications, referred frames and chain differences after
//! the bitmask); only the active decode targets flag and bitmask change. A descriptor of three
//! bytes has no extended fields: it gets them, with every other flag clear. Writing allocates
//! nothing.

use super::{Bits, DdError, Structure, MAX_DECODE_TARGETS, MAX_FDIFFS, MAX_SPATIAL_LAYERS};
use super::{MAX_TEMPLATES, MAX_TEMPORAL_LAYERS};

/// How many bytes a descriptor grows by at most when written with a bitmask: the extended
/// fields' flags (a descriptor of three bytes has none) and a bitmask of 32 decode targets.
#[cfg(test)] // Read by the tests; writers size their buffers for the longest descriptor.
pub(crate) const MAX_GROWTH: usize = 5;

/// The longest descriptor a header extension carries (the two-byte form's limit).
pub(crate) const MAX_LEN: usize = 255;

/// Bit position of the extended fields' flags, after the mandatory fields.
const FLAGS_AT: usize = 24;
/// Flag bits (of the five read as one number): a structure follows.
const STRUCTURE_PRESENT: u64 = 0b1_0000;
/// The active decode targets bitmask follows (after the structure, when there is one).
const ACTIVE_PRESENT: u64 = 0b0_1000;

/// Whether descriptor `src` carries a template dependency structure (which, without a bitmask
/// of its own, makes every decode target active).
pub(crate) fn carries_structure(src: &[u8]) -> bool {
    src.len() > 3 && src[3] & 0x80 != 0
}

/// Writes descriptor `src` into `out` with `active` (decode target `i` in bit `i`) as its
/// active decode targets; returns the length written. `decode_targets` is the number of decode
/// targets of the stream's current structure (a descriptor that carries its own structure uses
/// that one's). Errors: [`DdError::Truncated`] for a descriptor shorter than its fields up to
/// the bitmask, [`DdError::Limit`] for a structure beyond the limits or a number of decode
/// targets outside 1..=32, [`DdError::NoRoom`] when `out` is too short.
pub(crate) fn with_active_targets(
    src: &[u8],
    decode_targets: u8,
    active: u32,
    out: &mut [u8],
) -> Result<usize, DdError> {
    if src.len() < 3 {
        return Err(DdError::Truncated);
    }
    let mut r = Bits::new(src);
    r.pos = FLAGS_AT;
    // Where the bitmask goes, how long the source's own is (0: none), and its flags.
    let (flags, mask_at, old_len, targets) = if src.len() > 3 {
        let flags = r.f(5)?;
        let targets = if flags & STRUCTURE_PRESENT != 0 {
            skip_structure(&mut r)?
        } else {
            decode_targets
        };
        let old_len = if flags & ACTIVE_PRESENT != 0 {
            usize::from(targets)
        } else {
            0
        };
        (flags, r.pos, old_len, targets)
    } else {
        (0, FLAGS_AT, 0, decode_targets)
    };
    if targets == 0 || usize::from(targets) > MAX_DECODE_TARGETS {
        return Err(DdError::Limit);
    }
    let rest_at = mask_at + old_len;
    let src_bits = src.len() * 8;
    if rest_at > src_bits {
        return Err(DdError::Truncated);
    }
    let mut w = BitWriter { out, pos: 0 };
    // The mandatory fields, whole bytes.
    w.out
        .get_mut(..3)
        .ok_or(DdError::NoRoom)?
        .copy_from_slice(&src[..3]);
    w.pos = FLAGS_AT;
    w.put(5, flags | ACTIVE_PRESENT)?;
    // The structure, if any.
    r.pos = FLAGS_AT + 5;
    w.copy(&mut r, mask_at.saturating_sub(FLAGS_AT + 5))?;
    w.put(u32::from(targets), u64::from(active))?;
    // The custom fields and the padding.
    r.pos = rest_at;
    w.copy(&mut r, src_bits - rest_at)?;
    Ok(w.pos.div_ceil(8))
}

impl Structure {
    /// The decode targets whose layers are all within spatial layer `spatial` and temporal
    /// layer `temporal`, as an active decode targets bitmask.
    pub(crate) fn targets_within(&self, spatial: u8, temporal: u8) -> u32 {
        let mut mask = 0;
        for dt in 0..usize::from(self.decode_targets).min(MAX_DECODE_TARGETS) {
            if self.target_spatial[dt] <= spatial && self.target_temporal[dt] <= temporal {
                mask |= 1 << dt;
            }
        }
        mask
    }
}

/// Reads past a template dependency structure; returns its number of decode targets. Refuses
/// what the parser refuses over the limits.
fn skip_structure(r: &mut Bits<'_>) -> Result<u8, DdError> {
    r.skip(6)?; // template id offset
    let targets = r.f(5)? as usize + 1;
    let (mut templates, mut spatial, mut temporal) = (0usize, 0usize, 0usize);
    loop {
        templates += 1;
        if templates > MAX_TEMPLATES {
            return Err(DdError::Limit);
        }
        match r.f(2)? {
            1 => temporal += 1,
            2 => {
                temporal = 0;
                spatial += 1;
            }
            3 => break,
            _ => {}
        }
        if spatial >= MAX_SPATIAL_LAYERS || temporal >= MAX_TEMPORAL_LAYERS {
            return Err(DdError::Limit);
        }
    }
    r.skip(templates * targets * 2)?; // decode target indications
    for _ in 0..templates {
        let mut fdiffs = 0;
        while r.bit()? {
            fdiffs += 1;
            if fdiffs > MAX_FDIFFS {
                return Err(DdError::Limit);
            }
            r.skip(4)?;
        }
    }
    let chains = r.ns(targets as u32 + 1)? as usize;
    if chains > 0 {
        for _ in 0..targets {
            r.ns(chains as u32)?;
        }
        r.skip(templates * chains * 4)?;
    }
    if r.bit()? {
        r.skip((spatial + 1) * 32)?; // resolutions
    }
    Ok(targets as u8)
}

impl Bits<'_> {
    /// Moves past `n` bits.
    fn skip(&mut self, n: usize) -> Result<(), DdError> {
        let end = self.pos + n;
        if end > self.data.len() * 8 {
            return Err(DdError::Truncated);
        }
        self.pos = end;
        Ok(())
    }
}

/// Writes bits high to low into a caller's buffer, clearing each byte as it starts it.
struct BitWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl BitWriter<'_> {
    fn bit(&mut self, set: bool) -> Result<(), DdError> {
        let byte = self.out.get_mut(self.pos / 8).ok_or(DdError::NoRoom)?;
        let shift = 7 - self.pos % 8;
        *byte = (*byte & !(0xff >> (7 - shift))) | u8::from(set) << shift;
        self.pos += 1;
        Ok(())
    }

    /// The low `n` bits of `v`.
    fn put(&mut self, n: u32, v: u64) -> Result<(), DdError> {
        for i in (0..n).rev() {
            self.bit(v >> i & 1 == 1)?;
        }
        Ok(())
    }

    /// The next `n` bits of `r`.
    fn copy(&mut self, r: &mut Bits<'_>, n: usize) -> Result<(), DdError> {
        for _ in 0..n {
            let b = r.bit()?;
            self.bit(b)?;
        }
        Ok(())
    }
}
