//! Runnable programs for `sfu`. The programs themselves are binaries of this package; the
//! pieces they share live here so that tests can drive them without a browser.

pub mod demo;
#[cfg(target_os = "linux")]
pub mod loadgen;
