//! Opening a worker's sockets for its listen options; the addresses the core then sees are
//! decided in [`sfu_core::runtime::addr`].

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use sfu_core::runtime::addr::{bind_first, concrete, route_probe, SocketAddrs};
use sfu_core::{ListenInfo, Protocol};

use crate::ListenOptions;

/// A worker's sockets, bound but not yet registered with a reactor.
#[derive(Debug)]
pub(crate) struct Bound {
    /// UDP sockets with their addresses.
    pub(crate) udp: Vec<(UdpSocket, SocketAddrs)>,
    /// TCP listeners with the address the core knows them by.
    pub(crate) tcp: Vec<(TcpListener, SocketAddr)>,
    /// The listen infos a transport gets when its request names none.
    pub(crate) listen_infos: Vec<ListenInfo>,
}

/// Binds every listen entry for worker number `worker`.
pub(crate) fn bind_all(listen: &[ListenOptions], worker: usize) -> io::Result<Bound> {
    let mut bound = Bound {
        udp: Vec::new(),
        tcp: Vec::new(),
        listen_infos: Vec::new(),
    };
    for opt in listen {
        let local = match opt.protocol {
            Protocol::Udp => {
                let socket = bind_first(opt, worker, UdpSocket::bind)?;
                let addrs = addrs(socket.local_addr()?);
                bound.udp.push((socket, addrs));
                addrs.local
            }
            Protocol::Tcp => {
                let listener = bind_first(opt, worker, TcpListener::bind)?;
                let local = addrs(listener.local_addr()?).local;
                bound.tcp.push((listener, local));
                local
            }
        };
        bound.listen_infos.push(ListenInfo {
            protocol: opt.protocol,
            local,
            announced_address: opt.announced_address.clone(),
        });
    }
    Ok(bound)
}

/// A socket bound to `bound`, and the address the core knows it by.
fn addrs(bound: SocketAddr) -> SocketAddrs {
    let routed = bound
        .ip()
        .is_unspecified()
        .then(|| outward(bound.ip()))
        .flatten();
    SocketAddrs {
        bound,
        local: concrete(bound, routed),
    }
}

/// The interface that routes outward for `ip`'s family (asking the kernel, sending nothing).
fn outward(ip: IpAddr) -> Option<IpAddr> {
    let (any, probe) = route_probe(ip);
    UdpSocket::bind(any)
        .and_then(|s| s.connect(probe).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
}
