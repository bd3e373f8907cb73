// The mio runtime as the shared test suite drives it (`sfu_tests::runtime_suite`).
#![allow(dead_code)] // Each test binary uses part of it.

use sfu_core::runtime::{Call, RuntimeConfig, RuntimeCounters, RuntimeError};
use sfu_core::ListenInfo;
use sfu_runtime_mio::{Runtime, WorkerHandle};

/// The mio runtime, for the shared suite.
pub struct Mio(pub Runtime);

impl sfu_tests::runtime_suite::Runtime for Mio {
    type Handle = WorkerHandle;

    fn start(config: RuntimeConfig) -> std::io::Result<Self> {
        Runtime::start(config).map(Mio)
    }

    fn handles(&self) -> Vec<WorkerHandle> {
        self.0.workers().to_vec()
    }

    fn least_loaded(&self) -> WorkerHandle {
        self.0.least_loaded()
    }

    fn call<C: Call>(handle: &WorkerHandle, call: C) -> Result<C::Output, RuntimeError> {
        handle.call(call)
    }

    fn listen_infos(handle: &WorkerHandle) -> Vec<ListenInfo> {
        handle.listen_infos().to_vec()
    }

    fn counters(handle: &WorkerHandle) -> RuntimeCounters {
        handle.counters()
    }

    fn events(&self) -> Vec<(usize, sfu_core::Event)> {
        self.0.events().try_iter().collect()
    }

    fn shutdown(self) {
        self.0.shutdown();
    }
}
