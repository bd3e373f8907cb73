//! Set-up shared by the demo's integration tests.

use std::thread;
use std::time::Duration;

use sfu_examples::demo::{default_media_codecs, Signaling};
use sfu_runtime_mio::{Runtime, RuntimeConfig, WorkerHandle};

/// A Signaling on a one-worker runtime whose events are routed by a background thread.
pub fn start_signaling() -> (Signaling, WorkerHandle) {
    start_signaling_with(|s| s)
}

/// [`start_signaling`], the signaling first passed through `setup`.
#[allow(dead_code)] // Not every test binary sets the signaling up.
pub fn start_signaling_with(
    setup: impl FnOnce(Signaling) -> Signaling,
) -> (Signaling, WorkerHandle) {
    let runtime = Runtime::start(RuntimeConfig {
        workers: 1,
        ..RuntimeConfig::default()
    })
    .expect("runtime starts on loopback");
    let worker = runtime.workers()[0].clone();
    let signaling = setup(Signaling::new(
        runtime.workers().to_vec(),
        default_media_codecs(),
    ));
    let events = signaling.clone();
    thread::spawn(move || {
        while let Ok((w, e)) = runtime.events().recv() {
            events.handle_event(w, &e);
        }
    });
    (signaling, worker)
}

/// Polls `f` every 10 ms for up to 5 s; panics naming `what` if it never holds.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}
