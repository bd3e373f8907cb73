//! The SRTP key derivation function: the AES-CM PRF of RFC 3711 section 4.3.3 with a key
//! derivation rate of zero (section 4.3.1), keyed with AES-128 or, for AEAD_AES_256_GCM,
//! AES-256 (RFC 7714 section 11). A 96-bit GCM master salt is padded on the right with zeros
//! to the 112 bits the PRF takes.

use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128, AES_256};
use aws_lc_rs::iv::FixedLength;

use super::SrtpError;

/// The key derivation labels of RFC 3711 section 4.3.2 (and RFC 7714 section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Label {
    RtpCipher = 0,
    RtpAuth = 1,
    RtpSalt = 2,
    RtcpCipher = 3,
    RtcpAuth = 4,
    RtcpSalt = 5,
}

/// The PRF input's salt length (112 bits).
const PRF_SALT_LEN: usize = 14;

/// A master key and salt, ready to derive session keys.
pub(super) struct Kdf {
    prf: EncryptingKey,
    salt: [u8; PRF_SALT_LEN],
}

impl Kdf {
    /// Expands `master_key` (16 or 32 bytes) for the PRF; `master_salt` is at most 14 bytes.
    pub(super) fn new(master_key: &[u8], master_salt: &[u8]) -> Result<Self, SrtpError> {
        let algorithm = match master_key.len() {
            16 => &AES_128,
            32 => &AES_256,
            _ => return Err(SrtpError::BadKeyLength),
        };
        if master_salt.len() > PRF_SALT_LEN {
            return Err(SrtpError::BadKeyLength);
        }
        let prf = UnboundCipherKey::new(algorithm, master_key)
            .and_then(EncryptingKey::ctr)
            .map_err(|_| SrtpError::BadKeyLength)?;
        let mut salt = [0; PRF_SALT_LEN];
        salt[..master_salt.len()].copy_from_slice(master_salt);
        Ok(Self { prf, salt })
    }

    /// Fills `out` with the session key material for `label`: the AES-CM keystream with the
    /// counter block `(master_salt XOR (label || 0^48)) * 2^16`.
    pub(super) fn derive(&self, label: Label, out: &mut [u8]) -> Result<(), SrtpError> {
        let mut block = [0; 16];
        block[..PRF_SALT_LEN].copy_from_slice(&self.salt);
        // key_id = label || (index DIV kdr), 56 bits right-aligned in the 112-bit salt; the
        // index part is zero (kdr = 0), so only the label byte changes.
        block[7] ^= label as u8;
        out.fill(0);
        self.prf
            .less_safe_encrypt(out, EncryptionContext::Iv128(FixedLength::from(block)))
            .map(|_| ())
            .map_err(|_| SrtpError::BadKeyLength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::srtp::tests::hex;

    /// RFC 3711 Appendix B.3: the cipher key, cipher salt and the 94-octet auth key.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let kdf = Kdf::new(
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut key = [0; 16];
        kdf.derive(Label::RtpCipher, &mut key).unwrap();
        assert_eq!(key[..], hex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        let mut salt = [0; 14];
        kdf.derive(Label::RtpSalt, &mut salt).unwrap();
        assert_eq!(salt[..], hex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        let mut auth = [0; 94];
        kdf.derive(Label::RtpAuth, &mut auth).unwrap();
        assert_eq!(
            auth[..],
            hex(
                "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
                 E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
                 6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
            )[..]
        );
    }

    /// GCM master keys with the 96-bit RFC 7714 test salt ("Quid pro quo"): no RFC lists
    /// derived GCM session keys, so these were computed independently with
    /// `openssl enc -aes-{128,256}-ctr` on the counter block `salt || 00 00` (label XORed into
    /// byte 7) over zeros.
    #[test]
    fn gcm_master_salt_derivation() {
        let salt = hex("517569642070726f2071756f");
        let kdf = Kdf::new(&hex("000102030405060708090a0b0c0d0e0f"), &salt).unwrap();
        let (mut key, mut session_salt) = ([0; 16], [0; 12]);
        kdf.derive(Label::RtpCipher, &mut key).unwrap();
        kdf.derive(Label::RtpSalt, &mut session_salt).unwrap();
        assert_eq!(key[..], hex("b1bb5ee1803c7cb022c25343feb23261")[..]);
        assert_eq!(session_salt[..], hex("52fa33dcddd7c677e513ce75")[..]);

        let kdf = Kdf::new(
            &hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
            &salt,
        )
        .unwrap();
        let mut key = [0; 32];
        kdf.derive(Label::RtpCipher, &mut key).unwrap();
        assert_eq!(
            key[..],
            hex("55a897acc260e7906b03359810579a2d9fe41f1985acf2e07a9e4a6ac284d8e1")[..]
        );
        kdf.derive(Label::RtcpCipher, &mut key).unwrap();
        assert_eq!(
            key[..],
            hex("a272bf8833ee0a30f1d0b5c82d954d324691abc9a59595b747e9e3136900e344")[..]
        );
        kdf.derive(Label::RtpSalt, &mut session_salt).unwrap();
        assert_eq!(session_salt[..], hex("2df806deb9b0f9c4bcbbc9dd")[..]);
        kdf.derive(Label::RtcpSalt, &mut session_salt).unwrap();
        assert_eq!(session_salt[..], hex("735dd67e86c2c58ead4dcc25")[..]);
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(Kdf::new(&[0; 24], &[0; 14]).is_err());
        assert!(Kdf::new(&[0; 15], &[0; 14]).is_err());
        assert!(Kdf::new(&[0; 16], &[0; 15]).is_err());
    }
}
