//! Which package ecosystem a URL belongs to, and the URL shapes of each: the artifacts whose name
//! fixes their bytes and the index files that change in place.
//!
//! Two users. The `packages` refresh preset (refresh.rs) turns [`SHAPES`] into rules: an artifact
//! gets a long lifetime and `ignore-reload` (a client's `no-cache` cannot ask for other bytes than
//! the URL names), an index gets no rule, so it is revalidated. And [`ecosystem_of`] labels every
//! request for `/metrics` and the status page (bytes served from cache and from upstream per
//! ecosystem), whether the preset is on or not: the first shape that matches names the ecosystem,
//! then the well-known hosts do (an npm packument, `/left-pad`, has no shape of its own).
//!
//! The shapes follow what each client requests:
//!
//! | ecosystem | artifacts (immutable)                                   | indexes (revalidated)             |
//! |-----------|---------------------------------------------------------|-----------------------------------|
//! | oci       | `/v2/<name>/blobs/sha256:<hex>`, manifests by digest    | manifests by tag, `tags/list`     |
//! | apt       | `pool/**.deb`, `by-hash/<algo>/<hex>`                   | `dists/**/InRelease`, `Packages*` |
//! | pypi      | `/packages/**.whl`, `.tar.gz`, `.zip`                   | `/simple/**`                      |
//! | npm       | `/<pkg>/-/<pkg>-<ver>.tgz`, scoped too                  | packuments (by host)              |
//! | cargo     | `*.crate`, `<crate>/<ver>/download`                     | `index.crates.io`                 |
//! | go        | `/@v/<ver>.zip`, `.mod`, `.info`                        | `/@v/list`, `/@latest`            |
//! | maven     | `<ver>/<file>.jar`, `.pom`, `.module`                   | `maven-metadata.xml`, `-SNAPSHOT` |
//!
//! Sources: cargo builds download URLs from the sparse index's `config.json` `dl` template, by
//! default `<dl>/{crate}/{version}/download` (static.crates.io), or with `{crate}`/`{version}`
//! markers such as `<dl>/{crate}/{crate}-{version}.crate`; the Go module proxy protocol
//! (`go help goproxy`) says a version's `.info`, `.mod` and `.zip` never change; Maven Central
//! refuses to overwrite a release, while `-SNAPSHOT` versions are republished under the same name.

use std::sync::LazyLock;

use regex::RegexSet;

/// A package ecosystem, as a `/metrics` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ecosystem {
    Oci,
    Apt,
    Pypi,
    Npm,
    Cargo,
    Go,
    Maven,
    Other,
}

impl Ecosystem {
    pub const ALL: [Ecosystem; 8] = [
        Ecosystem::Oci,
        Ecosystem::Apt,
        Ecosystem::Pypi,
        Ecosystem::Npm,
        Ecosystem::Cargo,
        Ecosystem::Go,
        Ecosystem::Maven,
        Ecosystem::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Oci => "oci",
            Ecosystem::Apt => "apt",
            Ecosystem::Pypi => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Cargo => "cargo",
            Ecosystem::Go => "go",
            Ecosystem::Maven => "maven",
            Ecosystem::Other => "other",
        }
    }

    /// The position in [`Ecosystem::ALL`], for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether the bytes under a URL of this shape can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Versioned or content-addressed: the URL names the bytes.
    Artifact,
    /// Changes in place; must be revalidated.
    Index,
}

/// One URL shape: a regex over the whole URL (`http://host/path`, query included).
#[derive(Debug)]
pub struct Shape {
    /// The rule's name in the access log's `detail` (`rule:cargo`).
    pub name: &'static str,
    pub ecosystem: Ecosystem,
    pub kind: Kind,
    pub pattern: &'static str,
    /// `rule:<name>`: the Cache-Status and access-log detail of a response this rule made fresh.
    pub rule_detail: &'static str,
    /// `ignore-reload:<name>`: the detail of a hit served although the client asked to reload.
    pub reload_detail: &'static str,
}

macro_rules! shape {
    ($name:literal, $eco:ident, $kind:ident, $pattern:expr) => {
        Shape {
            name: $name,
            ecosystem: Ecosystem::$eco,
            kind: Kind::$kind,
            pattern: $pattern,
            rule_detail: concat!("rule:", $name),
            reload_detail: concat!("ignore-reload:", $name),
        }
    };
}

/// The shapes in order: the first that matches decides, so an index shape placed before an
/// artifact shape keeps its files out of it (`-SNAPSHOT` before Maven's release artifacts).
pub static SHAPES: &[Shape] = &[
    // OCI distribution spec: by digest is immutable, by tag is not.
    shape!(
        "oci",
        Oci,
        Artifact,
        r"/v2/.+/(blobs|manifests)/sha(256|512):[0-9a-f]{64,128}$"
    ),
    shape!("oci", Oci, Index, r"/v2/.+/(manifests/[^/:]+|tags/list)$"),
    // Content-addressed: the name is the hash of the bytes (apt's Acquire-By-Hash).
    shape!("apt", Apt, Artifact, r"/by-hash/[A-Za-z0-9]+/[0-9a-fA-F]+$"),
    shape!(
        "apt",
        Apt,
        Index,
        r"/(InRelease|Release|Release\.gpg|Packages|Sources|Contents-[^/]*|Translation-[^/]*|Index|Components-[^/]*|icons-[^/]*)(\.(gz|bz2|xz|lzma|lz4|zst))?$"
    ),
    shape!("pypi", Pypi, Index, r"/simple(/|$)"),
    shape!("packages", Other, Index, r"/repodata/repomd\.xml"),
    shape!("cargo", Cargo, Index, r"^https?://index\.crates\.io/"),
    shape!("go", Go, Index, r"/@v/list$|/@latest$"),
    shape!(
        "maven",
        Maven,
        Index,
        r"/maven-metadata\.xml(\.(md5|sha1|sha256|sha512))?$|-SNAPSHOT/"
    ),
    // Debian and Ubuntu pools: a file there is never replaced under the same name.
    shape!(
        "apt",
        Apt,
        Artifact,
        r"/pool/.+\.(deb|udeb|ddeb|dsc|diff\.gz|tar\.[a-z0-9]+|buildinfo)$|\.(deb|udeb|ddeb)$"
    ),
    // `<dl>/{crate}/{crate}-{version}.crate`, `<dl>/{crate}/{version}/download` (cargo's default
    // when the template has no markers, static.crates.io) and `/api/v1/crates/N/V/download`.
    shape!(
        "cargo",
        Cargo,
        Artifact,
        r"\.crate$|/[A-Za-z0-9_-]+/[0-9]+\.[0-9]+\.[0-9]+[^/]*/download$"
    ),
    shape!(
        "pypi",
        Pypi,
        Artifact,
        r"\.whl$|/packages/.+\.(tar\.gz|tar\.bz2|zip|egg)$"
    ),
    // `/pkg/-/pkg-1.2.3.tgz` and `/@scope/pkg/-/pkg-1.2.3.tgz`.
    shape!("npm", Npm, Artifact, r"/-/[^/]+\.tgz$"),
    shape!("go", Go, Artifact, r"/@v/[^/]+\.(zip|mod|info)$"),
    // A release's files sit in a folder named for the version, which starts with a digit.
    shape!(
        "maven",
        Maven,
        Artifact,
        r"/[0-9][^/]*/[^/]+\.(jar|pom|module|aar|war)(\.(md5|sha1|sha256|sha512|asc))?$"
    ),
    shape!("packages", Other, Artifact, r"\.(rpm|drpm|gem|nupkg|apk)$"),
];

static SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(SHAPES.iter().map(|s| s.pattern)).expect("the package shapes are valid regexes")
});

/// Hosts whose every URL belongs to one ecosystem, by name or name suffix (`.docker.io`).
const HOSTS: &[(&str, Ecosystem)] = &[
    ("registry.npmjs.org", Ecosystem::Npm),
    ("registry.yarnpkg.com", Ecosystem::Npm),
    ("pypi.org", Ecosystem::Pypi),
    ("files.pythonhosted.org", Ecosystem::Pypi),
    ("crates.io", Ecosystem::Cargo),
    ("proxy.golang.org", Ecosystem::Go),
    ("sum.golang.org", Ecosystem::Go),
    ("repo1.maven.org", Ecosystem::Maven),
    ("repo.maven.apache.org", Ecosystem::Maven),
    ("plugins.gradle.org", Ecosystem::Maven),
    ("deb.debian.org", Ecosystem::Apt),
    ("security.debian.org", Ecosystem::Apt),
    ("archive.ubuntu.com", Ecosystem::Apt),
    ("security.ubuntu.com", Ecosystem::Apt),
    ("docker.io", Ecosystem::Oci),
    ("ghcr.io", Ecosystem::Oci),
    ("quay.io", Ecosystem::Oci),
    ("gcr.io", Ecosystem::Oci),
];

/// Builds the shapes' regex set now, at start, rather than in the first request that ends (every
/// request's bytes are counted by ecosystem): that request's worker would spend the build (tens of
/// milliseconds, more in a debug build) after its response and before it waits for the client's
/// next request.
pub fn prepare() {
    LazyLock::force(&SET);
}

/// The first shape `url` matches, if any.
pub fn shape_of(url: &str) -> Option<&'static Shape> {
    SET.matches(url).iter().next().map(|i| &SHAPES[i])
}

/// URLs each thread remembers the ecosystem of ([`ecosystem_of`]), in a direct-mapped table.
const REMEMBERED: usize = 64;
/// Longer URLs are classified afresh each time rather than copied into the table.
const REMEMBERED_URL_BYTES: usize = 512;

/// The ecosystem `url` belongs to: by its shape, else by its host, else [`Ecosystem::Other`].
///
/// Every request's bytes are counted by ecosystem, and a cache's clients ask for the same URLs over
/// and over, so each thread remembers the answer for the last URLs it classified: a URL seen again
/// costs a short hash and a compare instead of the shapes' regex set (a tenth of a keep-alive hit's
/// instructions before).
pub fn ecosystem_of(url: &str) -> Ecosystem {
    type Table = [Option<(Box<str>, Ecosystem)>; REMEMBERED];
    thread_local! {
        static SEEN: std::cell::RefCell<Table> = const { std::cell::RefCell::new([const { None }; REMEMBERED]) };
    }
    if url.len() > REMEMBERED_URL_BYTES {
        return classify(url);
    }
    let slot = table_slot(url);
    SEEN.with_borrow_mut(|seen| match &seen[slot] {
        Some((known, eco)) if **known == *url => *eco,
        _ => {
            let eco = classify(url);
            seen[slot] = Some((url.into(), eco));
            eco
        }
    })
}

/// A URL's place in the table: FNV-1a over its length and its last 32 bytes, where URLs of one
/// site differ (file names, versions, digests).
fn table_slot(url: &str) -> usize {
    use std::hash::Hasher as _;
    let mut hasher = crate::fnv::Fnv1a::default();
    hasher.write_usize(url.len());
    hasher.write(&url.as_bytes()[url.len().saturating_sub(32)..]);
    let hash = hasher.finish();
    (hash ^ (hash >> 32)) as usize % REMEMBERED
}

/// [`ecosystem_of`] without the table.
fn classify(url: &str) -> Ecosystem {
    if let Some(shape) = shape_of(url) {
        return shape.ecosystem;
    }
    let host = host_of(url).to_ascii_lowercase();
    HOSTS
        .iter()
        .find(|(name, _)| {
            host == *name
                || host
                    .strip_suffix(name)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .map_or(Ecosystem::Other, |(_, eco)| *eco)
}

/// The host of an absolute URL, without port or user info; empty for anything else.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.starts_with('[') {
        return authority.split(']').next().map_or("", |h| &h[1..]);
    }
    authority.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(url: &str) -> Option<(&'static str, Kind)> {
        shape_of(url).map(|s| (s.name, s.kind))
    }

    #[test]
    fn every_ecosystem_has_its_artifacts_and_indexes() {
        let blob = format!("https://ghcr.io/v2/org/app/blobs/sha256:{}", "a".repeat(64));
        let by_digest = format!(
            "http://r.test/v2/library/debian/manifests/sha256:{}",
            "0".repeat(64)
        );
        let artifacts = [
            (blob.as_str(), "oci"),
            (by_digest.as_str(), "oci"),
            (
                "http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_amd64.deb",
                "apt",
            ),
            (
                "http://archive.ubuntu.com/ubuntu/pool/main/h/hello/hello_2.10.orig.tar.gz",
                "apt",
            ),
            (
                "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0a1b2c",
                "apt",
            ),
            (
                "https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0-py3-none-any.whl",
                "pypi",
            ),
            (
                "https://files.pythonhosted.org/packages/ab/cd/requests-2.31.0.tar.gz",
                "pypi",
            ),
            (
                "http://127.0.0.1:9/packages/tiny-1.0-py3-none-any.whl",
                "pypi",
            ),
            (
                "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
                "npm",
            ),
            (
                "https://registry.npmjs.org/@types/node/-/node-20.1.0.tgz",
                "npm",
            ),
            (
                "https://static.crates.io/crates/serde/serde-1.0.0.crate",
                "cargo",
            ),
            (
                "https://static.crates.io/crates/serde/1.0.0/download",
                "cargo",
            ),
            (
                "https://static.crates.io/crates/serde_json/1.0.0-rc.1+build/download",
                "cargo",
            ),
            (
                "https://crates.io/api/v1/crates/serde/1.0.0/download",
                "cargo",
            ),
            (
                "https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v1.3.2.zip",
                "go",
            ),
            (
                "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.mod",
                "go",
            ),
            (
                "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.info",
                "go",
            ),
            (
                "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.jar",
                "maven",
            ),
            (
                "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.pom",
                "maven",
            ),
            (
                "https://repo1.maven.org/maven2/junit/junit/4.13.2/junit-4.13.2.jar.sha1",
                "maven",
            ),
            (
                "https://plugins.gradle.org/m2/a/b/1.0/b-1.0.module",
                "maven",
            ),
            (
                "http://mirror/fedora/Packages/h/hello-2.10-1.fc39.x86_64.rpm",
                "packages",
            ),
        ];
        for (url, name) in artifacts {
            assert_eq!(kind(url), Some((name, Kind::Artifact)), "{url}");
        }
        let indexes = [
            ("http://r.test/v2/library/debian/manifests/bookworm", "oci"),
            ("http://r.test/v2/library/debian/tags/list", "oci"),
            (
                "http://deb.debian.org/debian/dists/bookworm/InRelease",
                "apt",
            ),
            (
                "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz",
                "apt",
            ),
            (
                "http://deb.debian.org/debian/dists/bookworm/main/i18n/Translation-en.bz2",
                "apt",
            ),
            ("https://pypi.org/simple/requests/", "pypi"),
            ("https://pypi.org/simple/", "pypi"),
            ("https://index.crates.io/se/rd/serde", "cargo"),
            ("https://index.crates.io/config.json", "cargo"),
            ("https://proxy.golang.org/golang.org/x/text/@v/list", "go"),
            ("https://proxy.golang.org/golang.org/x/text/@latest", "go"),
            (
                "https://repo1.maven.org/maven2/junit/junit/maven-metadata.xml",
                "maven",
            ),
            (
                "https://repo1.maven.org/maven2/junit/junit/maven-metadata.xml.sha1",
                "maven",
            ),
            (
                "https://repo.example/snapshots/a/b/1.0-SNAPSHOT/b-1.0-SNAPSHOT.jar",
                "maven",
            ),
            (
                "https://repo.example/snapshots/a/b/1.0-SNAPSHOT/b-1.0-20240101.120000-1.pom",
                "maven",
            ),
            ("http://mirror/fedora/repodata/repomd.xml", "packages"),
        ];
        for (url, name) in indexes {
            assert_eq!(kind(url), Some((name, Kind::Index)), "{url}");
        }
        for url in [
            "http://example.com/index.html",
            "https://registry.npmjs.org/left-pad",
            "https://static.crates.io/crates/serde/latest/download",
            "https://example.com/download",
            "https://proxy.golang.org/golang.org/x/text/@v/v0.14.0.zip?token=1",
            "http://r.test/v2/",
            "https://repo1.maven.org/maven2/junit/junit/",
        ] {
            assert_eq!(kind(url), None, "{url}");
        }
    }

    #[test]
    fn ecosystem_of_falls_back_on_well_known_hosts() {
        assert_eq!(
            ecosystem_of("https://registry.npmjs.org/left-pad"),
            Ecosystem::Npm
        );
        assert_eq!(
            ecosystem_of("https://registry-1.docker.io/v2/"),
            Ecosystem::Oci
        );
        assert_eq!(
            ecosystem_of("https://INDEX.crates.io:443/1/a"),
            Ecosystem::Cargo
        );
        assert_eq!(ecosystem_of("https://user@pypi.org/"), Ecosystem::Pypi);
        assert_eq!(ecosystem_of("https://notcrates.io/a"), Ecosystem::Other);
        assert_eq!(
            ecosystem_of("http://[::1]:80/a/-/a-1.0.0.tgz"),
            Ecosystem::Npm
        );
        assert_eq!(ecosystem_of("http://example.com/"), Ecosystem::Other);
        // Asked again, from the thread's table: the same answers, and a URL that shares a table
        // slot with another is not given the other's answer.
        assert_eq!(
            ecosystem_of("https://registry.npmjs.org/left-pad"),
            Ecosystem::Npm
        );
        let urls: Vec<String> = (0..4 * REMEMBERED)
            .map(|i| match i % 2 {
                0 => format!("http://r.test/a/-/a-1.0.{i}.tgz"),
                _ => format!("http://r.test/a/1.0.{i}"),
            })
            .collect();
        for _ in 0..2 {
            for (i, url) in urls.iter().enumerate() {
                let want = if i % 2 == 0 {
                    Ecosystem::Npm
                } else {
                    Ecosystem::Other
                };
                assert_eq!(ecosystem_of(url), want, "{url}");
                assert_eq!(classify(url), want, "{url}");
            }
        }
        assert_eq!(ecosystem_of("not a url"), Ecosystem::Other);
        for (i, eco) in Ecosystem::ALL.iter().enumerate() {
            assert_eq!(eco.index(), i);
        }
    }

    #[test]
    fn details_name_the_rule() {
        let cargo = shape_of("https://static.crates.io/crates/a/1.0.0/download").unwrap();
        assert_eq!(cargo.rule_detail, "rule:cargo");
        assert_eq!(cargo.reload_detail, "ignore-reload:cargo");
    }
}
