use super::*;
use proptest::prelude::*;

/// Writes bits high to low, as the descriptor's syntax reads them.
#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
    bits: usize,
}

impl Writer {
    fn f(&mut self, n: u32, v: u64) {
        for i in (0..n).rev() {
            if self.bits % 8 == 0 {
                self.bytes.push(0);
            }
            if v >> i & 1 == 1 {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
    }

    /// The serialization of a non-symmetric number below `n` (Appendix A.8.2's `write_ns`).
    fn ns(&mut self, n: u32, v: u64) {
        if n == 1 {
            return;
        }
        let w = 32 - n.leading_zeros();
        let m = (1u64 << w) - u64::from(n);
        if v < m {
            self.f(w - 1, v);
        } else {
            self.f(w, v + m);
        }
    }
}

#[derive(Debug, Clone)]
struct Template {
    spatial: u8,
    temporal: u8,
    dtis: Vec<u8>,
    fdiffs: Vec<u8>,
    chain_fdiffs: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct Desc {
    offset: u8,
    decode_targets: u8,
    templates: Vec<Template>,
    chains: u8,
    protected_by: Vec<u8>,
    resolutions: Option<Vec<(u16, u16)>>,
}

fn write_structure(w: &mut Writer, s: &Desc) {
    w.f(6, u64::from(s.offset));
    w.f(5, u64::from(s.decode_targets - 1));
    for (i, t) in s.templates.iter().enumerate() {
        let idc = match s.templates.get(i + 1) {
            None => 3,
            Some(n) if n.spatial == t.spatial && n.temporal == t.temporal => 0,
            Some(n) if n.spatial == t.spatial && n.temporal == t.temporal + 1 => 1,
            Some(n) if n.spatial == t.spatial + 1 && n.temporal == 0 => 2,
            Some(n) => panic!("templates out of layer order: {t:?} then {n:?}"),
        };
        w.f(2, idc);
    }
    for t in &s.templates {
        for &d in &t.dtis {
            w.f(2, u64::from(d));
        }
    }
    for t in &s.templates {
        for &d in &t.fdiffs {
            w.f(1, 1);
            w.f(4, u64::from(d - 1));
        }
        w.f(1, 0);
    }
    w.ns(u32::from(s.decode_targets) + 1, u64::from(s.chains));
    if s.chains > 0 {
        for &c in &s.protected_by {
            w.ns(u32::from(s.chains), u64::from(c));
        }
        for t in &s.templates {
            for &c in &t.chain_fdiffs {
                w.f(4, u64::from(c));
            }
        }
    }
    match &s.resolutions {
        None => w.f(1, 0),
        Some(r) => {
            w.f(1, 1);
            for &(wd, ht) in r {
                w.f(16, u64::from(wd - 1));
                w.f(16, u64::from(ht - 1));
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Packet<'a> {
    pub(crate) start: bool,
    pub(crate) end: bool,
    pub(crate) template_id: u8,
    pub(crate) frame_number: u16,
    pub(crate) structure: Option<&'a Desc>,
    pub(crate) active: Option<(u8, u32)>,
    pub(crate) dtis: Option<Vec<u8>>,
    pub(crate) fdiffs: Option<Vec<u16>>,
    pub(crate) chains: Option<Vec<u8>>,
}

pub(crate) fn write(p: &Packet<'_>) -> Vec<u8> {
    let mut w = Writer::default();
    w.f(1, u64::from(p.start));
    w.f(1, u64::from(p.end));
    w.f(6, u64::from(p.template_id));
    w.f(16, u64::from(p.frame_number));
    let extended = p.structure.is_some()
        || p.active.is_some()
        || p.dtis.is_some()
        || p.fdiffs.is_some()
        || p.chains.is_some();
    if extended {
        w.f(1, u64::from(p.structure.is_some()));
        w.f(1, u64::from(p.active.is_some()));
        w.f(1, u64::from(p.dtis.is_some()));
        w.f(1, u64::from(p.fdiffs.is_some()));
        w.f(1, u64::from(p.chains.is_some()));
        if let Some(s) = p.structure {
            write_structure(&mut w, s);
        }
        if let Some((n, mask)) = p.active {
            w.f(u32::from(n), u64::from(mask));
        }
    }
    if let Some(d) = &p.dtis {
        for &v in d {
            w.f(2, u64::from(v));
        }
    }
    if let Some(f) = &p.fdiffs {
        for &d in f {
            let v = u64::from(d - 1);
            let size = if v < 16 {
                1
            } else if v < 256 {
                2
            } else {
                3
            };
            w.f(2, size);
            w.f(4 * size as u32, v);
        }
        w.f(2, 0);
    }
    if let Some(c) = &p.chains {
        for &v in c {
            w.f(8, u64::from(v));
        }
    }
    w.bytes
}

const NP: u8 = 0;
const D: u8 = 1;
const S: u8 = 2;
const R: u8 = 3;

fn template(spatial: u8, temporal: u8, dtis: &[u8], fdiffs: &[u8], chains: &[u8]) -> Template {
    Template {
        spatial,
        temporal,
        dtis: dtis.to_vec(),
        fdiffs: fdiffs.to_vec(),
        chain_fdiffs: chains.to_vec(),
    }
}

/// One spatial layer, three temporal layers (T0 T2 T1 T2); decode targets: 7.5, 15 and 30 fps.
pub(crate) fn l1t3(offset: u8) -> Desc {
    Desc {
        offset,
        decode_targets: 3,
        templates: vec![
            template(0, 0, &[S, S, S], &[], &[0]),
            template(0, 0, &[S, S, S], &[4], &[4]),
            template(0, 1, &[NP, D, R], &[2], &[2]),
            template(0, 2, &[NP, NP, D], &[1], &[1]),
            template(0, 2, &[NP, NP, D], &[1], &[3]),
        ],
        chains: 1,
        protected_by: vec![0, 0, 0],
        resolutions: Some(vec![(640, 360)]),
    }
}

/// Three spatial layers of one temporal layer each, with three decode targets (one per spatial
/// layer) and a chain per spatial layer.
pub(crate) fn l3t1(offset: u8) -> Desc {
    Desc {
        offset,
        decode_targets: 3,
        templates: vec![
            template(0, 0, &[S, S, S], &[], &[0, 0, 0]),
            template(0, 0, &[S, R, R], &[3], &[3, 2, 1]),
            template(1, 0, &[NP, S, S], &[1], &[1, 1, 1]),
            template(1, 0, &[NP, R, R], &[3, 1], &[1, 1, 2]),
            template(2, 0, &[NP, NP, S], &[1], &[2, 1, 1]),
            template(2, 0, &[NP, NP, R], &[3, 1], &[2, 1, 1]),
        ],
        chains: 3,
        protected_by: vec![0, 1, 2],
        resolutions: Some(vec![(160, 90), (320, 180), (640, 360)]),
    }
}

#[test]
fn a_structure_and_the_frames_that_name_its_templates() {
    let desc = l1t3(10);
    let mut p = Parser::default();
    let key = p
        .parse(&write(&Packet {
            start: true,
            end: true,
            template_id: 10,
            frame_number: 100,
            structure: Some(&desc),
            ..Packet::default()
        }))
        .unwrap();
    assert!(key.new_structure && key.start_of_frame && key.end_of_frame);
    assert_eq!(
        (key.spatial_id, key.temporal_id, key.frame_number),
        (0, 0, 100)
    );
    assert_eq!(key.active_decode_targets, Some(0b111));
    assert_eq!([key.dti(0), key.dti(1), key.dti(2)], [Dti::Switch; 3]);
    assert_eq!(key.referred().count(), 0);
    assert_eq!(key.chain_previous(0), None);

    let s = p.structure().unwrap();
    assert_eq!(s.decode_targets(), 3);
    assert_eq!(s.chains(), 1);
    assert_eq!(s.protected_by(2), Some(0));
    assert_eq!(s.target_layers(0), Some((0, 0)));
    assert_eq!(s.target_layers(1), Some((0, 1)));
    assert_eq!(s.target_layers(2), Some((0, 2)));
    assert_eq!(s.target_layers(3), None);
    assert_eq!(s.resolution(0), Some((640, 360)));
    assert_eq!(s.resolution(1), None);
    assert_eq!(s.decode_target_within(0, 0, 0b111), Some(0));
    assert_eq!(s.decode_target_within(0, 1, 0b111), Some(1));
    assert_eq!(s.decode_target_within(3, 7, 0b111), Some(2));
    assert_eq!(s.decode_target_within(3, 7, 0b011), Some(1));
    assert_eq!(s.decode_target_within(0, 7, 0b000), None);

    // A short (3-byte) descriptor names a template: the T1 frame two frames later.
    let bytes = write(&Packet {
        start: true,
        template_id: 12,
        frame_number: 102,
        ..Packet::default()
    });
    assert_eq!(bytes.len(), 3);
    let t1 = p.parse(&bytes).unwrap();
    assert!(!t1.new_structure && t1.start_of_frame && !t1.end_of_frame);
    assert_eq!((t1.spatial_id, t1.temporal_id), (0, 1));
    assert_eq!(
        [t1.dti(0), t1.dti(1), t1.dti(2)],
        [Dti::NotPresent, Dti::Discardable, Dti::Required]
    );
    assert_eq!(t1.referred().collect::<Vec<_>>(), [100]);
    assert_eq!(t1.chain_previous(0), Some(100));
    assert_eq!(t1.active_decode_targets, None);

    // Frame numbers wrap.
    let t2 = p
        .parse(&write(&Packet {
            template_id: 13,
            frame_number: 0,
            ..Packet::default()
        }))
        .unwrap();
    assert_eq!(t2.temporal_id, 2);
    assert_eq!(t2.referred().collect::<Vec<_>>(), [u16::MAX]);
}

#[test]
fn custom_fields_override_the_template() {
    let desc = l1t3(0);
    let mut p = Parser::default();
    p.parse(&write(&Packet {
        structure: Some(&desc),
        ..Packet::default()
    }))
    .unwrap();
    let f = p
        .parse(&write(&Packet {
            template_id: 1,
            frame_number: 500,
            active: Some((3, 0b001)),
            dtis: Some(vec![R, NP, D]),
            fdiffs: Some(vec![1, 20, 300]),
            chains: Some(vec![7]),
            ..Packet::default()
        }))
        .unwrap();
    assert_eq!(f.active_decode_targets, Some(0b001));
    assert_eq!(
        [f.dti(0), f.dti(1), f.dti(2)],
        [Dti::Required, Dti::NotPresent, Dti::Discardable]
    );
    assert_eq!(f.referred().collect::<Vec<_>>(), [499, 480, 200]);
    assert_eq!(f.chain_previous(0), Some(493));
    assert_eq!(f.chain_previous(1), None);
}

#[test]
fn spatial_layers_their_targets_and_resolutions() {
    let desc = l3t1(60);
    let mut p = Parser::default();
    // The offset wraps: templates 60..63, then 0 and 1.
    p.parse(&write(&Packet {
        template_id: 60,
        structure: Some(&desc),
        ..Packet::default()
    }))
    .unwrap();
    let s = p.structure().unwrap();
    assert_eq!(s.target_layers(2), Some((2, 0)));
    assert_eq!(s.protected_by(1), Some(1));
    assert_eq!(s.resolution(0), Some((160, 90)));
    assert_eq!(s.resolution(2), Some((640, 360)));
    assert_eq!(s.decode_target_within(1, 0, 0b111), Some(1));
    let top = p
        .parse(&write(&Packet {
            template_id: 1,
            frame_number: 9,
            ..Packet::default()
        }))
        .unwrap();
    assert_eq!((top.spatial_id, top.temporal_id), (2, 0));
    assert_eq!(top.referred().collect::<Vec<_>>(), [6, 8]);
    assert_eq!(
        [
            top.chain_previous(0),
            top.chain_previous(1),
            top.chain_previous(2)
        ],
        [Some(7), Some(8), Some(8)]
    );
    assert_eq!(top.dti(0), Dti::NotPresent);
    assert_eq!(top.dti(2), Dti::Required);
}

#[test]
fn non_symmetric_numbers_match_the_specification_table() {
    // n = 5: 0 -> 00, 1 -> 01, 2 -> 10, 3 -> 110, 4 -> 111.
    let cases: [(u64, &[bool]); 5] = [
        (0, &[false, false]),
        (1, &[false, true]),
        (2, &[true, false]),
        (3, &[true, true, false]),
        (4, &[true, true, true]),
    ];
    for (value, bits) in cases {
        let mut byte = 0u8;
        for (i, &b) in bits.iter().enumerate() {
            if b {
                byte |= 0x80 >> i;
            }
        }
        let data = [byte];
        let mut r = Bits::new(&data);
        assert_eq!(r.ns(5).unwrap(), value);
        assert_eq!(r.pos, bits.len(), "bits read for {value}");
        let mut w = Writer::default();
        w.ns(5, value);
        assert_eq!((w.bytes[0], w.bits), (byte, bits.len()));
    }
    // n = 1 takes no bits.
    let mut r = Bits::new(&[]);
    assert_eq!(r.ns(1).unwrap(), 0);
}

#[test]
fn refusals_keep_the_current_structure() {
    let mut p = Parser::default();
    // Nothing to name a template of yet.
    let short = write(&Packet {
        template_id: 2,
        ..Packet::default()
    });
    assert_eq!(p.parse(&short), Err(DdError::NoStructure));
    let desc = l1t3(0);
    p.parse(&write(&Packet {
        structure: Some(&desc),
        ..Packet::default()
    }))
    .unwrap();
    // A template the structure does not have.
    let unknown = write(&Packet {
        template_id: 5,
        ..Packet::default()
    });
    assert_eq!(p.parse(&unknown), Err(DdError::UnknownTemplate));
    // A truncated new structure (other offset, so its templates differ) leaves the old one.
    let other = l3t1(30);
    let full = write(&Packet {
        template_id: 34,
        structure: Some(&other),
        ..Packet::default()
    });
    for len in 0..full.len() {
        assert!(
            p.parse(&full[..len]).is_err(),
            "{len} of {} bytes",
            full.len()
        );
        assert_eq!(p.structure().unwrap().decode_targets(), 3);
        assert_eq!(p.structure().unwrap().target_layers(2), Some((0, 2)));
    }
    assert_eq!(p.parse(&short).unwrap().temporal_id, 1);
    // The whole one replaces it.
    let f = p.parse(&full).unwrap();
    assert_eq!(f.spatial_id, 2);
    assert_eq!(p.structure().unwrap().target_layers(2), Some((2, 0)));
    assert_eq!(p.parse(&short), Err(DdError::UnknownTemplate));
}

#[test]
fn limits_are_refused() {
    // Nine referred frames in one template.
    let mut desc = l1t3(0);
    desc.templates[1].fdiffs = vec![1; MAX_FDIFFS + 1];
    let mut p = Parser::default();
    let bytes = write(&Packet {
        structure: Some(&desc),
        ..Packet::default()
    });
    assert_eq!(p.parse(&bytes), Err(DdError::Limit));
    assert!(p.structure().is_none());
    // Nine referred frames in one frame.
    let good = l1t3(0);
    p.parse(&write(&Packet {
        structure: Some(&good),
        ..Packet::default()
    }))
    .unwrap();
    let many = write(&Packet {
        fdiffs: Some(vec![1; MAX_FDIFFS + 1]),
        ..Packet::default()
    });
    assert_eq!(p.parse(&many), Err(DdError::Limit));
    // Five spatial layers.
    let mut layers = Writer::default();
    layers.f(8, 0);
    layers.f(16, 0);
    layers.f(5, 0b1_0000);
    layers.f(6, 0);
    layers.f(5, 0);
    for _ in 0..4 {
        layers.f(2, 2);
    }
    layers.f(2, 3);
    layers.f(64, 0);
    assert_eq!(p.parse(&layers.bytes), Err(DdError::Limit));
}

fn structures() -> impl Strategy<Value = Desc> {
    (1u8..=8, 0u8..64, 1usize..=12, any::<bool>())
        .prop_flat_map(|(dts, offset, templates, resolutions)| {
            let template = (
                proptest::collection::vec(0u8..4, usize::from(dts)),
                proptest::collection::vec(1u8..=16, 0..=MAX_FDIFFS),
                proptest::collection::vec(0u8..16, usize::from(dts)),
                0u8..3,
            );
            (
                Just(dts),
                Just(offset),
                proptest::collection::vec(template, templates),
                0u8..=dts,
                proptest::collection::vec(0u8..8, usize::from(dts)),
                Just(resolutions),
            )
        })
        .prop_map(|(dts, offset, raw, chains, protected, resolutions)| {
            // Lay the templates out in layer order: each step keeps, raises the temporal or
            // the spatial layer.
            let (mut sid, mut tid) = (0u8, 0u8);
            let mut templates = Vec::new();
            for (i, (dtis, fdiffs, chain_fdiffs, step)) in raw.into_iter().enumerate() {
                if i > 0 {
                    match step {
                        1 if tid < 7 => tid += 1,
                        2 if sid < 3 => {
                            sid += 1;
                            tid = 0;
                        }
                        _ => {}
                    }
                }
                templates.push(Template {
                    spatial: sid,
                    temporal: tid,
                    dtis,
                    fdiffs,
                    chain_fdiffs: chain_fdiffs[..usize::from(chains)].to_vec(),
                });
            }
            let layers = usize::from(sid) + 1;
            Desc {
                offset,
                decode_targets: dts,
                templates,
                chains,
                protected_by: protected
                    .into_iter()
                    .map(|c| if chains == 0 { 0 } else { c % chains })
                    .collect(),
                resolutions: resolutions
                    .then(|| (0..layers).map(|l| (160 << l, 90 << l)).collect()),
            }
        })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        first in proptest::collection::vec(any::<u8>(), 0..64),
        then in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut p = Parser::default();
        let _ = p.parse(&first);
        let _ = p.parse(&then);
    }

    #[test]
    fn structures_read_back_as_written(desc in structures(), pick in any::<prop::sample::Index>()) {
        let mut p = Parser::default();
        let index = pick.index(desc.templates.len());
        let template_id = ((usize::from(desc.offset) + index) % MAX_TEMPLATES) as u8;
        let f = p.parse(&write(&Packet {
            template_id,
            frame_number: 1000,
            structure: Some(&desc),
            ..Packet::default()
        })).unwrap();
        let t = &desc.templates[index];
        prop_assert_eq!((f.spatial_id, f.temporal_id), (t.spatial, t.temporal));
        for (dt, &v) in t.dtis.iter().enumerate() {
            prop_assert_eq!(f.dti(dt as u8), Dti::from_bits(u64::from(v)));
        }
        let referred: Vec<u16> = t.fdiffs.iter().map(|&d| 1000 - u16::from(d)).collect();
        prop_assert_eq!(f.referred().collect::<Vec<_>>(), referred);
        let s = p.structure().unwrap();
        prop_assert_eq!(s.decode_targets(), desc.decode_targets);
        prop_assert_eq!(s.chains(), desc.chains);
        for dt in 0..desc.decode_targets {
            let used = desc.templates.iter().filter(|t| t.dtis[usize::from(dt)] != 0);
            let want = used.fold((0, 0), |(s, t), x| (x.spatial.max(s), x.temporal.max(t)));
            prop_assert_eq!(s.target_layers(dt), Some(want));
            if desc.chains > 0 {
                prop_assert_eq!(s.protected_by(dt), Some(desc.protected_by[usize::from(dt)]));
            }
        }
        for (c, &d) in t.chain_fdiffs.iter().enumerate() {
            let want = (d != 0).then(|| 1000 - u16::from(d));
            prop_assert_eq!(f.chain_previous(c as u8), want);
        }
        if let Some(r) = &desc.resolutions {
            for (l, &res) in r.iter().enumerate() {
                prop_assert_eq!(s.resolution(l as u8), Some(res));
            }
        }
    }
}

mod write;
