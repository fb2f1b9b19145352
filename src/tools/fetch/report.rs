//! What `porter fetch` prints: one line per request (status, size, time, the cache's outcome, saved
//! path) on stdout, or on stderr when stdout carries the body (`--print`), and human-friendly sizes
//! for it and for error messages.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::http::Headers;
use crate::units::format_duration;

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.0 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The line for one completed request: `200 OK  1.2 KiB  35ms  cache HIT  Download/Example.html`.
/// `cache` is the outcome a cache in the way reported; an error page that was not kept says so, and
/// a body that went to stdout only (`printed`, `--print`) says where it went.
pub fn request_line(
    status: &str,
    bytes: u64,
    elapsed: Duration,
    cache: Option<&str>,
    saved: Option<&Path>,
    printed: bool,
) -> String {
    let mut line = format!(
        "{status}  {}  {}",
        format_size(bytes),
        format_duration(elapsed)
    );
    if let Some(cache) = cache {
        line.push_str(&format!("  cache {cache}"));
    }
    match (saved, printed) {
        (Some(path), _) => line.push_str(&format!("  {}", path.display())),
        (None, true) => line.push_str("  printed (--print saves nothing)"),
        (None, false) => line.push_str("  not saved (--save-errors keeps error pages)"),
    }
    line
}

/// The outcome a cache reported for a response, for the request line: from `Cache-Status` (RFC
/// 9211; the last member is the cache nearest to us) as `HIT`, `MISS` or `REVALIDATED`, else the
/// first word of `X-Cache`.
pub fn cache_outcome(headers: &Headers) -> Option<String> {
    if let Some(status) = headers.get_all("cache-status").last() {
        let nearest = status.rsplit(',').next().unwrap_or("");
        let params: Vec<&str> = nearest.split(';').skip(1).map(str::trim).collect();
        let param = |name: &str| {
            params.iter().find_map(|p| {
                let (key, value) = p.split_once('=').unwrap_or((p, ""));
                key.eq_ignore_ascii_case(name)
                    .then_some(value.trim_matches('"'))
            })
        };
        if param("hit").is_some() {
            return Some("HIT".to_string());
        }
        match param("fwd") {
            Some("stale") if param("fwd-status") == Some("304") => {
                return Some("REVALIDATED".to_string());
            }
            Some(_) => return Some("MISS".to_string()),
            None => {}
        }
    }
    let x_cache = headers.get("x-cache")?.split_whitespace().next()?;
    Some(x_cache.to_ascii_uppercase())
}

/// Where the per-request lines go: stdout, unless stdout carries the body (`--print`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    Stdout,
    Stderr,
}

impl Lines {
    /// Writes a line. A closed stream (`porter fetch ... | head`) is not an error worth a panic,
    /// so write failures are ignored.
    pub fn say(self, line: &str) {
        match self {
            Lines::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
            Lines::Stderr => {
                let mut out = std::io::stderr().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(5 << 30), "5.0 GiB");
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        let path = Path::new("Download/x");
        let line = request_line(
            "200 OK",
            12,
            Duration::from_millis(3),
            None,
            Some(path),
            false,
        );
        assert_eq!(line, "200 OK  12 B  3ms  Download/x");
        let line = request_line(
            "200 OK",
            12,
            Duration::from_millis(3),
            Some("HIT"),
            Some(path),
            false,
        );
        assert_eq!(line, "200 OK  12 B  3ms  cache HIT  Download/x");
        let line = request_line("404 Not Found", 5, Duration::ZERO, None, None, false);
        assert_eq!(
            line,
            "404 Not Found  5 B  0ms  not saved (--save-errors keeps error pages)"
        );
        let line = request_line("200 OK", 5, Duration::ZERO, None, None, true);
        assert_eq!(line, "200 OK  5 B  0ms  printed (--print saves nothing)");
    }

    #[test]
    fn cache_outcomes_from_cache_status_or_x_cache() {
        let outcome =
            |pairs: &[(&str, &str)]| cache_outcome(&pairs.iter().copied().collect::<Headers>());
        assert_eq!(
            outcome(&[("Cache-Status", "porter; hit")]).as_deref(),
            Some("HIT")
        );
        let miss = outcome(&[("Cache-Status", "porter; fwd=miss; stored")]);
        assert_eq!(miss.as_deref(), Some("MISS"));
        let stale = outcome(&[("Cache-Status", "porter; fwd=stale; fwd-status=304")]);
        assert_eq!(stale.as_deref(), Some("REVALIDATED"));
        let nearest = outcome(&[("Cache-Status", "origin-cache; hit, porter; fwd=uri-miss")]);
        assert_eq!(nearest.as_deref(), Some("MISS"));
        assert_eq!(
            outcome(&[("X-Cache", "hit from squid")]).as_deref(),
            Some("HIT")
        );
        assert_eq!(outcome(&[("Content-Type", "text/plain")]), None);
    }
}
