//! Freshness the origin did not state: `--refresh REGEX=DURATION` rules and the `packages` preset.
//!
//! Many origins of files that never change (package mirrors above all) send no Cache-Control, no
//! Expires and no validator, so RFC 9111 alone stores nothing of theirs. A rule names URLs whose
//! responses may be taken as fresh for a while anyway, like Squid's `refresh_pattern`, but simpler:
//! the first rule whose regex matches the URL decides, a duration of `0` means "no rule for these"
//! (how the preset keeps index files out), and the rule only fills a gap. The response's own
//! `max-age`, `s-maxage` or `Expires` still win, and `no-store`, `private` and `no-cache` are obeyed.
//!
//! Rules are matched when an entry is looked up, not when it is stored, so changing the flags changes
//! what existing entries are worth without rewriting them. [`applies`] is the policy half: pure, a
//! head and a rule's duration in, a lifetime out.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;

use super::directives::CacheControl;
use crate::http::ResponseHead;
use crate::units::parse_duration;

/// Statuses a rule may make fresh: successes only, so a missing package (404) is asked for again.
const RULE_STATUSES: [u16; 3] = [200, 203, 206];

/// How long the preset keeps content that is immutable by construction.
const PACKAGE_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// One `REGEX=DURATION` rule.
#[derive(Debug, Clone)]
pub struct RefreshRule {
    pattern: Regex,
    fresh_for: Duration,
}

/// Why a `--refresh` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    MissingDuration(String),
    BadDuration(String),
    BadRegex(String),
    UnknownPreset(String),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::MissingDuration(rule) => {
                write!(f, "refresh rule {rule:?} is not REGEX=DURATION")
            }
            RuleError::BadDuration(why) => write!(f, "refresh rule duration: {why}"),
            RuleError::BadRegex(why) => write!(f, "refresh rule regex: {why}"),
            RuleError::UnknownPreset(name) => {
                write!(f, "unknown refresh preset {name:?} (known: packages)")
            }
        }
    }
}

impl std::error::Error for RuleError {}

impl RefreshRule {
    pub fn new(pattern: &str, fresh_for: Duration) -> Result<Self, RuleError> {
        let pattern = Regex::new(pattern).map_err(|e| RuleError::BadRegex(e.to_string()))?;
        Ok(RefreshRule { pattern, fresh_for })
    }

    pub fn pattern(&self) -> &str {
        self.pattern.as_str()
    }

    pub fn fresh_for(&self) -> Duration {
        self.fresh_for
    }
}

impl FromStr for RefreshRule {
    type Err = RuleError;

    /// `REGEX=DURATION`, split at the last `=` (a regex may contain one; a duration never does).
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let (pattern, duration) = text
            .rsplit_once('=')
            .filter(|(p, d)| !p.is_empty() && !d.trim().is_empty())
            .ok_or_else(|| RuleError::MissingDuration(text.to_string()))?;
        let fresh_for =
            parse_duration(duration).map_err(|e| RuleError::BadDuration(e.to_string()))?;
        RefreshRule::new(pattern, fresh_for)
    }
}

/// The rules in force, in order.
#[derive(Debug, Clone, Default)]
pub struct RefreshRules(Vec<RefreshRule>);

impl RefreshRules {
    pub fn new(rules: Vec<RefreshRule>) -> Self {
        RefreshRules(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn rules(&self) -> &[RefreshRule] {
        &self.0
    }

    /// The duration of the first rule matching `url`; `None` when no rule matches or the first that
    /// does says `0`.
    pub fn lifetime_for(&self, url: &str) -> Option<Duration> {
        self.0
            .iter()
            .find(|rule| rule.pattern.is_match(url))
            .map(|rule| rule.fresh_for)
            .filter(|d| !d.is_zero())
    }
}

/// A named set of rules (`--refresh-preset NAME`).
#[derive(Debug, Clone)]
pub struct Preset(pub Vec<RefreshRule>);

impl FromStr for Preset {
    type Err = RuleError;

    fn from_str(name: &str) -> Result<Self, RuleError> {
        preset(name).map(Preset)
    }
}

/// The rules of a named preset, to be placed after the `--refresh` rules (which therefore win).
pub fn preset(name: &str) -> Result<Vec<RefreshRule>, RuleError> {
    let never = Duration::ZERO;
    let rules: &[(&str, Duration)] = match name {
        "packages" => &[
            // Content-addressed: the name is the hash of the bytes (apt's Acquire-By-Hash).
            (r"/by-hash/[A-Za-z0-9]+/[0-9a-fA-F]+$", PACKAGE_LIFETIME),
            // Index files that change in place: apt's dists/, PyPI's simple/ pages, rpm repomd,
            // the crates.io sparse index. The npm documents have no extension and match no rule.
            (
                r"/(InRelease|Release|Release\.gpg|Packages|Sources|Contents-[^/]*|Translation-[^/]*|Index|Components-[^/]*|icons-[^/]*)(\.(gz|bz2|xz|lzma|lz4|zst))?$",
                never,
            ),
            (r"/simple(/|$)", never),
            (r"/repodata/repomd\.xml", never),
            (r"^https?://index\.crates\.io/", never),
            // Debian and Ubuntu pools: a file there is never replaced under the same name.
            (
                r"/pool/.+\.(deb|udeb|ddeb|dsc|diff\.gz|tar\.[a-z0-9]+|buildinfo)$",
                PACKAGE_LIFETIME,
            ),
            (
                r"\.(deb|udeb|ddeb|rpm|drpm|whl|crate|gem|nupkg|apk)$",
                PACKAGE_LIFETIME,
            ),
            // npm tarballs (`/pkg/-/pkg-1.2.3.tgz`), PyPI files, crates.io downloads.
            (r"/-/[^/]+\.tgz$", PACKAGE_LIFETIME),
            (
                r"/packages/.+\.(tar\.gz|tar\.bz2|zip|egg)$",
                PACKAGE_LIFETIME,
            ),
            (r"/api/v1/crates/[^/]+/[^/]+/download$", PACKAGE_LIFETIME),
        ],
        other => return Err(RuleError::UnknownPreset(other.to_string())),
    };
    rules
        .iter()
        .map(|(pattern, fresh_for)| RefreshRule::new(pattern, *fresh_for))
        .collect()
}

/// The lifetime a rule of `fresh_for` gives this response: only when the response states no
/// freshness of its own (max-age, s-maxage, Expires), allows storing and reuse without asking
/// (no `no-store`, `private` or `no-cache`), and is a success.
pub fn applies(
    resp: &ResponseHead,
    cc: &CacheControl,
    fresh_for: Option<Duration>,
) -> Option<Duration> {
    let fresh_for = fresh_for.filter(|d| !d.is_zero())?;
    let explicit =
        cc.max_age.is_some() || cc.s_maxage.is_some() || resp.headers.contains("expires");
    let refused = cc.no_store || cc.private || cc.no_cache;
    (!explicit && !refused && RULE_STATUSES.contains(&resp.status)).then_some(fresh_for)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::resp;

    fn packages() -> RefreshRules {
        RefreshRules::new(preset("packages").unwrap())
    }

    #[test]
    fn a_rule_is_regex_equals_duration_split_at_the_last_equals() {
        let rule: RefreshRule = r"\?v=[0-9]+$=2h".parse().unwrap();
        assert_eq!(rule.pattern(), r"\?v=[0-9]+$");
        assert_eq!(rule.fresh_for(), Duration::from_secs(7200));
        for bad in ["nothing", "=1h", "x=", "x=soon", "(=1h"] {
            assert!(bad.parse::<RefreshRule>().is_err(), "{bad}");
        }
        assert!(matches!(
            "(=1h".parse::<RefreshRule>(),
            Err(RuleError::BadRegex(_))
        ));
        assert!(preset("everything").is_err());
    }

    #[test]
    fn the_first_matching_rule_wins_and_zero_means_no_rule() {
        let rules = RefreshRules::new(vec![
            "/private/=0".parse().unwrap(),
            r"\.iso$=1d".parse().unwrap(),
            r"\.(iso|img)$=1h".parse().unwrap(),
        ]);
        assert_eq!(
            rules.lifetime_for("http://h/a.iso"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            rules.lifetime_for("http://h/a.img"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(rules.lifetime_for("http://h/private/a.iso"), None);
        assert_eq!(rules.lifetime_for("http://h/a.txt"), None);
    }

    #[test]
    fn the_packages_preset_keeps_packages_and_never_index_files() {
        let rules = packages();
        for url in [
            "http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
            "http://archive.ubuntu.com/ubuntu/pool/main/h/hello/hello_2.10.orig.tar.gz",
            "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0a1b2c3d4e5f",
            "http://mirror/fedora/Packages/h/hello-2.10-1.fc39.x86_64.rpm",
            "https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0-py3-none-any.whl",
            "https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0.tar.gz",
            "https://static.crates.io/crates/serde/serde-1.0.0.crate",
            "https://crates.io/api/v1/crates/serde/1.0.0/download",
            "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
        ] {
            assert_eq!(rules.lifetime_for(url), Some(PACKAGE_LIFETIME), "{url}");
        }
        for url in [
            "http://deb.debian.org/debian/dists/bookworm/InRelease",
            "http://deb.debian.org/debian/dists/bookworm/Release",
            "http://deb.debian.org/debian/dists/bookworm/Release.gpg",
            "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz",
            "http://deb.debian.org/debian/dists/bookworm/main/source/Sources.gz",
            "http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.bz2",
            "http://mirror/fedora/repodata/repomd.xml",
            "https://pypi.org/simple/requests/",
            "https://pypi.org/simple/",
            "https://registry.npmjs.org/left-pad",
            "https://index.crates.io/se/rd/serde",
            "https://index.crates.io/config.json",
            "http://example.com/index.html",
        ] {
            assert_eq!(rules.lifetime_for(url), None, "{url}");
        }
    }

    #[test]
    fn a_rule_only_fills_a_gap_the_origin_left() {
        let day = Some(Duration::from_secs(86_400));
        let apply = |status, fields: &[(&str, &str)]| {
            let r = resp(status, fields);
            applies(&r, &CacheControl::parse(&r.headers), day)
        };
        assert_eq!(apply(200, &[("Content-Type", "application/x-deb")]), day);
        assert_eq!(apply(206, &[]), day);
        assert_eq!(
            apply(200, &[("Last-Modified", "Tue, 14 Nov 2023 22:00:00 GMT")]),
            day
        );
        for cc in ["max-age=5", "s-maxage=5", "no-store", "private", "no-cache"] {
            assert_eq!(apply(200, &[("Cache-Control", cc)]), None, "{cc}");
        }
        assert_eq!(
            apply(200, &[("Expires", "0")]),
            None,
            "an invalid Expires is explicit too"
        );
        assert_eq!(apply(404, &[]), None);
        assert_eq!(apply(301, &[]), None);
        let r = resp(200, &[]);
        assert_eq!(applies(&r, &CacheControl::parse(&r.headers), None), None);
        assert_eq!(
            applies(&r, &CacheControl::parse(&r.headers), Some(Duration::ZERO)),
            None
        );
    }

    mod with_the_policy {
        use super::super::super::policy::{
            Decision, NoStore, StoredFreshness, decide, storable, storable_with_rule,
        };
        use crate::cache::testutil::{at, date, req, resp};
        use crate::http::RequestHead;
        use std::time::Duration;

        fn get() -> RequestHead {
            req("GET", &[])
        }

        #[test]
        fn a_refresh_rule_stores_and_keeps_fresh_what_states_no_freshness() {
            let hour = Some(Duration::from_secs(3600));
            let bare = resp(
                200,
                &[("Content-Type", "application/x-deb"), ("Date", &date(0))],
            );
            assert_eq!(storable(&get(), &bare), Err(NoStore::NoFreshness));
            assert_eq!(storable_with_rule(&get(), &bare, hour), Ok(()));
            let f = StoredFreshness::with_rule(&bare, at(0), at(0), hour);
            assert!(f.by_rule());
            assert_eq!(decide(&get(), &f, at(3599)), Decision::Fresh);
            assert_eq!(decide(&get(), &f, at(3600)), Decision::Revalidate);
            // A reload still asks the origin first.
            let reload = req("GET", &[("Cache-Control", "no-cache")]);
            assert_eq!(decide(&reload, &f, at(1)), Decision::Revalidate);
        }

        #[test]
        fn explicit_freshness_and_refusals_win_over_a_refresh_rule() {
            let hour = Some(Duration::from_secs(3600));
            let short = resp(200, &[("Cache-Control", "max-age=10"), ("Date", &date(0))]);
            let f = StoredFreshness::with_rule(&short, at(0), at(0), hour);
            assert!(!f.by_rule());
            assert_eq!(f.lifetime(), Duration::from_secs(10));
            for cc in ["no-store", "private"] {
                let r = resp(200, &[("Cache-Control", cc)]);
                assert!(storable_with_rule(&get(), &r, hour).is_err(), "{cc}");
            }
            let lm = resp(200, &[("Last-Modified", &date(-1000)), ("Date", &date(0))]);
            let f = StoredFreshness::with_rule(&lm, at(0), at(0), hour);
            assert_eq!(
                f.lifetime(),
                Duration::from_secs(3600),
                "a rule beats the heuristic"
            );
        }
    }
}
