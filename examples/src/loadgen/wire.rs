//! What the generator reads from the clear parts of datagrams: the RTP header of SRTP packets
//! (RFC 3711 leaves it unencrypted) and the DTLS 1.2 ServerHello (sent in the clear), which
//! names the DTLS version, cipher suite and the negotiated SRTP protection profile.

use serde::Serialize;

/// The clear header of an SRTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// SSRC.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// Header length (fixed header, CSRCs, extension): the encrypted payload starts here.
    pub header_len: usize,
}

/// Whether a datagram is RTP (not RTCP, STUN or DTLS), as RFC 7983 and RFC 5761 demultiplex.
pub fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && (128..=191).contains(&d[0]) && !(64..=95).contains(&(d[1] & 0x7f))
}

/// Parses the clear RTP header of an (S)RTP datagram. Padding is not looked at: with SRTP the
/// padding count sits in the encrypted part.
pub fn rtp_header(d: &[u8]) -> Option<RtpHeader> {
    if !is_rtp(d) {
        return None;
    }
    let seq = u16::from_be_bytes([d[2], d[3]]);
    let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    let mut header_len = 12 + 4 * usize::from(d[0] & 0x0f);
    if d[0] & 0x10 != 0 {
        let at = header_len + 2;
        let words = u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]);
        header_len += 4 + 4 * usize::from(words);
    }
    (header_len <= d.len()).then_some(RtpHeader {
        ssrc,
        seq,
        header_len,
    })
}

/// What the DTLS handshake negotiated, as seen on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Security {
    /// "DTLS 1.2" or "DTLS 1.3".
    pub dtls_version: Option<String>,
    /// The TLS cipher suite the server chose, by IANA name where known.
    pub cipher_suite: Option<String>,
    /// The SRTP protection profile of the `use_srtp` extension.
    pub srtp_profile: Option<String>,
    /// How this was learned.
    pub source: String,
}

/// Looks for a DTLS ServerHello in a datagram and reads what it negotiated.
pub fn sniff_server_hello(d: &[u8]) -> Option<Security> {
    let mut at = 0;
    while at + 13 <= d.len() {
        let content_type = d[at];
        let len = usize::from(u16::from_be_bytes([d[at + 11], d[at + 12]]));
        let record = d.get(at + 13..at + 13 + len)?;
        if content_type == 22 {
            if let Some(s) = server_hello(record) {
                return Some(s);
            }
        }
        at += 13 + len;
    }
    None
}

fn server_hello(h: &[u8]) -> Option<Security> {
    // Handshake header: type, length(3), message_seq(2), fragment_offset(3), fragment_len(3).
    if *h.first()? != 2 {
        return None;
    }
    let body = h.get(12..)?;
    let version = u16::from_be_bytes([*body.first()?, *body.get(1)?]);
    let mut at = 2 + 32;
    let sid_len = usize::from(*body.get(at)?);
    at += 1 + sid_len;
    let suite = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
    at += 3; // suite and compression method
    let ext_len = usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]));
    at += 2;
    let exts = body.get(at..at + ext_len)?;
    let mut dtls_version = match version {
        0xfefd => "DTLS 1.2",
        0xfeff => "DTLS 1.0",
        _ => "unknown",
    }
    .to_string();
    let mut srtp_profile = None;
    let mut i = 0;
    while i + 4 <= exts.len() {
        let ty = u16::from_be_bytes([exts[i], exts[i + 1]]);
        let len = usize::from(u16::from_be_bytes([exts[i + 2], exts[i + 3]]));
        let data = exts.get(i + 4..i + 4 + len)?;
        match ty {
            0x000e if data.len() >= 4 => {
                let profile = u16::from_be_bytes([data[2], data[3]]);
                srtp_profile = Some(srtp_profile_name(profile));
            }
            0x002b if data.len() >= 2 && u16::from_be_bytes([data[0], data[1]]) == 0xfefc => {
                dtls_version = "DTLS 1.3".into();
            }
            _ => {}
        }
        i += 4 + len;
    }
    Some(Security {
        dtls_version: Some(dtls_version),
        cipher_suite: Some(cipher_suite_name(suite)),
        srtp_profile,
        source: "read from the server's DTLS ServerHello on the wire (the core does not \
                 expose them)"
            .into(),
    })
}

fn srtp_profile_name(p: u16) -> String {
    match p {
        0x0001 => "SRTP_AES128_CM_HMAC_SHA1_80".into(),
        0x0002 => "SRTP_AES128_CM_HMAC_SHA1_32".into(),
        0x0007 => "SRTP_AEAD_AES_128_GCM".into(),
        0x0008 => "SRTP_AEAD_AES_256_GCM".into(),
        other => format!("0x{other:04x}"),
    }
}

fn cipher_suite_name(s: u16) -> String {
    match s {
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into(),
        other => format!("0x{other:04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_header_with_extension() {
        let mut p = vec![0x90, 96, 0x12, 0x34, 0, 0, 0, 9, 0, 0, 0, 7];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        p.extend_from_slice(b"payload");
        let h = rtp_header(&p).unwrap();
        assert_eq!((h.ssrc, h.seq, h.header_len), (7, 0x1234, 20));
        // RTCP sender report is not RTP.
        assert!(rtp_header(&[0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn server_hello_with_use_srtp() {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[0; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0xc0, 0x2b, 0]);
        let ext = [0x00, 0x0e, 0, 5, 0, 2, 0, 7, 0];
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![
            2,
            0,
            0,
            body.len() as u8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            body.len() as u8,
        ];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        let s = sniff_server_hello(&rec).unwrap();
        assert_eq!(s.dtls_version.as_deref(), Some("DTLS 1.2"));
        assert_eq!(s.srtp_profile.as_deref(), Some("SRTP_AEAD_AES_128_GCM"));
        assert_eq!(
            s.cipher_suite.as_deref(),
            Some("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
        );
    }
}
