//! The job that `promdrop run`'s tests wrap: serves its metrics over HTTPS with a self-signed
//! certificate, as the descheduler does on port 10258, counts ticks, then exits as its flags
//! say. It is the test binary itself, started again by the tests with its arguments in
//! `PROMDROP_TEST_SERVER_ARGS` (see `tests/run.rs`), so it is built with the tests on any
//! fresh clone and never installed.
//!
//! ```text
//! --listen 127.0.0.1:PORT [--cert-out FILE] [--ticks N] [--tick-every MS] [--sleep MS]
//!     [--exit-code N | --wait-for-signal] [--openmetrics]
//! ```
//!
//! It writes its certificate (PEM) to `--cert-out`, counts `--ticks` ticks, one every
//! `--tick-every` milliseconds (the counter `promdrop_test_ticks_total`), keeps serving for
//! `--sleep` milliseconds more, then exits with `--exit-code`; with `--wait-for-signal` it
//! serves until a signal kills it (it installs no handler, so SIGTERM kills it and its
//! parent sees "killed by signal 15").

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use clap::Parser;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Serve test metrics over HTTPS with a self-signed certificate, then exit.
#[derive(Debug, Parser)]
#[command(name = "metrics-server")]
struct Args {
    /// The address to listen on.
    #[arg(long)]
    listen: String,
    /// Write the self-signed certificate (PEM) here before listening.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// How many ticks to count.
    #[arg(long, default_value_t = 5)]
    ticks: u64,
    /// Milliseconds between ticks.
    #[arg(long, default_value_t = 20)]
    tick_every: u64,
    /// Milliseconds to keep serving after the last tick, before exiting.
    #[arg(long, default_value_t = 0)]
    sleep: u64,
    /// The exit code.
    #[arg(long, default_value_t = 0)]
    exit_code: i32,
    /// After the ticks, serve until a signal kills the process.
    #[arg(long)]
    wait_for_signal: bool,
    /// Serve OpenMetrics text rather than the classic text format.
    #[arg(long)]
    openmetrics: bool,
}

/// Runs the server with `args` (without a program name) and exits the process.
pub fn main(args: &[String]) -> ! {
    let args = match Args::try_parse_from(
        std::iter::once("metrics-server").chain(args.iter().map(String::as_str)),
    ) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("metrics server: {e}");
            std::process::exit(64);
        }
    };
    if let Err(e) = serve(&args) {
        eprintln!("metrics server: {e}");
        std::process::exit(70);
    }
    std::process::exit(args.exit_code)
}

fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, certified.cert.pem())?;
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)?;
    let config = Arc::new(config);
    let listener = TcpListener::bind(&args.listen)?;

    let ticks = Arc::new(AtomicU64::new(0));
    let openmetrics = args.openmetrics;
    {
        let ticks = Arc::clone(&ticks);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                let ticks = Arc::clone(&ticks);
                thread::spawn(move || {
                    let _ = answer(stream, config, ticks.load(Ordering::SeqCst), openmetrics);
                });
            }
        });
    }

    for _ in 0..args.ticks {
        thread::sleep(Duration::from_millis(args.tick_every));
        ticks.fetch_add(1, Ordering::SeqCst);
    }
    if args.wait_for_signal {
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    thread::sleep(Duration::from_millis(args.sleep));
    Ok(())
}

/// Answers one connection: any `GET /metrics` gets the metrics, anything else a 404.
fn answer(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    ticks: u64,
    openmetrics: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let connection = rustls::ServerConnection::new(config)?;
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = tls.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let (status, content_type, body) = if request.starts_with(b"GET /metrics ") {
        if openmetrics {
            (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                format!(
                    "# TYPE promdrop_test_ticks counter\n# HELP promdrop_test_ticks Ticks counted by the test server.\npromdrop_test_ticks_total{{server=\"test\"}} {ticks}\n# TYPE promdrop_test_up gauge\npromdrop_test_up{{path=\"C:\\\\x\",note=\"say \\\"hi\\\"\"}} 1\n# EOF\n"
                ),
            )
        } else {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                format!(
                    "# HELP promdrop_test_ticks_total Ticks counted by the test server.\n# TYPE promdrop_test_ticks_total counter\npromdrop_test_ticks_total{{server=\"test\"}} {ticks}\n# TYPE promdrop_test_up gauge\npromdrop_test_up{{path=\"C:\\\\x\",note=\"say \\\"hi\\\"\"}} 1\n"
                ),
            )
        }
    } else {
        ("404 Not Found", "text/plain", "not found\n".to_string())
    };
    write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(())
}
