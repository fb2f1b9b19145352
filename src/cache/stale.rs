//! Serving stale responses on purpose (RFC 5861, RFC 9111 §4.2.4), pure like the rest of the policy:
//! the stored freshness, the request's directives and `now` in, a yes or no out.
//!
//! Two graces, both only once [`super::policy::decide_with`] has said the entry needs revalidating:
//!
//! ```text
//!  stale ──┬─ age - lifetime <= stale-while-revalidate ─> serve now, revalidate in the background
//!          └─ origin unreachable, timed out, 500/502/503/504
//!                └─ age - lifetime <= stale-if-error (or --stale-if-error) ─> serve instead of the error
//! ```
//!
//! Neither applies to a response that forbids serving it stale: `must-revalidate`, `proxy-revalidate`,
//! `no-cache`, or `s-maxage` (which implies proxy-revalidate for a shared cache, RFC 9111 §5.2.2.10).
//! The background revalidation also steps aside when the client asked for a fresh answer itself
//! (`no-cache`, an exceeded `max-age`, `min-fresh`); an origin that is down gets no such deference: the
//! client is better served by what the cache has than by an error.

use std::time::{Duration, SystemTime};

use super::directives::CacheControl;
use super::policy::StoredFreshness;

/// Whether the response's own directives forbid serving it stale from a shared cache.
fn forbids_stale(cc: &CacheControl) -> bool {
    cc.must_revalidate || cc.proxy_revalidate || cc.no_cache || cc.s_maxage.is_some()
}

/// How long past its freshness lifetime the stored response is at `now` (zero while fresh).
fn staleness(stored: &StoredFreshness, now: SystemTime) -> Duration {
    stored.age(now).saturating_sub(stored.lifetime())
}

/// RFC 5861 §3: may the stale entry be served at once while it is revalidated in the background?
pub fn serve_while_revalidating(
    want: &CacheControl,
    stored: &StoredFreshness,
    now: SystemTime,
) -> bool {
    let cc = stored.directives();
    let Some(window) = cc.stale_while_revalidate else {
        return false;
    };
    let age = stored.age(now);
    let client_wants_fresh = want.no_cache
        || want.min_fresh.is_some()
        || want
            .max_age
            .is_some_and(|max| max == 0 || age > Duration::from_secs(max));
    let stale = age >= stored.lifetime();
    stale
        && !client_wants_fresh
        && !forbids_stale(cc)
        && staleness(stored, now) <= Duration::from_secs(window)
}

/// RFC 5861 §4: may the entry be served instead of an origin error? The window is the response's
/// `stale-if-error`, else `default` (`--stale-if-error`; zero turns the default off), widened by the
/// request's own `stale-if-error`.
pub fn serve_if_error(
    want: &CacheControl,
    stored: &StoredFreshness,
    now: SystemTime,
    default: Duration,
) -> bool {
    let cc = stored.directives();
    let stated = cc
        .stale_if_error
        .map(Duration::from_secs)
        .unwrap_or(default);
    let window = stated.max(Duration::from_secs(want.stale_if_error.unwrap_or(0)));
    !window.is_zero() && !forbids_stale(cc) && staleness(stored, now) <= window
}

/// The origin answers that stale-if-error stands in for (RFC 5861 §4): the server errors that say
/// "try later", not the ones that describe the resource.
pub fn is_origin_error(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{at, date, resp};
    use crate::http::Headers;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A response stored at T0 with Date T0 and these Cache-Control directives.
    fn stored(cache_control: &str) -> StoredFreshness {
        let d = date(0);
        let head = resp(200, &[("Cache-Control", cache_control), ("Date", &d)]);
        StoredFreshness::of(&head, at(0), at(0))
    }

    fn want(cache_control: &str) -> CacheControl {
        let headers: Headers = [("Cache-Control", cache_control)].into_iter().collect();
        CacheControl::parse_request(&headers)
    }

    fn none() -> CacheControl {
        CacheControl::default()
    }

    #[test]
    fn stale_while_revalidate_covers_its_window_after_expiry_only() {
        let s = stored("max-age=10, stale-while-revalidate=30");
        assert!(!serve_while_revalidating(&none(), &s, at(5)), "still fresh");
        assert!(serve_while_revalidating(&none(), &s, at(10)));
        assert!(serve_while_revalidating(&none(), &s, at(40)));
        assert!(
            !serve_while_revalidating(&none(), &s, at(41)),
            "past the window"
        );
        let plain = stored("max-age=10");
        assert!(!serve_while_revalidating(&none(), &plain, at(11)));
    }

    #[test]
    fn stale_while_revalidate_steps_aside_when_the_client_wants_fresh() {
        let s = stored("max-age=10, stale-while-revalidate=30");
        for cc in ["no-cache", "max-age=0", "max-age=5", "min-fresh=1"] {
            assert!(!serve_while_revalidating(&want(cc), &s, at(20)), "{cc}");
        }
        assert!(serve_while_revalidating(&want("max-age=60"), &s, at(20)));
        let pragma: Headers = [("Pragma", "no-cache")].into_iter().collect();
        let pragma = CacheControl::parse_request(&pragma);
        assert!(!serve_while_revalidating(&pragma, &s, at(20)));
    }

    #[test]
    fn directives_that_forbid_stale_forbid_both_graces() {
        for cc in [
            "max-age=10, stale-while-revalidate=30, stale-if-error=60, must-revalidate",
            "max-age=10, stale-while-revalidate=30, stale-if-error=60, proxy-revalidate",
            "max-age=10, stale-while-revalidate=30, stale-if-error=60, no-cache",
            "s-maxage=10, stale-while-revalidate=30, stale-if-error=60",
        ] {
            let s = stored(cc);
            assert!(!serve_while_revalidating(&none(), &s, at(20)), "{cc}");
            assert!(!serve_if_error(&none(), &s, at(20), DAY), "{cc}");
        }
    }

    #[test]
    fn stale_if_error_uses_the_response_window_else_the_default() {
        let stated = stored("max-age=10, stale-if-error=60");
        assert!(serve_if_error(&none(), &stated, at(70), DAY));
        assert!(
            !serve_if_error(&none(), &stated, at(71), DAY),
            "the response's own window wins"
        );
        assert!(
            serve_if_error(&none(), &stated, at(70), Duration::ZERO),
            "stated, so on without a default"
        );
        let plain = stored("max-age=10");
        assert!(serve_if_error(&none(), &plain, at(10 + 86_400), DAY));
        assert!(!serve_if_error(&none(), &plain, at(11 + 86_400), DAY));
        assert!(
            !serve_if_error(&none(), &plain, at(11), Duration::ZERO),
            "--stale-if-error 0"
        );
    }

    #[test]
    fn a_request_may_widen_stale_if_error_and_its_reload_does_not_block_it() {
        let plain = stored("max-age=10");
        assert!(serve_if_error(
            &want("stale-if-error=100"),
            &plain,
            at(100),
            Duration::ZERO
        ));
        assert!(!serve_if_error(
            &want("stale-if-error=100"),
            &plain,
            at(111),
            Duration::ZERO
        ));
        assert!(serve_if_error(&want("no-cache"), &plain, at(5), DAY));
    }

    #[test]
    fn only_server_errors_that_say_try_later_count() {
        for status in [500, 502, 503, 504] {
            assert!(is_origin_error(status), "{status}");
        }
        for status in [200, 304, 404, 410, 501, 505, 599] {
            assert!(!is_origin_error(status), "{status}");
        }
    }
}
