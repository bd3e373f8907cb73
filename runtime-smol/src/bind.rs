//! Opening a worker's sockets for its listen options.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

use sfu_core::{ListenInfo, Protocol};

use crate::ListenOptions;

/// A worker's sockets, bound but not yet registered with a reactor.
#[derive(Debug)]
pub(crate) struct Bound {
    /// UDP sockets with their concrete local address.
    pub(crate) udp: Vec<(UdpSocket, SocketAddr)>,
    /// TCP listeners with their concrete local address.
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
                let local = concrete(socket.local_addr()?);
                bound.udp.push((socket, local));
                local
            }
            Protocol::Tcp => {
                let listener = bind_first(opt, worker, TcpListener::bind)?;
                let local = concrete(listener.local_addr()?);
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

/// Binds the first port of `opt` that is free.
fn bind_first<S>(
    opt: &ListenOptions,
    worker: usize,
    bind: impl Fn(SocketAddr) -> io::Result<S>,
) -> io::Result<S> {
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free port");
    for port in opt.worker_ports(worker)? {
        match bind(SocketAddr::new(opt.ip, port)) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The address a candidate announces for a socket bound to `addr`: `addr` itself, or for a
/// wildcard bind the address of the interface that routes outward (loopback if none does).
fn concrete(addr: SocketAddr) -> SocketAddr {
    let addr = canonical(addr);
    if !addr.ip().is_unspecified() {
        return addr;
    }
    let (any, probe, loopback): (IpAddr, IpAddr, IpAddr) = match addr.ip() {
        IpAddr::V4(_) => (
            Ipv4Addr::UNSPECIFIED.into(),
            Ipv4Addr::new(192, 0, 2, 1).into(),
            Ipv4Addr::LOCALHOST.into(),
        ),
        IpAddr::V6(_) => (
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(),
            Ipv6Addr::LOCALHOST.into(),
        ),
    };
    // Connecting a UDP socket sends nothing; it only asks the kernel for a route.
    let routed = UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| s.connect(SocketAddr::new(probe, 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip());
    SocketAddr::new(routed.unwrap_or(loopback), addr.port())
}

/// `addr` with an IPv4-mapped IPv6 address turned into the IPv4 address the peer really used.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
