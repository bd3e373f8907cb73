//! Direct transports: the application as an endpoint, sending and receiving data messages.

use super::*;

impl Sfu {
    /// Creates a direct transport in a router (mediasoup's `createDirectTransport`). Its data
    /// producers take messages from [`Sfu::send_data`]; its data consumers hand theirs to the
    /// application as [`Event::DataConsumerMessage`]. Close it with [`Sfu::close_transport`].
    pub fn create_direct_transport(
        &mut self,
        router: RouterId,
        options: DirectTransportOptions,
    ) -> Result<TransportId, Error> {
        if !self.routers.contains_key(&router) {
            return Err(Error::UnknownRouter(router));
        }
        let id = TransportId::from_raw(self.next_u64());
        let link = DirectLink::new(&options);
        let transport = Transport::new(router, TransportKind::Direct(link), 1);
        self.transports.insert(id, Box::new(transport));
        if let Some(r) = self.routers.get_mut(&router) {
            r.transports.push(id);
        }
        info!(transport = %id, router = %router, "direct transport created");
        Ok(id)
    }

    /// Sends a message from the application on a data producer of a direct transport
    /// (mediasoup's `dataProducer.send`): its data consumers receive it as if an endpoint had
    /// sent it. A paused data producer drops it (counted in its stats).
    pub fn send_data(
        &mut self,
        data_producer: DataProducerId,
        binary: bool,
        data: &[u8],
    ) -> Result<(), Error> {
        let dp = self
            .data_producers
            .get(&data_producer)
            .ok_or(Error::UnknownDataProducer(data_producer))?;
        let t = self.transport(dp.transport)?;
        let link = t
            .direct()
            .ok_or(Error::NotDirectDataProducer(data_producer))?;
        if data.len() > link.max_message_size {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max: link.max_message_size,
            });
        }
        self.relay_from(data_producer, binary, data);
        self.run_work();
        Ok(())
    }
}
