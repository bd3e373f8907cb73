//! Pipe transports' control objects, in mediasoup's JSON shapes: `createPipeTransport`'s
//! options, the created transport's `tuple` and `srtpParameters`, and `connect`'s parameters.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    NumSctpStreams, SctpParameters, SrtpCryptoSuite, SrtpParameters, TransportListenInfo,
    TupleParameters, SCTP_PORT,
};

/// The SRTP suite of pipe transports with `enableSrtp` (mediasoup's choice for pipes).
pub const PIPE_SRTP_CRYPTO_SUITE: SrtpCryptoSuite = SrtpCryptoSuite::AeadAes256Gcm;

/// Options of a pipe transport (mediasoup's `PipeTransportOptions`): a link to a peer pipe
/// transport in another router, in this Sfu, another worker or another host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipeTransportOptions {
    /// Where the peer's RTP and RTCP arrive (one port: RTCP is always muxed).
    pub listen_info: TransportListenInfo,
    /// Data channels over the pipe (default false): SCTP packets as datagrams of their own on
    /// the pipe, beside RTP and RTCP, with no DTLS (as mediasoup's pipes send them; SRTP does
    /// not cover them). The transport then signals `sctpParameters`, and takes pipe data
    /// producers and consumers. The association starts at `connect`: the side whose signaled
    /// address (its `tuple`, ip then port) sorts lower than the peer's sends INIT, the other
    /// waits for it; a peer that sends INIT whatever its role (mediasoup) is answered too.
    #[serde(default)]
    pub enable_sctp: bool,
    /// The SCTP streams each way (mediasoup's `numSctpStreams`; default 1024 each).
    #[serde(default)]
    pub num_sctp_streams: NumSctpStreams,
    /// The largest message sent or taken across the pipe (mediasoup's `maxSctpMessageSize`;
    /// default 262,144 bytes): a larger one is dropped and counted, never buffered. The SCTP
    /// stack refuses one from the peer over twice this size, which ends the association.
    #[serde(default = "default_sctp_size")]
    pub max_sctp_message_size: u32,
    /// The most bytes each data consumer on the pipe may have buffered, sent and not yet
    /// acknowledged (mediasoup's `sctpSendBufferSize`; default 262,144). A message that would
    /// pass it is dropped and counted.
    #[serde(default = "default_sctp_size")]
    pub sctp_send_buffer_size: u32,
    /// Retransmissions across the pipe: pipe consumers announce RTX streams and answer the
    /// peer's NACKs, pipe producers ask for what they lost (default false).
    #[serde(default)]
    pub enable_rtx: bool,
    /// Protect the pipe with SRTP (`AEAD_AES_256_GCM`), keyed by the two sides' `srtpParameters`
    /// (default false).
    #[serde(default)]
    pub enable_srtp: bool,
}

impl PipeTransportOptions {
    /// A pipe on `listen_info`, without RTX, SRTP or SCTP.
    pub fn new(listen_info: TransportListenInfo) -> Self {
        Self {
            listen_info,
            enable_sctp: false,
            num_sctp_streams: NumSctpStreams::default(),
            max_sctp_message_size: default_sctp_size(),
            sctp_send_buffer_size: default_sctp_size(),
            enable_rtx: false,
            enable_srtp: false,
        }
    }

    /// The `sctpParameters` to signal, with SCTP.
    pub(crate) fn sctp_parameters(&self) -> Option<SctpParameters> {
        self.enable_sctp.then_some(SctpParameters {
            port: SCTP_PORT,
            os: self.num_sctp_streams.os,
            mis: self.num_sctp_streams.mis,
            max_message_size: self.max_sctp_message_size,
        })
    }
}

/// The default maximum message size and send buffer size of a pipe's SCTP (bytes).
fn default_sctp_size() -> u32 {
    262_144
}

/// A created pipe transport, as mediasoup's `PipeTransport` shows it: give `tuple` and
/// `srtpParameters` to the peer's `connect`; `sctpParameters` with SCTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipeTransportParameters {
    /// The transport's id.
    pub id: String,
    /// Where the peer sends: `localAddress:localPort`.
    pub tuple: TupleParameters,
    /// Whether pipe consumers on it carry RTX.
    pub rtx: bool,
    /// The transport's own SRTP keys, what it sends with (with `enableSrtp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_parameters: Option<SrtpParameters>,
    /// The transport's SCTP association (with `enableSctp`): port, streams each way, largest
    /// message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp_parameters: Option<SctpParameters>,
}

/// What a pipe transport's `connect` takes (mediasoup's `PipeTransport.connect` options): the
/// peer's address and, with SRTP, the keys it sends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipeTransportConnectParameters {
    /// The peer's ip.
    pub ip: IpAddr,
    /// The peer's port.
    pub port: u16,
    /// The keys the peer sends with (required with SRTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_parameters: Option<SrtpParameters>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mediasoup_json_shapes() {
        let options: PipeTransportOptions = serde_json::from_str(
            r#"{"listenInfo":{"protocol":"udp","ip":"127.0.0.1"},"enableRtx":true,"enableSrtp":true}"#,
        )
        .unwrap();
        assert!(options.enable_rtx && options.enable_srtp && !options.enable_sctp);
        let connect: PipeTransportConnectParameters = serde_json::from_str(
            r#"{"ip":"10.0.0.2","port":40001,
                "srtpParameters":{"cryptoSuite":"AEAD_AES_256_GCM","keyBase64":"AAAA"}}"#,
        )
        .unwrap();
        assert_eq!(connect.port, 40001);
        assert_eq!(
            connect.srtp_parameters.unwrap().crypto_suite,
            PIPE_SRTP_CRYPTO_SUITE
        );
        let no_srtp: PipeTransportConnectParameters =
            serde_json::from_str(r#"{"ip":"::1","port":9}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&no_srtp).unwrap(),
            r#"{"ip":"::1","port":9}"#
        );
    }
}
