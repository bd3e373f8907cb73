//! The application's limits on what a transport sends (mediasoup's `setMaxOutgoingBitrate`
//! and `setMinOutgoingBitrate`): they bound the transport's bandwidth estimate.

use super::*;

impl Sfu {
    /// Caps the bandwidth estimate toward a transport's endpoint at `bitrate` bits per second;
    /// 0 removes the cap (mediasoup's `setMaxOutgoingBitrate`). A cap below the transport's
    /// minimum is refused with [`Error::BitrateLimitConflict`].
    pub fn set_max_outgoing_bitrate(
        &mut self,
        transport: TransportId,
        bitrate: u64,
    ) -> Result<(), Error> {
        let bwe = &mut self.transport_mut(transport)?.bwe;
        let max = (bitrate > 0).then_some(bitrate);
        if let Some(max) = max {
            if bwe.min() > max {
                return Err(Error::BitrateLimitConflict {
                    min: bwe.min(),
                    max,
                });
            }
        }
        bwe.set_max(max);
        debug!(transport = %transport, bitrate, "maximum outgoing bitrate set");
        self.allocate(transport);
        Ok(())
    }

    /// Keeps the bandwidth estimate toward a transport's endpoint at or above `bitrate` bits per
    /// second, whatever the feedback says; 0 removes the floor (mediasoup's
    /// `setMinOutgoingBitrate`). A floor above the transport's maximum is refused with
    /// [`Error::BitrateLimitConflict`].
    pub fn set_min_outgoing_bitrate(
        &mut self,
        transport: TransportId,
        bitrate: u64,
    ) -> Result<(), Error> {
        let bwe = &mut self.transport_mut(transport)?.bwe;
        if let Some(max) = bwe.max() {
            if bitrate > max {
                return Err(Error::BitrateLimitConflict { min: bitrate, max });
            }
        }
        bwe.set_min(bitrate);
        debug!(transport = %transport, bitrate, "minimum outgoing bitrate set");
        Ok(())
    }
}
