//! The addresses a runtime's sockets show the core, decided without a socket: which ports a
//! worker tries, what a wildcard bind announces, where a datagram arrived, which socket a
//! transmit leaves from.
//!
//! A socket bound to a concrete address is known by it. A socket bound to a wildcard (`0.0.0.0`,
//! `::`) is known by the address of the interface that routes outward (loopback if none does),
//! reports each datagram's real destination (pktinfo) to the core, and sends each transmit from
//! the address the core names. An IPv6 wildcard is dual stack: IPv4 peers arrive as
//! IPv4-mapped addresses, which the core sees as IPv4.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::ListenOptions;

/// Binds the first free port `options` allows worker `worker`, calling `bind` with each address
/// in turn; the last error if none is free.
pub fn bind_first<S>(
    options: &ListenOptions,
    worker: usize,
    mut bind: impl FnMut(SocketAddr) -> io::Result<S>,
) -> io::Result<S> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port");
    for port in options.worker_ports(worker)? {
        match bind(SocketAddr::new(options.ip, port)) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// For a wildcard bind of `ip`'s family: the unspecified address to bind a probe socket to and
/// the (documentation) address to connect it to, so that the probe's local address is the
/// interface that routes outward. Connecting a UDP socket sends nothing.
pub fn route_probe(ip: IpAddr) -> (SocketAddr, SocketAddr) {
    match ip {
        IpAddr::V4(_) => (
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 9),
        ),
        IpAddr::V6(_) => (
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
            SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), 9),
        ),
    }
}

/// The address the core knows a socket bound to `bound` by: `bound` itself, or for a wildcard
/// the outward interface `routed` found by [`route_probe`] (loopback when there is none).
pub fn concrete(bound: SocketAddr, routed: Option<IpAddr>) -> SocketAddr {
    let bound = canonical(bound);
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let loopback = match bound.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(routed.unwrap_or(loopback), bound.port())
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address the peer really used.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A UDP socket's two addresses: the one it is bound to (perhaps a wildcard) and the concrete
/// one the core knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAddrs {
    /// What the socket is bound to.
    pub bound: SocketAddr,
    /// What the core knows it by ([`concrete`]).
    pub local: SocketAddr,
}

impl SocketAddrs {
    /// The local address a datagram arrived at, from its pktinfo `dst_ip`.
    pub fn destination(&self, dst_ip: Option<IpAddr>) -> SocketAddr {
        match dst_ip {
            Some(ip) if self.bound.ip().is_unspecified() => {
                SocketAddr::new(ip.to_canonical(), self.bound.port())
            }
            _ => self.local,
        }
    }

    /// Whether datagrams from `source` leave through this socket.
    pub fn sends_from(&self, source: SocketAddr) -> bool {
        if source == self.local || source == self.bound {
            return true;
        }
        source.port() == self.bound.port()
            && self.bound.ip().is_unspecified()
            && (self.bound.is_ipv6() || source.is_ipv4())
    }

    /// Where to send a datagram for `destination` from `source`, as the socket wants them: the
    /// destination (IPv4-mapped on an IPv6 socket), and the source address to ask for (only a
    /// wildcard socket needs to be told).
    pub fn send_addrs(
        &self,
        source: SocketAddr,
        destination: SocketAddr,
    ) -> (SocketAddr, Option<IpAddr>) {
        let v6 = self.bound.is_ipv6();
        let family = |ip: IpAddr| match ip {
            IpAddr::V4(v4) if v6 => IpAddr::V6(v4.to_ipv6_mapped()),
            ip => ip,
        };
        let to = SocketAddr::new(family(destination.ip()), destination.port());
        let from = self
            .bound
            .ip()
            .is_unspecified()
            .then(|| family(source.ip()));
        (to, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_sockets_announce_the_routed_interface_and_report_real_destinations() {
        let wild: SocketAddr = "[::]:5000".parse().unwrap();
        let routed: IpAddr = "2001:db8::7".parse().unwrap();
        let local = concrete(wild, Some(routed));
        assert_eq!(local, SocketAddr::new(routed, 5000));
        assert_eq!(concrete(wild, None), "[::1]:5000".parse().unwrap());
        let s = SocketAddrs { bound: wild, local };
        let v4: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(s.destination(Some(v4)), "10.0.0.1:5000".parse().unwrap());
        assert!(s.sends_from("10.0.0.1:5000".parse().unwrap()));
        assert!(!s.sends_from("10.0.0.1:5001".parse().unwrap()));
        let (to, from) = s.send_addrs(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:6000".parse().unwrap(),
        );
        assert_eq!(to, "[::ffff:10.0.0.2]:6000".parse().unwrap());
        assert_eq!(from, Some("::ffff:10.0.0.1".parse().unwrap()));
        let fixed: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let s = SocketAddrs {
            bound: fixed,
            local: concrete(fixed, None),
        };
        assert_eq!(s.local, fixed);
        assert_eq!(s.destination(Some("127.0.0.2".parse().unwrap())), fixed);
        assert_eq!(s.send_addrs(fixed, fixed).1, None);
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:5000".parse().unwrap());
    }
}
