//! Basic proxy authentication (RFC 9110 §11.7.1, RFC 7617): `--auth-user USER:PASSWORD` or
//! `--auth-file`. Credentials are compared in constant time, never logged, and never forwarded
//! (Proxy-Authorization is hop-by-hop and stripped before forwarding).
//!
//! An auth file holds `user:HASH` lines with bcrypt hashes (`$2y$`, `$2b$`, `$2a$`), as
//! `htpasswd -B` and `porter passwd` write them; a plain `user:password` line still works, with a
//! warning at start (a file of passwords is one copy away from a leak). Other htpasswd formats
//! (`$apr1$` MD5, `{SHA}`, crypt) are refused: read as plain text they would be passwords anyone
//! who reads the file could type.
//!
//! bcrypt is slow on purpose: at cost 10 a check takes ~50-100 ms of CPU on a quiet machine
//! (about 0.2 s measured on a loaded 2-core VM), on the worker that serves the request. A keep-alive client sends the same `Proxy-Authorization` on every request,
//! so each credential verified once is remembered for the life of the configuration, keyed by the
//! SHA-256 of the Basic token (never the token or the password itself), in a map of at most
//! [`VERIFIED_CAP`] entries (emptied when full). Only successes are remembered: a wrong password
//! pays bcrypt every time, as it should. A reload builds new credentials with an empty map, so a
//! password removed from the file stops working at the reload.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::http::Headers;
use crate::runtime::Mutex;

/// Verified bcrypt credentials remembered at most; past it, the map starts over.
pub const VERIFIED_CAP: usize = 4096;

/// The accepted credentials: plain ones as the base64 `user:password` tokens a client sends after
/// `Basic`, hashed ones as (user, bcrypt hash).
#[derive(Clone, Default)]
pub struct Credentials {
    tokens: Vec<Vec<u8>>,
    hashed: Vec<(String, String)>,
    /// Where plain-text passwords were read from (`FILE:LINE (user)`), for the start-up warning.
    plain_in_files: Vec<String>,
    /// SHA-256 of a Basic token that bcrypt verified -> its user.
    verified: Arc<Mutex<HashMap<[u8; 32], String>>>,
}

/// Equal when they admit the same users the same way; what was verified so far does not count.
impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.tokens == other.tokens && self.hashed == other.hashed
    }
}

impl Eq for Credentials {}

/// Never print the secrets, even in a debug dump of the configuration.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials({} users)",
            self.tokens.len() + self.hashed.len()
        )
    }
}

/// A credential that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

impl AuthError {
    /// `flag` names users, and no --auth-user or --auth-file says who anyone is.
    pub fn needs_authentication(flag: &str) -> AuthError {
        AuthError(format!(
            "{flag} names users, so it needs proxy authentication (--auth-user or --auth-file)"
        ))
    }
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.hashed.is_empty()
    }

    /// The auth-file lines that hold a plain-text password (`FILE:LINE (user)`), to warn about.
    pub fn plain_text_lines(&self) -> &[String] {
        &self.plain_in_files
    }

    /// Adds one `user:password` pair.
    pub fn add(&mut self, pair: &str) -> Result<(), AuthError> {
        match pair.split_once(':') {
            Some((user, password))
                if !user.is_empty() && !password.is_empty() && !user.contains(':') =>
            {
                self.tokens.push(STANDARD.encode(pair).into_bytes());
                Ok(())
            }
            _ => Err(AuthError(
                "an auth user must be USER:PASSWORD, both non-empty".into(),
            )),
        }
    }

    /// Adds every `user:HASH` (bcrypt) or `user:password` line of a file (blank lines and `#`
    /// comments skipped).
    pub fn add_file(&mut self, path: &Path) -> Result<(), AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError(format!("cannot read auth file {}: {e}", path.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: AuthError| AuthError(format!("{}:{}: {e}", path.display(), n + 1));
            let (user, secret) = line.split_once(':').unwrap_or((line, ""));
            match secret_kind(secret) {
                Secret::Bcrypt => {
                    if user.is_empty() {
                        return Err(at(AuthError("the user name is empty".into())));
                    }
                    secret
                        .parse::<bcrypt::HashParts>()
                        .map_err(|e| at(AuthError(format!("not a valid bcrypt hash ({e})"))))?;
                    self.hashed.push((user.to_string(), secret.to_string()));
                }
                Secret::Unsupported(kind) => {
                    return Err(at(AuthError(format!(
                        "user {user:?} has a {kind} hash; only bcrypt is supported: \
                         `htpasswd -B` or `porter passwd --file FILE USER` writes one"
                    ))));
                }
                Secret::Plain => {
                    self.add(line).map_err(at)?;
                    self.plain_in_files
                        .push(format!("{}:{} ({user})", path.display(), n + 1));
                }
            }
        }
        Ok(())
    }

    /// Whether the request carries one of the accepted credentials, in any case of the scheme name
    /// ([`basic_token`]); the token itself is compared exactly.
    pub fn admits(&self, headers: &Headers) -> bool {
        self.admitted_user(headers, "proxy-authorization").is_some()
    }

    /// Whether `given` is one of the tokens. Every token is checked, so the time taken does not
    /// tell which one (or whether any) matched.
    fn accepts(&self, given: &[u8]) -> bool {
        self.tokens
            .iter()
            .fold(false, |found, token| constant_time_eq(token, given) | found)
    }
}

impl Credentials {
    /// The user name of the accepted credentials that header `field` carries (`proxy-authorization`
    /// for proxy requests, `authorization` for the proxy's own pages), or `None` if it carries none.
    /// The name is for the access log; the password is never returned.
    pub fn admitted_user(&self, headers: &Headers, field: &str) -> Option<String> {
        let given = basic_token(headers.get_bytes(field)?)?;
        if self.accepts(given) {
            let decoded = STANDARD.decode(given).ok()?;
            let pair = String::from_utf8(decoded).ok()?;
            return pair.split_once(':').map(|(user, _)| user.to_string());
        }
        self.verify_hashed(given)
    }

    /// The user whose bcrypt hash the token's password matches: from the map of tokens verified
    /// before, or by bcrypt (then remembered).
    fn verify_hashed(&self, given: &[u8]) -> Option<String> {
        if self.hashed.is_empty() {
            return None;
        }
        let key: [u8; 32] = Sha256::digest(given).into();
        if let Some(user) = self.lock_verified().get(&key) {
            return Some(user.clone());
        }
        let decoded = STANDARD.decode(given).ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        let (user, password) = pair.split_once(':')?;
        let Some((_, hash)) = self.hashed.iter().find(|(name, _)| name == user) else {
            // An unknown user costs a bcrypt check as a known user with a wrong password does, so
            // the time of the 407 does not tell which user names exist. The dummy hash has the cost
            // of the file's first hash, the cost the known users' checks most likely pay.
            let _ = bcrypt::verify(password, dummy_hash(&self.hashed[0].1));
            return None;
        };
        // Outside the lock: bcrypt takes tens of milliseconds.
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return None;
        }
        let mut verified = self.lock_verified();
        if verified.len() >= VERIFIED_CAP {
            verified.clear();
        }
        verified.insert(key, user.to_string());
        Some(user.to_string())
    }

    fn lock_verified(&self) -> crate::runtime::MutexGuard<'_, HashMap<[u8; 32], String>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bcrypt hash (of a password no one sends) with the cost of `like`, made once per cost: what an
/// unknown user's password is checked against, to take the time a known user's check takes.
fn dummy_hash(like: &str) -> &'static str {
    static DUMMIES: [OnceLock<String>; 32] = [const { OnceLock::new() }; 32];
    // `$2y$10$...`: the cost is the two digits after the second `$`.
    let cost = like
        .get(4..6)
        .and_then(|c| c.parse::<u32>().ok())
        .filter(|c| (4..=31).contains(c))
        .unwrap_or(10);
    DUMMIES[cost as usize].get_or_init(|| {
        bcrypt::hash("porter-dummy-password", cost).unwrap_or_else(|_| String::new())
    })
}

/// What the part after `user:` of an auth-file line is.
#[derive(Debug, PartialEq, Eq)]
enum Secret {
    /// `$2y$`, `$2b$`, `$2a$`, `$2x$`: bcrypt, as `htpasswd -B` writes.
    Bcrypt,
    /// Another htpasswd hash format, named for the error.
    Unsupported(&'static str),
    /// A password in plain text.
    Plain,
}

fn secret_kind(secret: &str) -> Secret {
    if ["$2y$", "$2b$", "$2a$", "$2x$"]
        .iter()
        .any(|p| secret.starts_with(p))
    {
        Secret::Bcrypt
    } else if secret.starts_with("$apr1$") {
        Secret::Unsupported("MD5 ($apr1$, htpasswd's default)")
    } else if secret.starts_with("{SHA}") {
        Secret::Unsupported("SHA-1 ({SHA}, htpasswd -s)")
    } else if secret.starts_with("$5$") || secret.starts_with("$6$") || secret.starts_with("$1$") {
        Secret::Unsupported("crypt(3)")
    } else {
        Secret::Plain
    }
}

/// The token of a `Basic <token>` credentials value. The scheme name is case-insensitive
/// (`basic`, `BASIC`; RFC 9110 §11.1) and may be followed by several spaces (`1*SP`, §11.4).
fn basic_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let split = value.iter().position(|b| *b == b' ')?;
    let (scheme, token) = value.split_at(split);
    scheme
        .eq_ignore_ascii_case(b"basic")
        .then(|| token.trim_ascii_start())
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_configured_users() {
        let mut creds = Credentials::default();
        creds.add("alice:s3cret").unwrap();
        creds.add("bob:pa:ss").unwrap();
        let with = |v: &str| -> Headers { [("Proxy-Authorization", v)].into_iter().collect() };
        assert!(creds.admits(&with("Basic YWxpY2U6czNjcmV0")));
        assert!(creds.admits(&with(&format!("Basic {}", STANDARD.encode("bob:pa:ss")))));
        assert!(!creds.admits(&with("Basic YWxpY2U6d3Jvbmc=")));
        assert!(!creds.admits(&with("Bearer YWxpY2U6czNjcmV0")));
        assert!(!creds.admits(&with("YWxpY2U6czNjcmV0")));
        assert!(!creds.admits(&with("Basic")));
        assert!(!creds.admits(&Headers::new()));
        assert!(creds.add("nocolon").is_err());
        assert!(creds.add(":empty-user").is_err());
        assert_eq!(format!("{creds:?}"), "Credentials(2 users)");
        let origin: Headers = [("Authorization", "Basic YWxpY2U6czNjcmV0")]
            .into_iter()
            .collect();
        assert_eq!(
            creds.admitted_user(&origin, "authorization").as_deref(),
            Some("alice")
        );
        assert_eq!(creds.admitted_user(&origin, "proxy-authorization"), None);
    }

    fn auth_file(text: &str) -> (tempfile::TempDir, Result<Credentials, AuthError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, text).unwrap();
        let mut creds = Credentials::default();
        let result = creds.add_file(&path).map(|()| creds);
        (dir, result)
    }

    fn basic(pair: &str) -> Headers {
        let value = format!("Basic {}", STANDARD.encode(pair));
        [("Proxy-Authorization", value.as_str())]
            .into_iter()
            .collect()
    }

    #[test]
    fn bcrypt_lines_admit_their_password_and_remember_it() {
        // Cost 4 keeps the test fast; htpasswd -B writes $2y$, the bcrypt crate $2b$.
        let hash = bcrypt::hash("s3cret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let (_dir, creds) = auth_file(&format!("# users\nalice:{hash}\nbob:plain\n"));
        let creds = creds.unwrap();
        assert_eq!(format!("{creds:?}"), "Credentials(2 users)");
        assert_eq!(creds.plain_text_lines().len(), 1);
        assert!(creds.plain_text_lines()[0].ends_with(":3 (bob)"));
        assert!(!creds.admits(&basic("alice:wrong")));
        assert!(
            creds.lock_verified().is_empty(),
            "a failure is not remembered"
        );
        assert_eq!(
            creds
                .admitted_user(&basic("alice:s3cret"), "proxy-authorization")
                .as_deref(),
            Some("alice")
        );
        assert_eq!(creds.lock_verified().len(), 1);
        assert!(creds.admits(&basic("alice:s3cret")));
        assert!(creds.admits(&basic("bob:plain")));
        assert!(!creds.admits(&basic("bob:s3cret")));
        // The map is keyed by a digest: no password or token in it.
        let remembered: Vec<String> = creds.lock_verified().values().cloned().collect();
        assert_eq!(remembered, ["alice"]);
    }

    #[test]
    fn regression_an_unknown_user_is_refused_after_a_dummy_bcrypt_check() {
        // The unknown user pays a bcrypt check against a dummy hash (so timing does not tell which
        // users exist); this pins the behaviour around it: refused, nothing remembered, and the
        // dummy has the cost of the file's hash.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let (_dir, creds) = auth_file(&format!("alice:{hash}\n"));
        let creds = creds.unwrap();
        assert!(!creds.admits(&basic("mallory:s3cret")));
        assert!(!creds.admits(&basic("mallory:porter-dummy-password")));
        assert!(!creds.admits(&basic(":s3cret")));
        assert!(creds.lock_verified().is_empty());
        assert!(
            dummy_hash(&hash).starts_with("$2b$04$"),
            "{}",
            dummy_hash(&hash)
        );
        assert!(creds.admits(&basic("alice:s3cret")));
    }

    #[test]
    fn other_htpasswd_hashes_are_refused_not_taken_as_passwords() {
        for line in [
            "alice:$apr1$abcdefgh$0123456789abcdefghijkl",
            "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "alice:$2y$10$tooshort",
        ] {
            let (_dir, result) = auth_file(line);
            let error = result.expect_err(line).to_string();
            assert!(error.contains(":1: "), "{error}");
            assert!(
                error.contains("only bcrypt") || error.contains("not a valid bcrypt hash"),
                "{error}"
            );
        }
    }

    #[test]
    fn regression_auth_scheme_is_case_insensitive() {
        let mut creds = Credentials::default();
        creds.add("alice:s3cret").unwrap();
        let with = |v: &str| -> Headers { [("Proxy-Authorization", v)].into_iter().collect() };
        for scheme in ["basic", "BASIC", "bAsIc"] {
            assert!(
                creds.admits(&with(&format!("{scheme} YWxpY2U6czNjcmV0"))),
                "{scheme}"
            );
        }
        assert!(creds.admits(&with("Basic   YWxpY2U6czNjcmV0")));
        assert!(
            !creds.admits(&with("basic ywxpy2u6czNjcmV0")),
            "the token stays exact"
        );
        assert!(!creds.admits(&with("basicYWxpY2U6czNjcmV0")));
    }
}
