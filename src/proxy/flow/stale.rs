//! The proxy's side of serving stale on purpose (RFC 5861; the policy is `cache::stale`, pure):
//!
//! ```text
//!  stale entry ─┬─ within stale-while-revalidate ─> serve it now (hit; detail=stale-while-revalidate)
//!               │                                   and queue one background revalidation per URL
//!               │                                   (in the foreground for hosts behind --parent)
//!               └─ revalidate ─ origin unreachable, timed out, 500/502/503/504
//!                     └─ within stale-if-error / --stale-if-error ─> serve it (hit; detail=stale-if-error)
//! ```

use std::time::SystemTime;

use super::background::Job;
use super::cached::Hit;
use super::fetch::Fetched;
use crate::cache::lock::Lease;
use crate::cache::policy::{self, CacheControl};
use crate::cache::status::CacheStatus;
use crate::cache::{Cache, Found, RuleOnce};
use crate::proxy::exchange::{Exchange, Served};
use crate::proxy::ops::metrics::Outcome;
use crate::proxy::upstream::parent::Route;
use crate::proxy::{Proxy, ProxyError};

impl Proxy {
    /// Whether a stale-while-revalidate entry can be revalidated in the background for this request:
    /// the background threads dial origins directly, so a host routed through `--parent` proxies is
    /// revalidated in the foreground instead (never around the parents).
    pub(in crate::proxy) fn revalidates_in_background(&self, ex: &Exchange) -> bool {
        self.revalidator.is_some() && self.parents.route(&ex.target.host) == Route::Direct
    }

    /// Serves a stale entry at once and has it revalidated in the background, unless another
    /// request already is revalidating (or fetching) the URL: one origin request however many come.
    pub(in crate::proxy) fn serve_stale_and_revalidate(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        found: Found,
        now: SystemTime,
        rule: &RuleOnce,
    ) -> Served {
        if let (Some(revalidator), Lease::Leader(lease)) = (
            &self.revalidator,
            cache.lock(&ex.target.url, std::time::Duration::ZERO),
        ) && let Some(job_found) = cache.lookup_with(&ex.target.url, &ex.req, rule)
        {
            // The background request says who asked, as the foreground one would have.
            let mut req = ex.req.clone();
            let forwarded_for = self.config.load().forwarded_for;
            forwarded_for.apply(&mut req.headers, ex.conn.peer.ip());
            let job = Job {
                req,
                target: ex.target.clone(),
                found: job_found,
                lease,
                tls: self.interceptor.as_ref().map(|i| i.upstream.clone()),
            };
            if !revalidator.submit(job) {
                log::debug!(
                    "background revalidation queue full; {} stays stale",
                    ex.target.url
                );
            }
        }
        ex.entry.outcome = Outcome::Hit;
        ex.entry.detail = Some("stale-while-revalidate");
        let hit = Hit::of(&ex.req, found);
        self.serve_hit(cache, ex, hit, CacheStatus::StaleWhileRevalidate, now, rule)
    }

    /// Serves the stored entry in place of the origin's failure ([`Proxy::stands_in_for_failure`]).
    pub(in crate::proxy) fn serve_stale_if_error(
        &self,
        cache: &Cache,
        ex: &mut Exchange,
        found: Found,
        rule: &RuleOnce,
    ) -> Served {
        ex.entry.outcome = Outcome::Hit;
        ex.entry.detail = Some("stale-if-error");
        let (hit, now) = (Hit::of(&ex.req, found), SystemTime::now());
        self.serve_hit(cache, ex, hit, CacheStatus::StaleIfError, now, rule)
    }

    /// Whether the failed (or failing) answer to a revalidation should be replaced by the stored
    /// entry (RFC 5861 §4): the origin could not be reached or answered 500/502/503/504, and the
    /// entry is within its stale-if-error window (or `--stale-if-error`).
    pub(in crate::proxy) fn stands_in_for_failure(
        &self,
        ex: &Exchange,
        found: &Found,
        fetched: &Result<Fetched, ProxyError>,
    ) -> bool {
        let failed = match fetched {
            Ok(fetched) => policy::is_origin_error(fetched.head.status),
            Err(error) => error.is_upstream_failure(),
        };
        if !failed {
            return false;
        }
        let want = CacheControl::parse_request(&ex.req.headers);
        let default = self.config.load().stale_if_error;
        let serve = policy::serve_if_error(&want, &found.freshness, SystemTime::now(), default);
        if serve {
            let why = match fetched {
                Ok(fetched) => format!("the origin answered {}", fetched.head.status),
                Err(error) => error.to_string(),
            };
            log::info!("{}: serving the stored response: {why}", ex.target.url);
        }
        serve
    }
}
