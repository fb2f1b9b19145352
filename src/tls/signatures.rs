//! The half of server-certificate verification that every verifier of ours does the same way: the
//! handshake signatures (TLS 1.2's ServerKeyExchange, TLS 1.3's CertificateVerify, RFC 8446 §4.4.3)
//! are checked with the crypto provider's algorithms, so the peer must hold the key of the
//! certificate it shows. What differs is only whether the certificate is trusted: a
//! [`TrustDecision`] (webpki with named refusals for origins, anything at all for `fetch --insecure`),
//! which [`SignaturesChecked`] turns into a rustls verifier.

use std::fmt;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};

/// Whether a server's certificate chain is trusted for a name (chain, name, validity dates).
pub trait TrustDecision: fmt::Debug + Send + Sync {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error>;
}

/// A rustls verifier: `trust` decides the certificate, the provider's algorithms check the
/// handshake signatures.
#[derive(Debug)]
pub struct SignaturesChecked<T> {
    trust: T,
    algorithms: WebPkiSupportedAlgorithms,
}

impl<T: TrustDecision> SignaturesChecked<T> {
    pub fn new(trust: T, provider: &CryptoProvider) -> SignaturesChecked<T> {
        SignaturesChecked {
            trust,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl<T: TrustDecision> ServerCertVerifier for SignaturesChecked<T> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.trust
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
