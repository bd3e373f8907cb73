//! Which packets of one stream a consumer gets when the stream carries layers in itself: VP9
//! SVC (spatial and temporal layers), temporal layers (VP9 `L1T3`, VP8 with TID) and the
//! layers the dependency descriptor says (AV1, H264).
//!
//! A consumer has a target spatial and temporal layer and a current pair, the layers it is
//! being sent. Packets above the current pair are dropped. The current pair moves toward the
//! target only where the receiver can follow:
//!
//! - at a key frame, both jump to the target (every layer of a key picture is decodable from
//!   the layers below it in the same picture);
//! - temporal up, one layer at a time, at the start of a picture of the next temporal layer
//!   that is a switching-up point (it refers to no earlier picture of its own or a higher
//!   temporal layer, so it needs only pictures already forwarded);
//! - temporal down and spatial down at the start of a picture (lower layers never refer to
//!   higher ones);
//! - spatial up at a key frame, which the consumer asks for ([`LayerFilter::wants_key_frame`]);
//!   in full SVC (not K-SVC) also where the next spatial layer begins a frame predicted only
//!   from the lower layer of its own picture.
//!
//! The marker bit goes on the last packet forwarded of each picture: the packet that ends a
//! frame of the current spatial layer (or the picture's own last packet when it is kept).

use crate::codec::Descriptor;

/// One consumer's layer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerFilter {
    /// The producer's layers (at least 1 each).
    spatial_layers: u8,
    temporal_layers: u8,
    /// K-SVC: upper spatial layers refer to lower ones only in key pictures.
    ksvc: bool,
    target: (u8, u8),
    /// The (spatial, temporal) layers being sent; `None` before the first key frame.
    current: Option<(u8, u8)>,
    /// The newest packet so far: its picture id, spatial layer, whether it ended its frame
    /// and whether it was dropped.
    last: Option<(Option<u16>, u8, bool, bool)>,
    /// The packet just decided was dropped and continues the frame the newest packet before
    /// it was dropped from: whatever is missing between the two belongs to that frame too.
    gap_in_dropped_frame: bool,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it, with this marker bit.
    Forward { marker: bool },
    /// The consumer does not get it.
    Drop,
}

impl LayerFilter {
    /// A filter for a producer with these layers, targeting the top ones.
    pub(crate) fn new(spatial_layers: u8, temporal_layers: u8, ksvc: bool) -> Self {
        let (s, t) = (spatial_layers.max(1), temporal_layers.max(1));
        Self {
            spatial_layers: s,
            temporal_layers: t,
            ksvc,
            target: (s - 1, t - 1),
            current: None,
            last: None,
            gap_in_dropped_frame: false,
        }
    }

    /// The producer's spatial layers.
    pub(crate) fn spatial_layers(&self) -> u8 {
        self.spatial_layers
    }

    /// Sets the target layers (clamped to the producer's).
    pub(crate) fn set_target(&mut self, spatial: u8, temporal: u8) {
        self.target = (
            spatial.min(self.spatial_layers - 1),
            temporal.min(self.temporal_layers - 1),
        );
    }

    /// The (spatial, temporal) layers being sent, once started.
    pub(crate) fn current(&self) -> Option<(u8, u8)> {
        self.current
    }

    /// Forgets the current layers: the next start is at a key frame.
    pub(crate) fn reset(&mut self) {
        self.current = None;
    }

    /// A packet of temporal layer `temporal` (above 0) already let through did not reach the
    /// receiver (the pacer dropped it): frames that refer to it must not follow.
    /// Stops that temporal layer and those above at once, in the middle of a picture too;
    /// they come back the way temporal layers go up, at a switching-up point, which refers to
    /// nothing stopped.
    pub(crate) fn cut(&mut self, temporal: u8) {
        if let Some((_, t)) = self.current.as_mut() {
            *t = (*t).min(temporal.saturating_sub(1));
        }
    }

    /// Whether the packet last decided on was dropped and continues the dropped frame of the
    /// newest packet before it (same picture and spatial layer, not a frame start): packets
    /// missing between the two belong to that frame and will be dropped too if they come.
    pub(crate) fn gap_in_dropped_frame(&self) -> bool {
        self.gap_in_dropped_frame
    }

    /// Whether reaching the target needs a key frame (a spatial layer up).
    pub(crate) fn wants_key_frame(&self) -> bool {
        self.current.is_some_and(|(s, _)| s < self.target.0)
    }

    /// Decides on one packet. `d` is its descriptor (`None`: unreadable), `marker` its marker
    /// bit, `late` whether it is older than the newest packet seen (it may be forwarded but
    /// moves no state), `key_frame` whether it starts a key frame.
    pub(crate) fn on_packet(
        &mut self,
        d: Option<&Descriptor>,
        marker: bool,
        late: bool,
        key_frame: bool,
    ) -> Verdict {
        self.gap_in_dropped_frame = false;
        let Some(d) = d else {
            return Verdict::Drop;
        };
        let verdict = self.decide(d, marker, late, key_frame);
        if !late {
            let dropped = verdict == Verdict::Drop;
            self.gap_in_dropped_frame = dropped
                && d.picture_id.is_some()
                && !d.begins_frame
                && self
                    .last
                    .is_some_and(|(picture, spatial, ended, was_dropped)| {
                        was_dropped && !ended && picture == d.picture_id && spatial == d.spatial
                    });
            self.last = Some((d.picture_id, d.spatial, d.ends_frame, dropped));
        }
        verdict
    }

    fn decide(&mut self, d: &Descriptor, marker: bool, late: bool, key_frame: bool) -> Verdict {
        if key_frame && !late {
            self.current = Some(self.target);
        }
        let Some((mut spatial, mut temporal)) = self.current else {
            return Verdict::Drop;
        };
        if !late {
            let picture_start = d.begins_frame && d.spatial == 0;
            let (ts, tt) = self.target;
            if picture_start && ts < spatial {
                spatial = ts;
            }
            if picture_start && tt < temporal {
                temporal = tt;
            }
            if picture_start && tt > temporal && d.switch_up && d.temporal == temporal + 1 {
                temporal = d.temporal;
            }
            // Dependency descriptor: a frame the consumer gets that is a switch indication for
            // higher targets.
            if picture_start && tt > temporal && d.temporal <= temporal && d.switch_up_to > temporal
            {
                temporal = d.switch_up_to.min(tt);
            }
            if !self.ksvc
                && ts > spatial
                && d.begins_frame
                && !d.inter_picture
                && d.spatial == spatial + 1
            {
                spatial = d.spatial;
            }
            self.current = Some((spatial, temporal));
        }
        if d.spatial > spatial || d.temporal > temporal {
            return Verdict::Drop;
        }
        Verdict::Forward {
            marker: marker || (d.ends_frame && d.spatial == spatial),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of picture layer frame (spatial, temporal).
    fn pkt(spatial: u8, temporal: u8, begins: bool, ends: bool, inter: bool) -> Descriptor {
        Descriptor {
            has_layers: true,
            spatial,
            temporal,
            switch_up: temporal > 0,
            switch_up_to: 0,
            begins_frame: begins,
            ends_frame: ends,
            inter_picture: inter,
            inter_layer: spatial > 0,
            key_frame: !inter && begins && spatial == 0,
            picture_id: None,
            tl0_pic_idx: None,
        }
    }

    /// Runs one picture of one packet per spatial layer (3 layers) through `f`; returns the
    /// spatial layers forwarded and whether the last one forwarded had the marker.
    fn picture(f: &mut LayerFilter, temporal: u8, key: bool) -> (Vec<u8>, bool) {
        let mut sent = Vec::new();
        let mut last_marker = false;
        for s in 0..3 {
            let d = pkt(s, temporal, true, true, !key);
            let v = f.on_packet(Some(&d), s == 2, false, key && s == 0);
            if let Verdict::Forward { marker } = v {
                sent.push(s);
                last_marker = marker;
            }
        }
        (sent, last_marker)
    }

    #[test]
    fn starts_at_a_key_frame_and_keeps_layers_up_to_the_target() {
        let mut f = LayerFilter::new(3, 3, true);
        f.set_target(1, 2);
        assert_eq!(
            picture(&mut f, 0, false),
            (vec![], false),
            "before a key frame"
        );
        assert_eq!(picture(&mut f, 0, true), (vec![0, 1], true));
        assert_eq!(f.current(), Some((1, 2)));
        assert_eq!(picture(&mut f, 2, false), (vec![0, 1], true));
        f.set_target(0, 0);
        assert_eq!(picture(&mut f, 2, false), (vec![], false), "TID 2 dropped");
        assert_eq!(
            picture(&mut f, 0, false),
            (vec![0], true),
            "the marker moves"
        );
    }

    #[test]
    fn temporal_up_one_layer_at_switching_points() {
        let mut f = LayerFilter::new(1, 3, false);
        f.set_target(0, 0);
        let d = pkt(0, 0, true, true, false);
        assert!(matches!(
            f.on_packet(Some(&d), true, false, true),
            Verdict::Forward { .. }
        ));
        f.set_target(0, 2);
        // A TID 2 switching point cannot come first: TID 1 was not sent.
        let mut two = pkt(0, 2, true, true, true);
        assert_eq!(f.on_packet(Some(&two), true, false, false), Verdict::Drop);
        // TID 1 without U: no switch.
        let mut one = pkt(0, 1, true, true, true);
        one.switch_up = false;
        assert_eq!(f.on_packet(Some(&one), true, false, false), Verdict::Drop);
        one.switch_up = true;
        assert!(matches!(
            f.on_packet(Some(&one), true, false, false),
            Verdict::Forward { .. }
        ));
        two.switch_up = false;
        assert_eq!(f.on_packet(Some(&two), true, false, false), Verdict::Drop);
        two.switch_up = true;
        assert!(matches!(
            f.on_packet(Some(&two), true, false, false),
            Verdict::Forward { .. }
        ));
        assert_eq!(f.current(), Some((0, 2)));
    }

    #[test]
    fn a_cut_temporal_layer_stays_off_until_a_switching_up_point() {
        let mut f = LayerFilter::new(1, 3, false);
        let forwarded = |f: &mut LayerFilter, d: &Descriptor| {
            matches!(
                f.on_packet(Some(d), true, false, false),
                Verdict::Forward { .. }
            )
        };
        let key = pkt(0, 0, true, true, false);
        assert!(matches!(
            f.on_packet(Some(&key), true, false, true),
            Verdict::Forward { .. }
        ));
        assert_eq!(f.current(), Some((0, 2)));
        // A TID 1 frame's first packet went; its second was dropped before it was sent.
        assert!(forwarded(&mut f, &pkt(0, 1, true, false, true)));
        f.cut(1);
        assert_eq!(f.current(), Some((0, 0)));
        assert!(!forwarded(&mut f, &pkt(0, 1, false, true, true)));
        // A TID 2 frame (that may refer to it), even at a switching point, does not follow.
        assert!(!forwarded(&mut f, &pkt(0, 2, true, true, true)));
        assert!(forwarded(&mut f, &pkt(0, 0, true, true, true)));
        // Up again one layer at a time, at switching points only.
        let mut one = pkt(0, 1, true, true, true);
        one.switch_up = false;
        assert!(!forwarded(&mut f, &one));
        one.switch_up = true;
        assert!(forwarded(&mut f, &one));
        assert_eq!(f.current(), Some((0, 1)));
        assert!(forwarded(&mut f, &pkt(0, 2, true, true, true)));
        assert_eq!(f.current(), Some((0, 2)));
        // A cut above the current layers changes nothing.
        f.cut(3);
        assert_eq!(f.current(), Some((0, 2)));
    }

    #[test]
    fn spatial_up_waits_for_a_key_frame_in_ksvc() {
        let mut f = LayerFilter::new(3, 1, true);
        f.set_target(0, 0);
        picture(&mut f, 0, true);
        f.set_target(2, 0);
        assert!(f.wants_key_frame());
        assert_eq!(picture(&mut f, 0, false), (vec![0], true));
        assert_eq!(picture(&mut f, 0, true), (vec![0, 1, 2], true));
        assert!(!f.wants_key_frame());
        // Down at the next picture.
        f.set_target(1, 0);
        assert_eq!(picture(&mut f, 0, false), (vec![0, 1], true));
    }

    #[test]
    fn full_svc_goes_up_at_an_inter_layer_only_frame() {
        let mut f = LayerFilter::new(2, 1, false);
        f.set_target(0, 0);
        picture(&mut f, 0, true);
        f.set_target(1, 0);
        let base = pkt(0, 0, true, true, true);
        let upper_inter = pkt(1, 0, true, true, true);
        let upper_intra = pkt(1, 0, true, true, false);
        f.on_packet(Some(&base), false, false, false);
        assert_eq!(
            f.on_packet(Some(&upper_inter), true, false, false),
            Verdict::Drop
        );
        f.on_packet(Some(&base), false, false, false);
        assert_eq!(
            f.on_packet(Some(&upper_intra), true, false, false),
            Verdict::Forward { marker: true }
        );
    }

    #[test]
    fn late_packets_move_nothing_and_unreadable_ones_are_dropped() {
        let mut f = LayerFilter::new(3, 3, true);
        f.set_target(0, 0);
        picture(&mut f, 0, true);
        let key = pkt(0, 0, true, false, false);
        f.set_target(2, 2);
        // A late key frame packet (a retransmission) does not switch layers.
        assert!(matches!(
            f.on_packet(Some(&key), false, true, true),
            Verdict::Forward { .. }
        ));
        assert_eq!(f.current(), Some((0, 0)));
        assert_eq!(f.on_packet(None, false, false, false), Verdict::Drop);
        // Middle packets of a frame keep the marker off.
        let mid = pkt(0, 0, false, false, true);
        assert_eq!(
            f.on_packet(Some(&mid), false, false, false),
            Verdict::Forward { marker: false }
        );
    }

    proptest::proptest! {
        /// An `L3T3` stream (K-SVC or full SVC) with key pictures at random, its consumer's
        /// target changed at random: every layer frame forwarded has its references forwarded,
        /// and nothing above the target is forwarded once a picture has started under it.
        #[test]
        fn forwarded_frames_are_decodable(
            ksvc in proptest::bool::ANY,
            events in proptest::collection::vec((0u8..12, 0u8..3, 0u8..3), 1..300),
        ) {
            let mut f = LayerFilter::new(3, 3, ksvc);
            let mut sent = std::collections::HashSet::new();
            let mut since_key = 0u64;
            for (n, (dice, ts, tt)) in events.into_iter().enumerate() {
                let n = n as u64;
                let key = n == 0 || dice == 0;
                if dice == 1 {
                    f.set_target(ts, tt);
                }
                if key {
                    since_key = 0;
                }
                let pos = (since_key % 4) as usize;
                let temporal = [0u8, 2, 1, 2][pos];
                let reference = n.checked_sub([4u64, 1, 2, 1][pos]);
                for s in 0..3u8 {
                    let inter_layer = s > 0 && (key || !ksvc);
                    let d = Descriptor {
                        has_layers: true,
                        spatial: s,
                        temporal,
                        switch_up: temporal > 0,
                        switch_up_to: 0,
                        begins_frame: true,
                        ends_frame: true,
                        inter_picture: !key,
                        inter_layer,
                        key_frame: key && s == 0,
                        picture_id: None,
                        tl0_pic_idx: None,
                    };
                    if let Verdict::Forward { .. } = f.on_packet(Some(&d), s == 2, false, key && s == 0) {
                        if !key {
                            let r = reference.unwrap_or(0);
                            proptest::prop_assert!(sent.contains(&(r, s)), "picture {n} S{s} refers to {r}, not sent");
                        }
                        if inter_layer {
                            proptest::prop_assert!(sent.contains(&(n, s - 1)), "picture {n} S{s} needs S{}", s - 1);
                        }
                        let (cs, ct) = f.current().unwrap();
                        proptest::prop_assert!(s <= cs && temporal <= ct);
                        sent.insert((n, s));
                    }
                }
                since_key += 1;
            }
        }
    }
}
