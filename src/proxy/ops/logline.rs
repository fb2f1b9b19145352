//! The access log's line formats (`--log-format`): Porter's own, Squid's native `access.log`, and
//! JSON. Writing the lines is `access_log`'s; this only shapes one entry.
//!
//! The Squid line is Squid's default `squid` logformat,
//! `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`, e.g.
//!
//! ```text
//! 1733061600.123     12 127.0.0.1 TCP_MISS/200 1543 GET http://example.com/ - HIER_DIRECT/example.com text/html
//! ```
//!
//! which GoAccess (`--log-format=SQUID`), SARG and Calamaris read; when the cache has something to
//! say (why a response was not stored, the Cache-Status `detail`) an eleventh field
//! `detail=no-freshness` follows, which those readers skip. Squid logs
//! the peer's address after the hierarchy code; Porter logs the origin's host name, as Squid does
//! when it has not resolved one.
//!
//! Every field that comes from outside (method, URL, host, user, Content-Type, parent) goes through
//! [`crate::printable::escape`] in every format, so a C1 control or a bidi override in a host or a
//! header reaches neither the terminal nor the reader of the log raw.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use super::metrics::{AccessEntry, Outcome};
use crate::access_log::LogFormat;
use crate::printable::escape;

/// The entry's line in `format`, with the query string dropped unless `query`.
pub fn format(entry: &AccessEntry, format: LogFormat, query: bool) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let url = if query {
        entry.url.as_str()
    } else {
        entry.url.split('?').next().unwrap_or_default()
    };
    let url = &*escape(url);
    let method = &*escape(&entry.method);
    let elapsed = entry.start.elapsed().as_millis();
    let user = entry.user.as_deref().map(escape);
    let user = user.as_deref();
    let content_type = entry.content_type.as_deref().map(escape);
    let content_type = content_type.as_deref();
    let parent = entry.parent.as_deref().map(escape);
    let parent = parent.as_deref();
    match format {
        LogFormat::Porter => {
            let mut line = format!(
                "{}.{:03} {elapsed}ms {} {} {url} {} {} {}",
                now.as_secs(),
                now.subsec_millis(),
                entry.client,
                method,
                entry.status,
                entry.bytes,
                entry.outcome.as_str()
            );
            if let Some(detail) = entry.detail {
                let _ = write!(line, " detail={detail}");
            }
            if let Some(parent) = parent {
                // Squid's hierarchy code for "the first parent that is up".
                let _ = write!(line, " FIRSTUP_PARENT/{parent}");
            }
            if let Some(user) = user {
                let _ = write!(line, " user={user}");
            }
            line
        }
        LogFormat::Squid => {
            let hierarchy = match (squid_forwarded(entry), parent, host_of(url)) {
                (true, Some(parent), _) => {
                    let host = host_of(parent).unwrap_or(parent);
                    format!("FIRSTUP_PARENT/{host}")
                }
                (true, None, Some(host)) => format!("HIER_DIRECT/{host}"),
                _ => "HIER_NONE/-".to_string(),
            };
            let mut line = format!(
                "{}.{:03} {elapsed:>6} {} {}/{:03} {} {} {} {} {hierarchy} {}",
                now.as_secs(),
                now.subsec_millis(),
                entry.client.ip(),
                squid_code(entry),
                entry.status,
                entry.bytes,
                method,
                no_spaces(url),
                user.map_or("-".into(), no_spaces),
                content_type.map_or("-".into(), no_spaces),
            );
            // An eleventh field, only when there is something to say: Squid's logformat allows
            // fields after its ten, and the analysers stop reading after the ones they know.
            if let Some(detail) = entry.detail {
                let _ = write!(line, " detail={detail}");
            }
            line
        }
        LogFormat::Json => {
            let line = JsonLine {
                time: crate::timefmt::rfc3339(SystemTime::now()),
                elapsed_ms: elapsed as u64,
                client: entry.client.ip().to_string(),
                user,
                method,
                url,
                status: entry.status,
                bytes: entry.bytes,
                outcome: entry.outcome.as_str(),
                squid_code: squid_code(entry),
                content_type,
                detail: entry.detail,
                parent,
            };
            serde_json::to_string(&line).unwrap_or_default()
        }
    }
}

/// The JSON line; the field names are stable.
#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    elapsed_ms: u64,
    client: String,
    user: Option<&'a str>,
    method: &'a str,
    url: &'a str,
    status: u16,
    bytes: u64,
    outcome: &'static str,
    squid_code: &'static str,
    content_type: Option<&'a str>,
    detail: Option<&'static str>,
    parent: Option<&'a str>,
}

/// Squid's result code for the outcome (`%Ss`).
pub fn squid_code(entry: &AccessEntry) -> &'static str {
    match entry.outcome {
        Outcome::Hit if entry.status == 304 => "TCP_INM_HIT",
        Outcome::Hit => "TCP_HIT",
        Outcome::Miss | Outcome::Pass => "TCP_MISS",
        Outcome::Revalidated => "TCP_REFRESH_UNMODIFIED",
        // Squid's code for a request served by collapsed forwarding from another's fetch.
        Outcome::Collapsed => "TCP_CF_HIT",
        Outcome::Tunnel => "TCP_TUNNEL",
        // Squid's ssl-bump logs the bumped CONNECT as NONE/200 and then each request inside it.
        Outcome::Intercept => "NONE",
        Outcome::Denied => "TCP_DENIED",
        // Squid answers its own pages (cachemgr) as misses with no peer.
        Outcome::Local => "TCP_MISS",
        Outcome::Error if entry.status >= 500 => "TCP_MISS",
        Outcome::Error => "NONE",
    }
}

/// Whether the request went to an origin (Squid's `HIER_DIRECT`).
fn squid_forwarded(entry: &AccessEntry) -> bool {
    match entry.outcome {
        Outcome::Miss | Outcome::Pass | Outcome::Revalidated | Outcome::Tunnel => true,
        Outcome::Intercept => false,
        Outcome::Error => entry.status >= 500,
        Outcome::Hit | Outcome::Collapsed | Outcome::Denied | Outcome::Local => false,
    }
}

/// Squid's fields are separated by spaces, so a value must not hold one.
fn no_spaces(text: &str) -> String {
    text.replace(|c: char| c.is_whitespace(), "%20")
}

/// The host of a logged URL (`http://host:port/path`) or CONNECT target (`host:port`), lowercased;
/// `None` for the proxy's own pages and unparsed requests.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        None if url.starts_with('/') || url == "-" => return None,
        None => url,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(outcome: Outcome, status: u16, url: &str) -> AccessEntry {
        let mut entry = AccessEntry::new("127.0.0.1:5000".parse().unwrap(), "GET", url);
        entry.outcome = outcome;
        entry.status = status;
        entry.bytes = 1234;
        entry
    }

    #[test]
    fn squid_lines_have_squids_ten_fields() {
        let mut e = entry(Outcome::Miss, 200, "http://example.com/a?b=c d");
        e.content_type = Some("text/html; charset=utf-8".into());
        e.user = Some("alice".into());
        let line = format(&e, LogFormat::Squid, true);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 10, "{line}");
        assert!(fields[0].contains('.') && fields[0].split('.').nth(1).unwrap().len() == 3);
        assert_eq!(fields[2..5], ["127.0.0.1", "TCP_MISS/200", "1234"]);
        assert_eq!(
            fields[5..9],
            [
                "GET",
                "http://example.com/a?b=c%20d",
                "alice",
                "HIER_DIRECT/example.com"
            ]
        );
        assert_eq!(fields[9], "text/html;%20charset=utf-8");
        let denied = format(
            &entry(Outcome::Denied, 403, "x.test:25"),
            LogFormat::Squid,
            true,
        );
        assert!(
            denied.contains(" TCP_DENIED/403 ") && denied.contains(" HIER_NONE/- "),
            "{denied}"
        );
    }

    #[test]
    fn squid_lines_end_with_the_detail_when_there_is_one() {
        let mut e = entry(Outcome::Miss, 200, "http://example.com/a");
        e.detail = Some("no-freshness");
        let line = format(&e, LogFormat::Squid, true);
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 11, "{line}");
        assert_eq!(fields[10], "detail=no-freshness");
    }

    #[test]
    fn log_query_off_drops_query_strings_in_every_format() {
        for format_ in [LogFormat::Porter, LogFormat::Squid, LogFormat::Json] {
            let line = format(
                &entry(Outcome::Hit, 200, "http://h/p?token=secret"),
                format_,
                false,
            );
            assert!(
                !line.contains("secret") && line.contains("http://h/p"),
                "{line}"
            );
        }
    }

    #[test]
    fn json_lines_have_stable_names() {
        let line = format(
            &entry(Outcome::Tunnel, 200, "h.test:443"),
            LogFormat::Json,
            true,
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["outcome"], "TUNNEL");
        assert_eq!(value["squid_code"], "TCP_TUNNEL");
        assert_eq!(value["status"], 200);
        assert_eq!(value["client"], "127.0.0.1");
        assert!(value["user"].is_null());
    }

    #[test]
    fn hosts_of_urls_and_connect_targets() {
        assert_eq!(host_of("http://Example.com:8080/x"), Some("Example.com"));
        assert_eq!(host_of("example.com:443"), Some("example.com"));
        assert_eq!(host_of("http://[::1]:80/"), Some("::1"));
        assert_eq!(host_of("/metrics"), None);
        assert_eq!(host_of("-"), None);
    }
}
