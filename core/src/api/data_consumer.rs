//! Data consumers: a data producer's messages sent on an SCTP stream of another transport.

use super::*;

impl Sfu {
    /// Starts sending a data producer's messages on a transport (mediasoup's `consumeData`).
    /// The Sfu picks the lowest stream id free on the transport; reliability not given in
    /// `options` is the data producer's, and the label and protocol are the data producer's.
    /// On a direct transport the messages reach the application as
    /// [`Event::DataConsumerMessage`], each once and in order. On a pipe transport with SCTP
    /// it is a pipe data consumer: the peer pipe transport produces with its
    /// `sctpStreamParameters` (see [`pipe_produce_data_options`]).
    pub fn consume_data(
        &mut self,
        transport: TransportId,
        options: ConsumeDataOptions,
    ) -> Result<DataConsumed, Error> {
        let dp = self
            .data_producers
            .get(&options.data_producer)
            .ok_or(Error::UnknownDataProducer(options.data_producer))?;
        let t = self.transport(transport)?;
        if dp.router != t.router {
            return Err(Error::DataProducerWrongRouter(options.data_producer));
        }
        let stream = match &t.kind {
            TransportKind::WebRtc(link) => {
                let sctp = link.sctp.as_ref().ok_or(Error::SctpNotEnabled(transport))?;
                let stream_id = t
                    .free_stream_id(sctp.parameters.os)
                    .ok_or(Error::NoFreeStreamId(transport))?;
                consumer_stream(stream_id, &dp.stream, &options).validated()?
            }
            // The application receives every message once, in order.
            TransportKind::Direct(_) => t
                .free_stream_id(u16::MAX)
                .map(SctpStreamParameters::reliable)
                .ok_or(Error::NoFreeStreamId(transport))?,
            // A pipe data consumer: the peer's pipe data producer reads this stream.
            TransportKind::Pipe { sctp, .. } => {
                let sctp = sctp.as_ref().ok_or(Error::SctpNotEnabled(transport))?;
                let stream_id = t
                    .free_stream_id(sctp.parameters.os)
                    .ok_or(Error::NoFreeStreamId(transport))?;
                consumer_stream(stream_id, &dp.stream, &options).validated()?
            }
            // Plain transports carry no SCTP.
            TransportKind::Plain(_) => return Err(Error::SctpNotEnabled(transport)),
        };
        let stream_id = stream.stream_id;
        let (label, protocol) = (dp.label.clone(), dp.protocol.clone());
        let producer_paused = dp.paused;
        let id = DataConsumerId::from_raw(self.next_u64());
        let t = self.transport_mut(transport)?;
        t.data_streams.insert(stream_id, DataStream::Consumer(id));
        if let Some(link) = t.webrtc_mut() {
            link.open_channel(&stream, &label, &protocol);
        }
        if let Some(sctp) = t.pipe_sctp_mut() {
            sctp.open_outbound(&stream);
        }
        if let Some(dp) = self.data_producers.get_mut(&options.data_producer) {
            dp.consumers.push(id);
        }
        let parameters = DataConsumerParameters {
            id: id.to_string(),
            data_producer_id: options.data_producer.to_string(),
            sctp_stream_parameters: stream,
            label,
            protocol,
        };
        self.data_consumers.insert(
            id,
            DataConsumer {
                transport,
                data_producer: options.data_producer,
                stream,
                paused: options.paused,
                producer_paused,
                stats: DataConsumerStats::default(),
            },
        );
        self.kick(transport);
        info!(data_consumer = %id, transport = %transport, stream_id, "data consumer created");
        Ok(DataConsumed { id, parameters })
    }

    /// Closes a data consumer.
    pub fn close_data_consumer(&mut self, data_consumer: DataConsumerId) -> Result<(), Error> {
        if !self.data_consumers.contains_key(&data_consumer) {
            return Err(Error::UnknownDataConsumer(data_consumer));
        }
        self.remove_data_consumer(data_consumer, None);
        self.run_work();
        Ok(())
    }

    /// Pauses a data consumer: nothing is sent on it.
    pub fn pause_data_consumer(&mut self, data_consumer: DataConsumerId) -> Result<(), Error> {
        self.data_consumer_mut(data_consumer)?.paused = true;
        Ok(())
    }

    /// Resumes a data consumer.
    pub fn resume_data_consumer(&mut self, data_consumer: DataConsumerId) -> Result<(), Error> {
        self.data_consumer_mut(data_consumer)?.paused = false;
        Ok(())
    }

    /// A data consumer's counters, with its buffered amount now.
    pub fn data_consumer_stats(
        &mut self,
        data_consumer: DataConsumerId,
    ) -> Result<DataConsumerStats, Error> {
        let buffered_amount = self.data_consumer_buffered_amount(data_consumer)?;
        let dc = self.data_consumer_mut(data_consumer)?;
        let mut stats = dc.stats.clone();
        stats.buffered_amount = buffered_amount;
        Ok(stats)
    }

    /// The bytes a data consumer has sent and its endpoint not yet acknowledged (mediasoup's
    /// `getBufferedAmount`).
    pub fn data_consumer_buffered_amount(
        &mut self,
        data_consumer: DataConsumerId,
    ) -> Result<usize, Error> {
        let dc = self.data_consumer_mut(data_consumer)?;
        let (tid, stream_id) = (dc.transport, dc.stream.stream_id);
        Ok(match self.transports.get_mut(&tid).map(|t| &mut t.kind) {
            Some(TransportKind::WebRtc(l)) => l.buffered_amount(stream_id),
            Some(TransportKind::Pipe { sctp: Some(s), .. }) => s.buffered_amount(stream_id),
            _ => 0,
        })
    }

    /// Reports [`Event::DataConsumerBufferedAmountLow`] when the data consumer's buffered
    /// amount falls below `threshold` bytes (mediasoup's `setBufferedAmountLowThreshold`).
    pub fn set_data_consumer_buffered_amount_low_threshold(
        &mut self,
        data_consumer: DataConsumerId,
        threshold: usize,
    ) -> Result<(), Error> {
        let dc = self.data_consumer_mut(data_consumer)?;
        let (tid, stream_id) = (dc.transport, dc.stream.stream_id);
        match self.transports.get_mut(&tid).map(|t| &mut t.kind) {
            Some(TransportKind::WebRtc(l)) => {
                l.set_buffered_amount_low_threshold(stream_id, threshold);
            }
            Some(TransportKind::Pipe { sctp: Some(s), .. }) => {
                s.set_buffered_amount_low_threshold(stream_id, threshold);
            }
            _ => {}
        }
        self.kick(tid);
        Ok(())
    }

    /// A data consumer's SCTP stream parameters.
    pub fn data_consumer_sctp_stream_parameters(
        &self,
        data_consumer: DataConsumerId,
    ) -> Result<SctpStreamParameters, Error> {
        self.data_consumers
            .get(&data_consumer)
            .map(|dc| dc.stream)
            .ok_or(Error::UnknownDataConsumer(data_consumer))
    }

    /// Forgets a data consumer and closes its channel; `reason` reports it when it was not the
    /// application's own call.
    pub(super) fn remove_data_consumer(
        &mut self,
        data_consumer: DataConsumerId,
        reason: Option<DataConsumerCloseReason>,
    ) {
        let Some(dc) = self.data_consumers.remove(&data_consumer) else {
            return;
        };
        if let Some(dp) = self.data_producers.get_mut(&dc.data_producer) {
            dp.consumers.retain(|&x| x != data_consumer);
        }
        if let Some(t) = self.transports.get_mut(&dc.transport) {
            t.data_streams.remove(&dc.stream.stream_id);
            if let Some(link) = t.webrtc_mut() {
                link.close_channel(dc.stream.stream_id);
            }
            if let Some(sctp) = t.pipe_sctp_mut() {
                sctp.close_stream(dc.stream.stream_id);
            }
        }
        if let Some(reason) = reason {
            self.out.push_back(Output::Event(Event::DataConsumerClosed {
                data_consumer,
                reason,
            }));
        }
        self.drain(dc.transport);
        info!(data_consumer = %data_consumer, "data consumer closed");
    }
}

/// A data consumer's stream: the producer's reliability, with what the options override.
fn consumer_stream(
    stream_id: u16,
    producer: &SctpStreamParameters,
    options: &ConsumeDataOptions,
) -> SctpStreamParameters {
    let mut stream = SctpStreamParameters {
        stream_id,
        ..*producer
    };
    match options.ordered {
        Some(true) => {
            stream.ordered = Some(true);
            stream.max_packet_life_time = None;
            stream.max_retransmits = None;
        }
        Some(false) => stream.ordered = Some(false),
        None => {}
    }
    if options.max_packet_life_time.is_some() || options.max_retransmits.is_some() {
        stream.max_packet_life_time = options.max_packet_life_time;
        stream.max_retransmits = options.max_retransmits;
        stream.ordered = options.ordered.or(Some(false));
    }
    stream
}
