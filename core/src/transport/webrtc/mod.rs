//! The WebRTC transport: one str0m `Rtc` (ICE-lite, DTLS, SCTP) per endpoint.

pub(crate) mod drive;
pub(crate) mod dtls;
pub(crate) mod keys;
pub(crate) mod sctp;
pub(crate) mod stun;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::net::TcpType;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use crate::demux::Tuple;
use crate::event::{DtlsState, IceState};
use crate::io::Protocol;
use crate::ortc::{
    DtlsRole, IceCandidate, IceCandidateTcpType, IceCandidateType, NumSctpStreams, SctpParameters,
};
use keys::{KeySlot, SrtpKeys};
use sctp::SctpLink;

/// Where a WebRTC transport can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenInfo {
    /// UDP or TCP (passive ICE-TCP).
    pub protocol: Protocol,
    /// The local address the runtime's socket is bound to (a concrete address, not a wildcard:
    /// it is what arriving datagrams report as their destination).
    pub local: SocketAddr,
    /// The address to announce to the peer instead of `local.ip()` (for a host behind NAT).
    pub announced_address: Option<String>,
}

/// Options for [`Sfu::create_webrtc_transport`](crate::Sfu::create_webrtc_transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcTransportOptions {
    /// The addresses to offer as ICE candidates, most preferred first. UDP candidates are
    /// preferred over TCP ones whatever the order.
    pub listen_infos: Vec<ListenInfo>,
    /// The DTLS role the transport takes, and announces in its `dtlsParameters` (mediasoup has
    /// no such option; this one is ours):
    /// - [`DtlsRole::Auto`] (the default): the transport announces `auto` and takes the role
    ///   opposite to the client's in `connect` (a client saying `client`, `auto` or nothing
    ///   makes it the DTLS server; `server` makes it the DTLS client).
    /// - [`DtlsRole::Client`]: it announces `client` and is the DTLS client; mediasoup-client
    ///   then makes the browser the DTLS server, and the browser picks the SRTP profile (a
    ///   DTLS server here prefers `AEAD_AES_256_GCM`; Chromium prefers
    ///   `AES_CM_128_HMAC_SHA1_80`). With Chromium this holds as is for send transports; on a
    ///   receive transport Chromium answers mediasoup-client's offer (`a=setup:actpass`) as the
    ///   DTLS client whatever role mediasoup-client reports, unless the page makes that
    ///   answer `a=setup:passive` (as `examples/web` does).
    /// - [`DtlsRole::Server`]: it announces `server` and is the DTLS server.
    ///
    /// With `Client` or `Server`, a client that asks for the same role in `connect` gets
    /// [`Error::DtlsRoleConflict`](crate::Error::DtlsRoleConflict).
    pub dtls_role: DtlsRole,
    /// Whether the transport carries data channels over SCTP (mediasoup's `enableSctp`;
    /// default false).
    pub enable_sctp: bool,
    /// The SCTP streams each way (mediasoup's `numSctpStreams`; default 1024 each).
    pub num_sctp_streams: NumSctpStreams,
    /// The largest message a data producer of the transport may send (mediasoup's
    /// `maxSctpMessageSize`; default 262,144 bytes), signaled in `sctpParameters` so that
    /// clients keep to it. Larger ones, up to twice this size, are dropped and counted; the SCTP
    /// stack refuses a message larger than that, which stops that transport's association
    /// (only that one).
    pub max_sctp_message_size: u32,
    /// The most bytes each data consumer of the transport may have buffered, sent and not yet
    /// acknowledged (mediasoup's `sctpSendBufferSize`; default 262,144). A message that would
    /// pass it is dropped and counted.
    pub sctp_send_buffer_size: u32,
    /// The bandwidth the transport's estimate starts from toward the endpoint, in bits per
    /// second, until its feedback says more (mediasoup's `initialAvailableOutgoingBitrate`;
    /// default 600,000).
    pub initial_available_outgoing_bitrate: u64,
}

impl Default for WebRtcTransportOptions {
    fn default() -> Self {
        Self {
            listen_infos: Vec::new(),
            dtls_role: DtlsRole::Auto,
            enable_sctp: false,
            num_sctp_streams: NumSctpStreams::default(),
            max_sctp_message_size: 262_144,
            sctp_send_buffer_size: 262_144,
            initial_available_outgoing_bitrate: crate::media::bwe::DEFAULT_INITIAL_BITRATE,
        }
    }
}

impl WebRtcTransportOptions {
    /// The `sctpParameters` to signal, when SCTP is enabled.
    pub(crate) fn sctp_parameters(&self) -> Option<SctpParameters> {
        self.enable_sctp.then_some(SctpParameters {
            port: crate::ortc::SCTP_PORT,
            os: self.num_sctp_streams.os,
            mis: self.num_sctp_streams.mis,
            max_message_size: self.max_sctp_message_size,
        })
    }
}

/// What a WebRTC transport adds to a [`Transport`](super::Transport): ICE-lite, DTLS and
/// SCTP, in one str0m `Rtc` with no media declared (str0m never sees RTP or RTCP).
pub(crate) struct WebRtcLink {
    pub(crate) rtc: Rtc,
    /// The DTLS role the transport announced (its options' `dtls_role`).
    pub(crate) dtls_role: DtlsRole,
    pub(crate) ice_password: String,
    pub(crate) ufrag: String,
    /// The client's ufrag, learned from its first authenticated binding request.
    pub(crate) remote_ufrag: Option<String>,
    /// Paths ICE validated; the demux routes them here.
    pub(crate) tuples: Vec<Tuple>,
    pub(crate) local_addrs: Vec<(Protocol, SocketAddr)>,
    pub(crate) ice_state: IceState,
    pub(crate) dtls_state: DtlsState,
    /// `connect` was called (DTLS started).
    pub(crate) connected: bool,
    /// When the client last sent a valid binding request (its consent, RFC 7675).
    pub(crate) consent_at: Option<Instant>,
    /// The Sfu's consent timer runs for this transport.
    pub(crate) consent_timer: bool,
    /// Where this transport's DTLS instance leaves the SRTP keys of the handshake.
    pub(crate) key_slot: KeySlot,
    /// The SRTP keys, taken from `key_slot` when DTLS connects.
    pub(crate) srtp_keys: Option<SrtpKeys>,
    /// The SCTP association, for a transport created with `enable_sctp`.
    pub(crate) sctp: Option<SctpLink>,
}

impl std::fmt::Debug for WebRtcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLink")
            .field("ufrag", &self.ufrag)
            .field("ice_state", &self.ice_state)
            .field("dtls_state", &self.dtls_state)
            .finish_non_exhaustive()
    }
}

/// The DTLS certificate every WebRTC transport of an Sfu presents, and the crypto provider
/// behind it.
pub(crate) struct DtlsIdentity {
    cert: DtlsCert,
    crypto: Arc<CryptoProvider>,
}

impl DtlsIdentity {
    /// Makes the certificate.
    pub(crate) fn new() -> Result<Self, crate::error::Error> {
        let crypto = dtls::crypto_provider();
        let cert = crypto.dtls_provider.generate_certificate().ok_or_else(|| {
            crate::error::Error::Certificate("the crypto provider made none".into())
        })?;
        Ok(Self { cert, crypto })
    }
}

/// The str0m configuration for a transport: ICE-lite, DTLS and SCTP. No media is declared, so
/// str0m never sends or receives RTP or RTCP; the media session does.
pub(crate) fn rtc_config(
    cert: &DtlsCert,
    crypto: &Arc<CryptoProvider>,
    creds: IceCreds,
    options: &WebRtcTransportOptions,
) -> RtcConfig {
    // str0m takes messages up to twice the transport's limit, so that the Sfu sees (and
    // counts) the ones past it; each data consumer's buffer is bounded by the Sfu, and the
    // association's by their number.
    let receive_limit = options.max_sctp_message_size.saturating_mul(2);
    let buffered = (options.sctp_send_buffer_size as usize)
        .saturating_mul(usize::from(options.num_sctp_streams.os).max(1));
    RtcConfig::new()
        .set_sctp_max_message_size(receive_limit)
        .set_sctp_max_buffered_amount(buffered)
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(cert.clone())
        .set_crypto_provider(crypto.clone())
        .set_local_ice_credentials(creds)
        .set_stats_interval(None)
        .clear_codecs()
}

/// The ICE candidates for `listen`: the str0m candidate and what is signaled to the peer.
pub(crate) fn candidates(listen: &[ListenInfo]) -> Result<Vec<(Candidate, IceCandidate)>, String> {
    let mut out = Vec::with_capacity(listen.len());
    for (index, info) in listen.iter().enumerate() {
        if info.local.ip().is_unspecified() || info.local.port() == 0 {
            return Err(format!("{} is not a concrete address and port", info.local));
        }
        let candidate = match info.protocol {
            Protocol::Udp => Candidate::host(info.local, "udp"),
            Protocol::Tcp => Candidate::builder()
                .tcp()
                .host(info.local)
                .tcptype(TcpType::Passive)
                .build(),
        }
        .map_err(|e| e.to_string())?;
        // Host type preference, UDP above TCP, earlier entries above later ones.
        let local_pref: u32 = match info.protocol {
            Protocol::Udp => 0xffff - index as u32,
            Protocol::Tcp => 0x7fff - index as u32,
        };
        let priority = (64 << 24) | (local_pref << 8) | 255;
        let address = info
            .announced_address
            .clone()
            .unwrap_or_else(|| info.local.ip().to_string());
        let (foundation, tcp_type) = match info.protocol {
            Protocol::Udp => ("udpcandidate", None),
            Protocol::Tcp => ("tcpcandidate", Some(IceCandidateTcpType::Passive)),
        };
        let signaled = IceCandidate {
            foundation: foundation.to_owned(),
            priority,
            address: address.clone(),
            ip: address,
            protocol: info.protocol,
            port: info.local.port(),
            kind: IceCandidateType::Host,
            tcp_type,
        };
        out.push((candidate, signaled));
    }
    Ok(out)
}

impl WebRtcLink {
    pub(crate) fn new(
        rtc: Rtc,
        dtls_role: DtlsRole,
        creds: IceCreds,
        local_addrs: Vec<(Protocol, SocketAddr)>,
        key_slot: KeySlot,
        sctp: Option<SctpLink>,
    ) -> Self {
        Self {
            rtc,
            dtls_role,
            ice_password: creds.pass,
            ufrag: creds.ufrag,
            remote_ufrag: None,
            tuples: Vec::new(),
            local_addrs,
            ice_state: IceState::New,
            dtls_state: DtlsState::New,
            connected: false,
            consent_at: None,
            consent_timer: false,
            key_slot,
            srtp_keys: None,
            sctp,
        }
    }

    /// Takes the SRTP keys the DTLS handshake left in the slot (str0m drains the keying
    /// material before it reports `Event::Connected`); returns their profile's name.
    pub(crate) fn take_srtp_keys(&mut self) -> Option<&'static str> {
        let keys = self.key_slot.take()?;
        let suite = keys.crypto_suite();
        self.srtp_keys = Some(keys);
        Some(suite)
    }

    /// Whether `addr` is one of the addresses this transport listens on.
    pub(crate) fn listens_on(&self, proto: Protocol, addr: SocketAddr) -> bool {
        self.local_addrs.contains(&(proto, addr))
    }
}

/// Whether the transport is the DTLS client (active), given the role it announced and the
/// role the client asked for in `connect`; `Err` when the two roles clash.
pub(crate) fn dtls_active(announced: DtlsRole, remote: Option<DtlsRole>) -> Result<bool, DtlsRole> {
    let remote = remote.unwrap_or(DtlsRole::Auto);
    match (announced, remote) {
        (DtlsRole::Auto, remote) => Ok(remote == DtlsRole::Server),
        (DtlsRole::Client, DtlsRole::Client) | (DtlsRole::Server, DtlsRole::Server) => Err(remote),
        (DtlsRole::Client, _) => Ok(true),
        (DtlsRole::Server, _) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dtls_role_follows_the_announced_role_or_the_client() {
        use DtlsRole::{Auto, Client, Server};
        // Announced auto: the opposite of the client's role; a client without one is a client.
        assert_eq!(dtls_active(Auto, Some(Server)), Ok(true));
        assert_eq!(dtls_active(Auto, Some(Client)), Ok(false));
        assert_eq!(dtls_active(Auto, Some(Auto)), Ok(false));
        assert_eq!(dtls_active(Auto, None), Ok(false));
        // Announced client: active unless the client wants to be the client too.
        assert_eq!(dtls_active(Client, Some(Server)), Ok(true));
        assert_eq!(dtls_active(Client, Some(Auto)), Ok(true));
        assert_eq!(dtls_active(Client, None), Ok(true));
        assert_eq!(dtls_active(Client, Some(Client)), Err(Client));
        // Announced server: passive unless the client wants to be the server too.
        assert_eq!(dtls_active(Server, Some(Client)), Ok(false));
        assert_eq!(dtls_active(Server, Some(Auto)), Ok(false));
        assert_eq!(dtls_active(Server, None), Ok(false));
        assert_eq!(dtls_active(Server, Some(Server)), Err(Server));
    }
}
