//! Test vectors (RFC 7714 sections 16 and 17, libsrtp's reference packets), a cross-check
//! against str0m's SRTP, and property tests: round trips, tampering, replay, rollover and
//! hostile input.

use proptest::prelude::*;

use super::transform::Transform;
use super::*;

/// Bytes from hexadecimal digits; whitespace is ignored.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// A context whose SRTP and SRTCP session keys are given directly, as RFC 7714's vectors
/// give them (they skip the key derivation).
fn gcm_session(profile: SrtpProfile, key: &str, salt: &str) -> SrtpContext {
    let (key, salt) = (hex(key), hex(salt));
    SrtpContext {
        profile,
        rtp: Transform::gcm_from_session_keys(&key, &salt).unwrap(),
        rtcp: Transform::gcm_from_session_keys(&key, &salt).unwrap(),
        srtcp_index: 0,
    }
}

/// Copies `packet` into a buffer with room for any overhead.
fn buffer(packet: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; packet.len() + 64];
    buf[..packet.len()].copy_from_slice(packet);
    buf
}

mod rfc7714 {
    use super::*;

    pub const KEY_128: &str = "000102030405060708090a0b0c0d0e0f";
    pub const KEY_256: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    pub const SALT: &str = "517569642070726f2071756f";
    pub const RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                           20646976 69736120 696e2070 61727465 73207472 6573";
    pub const RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

    fn rtp_vector(profile: SrtpProfile, key: &str, protected: &str) {
        let ctx = gcm_session(profile, key, SALT);
        let (plain, protected) = (hex(RTP), hex(protected));
        let mut buf = buffer(&plain);
        let len = ctx.protect_rtp(&mut buf, plain.len(), 0).unwrap();
        assert_eq!(buf[..len], protected[..]);

        let mut buf = protected.clone();
        let mut replay = RtpReplay::default();
        let len = ctx.unprotect_rtp(&mut buf, &mut replay).unwrap();
        assert_eq!(buf[..len], plain[..]);
        assert_eq!(replay.extended_highest(), Some(0xf17b));
    }

    /// Section 16.1: AEAD_AES_128_GCM RTP encryption and decryption.
    #[test]
    fn rtp_aes_128_gcm() {
        rtp_vector(
            SrtpProfile::AeadAes128Gcm,
            KEY_128,
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
             0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
        );
    }

    /// Section 16.2: AEAD_AES_256_GCM RTP encryption and decryption.
    #[test]
    fn rtp_aes_256_gcm() {
        rtp_vector(
            SrtpProfile::AeadAes256Gcm,
            KEY_256,
            "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa b1801238
             9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff d6b0f9bb 7878d7a7 6c13",
        );
    }

    /// An SRTCP vector with index 0x5d4: protected from the plaintext when encrypted (we
    /// only send E = 1), and unprotected back.
    fn rtcp_vector(profile: SrtpProfile, key: &str, protected: &str) {
        let mut ctx = gcm_session(profile, key, SALT);
        let (plain, protected) = (hex(RTCP), hex(protected));
        let encrypted = protected[protected.len() - 4] & 0x80 != 0;
        if encrypted {
            ctx.srtcp_index = 0x5d4;
            let mut buf = buffer(&plain);
            let len = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
            assert_eq!(buf[..len], protected[..]);
            assert_eq!(ctx.srtcp_index, 0x5d5);
        }
        let mut buf = protected.clone();
        let mut replay = RtcpReplay::default();
        let len = ctx.unprotect_rtcp(&mut buf, &mut replay).unwrap();
        assert_eq!(buf[..len], plain[..]);
        assert_eq!(replay.highest(), Some(0x5d4));
        let mut buf = protected;
        assert_eq!(
            ctx.unprotect_rtcp(&mut buf, &mut replay),
            Err(SrtpError::Replayed)
        );
    }

    /// Section 17.1: SRTCP AEAD_AES_128_GCM encryption.
    #[test]
    fn rtcp_aes_128_gcm() {
        rtcp_vector(
            SrtpProfile::AeadAes128Gcm,
            KEY_128,
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
             c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
             45d9eade 800005d4",
        );
    }

    /// Section 17.2: SRTCP AEAD_AES_256_GCM encryption.
    #[test]
    fn rtcp_aes_256_gcm() {
        rtcp_vector(
            SrtpProfile::AeadAes256Gcm,
            KEY_256,
            "81c8000d 4d617273 d50ae4d1 f5ce5d30 4ba297e4 7d470c28 2c3ece5d bffe0a50
             a2eaa5c1 110555be 8415f658 c61de047 6f1b6fad 1d1eb30c 4446839f 57ff6f6c
             b26ac3be 800005d4",
        );
    }

    /// Section 17.3: SRTCP AEAD_AES_128_GCM authentication only (E = 0).
    #[test]
    fn rtcp_aes_128_gcm_tag_only() {
        rtcp_vector(
            SrtpProfile::AeadAes128Gcm,
            KEY_128,
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
             deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9 2ae58790
             125f62b3 000005d4",
        );
    }

    /// Section 17.4: SRTCP AEAD_AES_256_GCM authentication only (E = 0).
    #[test]
    fn rtcp_aes_256_gcm_tag_only() {
        rtcp_vector(
            SrtpProfile::AeadAes256Gcm,
            KEY_256,
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
             deadbeef deadbeef deadbeef deadbeef deadbeef 91db4afb feee5a97 8fab4393
             ed2615fe 000005d4",
        );
    }

    /// Flipping the E flag of an encrypted packet (or a tag bit of an authenticated-only
    /// one) fails authentication.
    #[test]
    fn rtcp_e_flag_is_authenticated() {
        let ctx = gcm_session(SrtpProfile::AeadAes128Gcm, KEY_128, SALT);
        let mut buf = hex(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
            6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
            45d9eade 000005d4",
        );
        let result = ctx.unprotect_rtcp(&mut buf, &mut RtcpReplay::default());
        assert_eq!(result, Err(SrtpError::AuthenticationFailed));
    }
}

/// libsrtp's reference packets (its `srtp_validate` self-test), through the key derivation:
/// master key and salt of RFC 3711 Appendix B.3, SSRC 0xcafebabe, sequence number 0x1234.
mod aes_cm {
    use super::*;

    const MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
    const MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";
    const RTP: &str = "800f1234 decafbad cafebabe abababab abababab abababab abababab";
    const RTP_CIPHERTEXT: &str = "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402";
    /// The 80-bit HMAC-SHA1 tag; the _32 profile's tag is its first four bytes.
    const RTP_TAG: &str = "b78d6acc 99ea179b 8dbb";
    const RTCP: &str = "81c8000b cafebabe abababab abababab abababab abababab";
    /// Encrypted with SRTCP index 1, E flag set, and the 80-bit tag (both profiles).
    const SRTCP: &str = "81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8 80000001
                         993e08cd 54d6c123 0798";

    fn context(profile: SrtpProfile) -> SrtpContext {
        SrtpContext::new(profile, &hex(MASTER_KEY), &hex(MASTER_SALT)).unwrap()
    }

    fn rtp_vector(profile: SrtpProfile, tag_len: usize) {
        let ctx = context(profile);
        let plain = hex(RTP);
        let mut protected = hex(RTP_CIPHERTEXT);
        protected.extend_from_slice(&hex(RTP_TAG)[..tag_len]);
        let mut buf = buffer(&plain);
        let len = ctx.protect_rtp(&mut buf, plain.len(), 0).unwrap();
        assert_eq!(buf[..len], protected[..]);

        let mut buf = protected.clone();
        let mut replay = RtpReplay::default();
        assert_eq!(ctx.unprotect_rtp(&mut buf, &mut replay), Ok(plain.len()));
        assert_eq!(buf[..plain.len()], plain[..]);
        let mut buf = protected;
        assert_eq!(
            ctx.unprotect_rtp(&mut buf, &mut replay),
            Err(SrtpError::Replayed)
        );
    }

    fn rtcp_vector(profile: SrtpProfile) {
        let mut ctx = context(profile);
        ctx.srtcp_index = 1;
        let (plain, protected) = (hex(RTCP), hex(SRTCP));
        let mut buf = buffer(&plain);
        let len = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(buf[..len], protected[..]);

        let mut buf = protected;
        let len = ctx
            .unprotect_rtcp(&mut buf, &mut RtcpReplay::default())
            .unwrap();
        assert_eq!(buf[..len], plain[..]);
    }

    #[test]
    fn sha1_80() {
        rtp_vector(SrtpProfile::Aes128CmHmacSha1_80, 10);
        rtcp_vector(SrtpProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn sha1_32_keeps_an_80_bit_srtcp_tag() {
        rtp_vector(SrtpProfile::Aes128CmHmacSha1_32, 4);
        rtcp_vector(SrtpProfile::Aes128CmHmacSha1_32);
    }

    /// The ROC is authenticated: the same packet protected with another ROC has the same
    /// header but does not unprotect at ROC 0.
    #[test]
    fn roc_is_authenticated() {
        let ctx = context(SrtpProfile::Aes128CmHmacSha1_80);
        let plain = hex(RTP);
        let mut buf = buffer(&plain);
        let len = ctx.protect_rtp(&mut buf, plain.len(), 1).unwrap();
        let result = ctx.unprotect_rtp(&mut buf[..len], &mut RtpReplay::default());
        assert_eq!(result, Err(SrtpError::AuthenticationFailed));
    }

    /// An authenticated-only SRTCP packet (E = 0): built by hand from the profile's keys,
    /// since the context always encrypts.
    #[test]
    fn rtcp_without_encryption() {
        let ctx = context(SrtpProfile::Aes128CmHmacSha1_80);
        let Transform::Cm(cm) = &ctx.rtcp else {
            unreachable!()
        };
        let mut packet = hex(RTCP);
        packet.extend_from_slice(&7u32.to_be_bytes());
        let mut tag = [0; 10];
        cm.sign_for_test(&packet, &mut tag);
        packet.extend_from_slice(&tag);
        let len = ctx
            .unprotect_rtcp(&mut packet, &mut RtcpReplay::default())
            .unwrap();
        assert_eq!(packet[..len], hex(RTCP)[..]);
    }
}

mod keying {
    use super::*;

    /// RFC 5764 section 4.2: client key, server key, client salt, server salt. Each side
    /// writes with its own half and reads with the other's.
    #[test]
    fn halves_of_the_keying_material() {
        for profile in SrtpProfile::ALL {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let (k, s) = (profile.master_key_len(), profile.master_salt_len());
            let client_write =
                SrtpContext::new(profile, &material[..k], &material[2 * k..2 * k + s]).unwrap();
            let server_write =
                SrtpContext::new(profile, &material[k..2 * k], &material[2 * k + s..]).unwrap();
            let (client_out, client_in) =
                SrtpContext::pair_from_keying_material(profile, &material, true).unwrap();
            let (server_out, server_in) =
                SrtpContext::pair_from_keying_material(profile, &material, false).unwrap();

            let plain = hex("80600001 00000000 00001234 01020304");
            for (writer, reader) in [
                (&client_out, &client_write),
                (&server_in, &client_write),
                (&server_out, &server_write),
                (&client_in, &server_write),
            ] {
                let (mut a, mut b) = (buffer(&plain), buffer(&plain));
                let len = writer.protect_rtp(&mut a, plain.len(), 0).unwrap();
                reader.protect_rtp(&mut b, plain.len(), 0).unwrap();
                assert_eq!(a[..len], b[..len], "{profile}");
            }
            let (mut a, mut b) = (buffer(&plain), buffer(&plain));
            let len = client_out.protect_rtp(&mut a, plain.len(), 0).unwrap();
            server_out.protect_rtp(&mut b, plain.len(), 0).unwrap();
            assert_ne!(a[..len], b[..len], "{profile}");
        }
    }

    #[test]
    fn lengths() {
        use SrtpProfile::*;
        let table = [
            (
                Aes128CmHmacSha1_80,
                16,
                14,
                10,
                14,
                60,
                "AES_CM_128_HMAC_SHA1_80",
            ),
            (
                Aes128CmHmacSha1_32,
                16,
                14,
                4,
                14,
                60,
                "AES_CM_128_HMAC_SHA1_32",
            ),
            (AeadAes128Gcm, 16, 12, 16, 20, 56, "AEAD_AES_128_GCM"),
            (AeadAes256Gcm, 32, 12, 16, 20, 88, "AEAD_AES_256_GCM"),
        ];
        for (profile, key, salt, rtp, rtcp, material, name) in table {
            assert_eq!(profile.master_key_len(), key);
            assert_eq!(profile.master_salt_len(), salt);
            assert_eq!(profile.rtp_overhead(), rtp);
            assert_eq!(profile.rtcp_overhead(), rtcp);
            assert_eq!(profile.keying_material_len(), material);
            assert_eq!(profile.name(), name);
            assert_eq!(SrtpProfile::from_name(name), Some(profile));
        }
        assert_eq!(SrtpProfile::from_name("SRTP_NULL"), None);
    }

    #[test]
    fn bad_key_lengths() {
        for profile in SrtpProfile::ALL {
            let (k, s) = (profile.master_key_len(), profile.master_salt_len());
            assert!(SrtpContext::new(profile, &vec![0; k], &vec![0; s]).is_ok());
            for (key, salt) in [(k - 1, s), (k + 1, s), (k, s - 1), (k, s + 1), (0, 0)] {
                let result = SrtpContext::new(profile, &vec![0; key], &vec![0; salt]);
                assert_eq!(result.err(), Some(SrtpError::BadKeyLength));
            }
            let len = profile.keying_material_len();
            for bad in [0, len - 1, len + 1] {
                let result = SrtpContext::pair_from_keying_material(profile, &vec![0; bad], true);
                assert_eq!(result.err(), Some(SrtpError::BadKeyLength));
            }
        }
    }

    #[test]
    fn types_are_send_sync_and_small() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SrtpContext>();
        send_sync::<RtpReplay>();
        send_sync::<RtcpReplay>();
        assert!(std::mem::size_of::<RtpReplay>() <= 32);
        assert!(std::mem::size_of::<RtcpReplay>() <= 32);
    }
}

/// str0m's SRTP (its own key derivation and transforms, reached through its test exports)
/// protects; ours must unprotect and produce the same bytes when protecting.
mod str0m_cross_check {
    use super::*;
    use str0m::_internal_test_exports::TestSrtp;
    use str0m::crypto::dtls::{KeyingMaterial, SrtpProfile as Str0mProfile};
    use str0m::rtp::{ExtensionMap, RtpHeader};

    const PROFILES: [(SrtpProfile, Str0mProfile); 3] = [
        (
            SrtpProfile::Aes128CmHmacSha1_80,
            Str0mProfile::AES128_CM_SHA1_80,
        ),
        (SrtpProfile::AeadAes128Gcm, Str0mProfile::AEAD_AES_128_GCM),
        (SrtpProfile::AeadAes256Gcm, Str0mProfile::AEAD_AES_256_GCM),
    ];

    fn header(ext_seq: u64, ssrc: u32, csrcs: usize, audio_level: Option<i8>) -> RtpHeader {
        let mut header = RtpHeader {
            sequence_number: ext_seq as u16,
            timestamp: 0x0102_0304,
            ssrc: ssrc.into(),
            payload_type: 111.into(),
            csrc_count: csrcs,
            // str0m always writes an extension block (empty without values).
            has_extension: true,
            ..RtpHeader::default()
        };
        for (i, csrc) in header.csrc.iter_mut().enumerate().take(csrcs) {
            *csrc = 0xc5c0_0000 + i as u32;
        }
        header.ext_vals.audio_level = audio_level;
        header.ext_vals.transport_cc = audio_level.map(|_| 0x4242);
        header
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn str0m_protects_we_unprotect(
            which in 0..3usize,
            material in proptest::collection::vec(any::<u8>(), 88),
            start in 0u64..(3 << 16),
            count in 1usize..8,
            ssrc: u32,
            csrcs in 0usize..=15,
            audio_level in proptest::option::of(-127i8..0),
            payload in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let (ours, theirs) = PROFILES[which];
            let material = &material[..ours.keying_material_len()];
            let provider = crate::transport::webrtc::dtls::crypto_provider();
            let mut str0m = TestSrtp::new(&provider, theirs, &KeyingMaterial::new(material));
            // str0m's test context writes with the client half; the DTLS server reads it.
            let (_, remote) = SrtpContext::pair_from_keying_material(ours, material, false).unwrap();
            let (local, _) = SrtpContext::pair_from_keying_material(ours, material, true).unwrap();
            let exts = ExtensionMap::standard();
            // The receiver starts from the sender's first index (ROC 0 when it is below 2^16).
            let mut replay = if start >> 16 == 0 {
                RtpReplay::default()
            } else {
                RtpReplay::with_highest(start - 1)
            };
            for ext_seq in start..start + count as u64 {
                let protected =
                    str0m.protect(header(ext_seq, ssrc, csrcs, audio_level), ext_seq, &payload, &exts);
                let mut buf = protected.clone();
                let len = remote.unprotect_rtp(&mut buf, &mut replay).unwrap();
                prop_assert_eq!(replay.extended_highest(), Some(ext_seq));
                prop_assert_eq!(&buf[len - payload.len()..len], &payload[..]);

                // The other direction: protecting str0m's plaintext gives str0m's bytes.
                let mut again = buffer(&buf[..len]);
                let roc = (ext_seq >> 16) as u32;
                let protected_len = local.protect_rtp(&mut again, len, roc).unwrap();
                prop_assert_eq!(&again[..protected_len], &protected[..]);
            }
        }
    }
}

/// A random RTP packet: header fields, CSRCs, an optional extension block, a payload.
fn rtp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        0usize..=15,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=4 * 8)),
        any::<[u8; 10]>(),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(marker_pt, csrcs, extension, fields, payload)| {
            let mut packet = vec![0x80 | csrcs as u8, marker_pt];
            packet.extend_from_slice(&fields);
            packet.extend((0..csrcs * 4).map(|i| i as u8));
            if let Some(mut ext) = extension {
                ext.truncate(ext.len() / 4 * 4);
                packet[0] |= 0x10;
                packet.extend_from_slice(&[0xbe, 0xde]);
                packet.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
                packet.extend_from_slice(&ext);
            }
            packet.extend_from_slice(&payload);
            packet
        })
}

/// A random compound-ish RTCP packet: an SR/RR/SDES/BYE/feedback header, sender SSRC, body.
fn rtcp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..32,
        200u8..=206,
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(count, packet_type, ssrc, body)| {
            let mut packet = vec![0x80 | count, packet_type];
            packet.extend_from_slice(&((body.len() / 4 + 1) as u16).to_be_bytes());
            packet.extend_from_slice(&ssrc.to_be_bytes());
            packet.extend_from_slice(&body);
            packet
        })
}

fn profile() -> impl Strategy<Value = SrtpProfile> {
    proptest::sample::select(SrtpProfile::ALL.to_vec())
}

fn context(profile: SrtpProfile, seed: u8) -> SrtpContext {
    let key: Vec<u8> = (0..profile.master_key_len() as u8)
        .map(|b| b ^ seed)
        .collect();
    let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
        .map(|b| b.wrapping_mul(seed))
        .collect();
    SrtpContext::new(profile, &key, &salt).unwrap()
}

/// The sequence number field of an RTP packet.
fn set_seq(packet: &mut [u8], seq: u16) {
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Protect then unprotect gives the original; replaying fails; a flipped bit fails
    /// without touching the replay state.
    #[test]
    fn rtp_round_trip(
        profile in profile(),
        seed: u8,
        packet in rtp_packet(),
        roc: u32,
        behind in 1u64..=100,
        flip in any::<proptest::sample::Index>(),
    ) {
        let ctx = context(profile, seed);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let index = u64::from(roc) << 16 | u64::from(seq);
        let mut replay = match index.checked_sub(behind) {
            Some(earlier) => RtpReplay::with_highest(earlier),
            None => RtpReplay::default(),
        };
        let mut buf = buffer(&packet);
        let len = ctx.protect_rtp(&mut buf, packet.len(), roc).unwrap();
        prop_assert_eq!(len, packet.len() + profile.rtp_overhead());
        let protected = buf[..len].to_vec();

        let bit = flip.index(len * 8);
        let mut tampered = protected.clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        let result = ctx.unprotect_rtp(&mut tampered, &mut replay);
        prop_assert!(result.is_err());
        if bit / 8 >= crate::media::packet::header_len(&packet).unwrap() {
            // Payload and tag bits can only fail authentication.
            prop_assert_eq!(result, Err(SrtpError::AuthenticationFailed));
        }

        let mut buf = protected.clone();
        prop_assert_eq!(ctx.unprotect_rtp(&mut buf, &mut replay), Ok(packet.len()));
        prop_assert_eq!(&buf[..packet.len()], &packet[..]);
        prop_assert_eq!(replay.extended_highest(), Some(index));
        prop_assert_eq!(replay.roc(), roc);

        let mut buf = protected;
        prop_assert_eq!(ctx.unprotect_rtp(&mut buf, &mut replay), Err(SrtpError::Replayed));
    }

    /// A stream that starts just below the wrap, delivered with reordering inside the
    /// window: every packet decrypts exactly once, and the ROC follows the wrap.
    #[test]
    fn rtp_stream_across_rollover(
        profile in profile(),
        packet in rtp_packet(),
        first in 65_536u64 - 300..65_536,
        count in 1usize..400,
        jitter in proptest::collection::vec(0u64..100, 400),
    ) {
        let ctx = context(profile, 3);
        let mut sent: Vec<(u64, u64, Vec<u8>)> = (0..count as u64)
            .map(|i| {
                let ext_seq = first + i;
                let mut plain = packet.clone();
                set_seq(&mut plain, ext_seq as u16);
                let mut buf = buffer(&plain);
                let len = ctx.protect_rtp(&mut buf, plain.len(), (ext_seq >> 16) as u32).unwrap();
                buf.truncate(len);
                (i + jitter[i as usize], ext_seq, buf)
            })
            .collect();
        // The first packet arrives first (the receiver learns ROC 0 from it); the rest
        // arrive up to 99 places late.
        sent[1..].sort_by_key(|(at, ..)| *at);
        let mut replay = RtpReplay::default();
        for (_, ext_seq, protected) in &sent {
            let mut buf = protected.clone();
            let len = ctx.unprotect_rtp(&mut buf, &mut replay);
            prop_assert_eq!(len, Ok(packet.len()), "ext_seq {}", ext_seq);
            prop_assert_eq!(&buf[4..packet.len()], &packet[4..]);
        }
        let last = first + count as u64 - 1;
        prop_assert_eq!(replay.extended_highest(), Some(last));
        prop_assert_eq!(u64::from(replay.roc()), last >> 16);
        for (_, _, protected) in &sent {
            let mut buf = protected.clone();
            prop_assert_eq!(ctx.unprotect_rtp(&mut buf, &mut replay), Err(SrtpError::Replayed));
        }
    }

    /// A packet further behind than the window is refused even though it is genuine.
    #[test]
    fn rtp_older_than_the_window(
        profile in profile(),
        packet in rtp_packet(),
        behind in REPLAY_WINDOW..30_000,
    ) {
        let ctx = context(profile, 5);
        let newest = 40_000u64;
        let mut replay = RtpReplay::with_highest(newest);
        let mut old = packet.clone();
        set_seq(&mut old, (newest - behind) as u16);
        let mut buf = buffer(&old);
        let len = ctx.protect_rtp(&mut buf, old.len(), 0).unwrap();
        prop_assert_eq!(ctx.unprotect_rtp(&mut buf[..len], &mut replay), Err(SrtpError::Replayed));
        // One inside the window passes, once.
        let mut recent = packet;
        set_seq(&mut recent, (newest - REPLAY_WINDOW + 1) as u16);
        let mut buf = buffer(&recent);
        let len = ctx.protect_rtp(&mut buf, recent.len(), 0).unwrap();
        let protected = buf[..len].to_vec();
        prop_assert_eq!(ctx.unprotect_rtp(&mut buf[..len], &mut replay), Ok(recent.len()));
        let mut buf = protected;
        prop_assert_eq!(ctx.unprotect_rtp(&mut buf, &mut replay), Err(SrtpError::Replayed));
    }

    /// SRTCP: round trip, index advance, replay, a flipped bit, reordering inside the
    /// window and a packet older than it.
    #[test]
    fn rtcp_round_trip(
        profile in profile(),
        seed: u8,
        packet in rtcp_packet(),
        start in 0u32..0x7fff_ff00,
        flip in any::<proptest::sample::Index>(),
    ) {
        let mut tx = context(profile, seed);
        let rx = context(profile, seed);
        tx.srtcp_index = start;
        let mut protected = Vec::new();
        for _ in 0..3 {
            let mut buf = buffer(&packet);
            let len = tx.protect_rtcp(&mut buf, packet.len()).unwrap();
            prop_assert_eq!(len, packet.len() + profile.rtcp_overhead());
            protected.push(buf[..len].to_vec());
        }
        prop_assert_eq!(tx.srtcp_index, start + 3);

        let mut replay = RtcpReplay::default();
        let bit = flip.index(protected[2].len() * 8);
        let mut tampered = protected[2].clone();
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(rx.unprotect_rtcp(&mut tampered, &mut replay).is_err());

        // Newest first, then the two before it.
        for i in [2, 0, 1] {
            let mut buf = protected[i].clone();
            prop_assert_eq!(rx.unprotect_rtcp(&mut buf, &mut replay), Ok(packet.len()));
            prop_assert_eq!(&buf[..packet.len()], &packet[..]);
        }
        prop_assert_eq!(replay.highest(), Some(start + 2));
        for sent in &protected {
            let mut buf = sent.clone();
            prop_assert_eq!(rx.unprotect_rtcp(&mut buf, &mut replay), Err(SrtpError::Replayed));
        }

        // Jump ahead by the window: the first packet is now too old.
        let mut tx = context(profile, seed);
        tx.srtcp_index = start + 2 + REPLAY_WINDOW as u32;
        let mut buf = buffer(&packet);
        let len = tx.protect_rtcp(&mut buf, packet.len()).unwrap();
        prop_assert_eq!(rx.unprotect_rtcp(&mut buf[..len], &mut replay), Ok(packet.len()));
        let mut buf = protected[2].clone();
        prop_assert_eq!(rx.unprotect_rtcp(&mut buf, &mut replay), Err(SrtpError::Replayed));
    }

    /// Arbitrary bytes never panic any entry point, and never authenticate.
    #[test]
    fn hostile_bytes(
        profile in profile(),
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        len in 0usize..300,
        roc: u32,
    ) {
        let mut ctx = context(profile, 9);
        let mut buf = bytes.clone();
        prop_assert!(ctx.unprotect_rtp(&mut buf, &mut RtpReplay::default()).is_err());
        let mut buf = bytes.clone();
        prop_assert!(ctx.unprotect_rtcp(&mut buf, &mut RtcpReplay::default()).is_err());
        let mut buf = bytes.clone();
        let _ = ctx.protect_rtp(&mut buf, len, roc);
        let mut buf = bytes;
        let _ = ctx.protect_rtcp(&mut buf, len);
    }

    /// Every truncation of a genuine packet fails (shorter tags included).
    #[test]
    fn truncated_packets(profile in profile(), packet in rtp_packet(), rtcp in rtcp_packet()) {
        let mut ctx = context(profile, 11);
        let mut buf = buffer(&packet);
        let len = ctx.protect_rtp(&mut buf, packet.len(), 0).unwrap();
        for cut in 0..len {
            let mut short = buf[..cut].to_vec();
            prop_assert!(ctx.unprotect_rtp(&mut short, &mut RtpReplay::default()).is_err());
        }
        let mut buf = buffer(&rtcp);
        let len = ctx.protect_rtcp(&mut buf, rtcp.len()).unwrap();
        for cut in 0..len {
            let mut short = buf[..cut].to_vec();
            prop_assert!(ctx.unprotect_rtcp(&mut short, &mut RtcpReplay::default()).is_err());
        }
    }
}

#[test]
fn malformed_packets_are_named() {
    let mut ctx = context(SrtpProfile::AeadAes128Gcm, 1);
    let mut replay = RtpReplay::default();
    assert_eq!(
        ctx.unprotect_rtp(&mut [], &mut replay),
        Err(SrtpError::TooShort)
    );
    let mut v1 = [0x40; 40];
    assert_eq!(
        ctx.unprotect_rtp(&mut v1, &mut replay),
        Err(SrtpError::NotRtp)
    );
    // An extension block that runs into the tag.
    let mut overrun = [0u8; 40];
    overrun[0] = 0x90;
    overrun[14..16].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(
        ctx.unprotect_rtp(&mut overrun, &mut replay),
        Err(SrtpError::TooShort)
    );

    let mut rtcp_replay = RtcpReplay::default();
    let mut rtp_as_rtcp = [0x80; 40];
    rtp_as_rtcp[1] = 96;
    let result = ctx.unprotect_rtcp(&mut rtp_as_rtcp, &mut rtcp_replay);
    assert_eq!(result, Err(SrtpError::NotRtcp));
    assert_eq!(
        ctx.unprotect_rtcp(&mut [0x80, 200], &mut rtcp_replay),
        Err(SrtpError::TooShort)
    );

    // No room for the tag, or `len` past the buffer.
    let plain = hex("80600001 00000000 00001234 01020304");
    let mut tight = plain.clone();
    assert_eq!(
        ctx.protect_rtp(&mut tight, plain.len(), 0),
        Err(SrtpError::BufferTooSmall)
    );
    assert_eq!(
        ctx.protect_rtp(&mut tight, 100, 0),
        Err(SrtpError::BufferTooSmall)
    );
    let mut rtcp = hex("80c80001 00001234");
    let len = rtcp.len();
    assert_eq!(
        ctx.protect_rtcp(&mut rtcp, len),
        Err(SrtpError::BufferTooSmall)
    );
    assert_eq!(
        ctx.srtcp_index, 0,
        "a failed protect does not use up an index"
    );
}

#[test]
fn srtcp_index_exhaustion() {
    let mut ctx = context(SrtpProfile::Aes128CmHmacSha1_80, 1);
    ctx.srtcp_index = 0x7fff_ffff;
    let rtcp = hex("80c80001 00001234");
    let mut buf = buffer(&rtcp);
    let len = ctx.protect_rtcp(&mut buf, rtcp.len()).unwrap();
    assert_eq!(buf[len - 14..len - 10], [0xff; 4]);
    let mut buf = buffer(&rtcp);
    assert_eq!(
        ctx.protect_rtcp(&mut buf, rtcp.len()),
        Err(SrtpError::IndexExhausted)
    );
}
