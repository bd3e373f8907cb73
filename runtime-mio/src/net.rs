//! Binding a worker's sockets; the addresses the core then sees are decided in
//! [`sfu_core::runtime::addr`].

use std::io;
use std::net::{IpAddr, SocketAddr};

use sfu_core::runtime::addr::{bind_first, concrete, route_probe, SocketAddrs};
use socket2::{Domain, Socket, Type};

use crate::ListenOptions;

/// A bound socket and its addresses.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) socket: Socket,
    pub(crate) addrs: SocketAddrs,
}

/// Binds `options` for worker `index` (UDP, or a listening TCP socket), nonblocking.
pub(crate) fn bind(options: &ListenOptions, index: usize) -> io::Result<Bound> {
    let socket = bind_first(options, index, |addr| bind_addr(options, addr))?;
    let bound = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
    let routed = bound
        .ip()
        .is_unspecified()
        .then(|| outward(bound.ip()))
        .flatten();
    let local = concrete(bound, routed);
    Ok(Bound {
        socket,
        addrs: SocketAddrs { bound, local },
    })
}

/// The interface that routes outward for `ip`'s family (asking the kernel, sending nothing).
fn outward(ip: IpAddr) -> Option<IpAddr> {
    let (any, probe) = route_probe(ip);
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(probe).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

fn bind_addr(options: &ListenOptions, addr: SocketAddr) -> io::Result<Socket> {
    let tcp = options.protocol == sfu_core::Protocol::Tcp;
    let ty = if tcp { Type::STREAM } else { Type::DGRAM };
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if tcp {
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if tcp {
        socket.listen(1024)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn port_ranges_skip_ports_in_use() {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let first = bind(&ListenOptions::udp(ip), 0).unwrap();
        let port = first.addrs.local.port();
        let Some(next) = port.checked_add(1) else {
            return;
        };
        let options = ListenOptions {
            port_range: Some((port, next)),
            ..ListenOptions::udp(ip)
        };
        match bind(&options, 0) {
            Ok(b) => assert_eq!(b.addrs.local.port(), next),
            // The next port may be taken by someone else on a busy machine.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse),
        }
    }
}
