//! The demo's signaling logic against a real mio runtime on loopback, without a browser: bad
//! input gets clear error replies and disturbs no one, and a peer that leaves is cleaned up.

use std::time::Duration;

mod common;

use common::{start_signaling, wait_until};
use serde_json::{json, Value};
use sfu_examples::demo::PeerSession;

fn raw(session: &mut PeerSession, text: &str) -> Value {
    serde_json::from_str(&session.handle_text(text)).expect("replies are JSON")
}

fn call(session: &mut PeerSession, method: &str, data: Value) -> Result<Value, String> {
    let reply = raw(
        session,
        &json!({ "id": 42, "method": method, "data": data }).to_string(),
    );
    assert_eq!(reply["id"], 42, "the reply echoes the request id: {reply}");
    if reply["ok"] == true {
        Ok(reply["data"].clone())
    } else {
        Err(reply["error"]
            .as_str()
            .expect("an error reply says why")
            .to_owned())
    }
}

fn ok(session: &mut PeerSession, method: &str, data: Value) -> Value {
    call(session, method, data).unwrap_or_else(|e| panic!("{method} failed: {e}"))
}

fn err(session: &mut PeerSession, method: &str, data: Value) -> String {
    match call(session, method, data) {
        Ok(v) => panic!("{method} should fail, got {v}"),
        Err(e) => e,
    }
}

/// Waits for a notification `method` (at most 5 s each), skipping others.
fn wait_for(session: &PeerSession, method: &str) -> Value {
    loop {
        let next = smol::future::or(
            async { Some(session.notifications().recv().await) },
            async {
                smol::Timer::after(Duration::from_secs(5)).await;
                None
            },
        );
        match smol::block_on(next) {
            Some(Ok(text)) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["notification"], true);
                if v["method"] == method {
                    return v["data"].clone();
                }
            }
            None => panic!("no {method} notification within 5 s"),
            Some(Err(_)) => panic!("notifications closed"),
        }
    }
}

fn transport(session: &mut PeerSession, direction: &str) -> String {
    let t = ok(
        session,
        "createWebRtcTransport",
        json!({ "direction": direction }),
    );
    assert_eq!(t["iceParameters"]["iceLite"], true);
    assert!(t["iceCandidates"].as_array().is_some_and(|c| !c.is_empty()));
    assert!(t["dtlsParameters"]["fingerprints"][0]["value"].is_string());
    t["id"].as_str().unwrap().to_owned()
}

fn dtls() -> Value {
    let value = vec!["AB"; 32].join(":");
    json!({ "role": "client", "fingerprints": [{ "algorithm": "sha-256", "value": value }] })
}

/// What Chromium 156 sent through mediasoup-client 3.24 for its microphone (from the e2e run).
fn chrome_audio(transport: &str) -> Value {
    json!({
        "transportId": transport,
        "kind": "audio",
        "rtpParameters": {
            "mid": "0",
            "codecs": [{ "mimeType": "audio/opus", "payloadType": 111, "clockRate": 48000,
                "channels": 2, "parameters": { "minptime": 10, "useinbandfec": 1 },
                "rtcpFeedback": [{ "type": "transport-cc", "parameter": "" },
                                 { "type": "nack", "parameter": "" }] }],
            "headerExtensions": [
                { "uri": "urn:ietf:params:rtp-hdrext:ssrc-audio-level", "id": 1, "encrypt": false, "parameters": {} },
                { "uri": "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "id": 2, "encrypt": false, "parameters": {} },
                { "uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {} },
                { "uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {} }
            ],
            "encodings": [{ "ssrc": 1310949532u32, "dtx": false }],
            "rtcp": { "cname": "jgOSMjCe1lpNcJXa", "reducedSize": true },
            "msid": "f878f4ec 51b1b22e"
        },
        "appData": {}
    })
}

#[test]
fn malformed_and_unknown_requests_get_clear_errors() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();

    let r = raw(&mut a, "{not json");
    assert_eq!(r["ok"], false);
    assert_eq!(r["id"], Value::Null);
    assert!(
        r["error"].as_str().unwrap().contains("malformed JSON"),
        "{r}"
    );

    let r = raw(&mut a, "[1, 2]");
    assert!(r["error"].as_str().unwrap().contains("JSON object"), "{r}");
    let r = raw(&mut a, r#"{"id": "x"}"#);
    assert_eq!(r["id"], "x");
    assert!(r["error"].as_str().unwrap().contains("method"), "{r}");

    assert!(err(&mut a, "launchRockets", json!({})).contains("unknown method \"launchRockets\""));
    assert!(err(&mut a, "createWebRtcTransport", json!({})).contains("direction"));
    assert!(err(
        &mut a,
        "connectWebRtcTransport",
        json!({ "transportId": 5 })
    )
    .contains("invalid data for connectWebRtcTransport"));
    assert!(err(
        &mut a,
        "resumeConsumer",
        json!({ "consumerId": "not-an-id" })
    )
    .contains("invalid consumerId"));
    assert!(err(
        &mut a,
        "consume",
        json!({ "producerId": "0123456789abcdef" })
    )
    .contains("join"));

    // The session still works after all that.
    let caps = ok(&mut a, "getRouterRtpCapabilities", json!({}));
    assert!(caps["codecs"].as_array().unwrap().len() >= 3, "{caps}");
}

#[test]
fn bad_names_and_duplicate_peers_are_refused() {
    let (signaling, _) = start_signaling();
    assert!(signaling.connect("", "a").is_err());
    assert!(signaling.connect("room", "").is_err());
    assert!(signaling.connect("a/b", "a").is_err());
    assert!(signaling.connect(&"x".repeat(65), "a").is_err());
    let _a = signaling.connect("room", "a").unwrap();
    let e = signaling.connect("room", "a").err().unwrap();
    assert!(e.contains("already in room"), "{e}");
    // The same peer id in another room is another peer.
    let _b = signaling.connect("other", "a").unwrap();
    assert_eq!(signaling.rooms(), vec!["other", "room"]);
}

#[test]
fn ids_of_other_peers_and_rooms_are_refused() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("one", "a").unwrap();
    let mut b = signaling.connect("one", "b").unwrap();
    let mut c = signaling.connect("two", "c").unwrap();
    let caps = ok(&mut a, "getRouterRtpCapabilities", json!({}));
    let send = transport(&mut a, "send");
    ok(&mut a, "join", json!({ "rtpCapabilities": caps }));
    let producer = ok(&mut a, "produce", chrome_audio(&send))["id"]
        .as_str()
        .unwrap()
        .to_owned();

    for other in [&mut b, &mut c] {
        let e = err(
            other,
            "connectWebRtcTransport",
            json!({ "transportId": send, "dtlsParameters": dtls() }),
        );
        assert!(e.contains("not one of this peer's transports"), "{e}");
        let e = err(other, "closeProducer", json!({ "producerId": producer }));
        assert!(e.contains("not one of this peer's producers"), "{e}");
        let e = err(other, "produce", chrome_audio(&send));
        assert!(e.contains("not one of this peer's transports"), "{e}");
    }

    // Room two cannot consume room one's producer, even with its own receive transport.
    let caps_two = ok(&mut c, "getRouterRtpCapabilities", json!({}));
    transport(&mut c, "recv");
    ok(&mut c, "join", json!({ "rtpCapabilities": caps_two }));
    let e = err(&mut c, "consume", json!({ "producerId": producer }));
    assert!(e.contains("is not in room \"two\""), "{e}");

    // A receive transport cannot produce, a send transport cannot consume.
    let recv = transport(&mut a, "recv");
    let e = err(&mut a, "produce", chrome_audio(&recv));
    assert!(e.contains("receive transport"), "{e}");
    let e = err(
        &mut a,
        "consume",
        json!({ "producerId": producer, "transportId": send }),
    );
    assert!(e.contains("send transport"), "{e}");

    // Nothing of that disturbed peer a.
    ok(&mut a, "pauseProducer", json!({ "producerId": producer }));
    ok(&mut a, "resumeProducer", json!({ "producerId": producer }));
}

#[test]
fn a_second_connect_is_refused() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let t = transport(&mut a, "send");
    let connect = json!({ "transportId": t, "dtlsParameters": dtls() });
    ok(&mut a, "connectWebRtcTransport", connect.clone());
    let e = err(&mut a, "connectWebRtcTransport", connect);
    assert!(e.contains("already connected"), "{e}");
    let stats = ok(&mut a, "getTransportStats", json!({ "transportId": t }));
    assert_eq!(stats["iceState"], "new");
}

#[test]
fn the_outgoing_bitrate_cap_applies_to_own_transports_only() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let mut b = signaling.connect("room", "b").unwrap();
    let t = transport(&mut a, "recv");
    let other = transport(&mut b, "recv");
    let initial = ok(&mut a, "getTransportStats", json!({ "transportId": t }))
        ["availableOutgoingBitrate"]
        .as_u64()
        .unwrap();
    assert!(initial > 300_000, "{initial}");

    ok(
        &mut a,
        "setMaxOutgoingBitrate",
        json!({ "transportId": t, "bitrate": 300_000 }),
    );
    let capped = ok(&mut a, "getTransportStats", json!({ "transportId": t }));
    assert_eq!(capped["availableOutgoingBitrate"], 300_000, "{capped}");

    let e = err(
        &mut a,
        "setMaxOutgoingBitrate",
        json!({ "transportId": other, "bitrate": 300_000 }),
    );
    assert!(e.contains("not one of this peer's transports"), "{e}");
    let e = err(
        &mut a,
        "setMaxOutgoingBitrate",
        json!({ "transportId": t, "bitrate": 1_000 }),
    );
    assert!(e.contains("at least 30000"), "{e}");
    let e = err(
        &mut a,
        "setMaxOutgoingBitrate",
        json!({ "transportId": t, "bitrate": -5 }),
    );
    assert!(e.contains("invalid data"), "{e}");
    let untouched = ok(&mut b, "getTransportStats", json!({ "transportId": other }));
    assert_eq!(
        untouched["availableOutgoingBitrate"], initial,
        "{untouched}"
    );

    // 0 lifts the cap; the estimate climbs back with feedback, it does not jump.
    ok(
        &mut a,
        "setMaxOutgoingBitrate",
        json!({ "transportId": t, "bitrate": 0 }),
    );
    let lifted = ok(&mut a, "getTransportStats", json!({ "transportId": t }));
    assert_eq!(lifted["availableOutgoingBitrate"], 300_000, "{lifted}");
}

#[test]
fn force_tcp_offers_only_tcp_candidates() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let t = ok(
        &mut a,
        "createWebRtcTransport",
        json!({ "direction": "recv", "forceTcp": true }),
    );
    let candidates = t["iceCandidates"].as_array().unwrap();
    assert!(!candidates.is_empty());
    assert!(candidates.iter().all(|c| c["protocol"] == "tcp"), "{t}");
}

#[test]
fn transports_per_peer_are_limited() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    for _ in 0..sfu_examples::demo::MAX_TRANSPORTS_PER_PEER {
        transport(&mut a, "send");
    }
    let e = err(
        &mut a,
        "createWebRtcTransport",
        json!({ "direction": "send" }),
    );
    assert!(e.contains("at most"), "{e}");
}

#[test]
fn produce_consume_and_cleanup_when_a_peer_leaves() {
    let (signaling, worker) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let mut b = signaling.connect("room", "b").unwrap();
    let caps = ok(&mut b, "getRouterRtpCapabilities", json!({}));

    // b joins first with a receive transport, then a publishes.
    let recv = transport(&mut b, "recv");
    let joined = ok(&mut b, "join", json!({ "rtpCapabilities": caps }));
    assert_eq!(joined["producers"], json!([]));
    let send = transport(&mut a, "send");
    ok(&mut a, "join", json!({ "rtpCapabilities": caps }));
    assert_eq!(wait_for(&b, "peerJoined")["peerId"], "a");
    let producer = ok(&mut a, "produce", chrome_audio(&send))["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let announced = wait_for(&b, "newProducer");
    assert_eq!(announced["producerId"], producer);
    assert_eq!(announced["peerId"], "a");
    assert_eq!(announced["kind"], "audio");

    // Server-side consume: created paused, then resumed by the client.
    let consumer = ok(
        &mut b,
        "consume",
        json!({ "producerId": producer, "transportId": recv }),
    );
    assert_eq!(consumer["producerId"], producer);
    assert_eq!(consumer["peerId"], "a");
    assert_eq!(consumer["kind"], "audio");
    assert_eq!(consumer["type"], "simple");
    assert!(consumer["rtpParameters"]["encodings"][0]["ssrc"].is_u64());
    let consumer_id = consumer["id"].as_str().unwrap().to_owned();
    ok(
        &mut b,
        "resumeConsumer",
        json!({ "consumerId": consumer_id }),
    );

    // a late joiner learns of the producer in its join reply.
    let mut c = signaling.connect("room", "c").unwrap();
    let joined = ok(&mut c, "join", json!({ "rtpCapabilities": caps }));
    assert_eq!(joined["producers"][0]["producerId"], producer);
    assert_eq!(joined["peers"], json!(["a", "b"]));
    drop(c);
    assert_eq!(wait_for(&b, "peerLeft")["peerId"], "c");

    // a leaves (its WebSocket closed): its producer goes, b is told, b's consumer closes.
    wait_until("3 transports", || worker.load() == 2);
    drop(a);
    assert_eq!(wait_for(&b, "producerClosed")["producerId"], producer);
    assert_eq!(wait_for(&b, "peerLeft")["peerId"], "a");
    let closed = wait_for(&b, "consumerClosed");
    assert_eq!(closed["consumerId"], consumer_id);
    assert_eq!(closed["reason"], "producerclosed");
    assert_eq!(signaling.peers("room"), vec!["b"]);
    wait_until("a's transport to close", || worker.load() == 1);
    let e = err(
        &mut b,
        "resumeConsumer",
        json!({ "consumerId": consumer_id }),
    );
    assert!(e.contains("not one of this peer's consumers"), "{e}");

    // The last peer leaving closes the room.
    drop(b);
    wait_until("every transport to close", || worker.load() == 0);
    assert!(signaling.rooms().is_empty());
}

#[test]
fn producers_of_a_transport_share_one_cname() {
    // Chromium sends `"cname": ""` for rid-based simulcast; mediasoup-client would then write an
    // invalid `a=msid` line for the consumer. The server gives every producer of a transport
    // the first cname it saw (or a made-up one), as mediasoup does.
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let mut b = signaling.connect("room", "b").unwrap();
    let caps = ok(&mut a, "getRouterRtpCapabilities", json!({}));
    let send = transport(&mut a, "send");
    transport(&mut b, "recv");
    ok(&mut a, "join", json!({ "rtpCapabilities": caps }));
    ok(&mut b, "join", json!({ "rtpCapabilities": caps }));

    let audio = ok(&mut a, "produce", chrome_audio(&send))["id"].clone();
    let mut video = chrome_audio(&send);
    video["rtpParameters"]["mid"] = json!("1");
    video["rtpParameters"]["encodings"] = json!([{ "ssrc": 1111u32 }]);
    video["rtpParameters"]["rtcp"]["cname"] = json!("");
    let video = ok(&mut a, "produce", video)["id"].clone();
    for producer in [audio, video] {
        let c = ok(&mut b, "consume", json!({ "producerId": producer }));
        assert_eq!(
            c["rtpParameters"]["rtcp"]["cname"], "jgOSMjCe1lpNcJXa",
            "{c}"
        );
    }

    // A transport whose first producer has no cname gets a made-up one.
    let mut c = signaling.connect("room", "c").unwrap();
    let send_c = transport(&mut c, "send");
    ok(&mut c, "join", json!({ "rtpCapabilities": caps }));
    let mut params = chrome_audio(&send_c);
    params["rtpParameters"]["rtcp"] = json!({});
    let producer = ok(&mut c, "produce", params)["id"].clone();
    let consumed = ok(&mut b, "consume", json!({ "producerId": producer }));
    let cname = consumed["rtpParameters"]["rtcp"]["cname"].as_str().unwrap();
    assert!(!cname.is_empty());
}

/// Every notification already queued for a session (nothing waits).
fn queued(session: &PeerSession) -> Vec<Value> {
    std::iter::from_fn(|| session.notifications().try_recv().ok())
        .map(|text| serde_json::from_str(&text).unwrap())
        .collect()
}

fn chat(transport: &str, stream_id: u16) -> Value {
    json!({
        "transportId": transport,
        "sctpStreamParameters": { "streamId": stream_id, "ordered": true },
        "label": "chat",
        "protocol": "",
    })
}

#[test]
fn data_producers_are_offered_and_consumed_within_their_room_only() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("one", "a").unwrap();
    let mut b = signaling.connect("one", "b").unwrap();
    let mut c = signaling.connect("two", "c").unwrap();
    let caps = ok(&mut a, "getRouterRtpCapabilities", json!({}));

    // Every transport carries data channels: mediasoup's sctpParameters.
    let t = ok(
        &mut a,
        "createWebRtcTransport",
        json!({ "direction": "send" }),
    );
    assert_eq!(
        t["sctpParameters"],
        json!({ "port": 5000, "OS": 1024, "MIS": 1024, "maxMessageSize": 262144 }),
        "{t}"
    );
    let send_a = t["id"].as_str().unwrap().to_owned();
    let recv_b = transport(&mut b, "recv");
    let recv_c = transport(&mut c, "recv");

    // Consuming data needs a join; a receive transport cannot produce data.
    let e = err(
        &mut b,
        "consumeData",
        json!({ "dataProducerId": "0123456789abcdef" }),
    );
    assert!(e.contains("join"), "{e}");
    let e = err(&mut b, "produceData", chat(&recv_b, 0));
    assert!(e.contains("receive transport"), "{e}");

    for s in [&mut a, &mut b, &mut c] {
        ok(s, "join", json!({ "rtpCapabilities": caps }));
    }
    queued(&b);
    queued(&c);

    // Another peer cannot produce data on a's transport.
    let e = err(&mut b, "produceData", chat(&send_a, 0));
    assert!(e.contains("not one of this peer's transports"), "{e}");

    let produced = ok(&mut a, "produceData", chat(&send_a, 3));
    let data_producer = produced["id"].as_str().unwrap().to_owned();

    // b, in the same room, is told; c, in the other room, is told nothing (the notifications
    // are queued before the reply, so none can still be on its way).
    let announced = wait_for(&b, "newDataProducer");
    assert_eq!(
        announced,
        json!({ "dataProducerId": data_producer, "peerId": "a", "label": "chat" })
    );
    let told_c = queued(&c);
    assert!(
        told_c.iter().all(|n| n["method"] != "newDataProducer"),
        "{told_c:?}"
    );

    // b consumes it on a stream the server picks, with the producer's reliability and label.
    let consumed = ok(
        &mut b,
        "consumeData",
        json!({ "dataProducerId": data_producer, "transportId": recv_b }),
    );
    assert_eq!(consumed["dataProducerId"], data_producer);
    assert_eq!(consumed["peerId"], "a");
    assert_eq!(consumed["label"], "chat");
    assert_eq!(consumed["protocol"], "");
    assert_eq!(
        consumed["sctpStreamParameters"],
        json!({ "streamId": 0, "ordered": true })
    );
    let data_consumer = consumed["id"].as_str().unwrap().to_owned();
    assert_ne!(data_consumer, data_producer);

    // c cannot consume it, even with its own receive transport and the right id.
    let e = err(
        &mut c,
        "consumeData",
        json!({ "dataProducerId": data_producer, "transportId": recv_c }),
    );
    assert!(e.contains("is not in room \"two\""), "{e}");
    // Nor does c's data producer reach room one.
    let send_c = transport(&mut c, "send");
    ok(&mut c, "produceData", chat(&send_c, 0));
    assert!(queued(&a)
        .iter()
        .chain(&queued(&b))
        .all(|n| n["method"] != "newDataProducer"));

    // A late joiner of room one finds a's data producer (and not c's) in its join reply.
    let mut d = signaling.connect("one", "d").unwrap();
    let joined = ok(&mut d, "join", json!({ "rtpCapabilities": caps }));
    assert_eq!(
        joined["dataProducers"],
        json!([{ "dataProducerId": data_producer, "peerId": "a", "label": "chat" }])
    );
    let joined = ok(
        &mut signaling.connect("two", "e").unwrap(),
        "join",
        json!({ "rtpCapabilities": caps }),
    );
    assert_eq!(
        joined["dataProducers"].as_array().unwrap().len(),
        1,
        "{joined}"
    );
    assert_ne!(joined["dataProducers"][0]["dataProducerId"], data_producer);
    drop(d);

    // a leaves: b is told its data producer closed, and that b's data consumer closed with it.
    drop(a);
    assert_eq!(
        wait_for(&b, "dataProducerClosed"),
        json!({ "dataProducerId": data_producer, "peerId": "a" })
    );
    let closed = wait_for(&b, "dataConsumerClosed");
    assert_eq!(closed["dataConsumerId"], data_consumer);
    assert_eq!(closed["dataProducerId"], data_producer);
    assert_eq!(closed["reason"], "dataproducerclosed");
    let e = err(
        &mut b,
        "consumeData",
        json!({ "dataProducerId": data_producer }),
    );
    assert!(e.contains("is not in room \"one\""), "{e}");
}

#[test]
fn data_producers_per_peer_are_limited() {
    let (signaling, _) = start_signaling();
    let mut a = signaling.connect("room", "a").unwrap();
    let send = transport(&mut a, "send");
    for stream_id in 0..sfu_examples::demo::MAX_DATA_PRODUCERS_PER_PEER as u16 {
        ok(&mut a, "produceData", chat(&send, stream_id));
    }
    let e = err(&mut a, "produceData", chat(&send, 100));
    assert!(e.contains("at most"), "{e}");
    // The same stream twice, and a bad stream, are refused by the Sfu.
    let mut b = signaling.connect("room", "b").unwrap();
    let send_b = transport(&mut b, "send");
    ok(&mut b, "produceData", chat(&send_b, 0));
    let e = err(&mut b, "produceData", chat(&send_b, 0));
    assert!(e.contains("produceData failed"), "{e}");
    let e = err(&mut b, "produceData", chat(&send_b, 5000));
    assert!(e.contains("produceData failed"), "{e}");
}
