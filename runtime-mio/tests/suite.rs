//! The runtime test suite shared with the smol runtime (`sfu_tests::runtime_suite`), on mio.

mod common;

sfu_tests::runtime_suite!(common::Mio);
