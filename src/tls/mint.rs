//! Leaf certificates for intercepted hosts, minted on demand and kept in a bounded in-memory cache.
//!
//! A leaf is ECDSA P-256, names exactly one host (a DNS name or an IP address, in the subject
//! alternative name that clients check), is valid for a few days and back-dated an hour for clients
//! whose clocks run slow. The cache keeps the ready rustls server configuration per name, so a host's
//! second connection costs neither key generation nor signing; the least recently used name leaves
//! when the cache is full, and a leaf is minted afresh a day before it expires.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::runtime::Mutex;
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::StoresServerSessions;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::ca::CertificateAuthority;
use super::stats::TlsStats;

/// How long a leaf is valid, and how far it is back-dated.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 86_400);
const BACKDATE: Duration = Duration::from_secs(3600);
/// A cached leaf is replaced this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(86_400);
/// Names whose leaves are kept.
pub const DEFAULT_CACHE_SIZE: usize = 1024;
/// TLS sessions remembered for resumption, across all names.
const SESSIONS: usize = 4096;

/// Why no leaf could be made.
#[derive(Debug)]
pub enum MintError {
    /// The name is neither a DNS name nor an IP address.
    BadName(String),
    Generate(rcgen::Error),
    Config(rustls::Error),
}

impl std::fmt::Display for MintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MintError::BadName(name) => write!(f, "cannot make a certificate for {name:?}"),
            MintError::Generate(e) => write!(f, "cannot make a certificate: {e}"),
            MintError::Config(e) => write!(f, "cannot use the new certificate: {e}"),
        }
    }
}

impl std::error::Error for MintError {}

struct Cached {
    config: Arc<ServerConfig>,
    renew_at: Instant,
    last_used: u64,
}

/// Mints leaves signed by the CA and remembers them by name.
pub struct Minter {
    ca: Arc<CertificateAuthority>,
    cache: Mutex<HashMap<String, Cached>>,
    capacity: usize,
    clock: AtomicU64,
    sessions: Arc<dyn StoresServerSessions>,
    provider: Arc<CryptoProvider>,
    stats: Arc<TlsStats>,
}

/// The interception's cryptography: ring's, with the suites that hash with SHA-256 first
/// (TLS_AES_128_GCM_SHA256, the one TLS 1.3 makes mandatory (RFC 8446 §9.1) and Chrome and
/// Firefox ask for first). A handshake's key schedule and transcript hash many blocks, and ring
/// runs SHA-256 on the CPU's SHA extensions where it has them, while its SHA-384 is plain code on
/// every CPU but Intel's with AVX: that hashing was a tenth of an intercepted connection's CPU.
/// Clients that prefer AES-256 (curl, rustls) get AES-128, which is as safe for them.
///
/// The key exchange is aws-lc's X25519 (s2n-bignum's formally verified code, with ADX where the CPU
/// has it, and aws-lc's own DRBG for the ephemeral key): a TLS 1.3 handshake does one whether it
/// resumes a session or not (the PSK mode clients offer is `psk_dhe_ke`, RFC 8446 §4.2.9), and
/// ring's took a fifth of an intercepted connection's CPU. Keygen and agreement together measured
/// 45-65 us against ring's 85-100 us on the bench machine; a new connection per request cost 8-10%
/// less CPU. The random bytes of a handshake (the server's random, a ticket's name, age and nonce)
/// come from aws-lc's DRBG too (seeded by the kernel, reseeded, fork-safe) where ring asked the
/// kernel for each: four `getrandom` calls per connection. The NIST curves stay ring's, as does
/// everything else.
fn provider() -> CryptoProvider {
    use rustls::CipherSuite as Suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![
        rustls::crypto::aws_lc_rs::kx_group::X25519,
        rustls::crypto::ring::kx_group::SECP256R1,
        rustls::crypto::ring::kx_group::SECP384R1,
    ];
    provider.secure_random = rustls::crypto::aws_lc_rs::default_provider().secure_random;
    provider.cipher_suites.sort_by_key(|suite| {
        matches!(
            suite.suite(),
            Suite::TLS13_AES_256_GCM_SHA384
                | Suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | Suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    provider
}

impl Minter {
    pub fn new(ca: Arc<CertificateAuthority>, capacity: usize, stats: Arc<TlsStats>) -> Minter {
        Minter {
            ca,
            cache: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            clock: AtomicU64::new(0),
            sessions: rustls::server::ServerSessionMemoryCache::new(SESSIONS),
            provider: Arc::new(provider()),
            stats,
        }
    }

    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The server configuration presenting a leaf for `name` (lowercase DNS name or IP address).
    pub fn config_for(&self, name: &str) -> Result<Arc<ServerConfig>, MintError> {
        let name = name.to_ascii_lowercase();
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get_mut(&name)
                && Instant::now() < cached.renew_at
            {
                cached.last_used = tick;
                self.stats.cert_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Arc::clone(&cached.config));
            }
        }
        // Minted outside the lock: signing takes a while and other names must not wait for it.
        let config = self.mint(&name)?;
        self.stats.minted.fetch_add(1, Ordering::Relaxed);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(&name) {
            let oldest = cache
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            name,
            Cached {
                config: Arc::clone(&config),
                renew_at: Instant::now() + LEAF_VALIDITY - BACKDATE - RENEW_BEFORE,
                last_used: tick,
            },
        );
        Ok(config)
    }

    /// Names in the cache now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn mint(&self, name: &str) -> Result<Arc<ServerConfig>, MintError> {
        let (cert, key) = self.leaf(name)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(MintError::Config)?
            .with_no_client_auth()
            .with_single_cert(vec![cert], private)
            .map_err(MintError::Config)?;
        // Requests inside are HTTP/1.1, whatever else the client offers.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = Arc::clone(&self.sessions);
        // One TLS 1.3 ticket per connection is what a client resumes with; rustls's default of two
        // doubles the work and the memory for nothing.
        config.send_tls13_tickets = 1;
        // Our order of cipher suites, not the client's: see `provider`.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }

    /// A new key and a certificate for `name`, signed by the CA.
    pub fn leaf(
        &self,
        name: &str,
    ) -> Result<(rustls_pki_types::CertificateDer<'static>, KeyPair), MintError> {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                // Only a valid DNS name (letters, digits, hyphens, dots) may go in a certificate.
                rustls_pki_types::DnsName::try_from(name)
                    .map_err(|_| MintError::BadName(name.to_string()))?;
                let dns = name
                    .to_string()
                    .try_into()
                    .map_err(|_| MintError::BadName(name.to_string()))?;
                SanType::DnsName(dns)
            }
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![san];
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Porter");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|_| MintError::BadName(name.to_string()))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY - BACKDATE;
        let key = KeyPair::generate().map_err(MintError::Generate)?;
        let cert = params
            .signed_by(&key, self.ca.issuer())
            .map_err(MintError::Generate)?;
        Ok((cert.der().clone(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter(capacity: usize) -> (tempfile::TempDir, Minter) {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(CertificateAuthority::init(dir.path()).unwrap());
        (dir, Minter::new(ca, capacity, Arc::default()))
    }

    #[test]
    fn leaves_name_their_host_and_are_signed_by_the_ca() {
        let (_dir, minter) = minter(4);
        for name in ["localhost", "127.0.0.1", "::1"] {
            let (der, _) = minter.leaf(name).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            assert_eq!(
                cert.issuer().to_string(),
                x509_parser::parse_x509_certificate(minter.ca().cert_der())
                    .unwrap()
                    .1
                    .subject()
                    .to_string()
            );
            let sans = cert.subject_alternative_name().unwrap().unwrap();
            assert_eq!(sans.value.general_names.len(), 1, "{name}");
            let validity = cert.validity();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(validity.not_before.timestamp() < now - 3000, "back-dated");
            assert!(validity.not_after.timestamp() < now + 8 * 86_400, "short");
            assert!(cert.verify_signature(None).is_err(), "not self-signed");
        }
        assert!(matches!(
            minter.leaf("bad name"),
            Err(MintError::BadName(_))
        ));
    }

    #[test]
    fn the_cache_reuses_leaves_and_stays_bounded() {
        let (_dir, minter) = minter(2);
        let first = minter.config_for("a.example").unwrap();
        let again = minter.config_for("A.example").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(minter.stats.minted.load(Ordering::Relaxed), 1);
        assert_eq!(minter.stats.cert_cache_hits.load(Ordering::Relaxed), 1);
        minter.config_for("b.example").unwrap();
        minter.config_for("a.example").unwrap();
        minter.config_for("c.example").unwrap(); // evicts b, the least recently used
        assert_eq!(minter.cached(), 2);
        let a = minter.config_for("a.example").unwrap();
        assert!(Arc::ptr_eq(&first, &a), "a stayed");
        minter.config_for("b.example").unwrap();
        assert_eq!(minter.stats.minted.load(Ordering::Relaxed), 4);
    }
}
