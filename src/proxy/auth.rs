//! Basic proxy authentication (RFC 9110 §11.7.1, RFC 7617): `--auth-user USER:PASSWORD` or
//! `--auth-file`. Credentials are compared in constant time, never logged, and never forwarded
//! (Proxy-Authorization is hop-by-hop and stripped before forwarding).

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::http::Headers;

/// The accepted credentials, kept as the base64 `user:password` tokens a client sends after `Basic`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    tokens: Vec<Vec<u8>>,
}

/// Never print the secrets, even in a debug dump of the configuration.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} users)", self.tokens.len())
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
        self.tokens.is_empty()
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

    /// Adds every `user:password` line of a file (blank lines and `#` comments skipped).
    pub fn add_file(&mut self, path: &Path) -> Result<(), AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError(format!("cannot read auth file {}: {e}", path.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add(line)
                .map_err(|e| AuthError(format!("{}:{}: {e}", path.display(), n + 1)))?;
        }
        Ok(())
    }

    /// Whether the request carries one of the accepted credentials, in any case of the scheme name
    /// ([`basic_token`]); the token itself is compared exactly.
    pub fn admits(&self, headers: &Headers) -> bool {
        headers
            .get_bytes("proxy-authorization")
            .and_then(basic_token)
            .is_some_and(|given| self.accepts(given))
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
        if !self.accepts(given) {
            return None;
        }
        let decoded = STANDARD.decode(given).ok()?;
        let pair = String::from_utf8(decoded).ok()?;
        pair.split_once(':').map(|(user, _)| user.to_string())
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
