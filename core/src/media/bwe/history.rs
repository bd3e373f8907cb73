//! The send history of one transport: for each transport-wide sequence number it sent, the
//! datagram's size, when it left and what it carried, so that feedback can be matched to it.
//!
//! A ring of [`HISTORY_LEN`] fixed slots, allocated at the first packet (an idle transport
//! holds nothing) and never again: a new packet takes the slot of the one [`HISTORY_LEN`]
//! sequence numbers before it. A packet sent more than [`MAX_AGE_US`] ago is forgotten even if
//! its slot was not reused.

/// How many sent packets the ring remembers (a power of two): seconds of video at several
/// megabits per second.
pub(crate) const HISTORY_LEN: usize = 2048;

/// Feedback about a packet sent longer ago than this (microseconds) is ignored.
pub(crate) const MAX_AGE_US: i64 = 3_000_000;

/// The packet was a retransmission.
pub(crate) const FLAG_RTX: u8 = 1;

/// The packet was probe padding.
pub(crate) const FLAG_PROBE: u8 = 2;

/// What feedback has said about a sent packet so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reported {
    /// Nothing yet.
    No,
    /// Reported as not received (it may still be reported received later).
    Lost,
    /// Reported as received; later reports about it are duplicates.
    Received,
}

/// One sent packet, in 16 bytes (the ring is 32 KiB).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentRecord {
    /// The low 32 bits of the extended transport-wide sequence number (with `size` 0 and
    /// `sent_us` `i64::MIN`: an empty slot). Sequence numbers 2^32 apart share them, but no
    /// packet stays remembered that long ([`MAX_AGE_US`]).
    ext: u32,
    /// When it was sent, in microseconds on the estimator's clock.
    pub(crate) sent_us: i64,
    /// The datagram's size in bytes.
    pub(crate) size: u16,
    /// [`FLAG_RTX`], [`FLAG_PROBE`]. Nothing reads it yet (probe clusters are told apart by
    /// their range of sequence numbers).
    #[allow(dead_code)]
    pub(crate) flags: u8,
    /// What feedback said about it.
    pub(crate) reported: Reported,
}

impl SentRecord {
    const EMPTY: SentRecord = SentRecord {
        ext: u32::MAX,
        sent_us: i64::MIN,
        size: 0,
        flags: 0,
        reported: Reported::No,
    };
}

/// Where a reported sequence number stands in the history.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// A packet the history remembers.
    Found(&'a mut SentRecord),
    /// Older than the ring or [`MAX_AGE_US`]: forgotten.
    Forgotten,
    /// Newer than anything sent: feedback about a packet that never left.
    Unsent,
}

/// The ring of sent packets.
#[derive(Debug, Default)]
pub(crate) struct SendHistory {
    /// Empty until the first packet; then [`HISTORY_LEN`] slots, slot `ext % HISTORY_LEN`.
    slots: Box<[SentRecord]>,
    /// The highest extended sequence number sent.
    highest: Option<u64>,
}

impl SendHistory {
    /// Records a packet sent with transport-wide sequence number `seq` and returns its
    /// extended sequence number.
    pub(crate) fn on_sent(&mut self, seq: u16, size: usize, sent_us: i64, flags: u8) -> u64 {
        if self.slots.is_empty() {
            self.slots = vec![SentRecord::EMPTY; HISTORY_LEN].into_boxed_slice();
        }
        let ext = match self.highest {
            // Start one cycle up, so feedback about sequence numbers just before the first
            // unwraps to numbers that are merely unknown rather than below zero.
            None => (1 << 16) | u64::from(seq),
            Some(h) => h.saturating_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16)),
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        self.slots[slot(ext)] = SentRecord {
            ext: ext as u32,
            sent_us,
            size: size.min(usize::from(u16::MAX)) as u16,
            flags,
            reported: Reported::No,
        };
        ext
    }

    /// The extended sequence number a reported `seq` stands for: the one nearest the highest
    /// sent (`None` before anything was sent).
    pub(crate) fn unwrap(&self, seq: u16) -> Option<u64> {
        let h = self.highest?;
        h.checked_add_signed(i64::from(seq.wrapping_sub(h as u16) as i16))
    }

    /// The highest extended sequence number sent.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// The packet with extended sequence number `ext`, if it is remembered at `now_us`.
    pub(crate) fn get_mut(&mut self, ext: u64, now_us: i64) -> Lookup<'_> {
        let Some(h) = self.highest else {
            return Lookup::Unsent;
        };
        if ext > h {
            return Lookup::Unsent;
        }
        let record = &mut self.slots[slot(ext)];
        if record.ext != ext as u32 || now_us.saturating_sub(record.sent_us) > MAX_AGE_US {
            return Lookup::Forgotten;
        }
        Lookup::Found(record)
    }
}

fn slot(ext: u64) -> usize {
    (ext % HISTORY_LEN as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(h: &mut SendHistory, ext: u64, now: i64) -> Option<SentRecord> {
        match h.get_mut(ext, now) {
            Lookup::Found(r) => Some(*r),
            _ => None,
        }
    }

    #[test]
    fn sequence_numbers_unwrap_across_the_wrap() {
        let mut h = SendHistory::default();
        let mut exts = Vec::new();
        for (i, seq) in (65_530u16..=65_535).chain(0..5).enumerate() {
            exts.push(h.on_sent(seq, 1000 + i, i as i64 * 1000, 0));
        }
        assert!(exts.windows(2).all(|w| w[1] == w[0] + 1), "{exts:?}");
        for (i, seq) in (65_530u16..=65_535).chain(0..5).enumerate() {
            let ext = h.unwrap(seq).unwrap();
            assert_eq!(ext, exts[i]);
            assert_eq!(found(&mut h, ext, 10_000).unwrap().size as usize, 1000 + i);
        }
        // The next sequence number was never sent.
        let next = h.unwrap(5).unwrap();
        assert!(matches!(h.get_mut(next, 10_000), Lookup::Unsent));
    }

    #[test]
    fn the_ring_forgets_by_count_and_by_age() {
        let mut h = SendHistory::default();
        for seq in 0..(HISTORY_LEN as u16 + 10) {
            h.on_sent(seq, 100, i64::from(seq), 0);
        }
        let first = h.unwrap(0).unwrap();
        assert!(matches!(h.get_mut(first, 0), Lookup::Forgotten));
        let tenth = h.unwrap(10).unwrap();
        assert!(found(&mut h, tenth, 100_000).is_some());
        assert!(matches!(
            h.get_mut(tenth, 10 + MAX_AGE_US + 1),
            Lookup::Forgotten
        ));
    }

    #[test]
    fn a_slot_is_16_bytes() {
        assert_eq!(std::mem::size_of::<SentRecord>(), 16);
    }

    #[test]
    fn the_ring_is_allocated_once() {
        let mut h = SendHistory::default();
        assert!(h.slots.is_empty());
        h.on_sent(0, 1, 0, 0);
        let ptr = h.slots.as_ptr();
        for seq in 1..10_000u16 {
            h.on_sent(seq, 1, 0, FLAG_RTX);
        }
        assert_eq!(h.slots.as_ptr(), ptr);
        assert_eq!(h.slots.len(), HISTORY_LEN);
    }
}
