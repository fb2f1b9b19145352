//! The RFC 9111 shared-cache policy, pure: heads and times in, decisions out. No I/O, no clock (`now`
//! and the exchange's request/response times are arguments), no disk; the store and the proxy act on
//! what this says. Directive parsing, freshness, conditional requests and Vary live in sibling modules and
//! are re-exported here, so `cache::policy` is the whole API.
//!
//! Why not the `http-cache-semantics` crate: it is a port of the JavaScript library built on the `http`
//! crate's `Request`/`Response`, which Porter does not use, so every lookup would convert our heads on
//! the hot path; and its `before_request` answers with a finished verdict, hiding the steps (which rule
//! refused storing, why revalidation is needed) that our Cache-Status details report. Working on our own
//! types with explicit times keeps each rule testable without a clock.
//!
//! ```text
//! response ── storable? ──> store
//! request ── before_request ──> Fresh | StaleAllowed ──> serve (304 if client_has_current)
//!                          └──> Revalidate ── validators ──> origin ── 304 ── update_from_304 ──> serve
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::conditional::{client_has_current, freshen, update_from_304, validators};
pub use super::directives::{CacheControl, DELTA_SECONDS_MAX, delta_seconds};
use super::freshness::{HEURISTIC_STATUSES, header_date, lifetime};
pub use super::freshness::{current_age, freshness_lifetime};
use super::refresh;
pub use super::refresh::{RefreshRule, RefreshRules, applies as refresh_applies};
pub use super::stale::{is_origin_error, serve_if_error, serve_while_revalidating};
pub use super::update::{HeadUpdate, NotModified, after_304, after_head};
pub use super::vary::{Vary, vary, vary_values};
use crate::http::{Method, RequestHead, ResponseHead};

/// Statuses whose caching rules we implement, for `must-understand` (RFC 9111 §5.2.2.3).
const UNDERSTOOD_STATUSES: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// Why a response is not stored, for logs and the Cache-Status `detail` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStore {
    /// Only GET responses are stored.
    Method,
    /// Not a final status we store: 1xx, 304, an unknown code under `must-understand`, or a code that is
    /// not cacheable by default and has no explicit freshness or `public`.
    Status,
    RequestNoStore,
    ResponseNoStore,
    /// `private` (field-named or not): a shared cache must not store it (§5.2.2.7).
    Private,
    /// The request carried Authorization and the response does not allow sharing it (§3.5).
    Authorization,
    VaryStar,
    /// Never fresh (or always `no-cache`) and no validator to revalidate with: storing cannot help.
    NoFreshness,
    /// A 206 that is not one range of a known length (multipart, or `/*`): not kept as a partial entry.
    PartialContent,
    /// Set-Cookie on a response that is not explicitly shareable (`public`, `s-maxage`, or a
    /// `no-cache="Set-Cookie"` that tells a shared cache to drop the field): one client's session
    /// must never reach another, and nginx and Varnish do not store such responses either.
    SetCookie,
}

impl NoStore {
    pub fn as_str(&self) -> &'static str {
        match self {
            NoStore::Method => "method",
            NoStore::Status => "status",
            NoStore::RequestNoStore => "request-no-store",
            NoStore::ResponseNoStore => "response-no-store",
            NoStore::Private => "private",
            NoStore::Authorization => "authorization",
            NoStore::VaryStar => "vary-star",
            NoStore::NoFreshness => "no-freshness",
            NoStore::PartialContent => "partial-content",
            NoStore::SetCookie => "set-cookie",
        }
    }
}

/// What to do with a stored response for a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve from cache without contacting the origin.
    Fresh,
    /// Serve although stale: the request's max-stale allows it and the response does not forbid it.
    StaleAllowed,
    /// Revalidate with the origin before use.
    Revalidate,
}

impl Decision {
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Fresh => "fresh",
            Decision::StaleAllowed => "stale-allowed",
            Decision::Revalidate => "revalidate",
        }
    }
}

/// RFC 9111 §3 for a shared cache: may this response to this request be stored?
pub fn storable(req: &RequestHead, resp: &ResponseHead) -> Result<(), NoStore> {
    storable_with_rule(req, resp, None)
}

/// [`storable`] with the duration of the `--refresh` rule matching the URL, if any: a response the
/// rule makes fresh is stored even without validators (see [`refresh::applies`]).
pub fn storable_with_rule(
    req: &RequestHead,
    resp: &ResponseHead,
    refresh: Option<Duration>,
) -> Result<(), NoStore> {
    // HEAD responses have no body to store; other methods are not cacheable by us.
    if req.method != Method::Get {
        return Err(NoStore::Method);
    }
    let status = resp.status;
    // §3.3: a 206 is stored as a partial entry when it holds one range of a known length.
    let one_range = resp
        .headers
        .get("content-range")
        .and_then(crate::http::range::parse_content_range)
        .is_some_and(|(_, complete)| complete.is_some());
    if status == 206 && !one_range {
        return Err(NoStore::PartialContent);
    }
    if !(200..600).contains(&status) || status == 304 {
        return Err(NoStore::Status);
    }
    let cc = CacheControl::parse(&resp.headers);
    if CacheControl::parse(&req.headers).no_store {
        return Err(NoStore::RequestNoStore);
    }
    let understood = UNDERSTOOD_STATUSES.contains(&status);
    if cc.must_understand && !understood {
        return Err(NoStore::Status);
    }
    if cc.no_store && !(cc.must_understand && understood) {
        return Err(NoStore::ResponseNoStore);
    }
    if cc.private {
        return Err(NoStore::Private);
    }
    let shareable = cc.public || cc.must_revalidate || cc.s_maxage.is_some();
    if req.headers.contains("authorization") && !shareable {
        return Err(NoStore::Authorization);
    }
    if vary(resp) == Vary::Any {
        return Err(NoStore::VaryStar);
    }
    // Stored or not, a Set-Cookie is never stored (`cache::storable_head` drops it); the response
    // without it is worth keeping only when the origin says it may be shared.
    let drops_cookie = cc.no_cache_fields.iter().any(|f| f == "set-cookie");
    if resp.headers.contains("set-cookie") && !(cc.public || cc.s_maxage.is_some() || drops_cookie)
    {
        return Err(NoStore::SetCookie);
    }
    let explicit =
        cc.max_age.is_some() || cc.s_maxage.is_some() || resp.headers.contains("expires");
    if !explicit && !cc.public && !HEURISTIC_STATUSES.contains(&status) {
        return Err(NoStore::Status);
    }
    // Without a clock, Expires is judged against Date; when Date is missing, the epoch stands in so a
    // valid Expires counts as fresh (the proxy adds Date on receipt, RFC 9110 §6.6.1).
    let date = header_date(&resp.headers, "date").unwrap_or(UNIX_EPOCH);
    let by_rule = refresh::applies(resp, &cc, refresh).is_some();
    let never_fresh = !by_rule && (cc.no_cache || lifetime(resp, &cc, date).is_zero());
    if never_fresh && validators(resp).is_empty() {
        return Err(NoStore::NoFreshness);
    }
    Ok(())
}

/// RFC 9110 §9.3.3: a response to POST may answer later GETs of the same URI when it has explicit
/// freshness and a Content-Location equal to the request's target (`content_location_is_target`,
/// which the caller resolves). The rest is [`storable`] as if the request had been a GET.
pub fn storable_post(
    req: &RequestHead,
    resp: &ResponseHead,
    content_location_is_target: bool,
) -> Result<(), NoStore> {
    if req.method != Method::Post || !content_location_is_target {
        return Err(NoStore::Method);
    }
    let cc = CacheControl::parse(&resp.headers);
    let explicit =
        cc.max_age.is_some() || cc.s_maxage.is_some() || resp.headers.contains("expires");
    if !explicit {
        return Err(NoStore::NoFreshness);
    }
    let as_get = RequestHead {
        method: Method::Get,
        ..req.clone()
    };
    storable(&as_get, resp)
}

/// What a stored response's own header fields say about its freshness. It depends only on the stored
/// head and the times recorded with it, so the cache computes it once per entry instead of parsing
/// Cache-Control, Date, Age and Expires on every hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFreshness {
    cc: CacheControl,
    lifetime: Duration,
    /// RFC 9111 §4.2.3 corrected_initial_age.
    initial_age: Duration,
    response_time: SystemTime,
    /// The lifetime is a `--refresh` rule's, not the response's own.
    by_rule: bool,
    /// The rule's detail for Cache-Status and the access log (`refresh-rule`, `rule:cargo`).
    rule_detail: &'static str,
}

impl StoredFreshness {
    pub fn of(stored: &ResponseHead, request_time: SystemTime, response_time: SystemTime) -> Self {
        StoredFreshness::with_rule(stored, request_time, response_time, None)
    }

    /// [`StoredFreshness::of`] with the duration of the `--refresh` rule matching the URL, if any.
    pub fn with_rule(
        stored: &ResponseHead,
        request_time: SystemTime,
        response_time: SystemTime,
        refresh: Option<Duration>,
    ) -> Self {
        let cc = CacheControl::parse(&stored.headers);
        let rule = refresh::applies(stored, &cc, refresh);
        StoredFreshness {
            lifetime: rule.unwrap_or_else(|| lifetime(stored, &cc, response_time)),
            initial_age: current_age(stored, request_time, response_time, response_time),
            cc,
            response_time,
            by_rule: rule.is_some(),
            rule_detail: refresh::RULE_DETAIL,
        }
    }

    /// Names the rule that matched the URL, for [`StoredFreshness::rule_detail`].
    pub fn named(mut self, detail: &'static str) -> Self {
        self.rule_detail = detail;
        self
    }

    /// The matched rule's detail (`refresh-rule`, `rule:cargo`); meaningful when [`Self::by_rule`].
    pub fn rule_detail(&self) -> &'static str {
        self.rule_detail
    }

    /// Whether a `--refresh` rule gave this response its lifetime (Cache-Status `detail=refresh-rule`).
    pub fn by_rule(&self) -> bool {
        self.by_rule
    }

    /// RFC 9111 §4.2.3 current_age: the initial age plus the time resident in this cache.
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.response_time).unwrap_or_default();
        self.initial_age.saturating_add(resident)
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The stored response's Cache-Control directives.
    pub fn directives(&self) -> &CacheControl {
        &self.cc
    }
}

/// RFC 9111 §4 and §5.2.1: can `stored` answer `req` now, with the times recorded when it was stored?
/// Vary and method matching are the store's job; this judges freshness and directives only.
pub fn before_request(
    req: &RequestHead,
    stored: &ResponseHead,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Decision {
    decide(
        req,
        &StoredFreshness::of(stored, request_time, response_time),
        now,
    )
}

/// [`before_request`] with the stored response's freshness already worked out.
pub fn decide(req: &RequestHead, stored: &StoredFreshness, now: SystemTime) -> Decision {
    decide_with(&CacheControl::parse_request(&req.headers), stored, now)
}

/// [`decide`] with the request's Cache-Control already parsed, as the proxy has it by then: the one
/// the request path calls.
pub fn decide_with(want: &CacheControl, stored: &StoredFreshness, now: SystemTime) -> Decision {
    let cc = &stored.cc;
    // §5.2.2.4, §5.2.1.4: no-cache on either side means "always ask the origin first".
    if cc.no_cache || want.no_cache {
        return Decision::Revalidate;
    }
    let lifetime = stored.lifetime;
    let age = stored.age(now);
    // §5.2.1.1. max-age=0 is how clients ask for a reload, so it revalidates even at age zero.
    if let Some(max_age) = want.max_age
        && (max_age == 0 || age > Duration::from_secs(max_age))
    {
        return Decision::Revalidate;
    }
    // §5.2.1.3: the response must stay fresh for at least min-fresh more seconds.
    if let Some(min_fresh) = want.min_fresh
        && lifetime < age.saturating_add(Duration::from_secs(min_fresh))
    {
        return Decision::Revalidate;
    }
    if lifetime > age {
        return Decision::Fresh;
    }
    // §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: these forbid serving stale from a shared cache.
    if cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some() {
        return Decision::Revalidate;
    }
    let staleness = age.saturating_sub(lifetime);
    match want.max_stale {
        Some(None) => Decision::StaleAllowed,
        Some(Some(secs)) if staleness <= Duration::from_secs(secs) => Decision::StaleAllowed,
        _ => Decision::Revalidate,
    }
}

/// RFC 9111 §4.4: a non-error response (2xx, 3xx) to an unsafe method invalidates the stored responses
/// for its target (and its Location / Content-Location, which the caller resolves).
pub fn invalidates(method: &Method, status: u16) -> bool {
    !method.is_safe() && (200..400).contains(&status)
}

/// The Age value for a response served from cache: whole seconds, capped at 2^31 (RFC 9111 §5.1).
pub fn age_header(age: Duration) -> String {
    age.as_secs().min(DELTA_SECONDS_MAX).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{at, date, req, resp};

    fn get(fields: &[(&str, &str)]) -> RequestHead {
        req("GET", fields)
    }

    fn store(
        req_fields: &[(&str, &str)],
        status: u16,
        fields: &[(&str, &str)],
    ) -> Result<(), NoStore> {
        storable(&get(req_fields), &resp(status, fields))
    }

    const MAX_AGE: (&str, &str) = ("Cache-Control", "max-age=60");

    #[test]
    fn get_200_with_max_age_is_storable_but_other_methods_are_not() {
        assert_eq!(store(&[], 200, &[MAX_AGE]), Ok(()));
        for method in ["HEAD", "POST", "PUT", "get"] {
            assert_eq!(
                storable(&req(method, &[]), &resp(200, &[MAX_AGE])),
                Err(NoStore::Method)
            );
        }
    }

    #[test]
    fn interim_not_modified_and_partial_responses_of_unknown_shape_are_not_stored() {
        assert_eq!(store(&[], 206, &[MAX_AGE]), Err(NoStore::PartialContent));
        let multipart = ("Content-Type", "multipart/byteranges; boundary=x");
        assert_eq!(
            store(&[], 206, &[MAX_AGE, multipart]),
            Err(NoStore::PartialContent)
        );
        let unknown_length = ("Content-Range", "bytes 0-9/*");
        assert_eq!(
            store(&[], 206, &[MAX_AGE, unknown_length]),
            Err(NoStore::PartialContent)
        );
        let one = ("Content-Range", "bytes 0-9/100");
        assert_eq!(store(&[], 206, &[MAX_AGE, one]), Ok(()), "a partial entry");
        assert_eq!(store(&[], 304, &[MAX_AGE]), Err(NoStore::Status));
        assert_eq!(store(&[], 100, &[MAX_AGE]), Err(NoStore::Status));
        assert_eq!(store(&[], 600, &[MAX_AGE]), Err(NoStore::Status));
    }

    #[test]
    fn statuses_not_cacheable_by_default_need_explicit_freshness_or_public() {
        let lm = date(-1000);
        let e = date(60);
        assert_eq!(
            store(&[], 302, &[("Last-Modified", &lm)]),
            Err(NoStore::Status)
        );
        assert_eq!(store(&[], 500, &[("ETag", "\"x\"")]), Err(NoStore::Status));
        assert_eq!(store(&[], 302, &[MAX_AGE]), Ok(()));
        assert_eq!(store(&[], 307, &[("Expires", &e)]), Ok(()));
        assert_eq!(
            store(
                &[],
                302,
                &[("Cache-Control", "public"), ("Last-Modified", &lm)]
            ),
            Ok(())
        );
        assert_eq!(store(&[], 404, &[("Last-Modified", &lm)]), Ok(()));
    }

    #[test]
    fn no_store_in_request_or_response_blocks_storing() {
        let cc_no_store = ("Cache-Control", "no-store");
        assert_eq!(
            store(&[cc_no_store], 200, &[MAX_AGE]),
            Err(NoStore::RequestNoStore)
        );
        assert_eq!(
            store(&[], 200, &[("Cache-Control", "max-age=60, no-store")]),
            Err(NoStore::ResponseNoStore)
        );
        assert_eq!(
            store(&[], 200, &[MAX_AGE, cc_no_store]),
            Err(NoStore::ResponseNoStore)
        );
    }

    #[test]
    fn must_understand_overrides_no_store_only_for_understood_statuses() {
        let cc = ("Cache-Control", "no-store, must-understand, max-age=60");
        assert_eq!(store(&[], 200, &[cc]), Ok(()));
        assert_eq!(store(&[], 299, &[cc]), Err(NoStore::Status));
        let without_no_store = ("Cache-Control", "must-understand, max-age=60");
        assert_eq!(store(&[], 299, &[without_no_store]), Err(NoStore::Status));
    }

    #[test]
    fn private_blocks_a_shared_cache_even_field_named() {
        for cc in [
            "private, max-age=60",
            "max-age=60, private=\"set-cookie\"",
            "PRIVATE,public,max-age=60",
        ] {
            assert_eq!(
                store(&[], 200, &[("Cache-Control", cc)]),
                Err(NoStore::Private),
                "{cc}"
            );
        }
    }

    #[test]
    fn authorization_blocks_unless_public_must_revalidate_or_s_maxage() {
        let auth = [("Authorization", "Basic dTpw")];
        assert_eq!(store(&auth, 200, &[MAX_AGE]), Err(NoStore::Authorization));
        for cc in [
            "public, max-age=60",
            "must-revalidate, max-age=60",
            "s-maxage=60",
        ] {
            assert_eq!(store(&auth, 200, &[("Cache-Control", cc)]), Ok(()), "{cc}");
        }
    }

    #[test]
    fn vary_star_is_not_stored() {
        assert_eq!(
            store(&[], 200, &[MAX_AGE, ("Vary", "Accept, *")]),
            Err(NoStore::VaryStar)
        );
        assert_eq!(store(&[], 200, &[MAX_AGE, ("Vary", "Accept")]), Ok(()));
    }

    #[test]
    fn never_fresh_without_a_validator_is_not_stored() {
        let (d, past, future) = (date(0), date(-10), date(10));
        assert_eq!(store(&[], 200, &[]), Err(NoStore::NoFreshness));
        assert_eq!(
            store(&[], 200, &[("Cache-Control", "max-age=0")]),
            Err(NoStore::NoFreshness)
        );
        assert_eq!(
            store(&[], 200, &[("Cache-Control", "no-cache, max-age=60")]),
            Err(NoStore::NoFreshness)
        );
        assert_eq!(
            store(&[], 200, &[("Date", &d), ("Expires", &past)]),
            Err(NoStore::NoFreshness)
        );
        assert_eq!(
            store(&[], 200, &[("Expires", "0")]),
            Err(NoStore::NoFreshness)
        );
        // Revalidatable, or possibly fresh when Date is missing: worth storing.
        assert_eq!(
            store(
                &[],
                200,
                &[("Cache-Control", "max-age=0"), ("ETag", "\"v\"")]
            ),
            Ok(())
        );
        assert_eq!(
            store(
                &[],
                200,
                &[("Cache-Control", "no-cache"), ("ETag", "\"v\"")]
            ),
            Ok(())
        );
        assert_eq!(store(&[], 200, &[("Last-Modified", &past)]), Ok(()));
        assert_eq!(store(&[], 200, &[("Expires", &future)]), Ok(()));
    }

    #[test]
    fn regression_set_cookie_blocks_a_shared_cache_unless_explicitly_shareable() {
        let cookie = ("Set-Cookie", "session=SECRET1");
        assert_eq!(store(&[], 200, &[MAX_AGE, cookie]), Err(NoStore::SetCookie));
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, no-cache=\"Set-Cookie, X-Visit-Count\"",
        ] {
            assert_eq!(
                store(&[], 200, &[("Cache-Control", cc), cookie]),
                Ok(()),
                "{cc}"
            );
        }
        assert_eq!(store(&[], 200, &[MAX_AGE]), Ok(()));
    }

    #[test]
    fn reasons_have_distinct_names() {
        use NoStore::*;
        let all = [
            Method,
            Status,
            RequestNoStore,
            ResponseNoStore,
            Private,
            Authorization,
            VaryStar,
            NoFreshness,
            PartialContent,
            SetCookie,
        ];
        let mut names: Vec<&str> = all.iter().map(NoStore::as_str).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    /// Stored at T0 (sent and received at once, Date T0), asked `now` seconds later.
    fn decide(req_fields: &[(&str, &str)], stored: &[(&str, &str)], now: i64) -> Decision {
        let d = date(0);
        let mut head = resp(200, stored);
        if !head.headers.contains("date") {
            head.headers.append("Date", d);
        }
        before_request(&get(req_fields), &head, at(0), at(0), at(now))
    }

    #[test]
    fn fresh_until_age_reaches_max_age() {
        let cc = [("Cache-Control", "max-age=100")];
        assert_eq!(decide(&[], &cc, 0), Decision::Fresh);
        assert_eq!(decide(&[], &cc, 99), Decision::Fresh);
        assert_eq!(decide(&[], &cc, 100), Decision::Revalidate);
    }

    #[test]
    fn age_header_counts_against_freshness() {
        let stored = [("Cache-Control", "max-age=100"), ("Age", "90")];
        assert_eq!(decide(&[], &stored, 5), Decision::Fresh);
        assert_eq!(decide(&[], &stored, 10), Decision::Revalidate);
    }

    #[test]
    fn expires_and_heuristic_freshness_serve_fresh() {
        let e = date(30);
        assert_eq!(decide(&[], &[("Expires", &e)], 29), Decision::Fresh);
        assert_eq!(decide(&[], &[("Expires", &e)], 31), Decision::Revalidate);
        let lm = date(-1000);
        assert_eq!(decide(&[], &[("Last-Modified", &lm)], 50), Decision::Fresh);
        assert_eq!(
            decide(&[], &[("Last-Modified", &lm)], 150),
            Decision::Revalidate
        );
    }

    #[test]
    fn s_maxage_overrides_max_age_in_a_shared_cache() {
        let cc = [("Cache-Control", "max-age=1000, s-maxage=10")];
        assert_eq!(decide(&[], &cc, 5), Decision::Fresh);
        assert_eq!(decide(&[], &cc, 20), Decision::Revalidate);
    }

    #[test]
    fn no_cache_response_always_revalidates() {
        assert_eq!(
            decide(&[], &[("Cache-Control", "no-cache, max-age=3600")], 0),
            Decision::Revalidate
        );
        // The field-named form only keeps those fields out of reuse (RFC 9111 §5.2.2.4).
        assert_eq!(
            decide(
                &[],
                &[("Cache-Control", "max-age=3600, no-cache=\"set-cookie\"")],
                0
            ),
            Decision::Fresh
        );
    }

    #[test]
    fn request_no_cache_or_bare_pragma_revalidates() {
        let stored = [("Cache-Control", "max-age=3600")];
        assert_eq!(
            decide(&[("Cache-Control", "no-cache")], &stored, 1),
            Decision::Revalidate
        );
        assert_eq!(
            decide(&[("Pragma", "no-cache")], &stored, 1),
            Decision::Revalidate
        );
        let both = [("Pragma", "no-cache"), ("Cache-Control", "max-stale")];
        assert_eq!(
            decide(&both, &stored, 1),
            Decision::Fresh,
            "Cache-Control wins over Pragma"
        );
    }

    #[test]
    fn request_max_age_limits_the_acceptable_age() {
        let stored = [("Cache-Control", "max-age=3600")];
        let zero = [("Cache-Control", "max-age=0")];
        assert_eq!(decide(&zero, &stored, 0), Decision::Revalidate);
        let thirty = [("Cache-Control", "max-age=30")];
        assert_eq!(decide(&thirty, &stored, 20), Decision::Fresh);
        assert_eq!(decide(&thirty, &stored, 40), Decision::Revalidate);
    }

    #[test]
    fn max_stale_serves_stale_within_its_bound() {
        let stored = [("Cache-Control", "max-age=10")];
        // At 30 s the response is 20 s stale.
        assert_eq!(
            decide(&[("Cache-Control", "max-stale=30")], &stored, 30),
            Decision::StaleAllowed
        );
        assert_eq!(
            decide(&[("Cache-Control", "max-stale=20")], &stored, 30),
            Decision::StaleAllowed
        );
        assert_eq!(
            decide(&[("Cache-Control", "max-stale=5")], &stored, 30),
            Decision::Revalidate
        );
        assert_eq!(
            decide(&[("Cache-Control", "max-stale")], &stored, 1_000_000),
            Decision::StaleAllowed
        );
        assert_eq!(decide(&[], &stored, 30), Decision::Revalidate);
    }

    #[test]
    fn max_stale_is_refused_by_revalidation_directives() {
        let want = [("Cache-Control", "max-stale")];
        for cc in [
            "max-age=10, must-revalidate",
            "max-age=10, proxy-revalidate",
            "s-maxage=10",
            "max-age=10, no-cache",
        ] {
            assert_eq!(
                decide(&want, &[("Cache-Control", cc)], 30),
                Decision::Revalidate,
                "{cc}"
            );
        }
    }

    #[test]
    fn min_fresh_requires_remaining_freshness() {
        let stored = [("Cache-Control", "max-age=100")];
        assert_eq!(
            decide(&[("Cache-Control", "min-fresh=40")], &stored, 50),
            Decision::Fresh
        );
        assert_eq!(
            decide(&[("Cache-Control", "min-fresh=50")], &stored, 50),
            Decision::Fresh
        );
        assert_eq!(
            decide(&[("Cache-Control", "min-fresh=60")], &stored, 50),
            Decision::Revalidate
        );
    }

    #[test]
    fn only_if_cached_is_parsed_but_leaves_the_decision_to_freshness() {
        let want = [("Cache-Control", "only-if-cached")];
        assert!(CacheControl::parse(&get(&want).headers).only_if_cached);
        let stored = [("Cache-Control", "max-age=10")];
        assert_eq!(decide(&want, &stored, 5), Decision::Fresh);
        assert_eq!(decide(&want, &stored, 50), Decision::Revalidate);
    }

    #[test]
    fn stored_times_come_from_the_exchange_not_the_clock() {
        // Received 20 s after it was sent, Date missing: the delay counts as age.
        let stored = resp(200, &[("Cache-Control", "max-age=30")]);
        let decision = |now| before_request(&get(&[]), &stored, at(-20), at(0), at(now));
        assert_eq!(decision(9), Decision::Fresh);
        assert_eq!(decision(10), Decision::Revalidate);
    }

    #[test]
    fn unsafe_methods_with_non_error_status_invalidate() {
        for method in ["POST", "PUT", "DELETE", "PATCH", "PURGE"] {
            for status in [200, 201, 204, 301, 303, 399] {
                assert!(invalidates(&method.into(), status), "{method} {status}");
            }
            for status in [100, 400, 404, 500, 503] {
                assert!(!invalidates(&method.into(), status), "{method} {status}");
            }
        }
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(!invalidates(&method.into(), 200), "{method}");
        }
    }

    #[test]
    fn age_header_is_whole_seconds_capped_at_two_to_the_31() {
        assert_eq!(age_header(Duration::from_millis(1999)), "1");
        assert_eq!(age_header(Duration::ZERO), "0");
        assert_eq!(age_header(Duration::from_secs(u64::MAX)), "2147483648");
    }

    #[test]
    fn a_post_response_with_freshness_and_its_own_content_location_may_serve_gets() {
        let post = req("POST", &[]);
        let fresh = resp(200, &[MAX_AGE]);
        assert_eq!(storable_post(&post, &fresh, true), Ok(()));
        assert_eq!(storable_post(&post, &fresh, false), Err(NoStore::Method));
        let expires = resp(200, &[("Expires", &date(60)), ("Date", &date(0))]);
        assert_eq!(storable_post(&post, &expires, true), Ok(()));
        let heuristic = resp(200, &[("Last-Modified", &date(-1000))]);
        assert_eq!(
            storable_post(&post, &heuristic, true),
            Err(NoStore::NoFreshness)
        );
        let private = resp(200, &[("Cache-Control", "max-age=60, private")]);
        assert_eq!(storable_post(&post, &private, true), Err(NoStore::Private));
        assert_eq!(storable_post(&get(&[]), &fresh, true), Err(NoStore::Method));
    }
}
