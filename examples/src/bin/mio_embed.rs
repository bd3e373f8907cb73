//! Embedding the mio runtime: start workers, create a room on the least loaded one, create a
//! WebRTC transport on that worker's own sockets, and print what the client needs as JSON
//! (mediasoup's shape, for mediasoup-client's `device.createRecvTransport(..)`).
//!
//! `cargo run -p sfu-examples --bin mio_embed`

use std::net::{IpAddr, Ipv4Addr};

use sfu_core::ortc::RtpCodecCapability;
use sfu_core::{RouterOptions, WebRtcTransportOptions};
use sfu_runtime_mio::{ListenOptions, Runtime, RuntimeConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let runtime = Runtime::start(RuntimeConfig {
        workers: 2,
        listen: vec![ListenOptions::udp(ip), ListenOptions::tcp(ip)],
        ..RuntimeConfig::default()
    })?;
    let worker = runtime.least_loaded();
    let router = worker.create_router(RouterOptions {
        media_codecs: vec![RtpCodecCapability::opus(), RtpCodecCapability::vp8()],
    })?;
    let caps = worker.router_rtp_capabilities(router)?;
    // Empty listen infos: the worker offers its shared UDP socket and TCP listener.
    let transport = worker.create_webrtc_transport(router, WebRtcTransportOptions::default())?;
    println!(
        "{}",
        serde_json::json!({
            "worker": worker.index(),
            "routerRtpCapabilities": caps,
            "transport": transport.parameters,
        })
    );
    // Signaling would now carry these to the client, and its `connect` / `produce` / `consume`
    // calls back to `worker.connect_webrtc_transport(..)`, `worker.produce(..)`, ...
    eprintln!("counters: {:?}", worker.counters());
    runtime.shutdown();
    Ok(())
}
