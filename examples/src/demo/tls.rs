//! The demo server's TLS settings: a certificate and key from PEM files, or a self-signed
//! certificate made at start-up, so a browser on another machine gets the secure page it needs
//! before it lets the page use the camera.

use std::path::Path;
use std::sync::Arc;

use futures_rustls::rustls::crypto::aws_lc_rs;
use futures_rustls::rustls::pki_types::pem::PemObject;
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use futures_rustls::rustls::ServerConfig;

/// A TLS server configuration and the certificate it presents.
#[derive(Clone)]
pub struct TlsIdentity {
    /// What the HTTP server hands to rustls.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate presented to clients (DER).
    pub certificate: CertificateDer<'static>,
}

impl TlsIdentity {
    /// Loads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1) from
    /// PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read a certificate from {}: {e}", cert.display()))?;
        let Some(leaf) = chain.first().cloned() else {
            return Err(format!("{} holds no certificate", cert.display()));
        };
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
        Self::new(chain, key, leaf)
    }

    /// Makes a self-signed certificate for `names` (host names or ip addresses) and a fresh
    /// key. Browsers warn once about it; after that the page is a secure context.
    pub fn self_signed(names: &[String]) -> Result<Self, String> {
        let failed = |e: rcgen::Error| format!("cannot make a self-signed certificate: {e}");
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sfu demo (self-signed)");
        let signing_key = rcgen::KeyPair::generate().map_err(failed)?;
        let leaf = params
            .self_signed(&signing_key)
            .map_err(failed)?
            .der()
            .clone();
        let key = PrivatePkcs8KeyDer::from(signing_key.serialize_der()).into();
        Self::new(vec![leaf.clone()], key, leaf)
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        leaf: CertificateDer<'static>,
    ) -> Result<Self, String> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up: {e}"))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
        // HTTP/1.1 only: the server speaks nothing else.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            certificate: leaf,
        })
    }
}
