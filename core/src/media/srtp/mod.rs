//! SRTP and SRTCP (RFC 3711) for the media plane: one [`SrtpContext`] per direction, keyed
//! once from a master key and salt, protecting and unprotecting packets in place.
//!
//! - Profiles ([`SrtpProfile`]): AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32
//!   (RFC 3711 sections 4.1.1 and 4.2; the _32 profile keeps an 80-bit SRTCP tag, RFC 5764
//!   section 4.1.2), AEAD_AES_128_GCM and AEAD_AES_256_GCM (RFC 7714 sections 8 to 11).
//! - Session keys come from the AES-CM PRF with a key derivation rate of 0 (RFC 3711
//!   section 4.3; AES-256 for the 256-bit GCM profile, RFC 7714 section 11). DTLS-SRTP
//!   keying material is split as RFC 5764 section 4.2 lays it out
//!   ([`SrtpContext::pair_from_keying_material`]).
//! - The receiver's rollover counter is estimated as in RFC 3711 Appendix A, and replays are
//!   refused with a window of the last [`REPLAY_WINDOW`] indices (section 3.3.2), per SSRC for
//!   SRTP ([`RtpReplay`]) and per sender SSRC for SRTCP ([`RtcpReplay`]); that state belongs
//!   to the caller, so one context serves every SSRC of a direction.
//! - SRTCP packets carry the E flag and a 31-bit index; each context counts its own.
//!
//! Keys are expanded once, when the context is made; protecting and unprotecting allocate
//! nothing and never panic on any input. On an error the buffer's contents are unspecified.
//!
//! ```
//! use sfu_core::media::srtp::{RtpReplay, SrtpContext, SrtpProfile};
//!
//! let profile = SrtpProfile::AeadAes128Gcm;
//! let material = vec![7u8; profile.keying_material_len()]; // from the DTLS handshake
//! let (client_out, _) = SrtpContext::pair_from_keying_material(profile, &material, true).unwrap();
//! let (_, server_in) = SrtpContext::pair_from_keying_material(profile, &material, false).unwrap();
//!
//! // An RTP packet: V=2, PT 96, sequence number 1, timestamp 0, SSRC 0x1234, 3 bytes payload.
//! let plain = [0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 1, 2, 3];
//! let mut buf = [0u8; 1500];
//! buf[..plain.len()].copy_from_slice(&plain);
//! let len = client_out.protect_rtp(&mut buf, plain.len(), 0).unwrap();
//! assert_eq!(len, plain.len() + profile.rtp_overhead());
//!
//! let mut replay = RtpReplay::default();
//! let len = server_in.unprotect_rtp(&mut buf[..len], &mut replay).unwrap();
//! assert_eq!(buf[..len], plain);
//! ```

mod kdf;
mod replay;
mod transform;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;

use crate::media::packet::header_len;

use kdf::Kdf;
pub use replay::{RtcpReplay, RtpReplay, REPLAY_WINDOW};
use transform::{Protocol, Transform, E_FLAG, RTCP_CLEAR_LEN, SRTCP_INDEX_LEN};

/// An SRTP protection profile (RFC 5764 section 4.1.2, RFC 7714 section 14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    Aes128CmHmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit SRTP tag (SRTCP keeps 80 bits).
    Aes128CmHmacSha1_32,
    /// AEAD AES-128-GCM with a 16-byte tag.
    AeadAes128Gcm,
    /// AEAD AES-256-GCM with a 16-byte tag.
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// Every profile.
    pub const ALL: [SrtpProfile; 4] = [
        Self::Aes128CmHmacSha1_80,
        Self::Aes128CmHmacSha1_32,
        Self::AeadAes128Gcm,
        Self::AeadAes256Gcm,
    ];

    /// The master key length in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// The master salt length in bytes: 14 for AES-CM, 12 for AES-GCM.
    pub fn master_salt_len(self) -> usize {
        if self.is_gcm() {
            transform::GCM_SALT_LEN
        } else {
            transform::CM_SALT_LEN
        }
    }

    /// The bytes [`SrtpContext::protect_rtp`] adds: the authentication tag.
    pub fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 10,
            Self::Aes128CmHmacSha1_32 => 4,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => transform::GCM_TAG_LEN,
        }
    }

    /// The bytes [`SrtpContext::protect_rtcp`] adds: the tag and the E flag with the index.
    pub fn rtcp_overhead(self) -> usize {
        self.rtcp_tag_len() + SRTCP_INDEX_LEN
    }

    /// The length of DTLS-SRTP keying material for this profile: `2 * (key + salt)`.
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// The profile's name as SDES and mediasoup spell it, e.g. `"AES_CM_128_HMAC_SHA1_80"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::Aes128CmHmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Self::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The profile named `name` (as [`SrtpProfile::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn is_gcm(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }

    /// The SRTCP tag length: 80 bits for both AES-CM profiles (RFC 5764 section 4.1.2).
    fn rtcp_tag_len(self) -> usize {
        if self.is_gcm() {
            transform::GCM_TAG_LEN
        } else {
            10
        }
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a packet could not be protected or unprotected, or a context not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// The packet is shorter than its header, trailer or tag require.
    #[error("packet too short")]
    TooShort,
    /// The packet is not RTP version 2.
    #[error("not an RTP packet")]
    NotRtp,
    /// The packet is not RTCP (version 2, packet type 192 to 223).
    #[error("not an RTCP packet")]
    NotRtcp,
    /// The authentication tag does not match.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The index was seen before or is older than the replay window.
    #[error("replayed or too old")]
    Replayed,
    /// The buffer has no room for the tag (and SRTCP index), or `len` exceeds it.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The packet index space is used up (SRTP: ROC past 2^32 - 1; SRTCP: index past 2^31 - 1).
    #[error("index space exhausted")]
    IndexExhausted,
    /// The master key, salt or keying material has the wrong length for the profile.
    #[error("bad key length")]
    BadKeyLength,
}

/// One direction of an SRTP session: the keys derived from one master key and salt.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: Transform,
    rtcp: Transform,
    /// The SRTCP index of the next packet [`SrtpContext::protect_rtcp`] sends.
    srtcp_index: u32,
}

/// The largest SRTCP index (31 bits).
const MAX_SRTCP_INDEX: u32 = !E_FLAG;

impl SrtpContext {
    /// Derives the SRTP and SRTCP session keys of `profile` from a master key and salt of
    /// the profile's lengths.
    pub fn new(
        profile: SrtpProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, SrtpError> {
        if master_key.len() != profile.master_key_len()
            || master_salt.len() != profile.master_salt_len()
        {
            return Err(SrtpError::BadKeyLength);
        }
        let kdf = Kdf::new(master_key, master_salt)?;
        let (rtp, rtcp) = if profile.is_gcm() {
            let key_len = profile.master_key_len();
            (
                Transform::gcm(&kdf, Protocol::Rtp, key_len)?,
                Transform::gcm(&kdf, Protocol::Rtcp, key_len)?,
            )
        } else {
            (
                Transform::cm(&kdf, Protocol::Rtp, profile.rtp_overhead())?,
                Transform::cm(&kdf, Protocol::Rtcp, profile.rtcp_tag_len())?,
            )
        };
        Ok(Self {
            profile,
            rtp,
            rtcp,
            srtcp_index: 0,
        })
    }

    /// (local write context, remote write context) from DTLS-SRTP keying material, laid out
    /// as RFC 5764 section 4.2 says: client write key, server write key, client write salt,
    /// server write salt. The local side writes with the client half when it is the DTLS
    /// client.
    pub fn pair_from_keying_material(
        profile: SrtpProfile,
        material: &[u8],
        local_is_client: bool,
    ) -> Result<(SrtpContext, SrtpContext), SrtpError> {
        if material.len() != profile.keying_material_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let (keys, salts) = material.split_at(2 * profile.master_key_len());
        let (client_key, server_key) = keys.split_at(profile.master_key_len());
        let (client_salt, server_salt) = salts.split_at(profile.master_salt_len());
        let client = Self::new(profile, client_key, client_salt)?;
        let server = Self::new(profile, server_key, server_salt)?;
        Ok(if local_is_client {
            (client, server)
        } else {
            (server, client)
        })
    }

    /// The profile this context was made for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Protects the plaintext RTP packet in `buf[..len]` in place; `buf` must have room for
    /// [`SrtpProfile::rtp_overhead`] more bytes. `roc` is the sender's rollover counter for
    /// this packet's sequence number (the caller knows its extended sequence number:
    /// `roc = ext_seq >> 16`). Returns the protected length.
    pub fn protect_rtp(&self, buf: &mut [u8], len: usize, roc: u32) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let hlen = rtp_header(packet)?;
        let index = u64::from(roc) << 16 | u64::from(rtp_seq(packet)?);
        let ssrc = rtp_ssrc(packet).ok_or(SrtpError::TooShort)?;
        self.rtp.protect_rtp(buf, hlen, len, ssrc, index)
    }

    /// Verifies and decrypts `buf` (a whole SRTP packet) in place; returns the plaintext
    /// length. `replay` is the caller's state for this packet's SSRC; it is updated only on
    /// success (so a fresh `RtpReplay::default()` can be tried for an unknown SSRC and stored
    /// only if this returns `Ok`).
    pub fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        replay: &mut RtpReplay,
    ) -> Result<usize, SrtpError> {
        let len = buf
            .len()
            .checked_sub(self.rtp.tag_len())
            .ok_or(SrtpError::TooShort)?;
        let packet = &buf[..len];
        let hlen = rtp_header(packet)?;
        let seq = rtp_seq(packet)?;
        let ssrc = rtp_ssrc(packet).ok_or(SrtpError::TooShort)?;
        let (index, jumped) = replay.index_for(seq)?;
        // Tried one rollover ahead because the estimate was too old: a failure is an old or
        // replayed packet.
        let plain_len = self
            .rtp
            .unprotect_rtp(buf, hlen, ssrc, index)
            .map_err(|e| if jumped { SrtpError::Replayed } else { e })?;
        replay.accept(index);
        Ok(plain_len)
    }

    /// Protects the plaintext compound RTCP packet in `buf[..len]` in place with this
    /// context's next SRTCP index (encrypted, E flag set); `buf` must have room for
    /// [`SrtpProfile::rtcp_overhead`] more bytes. Returns the protected length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        check_rtcp(packet)?;
        let ssrc = rtcp_sender_ssrc(packet).ok_or(SrtpError::TooShort)?;
        let index = self.srtcp_index;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        let protected = self.rtcp.protect_rtcp(buf, len, ssrc, index)?;
        self.srtcp_index = index + 1;
        Ok(protected)
    }

    /// Verifies and (when its E flag is set) decrypts `buf`, a whole SRTCP packet, in place;
    /// returns the RTCP length. `replay` is the caller's state for the sender SSRC (bytes
    /// 4..8, see [`rtcp_sender_ssrc`]); it is updated only on success.
    pub fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        replay: &mut RtcpReplay,
    ) -> Result<usize, SrtpError> {
        let tag_len = self.rtcp.tag_len();
        let len = buf
            .len()
            .checked_sub(tag_len + SRTCP_INDEX_LEN)
            .ok_or(SrtpError::TooShort)?;
        let packet = &buf[..len];
        check_rtcp(packet)?;
        let ssrc = rtcp_sender_ssrc(packet).ok_or(SrtpError::TooShort)?;
        // AES-CM puts the index word before the tag (RFC 3711 section 3.4), AES-GCM after it
        // (RFC 7714 section 9.1).
        let at = match self.rtcp {
            Transform::Cm(_) => len,
            Transform::Gcm(_) => len + tag_len,
        };
        let e_index = read_u32(buf, at).ok_or(SrtpError::TooShort)?;
        let index = e_index & MAX_SRTCP_INDEX;
        replay.check(index)?;
        let rtcp_len = self.rtcp.unprotect_rtcp(buf, ssrc, e_index)?;
        replay.accept(index);
        Ok(rtcp_len)
    }
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("srtcp_index", &self.srtcp_index)
            .finish_non_exhaustive()
    }
}

/// The SSRC of an RTP packet (bytes 8..12), if it is long enough.
pub fn rtp_ssrc(buf: &[u8]) -> Option<u32> {
    read_u32(buf, 8)
}

/// The sender SSRC of an (S)RTCP packet (bytes 4..8), if it is long enough; this SSRC selects
/// the [`RtcpReplay`] to pass to [`SrtpContext::unprotect_rtcp`].
pub fn rtcp_sender_ssrc(buf: &[u8]) -> Option<u32> {
    read_u32(buf, 4)
}

/// The RTP header length of `packet`, or why it is not an RTP packet.
fn rtp_header(packet: &[u8]) -> Result<usize, SrtpError> {
    let first = *packet.first().ok_or(SrtpError::TooShort)?;
    if first >> 6 != 2 {
        return Err(SrtpError::NotRtp);
    }
    header_len(packet).ok_or(SrtpError::TooShort)
}

fn rtp_seq(packet: &[u8]) -> Result<u16, SrtpError> {
    match packet.get(2..4) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(SrtpError::TooShort),
    }
}

/// Checks the first RTCP header of a (compound) packet: version 2, a packet type in the
/// RTCP range 192..=223 (RFC 5761 section 4), and room for the sender SSRC.
fn check_rtcp(packet: &[u8]) -> Result<(), SrtpError> {
    let (first, packet_type) = match packet {
        [first, packet_type, ..] => (*first, *packet_type),
        _ => return Err(SrtpError::TooShort),
    };
    if first >> 6 != 2 || !(192..=223).contains(&packet_type) {
        return Err(SrtpError::NotRtcp);
    }
    if packet.len() < RTCP_CLEAR_LEN {
        return Err(SrtpError::TooShort);
    }
    Ok(())
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    bytes.try_into().ok().map(u32::from_be_bytes)
}
