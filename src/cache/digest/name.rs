//! Which URLs name the digest of their content: OCI registry blobs (`/v2/<name>/blobs/sha256:<hex>`)
//! and manifests by digest (`/v2/<name>/manifests/sha256:<hex>`, OCI distribution spec), Debian
//! `by-hash/SHA256/<hex>` files, and URLs an operator's `--digest-url` rule matches.
//!
//! Such a URL can only ever name those bytes (the client checks them against the digest too), so
//! its response is stored once under the digest and served for every URL that names it: the same
//! layer from two repositories or two registries is one object. Pure: a URL in, a name out.

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use sha2::{Digest as _, Sha256};

use crate::cache::key::Key;

/// A SHA-256 digest that a URL names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Parses 64 hex digits (either case).
    pub fn from_hex(hex_text: &str) -> Option<Sha256Digest> {
        if hex_text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut bytes).ok()?;
        Some(Sha256Digest(bytes))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(data).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, as registries spell it.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `sha256:<hex>`: the OCI spelling (Docker-Content-Digest, ETag).
    pub fn oci(&self) -> String {
        format!("sha256:{}", self.hex())
    }

    /// The name the object is stored under in the cache folder: a URL-like string of its own
    /// scheme, so no fetched URL can share its key.
    pub fn store_url(&self) -> String {
        format!("digest:sha256:{}", self.hex())
    }

    /// The store key of the object.
    pub fn key(&self) -> Key {
        Key::for_url(&self.store_url())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.hex()[..12])
    }
}

/// What kind of URL named the digest; its `as_str` is the access log's word for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/v2/<name>/blobs/sha256:<hex>`.
    OciBlob,
    /// `/v2/<name>/manifests/sha256:<hex>`: immutable, unlike a manifest by tag.
    OciManifest,
    /// `…/by-hash/SHA256/<hex>` (Debian and Ubuntu repositories).
    AptByHash,
    /// A `--digest-url` rule.
    Rule,
    /// The target of a redirect that a blob request was answered with (a signed storage URL).
    Redirect,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OciBlob => "oci-blob",
            Kind::OciManifest => "oci-manifest",
            Kind::AptByHash => "apt-by-hash",
            Kind::Rule => "digest-rule",
            Kind::Redirect => "redirect",
        }
    }
}

/// A URL's digest and what kind of URL named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    pub digest: Sha256Digest,
    pub kind: Kind,
}

/// One `--digest-url REGEX` rule: the regex matches the whole URL and has a capture named `sha256`
/// with the digest's 64 hex digits.
#[derive(Debug, Clone)]
pub struct DigestRule {
    pattern: Regex,
}

/// Why a `--digest-url` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestRuleError {
    BadRegex(String),
    NoCapture,
}

impl fmt::Display for DigestRuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestRuleError::BadRegex(e) => write!(f, "invalid regex: {e}"),
            DigestRuleError::NoCapture => f.write_str(
                "the regex needs a capture named sha256 for the digest, as (?P<sha256>[0-9a-f]{64})",
            ),
        }
    }
}

impl std::error::Error for DigestRuleError {}

impl FromStr for DigestRule {
    type Err = DigestRuleError;

    fn from_str(text: &str) -> Result<Self, DigestRuleError> {
        let pattern = Regex::new(text).map_err(|e| DigestRuleError::BadRegex(e.to_string()))?;
        if !pattern.capture_names().any(|n| n == Some("sha256")) {
            return Err(DigestRuleError::NoCapture);
        }
        Ok(DigestRule { pattern })
    }
}

impl DigestRule {
    fn digest(&self, url: &str) -> Option<Sha256Digest> {
        let captures = self.pattern.captures(url)?;
        Sha256Digest::from_hex(captures.name("sha256")?.as_str())
    }
}

/// The `--digest-url` rules in force, in order.
#[derive(Debug, Clone, Default)]
pub struct DigestRules(Vec<DigestRule>);

impl DigestRules {
    pub fn new(rules: Vec<DigestRule>) -> Self {
        DigestRules(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The digest `url` names, if it names one: the built-in shapes first, then the rules.
pub fn name(url: &str, rules: &DigestRules) -> Option<Named> {
    let path = path_of(url)?;
    builtin(path).or_else(|| {
        rules.0.iter().find_map(|rule| {
            rule.digest(url).map(|digest| Named {
                digest,
                kind: Kind::Rule,
            })
        })
    })
}

/// The path and query of an absolute URL.
fn path_of(url: &str) -> Option<&str> {
    // A `:` search and a compare: cheaper than a substring search for `://` on every request.
    let colon = url.find(':')?;
    let rest = url[colon + 1..].strip_prefix("//")?;
    let path = &rest[rest.find('/')?..];
    Some(path)
}

/// Whether `text` ends with 64 hex digits (a SHA-256 digest's spelling).
fn ends_in_sha256_hex(text: &str) -> bool {
    text.len() >= 64
        && text.as_bytes()[text.len() - 64..]
            .iter()
            .rev()
            .all(u8::is_ascii_hexdigit)
}

/// The built-in shapes. A URL with a query is none of them: it is not the plain URL the OCI spec
/// or apt's by-hash defines, so it is left to the URL cache.
fn builtin(path_and_query: &str) -> Option<Named> {
    // Each ends in the digest's 64 hex digits: the test that turns away nearly every URL (every
    // request asks) without searching it for the shapes' markers.
    if !ends_in_sha256_hex(path_and_query) || path_and_query.contains(['?', '#']) {
        return None;
    }
    let path = path_and_query;
    if let Some(repo_and_rest) = path.strip_prefix("/v2/") {
        for (marker, kind) in [
            ("/blobs/sha256:", Kind::OciBlob),
            ("/manifests/sha256:", Kind::OciManifest),
        ] {
            if let Some(at) = repo_and_rest.rfind(marker) {
                let repo = &repo_and_rest[..at];
                let hex_text = &repo_and_rest[at + marker.len()..];
                if valid_repository(repo) {
                    let digest = Sha256Digest::from_hex(hex_text)?;
                    return Some(Named { digest, kind });
                }
            }
        }
        return None;
    }
    let (_, hex_text) = path.rsplit_once("/by-hash/SHA256/")?;
    Some(Named {
        digest: Sha256Digest::from_hex(hex_text)?,
        kind: Kind::AptByHash,
    })
}

/// A repository name as the OCI distribution spec allows it: path components of lowercase
/// letters and digits, separated by `.`, `_`, `__` or `-`.
fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            !component.is_empty()
                && component
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && component.as_bytes()[0].is_ascii_alphanumeric()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn named(url: &str) -> Option<(Kind, String)> {
        name(url, &DigestRules::default()).map(|n| (n.kind, n.digest.hex()))
    }

    #[test]
    fn registry_blobs_and_manifests_by_digest_name_their_digest() {
        let blob = format!("https://ghcr.io/v2/org/team/app/blobs/sha256:{HEX}");
        assert_eq!(named(&blob), Some((Kind::OciBlob, HEX.into())));
        let manifest =
            format!("http://registry.test:5000/v2/library/debian/manifests/sha256:{HEX}");
        assert_eq!(named(&manifest), Some((Kind::OciManifest, HEX.into())));
        let upper = format!("http://r.test/v2/a/blobs/sha256:{}", HEX.to_uppercase());
        assert_eq!(named(&upper), Some((Kind::OciBlob, HEX.into())));
        let two = format!("http://r.test/v2/b/blobs/sha256:{HEX}");
        assert_eq!(
            name(&upper, &DigestRules::default()).unwrap().digest.key(),
            name(&two, &DigestRules::default()).unwrap().digest.key(),
            "one object for every URL naming the digest"
        );
    }

    #[test]
    fn tags_uploads_short_digests_and_bad_names_are_not_digest_urls() {
        for url in [
            "http://r.test/v2/a/manifests/latest".to_string(),
            format!("http://r.test/v2/a/blobs/sha256:{}", &HEX[1..]),
            format!("http://r.test/v2/a/blobs/sha256:{HEX}0"),
            format!("http://r.test/v2/a/blobs/sha512:{HEX}"),
            format!("http://r.test/v2/a/blobs/sha256:{HEX}?x=1"),
            format!("http://r.test/v2/A/blobs/sha256:{HEX}"),
            format!("http://r.test/v2//blobs/sha256:{HEX}"),
            format!("http://r.test/v2/a/blobs/uploads/sha256:{HEX}z"),
            format!("http://r.test/v3/a/blobs/sha256:{HEX}"),
            format!("http://r.test/v2/a/blobs/sha256:{}", "g".repeat(64)),
        ] {
            assert_eq!(named(&url), None, "{url}");
        }
    }

    #[test]
    fn apt_by_hash_files_name_their_digest() {
        let url =
            format!("http://deb.test/debian/dists/stable/main/binary-amd64/by-hash/SHA256/{HEX}");
        assert_eq!(named(&url), Some((Kind::AptByHash, HEX.into())));
        assert_eq!(named("http://deb.test/dists/by-hash/MD5Sum/abc"), None);
    }

    #[test]
    fn operator_rules_need_a_sha256_capture() {
        let rule: DigestRule = r"^https?://files\.test/cas/(?P<sha256>[0-9a-f]{64})\.bin$"
            .parse()
            .unwrap();
        let rules = DigestRules::new(vec![rule]);
        let url = format!("http://files.test/cas/{HEX}.bin");
        let got = name(&url, &rules).unwrap();
        assert_eq!((got.kind, got.digest.hex()), (Kind::Rule, HEX.to_string()));
        assert!(name("http://files.test/cas/x.bin", &rules).is_none());
        assert_eq!(
            "^/(.*)$".parse::<DigestRule>().unwrap_err(),
            DigestRuleError::NoCapture
        );
        assert!(matches!(
            "(?P<sha256>".parse::<DigestRule>(),
            Err(DigestRuleError::BadRegex(_))
        ));
    }

    #[test]
    fn a_digest_is_spelled_as_registries_spell_it() {
        let d = Sha256Digest::of(b"test");
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.oci(), format!("sha256:{HEX}"));
        assert_ne!(d.key(), Key::for_url(&d.oci()));
    }
}
