//! Tests of the RTP packet view and writer: fixed byte layouts, errors, property tests built
//! on an independent packet builder, and a cross-check against str0m's RTP header parser.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

/// An RTP packet described field by field, for the test builder.
#[derive(Debug, Clone)]
struct Spec {
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    csrcs: Vec<u32>,
    ext: Option<ExtSpec>,
    payload: Vec<u8>,
    /// Total padding bytes including the count byte (0: no P bit).
    padding: u8,
}

/// An RFC 8285 extension block described element by element.
#[derive(Debug, Clone)]
struct ExtSpec {
    two_byte: bool,
    appbits: u8,
    /// (id, value, zero padding bytes written before the element)
    elements: Vec<(u8, Vec<u8>, usize)>,
}

impl Spec {
    fn plain(payload: &[u8]) -> Spec {
        Spec {
            pt: 96,
            seq: 1000,
            ts: 90_000,
            ssrc: 0x1234_5678,
            marker: false,
            csrcs: vec![],
            ext: None,
            payload: payload.to_vec(),
            padding: 0,
        }
    }

    fn with_ext(mut self, two_byte: bool, elements: &[(u8, &[u8])]) -> Spec {
        self.ext = Some(ExtSpec {
            two_byte,
            appbits: 0,
            elements: elements.iter().map(|&(i, v)| (i, v.to_vec(), 0)).collect(),
        });
        self
    }

    fn elements(&self) -> Vec<(u8, Vec<u8>)> {
        self.ext
            .iter()
            .flat_map(|e| e.elements.iter().map(|(i, v, _)| (*i, v.clone())))
            .collect()
    }
}

/// Builds the bytes of `s`, written here independently of the module's writer.
fn build(s: &Spec) -> Vec<u8> {
    let mut b = vec![
        0x80 | (u8::from(s.padding > 0) << 5)
            | (u8::from(s.ext.is_some()) << 4)
            | s.csrcs.len() as u8,
        (u8::from(s.marker) << 7) | s.pt,
    ];
    b.extend_from_slice(&s.seq.to_be_bytes());
    b.extend_from_slice(&s.ts.to_be_bytes());
    b.extend_from_slice(&s.ssrc.to_be_bytes());
    for c in &s.csrcs {
        b.extend_from_slice(&c.to_be_bytes());
    }
    if let Some(e) = &s.ext {
        let mut block = Vec::new();
        for (id, value, pad) in &e.elements {
            block.extend(std::iter::repeat_n(0, *pad));
            if e.two_byte {
                block.push(*id);
                block.push(value.len() as u8);
            } else {
                block.push((id << 4) | (value.len() as u8 - 1));
            }
            block.extend_from_slice(value);
        }
        while block.len() % 4 != 0 {
            block.push(0);
        }
        let profile: u16 = if e.two_byte {
            0x1000 | u16::from(e.appbits & 0x0f)
        } else {
            0xBEDE
        };
        b.extend_from_slice(&profile.to_be_bytes());
        b.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
        b.extend_from_slice(&block);
    }
    b.extend_from_slice(&s.payload);
    if s.padding > 0 {
        b.extend(std::iter::repeat_n(0xAA, usize::from(s.padding) - 1));
        b.push(s.padding);
    }
    b
}

fn ext_list(p: &RtpPacket<'_>) -> Vec<(u8, Vec<u8>)> {
    p.extensions().map(|(i, v)| (i, v.to_vec())).collect()
}

fn one_byte_element() -> impl Strategy<Value = (u8, Vec<u8>, usize)> {
    (1u8..=14, vec(any::<u8>(), 1..=16), 0usize..3)
}

fn two_byte_element() -> impl Strategy<Value = (u8, Vec<u8>, usize)> {
    (1u8..=255, vec(any::<u8>(), 0..=255), 0usize..3)
}

fn ext_spec() -> impl Strategy<Value = ExtSpec> {
    prop_oneof![
        vec(one_byte_element(), 0..6).prop_map(|elements| ExtSpec {
            two_byte: false,
            appbits: 0,
            elements,
        }),
        (any::<u8>(), vec(two_byte_element(), 0..6)).prop_map(|(appbits, elements)| ExtSpec {
            two_byte: true,
            appbits,
            elements,
        }),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            0u8..128,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
        ),
        vec(any::<u32>(), 0..=15),
        proptest::option::of(ext_spec()),
        vec(any::<u8>(), 0..300),
        prop_oneof![Just(0u8), 1u8..=255],
    )
        .prop_map(
            |((pt, seq, ts, ssrc, marker), csrcs, ext, payload, padding)| Spec {
                pt,
                seq,
                ts,
                ssrc,
                marker,
                csrcs,
                ext,
                payload,
                padding,
            },
        )
}

/// Checks everything `parse` promises about a packet it accepted.
fn check_consistent(buf: &[u8], p: &RtpPacket<'_>) {
    assert_eq!(header_len(buf), Some(p.header_len()));
    assert_eq!(
        p.header_len() + p.payload().len() + p.padding_len(),
        buf.len()
    );
    assert_eq!(p.csrcs().count(), p.csrc_count());
    assert!(p.extensions().count() <= buf.len());
    for (id, value) in p.extensions() {
        assert_ne!(id, 0);
        assert!(p.extension(id).is_some());
        assert!(value.len() <= 255);
    }
    assert_eq!(p.as_bytes(), buf);
}

// ---- Fixed layouts and errors ----

#[test]
fn parses_a_plain_packet() {
    let buf = [
        0x80, 0xE0, 0x12, 0x34, 0x00, 0x01, 0x02, 0x03, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3,
    ];
    let p = RtpPacket::parse(&buf).unwrap();
    assert!(p.marker());
    assert_eq!(p.payload_type(), 0x60);
    assert_eq!(p.sequence_number(), 0x1234);
    assert_eq!(p.timestamp(), 0x0001_0203);
    assert_eq!(p.ssrc(), 0xDEAD_BEEF);
    assert_eq!(p.header_len(), 12);
    assert_eq!(p.payload(), &[1, 2, 3]);
    assert_eq!(p.padding_len(), 0);
    assert_eq!(p.extensions().count(), 0);
    assert_eq!(p.csrcs().count(), 0);
}

#[test]
fn parses_the_one_byte_form_with_padding_between_elements() {
    // RFC 8285 section 4.2's example layout: ids 1 (1 byte), 2 (2 bytes), two padding
    // bytes, 3 (4 bytes), then padding to the word boundary.
    let mut buf = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    buf.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x03]);
    buf.extend_from_slice(&[0x10, 0xAA, 0x21, 0xBB, 0xBB, 0x00, 0x00, 0x33]);
    buf.extend_from_slice(&[0xCC, 0xCC, 0xCC, 0xCC]);
    buf.extend_from_slice(&[9, 9]);
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(p.header_len(), 28);
    assert_eq!(
        ext_list(&p),
        vec![(1, vec![0xAA]), (2, vec![0xBB, 0xBB]), (3, vec![0xCC; 4])]
    );
    assert_eq!(p.extension(2), Some(&[0xBB, 0xBB][..]));
    assert_eq!(p.extension(4), None);
    assert_eq!(p.payload(), &[9, 9]);
}

#[test]
fn parses_the_two_byte_form_with_empty_values_and_appbits() {
    let mut buf = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    buf.extend_from_slice(&[0x10, 0x0F, 0x00, 0x02]);
    buf.extend_from_slice(&[0x01, 0x00, 0x00, 200, 0x01, 0x77, 0x00, 0x00]);
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(ext_list(&p), vec![(1, vec![]), (200, vec![0x77])]);
    assert_eq!(p.payload(), &[] as &[u8]);
}

#[test]
fn one_byte_id_15_ends_the_walk() {
    let mut buf = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    // id 1 then id 15 with a length that would overrun: ignored.
    buf.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x55, 0xFF, 0x22]);
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(ext_list(&p), vec![(1, vec![0x55])]);
}

#[test]
fn other_profiles_are_opaque() {
    let mut buf = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
    buf.extend_from_slice(&[0x12, 0x34, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 7]);
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(p.header_len(), 20);
    assert_eq!(p.extensions().count(), 0);
    assert_eq!(p.payload(), &[7]);
}

#[test]
fn reads_csrcs_and_padding() {
    let spec = Spec {
        csrcs: vec![1, 0xFFFF_FFFF, 3],
        padding: 4,
        ..Spec::plain(&[5, 6, 7])
    };
    let buf = build(&spec);
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 0xFFFF_FFFF, 3]);
    assert_eq!(p.header_len(), 24);
    assert_eq!(p.padding_len(), 4);
    assert_eq!(p.payload(), &[5, 6, 7]);
}

#[test]
fn padding_may_fill_everything_after_the_header() {
    let buf = build(&Spec {
        padding: 8,
        ..Spec::plain(&[])
    });
    let p = RtpPacket::parse(&buf).unwrap();
    assert_eq!(p.payload(), &[] as &[u8]);
    assert_eq!(p.padding_len(), 8);
}

#[test]
fn refuses_malformed_packets() {
    let ok = build(&Spec::plain(&[1, 2, 3, 4]));
    assert_eq!(
        RtpPacket::parse(&ok[..11]).err(),
        Some(PacketError::TooShort)
    );
    assert_eq!(RtpPacket::parse(&[]).err(), Some(PacketError::TooShort));

    for version in [0u8, 1, 3] {
        let mut bad = ok.clone();
        bad[0] = (bad[0] & 0x3f) | (version << 6);
        assert_eq!(RtpPacket::parse(&bad).err(), Some(PacketError::BadVersion));
    }

    let mut csrc = ok.clone();
    csrc[0] |= 0x02; // two CSRCs: 8 bytes, only 4 follow
    assert_eq!(
        RtpPacket::parse(&csrc).err(),
        Some(PacketError::BadCsrcCount)
    );

    let mut no_ext_header = ok[..14].to_vec();
    no_ext_header[0] |= 0x10;
    assert_eq!(
        RtpPacket::parse(&no_ext_header).err(),
        Some(PacketError::BadExtension)
    );

    let with_ext = build(&Spec::plain(&[]).with_ext(false, &[(1, &[1, 2])]));
    let mut long_block = with_ext.clone();
    long_block[15] = 2; // two words announced, one present
    assert_eq!(
        RtpPacket::parse(&long_block).err(),
        Some(PacketError::BadExtension)
    );

    let mut overrun = with_ext.clone();
    overrun[16] = 0x13; // id 1, 4 bytes: runs past the 4-byte block
    assert_eq!(
        RtpPacket::parse(&overrun).err(),
        Some(PacketError::BadExtension)
    );

    let mut id_zero = with_ext.clone();
    id_zero[16] = 0x01; // id 0 with a length
    assert_eq!(
        RtpPacket::parse(&id_zero).err(),
        Some(PacketError::BadExtension)
    );

    let two = build(&Spec::plain(&[]).with_ext(true, &[(5, &[1])]));
    let mut two_overrun = two.clone();
    two_overrun[17] = 3; // 3 bytes announced, 2 left in the block
    assert_eq!(
        RtpPacket::parse(&two_overrun).err(),
        Some(PacketError::BadExtension)
    );
    let mut two_cut = two.clone();
    two_cut[16..20].copy_from_slice(&[0, 0, 0, 9]); // an element header cut by the end
    assert_eq!(
        RtpPacket::parse(&two_cut).err(),
        Some(PacketError::BadExtension)
    );

    let mut zero_pad = ok.clone();
    zero_pad[0] |= 0x20;
    *zero_pad.last_mut().unwrap() = 0;
    assert_eq!(
        RtpPacket::parse(&zero_pad).err(),
        Some(PacketError::BadPadding)
    );
    let mut long_pad = ok.clone();
    long_pad[0] |= 0x20;
    *long_pad.last_mut().unwrap() = 5; // 4 bytes after the header
    assert_eq!(
        RtpPacket::parse(&long_pad).err(),
        Some(PacketError::BadPadding)
    );
    *long_pad.last_mut().unwrap() = 4;
    assert!(RtpPacket::parse(&long_pad).is_ok());
}

#[test]
fn setters_edit_the_fixed_header_only() {
    let spec = Spec {
        marker: true,
        csrcs: vec![7],
        ..Spec::plain(&[1, 2, 3])
    }
    .with_ext(false, &[(3, &[9, 9])]);
    let mut buf = build(&spec);
    set_sequence_number(&mut buf, 0xBEEF);
    set_timestamp(&mut buf, 0xCAFE_F00D);
    set_ssrc(&mut buf, 42);
    set_payload_type(&mut buf, 0xFF);
    let p = RtpPacket::parse(&buf).unwrap();
    assert!(p.marker());
    assert_eq!(p.payload_type(), 0x7f);
    set_marker(&mut buf, false);
    set_payload_type(&mut buf, 111);
    let p = RtpPacket::parse(&buf).unwrap();
    assert!(!p.marker());
    assert_eq!(p.payload_type(), 111);
    assert_eq!(p.sequence_number(), 0xBEEF);
    assert_eq!(p.timestamp(), 0xCAFE_F00D);
    assert_eq!(p.ssrc(), 42);
    assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7]);
    assert_eq!(ext_list(&p), vec![(3, vec![9, 9])]);
    assert_eq!(p.payload(), &[1, 2, 3]);

    let mut short = [0x80u8; 11];
    set_sequence_number(&mut short, 1);
    set_timestamp(&mut short, 1);
    set_ssrc(&mut short, 1);
    set_payload_type(&mut short, 1);
    set_marker(&mut short, false);
    assert_eq!(short, [0x80u8; 11]);
}

#[test]
fn per_packet_types_stay_small_and_sendable() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RtpPacket<'static>>();
    send_sync::<ExtensionIdMap>();
    assert!(std::mem::size_of::<RtpPacket<'static>>() <= 48);
    assert_eq!(std::mem::size_of::<ExtensionIdMap>(), 256);
    assert_eq!(std::mem::size_of::<OutHeader>(), 12);
}

// ---- Forwarding ----

fn out_header() -> OutHeader {
    OutHeader {
        payload_type: 100,
        sequence_number: 7,
        timestamp: 0x0102_0304,
        ssrc: 0xA1A2_A3A4,
        marker: true,
    }
}

#[test]
fn forwards_with_mapped_ids_extras_and_rtx() {
    let src_buf = build(
        &Spec {
            csrcs: vec![11, 22],
            padding: 3,
            ..Spec::plain(&[1, 2, 3, 4, 5])
        }
        .with_ext(
            false,
            &[(1, &[0x85]), (3, &[0, 1]), (4, b"0"), (9, &[1, 2, 3])],
        ),
    );
    let src = RtpPacket::parse(&src_buf).unwrap();
    let mut map = ExtensionIdMap::new();
    map.set(1, 10); // audio level -> 10
    map.set(3, 3); // transport-wide seq, replaced by the extra below
    map.set(4, 2); // mid -> 2; id 9 unmapped
    let mut out = [0u8; 1500];
    let n = write_forwarded(
        &mut out,
        &src,
        out_header(),
        &map,
        &[(3, &[0xAB, 0xCD])],
        Some(0x4242),
    )
    .unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x92, 0xE4, 0, 7, 1, 2, 3, 4, 0xA1, 0xA2, 0xA3, 0xA4, // fixed header
        0, 0, 0, 11, 0, 0, 0, 22, // CSRCs
        0xBE, 0xDE, 0, 2, 0xA0, 0x85, 0x20, b'0', 0x31, 0xAB, 0xCD, 0, // extensions
        0x42, 0x42, // original sequence number
        1, 2, 3, 4, 5, // payload, padding dropped
    ];
    assert_eq!(&out[..n], expected);
}

#[test]
fn forwards_without_extensions_clears_the_x_bit() {
    let src_buf = build(&Spec::plain(&[9]).with_ext(false, &[(5, &[1])]));
    let src = RtpPacket::parse(&src_buf).unwrap();
    let mut out = [0u8; 64];
    let n = write_forwarded(
        &mut out,
        &src,
        out_header(),
        &ExtensionIdMap::new(),
        &[],
        None,
    )
    .unwrap();
    assert_eq!(n, 13);
    assert_eq!(out[0], 0x80);
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(p.payload(), &[9]);
}

#[test]
fn a_long_value_forces_the_two_byte_form() {
    // A dependency descriptor longer than 16 bytes next to one-byte-sized values.
    let descriptor: Vec<u8> = (0..40).collect();
    let src_buf = build(&Spec::plain(&[1]).with_ext(true, &[(1, &[5]), (12, &descriptor)]));
    let src = RtpPacket::parse(&src_buf).unwrap();
    let mut out = [0u8; 200];
    let n = write_forwarded(
        &mut out,
        &src,
        out_header(),
        &ExtensionIdMap::identity(),
        &[(3, &[0, 9])],
        None,
    )
    .unwrap();
    assert_eq!(&out[12..14], &[0x10, 0x00]);
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(
        ext_list(&p),
        vec![(1, vec![5]), (12, descriptor), (3, vec![0, 9])]
    );

    // An id above 14 and an empty value each force it too.
    for extra in [(15u8, &[1u8][..]), (1, &[][..])] {
        let src_buf = build(&Spec::plain(&[1]));
        let src = RtpPacket::parse(&src_buf).unwrap();
        let n = write_forwarded(
            &mut out,
            &src,
            out_header(),
            &ExtensionIdMap::new(),
            &[extra],
            None,
        )
        .unwrap();
        assert_eq!(&out[12..14], &[0x10, 0x00]);
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(ext_list(&p), vec![(extra.0, extra.1.to_vec())]);
    }
}

#[test]
fn refuses_extras_no_form_can_carry() {
    let src_buf = build(&Spec::plain(&[1]));
    let src = RtpPacket::parse(&src_buf).unwrap();
    let mut out = [0u8; 1500];
    let map = ExtensionIdMap::new();
    let long = [0u8; 256];
    for extra in [(0u8, &[1u8][..]), (5, &long[..])] {
        assert_eq!(
            write_forwarded(&mut out, &src, out_header(), &map, &[extra], None),
            Err(PacketError::BadExtension)
        );
    }
}

#[test]
fn every_short_buffer_is_too_small() {
    let src_buf = build(
        &Spec {
            csrcs: vec![1],
            ..Spec::plain(&[1, 2, 3])
        }
        .with_ext(false, &[(1, &[1, 2, 3])]),
    );
    let src = RtpPacket::parse(&src_buf).unwrap();
    let map = ExtensionIdMap::identity();
    let mut out = [0u8; 100];
    let n = write_forwarded(&mut out, &src, out_header(), &map, &[], Some(1)).unwrap();
    assert_eq!(n, 12 + 4 + 8 + 2 + 3);
    for len in 0..n {
        assert_eq!(
            write_forwarded(&mut out[..len], &src, out_header(), &map, &[], Some(1)),
            Err(PacketError::BufferTooSmall),
            "len {len}"
        );
    }
}

#[test]
fn rtx_original_splits_the_osn() {
    assert_eq!(rtx_original(&[0x12, 0x34, 9]), Some((0x1234, &[9][..])));
    assert_eq!(rtx_original(&[0x12, 0x34]), Some((0x1234, &[][..])));
    assert_eq!(rtx_original(&[0x12]), None);
    assert_eq!(rtx_original(&[]), None);
}

#[test]
fn extension_id_map() {
    let mut map = ExtensionIdMap::new();
    assert!((0..=255).all(|id| map.get(id).is_none()));
    map.set(3, 5);
    map.set(0, 1);
    assert_eq!(map.get(3), Some(5));
    assert_eq!(map.get(0), None);
    map.set(3, 0);
    assert_eq!(map.get(3), None);
    let identity = ExtensionIdMap::identity();
    assert_eq!(identity.get(0), None);
    assert!((1..=255).all(|id| identity.get(id) == Some(id)));
    assert_eq!(ExtensionIdMap::default(), ExtensionIdMap::new());
    map.set(2, 9);
    assert_eq!(format!("{map:?}"), "{2: 9}");
}

// ---- Extension kinds and values ----

#[test]
fn extension_kinds_and_uris() {
    let all = [
        ExtensionKind::AudioLevel,
        ExtensionKind::TransportWideCc,
        ExtensionKind::AbsSendTime,
        ExtensionKind::Mid,
        ExtensionKind::Rid,
        ExtensionKind::RepairedRid,
        ExtensionKind::VideoOrientation,
        ExtensionKind::AbsCaptureTime,
        ExtensionKind::PlayoutDelay,
        ExtensionKind::DependencyDescriptor,
        ExtensionKind::VideoLayersAllocation,
        ExtensionKind::TimeOffset,
    ];
    for kind in all {
        let uri = kind.uri().unwrap();
        assert_eq!(ExtensionKind::from_uri(uri), kind);
        assert_eq!(ExtensionKind::from_uri(&uri.to_uppercase()), kind);
    }
    assert_eq!(ExtensionKind::Other.uri(), None);
    assert_eq!(ExtensionKind::from_uri("urn:example"), ExtensionKind::Other);
    assert_eq!(
        ExtensionKind::TransportWideCc.uri(),
        Some("http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")
    );
    assert_eq!(
        ExtensionKind::DependencyDescriptor.uri(),
        Some("https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension")
    );
    assert_eq!(
        ExtensionKind::VideoLayersAllocation.uri(),
        Some("http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00")
    );
    // Every URI the router offers is understood here.
    for uri in [
        ext_uri::SSRC_AUDIO_LEVEL,
        ext_uri::ABS_SEND_TIME,
        ext_uri::TRANSPORT_CC,
        ext_uri::MID,
        ext_uri::RTP_STREAM_ID,
        ext_uri::REPAIRED_RTP_STREAM_ID,
        ext_uri::VIDEO_ORIENTATION,
        ext_uri::TOFFSET,
    ] {
        assert_ne!(ExtensionKind::from_uri(uri), ExtensionKind::Other, "{uri}");
    }
}

#[test]
fn extension_values() {
    assert_eq!(audio_level(&[0x80 | 37]), Some((true, 37)));
    assert_eq!(audio_level(&[127]), Some((false, 127)));
    assert_eq!(audio_level(&[]), None);
    assert_eq!(audio_level(&[1, 2]), None);

    assert_eq!(transport_wide_seq(&[0xAB, 0xCD]), Some(0xABCD));
    assert_eq!(transport_wide_seq(&[0xAB]), None);
    assert_eq!(transport_wide_seq(&[0xAB, 0xCD, 0]), None);

    assert_eq!(rid(b"r0"), Some("r0"));
    assert_eq!(rid(b"a-b_C9"), Some("a-b_C9"));
    assert_eq!(rid(b"0123456789abcdef"), Some("0123456789abcdef"));
    assert_eq!(rid(b"0123456789abcdefg"), None);
    assert_eq!(rid(b""), None);
    assert_eq!(rid(b"a b"), None);
    assert_eq!(rid(b"a\0"), None);
    assert_eq!(rid(&[0xC3, 0xA9]), None);

    assert_eq!(video_orientation(&[0x0B]), Some(0x0B));
    assert_eq!(video_orientation(&[0xF1]), Some(0x01));
    assert_eq!(video_orientation(&[]), None);
    assert_eq!(video_orientation(&[1, 1]), None);
}

// ---- Properties ----

/// A map from source ids to target ids, written as a plain table so the expectation does not
/// go through `ExtensionIdMap`.
fn id_table() -> impl Strategy<Value = Vec<Option<u8>>> {
    vec(proptest::option::of(prop_oneof![1u8..=14, 1u8..=255]), 256)
}

fn extras() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    vec(
        prop_oneof![
            (1u8..=14, vec(any::<u8>(), 1..=16)),
            (1u8..=255, vec(any::<u8>(), 0..=255)),
        ],
        0..3,
    )
}

fn out_header_strategy() -> impl Strategy<Value = OutHeader> {
    (
        0u8..128,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(
            |(payload_type, sequence_number, timestamp, ssrc, marker)| OutHeader {
                payload_type,
                sequence_number,
                timestamp,
                ssrc,
                marker,
            },
        )
}

/// Arbitrary bytes that start like RTP, so parsing gets past the first checks.
fn rtp_like() -> impl Strategy<Value = Vec<u8>> {
    (
        0x80u8..=0xBF,
        vec(any::<u8>(), 11..40),
        prop_oneof![Just(vec![]), Just(vec![0xBE, 0xDE]), Just(vec![0x10, 0x00])],
        any::<u8>(),
        vec(any::<u8>(), 0..200),
    )
        .prop_map(|(first, mut fixed, profile, words, rest)| {
            fixed.truncate(11);
            let mut b = vec![first & !0x0f];
            b.extend(fixed);
            b.extend(profile);
            b.extend([0, words % 16]);
            b.extend(rest);
            b
        })
}

/// Valid packets with a few bytes changed and maybe cut short, so that parsing reaches the
/// extension walk and the padding check with nearly valid input.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        spec(),
        vec((any::<usize>(), any::<u8>()), 1..4),
        any::<usize>(),
        any::<bool>(),
    )
        .prop_map(|(spec, changes, cut, truncate)| {
            let mut b = build(&spec);
            for (at, byte) in changes {
                let len = b.len();
                b[at % len] = byte;
            }
            if truncate {
                b.truncate(cut % (b.len() + 1));
            }
            b
        })
}

proptest! {
    #[test]
    fn parse_never_panics_on_mutated_packets(buf in mutated()) {
        if let Ok(p) = RtpPacket::parse(&buf) {
            check_consistent(&buf, &p);
        }
        if header_len(&buf).is_none() {
            prop_assert!(RtpPacket::parse(&buf).is_err());
        }
    }

    #[test]
    fn parse_never_panics(buf in vec(any::<u8>(), 0..400)) {
        if let Ok(p) = RtpPacket::parse(&buf) {
            check_consistent(&buf, &p);
        }
        if header_len(&buf).is_none() {
            prop_assert!(RtpPacket::parse(&buf).is_err());
        }
    }

    #[test]
    fn parse_never_panics_on_rtp_like_bytes(buf in rtp_like()) {
        if let Ok(p) = RtpPacket::parse(&buf) {
            check_consistent(&buf, &p);
        }
        if header_len(&buf).is_none() {
            prop_assert!(RtpPacket::parse(&buf).is_err());
        }
    }

    #[test]
    fn round_trip(spec in spec()) {
        let buf = build(&spec);
        let p = RtpPacket::parse(&buf).unwrap();
        check_consistent(&buf, &p);
        prop_assert_eq!(p.payload_type(), spec.pt);
        prop_assert_eq!(p.sequence_number(), spec.seq);
        prop_assert_eq!(p.timestamp(), spec.ts);
        prop_assert_eq!(p.ssrc(), spec.ssrc);
        prop_assert_eq!(p.marker(), spec.marker);
        prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), spec.csrcs.clone());
        prop_assert_eq!(ext_list(&p), spec.elements());
        prop_assert_eq!(p.payload(), &spec.payload[..]);
        prop_assert_eq!(p.padding_len(), usize::from(spec.padding));
        // `extension` returns the first element with an id.
        for (id, _) in spec.elements() {
            let first = spec.elements().into_iter().find(|(i, _)| *i == id).unwrap().1;
            prop_assert_eq!(p.extension(id), Some(&first[..]));
        }
    }

    #[test]
    fn forwarded_packets_parse_back(
        spec in spec(),
        table in id_table(),
        extra in extras(),
        header in out_header_strategy(),
        rtx in proptest::option::of(any::<u16>()),
    ) {
        let src_buf = build(&spec);
        let src = RtpPacket::parse(&src_buf).unwrap();
        let mut map = ExtensionIdMap::new();
        for (from, to) in table.iter().enumerate() {
            if let Some(to) = to {
                map.set(from as u8, *to);
            }
        }
        let extra_refs: Vec<(u8, &[u8])> = extra.iter().map(|(i, v)| (*i, &v[..])).collect();

        let mut expected: Vec<(u8, Vec<u8>)> = spec
            .elements()
            .into_iter()
            .filter_map(|(id, v)| table[usize::from(id)].map(|to| (to, v)))
            .filter(|(to, _)| !extra.iter().any(|(e, _)| e == to))
            .collect();
        expected.extend(extra.iter().cloned());
        let one_byte = expected.iter().all(|(id, v)| *id <= 14 && (1..=16).contains(&v.len()));
        let element_bytes: usize = expected
            .iter()
            .map(|(_, v)| v.len() + if one_byte { 1 } else { 2 })
            .sum();
        let ext_len = if expected.is_empty() { 0 } else { 4 + element_bytes.div_ceil(4) * 4 };
        let total = 12 + 4 * spec.csrcs.len() + ext_len + 2 * usize::from(rtx.is_some())
            + spec.payload.len();

        let mut out = vec![0u8; total + 50];
        let n = write_forwarded(&mut out, &src, header, &map, &extra_refs, rtx).unwrap();
        prop_assert_eq!(n, total);
        let p = RtpPacket::parse(&out[..n]).unwrap();
        prop_assert_eq!(p.payload_type(), header.payload_type);
        prop_assert_eq!(p.sequence_number(), header.sequence_number);
        prop_assert_eq!(p.timestamp(), header.timestamp);
        prop_assert_eq!(p.ssrc(), header.ssrc);
        prop_assert_eq!(p.marker(), header.marker);
        prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), spec.csrcs.clone());
        prop_assert_eq!(p.padding_len(), 0);
        prop_assert_eq!(ext_list(&p), expected.clone());
        if !expected.is_empty() {
            let profile = &out[12 + 4 * spec.csrcs.len()..][..2];
            prop_assert_eq!(profile, if one_byte { &[0xBE, 0xDE] } else { &[0x10, 0x00] });
        }
        match rtx {
            Some(osn) => prop_assert_eq!(rtx_original(p.payload()), Some((osn, &spec.payload[..]))),
            None => prop_assert_eq!(p.payload(), &spec.payload[..]),
        }

        let short = n.saturating_sub(1 + usize::from(spec.pt) % 8);
        prop_assert_eq!(
            write_forwarded(&mut out[..short], &src, header, &map, &extra_refs, rtx),
            Err(PacketError::BufferTooSmall)
        );
    }
}

// ---- Cross-check against str0m's RTP header parser ----

mod str0m_cross_check {
    use super::*;
    use str0m::rtp::{ExtensionMap, RtpHeader};

    fn alnum(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
        vec(prop_oneof![b'a'..=b'z', b'A'..=b'Z', b'0'..=b'9'], len)
            .prop_map(|b| String::from_utf8(b).unwrap())
    }

    /// A packet with the extensions of str0m's standard map (Chrome's ids: 1 audio level,
    /// 3 transport-wide seq, 4 mid, 10 rid, 11 repaired rid) plus ids str0m does not map.
    fn standard_spec() -> impl Strategy<Value = (Spec, u8, bool, u16, String, String)> {
        (
            spec(),
            0u8..128,
            any::<bool>(),
            any::<u16>(),
            alnum(1..=16),
            alnum(1..=8),
            any::<bool>(),
            vec(
                (
                    prop_oneof![5u8..=9, Just(12u8), Just(14u8)],
                    vec(any::<u8>(), 1..=16),
                ),
                0..3,
            ),
        )
            .prop_map(
                |(mut spec, level, voice, twcc, mid, rid, two_byte, others)| {
                    let mut elements: Vec<(u8, Vec<u8>, usize)> = vec![
                        (1, vec![(u8::from(voice) << 7) | level], 0),
                        (3, twcc.to_be_bytes().to_vec(), 1),
                        (4, mid.as_bytes().to_vec(), 0),
                        (10, rid.as_bytes().to_vec(), 2),
                    ];
                    elements.extend(others.into_iter().map(|(i, v)| (i, v, 0)));
                    spec.ext = Some(ExtSpec {
                        two_byte,
                        appbits: 0,
                        elements,
                    });
                    (spec, level, voice, twcc, mid, rid)
                },
            )
    }

    fn assert_same_header(buf: &[u8], p: &RtpPacket<'_>, h: &RtpHeader) {
        assert_eq!(h.sequence_number, p.sequence_number());
        assert_eq!(h.timestamp, p.timestamp());
        assert_eq!(*h.ssrc, p.ssrc());
        assert_eq!(h.marker, p.marker());
        assert_eq!(*h.payload_type, p.payload_type());
        assert_eq!(h.header_len, p.header_len());
        assert_eq!(h.csrc_count, p.csrc_count());
        assert_eq!(&h.csrc[..h.csrc_count], &p.csrcs().collect::<Vec<_>>()[..]);
        assert_eq!(h.has_padding, buf[0] & 0x20 != 0);
    }

    proptest! {
        #[test]
        fn agrees_with_str0m(
            (spec, level, voice, twcc, mid, rid_value) in standard_spec(),
            extra_twcc in any::<u16>(),
        ) {
            let exts = ExtensionMap::standard();
            let buf = build(&spec);
            let p = RtpPacket::parse(&buf).unwrap();
            let h = RtpHeader::_parse(&buf, &exts).unwrap();
            assert_same_header(&buf, &p, &h);
            let ours = audio_level(p.extension(1).unwrap()).unwrap();
            prop_assert_eq!(ours, (voice, level));
            prop_assert_eq!(h.ext_vals.audio_level, Some(-(level as i8)));
            prop_assert_eq!(h.ext_vals.voice_activity, Some(voice));
            prop_assert_eq!(transport_wide_seq(p.extension(3).unwrap()), Some(twcc));
            prop_assert_eq!(h.ext_vals.transport_cc, Some(twcc));
            prop_assert_eq!(rid(p.extension(4).unwrap()), Some(mid.as_str()));
            prop_assert_eq!(h.ext_vals.mid.as_deref(), Some(mid.as_str()));
            prop_assert_eq!(rid(p.extension(10).unwrap()), Some(rid_value.as_str()));
            prop_assert_eq!(h.ext_vals.rid.as_deref(), Some(rid_value.as_str()));

            // The forwarded packet, with a new transport-wide sequence number, reads the same
            // in str0m.
            let twcc_bytes = extra_twcc.to_be_bytes();
            let mut out = [0u8; 2000];
            let n = write_forwarded(
                &mut out,
                &p,
                out_header(),
                &ExtensionIdMap::identity(),
                &[(3, &twcc_bytes)],
                None,
            )
            .unwrap();
            let q = RtpPacket::parse(&out[..n]).unwrap();
            let h = RtpHeader::_parse(&out[..n], &exts).unwrap();
            assert_same_header(&out[..n], &q, &h);
            prop_assert_eq!(h.ext_vals.transport_cc, Some(extra_twcc));
            prop_assert_eq!(transport_wide_seq(q.extension(3).unwrap()), Some(extra_twcc));
            prop_assert_eq!(h.ext_vals.audio_level, Some(-(level as i8)));
            prop_assert_eq!(h.ext_vals.mid.as_deref(), Some(mid.as_str()));
            prop_assert_eq!(h.ext_vals.rid.as_deref(), Some(rid_value.as_str()));
            prop_assert_eq!(&out[h.header_len..n], p.payload());
        }

        #[test]
        fn fixed_fields_agree_with_str0m_on_odd_bytes(
            buf in prop_oneof![rtp_like(), mutated()],
        ) {
            if let Ok(p) = RtpPacket::parse(&buf) {
                let known = p.ext_form != ExtForm::Other;
                if known {
                    let h = RtpHeader::_parse(&buf, &ExtensionMap::empty()).unwrap();
                    assert_same_header(&buf, &p, &h);
                }
            }
        }
    }
}

#[test]
fn a_padding_packet_parses_back_with_no_payload() {
    let header = OutHeader {
        payload_type: 97,
        sequence_number: 7,
        timestamp: 9000,
        ssrc: 0x1234,
        marker: false,
    };
    let mut out = [0u8; 400];
    let tw = 513u16.to_be_bytes();
    let len = write_padding(&mut out, header, &[(3, &tw), (1, b"0")], 255).unwrap();
    let p = RtpPacket::parse(&out[..len]).unwrap();
    assert_eq!(p.payload(), &[] as &[u8]);
    assert_eq!(p.padding_len(), 255);
    assert_eq!(
        (p.sequence_number(), p.ssrc(), p.payload_type()),
        (7, 0x1234, 97)
    );
    assert_eq!(p.extension(3), Some(&tw[..]));
    assert_eq!(p.extension(1), Some(&b"0"[..]));
    assert_eq!(
        write_padding(&mut out, header, &[], 0),
        Err(PacketError::BadPadding)
    );
    assert_eq!(
        write_padding(&mut out, header, &[], 256),
        Err(PacketError::BadPadding)
    );
    assert_eq!(
        write_padding(&mut out[..100], header, &[], 200),
        Err(PacketError::BufferTooSmall)
    );
}
