//! The received-packet store: the plaintext of the last packets of one receive stream, kept
//! in a ring of fixed slots so that consumers' NACKs (RFC 4585 section 6.2.1) can be answered
//! with retransmissions (RFC 4588).
//!
//! A packet lives in slot `ext_seq % capacity` until a newer packet takes the slot. Memory is
//! allocated once, at the first insert, and never grows.

use std::time::Instant;

/// A ring of `capacity` slots of `slot_size` bytes each, indexed by extended sequence number.
#[derive(Debug)]
pub(crate) struct PacketStore {
    /// `capacity - 1`; the capacity is a power of two.
    mask: u64,
    slot_size: usize,
    /// `capacity * slot_size` bytes, empty until the first insert.
    slab: Vec<u8>,
    /// One entry per slot, empty until the first insert.
    slots: Vec<Slot>,
}

/// What one slot holds.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ext_seq: u64,
    /// When the packet was received; `None` for an empty slot.
    at: Option<Instant>,
    len: usize,
}

const EMPTY: Slot = Slot {
    ext_seq: 0,
    at: None,
    len: 0,
};

impl PacketStore {
    /// A store of `capacity_pow2` slots (rounded up to a power of two, at least 1) of
    /// `slot_size` bytes. Allocates nothing until the first insert.
    ///
    /// # Panics
    ///
    /// If `capacity * slot_size` bytes overflow `usize` (a configuration error).
    pub(crate) fn new(capacity_pow2: usize, slot_size: usize) -> Self {
        let capacity = capacity_pow2.max(1).next_power_of_two();
        assert!(
            capacity.checked_mul(slot_size).is_some(),
            "packet store size overflows usize"
        );
        PacketStore {
            mask: capacity as u64 - 1,
            slot_size,
            slab: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// The number of slots.
    pub(crate) fn capacity(&self) -> usize {
        // `mask + 1` came from a `usize`.
        (self.mask + 1) as usize
    }

    /// Stores `packet` as the packet with extended sequence number `ext_seq`, received `at`.
    /// Returns false, storing nothing, if the packet is longer than a slot or its slot holds a
    /// newer packet. A packet with the same sequence number replaces the stored one.
    pub(crate) fn insert(&mut self, ext_seq: u64, at: Instant, packet: &[u8]) -> bool {
        if packet.len() > self.slot_size {
            return false;
        }
        if self.slots.is_empty() {
            self.slab = vec![0; self.capacity() * self.slot_size];
            self.slots = vec![EMPTY; self.capacity()];
        }
        let index = self.index(ext_seq);
        let Some(slot) = self.slots.get_mut(index) else {
            return false;
        };
        if slot.at.is_some() && slot.ext_seq > ext_seq {
            return false;
        }
        let start = index * self.slot_size;
        let Some(bytes) = self.slab.get_mut(start..start + packet.len()) else {
            return false;
        };
        bytes.copy_from_slice(packet);
        *slot = Slot {
            ext_seq,
            at: Some(at),
            len: packet.len(),
        };
        true
    }

    /// The packet with extended sequence number `ext_seq` and when it was received, if its slot
    /// still holds exactly that packet.
    pub(crate) fn get(&self, ext_seq: u64) -> Option<(Instant, &[u8])> {
        let index = self.index(ext_seq);
        let slot = self.slots.get(index)?;
        let at = slot.at.filter(|_| slot.ext_seq == ext_seq)?;
        let start = index * self.slot_size;
        Some((at, self.slab.get(start..start + slot.len)?))
    }

    /// Forgets every packet; the memory stays allocated for the next ones.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.slots.fill(EMPTY);
    }

    /// Forgets every packet and frees the memory (the next insert allocates it again).
    #[cfg(test)]
    pub(crate) fn release(&mut self) {
        self.slab = Vec::new();
        self.slots = Vec::new();
    }

    /// The bytes this store holds on the heap.
    #[cfg(test)]
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slab.capacity() + self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    fn index(&self, ext_seq: u64) -> usize {
        // The masked value is below the capacity, which is a `usize`.
        (ext_seq & self.mask) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)] // Tests own the clock.
    fn t0() -> Instant {
        Instant::now()
    }

    fn packet(seq: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seq as u8).wrapping_add(i as u8))
            .collect()
    }

    #[test]
    fn allocates_at_the_first_insert() {
        let mut store = PacketStore::new(8, 100);
        assert_eq!(store.allocated_bytes(), 0);
        assert_eq!(store.get(0), None);
        assert!(!store.insert(0, t0(), &[0; 101]));
        assert_eq!(store.allocated_bytes(), 0);
        assert!(store.insert(0, t0(), &[1; 100]));
        let bytes = store.allocated_bytes();
        assert!(bytes >= 800);
        assert!(bytes < 800 + 8 * 64);
        for seq in 1..1000 {
            store.insert(seq, t0(), &packet(seq, 50));
        }
        assert_eq!(store.allocated_bytes(), bytes);
    }

    #[test]
    fn capacity_rounds_up_to_a_power_of_two() {
        assert_eq!(PacketStore::new(0, 10).capacity(), 1);
        assert_eq!(PacketStore::new(5, 10).capacity(), 8);
        assert_eq!(PacketStore::new(512, 10).capacity(), 512);
    }

    #[test]
    fn returns_what_was_stored() {
        let now = t0();
        let mut store = PacketStore::new(4, 64);
        for seq in 10..14 {
            let at = now + Duration::from_millis(seq);
            assert!(store.insert(seq, at, &packet(seq, seq as usize)));
        }
        for seq in 10..14 {
            let (at, bytes) = store.get(seq).unwrap();
            assert_eq!(at, now + Duration::from_millis(seq));
            assert_eq!(bytes, &packet(seq, seq as usize)[..]);
        }
        assert_eq!(store.get(14), None);
        assert_eq!(store.get(9), None);
    }

    #[test]
    fn a_newer_packet_takes_the_slot_and_the_old_one_is_gone() {
        let now = t0();
        let mut store = PacketStore::new(4, 64);
        assert!(store.insert(1, now, &packet(1, 30)));
        assert!(store.insert(5, now, &packet(5, 10)));
        assert_eq!(store.get(1), None);
        assert_eq!(store.get(5).unwrap().1, &packet(5, 10)[..]);
        // Same slot, sequence numbers many wraps apart.
        assert_eq!(store.get(5 + 4 * 1000), None);
        assert!(store.insert(5 + 4 * 1000, now, &packet(3, 3)));
        assert_eq!(store.get(5), None);
        assert_eq!(store.get(5 + 4 * 1000).unwrap().1, &packet(3, 3)[..]);
    }

    #[test]
    fn an_older_packet_never_overwrites_a_newer_one() {
        let now = t0();
        let mut store = PacketStore::new(4, 64);
        assert!(store.insert(9, now, &packet(9, 8)));
        assert!(!store.insert(5, now, &packet(5, 8)));
        assert!(!store.insert(1, now, &packet(1, 8)));
        assert_eq!(store.get(5), None);
        assert_eq!(store.get(9).unwrap().1, &packet(9, 8)[..]);
        // The same sequence number again replaces it (a duplicate or a repair).
        let later = now + Duration::from_secs(1);
        assert!(store.insert(9, later, &packet(90, 4)));
        assert_eq!(store.get(9), Some((later, &packet(90, 4)[..])));
    }

    #[test]
    fn wraps_around_the_ring() {
        let now = t0();
        let mut store = PacketStore::new(16, 32);
        for seq in 0..100u64 {
            assert!(store.insert(seq, now, &packet(seq, 1 + seq as usize % 32)));
            // The last 16 are there; anything older is gone.
            for back in 0..20u64 {
                let Some(old) = seq.checked_sub(back) else {
                    break;
                };
                let got = store.get(old);
                if back < 16 {
                    assert_eq!(got.unwrap().1, &packet(old, 1 + old as usize % 32)[..]);
                } else {
                    assert_eq!(got, None);
                }
            }
        }
        // Around the top of the extended sequence number space too.
        let top = u64::MAX - 5;
        for seq in top..=u64::MAX {
            assert!(store.insert(seq, now, &packet(seq, 4)));
        }
        for seq in top..=u64::MAX {
            assert_eq!(store.get(seq).unwrap().1, &packet(seq, 4)[..]);
        }
    }

    #[test]
    fn oversize_packets_are_refused_and_keep_the_old_one() {
        let now = t0();
        let mut store = PacketStore::new(2, 16);
        assert!(store.insert(0, now, &packet(0, 16)));
        assert!(!store.insert(2, now, &packet(2, 17)));
        assert_eq!(store.get(2), None);
        assert_eq!(store.get(0).unwrap().1, &packet(0, 16)[..]);
        assert!(store.insert(4, now, &[]));
        assert_eq!(store.get(4).unwrap().1, &[] as &[u8]);
    }

    #[test]
    fn clear_and_release() {
        let now = t0();
        let mut store = PacketStore::new(4, 8);
        assert!(store.insert(3, now, &[1, 2, 3]));
        let bytes = store.allocated_bytes();
        store.clear();
        assert_eq!(store.get(3), None);
        assert_eq!(store.allocated_bytes(), bytes);
        // After a clear an older packet may take the slot again.
        assert!(store.insert(0, now, &[4]));
        assert_eq!(store.get(0).unwrap().1, &[4]);
        store.release();
        assert_eq!(store.allocated_bytes(), 0);
        assert_eq!(store.get(0), None);
        assert!(store.insert(1, now, &[5]));
        assert_eq!(store.allocated_bytes(), bytes);
    }
}
