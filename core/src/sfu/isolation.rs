//! Fault isolation: a panic while one transport's input is processed closes that transport and
//! leaves the Sfu, and every other transport, running.
//!
//! A panic is a bug. Where mediasoup loses the whole worker, the Sfu catches the unwind at the
//! edge of each datagram and each deadline, counts it ([`SfuStats::transport_panics`]), and
//! closes the transport that was being served, with the events of
//! [`Sfu::close_transport`]. State the panic left half-changed belongs to that transport and
//! goes with it.
//!
//! [`SfuStats::transport_panics`]: crate::SfuStats::transport_panics

use std::panic::{catch_unwind, AssertUnwindSafe};

use tracing::error;

use super::*;

impl Sfu {
    /// Runs `work` for one input; after a panic in it, closes the transport it was serving.
    pub(super) fn isolated(&mut self, work: impl FnOnce(&mut Sfu)) {
        self.serving = None;
        if catch_unwind(AssertUnwindSafe(|| work(self))).is_ok() {
            self.serving = None;
            return;
        }
        self.stats.transport_panics += 1;
        let Some(tid) = self.serving.take() else {
            error!("panic outside any transport; input dropped");
            return;
        };
        error!(transport = %tid, "panic while serving the transport; closing it");
        let closed = catch_unwind(AssertUnwindSafe(|| self.close_transport(tid)));
        if !matches!(closed, Ok(Ok(()))) {
            // Closing failed too: forget the transport without ceremony.
            self.forget_transport(tid);
        }
    }

    /// Removes what routes to a transport whose close failed.
    fn forget_transport(&mut self, tid: TransportId) {
        if let Some(mut t) = self.transports.remove(&tid) {
            if let Some(link) = t.webrtc_mut() {
                for tuple in &link.tuples {
                    self.demux.remove_tuple(tuple);
                }
                self.demux.remove_ufrag(&link.ufrag);
            }
            if let Some(link) = t.plain() {
                link.unroute(&mut self.demux);
            }
            self.out
                .push_back(Output::Event(Event::TransportClosed { transport: tid }));
        }
    }

    /// Makes the next datagram routed to `transport` panic while it is processed (tests of
    /// fault isolation only).
    #[doc(hidden)]
    pub fn test_only_panic_on_next_datagram(&mut self, transport: TransportId) {
        if let Some(t) = self.transports.get_mut(&transport) {
            t.panic_on_next_datagram = true;
        }
    }
}
