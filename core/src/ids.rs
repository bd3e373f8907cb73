//! Opaque identifiers for the objects an [`Sfu`](crate::Sfu) owns.
//!
//! Ids are random 64-bit values drawn from the Sfu's seeded generator. They print as 16 hex
//! digits (the form signaling carries) and parse back from that form; a parsed id that names no
//! live object is answered with an `Unknown…` error, never a panic.

use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            pub(crate) fn from_raw(v: u64) -> Self {
                Self(v)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ParseIdError);
                }
                u64::from_str_radix(s, 16).map(Self).map_err(|_| ParseIdError)
            }
        }
    };
}

id_type!(
    /// Identifies a router (a room).
    RouterId
);
id_type!(
    /// Identifies a transport.
    TransportId
);
id_type!(
    /// Identifies a producer.
    ProducerId
);
id_type!(
    /// Identifies a consumer.
    ConsumerId
);
id_type!(
    /// Identifies a data producer (an SCTP stream a transport receives messages on).
    DataProducerId
);
id_type!(
    /// Identifies a data consumer (an SCTP stream a transport sends a data producer's messages
    /// on).
    DataConsumerId
);
id_type!(
    /// Identifies an audio level observer.
    ObserverId
);

/// The text was not an id (16 hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an id: expected 16 hex digits")]
pub struct ParseIdError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = ProducerId::from_raw(0x0123_4567_89ab_cdef);
        let text = id.to_string();
        assert_eq!(text, "0123456789abcdef");
        assert_eq!(text.parse::<ProducerId>(), Ok(id));
        assert!("xyz".parse::<ProducerId>().is_err());
        assert!("0123456789abcdeg".parse::<ProducerId>().is_err());
        assert!("+123456789abcdef".parse::<ProducerId>().is_err());
    }
}

/// The text of a mid (RFC 8843) or rid (RFC 8852): 1 to 16 bytes of visible ASCII, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct ShortText {
    len: u8,
    bytes: [u8; 16],
}

impl ShortText {
    const MAX_LEN: usize = 16;

    fn new(text: &str) -> Option<Self> {
        let valid =
            (1..=Self::MAX_LEN).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return None;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(Self {
            len: text.len() as u8,
            bytes,
        })
    }

    fn as_str(&self) -> &str {
        // Only visible ASCII is ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

macro_rules! short_text_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) struct $name(ShortText);

        impl $name {
            /// `text` as an id, if it is 1 to 16 bytes of visible ASCII.
            pub(crate) fn new(text: &str) -> Option<Self> {
                ShortText::new(text).map(Self)
            }

            pub(crate) fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.as_str())
            }
        }
    };
}

short_text_type!(
    /// A media stream's mid within its transport (the `sdes:mid` header extension).
    Mid
);
short_text_type!(
    /// A simulcast encoding's rid (the `sdes:rtp-stream-id` header extension).
    Rid
);

#[cfg(test)]
mod short_text_tests {
    use super::*;

    #[test]
    fn mids_and_rids_are_short_visible_ascii() {
        let mid = Mid::new("video-0").expect("valid");
        assert_eq!(mid.as_str(), "video-0");
        assert_eq!(mid.to_string(), "video-0");
        assert_eq!(
            Mid::new("0123456789abcdef").map(|m| m.as_str().len()),
            Some(16)
        );
        for bad in ["", "0123456789abcdefg", "a b", "é"] {
            assert!(Rid::new(bad).is_none(), "{bad:?}");
        }
        assert_ne!(Rid::new("h"), Rid::new("l"));
        assert_eq!(Rid::new("h"), Rid::new("h"));
    }
}
