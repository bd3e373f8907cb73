//! How a [`Runtime`](crate::Runtime) is set up: workers, listen addresses, the core's config.

use std::net::{IpAddr, Ipv4Addr};

use sfu_core::{Protocol, SfuConfig};

/// Configuration of a [`Runtime`](crate::Runtime).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Worker threads, each with one `Sfu` and its own sockets. Default: one per core.
    pub workers: usize,
    /// The sockets every worker opens: one UDP socket per UDP entry and one TCP listener per
    /// TCP entry, shared by all the worker's transports. Default: UDP and TCP on 127.0.0.1, any
    /// port.
    pub listen: Vec<ListenOptions>,
    /// The core's configuration. A seed, if set, is varied per worker so workers never draw the
    /// same ids.
    pub sfu: SfuConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            listen: vec![ListenOptions::udp(loopback), ListenOptions::tcp(loopback)],
            sfu: SfuConfig::default(),
        }
    }
}

/// One listen address, like mediasoup's `TransportListenInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// UDP, or TCP (a passive ICE-TCP listener).
    pub protocol: Protocol,
    /// The address to bind. A wildcard (`0.0.0.0`, `::`) binds every interface; the candidate
    /// then carries the address of the interface that routes outward (see the crate docs).
    pub ip: IpAddr,
    /// The address to signal instead of the local one (a public IP or a host name behind NAT).
    pub announced_address: Option<String>,
    /// The port; 0 lets the system choose. A fixed port is used by worker 0, and worker `i`
    /// binds `port + i`, since every worker owns its sockets.
    pub port: u16,
    /// Pick the first free port in this inclusive range instead (overrides `port`).
    pub port_range: Option<(u16, u16)>,
}

impl ListenOptions {
    /// UDP on `ip`, any port.
    pub fn udp(ip: IpAddr) -> Self {
        Self::new(Protocol::Udp, ip)
    }

    /// ICE-TCP on `ip`, any port.
    pub fn tcp(ip: IpAddr) -> Self {
        Self::new(Protocol::Tcp, ip)
    }

    /// `protocol` on `ip`, any port, nothing announced.
    pub fn new(protocol: Protocol, ip: IpAddr) -> Self {
        Self {
            protocol,
            ip,
            announced_address: None,
            port: 0,
            port_range: None,
        }
    }

    /// With a fixed port (worker `i` binds `port + i`).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// With a port range (inclusive).
    pub fn with_port_range(mut self, low: u16, high: u16) -> Self {
        self.port_range = Some((low, high));
        self
    }

    /// With an announced address.
    pub fn with_announced_address(mut self, address: impl Into<String>) -> Self {
        self.announced_address = Some(address.into());
        self
    }
}
