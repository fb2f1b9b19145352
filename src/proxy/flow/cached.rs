//! GET and HEAD through the cache: serve a fresh hit, revalidate a stale one, or fetch and store a miss.
//!
//! ```text
//!  through_cache ─ cache.lookup ─┬─ found ─ policy::decide_with ─┬─ Fresh / StaleAllowed ─> serve_hit
//!                                │                                │    (304 if the client's copy is current)
//!                                │                                └─ Revalidate ─┬─ stale-while-revalidate ─> serve now,
//!                                │                                               │    revalidate in the background (stale.rs)
//!                                │                                               └─> revalidate: fetch with the
//!                                │                                       entry's own validators, never the client's
//!                                │                                       ├─ origin failing, stale-if-error ─> serve_hit
//!                                │                                       ├─ 304 for them ─> update_head, serve_hit
//!                                │                                       ├─ 304 for others ─> fetch again, unconditional
//!                                │                                       └─ other ─> relay_and_store
//!                                └─ none ─┬─ only-if-cached ─> 504
//!                                         └─ cache.lock: one fetcher per URL ─> fetch_and_store ─> relay_and_store
//!                                            the others read along once it stores (follow, collapsed.rs),
//!                                            or look again when it does not; for a URL whose last
//!                                            response was not stored (uncacheable.rs) they do not
//!                                            wait for its head but fetch on their own
//! ```
//!
//! Every response says what happened in Cache-Status ([`CacheStatus`], RFC 9211).
//!
//! What an entry answers (the whole, ranges, or nothing: a partial entry without the bytes asked
//! for) is decided once, at lookup, and carried to `serve_hit` in a [`Hit`]; only a 304 that changed
//! the stored head makes it decided again, and an entry that then answers nothing is a miss.

use std::borrow::Cow;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::fetch::{Ask, Fetched};
use super::forward;
use crate::cache::inflight::Inflight;
use crate::cache::lock::{LeaderGuard, Lease};
use crate::cache::policy::{self, CacheControl, Decision, NoStore, NotModified};
use crate::cache::ranges::{self, RangeReply};
use crate::cache::refresh;
use crate::cache::status::{CacheStatus, Forward, NotStored};
use crate::cache::{Cache, Found, RuleOnce, StoredBody};
use crate::http::body::BodyMode;
use crate::http::{self, Method, RequestHead, ResponseHead, write};
use crate::net::sendfile::SendFile;
use crate::proxy::exchange::{Exchange, Failure, Reuse, Served};
use crate::proxy::ops::metrics::Outcome;
use crate::proxy::{Proxy, ProxyError};

impl Proxy {
    pub(in crate::proxy) fn through_cache(&self, cache: &Cache, ex: &mut Exchange) -> Served {
        let mut directives = CacheControl::parse_request(&ex.req.headers);
        if directives.no_store {
            return self.pass(ex);
        }
        // The URL's --refresh rule, matched at most once for all the lookups and stores below.
        let rule = RuleOnce::default();
        // A reload (no-cache, max-age=0, Pragma) of a URL whose rule says `ignore-reload` is answered
        // from a fresh entry as if the client had not asked: the URL cannot name other bytes.
        let mut reload_ignored = None;
        if refresh::asks_reload(&directives)
            && let Some(matched) = cache
                .match_once(&ex.target.url, &rule)
                .filter(|m| m.ignore_reload)
        {
            refresh::without_reload(&mut directives);
            reload_ignored = Some(matched.reload_detail);
        }
        // A reload is answered by a response the origin sent after this request arrived (another
        // request's, fetched meanwhile): asking again would get nothing newer. So concurrent reloads
        // of one index file (pip asks for every index page with max-age=0) make one origin request.
        let reload = refresh::asks_reload(&directives).then(|| {
            let mut relaxed = directives.clone();
            refresh::without_reload(&mut relaxed);
            let arrived = SystemTime::now()
                .checked_sub(ex.entry.start.elapsed())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            Reload { relaxed, arrived }
        });
        // An entry found by the leader's second look (below), served by the next turn.
        let mut stored_meanwhile = None;
        // Three turns at most: the second after waiting for another request's fetch of the same URL,
        // or to serve what a new leader's second look found; a revalidation may wait twice (for a
        // fetch that had not let go of the URL yet, then for another request's revalidation).
        for attempt in 0..3 {
            let commits = cache.commits();
            let hit = stored_meanwhile
                .take()
                .or_else(|| usable_entry(cache, ex, &rule));
            let looked_in_vain = hit.is_none();
            if let Some(Hit { mut found, reply }) = hit {
                let now = SystemTime::now();
                let want = match &reload {
                    Some(r) if found.meta.response_time >= r.arrived => &r.relaxed,
                    _ => &directives,
                };
                match policy::decide_with(want, &found.freshness, now) {
                    Decision::Fresh | Decision::StaleAllowed
                        if cache.prepare(&ex.target.url, &mut found) =>
                    {
                        ex.entry.outcome = Outcome::Hit;
                        let detail = reload_ignored.or_else(|| {
                            found
                                .freshness
                                .by_rule()
                                .then(|| found.freshness.rule_detail())
                        });
                        let status = match detail {
                            Some(detail) => {
                                ex.entry.detail = Some(detail);
                                CacheStatus::RuleHit { detail }
                            }
                            None => CacheStatus::Hit,
                        };
                        let hit = Hit { found, reply };
                        return self.serve_hit(cache, ex, hit, status, now, &rule);
                    }
                    Decision::Revalidate
                        if !directives.only_if_cached
                            && cache.prepare(&ex.target.url, &mut found) =>
                    {
                        if policy::serve_while_revalidating(&directives, &found.freshness, now)
                            && self.revalidates_in_background(ex)
                        {
                            return self.serve_stale_and_revalidate(cache, ex, found, now, &rule);
                        }
                        // Concurrent revalidations of one entry make one origin request: the
                        // first leads, the others wait and look again, and find the entry the
                        // origin just confirmed (fresh again, or newer than their reload).
                        if attempt < 2 && ex.req.method == Method::Get {
                            let wait = if cache.recently_uncacheable(&ex.target.url) {
                                Duration::ZERO
                            } else {
                                self.config.load().origin_timeout
                            };
                            match cache.lock(&ex.target.url, wait) {
                                Lease::Leader(guard) => {
                                    return self.revalidate(cache, ex, found, &rule, Some(guard));
                                }
                                Lease::Follow(shared)
                                    if may_follow(&shared, ex, &directives, reload.as_ref()) =>
                                {
                                    return self.follow(ex, &shared.join());
                                }
                                _ => continue,
                            }
                        }
                        return self.revalidate(cache, ex, found, &rule, None);
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
            // A URL whose last response could not be stored does not wait for another request's
            // response head; it still follows an entry being stored, or leads (uncacheable.rs).
            let marked = cache.recently_uncacheable(&ex.target.url);
            let wait = if marked {
                Duration::ZERO
            } else {
                self.config.load().origin_timeout
            };
            match cache.lock(&ex.target.url, wait) {
                // The previous fetcher may have stored the entry and let go between the look above
                // and this lease (its client can have the response, and ask again, before it
                // commits): a new leader looks once more before it fetches, if anything was stored.
                Lease::Leader(guard)
                    if looked_in_vain && attempt == 0 && cache.commits() != commits =>
                {
                    stored_meanwhile = usable_entry(cache, ex, &rule);
                    if stored_meanwhile.is_none() {
                        return self.fetch_and_store(cache, ex, guard, &rule);
                    }
                }
                Lease::Leader(guard) => return self.fetch_and_store(cache, ex, guard, &rule),
                Lease::Follow(shared) if may_follow(&shared, ex, &directives, reload.as_ref()) => {
                    return self.follow(ex, &shared.join());
                }
                // Another variant, or a request the entry could not answer: on its own.
                Lease::Follow(_) => break,
                Lease::Waited if attempt == 0 && !marked => continue,
                Lease::Waited => break,
            }
        }
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        if ex.req.method == Method::Get {
            // A GET that could not join another's fetch is judged on its own response.
            return self.relay_and_store(cache, ex, fetched, Forward::Miss, None, &rule);
        }
        let status = CacheStatus::Forwarded {
            fwd: Forward::Miss,
            stored: Err(NotStored::Policy(NoStore::Method)),
        };
        self.relay(ex, fetched, Some(status), None)
    }

    /// Fetches from the origin and relays, storing the response when policy allows.
    fn fetch_and_store(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        lease: LeaderGuard,
        rule: &RuleOnce,
    ) -> Served {
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        self.relay_and_store(cache, ex, fetched, Forward::Miss, Some(lease), rule)
    }

    /// Relays a response from the origin, storing it when the policy, its framing and its size allow.
    fn relay_and_store(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        fetched: Fetched,
        fwd: Forward,
        mut lease: Option<LeaderGuard>,
        rule: &RuleOnce,
    ) -> Served {
        let fresh_for = cache.rule_once(&ex.target.url, rule);
        let mut writer = policy::storable_with_rule(&ex.req, &fetched.head, fresh_for)
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
        if let Ok(writer) = writer.as_mut() {
            // Requests for the URL that come while the body arrives read it as it is written.
            let length = match fetched.mode {
                BodyMode::Length(n) => Some(n),
                BodyMode::NoBody => Some(0),
                _ => None,
            };
            // A part (206) is not published: it answers only its own range. The others wait for
            // it to be stored, then look again.
            if let (Some(shared), Some(lease)) = (writer.share(length), &lease)
                && fetched.head.status != 206
            {
                lease.publish(shared);
            }
        }
        if let Err(reason) = &writer {
            // Nothing will be stored: requests waiting for this fetch may go to the origin now
            // rather than wait for the whole body, and the next ones need not wait at all.
            cache.record_not_stored(&ex.target.url, &ex.req, fetched.head.status, *reason);
            drop(lease.take());
        }
        // The partial entry a stored 206 replaces, to join with it afterwards (RFC 9111 §3.4).
        let older = match &writer {
            Ok(_) if fetched.head.status == 206 => cache
                .lookup_with(&ex.target.url, &ex.req, rule)
                .filter(|found| found.meta.head.status == 206),
            _ => None,
        };
        let cc = CacheControl::parse(&fetched.head.headers);
        let status = match &writer {
            Ok(_) if policy::refresh_applies(&fetched.head, &cc, fresh_for).is_some() => {
                let detail = cache
                    .match_once(&ex.target.url, rule)
                    .map_or(refresh::RULE_DETAIL, |m| m.detail);
                ex.entry.detail = Some(detail);
                CacheStatus::RuleStored { fwd, detail }
            }
            _ => CacheStatus::Forwarded {
                fwd,
                stored: writer.as_ref().map(|_| ()).map_err(|reason| *reason),
            },
        };
        let served = self.relay(ex, fetched, Some(status), writer.ok());
        // The lease is held through the join, so a request for this URL that arrives meanwhile waits
        // and then finds the joined entry instead of a part of it (the join reads each body at most
        // once, so the wait is short).
        if let Some(older) = older
            && served.is_ok()
        {
            cache.join_partial(&ex.target.url, &ex.req, older, rule);
        }
        drop(lease);
        served
    }

    /// Asks the origin whether a stale entry is still good; a 304 refreshes and serves it. `lease`,
    /// when this request leads the URL's revalidation, is let go once the entry is refreshed (the
    /// waiting requests then find it) or handed on to store a new response (they follow it).
    fn revalidate(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        mut found: Found,
        rule: &RuleOnce,
        lease: Option<LeaderGuard>,
    ) -> Served {
        let validators = policy::validators(&found.meta.head);
        let fetched = self.fetch(ex, Ask::Revalidate(&validators));
        if self.stands_in_for_failure(ex, &found, &fetched) {
            return self.serve_stale_if_error(cache, ex, found, rule);
        }
        let fetched = fetched?;
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
            return self.relay_and_store(cache, ex, fetched, Forward::Stale, lease, rule);
        }
        if fetched.head.status != 304 {
            ex.entry.outcome = Outcome::Miss;
            return self.relay_and_store(cache, ex, fetched, Forward::Stale, lease, rule);
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
        let meta = Arc::make_mut(&mut found.meta);
        policy::freshen(meta, &head, request_time, response_time);
        if let Err(e) = cache.update_head_with(&target.url, &mut found, rule) {
            log::debug!("cache: could not refresh {}: {e}", target.url);
        }
        // The refreshed entry is in place: the requests waiting on this revalidation may look.
        drop(lease);
        ex.entry.outcome = Outcome::Revalidated;
        // The 304 may have changed the validators an If-Range is checked against: decide again.
        let hit = Hit::of(&ex.req, found);
        self.serve_hit(
            cache,
            ex,
            hit,
            CacheStatus::Revalidated,
            SystemTime::now(),
            rule,
        )
    }

    /// A request the stored entry turned out not to answer: a miss, asked of the origin as the client
    /// asked it, and stored as any miss is (RFC 9111 §3.3).
    fn not_held(&self, cache: &Cache, ex: &mut Exchange, rule: &RuleOnce) -> Served {
        ex.entry.outcome = Outcome::Miss;
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        self.relay_and_store(cache, ex, fetched, Forward::Miss, None, rule)
    }

    /// Sends a stored response: 304 when the client's conditional matches, else the ranges or the
    /// whole entry as `hit.reply` says, with Age, Via, Cache-Status and X-Cache. Bodies in memory go
    /// out with their head in one vectored write; bodies in a file go file-to-socket with sendfile(2).
    /// A reply the entry cannot give (a 304 changed the validators an If-Range is checked against,
    /// so a partial entry no longer answers) is a miss: the request goes to the origin.
    pub(in crate::proxy) fn serve_hit(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        hit: Hit,
        cache_status: CacheStatus,
        now: SystemTime,
        rule: &RuleOnce,
    ) -> Served {
        let Hit { found, reply } = hit;
        let meta = &found.meta;
        let not_modified = policy::client_has_current(&ex.req, &meta.head);
        // RFC 9110 §14.2: ranges of the stored response (a 206 or a 416) when the request asks.
        let ranged = match reply {
            _ if not_modified => None,
            RangeReply::Whole => None,
            RangeReply::Ranged(held, ranged) => Some((held, ranged)),
            RangeReply::NotHeld => return self.not_held(cache, ex, rule),
        };
        let age = found.freshness.age(now);
        let mut out = Vec::with_capacity(1024);
        let mut multipart = None;
        if not_modified {
            not_modified_head(&mut out, &meta.head);
        } else if let Some((held, ranged)) = &ranged {
            multipart = super::ranges::range_head(&mut out, &found, held, ranged);
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
        if !via.is_empty() {
            write::field(&mut out, "Via", &via);
        }
        let status_value = match cache_status.as_static() {
            Some(fixed) => Cow::Borrowed(fixed),
            None => Cow::Owned(cache_status.to_string()),
        };
        write::field(&mut out, "Cache-Status", status_value.as_bytes());
        write::field(&mut out, "X-Cache", cache_status.x_cache().as_bytes());
        if let Some(value) = http::connection_field(ex.req.version, ex.keep_alive) {
            write::field(&mut out, "Connection", value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some((held, ranged)) = &ranged {
            ex.entry.status = ranged.status();
            let stream = &mut ex.conn.stream;
            let m = multipart.as_ref();
            ex.entry.bytes = super::ranges::send_range_body(stream, &out, &found, held, ranged, m)?;
            return Ok(Reuse::when(ex.keep_alive));
        }
        ex.entry.status = if not_modified { 304 } else { meta.head.status };
        ex.entry.content_type = meta.head.headers.get("content-type").map(str::to_string);
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
            // sendfile(2) from the file a disk thread opened and checked (`Cache::lookup`,
            // `Cache::prepare`), on the worker: it copies from the page cache, which the check
            // (the whole body, read the first time this process serves the entry) filled. A body
            // the kernel has dropped from the page cache since is read by it here: a known limit.
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

/// A stored response found for a request, with what it answers: decided once at lookup, again only
/// after a 304 changed the head.
pub(in crate::proxy) struct Hit {
    found: Found,
    reply: RangeReply,
}

/// The stored entry for the request, and what it answers; `None` when there is none or it is a
/// partial entry without the bytes asked for (a miss, RFC 9111 §3.3). What the entry answers is
/// decided once, here, and handed on to serve it.
fn usable_entry(cache: &Cache, ex: &Exchange, rule: &RuleOnce) -> Option<Hit> {
    cache
        .lookup_with(&ex.target.url, &ex.req, rule)
        .map(|found| Hit::of(&ex.req, found))
        .filter(|hit| hit.reply != RangeReply::NotHeld)
}

impl Hit {
    pub(in crate::proxy) fn of(req: &RequestHead, found: Found) -> Hit {
        let reply = ranges::reply(req, &found.meta.head, found.body_len);
        Hit { found, reply }
    }
}

/// A client's reload (`no-cache`, `max-age=0`), which a response the origin sent after `arrived`
/// answers as well as one of its own would.
struct Reload {
    /// The request's directives without the reload.
    relaxed: CacheControl,
    /// When the request arrived.
    arrived: SystemTime,
}

/// Whether this request may read the response another request is fetching. A reload may, when the
/// response's head came from the origin after this request arrived, as a stored entry may (see
/// `through_cache`).
fn may_follow(
    shared: &Inflight,
    ex: &Exchange,
    directives: &CacheControl,
    reload: Option<&Reload>,
) -> bool {
    let want = match reload {
        Some(r) if shared.received_since(r.arrived) => &r.relaxed,
        _ => directives,
    };
    shared.answers_with(&ex.req, want, SystemTime::now())
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
