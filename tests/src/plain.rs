//! A plain RTP endpoint for simulations (what ffmpeg or GStreamer is to a plain transport):
//! it sends its sources' packets as plain RTP or SRTP to the transport's address, and keeps
//! what the server sends it (RTP taken apart, RTCP compounds), answering PLI with key frames.
//!
//! With SRTP, what it sends is protected by str0m's own SRTP (an implementation independent
//! of the server's) for the suites str0m has (AES_CM_128_HMAC_SHA1_80 and both AES-GCM);
//! AES_CM_128_HMAC_SHA1_32, and the unprotecting of what it receives, use the server's
//! media-plane SRTP, which its unit tests check against the RFC vectors and str0m's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use sfu_core::media::srtp::{RtcpReplay, RtpReplay, SrtpContext};
use sfu_core::ortc::{SrtpCryptoSuite, SrtpParameters};
use sfu_core::TransportId;
use str0m::_internal_test_exports::TestSrtp;
use str0m::crypto::dtls::{KeyingMaterial, SrtpProfile as Str0mProfile};
use str0m::rtp::{ExtensionMap, RtpHeader};

use crate::media::{OutPacket, Source};

/// One RTP packet the endpoint received (after SRTP).
#[derive(Debug, Clone)]
pub struct PlainReceived {
    /// When it arrived.
    pub at: Instant,
    /// The local address it arrived at.
    pub local: SocketAddr,
    /// SSRC.
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: Vec<u8>,
}

/// One RTCP compound the endpoint received (after SRTCP).
#[derive(Debug, Clone)]
pub struct PlainRtcp {
    /// When it arrived.
    pub at: Instant,
    /// The local address it arrived at.
    pub local: SocketAddr,
    /// The compound's packets: (packet type, feedback format or report count, bytes).
    pub packets: Vec<(u8, u8, Vec<u8>)>,
}

/// How the endpoint protects what it sends.
enum Protect {
    Clear,
    Str0m(Box<TestSrtp>),
    Ours(Box<SrtpContext>),
}

/// A plain RTP endpoint.
pub struct PlainClient {
    /// The server's transport.
    pub transport: TransportId,
    /// Where it sends from and receives RTP (and muxed RTCP).
    pub local: SocketAddr,
    /// Where it receives RTCP when not muxed.
    pub rtcp_local: Option<SocketAddr>,
    /// The transport's RTP address.
    pub server: SocketAddr,
    /// The transport's RTCP address when not muxed.
    pub server_rtcp: Option<SocketAddr>,
    /// The sources it sends, each with its payload type.
    pub sources: Vec<(Source, u8)>,
    /// RTP received.
    pub received: Vec<PlainReceived>,
    /// RTCP received.
    pub rtcp: Vec<PlainRtcp>,
    /// Datagrams that did not unprotect or parse.
    pub undecryptable: u64,
    /// Its own SRTP keys (what it sends with), for `connect`.
    pub srtp_parameters: Option<SrtpParameters>,
    protect: Protect,
    unprotect: Option<SrtpContext>,
    replays: HashMap<u32, RtpReplay>,
    rtcp_replay: RtcpReplay,
    exts: ExtensionMap,
    /// Datagrams to send: (source, destination, bytes).
    pub outbox: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainClient")
            .field("local", &self.local)
            .field("received", &self.received.len())
            .finish_non_exhaustive()
    }
}

impl PlainClient {
    /// An endpoint at `local` for `transport` at `server`. `server_keys`: the transport's own
    /// SRTP parameters (what it sends with); `own`: the suite and master key and salt this
    /// endpoint sends with.
    pub fn new(
        transport: TransportId,
        local: SocketAddr,
        server: SocketAddr,
        server_keys: Option<&SrtpParameters>,
        own: Option<(SrtpCryptoSuite, Vec<u8>)>,
    ) -> Self {
        let unprotect = server_keys.map(|p| {
            let bytes = data_encoding::BASE64
                .decode(p.key_base64.as_bytes())
                .expect("server key is base64");
            let profile = p.crypto_suite.profile();
            let (key, salt) = bytes.split_at(profile.master_key_len());
            SrtpContext::new(profile, key, salt).expect("server key")
        });
        let (protect, srtp_parameters) = match own {
            None => (Protect::Clear, None),
            Some((suite, bytes)) => {
                let profile = suite.profile();
                let (key, salt) = bytes.split_at(profile.master_key_len());
                let str0m_profile = match suite {
                    SrtpCryptoSuite::AesCm128HmacSha1_80 => Some(Str0mProfile::AES128_CM_SHA1_80),
                    SrtpCryptoSuite::AeadAes128Gcm => Some(Str0mProfile::AEAD_AES_128_GCM),
                    SrtpCryptoSuite::AeadAes256Gcm => Some(Str0mProfile::AEAD_AES_256_GCM),
                    _ => None,
                };
                let protect = match str0m_profile {
                    Some(p) => {
                        // DTLS keying material whose client half is this key and salt: the
                        // half str0m's test context writes with.
                        let zeros_key = vec![0u8; key.len()];
                        let zeros_salt = vec![0u8; salt.len()];
                        let material = [key, &zeros_key, salt, &zeros_salt].concat();
                        let provider = sfu_core::crypto_provider();
                        Protect::Str0m(Box::new(TestSrtp::new(
                            &provider,
                            p,
                            &KeyingMaterial::new(&material),
                        )))
                    }
                    None => {
                        Protect::Ours(Box::new(SrtpContext::new(profile, key, salt).expect("key")))
                    }
                };
                let params = SrtpParameters {
                    crypto_suite: suite,
                    key_base64: data_encoding::BASE64.encode(&bytes),
                };
                (protect, Some(params))
            }
        };
        Self {
            transport,
            local,
            rtcp_local: None,
            server,
            server_rtcp: None,
            sources: Vec::new(),
            received: Vec::new(),
            rtcp: Vec::new(),
            undecryptable: 0,
            srtp_parameters,
            protect,
            unprotect,
            replays: HashMap::new(),
            rtcp_replay: RtcpReplay::default(),
            exts: ExtensionMap::empty(),
            outbox: Vec::new(),
        }
    }

    /// When the next source is due.
    pub fn next_at(&self) -> Option<Instant> {
        self.sources.iter().map(|(s, _)| s.next_at()).min()
    }

    /// Sends one packet of payload type `pt` on `ssrc`.
    pub fn send(&mut self, ssrc: u32, pt: u8, p: &OutPacket) {
        let datagram = match &mut self.protect {
            Protect::Str0m(srtp) => {
                let header = RtpHeader {
                    marker: p.marker,
                    payload_type: pt.into(),
                    sequence_number: p.seq as u16,
                    timestamp: p.timestamp,
                    ssrc: ssrc.into(),
                    ..RtpHeader::default()
                };
                srtp.protect(header, p.seq, &p.payload, &self.exts)
            }
            Protect::Clear | Protect::Ours(_) => {
                let mut buf = rtp(ssrc, pt, p);
                if let Protect::Ours(ctx) = &self.protect {
                    let len = buf.len();
                    buf.resize(len + 16, 0);
                    let n = ctx
                        .protect_rtp(&mut buf, len, (p.seq >> 16) as u32)
                        .expect("protect");
                    buf.truncate(n);
                }
                buf
            }
        };
        self.outbox.push((self.local, self.server, datagram));
    }

    /// Sends one RTCP compound (protected with the server's profile rules when SRTP is on:
    /// only the suites whose context is the server's media plane's can send RTCP).
    pub fn send_rtcp(&mut self, compound: &[u8]) {
        let mut buf = compound.to_vec();
        match &mut self.protect {
            Protect::Clear => {}
            Protect::Ours(ctx) => {
                let len = buf.len();
                buf.resize(len + 32, 0);
                let n = ctx.protect_rtcp(&mut buf, len).expect("protect rtcp");
                buf.truncate(n);
            }
            Protect::Str0m(_) => panic!("str0m's test context protects RTP only"),
        }
        let (from, to) = match (self.rtcp_local, self.server_rtcp) {
            (Some(from), Some(to)) => (from, to),
            _ => (self.local, self.server),
        };
        self.outbox.push((from, to, buf));
    }

    /// A datagram from the server.
    pub fn receive(&mut self, at: Instant, local: SocketAddr, contents: &[u8]) {
        let mut buf = contents.to_vec();
        let is_rtcp = buf.len() >= 8 && (192..=223).contains(&buf[1]);
        if is_rtcp {
            if let Some(ctx) = &self.unprotect {
                match ctx.unprotect_rtcp(&mut buf, &mut self.rtcp_replay) {
                    Ok(n) => buf.truncate(n),
                    Err(_) => {
                        self.undecryptable += 1;
                        return;
                    }
                }
            }
            let packets = split_rtcp(&buf);
            for (pt, fmt, bytes) in &packets {
                // PLI: the next frame of that source is a key frame.
                if *pt == 206 && *fmt == 1 && bytes.len() >= 12 {
                    let media = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                    for (s, _) in &mut self.sources {
                        if s.ssrc == media {
                            s.request_key_frame();
                        }
                    }
                }
            }
            self.rtcp.push(PlainRtcp { at, local, packets });
            return;
        }
        if let Some(ctx) = &self.unprotect {
            let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            let replay = self.replays.entry(ssrc).or_default();
            match ctx.unprotect_rtp(&mut buf, replay) {
                Ok(n) => buf.truncate(n),
                Err(_) => {
                    self.undecryptable += 1;
                    return;
                }
            }
        }
        match parse_rtp(&buf, at, local) {
            Some(r) => self.received.push(r),
            None => self.undecryptable += 1,
        }
    }
}

/// A plain RTP packet: no extensions, no CSRCs.
pub fn rtp(ssrc: u32, pt: u8, p: &OutPacket) -> Vec<u8> {
    let mut buf = vec![0x80, pt | if p.marker { 0x80 } else { 0 }];
    buf.extend_from_slice(&(p.seq as u16).to_be_bytes());
    buf.extend_from_slice(&p.timestamp.to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
    buf.extend_from_slice(&p.payload);
    buf
}

/// An RTCP NACK (RFC 4585 generic NACK) from `sender` for `seqs` of `media`.
pub fn nack(sender: u32, media: u32, seqs: &[u16]) -> Vec<u8> {
    let mut fci = Vec::new();
    for &seq in seqs {
        fci.extend_from_slice(&seq.to_be_bytes());
        fci.extend_from_slice(&[0, 0]);
    }
    feedback(205, 1, sender, media, &fci)
}

/// An RTCP PLI from `sender` for `media`.
pub fn pli(sender: u32, media: u32) -> Vec<u8> {
    feedback(206, 1, sender, media, &[])
}

fn feedback(pt: u8, fmt: u8, sender: u32, media: u32, fci: &[u8]) -> Vec<u8> {
    let words = (8 + fci.len()) / 4;
    let mut buf = vec![0x80 | fmt, pt];
    buf.extend_from_slice(&(words as u16).to_be_bytes());
    buf.extend_from_slice(&sender.to_be_bytes());
    buf.extend_from_slice(&media.to_be_bytes());
    buf.extend_from_slice(fci);
    buf
}

/// Reads an RTP packet's fields (RFC 3550 5.1: CSRCs and an extension block skipped).
pub fn parse_rtp(buf: &[u8], at: Instant, local: SocketAddr) -> Option<PlainReceived> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(buf[0] & 0x0f);
    let mut start = 12 + 4 * cc;
    if buf[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*buf.get(start + 2)?, *buf.get(start + 3)?]);
        start += 4 + 4 * usize::from(words);
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*buf.last()?))?;
    }
    Some(PlainReceived {
        at,
        local,
        ssrc: u32::from_be_bytes(buf[8..12].try_into().ok()?),
        payload_type: buf[1] & 0x7f,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes(buf[4..8].try_into().ok()?),
        marker: buf[1] & 0x80 != 0,
        payload: buf.get(start..end)?.to_vec(),
    })
}

/// The packets of an RTCP compound: (packet type, count or format, bytes).
pub fn split_rtcp(mut buf: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = 4 * (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1);
        let Some(packet) = buf.get(..len) else {
            break;
        };
        out.push((packet[1], packet[0] & 0x1f, packet.to_vec()));
        buf = &buf[len..];
    }
    out
}
