//! Hostile datagrams for tests: what an attacker can build without a transport's secrets.

/// A STUN binding request (RFC 5389) as ICE sends it, USERNAME `username` and PRIORITY, whose
/// MESSAGE-INTEGRITY is `mac` instead of the HMAC of the transport's password: it parses, names
/// a real ufrag if `username` does, and never verifies.
pub fn binding_request(username: &str, transaction: [u8; 12], mac: [u8; 20]) -> Vec<u8> {
    let mut attrs = Vec::new();
    let user = username.as_bytes();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    // PRIORITY (ICE): without it, it is no ICE binding request.
    attrs.extend_from_slice(&0x0024u16.to_be_bytes());
    attrs.extend_from_slice(&4u16.to_be_bytes());
    attrs.extend_from_slice(&0x6e00_1eff_u32.to_be_bytes());
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&mac);
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    msg.extend_from_slice(&transaction);
    msg.extend_from_slice(&attrs);
    msg
}

/// A datagram whose first byte is `first` (20-63, DTLS by RFC 7983) that is, by construction,
/// not a sequence of well-formed DTLS 1.2 records (RFC 6347 §4.1), in one of six ways.
pub fn malformed_dtls(first: u8, bytes: &[u8], how: u8) -> Vec<u8> {
    let record = |ty: u8, epoch: u16, body: &[u8]| {
        let mut r = vec![ty, 0xfe, 0xfd];
        r.extend_from_slice(&epoch.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0, 0, 7]);
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    let handshake_type = 20 + first % 3;
    match how {
        // Random bytes, the version never DTLS's.
        0 => {
            let mut b = vec![first];
            b.extend_from_slice(bytes);
            if b.len() > 1 && b[1] == 0xfe {
                b[1] = 0;
            }
            b
        }
        // A header whose length runs past the end.
        1 => {
            let mut b = record(handshake_type, 0, bytes);
            let claimed = bytes.len() as u16 + 1 + u16::from(first);
            b[11..13].copy_from_slice(&claimed.to_be_bytes());
            b
        }
        // A whole record, then part of a header.
        2 => {
            let mut b = record(handshake_type, 1, bytes);
            b.push(22);
            b.extend_from_slice(&bytes[..bytes.len().min(11)]);
            b
        }
        // Application data at epoch 0 (plaintext application data never comes).
        3 => record(23, 0, bytes),
        // A content type DTLS 1.2 does not have.
        4 => record(25 + first % 39, 1, bytes),
        // TLS's version, not DTLS's.
        _ => {
            let mut b = record(handshake_type, 0, bytes);
            b[1..3].copy_from_slice(&[3, 3]);
            b
        }
    }
}

/// Where the Sfu counts a dropped datagram: exactly one of these grows by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// `SfuStats::dropped_oversized`.
    Oversized,
    /// `SfuStats::dropped_malformed`.
    Malformed,
    /// `SfuStats::dropped_unknown_source`.
    UnknownSource,
    /// `SfuStats::dropped_stun_unknown_ufrag`.
    StunUnknownUfrag,
    /// `SfuStats::dropped_stun_unauthenticated`.
    StunUnauthenticated,
    /// `TransportStats::rtp_dropped` of the test's n-th transport: SRTP yielded no packet.
    RtpDropped(usize),
    /// `TransportStats::dtls_dropped` of the test's n-th transport: not well-formed DTLS 1.2
    /// records.
    DtlsDropped(usize),
    /// `TransportStats::rtcp_dropped` of the test's n-th transport: SRTCP that failed
    /// authentication or replay checks, or whose compound is not well-formed.
    RtcpDropped(usize),
}

/// Where a datagram from an address no transport validated is counted: longer than
/// `max_datagram`, else by its first byte (RFC 7983; a STUN header is 20 bytes, an RTP header
/// 12), STUN as naming no transport's ufrag (random bytes never do), DTLS and RTP as from an
/// unknown source, anything else as malformed.
pub fn stranger_counter(bytes: &[u8], max_datagram: usize) -> Counted {
    if bytes.len() > max_datagram {
        return Counted::Oversized;
    }
    match bytes.first() {
        Some(0..=3) if bytes.len() >= 20 => Counted::StunUnknownUfrag,
        Some(20..=63) => Counted::UnknownSource,
        Some(128..=191) if bytes.len() >= 12 => Counted::UnknownSource,
        _ => Counted::Malformed,
    }
}

/// The SRTP context client transport `client`'s endpoint protects what it sends with (the
/// server's receive keys for that transport), for tests that send authenticated SRTP and SRTCP
/// the client's own stack never would. Panics before the transport's DTLS has connected.
pub fn endpoint_srtp(sim: &crate::sim::Sim, client: usize) -> sfu_core::media::srtp::SrtpContext {
    sim.sfu
        .test_only_endpoint_srtp_context(sim.clients[client].id)
        .expect("the transport is DTLS-connected")
}

/// `rtcp` (plaintext compound RTCP) protected as SRTCP with `ctx`'s next SRTCP index.
pub fn srtcp(ctx: &mut sfu_core::media::srtp::SrtpContext, rtcp: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; rtcp.len() + ctx.profile().rtcp_overhead()];
    buf[..rtcp.len()].copy_from_slice(rtcp);
    let len = ctx
        .protect_rtcp(&mut buf, rtcp.len())
        .expect("SRTCP protect");
    buf.truncate(len);
    buf
}

/// `rtp` (a plaintext RTP packet) protected as SRTP with rollover counter `roc`.
pub fn srtp(ctx: &sfu_core::media::srtp::SrtpContext, rtp: &[u8], roc: u32) -> Vec<u8> {
    let mut buf = vec![0; rtp.len() + ctx.profile().rtp_overhead()];
    buf[..rtp.len()].copy_from_slice(rtp);
    let len = ctx
        .protect_rtp(&mut buf, rtp.len(), roc)
        .expect("SRTP protect");
    buf.truncate(len);
    buf
}

/// A plaintext RTP packet: version 2, no extension, `payload` after the 12-byte header.
pub fn rtp_packet(pt: u8, seq: u16, timestamp: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Whether a datagram is SRTP (RTP by its first byte, RFC 7983, and not RTCP by its packet
/// type, RFC 5761).
pub fn is_srtp(d: &[u8]) -> bool {
    matches!(d.first(), Some(128..=191)) && d.len() >= 12 && !sfu_core::media::rtcp::is_rtcp(d)
}
