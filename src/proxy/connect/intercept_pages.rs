//! The proxy's own pages for HTTPS interception: `/ca.pem` (the CA certificate, never its key), the
//! status page's interception rows and CA link, and the interception counters in `/metrics`.

use std::fmt::Write as _;

use crate::html;
use crate::http::ResponseHead;
use crate::proxy::Proxy;
use crate::proxy::ops::pages::{Page, status_page};
use crate::tls::{Failure, Interceptor, Side, TlsStats};

/// `/ca.pem`: the CA's certificate for clients to download and trust; 404 without `--intercept`.
pub fn ca_page(proxy: &Proxy) -> Page {
    let Some(interceptor) = &proxy.interceptor else {
        return status_page(
            404,
            "this proxy does not intercept HTTPS (start it with --intercept), so it has no CA",
        );
    };
    let mut head = ResponseHead::new(200);
    head.headers
        .append("Content-Type", "application/x-pem-file");
    head.headers.append(
        "Content-Disposition",
        "attachment; filename=\"porter-ca.pem\"",
    );
    head.headers.append("Cache-Control", "no-store");
    (head, interceptor.ca().cert_pem().as_bytes().to_vec())
}

/// The status page's paragraph linking the CA, with its fingerprint to compare.
pub fn ca_paragraph(interceptor: &Interceptor) -> String {
    format!(
        "<p>HTTPS interception is on: trust <a href=\"/ca.pem\">Porter's CA certificate</a> \
         (SHA-256 <code>{}</code>); <a href=\"/setup\">/setup</a> shows how on every system and \
         client.</p>\n",
        html::escape(&interceptor.ca().fingerprint())
    )
}

/// The status page's rows about interception.
pub fn rows(tls: &TlsStats) -> Vec<(&'static str, String)> {
    let get = TlsStats::get;
    let mut rows = vec![
        (
            "CONNECTs intercepted / tunnelled",
            format!(
                "{} / {}",
                get(&tls.connects_intercepted),
                get(&tls.connects_tunnelled)
            ),
        ),
        (
            "TLS handshakes (clients / origins)",
            format!(
                "{} / {}",
                get(&tls.client_handshakes),
                get(&tls.upstream_handshakes)
            ),
        ),
    ];
    for (side, label) in [
        (Side::Client, "TLS failures with clients"),
        (Side::Upstream, "TLS failures with origins"),
    ] {
        let failures: Vec<String> = Failure::ALL
            .iter()
            .filter(|f| tls.failures(side, **f) > 0)
            .map(|f| format!("{} {}", f.as_str(), tls.failures(side, *f)))
            .collect();
        let value = if failures.is_empty() {
            "none".to_string()
        } else {
            failures.join(", ")
        };
        rows.push((label, value));
    }
    rows.push((
        "Certificates minted / cache hits",
        format!("{} / {}", get(&tls.minted), get(&tls.cert_cache_hits)),
    ));
    rows
}

/// The interception counters in Prometheus text format.
pub fn metrics(out: &mut String, tls: &TlsStats) {
    let _ = writeln!(
        out,
        "# HELP porter_connects_total CONNECT requests answered 200, by what the tunnel became.\n\
         # TYPE porter_connects_total counter\n\
         porter_connects_total{{mode=\"intercepted\"}} {}\n\
         porter_connects_total{{mode=\"tunnelled\"}} {}",
        TlsStats::get(&tls.connects_intercepted),
        TlsStats::get(&tls.connects_tunnelled)
    );
    let _ = writeln!(
        out,
        "# HELP porter_tls_handshakes_total Completed TLS handshakes, by side.\n\
         # TYPE porter_tls_handshakes_total counter\n\
         porter_tls_handshakes_total{{side=\"client\"}} {}\n\
         porter_tls_handshakes_total{{side=\"upstream\"}} {}",
        TlsStats::get(&tls.client_handshakes),
        TlsStats::get(&tls.upstream_handshakes)
    );
    out.push_str("# HELP porter_tls_handshake_failures_total Failed TLS handshakes, by side and reason.\n# TYPE porter_tls_handshake_failures_total counter\n");
    for side in [Side::Client, Side::Upstream] {
        for failure in Failure::ALL {
            let _ = writeln!(
                out,
                "porter_tls_handshake_failures_total{{side=\"{}\",reason=\"{}\"}} {}",
                side.as_str(),
                failure.as_str(),
                tls.failures(side, failure)
            );
        }
    }
    out.push_str(
        "# HELP porter_tls_client_distrusts_ca_total Clients that refused Porter's certificate, by \
         the host they asked for (at most 64 hosts, the rest as \"(other)\").\n\
         # TYPE porter_tls_client_distrusts_ca_total counter\n",
    );
    for (host, n) in tls.distrust.by_host() {
        let _ = writeln!(
            out,
            "porter_tls_client_distrusts_ca_total{{host=\"{}\"}} {n}",
            label(&host)
        );
    }
    for (name, help, value) in [
        (
            "porter_tls_fallback_tunnels_total",
            "CONNECTs tunnelled instead of intercepted because their client refused Porter's \
             certificate for the host (--intercept-fallback tunnel).",
            &tls.distrust.fallback_tunnels,
        ),
        (
            "porter_tls_certificates_minted_total",
            "Leaf certificates minted for intercepted hosts.",
            &tls.minted,
        ),
        (
            "porter_tls_certificate_cache_hits_total",
            "Intercepted handshakes served a leaf from the certificate cache.",
            &tls.cert_cache_hits,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            TlsStats::get(value)
        );
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
