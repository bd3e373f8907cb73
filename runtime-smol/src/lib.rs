//! The smol runtime for `sfu-core`.
//!
//! Not implemented yet: this crate currently exposes nothing. Embed `sfu-core` in your own
//! event loop until it lands.
