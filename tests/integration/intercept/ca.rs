//! `porter ca init|show`, the CA's files and modes, the start-up checks of `--intercept`, and the
//! proxy's `/ca.pem` page.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_init_creates_a_private_key_and_refuses_to_run_twice_and_show_explains_trust() {
    let dir = tempfile::tempdir().unwrap();
    let init = run_porter(&["ca", "init", "--ca-dir", "myca"], dir.path(), &[], None);
    assert!(init.ok(), "{init:?}");
    let ca_dir = dir.path().join("myca");
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    assert!(init.stdout.contains("SHA-256:"), "{}", init.stdout);
    assert!(!init.stdout.contains("PRIVATE KEY"));
    let key_before = std::fs::read(ca_dir.join("ca-key.pem")).unwrap();

    let again = run_porter(&["ca", "init", "--ca-dir", "myca"], dir.path(), &[], None);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read(ca_dir.join("ca-key.pem")).unwrap(),
        key_before
    );

    let show = run_porter(&["ca", "show", "--ca-dir", "myca"], dir.path(), &[], None);
    assert!(show.ok(), "{show:?}");
    let ca_pem = ca_dir.join("ca.pem").canonicalize().unwrap();
    for needle in [
        "subject:      CN=Porter proxy CA".to_string(),
        "valid until:".to_string(),
        format!("--cacert {}", ca_pem.display()),
        "update-ca-certificates".to_string(),
        format!("PIP_CERT={}", ca_pem.display()),
        "NODE_EXTRA_CA_CERTS=".to_string(),
        "CARGO_HTTP_CAINFO=".to_string(),
        "REQUESTS_CA_BUNDLE=".to_string(),
        "GIT_SSL_CAINFO=".to_string(),
        "certutil -d sql:".to_string(),
    ] {
        assert!(
            show.stdout.contains(&needle),
            "{needle} missing:\n{}",
            show.stdout
        );
    }
    assert!(!show.stdout.contains("PRIVATE KEY"));
    let missing = run_porter(&["ca", "show", "--ca-dir", "none"], dir.path(), &[], None);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("porter ca init"),
        "{}",
        missing.stderr
    );
}

#[test]
fn a_key_readable_by_others_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let key = dir.path().join("ca/ca-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = run_porter(
        &["proxy", "--intercept", "--listen", "127.0.0.1:0"],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("readable by group or others (mode 0644)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("listening on"), "it must not start");
}

#[test]
fn intercept_creates_a_ca_on_first_start_serves_it_at_ca_pem_and_never_the_key() {
    let setup = Setup::new();
    let proxy = setup.proxy(&[]);
    let ca_dir = setup.dir.path().join("ca");
    assert_eq!(mode(&ca_dir), 0o700);
    assert_eq!(mode(&ca_dir.join("ca-key.pem")), 0o600);
    let logs = proxy.logs();
    assert!(logs.contains("created a new CA"), "{logs}");
    assert!(
        logs.contains(&ca_dir.join("ca.pem").display().to_string()),
        "{logs}"
    );
    assert!(logs.contains("REQUESTS_CA_BUNDLE"), "{logs}");
    let key = std::fs::read_to_string(ca_dir.join("ca-key.pem")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!logs.contains(&key_body[..40]), "the key was logged");

    let page = raw_request(
        proxy.addr,
        b"GET /ca.pem HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("application/x-pem-file"));
    assert_eq!(page.text(), setup.porter_ca());
    let key_page = raw_request(
        proxy.addr,
        b"GET /ca-key.pem HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(key_page.status, 404);

    let status = raw_request(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let show = run_porter(
        &["ca", "show", "--ca-dir", "ca"],
        setup.dir.path(),
        &[],
        None,
    );
    let fingerprint = show
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        status.text().contains("href=\"/ca.pem\""),
        "{}",
        status.text()
    );
    assert!(status.text().contains(&fingerprint), "{}", status.text());

    // Without --intercept there is no CA to serve.
    let plain = Porter::start(&["proxy", "--no-cache"]);
    let page = raw_request(
        plain.addr,
        b"GET /ca.pem HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(page.status, 404);
}

/// The bug: with certificate and key in one `ca.pem` (Squid's ssl-bump recipes, mitmproxy's
/// `mitmproxy-ca.pem`), the proxy started and served the file as read, key included, at `/ca.pem`
/// to anyone allowed to use it. Such a file is now refused at start and by `ca show`.
#[test]
fn regression_a_ca_pem_holding_the_private_key_is_refused_at_start_and_by_ca_show() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_porter(&["ca", "init"], dir.path(), &[], None).ok());
    let (cert_path, key_path) = (
        dir.path().join("ca/ca.pem"),
        dir.path().join("ca/ca-key.pem"),
    );
    let cert = std::fs::read_to_string(&cert_path).unwrap();
    let key = std::fs::read_to_string(&key_path).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for combined in [
        format!("{cert}{key}"),
        format!("{}{cert}", key.replace("PRIVATE KEY", "RSA PRIVATE KEY")),
        format!(
            "{cert}{}",
            key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
        ),
    ] {
        std::fs::write(&cert_path, &combined).unwrap();
        let run = run_porter(
            &["proxy", "--intercept", "--listen", "127.0.0.1:0"],
            dir.path(),
            &[],
            None,
        );
        assert_eq!(run.code, Some(1), "{run:?}");
        assert!(!run.stdout.contains("listening on"), "it must not start");
        for needle in [
            "ca/ca.pem holds a private key as well as the CA certificate",
            "move the private key block into",
            "ca/ca-key.pem",
        ] {
            assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
        }
        assert!(!run.stderr.contains(&key_body[..40]), "the key was logged");

        let show = run_porter(&["ca", "show"], dir.path(), &[], None);
        assert_eq!(show.code, Some(1), "{show:?}");
        assert!(
            show.stderr
                .contains("holds a private key as well as the CA certificate"),
            "{}",
            show.stderr
        );
        assert!(!show.stdout.contains("PRIVATE KEY"), "{}", show.stdout);
        assert!(
            !show.stderr.contains(&key_body[..40]),
            "the key was printed"
        );
    }
}

/// `/ca.pem` is the certificate encoded afresh from its DER, never the file's bytes: a `ca.pem`
/// with a comment, CRLF line ends and a second certificate still serves the one certificate, in
/// canonical PEM.
#[test]
fn regression_ca_pem_never_serves_a_private_key_only_the_certificate_re_encoded() {
    let setup = Setup::new();
    drop(setup.proxy(&[]));
    let cert_path = setup.porter_ca_path();
    let cert = std::fs::read_to_string(&cert_path).unwrap();
    let noisy = format!(
        "# Porter's CA, given out to clients\r\n{}\r\n{}",
        cert.replace('\n', "\r\n"),
        setup.origin.ca_pem
    );
    std::fs::write(&cert_path, noisy).unwrap();
    let proxy = setup.proxy(&[]);
    let page = raw_request(
        proxy.addr,
        b"GET /ca.pem HTTP/1.1\r\nHost: porter\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(page.status, 200);
    let text = page.text();
    assert_eq!(text, cert, "exactly the one certificate, re-encoded");
    assert!(!text.contains("PRIVATE KEY"));
    assert!(!text.contains('\r') && !text.contains('#'), "{text}");
}
