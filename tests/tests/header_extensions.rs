//! Acceptance: a producer that sends the dependency descriptor, abs-capture-time,
//! playout-delay and video orientation: its consumers receive each extension's value
//! unchanged, under the ids their consumer parameters give, and only the extensions their
//! parameters list.
//!
//! The clients send and read these values as raw bytes (str0m writes and parses the extension
//! block, in the two-byte form when a value is longer than 16 bytes).
//!
//! A publisher may number its extensions differently from the router (a browser numbers them in
//! the order its offer met them): the transport reads mid, rid, audio level and the
//! transport-wide sequence number under the publisher's ids, and consumers get the values
//! under theirs.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sfu_core::ortc::{ext_uri, MediaKind, RtpCapabilities};
use sfu_core::{AudioLevelObserverOptions, Error, Event, ProduceOptions};
use sfu_tests::client::{ExtensionIds, RawExtension, RawExtensions};
use sfu_tests::netsim::seed_from_env;
use sfu_tests::sim::Sim;
use str0m::net::Protocol;

/// Writes bit fields most significant bit first (the dependency descriptor's `f(n)`).
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    fn put(&mut self, value: u32, bits: usize) -> &mut Self {
        for i in (0..bits).rev() {
            if self.len % 8 == 0 {
                self.bytes.push(0);
            }
            if value >> i & 1 == 1 {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> (self.len % 8);
            }
            self.len += 1;
        }
        self
    }
}

/// The dependency descriptor of an L1T3 key frame with its template dependency structure
/// attached (AV1 RTP specification, appendix A): 5 templates over 3 decode targets, one
/// chain, a 1280x720 render resolution. 20 bytes, too long for the one-byte header form.
fn key_frame_descriptor() -> Vec<u8> {
    let mut b = Bits::default();
    // Mandatory fields: start and end of frame, template 0, frame number 1.
    b.put(1, 1).put(1, 1).put(0, 6).put(1, 16);
    // Structure present; no active decode targets, custom dtis, fdiffs or chains.
    b.put(1, 1).put(0, 1).put(0, 1).put(0, 1).put(0, 1);
    // Template id offset 0, 3 decode targets.
    b.put(0, 6).put(2, 5);
    // Template layers: T0, T0, T1, T2, T2 (next_layer_idc: same, next temporal, next
    // temporal, same, end).
    for idc in [0, 1, 1, 0, 3] {
        b.put(idc, 2);
    }
    // Decode target indications per template (3 required, 2 switch, 1 discardable, 0 not
    // present).
    for dtis in [[2, 2, 2], [3, 3, 3], [0, 3, 3], [0, 0, 1], [0, 0, 1]] {
        for dti in dtis {
            b.put(dti, 2);
        }
    }
    // Frame diffs per template: none, 4, 2, 1, 1.
    for fdiffs in [&[][..], &[4], &[2], &[1], &[1]] {
        for &fdiff in fdiffs {
            b.put(1, 1).put(fdiff - 1, 4);
        }
        b.put(0, 1);
    }
    // One chain (ns(4) = 1 in two bits) protecting every decode target (ns(1): no bits), and
    // each template's chain frame diff.
    b.put(1, 2);
    for chain_fdiff in [0, 4, 2, 1, 3] {
        b.put(chain_fdiff, 4);
    }
    // Render resolution 1280x720.
    b.put(1, 1).put(1279, 16).put(719, 16);
    b.bytes
}

/// The dependency descriptor of a delta frame (mandatory fields only): template 3, frame
/// number 2.
const DELTA_FRAME_DESCRIPTOR: [u8; 3] = [0b1100_0011, 0x00, 0x02];

/// A capture time (NTP 64-bit) with, for 16 bytes, an estimated clock offset.
fn abs_capture_time(with_offset: bool) -> Vec<u8> {
    let mut v = 0xE8F1_2A3B_8000_0000_u64.to_be_bytes().to_vec();
    if with_offset {
        v.extend_from_slice(&(-0x0000_0001_2000_0000_i64).to_be_bytes());
    }
    v
}

fn raw(values: &[(&'static str, &[u8])]) -> RawExtensions {
    RawExtensions(
        values
            .iter()
            .map(|&(uri, value)| RawExtension {
                uri,
                id: 0,
                value: value.to_vec(),
            })
            .collect(),
    )
}

/// What a consumer should receive of `sent`: the extensions its parameters list, under their
/// ids there, in id order (as the client reads them).
fn expected(sent: &RawExtensions, ids: &HashMap<String, u8>) -> RawExtensions {
    let mut v: Vec<RawExtension> = sent
        .0
        .iter()
        .filter_map(|e| {
            let id = *ids.get(e.uri)?;
            Some(RawExtension { id, ..e.clone() })
        })
        .collect();
    v.sort_by_key(|e| e.id);
    RawExtensions(v)
}

/// The extension values each media packet of consumer SSRC `ssrc` on client `client` carried,
/// from `from` on, in id order (an empty set for a packet that carried none of them).
fn received(sim: &Sim, client: usize, ssrc: u32, from: Instant) -> Vec<RawExtensions> {
    let c = &sim.clients[client];
    let by_seq: HashMap<u16, &RawExtensions> = c
        .received_extensions
        .iter()
        .filter(|e| e.ssrc == ssrc)
        .map(|e| (e.seq, &e.values))
        .collect();
    c.received
        .iter()
        .filter(|p| p.ssrc == ssrc && p.at >= from && !p.payload.is_empty())
        .map(|p| {
            // The order of the elements in a packet carries no meaning (RFC 8285).
            let mut values = by_seq
                .get(&p.seq)
                .map_or_else(RawExtensions::default, |v| (*v).clone());
            values.0.sort_by_key(|e| e.id);
            values
        })
        .collect()
}

/// `got` is `first` for a while, then `second` for the rest, each at least `min` times.
fn assert_phases(got: &[RawExtensions], first: &RawExtensions, second: &RawExtensions, min: usize) {
    let n_first = got.iter().take_while(|v| *v == first).count();
    let rest = &got[n_first..];
    if let Some((i, bad)) = rest.iter().enumerate().find(|(_, v)| *v != second) {
        panic!(
            "packet {} carried {bad:?}, expected {first:?} then {second:?}",
            n_first + i
        );
    }
    assert!(n_first >= min, "{n_first} packets with {first:?}");
    assert!(rest.len() >= min, "{} packets with {second:?}", rest.len());
}

/// The ids a consumer's parameters give each extension URI.
fn ids_of(consumed: &sfu_core::Consumed) -> HashMap<String, u8> {
    consumed
        .parameters
        .rtp_parameters
        .header_extensions
        .iter()
        .map(|e| (e.uri.clone(), e.id))
        .collect()
}

fn without(mut caps: RtpCapabilities, uris: &[&str]) -> RtpCapabilities {
    caps.header_extensions
        .retain(|e| !uris.iter().any(|u| u.eq_ignore_ascii_case(&e.uri)));
    caps
}

#[test]
fn consumers_receive_extension_values_unchanged() {
    values_reach_consumers("header_extensions", ExtensionIds::Router);
}

/// The publisher sends every extension under an id the router uses for another one.
#[test]
fn values_reach_consumers_from_a_publisher_with_its_own_ids() {
    values_reach_consumers("header_extensions_mirrored", ExtensionIds::Mirrored);
}

fn values_reach_consumers(name: &str, publisher_ids: ExtensionIds) {
    let mut sim = Sim::new(seed_from_env(name));
    let room = sim.create_router();
    sim.extension_ids = publisher_ids;
    let send = sim.add_transport(room, Protocol::Udp);
    sim.extension_ids = ExtensionIds::Router;
    let full = sim.add_transport(room, Protocol::Udp);
    let partial = sim.add_transport(room, Protocol::Udp);
    let video = sim.produce(send, MediaKind::Video, 0x5151_0001);
    let audio = sim.produce(send, MediaKind::Audio, 0x5151_0003);
    let mid = |sim: &Sim, producer| {
        sim.publications
            .iter()
            .find(|p| p.producer == producer)
            .map(|p| p.mid.clone())
            .unwrap()
    };
    let (video_mid, audio_mid) = (mid(&sim, video), mid(&sim, audio));

    let key_frame_dd = key_frame_descriptor();
    assert_eq!(key_frame_dd.len(), 20);
    let (act8, act16) = (abs_capture_time(false), abs_capture_time(true));
    // Phase one: a long dependency descriptor (two-byte form), 16-byte capture time.
    let video_one = raw(&[
        (ext_uri::DEPENDENCY_DESCRIPTOR, &key_frame_dd),
        (ext_uri::ABS_CAPTURE_TIME, &act16),
        (ext_uri::PLAYOUT_DELAY, &[0x00, 0x00, 0x64]), // min 0, max 1 s
        (ext_uri::VIDEO_ORIENTATION, &[0x0B]),         // camera back, flipped, 270 degrees
    ]);
    // Phase two: a short dependency descriptor (one-byte form), 8-byte capture time.
    let video_two = raw(&[
        (ext_uri::DEPENDENCY_DESCRIPTOR, &DELTA_FRAME_DESCRIPTOR),
        (ext_uri::ABS_CAPTURE_TIME, &act8),
        (ext_uri::PLAYOUT_DELAY, &[0x01, 0x40, 0x28]), // min 200 ms, max 400 ms
        (ext_uri::VIDEO_ORIENTATION, &[0x01]),         // 90 degrees
    ]);
    let audio_one = raw(&[
        (ext_uri::ABS_CAPTURE_TIME, &act16),
        (ext_uri::PLAYOUT_DELAY, &[0x00, 0x00, 0x0A]),
    ]);
    let audio_two = raw(&[
        (ext_uri::ABS_CAPTURE_TIME, &act8),
        (ext_uri::PLAYOUT_DELAY, &[0x00, 0x50, 0x0A]),
    ]);
    sim.clients[send].set_send_extensions(&video_mid, Some(video_one.clone()));
    sim.clients[send].set_send_extensions(&audio_mid, Some(audio_one.clone()));

    // One receiver takes every extension; the other's device lacks the dependency descriptor
    // and playout delay, so its consumers are sent neither.
    let caps = sim.device_caps(room);
    let partial_caps = without(
        caps.clone(),
        &[ext_uri::DEPENDENCY_DESCRIPTOR, ext_uri::PLAYOUT_DELAY],
    );
    let consumers = [
        (full, video, caps.clone(), &video_one, &video_two),
        (full, audio, caps.clone(), &audio_one, &audio_two),
        (partial, video, partial_caps.clone(), &video_one, &video_two),
        (partial, audio, partial_caps, &audio_one, &audio_two),
    ]
    .map(|(client, producer, caps, one, two)| {
        let consumed = sim.consume(client, producer, caps, false);
        (client, consumed, one, two)
    });
    for (client, consumed, _, _) in &consumers {
        let ids = ids_of(consumed);
        let kind = consumed.parameters.kind;
        let has = |uri: &str| ids.contains_key(uri);
        assert!(has(ext_uri::ABS_CAPTURE_TIME), "{kind:?}");
        assert_eq!(has(ext_uri::PLAYOUT_DELAY), *client == full, "{kind:?}");
        assert_eq!(
            has(ext_uri::DEPENDENCY_DESCRIPTOR),
            *client == full && kind == MediaKind::Video
        );
        assert_eq!(
            has(ext_uri::VIDEO_ORIENTATION),
            kind == MediaKind::Video,
            "{kind:?}"
        );
    }

    sim.run_for(Duration::from_millis(500)); // ICE, DTLS, first packets
    let start = sim.now;
    sim.run_for(Duration::from_millis(1000));
    sim.clients[send].set_send_extensions(&video_mid, Some(video_two.clone()));
    sim.clients[send].set_send_extensions(&audio_mid, Some(audio_two.clone()));
    sim.run_for(Duration::from_millis(1000));

    for (client, consumed, one, two) in &consumers {
        let ids = ids_of(consumed);
        let ssrc = consumed.parameters.rtp_parameters.encodings[0]
            .ssrc
            .unwrap();
        let got = received(&sim, *client, ssrc, start);
        let (one, two) = (expected(one, &ids), expected(two, &ids));
        assert!(!one.0.is_empty() && one != two);
        assert_phases(&got, &one, &two, 20);
    }
    // The full receiver got the 20-byte descriptor, which needs the two-byte form.
    let full_video = &consumers[0];
    assert_eq!(full_video.0, full);
    let ssrc = full_video.1.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    assert!(received(&sim, full, ssrc, start)
        .iter()
        .any(|v| v.get(ext_uri::DEPENDENCY_DESCRIPTOR) == Some(&key_frame_dd[..])));
}

/// Simulcast by rid only and an observed audio level, from a publisher whose ids are not the
/// router's: the layers are found by the publisher's mid and rid ids, and the observer reads
/// the level under its audio level id.
#[test]
fn rid_layers_and_audio_levels_are_read_under_the_publisher_ids() {
    let mut sim = Sim::new(seed_from_env("header_extensions_rid"));
    let room = sim.create_router();
    sim.extension_ids = ExtensionIds::Mirrored;
    let send = sim.add_transport(room, Protocol::Udp);
    sim.extension_ids = ExtensionIds::Router;
    let recv = sim.add_transport(room, Protocol::Udp);
    let layers = [("l", 0x6000_0001), ("m", 0x6000_0003), ("h", 0x6000_0005)];
    let video = sim.produce_simulcast(send, &layers);
    let audio = sim.produce(send, MediaKind::Audio, 0x6000_0011);
    for p in sim.publications.iter_mut().filter(|p| p.producer == audio) {
        p.source.audio_level = Some(-30);
    }
    let observer = sim
        .sfu
        .create_audio_level_observer(room, AudioLevelObserverOptions::default())
        .expect("observer");
    sim.sfu
        .audio_level_observer_add_producer(observer, audio)
        .expect("observe");
    let caps = sim.device_caps(room);
    let consumed = sim.consume(recv, video, caps, false);
    sim.run_for(Duration::from_millis(2000));

    let stats = sim.sfu.producer_stats(video).expect("stats");
    assert!(
        stats.packets_per_encoding.iter().all(|&n| n > 20),
        "every layer found by rid: {:?}",
        stats.packets_per_encoding
    );
    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let got = sim.clients[recv]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc)
        .count();
    assert!(got > 50, "the consumer got {got} packets");
    let levels: Vec<i8> = sim
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::AudioLevelObserverVolumes { volumes, .. } => Some(volumes[0].volume),
            _ => None,
        })
        .collect();
    assert!(!levels.is_empty(), "the observer read no level");
    assert!(levels.iter().all(|&v| v == -30), "{levels:?}");
}

/// An endpoint uses one id per extension on a transport: a producer that numbers an extension
/// differently from an earlier producer there is refused, and changes nothing.
#[test]
fn producers_of_one_transport_must_agree_on_ids() {
    let mut sim = Sim::new(seed_from_env("header_extensions_conflict"));
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    sim.produce(send, MediaKind::Audio, 0x7000_0001);
    let transport = sim.clients[send].id;
    let mut params = sim.clients[send].prepare_produce(MediaKind::Video, 0x7000_0003);
    let good = params.clone();
    for e in &mut params.header_extensions {
        if e.uri == ext_uri::MID {
            e.id = 9;
        }
    }
    let produce = |sim: &mut Sim, rtp_parameters| {
        sim.sfu.produce(
            transport,
            ProduceOptions {
                kind: MediaKind::Video,
                rtp_parameters,
                paused: false,
            },
        )
    };
    let err = produce(&mut sim, params).unwrap_err();
    assert!(
        matches!(err, Error::HeaderExtensionConflict { id: 9, .. }),
        "{err}"
    );
    produce(&mut sim, good).expect("the agreeing producer");
}

/// A consumer whose endpoint negotiated abs-send-time gets, on every packet, the time the Sfu
/// sent it (receivers without transport-cc estimate the path from it), whatever the publisher
/// sent: on a link without jitter the stamps advance exactly as the arrivals.
#[test]
fn abs_send_time_is_when_the_sfu_sent_the_packet() {
    let mut sim = Sim::new(seed_from_env("header_extensions_abs_send_time"));
    let room = sim.create_router();
    let send = sim.add_transport(room, Protocol::Udp);
    let recv = sim.add_transport(room, Protocol::Udp);
    let video = sim.produce(send, MediaKind::Video, 0x5252_0001);
    let caps = sim.device_caps(room);
    let consumed = sim.consume(recv, video, caps, false);
    assert!(ids_of(&consumed).contains_key(ext_uri::ABS_SEND_TIME));
    sim.run_for(Duration::from_millis(2000));

    let ssrc = consumed.parameters.rtp_parameters.encodings[0]
        .ssrc
        .unwrap();
    let got: Vec<(Instant, Instant)> = sim.clients[recv]
        .received
        .iter()
        .filter(|p| p.ssrc == ssrc)
        .map(|p| (p.at, p.abs_send_time.expect("every packet is stamped")))
        .collect();
    assert!(got.len() > 100, "{} packets", got.len());
    let mut compared = 0;
    for w in got.windows(2) {
        let arrival = w[1].0 - w[0].0;
        // The stamp wraps every 64 s: skip the pair across a wrap.
        let Some(stamped) = w[1].1.checked_duration_since(w[0].1) else {
            continue;
        };
        let error = stamped.abs_diff(arrival);
        // 6.18 fixed point: about 4 us per unit.
        assert!(
            error <= Duration::from_micros(8),
            "{stamped:?} for {arrival:?}"
        );
        compared += 1;
    }
    assert!(compared > 100);
    // And the spacing is real: the stamps span the run.
    let span = got.last().unwrap().1.saturating_duration_since(got[0].1);
    assert!(span > Duration::from_millis(1000), "{span:?}");
}
