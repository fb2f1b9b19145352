//! `pip download` from a local PEP 503 simple index through Porter, twice with `--no-cache-dir`.
//!
//! Headers as PyPI sends them: the simple pages (pypi.org) with `Cache-Control: max-age=600,
//! public` and an `ETag`; the files (files.pythonhosted.org) with `Cache-Control: max-age=365000000,
//! immutable, public`, `ETag` and `Last-Modified`. pip asks for every index page with
//! `Cache-Control: max-age=0`, so Porter revalidates those each time (a conditional request, 304)
//! however fresh they are; the wheel comes from the cache the second time.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;

const WHEEL: &str = "tiny_pkg-1.0-py3-none-any.whl";
const WHEEL_PATH: &str = "/packages/3a/7f/tiny_pkg-1.0-py3-none-any.whl";
const PAGE: &str = "/simple/tiny-pkg/";

/// A wheel of `tiny_pkg` 1.0: a zip with the module and its dist-info, written by python3's
/// zipfile (pip needs python3 anyway).
fn wheel(dir: &Path) -> Vec<u8> {
    let out = dir.join(WHEEL);
    let script = r#"
import sys, zipfile
info = "tiny_pkg-1.0.dist-info/"
files = {
    "tiny_pkg/__init__.py": "VALUE = 1\n",
    info + "METADATA": "Metadata-Version: 2.1\nName: tiny-pkg\nVersion: 1.0\n",
    info + "WHEEL": "Wheel-Version: 1.0\nGenerator: porter-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files[info + "RECORD"] = "".join(name + ",,\n" for name in files) + info + "RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&out)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

/// `python3 -m pip download` (Debian's python3-pip has no `pip` on every release).
fn download(index: &str, dest: &Path, proxy: &Porter) {
    let mut command = client(Path::new("python3"));
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-cache-dir",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["--retries", "0", "--timeout", "20", "--index-url", index])
        .args(["--trusted-host", "127.0.0.1", "--proxy"])
        .arg(format!("http://{}", proxy.addr))
        .arg("--dest")
        .arg(dest)
        .arg("tiny-pkg==1.0")
        .env("PIP_CONFIG_FILE", "/dev/null");
    let out = run_bounded(command, Duration::from_secs(120));
    assert_ran("pip download", &out);
    assert!(dest.join(WHEEL).is_file());
}

#[test]
fn pip_download_twice_takes_the_wheel_from_the_cache_and_revalidates_the_index() {
    if !require_python_module("pip", "python3-pip") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let body = wheel(work.path());
    let page = format!(
        "<!DOCTYPE html>\n<html><body>\n<a href=\"{WHEEL_PATH}#sha256={}\">{WHEEL}</a>\n</body></html>\n",
        sha256_hex(&body)
    );
    registry.put(
        PAGE,
        page.into_bytes(),
        &[
            ("Content-Type", "text/html"),
            ("Cache-Control", "max-age=600, public"),
        ],
    );
    registry.put(
        WHEEL_PATH,
        body,
        &[
            ("Content-Type", "binary/octet-stream"),
            ("Cache-Control", "max-age=365000000, immutable, public"),
        ],
    );
    let cache = tempfile::tempdir().unwrap();
    let proxy = porter_with_preset(cache.path());
    let index = registry.url("/simple/");

    download(&index, &work.path().join("one"), &proxy);
    let first = registry.count();
    assert_eq!(registry.requests_for(".whl").len(), 1);
    let pages = registry.requests_for(PAGE);
    assert_eq!(pages.len(), 1);
    assert!(pages[0].contains("max-age=0"), "{}", pages[0]);

    download(&index, &work.path().join("two"), &proxy);
    assert_eq!(
        registry.requests_for(".whl").len(),
        1,
        "the second download fetched the wheel from upstream again"
    );
    // The index page was fresh, and still asked for: pip's max-age=0 revalidates it.
    let pages = registry.requests_for(PAGE);
    assert_eq!(pages.len(), 2, "{pages:#?}");
    assert!(
        pages[1].to_ascii_lowercase().contains("if-none-match"),
        "{}",
        pages[1]
    );
    assert!(logged(&proxy, PAGE, "REVALIDATED"));
    let second = registry.count() - first;
    let metric_of = |source: &str| {
        metric(
            &proxy,
            &format!("porter_ecosystem_bytes_total{{ecosystem=\"pypi\",source=\"{source}\"}}"),
        )
    };
    let (cached, upstream) = (metric_of("cache"), metric_of("upstream"));
    assert!(cached > 0 && upstream > 0, "{cached} {upstream}");

    // A client's reload of the wheel is answered from the cache (ignore-reload); of the index page
    // it still goes to the origin.
    let reload = [("Cache-Control", "no-cache")];
    let hit = proxy_get(proxy.addr, &registry.url(WHEEL_PATH), &reload);
    assert_eq!(hit.status, 200);
    assert_eq!(
        hit.header("cache-status"),
        Some("porter; hit; detail=ignore-reload:pypi")
    );
    assert!(logged(&proxy, WHEEL_PATH, "HIT detail=ignore-reload:pypi"));
    let again = proxy_get(proxy.addr, &registry.url(PAGE), &[("Pragma", "no-cache")]);
    assert_eq!(again.header("x-cache"), Some("HIT"));
    assert_eq!(
        again.header("cache-status"),
        Some("porter; fwd=stale; fwd-status=304")
    );
    assert_eq!(registry.requests_for(".whl").len(), 1);
    assert_eq!(registry.requests_for(PAGE).len(), 3);

    eprintln!(
        "pip: first run {first} requests upstream, second run {second} (the index page, 304); pypi bytes {cached} from cache, {upstream} from upstream"
    );
}
