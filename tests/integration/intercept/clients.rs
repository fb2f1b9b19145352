//! Real clients through `--intercept`, each trusting Porter's CA the way the README tells users to:
//! python requests (`REQUESTS_CA_BUNDLE`), pip (`PIP_CERT`) against a local https package index, and
//! headless Chromium with the CA in an NSS database (`certutil`), without
//! `--ignore-certificate-errors`.
//!
//! `.ci/run` installs what these need (Chromium, libnss3-tools, python requests, pip) and sets
//! `PORTER_CI=1`, under which a missing tool fails the test; elsewhere the test prints that it
//! skipped (`util::require_tool`).

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::browser::chromium_dump_dom_in;

/// An origin serving fixed files (fresh for ten minutes), counting requests per path.
fn file_origin(
    files: Vec<(&'static str, &'static str, Vec<u8>)>,
) -> (TlsOrigin, Arc<HashMap<String, AtomicUsize>>) {
    let counts: Arc<HashMap<String, AtomicUsize>> = Arc::new(
        files
            .iter()
            .map(|(path, _, _)| (path.to_string(), AtomicUsize::new(0)))
            .collect(),
    );
    let seen = Arc::clone(&counts);
    let origin = TlsOrigin::start_with(move |_, path, _| {
        let path = path.split('?').next().unwrap_or(path);
        match files.iter().find(|(p, _, _)| *p == path) {
            Some((p, content_type, body)) => {
                seen[*p].fetch_add(1, Ordering::SeqCst);
                (
                    200,
                    hdrs(&[
                        ("Content-Type", content_type),
                        ("Cache-Control", "max-age=600"),
                    ]),
                    body.clone(),
                )
            }
            None => (
                404,
                hdrs(&[("Content-Type", "text/plain")]),
                b"no such file".to_vec(),
            ),
        }
    });
    (origin, counts)
}

#[test]
fn python_requests_trusts_the_ca_through_requests_ca_bundle_and_gets_a_hit() {
    if !require_python_module("requests", "python3-requests") {
        return;
    }
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let url = format!("https://localhost:{}/from-python", setup.port());
    let script = "import requests, sys\n\
                  r = requests.get(sys.argv[1], proxies={'https': sys.argv[2]}, timeout=20)\n\
                  print(r.status_code, r.headers.get('X-Cache'), r.text)\n";
    for expected in ["MISS", "HIT"] {
        let out = Command::new("python3")
            .args(["-c", script, &url, &format!("http://{}", proxy.addr)])
            .env("REQUESTS_CA_BUNDLE", setup.porter_ca_path())
            .env_remove("CURL_CA_BUNDLE")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python requests failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            format!("200 {expected} GET /from-python from the TLS origin")
        );
    }
    assert_eq!(setup.origin.hits(), 1);
}

/// A wheel built by hand: a zip with a module and the dist-info files pip reads.
pub(super) fn build_wheel(dir: &Path) -> Vec<u8> {
    let path = dir.join("porter_demo-0.1-py3-none-any.whl");
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1], 'w') as z:\n\
                  \x20   z.writestr('porter_demo/__init__.py', 'GREETING = \"hello through porter\"\\n')\n\
                  \x20   z.writestr('porter_demo-0.1.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: porter-demo\\nVersion: 0.1\\n')\n\
                  \x20   z.writestr('porter_demo-0.1.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: porter-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
                  \x20   z.writestr('porter_demo-0.1.dist-info/RECORD', '')\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "could not build the wheel");
    std::fs::read(&path).expect("the wheel")
}

#[test]
fn pip_download_from_a_local_https_index_is_served_from_the_cache_the_second_time() {
    if !require_python_module("pip", "python3-pip") {
        return;
    }
    let build = tempfile::tempdir().unwrap();
    let wheel = build_wheel(build.path());
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&wheel))
    };
    let wheel_path = "/files/porter_demo-0.1-py3-none-any.whl";
    let index = format!(
        "<!DOCTYPE html><html><body>\n<a href=\"{wheel_path}#sha256={digest}\">porter_demo-0.1-py3-none-any.whl</a>\n</body></html>\n"
    );
    let (origin, counts) = file_origin(vec![
        ("/simple/porter-demo/", "text/html", index.into_bytes()),
        (wheel_path, "application/octet-stream", wheel.clone()),
    ]);
    let setup = Setup::with_origin(origin);
    let proxy = setup.proxy(&[]);
    let index_url = format!("https://localhost:{}/simple/", setup.port());
    for round in 1..=2 {
        let dest = setup.dir.path().join(format!("download-{round}"));
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--retries",
                "0",
            ])
            .args(["--timeout", "20", "--index-url", &index_url])
            .args(["--proxy", &format!("http://{}", proxy.addr)])
            .arg("--dest")
            .arg(&dest)
            .arg("porter-demo")
            .env("PIP_CERT", setup.porter_ca_path())
            // pip's requests prefers these to PIP_CERT when they are set.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .env_remove("PIP_INDEX_URL")
            .env_remove("PIP_EXTRA_INDEX_URL")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .output()
            .expect("pip runs");
        assert!(
            out.status.success(),
            "pip download {round} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(dest.join("porter_demo-0.1-py3-none-any.whl")).expect("the wheel");
        assert_eq!(got, wheel, "round {round}");
    }
    assert_eq!(
        counts[wheel_path].load(Ordering::SeqCst),
        1,
        "the origin saw the wheel once"
    );
    let wheel_url = format!("https://localhost:{}{wheel_path}", setup.port());
    assert!(
        eventually(Duration::from_secs(5), || outcome(
            &proxy.logs(),
            "GET",
            &wheel_url
        ) == ["MISS", "HIT"]),
        "{}",
        proxy.logs()
    );
}

const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Porter over intercepted HTTPS</title></head>
<body>
<p id="image">the image did not load</p>
<img src="/porter.png" alt="a PNG"
 onload="document.getElementById('image').textContent = 'image loaded, ' + this.naturalWidth + ' px wide'">
</body></html>
"#;

#[test]
fn headless_chromium_trusting_the_ca_through_nss_loads_an_https_page_and_its_image_from_the_cache()
{
    let Some(chromium) = require_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let Some(certutil) = require_tool(&["certutil"], "libnss3-tools") else {
        return;
    };
    let png = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/www/porter.png"))
        .unwrap();
    let (origin, counts) = file_origin(vec![
        ("/", "text/html; charset=utf-8", PAGE.as_bytes().to_vec()),
        ("/porter.png", "image/png", png),
    ]);
    let setup = Setup::with_origin(origin);
    let mut args = Vec::new();
    for tld in [
        "*.com", "*.net", "*.org", "*.goog", "*.dev", "*.app", "*.io",
    ] {
        args.extend(["--deny-host", tld]);
    }
    let proxy = setup.proxy(&args);

    // The CA in an NSS database in a temporary HOME, where Chromium on Linux looks.
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let certutil_ok = |args: &[&str]| {
        let out = Command::new(&certutil)
            .args(args)
            .output()
            .expect("certutil runs");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certutil_ok(&["-N", "-d", &db, "--empty-password"]);
    let ca = setup.porter_ca_path().display().to_string();
    certutil_ok(&["-A", "-d", &db, "-t", "C,,", "-n", "porter", "-i", &ca]);

    let url = format!("https://127.0.0.1:{}/", setup.port());
    let image_url = format!("{url}porter.png");
    for (visit, expected) in [(1, "MISS"), (2, "HIT")] {
        let seen = proxy.logs().len();
        let dom = chromium_dump_dom_in(&chromium, proxy.addr, &url, &[], home.path());
        assert!(
            dom.contains("<title>Porter over intercepted HTTPS</title>"),
            "visit {visit}: {dom}"
        );
        assert!(
            dom.contains("image loaded, "),
            "visit {visit}, the image: {dom}"
        );
        assert!(
            eventually(Duration::from_secs(5), || {
                outcome(&proxy.logs()[seen..], "GET", &image_url) == [expected]
            }),
            "visit {visit}: {}",
            proxy.logs()
        );
    }
    assert_eq!(
        counts["/porter.png"].load(Ordering::SeqCst),
        1,
        "the image came from the cache"
    );
}

/// A client's second intercepted connection resumes the session of its first (a TLS 1.3 ticket from
/// the shared session cache), so a `curl` run per file pays a full handshake once. The ticket rides
/// with the first response now rather than in a write of its own: it must still arrive.
#[test]
fn regression_a_second_intercepted_connection_resumes_the_tls_session() {
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let target = format!("127.0.0.1:{}", setup.port());
    let config = trusting(&setup.porter_ca());
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (tcp, head) = open_tunnel(porter.addr, &target);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let name = ServerName::try_from("127.0.0.1".to_string()).unwrap();
        let conn = ClientConnection::new(Arc::clone(&config), name).expect("client");
        let mut stream = StreamOwned::new(conn, tcp);
        let response = get_inside(&mut stream, &target, "/resumed", true);
        assert_eq!(response.status, 200);
        kinds.push(stream.conn.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}

/// The interception picks TLS_AES_128_GCM_SHA256 even for a client that asks for AES-256 first
/// (rustls, curl): its SHA-256 key schedule runs on the CPU's SHA extensions, SHA-384's did not.
#[test]
fn intercepted_connections_use_aes_128_gcm_sha256_whatever_the_clients_order() {
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let target = format!("127.0.0.1:{}", setup.port());
    let mut stream = tls_through(porter.addr, &target, "127.0.0.1", &setup.porter_ca());
    let response = get_inside(&mut stream, &target, "/suite", true);
    assert_eq!(response.status, 200);
    let suite = stream.conn.negotiated_cipher_suite().expect("a suite");
    assert_eq!(suite.suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
}
