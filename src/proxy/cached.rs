//! GET and HEAD through the cache: serve a fresh hit, revalidate a stale one, or fetch and store a miss.
//!
//! ```text
//!  through_cache ─ cache.lookup ─┬─ found ─ policy::decide_with ─┬─ Fresh / StaleAllowed ─> serve_hit
//!                                │                                │    (304 if the client's copy is current)
//!                                │                                └─ Revalidate ─> revalidate: fetch with the
//!                                │                                       entry's own validators, never the client's
//!                                │                                       ├─ 304 for them ─> update_head, serve_hit
//!                                │                                       ├─ 304 for others ─> fetch again, unconditional
//!                                │                                       └─ other ─> relay_and_store
//!                                └─ none ─┬─ only-if-cached ─> 504
//!                                         └─ cache.lock: one fetcher per URL (others wait, then look
//!                                            again) ─> fetch_and_store ─> relay_and_store
//! ```
//!
//! Every response says what happened in Cache-Status ([`CacheStatus`], RFC 9211).

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::SystemTime;

use super::exchange::{Exchange, Failure, Reuse, Served};
use super::fetch::{Ask, Fetched};
use super::metrics::Outcome;
use super::{Proxy, ProxyError, forward};
use crate::cache::lock::{LeaderGuard, Lease};
use crate::cache::policy::{self, CacheControl, Decision, NoStore, NotModified};
use crate::cache::ranges::{self, Held, RangeReply};
use crate::cache::status::{CacheStatus, Forward, NotStored};
use crate::cache::{Cache, Found, StoredBody};
use crate::http::body::BodyMode;
use crate::http::{self, Method, ResponseHead, write};
use crate::net::sendfile::SendFile;

impl Proxy {
    pub(super) fn through_cache(&self, cache: &Cache, ex: &mut Exchange) -> Served {
        let directives = CacheControl::parse_request(&ex.req.headers);
        if directives.no_store {
            return self.pass(ex);
        }
        // Two looks at most: the second after waiting for another request's fetch of the same URL.
        for attempt in 0..2 {
            // A partial entry that lacks the bytes asked for is a miss (RFC 9111 §3.3).
            let usable = |found: &Found| ranges::answers(&ex.req, &found.meta.head, found.body_len);
            if let Some(mut found) = cache.lookup(&ex.target.url, &ex.req).filter(usable) {
                let now = SystemTime::now();
                match policy::decide_with(&directives, &found.freshness, now) {
                    Decision::Fresh | Decision::StaleAllowed
                        if cache.prepare(&ex.target.url, &mut found) =>
                    {
                        ex.entry.outcome = Outcome::Hit;
                        let status = if found.freshness.by_rule() {
                            ex.entry.detail = Some("refresh-rule");
                            CacheStatus::RuleHit
                        } else {
                            CacheStatus::Hit
                        };
                        return self.serve_hit(ex, found, status, now);
                    }
                    Decision::Revalidate
                        if !directives.only_if_cached
                            && cache.prepare(&ex.target.url, &mut found) =>
                    {
                        return self.revalidate(cache, ex, found);
                    }
                    _ => {}
                }
            }
            if directives.only_if_cached {
                ex.entry.outcome = Outcome::Miss;
                return Err(ProxyError::NotCached.into());
            }
            if ex.req.method == Method::Head {
                break;
            }
            match cache.lock(&ex.target.url, self.config.origin_timeout) {
                Lease::Leader(guard) => return self.fetch_and_store(cache, ex, guard),
                Lease::Waited if attempt == 0 => continue,
                Lease::Waited => break,
            }
        }
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        let status = CacheStatus::Forwarded {
            fwd: Forward::Miss,
            stored: Err(NotStored::Policy(NoStore::Method)),
        };
        self.relay(ex, fetched, Some(status), None)
    }

    /// Fetches from the origin and relays, storing the response when policy allows.
    fn fetch_and_store(&self, cache: &Cache, ex: &mut Exchange, lease: LeaderGuard) -> Served {
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        self.relay_and_store(cache, ex, fetched, Forward::Miss, Some(lease))
    }

    /// Relays a response from the origin, storing it when the policy, its framing and its size allow.
    fn relay_and_store(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        fetched: Fetched,
        fwd: Forward,
        lease: Option<LeaderGuard>,
    ) -> Served {
        let rule = cache.refresh_rule(&ex.target.url);
        let writer = policy::storable_with_rule(&ex.req, &fetched.head, rule)
            .map_err(NotStored::Policy)
            .and_then(|()| match fetched.mode {
                BodyMode::CloseDelimited => Err(NotStored::CloseDelimited),
                BodyMode::Length(n) if n > cache.max_object_size() => Err(NotStored::TooLarge),
                _ => Ok(()),
            })
            .and_then(|()| {
                cache.writer(
                    &ex.target.url,
                    &ex.req,
                    &fetched.head,
                    fetched.request_time,
                    fetched.response_time,
                )
            });
        if writer.is_err() {
            // Nothing will be stored: requests waiting for this fetch may go to the origin now
            // rather than wait for the whole body.
            drop(lease);
        }
        // The partial entry a stored 206 replaces, to join with it afterwards (RFC 9111 §3.4).
        let older = match &writer {
            Ok(_) if fetched.head.status == 206 => cache
                .lookup(&ex.target.url, &ex.req)
                .filter(|found| found.meta.head.status == 206),
            _ => None,
        };
        let cc = CacheControl::parse(&fetched.head.headers);
        let status = match &writer {
            Ok(_) if policy::refresh_applies(&fetched.head, &cc, rule).is_some() => {
                ex.entry.detail = Some("refresh-rule");
                CacheStatus::RuleStored { fwd }
            }
            _ => CacheStatus::Forwarded {
                fwd,
                stored: writer.as_ref().map(|_| ()).map_err(|reason| *reason),
            },
        };
        let served = self.relay(ex, fetched, Some(status), writer.ok());
        if let Some(older) = older
            && served.is_ok()
        {
            cache.join_partial(&ex.target.url, &ex.req, older);
        }
        served
    }

    /// Asks the origin whether a stale entry is still good; a 304 refreshes and serves it.
    fn revalidate(&self, cache: &Cache, ex: &mut Exchange, mut found: Found) -> Served {
        let validators = policy::validators(&found.meta.head);
        let fetched = self.fetch(ex, Ask::Revalidate(&validators))?;
        if ex.head_only() && fetched.head.status == 200 {
            return self.update_from_head(cache, ex, found, fetched);
        }
        if fetched.head.status == 304
            && policy::after_304(&found.meta.head, &fetched.head) == NotModified::Refetch
        {
            // The 304 is about another representation (§4.3.4): ask again, unconditionally (not
            // with the client's conditionals either: the answer is stored for everyone).
            self.checkin(ex, fetched);
            let fetched = self.fetch(ex, Ask::Revalidate(&[]))?;
            ex.entry.outcome = Outcome::Miss;
            return self.relay_and_store(cache, ex, fetched, Forward::Stale, None);
        }
        if fetched.head.status != 304 {
            ex.entry.outcome = Outcome::Miss;
            return self.relay_and_store(cache, ex, fetched, Forward::Stale, None);
        }
        let Fetched {
            origin,
            head,
            request_time,
            response_time,
            ..
        } = fetched;
        let target = &ex.target;
        if head.keep_alive() {
            self.origins
                .checkin(target.scheme, &target.host, target.port, origin);
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
        ex.entry.outcome = Outcome::Revalidated;
        self.serve_hit(ex, found, CacheStatus::Revalidated, SystemTime::now())
    }

    /// Sends a stored response: 304 when the client's conditional matches, else the whole entry, with
    /// Age, Via, Cache-Status and X-Cache. Bodies in memory go out with their head in one vectored
    /// write; bodies in a file go file-to-socket with sendfile(2).
    fn serve_hit(
        &self,
        ex: &mut Exchange,
        found: Found,
        cache_status: CacheStatus,
        now: SystemTime,
    ) -> Served {
        let meta = &found.meta;
        let age = found.freshness.age(now);
        let not_modified = policy::client_has_current(&ex.req, &meta.head);
        let mut out = Vec::with_capacity(1024);
        // RFC 9110 §14.2: ranges of the stored response (a 206 or a 416) when the request asks.
        let ranged = match Held::of(&meta.head, found.body_len) {
            Some(held) if !not_modified => match ranges::reply(&ex.req, &meta.head, &held) {
                RangeReply::Whole => None,
                reply => Some((held, reply)),
            },
            _ => None,
        };
        let mut multipart = None;
        if not_modified {
            not_modified_head(&mut out, &meta.head);
        } else if let Some((held, reply)) = &ranged {
            multipart = super::ranges::range_head(&mut out, &found, held, reply);
        } else {
            write::status_line(&mut out, meta.head.status, &meta.head.reason);
            for (name, value) in meta.head.headers.iter() {
                // Set-Cookie is never stored now; an entry written by an older Porter may hold one,
                // and a stored cookie is never served.
                if !["age", "via", "connection", "set-cookie", "set-cookie2"]
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
        let status_value = cache_status.as_static().unwrap_or_default();
        write::field(&mut out, "Cache-Status", status_value.as_bytes());
        write::field(&mut out, "X-Cache", cache_status.x_cache().as_bytes());
        if let Some(value) = http::connection_field(ex.req.version, ex.keep_alive) {
            write::field(&mut out, "Connection", value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some((held, reply)) = &ranged {
            let unsatisfiable = matches!(reply, RangeReply::Unsatisfiable);
            ex.entry.status = if unsatisfiable { 416 } else { 206 };
            let stream = &mut ex.conn.stream;
            let m = multipart.as_ref();
            ex.entry.bytes = super::ranges::send_range_body(stream, &out, &found, held, reply, m)?;
            return Ok(Reuse::when(ex.keep_alive));
        }
        ex.entry.status = if not_modified { 304 } else { meta.head.status };
        let head_len = out.len() as u64;
        let send_body = !not_modified && !ex.head_only();
        let sent = |e| Failure::AfterHead(ProxyError::ClientIo(e));
        let stream = &mut ex.conn.stream;
        match found.body {
            _ if !send_body => {
                stream.write_all(&out).map_err(sent)?;
                ex.entry.bytes = head_len;
            }
            StoredBody::Memory(body) => {
                write_all_two(stream, &out, &body).map_err(sent)?;
                ex.entry.bytes = head_len + body.len() as u64;
            }
            StoredBody::File(file_entry) => {
                stream.write_all(&out).map_err(sent)?;
                let offset = file_entry.decoded.body_offset;
                let copied = stream
                    .send_file(&file_entry.file, offset, found.body_len)
                    .map_err(sent)?;
                ex.entry.bytes = head_len + copied;
                if copied != found.body_len {
                    return Err(Failure::AfterHead(ProxyError::CacheRead(
                        io::ErrorKind::UnexpectedEof.into(),
                    )));
                }
            }
        }
        Ok(Reuse::when(ex.keep_alive))
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

/// Appends the status line and the fields a 304 carries (RFC 9110 §15.4.5), from the stored head.
fn not_modified_head(out: &mut Vec<u8>, stored: &ResponseHead) {
    write::status_line(out, 304, http::reason_phrase(304));
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
            write::field(out, name, value.as_bytes());
        }
    }
}
