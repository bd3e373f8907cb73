//! Data producers: SCTP streams a transport receives messages on.

use super::*;

impl Sfu {
    /// Starts receiving a data channel on a transport (mediasoup's `produceData`): messages on
    /// the stream `sctp_stream_parameters.stream_id` go to the data producer's data consumers.
    /// On a pipe transport with SCTP, that is the stream the peer's pipe data consumer sends
    /// on (its `sctpStreamParameters`).
    pub fn produce_data(
        &mut self,
        transport: TransportId,
        options: ProduceDataOptions,
    ) -> Result<DataProducerId, Error> {
        let ProduceDataOptions {
            sctp_stream_parameters,
            label,
            protocol,
            paused,
        } = options;
        let t = self.transport(transport)?;
        let stream = match &t.kind {
            TransportKind::WebRtc(link) => {
                let stream = sctp_stream_parameters.validated()?;
                let stream_id = stream.stream_id;
                let sctp = link.sctp.as_ref().ok_or(Error::SctpNotEnabled(transport))?;
                if stream_id >= sctp.parameters.mis {
                    return Err(Error::StreamIdOutOfRange {
                        stream_id,
                        streams: sctp.parameters.mis,
                    });
                }
                if t.data_streams.contains_key(&stream_id) || sctp.stream_busy(stream_id) {
                    return Err(Error::StreamIdInUse(stream_id));
                }
                stream
            }
            // The application's messages: no stream on the wire, a number to key them by.
            TransportKind::Direct(_) => t
                .free_stream_id(u16::MAX)
                .map(SctpStreamParameters::reliable)
                .ok_or(Error::NoFreeStreamId(transport))?,
            // The peer pipe transport's pipe data consumer sends on this stream.
            TransportKind::Pipe { sctp, .. } => {
                let stream = sctp_stream_parameters.validated()?;
                let stream_id = stream.stream_id;
                let sctp = sctp.as_ref().ok_or(Error::SctpNotEnabled(transport))?;
                if stream_id >= sctp.parameters.mis {
                    return Err(Error::StreamIdOutOfRange {
                        stream_id,
                        streams: sctp.parameters.mis,
                    });
                }
                if t.data_streams.contains_key(&stream_id) {
                    return Err(Error::StreamIdInUse(stream_id));
                }
                stream
            }
            // Plain transports carry no SCTP.
            TransportKind::Plain(_) => return Err(Error::SctpNotEnabled(transport)),
        };
        let stream_id = stream.stream_id;
        let router = t.router;
        let id = DataProducerId::from_raw(self.next_u64());
        let t = self.transport_mut(transport)?;
        t.data_streams.insert(stream_id, DataStream::Producer(id));
        if let Some(link) = t.webrtc_mut() {
            link.open_channel(&stream, &label, &protocol);
        }
        self.data_producers.insert(
            id,
            DataProducer {
                router,
                transport,
                stream,
                label,
                protocol,
                paused,
                consumers: Vec::new(),
                stats: DataProducerStats::default(),
            },
        );
        self.kick(transport);
        info!(data_producer = %id, transport = %transport, stream_id, "data producer created");
        Ok(id)
    }

    /// Closes a data producer; its data consumers close too and report
    /// [`Event::DataConsumerClosed`]. Reports [`Event::DataProducerClosed`].
    pub fn close_data_producer(&mut self, data_producer: DataProducerId) -> Result<(), Error> {
        let dp = self
            .data_producers
            .remove(&data_producer)
            .ok_or(Error::UnknownDataProducer(data_producer))?;
        for dcid in &dp.consumers {
            self.remove_data_consumer(*dcid, Some(DataConsumerCloseReason::DataProducerClosed));
        }
        if let Some(t) = self.transports.get_mut(&dp.transport) {
            t.data_streams.remove(&dp.stream.stream_id);
            if let Some(link) = t.webrtc_mut() {
                link.close_channel(dp.stream.stream_id);
            }
            if let Some(sctp) = t.pipe_sctp_mut() {
                sctp.close_stream(dp.stream.stream_id);
            }
        }
        self.out
            .push_back(Output::Event(Event::DataProducerClosed { data_producer }));
        self.kick(dp.transport);
        info!(data_producer = %data_producer, "data producer closed");
        Ok(())
    }

    /// Pauses a data producer: its messages are dropped; its data consumers learn of it.
    pub fn pause_data_producer(&mut self, data_producer: DataProducerId) -> Result<(), Error> {
        self.set_data_producer_paused(data_producer, true)
    }

    /// Resumes a data producer.
    pub fn resume_data_producer(&mut self, data_producer: DataProducerId) -> Result<(), Error> {
        self.set_data_producer_paused(data_producer, false)
    }

    fn set_data_producer_paused(&mut self, id: DataProducerId, paused: bool) -> Result<(), Error> {
        let dp = self.data_producer_mut(id)?;
        if dp.paused == paused {
            return Ok(());
        }
        dp.paused = paused;
        let consumers = dp.consumers.clone();
        for dcid in consumers {
            if let Some(dc) = self.data_consumers.get_mut(&dcid) {
                dc.producer_paused = paused;
                let event = if paused {
                    Event::DataConsumerProducerPaused {
                        data_consumer: dcid,
                    }
                } else {
                    Event::DataConsumerProducerResumed {
                        data_consumer: dcid,
                    }
                };
                self.out.push_back(Output::Event(event));
            }
        }
        debug!(data_producer = %id, paused, "data producer paused state");
        Ok(())
    }

    /// A data producer's counters.
    pub fn data_producer_stats(
        &self,
        data_producer: DataProducerId,
    ) -> Result<DataProducerStats, Error> {
        self.data_producers
            .get(&data_producer)
            .map(|dp| dp.stats.clone())
            .ok_or(Error::UnknownDataProducer(data_producer))
    }

    /// A data producer's SCTP stream parameters, as validated (`ordered` filled in).
    pub fn data_producer_sctp_stream_parameters(
        &self,
        data_producer: DataProducerId,
    ) -> Result<SctpStreamParameters, Error> {
        self.data_producers
            .get(&data_producer)
            .map(|dp| dp.stream)
            .ok_or(Error::UnknownDataProducer(data_producer))
    }

    /// Whether a data producer is paused.
    pub fn data_producer_paused(&self, data_producer: DataProducerId) -> Result<bool, Error> {
        self.data_producers
            .get(&data_producer)
            .map(|dp| dp.paused)
            .ok_or(Error::UnknownDataProducer(data_producer))
    }
}
