//! Targets that drive a whole `Sfu` through its public API: datagrams from anywhere, media from
//! a connected participant, and ORTC parameters from signaling.
//!
//! Each is built once (the fuzzer forks a fresh copy for every input) and then given one input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use sfu_core::framing::FrameDecoder;
use sfu_core::media::srtp::SrtpContext;
use sfu_core::ortc::{
    DtlsParameters, MediaKind, Protocol as OrtcProtocol, RtpCapabilities, RtpCodecCapability,
    RtpParameters,
};
use sfu_core::{
    ConsumeOptions, Input, ListenInfo, Output, ProduceOptions, ProducerId, RouterOptions, Sfu,
    SfuConfig, TransportId, WebRtcTransportOptions,
};
use sfu_tests::forge;
use sfu_tests::sim::{media_codecs, Sim};
use str0m::net::Protocol;

use crate::records;

/// The seed of every Sfu and simulation here, so that ICE credentials and SSRCs are the same in
/// every run and the seed corpus can name them.
pub const SEED: u64 = 1;

/// An Sfu with one router and one WebRTC transport listening on UDP and TCP, fed datagrams from
/// a few peer addresses.
///
/// Each record's control byte: bit 0 TCP (the bytes are a stream cut into RFC 4571 frames) or
/// UDP; bits 1–2 which of four peer addresses; bit 3 "fix up STUN": the bytes, if they start as a
/// binding request, get a valid MESSAGE-INTEGRITY (with the transport's password) and
/// FINGERPRINT, so that the fuzzer passes ICE and reaches DTLS and SRTP; bit 4 a deadline passes
/// after the datagram; bits 5–7 how far the clock moves before it (in steps of 50 ms).
pub struct Datagrams {
    sfu: Sfu,
    now: Instant,
    udp: SocketAddr,
    tcp: SocketAddr,
    ufrag: String,
    password: String,
    streams: Vec<FrameDecoder>,
}

impl Datagrams {
    /// The Sfu, its router and its transport.
    #[allow(clippy::disallowed_methods)] // The Sfu's origin; only durations are added.
    pub fn new() -> Self {
        let now = Instant::now();
        let mut sfu = Sfu::new(SfuConfig::with_seed(SEED), now).expect("sfu");
        let router = sfu
            .create_router(RouterOptions {
                media_codecs: media_codecs(),
            })
            .expect("router");
        let udp: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let tcp: SocketAddr = "127.0.0.1:40001".parse().expect("address");
        let listen = |protocol, local| ListenInfo {
            protocol,
            local,
            announced_address: None,
        };
        let created = sfu
            .create_webrtc_transport(
                router,
                WebRtcTransportOptions {
                    listen_infos: vec![
                        listen(OrtcProtocol::Udp, udp),
                        listen(OrtcProtocol::Tcp, tcp),
                    ],
                    ..Default::default()
                },
            )
            .expect("transport");
        let mut me = Self {
            sfu,
            now,
            udp,
            tcp,
            ufrag: created.parameters.ice_parameters.username_fragment,
            password: created.parameters.ice_parameters.password,
            streams: (0..4).map(|_| FrameDecoder::new(1500)).collect(),
        };
        me.drain();
        me
    }

    /// The transport's ICE username fragment (what a binding request names first).
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// Feeds one input.
    pub fn run(&mut self, data: &[u8]) {
        for (ctl, bytes) in records(data) {
            self.now += Duration::from_millis(50 * u64::from(ctl >> 5));
            let peer = usize::from((ctl >> 1) & 3);
            let source = SocketAddr::from(([127, 0, 0, 2 + peer as u8], 50_000));
            let fixed;
            let bytes = if ctl & 8 != 0 {
                fixed = stun_fix_up(bytes, &self.password);
                &fixed[..]
            } else {
                bytes
            };
            if ctl & 1 == 0 {
                self.receive(OrtcProtocol::Udp, source, bytes);
            } else {
                self.streams[peer].extend(bytes);
                while let Ok(Some(frame)) = self.streams[peer].next_frame() {
                    let frame = frame.to_vec();
                    self.receive(OrtcProtocol::Tcp, source, &frame);
                }
            }
            if ctl & 0x10 != 0 {
                self.sfu.handle_input(Input::Timeout(self.now));
                self.drain();
            }
        }
    }

    /// The Sfu's counters.
    pub fn stats(&self) -> sfu_core::SfuStats {
        self.sfu.stats()
    }

    fn receive(&mut self, proto: OrtcProtocol, source: SocketAddr, contents: &[u8]) {
        let destination = if proto == OrtcProtocol::Udp {
            self.udp
        } else {
            self.tcp
        };
        self.sfu.handle_input(Input::Receive {
            now: self.now,
            proto,
            source,
            destination,
            contents,
        });
        self.drain();
    }

    fn drain(&mut self) {
        drain(&mut self.sfu);
    }
}

impl Default for Datagrams {
    fn default() -> Self {
        Self::new()
    }
}

/// Drains the Sfu's outputs (the rule after every input) and recycles its buffers.
fn drain(sfu: &mut Sfu) {
    loop {
        match sfu.poll_output() {
            Output::Transmit(t) => sfu.recycle(t.contents),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
}

/// `bytes` with a MESSAGE-INTEGRITY keyed by `password` and a FINGERPRINT, if they start as a
/// STUN binding request (RFC 5389 section 15.4 and 15.5); else unchanged. Attributes after the
/// first MESSAGE-INTEGRITY or FINGERPRINT, or after one that does not fit, are dropped.
pub fn stun_fix_up(bytes: &[u8], password: &str) -> Vec<u8> {
    if bytes.len() < 20 || bytes[0..2] != [0, 1] {
        return bytes.to_vec();
    }
    let mut end = 20;
    while let Some(attr) = bytes.get(end..end + 4) {
        let kind = u16::from_be_bytes([attr[0], attr[1]]);
        let len = usize::from(u16::from_be_bytes([attr[2], attr[3]]));
        let next = end + 4 + len.next_multiple_of(4);
        if kind == 0x0008 || kind == 0x8028 || next > bytes.len() {
            break;
        }
        end = next;
    }
    let mut msg = bytes[..end].to_vec();
    let set_len = |msg: &mut Vec<u8>, extra: usize| {
        let len = (msg.len() - 20 + extra) as u16;
        msg[2..4].copy_from_slice(&len.to_be_bytes());
    };
    set_len(&mut msg, 24);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
    let tag = hmac::sign(&key, &msg);
    msg.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    msg.extend_from_slice(tag.as_ref());
    set_len(&mut msg, 8);
    let crc = crc32(&msg) ^ 0x5354_554e;
    msg.extend_from_slice(&[0x80, 0x28, 0x00, 0x04]);
    msg.extend_from_slice(&crc.to_be_bytes());
    msg
}

/// CRC-32 (ISO 3309, as STUN's FINGERPRINT uses it).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// A conference after its handshakes: client 0 (UDP) sends audio (SSRC 1111) and video (SSRC
/// 2222), client 1 (TCP) consumes both. The input speaks as the clients, with their real SRTP
/// keys, so that what the fuzzer writes reaches RTP and RTCP processing behind SRTP.
///
/// Each record's control byte: bit 0 which client; bits 1–2 what the bytes are: 0 plaintext RTP
/// (protected as SRTP; sent raw if it cannot be), 1 plaintext compound RTCP (protected as
/// SRTCP), 2 a raw datagram, 3 time passes (the first byte, in milliseconds, for both sides);
/// bits 3–7 the RTP rollover counter.
pub struct Session {
    sim: Sim,
    srtp: [SrtpContext; 2],
    /// Virtual time the input may still spend.
    budget: Duration,
    consumer_ssrcs: Vec<u32>,
}

/// The SSRCs client 0 sends.
pub const SESSION_SSRCS: [u32; 2] = [1111, 2222];

impl Session {
    /// The conference, run for two seconds.
    pub fn new() -> Self {
        let mut sim = Sim::new(SEED);
        let room = sim.create_router();
        let send = sim.add_transport(room, Protocol::Udp);
        let recv = sim.add_transport(room, Protocol::Tcp);
        let caps = sim.device_caps(room);
        let mut consumer_ssrcs = Vec::new();
        for (kind, ssrc) in [MediaKind::Audio, MediaKind::Video]
            .into_iter()
            .zip(SESSION_SSRCS)
        {
            let producer = sim.produce(send, kind, ssrc);
            let consumed = sim.consume(recv, producer, caps.clone(), false);
            consumer_ssrcs.extend(consumed.parameters.rtp_parameters.encodings[0].ssrc);
        }
        sim.run_for(Duration::from_secs(2));
        let srtp = [
            forge::endpoint_srtp(&sim, send),
            forge::endpoint_srtp(&sim, recv),
        ];
        Self {
            sim,
            srtp,
            budget: Duration::from_secs(2),
            consumer_ssrcs,
        }
    }

    /// The SSRCs the Sfu sends to client 1 (what its RTCP feedback names).
    pub fn consumer_ssrcs(&self) -> &[u32] {
        &self.consumer_ssrcs
    }

    /// Feeds one input.
    pub fn run(&mut self, data: &[u8]) {
        for (ctl, bytes) in records(data) {
            let client = usize::from(ctl & 1);
            let datagram = match (ctl >> 1) & 3 {
                0 => {
                    let roc = u32::from(ctl >> 3);
                    protect(bytes, |buf, len| {
                        self.srtp[client].protect_rtp(buf, len, roc)
                    })
                }
                1 => {
                    let ctx = &mut self.srtp[client];
                    protect(bytes, |buf, len| ctx.protect_rtcp(buf, len))
                }
                2 => bytes.to_vec(),
                _ => {
                    let step =
                        Duration::from_millis(u64::from(bytes.first().copied().unwrap_or(0)));
                    let step = step.min(self.budget);
                    self.budget -= step;
                    self.sim.run_for(step);
                    continue;
                }
            };
            let c = &self.sim.clients[client];
            let proto = if c.remote == self.sim.server_tcp {
                OrtcProtocol::Tcp
            } else {
                OrtcProtocol::Udp
            };
            let source = c.local;
            self.sim.inject(proto, source, &datagram);
        }
        self.sim.run_for(Duration::from_millis(20));
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// `bytes` protected by `f` (given a buffer with room for the overhead and the length), or as
/// they are if they cannot be.
fn protect(
    bytes: &[u8],
    f: impl FnOnce(&mut [u8], usize) -> Result<usize, sfu_core::media::srtp::SrtpError>,
) -> Vec<u8> {
    let mut buf = bytes.to_vec();
    buf.resize(bytes.len() + 64, 0);
    match f(&mut buf, bytes.len()) {
        Ok(len) => {
            buf.truncate(len);
            buf
        }
        Err(_) => bytes.to_vec(),
    }
}

/// ORTC parameters from signaling, as JSON, given to the control API of a conference where
/// client 0 produces audio and video and client 1 may consume: `data[0]` says what the rest is.
///
/// 0–1: `RtpParameters` for `produce` (audio, video); 2–3: `RtpCapabilities` for `consume` of
/// the audio or video producer (and `can_consume`); 4: `DtlsParameters` for
/// `connect_webrtc_transport` of a fresh transport; 5: media codecs for `create_router`.
pub struct Ortc {
    sim: Sim,
    send: TransportId,
    recv: TransportId,
    fresh: TransportId,
    producers: [ProducerId; 2],
    /// What client 1's device can decode.
    caps: RtpCapabilities,
}

impl Ortc {
    /// The conference.
    pub fn new() -> Self {
        let mut sim = Sim::new(SEED);
        let room = sim.create_router();
        let send = sim.add_transport(room, Protocol::Udp);
        let recv = sim.add_transport(room, Protocol::Udp);
        let producers = [
            sim.produce(send, MediaKind::Audio, SESSION_SSRCS[0]),
            sim.produce(send, MediaKind::Video, SESSION_SSRCS[1]),
        ];
        let fresh = sim
            .sfu
            .create_webrtc_transport(
                room,
                WebRtcTransportOptions {
                    listen_infos: sim.listen_infos(),
                    ..Default::default()
                },
            )
            .expect("transport")
            .id;
        sim.flush();
        Self {
            send: sim.clients[send].id,
            recv: sim.clients[recv].id,
            fresh,
            producers,
            caps: sim.device_caps(room),
            sim,
        }
    }

    /// Feeds one input.
    pub fn run(&mut self, data: &[u8]) {
        let Some((&select, json)) = data.split_first() else {
            return;
        };
        let sfu = &mut self.sim.sfu;
        match select % 6 {
            0 | 1 => {
                let Ok(rtp_parameters) = serde_json::from_slice::<RtpParameters>(json) else {
                    return;
                };
                let kind = [MediaKind::Audio, MediaKind::Video][usize::from(select % 2)];
                let options = ProduceOptions {
                    kind,
                    rtp_parameters,
                    paused: select & 0x80 != 0,
                };
                if let Ok(producer) = sfu.produce(self.send, options) {
                    self.sim.flush();
                    let _ = self.sim.sfu.consume(
                        self.recv,
                        ConsumeOptions {
                            producer,
                            rtp_capabilities: self.caps.clone(),
                            paused: false,
                        },
                    );
                    self.sim.run_for(Duration::from_millis(50));
                    let _ = self.sim.sfu.close_producer(producer);
                }
            }
            2 | 3 => {
                let Ok(rtp_capabilities) = serde_json::from_slice::<RtpCapabilities>(json) else {
                    return;
                };
                let producer = self.producers[usize::from(select % 2)];
                let _ = sfu.can_consume(producer, &rtp_capabilities);
                if let Ok(c) = sfu.consume(
                    self.recv,
                    ConsumeOptions {
                        producer,
                        rtp_capabilities,
                        paused: false,
                    },
                ) {
                    self.sim.run_for(Duration::from_millis(50));
                    let _ = self.sim.sfu.close_consumer(c.id);
                }
            }
            4 => {
                let Ok(dtls) = serde_json::from_slice::<DtlsParameters>(json) else {
                    return;
                };
                let _ = sfu.connect_webrtc_transport(self.fresh, &dtls);
            }
            _ => {
                let Ok(media_codecs) = serde_json::from_slice::<Vec<RtpCodecCapability>>(json)
                else {
                    return;
                };
                if let Ok(router) = sfu.create_router(RouterOptions { media_codecs }) {
                    let _ = sfu.router_rtp_capabilities(router);
                    let _ = sfu.close_router(router);
                }
            }
        }
        self.sim.flush();
    }
}

impl Default for Ortc {
    fn default() -> Self {
        Self::new()
    }
}
