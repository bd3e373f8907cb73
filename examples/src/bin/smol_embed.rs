//! Embedding the smol runtime: start workers, create a room on the least loaded one, create a
//! WebRTC transport on that worker's own sockets, print what the client needs as JSON
//! (mediasoup's shape, for mediasoup-client's `device.createRecvTransport(..)`), and listen for
//! events for a moment.
//!
//! `cargo run -p sfu-examples --bin smol_embed`

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use sfu_core::ortc::RtpCodecCapability;
use sfu_core::{RouterOptions, WebRtcTransportOptions};
use sfu_runtime_smol::{ListenOptions, Runtime, RuntimeConfig};
use smol::future::FutureExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let runtime = Runtime::start(RuntimeConfig {
        workers: 2,
        listen: vec![ListenOptions::udp(ip), ListenOptions::tcp(ip)],
        ..RuntimeConfig::default()
    })?;
    smol::block_on(async {
        let worker = runtime.least_loaded();
        let router = worker
            .create_router(RouterOptions {
                media_codecs: vec![RtpCodecCapability::opus(), RtpCodecCapability::vp8()],
            })
            .await?;
        let caps = worker.router_rtp_capabilities(router).await?;
        // Empty listen infos: the worker offers its shared UDP socket and TCP listener.
        let transport = worker
            .create_webrtc_transport(router, WebRtcTransportOptions::default())
            .await?;
        println!(
            "{}",
            serde_json::json!({
                "worker": worker.index(),
                "routerRtpCapabilities": caps,
                "transport": transport.parameters,
            })
        );
        // Signaling would now carry these to the client, and its `connect` / `produce` /
        // `consume` calls back to `worker.connect_webrtc_transport(..)`, `worker.produce(..)`...
        // Meanwhile, events arrive as a stream; here we close the transport and watch.
        worker.close_transport(transport.id).await?;
        let events = async {
            while let Ok((index, event)) = runtime.events().recv().await {
                eprintln!("worker {index}: {event:?}");
            }
        };
        let timeout = async {
            smol::Timer::after(Duration::from_millis(200)).await;
        };
        events.or(timeout).await;
        eprintln!("counters: {:?}", worker.counters());
        Ok::<_, sfu_runtime_smol::RuntimeError>(())
    })?;
    runtime.shutdown();
    Ok(())
}
