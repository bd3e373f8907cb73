//! One transport's media session: its SRTP contexts, the SRTP state of every SSRC that
//! arrives on it, transport-wide feedback, and the schedule of its RTCP reports.
//!
//! A session exists once the transport has keys (for WebRTC, when DTLS connects; for a plain
//! transport with SDES keys, when `connect` gives the remote's), or from the start for a plain
//! transport without SRTP, whose packets pass in the clear ([`Protection::Clear`]). What each
//! SSRC belongs to (a producer encoding, or its retransmissions) is learned at the first packet
//! that authenticates, and only then does the SSRC take a place in the table: a forged packet
//! for a new SSRC costs one failed authentication and leaves nothing behind.

use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::ids::ProducerId;
use crate::media::srtp::{RtcpReplay, RtpReplay, SrtpContext, SrtpError, SrtpProfile};
use crate::media::twcc::TwccRecorder;

/// The most SSRCs a transport keeps receive state for: every encoding of every producer on it
/// and their retransmission streams, with room to spare.
pub(crate) const MAX_RX_SSRCS: usize = 128;

/// The most RTCP senders a transport keeps SRTCP replay state for.
pub(crate) const MAX_RTCP_SENDERS: usize = 128;

/// How often a transport sends its sender and receiver reports.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_millis(1000);

/// What an arriving SSRC carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxRole {
    /// The media of a producer encoding.
    Media,
    /// Retransmissions (RFC 4588) of a producer encoding.
    Rtx,
}

/// An arriving SSRC: its SRTP state and where its packets go.
#[derive(Debug)]
pub(crate) struct RxSsrc {
    pub(crate) replay: RtpReplay,
    pub(crate) producer: ProducerId,
    pub(crate) layer: usize,
    pub(crate) role: RxRole,
}

/// How one direction of a session's packets is protected: SRTP, or not at all (plain RTP).
// Unboxed: SRTP is the common case, and every packet goes through it.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Protection {
    /// SRTP and SRTCP with this context.
    Srtp(SrtpContext),
    /// Plain RTP and RTCP: packets pass unchanged, and nothing authenticates them.
    Clear,
}

impl Protection {
    /// The SRTP profile, when protected.
    pub(crate) fn profile(&self) -> Option<SrtpProfile> {
        match self {
            Self::Srtp(c) => Some(c.profile()),
            Self::Clear => None,
        }
    }

    /// See [`SrtpContext::protect_rtp`]; the clear length unchanged without SRTP.
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut [u8],
        len: usize,
        roc: u32,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Srtp(c) => c.protect_rtp(buf, len, roc),
            Self::Clear => Ok(len),
        }
    }

    /// See [`SrtpContext::unprotect_rtp`]; the whole packet without SRTP.
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        replay: &mut RtpReplay,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Srtp(c) => c.unprotect_rtp(buf, replay),
            Self::Clear => Ok(buf.len()),
        }
    }

    /// See [`SrtpContext::protect_rtcp`]; the clear length unchanged without SRTP.
    pub(crate) fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        match self {
            Self::Srtp(c) => c.protect_rtcp(buf, len),
            Self::Clear => Ok(len),
        }
    }

    /// See [`SrtpContext::unprotect_rtcp`]; the whole packet without SRTP.
    pub(crate) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        replay: &mut RtcpReplay,
    ) -> Result<usize, SrtpError> {
        match self {
            Self::Srtp(c) => c.unprotect_rtcp(buf, replay),
            Self::Clear => Ok(buf.len()),
        }
    }

    /// The bytes protecting an RTCP packet adds.
    pub(crate) fn rtcp_overhead(&self) -> usize {
        self.profile().map_or(0, SrtpProfile::rtcp_overhead)
    }
}

/// The media state of one transport with keys (or without SRTP).
pub(crate) struct MediaSession {
    /// Protects what the transport sends.
    pub(crate) tx: Protection,
    /// Unprotects what arrives.
    pub(crate) rx: Protection,
    pub(crate) rx_ssrcs: FxHashMap<u32, RxSsrc>,
    pub(crate) rtcp_replays: FxHashMap<u32, RtcpReplay>,
    /// Arrival times of transport-wide sequence numbers, for feedback to the sender.
    pub(crate) twcc: TwccRecorder,
    /// The next transport-wide sequence number sent.
    pub(crate) tw_seq: u16,
    /// The SSRC this transport's receiver reports and feedback are sent as.
    pub(crate) rtcp_ssrc: u32,
    pub(crate) next_report_at: Instant,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("profile", &self.tx.profile())
            .field("rx_ssrcs", &self.rx_ssrcs.len())
            .finish_non_exhaustive()
    }
}

impl MediaSession {
    /// A session from the local and remote write keys.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        profile: SrtpProfile,
        local_key: &[u8],
        local_salt: &[u8],
        remote_key: &[u8],
        remote_salt: &[u8],
        rtcp_ssrc: u32,
        now: Instant,
    ) -> Result<Self, SrtpError> {
        Ok(Self::with(
            Protection::Srtp(SrtpContext::new(profile, local_key, local_salt)?),
            Protection::Srtp(SrtpContext::new(profile, remote_key, remote_salt)?),
            rtcp_ssrc,
            now,
        ))
    }

    /// A session whose packets pass in the clear (a plain transport without SRTP).
    pub(crate) fn clear(rtcp_ssrc: u32, now: Instant) -> Self {
        Self::with(Protection::Clear, Protection::Clear, rtcp_ssrc, now)
    }

    /// A session from its two directions' protections.
    pub(crate) fn with(tx: Protection, rx: Protection, rtcp_ssrc: u32, now: Instant) -> Self {
        Self {
            tx,
            rx,
            rx_ssrcs: FxHashMap::default(),
            rtcp_replays: FxHashMap::default(),
            twcc: TwccRecorder::new(),
            tw_seq: 0,
            rtcp_ssrc,
            next_report_at: now + REPORT_INTERVAL / 2,
        }
    }

    /// Unprotects an SRTCP datagram in place; the sender's replay state is created only for
    /// a packet that authenticates, and only while there is room.
    pub(crate) fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let ssrc = crate::media::srtp::rtcp_sender_ssrc(buf).ok_or(SrtpError::TooShort)?;
        if let Some(replay) = self.rtcp_replays.get_mut(&ssrc) {
            return self.rx.unprotect_rtcp(buf, replay);
        }
        let mut replay = RtcpReplay::default();
        let len = self.rx.unprotect_rtcp(buf, &mut replay)?;
        if self.rtcp_replays.len() < MAX_RTCP_SENDERS {
            self.rtcp_replays.insert(ssrc, replay);
        }
        Ok(len)
    }

    /// The next transport-wide sequence number to stamp on an outgoing packet.
    pub(crate) fn next_tw_seq(&mut self) -> u16 {
        let seq = self.tw_seq;
        self.tw_seq = self.tw_seq.wrapping_add(1);
        seq
    }

    /// When the session next needs time: its reports or transport-wide feedback.
    pub(crate) fn deadline(&self) -> Instant {
        match self.twcc.next_feedback_at() {
            Some(at) => at.min(self.next_report_at),
            None => self.next_report_at,
        }
    }
}
