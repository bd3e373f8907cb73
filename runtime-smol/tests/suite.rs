//! The runtime test suite shared with the mio runtime (`sfu_tests::runtime_suite`), on smol.

use sfu_core::runtime::{Call, RuntimeConfig, RuntimeCounters, RuntimeError};
use sfu_core::ListenInfo;
use sfu_runtime_smol::{Runtime, WorkerHandle};

struct Smol(Runtime);

impl sfu_tests::runtime_suite::Runtime for Smol {
    type Handle = WorkerHandle;

    fn start(config: RuntimeConfig) -> std::io::Result<Self> {
        Runtime::start(config).map(Smol)
    }

    fn handles(&self) -> Vec<WorkerHandle> {
        self.0.workers().to_vec()
    }

    fn least_loaded(&self) -> WorkerHandle {
        self.0.least_loaded()
    }

    fn call<C: Call>(handle: &WorkerHandle, call: C) -> Result<C::Output, RuntimeError> {
        handle.call_blocking(call)
    }

    fn listen_infos(handle: &WorkerHandle) -> Vec<ListenInfo> {
        handle.listen_infos().to_vec()
    }

    fn counters(handle: &WorkerHandle) -> RuntimeCounters {
        handle.counters()
    }

    fn events(&self) -> Vec<(usize, sfu_core::Event)> {
        let events = self.0.events();
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    fn shutdown(self) {
        self.0.shutdown();
    }
}

sfu_tests::runtime_suite!(Smol);
