//! Issue 25: a client that does not trust Porter's CA says only "unable to get local issuer
//! certificate", and Porter said nothing (or counted OpenSSL clients only). Each real TLS stack here
//! refuses Porter's certificate, and Porter must log a warning naming the client, the host and the
//! fix, and count it per host in `/metrics`: curl and python `ssl` (OpenSSL, an `unknown_ca`
//! alert), node (its own check after OpenSSL's handshake: a close with no alert) and `gnutls-cli`
//! (GnuTLS, what apt uses: a `bad_certificate` alert), skopeo (Go's crypto/tls, what docker,
//! containerd and podman use: `bad_certificate`) and `porter fetch` (rustls: `unknown_ca`).
//! With `--intercept-fallback tunnel` the client's next CONNECT to the host is tunnelled instead.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::Duration;

use super::*;

/// curl through the proxy, trusting the system's roots or only `cacert`; `--max-time` bounds it.
fn curl(proxy: SocketAddr, cacert: Option<&str>, url: &str) -> Output {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "--noproxy", ""])
        .args(["-x", &format!("http://{proxy}")]);
    if let Some(cacert) = cacert {
        command.args(["--cacert", cacert]);
    }
    command
        .arg(url)
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("curl runs")
}

fn metrics(porter: &Porter) -> String {
    proxy_get(porter.addr, &format!("http://{}/metrics", porter.addr), &[]).text()
}

/// Waits (bounded) for the warning and the per-host counter of one refusal for `localhost`.
fn assert_refusal_reported(porter: &Porter, client: &str) {
    let counter = "porter_tls_client_distrusts_ca_total{host=\"localhost\"} 1";
    let warning = "client 127.0.0.1 does not trust Porter's CA for localhost";
    let ca = format!("http://{}/ca.pem", porter.addr);
    let setup = format!("http://{}/setup", porter.addr);
    let reported = eventually(Duration::from_secs(10), || {
        let logs = porter.logs();
        metrics(porter).contains(counter)
            && logs
                .lines()
                .any(|l| l.contains(warning) && l.contains(&ca) && l.contains(&setup))
    });
    assert!(
        reported,
        "{client}: no warning or counter\n{}\n{}",
        metrics(porter)
            .lines()
            .filter(|l| l.contains("distrust"))
            .collect::<Vec<_>>()
            .join("\n"),
        porter.logs()
    );
    assert!(
        metrics(porter).contains(
            "porter_tls_handshake_failures_total{side=\"client\",reason=\"client-distrusts-ca\"} 1"
        ),
        "{client}"
    );
}

#[test]
fn regression_curl_refusing_porters_ca_is_logged_and_counted_per_host() {
    if require_tool(&["curl"], "curl").is_none() {
        return;
    }
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let url = format!("https://localhost:{}/page", setup.port());
    let out = curl(porter.addr, None, &url);
    assert!(!out.status.success(), "curl trusted Porter's CA: {out:?}");
    assert_refusal_reported(&porter, "curl");
    // --intercept-fallback is off by default: the next CONNECT is intercepted again, so a client
    // trusting only the origin's CA still fails.
    let origin_ca = setup.path("origin-ca/ca.pem");
    assert!(!curl(porter.addr, Some(&origin_ca), &url).status.success());
}

#[test]
fn regression_python_ssl_refusing_porters_ca_is_logged_and_counted_per_host() {
    if require_tool(&["python3"], "python3").is_none() {
        return;
    }
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let script = r#"
import os, socket, ssl, sys
s = socket.create_connection(("127.0.0.1", int(os.environ["PROXY_PORT"])), timeout=15)
s.sendall(b"CONNECT localhost:%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % os.environ["PORT"].encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
try:
    ssl.create_default_context().wrap_socket(s, server_hostname="localhost")
except ssl.SSLCertVerificationError as e:
    print("refused:", e)
    sys.exit(0)
sys.exit("the handshake succeeded")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("PROXY_PORT", porter.addr.port().to_string())
        .env("PORT", setup.port())
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{out:?}");
    assert_refusal_reported(&porter, "python ssl");
}

#[test]
fn regression_node_refusing_porters_ca_is_logged_and_counted_per_host() {
    if require_tool(&["node"], "nodejs").is_none() {
        return;
    }
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let script = r#"
const http = require('http'), https = require('https');
setTimeout(() => { console.log('timeout'); process.exit(3); }, 15000).unref();
http.request({host: '127.0.0.1', port: process.env.PROXY_PORT, method: 'CONNECT',
              path: 'localhost:' + process.env.PORT})
  .on('connect', (res, socket) => {
    https.get({host: 'localhost', servername: 'localhost', path: '/', socket, agent: false},
              r => { console.log('status', r.statusCode); process.exit(1); })
      .on('error', e => { console.log('refused', e.code); process.exit(0); });
  })
  .on('error', e => { console.log('proxy error', e.code); process.exit(2); })
  .end();
"#;
    let out = Command::new("node")
        .args(["-e", script])
        .env("PROXY_PORT", porter.addr.port().to_string())
        .env("PORT", setup.port())
        .env_remove("NODE_EXTRA_CA_CERTS")
        .env_remove("NODE_TLS_REJECT_UNAUTHORIZED")
        .output()
        .expect("node runs");
    assert!(out.status.success(), "{out:?}");
    assert_refusal_reported(&porter, "node");
}

#[test]
fn regression_gnutls_refusing_porters_ca_is_logged_and_counted_per_host() {
    // apt's TLS stack. `.ci/run` installs gnutls-bin.
    if require_tool(&["gnutls-cli"], "gnutls-bin").is_none() {
        return;
    }
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    // gnutls-cli cannot CONNECT through a proxy: a one-connection relay opens the tunnel for it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_port = listener.local_addr().unwrap().port();
    let (proxy, target) = (porter.addr, format!("localhost:{}", setup.port()));
    let relay = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let (tunnel, head) = open_tunnel(proxy, &target);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let (mut c_read, mut c_write) = (client.try_clone().unwrap(), client);
        let (mut t_read, mut t_write) = (tunnel.try_clone().unwrap(), tunnel);
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c_read, &mut t_write);
            let _ = t_write.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut t_read, &mut c_write);
        let _ = c_write.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
    });
    let out = Command::new("timeout")
        .args([
            "20",
            "gnutls-cli",
            "--port",
            &relay_port.to_string(),
            "localhost",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("gnutls-cli runs");
    assert!(
        !out.status.success(),
        "gnutls-cli trusted Porter's CA: {out:?}"
    );
    let _ = relay.join();
    assert_refusal_reported(&porter, "gnutls-cli");
}

#[test]
fn regression_intercept_fallback_tunnels_the_next_connect_of_a_client_that_refused() {
    if require_tool(&["curl"], "curl").is_none() {
        return;
    }
    let setup = Setup::new();
    let porter = setup.proxy(&[
        "--intercept-fallback",
        "tunnel",
        "--intercept-fallback-for",
        "10m",
    ]);
    let url = format!("https://localhost:{}/page", setup.port());
    assert!(!curl(porter.addr, None, &url).status.success());
    assert_refusal_reported(&porter, "curl");
    // The next CONNECT is tunnelled: the client meets the origin's own certificate.
    let origin_ca = setup.path("origin-ca/ca.pem");
    let out = curl(porter.addr, Some(&origin_ca), &url);
    assert!(out.status.success(), "{out:?}\n{}", porter.logs());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "GET /page from the TLS origin"
    );
    let connect = format!("CONNECT localhost:{} 200", setup.port());
    assert!(
        eventually(Duration::from_secs(10), || porter
            .logs()
            .lines()
            .any(|l| l.contains(&connect) && l.ends_with(" TUNNEL"))),
        "{}",
        porter.logs()
    );
    assert!(porter.logs().contains("--intercept-fallback tunnel"));
    assert!(metrics(&porter).contains("porter_tls_fallback_tunnels_total 1"));
}

/// The counter's value for `host`, if it has one.
fn distrusts_for(porter: &Porter, host: &str) -> Option<u64> {
    let prefix = format!("porter_tls_client_distrusts_ca_total{{host=\"{host}\"}} ");
    metrics(porter)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|n| n.trim().parse().ok()))
}

/// Waits (bounded) for the warning naming `host` and a per-host count of at least one. Go clients
/// retry a failed handshake once, so the count may be more than one; the warning comes once.
fn assert_host_refusal_reported(porter: &Porter, client: &str, host: &str) {
    let warning = format!("client 127.0.0.1 does not trust Porter's CA for {host}");
    let reported = eventually(Duration::from_secs(10), || {
        distrusts_for(porter, host).is_some_and(|n| n >= 1)
            && porter.logs().lines().any(|l| l.contains(&warning))
    });
    assert!(
        reported,
        "{client}: no warning or counter\n{}",
        porter.logs()
    );
    let warnings = porter
        .logs()
        .lines()
        .filter(|l| l.contains(&warning))
        .count();
    assert_eq!(
        warnings,
        1,
        "{client}: one warning a minute\n{}",
        porter.logs()
    );
}

/// Go's crypto/tls (skopeo, docker, containerd, podman): a `bad_certificate` alert. Go never sends
/// loopback names through a proxy, hence `trust.porter.test` (127.0.0.15 in /etc/hosts, .ci/run);
/// nothing needs to listen there, as the refusal comes before any request reaches an origin.
#[test]
fn regression_go_refusing_porters_ca_is_logged_and_counted_per_host() {
    let Some(skopeo) = require_tool(&["skopeo"], "skopeo") else {
        return;
    };
    if require_test_host("trust.porter.test").is_none() {
        return;
    }
    let setup = Setup::new();
    // A port nothing listens on, allowed for CONNECT: the refusal needs no origin.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let porter = setup.proxy(&["--connect-port", &port.to_string()]);
    let out = Command::new("timeout")
        .arg("30")
        .arg(&skopeo)
        .args(["inspect", "--retry-times", "0"])
        .arg(format!(
            "docker://trust.porter.test:{port}/porter/refused:1"
        ))
        .env("HTTPS_PROXY", format!("http://{}", porter.addr))
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("skopeo runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("x509"),
        "skopeo trusted Porter's CA or failed otherwise: {out:?}"
    );
    assert_host_refusal_reported(&porter, "skopeo (Go)", "trust.porter.test");
}

/// rustls (Porter's own client, and any Rust program on webpki roots): an `unknown_ca` alert.
#[test]
fn regression_rustls_refusing_porters_ca_is_logged_and_counted_per_host() {
    let setup = Setup::new();
    let porter = setup.proxy(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["fetch", "--proxy", &porter.addr.to_string()])
        .arg(format!("https://localhost:{}/page", setup.port()))
        .current_dir(setup.dir.path())
        .env_remove("SSL_CERT_FILE")
        .output()
        .expect("porter fetch runs");
    assert!(
        !out.status.success(),
        "porter fetch trusted Porter's CA: {out:?}"
    );
    assert_host_refusal_reported(&porter, "porter fetch (rustls)", "localhost");
}
