//! A WebRTC transport's SCTP association: one str0m data channel per SCTP stream a data
//! producer or data consumer uses. Channels are pre-negotiated (mediasoup-client opens its
//! channels with `negotiated: true` and the stream id as `id`), so no DCEP goes on the wire.

use rustc_hash::FxHashMap;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};

use super::WebRtcLink;
use crate::event::SctpState;
use crate::ortc::{SctpParameters, SctpStreamParameters};

/// A stream id no data channel can use (WebRTC's ids end at 65534). The link opens a channel
/// on it that never carries data: str0m reports it open once the association is up, which is
/// how the link learns that the association connected.
const PROBE_STREAM: u16 = u16::MAX;

/// What a WebRTC transport keeps for its SCTP association.
pub(crate) struct SctpLink {
    /// What the transport signals (`sctpParameters`).
    pub(crate) parameters: SctpParameters,
    /// The most bytes a data consumer may have buffered (sent, not acknowledged).
    pub(crate) send_buffer_size: usize,
    pub(crate) state: SctpState,
    /// The channel of each stream in use.
    channels: FxHashMap<u16, Channel>,
    /// The stream of each channel, closed ones included until str0m reports them closed.
    streams: FxHashMap<ChannelId, u16>,
    probe: Option<ChannelId>,
}

/// One stream's channel.
struct Channel {
    id: ChannelId,
    /// The buffered amount low threshold to apply once the channel opens.
    threshold: Option<usize>,
}

/// What became of a message given to a data consumer's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// Handed to the association.
    Sent,
    /// Dropped: it would take the channel's buffered amount past the limit, the channel is not
    /// open, or the association cannot take it.
    Dropped,
}

/// What the link's channels report to the Sfu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChannelEvent {
    /// The association is up.
    Connected,
    /// A message arrived on a stream.
    Message {
        stream_id: u16,
        binary: bool,
        data: Vec<u8>,
    },
    /// The buffered amount of a stream's channel fell below its threshold.
    BufferedAmountLow { stream_id: u16 },
    /// The peer opened a channel in-band (DCEP), or sent on one, that no data producer or
    /// consumer asked for: it is closed, and its data dropped.
    Stray,
}

impl SctpLink {
    pub(crate) fn new(parameters: SctpParameters, send_buffer_size: usize) -> Self {
        Self {
            parameters,
            send_buffer_size,
            state: SctpState::New,
            channels: FxHashMap::default(),
            streams: FxHashMap::default(),
            probe: None,
        }
    }

    /// Whether `stream_id` has a channel, or one still closing.
    pub(crate) fn stream_busy(&self, stream_id: u16) -> bool {
        stream_id == PROBE_STREAM || self.streams.values().any(|&s| s == stream_id)
    }
}

impl WebRtcLink {
    /// Starts the association once DTLS is up (this side initiates it when it is the DTLS
    /// client), with the probe channel that reports it connected.
    pub(crate) fn start_sctp(&mut self, dtls_active: bool) {
        let Some(sctp) = self.sctp.as_mut() else {
            return;
        };
        let mut api = self.rtc.direct_api();
        api.start_sctp(dtls_active);
        let probe = api.create_data_channel(ChannelConfig {
            negotiated: Some(PROBE_STREAM),
            ..Default::default()
        });
        sctp.probe = Some(probe);
        sctp.streams.insert(probe, PROBE_STREAM);
    }

    /// Opens the channel of a data producer or consumer on `params.stream_id` (which
    /// [`SctpLink::stream_busy`] says is free).
    pub(crate) fn open_channel(
        &mut self,
        params: &SctpStreamParameters,
        label: &str,
        protocol: &str,
    ) {
        let Some(sctp) = self.sctp.as_mut() else {
            return;
        };
        let reliability = match (params.max_packet_life_time, params.max_retransmits) {
            (Some(lifetime), _) => Reliability::MaxPacketLifetime { lifetime },
            (None, Some(retransmits)) => Reliability::MaxRetransmits { retransmits },
            (None, None) => Reliability::Reliable,
        };
        let id = self.rtc.direct_api().create_data_channel(ChannelConfig {
            label: label.to_owned(),
            ordered: params.is_ordered(),
            reliability,
            negotiated: Some(params.stream_id),
            protocol: protocol.to_owned(),
        });
        sctp.streams.insert(id, params.stream_id);
        sctp.channels.insert(
            params.stream_id,
            Channel {
                id,
                threshold: None,
            },
        );
    }

    /// Closes a stream's channel (its id stays busy until str0m reports the channel closed).
    pub(crate) fn close_channel(&mut self, stream_id: u16) {
        let Some(channel) = self
            .sctp
            .as_mut()
            .and_then(|s| s.channels.remove(&stream_id))
        else {
            return;
        };
        self.rtc.direct_api().close_data_channel(channel.id);
    }

    /// Sends a message on a stream's channel unless its buffered amount would pass the
    /// transport's send buffer size.
    ///
    /// An empty message is dropped: str0m writes it as no DATA chunk at all (RFC 8831 wants one
    /// zero byte under the empty PPID) while an ordered stream still counts it, so the peer
    /// would wait for it forever. Empty messages that arrive are read correctly.
    pub(crate) fn send_message(
        &mut self,
        stream_id: u16,
        binary: bool,
        data: &[u8],
    ) -> SendOutcome {
        let Some(sctp) = self.sctp.as_ref() else {
            return SendOutcome::Dropped;
        };
        if data.is_empty() {
            return SendOutcome::Dropped;
        }
        let limit = sctp.send_buffer_size;
        let Some(id) = sctp.channels.get(&stream_id).map(|c| c.id) else {
            return SendOutcome::Dropped;
        };
        let Some(mut channel) = self.rtc.channel(id) else {
            return SendOutcome::Dropped;
        };
        if channel.buffered_amount().saturating_add(data.len()) > limit {
            return SendOutcome::Dropped;
        }
        match channel.write(binary, data) {
            Ok(true) => SendOutcome::Sent,
            _ => SendOutcome::Dropped,
        }
    }

    /// The bytes a stream's channel has sent and the peer not yet acknowledged.
    pub(crate) fn buffered_amount(&mut self, stream_id: u16) -> usize {
        let Some(id) = self.channel_of(stream_id) else {
            return 0;
        };
        self.rtc.channel(id).map_or(0, |mut c| c.buffered_amount())
    }

    /// Sets when a stream's channel reports its buffered amount low (now, or once it opens).
    pub(crate) fn set_buffered_amount_low_threshold(&mut self, stream_id: u16, threshold: usize) {
        let Some(id) = self.channel_of(stream_id) else {
            return;
        };
        match self.rtc.channel(id) {
            Some(mut c) => c.set_buffered_amount_low_threshold(threshold),
            None => {
                if let Some(c) = self
                    .sctp
                    .as_mut()
                    .and_then(|s| s.channels.get_mut(&stream_id))
                {
                    c.threshold = Some(threshold);
                }
            }
        }
    }

    fn channel_of(&self, stream_id: u16) -> Option<ChannelId> {
        self.sctp.as_ref()?.channels.get(&stream_id).map(|c| c.id)
    }

    /// The core's view of a str0m data channel event; `None` for what only the link acts on.
    pub(crate) fn channel_event(&mut self, e: str0m::Event) -> Option<ChannelEvent> {
        let sctp = self.sctp.as_mut()?;
        match e {
            str0m::Event::ChannelOpen(id, _) => {
                if sctp.probe == Some(id) {
                    return Some(ChannelEvent::Connected);
                }
                let Some(&stream_id) = sctp.streams.get(&id) else {
                    self.rtc.direct_api().close_data_channel(id);
                    return Some(ChannelEvent::Stray);
                };
                match sctp.channels.get_mut(&stream_id) {
                    // Closed before it opened: close it now that str0m can.
                    None => self.rtc.direct_api().close_data_channel(id),
                    Some(c) if c.id != id => self.rtc.direct_api().close_data_channel(id),
                    Some(c) => {
                        if let Some(threshold) = c.threshold.take() {
                            if let Some(mut channel) = self.rtc.channel(id) {
                                channel.set_buffered_amount_low_threshold(threshold);
                            }
                        }
                    }
                }
                None
            }
            str0m::Event::ChannelData(d) => {
                let Some(&stream_id) = sctp.streams.get(&d.id) else {
                    return Some(ChannelEvent::Stray);
                };
                Some(ChannelEvent::Message {
                    stream_id,
                    binary: d.binary,
                    data: d.data,
                })
            }
            str0m::Event::ChannelBufferedAmountLow(id) => {
                let stream_id = *sctp.streams.get(&id)?;
                Some(ChannelEvent::BufferedAmountLow { stream_id })
            }
            str0m::Event::ChannelClose(id) => {
                if let Some(stream_id) = sctp.streams.remove(&id) {
                    if sctp.channels.get(&stream_id).is_some_and(|c| c.id == id) {
                        sctp.channels.remove(&stream_id);
                    }
                }
                None
            }
            _ => None,
        }
    }
}
