//! The per-packet cryptographic transforms, keyed once from derived session keys:
//! AES-CM with HMAC-SHA1 (RFC 3711 sections 4.1.1 and 4.2) and AEAD AES-GCM (RFC 7714
//! sections 8 to 10). Every function works in place on a caller's buffer.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::kdf::{Kdf, Label};
use super::SrtpError;

/// The session salt length of AES-CM (112 bits).
pub(super) const CM_SALT_LEN: usize = 14;
/// The session salt length of AES-GCM (96 bits).
pub(super) const GCM_SALT_LEN: usize = 12;
/// The HMAC-SHA1 session authentication key length (RFC 3711 section 5.2).
const AUTH_KEY_LEN: usize = 20;
/// The AES-GCM tag length (RFC 7714 section 14.2).
pub(super) const GCM_TAG_LEN: usize = 16;
/// The fixed part of an RTCP packet that stays clear: header word and sender SSRC.
pub(super) const RTCP_CLEAR_LEN: usize = 8;
/// The E flag and SRTCP index word.
pub(super) const SRTCP_INDEX_LEN: usize = 4;
/// The E flag in the SRTCP index word.
pub(super) const E_FLAG: u32 = 0x8000_0000;

/// The session keys of one protocol (SRTP or SRTCP) in one direction.
// The HMAC state makes the AES-CM variant larger; a context lives as long as its session and
// there are two per transport, so the keys stay inline rather than behind a pointer.
#[allow(clippy::large_enum_variant)]
pub(super) enum Transform {
    /// AES-CM encryption with a truncated HMAC-SHA1 tag.
    Cm(CmHmac),
    /// AEAD AES-GCM.
    Gcm(Gcm),
}

/// Which set of labels to derive session keys with.
#[derive(Clone, Copy)]
pub(super) enum Protocol {
    Rtp,
    Rtcp,
}

impl Protocol {
    fn labels(self) -> [Label; 3] {
        match self {
            Self::Rtp => [Label::RtpCipher, Label::RtpAuth, Label::RtpSalt],
            Self::Rtcp => [Label::RtcpCipher, Label::RtcpAuth, Label::RtcpSalt],
        }
    }
}

impl Transform {
    /// AES-CM-128 with an HMAC-SHA1 tag of `tag_len` bytes.
    pub(super) fn cm(kdf: &Kdf, protocol: Protocol, tag_len: usize) -> Result<Self, SrtpError> {
        let [cipher_label, auth_label, salt_label] = protocol.labels();
        let mut key = [0; 16];
        let mut auth = [0; AUTH_KEY_LEN];
        let mut salt = [0; CM_SALT_LEN];
        kdf.derive(cipher_label, &mut key)?;
        kdf.derive(auth_label, &mut auth)?;
        kdf.derive(salt_label, &mut salt)?;
        Ok(Self::Cm(CmHmac::new(&key, &auth, salt, tag_len)?))
    }

    /// AES-GCM with a session key as long as the master key (16 or 32 bytes).
    pub(super) fn gcm(kdf: &Kdf, protocol: Protocol, key_len: usize) -> Result<Self, SrtpError> {
        let [cipher_label, _, salt_label] = protocol.labels();
        let mut key = [0; 32];
        let key = key.get_mut(..key_len).ok_or(SrtpError::BadKeyLength)?;
        let mut salt = [0; GCM_SALT_LEN];
        kdf.derive(cipher_label, key)?;
        kdf.derive(salt_label, &mut salt)?;
        Ok(Self::Gcm(Gcm::new(key, salt)?))
    }

    /// AES-GCM with session keys given directly, as the RFC 7714 vectors give them.
    #[cfg(test)]
    pub(super) fn gcm_from_session_keys(key: &[u8], salt: &[u8]) -> Result<Self, SrtpError> {
        let salt = salt.try_into().map_err(|_| SrtpError::BadKeyLength)?;
        Ok(Self::Gcm(Gcm::new(key, salt)?))
    }

    /// The tag length this transform appends.
    pub(super) fn tag_len(&self) -> usize {
        match self {
            Self::Cm(cm) => cm.tag_len,
            Self::Gcm(_) => GCM_TAG_LEN,
        }
    }

    /// Encrypts and authenticates `buf[..len]` (an RTP packet whose header is `hlen` bytes),
    /// appending the tag; `buf` has room for it. Returns the protected length.
    pub(super) fn protect_rtp(
        &self,
        buf: &mut [u8],
        hlen: usize,
        len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let out_len = len + self.tag_len();
        let buf = buf.get_mut(..out_len).ok_or(SrtpError::BufferTooSmall)?;
        let (packet, tag) = buf.split_at_mut(len);
        let (header, payload) = packet.split_at_mut(hlen);
        match self {
            Self::Cm(cm) => {
                cm.apply_keystream(ssrc, index, payload)?;
                // RFC 3711 section 4.2: M = authenticated portion || ROC.
                let roc = ((index >> 16) as u32).to_be_bytes();
                cm.sign(&[header, payload, &roc], tag);
            }
            Self::Gcm(gcm) => {
                let sealed = gcm
                    .key
                    .seal_in_place_separate_tag(
                        gcm.nonce(ssrc, index),
                        Aad::from(&*header),
                        payload,
                    )
                    .map_err(|_| SrtpError::BufferTooSmall)?;
                tag.copy_from_slice(sealed.as_ref());
            }
        }
        Ok(out_len)
    }

    /// Verifies and decrypts the SRTP packet `buf` (header `hlen` bytes, tag at the end) in
    /// place. Returns the plaintext length.
    pub(super) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        hlen: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let len = buf
            .len()
            .checked_sub(self.tag_len())
            .filter(|&len| len >= hlen)
            .ok_or(SrtpError::TooShort)?;
        let (packet, tag) = buf.split_at_mut(len);
        let (header, payload) = packet.split_at_mut(hlen);
        match self {
            Self::Cm(cm) => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                cm.verify(&[header, payload, &roc], tag)?;
                cm.apply_keystream(ssrc, index, payload)?;
            }
            Self::Gcm(gcm) => {
                gcm.key
                    .open_in_place_separate_tag(
                        gcm.nonce(ssrc, index),
                        Aad::from(&*header),
                        tag,
                        payload,
                    )
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
            }
        }
        Ok(len)
    }

    /// Encrypts and authenticates the RTCP packet `buf[..len]` with SRTCP index `index` (E
    /// flag set), appending the index word and tag in the order the transform defines; `buf`
    /// has room. Returns the protected length.
    pub(super) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
    ) -> Result<usize, SrtpError> {
        let out_len = len + SRTCP_INDEX_LEN + self.tag_len();
        let buf = buf.get_mut(..out_len).ok_or(SrtpError::BufferTooSmall)?;
        let e_index = (E_FLAG | index).to_be_bytes();
        let (packet, trailer) = buf.split_at_mut(len);
        let (clear, payload) = packet.split_at_mut(RTCP_CLEAR_LEN);
        match self {
            Self::Cm(cm) => {
                // RFC 3711 section 3.4: ... || E || SRTCP index || tag; the tag covers the
                // index word.
                cm.apply_keystream(ssrc, u64::from(index), payload)?;
                let (index_word, tag) = trailer.split_at_mut(SRTCP_INDEX_LEN);
                index_word.copy_from_slice(&e_index);
                cm.sign(&[clear, payload, index_word], tag);
            }
            Self::Gcm(gcm) => {
                // RFC 7714 section 9.1: ... || tag || E || SRTCP index; the AAD is the clear
                // header followed by the index word.
                let aad = rtcp_aad(clear, e_index);
                let sealed = gcm
                    .key
                    .seal_in_place_separate_tag(
                        gcm.nonce(ssrc, u64::from(index)),
                        Aad::from(aad),
                        payload,
                    )
                    .map_err(|_| SrtpError::BufferTooSmall)?;
                let (tag, index_word) = trailer.split_at_mut(GCM_TAG_LEN);
                tag.copy_from_slice(sealed.as_ref());
                index_word.copy_from_slice(&e_index);
            }
        }
        Ok(out_len)
    }

    /// Verifies the SRTCP packet `buf` and, when `encrypted` (the E flag), decrypts it in
    /// place. Returns the RTCP length.
    pub(super) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        ssrc: u32,
        e_index: u32,
    ) -> Result<usize, SrtpError> {
        let index = e_index & !E_FLAG;
        let encrypted = e_index & E_FLAG != 0;
        let len = buf
            .len()
            .checked_sub(SRTCP_INDEX_LEN + self.tag_len())
            .filter(|&len| len >= RTCP_CLEAR_LEN)
            .ok_or(SrtpError::TooShort)?;
        match self {
            Self::Cm(cm) => {
                let (authenticated, tag) = buf.split_at_mut(len + SRTCP_INDEX_LEN);
                cm.verify(&[authenticated], tag)?;
                if encrypted {
                    let payload = &mut authenticated[RTCP_CLEAR_LEN..len];
                    cm.apply_keystream(ssrc, u64::from(index), payload)?;
                }
            }
            Self::Gcm(gcm) => {
                let nonce = gcm.nonce(ssrc, u64::from(index));
                let mut tag = [0; GCM_TAG_LEN];
                tag.copy_from_slice(&buf[len..len + GCM_TAG_LEN]);
                let e_index = e_index.to_be_bytes();
                if encrypted {
                    let (clear, payload) = buf[..len].split_at_mut(RTCP_CLEAR_LEN);
                    let aad = rtcp_aad(clear, e_index);
                    gcm.key
                        .open_in_place_separate_tag(nonce, Aad::from(aad), &tag, payload)
                        .map_err(|_| SrtpError::AuthenticationFailed)?;
                } else {
                    // RFC 7714 section 9.2: without encryption the whole packet and the index
                    // word are the AAD. Move the index word next to the packet (over the tag,
                    // saved above) so the AAD is one slice.
                    buf[len..len + SRTCP_INDEX_LEN].copy_from_slice(&e_index);
                    gcm.key
                        .open_in_place_separate_tag(
                            nonce,
                            Aad::from(&buf[..len + SRTCP_INDEX_LEN]),
                            &tag,
                            &mut [],
                        )
                        .map_err(|_| SrtpError::AuthenticationFailed)?;
                }
            }
        }
        Ok(len)
    }
}

/// The SRTCP AAD of RFC 7714 section 9.1: the first 8 octets, then E and the index.
fn rtcp_aad(clear: &[u8], e_index: [u8; 4]) -> [u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN] {
    let mut aad = [0; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
    aad[..RTCP_CLEAR_LEN].copy_from_slice(clear);
    aad[RTCP_CLEAR_LEN..].copy_from_slice(&e_index);
    aad
}

/// AES-CM-128 session keys and the HMAC-SHA1 authentication key (RFC 3711 section 4).
pub(super) struct CmHmac {
    cipher: EncryptingKey,
    auth: hmac::Key,
    salt: [u8; CM_SALT_LEN],
    tag_len: usize,
}

impl CmHmac {
    fn new(
        key: &[u8],
        auth: &[u8],
        salt: [u8; CM_SALT_LEN],
        tag_len: usize,
    ) -> Result<Self, SrtpError> {
        let cipher = UnboundCipherKey::new(&AES_128, key)
            .and_then(EncryptingKey::ctr)
            .map_err(|_| SrtpError::BadKeyLength)?;
        let auth = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth);
        Ok(Self {
            cipher,
            auth,
            salt,
            tag_len,
        })
    }

    /// XORs `data` with the keystream of RFC 3711 section 4.1.1: the counter starts at
    /// `(salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16)`. Encryption and decryption are the
    /// same operation.
    fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) -> Result<(), SrtpError> {
        let mut counter = [0; 16];
        counter[..CM_SALT_LEN].copy_from_slice(&self.salt);
        xor(&mut counter[4..8], &ssrc.to_be_bytes());
        xor(&mut counter[8..14], &index.to_be_bytes()[2..]);
        self.cipher
            .less_safe_encrypt(data, EncryptionContext::Iv128(FixedLength::from(counter)))
            .map(|_| ())
            // AES-CTR with a 16-byte counter block does not fail.
            .map_err(|_| SrtpError::AuthenticationFailed)
    }

    /// Writes the first `tag.len()` bytes of HMAC-SHA1 over the concatenated `parts`.
    fn sign(&self, parts: &[&[u8]], tag: &mut [u8]) {
        let full = self.mac(parts);
        tag.copy_from_slice(&full.as_ref()[..tag.len()]);
    }

    /// Checks `tag` against the truncated HMAC-SHA1 over `parts`, in constant time.
    fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), SrtpError> {
        let full = self.mac(parts);
        let expected = full.as_ref().get(..tag.len()).ok_or(SrtpError::TooShort)?;
        verify_slices_are_equal(expected, tag).map_err(|_| SrtpError::AuthenticationFailed)
    }

    /// The truncated tag over `data`, for building packets the context never sends.
    #[cfg(test)]
    pub(super) fn sign_for_test(&self, data: &[u8], tag: &mut [u8]) {
        self.sign(&[data], tag);
    }

    fn mac(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.auth);
        for part in parts {
            context.update(part);
        }
        context.sign()
    }
}

/// An AES-GCM session key and salt (RFC 7714).
pub(super) struct Gcm {
    key: LessSafeKey,
    salt: [u8; GCM_SALT_LEN],
}

impl Gcm {
    fn new(key: &[u8], salt: [u8; GCM_SALT_LEN]) -> Result<Self, SrtpError> {
        let algorithm = match key.len() {
            16 => &aead::AES_128_GCM,
            32 => &aead::AES_256_GCM,
            _ => return Err(SrtpError::BadKeyLength),
        };
        let key = UnboundKey::new(algorithm, key).map_err(|_| SrtpError::BadKeyLength)?;
        Ok(Self {
            key: LessSafeKey::new(key),
            salt,
        })
    }

    /// The IV of RFC 7714 sections 8.1 and 9.1: `00 00 || SSRC || index (48 bits)` XOR the
    /// salt, where the SRTP index is `ROC || SEQ` and the SRTCP index is `00 00 || 0 || index`.
    fn nonce(&self, ssrc: u32, index: u64) -> Nonce {
        let mut iv = self.salt;
        xor(&mut iv[2..6], &ssrc.to_be_bytes());
        xor(&mut iv[6..12], &index.to_be_bytes()[2..]);
        Nonce::assume_unique_for_key(iv)
    }
}

fn xor(into: &mut [u8], from: &[u8]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a ^= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::srtp::tests::hex;

    /// RFC 3711 Appendix B.2: the AES-CM keystream for session key 2B7E..., session salt
    /// F0F1...FCFD, SSRC 0 and index 0 (65282 blocks; the last three coincide with RFC 3686
    /// F.5.1).
    #[test]
    fn rfc3711_b2_keystream() {
        let mut salt = [0; CM_SALT_LEN];
        salt.copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
        let cm = CmHmac::new(&hex("2B7E151628AED2A6ABF7158809CF4F3C"), &[0; 20], salt, 10).unwrap();
        let mut stream = vec![0; 65282 * 16];
        cm.apply_keystream(0, 0, &mut stream).unwrap();
        assert_eq!(
            stream[..48],
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0"
            )[..]
        );
        assert_eq!(
            stream[0xfeff * 16..],
            hex(
                "EC8CDF7398607CB0F2D21675EA9EA1E4 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44"
            )[..]
        );
    }

    /// RFC 7714 section 16: the IV for SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b; section 17: the
    /// IV for SSRC "Mars" and SRTCP index 0x5d4.
    #[test]
    fn rfc7714_ivs() {
        let mut salt = [0; GCM_SALT_LEN];
        salt.copy_from_slice(&hex("517569642070726f2071756f"));
        let gcm = Gcm::new(&[0; 16], salt).unwrap();
        assert_eq!(
            gcm.nonce(0x5501_a0b2, 0xf17b).as_ref()[..],
            hex("51753c6580c2726f20718414")[..]
        );
        assert_eq!(
            gcm.nonce(0x4d61_7273, 0x5d4).as_ref()[..],
            hex("517524055203726f207170bb")[..]
        );
    }
}
