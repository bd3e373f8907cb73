//! The demo server's settings, from command-line flags and environment variables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::server::DEFAULT_MAX_CONNECTIONS;

use sfu_runtime_mio::{ListenOptions, Protocol};

/// Usage text printed by `--help`.
pub const USAGE: &str = "\
demo: the sfu room server (HTTP page + WebSocket signaling + WebRTC on the mio runtime)

USAGE: demo [FLAGS]

  --http ADDR              HTTP/WebSocket address              [DEMO_HTTP, default 127.0.0.1:8080]
  --https                  serve HTTPS (and WSS) on that address, with a self-signed certificate
                           unless --cert/--key name one       [DEMO_HTTPS=1]
  --cert PEM --key PEM     serve HTTPS with this certificate chain and private key
                                                                [DEMO_CERT, DEMO_KEY]
  --max-connections N      HTTP connections served at once; more get a 503
                                                                [DEMO_MAX_CONNECTIONS, default 512]
  --listen-ip IP           IP the RTC sockets bind              [DEMO_LISTEN_IP, default 127.0.0.1]
  --announced-address A    address signaled to browsers (ip or name) instead of the listen ip
                                                                [DEMO_ANNOUNCED_ADDRESS]
  --rtc-port PORT          first RTC port (worker i uses PORT+i; 0 = any)
                                                                [DEMO_RTC_PORT, default 0]
  --rtc-port-range LO-HI   pick the RTC ports from this range   [DEMO_RTC_PORT_RANGE]
  --no-udp                 offer only ICE-TCP candidates        [DEMO_NO_UDP=1]
  --no-tcp                 offer only UDP candidates            [DEMO_NO_TCP=1]
  --workers N              worker threads                       [DEMO_WORKERS, default: cores]
  --web-dir DIR            the page directory                   [DEMO_WEB_DIR, default examples/web]
  -h, --help               this text

Browsers allow the camera only on a secure page: http://localhost, or HTTPS from another machine
(accept the self-signed certificate's warning once).

Pages may add &forceTcp=1 to their URL to get only TCP candidates, and &sfuDtlsRole=client to
make the server the DTLS client of their transports (the browser then picks the SRTP profile).";

/// Everything the demo server needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Where the page and the signaling WebSocket are served.
    pub http: SocketAddr,
    /// The ip the WebRTC sockets bind.
    pub listen_ip: IpAddr,
    /// The address signaled in ICE candidates instead of `listen_ip`.
    pub announced_address: Option<String>,
    /// The RTC port of worker 0 (0: any).
    pub rtc_port: u16,
    /// A range to pick RTC ports from, instead of `rtc_port`.
    pub rtc_port_range: Option<(u16, u16)>,
    /// Offer UDP candidates.
    pub udp: bool,
    /// Offer ICE-TCP candidates.
    pub tcp: bool,
    /// Worker threads (`None`: one per core).
    pub workers: Option<usize>,
    /// The directory with `index.html` and `dist/bundle.js`.
    pub web_dir: PathBuf,
    /// Serve HTTPS instead of plain HTTP.
    pub https: Option<Https>,
    /// HTTP connections served at once.
    pub max_connections: usize,
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Https {
    /// A certificate made at start-up for the listen and announced addresses.
    SelfSigned,
    /// A certificate chain and private key from PEM files.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            announced_address: None,
            rtc_port: 0,
            rtc_port_range: None,
            udp: true,
            tcp: true,
            workers: None,
            web_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/web")),
            https: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the server.
    Run(DemoConfig),
    /// Print [`USAGE`].
    Help,
}

impl DemoConfig {
    /// Reads environment variables (via `env`), then flags (`args`, without the program name),
    /// which win.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, String> {
        let mut c = DemoConfig::default();
        let mut settings: Vec<(String, Option<String>)> = Vec::new();
        for (var, flag) in [
            ("DEMO_HTTP", "--http"),
            ("DEMO_LISTEN_IP", "--listen-ip"),
            ("DEMO_ANNOUNCED_ADDRESS", "--announced-address"),
            ("DEMO_RTC_PORT", "--rtc-port"),
            ("DEMO_RTC_PORT_RANGE", "--rtc-port-range"),
            ("DEMO_WORKERS", "--workers"),
            ("DEMO_WEB_DIR", "--web-dir"),
            ("DEMO_CERT", "--cert"),
            ("DEMO_KEY", "--key"),
            ("DEMO_MAX_CONNECTIONS", "--max-connections"),
        ] {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                settings.push((flag.to_owned(), Some(v)));
            }
        }
        for (var, flag) in [
            ("DEMO_NO_UDP", "--no-udp"),
            ("DEMO_NO_TCP", "--no-tcp"),
            ("DEMO_HTTPS", "--https"),
        ] {
            if env(var).is_some_and(|v| v == "1" || v == "true") {
                settings.push((flag.to_owned(), None));
            }
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--no-udp" | "--no-tcp" | "--https" => settings.push((flag, None)),
                "--http"
                | "--listen-ip"
                | "--announced-address"
                | "--rtc-port"
                | "--rtc-port-range"
                | "--workers"
                | "--web-dir"
                | "--cert"
                | "--key"
                | "--max-connections" => {
                    let value = match inline {
                        Some(v) => v,
                        None => args.next().ok_or(format!("{flag} needs a value"))?,
                    };
                    settings.push((flag, Some(value)));
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        let (mut https, mut cert, mut key) = (false, None, None);
        for (flag, value) in settings {
            let v = value.unwrap_or_default();
            let bad = |what: &str| format!("{flag}: {v:?} is not {what}");
            match flag.as_str() {
                "--http" => {
                    c.http = v
                        .parse()
                        .map_err(|_| bad("an address like 127.0.0.1:8080"))?
                }
                "--listen-ip" => c.listen_ip = v.parse().map_err(|_| bad("an ip address"))?,
                "--announced-address" => c.announced_address = Some(v),
                "--rtc-port" => c.rtc_port = v.parse().map_err(|_| bad("a port"))?,
                "--rtc-port-range" => {
                    let (lo, hi) = v.split_once('-').ok_or_else(|| bad("LO-HI"))?;
                    let lo: u16 = lo.trim().parse().map_err(|_| bad("LO-HI"))?;
                    let hi: u16 = hi.trim().parse().map_err(|_| bad("LO-HI"))?;
                    if lo == 0 || lo > hi {
                        return Err(bad("a range LO-HI with 0 < LO <= HI"));
                    }
                    c.rtc_port_range = Some((lo, hi));
                }
                "--workers" => {
                    let n: usize = v.parse().map_err(|_| bad("a number"))?;
                    if n == 0 {
                        return Err(bad("a positive number"));
                    }
                    c.workers = Some(n);
                }
                "--web-dir" => c.web_dir = PathBuf::from(v),
                "--max-connections" => {
                    let n: usize = v.parse().map_err(|_| bad("a number"))?;
                    if n == 0 {
                        return Err(bad("a positive number"));
                    }
                    c.max_connections = n;
                }
                "--https" => https = true,
                "--cert" => cert = Some(PathBuf::from(v)),
                "--key" => key = Some(PathBuf::from(v)),
                "--no-udp" => c.udp = false,
                "--no-tcp" => c.tcp = false,
                _ => unreachable!("only known flags are collected"),
            }
        }
        c.https = match (cert, key) {
            (Some(cert), Some(key)) => Some(Https::Files { cert, key }),
            (None, None) => https.then_some(Https::SelfSigned),
            _ => return Err("--cert and --key go together".into()),
        };
        if !c.udp && !c.tcp {
            return Err("--no-udp and --no-tcp together leave nothing to connect over".into());
        }
        Ok(Command::Run(c))
    }

    /// The runtime's listen entries for these settings.
    pub fn listen_options(&self) -> Vec<ListenOptions> {
        let mut out = Vec::new();
        for (enabled, protocol) in [(self.udp, Protocol::Udp), (self.tcp, Protocol::Tcp)] {
            if enabled {
                out.push(ListenOptions {
                    protocol,
                    ip: self.listen_ip,
                    announced_address: self.announced_address.clone(),
                    port: self.rtc_port,
                    port_range: self.rtc_port_range,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DemoConfig::parse(args.iter().map(|s| s.to_string()), move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_work_on_localhost() {
        let Command::Run(c) = parse(&[], &[]).unwrap() else {
            panic!()
        };
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.listen_options().len(), 2);
    }

    #[test]
    fn flags_override_environment() {
        let Command::Run(c) = parse(
            &[
                "--http",
                "0.0.0.0:9000",
                "--rtc-port-range=40000-40100",
                "--no-udp",
            ],
            &[
                ("DEMO_HTTP", "127.0.0.1:1"),
                ("DEMO_ANNOUNCED_ADDRESS", "203.0.113.7"),
            ],
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(c.http.port(), 9000);
        assert_eq!(c.rtc_port_range, Some((40000, 40100)));
        assert_eq!(c.announced_address.as_deref(), Some("203.0.113.7"));
        let l = c.listen_options();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn bad_flags_are_explained() {
        assert!(parse(&["--http"], &[])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&["--rtc-port-range", "9-1"], &[]).is_err());
        assert!(parse(&["--bogus"], &[]).unwrap_err().contains("unknown"));
        assert!(parse(&["--no-udp", "--no-tcp"], &[]).is_err());
        assert_eq!(parse(&["-h"], &[]).unwrap(), Command::Help);
        assert!(parse(&["--cert", "c.pem"], &[])
            .unwrap_err()
            .contains("go together"));
        assert!(parse(&["--max-connections", "0"], &[]).is_err());
    }

    #[test]
    fn https_from_flags_or_environment() {
        let run = |args: &[&str], env: &[(&str, &str)]| match parse(args, env).unwrap() {
            Command::Run(c) => c,
            Command::Help => panic!(),
        };
        assert_eq!(run(&[], &[]).https, None);
        assert_eq!(run(&["--https"], &[]).https, Some(Https::SelfSigned));
        assert_eq!(
            run(&[], &[("DEMO_HTTPS", "1")]).https,
            Some(Https::SelfSigned)
        );
        let files = Https::Files {
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert_eq!(
            run(&["--cert", "c.pem", "--key=k.pem"], &[]).https,
            Some(files.clone())
        );
        assert_eq!(
            run(
                &["--https"],
                &[("DEMO_CERT", "c.pem"), ("DEMO_KEY", "k.pem")]
            )
            .https,
            Some(files)
        );
        assert_eq!(run(&["--max-connections", "7"], &[]).max_connections, 7);
    }
}
