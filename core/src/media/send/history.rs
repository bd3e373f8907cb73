//! Where each of the last [`HISTORY_LEN`] outgoing packets came from, in a ring of fixed
//! 16-byte slots (RFC 4588 retransmission needs to find the source packet again; the packets
//! themselves live in the producer's store).
//!
//! The ring is allocated on the first packet, so an idle consumer costs nothing here.

use super::SentPacket;

/// How many outgoing packets the ring remembers.
pub(crate) const HISTORY_LEN: usize = 1024;

/// Source extended sequence numbers at or above this cannot be packed into a slot; such a
/// packet is not remembered (a NACK for it is answered "not found"). At a million packets a
/// second it takes nine years to get there.
const SOURCE_SEQ_LIMIT: u64 = 1 << 48;

/// Resend times are kept in milliseconds modulo 2^21 (about 35 minutes).
const RESENT_MS_BITS: u32 = 21;
const RESENT_MS_MASK: u32 = (1 << RESENT_MS_BITS) - 1;
const FLAG_VALID: u32 = 1 << 21;
const FLAG_MARKER: u32 = 1 << 22;
const FLAG_RESENT: u32 = 1 << 23;
const LAYER_SHIFT: u32 = 24;

/// One remembered packet, packed into 16 bytes so that the ring stays at 16 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// The source extended sequence number (bits 16..64) and the packet size (bits 0..16).
    source_and_size: u64,
    /// The outgoing RTP timestamp.
    timestamp: u32,
    /// The layer (bits 24..32), the resent, marker and valid flags (bits 23, 22, 21) and the
    /// time of the last retransmission in milliseconds modulo 2^21 (bits 0..21).
    meta: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        source_and_size: 0,
        timestamp: 0,
        meta: 0,
    };

    fn new(packet: &SentPacket) -> Slot {
        let marker = if packet.marker { FLAG_MARKER } else { 0 };
        Slot {
            source_and_size: (packet.source_ext_seq << 16) | u64::from(packet.size),
            timestamp: packet.timestamp,
            meta: (u32::from(packet.layer) << LAYER_SHIFT) | FLAG_VALID | marker,
        }
    }

    fn is_valid(&self) -> bool {
        self.meta & FLAG_VALID != 0
    }

    fn packet(&self) -> SentPacket {
        SentPacket {
            // Both casts keep exactly the bits that `new` packed.
            layer: (self.meta >> LAYER_SHIFT) as u8,
            source_ext_seq: self.source_and_size >> 16,
            timestamp: self.timestamp,
            marker: self.meta & FLAG_MARKER != 0,
            size: self.source_and_size as u16,
        }
    }

    /// Milliseconds since the last retransmission (modulo 2^21), if there was one.
    fn since_resent(&self, now_ms: u32) -> Option<u32> {
        (self.meta & FLAG_RESENT != 0)
            .then(|| now_ms.wrapping_sub(self.meta & RESENT_MS_MASK) & RESENT_MS_MASK)
    }

    fn mark_resent(&mut self, now_ms: u32) {
        self.meta = (self.meta & !RESENT_MS_MASK) | FLAG_RESENT | (now_ms & RESENT_MS_MASK);
    }
}

/// What the ring knows about one outgoing sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Too old, never sent or not remembered.
    NotFound,
    /// Retransmitted less than the caller's interval ago.
    ResentRecently,
    /// Found and not retransmitted recently.
    Found(u64, SentPacket),
}

/// The ring of the last [`HISTORY_LEN`] outgoing packets, indexed by outgoing extended
/// sequence number.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// Empty until the first packet.
    slots: Box<[Slot]>,
    /// The highest outgoing extended sequence number recorded.
    highest: u64,
}

impl History {
    /// Bytes allocated on the heap.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * size_of::<Slot>()
    }

    /// Remembers `packet` as sent with outgoing extended sequence number `out_ext_seq`.
    pub(crate) fn insert(&mut self, out_ext_seq: u64, packet: &SentPacket) {
        if self.slots.is_empty() {
            self.slots = vec![Slot::EMPTY; HISTORY_LEN].into_boxed_slice();
            self.highest = out_ext_seq;
        } else if out_ext_seq > self.highest {
            // Sequence numbers skipped over must not answer with what their slots held
            // HISTORY_LEN packets ago.
            let skipped = (out_ext_seq - self.highest - 1).min(HISTORY_LEN as u64);
            for seq in out_ext_seq - skipped..out_ext_seq {
                self.slots[index(seq)] = Slot::EMPTY;
            }
            self.highest = out_ext_seq;
        } else if self.highest - out_ext_seq >= HISTORY_LEN as u64 {
            return;
        }
        self.slots[index(out_ext_seq)] = if packet.source_ext_seq < SOURCE_SEQ_LIMIT {
            Slot::new(packet)
        } else {
            Slot::EMPTY
        };
    }

    /// Looks up the 16-bit outgoing sequence number `seq` (the nearest extended value to the
    /// highest sent), and whether it was retransmitted less than `min_interval_ms`
    /// milliseconds before `now_ms`.
    pub(crate) fn lookup(&self, seq: u16, now_ms: u32, min_interval_ms: u32) -> Lookup {
        let Some(ext) = self.extend(seq) else {
            return Lookup::NotFound;
        };
        let slot = &self.slots[index(ext)];
        if !slot.is_valid() {
            return Lookup::NotFound;
        }
        match slot.since_resent(now_ms) {
            Some(ms) if ms < min_interval_ms => Lookup::ResentRecently,
            _ => Lookup::Found(ext, slot.packet()),
        }
    }

    /// Records that the packet with outgoing extended sequence number `ext` (as returned by
    /// [`History::lookup`]) was retransmitted at `now_ms`.
    pub(crate) fn mark_resent(&mut self, ext: u64, now_ms: u32) {
        if let Some(slot) = self.slots.get_mut(index(ext)) {
            slot.mark_resent(now_ms);
        }
    }

    /// The extended sequence number within the ring's window that `seq` stands for.
    fn extend(&self, seq: u16) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        // `highest as u16` keeps its low 16 bits; the i16 cast makes the distance signed.
        let back = (self.highest as u16).wrapping_sub(seq) as i16;
        let back = u64::try_from(back).ok()?;
        (back < HISTORY_LEN as u64).then_some(self.highest.checked_sub(back)?)
    }
}

/// The slot of an outgoing extended sequence number.
fn index(ext: u64) -> usize {
    // The remainder is below HISTORY_LEN.
    (ext % HISTORY_LEN as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(source_ext_seq: u64) -> SentPacket {
        SentPacket {
            layer: 7,
            source_ext_seq,
            timestamp: 0xdead_beef,
            marker: true,
            size: 65535,
        }
    }

    #[test]
    fn slot_packs_every_field() {
        assert_eq!(size_of::<Slot>(), 16);
        for p in [
            packet(SOURCE_SEQ_LIMIT - 1),
            SentPacket::default(),
            SentPacket {
                layer: 255,
                source_ext_seq: 70_000,
                timestamp: 1,
                marker: false,
                size: 1200,
            },
        ] {
            let mut slot = Slot::new(&p);
            assert_eq!(slot.packet(), p);
            slot.mark_resent(RESENT_MS_MASK + 5);
            assert_eq!(slot.packet(), p);
            assert_eq!(slot.since_resent(RESENT_MS_MASK + 15), Some(10));
            // Across the wrap of the millisecond field.
            assert_eq!(
                slot.since_resent(RESENT_MS_MASK * 2 + 2),
                Some(RESENT_MS_MASK - 3)
            );
        }
    }

    #[test]
    fn source_seqs_too_large_to_pack_are_not_remembered() {
        let mut h = History::default();
        h.insert(1, &packet(SOURCE_SEQ_LIMIT));
        assert_eq!(h.lookup(1, 0, 10), Lookup::NotFound);
    }

    #[test]
    fn skipped_seqs_forget_their_slots() {
        let mut h = History::default();
        for seq in 0..HISTORY_LEN as u64 {
            h.insert(seq, &packet(seq + 100));
        }
        // Jump by 5: the four skipped slots held packets 1024 older.
        h.insert(HISTORY_LEN as u64 + 4, &packet(9));
        for seq in 0..4u64 {
            assert_eq!(
                h.lookup(HISTORY_LEN as u16 + seq as u16, 0, 10),
                Lookup::NotFound
            );
        }
        assert_eq!(
            h.lookup(4 + HISTORY_LEN as u16, 0, 10),
            Lookup::Found(HISTORY_LEN as u64 + 4, packet(9))
        );
        assert_eq!(h.lookup(5, 0, 10), Lookup::Found(5, packet(105)));
        assert_eq!(h.lookup(4, 0, 10), Lookup::NotFound);
        // A late packet within the window fills its slot; one outside it is dropped.
        h.insert(HISTORY_LEN as u64 + 1, &packet(42));
        assert_eq!(
            h.lookup(HISTORY_LEN as u16 + 1, 0, 10),
            Lookup::Found(HISTORY_LEN as u64 + 1, packet(42))
        );
        h.insert(3, &packet(43));
        assert_eq!(h.lookup(3, 0, 10), Lookup::NotFound);
    }

    #[test]
    fn future_seqs_are_not_found() {
        let mut h = History::default();
        h.insert(10, &packet(1));
        assert_eq!(h.lookup(11, 0, 10), Lookup::NotFound);
        assert_eq!(h.lookup(9, 0, 10), Lookup::NotFound);
        assert_eq!(h.lookup(10, 0, 10), Lookup::Found(10, packet(1)));
        // Nearest extension below zero does not exist.
        assert_eq!(h.lookup(65535, 0, 10), Lookup::NotFound);
    }
}
