//! SRTP and SRTCP protect/unprotect costs per profile, keys expanded once.
//!
//! Each iteration copies the packet into the working buffer first (protecting and
//! unprotecting work in place), so the numbers include one memcpy of the packet.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sfu_core::media::srtp::{RtcpReplay, RtpReplay, SrtpContext, SrtpProfile};

fn context(profile: SrtpProfile) -> SrtpContext {
    let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
    SrtpContext::pair_from_keying_material(profile, &material, true)
        .expect("keying material of the profile's length")
        .0
}

/// An RTP packet of `len` bytes: a 12-byte header, a one-byte-header extension with one
/// element (8 bytes), and payload.
fn rtp_packet(len: usize) -> Vec<u8> {
    let mut packet = vec![0x90, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xca, 0xfe, 0xba, 0xbe];
    packet.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x01, 0x02, 0]);
    packet.resize(len, 0xab);
    packet
}

/// An RTCP receiver report padded to `len` bytes.
fn rtcp_packet(len: usize) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, (len / 4 - 1) as u8, 0xca, 0xfe, 0xba, 0xbe];
    packet.resize(len, 0x5a);
    packet
}

fn rtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_rtp");
    for profile in SrtpProfile::ALL {
        let ctx = context(profile);
        for size in [100, 1200] {
            let plain = rtp_packet(size);
            let mut buf = vec![0; size + profile.rtp_overhead()];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("protect/{}", profile.name()), size),
                &plain,
                |b, plain| {
                    b.iter(|| {
                        buf[..plain.len()].copy_from_slice(plain);
                        black_box(ctx.protect_rtp(&mut buf, plain.len(), 0).unwrap())
                    })
                },
            );

            let protected_len = ctx.protect_rtp(&mut buf, size, 0).unwrap();
            let protected = buf[..protected_len].to_vec();
            group.bench_with_input(
                BenchmarkId::new(format!("unprotect/{}", profile.name()), size),
                &protected,
                |b, protected| {
                    b.iter(|| {
                        buf.copy_from_slice(protected);
                        let mut replay = RtpReplay::default();
                        black_box(ctx.unprotect_rtp(&mut buf, &mut replay).unwrap())
                    })
                },
            );
        }
    }
    group.finish();
}

fn rtcp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_rtcp");
    let size = 100;
    let plain = rtcp_packet(size);
    for profile in SrtpProfile::ALL {
        let mut ctx = context(profile);
        let mut buf = vec![0; size + profile.rtcp_overhead()];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("protect/{}", profile.name()), size),
            &plain,
            |b, plain| {
                b.iter(|| {
                    buf[..plain.len()].copy_from_slice(plain);
                    black_box(ctx.protect_rtcp(&mut buf, plain.len()).unwrap())
                })
            },
        );

        let protected_len = ctx.protect_rtcp(&mut buf, size).unwrap();
        let protected = buf[..protected_len].to_vec();
        group.bench_with_input(
            BenchmarkId::new(format!("unprotect/{}", profile.name()), size),
            &protected,
            |b, protected| {
                b.iter(|| {
                    buf.copy_from_slice(protected);
                    let mut replay = RtcpReplay::default();
                    black_box(ctx.unprotect_rtcp(&mut buf, &mut replay).unwrap())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, rtp, rtcp);
criterion_main!(benches);
