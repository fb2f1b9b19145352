//! The certificate `porter serve --tls` presents: one leaf naming every listen name (`localhost`,
//! `127.0.0.1`, `::1`, the listen address and each `--tls-name`), signed by a local CA that is
//! created on first use exactly as `porter ca init` makes one ([`CertificateAuthority::load_or_init`]:
//! `ca.pem`, and `ca-key.pem` 0600 in a 0700 folder). Clients trust `ca.pem` (`curl --cacert`,
//! `porter proxy --upstream-ca`), so HTTPS runs end to end on loopback without a public CA.
//!
//! The leaf is minted at each start and lives in memory only: its key is never written, and a
//! restart renews it. It is valid for [`LEAF_VALIDITY`], longer than interception's leaves (which
//! are minted again on demand), because a test server may run for weeks.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::ServerConfig;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ca::{CaError, CertificateAuthority};

/// How long the server's leaf is valid (back-dated an hour for slow client clocks).
const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 86_400);
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why `serve --tls` cannot start.
#[derive(Debug)]
pub enum ServeTlsError {
    Ca(CaError),
    /// A `--tls-name` that is neither a DNS name nor an IP address.
    BadName(String),
    Generate(rcgen::Error),
    Config(rustls::Error),
}

impl fmt::Display for ServeTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeTlsError::Ca(e) => write!(f, "--tls-ca-dir: {e}"),
            ServeTlsError::BadName(name) => write!(
                f,
                "--tls-name {name:?} is neither a DNS name (letters, digits, hyphens, dots) nor an IP address"
            ),
            ServeTlsError::Generate(e) => write!(f, "cannot make the server certificate: {e}"),
            ServeTlsError::Config(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for ServeTlsError {}

/// What `serve --tls` runs with: the rustls configuration, and the CA to tell clients about.
pub struct ServeTls {
    pub config: Arc<ServerConfig>,
    pub ca: CertificateAuthority,
    /// The CA was made by this start.
    pub created: bool,
    /// The names the leaf is valid for, as given.
    pub names: Vec<String>,
}

impl ServeTls {
    /// Loads (or creates) the CA in `ca_dir` and mints a leaf for `names`.
    pub fn start(ca_dir: &Path, names: &[String]) -> Result<ServeTls, ServeTlsError> {
        let (ca, created) =
            CertificateAuthority::load_or_init(ca_dir).map_err(ServeTlsError::Ca)?;
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            let name = name.trim().trim_start_matches('[').trim_end_matches(']');
            let name = name.to_ascii_lowercase();
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        let mut sans = Vec::with_capacity(unique.len());
        for name in &unique {
            sans.push(san(name)?);
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let common_name = unique.first().map_or("porter serve", String::as_str);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Porter serve");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial)
            .map_err(|_| ServeTlsError::Config(rustls::Error::FailedToGetRandomBytes))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY - BACKDATE;
        let key = KeyPair::generate().map_err(ServeTlsError::Generate)?;
        let cert = params
            .signed_by(&key, ca.issuer())
            .map_err(ServeTlsError::Generate)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(ServeTlsError::Config)?
                .with_no_client_auth()
                // The chain a client needs: the leaf, then the CA it may hold as a root already.
                .with_single_cert(vec![cert.der().clone(), ca.cert_der().clone()], private)
                .map_err(ServeTlsError::Config)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServeTls {
            config: Arc::new(config),
            ca,
            created,
            names: unique,
        })
    }
}

/// A name as the subject alternative name clients check it against.
fn san(name: &str) -> Result<SanType, ServeTlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    rustls_pki_types::DnsName::try_from(name)
        .map_err(|_| ServeTlsError::BadName(name.to_string()))?;
    let dns = name
        .to_string()
        .try_into()
        .map_err(|_| ServeTlsError::BadName(name.to_string()))?;
    Ok(SanType::DnsName(dns))
}
