//! The status page at `/`: one self-contained HTML document (inline CSS, no script, no external
//! asset) that refreshes itself every few seconds. Its figures are read from the same counters as
//! `/metrics`, so the two always agree; each figure has an `id` so tests (and scrapers) can find it.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::metrics::Outcome;
use crate::html::escape;
use crate::proxy::Proxy;

/// Seconds between the page's automatic reloads.
pub const REFRESH_SECONDS: u32 = 5;

pub(super) const STYLE: &str = "
:root{--fg:#1d2430;--muted:#5b6678;--line:#dfe3ea;--card:#f6f8fb;--accent:#1f6feb}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ef;--muted:#9aa4b5;--line:#333b47;--card:#1b2029;--accent:#58a6ff}body{background:#12161c}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg)}
main{max-width:1040px;margin:0 auto;padding:20px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:6px 18px;border-bottom:1px solid var(--line);padding-bottom:10px}
h1{font-size:24px;margin:0}
h2{font-size:16px;margin:26px 0 8px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.meta{color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-top:16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .v{font-size:22px;font-weight:600}
.card .k{color:var(--muted);font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:0 28px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 6px;border-bottom:1px solid var(--line)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{color:var(--muted);font-weight:500}
a{color:var(--accent)}
footer{margin-top:26px;color:var(--muted);font-size:13px}
";

/// The whole page.
pub fn render(proxy: &Proxy) -> String {
    let m = &proxy.metrics;
    let server = &proxy.server_stats;
    let config = proxy.config.load();
    let hits = m.count(Outcome::Hit);
    // Every request the cache answered or fetched for; only those served without the origin hit.
    let looked_up = [Outcome::Miss, Outcome::Revalidated, Outcome::Collapsed];
    let lookups = hits + looked_up.iter().map(|o| m.count(*o)).sum::<u64>();
    let hit_bytes = m.bytes(Outcome::Hit);
    let lookup_bytes = hit_bytes + looked_up.iter().map(|o| m.bytes(*o)).sum::<u64>();
    let mut body = String::with_capacity(8 * 1024);
    let _ = write!(
        body,
        "<main>\n<header><h1>Porter</h1><span class=\"meta\">version <span id=\"version\">{}</span></span>\
         <span class=\"meta\">listening on <span id=\"listen\">{}</span></span>\
         <span class=\"meta\">up <span id=\"uptime\">{}</span></span></header>\n<div class=\"cards\">\n",
        env!("CARGO_PKG_VERSION"),
        escape(&proxy.local_addr.to_string()),
        duration(proxy.started.elapsed()),
    );
    let busy = server.in_progress();
    let cards = [
        ("requests", "requests", m.requests().to_string()),
        ("hit-ratio", "hit ratio (requests)", ratio(hits, lookups)),
        (
            "byte-hit-ratio",
            "hit ratio (bytes)",
            ratio(hit_bytes, lookup_bytes),
        ),
        ("sent", "sent to clients", bytes(m.bytes_out())),
        (
            "connections",
            "open connections",
            server.connections.open().to_string(),
        ),
        (
            "in-progress",
            "requests in progress",
            format!("{busy} on {} workers", config.server.workers),
        ),
    ];
    for (id, name, value) in cards {
        let _ = writeln!(
            body,
            "<div class=\"card\"><div class=\"v\" id=\"{id}\">{}</div><div class=\"k\">{name}</div></div>",
            escape(&value)
        );
    }
    body.push_str("</div>\n<div class=\"grid\">\n<section><h2>Requests by outcome</h2>\n<table>\n");
    body.push_str("<tr><th>outcome</th><th>requests</th><th>sent</th></tr>\n");
    for outcome in Outcome::ALL {
        let name = outcome.as_str().to_ascii_lowercase();
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td class=\"n\" id=\"outcome-{name}\">{}</td><td class=\"n\">{}</td></tr>",
            outcome_label(outcome),
            m.count(outcome),
            bytes(m.bytes(outcome))
        );
    }
    body.push_str("</table></section>\n<section><h2>Busiest hosts</h2>\n<table id=\"hosts\">\n");
    body.push_str("<tr><th>host</th><th>requests</th></tr>\n");
    let top = m.hosts.top(10);
    if top.is_empty() {
        body.push_str("<tr><td colspan=\"2\" class=\"meta\">no requests yet</td></tr>\n");
    }
    for (host, count) in top {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td class=\"n\">{count}</td></tr>",
            escape(&host)
        );
    }
    body.push_str("</table></section>\n");
    ecosystems(&mut body, &m.savings);
    if let Some(interceptor) = &proxy.interceptor {
        body.push_str("<section><h2>HTTPS interception</h2>\n<table>\n");
        for (name, value) in crate::proxy::connect::intercept_pages::rows(&interceptor.stats) {
            let _ = writeln!(
                body,
                "<tr><th>{name}</th><td class=\"n\">{}</td></tr>",
                escape(&value)
            );
        }
        body.push_str("</table>\n");
        body.push_str(&crate::proxy::connect::intercept_pages::ca_paragraph(
            interceptor,
        ));
        body.push_str("</section>\n");
    }
    body.push_str("<section><h2>Configuration</h2>\n<table>\n");
    if let Some(cache) = &proxy.cache {
        let _ = writeln!(
            body,
            "<tr><th>cache entries</th><td id=\"cache-entries\">{}</td></tr>",
            cache.stats().entries
        );
    }
    for (name, value) in summary(proxy) {
        let _ = writeln!(body, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    let _ = write!(
        body,
        "</table></section>\n</div>\n<footer>Refreshes every {REFRESH_SECONDS} s · \
         <a href=\"/setup\">/setup</a> · <a href=\"/metrics\">/metrics</a> · \
         <a href=\"/proxy.pac\">/proxy.pac</a></footer>\n</main>"
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>Porter status</title><style>{STYLE}</style></head>\n<body>{body}</body></html>\n"
    )
}

/// The configuration summary rows.
fn summary(proxy: &Proxy) -> Vec<(&'static str, String)> {
    let config = proxy.config.load();
    let cache = match (&proxy.cache, &config.cache_dir) {
        (Some(cache), Some(dir)) => {
            let stats = cache.stats();
            format!(
                "{} · {} of {}",
                dir.display(),
                bytes(stats.bytes),
                bytes(config.cache_size),
            )
        }
        (None, Some(dir)) => format!("{} · not in use (disk error)", dir.display()),
        (_, None) => "off (--no-cache)".to_string(),
    };
    let reloads = proxy.config.reloads.load(Ordering::Relaxed);
    let failed = proxy.config.failed_reloads.load(Ordering::Relaxed);
    vec![
        ("workers", config.server.workers.to_string()),
        ("cache", cache),
        ("memory cache", bytes(config.memory_cache_size)),
        (
            "allowed clients",
            config
                .server
                .allow
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "proxy authentication",
            if config.auth.is_empty() { "off" } else { "on" }.to_string(),
        ),
        (
            "denied hosts",
            plural(config.deny_hosts.len() as u64, "rule", "rules"),
        ),
        (
            "allowed destinations",
            if config.allow.is_active() {
                format!(
                    "only {} and {} (--allow-host, --allow-dest)",
                    plural(config.allow.hosts.len() as u64, "host rule", "host rules"),
                    plural(config.allow.dests.len() as u64, "network", "networks"),
                )
            } else {
                "any".to_string()
            },
        ),
        (
            "CONNECT ports",
            config
                .connect_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "HTTPS interception",
            if proxy.interceptor.is_some() {
                "on"
            } else {
                "off"
            }
            .to_string(),
        ),
        ("Via", if config.via { "on" } else { "off" }.to_string()),
        ("reloads", format!("{reloads} applied, {failed} refused")),
    ]
}

/// The "Bytes by ecosystem" table: from cache and from upstream, the ecosystems with any bytes.
fn ecosystems(body: &mut String, savings: &super::savings::Savings) {
    use super::savings::Source;
    use crate::cache::ecosystem::Ecosystem;
    body.push_str("<section><h2>Bytes by ecosystem</h2>\n<table id=\"ecosystems\">\n");
    body.push_str("<tr><th>ecosystem</th><th>from cache</th><th>from upstream</th></tr>\n");
    let mut any = false;
    for eco in Ecosystem::ALL {
        let cache = savings.ecosystem_bytes(eco, Source::Cache);
        let upstream = savings.ecosystem_bytes(eco, Source::Upstream);
        if cache + upstream == 0 {
            continue;
        }
        any = true;
        let name = eco.as_str();
        let _ = writeln!(
            body,
            "<tr><td>{name}</td><td class=\"n\" id=\"eco-{name}-cache\">{}</td>\
             <td class=\"n\" id=\"eco-{name}-upstream\">{}</td></tr>",
            bytes(cache),
            bytes(upstream)
        );
    }
    if !any {
        body.push_str("<tr><td colspan=\"3\" class=\"meta\">nothing served yet</td></tr>\n");
    }
    body.push_str("</table></section>\n");
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Hit => "cache hits",
        Outcome::Miss => "cache misses",
        Outcome::Revalidated => "revalidated",
        Outcome::Collapsed => "read while another stored it",
        Outcome::Pass => "passed through",
        Outcome::Tunnel => "tunnels (CONNECT)",
        Outcome::Intercept => "intercepted CONNECTs",
        Outcome::Denied => "denied",
        Outcome::Local => "own pages",
        Outcome::Error => "errors",
    }
}

/// `1 rule`, `2 rules`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `part` of `whole` as a percentage with one decimal, `-` when there is nothing to divide.
pub fn ratio(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`, `1.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An uptime as people say it: `42s`, `5m 07s`, `1h 02m`, `3d 04h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1 << 30), "1.0 GiB");
        assert_eq!(duration(Duration::from_secs(42)), "42s");
        assert_eq!(duration(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(duration(Duration::from_secs(90_000)), "1d 01h");
        assert_eq!(ratio(1, 3), "33.3%");
        assert_eq!(ratio(0, 0), "-");
    }
}
