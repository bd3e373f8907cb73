//! Counters the [`Sfu`](crate::Sfu) keeps, and the snapshots its `*_stats` calls return.

use crate::event::{DtlsState, IceState, SctpState, TransportTuple};

/// Datagrams the Sfu dropped before they reached any transport, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SfuStats {
    /// Datagrams handed to `handle_input`.
    pub datagrams_received: u64,
    /// Longer than `SfuConfig::max_datagram_size`.
    pub dropped_oversized: u64,
    /// Neither STUN, DTLS, RTP nor RTCP.
    pub dropped_malformed: u64,
    /// Not STUN, from a path no transport has validated.
    pub dropped_unknown_source: u64,
    /// STUN that is not a binding request naming a transport's ufrag (on a validated path: the
    /// path's transport's ufrag).
    pub dropped_stun_unknown_ufrag: u64,
    /// A binding request whose MESSAGE-INTEGRITY does not verify with the transport's password,
    /// or that arrived at an address the transport does not listen on.
    pub dropped_stun_unauthenticated: u64,
    /// A binding request from a new path to a transport that knows its maximum of paths and
    /// can forget none (the only one it keeps is the one media goes out on).
    pub dropped_too_many_tuples: u64,
    /// Times a transport's WebRTC stack was polled (a measure of work that must grow with
    /// traffic and consumers, never with idle transports).
    pub transport_polls: u64,
    /// Panics caught while a transport was served; each closed that transport (a bug: please
    /// report it).
    pub transport_panics: u64,
}

/// What an Sfu holds: the size of each of its tables. After objects close, every figure returns
/// to what it was before they were made (`timer_entries` within a bounded factor of
/// `timers`, as cancelled deadlines are dropped lazily).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Footprint {
    /// Routers.
    pub routers: usize,
    /// Transports.
    pub transports: usize,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Audio level observers.
    pub observers: usize,
    /// Entries in the routers' lists of their transports, producers and observers.
    pub router_members: usize,
    /// Network paths the demux routes.
    pub paths: usize,
    /// ICE ufrags the demux routes.
    pub ufrags: usize,
    /// Plain transports' local addresses the demux routes.
    pub local_addresses: usize,
    /// Live deadlines.
    pub timers: usize,
    /// Entries in the deadline heap, stale ones included.
    pub timer_entries: usize,
    /// Outputs waiting for `poll_output`.
    pub queued_outputs: usize,
    /// Sent datagrams' buffers kept for reuse (at most `MAX_SPARE_BUFFERS`).
    pub spare_buffers: usize,
}

/// A transport's state and counters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TransportStats {
    /// ICE state.
    pub ice_state: IceState,
    /// DTLS state.
    pub dtls_state: DtlsState,
    /// The path media is sent over, once there is one.
    pub selected_tuple: Option<TransportTuple>,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// SRTP datagrams that yielded no packet, one count each: SRTP before DTLS completed (no
    /// keys yet); failing SRTP authentication (forged or corrupted); a replay, or older than
    /// the SRTP replay window (RFC 3711 section 3.3.2: 128 packets behind the highest), checked
    /// before anything else sees the packet; an SSRC no producer of this transport declared or
    /// resolves by mid and rid (another transport's SSRC included), or past the number of SSRCs
    /// a transport keeps; not RTP once decrypted; an RTX packet without an original (padding
    /// probes) or for an encoding whose SSRC is not known yet. Duplicates that pass SRTP (a
    /// retransmission of a packet already received) are the producer's
    /// [`ProducerStats::packets_discarded`].
    pub rtp_dropped: u64,
    /// Datagrams the WebRTC stack rejected with an error (for example a broken DTLS record).
    pub rtc_errors: u64,
    /// SRTCP datagrams dropped, one count each: before DTLS completed, failing authentication,
    /// replayed or older than the SRTCP replay window; or, once decrypted, a compound with a
    /// packet that is not well-formed (a length field that runs past the end or cuts a packet
    /// short, a truncated header, a version other than 2). The packets of such a compound
    /// before the broken one are acted on; the broken one and those after it are not.
    pub rtcp_dropped: u64,
    /// DTLS datagrams that are not whole, well-formed DTLS 1.2 records (dropped before the DTLS
    /// stack, which would discard them silently).
    pub dtls_dropped: u64,
    /// The SRTP crypto suite the DTLS handshake negotiated, named as mediasoup's
    /// `srtpCryptoSuite` (`"AEAD_AES_256_GCM"`, `"AEAD_AES_128_GCM"` or
    /// `"AES_CM_128_HMAC_SHA1_80"`); `None` until DTLS connects.
    pub srtp_profile: Option<&'static str>,
    /// The SCTP association's state (`None` for a transport without SCTP).
    pub sctp_state: Option<SctpState>,
    /// Data channel messages dropped on arrival, each counted once: on a stream a data
    /// consumer of this transport sends on, or on a channel the peer opened in-band (DCEP) that
    /// no data producer asked for (such a channel is closed, and its opening counted too);
    /// larger than the transport's `max_sctp_message_size`; DTLS application data on a
    /// transport without SCTP; on a pipe, on a stream no data producer reads (see
    /// `messages_unknown_stream`), or under a PPID that is neither string nor binary. (On a
    /// WebRTC transport, data on a pre-negotiated stream the Sfu has no channel for is
    /// discarded by str0m, uncounted.)
    pub data_dropped: u64,
    /// A plain transport's RTCP path when RTCP is not muxed, once known.
    pub rtcp_tuple: Option<TransportTuple>,
    /// Datagrams that arrived at a plain transport's address from another than its remote
    /// (once `connect` gave it or comedia learned it), or before it has one: without comedia,
    /// or, with comedia, datagrams that were not a valid RTP or RTCP packet (with SRTP: one
    /// that authenticates), each counted once. Such a datagram changes nothing else.
    pub dropped_foreign_source: u64,
    /// DTLS application data that authenticated but held no intact SCTP packet (too short, or
    /// its CRC-32C checksum fails), or, on a pipe transport with SCTP, an SCTP datagram from
    /// its peer whose checksum fails: dropped before the SCTP stack sees it.
    pub sctp_dropped: u64,
    /// Messages that arrived on an SCTP stream no data producer of the transport reads (on a
    /// pipe: a stream the peer sends on that nobody produced here), each counted once (they
    /// are in `data_dropped` too).
    pub messages_unknown_stream: u64,
    /// The bandwidth estimated toward the endpoint, in bits per second (mediasoup's
    /// `availableOutgoingBitrate`): from the endpoint's transport-wide congestion control
    /// feedback, bounded by its REMB and by the transport's minimum and maximum outgoing
    /// bitrates; the initial available outgoing bitrate until feedback comes.
    pub available_outgoing_bitrate: u64,
    /// Transport-wide congestion control feedback ignored, one count per report of a packet:
    /// about packets the transport never sent, sent too long ago to be remembered (3 s, or
    /// 2,048 packets), or already reported received; and one per feedback packet that came
    /// before anything was sent or changed nothing.
    pub feedback_ignored: u64,
    /// Probe clusters sent: short bursts of padding above the estimate, sent while a consumer
    /// is below the layer it may get.
    pub probe_clusters: u64,
    /// Probe clusters the path carried.
    pub probe_clusters_carried: u64,
    /// Probe clusters the path did not carry (or whose feedback never came).
    pub probe_clusters_failed: u64,
    /// Probe padding packets sent.
    pub probe_packets: u64,
    /// Video packets the pacer dropped: of enhancement layers (see
    /// [`pacer_dropped_enhancement`](Self::pacer_dropped_enhancement)), or whose producer's
    /// copy was gone when their turn came.
    pub pacer_dropped: u64,
    /// Enhancement-layer packets (temporal layers above the lowest, of consumers whose layers
    /// the SFU selects) the pacer dropped, whole pictures at a time: pictures not started
    /// within 100 ms behind base layers, with the consumer's queued packets of the same or
    /// higher temporal layers (which may refer to them), and those still queued when a base
    /// layer packet of their stream was ready. Padding takes each one's place and number, and
    /// the consumer's layer filter stops those layers until a switching-up point.
    pub pacer_dropped_enhancement: u64,
    /// Video packets the pacer refused because its queue was full.
    pub pacer_refused: u64,
}

/// A producer's counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// RTP packets received (after SRTP, retransmissions included once recovered).
    pub packets_received: u64,
    /// RTP payload bytes received.
    pub bytes_received: u64,
    /// Key frame requests sent to the producer's endpoint.
    pub key_frame_requests_sent: u64,
    /// Packets that arrived as retransmissions and filled a gap.
    pub packets_retransmitted: u64,
    /// Packets that passed SRTP but were not taken: a sequence number already received (a
    /// retransmission of a packet that arrived after all, or one retransmitted twice), one too
    /// far behind the highest to place, a retransmission from before a jump, or the first
    /// packet after a jump of 3,000 or more, which the next sequential packet must confirm
    /// (RFC 3550 Appendix A.1) before the stream moves. SRTP replays never get this far: they
    /// are the transport's [`TransportStats::rtp_dropped`].
    pub packets_discarded: u64,
    /// Packets lost on the way from the endpoint (expected minus received, over all encodings).
    pub packets_lost: i64,
    /// The highest interarrival jitter of the producer's encodings, in RTP timestamp units.
    pub jitter: u32,
    /// Sequence numbers asked for again with NACKs (each retry counted).
    pub nacked_packets: u64,
    /// Missing packets that arrived after all, answering a NACK or late.
    pub packets_recovered: u64,
    /// Missing packets given up on (retries spent, too old, or before a key frame).
    pub packets_given_up: u64,
    /// Per encoding (simulcast layer), packets received.
    pub packets_per_encoding: Vec<u64>,
    /// Bits per second each encoding brings, measured over the last second.
    pub bitrate_per_encoding: Vec<u64>,
    /// For a stream with spatial layers inside it (VP9 SVC): bits per second each spatial
    /// layer's own packets bring, measured over the last second (empty otherwise).
    pub bitrate_per_spatial_layer: Vec<u64>,
    /// For VP8 encodings with temporal layers: per encoding, bits per second each temporal
    /// layer's own packets bring, measured over the last second (empty otherwise).
    pub bitrate_per_temporal_layer: Vec<Vec<u64>>,
    /// Video packets whose payload descriptor could not be read (dropped for consumers that
    /// select layers).
    pub packets_bad_descriptor: u64,
    /// The score of each encoding (mediasoup's `producer.score`), as last computed (see
    /// [`Event::ProducerScore`](crate::Event::ProducerScore)).
    pub score: Vec<crate::ProducerScore>,
}

/// A data producer's counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DataProducerStats {
    /// Messages received from the endpoint and taken (relayed to the data consumers).
    pub messages_received: u64,
    /// Bytes of those messages.
    pub bytes_received: u64,
    /// Messages dropped on arrival: larger than the transport's maximum message size, or
    /// received while the data producer was paused.
    pub messages_dropped: u64,
}

/// A data consumer's counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DataConsumerStats {
    /// Messages handed to the SCTP association for the endpoint.
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages not sent: the send buffer would have gone past its limit, the channel was not
    /// open yet, or the endpoint cannot take a message that large.
    pub messages_dropped: u64,
    /// Bytes sent but not yet acknowledged by the endpoint.
    pub buffered_amount: usize,
}

/// A consumer's counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// RTP packets forwarded to the consumer's endpoint.
    pub packets_sent: u64,
    /// RTP payload bytes forwarded.
    pub bytes_sent: u64,
    /// Packets not forwarded while waiting for a key frame to start or switch the stream.
    pub packets_waiting_for_key_frame: u64,
    /// The producer encoding (simulcast layer index) currently forwarded.
    pub current_layer: Option<usize>,
    /// Of a producer with layers inside its stream (VP9 SVC, temporal layers): the spatial
    /// layer currently forwarded (the ones below included).
    pub current_spatial_layer: Option<u8>,
    /// The temporal layer currently forwarded (the ones below included), likewise.
    pub current_temporal_layer: Option<u8>,
    /// The highest temporal layer the bandwidth estimate allows (`None`: no limit): inside
    /// the target encoding when the encodings carry temporal layers, or for spatial layers
    /// inside one stream when even the lowest does not fit.
    pub target_temporal_layer: Option<u8>,
    /// Packets of layers above the ones the consumer gets, not forwarded.
    pub packets_dropped_for_layers: u64,
    /// Sequence numbers filled with a padding packet: kept for a packet that arrived late
    /// (repaired, or reordered) and then turned out to be of a layer the consumer does not get.
    pub numbers_filled: u64,
    /// The highest encoding the transport's bandwidth estimate allows this consumer, as the
    /// allocator last chose (`None`: no limit below its preferred encoding).
    pub target_layer: Option<usize>,
    /// The consumer's priority in sharing its transport's bandwidth (1..=255).
    pub priority: u8,
    /// Key frame requests (PLI/FIR) received from the consumer's endpoint.
    pub key_frame_requests_received: u64,
    /// Sequence numbers the endpoint asked for again with NACKs.
    pub nacked_packets: u64,
    /// Packets sent again in answer to NACKs.
    pub packets_retransmitted: u64,
    /// Asked-for packets not sent again: the retransmission budget was spent.
    pub retransmissions_refused: u64,
    /// Asked-for packets not sent again: of layers above the ones the consumer gets now (it
    /// moved down after they were sent).
    pub retransmissions_of_dropped_layers: u64,
    /// Asked-for packets that were no longer remembered.
    pub retransmissions_not_found: u64,
    /// The fraction of packets lost (out of 256) in the endpoint's latest receiver report.
    pub fraction_lost: u8,
    /// Packets lost in total, as the endpoint's latest receiver report says.
    pub packets_lost: i32,
    /// Round-trip time to the endpoint, smoothed, from its receiver reports.
    pub round_trip_time: Option<std::time::Duration>,
    /// The consumer's score and its producer's (mediasoup's `consumer.score`), as last
    /// computed (see [`Event::ConsumerScore`](crate::Event::ConsumerScore)).
    pub score: crate::ConsumerScore,
}
