//! Plain transports (mediasoup's `PlainTransport`): creation and `connect`.

use std::net::SocketAddr;

use super::*;
use crate::event::TransportTuple;
use crate::io::Protocol;
use crate::media::session::{MediaSession, Protection};
use crate::media::srtp::SrtpContext;
use crate::ortc::{
    PlainTransportConnectParameters, PlainTransportOptions, PlainTransportParameters,
    SrtpParameters, TransportListenInfo, TupleParameters,
};
use crate::transport::plain::{PlainLink, PlainSocket};

/// A created plain transport: its id and what the remote needs (where to send, and the keys
/// the transport sends with).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainTransportCreated {
    /// The transport's id.
    pub id: TransportId,
    /// mediasoup's `PlainTransport` data: `tuple`, `rtcpTuple`, `srtpParameters`.
    pub parameters: PlainTransportParameters,
}

impl Sfu {
    /// Creates a plain transport in a router: RTP and RTCP, in the clear or with SRTP keyed by
    /// SDES, on a socket of its own. Its listen info (and, without `rtcp_mux`, its RTCP listen
    /// info) must name the concrete UDP address of that socket, which the caller opened and
    /// feeds datagrams from (the bundled runtimes open it for [`PlainTransportOptions`] with
    /// port 0); no other transport may use it.
    ///
    /// Without comedia the transport sends nothing until [`Sfu::connect_plain_transport`]
    /// gives the remote's address; with comedia the remote's address is learned from its first
    /// valid packet. With SRTP nothing arrives until `connect` gives the remote's keys.
    pub fn create_plain_transport(
        &mut self,
        router: RouterId,
        options: PlainTransportOptions,
    ) -> Result<PlainTransportCreated, Error> {
        self.create_udp_link(router, options, None)
    }

    /// A plain transport, or with `pipe_rtx` a pipe transport (whose options are a plain
    /// transport's without comedia, RTCP muxed): the two share their socket, demux and keys.
    pub(crate) fn create_udp_link(
        &mut self,
        router: RouterId,
        options: PlainTransportOptions,
        pipe_rtx: Option<bool>,
    ) -> Result<PlainTransportCreated, Error> {
        if !self.routers.contains_key(&router) {
            return Err(Error::UnknownRouter(router));
        }
        let local = plain_address(&options.listen_info)?;
        let rtcp_local = if options.rtcp_mux {
            None
        } else {
            let info = options.rtcp_listen_info.as_ref().ok_or_else(|| {
                Error::InvalidListenInfo("no RTCP listen info without rtcpMux".into())
            })?;
            Some(plain_address(info)?)
        };
        if Some(local) == rtcp_local {
            return Err(Error::InvalidListenInfo(
                "RTP and RTCP need two addresses without rtcpMux".into(),
            ));
        }
        for addr in std::iter::once(local).chain(rtcp_local) {
            if self.demux.has_local(&addr) {
                return Err(Error::InvalidListenInfo(format!(
                    "{addr} is another transport's"
                )));
            }
        }
        let srtp = options.enable_srtp.then(|| {
            let suite = options.srtp_crypto_suite;
            let mut key = vec![0u8; suite.key_len()];
            self.rng.fill_bytes(&mut key);
            (suite, key)
        });
        let id = TransportId::from_raw(self.next_u64());
        let signaled = |info: &TransportListenInfo, addr: SocketAddr| TupleParameters {
            local_address: info
                .announced_address
                .clone()
                .unwrap_or_else(|| addr.ip().to_string()),
            local_port: addr.port(),
            remote_ip: None,
            remote_port: None,
            protocol: Protocol::Udp,
        };
        let parameters = PlainTransportParameters {
            id: id.to_string(),
            tuple: signaled(&options.listen_info, local),
            rtcp_tuple: options
                .rtcp_listen_info
                .as_ref()
                .zip(rtcp_local)
                .map(|(info, addr)| signaled(info, addr)),
            rtcp_mux: options.rtcp_mux,
            comedia: options.comedia,
            srtp_parameters: srtp.as_ref().map(|(suite, key)| SrtpParameters {
                crypto_suite: *suite,
                key_base64: data_encoding::BASE64.encode(key),
            }),
        };
        let link = PlainLink {
            local,
            rtcp_local,
            comedia: options.comedia,
            srtp: srtp.map(|(suite, key)| (suite.profile(), key)),
            connected: false,
            remote: None,
            rtcp_remote: None,
        };
        let clear = link.srtp.is_none();
        let kind = match pipe_rtx {
            None => TransportKind::Plain(link),
            Some(rtx) => TransportKind::Pipe {
                link,
                rtx,
                sctp: None,
            },
        };
        let mut transport = Transport::new(router, kind, self.config.gso_segments);
        transport.rtcp_separate = rtcp_local.is_some();
        if clear {
            // Plain RTP needs no keys: the media session starts now.
            let rtcp_ssrc = self.random_ssrc();
            transport.media = Some(MediaSession::clear(rtcp_ssrc, self.now));
        }
        self.transports.insert(id, Box::new(transport));
        self.demux.insert_local(local, id);
        if let Some(rtcp_local) = rtcp_local {
            self.demux.insert_local(rtcp_local, id);
        }
        if let Some(r) = self.routers.get_mut(&router) {
            r.transports.push(id);
        }
        self.wake_media(id);
        info!(transport = %id, router = %router, %local, pipe = pipe_rtx.is_some(), "plain transport created");
        Ok(PlainTransportCreated { id, parameters })
    }

    /// Gives a plain transport the remote's address (without comedia) and SRTP keys (with
    /// SRTP): mediasoup's `PlainTransport.connect`. With comedia, `ip` and `port` are ignored:
    /// the address is learned from the first valid packet. Once only.
    pub fn connect_plain_transport(
        &mut self,
        transport: TransportId,
        parameters: &PlainTransportConnectParameters,
    ) -> Result<(), Error> {
        let t = self.transport(transport)?;
        if t.pipe_rtx().is_some() {
            return Err(Error::NotPlain(transport));
        }
        self.connect_udp_link(transport, parameters)
    }

    /// `connect` of a plain or pipe transport.
    pub(crate) fn connect_udp_link(
        &mut self,
        transport: TransportId,
        parameters: &PlainTransportConnectParameters,
    ) -> Result<(), Error> {
        let rtcp_ssrc = self.random_ssrc();
        let now = self.now;
        let t = self
            .transports
            .get_mut(&transport)
            .ok_or(Error::UnknownTransport(transport))?;
        let separate = t.rtcp_separate;
        let link = t.plain().ok_or(Error::NotPlain(transport))?;
        if link.connected {
            return Err(Error::AlreadyConnected(transport));
        }
        let session = match &link.srtp {
            None => None,
            Some((profile, own)) => {
                let remote = parameters.srtp_parameters.as_ref().ok_or_else(|| {
                    Error::InvalidSrtpParameters("the remote's keys are required".into())
                })?;
                let (keys, key_len) = remote.key_and_salt().ok_or_else(|| {
                    Error::InvalidSrtpParameters(format!(
                        "keyBase64 is not {} bytes of base64",
                        remote.crypto_suite.key_len()
                    ))
                })?;
                let (own_key, own_salt) = own.split_at(profile.master_key_len());
                let (key, salt) = keys.split_at(key_len);
                let bad =
                    |e: crate::media::srtp::SrtpError| Error::InvalidSrtpParameters(e.to_string());
                let tx = SrtpContext::new(*profile, own_key, own_salt).map_err(bad)?;
                let rx = SrtpContext::new(remote.crypto_suite.profile(), key, salt).map_err(bad)?;
                Some(MediaSession::with(
                    Protection::Srtp(tx),
                    Protection::Srtp(rx),
                    rtcp_ssrc,
                    now,
                ))
            }
        };
        let remotes = if link.comedia {
            None
        } else {
            let (Some(ip), Some(port)) = (parameters.ip, parameters.port) else {
                return Err(Error::InvalidConnectParameters(
                    "ip and port are required without comedia".into(),
                ));
            };
            let rtcp = match (separate, parameters.rtcp_port) {
                (false, _) => None,
                (true, Some(rtcp_port)) => Some(SocketAddr::new(ip, rtcp_port)),
                (true, None) => {
                    return Err(Error::InvalidConnectParameters(
                        "rtcpPort is required without rtcpMux".into(),
                    ))
                }
            };
            if port == 0 || rtcp.is_some_and(|a| a.port() == 0) || ip.is_unspecified() {
                return Err(Error::InvalidConnectParameters(format!(
                    "{ip}:{port} is not a remote address"
                )));
            }
            Some((SocketAddr::new(ip, port), rtcp))
        };
        // Checked: nothing fails from here on.
        if let Some(link) = t.plain_mut() {
            link.connected = true;
        }
        if let Some(session) = session {
            t.media = Some(session);
            t.stats.srtp_profile = t
                .plain()
                .and_then(|l| l.srtp.as_ref())
                .map(|(p, _)| p.name());
        }
        if let Some((remote, rtcp)) = remotes {
            self.set_plain_remote(transport, PlainSocket::Rtp, remote);
            if let Some(rtcp) = rtcp {
                self.set_plain_remote(transport, PlainSocket::Rtcp, rtcp);
            }
        }
        self.wake_media(transport);
        self.request_key_frames_for_transport(transport);
        Ok(())
    }

    /// Makes `remote` the address a plain transport's socket talks to: the demux routes its
    /// datagrams there, media (or RTCP) goes there, and the application hears of it.
    pub(crate) fn set_plain_remote(
        &mut self,
        transport: TransportId,
        socket: PlainSocket,
        remote: SocketAddr,
    ) {
        let Some(t) = self.transports.get_mut(&transport) else {
            return;
        };
        let Some(link) = t.plain_mut() else {
            return;
        };
        let local = match socket {
            PlainSocket::Rtp => {
                link.remote = Some(remote);
                link.local
            }
            PlainSocket::Rtcp => {
                link.rtcp_remote = Some(remote);
                match link.rtcp_local {
                    Some(local) => local,
                    None => return,
                }
            }
        };
        let tuple = TransportTuple {
            proto: Protocol::Udp,
            local,
            remote,
        };
        self.demux
            .insert_tuple((Protocol::Udp, local, remote), transport);
        let event = match socket {
            PlainSocket::Rtp => {
                t.selected = Some(tuple);
                t.outbox.set_udp(true);
                t.stats.selected_tuple = Some(tuple);
                Event::Tuple { transport, tuple }
            }
            PlainSocket::Rtcp => {
                t.rtcp_selected = Some(tuple);
                t.stats.rtcp_tuple = Some(tuple);
                Event::RtcpTuple { transport, tuple }
            }
        };
        debug!(transport = %transport, %remote, "plain transport's remote");
        self.out.push_back(Output::Event(event));
    }
}

/// The concrete UDP address of a plain transport's listen info.
fn plain_address(info: &TransportListenInfo) -> Result<SocketAddr, Error> {
    if info.protocol != Protocol::Udp {
        return Err(Error::InvalidListenInfo(
            "plain transports are UDP only".into(),
        ));
    }
    info.concrete().ok_or_else(|| {
        Error::InvalidListenInfo(format!(
            "{}:{} is not a concrete address and port (the caller opens the socket)",
            info.ip, info.port
        ))
    })
}
