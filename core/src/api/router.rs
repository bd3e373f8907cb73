//! Routers (rooms): their codecs, and whether a device can consume a producer.

use super::*;

impl Sfu {
    /// Creates a router (a room) with the given media codecs.
    pub fn create_router(&mut self, options: RouterOptions) -> Result<RouterId, Error> {
        let caps = ortc::generate_router_rtp_capabilities(&options.media_codecs)?;
        let id = RouterId::from_raw(self.next_u64());
        self.routers.insert(
            id,
            Router {
                caps,
                transports: Vec::new(),
                producers: Vec::new(),
                observers: Vec::new(),
            },
        );
        info!(router = %id, "router created");
        Ok(id)
    }

    /// A router's RTP capabilities (for `device.load({ routerRtpCapabilities })`).
    pub fn router_rtp_capabilities(&self, router: RouterId) -> Result<&RtpCapabilities, Error> {
        self.routers
            .get(&router)
            .map(|r| &r.caps)
            .ok_or(Error::UnknownRouter(router))
    }

    /// Closes a router and everything in it.
    pub fn close_router(&mut self, router: RouterId) -> Result<(), Error> {
        let r = self.router(router)?;
        let (transports, observers) = (r.transports.clone(), r.observers.clone());
        for tid in transports {
            self.close_transport(tid)?;
        }
        for oid in observers {
            self.close_any_observer(oid)?;
        }
        self.routers.remove(&router);
        info!(router = %router, "router closed");
        Ok(())
    }

    /// Whether a device with these capabilities can receive this producer.
    pub fn can_consume(
        &self,
        producer: ProducerId,
        rtp_capabilities: &RtpCapabilities,
    ) -> Result<bool, Error> {
        let p = self.producer(producer)?;
        Ok(ortc::can_consume(&p.consumable, rtp_capabilities))
    }
}
