//! Responses that change what the cache holds without being a plain stored GET: a 200 to a HEAD
//! updates or drops the stored GET (RFC 9111 §4.3.5), and a POST response with explicit freshness and
//! its own Content-Location becomes the stored GET (RFC 9110 §9.3.3). The rules are
//! `cache::policy`'s (`after_head`, `storable_post`); this file only acts on them, so the cache path in
//! `cached.rs` keeps one hook for each.

use std::sync::Arc;

use super::fetch::Fetched;
use crate::cache::policy::{self, HeadUpdate, NoStore};
use crate::cache::status::{CacheStatus, Forward, NotStored};
use crate::cache::{Cache, CacheWriter, Found};
use crate::http::body::BodyMode;
use crate::http::{self, Method};
use crate::proxy::Proxy;
use crate::proxy::exchange::{Exchange, Served};
use crate::proxy::ops::metrics::Outcome;

impl Proxy {
    /// A 200 to a HEAD that revalidated a stored GET response: update the stored head from it when it
    /// describes the same representation, else drop the stored response (RFC 9111 §4.3.5); relay it.
    pub(in crate::proxy) fn update_from_head(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        mut found: Found,
        fetched: Fetched,
    ) -> Served {
        let url = &ex.target.url;
        match policy::after_head(&found.meta.head, found.body_len, &fetched.head) {
            HeadUpdate::Update => {
                let meta = Arc::make_mut(&mut found.meta);
                policy::freshen(
                    meta,
                    &fetched.head,
                    fetched.request_time,
                    fetched.response_time,
                );
                if let Err(e) = cache.update_head(url, &mut found) {
                    log::debug!("cache: could not update {url} from HEAD: {e}");
                }
            }
            HeadUpdate::Stale => {
                cache.invalidate(url);
            }
        }
        ex.entry.outcome = Outcome::Miss;
        let status = CacheStatus::Forwarded {
            fwd: Forward::Stale,
            stored: Err(NotStored::Policy(NoStore::Method)),
        };
        self.relay(ex, fetched, Some(status), None)
    }

    /// Returns a bodiless response's origin connection to the pool when it may be reused.
    pub(in crate::proxy) fn checkin(&self, ex: &Exchange, fetched: Fetched) {
        if fetched.head.keep_alive() {
            let target = &ex.target;
            self.origins
                .checkin(target.scheme, &target.host, target.port, fetched.origin);
        }
    }

    /// The writer for a POST response that may answer later GETs of its URL (RFC 9110 §9.3.3): explicit
    /// freshness and a Content-Location naming the request's own target.
    pub(in crate::proxy) fn post_writer(
        &self,
        cache: &Cache,
        ex: &Exchange,
        fetched: &Fetched,
    ) -> Option<CacheWriter> {
        let own = fetched
            .head
            .headers
            .get("content-location")
            .and_then(|v| ex.target.same_origin_url(v))
            .is_some_and(|url| url == ex.target.url);
        policy::storable_post(&ex.req, &fetched.head, own).ok()?;
        match fetched.mode {
            BodyMode::CloseDelimited => return None,
            BodyMode::Length(n) if n > cache.max_object_size() => return None,
            _ => {}
        }
        let as_get = http::RequestHead {
            method: Method::Get,
            ..ex.req.clone()
        };
        let (req_time, resp_time) = (fetched.request_time, fetched.response_time);
        cache
            .writer(&ex.target.url, &as_get, &fetched.head, req_time, resp_time)
            .ok()
    }
}
