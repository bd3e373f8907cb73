//! The demo room server: a page, WebSocket signaling and the mio runtime.
//!
//! One HTTP (or HTTPS) port, served by one thread on smol ([`HttpServer`]), serves
//! `examples/web` (`index.html` and the bundle `dist/bundle.js`, built by `npm run build`) and
//! the signaling WebSocket at `/ws?room=NAME&peer=ID`. Each room gets one router, created on
//! the least loaded worker when its first peer connects and closed when its last peer leaves.
//!
//! ## The signaling protocol
//!
//! Every message is a JSON text frame. The browser sends requests and gets one reply each:
//!
//! ```text
//! → {"id": 7, "method": "produce", "data": {…}}
//! ← {"id": 7, "ok": true, "data": {"id": "…"}}        or  {"id": 7, "ok": false, "error": "…"}
//! ```
//!
//! | method | data | reply data |
//! |---|---|---|
//! | `getRouterRtpCapabilities` | – | `RtpCapabilities` |
//! | `createWebRtcTransport` | `{direction: "send"\|"recv", forceTcp?, dtlsRole?}` (`dtlsRole`: the server's, `"auto"` (default), `"client"` or `"server"`) | `WebRtcTransportParameters` (with `sctpParameters`: every transport can carry data channels) |
//! | `connectWebRtcTransport` | `{transportId, dtlsParameters}` | `{}` |
//! | `restartIce` | `{transportId}` | `IceParameters` |
//! | `join` | `{rtpCapabilities}` | `{peerId, room, peers, producers: [{producerId, peerId, kind}], dataProducers: [{dataProducerId, peerId, label}], worker, router}` |
//! | `produce` | `{transportId, kind, rtpParameters, paused?}` | `{id}` |
//! | `pauseProducer`, `resumeProducer`, `closeProducer` | `{producerId}` | `{}` |
//! | `consume` | `{producerId, transportId?}` | `ConsumerParameters` + `peerId` (created paused) |
//! | `resumeConsumer`, `pauseConsumer`, `closeConsumer` | `{consumerId}` | `{}` |
//! | `produceData` | `{transportId, sctpStreamParameters, label?, protocol?}` | `{id}` |
//! | `consumeData` | `{dataProducerId, transportId?}` | `DataConsumerParameters` (`{id, dataProducerId, sctpStreamParameters, label, protocol}`, the stream id chosen by the server) + `peerId` |
//! | `setConsumerPreferredLayers` | `{consumerId, spatialLayer}` | `{}` (the simulcast layer to forward) |
//! | `getConsumerStats` | `{consumerId}` | `{packetsSent, bytesSent, currentLayer, keyFrameRequestsReceived}` |
//! | `getTransportStats` | `{transportId}` | the server's counters for the transport |
//!
//! The server sends notifications `{"notification": true, "method": …, "data": …}`:
//! `peerJoined`, `peerLeft`, `newProducer`, `producerClosed`, `consumerClosed`,
//! `consumerPaused`, `consumerResumed`, `newDataProducer` (`{dataProducerId, peerId, label}`),
//! `dataProducerClosed`, `dataConsumerClosed`, `transportState` (`ice`, `dtls` or `sctp`),
//! `transportTuple`, `transportClosed`,
//! `activeSpeaker` (`{peerId, producerId, volume}` every 800 ms while someone speaks, from the
//! room's audio level observer; `{peerId: null}` once when the room falls silent), and `error`
//! (then the socket closes) when the connection itself is refused.
//!
//! The consume flow is mediasoup's: on `newProducer` the client asks to `consume`, the server
//! checks `canConsume` and creates the consumer paused, the client calls
//! `recvTransport.consume(…)`, then `resumeConsumer`, which requests a key frame. Data channels
//! go the same way without the pause: on `newDataProducer` (or the join reply's
//! `dataProducers`) the client asks to `consumeData` and calls `recvTransport.consumeData(…)`.
//! Only the peers of the data producer's room are told of it, and only they may consume it.

mod config;
mod http;
mod server;
mod signaling;
mod tls;
mod websocket;

pub use config::{Command, DemoConfig, Https, USAGE};
pub use http::query_param;
pub use server::{
    serve, HttpServer, ServerCounts, ServerOptions, ServerStats, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_REQUEST_TIMEOUT,
};
pub use signaling::{
    default_media_codecs, PeerSession, Signaling, ACTIVE_SPEAKER_INTERVAL,
    MAX_DATA_PRODUCERS_PER_PEER, MAX_NAME_LEN, MAX_PRODUCERS_PER_PEER, MAX_TRANSPORTS_PER_PEER,
};
pub use tls::TlsIdentity;
