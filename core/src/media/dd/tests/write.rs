//! The descriptor written again with other active decode targets: byte vectors, read back by
//! the parser, and garbage.

use super::*;
use crate::media::dd::write::{carries_structure, with_active_targets, MAX_GROWTH, MAX_LEN};

/// A descriptor of template 3, frame 101 (start only): mandatory fields alone.
const T2_FRAME: [u8; 3] = [0x83, 0x00, 0x65];

#[test]
fn three_bytes_get_the_extended_fields_and_the_bitmask() {
    let mut out = [0u8; MAX_LEN];
    let len = with_active_targets(&T2_FRAME, 3, 0b011, &mut out).unwrap();
    // Flags 0 1 0 0 0 (only the bitmask), then 011.
    assert_eq!(&out[..len], &[0x83, 0x00, 0x65, 0b0100_0011]);
    // Bits above the decode targets are not written.
    let len = with_active_targets(&T2_FRAME, 3, 0xffff_fff9, &mut out).unwrap();
    assert_eq!(&out[..len], &[0x83, 0x00, 0x65, 0b0100_0001]);
    assert!(!carries_structure(&T2_FRAME) && !carries_structure(&out[..len]));
}

#[test]
fn custom_fields_follow_the_new_bitmask_unchanged() {
    // Custom indications (flags 0 0 1 0 0) R S D for three targets: 00100 11 10 01, padding.
    let src = [0x83, 0x00, 0x65, 0b0010_0111, 0b0010_0000];
    let mut out = [0u8; MAX_LEN];
    let len = with_active_targets(&src, 3, 0b001, &mut out).unwrap();
    // Flags 0 1 1 0 0, bitmask 001, the indications, the source's padding.
    assert_eq!(
        &out[..len],
        &[0x83, 0x00, 0x65, 0b0110_0001, 0b1110_0100, 0b0000_0000]
    );
    // A bitmask already there is replaced, not added to.
    let again = out;
    let len = with_active_targets(&again[..len], 3, 0b111, &mut out).unwrap();
    assert_eq!(
        &out[..len],
        &[0x83, 0x00, 0x65, 0b0110_0111, 0b1110_0100, 0b0000_0000]
    );
}

#[test]
fn the_bitmask_goes_after_a_structure() {
    let desc = l1t3(0);
    let packet = |active| Packet {
        start: true,
        end: true,
        frame_number: 100,
        structure: Some(&desc),
        active,
        ..Packet::default()
    };
    let src = write(&packet(None));
    assert!(carries_structure(&src));
    let mut out = [0u8; MAX_LEN];
    // The structure's own count of decode targets, whatever the caller says.
    let len = with_active_targets(&src, 7, 0b011, &mut out).unwrap();
    let want = write(&packet(Some((3, 0b011))));
    assert_eq!(&out[..want.len()], &want[..]);
    assert!(out[want.len()..len].iter().all(|&b| b == 0), "padding");
    let f = Parser::default().parse(&out[..len]).unwrap();
    assert_eq!(f.active_decode_targets, Some(0b011));
}

#[test]
fn targets_within_layers() {
    let mut p = Parser::default();
    p.parse(&write(&Packet {
        structure: Some(&l1t3(0)),
        ..Packet::default()
    }))
    .unwrap();
    let s = p.structure().unwrap();
    let masks: Vec<u32> = (0..4).map(|t| s.targets_within(0, t)).collect();
    assert_eq!(masks, [0b001, 0b011, 0b111, 0b111]);
    let mut p = Parser::default();
    p.parse(&write(&Packet {
        structure: Some(&l3t1(0)),
        ..Packet::default()
    }))
    .unwrap();
    let s = p.structure().unwrap();
    let masks: Vec<u32> = (0..3).map(|sid| s.targets_within(sid, 0)).collect();
    assert_eq!(masks, [0b001, 0b011, 0b111]);
    assert_eq!(
        p.active_decode_targets(),
        0b111,
        "a structure activates all"
    );
    p.parse(&write(&Packet {
        active: Some((3, 0b001)),
        ..Packet::default()
    }))
    .unwrap();
    p.parse(&[0x00, 0x00, 0x02]).unwrap();
    assert_eq!(p.active_decode_targets(), 0b001, "kept until said again");
}

/// Everything a descriptor may carry besides its template, drawn at random.
#[derive(Debug, Clone)]
struct Extras {
    start: bool,
    end: bool,
    structure: bool,
    active: Option<u32>,
    dtis: Option<u64>,
    fdiffs: Option<Vec<u16>>,
    chains: Option<[u8; 32]>,
}

fn extras() -> impl Strategy<Value = Extras> {
    (
        (any::<bool>(), any::<bool>(), any::<bool>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(proptest::collection::vec(1u16..=4096, 0..=MAX_FDIFFS)),
        proptest::option::of(any::<[u8; 32]>()),
    )
        .prop_map(
            |((start, end, structure), active, dtis, fdiffs, chains)| Extras {
                start,
                end,
                structure,
                active,
                dtis,
                fdiffs,
                chains,
            },
        )
}

proptest! {
    #[test]
    fn rewritten_descriptors_read_back_with_the_new_targets(
        desc in structures(),
        pick in any::<prop::sample::Index>(),
        x in extras(),
        mask in any::<u32>(),
    ) {
        let dts = desc.decode_targets;
        let all = (1u32 << dts) - 1;
        let index = pick.index(desc.templates.len());
        let template_id = ((usize::from(desc.offset) + index) % MAX_TEMPLATES) as u8;
        let key = write(&Packet {
            template_id,
            structure: Some(&desc),
            ..Packet::default()
        });
        let packet = |active: Option<u32>| Packet {
            start: x.start,
            end: x.end,
            template_id,
            frame_number: 1000,
            structure: x.structure.then_some(&desc),
            active: active.map(|m| (dts, m & all)),
            dtis: x.dtis.map(|d| (0..dts).map(|i| (d >> (2 * i) & 3) as u8).collect()),
            fdiffs: x.fdiffs.clone(),
            chains: x.chains.map(|c| c[..usize::from(desc.chains)].to_vec()),
        };
        let src = write(&packet(x.active));
        let mut before = Parser::default();
        before.parse(&key).unwrap();
        let f = before.parse(&src).unwrap();

        let mut out = [0u8; MAX_LEN];
        // A descriptor with a structure counts its decode targets itself.
        let given = if x.structure { 1 } else { dts };
        let len = with_active_targets(&src, given, mask, &mut out).unwrap();
        prop_assert!(len <= src.len() + MAX_GROWTH);
        let mut after = Parser::default();
        after.parse(&key).unwrap();
        let g = after.parse(&out[..len]).unwrap();
        prop_assert_eq!(g, FrameInfo { active_decode_targets: Some(mask & all), ..f });
        prop_assert_eq!(
            format!("{:?}", after.structure()),
            format!("{:?}", before.structure())
        );
        prop_assert_eq!(after.active_decode_targets(), mask & all);
        // Bit for bit what a writer of the same fields with that bitmask writes, then zeros.
        let want = write(&packet(Some(mask)));
        prop_assert_eq!(&out[..want.len()], &want[..]);
        prop_assert!(out[want.len()..len].iter().all(|&b| b == 0));
    }

    #[test]
    fn garbage_never_panics(
        src in proptest::collection::vec(any::<u8>(), 0..48),
        dts in 0u8..40,
        mask in any::<u32>(),
        room in 0usize..64,
    ) {
        let mut out = vec![0u8; room];
        if let Ok(len) = with_active_targets(&src, dts, mask, &mut out) {
            prop_assert!(len <= room && len <= src.len() + MAX_GROWTH);
        }
        let _ = carries_structure(&src);
    }
}
