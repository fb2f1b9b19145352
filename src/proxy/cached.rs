//! GET and HEAD through the cache: serve a fresh hit, revalidate a stale one, or fetch and store a miss.
//!
//! ```text
//!  lookup ─┬─ found ─ policy::before_request ─┬─ Fresh / StaleAllowed ─> serve hit (304 if the client's copy is current)
//!          │                                  └─ Revalidate ─> origin with validators ─┬─ 304 ─> update head, serve hit
//!          │                                                                           └─ other ─> relay (and store)
//!          └─ none ─ only-if-cached ─> 504
//!                  └ one fetcher per URL (others wait, then look again) ─> relay, store if allowed
//! ```

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::SystemTime;

use super::collapsed;
use super::metrics::{AccessEntry, Outcome};
use super::target::Target;
use super::{Fetched, Proxy, ProxyError, forward};
use crate::cache::inflight::Reader;
use crate::cache::lock::{LeaderGuard, Lease};
use crate::cache::policy::{self, CacheControl, Decision};
use crate::cache::{Body, Cache, Found};
use crate::http::body::BodyMode;
use crate::http::{RequestHead, ResponseHead, write};
use crate::net::Conn;
use crate::net::sendfile::send_file;

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
                let decision = policy::decide(req, &found.freshness, now);
                match decision {
                    Decision::Fresh | Decision::StaleAllowed
                        if cache.prepare(&target.url, &mut found) =>
                    {
                        entry.outcome = Outcome::Hit;
                        return self.serve_hit(conn, req, found, entry, "porter; hit", now);
                    }
                    Decision::Revalidate
                        if !directives.only_if_cached && cache.prepare(&target.url, &mut found) =>
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
                Lease::Leader(guard) => {
                    return self.fetch_and_store(cache, conn, req, target, entry, guard);
                }
                Lease::Follow(shared) if shared.answers(req, SystemTime::now()) => {
                    return self.follow(conn, req, entry, &shared.join());
                }
                // Another variant, or a request the entry could not answer: on its own.
                Lease::Follow(_) => break,
                Lease::Waited if attempt == 0 => continue,
                Lease::Waited => break,
            }
        }
        entry.outcome = Outcome::Miss;
        let fetched = self.fetch(conn, req, target, &[]).map_err(|e| (e, false))?;
        if req.method == "HEAD" {
            let status = cache_status("fwd=miss", Some("method"), false);
            return self.relay(conn, fetched, req, target, entry, &status, None);
        }
        // A GET that could not join another's fetch is judged on its own response.
        self.relay_and_store(cache, conn, fetched, req, target, entry, "fwd=miss", None)
    }

    /// Serves a request from an entry another request is still fetching (read-while-writing).
    fn follow(
        &self,
        conn: &mut Conn,
        req: &RequestHead,
        entry: &mut AccessEntry,
        reader: &Reader,
    ) -> Result<bool> {
        entry.outcome = Outcome::Collapsed;
        let stall = self.config.origin_timeout.saturating_mul(2);
        let served = collapsed::serve(
            &mut conn.stream,
            req,
            req.keep_alive(),
            &self.via,
            reader,
            stall,
        );
        match served {
            Ok(done) => {
                (entry.status, entry.bytes) = (done.status, done.bytes);
                Ok(done.keep_alive)
            }
            Err(failed) => {
                (entry.status, entry.bytes) = (failed.status, failed.bytes);
                Err((failed.error, true))
            }
        }
    }

    /// Fetches from the origin and relays, storing the response when policy allows.
    fn fetch_and_store(
        &self,
        cache: &Cache,
        conn: &mut Conn,
        req: &RequestHead,
        target: &Target,
        entry: &mut AccessEntry,
        lease: LeaderGuard,
    ) -> Result<bool> {
        entry.outcome = Outcome::Miss;
        let fetched = self.fetch(conn, req, target, &[]).map_err(|e| (e, false))?;
        self.relay_and_store(
            cache,
            conn,
            fetched,
            req,
            target,
            entry,
            "fwd=miss",
            Some(lease),
        )
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
        lease: Option<LeaderGuard>,
    ) -> Result<bool> {
        let verdict = match policy::storable(req, &fetched.head) {
            Err(reason) => Err(reason.as_str()),
            Ok(()) => match fetched.mode {
                BodyMode::CloseDelimited => Err("close-delimited"),
                BodyMode::Length(n) if n > cache.max_object_size() => Err("too-large"),
                _ => Ok(()),
            },
        };
        let mut writer = match verdict {
            Ok(()) => cache.writer(
                &target.url,
                req,
                &fetched.head,
                fetched.request_time,
                fetched.response_time,
            ),
            Err(_) => None,
        };
        if let Some(writer) = writer.as_mut() {
            // Requests for the URL that come while the body arrives read it as it is written.
            let length = match fetched.mode {
                BodyMode::Length(n) => Some(n),
                BodyMode::NoBody => Some(0),
                _ => None,
            };
            if let (Some(shared), Some(lease)) = (writer.share(length), &lease) {
                lease.publish(shared);
            }
        }
        if writer.is_none() {
            // Nothing will be stored: requests waiting for this fetch may go to the origin now
            // rather than wait for the whole body.
            drop(lease);
        }
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
            return self.relay_and_store(
                cache,
                conn,
                fetched,
                req,
                target,
                entry,
                "fwd=stale",
                None,
            );
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
        let mut head = head;
        if !head.headers.contains("date") {
            // The stored Date would otherwise make the refreshed entry look old (RFC 9110 §6.6.1).
            head.headers
                .append("Date", httpdate::fmt_http_date(response_time));
        }
        let meta = Arc::make_mut(&mut found.meta);
        policy::update_from_304(&mut meta.head, &head);
        meta.request_time = request_time;
        meta.response_time = response_time;
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
    /// Age, Via, Cache-Status and X-Cache. Bodies in memory go out with their head in one vectored
    /// write; bodies in a file go file-to-socket with sendfile(2).
    fn serve_hit(
        &self,
        conn: &mut Conn,
        req: &RequestHead,
        found: Found,
        entry: &mut AccessEntry,
        cache_status: &str,
        now: SystemTime,
    ) -> Result<bool> {
        let meta = &found.meta;
        let age = found.freshness.age(now);
        let not_modified = policy::client_has_current(req, &meta.head);
        let keep_alive = req.keep_alive();
        let mut out = Vec::with_capacity(1024);
        if not_modified {
            write::response_head(&mut out, &not_modified_head(&meta.head));
            out.truncate(out.len() - 2);
        } else {
            write::status_line(&mut out, meta.head.status, &meta.head.reason);
            for (name, value) in meta.head.headers.iter() {
                if !["age", "via", "connection"]
                    .iter()
                    .any(|n| name.eq_ignore_ascii_case(n))
                {
                    write::field(&mut out, name, value);
                }
            }
            write::field(
                &mut out,
                "Content-Length",
                found.body_len.to_string().as_bytes(),
            );
        }
        write::field(&mut out, "Age", policy::age_header(age).as_bytes());
        let mut via = meta.head.headers.clone_value("via");
        forward::append_via_value(&mut via, meta.head.version, &self.via);
        write::field(&mut out, "Via", &via);
        write::field(&mut out, "Cache-Status", cache_status.as_bytes());
        write::field(&mut out, "X-Cache", b"HIT");
        if !keep_alive {
            write::field(&mut out, "Connection", b"close");
        } else if req.version == crate::http::Version::Http10 {
            write::field(&mut out, "Connection", b"keep-alive");
        }
        out.extend_from_slice(b"\r\n");
        entry.status = if not_modified { 304 } else { meta.head.status };
        let head_len = out.len() as u64;
        let send_body = !not_modified && req.method != "HEAD";
        match found.body {
            _ if !send_body => {
                conn.stream
                    .write_all(&out)
                    .map_err(|e| (ProxyError::ClientIo(e), true))?;
                entry.bytes = head_len;
            }
            Body::Memory(body) => {
                write_all_two(&mut conn.stream, &out, &body)
                    .map_err(|e| (ProxyError::ClientIo(e), true))?;
                entry.bytes = head_len + body.len() as u64;
            }
            Body::File(file_entry) => {
                conn.stream
                    .write_all(&out)
                    .map_err(|e| (ProxyError::ClientIo(e), true))?;
                let offset = file_entry.decoded.body_offset;
                let sent = send_file(&conn.stream, &file_entry.file, offset, found.body_len)
                    .map_err(|e| (ProxyError::ClientIo(e), true))?;
                entry.bytes = head_len + sent;
                if sent != found.body_len {
                    return Err((
                        ProxyError::CacheRead(io::ErrorKind::UnexpectedEof.into()),
                        true,
                    ));
                }
            }
        }
        Ok(keep_alive)
    }
}

/// Writes two buffers with as few syscalls as the socket allows (usually one `writev`).
fn write_all_two(stream: &mut impl Write, first: &[u8], second: &[u8]) -> io::Result<()> {
    let mut done = 0usize;
    let total = first.len() + second.len();
    while done < total {
        let n = if done < first.len() {
            stream.write_vectored(&[IoSlice::new(&first[done..]), IoSlice::new(second)])?
        } else {
            stream.write(&second[done - first.len()..])?
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        done += n;
    }
    Ok(())
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
            head.headers.append(name, value);
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
