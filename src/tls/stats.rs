//! Counters of interception for the status page and `/metrics`, and the reasons a TLS handshake fails,
//! named so that an operator can act on them (`client-distrusts-ca`: the client has not been told to
//! trust Porter's CA; `unknown-issuer`, `self-signed`, `name-mismatch`: why an origin's certificate
//! does not verify), each with what to do about it. webpki's own words (`bad-certificate`,
//! `CaUsedAsEndEntity`) are kept for what no better name fits.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a handshake failed, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer's certificate is signed by no trusted root.
    UnknownIssuer,
    /// The peer's certificate is signed by itself, and not trusted.
    SelfSigned,
    /// The peer presented a CA certificate as its own (webpki's `CaUsedAsEndEntity`): what the usual
    /// `openssl req -x509` one-liner makes.
    CaUsedAsServerCertificate,
    /// The certificate does not name the host.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// Any other certificate problem (revoked, bad signature, wrong usage).
    BadCertificate,
    /// The client refused Porter's certificate (it does not trust the CA).
    ClientDistrustsCa,
    /// No protocol version, cipher suite or ALPN protocol in common.
    NoCommonProtocol,
    /// The client's hello was larger than Porter takes (`tls::hello`).
    HelloTooLarge,
    /// The client's hello came in more records than Porter takes (`tls::hello`).
    HelloTooFragmented,
    /// The peer sent something that is not TLS, or broke the protocol.
    Protocol,
    /// The connection closed, failed or timed out during the handshake.
    Io,
}

impl Failure {
    pub const ALL: [Failure; 13] = [
        Failure::UnknownIssuer,
        Failure::SelfSigned,
        Failure::CaUsedAsServerCertificate,
        Failure::NameMismatch,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::BadCertificate,
        Failure::ClientDistrustsCa,
        Failure::NoCommonProtocol,
        Failure::HelloTooLarge,
        Failure::HelloTooFragmented,
        Failure::Protocol,
        Failure::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownIssuer => "unknown-issuer",
            Failure::SelfSigned => "self-signed",
            Failure::CaUsedAsServerCertificate => "ca-used-as-server-certificate",
            Failure::NameMismatch => "name-mismatch",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not-yet-valid",
            Failure::BadCertificate => "bad-certificate",
            Failure::ClientDistrustsCa => "client-distrusts-ca",
            Failure::NoCommonProtocol => "no-common-protocol",
            Failure::HelloTooLarge => "hello-too-large",
            Failure::HelloTooFragmented => "hello-too-fragmented",
            Failure::Protocol => "protocol",
            Failure::Io => "io",
        }
    }

    /// A phrase for error pages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Failure::UnknownIssuer => {
                "its certificate has an unknown issuer: no CA Porter trusts signed it"
            }
            Failure::SelfSigned => "its certificate is self-signed, and Porter does not trust it",
            Failure::CaUsedAsServerCertificate => {
                "its certificate is a CA certificate used as a server certificate, as the usual \
                 `openssl req -x509` one-liner makes"
            }
            Failure::NameMismatch => "name mismatch: its certificate is for another name",
            Failure::Expired => "its certificate has expired",
            Failure::NotYetValid => "its certificate is not valid yet",
            Failure::BadCertificate => "its certificate is invalid",
            Failure::ClientDistrustsCa => "the client does not trust Porter's CA",
            Failure::NoCommonProtocol => "no TLS version, cipher or protocol in common",
            Failure::HelloTooLarge => "the client's TLS hello is larger than Porter takes",
            Failure::HelloTooFragmented => {
                "the client's TLS hello came in more records than Porter takes"
            }
            Failure::Protocol => "the TLS handshake broke the protocol",
            Failure::Io => "the connection failed during the TLS handshake",
        }
    }

    /// What an operator can do about an origin's certificate that failed, for its 502 page.
    pub fn hint(self) -> &'static str {
        match self {
            Failure::UnknownIssuer => "trust the CA that issued it with --upstream-ca FILE",
            Failure::SelfSigned => {
                "issue the origin a certificate from a CA and pass that CA with --upstream-ca \
                 FILE (or pass this certificate itself with --upstream-ca FILE)"
            }
            Failure::CaUsedAsServerCertificate => {
                "issue the origin a server certificate (a leaf) from a CA and pass that CA with \
                 --upstream-ca FILE (a CA certificate is refused as a server's own even when trusted)"
            }
            Failure::NameMismatch => {
                "the origin must present a certificate for the host the client asked for"
            }
            Failure::Expired => {
                "the origin must renew its certificate (or this machine's clock is wrong)"
            }
            Failure::NotYetValid => {
                "check this machine's clock; the certificate's validity starts later"
            }
            _ => "trust the origin's CA with --upstream-ca FILE",
        }
    }

    /// Classifies a rustls error.
    pub fn of(error: &rustls::Error) -> Failure {
        use super::verify::CertProblem;
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        if let Some(problem) = CertProblem::of(error) {
            return match problem {
                CertProblem::SelfSigned { .. } => Failure::SelfSigned,
                CertProblem::CaUsedAsServerCertificate { .. } => Failure::CaUsedAsServerCertificate,
            };
        }
        match error {
            E::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => Failure::UnknownIssuer,
                C::NotValidForName | C::NotValidForNameContext { .. } => Failure::NameMismatch,
                C::Expired | C::ExpiredContext { .. } => Failure::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Failure::NotYetValid,
                _ => Failure::BadCertificate,
            },
            // What TLS stacks send when a certificate does not verify: OpenSSL `unknown_ca`, others
            // `bad_certificate` or `certificate_unknown`, some `access_denied` or `decrypt_error`.
            E::AlertReceived(
                A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::AccessDenied
                | A::DecryptError,
            ) => Failure::ClientDistrustsCa,
            E::NoApplicationProtocol
            | E::PeerIncompatible(_)
            | E::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::NoApplicationProtocol,
            ) => Failure::NoCommonProtocol,
            _ => Failure::Protocol,
        }
    }

    fn index(self) -> usize {
        Failure::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }
}

/// Which side of the proxy a handshake was with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A client whose CONNECT was intercepted.
    Client,
    /// An origin reached for an intercepted request.
    Upstream,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// Process-wide interception counters.
#[derive(Default)]
pub struct TlsStats {
    pub connects_intercepted: AtomicU64,
    pub connects_tunnelled: AtomicU64,
    pub client_handshakes: AtomicU64,
    pub upstream_handshakes: AtomicU64,
    pub minted: AtomicU64,
    pub cert_cache_hits: AtomicU64,
    /// Clients that refused Porter's certificate, by host (`tls::distrust`).
    pub distrust: super::distrust::Distrust,
    failures: [[AtomicU64; Failure::ALL.len()]; 2],
}

impl TlsStats {
    pub fn handshake_done(&self, side: Side) {
        match side {
            Side::Client => &self.client_handshakes,
            Side::Upstream => &self.upstream_handshakes,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, side: Side, failure: Failure) {
        self.failures[side as usize][failure.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn failures(&self, side: Side, failure: Failure) -> u64 {
        self.failures[side as usize][failure.index()].load(Ordering::Relaxed)
    }

    pub fn total_failures(&self, side: Side) -> u64 {
        Failure::ALL.iter().map(|f| self.failures(side, *f)).sum()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_reasons_an_operator_can_act_on() {
        use rustls::{AlertDescription, CertificateError, Error};
        let cases = [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                Failure::UnknownIssuer,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForName),
                Failure::NameMismatch,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                Failure::Expired,
            ),
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
                Failure::ClientDistrustsCa,
            ),
            (
                Error::AlertReceived(AlertDescription::DecryptError),
                Failure::ClientDistrustsCa,
            ),
            (Error::NoApplicationProtocol, Failure::NoCommonProtocol),
            (Error::DecryptError, Failure::Protocol),
        ];
        for (error, failure) in cases {
            assert_eq!(Failure::of(&error), failure, "{error}");
        }
        let stats = TlsStats::default();
        stats.failed(Side::Upstream, Failure::Expired);
        assert_eq!(stats.failures(Side::Upstream, Failure::Expired), 1);
        assert_eq!(stats.total_failures(Side::Client), 0);
    }
}
