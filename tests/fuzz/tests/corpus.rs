//! The seed corpus and every input the fuzzer ever found to crash a target, replayed through
//! the targets (`tests/fuzz/seeds/TARGET/*`, `tests/fuzz/crashes/TARGET/*`); and the generator
//! of the seed corpus (`cargo test -p sfu-fuzz --test corpus -- --ignored write_seeds`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sfu_core::fuzzing::TwccRecorder;
use sfu_core::media::rtcp::{self, ReportBlock};
use sfu_core::media::srtp::{SrtpContext, SrtpProfile};
use sfu_core::ortc::{header_extension_id, MediaKind};
use sfu_fuzz::plain::{Plain, PLAIN_SSRCS};
use sfu_fuzz::sfu::{Datagrams, Session, SESSION_SSRCS};
use sfu_fuzz::{record, Target, TARGETS};
use sfu_tests::client::{CLIENT_OPUS_PT, CLIENT_VP8_PT};
use sfu_tests::forge;
use sfu_tests::plain::{nack, pli};
use sfu_tests::sim::PLAIN_VP8_PT;
use sfu_tests::sim::{media_codecs, Sim};
use str0m::net::Protocol;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("directory entry").path())
        .map(|p| {
            let bytes = fs::read(&p).expect("readable");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_seeds_and_runs_them() {
    for name in TARGETS {
        let seeds = files("seeds", name);
        assert!(seeds.len() >= 3, "{name}: {} seeds", seeds.len());
        for (path, bytes) in seeds {
            // A fresh target per input, as the fuzzer runs the stateful ones.
            let mut target = Target::new(name).expect("a target");
            eprintln!("{}", path.display());
            target.run(&bytes);
        }
    }
}

#[test]
fn crashes_found_by_the_fuzzer_stay_fixed() {
    for name in TARGETS {
        for (path, bytes) in files("crashes", name) {
            let mut target = Target::new(name).expect("a target");
            eprintln!("{}", path.display());
            target.run(&bytes);
        }
    }
}

#[test]
fn the_stun_fix_up_makes_a_binding_request_the_transport_accepts() {
    let mut t = Datagrams::new();
    let username = format!("{}:peer", t.ufrag());
    let request = forge::binding_request(&username, [7; 12], [0; 20]);
    t.run(&record(0x08, &request));
    let fixed = t.stats();
    assert_eq!(fixed.datagrams_received, 1);
    assert_eq!(fixed.dropped_stun_unauthenticated, 0);
    assert_eq!(fixed.dropped_malformed, 0);
    t.run(&record(0x00, &request));
    assert_eq!(
        t.stats().dropped_stun_unauthenticated,
        1,
        "without the fix-up"
    );
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let d = dir("seeds", target);
    fs::create_dir_all(&d).expect("seed directory");
    fs::write(d.join(name), bytes).expect("seed written");
}

/// An RTP packet with a one-byte extension block of `(id, value)` pairs.
fn rtp_with_extensions(
    pt: u8,
    seq: u16,
    ssrc: u32,
    ext: &[(u8, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut block = Vec::new();
    for (id, value) in ext {
        block.push(id << 4 | (value.len() as u8 - 1));
        block.extend_from_slice(value);
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let mut p = forge::rtp_packet(pt, seq, 1000 + u32::from(seq) * 960, ssrc, &[]);
    p[0] |= 0x10;
    p.extend_from_slice(&0xbedeu16.to_be_bytes());
    p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
    p.extend_from_slice(&block);
    p.extend_from_slice(payload);
    p
}

fn rtcp_seeds(sender: u32, media: u32) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let block = ReportBlock {
        ssrc: media,
        fraction_lost: 3,
        cumulative_lost: 5,
        extended_highest_seq: 70_000,
        jitter: 40,
        last_sr: 0x1234_5678,
        delay_since_last_sr: 6553,
    };
    let mut add = |name, len: Result<usize, rtcp::RtcpError>, buf: &[u8]| {
        out.push((name, buf[..len.expect("RTCP written")].to_vec()));
    };
    let n = rtcp::write_sender_report(
        &mut buf,
        sender,
        0xe000_0000_0000_0000,
        9000,
        10,
        1000,
        &[block],
    );
    add("sr", n, &buf);
    let n = rtcp::write_receiver_report(&mut buf, sender, &[block, block]);
    add("rr", n, &buf);
    let n = rtcp::write_sdes_cname(&mut buf, sender, "fuzz");
    add("sdes", n, &buf);
    let n = rtcp::write_nack(&mut buf, sender, media, &[100, 101, 103, 140, 200]);
    add("nack", n, &buf);
    let n = rtcp::write_pli(&mut buf, sender, media);
    add("pli", n, &buf);
    let n = rtcp::write_fir(&mut buf, sender, media, 4);
    add("fir", n, &buf);
    let n = rtcp::write_remb(&mut buf, sender, 300_000, &[media]);
    add("remb", n, &buf);
    let n = rtcp::write_bye(&mut buf, &[sender]);
    add("bye", n, &buf);
    #[allow(clippy::disallowed_methods)] // Only an origin.
    let t0 = Instant::now();
    let mut twcc = TwccRecorder::default();
    for (i, seq) in [1u16, 2, 3, 5, 4, 9, 300].into_iter().enumerate() {
        twcc.record(seq, t0 + Duration::from_millis(7 * i as u64));
    }
    let n = twcc
        .poll_feedback(t0 + Duration::from_millis(100), sender, media, &mut buf)
        .ok_or(rtcp::RtcpError::TooShort);
    add("twcc", n, &buf);
    let compound = [out[1].1.clone(), out[2].1.clone(), out[3].1.clone()].concat();
    out.push(("compound", compound));
    out
}

/// Writes the seed corpus. Run when the targets' input formats change.
#[test]
#[ignore = "writes tests/fuzz/seeds"]
fn write_seeds() {
    let mid = header_extension_id("urn:ietf:params:rtp-hdrext:sdes:mid").expect("mid id");
    let twcc_id = header_extension_id(
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    )
    .expect("twcc id");
    let level = header_extension_id("urn:ietf:params:rtp-hdrext:ssrc-audio-level").expect("id");
    let capture = sfu_tests::pcap::read_udp_packets(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/vp8-opus.pcap"),
    )
    .expect("capture");
    let audio = rtp_with_extensions(
        CLIENT_OPUS_PT,
        7,
        SESSION_SSRCS[0],
        &[(mid, b"0"), (twcc_id, &[0, 9]), (level, &[0x90])],
        &[0xfc; 40],
    );
    let video = rtp_with_extensions(
        CLIENT_VP8_PT,
        8,
        SESSION_SSRCS[1],
        &[(mid, b"1"), (twcc_id, &[0, 10])],
        &[0x10, 0, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7],
    );
    let mut captured = capture.iter().map(|c| c.payload.clone());
    let (vp8, opus) = (
        captured.next().expect("packet"),
        captured.nth(3).expect("packet"),
    );

    // rtp
    for (name, p) in [
        ("vp8", &vp8),
        ("opus", &opus),
        ("audio-ext", &audio),
        ("video-ext", &video),
    ] {
        write("rtp", name, p);
    }
    let mut csrc = forge::rtp_packet(96, 1, 2, 3, &[1, 2, 3, 4, 0, 0, 3]);
    csrc[0] |= 0x22; // two CSRCs, padding
    csrc.splice(12..12, [0, 0, 0, 9, 0, 0, 0, 10]);
    write("rtp", "csrc-padding", &csrc);

    // rtcp
    for (name, p) in rtcp_seeds(5, 6) {
        write("rtcp", name, &p);
    }

    // srtp: each profile and mode; the unprotect modes get packets the target's key protects.
    for (i, profile) in SrtpProfile::ALL.into_iter().enumerate() {
        let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
        let salt: Vec<u8> = (0..profile.master_salt_len() as u8).map(|b| !b).collect();
        let mut ctx = SrtpContext::new(profile, &key, &salt).expect("context");
        let protected = forge::srtp(&ctx, &audio, 0);
        let protected_rtcp = forge::srtcp(&mut ctx, &rtcp_seeds(5, 6)[3].1);
        let select = i as u8;
        write(
            "srtp",
            &format!("{i}-unprotect-rtp"),
            &[&[select][..], &protected].concat(),
        );
        write(
            "srtp",
            &format!("{i}-unprotect-rtcp"),
            &[&[select | 4][..], &protected_rtcp].concat(),
        );
        write(
            "srtp",
            &format!("{i}-rtp"),
            &[&[select | 8][..], &video].concat(),
        );
        write(
            "srtp",
            &format!("{i}-rtcp"),
            &[&[select | 12][..], &rtcp_seeds(5, 6)[0].1].concat(),
        );
    }

    // framing
    let stream: Vec<u8> = [&audio[..], &video, &[]]
        .iter()
        .flat_map(|p| [&(p.len() as u16).to_be_bytes()[..], p].concat())
        .collect();
    write("framing", "whole", &[&[63][..], &stream].concat());
    write("framing", "bytewise", &[&[0][..], &stream].concat());
    write("framing", "too-long", &[3, 0xff, 0xff, 1, 2]);

    // demux
    let request = forge::binding_request("server:client", [1; 12], [0; 20]);
    write("demux", "stun", &request);
    write(
        "demux",
        "dtls",
        &forge::malformed_dtls(22, &[1; 30], 2)[..43],
    );
    write("demux", "rtp", &audio);
    write("demux", "rtcp", &rtcp_seeds(5, 6)[0].1);

    // twcc
    let mut arrivals = Vec::new();
    for (seq, step) in [
        (1u16, 100u16),
        (2, 100),
        (4, 200),
        (3, 0x8000 | 50),
        (400, 10),
        (5, 0x8000),
    ] {
        arrivals.extend_from_slice(&seq.to_be_bytes());
        arrivals.extend_from_slice(&step.to_be_bytes());
    }
    write("twcc", "reordered", &arrivals);
    write(
        "twcc",
        "wrap",
        &[0xff, 0xff, 0, 1, 0, 0, 0x80, 1, 0, 1, 0, 1],
    );
    write("twcc", "one", &[0, 1, 0, 1]);

    // datagrams: a binding request with the transport's ufrag (fixed up), a DTLS record after
    // it from the same peer, RTP and RTCP from it, the same over TCP, garbage.
    let t = Datagrams::new();
    let request = forge::binding_request(&format!("{}:peer", t.ufrag()), [2; 12], [0; 20]);
    let framed = |p: &[u8]| [&(p.len() as u16).to_be_bytes()[..], p].concat();
    let dtls = forge::malformed_dtls(22, &[1; 40], 3);
    write(
        "datagrams",
        "udp-ice",
        &[
            record(0x08, &request),
            record(0x30, &dtls),
            record(0x00, &audio),
            record(0x10, &rtcp_seeds(5, 6)[0].1),
        ]
        .concat(),
    );
    write(
        "datagrams",
        "tcp-ice",
        &[
            record(0x09, &framed(&request)),
            record(0x01, &framed(&dtls)),
        ]
        .concat(),
    );
    write(
        "datagrams",
        "stranger",
        &[record(0x02, &audio), record(0xf4, &[0xff; 30])].concat(),
    );

    // session: media and feedback from the participants.
    let s = Session::new();
    let consumer = s.consumer_ssrcs()[0];
    let feedback = rtcp_seeds(77, consumer);
    write(
        "session",
        "media",
        &[
            record(0x00, &audio),
            record(0x00, &video),
            record(0x06, &[100]),
        ]
        .concat(),
    );
    write(
        "session",
        "sender-report",
        &[record(0x02, &rtcp_seeds(SESSION_SSRCS[0], 1)[0].1)].concat(),
    );
    let fb: Vec<u8> = feedback.iter().flat_map(|(_, p)| record(0x03, p)).collect();
    write("session", "feedback", &[fb, record(0x07, &[50])].concat());
    write(
        "session",
        "raw",
        &[record(0x04, &audio), record(0x05, &[0x80; 40])].concat(),
    );

    // ortc: real parameters, as signaling carries them.
    let mut sim = Sim::new(sfu_fuzz::sfu::SEED);
    let room = sim.create_router();
    let c = sim.add_transport(room, Protocol::Udp);
    let audio_params = sim.clients[c].prepare_produce(MediaKind::Audio, 5);
    let video_params = sim.clients[c].prepare_produce(MediaKind::Video, 7);
    let json = |v: &dyn erased::Json| v.json();
    write(
        "ortc",
        "produce-audio",
        &[&[0][..], &json(&audio_params)].concat(),
    );
    write(
        "ortc",
        "produce-video",
        &[&[1][..], &json(&video_params)].concat(),
    );
    write(
        "ortc",
        "consume",
        &[&[3][..], &json(&sim.device_caps(room))].concat(),
    );
    write(
        "ortc",
        "connect",
        &[&[4][..], &json(&sim.clients[c].dtls_parameters())].concat(),
    );
    write(
        "ortc",
        "router",
        &[&[5][..], &json(&media_codecs())].concat(),
    );

    // signaling: a peer's requests as the demo page sends them; `$0` is the id of the latest
    // created object.
    let caps = String::from_utf8(json(&sim.device_caps(room))).expect("UTF-8");
    let produce = String::from_utf8(json(&audio_params)).expect("UTF-8");
    let dtls = String::from_utf8(json(&sim.clients[c].dtls_parameters())).expect("UTF-8");
    let script = format!(
        r#"{{"id":1,"method":"getRouterRtpCapabilities"}}
{{"id":2,"method":"join","data":{{"rtpCapabilities":{caps}}}}}
>{{"id":1,"method":"join","data":{{"rtpCapabilities":{caps}}}}}
{{"id":3,"method":"createWebRtcTransport","data":{{"direction":"send"}}}}
{{"id":4,"method":"connectWebRtcTransport","data":{{"transportId":"$0","dtlsParameters":{dtls}}}}}
{{"id":5,"method":"produce","data":{{"transportId":"$0","kind":"audio","rtpParameters":{produce}}}}}
{{"id":6,"method":"pauseProducer","data":{{"producerId":"$0"}}}}
>{{"id":2,"method":"createWebRtcTransport","data":{{"direction":"recv","forceTcp":true}}}}
"#
    );
    write("signaling", "publish", script.as_bytes());
    write(
        "signaling",
        "malformed",
        b"{\"id\":1,\"method\":7}\n[1,2]\n{\"id\":2,\"method\":\"produce\",\"data\":{}}\n",
    );
    let data = format!(
        r#"{{"id":1,"method":"join","data":{{"rtpCapabilities":{caps}}}}}
>{{"id":1,"method":"join","data":{{"rtpCapabilities":{caps}}}}}
>{{"id":2,"method":"createWebRtcTransport","data":{{"direction":"recv"}}}}
{{"id":2,"method":"createWebRtcTransport","data":{{"direction":"send"}}}}
{{"id":3,"method":"produceData","data":{{"transportId":"$0","sctpStreamParameters":{{"streamId":0,"ordered":true}},"label":"chat","protocol":""}}}}
>{{"id":3,"method":"consumeData","data":{{"dataProducerId":"$0"}}}}
"#
    );
    write("signaling", "data", data.as_bytes());
    // plain
    let plain = Plain::new();
    let vp8_key = [0x10, 0, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5, 6, 7];
    let publisher_rtp = |seq: u16| {
        forge::rtp_packet(
            PLAIN_VP8_PT,
            5000 + seq,
            90 * u32::from(seq),
            PLAIN_SSRCS[0],
            &vp8_key,
        )
    };
    write(
        "plain",
        "rtp",
        &[
            record(0x14, &publisher_rtp(1)),
            record(0x14, &publisher_rtp(3)),
        ]
        .concat(),
    );
    write("plain", "stranger", &record(0x10, &publisher_rtp(2)));
    let [video, audio] = [plain.consumer_ssrcs()[0], plain.consumer_ssrcs()[1]];
    write(
        "plain",
        "viewer-rtcp",
        &[
            record(0x16, &nack(1, video, &[1, 2, 3])),
            record(0x16, &pli(1, video)),
            record(0x05, &nack(1, audio, &[7])),
        ]
        .concat(),
    );
    write(
        "plain",
        "srtp",
        &record(0x17, &[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 4, 87, 9, 9]),
    );
    write("signaling", "restart", b"{\"id\":1,\"method\":\"createWebRtcTransport\",\"data\":{\"direction\":\"recv\",\"dtlsRole\":\"client\"}}\n{\"id\":2,\"method\":\"restartIce\",\"data\":{\"transportId\":\"$0\"}}\n");
}

mod erased {
    /// Serializes to JSON bytes.
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("serializable")
        }
    }
}
