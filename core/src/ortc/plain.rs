//! Plain transports' control objects, in mediasoup's JSON shapes: `createPlainTransport`'s
//! options, the created transport's `tuple`, `rtcpTuple` and `srtpParameters`, and
//! `connect`'s parameters.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::Protocol;
use crate::media::srtp::SrtpProfile;

/// Where a transport listens (mediasoup's `TransportListenInfo`).
///
/// The Sfu itself takes only a concrete `ip` and a `port` other than 0: the caller owns the
/// socket. The bundled runtimes open that socket when the transport is created: on `port`, or
/// the first free port of `port_range`, or of their configured range when neither is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportListenInfo {
    /// Only UDP for plain transports.
    #[serde(default = "udp")]
    pub protocol: Protocol,
    /// The local ip: a concrete one (the bundled runtimes refuse a wildcard for plain
    /// transports; give the public address as `announced_address`).
    pub ip: IpAddr,
    /// The address (ip or host name) to signal instead of `ip` (a public address behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_address: Option<String>,
    /// The port; 0 lets the runtime choose.
    #[serde(default)]
    pub port: u16,
    /// The ports the runtime may choose from when `port` is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<PortRange>,
}

fn udp() -> Protocol {
    Protocol::Udp
}

fn yes() -> bool {
    true
}

impl TransportListenInfo {
    /// UDP on `ip`, any port.
    pub fn udp(ip: IpAddr) -> Self {
        Self {
            protocol: Protocol::Udp,
            ip,
            announced_address: None,
            port: 0,
            port_range: None,
        }
    }

    /// UDP on `addr` (its port may be 0: any).
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            port: addr.port(),
            ..Self::udp(addr.ip())
        }
    }

    /// The socket address, when it is concrete (what the Sfu itself takes).
    pub(crate) fn concrete(&self) -> Option<SocketAddr> {
        (!self.ip.is_unspecified() && self.port != 0).then(|| SocketAddr::new(self.ip, self.port))
    }
}

/// An inclusive range of ports (mediasoup's `portRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    /// The lowest port.
    pub min: u16,
    /// The highest port.
    pub max: u16,
}

/// Options of a plain transport (mediasoup's `PlainTransportOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainTransportOptions {
    /// Where RTP (and RTCP, with `rtcp_mux`) arrives.
    pub listen_info: TransportListenInfo,
    /// Where RTCP arrives when `rtcp_mux` is off; by default the `listen_info` ip on another
    /// port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp_listen_info: Option<TransportListenInfo>,
    /// RTP and RTCP share one port (default true).
    #[serde(default = "yes")]
    pub rtcp_mux: bool,
    /// Learn the remote address from the first valid packet instead of `connect` (default
    /// false). Valid means authentic with SRTP, well-formed RTP or RTCP without; with
    /// `rtcp_mux` only an RTP packet teaches the address (RTCP that comes first, as ffmpeg
    /// sends it from another port, is taken but teaches nothing). Datagrams from
    /// any other address afterwards are dropped and counted
    /// ([`TransportStats::dropped_foreign_source`](crate::TransportStats::dropped_foreign_source)).
    #[serde(default)]
    pub comedia: bool,
    /// Protect media with SRTP, keyed by SDES (default false).
    #[serde(default)]
    pub enable_srtp: bool,
    /// The SRTP crypto suite (default `AES_CM_128_HMAC_SHA1_80`).
    #[serde(default)]
    pub srtp_crypto_suite: SrtpCryptoSuite,
}

impl PlainTransportOptions {
    /// Plain RTP on `listen_info`, RTCP muxed, no comedia, no SRTP.
    pub fn new(listen_info: TransportListenInfo) -> Self {
        Self {
            listen_info,
            rtcp_listen_info: None,
            rtcp_mux: true,
            comedia: false,
            enable_srtp: false,
            srtp_crypto_suite: SrtpCryptoSuite::default(),
        }
    }
}

/// An SRTP crypto suite, as mediasoup and SDES (RFC 4568) name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SrtpCryptoSuite {
    /// `AEAD_AES_256_GCM`.
    #[serde(rename = "AEAD_AES_256_GCM")]
    AeadAes256Gcm,
    /// `AEAD_AES_128_GCM`.
    #[serde(rename = "AEAD_AES_128_GCM")]
    AeadAes128Gcm,
    /// `AES_CM_128_HMAC_SHA1_80` (the default).
    #[default]
    #[serde(rename = "AES_CM_128_HMAC_SHA1_80")]
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`.
    #[serde(rename = "AES_CM_128_HMAC_SHA1_32")]
    AesCm128HmacSha1_32,
}

impl SrtpCryptoSuite {
    /// Every suite.
    pub const ALL: [SrtpCryptoSuite; 4] = [
        Self::AeadAes256Gcm,
        Self::AeadAes128Gcm,
        Self::AesCm128HmacSha1_80,
        Self::AesCm128HmacSha1_32,
    ];

    /// The SRTP profile of the media plane.
    pub fn profile(self) -> SrtpProfile {
        match self {
            Self::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
            Self::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
            Self::AesCm128HmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
            Self::AesCm128HmacSha1_32 => SrtpProfile::Aes128CmHmacSha1_32,
        }
    }

    /// The length of `keyBase64`'s bytes: master key and master salt.
    pub fn key_len(self) -> usize {
        let p = self.profile();
        p.master_key_len() + p.master_salt_len()
    }
}

/// SDES keys (mediasoup's `SrtpParameters`): the suite and the master key followed by the
/// master salt, in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SrtpParameters {
    /// The crypto suite.
    pub crypto_suite: SrtpCryptoSuite,
    /// Master key || master salt, base64 (RFC 4648, padded).
    pub key_base64: String,
}

impl SrtpParameters {
    /// The master key and salt, when `key_base64` decodes to the suite's length.
    pub(crate) fn key_and_salt(&self) -> Option<(Vec<u8>, usize)> {
        let bytes = data_encoding::BASE64
            .decode(self.key_base64.trim().as_bytes())
            .ok()?;
        (bytes.len() == self.crypto_suite.key_len())
            .then(|| (bytes, self.crypto_suite.profile().master_key_len()))
    }
}

/// A transport's network path as mediasoup signals it (its `TransportTuple`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TupleParameters {
    /// The local address, or the announced one.
    pub local_address: String,
    /// The local port.
    pub local_port: u16,
    /// The remote ip, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
    /// The remote port, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    /// Always UDP for plain transports.
    pub protocol: Protocol,
}

/// A created plain transport, as mediasoup's `PlainTransport` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainTransportParameters {
    /// The transport's id.
    pub id: String,
    /// Where RTP (and muxed RTCP) goes: the remote sends to `localAddress:localPort`.
    pub tuple: TupleParameters,
    /// Where RTCP goes when it is not muxed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp_tuple: Option<TupleParameters>,
    /// Whether RTCP is muxed.
    pub rtcp_mux: bool,
    /// Whether the remote address is learned from the first packet.
    pub comedia: bool,
    /// The transport's own SRTP keys, what it sends with (with `enable_srtp`): give them to the
    /// remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_parameters: Option<SrtpParameters>,
}

/// What a plain transport's `connect` takes (mediasoup's `PlainTransport.connect` options):
/// the remote's address (unless comedia learns it) and its SRTP keys (with SRTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlainTransportConnectParameters {
    /// The remote ip (required without comedia).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// The remote RTP port (required without comedia).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The remote RTCP port, when RTCP is not muxed (without comedia; default `port + 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp_port: Option<u16>,
    /// The keys the remote sends with (required with SRTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp_parameters: Option<SrtpParameters>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mediasoup_json_shapes() {
        let options: PlainTransportOptions = serde_json::from_str(
            r#"{"listenInfo":{"protocol":"udp","ip":"127.0.0.1","portRange":{"min":40000,"max":40100}},
                "comedia":true,"enableSrtp":true,"srtpCryptoSuite":"AEAD_AES_256_GCM"}"#,
        )
        .unwrap();
        assert!(options.rtcp_mux, "rtcpMux defaults to true");
        assert!(options.comedia && options.enable_srtp);
        assert_eq!(options.srtp_crypto_suite, SrtpCryptoSuite::AeadAes256Gcm);
        assert_eq!(
            options.listen_info.port_range,
            Some(PortRange {
                min: 40000,
                max: 40100
            })
        );
        assert_eq!(
            options.listen_info.concrete(),
            None,
            "port 0 is not concrete"
        );
        let connect: PlainTransportConnectParameters = serde_json::from_str(
            r#"{"ip":"10.0.0.1","port":5004,"rtcpPort":5005,
                "srtpParameters":{"cryptoSuite":"AES_CM_128_HMAC_SHA1_32","keyBase64":"AAAA"}}"#,
        )
        .unwrap();
        assert_eq!(connect.rtcp_port, Some(5005));
        let srtp = connect.srtp_parameters.unwrap();
        assert_eq!(srtp.crypto_suite, SrtpCryptoSuite::AesCm128HmacSha1_32);
        assert_eq!(srtp.key_and_salt(), None, "3 bytes are not a key and salt");
        let tuple = TupleParameters {
            local_address: "1.2.3.4".into(),
            local_port: 9,
            remote_ip: None,
            remote_port: None,
            protocol: Protocol::Udp,
        };
        assert_eq!(
            serde_json::to_string(&tuple).unwrap(),
            r#"{"localAddress":"1.2.3.4","localPort":9,"protocol":"udp"}"#
        );
        for suite in SrtpCryptoSuite::ALL {
            let json = serde_json::to_string(&suite).unwrap();
            assert_eq!(json.trim_matches('"'), suite.profile().name());
            let key = data_encoding::BASE64.encode(&vec![7; suite.key_len()]);
            let p = SrtpParameters {
                crypto_suite: suite,
                key_base64: key,
            };
            let (bytes, key_len) = p.key_and_salt().unwrap();
            assert_eq!(bytes.len() - key_len, suite.profile().master_salt_len());
        }
    }
}
