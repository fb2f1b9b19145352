//! `npm pack` of two packages (one scoped) from a local registry through Porter, twice with an empty
//! `--cache`.
//!
//! Headers as registry.npmjs.org sends them: package documents (packuments) with `Cache-Control:
//! public, max-age=300`, `ETag` and `Last-Modified`; tarballs with `Cache-Control: public,
//! immutable, max-age=31557600`, `ETag` and `Last-Modified`. The tarballs come from the cache the
//! second time; the packuments, which change in place, are never kept longer than they say.

use std::path::Path;
use std::time::Duration;

use super::*;

/// Standard base64 with padding (npm's `integrity` is `sha512-<base64>`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A package tarball (`package/package.json`, `package/index.js`) for `name` (scope dropped in the
/// file name) and its packument.
fn publish(registry: &Registry, work: &Path, name: &str, version: &str) -> String {
    let root = work.join(name.replace('/', "_"));
    std::fs::create_dir_all(root.join("package")).unwrap();
    std::fs::write(
        root.join("package/package.json"),
        format!("{{\"name\":\"{name}\",\"version\":\"{version}\",\"main\":\"index.js\"}}\n"),
    )
    .unwrap();
    std::fs::write(root.join("package/index.js"), "module.exports = 1;\n").unwrap();
    let tarball = tar_gz(&root, "package");
    use sha2::{Digest, Sha512};
    let integrity = format!("sha512-{}", base64(&Sha512::digest(&tarball)));
    let base = name.rsplit('/').next().unwrap();
    let tarball_path = format!("/{name}/-/{base}-{version}.tgz");
    let packument = format!(
        "{{\"name\":\"{name}\",\"dist-tags\":{{\"latest\":\"{version}\"}},\"versions\":{{\"{version}\":\
         {{\"name\":\"{name}\",\"version\":\"{version}\",\"dist\":{{\"tarball\":\"{}\",\"integrity\":\"{integrity}\"}}}}}}}}",
        registry.url(&tarball_path)
    );
    let doc_fields = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "public, max-age=300"),
        ("Vary", "Accept-Encoding, Accept"),
    ];
    // npm asks for a scoped package's document with the slash escaped.
    for path in [
        format!("/{name}"),
        format!("/{}", name.replace('/', "%2f")),
        format!("/{}", name.replace('/', "%2F")),
    ] {
        registry.put(&path, packument.clone().into_bytes(), &doc_fields);
    }
    registry.put(
        &tarball_path,
        tarball,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Cache-Control", "public, immutable, max-age=31557600"),
        ],
    );
    tarball_path
}

fn pack(npm: &Path, work: &Path, run: &str, registry: &Registry, proxy: &Porter) {
    let dir = work.join(run);
    std::fs::create_dir_all(&dir).unwrap();
    let npmrc = dir.join("npmrc");
    std::fs::write(&npmrc, "").unwrap();
    let mut command = client(npm);
    command
        .current_dir(&dir)
        .args(["pack", "tiny-pkg@1.0.0", "@porter/wee@2.0.0"])
        .arg(format!("--registry={}", registry.url("/")))
        .arg(format!("--proxy=http://{}", proxy.addr))
        .arg(format!("--cache={}", dir.join("cache").display()))
        .arg(format!("--userconfig={}", npmrc.display()))
        .args([
            "--fetch-retries=0",
            "--fetch-timeout=20000",
            "--no-update-notifier",
        ])
        .args(["--no-audit", "--no-fund", "--loglevel=warn"])
        .env("HOME", &dir);
    let out = run_bounded(command, Duration::from_secs(120));
    assert_ran("npm pack", &out);
    assert!(dir.join("tiny-pkg-1.0.0.tgz").is_file());
    assert!(dir.join("porter-wee-2.0.0.tgz").is_file());
}

#[test]
fn npm_pack_twice_takes_every_tarball_from_the_cache() {
    let Some(npm) = require_tool(&["npm"], "npm") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let tiny = publish(&registry, work.path(), "tiny-pkg", "1.0.0");
    let wee = publish(&registry, work.path(), "@porter/wee", "2.0.0");
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());

    pack(&npm, work.path(), "one", &registry, &proxy);
    let first = registry.count();
    assert_eq!(registry.requests_for(".tgz").len(), 2);

    pack(&npm, work.path(), "two", &registry, &proxy);
    let tarballs = registry.requests_for(".tgz");
    assert_eq!(
        tarballs.len(),
        2,
        "the second run fetched a tarball from upstream again:\n{tarballs:#?}"
    );
    assert!(logged(&proxy, &tiny, "HIT"));
    assert!(logged(&proxy, &wee, "HIT"));
    let second = registry.count() - first;
    let metric_of = |source: &str| {
        metric(
            &proxy,
            &format!("porter_ecosystem_bytes_total{{ecosystem=\"npm\",source=\"{source}\"}}"),
        )
    };
    let (cached, upstream) = (metric_of("cache"), metric_of("upstream"));
    assert!(cached > 0 && upstream > 0, "{cached} {upstream}");

    let reload = [("Cache-Control", "no-cache")];
    let hit = proxy_get(proxy.addr, &registry.url(&wee), &reload);
    assert_eq!(
        hit.header("cache-status"),
        Some("porter; hit; detail=ignore-reload:npm")
    );
    assert_eq!(registry.requests_for(".tgz").len(), 2);

    eprintln!(
        "npm: first run {first} requests upstream, second run {second}; npm tarball bytes {cached} from cache, {upstream} from upstream"
    );
}

#[test]
fn base64_pads_as_the_standard_says() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
}
