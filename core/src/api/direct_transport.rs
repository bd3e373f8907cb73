//! Direct transports: the application as an endpoint, sending and receiving RTP, RTCP and data
//! messages.

use super::*;
use crate::media::rtcp;
use crate::media::session::MediaSession;

impl Sfu {
    /// Creates a direct transport in a router (mediasoup's `createDirectTransport`). Its
    /// producers take RTP packets from [`Sfu::send_rtp`] and its consumers hand theirs to the
    /// application as [`Event::DirectConsumerRtp`]; RTCP goes both ways through
    /// [`Sfu::send_rtcp`] and [`Event::DirectTransportRtcp`]. Its data producers take messages
    /// from [`Sfu::send_data`]; its data consumers hand theirs to the application as
    /// [`Event::DataConsumerMessage`]. Nothing is encrypted. Close it with
    /// [`Sfu::close_transport`].
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
        let mut transport = Transport::new(router, TransportKind::Direct(link), 1);
        let rtcp_ssrc = self.random_ssrc();
        transport.media = Some(MediaSession::clear(rtcp_ssrc, self.now));
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

    /// Hands a producer of a direct transport an RTP packet from the application (mediasoup's
    /// `producer.send`): it is received as if its endpoint had sent it, on the SSRC of one of
    /// the producer's encodings (or their RTX), and forwarded to the producer's consumers.
    pub fn send_rtp(&mut self, producer: ProducerId, packet: &[u8]) -> Result<(), Error> {
        let p = self.producer(producer)?;
        let tid = p.transport;
        let t = self.transport(tid)?;
        if t.direct().is_none() {
            return Err(Error::NotDirectProducer(producer));
        }
        let invalid = |reason| Error::InvalidRtpPacket { producer, reason };
        if packet.len() < 12 || packet[0] >> 6 != 2 || rtcp::is_rtcp(packet) {
            return Err(invalid("not an RTP packet"));
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if t.producer_ssrcs.get(&ssrc).map(|s| s.0) != Some(producer) {
            return Err(invalid("SSRC of no encoding of the producer"));
        }
        self.arrival = self.now;
        if !self.media_in(tid, packet) {
            return Err(invalid("malformed"));
        }
        self.run_work();
        Ok(())
    }

    /// Hands a direct transport an RTCP compound packet from the application (mediasoup's
    /// `directTransport.sendRtcp`): key frame requests, NACKs and reports about its consumers,
    /// sender reports of its producers.
    pub fn send_rtcp(&mut self, transport: TransportId, packet: &[u8]) -> Result<(), Error> {
        let t = self.transport(transport)?;
        if t.direct().is_none() {
            return Err(Error::NotDirect(transport));
        }
        if !rtcp::is_rtcp(packet) {
            return Err(Error::InvalidRtcpPacket(transport));
        }
        self.arrival = self.now;
        if !self.media_in(transport, packet) {
            return Err(Error::InvalidRtcpPacket(transport));
        }
        self.run_work();
        Ok(())
    }
}
