//! Porter's own certificate authority: `DIR/ca.pem` (the certificate, shared freely) and
//! `DIR/ca-key.pem` (the private key, mode 0600 in a 0700 folder). It signs the leaf certificates that
//! HTTPS interception shows clients, so whoever trusts `ca.pem` trusts this proxy with their HTTPS.
//!
//! The key is read here and handed to the minter only: it is never logged (the types here print no
//! key material), never served and never written anywhere but `ca-key.pem`. A key file that group or
//! others may read is refused, as ssh refuses such a private key.
//!
//! `ca.pem` is served to every client at `/ca.pem`, so it must hold no key either. Many operators
//! keep certificate and key in one PEM (Squid's ssl-bump recipes, mitmproxy's `mitmproxy-ca.pem`):
//! such a `ca.pem` is refused, never served, and what is served is the certificate alone,
//! re-encoded from its DER rather than the file's bytes (RFC 7468 §5 textual encoding).

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// The certificate's file name in the CA folder.
pub const CERT_FILE: &str = "ca.pem";
/// The private key's file name in the CA folder.
pub const KEY_FILE: &str = "ca-key.pem";
/// How long a new CA is valid: long, since every client has to be told to trust it.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Why a CA cannot be created or used.
#[derive(Debug)]
pub enum CaError {
    /// `ca init` found a CA (or part of one) already there.
    Exists(PathBuf),
    /// No CA in the folder (for `ca show`).
    Missing(PathBuf),
    /// The key file may be read by group or others.
    KeyReadable { path: PathBuf, mode: u32 },
    /// A file could not be read or written.
    Io { path: PathBuf, error: io::Error },
    /// A file holds no usable certificate or key.
    Invalid { path: PathBuf, reason: String },
    /// The certificate file, which is served to clients, also holds a private key.
    KeyInCertificate { path: PathBuf, key_path: PathBuf },
    /// Generating a key or a certificate failed.
    Generate(rcgen::Error),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Exists(dir) => write!(
                f,
                "a CA already exists in {}; refusing to overwrite it (remove the folder to start over, \
                 and every client will have to trust the new one)",
                dir.display()
            ),
            CaError::Missing(dir) => write!(
                f,
                "no CA in {} (create one with `porter ca init --ca-dir {}`)",
                dir.display(),
                dir.display()
            ),
            CaError::KeyReadable { path, mode } => write!(
                f,
                "the CA key {} is readable by group or others (mode {mode:04o}); \
                 run `chmod 600 {}` and start again",
                path.display(),
                path.display()
            ),
            CaError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            CaError::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
            CaError::KeyInCertificate { path, key_path } => write!(
                f,
                "{} holds a private key as well as the CA certificate; Porter gives that file to \
                 every client (at /ca.pem), so it refuses to use it: move the private key block into \
                 {} (mode 0600) and leave only the certificate in {}",
                path.display(),
                key_path.display(),
                path.display()
            ),
            CaError::Generate(e) => write!(f, "cannot generate the CA: {e}"),
        }
    }
}

impl std::error::Error for CaError {}

/// A loaded CA: its certificate for clients and the issuer that signs leaves.
pub struct CertificateAuthority {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// What `ca show` prints about the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSummary {
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the DER certificate, as colon-separated uppercase hex.
    pub fingerprint: String,
}

impl CertificateAuthority {
    /// Creates a new CA in `dir` (made 0700 if missing); refuses if either file is already there.
    pub fn init(dir: &Path) -> Result<CertificateAuthority, CaError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if cert_path.exists() || key_path.exists() {
            return Err(CaError::Exists(dir.to_path_buf()));
        }
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| CaError::Io { path, error }
        };
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error(dir))?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_error(dir))?;

        let key = KeyPair::generate().map_err(CaError::Generate)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(CaError::Generate)?;
        // The key first, created 0600 from the start (never a moment with wider permissions), and with
        // create_new so that a race with another `ca init` cannot overwrite anything.
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io_error(&key_path))?;
        if let Err(error) = write_new(&cert_path, cert.pem().as_bytes(), 0o644) {
            let _ = fs::remove_file(&key_path);
            return Err(CaError::Io {
                path: cert_path,
                error,
            });
        }
        CertificateAuthority::load(dir)
    }

    /// Loads the CA in `dir`, refusing a key readable by group or others and a certificate file that
    /// holds a private key too.
    pub fn load(dir: &Path) -> Result<CertificateAuthority, CaError> {
        let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
        if !cert_path.exists() && !key_path.exists() {
            return Err(CaError::Missing(dir.to_path_buf()));
        }
        let cert_file = read(&cert_path)?;
        // Before anything parses the file: a parse error must not quote a line of a key.
        if holds_private_key(&cert_file) {
            return Err(CaError::KeyInCertificate {
                path: cert_path,
                key_path,
            });
        }
        let meta = fs::metadata(&key_path).map_err(|error| CaError::Io {
            path: key_path.clone(),
            error,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaError::KeyReadable {
                path: key_path,
                mode,
            });
        }
        let key_pem = read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
            path: key_path.clone(),
            reason: format!("not a PEM private key ({e})"),
        })?;
        let cert_der = pem_certificate(&cert_path, &cert_file)?;
        let cert_pem = certificate_pem(&cert_der);
        let invalid_cert = |reason: String| CaError::Invalid {
            path: cert_path.clone(),
            reason,
        };
        // The certificate must belong to the key, or every leaf would fail to verify.
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| invalid_cert(format!("not an X.509 certificate ({e})")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid_cert(format!(
                "this certificate does not belong to the key in {}",
                key_path.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| invalid_cert(format!("not a usable CA certificate ({e})")))?;
        Ok(CertificateAuthority {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Loads the CA in `dir`, creating one first if the folder holds none. Returns whether it was created.
    pub fn load_or_init(dir: &Path) -> Result<(CertificateAuthority, bool), CaError> {
        match CertificateAuthority::load(dir) {
            Ok(ca) => Ok((ca, false)),
            Err(CaError::Missing(_)) => CertificateAuthority::init(dir).map(|ca| (ca, true)),
            Err(e) => Err(e),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate file's path.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// The certificate in PEM, encoded afresh from its DER: never the bytes of `ca.pem`, which
    /// might hold more than the certificate.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// What signs leaf certificates.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// SHA-256 of the certificate, `AB:CD:…`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// Subject, validity and fingerprint, for `ca show` and the status page.
    pub fn summary(&self) -> CaSummary {
        let (subject, not_before, not_after) =
            match x509_parser::parse_x509_certificate(&self.cert_der) {
                Ok((_, cert)) => {
                    let validity = cert.validity();
                    let date = |t: &x509_parser::time::ASN1Time| {
                        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
                        crate::timefmt::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                    };
                    (
                        cert.subject().to_string(),
                        date(&validity.not_before),
                        date(&validity.not_after),
                    )
                }
                Err(_) => Default::default(),
            };
        CaSummary {
            subject,
            not_before,
            not_after,
            fingerprint: self.fingerprint(),
        }
    }
}

/// SHA-256 of a DER certificate as colon-separated uppercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The parameters of a new CA: named for this machine and day, so two CAs are told apart.
fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(CaError::Generate)?;
    let host = fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let today = &crate::timefmt::rfc3339(SystemTime::now())[..10];
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Porter proxy CA ({host}, {today})"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Porter");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CA_VALIDITY;
    Ok(params)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn read(path: &Path) -> Result<String, CaError> {
    fs::read_to_string(path).map_err(|error| CaError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Whether a PEM text has a private key block of any kind (`-----BEGIN PRIVATE KEY-----`, `RSA`,
/// `EC`, `ENCRYPTED`, `OPENSSH`, ...).
pub fn holds_private_key(pem: &str) -> bool {
    pem.lines().any(|line| {
        let line = line.trim();
        line.starts_with("-----BEGIN ") && line.ends_with("PRIVATE KEY-----")
    })
}

/// A DER certificate in PEM (RFC 7468 §5): base64 in lines of 64 characters between the markers.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(text.len() + text.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is whole characters.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

pub(crate) fn pem_certificate(path: &Path, pem: &str) -> Result<CertificateDer<'static>, CaError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a PEM certificate ({e:?})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_a_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = CertificateAuthority::init(&ca_dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join(KEY_FILE)), 0o600);
        assert_eq!(
            fs::read_to_string(ca_dir.join(CERT_FILE)).unwrap(),
            ca.cert_pem()
        );
        let summary = ca.summary();
        assert!(summary.subject.contains("Porter proxy CA"), "{summary:?}");
        assert_eq!(summary.fingerprint.len(), 32 * 3 - 1);
        assert!(!format!("{ca:?}").contains("PRIVATE"));

        let again = CertificateAuthority::init(&ca_dir).unwrap_err();
        assert!(matches!(again, CaError::Exists(_)), "{again}");
        let (loaded, created) = CertificateAuthority::load_or_init(&ca_dir).unwrap();
        assert!(!created);
        assert_eq!(loaded.fingerprint(), ca.fingerprint());
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::init(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let error = CertificateAuthority::load(dir.path()).unwrap_err();
        assert!(
            matches!(error, CaError::KeyReadable { mode: 0o644, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
    }

    #[test]
    fn a_certificate_of_another_key_is_refused() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        CertificateAuthority::init(one.path()).unwrap();
        CertificateAuthority::init(two.path()).unwrap();
        fs::copy(two.path().join(CERT_FILE), one.path().join(CERT_FILE)).unwrap();
        let error = CertificateAuthority::load(one.path()).unwrap_err();
        assert!(error.to_string().contains("does not belong"), "{error}");
        let missing = CertificateAuthority::load(&one.path().join("none")).unwrap_err();
        assert!(matches!(missing, CaError::Missing(_)), "{missing}");
    }

    #[test]
    fn a_certificate_file_holding_any_private_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path()).unwrap();
        let cert = fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
        let key = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        for kind in ["", "RSA ", "EC ", "ENCRYPTED ", "OPENSSH "] {
            let block = key.replace("BEGIN PRIVATE", &format!("BEGIN {kind}PRIVATE"));
            for combined in [format!("{cert}{block}"), format!("{block}\r\n{cert}")] {
                fs::write(dir.path().join(CERT_FILE), &combined).unwrap();
                let error = CertificateAuthority::load(dir.path()).unwrap_err();
                assert!(
                    matches!(error, CaError::KeyInCertificate { .. }),
                    "{kind}: {error}"
                );
                let message = error.to_string();
                assert!(message.contains(CERT_FILE), "{message}");
                assert!(message.contains(KEY_FILE), "{message}");
                assert!(!message.contains(&key[40..80]), "the key is quoted");
            }
        }
        // Comments, CRLF line ends and a second certificate around it: what is served is the first
        // certificate alone, encoded afresh.
        let noisy = format!("Porter CA\r\n{}\r\n{cert}", cert.replace('\n', "\r\n"));
        fs::write(dir.path().join(CERT_FILE), noisy).unwrap();
        let loaded = CertificateAuthority::load(dir.path()).unwrap();
        assert_eq!(loaded.cert_pem(), cert);
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert!(!holds_private_key(&cert));
    }
}
