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
