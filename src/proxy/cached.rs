//! GET and HEAD through the cache: serve a fresh hit, revalidate a stale one, or fetch and store a miss.
//!
//! ```text
//!  lookup ─┬─ found ─ policy::before_request ─┬─ Fresh / StaleAllowed ─> serve hit (304 if the client's copy is current)
//!          │                                  └─ Revalidate ─> origin with validators ─┬─ 304 ─> update head, serve hit
//!          │                                                                           └─ other ─> relay (and store)
//!          └─ none ─ only-if-cached ─> 504
//!                  └ one fetcher per URL (others wait, then look again) ─> relay, store if allowed
//! ```

use std::io::{self, Read, Write};
use std::time::SystemTime;

use super::metrics::{AccessEntry, Outcome};
use super::target::Target;
use super::{Fetched, Proxy, ProxyError, forward};
use crate::cache::lock::Lease;
use crate::cache::policy::{self, CacheControl, Decision};
use crate::cache::{Cache, Found};
use crate::http::body::BodyMode;
use crate::http::{RequestHead, ResponseHead, write};
use crate::net::Conn;

/// Bodies up to this size leave in the same write as their head.
const SMALL_HIT: u64 = 32 * 1024;

type Result<T> = std::result::Result<T, (ProxyError, bool)>;

impl Proxy {
    pub(super) fn through_cache(
        &self,
        cache: &Cache,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
    ) -> Result<bool> {
        let directives = CacheControl::parse_request(&req.headers);
        if directives.no_store {
            return self.pass(conn, req, target, entry);
        }
        // Two looks at most: the second after waiting for another request's fetch of the same URL.
        for attempt in 0..2 {
            if let Some(mut found) = cache.lookup(&target.url, req) {
                let now = SystemTime::now();
                let decision = policy::before_request(
                    req,
                    &found.meta.head,
                    found.meta.request_time,
                    found.meta.response_time,
                    now,
                );
                match decision {
                    Decision::Fresh | Decision::StaleAllowed if cache.verify(&mut found) => {
                        entry.outcome = Outcome::Hit;
                        return self.serve_hit(conn, req, found, entry, "porter; hit", now);
                    }
                    Decision::Revalidate
                        if !directives.only_if_cached && cache.verify(&mut found) =>
                    {
                        return self.revalidate(cache, conn, req, target, found, entry);
                    }
                    _ => {}
                }
            }
            if directives.only_if_cached {
                entry.outcome = Outcome::Miss;
                return Err((ProxyError::NotCached, false));
            }
            if req.method == "HEAD" {
                break;
            }
            match cache.lock(&target.url, self.config.origin_timeout) {
                Lease::Leader(_guard) => {
                    return self.fetch_and_store(cache, conn, req, target, entry, "fwd=miss");
                }
                Lease::Waited if attempt == 0 => continue,
                Lease::Waited => break,
            }
        }
        entry.outcome = Outcome::Miss;
        let fetched = self.fetch(conn, req, target, &[]).map_err(|e| (e, false))?;
        let status = cache_status("fwd=miss", Some("method"), false);
        self.relay(conn, fetched, req, target, entry, &status, None)
    }

    /// Fetches from the origin and relays, storing the response when policy allows.
    fn fetch_and_store(
        &self,
        cache: &Cache,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
        forward_reason: &str,
    ) -> Result<bool> {
        entry.outcome = Outcome::Miss;
        let fetched = self.fetch(conn, req, target, &[]).map_err(|e| (e, false))?;
        self.relay_and_store(cache, conn, fetched, req, target, entry, forward_reason)
    }

    #[allow(clippy::too_many_arguments)]
    fn relay_and_store(
        &self,
        cache: &Cache,
        conn: &mut Conn,
        fetched: Fetched,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
        forward_reason: &str,
    ) -> Result<bool> {
        let verdict = match policy::storable(req, &fetched.head) {
            Err(reason) => Err(reason.as_str()),
            Ok(()) => match fetched.mode {
                BodyMode::CloseDelimited => Err("close-delimited"),
                BodyMode::Length(n) if n > cache.max_object_size() => Err("too-large"),
                _ => Ok(()),
            },
        };
        let writer = match verdict {
            Ok(()) => cache.writer(
                &target.url,
                req,
                &fetched.head,
                fetched.request_time,
                fetched.response_time,
            ),
            Err(_) => None,
        };
        let detail = match (&verdict, &writer) {
            (Err(reason), _) => Some(*reason),
            (Ok(()), None) => Some("store-failed"),
            (Ok(()), Some(_)) => None,
        };
        let status = cache_status(forward_reason, detail, writer.is_some());
        self.relay(conn, fetched, req, target, entry, &status, writer)
    }

    /// Asks the origin whether a stale entry is still good; a 304 refreshes and serves it.
    fn revalidate(
        &self,
        cache: &Cache,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        mut found: Found,
        entry: &mut AccessEntry,
    ) -> Result<bool> {
        let validators = policy::validators(&found.meta.head);
        let fetched = self
            .fetch(conn, req, target, &validators)
            .map_err(|e| (e, false))?;
        if fetched.head.status != 304 {
            entry.outcome = Outcome::Miss;
            return self.relay_and_store(cache, conn, fetched, req, target, entry, "fwd=stale");
        }
        let Fetched {
            origin,
            head,
            request_time,
            response_time,
            ..
        } = fetched;
        if head.keep_alive() {
            self.origins.checkin(&target.host, target.port, origin);
        }
        policy::update_from_304(&mut found.meta.head, &head);
        found.meta.request_time = request_time;
        found.meta.response_time = response_time;
        if let Err(e) = cache.update_head(&target.url, &mut found) {
            log::debug!("cache: could not refresh {}: {e}", target.url);
        }
        entry.outcome = Outcome::Revalidated;
        let now = SystemTime::now();
        self.serve_hit(
            conn,
            req,
            found,
            entry,
            "porter; fwd=stale; fwd-status=304",
            now,
        )
    }

    /// Sends a stored response: 304 when the client's conditional matches, else the whole entry, with
    /// Age, Via, Cache-Status and X-Cache. Large bodies go file-to-socket (sendfile).
    fn serve_hit(
        &self,
        conn: &mut Conn,
        req: &RequestHead,
        mut found: Found,
        entry: &mut AccessEntry,
        cache_status: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let meta = &found.meta;
        let age = policy::current_age(&meta.head, meta.request_time, meta.response_time, now);
        let body_len = found.entry.decoded.body_len;
        let not_modified = policy::client_has_current(req, &meta.head);
        let mut head = if not_modified {
            not_modified_head(&meta.head)
        } else {
            meta.head.clone()
        };
        head.version = crate::http::Version::Http11;
        if !not_modified {
            head.headers.set("Content-Length", body_len.to_string());
        }
        head.headers.set("Age", policy::age_header(age));
        forward::append_via(&mut head.headers, meta.head.version, &self.via);
        head.headers.append("Cache-Status", cache_status);
        head.headers.append("X-Cache", "HIT");
        let keep_alive = req.keep_alive();
        if !keep_alive {
            head.headers.set("Connection", "close");
        } else if req.version == crate::http::Version::Http10 {
            head.headers.set("Connection", "keep-alive");
        }
        entry.status = head.status;
        let mut out = Vec::with_capacity(1024);
        write::response_head(&mut out, &head);
        let send_body = !not_modified && req.method != "HEAD";
        if send_body && body_len <= SMALL_HIT {
            let start = out.len();
            out.resize(start + body_len as usize, 0);
            found
                .entry
                .file
                .read_exact(&mut out[start..])
                .map_err(|e| (ProxyError::CacheRead(e), false))?;
        }
        conn.stream
            .write_all(&out)
            .map_err(|e| (ProxyError::ClientIo(e), true))?;
        entry.bytes = out.len() as u64;
        if send_body && body_len > SMALL_HIT {
            // std::io::copy from a File to a TcpStream uses sendfile(2) on Linux.
            let mut body = (&found.entry.file).take(body_len);
            let sent = io::copy(&mut body, &mut conn.stream)
                .map_err(|e| (ProxyError::ClientIo(e), true))?;
            entry.bytes += sent;
            if sent != body_len {
                return Err((
                    ProxyError::CacheRead(io::ErrorKind::UnexpectedEof.into()),
                    true,
                ));
            }
        }
        Ok(keep_alive)
    }
}

/// The fields a 304 carries (RFC 9110 §15.4.5).
fn not_modified_head(stored: &ResponseHead) -> ResponseHead {
    let mut head = ResponseHead::new(304);
    for name in [
        "cache-control",
        "content-location",
        "date",
        "etag",
        "expires",
        "vary",
        "last-modified",
    ] {
        for value in stored.headers.get_all(name) {
            head.headers.append(name.to_string(), value);
        }
    }
    head
}

/// `Cache-Status` (RFC 9211) and `X-Cache` for a response that went to the origin.
fn cache_status(
    forward_reason: &str,
    detail: Option<&str>,
    stored: bool,
) -> Vec<(&'static str, String)> {
    let mut value = format!("porter; {forward_reason}");
    if stored {
        value.push_str("; stored");
    }
    if let Some(detail) = detail {
        value.push_str(&format!("; detail={detail}"));
    }
    vec![("Cache-Status", value), ("X-Cache", "MISS".to_string())]
}
