//! Responses the proxy writes itself: error pages, and its own pages for origin-form requests
//! (`/` status, written by `dashboard`, `/metrics` in Prometheus text format, `/proxy.pac` for
//! browsers, `/ca.pem` with `--intercept`, whose parts are in `intercept_pages`).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::Ordering;

use super::metrics::Outcome;
use crate::html;
use crate::http::{self, Method, RequestHead, ResponseHead, write};
use crate::proxy::Proxy;
use crate::proxy::exchange::Answer;

/// A response the proxy wrote itself: its head and a body in memory.
pub type Page = (ResponseHead, Vec<u8>);

/// Writes a complete response with a body from memory in one write; returns the bytes sent.
pub fn send(
    stream: &mut impl Write,
    mut head: ResponseHead,
    body: &[u8],
    answer: Answer,
) -> io::Result<u64> {
    head.headers.set("Content-Length", body.len().to_string());
    if let Some(value) = http::connection_field(answer.version, answer.reuse.keeps_alive()) {
        head.headers.set("Connection", value);
    }
    let mut out = Vec::with_capacity(256 + body.len());
    write::response_head(&mut out, &head);
    if !answer.head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    Ok(out.len() as u64)
}

/// A small HTML page for a status, saying what went wrong (or, for the proxy's own answers, what
/// happened).
pub fn status_page(status: u16, message: &str) -> Page {
    let body = html::status_page(status, message, "porter");
    let mut head = ResponseHead::new(status);
    head.headers
        .append("Content-Type", "text/html; charset=utf-8");
    head.headers.append("Cache-Control", "no-store");
    (head, body.into_bytes())
}

/// A plain-text answer (the PURGE result), never stored.
pub fn text(status: u16, text: String) -> Page {
    let mut head = ResponseHead::new(status);
    head.headers
        .append("Content-Type", "text/plain; charset=utf-8");
    head.headers.append("Cache-Control", "no-store");
    (head, text.into_bytes())
}

/// The answer of the last hop to TRACE or OPTIONS with `Max-Forwards: 0` (RFC 9110 §9.3.7, §9.3.8).
/// TRACE echoes the request head, minus the fields that may carry secrets.
pub fn final_hop(req: &RequestHead) -> Page {
    let mut head = ResponseHead::new(200);
    if req.method == Method::Options {
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
pub fn own_page(proxy: &Proxy, req: &RequestHead) -> Page {
    if req.method != Method::Get && req.method != Method::Head {
        let (mut head, body) = status_page(405, "the proxy's own pages answer GET and HEAD only");
        head.headers.append("Allow", "GET, HEAD");
        return (head, body);
    }
    let path = req.target.split('?').next().unwrap_or("/");
    if path == "/ca.pem" {
        return crate::proxy::connect::intercept_pages::ca_page(proxy);
    }
    let (content_type, body) = match path {
        "/" => ("text/html; charset=utf-8", super::dashboard::render(proxy)),
        "/metrics" => ("text/plain; version=0.0.4", metrics_text(proxy)),
        "/proxy.pac" => ("application/x-ns-proxy-autoconfig", pac_file(proxy, req)),
        _ => {
            return status_page(
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
            "porter_requests_in_progress",
            "gauge",
            "Client connections with a request begun and not yet answered.",
            server.in_progress() as u64,
        ),
        (
            "porter_workers",
            "gauge",
            "Worker threads.",
            proxy.config.load().server.workers as u64,
        ),
        (
            "porter_queued_connections",
            "gauge",
            "Accepted connections a worker has not taken yet.",
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
    out.push_str("# HELP porter_waiting_connections Client connections waiting on a peer or an entry, by state.\n# TYPE porter_waiting_connections gauge\n");
    for state in crate::runtime::State::ALL {
        let _ = writeln!(
            out,
            "porter_waiting_connections{{state=\"{}\"}} {}",
            state.as_str(),
            server.waiting(state)
        );
    }
    let _ = writeln!(
        out,
        "# HELP porter_task_stack_high_water_bytes The deepest stack any finished connection task touched, of {} per task.\n# TYPE porter_task_stack_high_water_bytes gauge\nporter_task_stack_high_water_bytes {}",
        crate::runtime::STACK_BYTES,
        server.stack_high_water()
    );
    out.push_str("# HELP porter_outcome_sent_bytes_total Bytes sent to clients, by outcome.\n# TYPE porter_outcome_sent_bytes_total counter\n");
    for outcome in Outcome::ALL {
        let _ = writeln!(
            out,
            "porter_outcome_sent_bytes_total{{outcome=\"{}\"}} {}",
            outcome.as_str().to_ascii_lowercase(),
            m.bytes(outcome)
        );
    }
    let reloads = &proxy.config;
    let _ = writeln!(
        out,
        "# HELP porter_config_reloads_total Configuration reloads (SIGHUP), applied or refused.\n\
         # TYPE porter_config_reloads_total counter\n\
         porter_config_reloads_total{{result=\"applied\"}} {}\n\
         porter_config_reloads_total{{result=\"refused\"}} {}",
        reloads.reloads.load(Ordering::Relaxed),
        reloads.failed_reloads.load(Ordering::Relaxed)
    );
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
        crate::proxy::connect::intercept_pages::metrics(&mut out, &interceptor.stats);
    }
    out.push_str(&proxy.parents.metrics_text());
    out
}

/// The PAC file: every http and https request through this proxy as the client reached it, or spread
/// over the tier's nodes with `--pac-peer` (pac.rs).
fn pac_file(proxy: &Proxy, req: &RequestHead) -> String {
    let address = req
        .headers
        .get("host")
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains('"'))
        .map(str::to_string)
        .unwrap_or_else(|| proxy.local_addr.to_string());
    super::pac::script(&address, &proxy.config.load().pac_peers)
}
