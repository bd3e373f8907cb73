//! The `plain` target: plain transports in a running room, fed datagrams in the clear. Without
//! SRTP nothing authenticates a packet, so every byte the fuzzer writes reaches RTP and RTCP
//! parsing, forwarding, retransmission and reports, the way a hostile ffmpeg-like peer could.

use std::net::SocketAddr;
use std::time::Duration;

use sfu_core::ortc::{MediaKind, SrtpCryptoSuite};
use sfu_tests::sim::Sim;

use crate::records;
use crate::sfu::SEED;

/// A room with three plain transports, run for a second before the input:
/// - the publisher's (comedia, no SRTP), producing VP8 on SSRC 1111 and Opus on 2222, which it
///   has learned from the publisher's address;
/// - a viewer's (connected, no SRTP, RTCP on its own port), consuming both;
/// - a second publisher's (comedia, SRTP), that has learned nothing yet.
///
/// Each record's control byte: bits 0–1 the destination (the publisher's socket, the viewer's
/// RTP socket, its RTCP socket, the SRTP transport's socket); bit 2 the datagram comes from the
/// address the destination expects (the publisher's, or the viewer's), else from a stranger
/// (bit 3 picks which); bits 4–7 how long the room runs afterwards (in steps of 10 ms).
pub struct Plain {
    sim: Sim,
    /// Destinations, and the address each one expects datagrams from.
    paths: [(SocketAddr, SocketAddr); 4],
    consumer_ssrcs: Vec<u32>,
}

/// The SSRCs the publisher sends.
pub const PLAIN_SSRCS: [u32; 2] = [1111, 2222];

impl Plain {
    /// The room, run for a second.
    pub fn new() -> Self {
        let mut sim = Sim::new(SEED);
        let room = sim.create_router();
        let (publisher, _) = sim.add_plain_transport(room, None, |o| o.comedia = true);
        let video = sim.plain_produce(publisher, MediaKind::Video, PLAIN_SSRCS[0]);
        let audio = sim.plain_produce(publisher, MediaKind::Audio, PLAIN_SSRCS[1]);
        let (viewer, _) = sim.add_plain_transport(room, None, |o| o.rtcp_mux = false);
        sim.connect_plain(viewer, false).expect("connect");
        let caps = sim.device_caps(room);
        let consumer_ssrcs = [
            sim.plain_consume(viewer, video, caps.clone()),
            sim.plain_consume(viewer, audio, caps),
        ]
        .iter()
        .filter_map(|c| c.parameters.rtp_parameters.encodings[0].ssrc)
        .collect();
        let (secure, _) = sim.add_plain_transport(room, Some(SrtpCryptoSuite::default()), |o| {
            o.comedia = true;
            o.enable_srtp = true;
        });
        sim.connect_plain(secure, true).expect("connect");
        sim.run_for(Duration::from_secs(1));
        let p = &sim.plain;
        let viewer_rtcp = (
            p[viewer].server_rtcp.expect("an RTCP socket"),
            p[viewer].rtcp_local.expect("an RTCP address"),
        );
        let paths = [
            (p[publisher].server, p[publisher].local),
            (p[viewer].server, p[viewer].local),
            viewer_rtcp,
            (p[secure].server, p[secure].local),
        ];
        Self {
            sim,
            paths,
            consumer_ssrcs,
        }
    }

    /// The SSRCs of the viewer's consumers (video, audio), which its RTCP names.
    pub fn consumer_ssrcs(&self) -> &[u32] {
        &self.consumer_ssrcs
    }

    /// Feeds one input.
    pub fn run(&mut self, data: &[u8]) {
        for (ctl, bytes) in records(data) {
            let (destination, expected) = self.paths[usize::from(ctl & 3)];
            let source = if ctl & 4 != 0 {
                expected
            } else {
                SocketAddr::from(([127, 0, 9, 1 + ((ctl >> 3) & 1)], 7000))
            };
            self.sim.inject_at(source, destination, bytes);
            let steps = u64::from(ctl >> 4);
            if steps > 0 {
                self.sim.run_for(Duration::from_millis(10 * steps));
            }
        }
    }
}

impl Default for Plain {
    fn default() -> Self {
        Self::new()
    }
}
