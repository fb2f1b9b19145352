//! `--refresh` and `--refresh-preset`: freshness for origins that state none, through the real proxy.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

/// An apt mirror as the Debian one answers from here: Content-Type and Content-Length only, no
/// Date, no freshness, no validators. The files live in a folder laid out as `dists/…` and `pool/…`.
fn bare_mirror(root: &Path) -> Origin {
    let root = root.to_path_buf();
    Origin::start(
        move |_, path, _| match std::fs::read(root.join(path.trim_start_matches('/'))) {
            Ok(body) => (
                200,
                hdrs(&[("Content-Type", "application/octet-stream")]),
                body,
            ),
            Err(_) => (404, hdrs(&[("Content-Type", "text/plain")]), b"no".to_vec()),
        },
    )
}

fn mirror_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("dists/bookworm/InRelease", "Origin: Debian\n"),
        ("dists/bookworm/Release", "Origin: Debian\n"),
        (
            "dists/bookworm/main/binary-amd64/Packages.xz",
            "Package: hello\n",
        ),
        (
            "dists/bookworm/main/binary-amd64/by-hash/SHA256/5e1f0c",
            "Package: hello\n",
        ),
        (
            "pool/main/h/hello/hello_2.10-3_amd64.deb",
            "!<arch>\ndebian",
        ),
    ];
    for (path, body) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

/// How many requests for `path` the origin saw.
fn origin_count(origin: &Origin, path: &str) -> usize {
    let line = format!("GET {path} ");
    origin
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with(&line))
        .count()
}

const INDEXES: [&str; 3] = [
    "/dists/bookworm/InRelease",
    "/dists/bookworm/Release",
    "/dists/bookworm/main/binary-amd64/Packages.xz",
];
const DEB: &str = "/pool/main/h/hello/hello_2.10-3_amd64.deb";
const BY_HASH: &str = "/dists/bookworm/main/binary-amd64/by-hash/SHA256/5e1f0c";

/// What `apt update && apt install hello` asks for, in order.
fn apt_run(proxy: std::net::SocketAddr, origin: &Origin) -> Vec<Response> {
    INDEXES
        .iter()
        .chain([&BY_HASH, &DEB])
        .map(|path| {
            proxy_get(
                proxy,
                &origin.url(path),
                &[("User-Agent", "Debian APT-HTTP/1.3")],
            )
        })
        .collect()
}

#[test]
fn an_apt_run_with_the_packages_preset_hits_packages_and_never_stores_indexes() {
    let mirror = mirror_folder();
    let origin = bare_mirror(mirror.path());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--refresh-preset",
        "packages",
    ]);
    let first = apt_run(proxy.addr, &origin);
    assert!(first.iter().all(|r| r.status == 200));
    let deb = first.last().unwrap();
    assert_eq!(deb.header("x-cache"), Some("MISS"));
    assert_eq!(
        deb.header("cache-status"),
        Some("porter; fwd=miss; stored; detail=rule:apt")
    );
    let second = apt_run(proxy.addr, &origin);
    let (deb, by_hash) = (&second[4], &second[3]);
    assert_eq!(deb.body, b"!<arch>\ndebian");
    assert_eq!(deb.header("x-cache"), Some("HIT"));
    assert_eq!(
        deb.header("cache-status"),
        Some("porter; hit; detail=rule:apt")
    );
    assert_eq!(by_hash.header("x-cache"), Some("HIT"));
    assert_eq!(
        (origin_count(&origin, DEB), origin_count(&origin, BY_HASH)),
        (1, 1)
    );
    for (path, response) in INDEXES.iter().zip(&second) {
        assert_eq!(response.header("x-cache"), Some("MISS"), "{path}");
        assert_eq!(
            response.header("cache-status"),
            Some("porter; fwd=miss; detail=no-freshness"),
            "{path}"
        );
        assert_eq!(origin_count(&origin, path), 2, "{path}");
    }
    assert!(
        eventually(Duration::from_secs(5), || proxy
            .logs()
            .lines()
            .any(|l| l.contains("porter::access")
                && l.contains(DEB)
                && l.ends_with("HIT detail=rule:apt"))),
        "{}",
        proxy.logs()
    );
    let stats = run_porter(
        &["cache", "--cache-dir", cache.path().to_str().unwrap(), "ls"],
        cache.path(),
        &[],
        None,
    );
    assert!(stats.ok());
    assert!(
        stats.stdout.contains(DEB) && stats.stdout.contains(BY_HASH),
        "{}",
        stats.stdout
    );
    for path in INDEXES {
        assert!(
            !stats.stdout.contains(path),
            "{path} was stored:\n{}",
            stats.stdout
        );
    }
}

#[test]
fn without_a_rule_a_response_stating_no_freshness_is_not_stored() {
    let mirror = mirror_folder();
    let origin = bare_mirror(mirror.path());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Porter::start(&["proxy", "--cache-dir", cache.path().to_str().unwrap()]);
    for _ in 0..2 {
        let deb = proxy_get(proxy.addr, &origin.url(DEB), &[]);
        assert_eq!(
            deb.header("cache-status"),
            Some("porter; fwd=miss; detail=no-freshness")
        );
    }
    assert_eq!(origin_count(&origin, DEB), 2);
}

#[test]
fn refresh_rules_go_in_order_and_explicit_freshness_wins() {
    let origin = Origin::start(|_, path, _| {
        let cc = if path.starts_with("/stated") {
            "max-age=0"
        } else {
            ""
        };
        let mut headers = hdrs(&[("Content-Type", "text/plain")]);
        if !cc.is_empty() {
            headers.push(("Cache-Control".into(), cc.into()));
        }
        (200, headers, path.as_bytes().to_vec())
    });
    let cache = tempfile::tempdir().unwrap();
    let proxy = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--refresh",
        "/skip/=0",
        "--refresh",
        r"\.iso$=1h",
    ]);
    for path in ["/a.iso", "/skip/b.iso", "/stated.iso"] {
        proxy_get(proxy.addr, &origin.url(path), &[]);
    }
    let again = |path| proxy_get(proxy.addr, &origin.url(path), &[]);
    assert_eq!(again("/a.iso").header("x-cache"), Some("HIT"));
    assert_eq!(
        again("/skip/b.iso").header("x-cache"),
        Some("MISS"),
        "the first rule wins"
    );
    assert_eq!(
        again("/stated.iso").header("x-cache"),
        Some("MISS"),
        "max-age=0 wins"
    );
    assert_eq!(origin.hits(), 5);
}

#[test]
fn a_bad_refresh_rule_is_refused_at_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, message) in [
        ("--refresh", "(=1h", "refresh rule regex"),
        ("--refresh", "no-duration", "is not REGEX=DURATION"),
        ("--refresh", "x=soon", "refresh rule duration"),
        ("--refresh", "x=1h,always", "unknown refresh rule option"),
        ("--refresh-preset", "everything", "unknown refresh preset"),
    ] {
        let run = run_porter(
            &["proxy", "--listen", "127.0.0.1:0", flag, value],
            dir.path(),
            &[],
            None,
        );
        assert!(!run.ok(), "{flag} {value}");
        assert!(
            run.stderr.contains(message),
            "{flag} {value}: {}",
            run.stderr
        );
    }
}

/// `--refresh REGEX=DURATION,ignore-reload`: a client's reload (no-cache, max-age=0, Pragma) of a
/// fresh entry is answered from the cache; without the option it goes to the origin.
#[test]
fn a_refresh_rule_with_ignore_reload_answers_a_reload_from_the_cache() {
    let origin = Origin::start(|_, path, _| {
        (
            200,
            hdrs(&[("Content-Type", "application/octet-stream")]),
            path.as_bytes().to_vec(),
        )
    });
    let cache = tempfile::tempdir().unwrap();
    let proxy = Porter::start(&[
        "proxy",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--refresh",
        r"\.iso$=1h,ignore-reload",
        "--refresh",
        r"\.img$=1h",
    ]);
    for path in ["/a.iso", "/a.img"] {
        proxy_get(proxy.addr, &origin.url(path), &[]);
    }
    for reload in [
        ("Cache-Control", "no-cache"),
        ("Cache-Control", "max-age=0"),
        ("Pragma", "no-cache"),
    ] {
        let iso = proxy_get(proxy.addr, &origin.url("/a.iso"), &[reload]);
        assert_eq!(
            iso.header("cache-status"),
            Some("porter; hit; detail=ignore-reload"),
            "{reload:?}"
        );
        let img = proxy_get(proxy.addr, &origin.url("/a.img"), &[reload]);
        assert_eq!(img.header("x-cache"), Some("MISS"), "{reload:?}");
    }
    assert_eq!(origin_count(&origin, "/a.iso"), 1);
    assert_eq!(origin_count(&origin, "/a.img"), 4);
    assert!(
        eventually(Duration::from_secs(5), || proxy.logs().lines().any(|l| l
            .contains("/a.iso")
            && l.ends_with("HIT detail=ignore-reload"))),
        "{}",
        proxy.logs()
    );
}
