//! Pipe to router across workers (mediasoup's `pipeToRouter`), written once for both bundled
//! runtimes: the calls on two workers' handles that make a pair of connected pipe transports,
//! a pipe consumer of a producer on one side and the producer it feeds on the other.
//!
//! Each worker opens the socket of its pipe transport (see the module's sockets on demand).
//! Across hosts the same steps run on two runtimes, and the application carries between them
//! what each side must learn of the other: each transport's
//! [`connect_parameters`](crate::PipeTransportCreated::connect_parameters), then the pipe
//! consumer's parameters, which [`pipe_produce_options`] turns into the other side's `produce`
//! (for a data producer, the pipe data consumer's, which [`pipe_produce_data_options`] turns
//! into the other side's `produceData`; the pair needs SCTP, see [`connect_pipe_pair_with`]).

use super::call::{self, Call};
use super::RuntimeError;
use crate::ortc::{PipeTransportOptions, TransportListenInfo};
use crate::{
    pipe_produce_data_options, pipe_produce_options, ConsumeDataOptions, ConsumeOptions,
    DataProducerId, PipeTransportCreated, PipedDataProducer, PipedProducer, ProducerId, RouterId,
};

/// A worker handle that carries typed calls to its worker: both bundled runtimes' handles.
pub trait CallHandle {
    /// Runs `call` on the worker's Sfu and waits for its result.
    fn call_on<C: Call>(&self, call: C) -> Result<C::Output, RuntimeError>;
}

/// One side of a pipe: a router on a worker.
#[derive(Debug)]
pub struct PipeEnd<'a, H> {
    /// The worker's handle.
    pub worker: &'a H,
    /// The router on it.
    pub router: RouterId,
}

impl<H> Clone for PipeEnd<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for PipeEnd<'_, H> {}

/// Two pipe transports, connected to each other.
#[derive(Debug, Clone, PartialEq)]
pub struct PipePair {
    /// The one in the producers' router.
    pub local: PipeTransportCreated,
    /// The one in the other router.
    pub remote: PipeTransportCreated,
}

/// Creates a pipe transport in each router (each worker opens its socket on `listen_info`'s
/// ip, in its port range) and connects each to the other. Create it once per pair of routers
/// and pipe every producer through it with [`pipe_producer`].
pub fn connect_pipe_pair<H: CallHandle>(
    from: PipeEnd<'_, H>,
    to: PipeEnd<'_, H>,
    listen_info: &TransportListenInfo,
    enable_rtx: bool,
    enable_srtp: bool,
) -> Result<PipePair, RuntimeError> {
    let options = PipeTransportOptions {
        enable_rtx,
        enable_srtp,
        ..PipeTransportOptions::new(listen_info.clone())
    };
    connect_pipe_pair_with(from, to, &options)
}

/// [`connect_pipe_pair`] with every option of the two pipe transports: SCTP (to pipe data
/// producers with [`pipe_data_producer`]) and its sizes, RTX, SRTP; each worker opens its
/// socket on `options.listen_info`'s ip.
pub fn connect_pipe_pair_with<H: CallHandle>(
    from: PipeEnd<'_, H>,
    to: PipeEnd<'_, H>,
    options: &PipeTransportOptions,
) -> Result<PipePair, RuntimeError> {
    let create = |end: PipeEnd<'_, H>| {
        end.worker.call_on(call::CreatePipeTransport {
            router: end.router,
            options: options.clone(),
        })
    };
    let local = create(from)?;
    let remote = match create(to) {
        Ok(remote) => remote,
        Err(e) => {
            let _ = from.worker.call_on(call::CloseTransport {
                transport: local.id,
            });
            return Err(e);
        }
    };
    let connected =
        connect(from.worker, &local, &remote).and_then(|()| connect(to.worker, &remote, &local));
    if let Err(e) = connected {
        let _ = from.worker.call_on(call::CloseTransport {
            transport: local.id,
        });
        let _ = to.worker.call_on(call::CloseTransport {
            transport: remote.id,
        });
        return Err(e);
    }
    Ok(PipePair { local, remote })
}

/// Connects `transport` (on `worker`) to its peer `peer`.
fn connect<H: CallHandle>(
    worker: &H,
    transport: &PipeTransportCreated,
    peer: &PipeTransportCreated,
) -> Result<(), RuntimeError> {
    worker.call_on(call::ConnectPipeTransport {
        transport: transport.id,
        parameters: peer.connect_parameters()?,
    })
}

/// Pipes `producer` (in `pair.local`'s router, on `from`) through `pair`: a pipe consumer on
/// `pair.local`, and on `to` the producer it feeds, consumable there like any other.
pub fn pipe_producer<H: CallHandle>(
    from: &H,
    to: &H,
    pair: &PipePair,
    producer: ProducerId,
) -> Result<PipedProducer, RuntimeError> {
    let consumed = from.call_on(call::Consume {
        transport: pair.local.id,
        options: ConsumeOptions {
            producer,
            rtp_capabilities: Default::default(),
            paused: false,
        },
    })?;
    let produced = to.call_on(call::Produce {
        transport: pair.remote.id,
        options: pipe_produce_options(&consumed),
    });
    match produced {
        Ok(pipe_producer) => Ok(PipedProducer {
            local_transport: pair.local.id,
            remote_transport: pair.remote.id,
            pipe_consumer: consumed.id,
            pipe_producer,
        }),
        Err(e) => {
            let _ = from.call_on(call::CloseConsumer {
                consumer: consumed.id,
            });
            Err(e)
        }
    }
}

/// Pipes `data_producer` (in `pair.local`'s router, on `from`) through `pair`, which needs
/// SCTP: a pipe data consumer on `pair.local`, and on `to` the data producer it feeds, on the
/// same stream, consumable there like any other.
pub fn pipe_data_producer<H: CallHandle>(
    from: &H,
    to: &H,
    pair: &PipePair,
    data_producer: DataProducerId,
) -> Result<PipedDataProducer, RuntimeError> {
    let consumed = from.call_on(call::ConsumeData {
        transport: pair.local.id,
        options: ConsumeDataOptions::new(data_producer),
    })?;
    let produced = to.call_on(call::ProduceData {
        transport: pair.remote.id,
        options: pipe_produce_data_options(&consumed),
    });
    match produced {
        Ok(pipe_data_producer) => Ok(PipedDataProducer {
            local_transport: pair.local.id,
            remote_transport: pair.remote.id,
            pipe_data_consumer: consumed.id,
            pipe_data_producer,
        }),
        Err(e) => {
            let _ = from.call_on(call::CloseDataConsumer {
                data_consumer: consumed.id,
            });
            Err(e)
        }
    }
}

/// Pipes `producer` from `from`'s router into `to`'s (the workers may be the same): a new
/// pipe pair, the pipe consumer and the pipe producer. To pipe several producers between the
/// same routers, make the pair once with [`connect_pipe_pair`] and call [`pipe_producer`].
pub fn pipe_to_router<H: CallHandle>(
    from: PipeEnd<'_, H>,
    to: PipeEnd<'_, H>,
    producer: ProducerId,
    listen_info: &TransportListenInfo,
    enable_rtx: bool,
    enable_srtp: bool,
) -> Result<(PipePair, PipedProducer), RuntimeError> {
    let pair = connect_pipe_pair(from, to, listen_info, enable_rtx, enable_srtp)?;
    let piped = pipe_producer(from.worker, to.worker, &pair, producer)?;
    Ok((pair, piped))
}
