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
use super::ecosystem::{self, Kind};
use crate::http::ResponseHead;
use crate::units::parse_duration;

/// Statuses a rule may make fresh: successes only, so a missing package (404) is asked for again.
const RULE_STATUSES: [u16; 3] = [200, 203, 206];

/// How long the preset keeps content that is immutable by construction.
pub const PACKAGE_LIFETIME: Duration = Duration::from_secs(90 * 86_400);

/// The access-log detail of a hit or store a `--refresh` rule of the operator's made fresh.
pub const RULE_DETAIL: &str = "refresh-rule";
/// The access-log detail of a hit served although the client asked to reload (`ignore-reload`).
pub const RELOAD_DETAIL: &str = "ignore-reload";

/// One `REGEX=DURATION[,ignore-reload]` rule.
#[derive(Debug, Clone)]
pub struct RefreshRule {
    pattern: Regex,
    fresh_for: Duration,
    /// A fresh entry is served even to a client that asks to reload (Squid's `ignore-reload`).
    ignore_reload: bool,
    detail: &'static str,
    reload_detail: &'static str,
}

/// What the first rule matching a URL says, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMatch {
    /// Zero for a rule that keeps its URLs out of the later ones (an index file).
    pub fresh_for: Duration,
    pub ignore_reload: bool,
    /// `refresh-rule`, or `rule:<name>` for a preset's rule.
    pub detail: &'static str,
    /// `ignore-reload`, or `ignore-reload:<name>`.
    pub reload_detail: &'static str,
}

impl RuleMatch {
    /// The lifetime the rule gives, `None` for a zero rule.
    pub fn lifetime(&self) -> Option<Duration> {
        Some(self.fresh_for).filter(|d| !d.is_zero())
    }
}

/// Why a `--refresh` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    MissingDuration(String),
    BadDuration(String),
    BadRegex(String),
    UnknownPreset(String),
    UnknownOption(String),
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
            RuleError::UnknownOption(option) => {
                write!(
                    f,
                    "unknown refresh rule option {option:?} (known: ignore-reload)"
                )
            }
        }
    }
}

impl std::error::Error for RuleError {}

impl RefreshRule {
    pub fn new(pattern: &str, fresh_for: Duration) -> Result<Self, RuleError> {
        let pattern = Regex::new(pattern).map_err(|e| RuleError::BadRegex(e.to_string()))?;
        Ok(RefreshRule {
            pattern,
            fresh_for,
            ignore_reload: false,
            detail: RULE_DETAIL,
            reload_detail: RELOAD_DETAIL,
        })
    }

    /// Whether a fresh entry is served to a client asking to reload.
    pub fn ignores_reload(&self) -> bool {
        self.ignore_reload
    }

    fn matched(&self) -> RuleMatch {
        RuleMatch {
            fresh_for: self.fresh_for,
            ignore_reload: self.ignore_reload,
            detail: self.detail,
            reload_detail: self.reload_detail,
        }
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

    /// `REGEX=DURATION[,ignore-reload]`, split at the last `=` (a regex may contain one; a
    /// duration and the options never do).
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let (pattern, rest) = text
            .rsplit_once('=')
            .filter(|(p, d)| !p.is_empty() && !d.trim().is_empty())
            .ok_or_else(|| RuleError::MissingDuration(text.to_string()))?;
        let mut parts = rest.split(',');
        let duration = parts.next().unwrap_or_default();
        let fresh_for =
            parse_duration(duration).map_err(|e| RuleError::BadDuration(e.to_string()))?;
        let mut rule = RefreshRule::new(pattern, fresh_for)?;
        for option in parts {
            match option.trim() {
                "ignore-reload" => rule.ignore_reload = true,
                other => return Err(RuleError::UnknownOption(other.to_string())),
            }
        }
        Ok(rule)
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
        self.matching(url).and_then(|m| m.lifetime())
    }

    /// What the first rule matching `url` says, a zero rule included.
    pub fn matching(&self, url: &str) -> Option<RuleMatch> {
        self.0
            .iter()
            .find(|rule| rule.pattern.is_match(url))
            .map(RefreshRule::matched)
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
/// `packages` is [`ecosystem::SHAPES`]: artifacts fresh for [`PACKAGE_LIFETIME`] with
/// `ignore-reload`, index files with no rule (duration `0`), each rule named for the access log.
pub fn preset(name: &str) -> Result<Vec<RefreshRule>, RuleError> {
    match name {
        "packages" => ecosystem::SHAPES
            .iter()
            .map(|shape| {
                let (fresh_for, ignore_reload) = match shape.kind {
                    Kind::Artifact => (PACKAGE_LIFETIME, true),
                    Kind::Index => (Duration::ZERO, false),
                };
                let mut rule = RefreshRule::new(shape.pattern, fresh_for)?;
                rule.ignore_reload = ignore_reload;
                rule.detail = shape.rule_detail;
                rule.reload_detail = shape.reload_detail;
                Ok(rule)
            })
            .collect(),
        other => Err(RuleError::UnknownPreset(other.to_string())),
    }
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

/// Whether the client asks to reload: `no-cache` (or `Pragma: no-cache`) or `max-age=0`
/// (RFC 9111 §5.2.1.4, §5.2.1.1), which is what browsers, pip and apt send for a refresh.
pub fn asks_reload(want: &CacheControl) -> bool {
    want.no_cache || want.max_age == Some(0)
}

/// Drops a reload from the request's directives, for a URL whose rule says `ignore-reload`: the
/// stored entry is then judged by its own freshness, as if the client had not asked.
pub fn without_reload(want: &mut CacheControl) {
    want.no_cache = false;
    if want.max_age == Some(0) {
        want.max_age = None;
    }
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
    fn ignore_reload_is_an_option_after_the_duration() {
        let rule: RefreshRule = r"\.iso$=1d,ignore-reload".parse().unwrap();
        assert_eq!(rule.pattern(), r"\.iso$");
        assert_eq!(rule.fresh_for(), Duration::from_secs(86_400));
        assert!(rule.ignores_reload());
        let plain: RefreshRule = r"\.iso$=1d".parse().unwrap();
        assert!(!plain.ignores_reload());
        assert!(matches!(
            r"\.iso$=1d,ignore-everything".parse::<RefreshRule>(),
            Err(RuleError::UnknownOption(o)) if o == "ignore-everything"
        ));
        assert!(matches!(
            r"\.iso$=,ignore-reload".parse::<RefreshRule>(),
            Err(RuleError::BadDuration(_))
        ));
        let m = RefreshRules::new(vec![rule])
            .matching("http://h/a.iso")
            .unwrap();
        assert_eq!((m.detail, m.reload_detail), (RULE_DETAIL, RELOAD_DETAIL));
    }

    #[test]
    fn a_reload_is_no_cache_or_max_age_zero_and_ignoring_it_keeps_the_rest() {
        use crate::http::Headers;
        let parse = |fields: &[(&str, &str)]| {
            let headers: Headers = fields.iter().copied().collect();
            CacheControl::parse_request(&headers)
        };
        for fields in [
            &[("Cache-Control", "no-cache")][..],
            &[("Cache-Control", "max-age=0")],
            &[("Pragma", "no-cache")],
        ] {
            let mut cc = parse(fields);
            assert!(asks_reload(&cc), "{fields:?}");
            without_reload(&mut cc);
            assert!(!asks_reload(&cc), "{fields:?}");
        }
        let mut cc = parse(&[("Cache-Control", "max-age=60, no-cache")]);
        without_reload(&mut cc);
        assert_eq!(cc.max_age, Some(60), "only max-age=0 is a reload");
        assert!(!asks_reload(&parse(&[("Cache-Control", "max-age=5")])));
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
    fn the_packages_preset_names_its_rules_and_ignores_reloads_of_artifacts_only() {
        let rules = packages();
        let crate_file = rules
            .matching("https://static.crates.io/crates/serde/1.0.0/download")
            .unwrap();
        assert_eq!(crate_file.lifetime(), Some(PACKAGE_LIFETIME));
        assert!(crate_file.ignore_reload);
        assert_eq!(crate_file.detail, "rule:cargo");
        assert_eq!(crate_file.reload_detail, "ignore-reload:cargo");
        let npm = rules
            .matching("http://r/@scope/pkg/-/pkg-1.0.0.tgz")
            .unwrap();
        assert_eq!(npm.reload_detail, "ignore-reload:npm");
        for index in [
            "https://pypi.org/simple/requests/",
            "https://proxy.golang.org/golang.org/x/text/@v/list",
            "https://repo1.maven.org/maven2/a/b/maven-metadata.xml",
            "https://repo.example/a/b/1.0-SNAPSHOT/b-1.0-SNAPSHOT.jar",
        ] {
            let m = rules.matching(index).unwrap();
            assert_eq!((m.lifetime(), m.ignore_reload), (None, false), "{index}");
        }
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
            "https://static.crates.io/crates/serde/1.0.0/download",
            "https://crates.io/api/v1/crates/serde/1.0.0/download",
            "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
            "https://registry.npmjs.org/@types/node/-/node-20.1.0.tgz",
            "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.zip",
            "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.mod",
            "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.info",
            "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.jar",
            "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.pom",
            "https://repo1.maven.org/maven2/a/b/1.0/b-1.0.module",
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
            "https://proxy.golang.org/golang.org/x/text/@v/list",
            "https://proxy.golang.org/golang.org/x/text/@latest",
            "https://repo1.maven.org/maven2/junit/junit/maven-metadata.xml",
            "https://repo.example/snapshots/a/b/1.0-SNAPSHOT/b-1.0-SNAPSHOT.jar",
            "https://repo.example/snapshots/a/b/1.0-SNAPSHOT/b-1.0-20240101.120000-1.pom",
            "http://r.test/v2/library/debian/manifests/bookworm",
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
