//! A local HTTPS origin for tests: a fresh test CA, a server certificate for `localhost` and
//! `127.0.0.1` signed by it, and a threaded rustls server on 127.0.0.1:0 that answers HTTP/1.1
//! requests (keep-alive included, so a browser can use it too).
//!
//! ```ignore
//! let origin = TlsOrigin::start(b"<title>hi</title>".to_vec());
//! let ca = origin.write_ca(dir.path());      // for --cacert, or a browser's trust store
//! // https://127.0.0.1:{origin.addr.port()}/ is now served
//! ```

#![allow(dead_code)]

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::util::{IO_TIMEOUT, Route, TestRequestHead, header_value, read_test_request_head};

/// A running HTTPS origin.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    /// The test CA's certificate in PEM: trust this to trust the origin.
    pub ca_pem: String,
    pub hits: Arc<AtomicUsize>,
}

impl TlsOrigin {
    /// Answers every request with 200 and `body` as `text/html`.
    pub fn start(body: Vec<u8>) -> TlsOrigin {
        TlsOrigin::start_with(move |_, _, _| {
            (
                200,
                vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body.clone(),
            )
        })
    }

    /// Answers with whatever `route` returns for (method, path, headers), like `util::Origin`.
    pub fn start_with(
        route: impl Fn(&str, &str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
    ) -> TlsOrigin {
        let (config, ca_pem) = server_config();
        TlsOrigin::serve_with(config, ca_pem, route)
    }

    /// Serves `chain` (leaf first) with the leaf's key, answering every request 200: an origin
    /// whose certificate is wrong on purpose. `ca_pem` is empty: the caller knows what, if
    /// anything, to trust.
    pub fn start_with_certificate(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> TlsOrigin {
        let ca_pem = String::new();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, private)
                .expect("server certificate");
        TlsOrigin::serve_with(Arc::new(config), ca_pem, |_, path, _| {
            (
                200,
                Vec::new(),
                format!("{path} from the TLS origin").into_bytes(),
            )
        })
    }

    fn serve_with(
        config: Arc<ServerConfig>,
        ca_pem: String,
        route: impl Fn(&str, &str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
    ) -> TlsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let route: Arc<Route> = Arc::new(route);
        let counter = Arc::clone(&hits);
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, route, hits) = (Arc::clone(&config), route.clone(), counter.clone());
                thread::spawn(move || serve(tcp, config, &*route, &hits));
            }
        });
        TlsOrigin { addr, ca_pem, hits }
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns its path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).expect("write ca.pem");
        path
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A CA, a server certificate it signed, and the rustls configuration serving it.
fn server_config() -> (Arc<ServerConfig>, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "porter test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &issuer).expect("server cert");

    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_cert.der().clone()];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .expect("server certificate");
    (Arc::new(config), ca_cert.pem())
}

/// Serves requests on one TLS connection until the client closes it or asks to.
fn serve(tcp: TcpStream, config: Arc<ServerConfig>, route: &Route, hits: &AtomicUsize) {
    tcp.set_read_timeout(Some(IO_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(IO_TIMEOUT)).ok();
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut reader = BufReader::new(StreamOwned::new(conn, tcp));
    loop {
        let Some(head) = read_test_request_head(&mut reader) else {
            return;
        };
        let TestRequestHead {
            method,
            path,
            headers,
            ..
        } = head;
        let find = |name: &str| header_value(&headers, name);
        if let Some(len) = find("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        hits.fetch_add(1, Ordering::SeqCst);
        let close = find("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let (status, resp_headers, body) = route(&method, &path, &headers);
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (n, v) in &resp_headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if method != "HEAD" {
            bytes.extend_from_slice(&body);
        }
        let stream = reader.get_mut();
        if stream
            .write_all(&bytes)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
        if close {
            stream.conn.send_close_notify();
            let _ = stream.flush();
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Other",
    }
}
