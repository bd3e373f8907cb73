//! The direct transport: the application itself is the endpoint (mediasoup's
//! `DirectTransport`). It has no network path: the application hands messages to its data
//! producers through [`Sfu::send_data`](crate::Sfu::send_data) and receives its data
//! consumers' messages as [`Event::DataConsumerMessage`](crate::Event::DataConsumerMessage).

/// Options for [`Sfu::create_direct_transport`](crate::Sfu::create_direct_transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectTransportOptions {
    /// The largest message the application may send, and the largest a data consumer of the
    /// transport hands it (mediasoup's `maxMessageSize`; default 262,144 bytes). Larger
    /// messages from the application are refused with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge); larger ones relayed from
    /// another transport are dropped and counted.
    pub max_message_size: u32,
}

impl Default for DirectTransportOptions {
    fn default() -> Self {
        Self {
            max_message_size: 262_144,
        }
    }
}

/// What a direct transport adds to a [`Transport`](super::Transport).
#[derive(Debug)]
pub(crate) struct DirectLink {
    pub(crate) max_message_size: usize,
}

impl DirectLink {
    pub(crate) fn new(options: &DirectTransportOptions) -> Self {
        Self {
            max_message_size: options.max_message_size as usize,
        }
    }
}
