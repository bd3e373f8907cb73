//! A client's DTLS that can corrupt what it carries: the next application data records it
//! sends hold bytes that no longer make an intact SCTP packet, yet authenticate as DTLS (the
//! corruption happens before encryption), as a hostile or broken endpoint would send them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};
use str0m::crypto::CryptoError;

/// How many of the next application data records to corrupt, and how many were; shared by a
/// client and its DTLS.
#[derive(Debug, Clone, Default)]
pub struct Garble(Arc<[AtomicU32; 2]>);

impl Garble {
    /// Corrupts the next `n` application data records (instead of any still pending).
    pub fn next(&self, n: u32) {
        self.0[0].store(n, Ordering::Relaxed);
    }

    /// How many records were corrupted so far.
    pub fn corrupted(&self) -> u32 {
        self.0[1].load(Ordering::Relaxed)
    }

    /// Whether the record about to be sent is to be corrupted (and counts it).
    fn take(&self) -> bool {
        let take = self.0[0]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if take {
            self.0[1].fetch_add(1, Ordering::Relaxed);
        }
        take
    }
}

/// The Sfu's crypto provider, whose DTLS instances corrupt records when `garble` says so.
pub fn crypto_provider(garble: &Garble) -> Arc<CryptoProvider> {
    let base = sfu_core::crypto_provider();
    // One small provider per client, alive as long as the process (str0m takes `'static`).
    let dtls: &'static GarblingProvider = Box::leak(Box::new(GarblingProvider {
        inner: base.dtls_provider,
        garble: garble.clone(),
    }));
    Arc::new(CryptoProvider {
        dtls_provider: dtls,
        ..*base
    })
}

#[derive(Debug)]
struct GarblingProvider {
    inner: &'static dyn DtlsProvider,
    garble: Garble,
}

impl DtlsProvider for GarblingProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        Ok(Box::new(GarblingInstance {
            inner: self.inner.new_dtls(cert, now, dtls_version, mtu)?,
            garble: self.garble.clone(),
        }))
    }
}

#[derive(Debug)]
struct GarblingInstance {
    inner: Box<dyn DtlsInstance>,
    garble: Garble,
}

impl DtlsInstance for GarblingInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.inner.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        if data.is_empty() || !self.garble.take() {
            return self.inner.send_application_data(data);
        }
        // Flip the bits of one byte past the common header (or of the last byte of a short
        // one): the checksum no longer holds.
        let mut bad = data.to_vec();
        let i = (data.len() / 2).max(12).min(data.len() - 1);
        bad[i] ^= 0xff;
        self.inner.send_application_data(&bad)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}
