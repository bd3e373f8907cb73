//! Coverage-guided fuzz targets for everything in `sfu` that reads network input.
//!
//! The targets are plain functions and types here, so that the regression tests replay the
//! seed corpus and every crash the fuzzer ever found through them. The AFL++ driver
//! (`src/main.rs`, built with `cargo afl build --features afl`) runs one target per process:
//!
//! | target | what it feeds |
//! |---|---|
//! | `rtp` | [`packets::rtp`]: the RTP view, its accessors and the forwarding rewrite |
//! | `rtcp` | [`packets::rtcp`]: compound RTCP and every packet type's accessors |
//! | `srtp` | [`packets::srtp`]: SRTP/SRTCP unprotect of any bytes; protect round trips |
//! | `framing` | [`packets::framing`]: RFC 4571 reassembly across arbitrary reads |
//! | `demux` | [`packets::demux`]: RFC 7983 classification, DTLS records, STUN usernames |
//! | `twcc` | [`packets::twcc`]: transport-cc feedback from arbitrary arrivals |
//! | `datagrams` | [`sfu::Datagrams`]: an Sfu fed UDP datagrams and TCP streams |
//! | `session` | [`sfu::Session`]: RTP/RTCP from connected participants, behind SRTP |
//! | `ortc` | [`sfu::Ortc`]: ORTC parameters (JSON) into produce, consume, connect |
//! | `signaling` | [`signaling::Signaling`]: the demo's JSON requests from two peers |
//!
//! Inputs of the stateful targets are records: a control byte, a two-byte big-endian length,
//! then that many bytes (fewer if the input ends first); see [`records`].

pub mod packets;
pub mod plain;
pub mod sfu;
#[cfg(feature = "signaling")]
pub mod signaling;

/// Every target's name, in the order `tests/run` runs them.
pub const TARGETS: [&str; 11] = [
    "rtp",
    "rtcp",
    "srtp",
    "framing",
    "demux",
    "twcc",
    "datagrams",
    "session",
    "ortc",
    "plain",
    "signaling",
];

/// The records of an input: (control byte, bytes).
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&ctl, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some((ctl, bytes))
    })
}

/// One record as [`records`] reads it.
pub fn record(ctl: u8, bytes: &[u8]) -> Vec<u8> {
    let mut r = vec![ctl];
    r.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    r.extend_from_slice(bytes);
    r
}

/// A target with its state, ready for inputs.
pub enum Target {
    /// A target that is a function of its input alone.
    Stateless(fn(&[u8])),
    /// [`sfu::Datagrams`].
    Datagrams(Box<sfu::Datagrams>),
    /// [`sfu::Session`].
    Session(Box<sfu::Session>),
    /// [`sfu::Ortc`].
    Ortc(Box<sfu::Ortc>),
    /// [`plain::Plain`].
    Plain(Box<plain::Plain>),
    /// [`signaling::Signaling`], built at its first input.
    #[cfg(feature = "signaling")]
    Signaling(Option<Box<signaling::Signaling>>),
}

impl Target {
    /// The target called `name`, or `None`.
    pub fn new(name: &str) -> Option<Target> {
        Some(match name {
            "rtp" => Target::Stateless(packets::rtp),
            "rtcp" => Target::Stateless(packets::rtcp),
            "srtp" => Target::Stateless(packets::srtp),
            "framing" => Target::Stateless(packets::framing),
            "demux" => Target::Stateless(packets::demux),
            "twcc" => Target::Stateless(packets::twcc),
            "datagrams" => Target::Datagrams(Box::default()),
            "session" => Target::Session(Box::default()),
            "ortc" => Target::Ortc(Box::default()),
            "plain" => Target::Plain(Box::default()),
            #[cfg(feature = "signaling")]
            "signaling" => Target::Signaling(None),
            _ => return None,
        })
    }

    /// Whether every input must start from the state `new` built (the driver then forks a
    /// fresh process per input); otherwise one process runs many inputs.
    pub fn fresh_per_input(&self) -> bool {
        matches!(
            self,
            Target::Datagrams(_) | Target::Session(_) | Target::Ortc(_) | Target::Plain(_)
        )
    }

    /// Runs one input.
    pub fn run(&mut self, data: &[u8]) {
        match self {
            Target::Stateless(f) => f(data),
            Target::Datagrams(t) => t.run(data),
            Target::Session(t) => t.run(data),
            Target::Ortc(t) => t.run(data),
            Target::Plain(t) => t.run(data),
            #[cfg(feature = "signaling")]
            Target::Signaling(t) => t.get_or_insert_with(Box::default).run(data),
        }
    }
}
