//! The plain transport: RTP and RTCP, in the clear or with SDES-keyed SRTP, to one remote
//! address (mediasoup's `PlainTransport`, for ffmpeg, GStreamer and the like).
//!
//! It has no handshake. Its socket is its own: the demux finds it by the local address a
//! datagram arrived at, and once it has a remote (given by `connect`, or learned by comedia
//! from the first valid packet) by the 5-tuple like any other path. A datagram at its address
//! from anyone else is dropped and counted.

use std::net::SocketAddr;

use crate::media::srtp::SrtpProfile;

/// What a plain transport adds to a [`Transport`](super::Transport).
#[derive(Debug)]
pub(crate) struct PlainLink {
    /// Where RTP (and RTCP when muxed) arrives.
    pub(crate) local: SocketAddr,
    /// Where RTCP arrives when it is not muxed.
    pub(crate) rtcp_local: Option<SocketAddr>,
    /// Learn the remote from the first valid packet.
    pub(crate) comedia: bool,
    /// The SRTP profile and the transport's own master key and salt (what it sends with).
    pub(crate) srtp: Option<(SrtpProfile, Vec<u8>)>,
    /// `connect` was called.
    pub(crate) connected: bool,
    /// The remote's RTP address, once given or learned.
    pub(crate) remote: Option<SocketAddr>,
    /// The remote's RTCP address (not muxed), once given or learned.
    pub(crate) rtcp_remote: Option<SocketAddr>,
}

/// Which of a plain transport's sockets a datagram arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainSocket {
    /// The RTP socket (RTCP too, when muxed).
    Rtp,
    /// The separate RTCP socket.
    Rtcp,
}

impl PlainLink {
    /// Which socket `local` is, if it is one of this transport's.
    pub(crate) fn socket(&self, local: SocketAddr) -> Option<PlainSocket> {
        if local == self.local {
            Some(PlainSocket::Rtp)
        } else if Some(local) == self.rtcp_local {
            Some(PlainSocket::Rtcp)
        } else {
            None
        }
    }

    /// The remote address known for a socket.
    pub(crate) fn remote_of(&self, socket: PlainSocket) -> Option<SocketAddr> {
        match socket {
            PlainSocket::Rtp => self.remote,
            PlainSocket::Rtcp => self.rtcp_remote,
        }
    }
}

impl PlainLink {
    /// Removes every route to this transport from the demux.
    pub(crate) fn unroute(&self, demux: &mut crate::demux::Demux) {
        use crate::io::Protocol;
        demux.remove_local(&self.local);
        if let Some(remote) = self.remote {
            demux.remove_tuple(&(Protocol::Udp, self.local, remote));
        }
        if let Some(rtcp_local) = self.rtcp_local {
            demux.remove_local(&rtcp_local);
            if let Some(remote) = self.rtcp_remote {
                demux.remove_tuple(&(Protocol::Udp, rtcp_local, remote));
            }
        }
    }
}
