//! The relay: a message that arrived on a data producer's stream goes out on the stream of
//! each of its data consumers, with its type (text or binary, empty or not) kept.

use tracing::trace;

use super::DataStream;
use crate::event::Event;
use crate::ids::{DataProducerId, TransportId};
use crate::io::Output;
use crate::sfu::Sfu;
use crate::transport::webrtc::sctp::SendOutcome;
use crate::transport::TransportKind;

impl Sfu {
    /// A message arrived on `stream_id` of transport `tid` (the per-message path).
    pub(crate) fn relay_message(
        &mut self,
        tid: TransportId,
        stream_id: u16,
        binary: bool,
        data: &[u8],
    ) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let max_size = t.max_message_size();
        let Some(&DataStream::Producer(dpid)) = t.data_streams.get(&stream_id) else {
            trace!(transport = %tid, stream_id, "message on a stream no data producer uses");
            t.stats.data_dropped += 1;
            t.stats.messages_unknown_stream += 1;
            return;
        };
        if data.len() > max_size {
            trace!(data_producer = %dpid, len = data.len(), "message too large");
            t.stats.data_dropped += 1;
            if let Some(dp) = self.data_producers.get_mut(&dpid) {
                dp.stats.messages_dropped += 1;
            }
            return;
        }
        self.relay_from(dpid, binary, data);
    }

    /// A message for data producer `dpid` (from its endpoint, or from the application on a
    /// direct transport) goes to each of its data consumers.
    pub(crate) fn relay_from(&mut self, dpid: DataProducerId, binary: bool, data: &[u8]) {
        let Some(dp) = self.data_producers.get_mut(&dpid) else {
            return;
        };
        if dp.paused {
            dp.stats.messages_dropped += 1;
            return;
        }
        dp.stats.messages_received += 1;
        dp.stats.bytes_received += data.len() as u64;
        let mut touched = std::mem::take(&mut self.scratch_data_transports);
        for dcid in &dp.consumers {
            let Some(dc) = self.data_consumers.get_mut(dcid) else {
                continue;
            };
            if dc.paused || dc.producer_paused {
                continue;
            }
            let delivered = match self.transports.get_mut(&dc.transport).map(|t| &mut t.kind) {
                Some(TransportKind::WebRtc(link)) => {
                    let sent =
                        link.send_message(dc.stream.stream_id, binary, data) == SendOutcome::Sent;
                    if sent && !touched.contains(&dc.transport) {
                        touched.push(dc.transport);
                    }
                    sent
                }
                Some(TransportKind::Pipe {
                    sctp: Some(sctp), ..
                }) => {
                    let sent = sctp.send(dc.stream.stream_id, binary, data) == SendOutcome::Sent;
                    if sent && !touched.contains(&dc.transport) {
                        touched.push(dc.transport);
                    }
                    sent
                }
                Some(TransportKind::Direct(link)) if data.len() <= link.max_message_size => {
                    self.out
                        .push_back(Output::Event(Event::DataConsumerMessage {
                            data_consumer: *dcid,
                            binary,
                            data: data.to_vec(),
                        }));
                    true
                }
                Some(
                    TransportKind::Direct(_) | TransportKind::Plain(_) | TransportKind::Pipe { .. },
                )
                | None => false,
            };
            if delivered {
                dc.stats.messages_sent += 1;
                dc.stats.bytes_sent += data.len() as u64;
            } else {
                trace!(data_consumer = %dcid, "message dropped");
                dc.stats.messages_dropped += 1;
            }
        }
        for &t in &touched {
            self.drain(t);
        }
        touched.clear();
        self.scratch_data_transports = touched;
    }

    /// A data consumer's channel reported its buffered amount low.
    pub(crate) fn buffered_amount_low(&mut self, tid: TransportId, stream_id: u16) {
        let Some(t) = self.transports.get_mut(&tid) else {
            return;
        };
        let Some(&DataStream::Consumer(dcid)) = t.data_streams.get(&stream_id) else {
            return;
        };
        let buffered_amount = match &mut t.kind {
            TransportKind::WebRtc(l) => l.buffered_amount(stream_id),
            TransportKind::Pipe { sctp: Some(s), .. } => s.buffered_amount(stream_id),
            _ => 0,
        };
        self.out
            .push_back(Output::Event(Event::DataConsumerBufferedAmountLow {
                data_consumer: dcid,
                buffered_amount,
            }));
    }
}
