//! The phases that go to the origin: [`Proxy::forward`] picks the cache path or a plain pass,
//! [`Proxy::fetch`] sends the request upstream and reads the response head, [`Proxy::relay`] streams
//! the body back (teeing it into the cache when asked).
//!
//! ```text
//!  forward ─┬─ GET/HEAD without a body, cache on ─┬─ URL names a digest ─> through_digest (digest.rs)
//!           │                                     └─ otherwise ─> through_cache (cached.rs)
//!           ├─ PURGE, cache on ───────────────────> cache.invalidate, 200 / 404
//!           └─ anything else ─> pass ─> fetch ─> (invalidate on unsafe success) ─> relay
//!  Failure::BeforeHead ─> error page     Failure::AfterHead ─> close
//! ```

use std::time::SystemTime;

use super::forward;
use crate::cache::policy;
use crate::cache::status::CacheStatus;
use crate::cache::{CacheWriter, PRECONDITION_FIELDS};
use crate::http::body::BodyMode;
use crate::http::{Method, RequestHead, ResponseHead};
use crate::net::Conn;
use crate::proxy::exchange::{Answer, Exchange, Failure, Reuse, Served};
use crate::proxy::ops::metrics::Outcome;
use crate::proxy::ops::pages;
use crate::proxy::{Proxy, ProxyError, upstream};

/// An origin response whose head has arrived; its body is still on the connection.
pub(in crate::proxy) struct Fetched {
    pub origin: upstream::UpstreamConn,
    pub head: ResponseHead,
    pub mode: BodyMode,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// What the request sent upstream asks about the client's conditionals.
#[derive(Debug, Clone, Copy)]
pub(in crate::proxy) enum Ask<'a> {
    /// Forward the client's conditional fields (and Range) as they are: the answer goes to that
    /// client alone and is not used to refresh a stored entry.
    AsTheClientDid,
    /// Revalidate a stored entry: the client's conditional fields and Range are removed, and these
    /// validators (the entry's own, possibly none) sent instead.
    Revalidate(&'a [(&'static str, String)]),
}

impl Proxy {
    /// Forwards to the origin (through the cache for GET and HEAD); on a failure before the response
    /// head was sent, answers with an error page.
    pub(in crate::proxy) fn forward(&self, mut ex: Exchange) -> Option<Conn> {
        ex.entry.outcome = Outcome::Pass;
        // A GET or HEAD with a body is forwarded as is: a hit would leave the body unread on the
        // connection, to be taken for the next request.
        let bodiless = ex.req_body == BodyMode::NoBody;
        let served = match &self.cache {
            Some(cache) if matches!(ex.req.method, Method::Get | Method::Head) && bodiless => {
                match self.addressed(cache, &ex.target.url) {
                    Some(addressed) => self.through_digest(cache, &mut ex, addressed),
                    None => self.through_cache(cache, &mut ex),
                }
            }
            Some(cache) if ex.req.method == Method::Purge => {
                let existed = cache.invalidate(&ex.target.url);
                ex.entry.outcome = Outcome::Local;
                let (status, message) = if existed {
                    (200, "purged")
                } else {
                    (404, "not in the cache")
                };
                let page = pages::text(status, format!("{message}: {}\n", ex.target.url));
                let answer = Answer::to(&ex.req, Reuse::when(ex.keep_alive && bodiless));
                return self.reply(ex.conn, &mut ex.entry, page, answer);
            }
            _ => self.pass(&mut ex),
        };
        let failure = match served {
            Ok(reuse) => {
                ex.entry.finish(&self.metrics);
                return reuse.keeps_alive().then_some(ex.conn);
            }
            Err(failure) => failure,
        };
        let (Failure::BeforeHead(error) | Failure::AfterHead(error)) = &failure;
        ex.entry.outcome = match error {
            ProxyError::Denied(_) => Outcome::Denied,
            _ => Outcome::Error,
        };
        if error.is_client_side() {
            log::debug!("{}: {error}", ex.conn.peer);
            ex.entry.finish(&self.metrics);
            return None;
        }
        log::warn!("{} {}: {error}", ex.req.method, ex.target.url);
        let Failure::BeforeHead(error) = failure else {
            // The head is out: closing the connection is the only way left to say it failed.
            ex.entry.finish(&self.metrics);
            return None;
        };
        let page = pages::status_page(error.status(), &error.to_string());
        let answer = Answer::to(&ex.req, Reuse::Close);
        self.reply(ex.conn, &mut ex.entry, page, answer)
    }

    /// Forwards without the cache; a successful unsafe method invalidates what the cache holds for the
    /// target and its Location / Content-Location (RFC 9111 §4.4).
    pub(in crate::proxy) fn pass(&self, ex: &mut Exchange) -> Served {
        let fetched = self.fetch(ex, Ask::AsTheClientDid)?;
        if let Some(cache) = &self.cache
            && policy::invalidates(&ex.req.method, fetched.head.status)
        {
            cache.invalidate(&ex.target.url);
            for name in ["location", "content-location"] {
                if let Some(url) = fetched
                    .head
                    .headers
                    .get(name)
                    .and_then(|v| ex.target.same_origin_url(v))
                {
                    cache.invalidate(&url);
                }
            }
        }
        let store = match &self.cache {
            Some(cache) => self.post_writer(cache, ex, &fetched),
            None => None,
        };
        self.relay(ex, fetched, None, store)
    }

    /// Sends the request upstream and reads the response head, with the client's conditional fields
    /// or, when the cache revalidates, the stored entry's validators in their place.
    pub(in crate::proxy) fn fetch(
        &self,
        ex: &mut Exchange,
        ask: Ask<'_>,
    ) -> Result<Fetched, ProxyError> {
        let mut outbound = forward::outbound_request(&ex.req, &ex.target, &self.via, ex.req_body);
        let forwarded_for = self.config.load().forwarded_for;
        forwarded_for.apply(&mut outbound.headers, ex.conn.peer.ip());
        if self.via.is_empty() {
            outbound
                .headers
                .append(crate::proxy::HOP_MARK, self.hop_mark.as_str());
        }
        if let Ask::Revalidate(validators) = ask {
            with_own_validators(&mut outbound, validators);
        }
        let request_time = SystemTime::now();
        let (origin, head) = self.send_upstream(ex, &outbound)?;
        let mode = forward::upstream_framing(&ex.req, &head)?;
        Ok(Fetched {
            origin,
            head,
            mode,
            request_time,
            response_time: SystemTime::now(),
        })
    }

    /// Streams a fetched response to the client, teeing it into `store` and committing that only when
    /// the body arrived whole. `cache_status` is set when the cache was consulted.
    pub(in crate::proxy) fn relay(
        &self,
        ex: &mut Exchange,
        fetched: Fetched,
        cache_status: Option<CacheStatus>,
        store: Option<CacheWriter>,
    ) -> Served {
        let Fetched {
            mut origin,
            head: origin_head,
            mode,
            ..
        } = fetched;
        let (mut client_head, chunked) = forward::client_response_head(
            &origin_head,
            mode,
            ex.req.version,
            ex.keep_alive,
            &self.via,
        );
        if let Some(status) = cache_status {
            // The access log says why the response was not stored, as the Cache-Status does.
            if let CacheStatus::Forwarded {
                stored: Err(reason),
                ..
            } = status
            {
                ex.entry.detail = Some(reason.as_str());
            }
            let mut value = status.to_string();
            if let Some(parent) = &ex.entry.parent {
                // Which parent answered (an extension parameter, RFC 9211 §2.8); the parent's own
                // entry comes before ours in the list.
                value.push_str(&format!("; fwd-parent=\"{parent}\""));
            }
            client_head.headers.append("Cache-Status", value);
            client_head.headers.append("X-Cache", status.x_cache());
        }
        let client_keeps = !client_head.headers.has_token("connection", "close");
        ex.entry.status = client_head.status;
        ex.entry.content_type = client_head.headers.get("content-type").map(str::to_string);
        let relayed = forward::relay_body(
            &mut ex.conn,
            &mut origin,
            &client_head,
            mode,
            chunked,
            store,
        )?;
        ex.entry.bytes = relayed.bytes;
        if relayed.complete && origin_head.keep_alive() {
            let target = &ex.target;
            self.origins
                .checkin(target.scheme, &target.host, target.port, origin);
        }
        Ok(Reuse::when(client_keeps))
    }
}

/// The client's conditional fields (and Range) out, the entry's own validators in: the answer
/// refreshes the entry for everyone, so it must be about the stored response, not the client's copy
/// (a 304 to a client's `If-None-Match: "new"` would otherwise confirm the stored old body as "new";
/// RFC 9111 §4.3.1). Without stored validators the request goes unconditional.
pub(in crate::proxy) fn with_own_validators(
    outbound: &mut RequestHead,
    validators: &[(&'static str, String)],
) {
    for name in PRECONDITION_FIELDS {
        outbound.headers.remove(name);
    }
    for (name, value) in validators {
        outbound.headers.append(*name, value.as_bytes());
    }
}
