//! The cloneable handle through which any thread controls a worker.

use std::sync::Arc;

use sfu_core::runtime::{Call, Command, WorkerShared};
use smol::channel::{self, Sender};

use crate::RuntimeError;

/// Controls one worker from any thread: cheap to clone, `Send` and `Sync`.
///
/// Each call travels to the worker over a channel, the worker carries it out on its `Sfu`
/// between datagrams, and the result comes back on a one-shot channel.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    index: usize,
    requests: Sender<Command>,
    shared: Arc<WorkerShared>,
}

impl WorkerHandle {
    pub(crate) fn new(index: usize, requests: Sender<Command>, shared: Arc<WorkerShared>) -> Self {
        Self {
            index,
            requests,
            shared,
        }
    }

    /// Carries out one control call on the worker: a typed call from
    /// [`sfu_core::runtime::call`], or any [`Request`](sfu_core::control::Request) (answered
    /// with a [`Reply`](sfu_core::control::Reply)). A WebRTC transport created with empty
    /// `listen_infos` gets the worker's own.
    pub async fn call<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError> {
        let (reply, answer) = channel::bounded(1);
        // The caller may have given up waiting; nothing to do then.
        let command = Command::call(call, move |result| drop(reply.try_send(result)));
        self.requests
            .send(command)
            .await
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        let result = answer
            .recv()
            .await
            .map_err(|_| RuntimeError::WorkerStopped(self.index))?;
        Ok(result?)
    }

    /// [`call`](Self::call), blocking the current thread until the reply comes. Do not call it
    /// from inside an async task (it would block that executor's thread).
    pub fn call_blocking<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError> {
        smol::block_on(self.call(call))
    }

    sfu_core::worker_handle_methods!(async);
}

/// For the runtime's shared pipe-to-router helpers ([`sfu_core::runtime::pipe`]), which wait
/// for each call: they block the calling thread, so call them from outside the runtime's
/// executors.
impl sfu_core::runtime::pipe::CallHandle for WorkerHandle {
    fn call_on<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError> {
        smol::block_on(self.call(call))
    }
}
