//! The DTLS provider of every transport: one shared DTLS configuration, and each transport's
//! SRTP keys taken out of its handshake.
//!
//! str0m's stock crypto provider builds a fresh DTLS configuration for each transport, and
//! building one runs the DTLS library's crypto self-tests (key agreement over three curves,
//! signature checks): about a millisecond per transport, most of the cost of creating one. The
//! configuration holds no per-connection state, so this provider builds it once per MTU and
//! hands every new DTLS instance a shared reference. Everything else is str0m's default
//! (aws-lc-rs) provider.
//!
//! The provider also hands each transport its SRTP keys (RFC 5764 section 4.2). str0m creates a
//! transport's DTLS instance synchronously inside `RtcConfig::build`, so the transport runs
//! that call inside [`with_key_slot`], which leaves its [`KeySlot`] in a thread-local for the
//! next instance this provider makes on this thread. The instance takes it and, when the
//! handshake exports keying material, splits it into [`SrtpKeys`] and puts them in the slot,
//! before str0m reports the connection. Every output still goes to str0m unchanged. An
//! instance made with no slot pending (a str0m peer elsewhere in the process using
//! [`crypto_provider`]) keeps no keys.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};
use str0m::crypto::CryptoError;
use tracing::warn;

use super::keys::{KeySlot, SrtpKeys};

thread_local! {
    /// The slot the next DTLS instance made on this thread reports its SRTP keys to.
    static NEXT_KEY_SLOT: Cell<Option<KeySlot>> = const { Cell::new(None) };
}

/// Runs `build` (a call that makes one DTLS instance through [`crypto_provider`], such as
/// `RtcConfig::build`) so that the first instance made on this thread during the call puts its
/// SRTP keys in `slot`. The slot is pending only during the call: afterwards, whether or not
/// an instance took it, and even if `build` panics, the thread has whatever slot was pending
/// before (none, unless calls are nested).
pub(crate) fn with_key_slot<T>(slot: &KeySlot, build: impl FnOnce() -> T) -> T {
    /// Restores the slot pending before the call when dropped.
    struct Restore(Option<KeySlot>);
    impl Drop for Restore {
        fn drop(&mut self) {
            NEXT_KEY_SLOT.set(self.0.take());
        }
    }
    let _restore = Restore(NEXT_KEY_SLOT.replace(Some(slot.clone())));
    build()
}

/// The str0m crypto provider every transport of every [`Sfu`](crate::Sfu) uses: str0m's own
/// (aws-lc-rs), except that DTLS configurations are built once per MTU and shared by every
/// connection of the process, instead of once per connection (which costs about a millisecond).
///
/// Other str0m peers in the same process (test clients, load generators) can use it too:
/// pass it to `RtcConfig::set_crypto_provider`.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    static SHARED: OnceLock<SharedConfigDtls> = OnceLock::new();
    let dtls = SHARED.get_or_init(|| SharedConfigDtls {
        configs: Mutex::new(HashMap::new()),
    });
    Arc::new(CryptoProvider {
        dtls_provider: dtls,
        ..str0m::crypto::from_feature_flags()
    })
}

/// Makes DTLS instances from configurations built once per MTU.
#[derive(Debug)]
struct SharedConfigDtls {
    configs: Mutex<HashMap<Option<usize>, Arc<dimpl::Config>>>,
}

impl SharedConfigDtls {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        // A poisoned lock only means another thread panicked while inserting; the map is fine.
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = configs.get(&mtu) {
            return Ok(config.clone());
        }
        // ICE verifies return routability before DTLS, so server cookies are redundant.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?,
        );
        configs.insert(mtu, config.clone());
        Ok(config)
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )))
            }
        };
        Ok(Box::new(Instance {
            dtls,
            keys: NEXT_KEY_SLOT.take(),
        }))
    }
}

/// A dimpl DTLS connection as str0m's DTLS instance, reporting its SRTP keys to a slot.
struct Instance {
    dtls: dimpl::Dtls,
    /// Where to put the SRTP keys, if the instance was made for a transport.
    keys: Option<KeySlot>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instance")
    }
}

impl Instance {
    /// Splits exported keying material into the slot, from this side's point of view.
    fn observe(&self, output: &DtlsOutput<'_>) {
        let (DtlsOutput::KeyingMaterial(material, profile), Some(slot)) = (output, &self.keys)
        else {
            return;
        };
        match SrtpKeys::from_keying_material(material, *profile, self.dtls.is_active()) {
            Ok(keys) => slot.put(keys),
            Err(e) => warn!(error = %e, "DTLS keying material unusable for SRTP"),
        }
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let output = self.dtls.poll_output(buf);
        self.observe(&output);
        match output {
            // Authentic DTLS whose content is no intact SCTP packet: counted, and handed on
            // empty, which the SCTP stack ignores.
            DtlsOutput::ApplicationData(data) if !sctp_packet_intact(data) => {
                if let Some(slot) = &self.keys {
                    slot.count_sctp_dropped();
                }
                DtlsOutput::ApplicationData(&[])
            }
            other => other,
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.dtls.close()
    }
}

/// Whether `data` is an SCTP packet (RFC 9260 section 3) whose CRC-32C checksum holds: the
/// checksum over the whole packet with its own field zeroed, sent least significant byte
/// first (Appendix A).
pub(crate) fn sctp_packet_intact(data: &[u8]) -> bool {
    const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    let (Some(head), Some(&[a, b, c, d]), Some(rest)) =
        (data.get(..8), data.get(8..12), data.get(12..))
    else {
        return false;
    };
    let mut digest = CRC32C.digest();
    digest.update(head);
    digest.update(&[0; 4]);
    digest.update(rest);
    u32::from_le_bytes([a, b, c, d]) == digest.finalize()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use str0m::crypto::dtls::SrtpProfile;

    use super::*;

    #[test]
    fn sctp_checksum_follows_rfc_3720s_crc32c_vector() {
        // RFC 3720 B.4: the CRC-32C of 32 zero bytes is 0x8A9136AA. A packet of 32 zero bytes
        // but for that checksum (least significant byte first) in its field is intact.
        let mut packet = [0u8; 32];
        packet[8..12].copy_from_slice(&[0xaa, 0x36, 0x91, 0x8a]);
        assert!(sctp_packet_intact(&packet));
        for i in (0..32).filter(|i| !(8..12).contains(i)) {
            let mut bad = packet;
            bad[i] ^= 0x40;
            assert!(!sctp_packet_intact(&bad), "byte {i} flipped");
        }
        packet[8..12].copy_from_slice(&[0x8a, 0x91, 0x36, 0xaa]);
        assert!(!sctp_packet_intact(&packet), "big-endian checksum");
        assert!(!sctp_packet_intact(&[]));
        assert!(!sctp_packet_intact(&[0; 11]));
    }

    /// One side of a handshake: its instance and what it has seen.
    struct Side {
        dtls: Box<dyn DtlsInstance>,
        connected: bool,
        profile: Option<SrtpProfile>,
        material: Vec<u8>,
        timeout: Option<Instant>,
    }

    impl Side {
        fn new(dtls: Box<dyn DtlsInstance>, active: bool) -> Self {
            let mut side = Self {
                dtls,
                connected: false,
                profile: None,
                material: Vec::new(),
                timeout: None,
            };
            side.dtls.set_active(active);
            side
        }

        /// Drains the instance's outputs; returns the datagrams it sent.
        fn drain(&mut self) -> Vec<Vec<u8>> {
            let mut sent = Vec::new();
            let mut buf = vec![0; 2048];
            loop {
                match self.dtls.poll_output(&mut buf) {
                    DtlsOutput::Packet(p) => sent.push(p.to_vec()),
                    DtlsOutput::Timeout(at) => {
                        self.timeout = Some(at);
                        return sent;
                    }
                    DtlsOutput::Connected => self.connected = true,
                    DtlsOutput::KeyingMaterial(material, profile) => {
                        self.profile = Some(profile);
                        self.material = material.to_vec();
                    }
                    _ => {}
                }
            }
        }
    }

    fn instance(cert: &DtlsCert, now: Instant) -> Box<dyn DtlsInstance> {
        crypto_provider()
            .dtls_provider
            .new_dtls(cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap()
    }

    /// Runs a handshake on a virtual clock until both sides have their keying material.
    fn handshake(client: &mut Side, server: &mut Side, start: Instant) {
        let mut now = start;
        for _ in 0..200 {
            let to_server = client.drain();
            let to_client = server.drain();
            if client.profile.is_some() && server.profile.is_some() {
                assert!(client.connected && server.connected);
                return;
            }
            if to_server.is_empty() && to_client.is_empty() {
                // Nothing in flight: advance to the earliest timer.
                now = client.timeout.min(server.timeout).unwrap().max(now);
                if now > start + Duration::from_secs(60) {
                    break;
                }
                client.dtls.handle_timeout(now).unwrap();
                server.dtls.handle_timeout(now).unwrap();
                continue;
            }
            for p in to_server {
                server.dtls.handle_packet(&p).unwrap();
            }
            for p in to_client {
                client.dtls.handle_packet(&p).unwrap();
            }
        }
        panic!("the handshake made no progress");
    }

    fn cert() -> DtlsCert {
        crypto_provider()
            .dtls_provider
            .generate_certificate()
            .unwrap()
    }

    #[test]
    fn each_side_gets_the_keys_the_other_protects_with() {
        #[allow(clippy::disallowed_methods)] // Tests start the virtual clock anywhere.
        let start = Instant::now();
        let (client_slot, server_slot) = (KeySlot::default(), KeySlot::default());
        let client_cert = cert();
        let server_cert = cert();
        let client = with_key_slot(&client_slot, || instance(&client_cert, start));
        let server = with_key_slot(&server_slot, || instance(&server_cert, start));
        let (mut client, mut server) = (Side::new(client, true), Side::new(server, false));
        handshake(&mut client, &mut server, start);

        // The outputs still reached the caller.
        let profile = server.profile.unwrap();
        assert_eq!(client.profile, Some(profile));
        // dimpl as server prefers AES-256-GCM.
        assert_eq!(profile, SrtpProfile::AEAD_AES_256_GCM);

        let c = client_slot.take().expect("client keys");
        let s = server_slot.take().expect("server keys");
        assert_eq!((c.profile(), s.profile()), (profile, profile));
        assert_eq!(c.crypto_suite(), "AEAD_AES_256_GCM");
        assert_eq!((c.local_key().len(), c.local_salt().len()), (32, 12));
        assert_eq!((s.remote_key().len(), s.remote_salt().len()), (32, 12));
        assert_eq!(c.local_key(), s.remote_key());
        assert_eq!(c.local_salt(), s.remote_salt());
        assert_eq!(c.remote_key(), s.local_key());
        assert_eq!(c.remote_salt(), s.local_salt());
        assert_ne!(c.local_key(), c.remote_key());
        assert_ne!(c.local_salt(), c.remote_salt());
        // The client writes with the first key and the first salt (RFC 5764 section 4.2).
        let m = &client.material;
        assert_eq!(*m, server.material);
        assert_eq!(c.local_key(), &m[..32]);
        assert_eq!(s.local_key(), &m[32..64]);
        assert_eq!(c.local_salt(), &m[64..76]);
        assert_eq!(s.local_salt(), &m[76..]);
    }

    #[test]
    fn an_instance_made_with_no_slot_pending_keeps_no_keys() {
        #[allow(clippy::disallowed_methods)] // Tests start the virtual clock anywhere.
        let start = Instant::now();
        let cert = cert();
        // A slot that was pending during a call that made no instance is not left behind.
        let unused = KeySlot::default();
        with_key_slot(&unused, || ());
        let mut client = Side::new(instance(&cert, start), true);
        let mut server = Side::new(instance(&cert, start), false);
        handshake(&mut client, &mut server, start);
        assert!(client.connected && server.connected);
        assert!(client.profile.is_some() && server.profile.is_some());
        assert!(unused.take().is_none());
    }

    #[test]
    fn only_the_first_instance_of_a_call_takes_the_slot() {
        #[allow(clippy::disallowed_methods)] // Tests start the virtual clock anywhere.
        let start = Instant::now();
        let cert = cert();
        let outer = KeySlot::default();
        let (first, second) =
            with_key_slot(&outer, || (instance(&cert, start), instance(&cert, start)));
        // The second instance of the call has no slot: run it as the client against the first.
        let mut client = Side::new(second, true);
        let mut server = Side::new(first, false);
        handshake(&mut client, &mut server, start);
        let keys = outer.take().expect("the first instance's keys");
        assert!(outer.take().is_none());
        // The first instance is the server: it writes with the second key.
        assert_eq!(keys.local_key(), &server.material[32..64]);
        assert!(NEXT_KEY_SLOT.take().is_none());
    }

    #[test]
    fn nested_calls_restore_the_outer_slot() {
        let (outer, inner) = (KeySlot::default(), KeySlot::default());
        with_key_slot(&outer, || {
            with_key_slot(&inner, || ());
            let pending = NEXT_KEY_SLOT.take().expect("outer slot pending again");
            let keys = crate::transport::webrtc::keys::SrtpKeys::from_keying_material(
                &[1; 60],
                SrtpProfile::AES128_CM_SHA1_80,
                true,
            )
            .unwrap();
            pending.put(keys);
        });
        assert!(outer.take().is_some());
        assert!(inner.take().is_none());
        assert!(NEXT_KEY_SLOT.take().is_none());
    }
}
