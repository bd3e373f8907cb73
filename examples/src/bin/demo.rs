//! The demo room server: `cargo run --release -p sfu-examples --bin demo -- --help`.
//!
//! Serves the page in `examples/web` and WebSocket signaling on one HTTP (or, with `--https`,
//! HTTPS) port, and runs the SFU on the mio runtime. Open `http://127.0.0.1:8080/?room=NAME` in
//! two tabs.

use std::net::TcpListener;
use std::process::ExitCode;

use sfu_examples::demo::{
    default_media_codecs, serve, Command, DemoConfig, Https, ServerOptions, Signaling, TlsIdentity,
    USAGE,
};
use sfu_runtime_mio::{Runtime, RuntimeConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // The SCTP stack logs what a peer's malformed packets did to it (they are
            // counted in the transport stats instead): a peer must not fill the log.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,sctp_proto=off")),
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
    let tls = match &config.https {
        None => None,
        Some(Https::Files { cert, key }) => Some(TlsIdentity::from_pem_files(cert, key)?),
        Some(Https::SelfSigned) => {
            let names = certificate_names(&config);
            tracing::info!(
                ?names,
                "HTTPS with a self-signed certificate (browsers warn once)"
            );
            Some(TlsIdentity::self_signed(&names)?)
        }
    };
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("demo: open {scheme}://{host}:{}/?room=demo", addr.port());
    let insecure = if scheme == "https" { "-k " } else { "" };
    println!(
        "demo: publish from ffmpeg into it: eval \"$(curl -fsS {insecure}-X POST {scheme}://{host}:{}/rooms/demo/ffmpeg)\"",
        addr.port()
    );
    let options = ServerOptions {
        tls,
        max_connections: config.max_connections,
        ..ServerOptions::new(config.web_dir)
    };
    serve(listener, signaling, options).map_err(|e| e.to_string())
}

/// The names a self-signed certificate is made for: loopback, and the addresses browsers on
/// other machines are told to use.
fn certificate_names(config: &DemoConfig) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let more = [
        Some(config.http.ip().to_string()).filter(|_| !config.http.ip().is_unspecified()),
        Some(config.listen_ip.to_string()).filter(|_| !config.listen_ip.is_unspecified()),
        config.announced_address.clone(),
    ];
    for name in more.into_iter().flatten() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
