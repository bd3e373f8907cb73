//! The header extension ids an endpoint sends with on one transport.
//!
//! An endpoint bundles all its streams on one transport and gives each extension URI one id for
//! all of them (RFC 8843 section 9.2), whatever ids the router uses: a browser numbers them in
//! the order its own offer met them. The transport learns the ids from its producers' RTP
//! parameters, reads the mid, rid, transport-wide sequence number and audio level under them,
//! and each producer maps its ids to the router's ([`ProducerExtensions::to_router`]), so
//! consumers get the values under the ids they negotiated.

use crate::error::Error;
use crate::media::packet::{ExtensionIdMap, ExtensionKind};
use crate::ortc::{self, RtpHeaderExtensionParameters};

/// The ids the transport's endpoint declared, one URI per id and one id per URI.
#[derive(Debug, Default)]
pub(crate) struct RxExtensions {
    /// (id, URI) of every extension a producer declared, at most one entry per id.
    declared: Vec<(u8, String)>,
    /// `sdes:mid`, to find the producer of an undeclared SSRC.
    pub(crate) mid: Option<u8>,
    /// `sdes:rtp-stream-id`.
    pub(crate) rid: Option<u8>,
    /// `sdes:repaired-rtp-stream-id`.
    pub(crate) repaired_rid: Option<u8>,
    /// The transport-wide sequence number, for transport-cc feedback.
    pub(crate) transport_cc: Option<u8>,
}

impl RxExtensions {
    /// Checks that `exts` agrees with what the transport's producers declared before: an id
    /// already used for another URI, or a URI already declared under another id, is refused.
    pub(crate) fn check(&self, exts: &[RtpHeaderExtensionParameters]) -> Result<(), Error> {
        let conflict = |e: &RtpHeaderExtensionParameters| Error::HeaderExtensionConflict {
            id: e.id,
            uri: e.uri.clone(),
        };
        for (i, e) in exts.iter().enumerate() {
            let earlier = exts[..i]
                .iter()
                .map(|o| (o.id, o.uri.as_str()))
                .chain(self.declared.iter().map(|(id, uri)| (*id, uri.as_str())));
            for (id, uri) in earlier {
                if (id == e.id) != uri.eq_ignore_ascii_case(&e.uri) {
                    return Err(conflict(e));
                }
            }
        }
        Ok(())
    }

    /// Adds `exts` (already [`check`](Self::check)ed) to the transport's ids.
    pub(crate) fn declare(&mut self, exts: &[RtpHeaderExtensionParameters]) {
        for e in exts {
            if self.declared.iter().any(|(id, _)| *id == e.id) {
                continue;
            }
            self.declared.push((e.id, e.uri.clone()));
            let slot = match ExtensionKind::from_uri(&e.uri) {
                ExtensionKind::Mid => &mut self.mid,
                ExtensionKind::Rid => &mut self.rid,
                ExtensionKind::RepairedRid => &mut self.repaired_rid,
                ExtensionKind::TransportWideCc => &mut self.transport_cc,
                _ => continue,
            };
            *slot = Some(e.id);
        }
    }
}

/// How one producer's header extensions reach the router's ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerExtensions {
    /// The producer's id of each extension the router knows, mapped to the router's id.
    pub(crate) to_router: ExtensionIdMap,
    /// The producer's id of `ssrc-audio-level`, for audio level observers.
    pub(crate) audio_level: Option<u8>,
    /// The producer's id of the AV1 dependency descriptor, for AV1 layer selection.
    pub(crate) dependency_descriptor: Option<u8>,
}

impl ProducerExtensions {
    /// The mapping of a producer's RTP parameters' `exts`.
    pub(crate) fn new(exts: &[RtpHeaderExtensionParameters]) -> Self {
        let mut this = Self::default();
        for e in exts {
            if let Some(router_id) = ortc::header_extension_id(&e.uri) {
                this.to_router.set(e.id, router_id);
            }
            match ExtensionKind::from_uri(&e.uri) {
                ExtensionKind::AudioLevel => this.audio_level = Some(e.id),
                ExtensionKind::DependencyDescriptor => this.dependency_descriptor = Some(e.id),
                _ => {}
            }
        }
        this
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ortc::ext_uri;

    fn ext(uri: &str, id: u8) -> RtpHeaderExtensionParameters {
        RtpHeaderExtensionParameters {
            uri: uri.into(),
            id,
            encrypt: false,
            parameters: Default::default(),
        }
    }

    #[test]
    fn producers_of_a_transport_must_agree_on_ids() {
        let mut rx = RxExtensions::default();
        let first = [ext(ext_uri::MID, 9), ext(ext_uri::TRANSPORT_CC, 2)];
        rx.check(&first).expect("first declaration");
        rx.declare(&first);
        assert_eq!((rx.mid, rx.transport_cc, rx.rid), (Some(9), Some(2), None));

        // The same ids again, in another case, plus a new one: accepted.
        let second = [
            ext(&ext_uri::MID.to_uppercase(), 9),
            ext(ext_uri::RTP_STREAM_ID, 5),
        ];
        rx.check(&second).expect("agrees");
        rx.declare(&second);
        assert_eq!(rx.rid, Some(5));

        // A known URI under a new id, a known id for a new URI, and a clash within one list.
        let moved = [ext(ext_uri::MID, 3)];
        let reused = [ext(ext_uri::ABS_SEND_TIME, 2)];
        let clash = [
            ext(ext_uri::ABS_SEND_TIME, 7),
            ext(ext_uri::SSRC_AUDIO_LEVEL, 7),
        ];
        for bad in [&moved[..], &reused[..], &clash[..]] {
            assert!(
                matches!(rx.check(bad), Err(Error::HeaderExtensionConflict { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(rx.mid, Some(9), "a refused list changes nothing");
    }

    #[test]
    fn producer_ids_map_to_the_router_ids_by_uri() {
        let exts = [
            ext(ext_uri::SSRC_AUDIO_LEVEL, 14),
            ext(ext_uri::MID, 1),
            ext("urn:example:unknown", 6),
        ];
        let p = ProducerExtensions::new(&exts);
        assert_eq!(p.audio_level, Some(14));
        assert_eq!(
            p.to_router.get(14),
            ortc::header_extension_id(ext_uri::SSRC_AUDIO_LEVEL)
        );
        assert_eq!(p.to_router.get(1), ortc::header_extension_id(ext_uri::MID));
        assert_eq!(p.to_router.get(6), None, "the router does not know it");
    }
}
