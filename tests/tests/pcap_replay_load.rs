//! Loading the captures in `tests/data/` (see `tests/data/README.md` for how they were made)
//! with `sfu_tests::pcap`, plus synthetic captures for the formats and link types the real
//! ones do not cover, and malformed input.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use sfu_tests::pcap::{
    capture_format, parse_rtp, read_udp_packets, read_udp_packets_from, rtp_streams, CaptureFormat,
    CapturedPacket, PcapError, RtpPacketRef,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn load(name: &str) -> Vec<CapturedPacket> {
    match read_udp_packets(&data(name)) {
        Ok(packets) => packets,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).expect("capture file")
}

const VP8_SSRC: u32 = 1111;
const OPUS_SSRC: u32 = 2222;
const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Checks one RTP stream: payload type, destination, first sequence number, sequence numbers
/// continuous (wrapping), RTP timestamps moving forward at `clock_rate` in step with the
/// capture time.
fn check_stream(
    stream: &[RtpPacketRef<'_>],
    payload_type: u8,
    destination: SocketAddr,
    first_seq: u16,
    clock_rate: u32,
) {
    assert!(!stream.is_empty());
    assert_eq!(stream[0].rtp.sequence_number, first_seq);
    for p in stream {
        assert_eq!(p.rtp.payload_type, payload_type);
        assert_eq!(p.packet.destination, destination);
        assert_eq!(p.packet.source.ip(), destination.ip());
        assert!(!p.payload().is_empty());
    }
    for w in stream.windows(2) {
        assert_eq!(
            w[1].rtp.sequence_number,
            w[0].rtp.sequence_number.wrapping_add(1),
            "gap in the sequence numbers"
        );
        let step = w[1].rtp.timestamp.wrapping_sub(w[0].rtp.timestamp);
        assert!(step < clock_rate / 10, "RTP timestamp step {step}");
        assert!(w[1].packet.time >= w[0].packet.time);
    }
    // The RTP clock and the capture clock agree (ffmpeg's -re start-up burst aside).
    let (first, last) = (&stream[0], &stream[stream.len() - 1]);
    for p in stream {
        let rtp =
            f64::from(p.rtp.timestamp.wrapping_sub(first.rtp.timestamp)) / f64::from(clock_rate);
        let captured = (p.packet.time - first.packet.time).as_secs_f64();
        assert!(
            (rtp - captured).abs() < 0.25,
            "rtp {rtp} s, captured {captured} s"
        );
    }
    let span = (last.packet.time - first.packet.time).as_secs_f64();
    assert!(span > 1.5, "span {span} s");
}

/// For an RTP payload in VP8 format (RFC 7741): `Some(is_key_frame)` if the packet starts a
/// frame (S bit set, partition 0), `None` if it continues one.
fn vp8_frame_start(payload: &[u8]) -> Option<(bool, &[u8])> {
    let b0 = *payload.first()?;
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let ext = *payload.get(1)?;
        at = 2;
        if ext & 0x80 != 0 {
            // PictureID, 7 or 15 bits.
            at += if *payload.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            at += 1; // TID / KEYIDX
        }
    }
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    if !start {
        return None;
    }
    let header = payload.get(at..)?;
    // The P bit of the VP8 payload header is 0 for key frames.
    Some((*header.first()? & 0x01 == 0, header))
}

#[test]
fn vp8_opus_pcap_streams() {
    let packets = load("vp8-opus.pcap");
    assert_eq!(packets.len(), 574);
    assert_eq!(packets[0].time, Duration::ZERO);
    let span = packets[packets.len() - 1].time;
    assert!(span > Duration::from_secs(6) && span < Duration::from_secs(8));

    let streams = rtp_streams(&packets);
    assert_eq!(
        streams.keys().copied().collect::<Vec<_>>(),
        vec![VP8_SSRC, OPUS_SSRC]
    );
    let vp8 = &streams[&VP8_SSRC];
    let opus = &streams[&OPUS_SSRC];
    assert_eq!(vp8.len() + opus.len(), packets.len());
    check_stream(vp8, 96, (LOCALHOST_V4, 5004).into(), 65400, 90_000);
    check_stream(opus, 111, (LOCALHOST_V4, 5006).into(), 100, 48_000);
    // The VP8 sequence numbers wrap within the capture.
    assert!(vp8.iter().any(|p| p.rtp.sequence_number == 0));
    check_opus(opus);

    // VP8: one frame per RTP timestamp, 30 fps, starting with a key frame, a key frame every
    // 60 frames (-g 60), the marker on the last packet of each frame.
    let mut frames: Vec<Vec<&RtpPacketRef<'_>>> = Vec::new();
    for p in vp8 {
        match frames.last_mut() {
            Some(frame) if frame[0].rtp.timestamp == p.rtp.timestamp => frame.push(p),
            _ => frames.push(vec![p]),
        }
    }
    assert_eq!(frames.len(), 210);
    let mut key_frames = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let (key, header) = vp8_frame_start(frame[0].payload()).expect("frame start");
        assert!(frame[1..]
            .iter()
            .all(|p| vp8_frame_start(p.payload()).is_none()));
        assert!(frame[frame.len() - 1].rtp.marker);
        assert!(frame[..frame.len() - 1].iter().all(|p| !p.rtp.marker));
        if i > 0 {
            let step = frame[0]
                .rtp
                .timestamp
                .wrapping_sub(frames[i - 1][0].rtp.timestamp);
            assert_eq!(step, 3000);
        }
        if key {
            // Key frame header: start code, then 14-bit width and height.
            assert_eq!(header.get(3..6), Some(&[0x9d, 0x01, 0x2a][..]));
            let width = u16::from_le_bytes([header[6], header[7]]) & 0x3fff;
            let height = u16::from_le_bytes([header[8], header[9]]) & 0x3fff;
            assert_eq!((width, height), (320, 240));
            key_frames.push(i);
        }
    }
    assert_eq!(key_frames, vec![0, 60, 120, 180]);
}

/// Opus: 20 ms per packet (960 samples at 48 kHz) and a TOC byte for a 20 ms configuration.
fn check_opus(opus: &[RtpPacketRef<'_>]) {
    for w in opus.windows(2) {
        assert_eq!(w[1].rtp.timestamp.wrapping_sub(w[0].rtp.timestamp), 960);
    }
    for p in opus {
        let config = p.payload()[0] >> 3;
        assert!(
            [3, 7, 11, 13, 15, 19, 23, 27, 31].contains(&config),
            "TOC config {config}"
        );
    }
}

#[test]
fn pcapng_and_pcap_yield_identical_packets() {
    let pcap = bytes("vp8-opus.pcap");
    let pcapng = bytes("vp8-opus.pcapng");
    assert_eq!(capture_format(&pcap).ok(), Some(CaptureFormat::Pcap));
    assert_eq!(capture_format(&pcapng).ok(), Some(CaptureFormat::PcapNg));
    let a = read_udp_packets_from(&pcap).expect("pcap");
    let b = read_udp_packets_from(&pcapng).expect("pcapng");
    assert_eq!(a.len(), 574);
    assert!(a == b, "pcap and pcapng differ");
}

/// The pcap-file crate sees the same records, and our payloads are their bytes after the
/// Ethernet, IPv4 and UDP headers.
#[test]
fn agrees_with_the_pcap_file_crate() {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};

    let ours = load("vp8-opus.pcap");
    let file = bytes("vp8-opus.pcap");
    let mut reader = PcapReader::new(&file[..]).expect("pcap-file header");
    let mut theirs = Vec::new();
    while let Some(packet) = reader.next_packet() {
        theirs.push(packet.expect("pcap-file packet").into_owned());
    }
    assert_eq!(theirs.len(), ours.len());
    let first = theirs[0].timestamp;
    for (ours, theirs) in ours.iter().zip(&theirs) {
        assert_eq!(&theirs.data[42..], &ours.payload[..]);
        assert_eq!(ours.time, theirs.timestamp - first);
    }

    let file = bytes("vp8-opus.pcapng");
    let mut reader = PcapNgReader::new(&file[..]).expect("pcap-file section header");
    let mut count = 0;
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(epb) = block.expect("pcap-file block") {
            assert_eq!(&epb.data[42..], &ours[count].payload[..]);
            count += 1;
        }
    }
    assert_eq!(count, ours.len());
}

#[test]
fn linux_cooked_captures() {
    let sll = load("opus-sll.pcap");
    let sll2 = load("opus-sll2.pcap");
    for packets in [&sll, &sll2] {
        assert_eq!(packets.len(), 101);
        let streams = rtp_streams(packets);
        assert_eq!(streams.keys().copied().collect::<Vec<_>>(), vec![3333]);
        let opus = &streams[&3333];
        check_stream(opus, 111, (LOCALHOST_V4, 5006).into(), 65500, 48_000);
        assert!(opus.iter().any(|p| p.rtp.sequence_number == 0));
        check_opus(opus);
    }
    // The two were captured at the same time, from the same traffic.
    for (a, b) in sll.iter().zip(&sll2) {
        assert_eq!(
            (a.source, a.destination, &a.payload),
            (b.source, b.destination, &b.payload)
        );
        assert!(a.time.abs_diff(b.time) < Duration::from_millis(5));
    }
}

#[test]
fn ipv6_captures() {
    let ethernet = load("opus-ipv6.pcap");
    let raw = load("opus-ipv6-rawip.pcap");
    assert_eq!(ethernet.len(), 101);
    assert!(ethernet == raw, "Ethernet and raw IP captures differ");
    let streams = rtp_streams(&ethernet);
    assert_eq!(streams.keys().copied().collect::<Vec<_>>(), vec![4444]);
    let opus = &streams[&4444];
    check_stream(opus, 111, (LOCALHOST_V6, 5008).into(), 0, 48_000);
    check_opus(opus);
}

// ---------------------------------------------------------------------------------------------
// Synthetic captures

const SRC4: [u8; 4] = [192, 0, 2, 1];
const DST4: [u8; 4] = [198, 51, 100, 2];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&4000_u16.to_be_bytes());
    u.extend_from_slice(&5000_u16.to_be_bytes());
    u.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An IPv4 packet with `options` (whole words), protocol `proto` and flags/fragment `frag`.
fn ipv4(proto: u8, frag: u16, options: &[u8], body: &[u8]) -> Vec<u8> {
    let header_len = 20 + options.len();
    let mut p = vec![0x40 | (header_len / 4) as u8, 0];
    p.extend_from_slice(&((header_len + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&SRC4);
    p.extend_from_slice(&DST4);
    p.extend_from_slice(options);
    p.extend_from_slice(body);
    p
}

fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
    ipv4(17, 0x4000, &[], &udp(payload))
}

/// An IPv6 packet whose chain of extension headers `ext` (type, length in bytes) ends in UDP.
fn ipv6_udp(ext: &[(u8, usize)], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut types: Vec<u8> = ext.iter().map(|&(t, _)| t).collect();
    types.push(17);
    for (i, &(kind, len)) in ext.iter().enumerate() {
        let units = if kind == 51 { len / 4 - 2 } else { len / 8 - 1 };
        let mut h = vec![types[i + 1], units as u8];
        h.resize(len, 0);
        body.extend_from_slice(&h);
    }
    body.extend_from_slice(&udp(payload));
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(body.len() as u16).to_be_bytes());
    p.push(types[0]);
    p.push(64);
    p.extend_from_slice(&SRC6);
    p.extend_from_slice(&DST6);
    p.extend_from_slice(&body);
    p
}

fn ethernet(tags: &[u16], ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for &tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x2a]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

/// A classic pcap file: `records` are (seconds, fraction, captured bytes).
fn pcap_file(big: bool, nanos: bool, link_type: u32, records: &[(u32, u32, Vec<u8>)]) -> Vec<u8> {
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&u32b(65535));
    f.extend_from_slice(&u32b(link_type));
    for (secs, frac, data) in records {
        f.extend_from_slice(&u32b(*secs));
        f.extend_from_slice(&u32b(*frac));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(&u32b(data.len() as u32 + 3));
        f.extend_from_slice(data);
    }
    f
}

fn v4(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::from(SRC4).into(), port)
}

#[test]
fn synthetic_big_endian_nanosecond_ethernet_with_vlans() {
    let frame = |tags: &[u16], payload: &[u8]| ethernet(tags, 0x0800, &ipv4_udp(payload));
    let mut truncated_ip = frame(&[], b"cut short");
    truncated_ip.truncate(truncated_ip.len() - 2);
    let records = vec![
        (100, 5, frame(&[], b"plain")),
        (100, 6, frame(&[0x8100], b"vlan")),
        (100, 7, frame(&[0x88a8, 0x8100], b"qinq")),
        (100, 8, ethernet(&[], 0x0806, &[0; 28])), // ARP
        (100, 9, ethernet(&[], 0x0800, &ipv4(6, 0, &[], &[0; 20]))), // TCP
        (
            100,
            10,
            ethernet(&[], 0x0800, &ipv4(17, 0x2000, &[], &udp(b"first fragment"))),
        ),
        (
            100,
            11,
            ethernet(&[], 0x0800, &ipv4(17, 0x0004, &[], b"later fragment")),
        ),
        (100, 12, truncated_ip),
        (
            100,
            13,
            ethernet(&[], 0x0800, &ipv4(17, 0, &[1, 1, 1, 0], &udp(b"options"))),
        ),
        (99, 0, frame(&[], b"earlier than the first")),
        (101, 999_999_999, frame(&[0x9100], b"old qinq")),
    ];
    for big in [true, false] {
        let file = pcap_file(big, true, 1, &records);
        let packets = read_udp_packets_from(&file).expect("synthetic pcap");
        let got: Vec<_> = packets.iter().map(|p| (p.time, &p.payload[..])).collect();
        let ns = Duration::from_nanos;
        assert_eq!(
            got,
            vec![
                (ns(0), &b"plain"[..]),
                (ns(1), b"vlan"),
                (ns(2), b"qinq"),
                (ns(8), b"options"),
                (ns(0), b"earlier than the first"),
                (ns(1_999_999_994), b"old qinq"),
            ]
        );
        assert_eq!(packets[0].source, v4(4000));
        assert_eq!(
            packets[0].destination,
            SocketAddr::new(Ipv4Addr::from(DST4).into(), 5000)
        );
    }
    // Microsecond fractions.
    let file = pcap_file(false, false, 1, &records[..2]);
    let packets = read_udp_packets_from(&file).expect("synthetic pcap");
    assert_eq!(packets[1].time, Duration::from_micros(1));
}

#[test]
fn synthetic_raw_ip_and_loopback_link_types() {
    let v6_payload = b"v6 with extension headers";
    let v6 = ipv6_udp(&[(0, 8), (60, 16), (51, 12)], v6_payload);
    let v6_fragment = ipv6_udp(&[(44, 8)], b"fragment");
    let v4 = ipv4_udp(b"v4");
    let v6_plain = ipv6_udp(&[], b"v6");
    // (link type, frames, the payloads expected from them)
    type Case<'a> = (u32, Vec<Vec<u8>>, Vec<&'a [u8]>);
    let cases: Vec<Case<'_>> = vec![
        (
            101,
            vec![v4.clone(), v6.clone(), v6_fragment.clone()],
            vec![b"v4", v6_payload],
        ),
        (228, vec![v4.clone(), v6_plain.clone()], vec![b"v4"]),
        (229, vec![v4.clone(), v6_plain.clone()], vec![b"v6"]),
        (
            0,
            vec![
                [&2_u32.to_le_bytes()[..], &v4].concat(),
                [&30_u32.to_le_bytes()[..], &v6_plain].concat(),
                [&2_u32.to_be_bytes()[..], &v4].concat(),
                [&7_u32.to_le_bytes()[..], &v4].concat(),
            ],
            vec![b"v4", b"v6", b"v4"],
        ),
        (
            108,
            vec![[&24_u32.to_be_bytes()[..], &v6_plain].concat()],
            vec![b"v6"],
        ),
    ];
    for (link_type, frames, expected) in cases {
        let records: Vec<_> = frames.into_iter().map(|f| (1, 0, f)).collect();
        let packets =
            read_udp_packets_from(&pcap_file(false, false, link_type, &records)).expect("pcap");
        let got: Vec<&[u8]> = packets.iter().map(|p| &p.payload[..]).collect();
        assert_eq!(got, expected, "link type {link_type}");
        for p in &packets {
            if p.source.is_ipv6() {
                assert_eq!(p.source.ip(), IpAddr::from(Ipv6Addr::from(SRC6)));
                assert_eq!(p.destination.ip(), IpAddr::from(Ipv6Addr::from(DST6)));
            }
        }
    }
}

/// A pcapng block in either byte order, the body padded to 32 bits.
fn block(big: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let padded = body.len().div_ceil(4) * 4;
    let total = 12 + padded as u32;
    let mut b = Vec::new();
    b.extend_from_slice(&u32b(block_type));
    b.extend_from_slice(&u32b(total));
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&u32b(total));
    b
}

struct NgWriter {
    big: bool,
    out: Vec<u8>,
}

impl NgWriter {
    fn u16b(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32b(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn section(big: bool, out: Vec<u8>) -> Self {
        let mut w = Self { big, out };
        let mut body = w.u32b(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&w.u16b(1));
        body.extend_from_slice(&w.u16b(0));
        body.extend_from_slice(&[0xff; 8]);
        w.out.extend(block(big, 0x0a0d_0d0a, &body));
        w
    }
    fn interface(&mut self, link_type: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut body = self.u16b(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32b(0));
        // A comment option (needs padding) first.
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(3));
        body.extend_from_slice(b"hi\0\0");
        if let Some(resol) = tsresol {
            body.extend_from_slice(&self.u16b(9));
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&[resol, 0, 0, 0]);
        }
        if let Some(offset) = tsoffset {
            body.extend_from_slice(&self.u16b(14));
            body.extend_from_slice(&self.u16b(8));
            body.extend_from_slice(&if self.big {
                offset.to_be_bytes()
            } else {
                offset.to_le_bytes()
            });
        }
        body.extend_from_slice(&[0; 4]);
        self.out.extend(block(self.big, 1, &body));
    }
    fn enhanced(&mut self, interface: u32, ticks: u64, data: &[u8]) {
        let mut body = self.u32b(interface).to_vec();
        body.extend_from_slice(&self.u32b((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32b(ticks as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.out.extend(block(self.big, 6, &body));
    }
    fn obsolete(&mut self, interface: u16, ticks: u64, data: &[u8]) {
        let mut body = self.u16b(interface).to_vec();
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&self.u32b((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32b(ticks as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(&self.u32b(data.len() as u32));
        body.extend_from_slice(data);
        self.out.extend(block(self.big, 2, &body));
    }
    fn simple(&mut self, data: &[u8]) {
        let mut body = self.u32b(data.len() as u32).to_vec();
        body.extend_from_slice(data);
        self.out.extend(block(self.big, 3, &body));
    }
}

#[test]
fn synthetic_pcapng_sections_interfaces_and_block_types() {
    let eth = |payload: &[u8]| ethernet(&[], 0x0800, &ipv4_udp(payload));
    let raw = |payload: &[u8]| ipv6_udp(&[], payload);
    for big in [true, false] {
        // Section 1: interface 0 Ethernet in nanoseconds with a 10 s offset, interface 1 an
        // unsupported link type (USER0).
        let mut w = NgWriter::section(big, Vec::new());
        w.interface(1, Some(9), Some(10));
        w.interface(147, None, None);
        w.enhanced(0, 5_000_000_000, &eth(b"a"));
        w.enhanced(1, 5_000_000_001, &eth(b"unsupported link type"));
        w.out.extend(block(big, 4, &[0; 4])); // name resolution: ignored
        w.out.extend(block(big, 0x4000_0bad, &[1, 2, 3])); // custom: ignored
        w.simple(&eth(b"b"));
        w.obsolete(0, 5_000_000_250, &eth(b"c"));
        // Section 2, in the other byte order: interface 0 raw IP in 2^-10 s units.
        let mut w = NgWriter::section(!big, w.out);
        w.interface(101, Some(0x80 | 10), None);
        w.enhanced(0, 16 * 1024, &raw(b"d"));
        let packets = read_udp_packets_from(&w.out).expect("synthetic pcapng");
        let got: Vec<_> = packets.iter().map(|p| (p.time, &p.payload[..])).collect();
        let ns = Duration::from_nanos;
        assert_eq!(
            got,
            vec![
                (ns(0), &b"a"[..]),
                (ns(0), b"b"),
                (ns(250), b"c"),
                // 16 s since the epoch, versus 15 s for the first.
                (ns(1_000_000_000), b"d"),
            ]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn error_of(bytes: &[u8]) -> PcapError {
    match read_udp_packets_from(bytes) {
        Ok(packets) => panic!("expected an error, got {} packets", packets.len()),
        Err(e) => e,
    }
}

#[test]
fn wrong_magic_and_short_input_are_errors() {
    for input in [&b""[..], b"\xd4\xc3", b"GET / HTTP/1.1\r\n\r\n", &[0; 64]] {
        assert!(matches!(error_of(input), PcapError::UnknownFormat { .. }));
    }
    let e = error_of(b"hello, world");
    assert_eq!(
        e.to_string(),
        "not a pcap or pcapng file (starts with [68, 65, 6c, 6c])"
    );
    let e = read_udp_packets(&data("no-such-file.pcap")).expect_err("missing file");
    assert!(matches!(e, PcapError::Io { .. }));
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn truncated_files_are_errors() {
    let pcap = bytes("vp8-opus.pcap");
    assert!(matches!(error_of(&pcap[..10]), PcapError::Truncated { .. }));
    assert!(matches!(
        error_of(&pcap[..pcap.len() - 100]),
        PcapError::Truncated { .. }
    ));
    // A record header cut short.
    let first_record = 24 + 16 + u32::from_le_bytes(pcap[32..36].try_into().unwrap()) as usize;
    assert!(matches!(
        error_of(&pcap[..first_record + 10]),
        PcapError::Truncated { .. }
    ));
    // Exactly at a record boundary is a valid, shorter capture.
    assert_eq!(
        read_udp_packets_from(&pcap[..24])
            .expect("header only")
            .len(),
        0
    );
    assert_eq!(
        read_udp_packets_from(&pcap[..first_record])
            .expect("one")
            .len(),
        1
    );

    let pcapng = bytes("vp8-opus.pcapng");
    for cut in [4, 11, 20, pcapng.len() - 1, pcapng.len() - 100] {
        assert!(
            matches!(error_of(&pcapng[..cut]), PcapError::Truncated { .. }),
            "cut at {cut}"
        );
    }
}

#[test]
fn inconsistent_headers_are_errors() {
    let eth = ethernet(&[], 0x0800, &ipv4_udp(b"x"));
    let good = pcap_file(false, false, 1, &[(1, 0, eth.clone())]);
    assert!(read_udp_packets_from(&good).is_ok());

    // Link type 147 in a classic pcap file.
    let mut bad = good.clone();
    bad[20] = 147;
    assert!(matches!(
        error_of(&bad),
        PcapError::UnsupportedLinkType(147)
    ));
    // Version 3.
    let mut bad = good.clone();
    bad[4] = 3;
    assert!(matches!(
        error_of(&bad),
        PcapError::UnsupportedVersion { major: 3, .. }
    ));
    // A record longer than the file.
    let mut bad = good.clone();
    bad[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(error_of(&bad), PcapError::Truncated { .. }));

    let mut w = NgWriter::section(false, Vec::new());
    w.interface(1, None, None);
    let header_len = w.out.len();
    w.enhanced(0, 0, &eth);
    let good = w.out;
    assert_eq!(read_udp_packets_from(&good).expect("pcapng").len(), 1);
    let epb = header_len;
    let patch = |at: usize, value: u32| {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
        error_of(&bad)
    };
    // Block length not a multiple of 4, below 12, or not matching the trailer.
    assert!(matches!(patch(epb + 4, 41), PcapError::Malformed { .. }));
    assert!(matches!(patch(epb + 4, 8), PcapError::Malformed { .. }));
    assert!(matches!(
        patch(good.len() - 4, 4),
        PcapError::Malformed { .. }
    ));
    assert!(matches!(
        patch(epb + 4, u32::MAX - 3),
        PcapError::Truncated { .. }
    ));
    // An undescribed interface, a captured length beyond the block.
    assert!(matches!(patch(epb + 8, 1), PcapError::Malformed { .. }));
    assert!(matches!(
        patch(epb + 20, 10_000),
        PcapError::Malformed { .. }
    ));
    // A bad byte-order magic, a bad section version.
    assert!(matches!(patch(8, 0x1234_5678), PcapError::Malformed { .. }));
    assert!(matches!(
        patch(12, 2),
        PcapError::UnsupportedVersion { major: 2, .. }
    ));
    // An option running past its block (the interface block's first option: after the
    // 28-byte section header, 8 bytes of block header and 8 of interface fields).
    assert!(matches!(
        patch(28 + 16, 0x00ff_0001),
        PcapError::Malformed { .. }
    ));
}

/// A valid pcap header (Ethernet) and a pcapng section header with an Ethernet interface, to
/// put random bytes behind so that they reach the record and block parsers.
fn prefixes() -> [Vec<u8>; 2] {
    let pcap = pcap_file(false, false, 1, &[]);
    let mut w = NgWriter::section(false, Vec::new());
    w.interface(1, None, None);
    [pcap, w.out]
}

fn full(name: &str) -> (Vec<u8>, Vec<CapturedPacket>) {
    let file = bytes(name);
    let packets = read_udp_packets_from(&file).expect("real capture");
    (file, packets)
}

// 256 cases each by default (proptest's default); set PROPTEST_CASES for a longer run.
proptest! {

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_udp_packets_from(&input);
        for prefix in prefixes() {
            let _ = read_udp_packets_from(&[prefix, input.clone()].concat());
        }
    }

    #[test]
    fn random_rtp_never_panics(input in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Some(rtp) = parse_rtp(&input) {
            prop_assert!(rtp.header_len + rtp.padding_len <= input.len());
            prop_assert!(rtp.header_len >= 12);
            let _ = rtp.payload(&input);
        }
    }

    /// A truncated real capture gives either a prefix of the packets (cut at a record
    /// boundary) or a truncation error.
    #[test]
    fn truncated_real_captures_give_a_prefix_or_an_error(
        which in 0..2_usize,
        fraction in 0.0..1.0_f64,
    ) {
        let (file, all) = full(["vp8-opus.pcap", "vp8-opus.pcapng"][which]);
        let cut = (file.len() as f64 * fraction) as usize;
        match read_udp_packets_from(&file[..cut]) {
            Ok(packets) => prop_assert!(all.starts_with(&packets)),
            Err(PcapError::Truncated { .. }) => {}
            Err(PcapError::UnknownFormat { .. }) => prop_assert!(cut < 4),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    /// Corrupting bytes of a real capture never panics.
    #[test]
    fn corrupted_real_captures_never_panic(
        which in 0..4_usize,
        edits in prop::collection::vec((0.0..1.0_f64, any::<u8>()), 1..16),
    ) {
        let (mut file, _) =
            full(["vp8-opus.pcap", "vp8-opus.pcapng", "opus-sll2.pcap", "opus-ipv6.pcap"][which]);
        for (at, value) in edits {
            let at = (file.len() as f64 * at) as usize;
            file[at] = value;
        }
        let _ = read_udp_packets_from(&file);
    }
}

#[test]
fn rtp_streams_skip_non_rtp() {
    let packet = |payload: Vec<u8>| CapturedPacket {
        time: Duration::ZERO,
        source: v4(1),
        destination: v4(2),
        payload,
    };
    let rtp = |ssrc: u32, seq: u16| {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.push(1);
        p
    };
    let packets = vec![
        packet(rtp(7, 1)),
        packet(vec![0x80, 200, 0, 6, 0, 0, 0, 7, 0, 0, 0, 0]), // RTCP SR
        packet(vec![
            0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0,
        ]), // STUN
        packet(vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // DTLS
        packet(rtp(5, 9)),
        packet(rtp(7, 2)),
    ];
    let streams: BTreeMap<u32, Vec<u16>> = rtp_streams(&packets)
        .into_iter()
        .map(|(ssrc, s)| (ssrc, s.iter().map(|p| p.rtp.sequence_number).collect()))
        .collect();
    assert_eq!(streams, BTreeMap::from([(5, vec![9]), (7, vec![1, 2])]));
}
