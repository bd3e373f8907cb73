//! Routing a datagram to its transport without looking at any other transport.
//!
//! A datagram is routed by its 5-tuple once ICE has validated that path. A STUN binding request
//! from a new path is routed by the local ufrag in its USERNAME; the transport checks the
//! request's MESSAGE-INTEGRITY before the path is learned. A datagram on no known path that
//! arrived at a plain transport's own socket is routed by that local address (the transport
//! decides whether its sender may speak). The maps use SipHash with a random key, since the
//! peer chooses the key.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::ids::TransportId;
use crate::io::Protocol;

/// A network path, seen from the server: protocol, local address, peer address.
pub(crate) type Tuple = (Protocol, SocketAddr, SocketAddr);

/// The routing tables.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_tuple: HashMap<Tuple, TransportId>,
    by_ufrag: HashMap<String, TransportId>,
    /// Plain transports by their own local addresses (UDP).
    by_local: HashMap<SocketAddr, TransportId>,
}

impl Demux {
    pub(crate) fn by_tuple(&self, tuple: &Tuple) -> Option<TransportId> {
        self.by_tuple.get(tuple).copied()
    }

    pub(crate) fn by_ufrag(&self, ufrag: &str) -> Option<TransportId> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// The plain transport whose socket is `local`.
    pub(crate) fn by_local(&self, local: &SocketAddr) -> Option<TransportId> {
        self.by_local.get(local).copied()
    }

    /// Whether a transport's socket is `local`.
    pub(crate) fn has_local(&self, local: &SocketAddr) -> bool {
        self.by_local.contains_key(local)
    }

    pub(crate) fn insert_local(&mut self, local: SocketAddr, transport: TransportId) {
        self.by_local.insert(local, transport);
    }

    pub(crate) fn remove_local(&mut self, local: &SocketAddr) {
        self.by_local.remove(local);
    }

    /// (paths, ufrags, local addresses) routed.
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (
            self.by_tuple.len(),
            self.by_ufrag.len(),
            self.by_local.len(),
        )
    }

    pub(crate) fn insert_tuple(&mut self, tuple: Tuple, transport: TransportId) {
        self.by_tuple.insert(tuple, transport);
    }

    pub(crate) fn remove_tuple(&mut self, tuple: &Tuple) {
        self.by_tuple.remove(tuple);
    }

    pub(crate) fn insert_ufrag(&mut self, ufrag: String, transport: TransportId) {
        self.by_ufrag.insert(ufrag, transport);
    }

    pub(crate) fn remove_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }
}

/// What the first bytes of a datagram say it is (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stun,
    Dtls,
    RtpOrRtcp,
    /// An SCTP packet sent straight over UDP (a pipe transport's data channels): source and
    /// destination port [`SCTP_PORT`](crate::ortc::SCTP_PORT) and room for the common header
    /// and a chunk header. Its first byte (19) is none of the others'.
    Sctp,
    Unknown,
}

pub(crate) fn classify(buf: &[u8]) -> Kind {
    const PORT: [u8; 2] = crate::ortc::SCTP_PORT.to_be_bytes();
    match buf.first() {
        Some(0..=3) if buf.len() >= 20 => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) if buf.len() >= 12 => Kind::RtpOrRtcp,
        _ if buf.len() >= 16 && buf[..2] == PORT && buf[2..4] == PORT => Kind::Sctp,
        _ => Kind::Unknown,
    }
}

/// Whether a DTLS datagram is one or more whole DTLS 1.2 records (RFC 6347 §4.1): each a
/// 13-byte header naming a known content type (change_cipher_spec, alert and handshake at epoch
/// 0; also application_data and heartbeat later), version DTLS 1.0 or 1.2, and a length that
/// fits. The DTLS stack discards anything else whole; transports negotiate DTLS 1.2.
pub(crate) fn is_dtls12_records(mut buf: &[u8]) -> bool {
    if buf.is_empty() {
        return false;
    }
    while !buf.is_empty() {
        let Some(header) = buf.get(..13) else {
            return false;
        };
        let epoch = u16::from_be_bytes([header[3], header[4]]);
        let type_ok = match header[0] {
            20..=22 => true,
            23 | 24 => epoch != 0,
            _ => false,
        };
        let version_ok = header[1] == 0xfe && matches!(header[2], 0xfd | 0xff);
        let len = 13 + usize::from(u16::from_be_bytes([header[11], header[12]]));
        if !type_ok || !version_ok || buf.len() < len {
            return false;
        }
        buf = &buf[len..];
    }
    true
}

/// Whether a datagram of well-formed DTLS records (see [`is_dtls12_records`]) holds
/// application data (what SCTP travels in).
pub(crate) fn has_dtls_application_data(mut buf: &[u8]) -> bool {
    while let Some(header) = buf.get(..13) {
        if header[0] == 23 {
            return true;
        }
        let len = 13 + usize::from(u16::from_be_bytes([header[11], header[12]]));
        buf = buf.get(len..).unwrap_or_default();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(classify(&[0u8; 20]), Kind::Stun);
        assert_eq!(classify(&[0u8; 19]), Kind::Unknown);
        assert_eq!(classify(&[22u8; 30]), Kind::Dtls);
        assert_eq!(classify(&[0x80u8; 12]), Kind::RtpOrRtcp);
        assert_eq!(classify(&[0x80u8; 11]), Kind::Unknown);
        assert_eq!(classify(&[]), Kind::Unknown);
        assert_eq!(classify(&[200u8; 40]), Kind::Unknown);
        let mut sctp = [0u8; 16];
        sctp[..4].copy_from_slice(&[0x13, 0x88, 0x13, 0x88]);
        assert_eq!(classify(&sctp), Kind::Sctp);
        assert_eq!(classify(&sctp[..15]), Kind::Unknown);
        sctp[3] = 0x89;
        assert_eq!(classify(&sctp), Kind::Unknown, "another destination port");
    }

    #[test]
    fn dtls12_record_layer() {
        let record = |ty: u8, epoch: u16, len: u16| {
            let mut r = vec![ty, 0xfe, 0xfd];
            r.extend_from_slice(&epoch.to_be_bytes());
            r.extend_from_slice(&[0; 6]);
            r.extend_from_slice(&len.to_be_bytes());
            r.extend(std::iter::repeat_n(7, usize::from(len)));
            r
        };
        assert!(is_dtls12_records(&record(22, 0, 40)));
        assert!(is_dtls12_records(
            &[record(22, 0, 4), record(20, 0, 1), record(22, 1, 9)].concat()
        ));
        assert!(is_dtls12_records(&record(23, 1, 100)));
        assert!(
            !is_dtls12_records(&record(23, 0, 100)),
            "plaintext application data"
        );
        assert!(
            !is_dtls12_records(&record(26, 1, 10)),
            "unknown content type"
        );
        assert!(!is_dtls12_records(&record(22, 0, 40)[..52]), "truncated");
        assert!(
            !is_dtls12_records(&[record(22, 0, 4), vec![22, 0xfe]].concat()),
            "trailing bytes"
        );
        let mut bad = record(22, 0, 4);
        bad[1] = 0x03;
        assert!(!is_dtls12_records(&bad), "TLS version");
        assert!(!is_dtls12_records(&[]));
    }
}
