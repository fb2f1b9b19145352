//! Origins whose certificates do not verify, made with rcgen: the 502 page, the log line and the
//! failure counter name the cause as an operator knows it, with what to do about it.

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::*;

/// A test CA to sign leaves with, and its certificate.
fn test_ca(name: &str) -> (Issuer<'static, KeyPair>, Certificate) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (Issuer::new(params, key), cert)
}

fn leaf_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

/// An origin serving a certificate from `params`, signed by `issuer` or by itself.
fn origin(params: CertificateParams, issuer: Option<&Issuer<'static, KeyPair>>) -> TlsOrigin {
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    TlsOrigin::start_with_certificate(vec![cert.der().clone()], &key)
}

/// The bug: the 502 for an origin with a self-signed certificate said `bad-certificate`, a webpki
/// internal, and a CA certificate used as a server's own (the usual `openssl req -x509` one-liner)
/// likewise. Each cause is now named, on the page, in the log line and in the metric's label.
#[test]
fn regression_an_origin_certificate_that_does_not_verify_gets_a_502_naming_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_cert) = test_ca("porter cause test CA");
    let now = OffsetDateTime::now_utc();

    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "self-signed origin");
    let self_signed = origin(params, None);
    let mut params = leaf_params("localhost");
    params.not_before = now - Duration::days(30);
    params.not_after = now - Duration::days(1);
    let expired = origin(params, Some(&ca));
    let mut params = leaf_params("localhost");
    params.not_before = now + Duration::days(1);
    params.not_after = now + Duration::days(30);
    let not_yet_valid = origin(params, Some(&ca));
    let wrong_name = origin(leaf_params("other.test"), Some(&ca));
    // `openssl req -x509 -subj /CN=localhost -addext subjectAltName=DNS:localhost`: CA:TRUE.
    let mut params = leaf_params("localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let one_liner_cert = params.self_signed(&key).unwrap();
    let one_liner = TlsOrigin::start_with_certificate(vec![one_liner_cert.der().clone()], &key);
    let unknown = {
        let (other_ca, _) = test_ca("a CA nobody trusts");
        origin(leaf_params("localhost"), Some(&other_ca))
    };

    // The test CA and the one-liner's certificate are trusted, as an operator would try.
    let (ca_file, one_liner_file) = (dir.path().join("ca.pem"), dir.path().join("one-liner.pem"));
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(&one_liner_file, one_liner_cert.pem()).unwrap();
    let cases = [
        (
            &self_signed,
            "self-signed",
            "its certificate is self-signed",
        ),
        (&expired, "expired", "its certificate has expired"),
        (
            &not_yet_valid,
            "not-yet-valid",
            "its certificate is not valid yet",
        ),
        (&wrong_name, "name-mismatch", "name mismatch"),
        (
            &one_liner,
            "ca-used-as-server-certificate",
            "a CA certificate used as a server certificate",
        ),
        (&unknown, "unknown-issuer", "unknown issuer"),
    ];
    let ports: Vec<String> = cases
        .iter()
        .map(|(o, ..)| o.addr.port().to_string())
        .collect();
    let (cache, ca_dir) = (dir.path().join("cache"), dir.path().join("porter-ca"));
    let mut args = vec![
        "proxy",
        "--intercept",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--upstream-ca",
        ca_file.to_str().unwrap(),
        "--upstream-ca",
        one_liner_file.to_str().unwrap(),
    ];
    for port in &ports {
        args.extend_from_slice(&["--connect-port", port]);
    }
    let proxy = Porter::start(&args);
    let porter_ca = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();

    for (origin, label, cause) in cases {
        let target = format!("localhost:{}", origin.addr.port());
        let mut stream = tls_through(proxy.addr, &target, "localhost", &porter_ca);
        let response = get_inside(&mut stream, &target, "/page", true);
        let text = response.text();
        assert_eq!(response.status, 502, "{label}: {text}");
        assert!(text.contains(cause), "{label}: {text}");
        assert!(text.contains(&format!("({label};")), "{label}: {text}");
        assert!(!text.contains("bad-certificate"), "{label}: {text}");
        assert_eq!(origin.hits(), 0, "{label}: no request reached the origin");
        let metric_line =
            format!("porter_tls_handshake_failures_total{{side=\"upstream\",reason=\"{label}\"}}");
        assert_eq!(metric(proxy.addr, &metric_line), Some(1), "{label}");
        let logs = proxy.logs();
        assert!(
            logs.lines()
                .any(|l| l.contains(&target) && l.contains(cause)),
            "{label}: no log line names the cause:\n{logs}"
        );
    }

    // The hints that apply.
    let hint = |origin: &TlsOrigin| {
        let target = format!("localhost:{}", origin.addr.port());
        let mut stream = tls_through(proxy.addr, &target, "localhost", &porter_ca);
        get_inside(&mut stream, &target, "/again", true).text()
    };
    let text = hint(&one_liner);
    assert!(text.contains("CaUsedAsEndEntity"), "{text}");
    assert!(
        text.contains("issue the origin a server certificate (a leaf) from a CA and pass that CA with --upstream-ca"),
        "{text}"
    );
    let text = hint(&self_signed);
    assert!(
        text.contains("pass this certificate itself with --upstream-ca"),
        "{text}"
    );
    assert!(hint(&expired).contains("renew"));
}
