//! The demo's signaling protocol: JSON requests from two browsers in one room.

use sfu_examples::demo::{default_media_codecs, PeerSession, Signaling as DemoSignaling};
use sfu_runtime_mio::{Runtime, RuntimeConfig};

/// The demo's room logic on a one-worker runtime. Its threads do not survive a fork, so it is
/// built in the process that runs the inputs, and kept for all of them.
///
/// An input is lines of JSON; a line starting with `>` is sent by the second peer, and `$0` in
/// a line is replaced by the id (`data.id`) of the latest reply that had one, so that the
/// fuzzer can name the transports and producers it made. Both peers join the room before the
/// first line and leave after the last.
pub struct Signaling {
    signaling: DemoSignaling,
    runtime: Runtime,
    inputs: u64,
}

impl Signaling {
    /// The runtime and the room logic.
    pub fn new() -> Self {
        let runtime = Runtime::start(RuntimeConfig {
            workers: 1,
            ..RuntimeConfig::default()
        })
        .expect("runtime starts on loopback");
        let signaling = DemoSignaling::new(runtime.workers().to_vec(), default_media_codecs());
        Self {
            signaling,
            runtime,
            inputs: 0,
        }
    }

    /// Feeds one input.
    pub fn run(&mut self, data: &[u8]) {
        self.inputs += 1;
        let text = String::from_utf8_lossy(data);
        let connect = |name: &str| -> PeerSession {
            let peer = format!("{name}{}", self.inputs);
            self.signaling
                .connect("fuzz", &peer)
                .expect("fresh peer ids")
        };
        let mut peers = [connect("a"), connect("b")];
        // `$0` in a request stands for the id of the object the latest reply named.
        let mut latest_id: Option<String> = None;
        for line in text.lines() {
            let (peer, request) = match line.strip_prefix('>') {
                Some(rest) => (&mut peers[1], rest),
                None => (&mut peers[0], line),
            };
            let request = match &latest_id {
                Some(id) => request.replace("$0", id),
                None => request.to_owned(),
            };
            let reply = peer.handle_text(&request);
            let reply: serde_json::Value =
                serde_json::from_str(&reply).expect("every reply is JSON");
            assert!(reply.get("ok").is_some_and(serde_json::Value::is_boolean));
            if let Some(id) = reply
                .pointer("/data/id")
                .and_then(serde_json::Value::as_str)
            {
                latest_id = Some(id.to_owned());
            }
            while peers[0].notifications().try_recv().is_ok() {}
            while peers[1].notifications().try_recv().is_ok() {}
            while let Ok((worker, event)) = self.runtime.events().try_recv() {
                self.signaling.handle_event(worker, &event);
            }
        }
    }
}

impl Default for Signaling {
    fn default() -> Self {
        Self::new()
    }
}
