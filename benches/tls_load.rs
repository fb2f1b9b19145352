//! `tls-load`: an HTTPS load generator that can go through a forward proxy, for the side-by-side
//! benchmark (`benches/side-by-side.sh`). wrk cannot send CONNECT, so it cannot measure a proxy that
//! intercepts TLS; this tool opens a CONNECT tunnel per connection, runs the TLS handshake inside it
//! (verifying the certificate against `--cacert`, as a real client would), and then sends keep-alive
//! GETs, or, with `--new-conn`, one GET per connection so that handshakes are what is measured.
//!
//! One thread per connection keeps it simple: the figures compare proxies within one run, and every
//! proxy pays the same client overhead. It prints one machine-readable line:
//! `TLSLOAD requests=N secs=S bytes=B p50_us=X p99_us=Y errors=E resumed=R full=F version=V`, where R
//! and F count the handshakes that resumed a session and those that did not, and V is the protocol
//! version negotiated.
//!
//! ```text
//! cargo run --release --example tls-load -- --proxy 127.0.0.1:3128 --cacert ca/ca.pem \
//!     --conns 64 --duration 5 https://127.0.0.1:18443/1k.bin
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// What one run measures; parsed from the command line.
struct Options {
    proxy: Option<String>,
    cacerts: Vec<String>,
    conns: usize,
    duration: Duration,
    new_conn: bool,
    target: Target,
}

/// The https URL under load, split into what the tunnel and the request need.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    path: String,
}

/// What one connection thread counted.
#[derive(Default)]
struct Tally {
    requests: u64,
    bytes: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    /// Handshakes that resumed a session, and those that did not (a full handshake).
    resumed: u64,
    full: u64,
    /// The protocol version of the last handshake.
    version: Option<rustls::ProtocolVersion>,
}

type Stream = StreamOwned<ClientConnection, TcpStream>;

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("tls-load: {message}");
            eprintln!(
                "usage: tls-load [--proxy HOST:PORT] --cacert FILE [--conns N] [--duration SECS] [--new-conn] https://HOST:PORT/PATH"
            );
            return ExitCode::from(2);
        }
    };
    let config = match client_config(&options.cacerts) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("tls-load: {message}");
            return ExitCode::from(2);
        }
    };
    let options = Arc::new(options);
    let started = Instant::now();
    let deadline = started + options.duration;
    let workers: Vec<_> = (0..options.conns)
        .map(|_| {
            let options = Arc::clone(&options);
            let config = Arc::clone(&config);
            thread::spawn(move || run_connection(&options, &config, deadline))
        })
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.join().unwrap_or_default();
        total.requests += tally.requests;
        total.bytes += tally.bytes;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
        total.resumed += tally.resumed;
        total.full += tally.full;
        total.version = total.version.or(tally.version);
    }
    let secs = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    println!(
        "TLSLOAD requests={} secs={secs:.3} bytes={} p50_us={} p99_us={} errors={} resumed={} full={} version={}",
        total.requests,
        total.bytes,
        percentile(&total.latencies_us, 50),
        percentile(&total.latencies_us, 99),
        total.errors,
        total.resumed,
        total.full,
        total.version.map_or("-".to_string(), |v| format!("{v:?}"))
    );
    if total.requests == 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn percentile(sorted: &[u32], p: usize) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

/// One connection's loop until the deadline: (re)connect when needed, then request after request.
fn run_connection(options: &Options, config: &Arc<ClientConfig>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<BufReader<Stream>> = None;
    while Instant::now() < deadline {
        let began = Instant::now();
        let mut conn = match stream.take() {
            Some(conn) => conn,
            None => match open(options, config) {
                Ok(conn) => {
                    match conn.conn.handshake_kind() {
                        Some(rustls::HandshakeKind::Resumed) => tally.resumed += 1,
                        _ => tally.full += 1,
                    }
                    tally.version = conn.conn.protocol_version();
                    BufReader::new(conn)
                }
                Err(_) => {
                    tally.errors += 1;
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        match request(&mut conn, &options.target) {
            Ok((bytes, keep_alive)) => {
                tally.requests += 1;
                tally.bytes += bytes;
                let micros = began.elapsed().as_micros().min(u32::MAX as u128) as u32;
                tally.latencies_us.push(micros);
                if keep_alive && !options.new_conn {
                    stream = Some(conn);
                } else {
                    conn.get_mut().conn.send_close_notify();
                    let _ = conn.get_mut().flush();
                }
            }
            Err(_) => tally.errors += 1,
        }
    }
    tally
}

/// A TCP connection (through a CONNECT tunnel when a proxy is given) with the TLS handshake done.
fn open(options: &Options, config: &Arc<ClientConfig>) -> Result<Stream, String> {
    let target = &options.target;
    let dial = options
        .proxy
        .clone()
        .unwrap_or_else(|| format!("{}:{}", target.host, target.port));
    let addr = dial
        .to_socket_addrs()
        .map_err(|e| format!("{dial}: {e}"))?
        .next()
        .ok_or_else(|| format!("{dial}: no address"))?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {dial}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut early = Vec::new();
    if options.proxy.is_some() {
        let authority = format!("{}:{}", target.host, target.port);
        write!(
            tcp,
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        early = read_connect_reply(&mut tcp)?;
    }
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut early = early.as_slice();
    while !early.is_empty() {
        conn.read_tls(&mut early).map_err(|e| e.to_string())?;
        conn.process_new_packets().map_err(|e| e.to_string())?;
    }
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(stream)
}

/// Reads the proxy's answer to CONNECT and wants a 2xx; returns what came after its head (nothing,
/// from a proxy that waits for the ClientHello as it must, but kept for the TLS session if sent).
/// Reads go into a buffer, as a browser's do: one read takes the whole head, where reading byte by
/// byte (as curl does, to never read past the head) cost this client about forty system calls per
/// connection on the cores it shares with the proxy under test.
fn read_connect_reply(tcp: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 16 * 1024 {
            return Err("CONNECT reply head too large".to_string());
        }
        let n = tcp.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("proxy closed during CONNECT".to_string());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let rest = head.split_off(end);
    let status_line = String::from_utf8_lossy(&head);
    match status_line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(rest),
        _ => Err(format!(
            "CONNECT refused: {}",
            status_line.lines().next().unwrap_or("")
        )),
    }
}

/// Sends one GET and reads its response; answers the bytes read and whether the connection stays open.
fn request(conn: &mut BufReader<Stream>, target: &Target) -> Result<(u64, bool), String> {
    let host = format!("{}:{}", target.host, target.port);
    write!(
        conn.get_mut(),
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tls-load\r\n\r\n",
        target.path
    )
    .map_err(|e| e.to_string())?;
    conn.get_mut().flush().map_err(|e| e.to_string())?;
    let mut length: Option<u64> = None;
    let mut keep_alive = true;
    let mut status = String::new();
    conn.read_line(&mut status).map_err(|e| e.to_string())?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {}", status.trim_end()));
    }
    let mut head_bytes = status.len() as u64;
    loop {
        let mut line = String::new();
        let n = conn.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed in the response head".to_string());
        }
        head_bytes += n as u64;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep_alive = false;
            }
        }
    }
    let length = length.ok_or("response without Content-Length")?;
    let copied = std::io::copy(&mut conn.by_ref().take(length), &mut std::io::sink())
        .map_err(|e| e.to_string())?;
    if copied != length {
        return Err("short body".to_string());
    }
    Ok((head_bytes + length, keep_alive))
}

fn client_config(cacerts: &[String]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for path in cacerts {
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{path}: {e:?}"))? {
            let cert = cert.map_err(|e| format!("{path}: {e:?}"))?;
            roots.add(cert).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificate: give --cacert FILE".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut proxy = None;
    let mut cacerts = Vec::new();
    let mut conns = 64;
    let mut duration = Duration::from_secs(5);
    let mut new_conn = false;
    let mut url = None;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--proxy" => proxy = Some(value("--proxy")?),
            "--cacert" => cacerts.push(value("--cacert")?),
            "--conns" => {
                conns = value("--conns")?
                    .parse()
                    .map_err(|_| "--conns takes a number")?
            }
            "--duration" => {
                let secs: u64 = value("--duration")?
                    .parse()
                    .map_err(|_| "--duration takes whole seconds")?;
                duration = Duration::from_secs(secs);
            }
            "--new-conn" => new_conn = true,
            other if other.starts_with("https://") => url = Some(other.to_string()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if conns == 0 {
        return Err("--conns must be at least 1".to_string());
    }
    let url = url.ok_or("no https:// URL given")?;
    let parsed = url::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut path = parsed.path().to_string();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Options {
        proxy,
        cacerts,
        conns,
        duration,
        new_conn,
        target: Target { host, port, path },
    })
}
