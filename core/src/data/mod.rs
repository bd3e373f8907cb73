//! Data producers and data consumers: SCTP streams whose messages the Sfu relays, each
//! message to every data consumer of the data producer it arrived for.

mod relay;

use crate::ids::{DataConsumerId, DataProducerId, RouterId, TransportId};
use crate::ortc::SctpStreamParameters;
use crate::stats::{DataConsumerStats, DataProducerStats};

/// What an SCTP stream of a transport is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataStream {
    /// Messages arrive on it for this data producer.
    Producer(DataProducerId),
    /// This data consumer's messages leave on it.
    Consumer(DataConsumerId),
}

/// A data channel the Sfu receives messages on.
#[derive(Debug)]
pub(crate) struct DataProducer {
    pub(crate) router: RouterId,
    pub(crate) transport: TransportId,
    pub(crate) stream: SctpStreamParameters,
    pub(crate) label: String,
    pub(crate) protocol: String,
    pub(crate) paused: bool,
    pub(crate) consumers: Vec<DataConsumerId>,
    pub(crate) stats: DataProducerStats,
}

/// A data channel the Sfu sends a data producer's messages on.
#[derive(Debug)]
pub(crate) struct DataConsumer {
    pub(crate) transport: TransportId,
    pub(crate) data_producer: DataProducerId,
    pub(crate) stream: SctpStreamParameters,
    pub(crate) paused: bool,
    pub(crate) producer_paused: bool,
    pub(crate) stats: DataConsumerStats,
}
