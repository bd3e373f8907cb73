//! Datagrams at a plain transport's own socket from an address with no route yet: comedia
//! learns its remote from the first valid one (on a socket shared by RTP and RTCP, the first
//! valid RTP packet); anyone else is a stranger, dropped and counted.

use std::net::SocketAddr;

use super::*;
use crate::transport::plain::PlainSocket;

impl Sfu {
    /// A datagram at a plain transport's address, on no known path.
    pub(super) fn plain_from_new_source(
        &mut self,
        kind: Kind,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let Some(tid) = self.demux.by_local(&destination) else {
            self.stats.dropped_unknown_source += 1;
            return;
        };
        self.serving = Some(tid);
        let Some(t) = self.transports.get_mut(&tid) else {
            self.stats.dropped_unknown_source += 1;
            return;
        };
        t.stats.datagrams_received += 1;
        t.stats.bytes_received += contents.len() as u64;
        let socket = t.plain().and_then(|link| {
            let socket = link.socket(destination)?;
            let learns = link.comedia && link.remote_of(socket).is_none();
            learns.then_some(socket)
        });
        let Some(socket) = socket.filter(|_| kind == Kind::RtpOrRtcp) else {
            trace!(transport = %tid, %source, "datagram from a stranger");
            t.stats.dropped_foreign_source += 1;
            return;
        };
        // Taken like any packet of the remote; only a valid one makes its sender the remote.
        // On a muxed socket only RTP does: senders such as ffmpeg send their RTCP from
        // another port, often first.
        let teaches = socket == PlainSocket::Rtcp || !crate::media::rtcp::is_rtcp(contents);
        if self.media_in(tid, contents) && teaches {
            self.set_plain_remote(tid, socket, source);
            if socket == PlainSocket::Rtp {
                self.request_key_frames_for_transport(tid);
            }
        }
    }
}
