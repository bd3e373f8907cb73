//! Key frame requests to producers, throttled per encoding.

use super::*;

impl Sfu {
    /// Asks a producer's endpoint for a key frame on one encoding, at most once per
    /// `key_frame_request_interval`; a request inside the interval is sent when it ends.
    pub(crate) fn request_key_frame(&mut self, pid: ProducerId, layer: usize) {
        let now = self.now;
        let interval = self.config.key_frame_request_interval;
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        if p.kind != MediaKind::Video {
            return;
        }
        let Some(e) = p.encodings.get_mut(layer) else {
            return;
        };
        if let Some(last) = e.key_frame_sent_at {
            if now < last + interval {
                if !e.key_frame_pending {
                    e.key_frame_pending = true;
                    self.timers
                        .schedule(TimerKey::KeyFrame(pid, layer), last + interval);
                }
                return;
            }
        }
        self.request_key_frame_now(pid, layer);
    }

    pub(super) fn request_key_frame_now(&mut self, pid: ProducerId, layer: usize) {
        let now = self.now;
        // No keys yet (before DTLS is up no RTCP can leave) or no SSRC known for the encoding:
        // nothing is asked, and nothing throttles the next request. Packets only arrive once
        // DTLS is up, and each one that finds a consumer waiting for a key frame asks again.
        if !self.send_key_frame_request(pid, layer) {
            return;
        }
        let Some(p) = self.producers.get_mut(&pid) else {
            return;
        };
        if let Some(e) = p.encodings.get_mut(layer) {
            e.key_frame_sent_at = Some(now);
            e.key_frame_pending = false;
        }
        p.stats.key_frame_requests_sent += 1;
        trace!(producer = %pid, layer, "key frame request sent");
    }

    /// A transport just became able to receive: its consumers need a key frame.
    pub(crate) fn request_key_frames_for_transport(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else {
            return;
        };
        let wanted: Vec<(ProducerId, usize)> = t
            .consumers_by_mid
            .values()
            .filter_map(|cid| self.consumers.get(cid))
            .filter(|c| c.kind == MediaKind::Video && c.is_forwarding())
            .flat_map(|c| c.key_frame_layers().map(move |layer| (c.producer, layer)))
            .collect();
        for (pid, layer) in wanted {
            self.request_key_frame(pid, layer);
        }
    }
}
