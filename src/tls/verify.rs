//! Origin certificate verification that names the problems operators meet: rustls's own verifier
//! (webpki) decides, and when it refuses, the certificate is looked at once more to tell two cases
//! apart that webpki's words hide.
//!
//! ```text
//!  webpki ─ ok ────────────────────────────────────────────────> verified
//!         └ UnknownIssuer, and the issuer is the subject ───────> self-signed
//!         └ Other(CaUsedAsEndEntity): basicConstraints CA:TRUE ─> CA certificate used as a server certificate
//!         └ anything else ──────────────────────────────────────> as webpki said
//! ```
//! The second is what the usual `openssl req -x509` one-liner makes (its default config marks the
//! certificate CA:TRUE), and webpki reports it as `CaUsedAsEndEntity` inside `CertificateError::Other`,
//! which rustls prints as `Other(OtherError(CaUsedAsEndEntity))`. The refined errors ride in
//! `CertificateError::Other` as a [`CertProblem`], which [`super::Failure::of`] recognises.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, Error, OtherError, RootCertStore};

use super::signatures::TrustDecision;

/// A certificate problem webpki reports in words an operator does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// Signed by itself and not trusted (webpki: `UnknownIssuer`, or `BadSignature` when a trusted
    /// certificate has the same name and another key: `same_name_trusted` then, as after a certificate made
    /// anew whose old one is the one passed with `--upstream-ca`).
    SelfSigned {
        subject: String,
        same_name_trusted: bool,
    },
    /// A CA certificate presented as the server's own (webpki: `CaUsedAsEndEntity`).
    CaUsedAsServerCertificate { subject: String },
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::SelfSigned {
                subject,
                same_name_trusted,
            } => {
                write!(f, "the certificate of {subject} names itself as its issuer")?;
                if *same_name_trusted {
                    f.write_str(
                        "; a trusted certificate has that name but another key (was the \
                         origin's certificate made anew?)",
                    )?;
                }
                Ok(())
            }
            CertProblem::CaUsedAsServerCertificate { subject } => write!(
                f,
                "the certificate of {subject} is marked CA:TRUE (rustls: CaUsedAsEndEntity)"
            ),
        }
    }
}

impl std::error::Error for CertProblem {}

impl CertProblem {
    /// The problem a rustls error carries, if it is one of these.
    pub fn of(error: &Error) -> Option<&CertProblem> {
        match error {
            Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref(),
            _ => None,
        }
    }
}

/// webpki's verifier with its refusals refined. Without any root (no system store, no
/// `--upstream-ca`) there is nothing webpki could build on, so every certificate is an unknown issuer.
/// The handshake signatures are [`SignaturesChecked`](super::signatures::SignaturesChecked)'s.
#[derive(Debug)]
pub struct OriginVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
}

impl OriginVerifier {
    pub fn new(roots: RootCertStore, provider: &Arc<CryptoProvider>) -> OriginVerifier {
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                .build()
                .ok();
        OriginVerifier { webpki }
    }
}

impl TrustDecision for OriginVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(CertificateError::UnknownIssuer.into()),
        };
        verdict.map_err(|error| refine(error, end_entity))
    }
}

/// webpki's refusal, or the problem it stands for.
fn refine(error: Error, end_entity: &CertificateDer<'_>) -> Error {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity) else {
        return error;
    };
    let subject = cert.subject().to_string();
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|constraints| constraints.value.ca);
    let problem = match &error {
        // webpki checks CA:TRUE before it looks for an issuer, and reports it only as `Other`.
        Error::InvalidCertificate(CertificateError::Other(_)) if is_ca => {
            CertProblem::CaUsedAsServerCertificate { subject }
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) if is_ca => {
            CertProblem::CaUsedAsServerCertificate { subject }
        }
        Error::InvalidCertificate(
            reason @ (CertificateError::UnknownIssuer | CertificateError::BadSignature),
        ) if cert.issuer().as_raw() == cert.subject().as_raw() => CertProblem::SelfSigned {
            subject,
            same_name_trusted: *reason == CertificateError::BadSignature,
        },
        _ => return error,
    };
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(problem))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn verifier(roots: &[&CertificateDer<'static>]) -> OriginVerifier {
        let mut store = RootCertStore::empty();
        for root in roots {
            store.add((*root).clone()).unwrap();
        }
        OriginVerifier::new(store, &Arc::new(rustls::crypto::ring::default_provider()))
    }

    fn certificate(common_name: &str, ca: bool) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    fn verify(verifier: &OriginVerifier, cert: &CertificateDer<'_>) -> Result<(), Error> {
        let name = ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn webpkis_refusals_are_named_as_the_operator_knows_them() {
        let (leaf, ca_as_leaf) = (certificate("leaf", false), certificate("one-liner", true));
        let other_root = certificate("another CA", true);
        for roots in [vec![], vec![&other_root]] {
            let verifier = verifier(&roots);
            let error = verify(&verifier, &leaf).unwrap_err();
            assert!(
                matches!(
                    CertProblem::of(&error),
                    Some(CertProblem::SelfSigned { .. })
                ),
                "{error}"
            );
            let error = verify(&verifier, &ca_as_leaf).unwrap_err();
            let problem = CertProblem::of(&error);
            assert!(
                matches!(problem, Some(CertProblem::CaUsedAsServerCertificate { .. })),
                "{error}"
            );
            assert!(problem.unwrap().to_string().contains("CaUsedAsEndEntity"));
        }
        // A self-signed certificate made anew, with the old one trusted: same name, another key.
        let renewed = certificate("leaf", false);
        let error = verify(&verifier(&[&renewed]), &leaf).unwrap_err();
        assert!(
            matches!(
                CertProblem::of(&error),
                Some(CertProblem::SelfSigned {
                    same_name_trusted: true,
                    ..
                })
            ),
            "{error}"
        );
        // A self-signed leaf passed with --upstream-ca verifies; a CA-as-server certificate does not,
        // trusted or not.
        assert!(verify(&verifier(&[&leaf]), &leaf).is_ok());
        let error = verify(&verifier(&[&ca_as_leaf]), &ca_as_leaf).unwrap_err();
        assert!(CertProblem::of(&error).is_some(), "{error}");
    }
}
