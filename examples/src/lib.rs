//! Runnable programs for `sfu`. The programs themselves are binaries of this package.
