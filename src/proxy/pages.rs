//! Responses the proxy writes itself: error pages, and its own pages for origin-form requests
//! (`/` status, `/metrics` in Prometheus text format, `/proxy.pac` for browsers).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::Ordering;

use super::Proxy;
use super::metrics::Outcome;
use crate::http::{self, RequestHead, ResponseHead, write};
use crate::net::server::html_escape;

/// Writes a complete response with a body from memory in one write; returns the bytes sent.
pub fn send(
    stream: &mut impl Write,
    mut head: ResponseHead,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> io::Result<u64> {
    head.headers.set("Content-Length", body.len().to_string());
    if !keep_alive {
        head.headers.set("Connection", "close");
    }
    let mut out = Vec::with_capacity(256 + body.len());
    write::response_head(&mut out, &head);
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    Ok(out.len() as u64)
}

/// A small HTML page saying what went wrong.
pub fn error_page(status: u16, message: &str) -> (ResponseHead, Vec<u8>) {
    let reason = http::reason_phrase(status);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n\
         <body><h1>{status} {reason}</h1>\n<p>{}</p>\n<hr><address>porter</address></body></html>\n",
        html_escape(message)
    );
    let mut head = ResponseHead::new(status);
    head.headers
        .append("Content-Type", "text/html; charset=utf-8");
    head.headers.append("Cache-Control", "no-store");
    (head, body.into_bytes())
}

/// The answer of the last hop to TRACE or OPTIONS with `Max-Forwards: 0` (RFC 9110 §9.3.7, §9.3.8).
/// TRACE echoes the request head, minus the fields that may carry secrets.
pub fn final_hop(req: &RequestHead) -> (ResponseHead, Vec<u8>) {
    let mut head = ResponseHead::new(200);
    if req.method == "OPTIONS" {
        head.headers.append(
            "Allow",
            "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT",
        );
        return (head, Vec::new());
    }
    let mut echoed = req.clone();
    for secret in ["proxy-authorization", "authorization", "cookie"] {
        echoed.headers.remove(secret);
    }
    let mut body = Vec::new();
    write::request_head(&mut body, &echoed);
    head.headers.append("Content-Type", "message/http");
    (head, body)
}

/// Answers an origin-form request addressed to the proxy itself.
pub fn own_page(proxy: &Proxy, req: &RequestHead) -> (ResponseHead, Vec<u8>) {
    if req.method != "GET" && req.method != "HEAD" {
        let (mut head, body) = error_page(405, "the proxy's own pages answer GET and HEAD only");
        head.headers.append("Allow", "GET, HEAD");
        return (head, body);
    }
    let path = req.target.split('?').next().unwrap_or("/");
    if path == "/ca.pem" {
        return ca_page(proxy);
    }
    let (content_type, body) = match path {
        "/" => ("text/html; charset=utf-8", status_page(proxy)),
        "/metrics" => ("text/plain; version=0.0.4", metrics_text(proxy)),
        "/proxy.pac" => ("application/x-ns-proxy-autoconfig", pac_file(proxy, req)),
        _ => {
            return error_page(
                404,
                "this is a proxy: configure it as your HTTP proxy rather than visiting it; \
                 its own pages are /, /metrics, /proxy.pac and /ca.pem",
            );
        }
    };
    let mut head = ResponseHead::new(200);
    head.headers.append("Content-Type", content_type);
    head.headers.append("Cache-Control", "no-store");
    (head, body.into_bytes())
}

/// The interception CA's certificate (never its key), for clients to download and trust.
fn ca_page(proxy: &Proxy) -> (ResponseHead, Vec<u8>) {
    let Some(interceptor) = &proxy.interceptor else {
        return error_page(
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

fn status_page(proxy: &Proxy) -> String {
    let m = &proxy.metrics;
    let server = &proxy.server_stats;
    let hits = m.count(Outcome::Hit);
    let lookups = hits + m.count(Outcome::Miss) + m.count(Outcome::Revalidated);
    let ratio = if lookups == 0 {
        0.0
    } else {
        100.0 * hits as f64 / lookups as f64
    };
    let mut rows = vec![
        ("Uptime", format!("{} s", proxy.started.elapsed().as_secs())),
        ("Requests", m.requests().to_string()),
        (
            "Cache hit ratio",
            format!("{ratio:.1}% ({hits} of {lookups})"),
        ),
        ("Open connections", server.connections.open().to_string()),
        (
            "Workers busy",
            format!(
                "{} of {}",
                server.busy_workers.load(Ordering::Relaxed),
                proxy.config.workers
            ),
        ),
        (
            "Queued connections",
            server.queued.load(Ordering::Relaxed).to_string(),
        ),
        ("Bytes sent to clients", m.bytes_out().to_string()),
    ];
    if let Some(cache) = &proxy.cache {
        let stats = cache.stats();
        rows.push(("Cache entries", stats.entries.to_string()));
        rows.push(("Cache bytes", stats.bytes.to_string()));
        rows.push(("Revalidations", m.count(Outcome::Revalidated).to_string()));
    }
    if let Some(interceptor) = &proxy.interceptor {
        let tls = &interceptor.stats;
        let get = crate::tls::TlsStats::get;
        rows.push((
            "CONNECTs intercepted / tunnelled",
            format!(
                "{} / {}",
                get(&tls.connects_intercepted),
                get(&tls.connects_tunnelled)
            ),
        ));
        rows.push((
            "TLS handshakes (clients / upstream)",
            format!(
                "{} / {}",
                get(&tls.client_handshakes),
                get(&tls.upstream_handshakes)
            ),
        ));
        for side in [crate::tls::Side::Client, crate::tls::Side::Upstream] {
            let failures: Vec<String> = crate::tls::Failure::ALL
                .iter()
                .filter(|f| tls.failures(side, **f) > 0)
                .map(|f| format!("{} {}", f.as_str(), tls.failures(side, *f)))
                .collect();
            let label = match side {
                crate::tls::Side::Client => "TLS failures with clients",
                crate::tls::Side::Upstream => "TLS failures with origins",
            };
            rows.push((
                label,
                if failures.is_empty() {
                    "none".to_string()
                } else {
                    failures.join(", ")
                },
            ));
        }
        rows.push((
            "Certificates minted / cache hits",
            format!("{} / {}", get(&tls.minted), get(&tls.cert_cache_hits)),
        ));
    }
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><title>Porter status</title></head><body>\n<h1>Porter</h1>\n<table>\n",
    );
    for (name, value) in rows {
        let _ = writeln!(
            html,
            "<tr><th>{name}</th><td>{}</td></tr>",
            html_escape(&value)
        );
    }
    html.push_str("</table>\n<p><a href=\"/metrics\">metrics</a> · <a href=\"/proxy.pac\">proxy.pac</a></p>\n");
    if let Some(interceptor) = &proxy.interceptor {
        let _ = writeln!(
            html,
            "<p>HTTPS interception is on: trust <a href=\"/ca.pem\">Porter's CA certificate</a> \
             (SHA-256 <code>{}</code>).</p>",
            html_escape(&interceptor.ca().fingerprint())
        );
    }
    html.push_str("</body></html>\n");
    html
}

fn metrics_text(proxy: &Proxy) -> String {
    let m = &proxy.metrics;
    let server = &proxy.server_stats;
    let mut out = String::new();
    out.push_str("# HELP porter_requests_total Requests handled, by outcome.\n# TYPE porter_requests_total counter\n");
    for outcome in Outcome::ALL {
        let _ = writeln!(
            out,
            "porter_requests_total{{outcome=\"{}\"}} {}",
            outcome.as_str().to_ascii_lowercase(),
            m.count(outcome)
        );
    }
    let gauges = [
        (
            "porter_sent_bytes_total",
            "counter",
            "Bytes sent to clients.",
            m.bytes_out(),
        ),
        (
            "porter_uptime_seconds",
            "gauge",
            "Seconds since start.",
            proxy.started.elapsed().as_secs(),
        ),
        (
            "porter_open_connections",
            "gauge",
            "Open client connections.",
            server.connections.open() as u64,
        ),
        (
            "porter_busy_workers",
            "gauge",
            "Workers serving a request.",
            server.busy_workers.load(Ordering::Relaxed) as u64,
        ),
        (
            "porter_workers",
            "gauge",
            "Worker threads.",
            proxy.config.workers as u64,
        ),
        (
            "porter_queued_connections",
            "gauge",
            "Connections waiting for a worker.",
            server.queued.load(Ordering::Relaxed) as u64,
        ),
        (
            "porter_refused_connections_total",
            "counter",
            "Connections refused at accept.",
            server.refused.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    if let Some(cache) = &proxy.cache {
        let stats = cache.stats();
        let cache_figures = [
            (
                "porter_cache_entries",
                "gauge",
                "Entries in the cache.",
                stats.entries,
            ),
            (
                "porter_cache_bytes",
                "gauge",
                "Bytes the cache uses on disk.",
                stats.bytes,
            ),
            (
                "porter_cache_hits_total",
                "counter",
                "Requests served from the cache.",
                m.count(Outcome::Hit),
            ),
            (
                "porter_cache_misses_total",
                "counter",
                "Cacheable requests fetched from the origin.",
                m.count(Outcome::Miss),
            ),
            (
                "porter_cache_revalidations_total",
                "counter",
                "Stale entries confirmed by the origin.",
                m.count(Outcome::Revalidated),
            ),
        ];
        for (name, kind, help, value) in cache_figures {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    if let Some(interceptor) = &proxy.interceptor {
        tls_metrics(&mut out, &interceptor.stats);
    }
    out
}

/// The interception counters in Prometheus text format.
fn tls_metrics(out: &mut String, tls: &crate::tls::TlsStats) {
    use crate::tls::{Failure, Side, TlsStats};
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
    for (name, help, value) in [
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

/// A PAC file sending every http and https request through this proxy, as the client reached it.
fn pac_file(proxy: &Proxy, req: &RequestHead) -> String {
    let address = req
        .headers
        .get("host")
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains('"'))
        .map(str::to_string)
        .unwrap_or_else(|| proxy.local_addr.to_string());
    format!(
        "function FindProxyForURL(url, host) {{\n  \
         if (url.substring(0, 5) === \"http:\" || url.substring(0, 6) === \"https:\") {{\n    \
         return \"PROXY {address}\";\n  }}\n  return \"DIRECT\";\n}}\n"
    )
}
