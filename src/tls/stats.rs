//! Counters of interception for the status page and `/metrics`, and the reasons a TLS handshake fails,
//! named so that an operator can act on them (`client-distrusts-ca`: the client has not been told to
//! trust Porter's CA; `unknown-issuer`: an origin's certificate does not verify).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a handshake failed, on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer's certificate is signed by no trusted root.
    UnknownIssuer,
    /// The certificate does not name the host.
    WrongName,
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
    /// The peer sent something that is not TLS, or broke the protocol.
    Protocol,
    /// The connection closed, failed or timed out during the handshake.
    Io,
}

impl Failure {
    pub const ALL: [Failure; 9] = [
        Failure::UnknownIssuer,
        Failure::WrongName,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::BadCertificate,
        Failure::ClientDistrustsCa,
        Failure::NoCommonProtocol,
        Failure::Protocol,
        Failure::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownIssuer => "unknown-issuer",
            Failure::WrongName => "wrong-name",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not-yet-valid",
            Failure::BadCertificate => "bad-certificate",
            Failure::ClientDistrustsCa => "client-distrusts-ca",
            Failure::NoCommonProtocol => "no-common-protocol",
            Failure::Protocol => "protocol",
            Failure::Io => "io",
        }
    }

    /// A phrase for error pages and logs.
    pub fn describe(self) -> &'static str {
        match self {
            Failure::UnknownIssuer => "its certificate is not signed by a trusted authority",
            Failure::WrongName => "its certificate is for another name",
            Failure::Expired => "its certificate has expired",
            Failure::NotYetValid => "its certificate is not valid yet",
            Failure::BadCertificate => "its certificate is invalid",
            Failure::ClientDistrustsCa => "the client does not trust Porter's CA",
            Failure::NoCommonProtocol => "no TLS version, cipher or protocol in common",
            Failure::Protocol => "the TLS handshake broke the protocol",
            Failure::Io => "the connection failed during the TLS handshake",
        }
    }

    /// Classifies a rustls error.
    pub fn of(error: &rustls::Error) -> Failure {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        match error {
            E::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer => Failure::UnknownIssuer,
                C::NotValidForName | C::NotValidForNameContext { .. } => Failure::WrongName,
                C::Expired | C::ExpiredContext { .. } => Failure::Expired,
                C::NotValidYet | C::NotValidYetContext { .. } => Failure::NotYetValid,
                _ => Failure::BadCertificate,
            },
            E::AlertReceived(
                A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::AccessDenied,
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
    failures: [[AtomicU64; 9]; 2],
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
                Failure::WrongName,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                Failure::Expired,
            ),
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
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
