//! The AFL++ driver: `sfu-fuzz TARGET` under `cargo afl fuzz` (see `tests/run`).

use std::panic::AssertUnwindSafe;

use sfu_fuzz::{Target, TARGETS};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = Target::new(&name) else {
        eprintln!("usage: sfu-fuzz TARGET, one of {}", TARGETS.join(", "));
        std::process::exit(2);
    };
    if target.fresh_per_input() {
        // The fork server starts below, after the set-up: one input per forked process, so each
        // starts from the state just built.
        std::env::set_var("AFL_FUZZER_LOOPCOUNT", "1");
    }
    let mut target = AssertUnwindSafe(target);
    afl::fuzz(true, move |data| target.run(data));
}
