//! What goes into the [`Sfu`](crate::Sfu) and what comes out of it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::event::Event;
pub use crate::ortc::Protocol;

/// Input to [`Sfu::handle_input`](crate::Sfu::handle_input).
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived (a UDP datagram, or one RFC 4571 frame of an ICE-TCP connection).
    Receive {
        /// When it arrived: its kernel receive timestamp where the socket gives one (datagrams
        /// read in one batch arrived apart, and transport-wide congestion control feedback
        /// reports their arrival times to the sender), else when it was read. An instant
        /// before the last one given counts as the last one.
        now: Instant,
        /// The transport protocol it came over.
        proto: Protocol,
        /// The peer's address.
        source: SocketAddr,
        /// The local address it arrived at (what a socket bound to a wildcard address learns
        /// through pktinfo).
        destination: SocketAddr,
        /// The datagram.
        contents: &'a [u8],
    },
    /// Time has reached a deadline the Sfu asked for (or any later time).
    Timeout(Instant),
}

/// Output of [`Sfu::poll_output`](crate::Sfu::poll_output).
#[derive(Debug)]
pub enum Output {
    /// A datagram to send.
    Transmit(Transmit),
    /// Something the application may want to know.
    Event(Event),
    /// Nothing more to do until this time, a new datagram, or an API call.
    Timeout(Instant),
}

/// A datagram to send, or several to one destination back to back.
#[derive(Debug)]
pub struct Transmit {
    /// UDP, or TCP (to be framed with RFC 4571 on the connection to `destination`).
    pub proto: Protocol,
    /// The local address to send from.
    pub source: SocketAddr,
    /// The peer's address.
    pub destination: SocketAddr,
    /// The datagram, or with `segment_size` the datagrams.
    pub contents: Vec<u8>,
    /// `Some(n)`: `contents` holds several UDP datagrams of `n` bytes each, the last possibly
    /// shorter, for one GSO send (Linux `UDP_SEGMENT`; quinn-udp's `Transmit::segment_size`),
    /// or to be sent one by one ([`datagrams`](Self::datagrams)). Only when
    /// [`SfuConfig::gso_segments`](crate::SfuConfig::gso_segments) is above 1.
    pub segment_size: Option<usize>,
}

impl Transmit {
    /// The datagrams in `contents`.
    pub fn datagrams(&self) -> impl Iterator<Item = &[u8]> {
        let size = match self.segment_size {
            Some(n) if n > 0 => n,
            _ => self.contents.len().max(1),
        };
        self.contents.chunks(size)
    }
}
