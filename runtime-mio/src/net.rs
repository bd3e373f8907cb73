//! Binding a worker's sockets, and the addresses the core sees.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

use crate::ListenOptions;

/// A bound socket and the address the core knows it by.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) socket: Socket,
    /// The concrete address given to the core (loopback for a wildcard bind).
    pub(crate) local: SocketAddr,
    /// Bound to `0.0.0.0` or `::`.
    pub(crate) wildcard: bool,
}

/// Binds `options` for worker `index` (UDP, or a listening TCP socket), nonblocking.
pub(crate) fn bind(options: &ListenOptions, index: usize) -> io::Result<Bound> {
    let mut last = None;
    for port in options.worker_ports(index)? {
        match bind_port(options, port) {
            Ok(socket) => {
                let bound = socket
                    .local_addr()?
                    .as_socket()
                    .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
                let wildcard = options.ip.is_unspecified();
                let ip = if wildcard {
                    loopback_of(options.ip)
                } else {
                    canonical(options.ip)
                };
                return Ok(Bound {
                    socket,
                    local: SocketAddr::new(ip, bound.port()),
                    wildcard,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no free port")))
}

fn bind_port(options: &ListenOptions, port: u16) -> io::Result<Socket> {
    let addr = SocketAddr::new(options.ip, port);
    let ty = match options.protocol {
        sfu_core::Protocol::Udp => Type::DGRAM,
        sfu_core::Protocol::Tcp => Type::STREAM,
    };
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        // One family per socket: the core pairs candidates of one family.
        socket.set_only_v6(true)?;
    }
    if options.protocol == sfu_core::Protocol::Tcp {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if options.protocol == sfu_core::Protocol::Tcp {
        socket.listen(1024)?;
    }
    Ok(socket)
}

/// The loopback address of `ip`'s family.
fn loopback_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is; anything else unchanged.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// [`canonical`] for a socket address.
pub(crate) fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical_addr(mapped), "127.0.0.1:5000".parse().unwrap());
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(canonical_addr(v6), v6);
    }

    #[test]
    fn wildcard_binds_are_presented_as_loopback() {
        let b = bind(&ListenOptions::udp(Ipv4Addr::UNSPECIFIED.into()), 0).unwrap();
        assert!(b.wildcard);
        assert_eq!(b.local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(b.local.port(), 0);
    }

    #[test]
    fn port_ranges_skip_ports_in_use() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = bind(&ListenOptions::udp(ip), 0).unwrap();
        let port = first.local.port();
        let Some(next) = port.checked_add(1) else {
            return;
        };
        let options = ListenOptions {
            port_range: Some((port, next)),
            ..ListenOptions::udp(ip)
        };
        match bind(&options, 0) {
            Ok(b) => assert_eq!(b.local.port(), next),
            // The next port may be taken by someone else on a busy machine.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse),
        }
    }
}
