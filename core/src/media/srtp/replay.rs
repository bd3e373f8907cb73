//! Receive-side state: the rollover counter estimate of RFC 3711 Appendix A (section 3.3.1)
//! and the replay list of section 3.3.2, a sliding window of the last 128 indices, for SRTP
//! (48-bit packet index) and SRTCP (31-bit index).

use super::SrtpError;

/// How many indices below the highest one a packet may be and still be accepted.
pub const REPLAY_WINDOW: u64 = 128;

/// Receive-side state of one SSRC: highest sequence number, ROC, replay window.
///
/// Start with `RtpReplay::default()` for a new SSRC (ROC 0, as RFC 3711 section 3.3.1
/// prescribes for a receiver that has seen no packet yet).
#[derive(Default, Debug, Clone)]
pub struct RtpReplay {
    window: Window,
}

impl RtpReplay {
    /// The rollover counter of the highest packet index accepted so far (0 before the first).
    pub fn roc(&self) -> u32 {
        // The index is at most 48 bits, so the shifted value fits in 32.
        self.window.highest.map_or(0, |h| (h >> 16) as u32)
    }

    /// The highest packet index (ROC * 65536 + sequence number) accepted so far.
    pub fn extended_highest(&self) -> Option<u64> {
        self.window.highest
    }

    /// The packet index of sequence number `seq` (RFC 3711 Appendix A), checked against the
    /// replay window; the state is not changed.
    ///
    /// Where Appendix A's estimate is older than the replay window (or before index 0), no
    /// packet with that index could be accepted anyway, and the only index of `seq` that could
    /// be is the next one up, one rollover later: a sender whose numbering jumped forward by
    /// 2^15 or more (a restart, RFC 3550 Appendix A.1) sends exactly that. The packet is then
    /// tried with that index (the `true` of the result); its authentication covers the index,
    /// so a replayed old packet still fails, and the caller reports it as
    /// [`SrtpError::Replayed`]. Without this, every packet after such a jump would be
    /// estimated behind the window, and the SSRC would stay dead.
    pub(super) fn index_for(&self, seq: u16) -> Result<(u64, bool), SrtpError> {
        let (index, jumped) = match estimate_index(self.window.highest, seq) {
            Ok(index) if !self.window.too_old(index) => (index, false),
            // Behind the window, or from before index 0 (a ROC of -1): one rollover later.
            Ok(_) | Err(SrtpError::Replayed) => {
                (estimate_after_highest(self.window.highest, seq)?, true)
            }
            Err(e) => return Err(e),
        };
        self.window.check(index)?;
        Ok((index, jumped))
    }

    /// State that has accepted `index` and nothing else.
    #[cfg(test)]
    pub(super) fn with_highest(index: u64) -> Self {
        let mut replay = Self::default();
        replay.accept(index);
        replay
    }

    /// Records an authenticated packet's index.
    pub(super) fn accept(&mut self, index: u64) {
        self.window.accept(index);
    }
}

/// Receive-side SRTCP state of one sender SSRC: the replay window of SRTCP indices.
#[derive(Default, Debug, Clone)]
pub struct RtcpReplay {
    window: Window,
}

impl RtcpReplay {
    /// The highest SRTCP index accepted so far.
    pub fn highest(&self) -> Option<u32> {
        // SRTCP indices are 31 bits.
        self.window.highest.map(|h| h as u32)
    }

    /// Checks `index` against the replay window; the state is not changed.
    pub(super) fn check(&self, index: u32) -> Result<(), SrtpError> {
        self.window.check(u64::from(index))
    }

    /// Records an authenticated packet's index.
    pub(super) fn accept(&mut self, index: u32) {
        self.window.accept(u64::from(index));
    }
}

/// RFC 3711 Appendix A: the ROC `v` for sequence number `seq` given the highest index seen
/// (`ROC * 2^16 + s_l`), as the index `v * 2^16 + seq`. With nothing seen yet the ROC is 0.
/// A packet from before index 0 is `Replayed`; one past ROC 2^32 - 1 is `IndexExhausted`.
pub(super) fn estimate_index(highest: Option<u64>, seq: u16) -> Result<u64, SrtpError> {
    let Some(highest) = highest else {
        return Ok(u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = highest & 0xffff;
    let seq = u64::from(seq);
    let v = if s_l < 0x8000 {
        if seq > s_l + 0x8000 {
            // From before the last wrap.
            roc.checked_sub(1).ok_or(SrtpError::Replayed)?
        } else {
            roc
        }
    } else if seq + 0x8000 < s_l {
        // After the next wrap.
        roc + 1
    } else {
        roc
    };
    if v > u64::from(u32::MAX) {
        return Err(SrtpError::IndexExhausted);
    }
    Ok(v << 16 | seq)
}

/// The smallest index above `highest` whose low 16 bits are `seq` (a sender that jumped
/// forward); `Replayed` with nothing seen yet (never asked then: the estimate is exact).
fn estimate_after_highest(highest: Option<u64>, seq: u16) -> Result<u64, SrtpError> {
    let highest = highest.ok_or(SrtpError::Replayed)?;
    let base = highest & !0xffff;
    let mut index = base | u64::from(seq);
    if index <= highest {
        index += 1 << 16;
    }
    if index >> 16 > u64::from(u32::MAX) {
        return Err(SrtpError::IndexExhausted);
    }
    Ok(index)
}

/// A sliding window over the last [`REPLAY_WINDOW`] indices: bit `i` of `seen` is set when
/// `highest - i` was accepted.
#[derive(Default, Debug, Clone)]
struct Window {
    highest: Option<u64>,
    seen: u128,
}

impl Window {
    /// Whether `index` is further behind the highest index than the window reaches.
    fn too_old(&self, index: u64) -> bool {
        self.highest
            .is_some_and(|highest| index < highest && highest - index >= REPLAY_WINDOW)
    }

    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        let behind = highest - index;
        if behind >= REPLAY_WINDOW || self.seen & (1 << behind) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => {
                let behind = highest - index;
                if behind < REPLAY_WINDOW {
                    self.seen |= 1 << behind;
                }
            }
            Some(highest) => {
                let ahead = index - highest;
                self.seen = if ahead >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << ahead
                };
                self.seen |= 1;
                self.highest = Some(index);
            }
            None => {
                self.seen = 1;
                self.highest = Some(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROC: u64 = 5 << 16;

    #[test]
    fn first_packet_has_roc_zero() {
        assert_eq!(estimate_index(None, 0), Ok(0));
        assert_eq!(estimate_index(None, 65535), Ok(65535));
    }

    /// RFC 3711 Appendix A around the wrap, in both halves of the sequence space.
    #[test]
    fn roc_estimation_around_the_wrap() {
        // s_l in the upper half: a small seq is after the wrap.
        assert_eq!(estimate_index(Some(ROC | 65535), 0), Ok(ROC + 65536));
        assert_eq!(estimate_index(Some(ROC | 65000), 10), Ok(ROC + 65536 + 10));
        assert_eq!(estimate_index(Some(ROC | 65535), 65534), Ok(ROC | 65534));
        // Exactly 32768 below s_l is still this ROC; one more is the next.
        assert_eq!(estimate_index(Some(ROC | 40000), 7232), Ok(ROC | 7232));
        assert_eq!(
            estimate_index(Some(ROC | 40000), 7231),
            Ok(ROC + 65536 + 7231)
        );
        // s_l in the lower half: a large seq is from before the wrap.
        assert_eq!(
            estimate_index(Some(ROC | 2), 65535),
            Ok(ROC - 65536 + 65535)
        );
        assert_eq!(estimate_index(Some(ROC | 100), 32868), Ok(ROC | 32868));
        assert_eq!(
            estimate_index(Some(ROC | 100), 32869),
            Ok(ROC - 65536 + 32869)
        );
        assert_eq!(estimate_index(Some(ROC | 2), 3), Ok(ROC | 3));
        // Nothing before index 0, nothing after ROC 2^32 - 1.
        assert_eq!(estimate_index(Some(2), 65535), Err(SrtpError::Replayed));
        let last = u64::from(u32::MAX) << 16;
        assert_eq!(
            estimate_index(Some(last | 65535), 1),
            Err(SrtpError::IndexExhausted)
        );
        assert_eq!(
            estimate_index(Some(last | 65535), 65535 - 5),
            Ok(last | 65530)
        );
    }

    #[test]
    fn window_accepts_reordered_once_and_refuses_old() {
        let mut w = Window::default();
        w.accept(1000);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed));
        assert_eq!(w.check(1001), Ok(()));
        // Inside the window, once.
        assert_eq!(w.check(1000 - 127), Ok(()));
        w.accept(1000 - 127);
        assert_eq!(w.check(1000 - 127), Err(SrtpError::Replayed));
        // Older than the window.
        assert_eq!(w.check(1000 - 128), Err(SrtpError::Replayed));
        // A jump forward keeps what is still inside the window.
        w.accept(1100);
        assert_eq!(w.check(1000), Err(SrtpError::Replayed));
        assert_eq!(w.check(999), Ok(()));
        assert_eq!(w.check(1100 - 128), Err(SrtpError::Replayed));
        // A jump past the whole window forgets everything but the new highest.
        w.accept(5000);
        assert_eq!(w.check(5000 - 127), Ok(()));
        assert_eq!(w.check(5000), Err(SrtpError::Replayed));
    }

    /// A forward jump of 2^15 or more is estimated behind the window (or before index 0);
    /// it is tried one rollover later instead, while a duplicate inside the window stays a
    /// replay.
    #[test]
    fn a_large_forward_jump_is_read_as_the_next_rollover() {
        // From ROC 0, s_l in the lower half: the estimate would be ROC -1.
        let mut r = RtpReplay::default();
        r.accept(r.index_for(5000).unwrap().0);
        assert_eq!(r.index_for(45_000), Ok((45_000, true)));
        // s_l in the upper half, jump across the wrap.
        let r = RtpReplay::with_highest(ROC | 40_000);
        assert_eq!(r.index_for(5_000), Ok((ROC + 65_536 + 5_000, false)));
        assert_eq!(r.index_for(14_464), Ok((ROC + 65_536 + 14_464, true)));
        // s_l in the lower half with ROC > 0: the estimate is the previous ROC.
        let r = RtpReplay::with_highest(ROC | 100);
        assert_eq!(r.index_for(40_000), Ok((ROC | 40_000, true)));
        // Inside the window: still late or a duplicate, never moved.
        let r = RtpReplay::with_highest(ROC | 1000);
        assert_eq!(r.index_for(1000 - 127), Ok((ROC | 873, false)));
        assert_eq!(r.index_for(1000), Err(SrtpError::Replayed));
        // Nothing past ROC 2^32 - 1.
        let last = u64::from(u32::MAX) << 16;
        let r = RtpReplay::with_highest(last | 40_000);
        assert_eq!(r.index_for(14_464), Err(SrtpError::IndexExhausted));
    }

    #[test]
    fn rtp_replay_reports_roc() {
        let mut r = RtpReplay::default();
        assert_eq!((r.roc(), r.extended_highest()), (0, None));
        let (i, _) = r.index_for(65535).unwrap();
        r.accept(i);
        let (i, _) = r.index_for(3).unwrap();
        assert_eq!(i, 65536 + 3);
        r.accept(i);
        assert_eq!((r.roc(), r.extended_highest()), (1, Some(65539)));
        // A straggler from before the wrap is still accepted, once.
        let (i, _) = r.index_for(65534).unwrap();
        assert_eq!(i, 65534);
        r.accept(i);
        assert_eq!(r.index_for(65534), Err(SrtpError::Replayed));
        assert_eq!(r.roc(), 1);
    }
}
