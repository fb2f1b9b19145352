//! The Go module proxy's and a Maven repository's URL shapes through Porter with the packages preset,
//! asked by path as `go mod download` and Gradle ask them (no Go toolchain or Gradle here: the requests are
//! written out). The origins send an `ETag` and nothing about freshness, as Athens and a Nexus
//! repository behind nginx do, so what is kept is the preset's doing.

use super::*;

/// GETs `paths` through the proxy, each with the reload the client sends (`None`: none).
fn run(
    proxy: &Porter,
    registry: &Registry,
    paths: &[(&str, Option<(&str, &str)>)],
) -> Vec<Response> {
    paths
        .iter()
        .map(|(path, reload)| {
            let extra: Vec<(&str, &str)> = reload.iter().copied().collect();
            proxy_get(proxy.addr, &registry.url(path), &extra)
        })
        .collect()
}

#[test]
fn go_module_files_and_maven_releases_are_kept_while_their_indexes_and_snapshots_are_asked_again() {
    let registry = Registry::start();
    let artifacts = [
        "/golang.org/x/tiny/@v/v0.1.0.info",
        "/golang.org/x/tiny/@v/v0.1.0.mod",
        "/golang.org/x/tiny/@v/v0.1.0.zip",
        "/maven2/org/example/tiny/1.0/tiny-1.0.pom",
        "/maven2/org/example/tiny/1.0/tiny-1.0.module",
        "/maven2/org/example/tiny/1.0/tiny-1.0.jar",
    ];
    let indexes = [
        "/golang.org/x/tiny/@v/list",
        "/golang.org/x/tiny/@latest",
        "/maven2/org/example/tiny/maven-metadata.xml",
        "/snapshots/org/example/tiny/1.1-SNAPSHOT/tiny-1.1-SNAPSHOT.jar",
    ];
    for path in artifacts.iter().chain(&indexes) {
        registry.put_undated(
            path,
            path.as_bytes().to_vec(),
            &[("Content-Type", "application/octet-stream")],
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());
    // The Maven files are asked with a reload, as a client forcing a refresh asks; the Go ones without.
    let reload = Some(("Cache-Control", "no-cache"));
    let asked: Vec<(&str, Option<(&str, &str)>)> = artifacts
        .iter()
        .chain(&indexes)
        .map(|p| (*p, if p.contains("maven") { reload } else { None }))
        .collect();
    let first = run(&proxy, &registry, &asked);
    assert!(first.iter().all(|r| r.status == 200));
    let second = run(&proxy, &registry, &asked);
    for (path, response) in artifacts.iter().zip(&second) {
        assert_eq!(response.body, path.as_bytes());
        assert_eq!(response.header("x-cache"), Some("HIT"), "{path}");
        assert_eq!(registry.requests_for(path).len(), 1, "{path}");
    }
    for (path, response) in indexes.iter().zip(&second[artifacts.len()..]) {
        // Revalidated (a 304: X-Cache says HIT, Cache-Status fwd=stale) or fetched again.
        let status = response.header("cache-status").unwrap_or_default();
        assert!(!status.starts_with("porter; hit"), "{path}: {status}");
        assert_eq!(registry.requests_for(path).len(), 2, "{path}");
    }
    assert_eq!(
        second[0].header("cache-status"),
        Some("porter; hit; detail=rule:go")
    );
    assert_eq!(
        second[5].header("cache-status"),
        Some("porter; hit; detail=ignore-reload:maven")
    );
    for eco in ["go", "maven"] {
        let cached = metric(
            &proxy,
            &format!("porter_ecosystem_bytes_total{{ecosystem=\"{eco}\",source=\"cache\"}}"),
        );
        assert!(cached > 0, "{eco}");
    }
}
