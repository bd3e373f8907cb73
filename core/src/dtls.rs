//! One DTLS configuration shared by every transport.
//!
//! str0m's stock crypto provider builds a fresh DTLS configuration for each transport, and
//! building one runs the DTLS library's crypto self-tests (key agreement over three curves,
//! signature checks): about a millisecond per transport, most of the cost of creating one. The
//! configuration holds no per-connection state, so this provider builds it once per MTU and
//! hands every new DTLS instance a shared reference. Everything else is str0m's default
//! (aws-lc-rs) provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};
use str0m::crypto::CryptoError;

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
        Ok(Box::new(Instance(dtls)))
    }
}

/// A dimpl DTLS connection as str0m's DTLS instance.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instance")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}
