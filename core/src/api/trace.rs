//! Trace events on demand (mediasoup's `enableTraceEvent`).

use super::*;
use crate::trace::{TraceEventType, TraceFlags};

impl Sfu {
    /// Sets the trace event types a producer reports as [`Event::ProducerTrace`] (mediasoup's
    /// `producer.enableTraceEvent(types)`): `rtp` (every packet received), `keyframe` (key
    /// frame packets received), `nack`, `pli` and `fir` (sent to its endpoint). An empty list
    /// turns tracing off; each call
    /// replaces the previous set. Other types are refused with
    /// [`Error::UnsupportedTraceEventType`].
    pub fn enable_producer_trace_event(
        &mut self,
        producer: ProducerId,
        types: &[TraceEventType],
    ) -> Result<(), Error> {
        let flags = media_flags(types)?;
        self.producer_mut(producer)?.trace = flags;
        Ok(())
    }

    /// Sets the trace event types a consumer reports as [`Event::ConsumerTrace`] (mediasoup's
    /// `consumer.enableTraceEvent(types)`): `rtp` (every packet sent, retransmissions aside),
    /// `keyframe` (key frame packets sent), `nack`, `pli` and `fir` (received from its
    /// endpoint). As for producers otherwise.
    pub fn enable_consumer_trace_event(
        &mut self,
        consumer: ConsumerId,
        types: &[TraceEventType],
    ) -> Result<(), Error> {
        let flags = media_flags(types)?;
        self.consumer_mut(consumer)?.trace = flags;
        Ok(())
    }

    /// Sets the trace event types a transport reports as [`Event::TransportTrace`]
    /// (mediasoup's `transport.enableTraceEvent(types)`): `bwe`, the bandwidth estimate toward
    /// the endpoint and what its consumers want, on every transport-wide congestion control
    /// feedback, and `probation`, each probe padding packet sent. The media types are refused
    /// with [`Error::UnsupportedTraceEventType`].
    pub fn enable_transport_trace_event(
        &mut self,
        transport: TransportId,
        types: &[TraceEventType],
    ) -> Result<(), Error> {
        let flags = TraceFlags::of(types, &TraceEventType::TRANSPORT)
            .map_err(Error::UnsupportedTraceEventType)?;
        self.transport_mut(transport)?.trace = flags;
        Ok(())
    }
}

fn media_flags(types: &[TraceEventType]) -> Result<TraceFlags, Error> {
    TraceFlags::of(types, &TraceEventType::MEDIA).map_err(Error::UnsupportedTraceEventType)
}
