//! Driving a WebRTC transport's str0m `Rtc`: handshake datagrams in, transmits, events and
//! deadlines out, in the core's own types.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::config::Fingerprint;
use str0m::net::Receive;
use str0m::{IceConnectionState, IceCreds, RtcError};

use super::dtls::with_key_slot;
use super::keys::KeySlot;
use super::sctp::{ChannelEvent, SctpLink};
use super::{
    candidates, dtls_active, rtc_config, stun, DtlsIdentity, WebRtcLink, WebRtcTransportOptions,
};
use crate::demux::{self, Kind, Tuple};
use crate::error::Error;
use crate::event::{DtlsState, IceState};
use crate::io::{Protocol, Transmit};
use crate::ortc::{DtlsParameters, IceCandidate};

/// How soon to look again at a connected transport that reports being due already.
const MIN_WAKE: Duration = Duration::from_millis(1);

/// How soon to look again at a transport whose DTLS has not started (str0m reports its
/// unstarted DTLS as due "now" until `connect`).
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// When an `Rtc` that failed to say is due again.
const FALLBACK_WAKE: Duration = Duration::from_millis(100);

/// What a link has for the Sfu, one item per [`WebRtcLink::poll`].
#[derive(Debug)]
pub(crate) enum LinkOutput {
    /// A datagram to send (STUN answers, DTLS).
    Transmit(Transmit),
    /// Something changed.
    Event(LinkEvent),
    /// Nothing more until then.
    Timeout(Instant),
    /// The `Rtc` failed; it is due again at the deadline.
    Failed {
        /// The failure ended a DTLS handshake in progress.
        dtls_failed: bool,
        at: Instant,
    },
}

/// A change a link reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEvent {
    /// Something on the SCTP association's channels.
    Channel(ChannelEvent),
    /// ICE reached a new state.
    Ice(IceState),
    /// DTLS is up: the SRTP keys wait in the link's key slot.
    Connected,
    /// DTLS closed.
    Closed,
}

/// Why a link refused a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a packet the WebRTC stack can take.
    Malformed,
    /// A STUN message whose integrity does not verify.
    StunUnauthenticated,
    /// A binding request for another ufrag.
    StunUnknownUfrag,
    /// A DTLS datagram that is not a sequence of well-formed DTLS 1.2 records.
    DtlsMalformed,
    /// DTLS application data (SCTP) for a transport without SCTP.
    DataWithoutSctp,
    /// The WebRTC stack refused it.
    Rejected {
        /// The refusal ended a DTLS handshake in progress.
        dtls_failed: bool,
    },
}

/// Why a binding request from a new path was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdmitRefusal {
    /// Its integrity does not verify, or it reached an address the transport does not use.
    Unauthenticated,
    /// The transport knows as many paths as it may, and all but the selected one are in use.
    TooManyTuples,
}

/// A new link, what to signal for it: its ICE candidates and the certificate fingerprint
/// (algorithm, value).
pub(crate) struct Created {
    pub(crate) link: WebRtcLink,
    pub(crate) candidates: Vec<IceCandidate>,
    pub(crate) fingerprint: (String, String),
}

impl WebRtcLink {
    /// A link for `options` with ICE credentials `ufrag` and `password`, sharing the Sfu's
    /// certificate.
    pub(crate) fn create(
        now: Instant,
        identity: &DtlsIdentity,
        (ufrag, password): (String, String),
        options: &WebRtcTransportOptions,
    ) -> Result<Created, Error> {
        let found = candidates(&options.listen_infos).map_err(Error::InvalidListenInfo)?;
        let creds = IceCreds {
            ufrag,
            pass: password,
        };
        let config = rtc_config(&identity.cert, &identity.crypto, creds.clone(), options);
        // The DTLS instance `build` makes reports this transport's SRTP keys to `key_slot`.
        let key_slot = KeySlot::default();
        let mut rtc = with_key_slot(&key_slot, || config.build(now));
        {
            let mut api = rtc.direct_api();
            api.set_ice_lite(true);
            api.set_ice_controlling(false);
        }
        let mut signaled = Vec::with_capacity(found.len());
        for (candidate, ice) in found {
            rtc.add_local_candidate(candidate);
            signaled.push(ice);
        }
        let text = rtc.direct_api().local_dtls_fingerprint().to_string();
        let (algorithm, value) = text.split_once(' ').unwrap_or(("sha-256", &text));
        let fingerprint = (algorithm.to_owned(), value.to_owned());
        let local_addrs = options
            .listen_infos
            .iter()
            .map(|l| (l.protocol, l.local))
            .collect();
        Ok(Created {
            link: WebRtcLink::new(
                rtc,
                options.dtls_role,
                creds,
                local_addrs,
                key_slot,
                options
                    .sctp_parameters()
                    .map(|p| SctpLink::new(p, options.sctp_send_buffer_size as usize)),
            ),
            candidates: signaled,
            fingerprint,
        })
    }

    /// A STUN or DTLS datagram on a path the demux routed to this link (`known_path`: one ICE
    /// validated before; else the binding request that is making it known).
    #[allow(clippy::too_many_arguments)] // One datagram's facts.
    pub(crate) fn receive(
        &mut self,
        now: Instant,
        identity: &DtlsIdentity,
        kind: Kind,
        known_path: bool,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> Result<(), Refusal> {
        let Ok(recv) = Receive::new(proto.into(), source, destination, contents) else {
            return Err(Refusal::Malformed);
        };
        let input = str0m::Input::Receive(now, recv);
        if kind == Kind::Stun && !self.rtc.accepts(&input) {
            return Err(Refusal::StunUnauthenticated);
        }
        // On a validated path str0m takes any STUN and its ICE agent drops what does not verify,
        // uncounted: check it as `admit` checks a new path.
        if kind == Kind::Stun && known_path {
            if stun::binding_request_ufrags(contents).is_none_or(|(local, _)| local != self.ufrag) {
                return Err(Refusal::StunUnknownUfrag);
            }
            if !stun::verifies(&identity.crypto, &self.ice_password, contents) {
                return Err(Refusal::StunUnauthenticated);
            }
        }
        // A DTLS datagram that is not a sequence of well-formed DTLS 1.2 records: the DTLS
        // stack would discard it silently, uncounted.
        if kind == Kind::Dtls && !demux::is_dtls12_records(contents) {
            return Err(Refusal::DtlsMalformed);
        }
        if kind == Kind::Dtls && self.sctp.is_none() && demux::has_dtls_application_data(contents) {
            return Err(Refusal::DataWithoutSctp);
        }
        self.rtc
            .handle_input(input)
            .map_err(|e| Refusal::Rejected {
                dtls_failed: self.ends_handshake(&e),
            })?;
        if kind == Kind::Stun {
            // Only an authenticated binding request gets this far.
            self.consent_at = Some(now);
        }
        Ok(())
    }

    /// A binding request from a path no transport knows yet, addressed to this link's ufrag
    /// by a client whose ufrag is `remote`: checks its integrity and learns the path. When the
    /// link knows `max_tuples` paths already, the oldest one media does not use (not
    /// `selected`) makes room, and is returned for the demux to forget: a client whose NAT
    /// mapping keeps changing is never locked out (only the client, who knows the ICE password,
    /// can add paths).
    pub(crate) fn admit(
        &mut self,
        identity: &DtlsIdentity,
        tuple: Tuple,
        remote: String,
        contents: &[u8],
        (max_tuples, selected): (usize, Option<Tuple>),
    ) -> Result<Option<Tuple>, AdmitRefusal> {
        let (proto, destination, _) = tuple;
        let verified = stun::verifies(&identity.crypto, &self.ice_password, contents);
        if !verified || !self.listens_on(proto, destination) {
            return Err(AdmitRefusal::Unauthenticated);
        }
        let mut evicted = None;
        if self.tuples.len() >= max_tuples {
            let oldest = self
                .tuples
                .iter()
                .position(|t| Some(*t) != selected)
                .filter(|_| max_tuples > 0)
                .ok_or(AdmitRefusal::TooManyTuples)?;
            evicted = Some(self.tuples.remove(oldest));
        }
        // The server never needs the client's ICE password (ICE-lite answers only), but str0m
        // holds binding requests back until it has remote credentials: learn the client's ufrag
        // from its first authenticated request, and again after an ICE restart.
        if self.remote_ufrag.as_deref() != Some(remote.as_str()) {
            self.rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag: remote.clone(),
                pass: String::new(),
            });
            self.remote_ufrag = Some(remote);
        }
        self.tuples.push(tuple);
        Ok(evicted)
    }

    /// Lets the `Rtc` act on the time; `Err` says whether a failure ended a DTLS handshake.
    pub(crate) fn timeout(&mut self, now: Instant) -> Result<(), bool> {
        self.rtc
            .handle_input(str0m::Input::Timeout(now))
            .map_err(|e| self.ends_handshake(&e))
    }

    /// The next thing the `Rtc` has; poll until [`LinkOutput::Timeout`] or
    /// [`LinkOutput::Failed`].
    pub(crate) fn poll(&mut self, now: Instant) -> LinkOutput {
        loop {
            return match self.rtc.poll_output() {
                Ok(str0m::Output::Transmit(tx)) => LinkOutput::Transmit(transmit(tx)),
                Ok(str0m::Output::Event(e)) => match self.link_event(e) {
                    Some(e) => LinkOutput::Event(e),
                    None => continue,
                },
                Ok(str0m::Output::Timeout(at)) => {
                    // After a full drain at `now`, a deadline at or before `now` means nothing
                    // is due yet: str0m reports its unstarted DTLS as due "now" until
                    // `connect`, and briefly while DTLS connects. Wake such a transport a
                    // little later instead of spinning on it.
                    LinkOutput::Timeout(match (at > now, self.connected) {
                        (true, _) => at,
                        (false, true) => now + MIN_WAKE,
                        (false, false) => now + IDLE_WAKE,
                    })
                }
                Err(e) => LinkOutput::Failed {
                    dtls_failed: self.ends_handshake(&e),
                    at: now + FALLBACK_WAKE,
                },
            };
        }
    }

    /// The client's DTLS parameters (`connect`): its fingerprint, and the role that decides
    /// who starts the handshake.
    pub(crate) fn connect(&mut self, params: &DtlsParameters) -> Result<(), Error> {
        let fp = params
            .fingerprints
            .iter()
            .find(|f| f.algorithm.eq_ignore_ascii_case("sha-256"))
            .or_else(|| params.fingerprints.first())
            .ok_or_else(|| Error::InvalidDtlsParameters("no fingerprint".into()))?;
        let fingerprint: Fingerprint =
            format!("{} {}", fp.algorithm.to_ascii_lowercase(), fp.value)
                .parse()
                .map_err(|_| {
                    Error::InvalidDtlsParameters(format!("bad fingerprint {:?}", fp.value))
                })?;
        let active =
            dtls_active(self.dtls_role, params.role).map_err(|remote| Error::DtlsRoleConflict {
                announced: self.dtls_role,
                remote,
            })?;
        let mut api = self.rtc.direct_api();
        api.set_remote_fingerprint(fingerprint);
        api.start_dtls(active)
            .map_err(|e| Error::Rtc(e.to_string()))?;
        self.connected = true;
        self.start_sctp(active);
        Ok(())
    }

    /// New local ICE credentials; returns the old ufrag.
    pub(crate) fn restart_ice(&mut self, (ufrag, password): (String, String)) -> String {
        self.rtc.direct_api().set_local_ice_credentials(IceCreds {
            ufrag: ufrag.clone(),
            pass: password.clone(),
        });
        self.ice_password = password;
        std::mem::replace(&mut self.ufrag, ufrag)
    }

    /// Says goodbye (DTLS close_notify): the datagrams to send before the link is dropped.
    pub(crate) fn close(&mut self, mut send: impl FnMut(Transmit)) {
        if self.rtc.close().is_ok() {
            while let Ok(str0m::Output::Transmit(tx)) = self.rtc.poll_output() {
                send(transmit(tx));
            }
        }
    }

    /// The core's view of an `Rtc` event; `None` for what it does not act on.
    fn link_event(&mut self, e: str0m::Event) -> Option<LinkEvent> {
        Some(match e {
            str0m::Event::IceConnectionStateChange(state) => LinkEvent::Ice(match state {
                IceConnectionState::New | IceConnectionState::Checking => return None,
                IceConnectionState::Connected => IceState::Connected,
                IceConnectionState::Completed => IceState::Completed,
                IceConnectionState::Disconnected => IceState::Disconnected,
            }),
            str0m::Event::Connected => LinkEvent::Connected,
            str0m::Event::Closed => LinkEvent::Closed,
            e => LinkEvent::Channel(self.channel_event(e)?),
        })
    }

    /// Whether `e` ends a DTLS handshake in progress.
    fn ends_handshake(&self, e: &RtcError) -> bool {
        matches!(e, RtcError::Dtls(_)) && self.dtls_state == DtlsState::Connecting
    }
}

impl From<str0m::net::Protocol> for Protocol {
    fn from(p: str0m::net::Protocol) -> Self {
        match p {
            str0m::net::Protocol::Udp => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }
}

impl From<Protocol> for str0m::net::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Udp => str0m::net::Protocol::Udp,
            Protocol::Tcp => str0m::net::Protocol::Tcp,
        }
    }
}

/// One datagram of the `Rtc`'s (ICE, DTLS) as the Sfu hands datagrams out.
fn transmit(tx: str0m::net::Transmit) -> Transmit {
    Transmit {
        proto: tx.proto.into(),
        source: tx.source,
        destination: tx.destination,
        contents: tx.contents.into(),
        segment_size: None,
    }
}
