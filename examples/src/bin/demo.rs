//! The demo room server: `cargo run --release -p sfu-examples --bin demo -- --help`.
//!
//! Serves the page in `examples/web` and WebSocket signaling on one HTTP port, and runs the SFU
//! on the mio runtime. Open `http://127.0.0.1:8080/?room=NAME` in two tabs.

use std::net::TcpListener;
use std::process::ExitCode;

use sfu_examples::demo::{default_media_codecs, serve, Command, DemoConfig, Signaling, USAGE};
use sfu_runtime_mio::{Runtime, RuntimeConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match DemoConfig::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(Command::Run(c)) => c,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: DemoConfig) -> Result<(), String> {
    if !config.web_dir.join("dist/bundle.js").is_file() {
        eprintln!(
            "demo: warning: {} is missing; run `npm ci && npm run build` in examples/web \
             (examples/run-demo does it)",
            config.web_dir.join("dist/bundle.js").display()
        );
    }
    let mut rc = RuntimeConfig {
        listen: config.listen_options(),
        ..RuntimeConfig::default()
    };
    if let Some(n) = config.workers {
        rc.workers = n;
    }
    let runtime = Runtime::start(rc).map_err(|e| format!("cannot start the SFU runtime: {e}"))?;
    for w in runtime.workers() {
        for l in w.listen_infos() {
            tracing::info!(worker = w.index(), protocol = ?l.protocol, local = %l.local,
                announced = ?l.announced_address, "RTC socket");
        }
    }
    let signaling = Signaling::new(runtime.workers().to_vec(), default_media_codecs());
    let listener = TcpListener::bind(config.http)
        .map_err(|e| format!("cannot listen on {}: {e}", config.http))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    // The runtime's events go to the peers they concern.
    let events = signaling.clone();
    std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            while let Ok((worker, event)) = runtime.events().recv() {
                events.handle_event(worker, &event);
            }
        })
        .map_err(|e| e.to_string())?;

    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    println!("demo: open http://{host}:{}/?room=demo", addr.port());
    serve(listener, signaling, config.web_dir).map_err(|e| e.to_string())
}
