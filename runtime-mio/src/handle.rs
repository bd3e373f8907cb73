//! The application's side of a worker: a cloneable handle that ferries calls to the worker
//! thread (a channel plus a mio [`Waker`]) and waits for their results.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use mio::Waker;
use sfu_core::runtime::{Call, Command, WorkerShared};

use crate::RuntimeError;

/// Controls one worker from any thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    index: usize,
    commands: Sender<Command>,
    waker: Arc<Waker>,
    shared: Arc<WorkerShared>,
}

impl WorkerHandle {
    pub(crate) fn new(
        index: usize,
        commands: Sender<Command>,
        waker: Arc<Waker>,
        shared: Arc<WorkerShared>,
    ) -> Self {
        Self {
            index,
            commands,
            waker,
            shared,
        }
    }

    /// Carries out one control call on the worker's Sfu and waits for its result: a typed
    /// call from [`sfu_core::runtime::call`], or any [`Request`](sfu_core::control::Request)
    /// (answered with a [`Reply`](sfu_core::control::Reply)). A WebRTC transport created with
    /// empty `listen_infos` gets the worker's own.
    pub fn call<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError> {
        let (tx, rx) = mpsc::sync_channel(1);
        // The caller may have given up waiting; nothing to do then.
        self.send(Command::call(call, move |result| drop(tx.send(result))))?;
        rx.recv()
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?
            .map_err(RuntimeError::from)
    }

    /// Asks the worker to stop; does not wait.
    pub(crate) fn request_shutdown(&self) {
        let _ = self.send(Command::Stop);
    }

    fn send(&self, command: Command) -> Result<(), RuntimeError> {
        self.commands
            .send(command)
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        // A failed wake means the worker's poll is gone; the reply channel will say so.
        let _ = self.waker.wake();
        Ok(())
    }

    sfu_core::worker_handle_methods!(blocking);
}

impl sfu_core::runtime::pipe::CallHandle for WorkerHandle {
    fn call_on<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError> {
        self.call(call)
    }
}
