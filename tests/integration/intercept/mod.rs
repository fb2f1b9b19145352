//! HTTPS interception (issue 13) through real sockets: a temporary Porter CA, a local TLS origin whose
//! certificate comes from a test CA given with `--upstream-ca`, and clients that trust only Porter's CA
//! (rustls here, curl, python requests, pip and Chromium in `clients`). `ca` covers `porter ca` and the
//! CA's files, `install` and `install_clients` `porter ca install` and `uninstall`.

mod ca;
mod certs;
mod clients;
mod distrust;
mod install;
mod install_clients;
mod install_fixtures;
mod parents;
mod paths;
mod split;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;

use crate::tls::TlsOrigin;
use crate::util::*;

/// A TLS stream through a proxy tunnel.
pub type Tunnelled = StreamOwned<ClientConnection, TcpStream>;

/// A folder with a proxy's cache and CA, and the origin's test CA for `--upstream-ca`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub origin: TlsOrigin,
}

impl Setup {
    /// An origin answering every path with a page fresh for ten minutes, counting its requests.
    pub fn new() -> Setup {
        let origin = TlsOrigin::start_with(|method, path, _| {
            (
                200,
                hdrs(&[
                    ("Content-Type", "text/plain"),
                    ("Cache-Control", "max-age=600"),
                ]),
                format!("{method} {path} from the TLS origin").into_bytes(),
            )
        });
        Setup::with_origin(origin)
    }

    pub fn with_origin(origin: TlsOrigin) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("origin-ca")).unwrap();
        origin.write_ca(&dir.path().join("origin-ca"));
        Setup { dir, origin }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    pub fn port(&self) -> String {
        self.origin.addr.port().to_string()
    }

    /// `porter proxy --intercept` on this folder, trusting the origin's test CA, plus `extra`.
    pub fn proxy(&self, extra: &[&str]) -> Porter {
        let (cache, ca, origin_ca, port) = (
            self.path("cache"),
            self.path("ca"),
            self.path("origin-ca/ca.pem"),
            self.port(),
        );
        let mut args = vec![
            "proxy",
            "--intercept",
            "--cache-dir",
            &cache,
            "--ca-dir",
            &ca,
            "--upstream-ca",
            &origin_ca,
            "--connect-port",
            &port,
        ];
        args.extend_from_slice(extra);
        Porter::start(&args)
    }

    /// Porter's CA certificate, as the proxy wrote it.
    pub fn porter_ca(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ca/ca.pem")).expect("ca.pem")
    }

    pub fn porter_ca_path(&self) -> PathBuf {
        self.dir.path().join("ca/ca.pem")
    }
}

/// Sends `CONNECT target` and reads the response head byte by byte (nothing after it is consumed).
pub fn open_tunnel(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut stream = connect(proxy);
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the CONNECT response head ended early ({other:?}): {head:?}"),
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// A rustls client trusting only the certificates in `ca_pem`.
pub fn trusting(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(config)
}

/// CONNECT to `target`, then a TLS handshake for `name` trusting only `ca_pem`.
pub fn tls_through(proxy: SocketAddr, target: &str, name: &str, ca_pem: &str) -> Tunnelled {
    let (tcp, head) = open_tunnel(proxy, target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(trusting(ca_pem), name).expect("client");
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("the TLS handshake through the proxy");
    }
    stream
}

/// The subject and issuer (as text) of the certificate the server showed.
pub fn peer_names(stream: &Tunnelled) -> (String, String) {
    let certs = stream.conn.peer_certificates().expect("a certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).expect("X.509");
    (cert.subject().to_string(), cert.issuer().to_string())
}

/// Sends one GET inside a tunnel and reads its response (keep-alive unless `close`).
pub fn get_inside(stream: &mut Tunnelled, host: &str, path: &str, close: bool) -> Response {
    let connection = if close { "Connection: close\r\n" } else { "" };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{connection}\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    read_tls_response(stream)
}

/// Reads one response with a Content-Length body from a TLS stream, and not a byte more: a
/// pipelined response behind it stays in the stream for the next call. (A `BufReader` made here and
/// dropped on return would swallow whatever of the next responses its first read took in.)
pub fn read_tls_response(stream: &mut Tunnelled) -> Response {
    read_any_response(stream)
}

/// Reads one response with a Content-Length body (all the origins here send one) from any stream:
/// the head a byte at a time (through TLS, a byte comes from plaintext rustls holds, not a system
/// call each), then exactly the body.
pub fn read_any_response(reader: &mut impl Read) -> Response {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "response head ended early ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = response
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    response.body = vec![0; len];
    reader.read_exact(&mut response.body).expect("the body");
    response
}

/// The outcome (last field) of the access line for `method url`, counting from `from`.
pub fn outcome(logs: &str, method: &str, url: &str) -> Vec<String> {
    let needle = format!(" {method} {url} ");
    logs.lines()
        .filter(|l| l.contains("porter::access") && l.contains(&needle))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

/// The value of a metric line (exact name with labels) on the proxy's /metrics page.
pub fn metric(proxy: SocketAddr, line: &str) -> Option<u64> {
    let page = raw_request(
        proxy,
        b"GET /metrics HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .expect("metrics");
    page.text()
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}
