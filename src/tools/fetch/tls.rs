//! TLS settings for https URLs: rustls with the ring provider, trusting the system's roots plus any
//! `--cacert`, or, with `--insecure`, any certificate at all.
//!
//! Certificates are checked by [`crate::tls::verify::OriginVerifier`], the proxy's own, so a refusal
//! has the same name (`self-signed`, `name-mismatch`) whichever command met it.
//!
//! `--insecure` skips only the trust decision (chain, name, validity dates). The handshake signatures are
//! still checked, so the server must hold the key of the certificate it shows.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerified;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::FetchError;
use crate::tls::signatures::{SignaturesChecked, TrustDecision};
use crate::tls::verify::OriginVerifier;

/// A client configuration for this run's https requests.
pub fn client_config(
    cacert: Option<&Path>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| FetchError::Tls {
            peer: "this client".to_string(),
            error,
        })?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesChecked::new(
                AnyCertificate,
                &provider,
            )))
            .with_no_client_auth()
    } else {
        // The proxy's verifier: webpki decides, and a refusal is named as the operator knows it
        // (self-signed, a CA certificate used as a server's own), so fetch and proxy say the same.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesChecked::new(
                OriginVerifier::new(roots(cacert)?, &provider),
                &provider,
            )))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The system's trusted roots and the `--cacert` certificates.
fn roots(cacert: Option<&Path>) -> Result<RootCertStore, FetchError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        log::debug!("system root certificates: {error}");
    }
    let (added, ignored) = store.add_parsable_certificates(native.certs);
    log::debug!("trusting {added} system root certificates ({ignored} unusable)");
    if let Some(path) = cacert {
        let bad = |reason: String| FetchError::Cacert {
            path: path.to_path_buf(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(pem_error(e)))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(pem_error(e)))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM certificate".to_string()));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| bad(format!("not a usable certificate: {e}")))?;
        }
    }
    Ok(store)
}

fn pem_error(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not a PEM file ({other:?})"),
    }
}

/// The `--insecure` trust: any certificate chain for any name (the handshake signatures are still
/// checked, by [`SignaturesChecked`]).
#[derive(Debug)]
struct AnyCertificate;

impl TrustDecision for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cacert_errors_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = client_config(Some(&missing), false)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("cannot use --cacert"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let error = client_config(Some(&empty), false).unwrap_err().to_string();
        assert!(error.ends_with("it holds no PEM certificate"), "{error}");
        assert!(client_config(None, true).is_ok());
    }
}
