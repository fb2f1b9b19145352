//! TLS for HTTPS interception: Porter's own certificate authority, the leaves it mints for
//! intercepted hosts, the ClientHello peek after CONNECT, a TLS stream that can wait without its worker, and
//! verified TLS to origins. No HTTP and no proxy rules here; `proxy::intercept` wires these in.
//!
//! ```text
//!  client ─CONNECT─> proxy: 200, peek ─ClientHello─> hello::classify ─> mint::Minter (leaf for SNI)
//!     └───── TLS (stream::TlsStream, server side) ─────> HTTP requests as https://host:port/...
//!                                               proxy ─> upstream::UpstreamTls ─> origin
//! ```

pub mod ca;
pub mod distrust;
pub mod hello;
pub mod install;
pub mod mint;
pub mod serve;
pub mod signatures;
pub mod stats;
pub mod stream;
pub mod trust;
pub mod upstream;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ca::{CaError, CertificateAuthority};
pub use mint::Minter;
pub use stats::{Failure, Side, TlsStats};
pub use stream::TlsStream;
pub use upstream::{UpstreamTls, UpstreamTlsError};

/// Everything interception needs, built once at start-up.
pub struct Interceptor {
    pub minter: Minter,
    pub upstream: UpstreamTls,
    pub stats: Arc<TlsStats>,
}

/// Why interception cannot start.
#[derive(Debug)]
pub enum InterceptError {
    Ca(CaError),
    UpstreamCa(upstream::UpstreamCaError),
}

impl std::fmt::Display for InterceptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterceptError::Ca(e) => write!(f, "--intercept: {e}"),
            InterceptError::UpstreamCa(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for InterceptError {}

impl Interceptor {
    /// Loads the CA in `ca_dir` (creating one, and logging how to trust it, if there is none) and the
    /// roots for origins.
    pub fn start(ca_dir: &Path, upstream_ca: &[PathBuf]) -> Result<Interceptor, InterceptError> {
        let (ca, created) =
            CertificateAuthority::load_or_init(ca_dir).map_err(InterceptError::Ca)?;
        if created {
            log::warn!(
                "created a new CA for HTTPS interception in {}; clients must trust {} \
                 (fingerprint {}).\n{}",
                ca_dir.display(),
                ca.cert_path().display(),
                ca.fingerprint(),
                trust::instructions(&ca.cert_path())
            );
        } else {
            log::info!(
                "HTTPS interception with the CA in {} (fingerprint {})",
                ca.cert_path().display(),
                ca.fingerprint()
            );
        }
        let stats = Arc::new(TlsStats::default());
        let upstream = UpstreamTls::new(upstream_ca, Arc::clone(&stats))
            .map_err(InterceptError::UpstreamCa)?;
        Ok(Interceptor {
            minter: Minter::new(Arc::new(ca), mint::DEFAULT_CACHE_SIZE, Arc::clone(&stats)),
            upstream,
            stats,
        })
    }

    pub fn ca(&self) -> &CertificateAuthority {
        self.minter.ca()
    }
}
