//! `cargo fetch` from a local sparse registry through Porter, twice with an empty `CARGO_HOME`.
//!
//! Headers assumed of crates.io (stated, since the test depends on them): the sparse index
//! (index.crates.io) answers with an `ETag` and `Cache-Control: public, max-age=600`, and
//! `config.json` likewise; the downloads are served here with an `ETag` and nothing else about
//! freshness, as registry servers that generate them answer (static.crates.io, a CDN over S3, adds
//! `Last-Modified`, from which a cache may guess a freshness, RFC 9111 §4.2.2), so that keeping
//! them is the preset's doing alone: without the `download` rule each one is asked again. `config.json` gives `dl` without
//! markers, as crates.io's does, so cargo asks for `<dl>/{crate}/{version}/download`: the URL shape
//! the preset missed before (it matched only `/api/v1/crates/N/V/download`).

use std::path::Path;
use std::time::Duration;

use super::*;

/// Writes the `.crate` of `name` `version` (a gzipped tar of `name-version/`) and returns it.
fn crate_file(work: &Path, name: &str, version: &str) -> Vec<u8> {
    let root = work.join(format!("{name}-{version}"));
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        format!("[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        format!("pub const NAME: &str = \"{name}\";\n"),
    )
    .unwrap();
    tar_gz(work, &format!("{name}-{version}"))
}

/// The sparse index path of a crate name of four or more characters: `ti/ny/tiny`.
fn index_path(name: &str) -> String {
    format!("/index/{}/{}/{name}", &name[..2], &name[2..4])
}

/// A crate that depends on `tiny` and `wee1` from the registry `local`.
fn project(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[dependencies]\n\
         tiny = { version = \"0.1.0\", registry = \"local\" }\n\
         wee1 = { version = \"1.2.3\", registry = \"local\" }\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
}

/// `cargo fetch` in `app` with a fresh CARGO_HOME through `proxy`.
fn fetch(cargo: &Path, app: &Path, home: &Path, registry: &str, proxy: &Porter) {
    std::fs::create_dir_all(home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!("[registries.local]\nindex = \"sparse+{registry}\"\n"),
    )
    .unwrap();
    let _ = std::fs::remove_file(app.join("Cargo.lock"));
    let mut command = client(cargo);
    command
        .current_dir(app)
        .arg("fetch")
        .env("CARGO_HOME", home)
        .env("CARGO_HTTP_PROXY", format!("http://{}", proxy.addr))
        .env("CARGO_NET_RETRY", "0")
        .env("CARGO_HTTP_TIMEOUT", "20")
        .env_remove("CARGO_TARGET_DIR");
    let out = run_bounded(command, Duration::from_secs(120));
    assert_ran("cargo fetch", &out);
}

#[test]
fn regression_cargo_fetch_twice_downloads_each_crate_from_upstream_once() {
    let cargo = std::env::var_os("CARGO").map_or_else(|| "cargo".into(), std::path::PathBuf::from);
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let index = registry.url("/index/");
    let dl = registry.url("/crates");
    registry.put(
        "/index/config.json",
        format!("{{\"dl\":\"{dl}\",\"api\":\"{}\"}}", registry.url("")).into_bytes(),
        &[
            ("Content-Type", "application/json"),
            ("Cache-Control", "public, max-age=600"),
        ],
    );
    for (name, version) in [("tiny", "0.1.0"), ("wee1", "1.2.3")] {
        let file = crate_file(work.path(), name, version);
        let line = format!(
            "{{\"name\":\"{name}\",\"vers\":\"{version}\",\"deps\":[],\"cksum\":\"{}\",\"features\":{{}},\"yanked\":false}}\n",
            sha256_hex(&file)
        );
        registry.put(
            &index_path(name),
            line.into_bytes(),
            &[
                ("Content-Type", "text/plain"),
                ("Cache-Control", "public, max-age=600"),
            ],
        );
        registry.put_undated(
            &format!("/crates/{name}/{version}/download"),
            file,
            &[("Content-Type", "application/gzip")],
        );
    }
    let app = work.path().join("app");
    project(&app);
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());

    fetch(&cargo, &app, &work.path().join("home1"), &index, &proxy);
    let first = registry.count();
    let first_bytes = metric(
        &proxy,
        "porter_ecosystem_bytes_total{ecosystem=\"cargo\",source=\"upstream\"}",
    );
    assert_eq!(registry.requests_for("/download").len(), 2);

    fetch(&cargo, &app, &work.path().join("home2"), &index, &proxy);
    let downloads = registry.requests_for("/download");
    assert_eq!(
        downloads.len(),
        2,
        "the second fetch downloaded a .crate from upstream again:\n{downloads:#?}"
    );
    assert!(logged(
        &proxy,
        "/crates/tiny/0.1.0/download",
        "MISS detail=rule:cargo"
    ));
    assert!(logged(
        &proxy,
        "/crates/wee1/1.2.3/download",
        "HIT detail=rule:cargo"
    ));
    let cached = metric(
        &proxy,
        "porter_ecosystem_bytes_total{ecosystem=\"cargo\",source=\"cache\"}",
    );
    let upstream = metric(
        &proxy,
        "porter_ecosystem_bytes_total{ecosystem=\"cargo\",source=\"upstream\"}",
    );
    assert_eq!(
        upstream, first_bytes,
        "no cargo byte from upstream the second time"
    );
    // The same bodies; the heads differ a little (Age, Cache-Status).
    assert!(cached > 0);
    let page = raw_request(proxy.addr, b"GET / HTTP/1.1\r\nHost: porter\r\n\r\n").unwrap();
    let html = page.text();
    let table = &html[html.find("id=\"ecosystems\"").expect("an ecosystems table")..];
    assert!(table.contains("id=\"eco-cargo-cache\""), "{table}");
    assert!(
        !table.contains("id=\"eco-maven-cache\""),
        "only ecosystems with bytes: {table}"
    );
    let host = format!("host=\"{}\",source=\"cache\"}}", registry.origin.addr.ip());
    assert!(metric(&proxy, &format!("porter_host_bytes_total{{{host}")) >= cached);
    if std::env::var_os("PORTER_TEST_SHOW").is_some() {
        eprintln!("{}", proxy.logs());
    }
    eprintln!(
        "cargo: first run {first} requests upstream ({first_bytes} crate bytes), second run {} requests upstream, {cached} crate bytes from cache",
        registry.count() - first
    );
}
