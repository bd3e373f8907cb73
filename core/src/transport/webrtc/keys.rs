//! A transport's SRTP master keys and salts, as its DTLS handshake exported them.
//!
//! DTLS-SRTP (RFC 5764 section 4.2) exports one block of keying material, laid out as
//! `client_write_SRTP_master_key | server_write_SRTP_master_key |
//! client_write_SRTP_master_salt | server_write_SRTP_master_salt`. The DTLS client protects
//! what it sends with the client halves and the server with the server halves, so the halves
//! this side writes with are the client halves exactly when this side is the DTLS client.
//! Key and salt lengths come from the negotiated protection profile: RFC 5764 section 4.1.2
//! (`SRTP_AES128_CM_HMAC_SHA1_80`) and RFC 7714 section 12 (the AES-GCM profiles).
//!
//! The keys reach the transport through a [`KeySlot`]: the transport creates one, hands it to
//! the DTLS instance made for it (see [`super::dtls::with_key_slot`]), and takes the keys out
//! once DTLS reports the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use str0m::crypto::dtls::SrtpProfile;

/// The longest master key of any supported profile (AEAD_AES_256_GCM).
const MAX_KEY_LEN: usize = 32;
/// The longest master salt of any supported profile (AES128_CM_SHA1_80).
const MAX_SALT_LEN: usize = 14;

/// What the core needs to know about one protection profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProfileParams {
    /// Master key length in bytes.
    key_len: usize,
    /// Master salt length in bytes.
    salt_len: usize,
    /// The profile's name as mediasoup's `srtpCryptoSuite` spells it.
    suite: &'static str,
}

/// The parameters of `profile`, or `None` for a profile the core does not support.
fn params(profile: SrtpProfile) -> Option<ProfileParams> {
    let (key_len, salt_len, suite) = match profile {
        SrtpProfile::AES128_CM_SHA1_80 => (16, 14, "AES_CM_128_HMAC_SHA1_80"),
        SrtpProfile::AEAD_AES_128_GCM => (16, 12, "AEAD_AES_128_GCM"),
        SrtpProfile::AEAD_AES_256_GCM => (32, 12, "AEAD_AES_256_GCM"),
        _ => return None,
    };
    debug_assert!(key_len <= MAX_KEY_LEN && salt_len <= MAX_SALT_LEN);
    Some(ProfileParams {
        key_len,
        salt_len,
        suite,
    })
}

/// Why keying material could not be split into SRTP keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeysError {
    /// The DTLS stack negotiated a profile the core has no lengths for.
    #[error("unsupported SRTP protection profile {0}")]
    UnsupportedProfile(SrtpProfile),
    /// The material is not two keys and two salts of the profile's lengths.
    #[error("{actual} bytes of keying material where {profile} needs {expected}")]
    WrongLength {
        /// The negotiated profile.
        profile: SrtpProfile,
        /// Twice the profile's key length plus twice its salt length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
}

/// One transport's SRTP master keys and salts: the pair it protects with (local) and the pair
/// it unprotects with (remote). `Debug` prints the profile only, never key bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SrtpKeys {
    profile: SrtpProfile,
    params: ProfileParams,
    local_key: [u8; MAX_KEY_LEN],
    local_salt: [u8; MAX_SALT_LEN],
    remote_key: [u8; MAX_KEY_LEN],
    remote_salt: [u8; MAX_SALT_LEN],
}

// The accessors of the keys themselves are for the media plane's SRTP contexts.
#[allow(dead_code)]
impl SrtpKeys {
    /// Splits DTLS-SRTP keying material (RFC 5764 section 4.2) for `profile`.
    /// `local_is_client` says whether this side is the DTLS client (the active side).
    pub(crate) fn from_keying_material(
        material: &[u8],
        profile: SrtpProfile,
        local_is_client: bool,
    ) -> Result<Self, KeysError> {
        let params = params(profile).ok_or(KeysError::UnsupportedProfile(profile))?;
        let (k, s) = (params.key_len, params.salt_len);
        let wrong_length = || KeysError::WrongLength {
            profile,
            expected: 2 * (k + s),
            actual: material.len(),
        };
        if material.len() != 2 * (k + s) {
            return Err(wrong_length());
        }
        let (client_key, rest) = material.split_at_checked(k).ok_or_else(wrong_length)?;
        let (server_key, rest) = rest.split_at_checked(k).ok_or_else(wrong_length)?;
        let (client_salt, server_salt) = rest.split_at_checked(s).ok_or_else(wrong_length)?;
        let (local, remote) = if local_is_client {
            ((client_key, client_salt), (server_key, server_salt))
        } else {
            ((server_key, server_salt), (client_key, client_salt))
        };
        let mut keys = Self {
            profile,
            params,
            local_key: [0; MAX_KEY_LEN],
            local_salt: [0; MAX_SALT_LEN],
            remote_key: [0; MAX_KEY_LEN],
            remote_salt: [0; MAX_SALT_LEN],
        };
        // The lengths come from the profile table, whose entries all fit the arrays.
        keys.local_key[..k].copy_from_slice(local.0);
        keys.local_salt[..s].copy_from_slice(local.1);
        keys.remote_key[..k].copy_from_slice(remote.0);
        keys.remote_salt[..s].copy_from_slice(remote.1);
        Ok(keys)
    }

    /// The negotiated profile as the media plane's SRTP names it.
    pub(crate) fn media_profile(&self) -> Option<crate::media::srtp::SrtpProfile> {
        use crate::media::srtp::SrtpProfile as Media;
        match self.profile {
            SrtpProfile::AES128_CM_SHA1_80 => Some(Media::Aes128CmHmacSha1_80),
            SrtpProfile::AEAD_AES_128_GCM => Some(Media::AeadAes128Gcm),
            SrtpProfile::AEAD_AES_256_GCM => Some(Media::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The negotiated protection profile.
    pub(crate) fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// The profile's name as mediasoup's `srtpCryptoSuite` spells it (`"AEAD_AES_256_GCM"`,
    /// `"AEAD_AES_128_GCM"`, `"AES_CM_128_HMAC_SHA1_80"`).
    pub(crate) fn crypto_suite(&self) -> &'static str {
        self.params.suite
    }

    /// The master key this side protects outgoing SRTP and SRTCP with.
    pub(crate) fn local_key(&self) -> &[u8] {
        &self.local_key[..self.params.key_len]
    }

    /// The master salt this side protects outgoing SRTP and SRTCP with.
    pub(crate) fn local_salt(&self) -> &[u8] {
        &self.local_salt[..self.params.salt_len]
    }

    /// The master key the peer protects its SRTP and SRTCP with.
    pub(crate) fn remote_key(&self) -> &[u8] {
        &self.remote_key[..self.params.key_len]
    }

    /// The master salt the peer protects its SRTP and SRTCP with.
    pub(crate) fn remote_salt(&self) -> &[u8] {
        &self.remote_salt[..self.params.salt_len]
    }
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpKeys")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// Where a transport's DTLS instance reports to the transport: the SRTP keys it leaves for the
/// transport to take, and a count of the SCTP packets it dropped.
///
/// Clones share one slot. The DTLS instance and the transport live in the same `Sfu`, so the
/// lock is never contended; it is there to keep both `Send + Sync` as str0m requires, and is
/// taken once per handshake, never per packet.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySlot(Arc<Slot>);

#[derive(Debug, Default)]
struct Slot {
    keys: Mutex<Option<SrtpKeys>>,
    sctp_dropped: AtomicU64,
}

impl KeySlot {
    /// Leaves `keys` in the slot, replacing any keys not yet taken.
    pub(crate) fn put(&self, keys: SrtpKeys) {
        *self.lock() = Some(keys);
    }

    /// Takes the keys out of the slot, if there are any.
    pub(crate) fn take(&self) -> Option<SrtpKeys> {
        self.lock().take()
    }

    /// Counts an SCTP packet the DTLS instance dropped.
    pub(crate) fn count_sctp_dropped(&self) {
        self.0.sctp_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The SCTP packets the DTLS instance dropped.
    pub(crate) fn sctp_dropped(&self) -> u64 {
        self.0.sctp_dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SrtpKeys>> {
        // A poisoned lock only means a thread panicked holding it; an Option is always whole.
        self.0.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROFILES: [SrtpProfile; 3] = [
        SrtpProfile::AES128_CM_SHA1_80,
        SrtpProfile::AEAD_AES_128_GCM,
        SrtpProfile::AEAD_AES_256_GCM,
    ];

    /// Material whose four parts are filled with 0xC0 + offset (client key), 0x50 + offset
    /// (server key), 0xA0 + offset (client salt), 0x30 + offset (server salt).
    fn material(key_len: usize, salt_len: usize) -> Vec<u8> {
        let part = |base: u8, len: usize| (0..len).map(move |i| base + i as u8);
        part(0xC0, key_len)
            .chain(part(0x50, key_len))
            .chain(part(0xA0, salt_len))
            .chain(part(0x30, salt_len))
            .collect()
    }

    fn filled(base: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| base + i as u8).collect()
    }

    #[test]
    fn splits_each_profile_by_its_lengths() {
        for (profile, k, s, suite) in [
            (
                SrtpProfile::AES128_CM_SHA1_80,
                16,
                14,
                "AES_CM_128_HMAC_SHA1_80",
            ),
            (SrtpProfile::AEAD_AES_128_GCM, 16, 12, "AEAD_AES_128_GCM"),
            (SrtpProfile::AEAD_AES_256_GCM, 32, 12, "AEAD_AES_256_GCM"),
        ] {
            let m = material(k, s);
            assert_eq!(m.len(), profile.keying_material_len());

            let client = SrtpKeys::from_keying_material(&m, profile, true).unwrap();
            assert_eq!(client.profile(), profile);
            assert_eq!(client.crypto_suite(), suite);
            assert_eq!(client.local_key(), filled(0xC0, k), "{profile}");
            assert_eq!(client.remote_key(), filled(0x50, k), "{profile}");
            assert_eq!(client.local_salt(), filled(0xA0, s), "{profile}");
            assert_eq!(client.remote_salt(), filled(0x30, s), "{profile}");

            let server = SrtpKeys::from_keying_material(&m, profile, false).unwrap();
            assert_eq!(server.local_key(), filled(0x50, k), "{profile}");
            assert_eq!(server.remote_key(), filled(0xC0, k), "{profile}");
            assert_eq!(server.local_salt(), filled(0x30, s), "{profile}");
            assert_eq!(server.remote_salt(), filled(0xA0, s), "{profile}");
        }
    }

    #[test]
    fn rejects_material_of_the_wrong_length() {
        for profile in PROFILES {
            let len = profile.keying_material_len();
            for wrong in [0, 1, len - 1, len + 1, 2 * len] {
                assert_eq!(
                    SrtpKeys::from_keying_material(&vec![7; wrong], profile, true),
                    Err(KeysError::WrongLength {
                        profile,
                        expected: len,
                        actual: wrong
                    })
                );
            }
        }
        // The material of one profile is not accepted for another of a different length.
        let gcm128 = material(16, 12);
        assert!(
            SrtpKeys::from_keying_material(&gcm128, SrtpProfile::AEAD_AES_256_GCM, false).is_err()
        );
        assert!(
            SrtpKeys::from_keying_material(&gcm128, SrtpProfile::AES128_CM_SHA1_80, false).is_err()
        );
    }

    #[test]
    fn debug_prints_no_key_bytes() {
        let keys = SrtpKeys::from_keying_material(&[0xAB; 88], SrtpProfile::AEAD_AES_256_GCM, true)
            .unwrap();
        let text = format!("{keys:?} {keys:#?}");
        assert!(text.contains("AEAD_AES_256_GCM"), "{text}");
        assert!(!text.contains("171") && !text.contains("0xab"), "{text}");
        assert!(
            !text.contains("local_key") && !text.contains("salt"),
            "{text}"
        );
    }

    #[test]
    fn slot_clones_share_the_keys_and_take_empties_it() {
        let slot = KeySlot::default();
        let other = slot.clone();
        assert!(slot.take().is_none());
        let keys = SrtpKeys::from_keying_material(&material(16, 12), PROFILES[1], false).unwrap();
        other.put(keys.clone());
        assert_eq!(slot.take(), Some(keys));
        assert!(slot.take().is_none());
        assert!(other.take().is_none());
    }

    #[test]
    fn keys_and_slot_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SrtpKeys>();
        check::<KeySlot>();
    }

    proptest! {
        #[test]
        fn any_material_splits_exactly_when_its_length_fits(
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
            profile in proptest::sample::select(PROFILES.to_vec()),
            local_is_client in any::<bool>(),
        ) {
            let result = SrtpKeys::from_keying_material(&bytes, profile, local_is_client);
            prop_assert_eq!(result.is_ok(), bytes.len() == profile.keying_material_len());
            if let Ok(keys) = result {
                // The four parts, in whichever order, are the material.
                let (client, server) = if local_is_client {
                    ((keys.local_key(), keys.local_salt()), (keys.remote_key(), keys.remote_salt()))
                } else {
                    ((keys.remote_key(), keys.remote_salt()), (keys.local_key(), keys.local_salt()))
                };
                let joined = [client.0, server.0, client.1, server.1].concat();
                prop_assert_eq!(joined, bytes);
            }
        }
    }
}
