//! `/setup` (issue 25) through real sockets: open without authentication whichever way it is asked
//! for, with the address the client reached and the CA's fingerprint; a hostile Host field never
//! reaches the page; without `--intercept` it shows the proxy settings only; the check name
//! `setup.porter.invalid` is answered by the proxy itself, over TLS with a leaf from its CA (curl
//! with `--cacert` gets the JSON, curl without it refuses); and headless Chromium running the page's
//! script reports "trusted" only with Porter's CA in its NSS database.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::browser::chromium_dump_dom_in;
use crate::intercept::Setup;
use crate::util::*;

/// What the page says once its script found the CA trusted.
const TRUSTED: &str = "HTTPS through this proxy: trusted";
/// What it says when the proxy answered over plain HTTP but the HTTPS fetch failed.
const NOT_TRUSTED: &str = "HTTPS through this proxy: not trusted: install the CA (commands above)";
/// What it says when the browser does not use the proxy at all.
const UNREACHABLE: &str = "could not reach the proxy over HTTPS";

/// The CA's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` writes it.
fn fingerprint(ca_pem: &str) -> String {
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("a certificate");
    Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// What the page's check element says in a DOM Chromium dumped (the script's own text holds every
/// message, so only the element counts).
fn check_result(dom: &str) -> &str {
    let start = dom.find("<p id=\"check\"").expect("the check element");
    let text = &dom[start..];
    let text = &text[text.find('>').expect("its tag's end") + 1..];
    &text[..text.find("</p>").expect("its end")]
}

/// `GET target` with `host` as the Host field, on a new connection.
fn get(proxy: std::net::SocketAddr, target: &str, host: &str) -> Response {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw_request(proxy, request.as_bytes()).expect("a response")
}

/// The text of the page's one inline element `tag` (`script` or `style`).
fn inline<'a>(page: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = page.find(&open).expect("the element") + open.len();
    let end = page[start..].find(&format!("</{tag}>")).expect("its end");
    &page[start..start + end]
}

/// `'sha256-…'` of `text`, as a CSP names an inline element.
fn csp_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[test]
fn setup_page_is_open_without_proxy_authentication_and_names_the_address_and_the_fingerprint() {
    let setup = Setup::new();
    let proxy = setup.proxy(&["--auth-user", "alice:s3cret"]);
    let address = proxy.addr.to_string();
    let fingerprint = fingerprint(&setup.porter_ca());

    // Asked for directly (origin-form), as a browser without a proxy set does.
    let direct = get(proxy.addr, "/setup", &address);
    assert_eq!(direct.status, 200, "{}", direct.text());
    // Asked for through the proxy (absolute-form naming it), as a browser already set to use it does.
    let through = get(proxy.addr, &format!("http://{address}/setup"), &address);
    assert_eq!(through.status, 200, "{}", through.text());
    for response in [&direct, &through] {
        let page = response.text();
        assert!(page.contains(&fingerprint), "no fingerprint:\n{page}");
        assert!(
            page.contains(&format!("curl -x http://{address} ")),
            "{page}"
        );
        assert!(
            page.contains(&format!("http://{address}/proxy.pac")),
            "{page}"
        );
        assert!(page.contains(&format!("http://{address}/ca.pem")), "{page}");
        assert!(page.contains("sudo porter ca install"), "{page}");
        assert!(page.contains("security add-trusted-cert"), "{page}");
        assert!(page.contains("certutil -addstore Root"), "{page}");
        assert!(page.contains("update-ca-trust"), "{page}");
        assert!(page.contains("keytool -importcert"), "{page}");
        assert!(page.contains("NODE_EXTRA_CA_CERTS="), "{page}");
        assert!(page.contains("Acquire::http::Proxy"), "{page}");
        assert!(
            page.contains(&format!("http://USER:PASSWORD@{address}")),
            "auth is on: {page}"
        );
        assert_eq!(response.header("cache-control"), Some("no-store"));
        // The policy admits the page's own script and style by hash, and lets it reach only the check.
        let policy = response.header("content-security-policy").expect("a CSP");
        assert!(policy.contains("default-src 'none'"), "{policy}");
        assert!(
            policy.contains(&format!("script-src {}", csp_hash(inline(&page, "script")))),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src {}", csp_hash(inline(&page, "style")))),
            "{policy}"
        );
        assert!(
            policy.contains("connect-src http://setup.porter.invalid https://setup.porter.invalid"),
            "{policy}"
        );
    }

    // The other own pages still ask for credentials, and so does everything else.
    assert_eq!(get(proxy.addr, "/", &address).status, 401);
    assert_eq!(
        get(proxy.addr, &format!("http://{address}/"), &address).status,
        407
    );
    let check = get(proxy.addr, "http://setup.porter.invalid/check", "x");
    assert_eq!(
        check.status, 407,
        "the check goes through the proxy's rules"
    );

    // The status page links the setup page.
    let status = proxy_get(
        proxy.addr,
        &format!("http://{address}/"),
        &[("Proxy-Authorization", "Basic YWxpY2U6czNjcmV0")],
    );
    assert_eq!(status.status, 200, "{}", status.text());
    assert!(
        status.text().contains("<a href=\"/setup\">"),
        "{}",
        status.text()
    );
}

#[test]
fn regression_setup_page_never_writes_a_hostile_host_field_into_its_commands() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let hostile = "\"><script>alert(1)</script>";
    let response = get(proxy.addr, "/setup", hostile);
    assert_eq!(response.status, 200);
    let page = response.text();
    assert!(!page.contains("alert(1)"), "{page}");
    assert!(!page.contains("&lt;script&gt;"), "not even escaped: {page}");
    // The listen address stands in for a Host that is no host:port.
    assert!(
        page.contains(&format!("curl -x http://{} ", proxy.addr)),
        "{page}"
    );
    // A Host that is a plain name is used as asked, with port 80 when it names none.
    let page = get(proxy.addr, "/setup", "Proxy.Example").text();
    assert!(page.contains("curl -x http://proxy.example:80 "), "{page}");
    assert_eq!(page.matches("<script>").count(), 1, "the page's own only");
}

#[test]
fn setup_page_without_interception_shows_the_proxy_settings_only() {
    let proxy = Porter::start(&["proxy", "--no-cache"]);
    let address = proxy.addr.to_string();
    let response = get(proxy.addr, "/setup", &address);
    assert_eq!(response.status, 200, "{}", response.text());
    let page = response.text();
    assert!(page.contains("does not intercept HTTPS"), "{page}");
    assert!(
        page.contains(&format!("export http_proxy=http://{address} ")),
        "{page}"
    );
    assert!(page.contains("git config --global http.proxy"), "{page}");
    for absent in [
        "<script",
        "/ca.pem",
        "porter ca install",
        "Trust Porter",
        "fingerprint",
    ] {
        assert!(!page.contains(absent), "{absent} on the page:\n{page}");
    }
    let policy = response.header("content-security-policy").expect("a CSP");
    assert!(!policy.contains("script-src"), "{policy}");

    // No CA to check: the check's CONNECT is answered without a lookup.
    let connect = raw_request(
        proxy.addr,
        b"CONNECT setup.porter.invalid:443 HTTP/1.1\r\nHost: setup.porter.invalid:443\r\n\r\n",
    )
    .unwrap();
    assert_eq!(connect.status, 404, "{}", connect.text());
    assert!(connect.text().contains("does not intercept HTTPS"));
}

/// curl through `proxy` for `url`, trusting `cacert` (or its default roots).
fn curl(
    curl: &Path,
    proxy: std::net::SocketAddr,
    url: &str,
    cacert: Option<&Path>,
) -> std::process::Output {
    let mut command = Command::new(curl);
    command.args(["-sS", "-D", "-", "--max-time", "20", "-x"]);
    command.arg(format!("http://{proxy}"));
    if let Some(ca) = cacert {
        command.arg("--cacert").arg(ca);
    }
    command.arg(url);
    command.output().expect("curl runs")
}

#[test]
fn the_check_name_is_answered_by_the_proxy_itself_with_a_certificate_from_its_ca() {
    let Some(curl_path) = require_tool(&["curl"], "curl") else {
        return;
    };
    let setup = Setup::new();
    // Host rules guard origins; the check's name has none and is answered whatever they say.
    let proxy = setup.proxy(&[
        "--intercept-host",
        "only.example",
        "--deny-host",
        "*.invalid",
        "--intercept-fallback",
        "tunnel",
    ]);
    let url = "https://setup.porter.invalid/check";

    let trusted = curl(&curl_path, proxy.addr, url, Some(&setup.porter_ca_path()));
    let text = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(
        text.contains("\r\nAccess-Control-Allow-Origin: *\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nContent-Type: application/json\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("{\"porter\":\"setup-check\",\"scheme\":\"https\"}\n"),
        "{text}"
    );

    // Without Porter's CA, curl refuses the proxy's certificate (60: peer certificate cannot be
    // authenticated with known CA certificates), twice: a refusal never turns the check into a
    // tunnel, --intercept-fallback tunnel or not.
    for _ in 0..2 {
        let refused = curl(&curl_path, proxy.addr, url, None);
        assert_eq!(
            refused.status.code(),
            Some(60),
            "{}{}",
            String::from_utf8_lossy(&refused.stdout),
            String::from_utf8_lossy(&refused.stderr)
        );
    }

    // Over plain HTTP, the same answer: the page tells "not trusted" from "not using the proxy" by it.
    let plain = get(
        proxy.addr,
        "http://setup.porter.invalid/check",
        "setup.porter.invalid",
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        plain.text(),
        "{\"porter\":\"setup-check\",\"scheme\":\"http\"}\n"
    );
    let other = get(
        proxy.addr,
        "http://setup.porter.invalid/other",
        "setup.porter.invalid",
    );
    assert_eq!(other.status, 404);

    // Nothing was looked up or dialled for the name.
    let logs = proxy.logs();
    assert!(
        !logs.contains("cannot resolve") && !logs.contains("failed to lookup"),
        "{logs}"
    );
}

#[test]
fn headless_chromium_reports_https_trusted_after_porter_ca_install_nss_and_not_after_uninstall() {
    let Some(chromium) = require_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    if require_tool(&["certutil"], "libnss3-tools").is_none() {
        return;
    }
    let setup = Setup::new();
    let mut args = Vec::new();
    for tld in [
        "*.com", "*.net", "*.org", "*.goog", "*.dev", "*.app", "*.io",
    ] {
        args.extend(["--deny-host", tld]);
    }
    let proxy = setup.proxy(&args);
    let url = format!("http://{}/setup", proxy.addr);
    // The page's fetches finish after the load event: let the virtual clock wait for them.
    let wait = ["--virtual-time-budget=15000"];

    // `porter ca install --nss` with HOME a temporary folder makes Chromium's database there (where
    // Chromium on Linux looks) and adds the CA; `porter ca uninstall --nss` takes it out again.
    let home = tempfile::tempdir().unwrap();
    let ca_dir = setup.porter_ca_path().parent().unwrap().to_path_buf();
    let porter_ca = |action: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_porter"))
            .args(["ca", action, "--nss", "--ca-dir"])
            .arg(&ca_dir)
            .env("HOME", home.path())
            .env_remove("SUDO_USER")
            .env_remove("SUDO_UID")
            .output()
            .expect("porter ca runs");
        assert!(
            out.status.success(),
            "porter ca {action} --nss: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };

    porter_ca("install");
    let dom = chromium_dump_dom_in(&chromium, proxy.addr, &url, &wait, home.path());
    assert_eq!(check_result(&dom), TRUSTED, "with the CA: {}", proxy.logs());

    porter_ca("uninstall");
    let dom = chromium_dump_dom_in(&chromium, proxy.addr, &url, &wait, home.path());
    assert_eq!(
        check_result(&dom),
        NOT_TRUSTED,
        "after porter ca uninstall: {}",
        proxy.logs()
    );
}

#[test]
fn headless_chromium_without_the_proxy_says_the_check_could_not_reach_it() {
    let Some(chromium) = require_tool(&["chromium", "chromium-browser"], "chromium") else {
        return;
    };
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let home = tempfile::tempdir().unwrap();
    // `--no-proxy-server` overrides the helper's --proxy-server: the page is fetched directly and
    // its check's name does not resolve.
    let dom = chromium_dump_dom_in(
        &chromium,
        proxy.addr,
        &format!("http://{}/setup", proxy.addr),
        &["--no-proxy-server", "--virtual-time-budget=15000"],
        home.path(),
    );
    let said = check_result(&dom);
    assert!(said.contains(UNREACHABLE), "{said}");
}
