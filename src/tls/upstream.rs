//! TLS to origins for intercepted requests: rustls with SNI, verifying against the system's roots plus
//! `--upstream-ca` files. Behind interception the client never sees the origin's certificate, so this is
//! the only check there is: a certificate that does not verify fails the request (a 502 naming the
//! reason) and nothing from that origin is cached.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::signatures::SignaturesChecked;
use super::stats::{Failure, TlsStats};
use super::stream::TlsStream;
use super::verify::{CertProblem, OriginVerifier};
use crate::net::Socket;

/// A `--upstream-ca` file that cannot be used.
#[derive(Debug)]
pub struct UpstreamCaError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for UpstreamCaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot use --upstream-ca {}: {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for UpstreamCaError {}

/// A failed TLS connection to an origin.
#[derive(Debug)]
pub struct UpstreamTlsError {
    pub host: String,
    pub failure: Failure,
    pub detail: String,
}

impl fmt::Display for UpstreamTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS to {} failed ({}): {} ({})",
            self.host,
            self.failure.as_str(),
            self.failure.describe(),
            self.detail
        )
    }
}

impl std::error::Error for UpstreamTlsError {}

/// Opens verified TLS sessions to origins. Cloning shares the configuration and the counters.
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    stats: Arc<TlsStats>,
}

impl UpstreamTls {
    /// Trusts the system's roots and every certificate in `extra_roots` (PEM files).
    pub fn new(
        extra_roots: &[PathBuf],
        stats: Arc<TlsStats>,
    ) -> Result<UpstreamTls, UpstreamCaError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            log::debug!("system root certificates: {error}");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        log::debug!("upstream TLS trusts {added} system root certificates");
        for path in extra_roots {
            add_pem_roots(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // webpki decides; the wrapper only names its refusals (self-signed, a CA as server certificate).
        let verifier = Arc::new(SignaturesChecked::new(
            OriginVerifier::new(roots, &provider),
            &provider,
        ));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamCaError {
                path: PathBuf::new(),
                reason: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
            stats,
        })
    }

    /// Runs the handshake with `host` over a connected socket (with its timeouts set).
    pub fn connect(&self, host: &str, sock: Socket) -> Result<TlsStream, UpstreamTlsError> {
        let fail = |failure: Failure, detail: String| UpstreamTlsError {
            host: host.to_string(),
            failure,
            detail,
        };
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string())
                .map_err(|e| fail(Failure::NameMismatch, e.to_string()))?,
        };
        let conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| fail(Failure::of(&e), e.to_string()))?;
        let mut stream = TlsStream::client(conn, sock, Arc::clone(&self.stats));
        stream
            .handshake()
            .map_err(|(failure, error)| fail(failure, detail(&error)))?;
        Ok(stream)
    }
}

/// What went wrong, in words: a refined certificate problem says it better than rustls's print of it.
fn detail(error: &std::io::Error) -> String {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .and_then(CertProblem::of)
        .map_or_else(|| error.to_string(), CertProblem::to_string)
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), UpstreamCaError> {
    let bad = |reason: String| UpstreamCaError {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("{e:?}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file ({e:?})")))?;
    if certs.is_empty() {
        return Err(bad("it holds no PEM certificate".to_string()));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
    }
    Ok(())
}
