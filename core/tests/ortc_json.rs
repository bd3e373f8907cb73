//! JSON shape and negotiation tests for `sfu_core::ortc`.

use proptest::prelude::*;
use serde_json::{json, Value};
use sfu_core::ortc::*;

fn roundtrip<T>(v: &Value) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let parsed: T = serde_json::from_value(v.clone()).expect("deserialize");
    let back = serde_json::to_value(&parsed).expect("serialize");
    assert_eq!(&back, v, "round trip changed the JSON");
    parsed
}

fn media_codecs() -> Vec<RtpCodecCapability> {
    serde_json::from_value(json!([
        { "kind": "audio", "mimeType": "audio/opus", "clockRate": 48000, "channels": 2 },
        { "kind": "video", "mimeType": "video/VP8", "clockRate": 90000 },
        { "kind": "video", "mimeType": "video/H264", "clockRate": 90000,
          "parameters": { "packetization-mode": 1, "profile-level-id": "42e01f",
                          "level-asymmetry-allowed": 1 } }
    ]))
    .unwrap()
}

fn router_caps() -> RtpCapabilities {
    generate_router_rtp_capabilities(&media_codecs()).unwrap()
}

fn fb(kind: &str, parameter: &str) -> Value {
    json!({ "type": kind, "parameter": parameter })
}

fn video_fb() -> Value {
    json!([
        fb("nack", ""),
        fb("nack", "pli"),
        fb("ccm", "fir"),
        fb("goog-remb", ""),
        fb("transport-cc", "")
    ])
}

/// What mediasoup-client (Chrome) sends in `produce` for VP8 simulcast.
fn vp8_simulcast_produce() -> Value {
    json!({
        "mid": "0",
        "codecs": [
            { "mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "parameters": {},
              "rtcpFeedback": [fb("goog-remb", ""), fb("transport-cc", ""), fb("ccm", "fir"),
                               fb("nack", ""), fb("nack", "pli")] },
            { "mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000,
              "parameters": { "apt": 101 }, "rtcpFeedback": [] }
        ],
        "headerExtensions": [
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {} },
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false, "parameters": {} },
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", "id": 11, "encrypt": false, "parameters": {} },
            { "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {} },
            { "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {} },
            { "uri": "urn:3gpp:video-orientation", "id": 13, "encrypt": false, "parameters": {} },
            { "uri": "urn:ietf:params:rtp-hdrext:toffset", "id": 14, "encrypt": false, "parameters": {} }
        ],
        "encodings": [
            { "active": true, "scaleResolutionDownBy": 4, "maxBitrate": 100000, "rid": "r0",
              "scalabilityMode": "L1T3", "networkPriority": "low", "dtx": false },
            { "active": true, "scaleResolutionDownBy": 2, "maxBitrate": 300000, "rid": "r1",
              "scalabilityMode": "L1T3", "networkPriority": "low", "dtx": false },
            { "active": true, "scaleResolutionDownBy": 1, "maxBitrate": 900000, "rid": "r2",
              "scalabilityMode": "L1T3", "networkPriority": "low", "dtx": false }
        ],
        "rtcp": { "cname": "Kx2hvG0ZPGhLdU3B", "reducedSize": true }
    })
}

/// What mediasoup-client sends in `produce` for a microphone.
fn opus_produce() -> Value {
    json!({
        "mid": "1",
        "codecs": [
            { "mimeType": "audio/opus", "payloadType": 100, "clockRate": 48000, "channels": 2,
              "parameters": { "minptime": 10, "useinbandfec": 1, "sprop-stereo": 1, "usedtx": 1 },
              "rtcpFeedback": [fb("transport-cc", "")] }
        ],
        "headerExtensions": [
            { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {} },
            { "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {} },
            { "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {} },
            { "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {} }
        ],
        "encodings": [ { "ssrc": 3_482_013_121_u32, "dtx": true } ],
        "rtcp": { "cname": "Kx2hvG0ZPGhLdU3B", "reducedSize": true }
    })
}

/// A Chrome device's `device.rtpCapabilities` after loading the router capabilities.
fn device_caps(with_vp8: bool) -> RtpCapabilities {
    let mut codecs = vec![
        json!({ "kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100,
        "clockRate": 48000, "channels": 2, "parameters": { "minptime": 10, "useinbandfec": 1 },
        "rtcpFeedback": [fb("nack", ""), fb("transport-cc", "")] }),
    ];
    if with_vp8 {
        codecs.push(json!({ "kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101,
            "clockRate": 90000, "parameters": {},
            "rtcpFeedback": [fb("goog-remb", ""), fb("transport-cc", ""), fb("ccm", "fir"), fb("nack", ""), fb("nack", "pli")] }));
        codecs.push(
            json!({ "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102,
            "clockRate": 90000, "parameters": { "apt": 101 }, "rtcpFeedback": [] }),
        );
    }
    codecs.push(json!({ "kind": "video", "mimeType": "video/H264", "preferredPayloadType": 103,
        "clockRate": 90000,
        "parameters": { "level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f" },
        "rtcpFeedback": [fb("nack", ""), fb("nack", "pli"), fb("transport-cc", "")] }));
    codecs.push(
        json!({ "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 104,
        "clockRate": 90000, "parameters": { "apt": 103 }, "rtcpFeedback": [] }),
    );
    let ext = |kind: &str, uri: &str, id: u8, dir: &str| json!({ "kind": kind, "uri": uri, "preferredId": id, "preferredEncrypt": false, "direction": dir });
    serde_json::from_value(json!({
        "codecs": codecs,
        "headerExtensions": [
            ext("audio", "urn:ietf:params:rtp-hdrext:sdes:mid", 4, "sendrecv"),
            ext("video", "urn:ietf:params:rtp-hdrext:sdes:mid", 4, "sendrecv"),
            ext("video", "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", 10, "recvonly"),
            ext("video", "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id", 11, "recvonly"),
            ext("audio", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 2, "sendrecv"),
            ext("video", "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", 2, "sendrecv"),
            ext("video", "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", 3, "sendrecv"),
            ext("audio", "urn:ietf:params:rtp-hdrext:ssrc-audio-level", 1, "sendrecv"),
            ext("video", "urn:3gpp:video-orientation", 13, "sendrecv"),
            ext("video", "urn:ietf:params:rtp-hdrext:toffset", 14, "inactive")
        ]
    }))
    .unwrap()
}

#[test]
fn router_caps_example_roundtrips() {
    let v = json!({ "codecs": [
        { "kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100,
          "clockRate": 48000, "channels": 2, "parameters": {},
          "rtcpFeedback": [ { "type": "nack", "parameter": "" }, { "type": "transport-cc", "parameter": "" } ] },
        { "kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101, "clockRate": 90000,
          "parameters": {}, "rtcpFeedback": video_fb() },
        { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102, "clockRate": 90000,
          "parameters": { "apt": 101 }, "rtcpFeedback": [] } ],
      "headerExtensions": [
        { "kind": "audio", "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "preferredId": 1,
          "preferredEncrypt": false, "direction": "sendrecv" } ] });
    let caps: RtpCapabilities = roundtrip(&v);
    assert_eq!(
        caps.codecs[2].parameters.get("apt"),
        Some(&ParameterValue::Number(101))
    );
}

#[test]
fn transport_params_example_roundtrips() {
    // The SCTP parameters use mediasoup's shape (port, OS, MIS, maxMessageSize), which is what
    // mediasoup-client's `SctpParameters` type declares.
    let v = json!({ "id": "3d3b4f2e-2c4a-4e5f-9b0a-1c2d3e4f5a6b",
        "iceParameters": { "usernameFragment": "abcdefgh12345678", "password": "0123456789abcdef0123456789abcdef", "iceLite": true },
        "iceCandidates": [ { "foundation": "udpcandidate", "priority": 1078862079, "address": "127.0.0.1",
                             "ip": "127.0.0.1", "protocol": "udp", "port": 40533, "type": "host" },
                           { "foundation": "tcpcandidate", "priority": 1078862078, "address": "127.0.0.1",
                             "ip": "127.0.0.1", "protocol": "tcp", "port": 40534, "type": "host", "tcpType": "passive" } ],
        "dtlsParameters": { "role": "auto", "fingerprints": [ { "algorithm": "sha-256", "value": "A9:F4:00:11" } ] },
        "sctpParameters": { "port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144 } });
    let t: WebRtcTransportParameters = roundtrip(&v);
    assert_eq!(
        t.ice_candidates[1].tcp_type,
        Some(IceCandidateTcpType::Passive)
    );
    assert_eq!(t.ice_candidates[0].kind, IceCandidateType::Host);
    assert_eq!(t.ice_candidates[1].protocol, Protocol::Tcp);
    assert_eq!(t.dtls_parameters.role, Some(DtlsRole::Auto));
    assert_eq!(t.sctp_parameters.as_ref().map(|s| s.mis), Some(1024));

    // Client `connect` payload.
    let connect: DtlsParameters = roundtrip(&json!({ "role": "client",
        "fingerprints": [ { "algorithm": "sha-256", "value": "AB:CD" } ] }));
    assert_eq!(connect.role, Some(DtlsRole::Client));
}

#[test]
fn consumer_params_example_roundtrips() {
    let v = json!({ "id": "c1", "producerId": "p1", "kind": "video", "type": "simple", "producerPaused": false,
        "rtpParameters": {
            "mid": "1",
            "codecs": [ { "mimeType": "video/VP8", "payloadType": 101, "clockRate": 90000, "parameters": {},
                          "rtcpFeedback": video_fb() },
                        { "mimeType": "video/rtx", "payloadType": 102, "clockRate": 90000, "parameters": { "apt": 101 },
                          "rtcpFeedback": [] } ],
            "headerExtensions": [ { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 1, "encrypt": false, "parameters": {} } ],
            "encodings": [ { "ssrc": 11111111, "rtx": { "ssrc": 22222222 } } ],
            "rtcp": { "cname": "abc", "reducedSize": true, "mux": true } } });
    let c: ConsumerParameters = roundtrip(&v);
    assert_eq!(c.consumer_type, ConsumerType::Simple);
    assert_eq!(c.kind, MediaKind::Video);
    assert_eq!(c.rtp_parameters.codecs[1].apt(), Some(101));
    assert!(c.rtp_parameters.codecs[1].is_rtx());
}

#[test]
fn codec_parameters_roundtrip_exactly() {
    let v = json!({ "apt": 101, "profile-level-id": "42e01f", "packetization-mode": 1,
                    "useinbandfec": 1, "x-google-start-bitrate": 1000, "ratio": 0.5, "neg": -3 });
    let p: CodecParameters = roundtrip(&v);
    assert_eq!(codec_param_u32(&p, "apt"), Some(101));
    assert_eq!(codec_param_u32(&p, "neg"), None);
    assert_eq!(codec_param_u32(&p, "ratio"), None);
    assert_eq!(codec_param_u32(&p, "profile-level-id"), None);
    let s: CodecParameters = serde_json::from_value(json!({ "apt": "96" })).unwrap();
    assert_eq!(codec_param_u32(&s, "apt"), Some(96));
    // Parsed from text and written back, a float keeps its exact value (the shortest text that
    // reads back to the same number), so parameters echo to the client unchanged.
    let text = r#"{"x":-6.0572156126665755e-9}"#;
    let p: CodecParameters = serde_json::from_str(text).unwrap();
    let again: CodecParameters = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(again, p);
}

#[test]
fn router_capabilities_from_media_codecs() {
    let caps = router_caps();
    let v = serde_json::to_value(&caps).unwrap();
    assert_eq!(
        v["codecs"],
        json!([
            { "kind": "audio", "mimeType": "audio/opus", "preferredPayloadType": 100, "clockRate": 48000,
              "channels": 2, "parameters": {}, "rtcpFeedback": [fb("nack", ""), fb("transport-cc", "")] },
            { "kind": "video", "mimeType": "video/VP8", "preferredPayloadType": 101, "clockRate": 90000,
              "parameters": {}, "rtcpFeedback": video_fb() },
            { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 102, "clockRate": 90000,
              "parameters": { "apt": 101 }, "rtcpFeedback": [] },
            { "kind": "video", "mimeType": "video/H264", "preferredPayloadType": 103, "clockRate": 90000,
              "parameters": { "level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "42e01f" },
              "rtcpFeedback": video_fb() },
            { "kind": "video", "mimeType": "video/rtx", "preferredPayloadType": 104, "clockRate": 90000,
              "parameters": { "apt": 103 }, "rtcpFeedback": [] }
        ])
    );
    let ids: Vec<(MediaKind, &str, u8)> = caps
        .header_extensions
        .iter()
        .map(|e| (e.kind, e.uri.as_str(), e.preferred_id))
        .collect();
    assert!(ids.contains(&(MediaKind::Audio, ext_uri::SSRC_AUDIO_LEVEL, 1)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::ABS_SEND_TIME, 2)));
    assert!(ids.contains(&(MediaKind::Audio, ext_uri::TRANSPORT_CC, 3)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::MID, 4)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::RTP_STREAM_ID, 10)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::REPAIRED_RTP_STREAM_ID, 11)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::VIDEO_ORIENTATION, 13)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::TOFFSET, 14)));
    assert!(ids.contains(&(MediaKind::Audio, ext_uri::PLAYOUT_DELAY, 5)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::PLAYOUT_DELAY, 5)));
    assert!(ids.contains(&(MediaKind::Audio, ext_uri::ABS_CAPTURE_TIME, 6)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::ABS_CAPTURE_TIME, 6)));
    assert!(ids.contains(&(MediaKind::Video, ext_uri::DEPENDENCY_DESCRIPTOR, 12)));
    assert_eq!(ids.len(), 16);
    assert!(!ids
        .iter()
        .any(|&(k, u, _)| k == MediaKind::Video && u == ext_uri::SSRC_AUDIO_LEVEL));
    assert!(caps.header_extensions.iter().all(
        |e| !e.preferred_encrypt && e.direction == Some(RtpHeaderExtensionDirection::Sendrecv)
    ));
    assert_eq!(header_extension_id(ext_uri::MID), Some(4));
    assert_eq!(header_extension_id("urn:unknown"), None);
}

#[test]
fn vp8_simulcast_produce_and_consume() {
    let caps = router_caps();
    let params: RtpParameters = serde_json::from_value(vp8_simulcast_produce()).unwrap();
    assert_eq!(params.mid.as_deref(), Some("0"));
    assert_eq!(params.encodings.len(), 3);
    assert_eq!(params.encodings[2].max_bitrate, Some(900_000));
    assert_eq!(params.encodings[0].scale_resolution_down_by, Some(4.0));
    validate_rtp_parameters(&params).unwrap();

    let mapping = get_producer_rtp_mapping(&params, &caps).unwrap();
    assert_eq!(mapping.mapped_payload_type(101), Some(101));
    assert_eq!(mapping.mapped_payload_type(102), Some(102));
    assert_eq!(mapping.codecs.len(), 2);

    let consumable = get_consumable_rtp_parameters(MediaKind::Video, &params, &caps, &mapping);
    assert_eq!(consumable.codecs.len(), 2);
    assert_eq!(consumable.codecs[0].mime_type, "video/VP8");
    assert_eq!(consumable.codecs[0].payload_type, 101);
    assert_eq!(
        serde_json::to_value(&consumable.codecs[0].rtcp_feedback).unwrap(),
        video_fb()
    );
    assert_eq!(consumable.codecs[1].apt(), Some(101));
    assert_eq!(consumable.encodings.len(), 3);
    assert_eq!(consumable.encodings[1].rid.as_deref(), Some("r1"));
    assert!(consumable.encodings.iter().all(|e| e.rtx.is_none()));
    let ext_ids: Vec<(String, u8)> = consumable
        .header_extensions
        .iter()
        .map(|e| (e.uri.clone(), e.id))
        .collect();
    assert!(ext_ids.contains(&(ext_uri::RTP_STREAM_ID.to_owned(), 10)));
    assert!(!ext_ids.iter().any(|(u, _)| u == ext_uri::SSRC_AUDIO_LEVEL));
    assert_eq!(consumable.rtcp.cname.as_deref(), Some("Kx2hvG0ZPGhLdU3B"));
    assert_eq!(consumable.rtcp.reduced_size, Some(true));
    assert_eq!(consumable.mid, None);

    let device = device_caps(true);
    assert!(can_consume(&consumable, &device));
    let consumer = get_consumer_rtp_parameters(&consumable, &device).unwrap();
    assert_eq!(consumer.codecs.len(), 2);
    assert_eq!(consumer.codecs[0].payload_type, 101);
    assert_eq!(consumer.codecs[1].payload_type, 102);
    assert_eq!(consumer.codecs[1].apt(), Some(101));
    // transport-cc negotiated: goog-remb dropped.
    assert_eq!(
        serde_json::to_value(&consumer.codecs[0].rtcp_feedback).unwrap(),
        json!([
            fb("nack", ""),
            fb("nack", "pli"),
            fb("ccm", "fir"),
            fb("transport-cc", "")
        ])
    );
    assert_eq!(consumer.encodings.len(), 1);
    let enc = &consumer.encodings[0];
    assert_eq!(enc.ssrc, None);
    assert_eq!(enc.rtx, None);
    assert_eq!(enc.rid, None);
    assert_eq!(enc.scalability_mode.as_deref(), Some("S3T3"));
    assert_eq!(enc.max_bitrate, Some(900_000));
    let mut ids: Vec<u8> = consumer.header_extensions.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    // toffset is inactive on the device and therefore left out.
    assert_eq!(ids, vec![2, 3, 4, 10, 11, 13]);
    assert_eq!(consumer.rtcp.cname.as_deref(), Some("Kx2hvG0ZPGhLdU3B"));
    assert_eq!(consumer.rtcp.mux, Some(true));
    assert_eq!(consumer.mid, None);

    // The caller fills in ssrcs and mid; the result serializes to what the client expects.
    let mut consumer = consumer;
    consumer.mid = Some("2".into());
    consumer.encodings[0].ssrc = Some(11111111);
    consumer.encodings[0].rtx = Some(RtxParameters { ssrc: 22222222 });
    let cp = ConsumerParameters {
        id: "c".into(),
        producer_id: "p".into(),
        kind: MediaKind::Video,
        consumer_type: ConsumerType::Simulcast,
        producer_paused: false,
        rtp_parameters: consumer,
    };
    let v = serde_json::to_value(&cp).unwrap();
    assert_eq!(v["type"], "simulcast");
    assert_eq!(
        v["rtpParameters"]["encodings"][0],
        json!({ "ssrc": 11111111, "rtx": { "ssrc": 22222222 }, "scalabilityMode": "S3T3", "maxBitrate": 900000 })
    );
    let back: ConsumerParameters = serde_json::from_value(v).unwrap();
    assert_eq!(back, cp);

    // A device with only H264 cannot consume VP8.
    let h264_only = device_caps(false);
    assert!(!can_consume(&consumable, &h264_only));
    assert_eq!(
        get_consumer_rtp_parameters(&consumable, &h264_only),
        Err(OrtcError::NoMatchingCodec)
    );
}

#[test]
fn opus_produce_and_consume() {
    let caps = router_caps();
    let params: RtpParameters = serde_json::from_value(opus_produce()).unwrap();
    assert_eq!(params.encodings[0].dtx, Some(true));
    validate_rtp_parameters(&params).unwrap();
    let mapping = get_producer_rtp_mapping(&params, &caps).unwrap();
    assert_eq!(
        mapping.codecs,
        vec![CodecMapping {
            payload_type: 100,
            mapped_payload_type: 100
        }]
    );

    let consumable = get_consumable_rtp_parameters(MediaKind::Audio, &params, &caps, &mapping);
    assert_eq!(consumable.codecs.len(), 1);
    let opus = &consumable.codecs[0];
    assert_eq!(
        (opus.mime_type.as_str(), opus.payload_type, opus.channels),
        ("audio/opus", 100, Some(2))
    );
    assert_eq!(
        serde_json::to_value(&opus.parameters).unwrap(),
        json!({ "minptime": 10, "useinbandfec": 1, "sprop-stereo": 1, "usedtx": 1 })
    );
    assert_eq!(
        serde_json::to_value(&opus.rtcp_feedback).unwrap(),
        json!([fb("nack", ""), fb("transport-cc", "")])
    );
    assert_eq!(consumable.encodings[0].ssrc, Some(3_482_013_121));
    assert_eq!(consumable.encodings[0].dtx, Some(true));
    let mut ids: Vec<u8> = consumable.header_extensions.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    // Every audio extension the router offers (playout delay 5, absolute capture time 6).
    assert_eq!(ids, vec![1, 2, 3, 4, 5, 6]);

    let device = device_caps(false);
    assert!(can_consume(&consumable, &device));
    let consumer = get_consumer_rtp_parameters(&consumable, &device).unwrap();
    assert_eq!(consumer.codecs.len(), 1);
    assert_eq!(consumer.codecs[0].payload_type, 100);
    // The device has no audio transport-cc extension but has abs-send-time: transport-cc
    // feedback is dropped, nack kept.
    assert_eq!(
        serde_json::to_value(&consumer.codecs[0].rtcp_feedback).unwrap(),
        json!([fb("nack", "")])
    );
    let mut ids: Vec<u8> = consumer.header_extensions.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 4]);
    assert_eq!(consumer.encodings, vec![RtpEncodingParameters::default()]);
}

fn parse(v: Value) -> RtpParameters {
    serde_json::from_value(v).unwrap()
}

#[test]
fn errors() {
    let caps = router_caps();

    // Unknown codec.
    let mut v = opus_produce();
    v["codecs"][0]["mimeType"] = json!("audio/ISAC");
    v["codecs"][0]["clockRate"] = json!(16000);
    let p = parse(v);
    validate_rtp_parameters(&p).unwrap();
    assert!(matches!(
        get_producer_rtp_mapping(&p, &caps),
        Err(OrtcError::UnsupportedCodec(_))
    ));

    // Opus with a different channel count does not match.
    let mut v = opus_produce();
    v["codecs"][0]["channels"] = json!(1);
    assert!(get_producer_rtp_mapping(&parse(v), &caps).is_err());

    // Missing encodings.
    let mut v = opus_produce();
    v.as_object_mut().unwrap().remove("encodings");
    assert!(matches!(
        validate_rtp_parameters(&parse(v)),
        Err(OrtcError::InvalidParameters(_))
    ));

    // Duplicate payload type.
    let mut v = vp8_simulcast_produce();
    v["codecs"][1]["payloadType"] = json!(101);
    assert!(validate_rtp_parameters(&parse(v)).is_err());

    // RTX with a bad apt.
    let mut v = vp8_simulcast_produce();
    v["codecs"][1]["parameters"]["apt"] = json!(99);
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = vp8_simulcast_produce();
    v["codecs"][1]["parameters"] = json!({});
    assert!(validate_rtp_parameters(&parse(v)).is_err());

    // Encoding without ssrc and rid; duplicate rid; zero / duplicate ssrcs.
    let mut v = vp8_simulcast_produce();
    v["encodings"][1].as_object_mut().unwrap().remove("rid");
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = vp8_simulcast_produce();
    v["encodings"][1]["rid"] = json!("r0");
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = opus_produce();
    v["encodings"][0]["ssrc"] = json!(0);
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = opus_produce();
    v["encodings"][0]["rtx"] = json!({ "ssrc": 3_482_013_121_u32 });
    assert!(validate_rtp_parameters(&parse(v)).is_err());

    // Header extension ids.
    let mut v = opus_produce();
    v["headerExtensions"][0]["id"] = json!(15);
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = opus_produce();
    v["headerExtensions"][0]["id"] = json!(2);
    assert!(validate_rtp_parameters(&parse(v)).is_err());

    // Payload type out of range, bad mime type.
    let mut v = opus_produce();
    v["codecs"][0]["payloadType"] = json!(200);
    assert!(validate_rtp_parameters(&parse(v)).is_err());
    let mut v = opus_produce();
    v["codecs"][0]["mimeType"] = json!("opus");
    assert!(validate_rtp_parameters(&parse(v)).is_err());

    // Wrong JSON types are rejected by serde.
    let mut v = opus_produce();
    v["codecs"][0]["payloadType"] = json!("100");
    assert!(serde_json::from_value::<RtpParameters>(v).is_err());
}

#[test]
fn router_codec_errors() {
    let codec =
        |v: Value| -> Vec<RtpCodecCapability> { serde_json::from_value(json!([v])).unwrap() };
    let err = |v: Value| generate_router_rtp_capabilities(&codec(v)).unwrap_err();
    assert!(matches!(
        err(json!({ "kind": "audio", "mimeType": "audio/ISAC", "clockRate": 16000 })),
        OrtcError::UnsupportedCodec(_)
    ));
    assert!(matches!(
        err(json!({ "kind": "video", "mimeType": "audio/opus", "clockRate": 48000 })),
        OrtcError::InvalidParameters(_)
    ));
    assert!(matches!(
        err(json!({ "kind": "audio", "mimeType": "audio/opus", "clockRate": 44100 })),
        OrtcError::InvalidParameters(_)
    ));
    assert!(matches!(
        err(json!({ "kind": "video", "mimeType": "video/rtx", "clockRate": 90000 })),
        OrtcError::InvalidParameters(_)
    ));
    let dup: Vec<RtpCodecCapability> = serde_json::from_value(json!([
        { "kind": "video", "mimeType": "video/VP8", "clockRate": 90000 },
        { "kind": "video", "mimeType": "video/vp8", "clockRate": 90000 }
    ]))
    .unwrap();
    assert!(matches!(
        generate_router_rtp_capabilities(&dup),
        Err(OrtcError::DuplicateCodec(_))
    ));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..300).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("video/VP8"),
            Just("video/rtx"),
            Just("audio/opus"),
            Just("video/H264"),
            Just("video/VP9"),
            Just("r0"),
            Just("42e01f"),
            Just("L1T3"),
            Just("S3T3"),
            Just("")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        "\\PC{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("mimeType"),
                    Just("payloadType"),
                    Just("clockRate"),
                    Just("channels"),
                    Just("parameters"),
                    Just("apt"),
                    Just("packetization-mode"),
                    Just("profile-level-id"),
                    Just("profile-id"),
                    Just("rtcpFeedback"),
                    Just("type"),
                    Just("parameter"),
                    Just("uri"),
                    Just("id"),
                    Just("ssrc"),
                    Just("rid"),
                    Just("rtx"),
                    Just("scalabilityMode"),
                    Just("maxBitrate"),
                    Just("codecPayloadType"),
                    Just("encodings"),
                    Just("codecs"),
                    Just("headerExtensions"),
                    Just("rtcp"),
                    Just("cname"),
                    Just("mid"),
                    Just("x")
                ]
                .prop_map(str::to_owned),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Random edits of the realistic produce payloads.
fn mutated_produce() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        prop::collection::vec((0usize..64, json_value()), 0..6),
    )
        .prop_map(|(video, edits)| {
            let mut v = if video {
                vp8_simulcast_produce()
            } else {
                opus_produce()
            };
            for (i, new) in edits {
                let target = i % count(&v);
                replace_nth(&mut v, target, &mut 0, new);
            }
            v
        })
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

fn replace_nth(v: &mut Value, target: usize, seen: &mut usize, new: Value) -> Option<Value> {
    if *seen == target {
        *v = new;
        return None;
    }
    *seen += 1;
    let mut new = Some(new);
    match v {
        Value::Array(a) => {
            for x in a {
                new = replace_nth(x, target, seen, new?);
            }
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                new = replace_nth(x, target, seen, new?);
            }
        }
        _ => {}
    }
    new
}

/// A byte-level edit of a JSON text.
#[derive(Debug, Clone)]
enum Edit {
    /// Replace the byte at a position with a printable character.
    Replace(usize, u8),
    /// Insert a printable character.
    Insert(usize, u8),
    /// Delete a byte.
    Delete(usize),
    /// Replace the n-th digit with another digit.
    Digit(usize, u8),
    /// Replace the n-th scalar (number, string, true, false, null) with a random JSON value.
    Scalar(usize, Value),
}

/// A real produce request's JSON text (audio or simulcast video, compact or pretty) with a few
/// byte edits: most edits land in a string or a number and keep the text valid JSON.
fn mutated_produce_text() -> impl Strategy<Value = String> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), 0u8..10).prop_map(|(i, d)| Edit::Digit(i, d)),
        (any::<usize>(), json_value()).prop_map(|(i, v)| Edit::Scalar(i, v)),
    ];
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(edit, 1..4),
    )
        .prop_map(|(video, pretty, edits)| {
            let v = if video {
                vp8_simulcast_produce()
            } else {
                opus_produce()
            };
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                v.to_string()
            };
            let mut text = text.into_bytes();
            for e in edits {
                apply_edit(&mut text, e);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
}

fn apply_edit(text: &mut Vec<u8>, edit: Edit) {
    let printable = |b: u8| b' ' + b % 95;
    if text.is_empty() {
        return;
    }
    let n = text.len();
    match edit {
        Edit::Replace(i, b) => text[i % n] = printable(b),
        Edit::Insert(i, b) => text.insert(i % (n + 1), printable(b)),
        Edit::Delete(i) => {
            text.remove(i % n);
        }
        Edit::Digit(i, d) => {
            let digits: Vec<usize> = (0..n).filter(|&j| text[j].is_ascii_digit()).collect();
            if !digits.is_empty() {
                text[digits[i % digits.len()]] = b'0' + d;
            }
        }
        Edit::Scalar(i, v) => {
            let scalars = scalar_spans(text);
            if !scalars.is_empty() {
                let (start, end) = scalars[i % scalars.len()];
                text.splice(start..end, v.to_string().into_bytes());
            }
        }
    }
}

/// Byte ranges of the scalar values (not the keys) of a JSON text: strings after a ':' or in an
/// array, numbers, true, false, null.
fn scalar_spans(text: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut i = 0;
    let mut prev = b' ';
    while i < text.len() {
        let c = text[i];
        if c == b'"' {
            let mut j = i + 1;
            while j < text.len() && text[j] != b'"' {
                j += if text[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(text.len());
            if prev == b':' || prev == b'[' || prev == b',' && !is_key(text, end) {
                spans.push((i, end));
            }
            prev = b'"';
            i = end;
        } else if c == b'-' || c.is_ascii_alphanumeric() {
            let mut j = i;
            while j < text.len()
                && (text[j] == b'-'
                    || text[j] == b'+'
                    || text[j] == b'.'
                    || text[j].is_ascii_alphanumeric())
            {
                j += 1;
            }
            spans.push((i, j));
            prev = b'0';
            i = j;
        } else {
            if !c.is_ascii_whitespace() {
                prev = c;
            }
            i += 1;
        }
    }
    spans
}

/// Whether the string ending at `end` is an object key (a ':' follows).
fn is_key(text: &[u8], end: usize) -> bool {
    text[end..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b':')
}

fn exercise(params: &RtpParameters) {
    let caps = router_caps();
    let _ = validate_rtp_parameters(params);
    let _ = can_consume(params, &caps);
    let _ = get_consumer_rtp_parameters(params, &caps);
    if let Ok(mapping) = get_producer_rtp_mapping(params, &caps) {
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let consumable = get_consumable_rtp_parameters(kind, params, &caps, &mapping);
            let _ = can_consume(&consumable, &device_caps(true));
            if let Ok(c) = get_consumer_rtp_parameters(&consumable, &device_caps(true)) {
                serde_json::to_string(&c).unwrap();
            }
        }
    }
    // Parameters used as capabilities must not panic either.
    let as_caps = RtpCapabilities {
        codecs: params
            .codecs
            .iter()
            .map(|c| RtpCodecCapability {
                kind: MediaKind::Video,
                mime_type: c.mime_type.clone(),
                preferred_payload_type: Some(c.payload_type),
                clock_rate: c.clock_rate,
                channels: c.channels,
                parameters: c.parameters.clone(),
                rtcp_feedback: c.rtcp_feedback.clone(),
            })
            .collect(),
        header_extensions: Vec::new(),
    };
    let _ = generate_router_rtp_capabilities(&as_caps.codecs);
    let _ = get_producer_rtp_mapping(params, &as_caps);
    let _ = get_consumer_rtp_parameters(params, &as_caps);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_produce_text_never_panics(s in mutated_produce_text()) {
        if let Ok(p) = serde_json::from_str::<RtpParameters>(&s) {
            exercise(&p);
            // Whatever parses re-serializes and parses back to the same value.
            let again: RtpParameters =
                serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            prop_assert_eq!(again, p);
        }
        let _ = serde_json::from_str::<RtpCapabilities>(&s);
        let _ = serde_json::from_str::<ConsumerParameters>(&s);
    }

    #[test]
    fn arbitrary_values_never_panic(v in json_value()) {
        if let Ok(p) = serde_json::from_value::<RtpParameters>(v.clone()) {
            exercise(&p);
        }
        if let Ok(c) = serde_json::from_value::<RtpCapabilities>(v) {
            let _ = generate_router_rtp_capabilities(&c.codecs);
        }
    }

    #[test]
    fn mutated_produce_never_panics(v in mutated_produce()) {
        let s = v.to_string();
        if let Ok(p) = serde_json::from_str::<RtpParameters>(&s) {
            exercise(&p);
            // Whatever parses re-serializes and parses back to the same value.
            let again: RtpParameters = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            prop_assert_eq!(again, p);
        }
    }
}

/// The mutation tests above are only worth their cases if the mutants parse: most are still
/// produce requests (so `exercise` runs on them), and some are not (so the edits matter).
#[test]
fn mutants_mostly_parse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (cases, mut text_parsed, mut text_changed, mut value_parsed) = (500, 0, 0, 0);
    let originals = [parse(opus_produce()), parse(vp8_simulcast_produce())];
    let text = mutated_produce_text();
    let value = mutated_produce();
    for _ in 0..cases {
        let s = text.new_tree(&mut runner).unwrap().current();
        if let Ok(p) = serde_json::from_str::<RtpParameters>(&s) {
            text_parsed += 1;
            if !originals.contains(&p) {
                text_changed += 1;
            }
        }
        let v = value.new_tree(&mut runner).unwrap().current();
        if serde_json::from_value::<RtpParameters>(v).is_ok() {
            value_parsed += 1;
        }
    }
    eprintln!(
        "of {cases} mutants: text {text_parsed} parse ({text_changed} of them changed), \
         value {value_parsed} parse"
    );
    assert!(
        text_parsed * 100 >= cases * 25,
        "text mutants: {text_parsed} of {cases} parse"
    );
    assert!(
        text_parsed * 100 <= cases * 90,
        "text mutants: {text_parsed} of {cases} parse, the edits do little"
    );
    assert!(
        text_changed * 100 >= cases * 20,
        "text mutants: {text_changed} of {cases} parse to new parameters"
    );
    assert!(
        value_parsed * 100 >= cases * 12,
        "value mutants: {value_parsed} of {cases} parse"
    );
}

/// The dependency descriptor, absolute capture time and playout delay: offered in the shape
/// mediasoup-client expects, and negotiated for a consumer whose device has them, with the
/// router's ids.
#[test]
fn forwarded_extensions_offered_and_negotiated() {
    let caps = router_caps();
    let v = serde_json::to_value(&caps).unwrap();
    let offered = v["headerExtensions"].as_array().unwrap();
    for (kind, uri, id) in [
        ("audio", ext_uri::PLAYOUT_DELAY, 5),
        ("video", ext_uri::PLAYOUT_DELAY, 5),
        ("audio", ext_uri::ABS_CAPTURE_TIME, 6),
        ("video", ext_uri::ABS_CAPTURE_TIME, 6),
        ("video", ext_uri::DEPENDENCY_DESCRIPTOR, 12),
    ] {
        let expected = json!({ "kind": kind, "uri": uri, "preferredId": id,
            "preferredEncrypt": false, "direction": "sendrecv" });
        assert!(offered.contains(&expected), "{expected}");
    }
    assert!(!offered
        .iter()
        .any(|e| e["kind"] == "audio" && e["uri"] == ext_uri::DEPENDENCY_DESCRIPTOR));

    // A producer that sends them (with the router's ids), and a device that takes them all.
    let mut produce = vp8_simulcast_produce();
    let exts = produce["headerExtensions"].as_array_mut().unwrap();
    for (uri, id) in [
        (ext_uri::PLAYOUT_DELAY, 5),
        (ext_uri::ABS_CAPTURE_TIME, 6),
        (ext_uri::DEPENDENCY_DESCRIPTOR, 12),
    ] {
        exts.push(json!({ "uri": uri, "id": id, "encrypt": false, "parameters": {} }));
    }
    let params: RtpParameters = serde_json::from_value(produce).unwrap();
    validate_rtp_parameters(&params).unwrap();
    let mapping = get_producer_rtp_mapping(&params, &caps).unwrap();
    let consumable = get_consumable_rtp_parameters(MediaKind::Video, &params, &caps, &mapping);
    let mut device = device_caps(true);
    let with = |kind, uri: &str, id| RtpHeaderExtension {
        kind,
        uri: uri.to_owned(),
        preferred_id: id,
        preferred_encrypt: false,
        direction: Some(RtpHeaderExtensionDirection::Sendrecv),
    };
    // The device's own preferred ids do not matter: consumers use the router's.
    device.header_extensions.extend([
        with(MediaKind::Video, ext_uri::PLAYOUT_DELAY, 9),
        with(MediaKind::Video, ext_uri::ABS_CAPTURE_TIME, 7),
        with(MediaKind::Video, ext_uri::DEPENDENCY_DESCRIPTOR, 8),
    ]);
    let consumer = get_consumer_rtp_parameters(&consumable, &device).unwrap();
    let mut ids: Vec<u8> = consumer.header_extensions.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![2, 3, 4, 5, 6, 10, 11, 12, 13]);
    let v = serde_json::to_value(&consumer).unwrap();
    assert!(v["headerExtensions"].as_array().unwrap().contains(&json!({
        "uri": ext_uri::DEPENDENCY_DESCRIPTOR, "id": 12, "encrypt": false, "parameters": {}
    })));
}
